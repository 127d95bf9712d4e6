/*
 * opts.c: what tally-sim's subcommands share: messages, option values, signals, counts.
 */
#include "sim_int.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void sim_say(const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "tally-sim: %s\n", line);
}

int sim_parse_int(const char *opt, const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        sim_say("%s: must be an integer from %lld to %lld, got \"%s\"", opt, (long long)min,
                (long long)max, s);
        return -1;
    }
    *out = v;
    return 0;
}

int sim_parse_double(const char *opt, const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < min || v > max) {
        sim_say("%s: must be a number from %g to %g, got \"%s\"", opt, min, max, s);
        return -1;
    }
    *out = v;
    return 0;
}

static void signal_set(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
}

void sim_block_signals(void)
{
    sigset_t set;
    signal_set(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int sim_wait_signal(int64_t ms)
{
    sigset_t set;
    signal_set(&set);
    if (ms < 0)
        ms = 0;
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
    int sig;
    do
        sig = sigtimedwait(&set, NULL, &ts);
    while (sig < 0 && errno == EINTR);
    return sig > 0 ? sig : 0;
}

const char *sim_count(char *buf, int len, int64_t n)
{
    char digits[32];
    int nd = snprintf(digits, sizeof(digits), "%lld", (long long)(n < 0 ? -n : n)), k = 0;
    if (n < 0 && k < len - 1)
        buf[k++] = '-';
    for (int i = 0; i < nd && k < len - 1; i++) {
        if (i > 0 && (nd - i) % 3 == 0 && k < len - 1)
            buf[k++] = ',';
        if (k < len - 1)
            buf[k++] = digits[i];
    }
    buf[k] = '\0';
    return buf;
}
