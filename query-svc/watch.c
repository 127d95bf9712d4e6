#include "watch.h"

#include "err.h"
#include "hash.h"
#include "kv.h"
#include "log.h"
#include "now.h"
#include "stream.h"

#include "tally/v1/dashboard.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_INTERVAL_MS 1000
#define MAX_INTERVAL_MS     3600000
#define IDLE_POLL_MS        1000 /* how often an idle hub looks at its stop flag */
#define RETRY_MS            1000 /* before a page that could not be read is tried again */

/* One open WatchDashboard stream. */
typedef struct watch {
    struct watch *next;
    srv_stream *st;
    Tally__V1__GetDashboardRequest *req; /* the stream's own copy */
    uint8_t *bytes;                      /* the request packed: streams of equal bytes share */
    size_t len;                          /* pages (never a hash alone: one tenant's page must */
    uint64_t key;                        /* not reach another's stream); key, their hash */
    int64_t interval_ms, last_ms;        /* the least time between pages; the last page */
    bool dirty;                          /* the tenant changed since the last page */
    bool opening; /* the first page is not out yet: the hub leaves it alone */
    bool chosen;  /* in the hub's current round */
} watch;

static struct hub {
    const query_config *conf;
    int64_t floor_ms;
    pthread_mutex_t mu; /* the list, and every watch's fields */
    watch *list;
    long n;
    void *reader; /* a query worker of the hub's own, to read pages */
    kv_conn *sub;
    int wake[2]; /* a pipe: a stream's first page is out, or stop */
    pthread_t thread;
    bool started;
    _Atomic bool stop;
    metrics_counter *pages, *notes, *resubscribed;
} hub = { .mu = PTHREAD_MUTEX_INITIALIZER, .wake = { -1, -1 } };

static void wake_hub(void)
{
    char one = 1;
    if (hub.wake[1] >= 0 && write(hub.wake[1], &one, 1) < 0 && errno != EAGAIN)
        log_warn("cannot wake the watch hub", LOG_STR("error", strerror(errno)));
}

static void watch_free(watch *w)
{
    if (w->req)
        protobuf_c_message_free_unpacked(&w->req->base, NULL);
    free(w->bytes);
    free(w);
}

/* Whether a and b asked exactly the same (so one read serves both). */
static bool same_request(const watch *a, const watch *b)
{
    return a->key == b->key && a->len == b->len && memcmp(a->bytes, b->bytes, a->len) == 0;
}

static void unlink_watch(watch *w)
{
    for (watch **p = &hub.list; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            hub.n--;
            return;
        }
}

int watch_open(srv_call *call, srv_stream *st, const ProtobufCMessage *msg, void *worker)
{
    const Tally__V1__GetDashboardRequest *req = (const void *)msg;
    if (req->min_interval_ms < 0 || req->min_interval_ms > MAX_INTERVAL_MS)
        return srv_fail(call, TALLY_EINVAL, "min_interval_ms: %d is outside 0..%d",
                        (int)req->min_interval_ms, MAX_INTERVAL_MS);
    if (!hub.started)
        return srv_fail(call, TALLY_EUNAVAIL, "WatchDashboard is not running on this replica");
    watch *w = calloc(1, sizeof(*w));
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len ? len : 1);
    if (!w || !buf) {
        free(w);
        free(buf);
        return srv_fail(call, TALLY_ENOMEM, "out of memory opening a watch");
    }
    protobuf_c_message_pack(msg, buf);
    w->req = tally__v1__get_dashboard_request__unpack(NULL, len, buf);
    w->key = hash_fnv1a(buf, len, 0);
    w->bytes = buf;
    w->len = len;
    if (!w->req) {
        watch_free(w);
        return srv_fail(call, TALLY_ENOMEM, "out of memory opening a watch");
    }
    w->st = st;
    w->interval_ms = req->min_interval_ms ? req->min_interval_ms : DEFAULT_INTERVAL_MS;
    if (w->interval_ms < hub.floor_ms)
        w->interval_ms = hub.floor_ms;
    w->opening = true;
    /* Registered before the first read: a change meanwhile makes a second page. */
    pthread_mutex_lock(&hub.mu);
    w->next = hub.list;
    hub.list = w;
    hub.n++;
    pthread_mutex_unlock(&hub.mu);
    int rc = query_dashboard(call, msg, worker);
    if (rc == 0)
        rc = srv_stream_send_reply(st, call);
    pthread_mutex_lock(&hub.mu);
    if (rc != 0)
        unlink_watch(w);
    w->opening = false;
    w->last_ms = now_mono_ms();
    bool dirty = w->dirty;
    pthread_mutex_unlock(&hub.mu);
    if (rc != 0) { /* the runtime ends the stream with call's status */
        watch_free(w);
        return rc;
    }
    srv_stream_set_data(st, w);
    if (dirty)
        wake_hub();
    return 0;
}

