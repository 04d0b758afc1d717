/* placeholder: replaced by the convert work in this session. */
#include <stdio.h>

#include "cli.h"

int a3_cmd_convert(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "a3 convert: not built yet\n");
    return 1;
}
