/*
 * proxy: the tests' one fault-injecting TCP proxy, between a service and PostgreSQL or Redis.
 *
 * A proxy listens on a free loopback port and forwards every connection to its upstream, one
 * thread per connection. Faults, each switched on and off by the test at any moment:
 *   down    every proxied connection is reset, and each new one is closed at once (a server
 *           that is not there);
 *   stall   every proxied connection stops forwarding in both directions without closing, and
 *           new ones are accepted but never answered (a server, host or network gone silent:
 *           a black hole);
 *   hold    a message from the client containing a pattern is forwarded only hold_ms later
 *           (a slow statement), and the connection forwards nothing else meanwhile;
 *   drop    a message from the client containing a pattern is not forwarded and its connection
 *           is closed on both sides (a connection lost right after a command was sent), up to
 *           a number of times, within a window of monotonic time;
 *   up      new connections are proxied again; stalled ones stay stalled, as after a partition.
 * The proxy can also watch for a pattern (how often it was sent, and when last), without
 * changing anything. A pattern is looked for in each chunk read from the client, so it must not be
 * split across TCP segments: the protocol messages of the services are written whole, and a
 * statement name or a command is short.
 *
 * Functions assert (Criterion) when the proxy cannot be set up. Thread-safe: the faults are
 * switched from the test's thread while the proxy's threads forward.
 */
#ifndef TALLY_TEST_PROXY_H
#define TALLY_TEST_PROXY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PROXY_CONNS   128
#define PROXY_PATTERN 64

typedef struct proxy_pump proxy_pump;

typedef struct proxy {
    struct sockaddr_storage up;
    socklen_t uplen;
    int port; /* where the proxy listens on 127.0.0.1 */
    int lfd;
    pthread_t acceptor;
    atomic_bool stop, refuse, stall;
    pthread_mutex_t mu;
    char hold[PROXY_PATTERN]; /* under mu; "" when nothing is held */
    int hold_ms;
    int held_msgs;            /* messages held so far */
    char drop[PROXY_PATTERN]; /* under mu; "" when nothing is dropped */
    int64_t drop_from_ms, drop_until_ms;
    int drops_left, dropped;
    char watch[PROXY_PATTERN]; /* under mu; "" when nothing is watched */
    int watched;
    int64_t watched_ms;
    int socks[2 * PROXY_CONNS], nsocks, pumps;
    int silent[64], nsilent;       /* accepted while stalled, never answered */
    proxy_pump *live[PROXY_CONNS]; /* running pumps */
    int nlive;
} proxy;

/* Starts a proxy to host:port (a name or an address). */
void proxy_start(proxy *p, const char *host, int port);

/*
 * Starts a proxy to the server of the libpq conninfo dsn (TCP only) and writes to out the same
 * conninfo through the proxy (host and port replaced, everything else kept).
 */
void proxy_start_pg(proxy *p, const char *dsn, char *out, size_t len);

/* The faults (see the file comment). */
void proxy_down(proxy *p);
void proxy_stall(proxy *p);
void proxy_up(proxy *p);

/* Holds every client message containing pattern for hold_ms from now on (NULL: stop holding). */
void proxy_hold(proxy *p, const char *pattern, int hold_ms);

/*
 * Drops the connection of the next count client messages containing pattern (NULL: stop) that
 * are sent between from_ms and until_ms (monotonic, common/now.h; 0 and INT64_MAX: always).
 */
void proxy_drop(proxy *p, const char *pattern, int count, int64_t from_ms, int64_t until_ms);

/* Connections dropped so far. */
int proxy_dropped(proxy *p);

/* Counts the client messages containing pattern from now on (NULL: stop). */
void proxy_watch(proxy *p, const char *pattern);

/* How many were seen so far; *last_ms (may be NULL) the monotonic time of the last one. */
int proxy_watched(proxy *p, int64_t *last_ms);

/* Messages held so far, and connections accepted while stalled. */
int proxy_held(proxy *p);
int proxy_silent(proxy *p);

/* Ends every connection, stalled and silent ones too, and the proxy itself. */
void proxy_stop(proxy *p);

#endif
