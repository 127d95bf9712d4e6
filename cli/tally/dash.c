/*
 * dash.c: `tally dashboard`, one page or a live one (--watch).
 *
 * The page itself comes from tally_render; this file builds the request from the options,
 * calls GetDashboard, and draws. A live page on a terminal is redrawn in place: cursor home,
 * each line followed by clear-to-end-of-line, then clear-to-end-of-screen, written at once, so
 * nothing flickers; the cursor is hidden and line wrapping off while it runs, and both come
 * back when SIGINT or SIGTERM ends it (exit 0). Without a terminal every refresh prints a whole
 * page, pages separated by a blank line. A failed refresh keeps the last page with the error on
 * it and tries again at the next interval.
 *
 * --days N needs the tenant's "today", which only the server knows (its time zone): the
 * request is sent with the client's UTC day shifted by what the last answer taught, and sent
 * again when the answer's today says otherwise (once, and then only around midnight).
 */
#include "civil.h"
#include "now.h"
#include "tally_int.h"
#include "tally_render.h"
#include "tally_text.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define METHOD      GC_DASHBOARD("GetDashboard")
#define MAX_ROWS    100 /* --limit: the server's own bound on each table */
#define DAY_DAYS    400 /* the longest range with day buckets */
#define LONG_DAYS   1827
#define TTY_ENTER   "\033[?25l\033[?7l\033[H\033[2J" /* hide cursor, no wrap, clear */
#define TTY_LEAVE   "\033[?25h\033[?7h"              /* show cursor, wrap */
#define STEP_MS     50                               /* how often an idle wait looks at signals */
#define ERROR_LIMIT 1400

static volatile sig_atomic_t g_stop, g_resize;

static void on_stop(int sig)
{
    g_stop = sig;
}

static void on_resize(int sig)
{
    (void)sig;
    g_resize = 1;
}

typedef struct dash {
    const cli *c;
    Tally__V1__GetDashboardRequest req;
    Tally__V1__DateRange range;
    Tally__V1__Filter filter;
    Tally__V1__ConsistencyToken token;
    char **categories;
    Tally__V1__Priority *priorities;
    int64_t days;       /* --days; 0 = the range is explicit or the server's default */
    int64_t delta_days; /* the tenant's today minus the UTC day, as the last answer said */
    char from[CIVIL_DAY_LEN], to[CIVIL_DAY_LEN];
    bool watch, ascii;
    double interval_s;
} dash;

/* ---------------------------------------------------------------------------------------------
 * Options */

static int parse_range(dash *d)
{
    const cli *c = d->c;
    int64_t from, to,
        max =
            d->req.granularity == TALLY__V1__GRANULARITY__GRANULARITY_DAY || d->req.granularity == 0
                ? DAY_DAYS
                : LONG_DAYS;
    int rc;
    bool explicit = cli_has(c, OPT_FROM) || cli_has(c, OPT_TO);
    if (cli_has(c, OPT_DAYS) && explicit)
        return cli_usage_error(c, "give --days or --from and --to, not both");
    if (cli_has(c, OPT_DAYS)) {
        if ((rc = cli_int(c, OPT_DAYS, 1, LONG_DAYS, &d->days)))
            return rc;
        if (d->days > max)
            return cli_usage_error(c,
                                   "--days: at most %" PRId64 " with daily buckets (try "
                                   "--granularity week or month)",
                                   max);
        d->req.range = &d->range;
        return EXIT_OK;
    }
    if (!explicit)
        return EXIT_OK;
    if (!cli_has(c, OPT_FROM) || !cli_has(c, OPT_TO))
        return cli_usage_error(c, "--from and --to go together");
    if (civil_parse(cli_get(c, OPT_FROM), &from) != 0)
        return cli_usage_error(c, "--from: want a day YYYY-MM-DD, not \"%s\"",
                               cli_get(c, OPT_FROM));
    if (civil_parse(cli_get(c, OPT_TO), &to) != 0)
        return cli_usage_error(c, "--to: want a day YYYY-MM-DD, not \"%s\"", cli_get(c, OPT_TO));
    if (to < from)
        return cli_usage_error(c, "--to is before --from");
    if (to - from + 1 > max)
        return cli_usage_error(c,
                               "the range is %" PRId64 " days; at most %" PRId64 " with %s "
                               "buckets",
                               to - from + 1, max, max == DAY_DAYS ? "daily" : "these");
    civil_format(from, d->from);
    civil_format(to, d->to);
    d->range.from_day = d->from;
    d->range.to_day = d->to;
    d->req.range = &d->range;
    return EXIT_OK;
}

