/*
 * rebuild: `tally rebuild` (tally_int.h), a tenant's read model rebuilt from PostgreSQL into a
 * new generation while the old one serves (projector/rebuild.h does the work). Progress goes
 * to stderr: a bar on a terminal, otherwise a line every few seconds, or JSON lines.
 */
#include "tally_int.h"

#include "err.h"
#include "ident.h"
#include "kv.h"
#include "now.h"
#include "rebuild.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct view {
    bool tty, json;
} view;

static void print_eta(FILE *f, int64_t ms)
{
    if (ms < 0)
        fprintf(f, "ETA ?");
    else if (ms < 60000)
        fprintf(f, "ETA %" PRId64 "s", (ms + 999) / 1000);
    else
        fprintf(f, "ETA %" PRId64 "m%02" PRId64 "s", ms / 60000, ms / 1000 % 60);
}

static void on_progress(const rebuild_progress *p, void *arg)
{
    const view *v = arg;
    if (v->json) {
        fprintf(stderr,
                "{\"tenant\":\"%s\",\"phase\":\"%s\",\"generation\":%" PRId64
                ",\"resumed\":%s,\"done\":%" PRId64 ",\"total\":%" PRId64
                ",\"rate\":%.0f,\"eta_ms\":%" PRId64 ",\"gaps\":%" PRId64 ",\"invalid\":%" PRId64
                ",\"deleted\":%" PRId64 "}\n",
                p->tenant, p->phase, p->generation, p->resumed ? "true" : "false", p->done,
                p->total, p->rate, p->eta_ms, p->gaps, p->invalid, p->deleted);
        return;
    }
    int pct = p->total > 0 ? (int)(p->done * 100 / p->total) : 100;
    if (pct > 100)
        pct = 100;
    if (v->tty) {
        char bar[31];
        int fill = pct * 30 / 100;
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        fprintf(stderr, "\r%s [%s] %3d%% %" PRId64 "/%" PRId64 " events, %.0f/s, ", p->tenant, bar,
                pct, p->done, p->total, p->rate);
        print_eta(stderr, p->eta_ms);
        fprintf(stderr, ", %s\033[K", p->phase);
        fflush(stderr);
        return;
    }
    fprintf(stderr, "%s: %s, %" PRId64 " of %" PRId64 " events (%d%%), %.0f/s, ", p->tenant,
            p->phase, p->done, p->total, pct, p->rate);
    print_eta(stderr, p->eta_ms);
    fprintf(stderr, "\n");
}

static void print_result(const cli *c, const view *v, const rebuild_progress *p, double secs)
{
    if (v->tty && !v->json)
        fprintf(stderr, "\n");
    if (cli_has(c, OPT_JSON)) {
        printf("{\"tenant\":\"%s\",\"generation\":%" PRId64 ",\"resumed\":%s,\"events\":%" PRId64
               ",\"invalid\":%" PRId64 ",\"deleted_keys\":%" PRId64 ",\"merged_calls\":%" PRId64
               ",\"split_calls\":%" PRId64 ",\"seconds\":%.3f}\n",
               p->tenant, p->generation, p->resumed ? "true" : "false", p->done, p->invalid,
               p->deleted, p->merged, p->split, secs);
        return;
    }
    printf("%s: generation %" PRId64 " is current: %" PRId64 " events in %.2f s (%.0f/s)%s",
           p->tenant, p->generation, p->done, secs, secs > 0 ? (double)p->done / secs : 0,
           p->resumed ? ", resumed" : "");
    if (p->invalid)
        printf(", %" PRId64 " events the view refused (their complaints stop before them)",
               p->invalid);
    printf("; %" PRId64 " keys of the old generation deleted\n", p->deleted);
}

