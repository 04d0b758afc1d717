/* a3 synth --like PRESET -o DIR: a random-weight model of realistic shape. */
#include <stdio.h>
#include <string.h>

#include "a3/synth.h"
#include "cli.h"

static const char *HELP =
    "usage: a3 synth --like PRESET -o DIR [--layers K] [--dtype f32|f16|bf16]\n"
    "                [--seed S]\n\n"
    "Write a random-weight Hugging Face model (LlamaForCausalLM) with the\n"
    "dimensions of a real one, for benchmarks and tests. Weights are scaled\n"
    "so that activations stay in a realistic range.\n\n"
    "presets: tiny, tiny-gqa, llama-1b (d 2048, GQA 32/8), llama-7b (d 4096),\n"
    "         llama-13b (d 5120), llama-70b (d 8192, GQA 64/8)\n"
    "options:\n"
    "  -o, --output DIR  the model directory to write\n"
    "  --layers K   keep only K layers (to fit disk and memory)\n"
    "  --dtype D    weight dtype (default f16 for d >= 1024, else f32)\n"
    "  --seed S     generator seed (default 1)\n\n"
    "exit codes: 0 ok, 1 write failed, 2 usage\n\n"
    "example:\n"
    "  a3 synth --like llama-7b --layers 2 -o synth-7b && a3 info synth-7b\n";

int a3_cmd_synth(int argc, char **argv)
{
    const char *like = NULL, *out = NULL;
    long layers = 0, seed = 1;
    a3_dtype dtype = A3_DT_COUNT; /* the preset's */
    const cli_opt opts[] = {CLI_STR("--like", &like),
                            CLI_OUTPUT(&out),
                            CLI_FN("--dtype", cli_opt_dtype, &dtype),
                            CLI_INT("--layers", &layers, 1, 1024),
                            CLI_INT("--seed", &seed, 0, 1L << 62),
                            {0}};
    int rc = cli_parse(&(cli_spec){"synth", HELP, opts, NULL}, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (!like || !out) return cli_usage("synth", "--like and -o are required");
    a3_err err = {0};
    a3_synth_spec s;
    if (a3_synth_preset(like, &s, &err)) return cli_usage("synth", "%s", err.msg);
    if (layers) s.n_layers = (int)layers;
    s.seed = (uint64_t)seed;
    if (dtype != A3_DT_COUNT) s.dtype = dtype;
    if (a3_synth_write(out, &s, &err)) return cli_fail("synth", &err);
    printf("wrote %s: %s-like, %d layers, d %d, %d/%d heads, mlp %d, %s\n", out, like, s.n_layers, s.d,
           s.n_heads, s.n_kv_heads, s.d_ff, a3_dtype_name(s.dtype));
    return 0;
}
