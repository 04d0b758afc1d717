/* signals: real SIGINT/SIGTERM sent to real a3 runs ($A3_BIN) at known
 * points, and SIGKILLed runs' leftovers; what apply --force may replace. Every command that writes leaves
 * no temporary behind and exits 130; calibrate stops cooperatively
 * ("stopping"), keeps its finished layers, and its --resume writes the
 * bytes of an uninterrupted run; the next run removes a killed run's
 * temporaries. The runs are made to block at a chosen point by a FIFO in
 * place of a file they open (an open() of a FIFO waits for the other end),
 * so the signal lands mid-run deterministically. */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "a3/synth.h"
#include "helpers/files.h"
#include "helpers/run_a3.h"
#include "test.h"

static char g_tmp[64];

static char *at(char *buf, const char *name)
{
    snprintf(buf, 256, "%s/%s", g_tmp, name);
    return buf;
}

/* Entries of dir whose name contains ".tmp." */
static int count_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) n += strstr(e->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    return n;
}

/* A pid that is certainly not running: a child that has exited. */
static int dead_pid(void)
{
    pid_t p = fork();
    if (p == 0) _exit(0);
    waitpid(p, NULL, 0);
    return (int)p;
}

/* Waits (up to secs) until pid sleeps in open() of a FIFO with no other
 * end ("wait_for_partner" in /proc/PID/wchan): the point the FIFO was put
 * there to stop it at. A fixed sleep is not enough: under ASan on a loaded
 * machine the run may still be computing, and a signal that arrives before
 * it blocks finds it at another point (or, for calibrate, lets it reach the
 * FIFO afterwards and wait there for ever). Returns 1 once blocked, 0 on
 * timeout or when the process is gone. */
static int wait_fifo_blocked(int pid, int secs)
{
    char path[64], buf[64];
    snprintf(path, sizeof path, "/proc/%d/wchan", pid);
    for (int i = 0; i < secs * 100; i++) {
        FILE *f = fopen(path, "r");
        if (!f) return 0;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        if (strcmp(buf, "wait_for_partner") == 0) return 1;
        usleep(10000);
    }
    return 0;
}

/* Model m (8 small layers, random weights), ids file, cache, plan. */
static int setup(void)
{
    char m[256], ids[256], c[256], p[256], args[1200];
    a3_synth_spec s = {.arch = A3_ARCH_LLAMA, .d = 64, .n_layers = 8, .n_heads = 4, .n_kv_heads = 2,
                       .head_dim = 16, .d_ff = 96, .vocab = 50, .max_seq = 64, .rope_theta = 10000.0,
                       .dtype = A3_DT_F32, .seed = 3};
    a3_err err = {0};
    if (a3_synth_write(at(m, "m"), &s, &err)) return fprintf(stderr, "  synth: %s\n", err.msg), -1;
    unsigned char buf[4 * 2048];
    for (int i = 0; i < 2048; i++) tf_put_le32(buf + 4 * i, (uint32_t)(i * 7919u % 50u));
    if (tf_write_bytes(at(ids, "ids.bin"), buf, sizeof buf)) return -1;
    snprintf(args, sizeof args, "calibrate '%s' --ids '%s' --samples 8 --seqlen 32 -o '%s'", m, ids, at(c, "c.cache"));
    if (run_a3(args, NULL, NULL) != 0) return fprintf(stderr, "  calibrate failed\n"), -1;
    snprintf(args, sizeof args, "plan '%s' --keep qk=0.5,ov=0.5,mlp=0.5 -o '%s'", c, at(p, "p.json"));
    return run_a3(args, NULL, NULL) == 0 ? 0 : (fprintf(stderr, "  plan failed\n"), -1);
}

/* apply, interrupted while it copies the tokenizer (a FIFO): exit 130,
 * no OUT.tmp.<pid>/, no OUT. */
static void test_apply_sigint(void)
{
    if (!run_a3_bin() || !g_tmp[0]) SKIP("A3_BIN not set or setup failed");
    char m[256], c[256], p[256], out[256], tok[300], tmpdir[300], err[256];
    snprintf(tok, sizeof tok, "%s/tokenizer.json", at(m, "m"));
    CHECK(mkfifo(tok, 0644) == 0);
    const char *argv[] = {"apply", m, "--cache", at(c, "c.cache"), "--plan", at(p, "p.json"), "-o", at(out, "out"), NULL};
    int go, pid = run_a3_spawn(argv, at(err, "apply.err"), &go);
    CHECK(pid > 0);
    if (pid <= 0) return;
    snprintf(tmpdir, sizeof tmpdir, "%s.tmp.%d", out, pid);
    run_a3_go(go);
    int seen = run_a3_wait_for_file(tmpdir, 30, pid);
    CHECKF(seen, "OUT.tmp.<pid> never appeared");
    if (!seen) return;
    CHECKF(wait_fifo_blocked(pid, 120) == 1, "apply never blocked on the tokenizer FIFO");
    kill(pid, SIGINT);
    CHECK(run_a3_wait(pid) == 130);
    CHECKF(access(tmpdir, F_OK) != 0, "%s left behind", tmpdir);
    CHECK(access(out, F_OK) != 0);
    unlink(tok);
}

