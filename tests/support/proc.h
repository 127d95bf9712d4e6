/*
 * proc: runs a service binary as a child process for the tests.
 *
 * proc_start() runs it with the current environment plus overrides, listening on free ports
 * (TALLY_GRPC_LISTEN and TALLY_HTTP_LISTEN with port 0), and waits until its JSON log says
 * where it listens. A thread keeps reading its stderr into a buffer the test can search, so
 * the child never blocks on a full pipe. proc_http_get() is a tiny HTTP/1.0 client.
 */
#ifndef TALLY_TEST_PROC_H
#define TALLY_TEST_PROC_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct proc {
    pid_t pid;
    int grpc_port, http_port;
    int fd; /* read end of the child's stderr */
    pthread_t reader;
    pthread_mutex_t mu;
    char *log; /* everything the child wrote to stderr so far, NUL-terminated */
    size_t loglen;
    bool eof;
} proc;

/* env: NULL, or "KEY=value" strings ended by NULL, overriding the inherited environment. */
int proc_start(proc *p, const char *path, const char *const *env);
/*
 * Starts argv[0] with argv and env overriding the inherited environment; with clean, no
 * inherited TALLY_* variable is passed on (a service of the test's own storage must not see the
 * stack's). Its stderr is read into p->log as for proc_start. 0, or -1.
 */
int proc_spawn(proc *p, char *const *argv, const char *const *env, bool clean);
/* The port of the child's log line whose msg is msg ("http server listening"); 0 until then. */
int proc_logged_port(proc *p, const char *msg);
/*
 * Starts the projector (PROJECTOR_PATH) against the Redis on 127.0.0.1:redis_port (unless env
 * has a TALLY_REDIS_URL of its own) with env overrides, no inherited TALLY_* variable and an
 * HTTP port of its own (p->http_port); waits up to 10 s until it consumes. 0, or -1 when it
 * could not start or exited (its log says why).
 */
int proc_start_projector(proc *p, int redis_port, const char *const *env);
/*
 * out := env's strings (NULL: none), then the further strings up to a NULL: a child's
 * environment overrides, NULL-terminated, at most cap entries with the NULL (env's are dropped
 * first when they do not fit). The strings are borrowed.
 */
void proc_env_join(const char **out, size_t cap, const char *const *env, ...);

/* A loopback TCP port that was free a moment ago. */
int proc_free_port(void);

/*
 * Runs argv[0] with argv to completion (env and clean as for proc_spawn; no port waiting):
 * its exit status, or -1 when it did not start or ran past timeout_ms (then it is killed). Its
 * stderr is in p->log; the caller releases p.
 */
int proc_run_argv(proc *p, char *const *argv, const char *const *env, bool clean, int timeout_ms);

/*
 * Runs argv[0] with argv to completion as proc_run_argv does (no inherited TALLY_* variable),
 * with its stdout sent to its stderr: both, in the order written, in *out (malloc'd, never
 * NULL; caller frees). Returns its exit status, or -1 when it did not start or timed out.
 */
int proc_run_output(char **out, const char *const *argv, int timeout_ms);

/* As proc_run_output, with the "KEY=value" strings of env (up to NULL; may be NULL) added. */
int proc_run_output_env(char **out, const char *const *argv, const char *const *env,
                        int timeout_ms);

/*
 * proc_run_output of `bin/tally <head...> --redis-url redis://127.0.0.1:<redis_port>/0
 * <rest...>`: head is NULL-terminated, rest a va_list of strings ending in NULL (24 words in all
 * at most).
 */
int proc_run_tally(char **out, int redis_port, int timeout_ms, const char *const *head,
                   va_list rest);

/* Runs path to completion (no port waiting); returns its exit status, or -1 on timeout. */
int proc_run(proc *p, const char *path, const char *const *env, int timeout_ms);

/* As proc_run with up to two arguments (arg2 ignored when arg1 is NULL) and the inherited
 * environment. */
int proc_run_args(proc *p, const char *path, const char *arg1, const char *arg2, int timeout_ms);

/* Sends sig and waits up to timeout_ms; returns the exit code, 128+signal, or -1 on timeout. */
int proc_stop(proc *p, int sig, int timeout_ms);

/*
 * SIGSTOP, then waits (up to 5 s) until every thread of the child is stopped: kill() returns
 * before the stop takes effect, and a child still running for a few ms can act on what the
 * test does next. 0, or -1 when it did not stop (the SIGSTOP stays sent).
 */
int proc_freeze(proc *p);

/* Waits up to timeout_ms for the child to exit by itself; as proc_stop. */
int proc_wait(proc *p, int timeout_ms);

/* True if the log so far contains needle. */
bool proc_log_has(proc *p, const char *needle);

/* Whether the log contains needle within timeout_ms (the reader thread may not have caught up
   with what the child just wrote). */
bool proc_log_wait(proc *p, const char *needle, int timeout_ms);

/* Frees the log; the child must have exited. */
void proc_release(proc *p);

/* GET path from 127.0.0.1:port; returns the status code and the body in body, or -1 (also
   when the body does not fit in len: never a cut one). */
int proc_http_get(int port, const char *path, char *body, size_t len);

#endif