static int parse_enums(dash *d)
{
    static const char *const grans[] = { "day", "week", "month" };
    static const struct {
        const char *name;
        Tally__V1__ResolutionGroupBy value;
    } groups[] = {
        { "none", TALLY__V1__RESOLUTION_GROUP_BY__RESOLUTION_GROUP_BY_NONE },
        { "category", TALLY__V1__RESOLUTION_GROUP_BY__RESOLUTION_GROUP_BY_CATEGORY },
        { "priority", TALLY__V1__RESOLUTION_GROUP_BY__RESOLUTION_GROUP_BY_PRIORITY },
        { "category,priority",
          TALLY__V1__RESOLUTION_GROUP_BY__RESOLUTION_GROUP_BY_CATEGORY_AND_PRIORITY },
    };
    const cli *c = d->c;
    const char *v;
    if ((v = cli_get(c, OPT_GRANULARITY))) {
        for (int i = 0; i < 3; i++)
            if (strcmp(v, grans[i]) == 0)
                d->req.granularity = (Tally__V1__Granularity)(i + 1);
        if (!d->req.granularity)
            return cli_usage_error(c, "--granularity: want day, week or month, not \"%s\"", v);
    }
    if ((v = cli_get(c, OPT_GROUP_BY))) {
        for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++)
            if (strcmp(v, groups[i].name) == 0)
                d->req.group_by = groups[i].value;
        if (!d->req.group_by)
            return cli_usage_error(c,
                                   "--group-by: want none, category, priority or "
                                   "category,priority, not \"%s\"",
                                   v);
    }
    return EXIT_OK;
}

static int parse_filter(dash *d)
{
    const cli *c = d->c;
    int rc;
    d->categories = calloc((size_t)c->nhits + 1, sizeof(*d->categories));
    d->priorities = calloc((size_t)c->nhits + 1, sizeof(*d->priorities));
    if (!d->categories || !d->priorities) {
        fprintf(stderr, "tally: out of memory\n");
        return EXIT_FAIL;
    }
    for (int i = 0; i < c->nhits; i++) {
        const cli_hit *h = &c->hits[i];
        int p;
        if (h->id == OPT_CATEGORY) {
            d->categories[d->filter.n_category_ids++] = (char *)h->value;
        } else if (h->id == OPT_PRIORITY) {
            if ((rc = cli_priority(c, h->name, h->value, &p)))
                return rc;
            d->priorities[d->filter.n_priorities++] = (Tally__V1__Priority)p;
        }
    }
    d->filter.category_ids = d->categories;
    d->filter.priorities = d->priorities;
    if (d->filter.n_category_ids || d->filter.n_priorities)
        d->req.filter = &d->filter;
    return EXIT_OK;
}

