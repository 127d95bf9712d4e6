#define _GNU_SOURCE /* pipe2 */
#include "proc.h"

#include "tclock.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static void *read_stderr(void *arg)
{
    proc *p = arg;
    char buf[4096];
    for (;;) {
        ssize_t n = read(p->fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        pthread_mutex_lock(&p->mu);
        if (n <= 0) {
            p->eof = true;
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        char *grown = realloc(p->log, p->loglen + (size_t)n + 1);
        if (grown) {
            p->log = grown;
            memcpy(p->log + p->loglen, buf, (size_t)n);
            p->loglen += (size_t)n;
            p->log[p->loglen] = '\0';
        }
        pthread_mutex_unlock(&p->mu);
        fwrite(buf, 1, (size_t)n, stderr); /* visible in ctest --output-on-failure */
    }
}

/*
 * The environment with overrides applied (without the inherited TALLY_* variables when
 * clean, but for TALLY_AUTH_* and TALLY_TOKEN): a malloc'd array of borrowed strings.
 */
static char **make_env(const char *const *over, bool clean)
{
    size_t n = 0, m = 0, k = 0;
    while (environ[n])
        n++;
    while (over && over[m])
        m++;
    char **env = calloc(n + m + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        size_t klen = strcspn(environ[i], "=");
        /* Clean drops the test run's storage, not its credentials (scripts/test). */
        bool replaced = clean && strncmp(environ[i], "TALLY_", 6) == 0 &&
                        strncmp(environ[i], "TALLY_AUTH_", 11) != 0 &&
                        strncmp(environ[i], "TALLY_TOKEN=", 12) != 0;
        for (size_t j = 0; j < m && !replaced; j++)
            replaced = strncmp(over[j], environ[i], klen) == 0 && over[j][klen] == '=';
        if (!replaced)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < m; j++)
        env[k++] = (char *)over[j];
    return env;
}

static int spawn_argv(proc *p, const char *path, char *const *argv, const char *const *over,
                      bool clean)
{
    int fds[2];
    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->mu, NULL);
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    char **env = make_env(over, clean);
    if (!env)
        return -1;
    p->pid = fork();
    if (p->pid == 0) {
        /* A test that fails an assertion exits at once: its servers must not outlive it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fds[1], STDERR_FILENO);
        execve(path, argv, env);
        _exit(127);
    }
    free(env);
    close(fds[1]);
    p->fd = fds[0];
    pthread_create(&p->reader, NULL, read_stderr, p);
    return p->pid > 0 ? 0 : -1;
}

static int spawn(proc *p, const char *path, const char *const *over)
{
    char *argv[] = { (char *)path, NULL };
    return spawn_argv(p, path, argv, over, false);
}

int proc_spawn(proc *p, char *const *argv, const char *const *env, bool clean)
{
    return spawn_argv(p, argv[0], argv, env, clean);
}

void proc_env_join(const char **out, size_t cap, const char *const *env, ...)
{
    va_list ap;
    size_t nfixed = 0, k = 0;
    va_start(ap, env);
    while (va_arg(ap, const char *))
        nfixed++;
    va_end(ap);
    for (size_t j = 0; env && env[j] && k + nfixed + 1 < cap; j++)
        out[k++] = env[j];
    va_start(ap, env);
    for (const char *v; (v = va_arg(ap, const char *)) && k + 1 < cap;)
        out[k++] = v;
    va_end(ap);
    out[k] = NULL;
}

int proc_start_projector(proc *p, int redis_port, const char *const *env)
{
    const char *vars[64];
    char url[64];
    snprintf(url, sizeof(url), "TALLY_REDIS_URL=redis://127.0.0.1:%d/0", redis_port);
    bool own_url = false; /* env names its own Redis URL (with a user, say) */
    for (size_t i = 0; env && env[i]; i++)
        own_url = own_url || strncmp(env[i], "TALLY_REDIS_URL=", 16) == 0;
    if (own_url)
        proc_env_join(vars, 64, env, "TALLY_HTTP_LISTEN=127.0.0.1:0", (const char *)NULL);
    else
        proc_env_join(vars, 64, env, url, "TALLY_HTTP_LISTEN=127.0.0.1:0", (const char *)NULL);
    char *argv[] = { (char *)PROJECTOR_PATH, NULL };
    if (proc_spawn(p, argv, vars, true) != 0)
        return -1;
    for (int waited = 0; waited < 10000; waited += 10, tclock_sleep_ms(10)) {
        p->http_port = proc_logged_port(p, "http server listening");
        if (p->http_port && proc_log_has(p, "\"msg\":\"projector consuming\""))
            return 0;
        if (proc_wait(p, 0) != -1)
            return -1;
    }
    return -1;
}

int proc_free_port(void)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int rc = fd >= 0 ? bind(fd, (struct sockaddr *)&sa, sizeof(sa)) : -1;
    if (rc == 0)
        rc = getsockname(fd, (struct sockaddr *)&sa, &sl);
    if (fd >= 0)
        close(fd);
    return rc == 0 ? ntohs(sa.sin_port) : -1;
}

bool proc_log_has(proc *p, const char *needle)
{
    pthread_mutex_lock(&p->mu);
    bool has = p->log && strstr(p->log, needle);
    pthread_mutex_unlock(&p->mu);
    return has;
}

bool proc_log_wait(proc *p, const char *needle, int timeout_ms)
{
    for (int64_t until = now_mono_ms() + timeout_ms; !proc_log_has(p, needle);) {
        if (now_mono_ms() >= until)
            return false;
        tclock_sleep_ms(10);
    }
    return true;
}

/* The number after "key": in the first log line whose msg is msg; 0 if not there yet. */
int proc_logged_port(proc *p, const char *msg)
{
    char needle[128];
    int port = 0;
    snprintf(needle, sizeof(needle), "\"msg\":\"%s\"", msg);
    pthread_mutex_lock(&p->mu);
    const char *line = p->log ? strstr(p->log, needle) : NULL;
    const char *at = line ? strstr(line, "\"port\":") : NULL;
    if (at && memchr(line, '\n', (size_t)(at - line)) == NULL) {
        const char *end = at + 7 + strspn(at + 7, "0123456789");
        if (*end == ',' || *end == '}') /* the whole number has arrived */
            port = atoi(at + 7);
    }
    pthread_mutex_unlock(&p->mu);
    return port;
}

int proc_start(proc *p, const char *path, const char *const *env)
{
    const char *over[32];
    size_t n = 0;
    over[n++] = "TALLY_GRPC_LISTEN=127.0.0.1:0";
    over[n++] = "TALLY_HTTP_LISTEN=127.0.0.1:0";
    for (; env && env[n - 2] && n < 31; n++)
        over[n] = env[n - 2];
    over[n] = NULL;
    if (spawn(p, path, over) != 0)
        return -1;
    for (int waited = 0; waited < 10000; waited += 10) {
        p->grpc_port = proc_logged_port(p, "grpc server listening");
        p->http_port = proc_logged_port(p, "http server listening");
        if (p->grpc_port && p->http_port)
            return 0;
        if (waitpid(p->pid, NULL, WNOHANG) == p->pid) {
            p->pid = 0;
            pthread_join(p->reader, NULL);
            close(p->fd);
            return -1;
        }
        tclock_sleep_ms(10);
    }
    return -1;
}

/* Whether every thread of pid is stopped (state T or t in /proc/pid/task/TID/stat). */
static bool all_threads_stopped(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return false;
    bool stopped = true;
    int threads = 0;
    for (struct dirent *e; stopped && (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char stat[600], buf[512];
        snprintf(stat, sizeof(stat), "%s/%s/stat", path, e->d_name);
        FILE *f = fopen(stat, "r");
        size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
        if (f)
            fclose(f);
        buf[n] = '\0';
        const char *paren = strrchr(buf, ')'); /* "tid (comm) S ...": comm may hold spaces */
        stopped = paren && paren[1] == ' ' && (paren[2] == 'T' || paren[2] == 't');
        threads++;
    }
    closedir(d);
    return stopped && threads > 0;
}

int proc_freeze(proc *p)
{
    if (p->pid <= 0 || kill(p->pid, SIGSTOP) != 0)
        return -1;
    for (int i = 0; i < 5000; i++, tclock_sleep_ms(1))
        if (all_threads_stopped(p->pid))
            return 0;
    return -1;
}

int proc_wait(proc *p, int timeout_ms)
{
    int status;
    for (int waited = 0; waited <= timeout_ms; waited += 5) {
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid) {
            p->pid = 0;
            pthread_join(p->reader, NULL);
            close(p->fd);
            if (WIFEXITED(status))
                return WEXITSTATUS(status);
            return 128 + WTERMSIG(status);
        }
        tclock_sleep_ms(5);
    }
    return -1;
}

int proc_run_argv(proc *p, char *const *argv, const char *const *env, bool clean, int timeout_ms)
{
    if (spawn_argv(p, argv[0], argv, env, clean) != 0)
        return -1;
    int rc = proc_wait(p, timeout_ms);
    if (rc == -1) {
        kill(p->pid, SIGKILL);
        proc_wait(p, 5000);
    }
    return rc;
}

int proc_run_output(char **out, const char *const *argv, int timeout_ms)
{
    return proc_run_output_env(out, argv, NULL, timeout_ms);
}

int proc_run_output_env(char **out, const char *const *argv, const char *const *env, int timeout_ms)
{
    static const char *const shell[] = { "/bin/sh", "-c", "exec \"$0\" \"$@\" 1>&2" };
    size_t n = 0;
    while (argv[n])
        n++;
    char **all = calloc(n + 4, sizeof(*all));
    int rc = -1;
    proc p = { 0 };
    if (all) {
        for (size_t i = 0; i < 3; i++)
            all[i] = (char *)shell[i];
        for (size_t i = 0; i < n; i++)
            all[3 + i] = (char *)argv[i];
        rc = proc_run_argv(&p, all, env, true, timeout_ms);
        free(all);
    }
    *out = strdup(p.log ? p.log : "");
    proc_release(&p);
    if (!*out)
        abort();
    return rc;
}

int proc_run_tally(char **out, int redis_port, int timeout_ms, const char *const *head,
                   va_list rest)
{
    char url[64];
    const char *argv[25] = { TALLY_BIN_DIR "/tally" };
    int n = 1;
    while (*head && n < 22)
        argv[n++] = *head++;
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", redis_port);
    argv[n++] = "--redis-url";
    argv[n++] = url;
    for (const char *a; n < 24 && (a = va_arg(rest, const char *));)
        argv[n++] = a;
    argv[n] = NULL;
    return proc_run_output(out, argv, timeout_ms);
}

int proc_run(proc *p, const char *path, const char *const *env, int timeout_ms)
{
    char *argv[] = { (char *)path, NULL };
    return proc_run_argv(p, argv, env, false, timeout_ms);
}

int proc_run_args(proc *p, const char *path, const char *arg1, const char *arg2, int timeout_ms)
{
    char *argv[] = { (char *)path, (char *)arg1, arg1 ? (char *)arg2 : NULL, NULL };
    return proc_run_argv(p, argv, NULL, false, timeout_ms);
}

int proc_stop(proc *p, int sig, int timeout_ms)
{
    if (p->pid <= 0)
        return -1;
    kill(p->pid, sig);
    int rc = proc_wait(p, timeout_ms);
    if (rc == -1) {
        kill(p->pid, SIGKILL);
        proc_wait(p, 5000);
    }
    return rc;
}

void proc_release(proc *p)
{
    if (p->pid > 0)
        proc_stop(p, SIGKILL, 5000);
    free(p->log);
    p->log = NULL;
    pthread_mutex_destroy(&p->mu);
}

int proc_http_get(int port, const char *path, char *body, size_t len)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    char req[256];
    size_t got = 0, cap = 65536;
    char *resp = malloc(cap);
    int status = -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (!resp || fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        goto out;
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n)
        goto out;
    for (ssize_t r; (r = read(fd, resp + got, cap - 1 - got)) > 0;) {
        got += (size_t)r;
        if (got == cap - 1) { /* the whole answer, however long: never a cut one */
            char *more = realloc(resp, cap * 2);
            if (!more)
                goto out;
            resp = more;
            cap *= 2;
        }
    }
    resp[got] = '\0';
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
        status = -1;
    const char *b = strstr(resp, "\r\n\r\n");
    if ((size_t)snprintf(body, len, "%s", b ? b + 4 : "") >= len)
        status = -1; /* the caller's buffer is too small for the body */
out:
    if (fd >= 0)
        close(fd);
    free(resp);
    return status;
}