void watch_closed(srv_stream *st)
{
    watch *w = srv_stream_data(st);
    if (!w)
        return;
    pthread_mutex_lock(&hub.mu);
    unlink_watch(w);
    pthread_mutex_unlock(&hub.mu);
    watch_free(w);
}

/* Marks tenant's streams (or every stream, tenant NULL) as changed. */
static void mark(const char *tenant, size_t len)
{
    pthread_mutex_lock(&hub.mu);
    for (watch *w = hub.list; w; w = w->next)
        if (!tenant ||
            (strlen(w->req->tenant_id) == len && memcmp(w->req->tenant_id, tenant, len) == 0))
            w->dirty = true;
    pthread_mutex_unlock(&hub.mu);
}

/*
 * Reads and sends the pages that are due: per round, the streams of one request whose interval
 * has passed share one read. Returns how long until the next page falls due (IDLE_POLL_MS
 * when none is waiting).
 */
static int64_t run_due(void)
{
    for (;;) {
        int64_t now = now_mono_ms(), next = IDLE_POLL_MS;
        watch *lead = NULL;
        pthread_mutex_lock(&hub.mu);
        for (watch *w = hub.list; w; w = w->next) {
            if (!w->dirty || w->opening)
                continue;
            int64_t due = w->last_ms + w->interval_ms - now;
            if (due > 0) {
                next = due < next ? due : next;
                continue;
            }
            if (!lead)
                lead = w;
            w->chosen = same_request(w, lead);
            if (w->chosen) /* a change from now on marks it again: a page after this one */
                w->dirty = false;
        }
        if (!lead) {
            pthread_mutex_unlock(&hub.mu);
            return next;
        }
        srv_call *local = srv_call_local(lead->st);
        Tally__V1__GetDashboardRequest *req =
            tally__v1__get_dashboard_request__unpack(NULL, lead->len, lead->bytes);
        pthread_mutex_unlock(&hub.mu);
        int rc = local && req ? query_dashboard(local, &req->base, hub.reader) : TALLY_ENOMEM;
        if (req)
            protobuf_c_message_free_unpacked(&req->base, NULL);
        metrics_inc(hub.pages, 1);
        now = now_mono_ms();
        pthread_mutex_lock(&hub.mu);
        for (watch *w = hub.list; w; w = w->next) {
            if (!w->chosen)
                continue;
            w->chosen = false;
            w->last_ms = now;
            if (rc == 0) {
                srv_stream_send_reply(w->st, local);
            } else if (rc == TALLY_EUNAVAIL || rc == TALLY_ENOMEM) {
                w->dirty = true; /* again later */
                w->last_ms = now - w->interval_ms + RETRY_MS;
            } else { /* the tenant went away, say: the stream ends with why */
                srv_stream_end(w->st, rc, "%s", srv_call_message(local));
            }
        }
        pthread_mutex_unlock(&hub.mu);
        if (rc != 0)
            log_warn("cannot read a watched dashboard",
                     LOG_STR("error", local ? srv_call_message(local) : "out of memory"));
        srv_call_local_free(local);
    }
}

/* Connects and subscribes; 0, or TALLY_EUNAVAIL (logged once per outage). */
static int subscribe(bool *warned)
{
    if (kv_connect(hub.sub) == 0) {
        redisReply *r = redisCommand(kv_ctx(hub.sub), "SUBSCRIBE %s", STREAM_CHANGES_CHANNEL);
        bool ok = r && r->type == REDIS_REPLY_ARRAY;
        if (!ok && !*warned)
            log_warn(
                "cannot subscribe to the read model's changes: WatchDashboard streams get "
                "no new pages until it works",
                LOG_STR("channel", STREAM_CHANGES_CHANNEL),
                LOG_STR("error", r && r->type == REDIS_REPLY_ERROR ? r->str : kv_errstr(hub.sub)));
        if (r)
            freeReplyObject(r);
        if (ok) {
            if (*warned)
                log_info("subscribed to the read model's changes again");
            *warned = false;
            return 0;
        }
        kv_reset(hub.sub);
    } else if (!*warned) {
        log_warn("cannot subscribe to the read model's changes: Redis is unavailable",
                 LOG_STR("error", kv_errstr(hub.sub)));
    }
    *warned = true;
    return TALLY_EUNAVAIL;
}

