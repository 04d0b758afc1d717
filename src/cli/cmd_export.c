/* a3 export MODEL_DIR -o model.gguf: a model as a llama.cpp GGUF file. */
#include <stdio.h>
#include <string.h>

#include "a3/gguf.h"
#include "a3/model.h"
#include "cli.h"

static const char *const CMD = "export";

static const char *HELP =
    "usage: a3 export MODEL_DIR -o MODEL.gguf [--type f32|f16|bf16|q8_0]\n"
    "                 [--force]\n\n"
    "Write a model (original, or compressed by a3 apply) as a GGUF v3 file\n"
    "that an unmodified llama.cpp loads and runs with a3's logits.\n"
    "Architecture \"llama\" when every layer has the same MLP width, else\n"
    "\"deci\" (per-layer widths). llama.cpp needs one head size for every\n"
    "layer, so reduced QK/OV widths are written zero-padded to the original\n"
    "head_dim (kept RoPE pairs at their original positions); reduced MLPs are\n"
    "written compact. The tokenizer (tokenizer.json, BPE) goes in as\n"
    "llama.cpp's \"llama\" (SentencePiece-style) or \"gpt2\" (byte-level) model.\n"
    "The file appears atomically.\n\n"
    "options:\n"
    "  -o, --output FILE  output .gguf (must not exist unless --force)\n"
    "  --type T           type of the 2-D weights: f32, f16 (default), bf16 or\n"
    "                     q8_0 (blocks of 32 with an f16 scale; weights whose rows\n"
    "                     are not a multiple of 32 stay f16); norms stay f32\n"
    "  --force            replace an existing FILE\n"
    "  -h, --help         show this help\n\n"
    "examples:\n"
    "  a3 export samples/sample-model -o sample.gguf --type f32\n"
    "  a3 export MODEL-a3 -o model-a3-q8.gguf --type q8_0\n"
    "  llama-cli -m model-a3-q8.gguf -p \"Once upon a time\"\n\n"
    "exit codes: 0 ok, 1 bad or unreadable input, 2 usage error,\n"
    "            3 unsupported model or tokenizer, 130 interrupted\n";

typedef struct {
    const char *model, *out;
    a3_gguf_export_opts o;
} export_args;

/* --type: one of the GGUF weight types. */
static int opt_type(const char *cmd, const char *opt, const char *val, void *ctx)
{
    if (a3_gguf_type_parse(val, ctx)) return cli_usage(cmd, "%s: expected f32, f16, bf16 or q8_0, got '%s'", opt, val);
    return 0;
}

static int parse(int argc, char **argv, export_args *a)
{
    memset(a, 0, sizeof *a);
    a->o.type = A3_GGUF_F16;
    const cli_opt opts[] = {CLI_OUTPUT(&a->out), CLI_FN("--type", opt_type, &a->o.type),
                            CLI_FLAG("--force", &a->o.force), {0}};
    const cli_opt pos[] = {CLI_STR("MODEL_DIR", &a->model), {0}};
    int rc = cli_parse(&(cli_spec){CMD, HELP, opts, pos}, argc, argv);
    if (rc) return rc;
    if (!a->model) return cli_usage(CMD, "missing MODEL_DIR");
    if (!a->out) return cli_usage(CMD, "missing -o MODEL.gguf");
    return 0;
}

static void print_report(const export_args *a, const a3_config *c, const a3_gguf_export_report *r)
{
    printf("wrote %s: GGUF v3, architecture %s, %s weights, %.2f MB\n", a->out, r->arch,
           a3_gguf_type_name(a->o.type), (double)r->bytes / 1e6);
    printf("  tokenizer   %s (pre-tokenizer %s), %d tokens\n", r->tok_model, r->tok_pre, c->vocab);
    printf("  attention   QK: %d of %d groups padded to head_dim %d, the rest full\n", r->qk_padded, r->n_groups,
           c->head_dim);
    printf("              OV: %d of %d groups padded to head_dim %d, the rest full\n", r->ov_padded, r->n_groups,
           c->head_dim);
    printf("  MLP         %d of %d layers compact (narrower than %d), the rest full\n", r->mlp_compact, c->n_layers,
           c->d_ff);
    if (r->n_fallback_f16)
        printf("  q8_0        %d weights stored f16 instead (rows not a multiple of 32)\n", r->n_fallback_f16);
    printf("  parameters  %lld in the model, %lld written (%+.1f%% from padding)\n", (long long)r->params_model,
           (long long)r->params_written,
           r->params_model ? 100.0 * (double)(r->params_written - r->params_model) / (double)r->params_model : 0.0);
}

int a3_cmd_export(int argc, char **argv)
{
    export_args a;
    int rc = parse(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
    a3_err err = {0};
    a3_model *m = NULL;
    if ((rc = a3_model_open(a.model, &m, &err))) return cli_fail(CMD, &err);
    cli_progress prog;
    cli_progress_init(&prog, "tensors");
    a.o.progress = cli_progress_cb;
    a.o.ctx = &prog;
    a3_gguf_export_report rep;
    rc = a3_gguf_export(m, a.out, &a.o, &rep, &err);
    cli_progress_end(&prog);
    if (rc == A3_OK) print_report(&a, a3_model_config(m), &rep);
    a3_model_free(m);
    return rc ? cli_fail(CMD, &err) : 0;
}