/* cache merge, SIGTERM while it writes CACHE.tmp.<pid> (a cache of a
 * 1B-sized shape takes long enough to write to catch it). */
static void test_merge_sigterm(void)
{
    if (!run_a3_bin() || !g_tmp[0]) SKIP("A3_BIN not set or setup failed");
    char big[256], out[256], tmpf[300], err[256], args[700];
    snprintf(args, sizeof args, "cache synth --like llama-1b --layers 8 -o '%s'", at(big, "big.cache"));
    CHECK(run_a3(args, NULL, NULL) == 0);
    int caught = 0;
    for (int tries = 0; tries < 5 && !caught; tries++) {
        const char *argv[] = {"cache", "merge", big, "--output", at(out, "merged.cache"), NULL};
        int go, pid = run_a3_spawn(argv, at(err, "merge.err"), &go);
        if (pid <= 0) break;
        snprintf(tmpf, sizeof tmpf, "%s.tmp.%d", out, pid);
        run_a3_go(go);
        if (!run_a3_wait_for_file(tmpf, 30, pid)) { /* finished first: try again */
            unlink(out);
            continue;
        }
        kill(pid, SIGTERM);
        caught = 1;
        CHECK(run_a3_wait(pid) == 130);
        CHECKF(access(tmpf, F_OK) != 0, "%s left behind", tmpf);
        CHECK(access(out, F_OK) != 0);
    }
    CHECKF(caught, "cache merge always finished before the signal");
    unlink(big);
}

/* calibrate: SIGINT while it writes layer 2's checkpoint (a FIFO): the
 * first signal prints "stopping", the run ends 130 keeping layer 1 and no
 * temporary; --resume then writes the bytes of an uninterrupted run. */
static void test_calibrate_interrupt_resume(void)
{
    if (!run_a3_bin() || !g_tmp[0]) SKIP("A3_BIN not set or setup failed");
    char m[256], ids[256], c1[256], c2[256], ck[300], fifo[400], err[256], args[1200];
    at(m, "m"), at(ids, "ids.bin"), at(c1, "r1.cache"), at(c2, "r2.cache");
    setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
    snprintf(args, sizeof args, "calibrate '%s' --ids '%s' --samples 8 --seqlen 32 -o '%s'", m, ids, c1);
    CHECK(run_a3(args, NULL, NULL) == 0);
    snprintf(ck, sizeof ck, "%s.ckpt", c2);
    CHECK(mkdir(ck, 0755) == 0);
    const char *argv[] = {"calibrate", m, "--ids", ids, "--samples", "8", "--seqlen", "32", "-o", c2, NULL};
    int go, pid = run_a3_spawn(argv, at(err, "calib.err"), &go);
    CHECK(pid > 0);
    if (pid <= 0) return;
    snprintf(fifo, sizeof fifo, "%s/layer-001.bin.tmp.%d", ck, pid);
    CHECK(mkfifo(fifo, 0644) == 0);
    run_a3_go(go);
    int blocked = wait_fifo_blocked(pid, 120); /* layer 1 done, blocked opening the FIFO */
    CHECKF(blocked == 1, "calibrate never blocked on the checkpoint FIFO");
    kill(pid, SIGINT);
    CHECK(run_a3_wait(pid) == 130);
    char *e = run_a3_slurp(err, NULL);
    CHECKF(e && strstr(e, "stopping") && strstr(e, "kept in") && strstr(e, "--resume"), "stderr: %s", e ? e : "");
    free(e);
    CHECK(count_tmp(ck) == 0);
    CHECK(access(c2, F_OK) != 0);
    /* A killed run's temporary in the checkpoint: removed and reported. */
    snprintf(fifo, sizeof fifo, "%s/hidden.f32.tmp.%d", ck, dead_pid());
    CHECK(tf_write_bytes(fifo, "junk", 4) == 0);
    snprintf(args, sizeof args, "calibrate '%s' --ids '%s' --samples 8 --seqlen 32 -o '%s' --resume", m, ids, c2);
    CHECK(run_a3(args, NULL, err) == 0);
    CHECKF(run_a3_file_has(err, "stale temporar"), "no note of the removed temporary");
    CHECK(access(ck, F_OK) != 0); /* checkpoint gone with its leftovers */
    size_t n1, n2;
    unsigned char *b1 = tf_read_bytes(c1, &n1), *b2 = tf_read_bytes(c2, &n2);
    CHECKF(b1 && b2 && n1 == n2 && memcmp(b1, b2, n1) == 0, "resumed cache differs from an uninterrupted run");
    free(b1), free(b2);
    unsetenv("SOURCE_DATE_EPOCH");
}

