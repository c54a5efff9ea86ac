/* build.c — placeholder until its issue lands. */
#include <stdio.h>
#include "cli.h"

int cmd_emit(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "optc emit: not yet\n");
    return 1;
}

int cmd_build(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "optc build: not yet\n");
    return 1;
}
