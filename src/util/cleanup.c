/* cleanup: see include/a3/cleanup.h. */
#define _GNU_SOURCE
#include "a3/cleanup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "a3/util.h"

/* A fixed table: the handler must not follow pointers that the main thread
 * may be freeing. A slot's path is written before `used` is set and `used`
 * is cleared before the path is reused, so the handler sees whole paths. */
#define SLOTS 64
static struct {
    volatile sig_atomic_t used;
    char path[PATH_MAX];
} g_slot[SLOTS];
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile sig_atomic_t g_signals;
static const char *g_stop_msg;
static int g_installed;
static int g_swept;
static char g_swept_last[PATH_MAX];

int a3_cleanup_add(const char *path)
{
    if (strlen(path) >= PATH_MAX) return -1;
    pthread_mutex_lock(&g_lock);
    int rc = -1;
    for (int i = 0; i < SLOTS && rc < 0; i++)
        if (!g_slot[i].used) {
            memcpy(g_slot[i].path, path, strlen(path) + 1);
            __atomic_signal_fence(__ATOMIC_SEQ_CST);
            g_slot[i].used = 1;
            rc = 0;
        }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

void a3_cleanup_forget(const char *path)
{
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < SLOTS; i++)
        if (g_slot[i].used && strcmp(g_slot[i].path, path) == 0) {
            g_slot[i].used = 0;
            break;
        }
    pthread_mutex_unlock(&g_lock);
}

/* getdents64 records; glibc has no async-signal-safe readdir. */
struct dirent64_raw {
    unsigned long long d_ino;
    long long d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

void a3_cleanup_remove(const char *path)
{
    if (unlink(path) == 0 || (errno != EISDIR && errno != EPERM)) return;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return;
    char buf[4096] __attribute__((aligned(8)));
    for (int pass = 0; pass < 64; pass++) { /* entries shift as they go */
        long n = syscall(SYS_getdents64, fd, buf, sizeof buf), removed = 0;
        if (n <= 0) break;
        for (long at = 0; at < n;) {
            struct dirent64_raw *e = (struct dirent64_raw *)(void *)(buf + at);
            at += e->d_reclen;
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            removed += unlinkat(fd, e->d_name, 0) == 0;
        }
        if (lseek(fd, 0, SEEK_SET) != 0 || !removed) break;
    }
    close(fd);
    rmdir(path);
}

static void remove_all(void)
{
    for (int i = 0; i < SLOTS; i++)
        if (g_slot[i].used) {
            a3_cleanup_remove(g_slot[i].path);
            g_slot[i].used = 0;
        }
}

static void on_signal(int sig)
{
    (void)sig;
    int first = g_signals == 0;
    g_signals = g_signals + 1;
    if (first && g_stop_msg) {
        ssize_t w = write(2, g_stop_msg, strlen(g_stop_msg));
        (void)w;
        return;
    }
    remove_all();
    _exit(130);
}

static void at_exit(void) { remove_all(); }

int a3_cleanup_install(const char *stop_msg)
{
    g_stop_msg = stop_msg;
    if (g_installed) return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0) return -1;
    g_installed = 1;
    return atexit(at_exit) == 0 ? 0 : -1;
}

int a3_cleanup_interrupted(void) { return g_signals; }

int a3_cleanup_swept(const char **last)
{
    if (last) *last = g_swept ? g_swept_last : NULL;
    return g_swept;
}

/* Called by a3_tmp_path: remove "<base>.tmp.<pid>[.suffix]" siblings of
 * path whose pid is not a live process (their run was killed). */
void a3__tmp_sweep(const char *path);
void a3__tmp_sweep(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX] = ".";
    const char *base = slash ? slash + 1 : path;
    size_t bl = strlen(base);
    if (!bl) return;
    if (slash == path) strcpy(dir, "/");
    else if (slash) {
        size_t dl = (size_t)(slash - path);
        if (dl >= sizeof dir) return;
        memcpy(dir, path, dl);
        dir[dl] = 0;
    }
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        const char *n = e->d_name;
        if (strncmp(n, base, bl) != 0 || strncmp(n + bl, ".tmp.", 5) != 0) continue;
        char *end;
        long pid = strtol(n + bl + 5, &end, 10);
        if (end == n + bl + 5 || pid <= 0 || pid == (long)getpid() || (*end && *end != '.')) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours to judge */
        char full[PATH_MAX];
        if ((size_t)snprintf(full, sizeof full, "%s/%s", dir, n) >= sizeof full) continue;
        a3_cleanup_remove(full);
        g_swept++;
        memcpy(g_swept_last, full, strlen(full) + 1);
    }
    closedir(d);
}
