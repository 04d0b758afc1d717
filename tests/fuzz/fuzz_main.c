/* libFuzzer entry for one target, chosen at compile time with
 * -DFZ_TARGET=\"name\" (`make fuzz` builds one binary per target). */
#include <stdio.h>
#include <stdlib.h>

#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const fz_target *t;
    if (!t && !(t = fz_find(FZ_TARGET))) {
        fprintf(stderr, "fuzz: no target named %s\n", FZ_TARGET);
        exit(2);
    }
    (void)t->fn(data, size);
    return 0;
}
