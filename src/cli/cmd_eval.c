/* a3 eval MODEL --text FILE: perplexity. */
#include <stdio.h>
#include <stdlib.h>

#include "a3/eval.h"
#include "cli.h"

static const char *HELP =
    "usage: a3 eval MODEL_DIR (--text FILE | --ids FILE) [options]\n\n"
    "Perplexity of a model on a text. Protocols:\n"
    "  stream      (default) the file is tokenized as one stream (BOS first),\n"
    "              cut into non-overlapping windows of --seqlen tokens; every\n"
    "              token after a window's first is predicted\n"
    "  paragraphs  blank-line-separated paragraphs, each encoded with BOS\n"
    "              and cut to --seqlen tokens\n"
    "The result is the mean next-token NLL over all predicted tokens. The\n"
    "speed line times the forward passes and scoring (not tokenizing or\n"
    "loading). Weights are mapped and read from the file as the passes use\n"
    "them, so a run after the model left the page cache also times reading\n"
    "it from disk (a 2.1 GB model: 29.6 against 58-60 tokens/s warm).\n\n"
    "options:\n"
    "  --text FILE         UTF-8 text, tokenized with the model's tokenizer\n"
    "  --ids FILE          pre-tokenized little-endian uint32 ids (stream)\n"
    "  --protocol P        stream | paragraphs\n"
    "  --seqlen N          window length (default: min(context, 2048))\n"
    "  --max-tokens N      stop after N tokens\n"
    "  --max-seqs N        stop after N windows/paragraphs\n"
    "  --threads N         threads (default: all cores)\n\n"
    "exit codes: 0 ok, 1 bad input, 2 usage, 3 unsupported model, 130 cancelled\n\n"
    "examples:\n"
    "  a3 eval llama-1b --text wiki.test.txt\n"
    "  a3 eval llama-1b-a3 --text valid.txt --protocol paragraphs --seqlen 512\n";

typedef struct {
    const char *model, *text, *ids;
    int proto; /* a3_eval_protocol: the index in --protocol's words */
    long seqlen, max_tokens, max_seqs, threads;
} eval_opts;

static int parse(int argc, char **argv, eval_opts *o)
{
    const cli_opt opts[] = {CLI_STR("--text", &o->text),
                            CLI_STR("--ids", &o->ids),
                            CLI_CHOICE("--protocol", &o->proto, "stream", "paragraphs"),
                            CLI_INT("--seqlen", &o->seqlen, 2, 1 << 20),
                            CLI_INT("--max-tokens", &o->max_tokens, 2, 1L << 40),
                            CLI_INT("--max-seqs", &o->max_seqs, 1, 1L << 30),
                            CLI_INT("--threads", &o->threads, 1, 256),
                            {0}};
    const cli_opt pos[] = {CLI_STR("MODEL_DIR", &o->model), {0}};
    int rc = cli_parse(&(cli_spec){"eval", HELP, opts, pos}, argc, argv);
    if (rc) return rc;
    if (!o->model) return cli_usage("eval", "missing MODEL_DIR");
    if (!o->text == !o->ids) return cli_usage("eval", "give exactly one of --text or --ids");
    if (o->ids && o->proto == A3_PROTO_PARAGRAPHS)
        return cli_usage("eval", "--protocol paragraphs needs --text");
    return 0;
}

static int build_seqs(const eval_opts *o, a3_model *m, a3_seqs *s, a3_err *err)
{
    int rc;
    if (o->ids) {
        int32_t *ids;
        size_t n;
        if ((rc = a3_tok_read_ids(o->ids, &ids, &n, err))) return rc;
        if ((rc = a3_tok_check_ids(o->ids, ids, n, a3_model_config(m)->vocab, err))) {
            free(ids);
            return rc;
        }
        rc = a3_seqs_from_ids(ids, n, (int)o->seqlen, (int)o->max_seqs, o->max_tokens, s, err);
        free(ids);
        return rc;
    }
    a3_tokenizer *tok;
    if ((rc = a3_tok_load_dir(a3_model_dir(m), &tok, err))) return rc;
    if ((rc = a3_tok_check_vocab(tok, a3_model_dir(m), a3_model_config(m)->vocab, err))) {
        a3_tok_free(tok);
        return rc;
    }
    char *text;
    size_t len;
    rc = a3_read_file(o->text, (size_t)1 << 32, &text, &len, err);
    if (rc == A3_OK) {
        rc = a3_seqs_from_text(tok, text, len, (a3_eval_protocol)o->proto, (int)o->seqlen, (int)o->max_seqs,
                               o->max_tokens, s, err);
        free(text);
    }
    a3_tok_free(tok);
    return rc;
}

int a3_cmd_eval(int argc, char **argv)
{
    eval_opts o = {0};
    int prc = parse(argc, argv, &o);
    if (prc) return prc < 0 ? 0 : prc;
    a3_err err = {0};
    a3_model *m;
    if (a3_model_open(o.model, &m, &err)) return cli_fail("eval", &err);
    a3_model_set_threads(m, (int)o.threads);
    const a3_config *c = a3_model_config(m);
    if (!o.seqlen) o.seqlen = a3_eval_default_seqlen(c);
    if (o.seqlen > c->max_seq) {
        fprintf(stderr, "eval: note: --seqlen %ld is beyond the model's context; using %d\n", o.seqlen, c->max_seq);
        o.seqlen = c->max_seq;
    }
    if (a3_config_check_seqlen(c, o.model, (int)o.seqlen, &err)) { /* before tokenizing */
        a3_model_free(m);
        return cli_fail("eval", &err);
    }
    a3_seqs s;
    a3_eval_result r;
    cli_progress pr;
    int rc = build_seqs(&o, m, &s, &err);
    if (rc == A3_OK) {
        cli_progress_init(&pr, "tok");
        rc = a3_eval_nll(m, &s, &r, cli_progress_cb, &pr, &err);
        cli_progress_end(&pr);
        a3_seqs_free(&s);
    }
    a3_model_free(m);
    if (rc) return cli_fail("eval", &err);
    printf("model       %s\n", o.model);
    printf("text        %s (%s protocol, seqlen %ld)\n", o.text ? o.text : o.ids,
           o.proto == A3_PROTO_STREAM ? "stream" : "paragraphs", o.seqlen);
    printf("tokens      %lld evaluated, %lld predicted\n", (long long)r.n_tokens, (long long)r.n_pred);
    printf("mean NLL    %.4f nats\n", r.mean_nll);
    printf("perplexity  %.4f\n", r.ppl);
    printf("speed       %.1f tokens/s (%.2f s)\n", (double)r.n_tokens / r.seconds, r.seconds);
    return 0;
}
