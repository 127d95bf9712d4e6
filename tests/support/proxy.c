#define _GNU_SOURCE /* memmem */
#include "proxy.h"

#include "now.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct proxy_pump {
    proxy *p;
    int a, b; /* the client's socket, the upstream's */
    atomic_bool frozen;
};

static void nap_ms(int ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static bool write_all(int fd, const char *buf, ssize_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, buf, (size_t)n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return false;
        buf += k;
        n -= k;
    }
    return true;
}

static void forget_sock(proxy *p, int fd)
{
    for (int i = 0; i < p->nsocks; i++)
        if (p->socks[i] == fd) {
            p->socks[i] = p->socks[--p->nsocks];
            return;
        }
}

/* How long a chunk read from the client waits before it is forwarded: hold_ms or 0. */
static int hold_for(proxy *p, const char *buf, ssize_t n)
{
    int ms = 0;
    pthread_mutex_lock(&p->mu);
    if (p->hold[0] && memmem(buf, (size_t)n, p->hold, strlen(p->hold))) {
        ms = p->hold_ms;
        p->held_msgs++;
    }
    pthread_mutex_unlock(&p->mu);
    return ms;
}

/* Whether a chunk read from the client drops its connection; notes a watched pattern. */
static bool drops(proxy *p, const char *buf, ssize_t n)
{
    bool drop = false;
    int64_t now = now_mono_ms();
    pthread_mutex_lock(&p->mu);
    if (p->watch[0] && memmem(buf, (size_t)n, p->watch, strlen(p->watch))) {
        p->watched++;
        p->watched_ms = now;
    }
    if (p->drop[0] && p->drops_left > 0 && now >= p->drop_from_ms && now < p->drop_until_ms &&
        memmem(buf, (size_t)n, p->drop, strlen(p->drop))) {
        p->drops_left--;
        p->dropped++;
        drop = true;
    }
    pthread_mutex_unlock(&p->mu);
    return drop;
}

static void *pump(void *arg)
{
    proxy_pump *pa = arg;
    proxy *p = pa->p;
    struct pollfd fds[2] = { { .fd = pa->a, .events = POLLIN }, { .fd = pa->b, .events = POLLIN } };
    char buf[65536];
    for (bool open = true; open;) {
        if (atomic_load(&pa->frozen)) {
            if (atomic_load(&p->stop))
                break;
            nap_ms(50);
            continue;
        }
        if (poll(fds, 2, 200) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2 && open; i++) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = recv(fds[i].fd, buf, sizeof(buf), 0);
            if (n > 0 && i == 0 && drops(p, buf, n))
                n = 0; /* not forwarded; the connection ends on both sides */
            int wait = n > 0 && i == 0 ? hold_for(p, buf, n) : 0;
            for (int64_t left = wait; left > 0 && !atomic_load(&p->stop); left -= 50)
                nap_ms(left < 50 ? (int)left : 50);
            while (atomic_load(&pa->frozen) && !atomic_load(&p->stop))
                nap_ms(50); /* stalled while it waited: the chunk never arrives */
            open = n > 0 && !atomic_load(&pa->frozen) && write_all(fds[1 - i].fd, buf, n);
        }
    }
    pthread_mutex_lock(&p->mu);
    forget_sock(p, pa->a);
    forget_sock(p, pa->b);
    for (int i = 0; i < p->nlive; i++)
        if (p->live[i] == pa)
            p->live[i] = p->live[--p->nlive];
    p->pumps--;
    pthread_mutex_unlock(&p->mu);
    close(pa->a);
    close(pa->b);
    free(pa);
    return NULL;
}

static void *accept_loop(void *arg)
{
    proxy *p = arg;
    struct pollfd l = { .fd = p->lfd, .events = POLLIN };
    while (!atomic_load(&p->stop)) {
        if (poll(&l, 1, 50) <= 0)
            continue;
        int a = accept(p->lfd, NULL, NULL);
        if (a < 0)
            continue;
        if (atomic_load(&p->refuse)) {
            close(a);
            continue;
        }
        if (atomic_load(&p->stall)) {
            pthread_mutex_lock(&p->mu);
            if (p->nsilent < 64)
                p->silent[p->nsilent++] = a;
            else
                close(a);
            pthread_mutex_unlock(&p->mu);
            continue;
        }
        int b = socket(p->up.ss_family, SOCK_STREAM, 0);
        pthread_mutex_lock(&p->mu);
        bool room = p->nlive < PROXY_CONNS;
        pthread_mutex_unlock(&p->mu);
        if (!room || b < 0 || connect(b, (struct sockaddr *)&p->up, p->uplen) != 0) {
            close(a);
            if (b >= 0)
                close(b);
            continue;
        }
        int one = 1; /* no Nagle: small writes must not wait for delayed acks */
        setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        proxy_pump *pa = calloc(1, sizeof(*pa));
        cr_assert(pa);
        pa->p = p;
        pa->a = a;
        pa->b = b;
        pthread_mutex_lock(&p->mu);
        p->live[p->nlive++] = pa;
        p->socks[p->nsocks++] = a;
        p->socks[p->nsocks++] = b;
        p->pumps++;
        pthread_mutex_unlock(&p->mu);
        pthread_t th;
        pthread_create(&th, NULL, pump, pa);
        pthread_detach(th);
    }
    return NULL;
}

