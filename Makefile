# optc — build, test, demo, bench.
# Outputs go under $(O) (build/ by default); nothing here is committed.
# Targets: all check demo explore bench deps examples generated clean fuzz reproduce
#          gradcheck-all oracle

O        ?= build
CC       ?= cc
ifeq ($(origin CC),default)
CC       := gcc
endif
OPT      ?= -O2 -g
SAN      ?=
CSTD     := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
# The strict warning list; generated code must compile clean with it too.
WARN     := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wold-style-definition -Wpointer-arith \
            -Wwrite-strings -Wformat=2 -Wundef -Wvla -Wcast-qual \
            -Wnull-dereference -Wdouble-promotion -Werror
PKGS     := openblas zlib
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null)
# Open MPI, for the data-parallel runtime variant (optc build --mpi); its
# headers as system headers, outside our warning list.
HAVE_MPI   := $(shell pkg-config --exists ompi-c 2>/dev/null && echo 1)
MPI_CFLAGS := $(patsubst -I%,-isystem %,$(shell pkg-config --cflags ompi-c 2>/dev/null))
MPI_LIBS   := $(shell pkg-config --libs ompi-c 2>/dev/null)
CFLAGS   := $(CSTD) $(OPT) $(WARN) -fopenmp $(SAN) $(EXTRA_CFLAGS)
CPPFLAGS := -Icompiler -Iruntime -I$(O)/grammar $(PKG_CFLAGS)
LDLIBS   = $(PKG_LIBS) -fopenmp -lm