/* A directory left by a SIGKILLed apply (OUT.tmp.<dead pid>/) is removed by
 * the next apply to OUT, which says so. */
static void test_apply_stale_tmp(void)
{
    if (!run_a3_bin() || !g_tmp[0]) SKIP("A3_BIN not set or setup failed");
    char m[256], c[256], p[256], out[256], stale[300], f[400], err[256], args[1200];
    at(out, "out2");
    snprintf(stale, sizeof stale, "%s.tmp.%d", out, dead_pid());
    snprintf(f, sizeof f, "%s/model.safetensors", stale);
    CHECK(mkdir(stale, 0755) == 0 && tf_write_bytes(f, "half", 4) == 0);
    snprintf(args, sizeof args, "apply '%s' --cache '%s' --plan '%s' -o '%s'", at(m, "m"), at(c, "c.cache"),
             at(p, "p.json"), out);
    CHECK(run_a3(args, NULL, at(err, "stale.err")) == 0);
    CHECK(access(stale, F_OK) != 0);
    CHECK(run_a3_file_has(err, "stale temporar") && run_a3_file_has(err, stale));
    CHECK(access(out, F_OK) == 0);
}

/* --force replaces an apply output, and nothing else: not a directory of
 * the user's, not an apply output the user added a file to. It no longer
 * overrides the fingerprint check; --ignore-fingerprint does. */
static void test_apply_force(void)
{
    if (!run_a3_bin() || !g_tmp[0]) SKIP("A3_BIN not set or setup failed");
    char m[256], c[256], p[256], out[256], mine[256], err[256], f[400], args[1400];
    at(m, "m"), at(c, "c.cache"), at(p, "p.json"), at(out, "out3"), at(mine, "mine"), at(err, "force.err");
    snprintf(args, sizeof args, "apply '%s' --cache '%s' --plan '%s' -o '%s'", m, c, p, out);
    CHECK(run_a3(args, NULL, err) == 0);
    snprintf(args, sizeof args, "apply '%s' --cache '%s' --plan '%s' -o '%s' --force", m, c, p, out);
    CHECK(run_a3(args, NULL, err) == 0); /* its own output: replaced */
    /* a user's directory */
    snprintf(f, sizeof f, "%s/notes.txt", mine);
    CHECK(mkdir(mine, 0755) == 0 && tf_write_bytes(f, "mine", 4) == 0);
    snprintf(args, sizeof args, "apply '%s' --cache '%s' --plan '%s' -o '%s' --force", m, c, p, mine);
    CHECK(run_a3(args, NULL, err) == 2);
    CHECKF(run_a3_file_has(err, "not an a3 apply output"), "no clear refusal");
    CHECK(access(f, F_OK) == 0 && count_tmp(g_tmp) == 0);
    /* an apply output holding a file of the user's */
    snprintf(f, sizeof f, "%s/notes.txt", out);
    CHECK(tf_write_bytes(f, "mine", 4) == 0);
    snprintf(args, sizeof args, "apply '%s' --cache '%s' --plan '%s' -o '%s' --force", m, c, p, out);
    CHECK(run_a3(args, NULL, err) == 2 && run_a3_file_has(err, "notes.txt"));
    CHECK(access(f, F_OK) == 0);
    /* another model's cache: --force does not let it through */
    char m2[256], cmd[1200];
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s' && sed -i 's/\"rope_theta\":[[:space:]]*10000/\"rope_theta\": 20000/' '%s/config.json'", m,
             at(m2, "m2"), m2);
    CHECK(system(cmd) == 0);
    snprintf(args, sizeof args, "apply '%s' --cache '%s' --plan '%s' -o '%s/o4' --force", m2, c, p, g_tmp);
    CHECK(run_a3(args, NULL, err) == 4 && run_a3_file_has(err, "--ignore-fingerprint"));
    snprintf(args, sizeof args, "apply '%s' --cache '%s' --plan '%s' -o '%s/o4' --ignore-fingerprint", m2, c, p, g_tmp);
    CHECK(run_a3(args, NULL, err) == 0);
}

int main(void)
{
    if (run_a3_bin() && (!test_tmpdir(g_tmp, sizeof g_tmp) || setup() != 0)) {
        fprintf(stderr, "  signals: setup failed\n");
        if (g_tmp[0]) test_rm_rf(g_tmp);
        g_tmp[0] = 0;
    }
    RUN(test_apply_sigint);
    RUN(test_merge_sigterm);
    RUN(test_calibrate_interrupt_resume);
    RUN(test_apply_stale_tmp);
    RUN(test_apply_force);
    if (g_tmp[0]) test_rm_rf(g_tmp);
    return test_summary("signals");
}
