/* placeholder: replaced by the doctor work in this session. */
#include <stdio.h>

#include "cli.h"

int a3_cmd_doctor(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "a3 doctor: not built yet\n");
    return 1;
}
