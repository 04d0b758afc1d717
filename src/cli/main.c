/* a3: command dispatcher. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/blas.h"
#include "a3/cleanup.h"
#include "a3/kernels.h"
#include "a3/pool.h"
#include "cli.h"
#include "opt.h"

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

static const command COMMANDS[] = {
    {"info", a3_cmd_info, "architecture, parameter counts, KV-cache size of a model"},
    {"eval", a3_cmd_eval, "perplexity of a model on a text file"},
    {"generate", a3_cmd_generate, "generate text from a prompt"},
    {"tokenize", a3_cmd_tokenize, "show how a text tokenizes, write an --ids file"},
    {"calibrate", a3_cmd_calibrate, "gather A3 statistics and loss curves into a cache"},
    {"cache", a3_cmd_cache, "inspect or merge calibration caches"},
    {"plan", a3_cmd_plan, "make or show a rank plan under a budget"},
    {"probe", a3_cmd_probe, "exact loss curves and NLL sensitivities (CACHE.pred)"},
    {"tui", a3_cmd_tui, "interactive rank planner"},
    {"apply", a3_cmd_apply, "compress a model with a cache and a plan"},
    {"export", a3_cmd_export, "write a model as a llama.cpp GGUF file"},
    {"convert", a3_cmd_convert, "llama2.c checkpoint -> Hugging Face directory"},
    {"synth", a3_cmd_synth, "write a random-weight model of realistic shape"},
    {"doctor", a3_cmd_doctor, "CPU features, BLAS kernel and sgemm speed"},
};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: a3 COMMAND [OPTIONS]   (a3 COMMAND --help for each)\n\n"
            "Compress LLaMA-family models with A3 (analytical low-rank\n"
            "approximation of attention and MLP).\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(fp, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(fp,
            "\nexit codes: 0 ok, 1 failure or bad input file, 2 usage error,\n"
            "            3 unsupported model, 4 mismatched inputs, 130 cancelled\n");
}

int main(int argc, char **argv)
{
    a3_blas_startup(argc, argv);
    /* The kernels read A3_MATVEC_PREFETCH themselves and would take a
     * misspelt value for "auto": refuse it here, before any work. */
    const char *pf = getenv("A3_MATVEC_PREFETCH");
    if (pf && *pf && a3_k_set_prefetch(pf) != A3_OK) {
        fprintf(stderr, "a3: A3_MATVEC_PREFETCH=%s: expected none, l1, l2 or auto\n", pf);
        return 2;
    }
    /* Likewise the pool's polling limit (a3_pool_set_spin_us). */
    const char *sp = getenv("A3_POOL_SPIN_US");
    long us;
    if (sp && *sp && (!cli_long(sp, 0, A3_POOL_SPIN_MAX_US, &us) || a3_pool_set_spin_us(us) != 0)) {
        fprintf(stderr, "a3: A3_POOL_SPIN_US=%s: expected microseconds from 0 to %ld\n", sp, A3_POOL_SPIN_MAX_US);
        return 2;
    }
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (cli_is_help(argv[1]) || (strcmp(argv[1], "help") == 0 && argc == 2)) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "help") == 0) {
        /* "a3 help CMD [SUB]" is "a3 CMD [SUB] --help": argv[1] becomes the
         * command, the slot after the last word the flag. */
        char *help[4] = {argv[2], argc > 3 ? argv[3] : "--help", argc > 3 ? "--help" : NULL, NULL};
        if (argc > 4) {
            fprintf(stderr, "a3 help: expected 'a3 help COMMAND [SUBCOMMAND]'\n");
            return 2;
        }
        for (size_t i = 0; i < N_COMMANDS; i++)
            if (strcmp(argv[2], COMMANDS[i].name) == 0) return COMMANDS[i].fn(argc - 1, help);
        fprintf(stderr, "a3 help: unknown command '%s' (see 'a3 --help')\n", argv[2]);
        return 2;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("a3 %s\n", A3_VERSION);
        return 0;
    }
    /* Ctrl-C/SIGTERM remove the temporaries of every command and exit 130
     * (calibrate and the TUI install their own, cooperative, handling). */
    a3_cleanup_install(NULL);
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], COMMANDS[i].name) == 0) {
            int rc = COMMANDS[i].fn(argc - 1, argv + 1);
            const char *last;
            int n = a3_cleanup_swept(&last);
            if (n)
                fprintf(stderr, "a3: removed %d stale temporar%s of a killed run (%s)\n", n, n > 1 ? "ies" : "y",
                        A3_ESC(last));
            return rc;
        }
    fprintf(stderr, "a3: unknown command '%s' (see 'a3 --help')\n", argv[1]);
    return 2;
}
