/*
 * The /metrics of each running service pass `promtool check metrics` (Prometheus's own linter:
 * names, units, HELP and TYPE lines, counters ending in _total), so stock scrapers and
 * dashboards read them as they read any Prometheus client library's.
 */
#include "proc.h"
#include "system.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sys_system S;

static void setup(void)
{
    sys_options o = { 0 };
    sys_start(&S, &o);
}

static void teardown(void)
{
    sys_stop(&S);
}

/* promtool's verdict on text: "" when it has nothing to say, else what it said. */
static void lint(const char *service, const char *text)
{
    char path[] = "/tmp/tally-metrics-XXXXXX", cmd[128], said[4096] = "";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 2>&1", path);
    FILE *p = popen(cmd, "r");
    cr_assert(p, "cannot run promtool");
    size_t n = fread(said, 1, sizeof(said) - 1, p);
    said[n] = '\0';
    int rc = pclose(p);
    unlink(path);
    cr_assert_eq(rc, 0, "%s: promtool check metrics exited %d:\n%s", service, rc, said);
    cr_assert_str_eq(said, "", "%s: promtool check metrics:\n%s", service, said);
}

Test(metrics_lint, every_service_passes_promtool_check_metrics, .init = setup, .fini = teardown,
     .timeout = 120)
{
    static char text[1 << 20];
    proc *const svcs[] = { &S.command, &S.projector, &S.query };
    const char *names[] = { "command-svc", "projector", "query-svc" };
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(proc_http_get(svcs[i]->http_port, "/metrics", text, sizeof(text)), 200);
        cr_assert(strstr(text, "tally_build_info{"), "%s: no tally_build_info", names[i]);
        lint(names[i], text);
    }
}