static int parse(dash *d)
{
    const cli *c = d->c;
    int64_t limit = 10;
    int rc;
    if (!(d->req.tenant_id = (char *)cli_need(c, OPT_TENANT)))
        return EXIT_USAGE;
    if ((rc = parse_enums(d)) || (rc = parse_range(d)) || (rc = parse_filter(d)))
        return rc;
    if (cli_has(c, OPT_LIMIT) && (rc = cli_int(c, OPT_LIMIT, 1, MAX_ROWS, &limit)))
        return rc;
    d->req.agent_limit = d->req.category_top_n = d->req.oldest_open_limit = (int32_t)limit;
    if (cli_has(c, OPT_AFTER)) {
        if ((rc = cli_token(c, OPT_AFTER, &d->token.complaint_id, &d->token.version)))
            return rc;
        d->req.consistency = &d->token;
    }
    d->req.fail_if_stale = cli_has(c, OPT_FAIL_IF_STALE);
    if (d->req.fail_if_stale && !d->req.consistency)
        return cli_usage_error(c, "--fail-if-stale needs --after");
    /* --watch and --once: the last one given wins */
    for (int i = 0; i < c->nhits; i++)
        if (c->hits[i].id == OPT_WATCH || c->hits[i].id == OPT_ONCE)
            d->watch = c->hits[i].id == OPT_WATCH;
    d->interval_s = 2;
    if (cli_has(c, OPT_INTERVAL) && (rc = cli_seconds(c, OPT_INTERVAL, 0.1, 86400, &d->interval_s)))
        return rc;
    d->ascii = cli_has(c, OPT_ASCII);
    return EXIT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Fetching */

static void set_days(dash *d, int64_t today)
{
    civil_format(today - (d->days - 1), d->from);
    civil_format(today, d->to);
    d->range.from_day = d->from;
    d->range.to_day = d->to;
}

/* One answer; 0, or -1 with "CODE: details" in err. */
static int fetch(dash *d, gc_client *gc, Tally__V1__GetDashboardReply **reply, char *err,
                 size_t errlen)
{
    ProtobufCMessage *m;
    int64_t guess = 0, today;
    if (d->days) {
        guess = civil_day_of_ms(now_wall_ms(), 0) + d->delta_days;
        set_days(d, guess);
    }
    if (cli_invoke(d->c, gc, METHOD, &d->req.base, &tally__v1__get_dashboard_reply__descriptor, &m,
                   err, errlen) != 0)
        return -1;
    *reply = (Tally__V1__GetDashboardReply *)m;
    if (!d->days || !(*reply)->overview || civil_parse((*reply)->overview->today, &today) != 0 ||
        today == guess)
        return 0;
    /* the tenant's today is not the day guessed: learn the offset (a time zone is at most a
     * day from UTC; anything else is a clock gone wrong and is not learned) and ask again */
    d->delta_days = today - civil_day_of_ms(now_wall_ms(), 0);
    if (d->delta_days < -1 || d->delta_days > 1)
        d->delta_days = 0;
    set_days(d, today);
    protobuf_c_message_free_unpacked(m, NULL);
    *reply = NULL;
    if (cli_invoke(d->c, gc, METHOD, &d->req.base, &tally__v1__get_dashboard_reply__descriptor, &m,
                   err, errlen) != 0)
        return -1;
    *reply = (Tally__V1__GetDashboardReply *)m;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Drawing */

static int env_int(const char *name)
{
    const char *v = getenv(name);
    long n = v ? strtol(v, NULL, 10) : 0;
    return n > 0 && n < 100000 ? (int)n : 0;
}

/* The terminal's columns and rows (0 when unknown); $COLUMNS and $LINES otherwise. */
static void term_size(bool tty, int *cols, int *rows)
{
    struct winsize ws;
    *cols = env_int("COLUMNS");
    *rows = env_int("LINES");
    if (tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
        *cols = ws.ws_col;
        *rows = ws.ws_row;
    }
    if (*cols <= 0)
        *cols = RENDER_MAX_WIDTH;
}

static int write_all(const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The page in place on a terminal of cols x rows: no line or row more than fits. */
static int draw_tty(const char *page, int cols, int rows)
{
    tx_buf out;
    int lines = 0, total = 0, room = rows > 1 ? rows - 1 : 1 << 30, rc;
    for (const char *s = page; *s; s++)
        total += *s == '\n';
    tx_init(&out, 16u << 20);
    tx_puts(&out, "\033[H");
    for (const char *s = page; *s && lines < room; lines++) {
        size_t n = strcspn(s, "\n");
        if (lines == room - 1 && total > room) {
            tx_printf(&out, "... %d more lines: make the terminal taller\033[K\n", total - lines);
            break;
        }
        tx_putn(&out, s, n);
        if (tx_width_n(s, n) < cols)
            tx_puts(&out, "\033[K");
        tx_putc(&out, '\n');
        s += n + (s[n] == '\n');
    }
    tx_puts(&out, "\033[J");
    rc = out.full ? -1 : write_all(out.s, out.len);
    tx_release(&out);
    return rc;
}

/* Renders and draws one page; the pages after the first are separated by a blank line when
 * the output is not a terminal. */
static int draw(const dash *d, const Tally__V1__GetDashboardReply *reply, const char *error,
                bool tty, bool first)
{
    char footer[96];
    render_opts o = {
        .tenant = d->req.tenant_id, .now_ms = now_wall_ms(), .ascii = d->ascii, .error = error
    };
    int cols, rows, rc;
    char *page;
    term_size(tty, &cols, &rows);
    o.width = cols;
    if (tty) {
        snprintf(footer, sizeof(footer), "refreshing every %g s; Ctrl-C to quit", d->interval_s);
        o.footer = footer;
    }
    page = render_dashboard(reply, &o);
    if (!page) {
        fprintf(stderr, "tally: out of memory\n");
        return -1;
    }
    if (tty)
        rc = draw_tty(page, cols, rows);
    else
        rc = (first ? 0 : write_all("\n", 1)) || write_all(page, strlen(page)) ? -1 : 0;
    free(page);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * The command */

static int run_once(dash *d)
{
    Tally__V1__GetDashboardReply *reply = NULL;
    char err[ERROR_LIMIT];
    gc_client *gc = cli_connect(d->c, d->c->query, 0);
    int rc = EXIT_FAIL;
    if (!gc)
        return EXIT_FAIL;
    if (fetch(d, gc, &reply, err, sizeof(err)) != 0) {
        fprintf(stderr, "tally: %s\n", err);
        goto out;
    }
    rc = draw(d, reply, NULL, isatty(STDOUT_FILENO), true) == 0 ? EXIT_OK : EXIT_FAIL;
    protobuf_c_message_free_unpacked(&reply->base, NULL);
out:
    gc_free(gc);
    return rc;
}

/* Waits until the next refresh is due or a signal stops the watch; redraws on a resize. */
static void wait_next(const dash *d, int64_t due_ms, const Tally__V1__GetDashboardReply *reply,
                      const char *error, bool tty)
{
    while (!g_stop && now_mono_ms() < due_ms) {
        struct timespec step = { 0, STEP_MS * 1000000L };
        nanosleep(&step, NULL);
        if (g_resize && tty) {
            g_resize = 0;
            draw(d, reply, error, tty, false);
        }
    }
}

static int run_watch(dash *d)
{
    Tally__V1__GetDashboardReply *last = NULL, *reply = NULL;
    int64_t interval_ms = (int64_t)(d->interval_s * 1000), backoff;
    bool tty = isatty(STDOUT_FILENO), first = true;
    struct sigaction sa;
    char err[ERROR_LIMIT], error[ERROR_LIMIT + 320];
    gc_client *gc;
    int rc = EXIT_OK;
    backoff = interval_ms < 100 ? 100 : interval_ms > 5000 ? 5000 : interval_ms;
    if (!(gc = cli_connect(d->c, d->c->query, (int)backoff)))
        return EXIT_FAIL;
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_resize;
    sigaction(SIGWINCH, &sa, NULL);
    gc_set_cancel(gc, &g_stop);
    if (tty && write_all(TTY_ENTER, strlen(TTY_ENTER)) != 0)
        rc = EXIT_FAIL;
    error[0] = '\0';
    while (!g_stop && rc == EXIT_OK) {
        int64_t due = now_mono_ms() + interval_ms;
        if (fetch(d, gc, &reply, err, sizeof(err)) == 0) {
            if (last)
                protobuf_c_message_free_unpacked(&last->base, NULL);
            last = reply;
            reply = NULL;
            error[0] = '\0';
        } else if (!g_stop) {
            snprintf(error, sizeof(error), "%s (query-svc at %.200s; retrying every %g s%s)", err,
                     d->c->query, d->interval_s,
                     last ? "; the figures are from the last answer" : "");
        }
        if (g_stop)
            break;
        if (draw(d, last, error[0] ? error : NULL, tty, first) != 0)
            rc = EXIT_FAIL;
        first = false;
        wait_next(d, due, last, error[0] ? error : NULL, tty);
    }
    if (tty)
        write_all(TTY_LEAVE, strlen(TTY_LEAVE));
    if (last)
        protobuf_c_message_free_unpacked(&last->base, NULL);
    gc_free(gc);
    return rc;
}

int cli_run_dashboard(const cli *c)
{
    dash d;
    int rc;
    memset(&d, 0, sizeof(d));
    d.c = c;
    tally__v1__get_dashboard_request__init(&d.req);
    tally__v1__date_range__init(&d.range);
    tally__v1__filter__init(&d.filter);
    tally__v1__consistency_token__init(&d.token);
    rc = parse(&d);
    if (rc == EXIT_OK)
        rc = d.watch ? run_watch(&d) : run_once(&d);
    free(d.categories);
    free(d.priorities);
    return rc;
}