/* Reads what the subscription brought: marks the tenants named. 0, or -1 (connection lost). */
static int read_notes(redisContext *c)
{
    if (redisBufferRead(c) != REDIS_OK)
        return -1;
    for (;;) {
        redisReply *r = NULL;
        if (redisGetReplyFromReader(c, (void **)&r) != REDIS_OK)
            return -1;
        if (!r)
            return 0;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
            r->element[2]->type == REDIS_REPLY_STRING &&
            strcmp(r->element[0]->str, "message") == 0) {
            mark(r->element[2]->str, r->element[2]->len);
            metrics_inc(hub.notes, 1);
        }
        freeReplyObject(r);
    }
}

static void *hub_main(void *arg)
{
    bool subscribed = false, warned = false;
    (void)arg;
    while (!atomic_load(&hub.stop)) {
        if (!subscribed && subscribe(&warned) == 0) {
            subscribed = true;
            mark(NULL, 0); /* changes may have gone unseen while it was down */
            metrics_inc(hub.resubscribed, 1);
        }
        int64_t wait = run_due();
        if (!subscribed && wait > RETRY_MS)
            wait = RETRY_MS;
        struct pollfd fds[2] = { { .fd = hub.wake[0], .events = POLLIN },
                                 { .fd = subscribed ? kv_ctx(hub.sub)->fd : -1,
                                   .events = POLLIN } };
        if (poll(fds, 2, (int)wait) < 0 && errno != EINTR)
            break;
        if (fds[0].revents & POLLIN) {
            char drain[64];
            while (read(hub.wake[0], drain, sizeof(drain)) > 0)
                ;
        }
        if (subscribed && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) &&
            read_notes(kv_ctx(hub.sub)) != 0) {
            log_warn("lost the subscription to the read model's changes; resubscribing");
            kv_reset(hub.sub);
            subscribed = false;
        }
    }
    return NULL;
}

static double open_watches(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&hub.mu);
    double n = (double)hub.n;
    pthread_mutex_unlock(&hub.mu);
    return n;
}

int watch_start(const query_config *conf, int64_t floor_ms, metrics_registry *reg)
{
    hub.conf = conf;
    hub.floor_ms = floor_ms;
    hub.pages = metrics_counter_add(reg, "tally_query_watch_pages_total",
                                    "Dashboard pages read for WatchDashboard streams after a "
                                    "change (one read serves every stream of the same request).",
                                    NULL);
    hub.notes = metrics_counter_add(
        reg, "tally_query_watch_notifications_total",
        "Changes of a tenant's read model heard on " STREAM_CHANGES_CHANNEL ".", NULL);
    hub.resubscribed = metrics_counter_add(
        reg, "tally_query_watch_subscriptions_total",
        "Subscriptions to " STREAM_CHANGES_CHANNEL " made (1, plus one per reconnection).", NULL);
    if (!hub.pages || !hub.notes || !hub.resubscribed ||
        metrics_gauge_fn_add(reg, "tally_query_watch_streams", "WatchDashboard streams open.", NULL,
                             open_watches, NULL) != 0)
        return TALLY_ENOMEM;
    hub.reader = query_worker_new(-1, (void *)conf);
    hub.sub = kv_new(&conf->redis, (int)conf->redis_timeout_ms);
    if (!hub.reader || !hub.sub || pipe(hub.wake) != 0)
        return TALLY_ENOMEM;
    fcntl(hub.wake[0], F_SETFL, O_NONBLOCK);
    fcntl(hub.wake[1], F_SETFL, O_NONBLOCK);
    if (pthread_create(&hub.thread, NULL, hub_main, NULL) != 0)
        return TALLY_EINTERNAL;
    hub.started = true;
    return 0;
}

void watch_stop(void)
{
    if (hub.started) {
        atomic_store(&hub.stop, true);
        wake_hub();
        pthread_join(hub.thread, NULL);
        hub.started = false;
    }
    if (hub.reader)
        query_worker_free(hub.reader, (void *)hub.conf);
    kv_free(hub.sub);
    for (int i = 0; i < 2; i++)
        if (hub.wake[i] >= 0)
            close(hub.wake[i]);
    pthread_mutex_lock(&hub.mu);
    while (hub.list) { /* none after the server's shutdown; kept safe regardless */
        watch *w = hub.list;
        hub.list = w->next;
        watch_free(w);
    }
    pthread_mutex_unlock(&hub.mu);
}
