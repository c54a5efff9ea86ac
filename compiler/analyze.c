/* analyze.c — placeholder until its issue lands. */
#include <stdio.h>
#include "cli.h"

int cmd_analyze(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "optc analyze: not yet\n");
    return 1;
}
