/* a3 cache merge SHARD... -o CACHE: combine sharded calibrations. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/cache.h"
#include "a3/calib.h"
#include "cli.h"

static const char *HELP =
    "usage: a3 cache merge SHARD.cache... -o CACHE\n\n"
    "Combine the caches written by 'a3 calibrate --shard K/N' (same model,\n"
    "text, samples, seqlen and seed; every K from 1 to N) into one cache.\n"
    "The statistics are sums over tokens, so the result equals a single\n"
    "run's to float64 round-off; the loss curves are recomputed.\n\n"
    "options:\n"
    "  -o, --output CACHE  the merged cache (written atomically)\n\n"
    "example: spread a calibration over a batch scheduler, a Slurm array:\n"
    "  #SBATCH --array=1-8\n"
    "  a3 calibrate MODEL --text T.txt --shard $SLURM_ARRAY_TASK_ID/8 \\\n"
    "      -o shard-$SLURM_ARRAY_TASK_ID.cache\n"
    "then: a3 cache merge shard-*.cache -o model.cache\n\n"
    "exit codes: 0 ok, 1 unreadable shard, 2 usage, 4 shards do not match\n";

int a3_cmd_cache_merge(int argc, char **argv)
{
    const char *out = NULL;
    int n = 0;
    const char **paths = calloc((size_t)argc + 1, sizeof *paths);
    if (!paths) return 1;
    const cli_opt opts[] = {CLI_OUTPUT(&out), {0}};
    const cli_opt pos[] = {CLI_LIST_CAP("SHARD.cache", paths, &n, argc), {0}};
    int prc = cli_parse(&(cli_spec){"cache merge", HELP, opts, pos}, argc, argv);
    if (prc) {
        free(paths);
        return prc < 0 ? 0 : prc;
    }
    if (!out || n < 1) {
        free(paths);
        return cli_usage("cache merge", "SHARD... and -o CACHE are required");
    }
    a3_err err = {0};
    a3_cache **shards = calloc((size_t)n, sizeof *shards), *merged = NULL;
    int rc = shards ? A3_OK : a3_err_set(&err, A3_ENOMEM, "out of memory");
    for (int i = 0; rc == A3_OK && i < n; i++) rc = a3_cache_load(paths[i], &shards[i], &err);
    if (rc == A3_OK) rc = a3_cache_merge(shards, paths, n, &merged, &err);
    if (rc == A3_OK) rc = a3_cache_save(merged, out, &err);
    if (rc == A3_OK) fprintf(stderr, "cache merge: wrote %s (%d shards, %lld tokens)\n", out, n, (long long)merged->n_tokens);
    for (int i = 0; shards && i < n; i++) a3_cache_free(shards[i]);
    a3_cache_free(merged);
    free(shards);
    free(paths);
    return rc ? cli_fail("cache merge", &err) : 0;
}
