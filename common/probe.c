#include "probe.h"

#include "cfg.h"
#include "err.h"
#include "kv.h"

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

#define TIMEOUT_S 2

int probe_postgres(void *arg, char *why, size_t whylen)
{
    const char *keys[] = { "dbname", "connect_timeout", "application_name", "options", NULL };
    const char *vals[] = { (const char *)arg, "2", "tally-probe", "-c statement_timeout=2000",
                           NULL };
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    int rc = 0;
    if (!pg || PQstatus(pg) != CONNECTION_OK) {
        snprintf(why, whylen, "%s", pg ? PQerrorMessage(pg) : "out of memory");
        rc = TALLY_EUNAVAIL;
    } else {
        PGresult *r = PQexec(pg, "SELECT 1");
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            snprintf(why, whylen, "%s", PQresultErrorMessage(r));
            rc = TALLY_EUNAVAIL;
        }
        PQclear(r);
    }
    PQfinish(pg);
    why[strcspn(why, "\n")] = '\0';
    return rc;
}

int probe_redis(void *arg, char *why, size_t whylen)
{
    const cfg_redis *r = arg;
    struct timeval tv = { .tv_sec = TIMEOUT_S };
    redisContext *c = redisConnectWithTimeout(r->host, r->port, tv);
    redisReply *rep = NULL;
    int rc = TALLY_EUNAVAIL;
    if (!c || c->err) {
        snprintf(why, whylen, "%s:%d: %s", r->host, r->port, c ? c->errstr : "out of memory");
        goto out;
    }
    redisSetTimeout(c, tv);
    if (kv_hello(c, r, why, whylen) != 0)
        goto out;
    rep = redisCommand(c, "PING");
    if (!rep || rep->type != REDIS_REPLY_STATUS) {
        snprintf(why, whylen, "PING: %s", rep && rep->str ? rep->str : c->errstr);
        goto out;
    }
    rc = 0;
out:
    if (rep)
        freeReplyObject(rep);
    redisFree(c);
    return rc;
}