COMPILER_SRC := $(filter-out compiler/main.c,$(wildcard compiler/*.c))
ORCH_SRC     := $(wildcard orchestrate/*.c)
RUNTIME_SRC  := $(wildcard runtime/*.c)
TEST_SRC     := $(wildcard tests/test_*.c)
COMPILER_OBJ := $(COMPILER_SRC:%.c=$(O)/%.o) $(O)/grammar/parser.o $(O)/grammar/lexer.o
ORCH_OBJ     := $(ORCH_SRC:%.c=$(O)/%.o)
RUNTIME_OBJ  := $(RUNTIME_SRC:%.c=$(O)/%.o)
TESTS        := $(TEST_SRC:tests/%.c=$(O)/tests/%)

.PHONY: all check check-fast check-san deps examples generated generated-check \
        demo explore bench fuzz reproduce clean tests
.SUFFIXES:

all: $(O)/optc $(O)/libort.a

deps:
	@scripts/deps.sh

# --- grammar (flex + bison) -------------------------------------------------
$(O)/grammar/parser.c $(O)/grammar/parser.h &: grammar/parser.y
	@mkdir -p $(@D)
	bison -Wall -Werror --defines=$(O)/grammar/parser.h -o $(O)/grammar/parser.c $<
$(O)/grammar/lexer.c $(O)/grammar/lexer.h &: grammar/lexer.l $(O)/grammar/parser.h
	@mkdir -p $(@D)
	flex --header-file=$(O)/grammar/lexer.h -o $(O)/grammar/lexer.c $<
# Generated scanners and parsers are not held to every warning.
GEN_CFLAGS = $(filter-out -Wmissing-prototypes -Wswitch-default -Wnull-dereference -Wcast-qual -Wpedantic,$(CFLAGS)) -Wno-unused-function -Wno-sign-compare -Wno-unused-parameter
$(O)/grammar/parser.o: $(O)/grammar/parser.c $(O)/grammar/lexer.h $(wildcard compiler/*.h)
	$(CC) $(CPPFLAGS) $(GEN_CFLAGS) -c -o $@ $<
$(O)/grammar/lexer.o: $(O)/grammar/lexer.c $(O)/grammar/parser.h $(wildcard compiler/*.h)
	$(CC) $(CPPFLAGS) $(GEN_CFLAGS) -c -o $@ $<

# --- objects ----------------------------------------------------------------
$(O)/compiler/%.o: compiler/%.c $(O)/grammar/parser.h $(O)/grammar/lexer.h $(wildcard compiler/*.h compiler/*.def) runtime/act.def runtime/rt.h
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<
# orchestrate/: commands that drive the compiler and the programs it builds
# (optc compare), built on the compiler's API, never called by it.
$(O)/orchestrate/%.o: orchestrate/%.c $(O)/grammar/parser.h $(wildcard compiler/*.h orchestrate/*.h) runtime/act.def runtime/rt.h
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Iorchestrate $(CFLAGS) -c -o $@ $<
$(O)/runtime/%.o: runtime/%.c $(wildcard runtime/*.h runtime/*.inc runtime/*.def)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(O)/liboptc.a: $(COMPILER_OBJ)
	rm -f $@ && ar rcs $@ $^
$(O)/liborch.a: $(ORCH_OBJ)
	rm -f $@ && ar rcs $@ $^
$(O)/libort.a: $(RUNTIME_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^
$(O)/optc: $(O)/compiler/main.o $(O)/liborch.a $(O)/liboptc.a $(O)/libort.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# libort_mpi.a: libort.a with mpi.c compiled against MPI (-DRT_MPI); the
# plain library keeps the one-process stubs and no MPI symbol.
ifeq ($(HAVE_MPI),1)
all: $(O)/libort_mpi.a
endif
$(O)/runtime/mpi_on.o: runtime/mpi.c $(wildcard runtime/*.h)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(MPI_CFLAGS) $(CFLAGS) -DRT_MPI -c -o $@ $<
$(O)/libort_mpi.a: $(filter-out $(O)/runtime/mpi.o,$(RUNTIME_OBJ)) $(O)/runtime/mpi_on.o
	rm -f $@ && ar rcs $@ $^

# What optc build compiles generated programs with: this build's compiler and
# flags (sanitizers included), the runtime headers and library, as absolute
# paths; rewritten only when it changes.
all: $(O)/optc.flags
$(O)/optc.flags: FORCE
	@mkdir -p $(@D)
	@printf '%s\n' 'CC=$(CC)' 'CFLAGS=$(CFLAGS)' 'INCLUDE=$(abspath runtime)' \
	  'LIBS=$(abspath $(O)/libort.a) $(PKG_LIBS) -fopenmp -lm' \
	  $(if $(HAVE_MPI),'MPI_LIBS=$(abspath $(O)/libort_mpi.a) $(MPI_LIBS) $(PKG_LIBS) -fopenmp -lm') \
	  > $@.tmp
	@cmp -s $@.tmp $@ || mv $@.tmp $@; rm -f $@.tmp
FORCE:

# --- tests ------------------------------------------------------------------
$(O)/tests/%: tests/%.c $(wildcard tests/*.h runtime/*.def) $(O)/liborch.a $(O)/liboptc.a $(O)/libort.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Iorchestrate -Itests $(CFLAGS) -o $@ $< $(O)/liborch.a $(O)/liboptc.a \
	  $(O)/libort.a $(CHECK_LIBS) $(LDLIBS)

tests: all $(TESTS)

# The hand net with one gradient bug planted (tests/plantnet.c; 0: none),
# for test_gradcheck; the bugs wrap runtime kernels with the linker's --wrap.
PLANTS     := $(foreach i,0 1 2 3,$(O)/plant/handnet_$(i))
PLANT_WRAP := $(foreach f,rt_bn_backward rt_sum_backward rt_conv2d_backward,-Wl,--wrap=$(f) -Wl,--wrap=$(f)_d)
$(O)/plant/handnet_%: tests/plantnet.c tests/handnet.h $(O)/libort.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Itests $(CFLAGS) -DRT_PLANT=$* -o $@ $< $(PLANT_WRAP) $(O)/libort.a $(LDLIBS)
$(O)/tests/test_gradcheck: $(PLANTS) $(O)/optc $(O)/optc.flags

# Plain build first, then the same suites under AddressSanitizer + UBSan;
# both build on every processor and run TEST_JOBS suites at once
# (scripts/runtests.sh; default: the processors here, at most 4).
NPROC := $(shell nproc 2>/dev/null || echo 1)
check: deps
	$(MAKE) -j$(NPROC) check-fast
	$(MAKE) -j$(NPROC) check-san

check-fast: tests generated-check
	@OPTC_BUILD=$(O) scripts/runtests.sh $(TESTS)

check-san:
	$(MAKE) O=build/san OPT="-O1 -g" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" tests
	@CK_FORK=no OPTC_SANITIZED=1 OPTC_BUILD=build/san \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  scripts/runtests.sh $(patsubst $(O)/%,build/san/%,$(TESTS))

# --- examples and generated C ----------------------------------------------
examples: all
	@scripts/examples.sh $(O)

generated: $(O)/optc
	@scripts/generated.sh $(O) write

# Every example network's gradcheck over batches 1 2 4 8 and seeds 1 2 3
# (JOBS, GC_ARGS, NETS: see the script).
.PHONY: gradcheck-all
gradcheck-all: all
	@scripts/gradcheck_all.sh $(O)

generated-check: $(O)/optc
	@scripts/generated.sh $(O) check

demo: deps all
	@scripts/demo.sh $(O)

# The heavy-ball beta sweep against gd and Nesterov: accuracy beside the
# optimizer's rate, runs/explore/ (under 15 minutes on 2 cores).
explore: deps all
	@scripts/explore.sh $(O)

bench: deps all
	@scripts/bench.sh $(O)

fuzz: deps
	@scripts/fuzz.sh $(SECONDS)

reproduce: deps all
	@scripts/reproduce.sh $(O)

# Every example network through optc emit --inference against ./net eval on the
# whole test set, with Cortex-M4 sizes and latencies (minutes; not in make check,
# which runs a subset on 200 images).
.PHONY: infer-check
infer-check: tests
	@OPTC_BUILD=$(O) OPTC_INFER_ALL=1 $(O)/tests/test_infer

clean:
	rm -rf build

# fuzz: make check also runs a short libFuzzer campaign of the front end
# (scripts/fuzz.sh: regression inputs replayed, then FUZZ_SECONDS of fuzzing;
# FUZZ_SECONDS=0 only replays). `make fuzz SECONDS=N` is the long campaign.
FUZZ_SECONDS ?= 60
.PHONY: check-fuzz
check: check-fuzz
check-fuzz:
	@scripts/fuzz.sh $(if $(filter 0,$(FUZZ_SECONDS)),replay,$(FUZZ_SECONDS))

# oracle: the PyTorch module optc emits (--pytorch) against the generated C
# for every example network, and a checkpoint loaded into it
# (scripts/oracle.sh, tolerances in tests/oracle/oracle.py); a skip, said so,
# where no python can import torch.
.PHONY: oracle
check: oracle
oracle: all
	@scripts/oracle.sh $(O)