int cli_run_rebuild(const cli *c)
{
    const char *tenant = cli_get(c, OPT_TENANT), *dsn;
    bool all = cli_has(c, OPT_ALL), abort_ = cli_has(c, OPT_ABORT);
    cfg_redis redis;
    int64_t batch = REBUILD_BATCH, window = REBUILD_WINDOW, lease = 15000;
    int rc;
    if (!tenant && !all)
        return cli_usage_error(c, "give --tenant ID or --all");
    if (tenant && all)
        return cli_usage_error(c, "give --tenant ID or --all, not both");
    if (abort_ && all)
        return cli_usage_error(c, "--abort takes --tenant, not --all");
    if (tenant && ident_check(tenant) != IDENT_OK)
        return cli_usage_error(c, "--tenant: %s, not \"%s\"",
                               ident_problem_text(ident_check(tenant)), tenant);
    if ((cli_has(c, OPT_BATCH) && (rc = cli_int(c, OPT_BATCH, 1, 10000, &batch))) ||
        (cli_has(c, OPT_WINDOW) && (rc = cli_int(c, OPT_WINDOW, 100, 1000000, &window))) ||
        (cli_has(c, OPT_LEASE_MS) && (rc = cli_int(c, OPT_LEASE_MS, 1000, 3600000, &lease))))
        return rc;
    if ((rc = cli_stores(c, !abort_, &dsn, &redis)))
        return rc;
    /* A call applies up to --batch events: give it time beyond the usual command deadline. */
    kv_conn *kv = kv_new(&redis, c->timeout_ms > 30000 ? c->timeout_ms : 30000);
    char err[512];
    if (!kv) {
        fprintf(stderr, "%s: out of memory\n", c->prog);
        return EXIT_FAIL;
    }
    if (kv_connect(kv) != 0) {
        fprintf(stderr, "%s: Redis: %s\n", c->prog, kv_errstr(kv));
        kv_free(kv);
        return EXIT_FAIL;
    }
    if (abort_) {
        int r = rebuild_abort(kv_ctx(kv), tenant, err, sizeof(err));
        if (r < 0)
            fprintf(stderr, "%s: %s\n", c->prog, err);
        else
            printf("%s: %s\n", tenant,
                   r ? "the rebuild is aborted; its generation is deleted" : "no rebuild runs");
        kv_free(kv);
        return r < 0 ? EXIT_FAIL : EXIT_OK;
    }
    char **ids = NULL, *one[] = { (char *)tenant };
    size_t n = 1;
    if (all && rebuild_tenants(dsn, &ids, &n, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: %s\n", c->prog, err);
        kv_free(kv);
        return EXIT_FAIL;
    }
    char host[64] = "host", owner[128];
    gethostname(host, sizeof(host) - 1);
    snprintf(owner, sizeof(owner), "%.60s:%ld:%" PRId64, host, (long)getpid(), now_wall_ms());
    view v = { .tty = isatty(STDERR_FILENO) == 1, .json = cli_has(c, OPT_JSON) };
    const char *stop = getenv("TALLY_REBUILD_STOP_AFTER"); /* tests: crash halfway */
    rebuild_opts o = { .pg_dsn = dsn,
                       .owner = owner,
                       .batch = (int)batch,
                       .window = (int)window,
                       .lease_ms = lease,
                       .stop_after = stop ? strtoll(stop, NULL, 10) : 0,
                       .progress_every_ms = v.tty ? 200 : 2000,
                       .progress = on_progress,
                       .arg = &v };
    rc = EXIT_OK;
    for (size_t i = 0; i < n; i++) {
        const char *t = all ? ids[i] : one[0];
        rebuild_progress p;
        int64_t t0 = now_mono_ms();
        int r = rebuild_tenant(kv_ctx(kv), &o, t, &p, err, sizeof(err));
        if (r == TALLY_ECANCELLED) {
            fprintf(stderr, "%s: %s: %s\n", c->prog, t, err);
            _exit(EXIT_FAIL); /* as if killed: the rebuild stays for the next one to resume */
        }
        if (r != 0) {
            if (v.tty)
                fprintf(stderr, "\n");
            fprintf(stderr, "%s: %s: %s\n", c->prog, t, err);
            rc = EXIT_FAIL;
            if (r == TALLY_EUNAVAIL)
                fprintf(stderr, "%s: %s: run the same command again to resume\n", c->prog, t);
            kv_reset(kv);
            if (kv_connect(kv) != 0)
                break;
            continue;
        }
        print_result(c, &v, &p, (double)(now_mono_ms() - t0) / 1000.0);
    }
    for (size_t i = 0; ids && i < n; i++)
        free(ids[i]);
    free(ids);
    kv_free(kv);
    return rc;
}
