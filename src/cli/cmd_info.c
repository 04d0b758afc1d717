/* a3 info MODEL: architecture, parameter counts per component, KV cache. */
#include <stdio.h>
#include <string.h>

#include "a3/model.h"
#include "cli.h"

static const char *HELP =
    "usage: a3 info MODEL_DIR\n\n"
    "Print a model's architecture, its parameter counts per component and\n"
    "its KV-cache size per token. MODEL_DIR is a Hugging Face directory\n"
    "(config.json + model.safetensors or a sharded index).\n\n"
    "exit codes: 0 ok, 1 bad model files, 2 usage, 3 unsupported model\n\n"
    "example:\n"
    "  a3 info llama-1b        # or an a3 output: a3 info llama-1b-a3\n";

static void row(const char *name, int64_t n, int64_t total)
{
    printf("  %-22s %14lld  %5.1f%%\n", name, (long long)n, total ? 100.0 * (double)n / (double)total : 0.0);
}

int a3_cmd_info(int argc, char **argv)
{
    const char *dir = NULL;
    const cli_opt pos[] = {CLI_STR("MODEL_DIR", &dir), {0}};
    int rc = cli_parse(&(cli_spec){"info", HELP, NULL, pos}, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (!dir) return cli_usage("info", "missing MODEL_DIR");
    a3_err err = {0};
    a3_model *m;
    if (a3_model_open(dir, &m, &err)) return cli_fail("info", &err);
    const a3_config *c = a3_model_config(m);
    a3_param_counts p;
    a3_model_count_params(c, &p);
    printf("model        %s\n", dir);
    printf("architecture %s%s\n", a3_arch_name(c->arch), c->compressed ? " (A3-compressed)" : "");
    printf("dtype        %s\n", a3_dtype_name(c->dtype));
    printf("layers %d, hidden %d, heads %d, kv heads %d (%s), head dim %d\n", c->n_layers, c->d,
           c->n_heads, c->n_kv_heads, c->n_kv_heads == c->n_heads ? "MHA" : "GQA", c->head_dim);
    printf("mlp width %d, vocab %d, context %d, rope theta %g%s%s\n", c->d_ff, c->vocab, c->max_seq,
           c->rope_theta, c->rope_llama3 ? " (llama3 scaling)" : "", c->qkv_bias ? ", q/k/v biases" : "");
    printf("parameters   %lld\n", (long long)p.total);
    row("embeddings", p.embed, p.total);
    if (p.lm_head) row("lm_head", p.lm_head, p.total);
    row("attention QK (q,k)", p.attn_qk, p.total);
    row("attention OV (v,o)", p.attn_ov, p.total);
    row("MLP (gate,up,down)", p.mlp, p.total);
    if (p.bias) row("biases", p.bias, p.total);
    row("norms", p.norms, p.total);
    int es = (int)a3_dtype_size(c->dtype);
    printf("KV cache     %lld bytes/token (%s)\n", (long long)a3_model_kv_bytes_per_token(c, es),
           a3_dtype_name(c->dtype));
    a3_model_free(m);
    return 0;
}
