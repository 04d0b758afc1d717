/* a3 generate MODEL --prompt TEXT: sample text with a KV cache. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/kernels.h"
#include "a3/model.h"
#include "a3/tokenizer.h"
#include "cli.h"

static const char *HELP =
    "usage: a3 generate MODEL_DIR [--prompt TEXT] [-n N] [--temp T] [--seed S]\n\n"
    "Generate text. The prompt (default: empty) is encoded with BOS; tokens\n"
    "are sampled at temperature T (0 = greedy, the default) until N new\n"
    "tokens (default 256), EOS/BOS, or the model's context is reached.\n"
    "The text goes to stdout; the speed of the prompt (prefill) and of the\n"
    "new tokens (decoding) to stderr.\n\n"
    "options:\n"
    "  --prompt TEXT   text to continue\n"
    "  -n N            new tokens (default 256)\n"
    "  --temp T        temperature, 0 for greedy argmax (default 0)\n"
    "  --seed S        random seed for sampling (default 42)\n"
    "  --threads N     threads (default: all cores)\n\n"
    "exit codes: 0 ok, 1 bad input, 2 usage, 3 unsupported model\n\n"
    "examples:\n"
    "  a3 generate stories260K --prompt \"Once upon a time\" -n 64\n"
    "  a3 generate llama-1b-a3 --prompt \"The capital of France\" --temp 0.8\n";

/* xorshift64*: a tiny, reproducible generator (seeded per run). */
static double rng_uniform(uint64_t *s)
{
    *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
    return (double)((*s * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

static int sample(const float *logits, int vocab, double temp, uint64_t *rng)
{
    int best = 0;
    for (int v = 1; v < vocab; v++)
        if (logits[v] > logits[best]) best = v;
    if (temp <= 0) return best;
    double sum = 0, r;
    for (int v = 0; v < vocab; v++) sum += exp((logits[v] - logits[best]) / temp);
    r = rng_uniform(rng) * sum;
    for (int v = 0; v < vocab; v++) {
        r -= exp((logits[v] - logits[best]) / temp);
        if (r <= 0) return v;
    }
    return best;
}

typedef struct {
    const char *model, *prompt;
    long n, seed, threads;
    double temp;
} gen_opts;

static int parse(int argc, char **argv, gen_opts *o)
{
    const cli_opt opts[] = {CLI_STR("--prompt", &o->prompt),
                            CLI_INT("-n", &o->n, 1, 1 << 24),
                            CLI_DOUBLE("--temp", &o->temp, 0, 100),
                            CLI_INT("--seed", &o->seed, 0, 1L << 62),
                            CLI_INT("--threads", &o->threads, 1, 256),
                            {0}};
    const cli_opt pos[] = {CLI_STR("MODEL_DIR", &o->model), {0}};
    int rc = cli_parse(&(cli_spec){"generate", HELP, opts, pos}, argc, argv);
    if (rc) return rc;
    if (!o->model) return cli_usage("generate", "missing MODEL_DIR");
    return 0;
}

static int run(const gen_opts *o, a3_model *m, a3_tokenizer *tok, a3_err *err)
{
    const a3_config *c = a3_model_config(m);
    int32_t *ids;
    size_t n;
    const char *p = o->prompt ? o->prompt : "";
    int rc = a3_tok_encode(tok, p, strlen(p), 1, &ids, &n, err);
    if (rc) return rc;
    if (n == 0) return a3_err_set(err, A3_EINVAL, "empty prompt and the tokenizer has no BOS");
    int max_len = (int)(n + (size_t)o->n) < c->max_seq ? (int)n + (int)o->n : c->max_seq;
    if ((int)n >= max_len) {
        free(ids);
        return a3_err_set(err, A3_EINVAL, "prompt of %zu tokens fills the context (%d)", n, c->max_seq);
    }
    a3_decoder *dec = NULL;
    float *logits = malloc((size_t)c->vocab * sizeof(float));
    uint64_t rng = (uint64_t)o->seed * 2654435761ULL + 88172645463325252ULL;
    rc = logits ? a3_decoder_new(m, max_len, &dec, err) : a3_err_set(err, A3_ENOMEM, "out of memory");
    double t0 = a3_now(), t1 = t0;
    int made = 0;
    if (rc == A3_OK) rc = a3_decoder_step(dec, ids, (int)n, logits, err);
    t1 = a3_now();
    int prev = ids[n - 1];
    fputs(p, stdout);
    for (int pos = (int)n; rc == A3_OK && pos < max_len; pos++) {
        int32_t next = sample(logits, c->vocab, o->temp, &rng);
        if (next == a3_tok_eos(tok) || next == a3_tok_bos(tok)) break;
        char buf[256];
        int w = a3_tok_decode(tok, prev, next, buf, sizeof buf);
        if (w > 0) fwrite(buf, 1, (size_t)w, stdout);
        fflush(stdout);
        prev = next;
        if (pos + 1 < max_len) rc = a3_decoder_step(dec, &next, 1, logits, err);
        made += rc == A3_OK && pos + 1 < max_len;
    }
    fputc('\n', stdout);
    fflush(stdout);
    double t2 = a3_now();
    char pf[40];
    if (rc == A3_OK) /* decoding rate: steps after the prompt, each one token */
        fprintf(stderr,
                "prompt %zu tokens in %.3f s (%.1f tokens/s), decoded %d tokens in %.3f s (%.2f tokens/s)\n"
                "matvec %s, prefetch %s\n",
                n, t1 - t0, (double)n / (t1 - t0 > 0 ? t1 - t0 : 1e-9), made, t2 - t1,
                made / (t2 - t1 > 0 ? t2 - t1 : 1e-9), a3_k_impl(), a3_k_prefetch(pf, sizeof pf));
    a3_decoder_free(dec);
    free(logits);
    free(ids);
    return rc;
}

int a3_cmd_generate(int argc, char **argv)
{
    gen_opts o = {.n = 256, .seed = 42};
    int prc = parse(argc, argv, &o);
    if (prc) return prc < 0 ? 0 : prc;
    a3_err err = {0};
    a3_model *m;
    a3_tokenizer *tok;
    if (a3_model_open(o.model, &m, &err)) return cli_fail("generate", &err);
    a3_model_set_threads(m, (int)o.threads);
    if (a3_tok_load_dir(o.model, &tok, &err)) {
        a3_model_free(m);
        return cli_fail("generate", &err);
    }
    if (a3_tok_check_vocab(tok, o.model, a3_model_config(m)->vocab, &err)) {
        a3_tok_free(tok);
        a3_model_free(m);
        return cli_fail("generate", &err);
    }
    int rc = run(&o, m, tok, &err);
    a3_tok_free(tok);
    a3_model_free(m);
    return rc ? cli_fail("generate", &err) : 0;
}
