/* compare.c — placeholder until its issue lands. */
#include <stdio.h>
#include "cli.h"

int cmd_compare(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "optc compare: not yet\n");
    return 1;
}
