/* a3 convert: llama2.c checkpoint + tokenizer.bin -> HF model directory. */
#include <stdio.h>
#include <string.h>

#include "a3/llama2c.h"
#include "cli.h"

static const char *const CMD = "convert";

static const char *HELP =
    "usage: a3 convert CHECKPOINT.bin --tokenizer TOKENIZER.bin -o OUTDIR\n"
    "                  [--dtype f32|f16|bf16] [--force]\n\n"
    "Convert a llama2.c float32 checkpoint (legacy or version 1 layout) to a\n"
    "Hugging Face directory: config.json (LlamaForCausalLM), model.safetensors\n"
    "(wq/wk rows reordered for HF's rotate-half RoPE) and tokenizer.json.\n"
    "OUTDIR appears atomically; nothing is left behind on failure.\n\n"
    "options:\n"
    "  --tokenizer PATH  llama2.c tokenizer.bin for this model (required)\n"
    "  -o, --output DIR  output directory (must not exist unless --force)\n"
    "  --dtype D         stored weight dtype: f32 (default), f16 or bf16\n"
    "  --force           replace an existing OUTDIR (only a file or a model\n"
    "                    directory: one holding config.json, no subdirectories)\n"
    "  -h, --help        show this help\n\n"
    "example:\n"
    "  a3 convert stories260K.bin --tokenizer tok512.bin -o stories260K-hf\n\n"
    "exit codes: 0 ok, 1 bad or unreadable input, 2 usage error,\n"
    "            3 unsupported checkpoint (e.g. int8 version 2)\n";

typedef struct {
    const char *ckpt, *tok, *out;
    a3_llama2c_convert_opts opts;
} convert_args;

static int parse_args(int argc, char **argv, convert_args *a)
{
    memset(a, 0, sizeof *a);
    a->opts.dtype = A3_DT_F32;
    const cli_opt opts[] = {CLI_STR("--tokenizer", &a->tok), CLI_OUTPUT(&a->out),
                            CLI_FN("--dtype", cli_opt_dtype, &a->opts.dtype), CLI_FLAG("--force", &a->opts.force),
                            {0}};
    const cli_opt pos[] = {CLI_STR("CHECKPOINT.bin", &a->ckpt), {0}};
    int rc = cli_parse(&(cli_spec){CMD, HELP, opts, pos}, argc, argv);
    if (rc) return rc;
    if (!a->ckpt) return cli_usage(CMD, "missing CHECKPOINT.bin");
    if (!a->tok) return cli_usage(CMD, "missing --tokenizer TOKENIZER.bin");
    if (!a->out) return cli_usage(CMD, "missing -o OUTDIR");
    return 0;
}

int a3_cmd_convert(int argc, char **argv)
{
    convert_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
    cli_progress prog;
    cli_progress_init(&prog, "tensors");
    a.opts.progress = cli_progress_cb;
    a.opts.progress_ctx = &prog;
    a3_err err = {0};
    rc = a3_llama2c_convert(a.ckpt, a.tok, a.out, &a.opts, &err);
    cli_progress_end(&prog);
    if (rc == A3_EINVAL && !a.opts.force) {
        /* without force the only EINVAL is an existing output */
        fprintf(stderr, "a3 convert: %s (use --force to replace it)\n", err.msg);
        return a3_err_exit_status(rc);
    }
    if (rc) return cli_fail(CMD, &err);
    printf("wrote %s (%s)\n", a.out,
           a.opts.dtype == A3_DT_F16 ? "f16" : a.opts.dtype == A3_DT_BF16 ? "bf16" : "f32");
    return 0;
}