void proxy_start(proxy *p, const char *host, int port)
{
    char service[16];
    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->mu, NULL);
    snprintf(service, sizeof(service), "%d", port);
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
    cr_assert_eq(getaddrinfo(host, service, &hints, &ai), 0, "cannot resolve %s:%d", host, port);
    memcpy(&p->up, ai->ai_addr, ai->ai_addrlen);
    p->uplen = ai->ai_addrlen;
    freeaddrinfo(ai);

    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(p->lfd, 0);
    cr_assert_eq(bind(p->lfd, (struct sockaddr *)&a, sizeof(a)), 0, "bind: %s", strerror(errno));
    cr_assert_eq(listen(p->lfd, 64), 0);
    socklen_t alen = sizeof(a);
    getsockname(p->lfd, (struct sockaddr *)&a, &alen);
    p->port = ntohs(a.sin_port);
    cr_assert_eq(pthread_create(&p->acceptor, NULL, accept_loop, p), 0);
}

void proxy_start_pg(proxy *p, const char *dsn, char *out, size_t len)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &err);
    cr_assert(opts, "conninfo: %s", err ? err : "cannot parse");
    const char *host = "127.0.0.1", *port = "5432";
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (o->val && o->val[0] && strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (o->val && o->val[0] && strcmp(o->keyword, "port") == 0)
            port = o->val;
    }
    cr_assert_neq(host[0], '/', "the proxy needs PostgreSQL on TCP, not %s", host);
    proxy_start(p, host, atoi(port));
    size_t n = (size_t)snprintf(out, len, "host='127.0.0.1' port='%d'", p->port);
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !o->val[0] || strcmp(o->keyword, "host") == 0 ||
            strcmp(o->keyword, "port") == 0 || strcmp(o->keyword, "hostaddr") == 0)
            continue;
        n += (size_t)snprintf(out + n, n < len ? len - n : 0, " %s='", o->keyword);
        for (const char *c = o->val; *c && n + 3 < len; c++) {
            if (*c == '\'' || *c == '\\')
                out[n++] = '\\';
            out[n++] = *c;
        }
        n += (size_t)snprintf(out + n, n < len ? len - n : 0, "'");
    }
    cr_assert_lt(n, len, "the proxied conninfo is too long");
    PQconninfoFree(opts);
}

void proxy_down(proxy *p)
{
    atomic_store(&p->refuse, true);
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->nsocks; i++)
        shutdown(p->socks[i], SHUT_RDWR);
    for (int i = 0; i < p->nlive; i++)
        atomic_store(&p->live[i]->frozen, false); /* a stalled pump ends too */
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&p->mu);
        int left = p->pumps;
        pthread_mutex_unlock(&p->mu);
        if (!left)
            return;
        nap_ms(10);
    }
    cr_assert_fail("proxy connections did not close");
}

void proxy_stall(proxy *p)
{
    atomic_store(&p->stall, true);
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->nlive; i++)
        atomic_store(&p->live[i]->frozen, true);
    pthread_mutex_unlock(&p->mu);
}

void proxy_up(proxy *p)
{
    atomic_store(&p->refuse, false);
    atomic_store(&p->stall, false);
}

void proxy_hold(proxy *p, const char *pattern, int hold_ms)
{
    pthread_mutex_lock(&p->mu);
    snprintf(p->hold, sizeof(p->hold), "%s", pattern ? pattern : "");
    p->hold_ms = hold_ms;
    pthread_mutex_unlock(&p->mu);
}

void proxy_drop(proxy *p, const char *pattern, int count, int64_t from_ms, int64_t until_ms)
{
    pthread_mutex_lock(&p->mu);
    snprintf(p->drop, sizeof(p->drop), "%s", pattern ? pattern : "");
    p->drops_left = count;
    p->drop_from_ms = from_ms;
    p->drop_until_ms = until_ms;
    pthread_mutex_unlock(&p->mu);
}

int proxy_dropped(proxy *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->dropped;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void proxy_watch(proxy *p, const char *pattern)
{
    pthread_mutex_lock(&p->mu);
    snprintf(p->watch, sizeof(p->watch), "%s", pattern ? pattern : "");
    pthread_mutex_unlock(&p->mu);
}

int proxy_watched(proxy *p, int64_t *last_ms)
{
    pthread_mutex_lock(&p->mu);
    int n = p->watched;
    if (last_ms)
        *last_ms = p->watched_ms;
    pthread_mutex_unlock(&p->mu);
    return n;
}

int proxy_held(proxy *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->held_msgs;
    pthread_mutex_unlock(&p->mu);
    return n;
}

int proxy_silent(proxy *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->nsilent;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void proxy_stop(proxy *p)
{
    atomic_store(&p->stop, true);
    pthread_join(p->acceptor, NULL);
    close(p->lfd);
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->nsilent; i++)
        close(p->silent[i]);
    p->nsilent = 0;
    pthread_mutex_unlock(&p->mu);
    proxy_down(p);
    pthread_mutex_destroy(&p->mu);
}
