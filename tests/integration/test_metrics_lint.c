/*
 * The /metrics of each running service pass `promtool check metrics` (Prometheus's own linter:
 * names, units, HELP and TYPE lines, counters ending in _total), so stock scrapers and
 * dashboards read them as they read any Prometheus client library's; and every metric the
 * alerts and the Grafana dashboard of k8s/monitoring/ name is one a service exports.
 */
#include "proc.h"
#include "system.h"

#include <criterion/criterion.h>
#include <ctype.h>
#include <stdbool.h>
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

/* True when some scrape has the family name (or is the histogram whose series name is). */
static bool exported(char *const *texts, const char *name)
{
    static const char *const suffixes[] = { "_bucket", "_sum", "_count" };
    char type[200], base[128];
    snprintf(base, sizeof(base), "%s", name);
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(base), k = strlen(suffixes[i]);
        if (n > k && strcmp(base + n - k, suffixes[i]) == 0) {
            base[n - k] = '\0';
            break;
        }
    }
    for (int i = 0; i < 3; i++) {
        snprintf(type, sizeof(type), "# TYPE %s ", name);
        if (strstr(texts[i], type))
            return true;
        snprintf(type, sizeof(type), "# TYPE %s histogram", base);
        if (strstr(texts[i], type))
            return true;
    }
    return false;
}

/* Every metric a k8s/monitoring file names (an alert, a dashboard panel) that no service exports.
 */
static void names_exist(char *const *texts, const char *file)
{
    char path[512], *buf = malloc(1 << 20);
    snprintf(path, sizeof(path), "%s/k8s/monitoring/%s", TALLY_SOURCE_DIR, file);
    FILE *f = fopen(path, "r");
    cr_assert(f && buf, "%s", path);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    int seen = 0;
    static const char *const prefixes[] = { "tally_", "grpc_server_", "process_" };
    for (char *at = buf; *at; at++) {
        if (at > buf && (isalnum((unsigned char)at[-1]) || at[-1] == '_'))
            continue;
        for (size_t p = 0; p < 3; p++) {
            if (strncmp(at, prefixes[p], strlen(prefixes[p])) != 0)
                continue;
            char name[128];
            size_t len = strspn(at, "abcdefghijklmnopqrstuvwxyz0123456789_");
            snprintf(name, sizeof(name), "%.*s", (int)len, at);
            cr_expect(exported(texts, name), "%s names %s, which no service exports", file, name);
            seen++;
        }
    }
    cr_assert_gt(seen, 5, "%s: no metric names found", file);
    free(buf);
}

Test(metrics_lint, every_service_passes_promtool_check_metrics, .init = setup, .fini = teardown,
     .timeout = 120)
{
    static char texts[3][1 << 20];
    proc *const svcs[] = { &S.command, &S.projector, &S.query };
    const char *names[] = { "command-svc", "projector", "query-svc" };
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(proc_http_get(svcs[i]->http_port, "/metrics", texts[i], sizeof(texts[i])),
                     200);
        cr_assert(strstr(texts[i], "tally_build_info{"), "%s: no tally_build_info", names[i]);
        lint(names[i], texts[i]);
    }
    /* The alerts and the dashboard read only what exists (a misspelt name matches nothing). */
    char *const all[] = { texts[0], texts[1], texts[2] };
    names_exist(all, "prometheusrule.yaml");
    names_exist(all, "grafana-dashboard.json");
}
