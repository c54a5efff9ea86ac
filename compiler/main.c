/* main.c — optc's entry point: dispatches argv[1] to a subcommand. */
#include <stdio.h>
#include <string.h>
#include "cli.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    { "check",   cmd_check,   "parse and check specs; diagnostics only" },
    { "ir",      cmd_ir,      "print the unrolled graph, one op per line" },
    { "dot",     cmd_dot,     "print the unrolled graph as Graphviz" },
    { "list",    cmd_list,    "print a spec's network names" },
    { "emit",    cmd_emit,    "emit the training program's C source" },
    { "build",   cmd_build,   "emit, compile and link a training program" },
    { "analyze", cmd_analyze, "the optimizer on quadratics: rate per step" },
    { "compare", cmd_compare, "train several specs and compare them" },
};

static void usage(FILE *f)
{
    fprintf(f, "usage: optc COMMAND [ARGS]   (optc COMMAND --help for its options)\n\n"
               "optc compiles optimizer specs (*.opt) into neural networks.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nCommon flags: -n NET (network), -o OUT, -D NAME=VALUE overrides:\n"
               "  OPT.PARAM, PARAM, NET.stageN.steps, NET.stageN.width, stageN.steps, stageN.width\n"
               "  e.g. -D resnet20_cifar.stage1.steps=9 (see docs/language.md)\n"
               "\noptions: --help, --version\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("optc %s\n", OPTC_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "optc: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
