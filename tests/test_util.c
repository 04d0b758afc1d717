/* util: the small shared helpers that guard against hostile input --
 * escaping untrusted text for messages, finding NaN/Inf, reading files
 * (including pipes) to the end. */
#include <math.h>
#include <stdint.h>

#include <sys/wait.h>

#include "a3/json.h"
#include "a3/util.h"
#include "test.h"

static void test_escape(void)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"plain key", "plain key"},
        {"tab\there", "tab\\there"},
        {"two\nlines\r", "two\\nlines\\r"},
        {"\x1b[2J\x1b]0;pwned\x07", "\\x1b[2J\\x1b]0;pwned\\x07"},
        {"del\x7f", "del\\x7f"},
        {"back\\slash", "back\\\\slash"},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"}, /* UTF-8 kept */
        {"c1 csi \xc2\x9b" "31m", "c1 csi \\u009b31m"},
        {"raw csi \x9b" "31m", "raw csi \\x9b31m"},
        {"overlong \xc0\xaf", "overlong \\xc0\\xaf"},
        {"surrogate \xed\xa0\x80", "surrogate \\xed\\xa0\\x80"},
        {"cut \xe2\x82", "cut \\xe2\\x82"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[128];
        a3_escape(cases[i].in, buf, sizeof buf);
        CHECKF(strcmp(buf, cases[i].out) == 0, "case %zu: got '%s'", i, buf);
    }
    /* Long input is cut with "...", never mid-escape, within the buffer. */
    char big[300], buf[16];
    memset(big, '\n', sizeof big - 1);
    big[sizeof big - 1] = 0;
    a3_escape(big, buf, sizeof buf);
    CHECKF(strlen(buf) < sizeof buf && strcmp(buf + strlen(buf) - 3, "...") == 0 && strncmp(buf, "\\n\\n", 4) == 0,
           "got '%s'", buf);
    CHECK(strlen(buf) % 2 == 1); /* whole "\n" pairs, then "..." */
    CHECK(strcmp(A3_ESC("a\nb"), "a\\nb") == 0);
}

static void test_find_nonfinite(void)
{
    float x[3000];
    for (int i = 0; i < 3000; i++) x[i] = (float)i;
    CHECK(a3_find_nonfinite(x, 3000) == -1);
    CHECK(a3_find_nonfinite(x, 0) == -1);
    x[2500] = NAN;
    x[2999] = INFINITY;
    CHECK(a3_find_nonfinite(x, 3000) == 2500);
    CHECK(a3_find_nonfinite(x, 2500) == -1);
    x[1023] = -INFINITY;
    CHECK(a3_find_nonfinite(x, 3000) == 1023);
}

/* A pipe reports st_size 0: the whole stream is still read, across many
 * partial reads, and max_bytes still applies. */
static void test_read_pipe(void)
{
    int fd[2];
    CHECK(pipe(fd) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        char block[1000];
        for (int i = 0; i < 300; i++) {
            memset(block, 'a' + i % 26, sizeof block);
            if (write(fd[1], block, sizeof block) != (ssize_t)sizeof block) _exit(1);
        }
        _exit(0);
    }
    close(fd[1]);
    char path[64], *buf = NULL;
    size_t n = 0;
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd[0]);
    a3_err err = {0};
    CHECKF(a3_read_file(path, 1 << 20, &buf, &n, &err) == A3_OK, "%s", err.msg);
    CHECK(n == 300000 && buf && buf[0] == 'a' && buf[299999] == 'a' + 299 % 26 && buf[n] == 0);
    free(buf);
    close(fd[0]);
    waitpid(pid, NULL, 0);
    /* over the limit: refused, not cut */
    CHECK(pipe(fd) == 0);
    if ((pid = fork()) == 0) {
        close(fd[0]);
        char block[5000] = {0};
        if (write(fd[1], block, sizeof block) != (ssize_t)sizeof block) _exit(1);
        _exit(0);
    }
    close(fd[1]);
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd[0]);
    CHECK(a3_read_file(path, 4096, &buf, &n, &err) == A3_EFORMAT && strstr(err.msg, "too large"));
    close(fd[0]);
    waitpid(pid, NULL, 0);
}

static void test_json_strict(void)
{
    static const struct {
        const char *text, *expect;
    } bad[] = {
        {"{\"a\":1}x", "data after the value at line 1, column 8"},
        {"{\"a\":1}\n\n  {}", "data after the value at line 3, column 3"},
        {"{\"a\":1,\"b\":{\"c\":1,\"c\":2}}", "key \"c\" appears twice"},
        {"{\"a\":1,\"a\":1}", "key \"a\" appears twice"},
        {"{\"k\":\"\xc3\x28\"}", "not valid UTF-8"},
        {"{\"a\":", "syntax error at line 1, column 5"},
        {"{\"\x1b[31m\":1,\"\x1b[31m\":2}", "key \"\\x1b[31m\" appears twice"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cJSON *r = (cJSON *)1;
        a3_err err = {0};
        CHECKF(a3_json_parse("f.json", bad[i].text, strlen(bad[i].text), &r, &err) == A3_EFORMAT && !r &&
                   strstr(err.msg, bad[i].expect) && strstr(err.msg, "f.json"),
               "case %zu: '%s'", i, err.msg);
    }
    const char *ok = " {\"a\":[{\"x\":1},{\"x\":2}],\"b\":\"caf\xc3\xa9\"}\n";
    cJSON *r = NULL;
    a3_err err = {0};
    CHECK(a3_json_parse("f.json", ok, strlen(ok), &r, &err) == A3_OK && r);
    cJSON_Delete(r);
    /* a large object: duplicates found by sorting, not pairwise */
    size_t cap = 200000 * 16, n = 0;
    char *big = malloc(cap);
    if (!big) return;
    n += (size_t)snprintf(big + n, cap - n, "{");
    for (int i = 0; i < 200000; i++) n += (size_t)snprintf(big + n, cap - n, "%s\"t%d\":%d", i ? "," : "", i, i);
    n += (size_t)snprintf(big + n, cap - n, ",\"t123456\":0}");
    CHECK(a3_json_parse("big.json", big, n, &r, &err) == A3_EFORMAT && strstr(err.msg, "t123456"));
    free(big);
}

int main(void)
{
    RUN(test_escape);
    RUN(test_find_nonfinite);
    RUN(test_read_pipe);
    RUN(test_json_strict);
    return test_summary("util");
}
