/*
 * TLS and mutual TLS of the gRPC runtime (common/srv.c), end to end with echo-svc and
 * certificates made for each test by tests/support/certs.sh (openssl):
 *
 * - tls_is_required: a TLS server answers a client that trusts its CA, and neither a plaintext
 *   client nor one that trusts another CA.
 * - mutual_tls_requires_a_client_certificate: with TALLY_TLS_CLIENT_CA, a client without a
 *   certificate, or with one of another CA, fails; one with a certificate of the CA succeeds.
 * - certificates_rotate_without_a_restart: the files replaced by those of a new CA (renamed into
 *   place, as a Kubernetes Secret update does): new connections get the new certificate, with no
 *   restart; a half-done rotation (a certificate without its key) keeps the previous one and
 *   says so in the log; a change written in place unseen by stat (same inode, size, mtime)
 *   is read after SIGHUP, which does not stop the server.
 * - the_cli_speaks_tls_and_mtls: `tally --tls-ca` (and --tls-cert/--tls-key) reaches the
 *   server (echo-svc answers tally's method with UNIMPLEMENTED, which only a completed
 *   handshake can carry), and fails to without them.
 */
#include "echo.pb-c.h"
#include "err.h"
#include "gclient.h"
#include "proc.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];

static void make_pki(const char *name)
{
    char *out = NULL;
    const char *argv[] = { "/bin/bash", TALLY_TEST_SUPPORT_DIR "/certs.sh", dir, name, NULL };
    int rc = proc_run_output(&out, argv, 30000);
    cr_assert_eq(rc, 0, "certs.sh %s: %s", name, out);
    free(out);
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/test-tls-XXXXXX");
    cr_assert(mkdtemp(dir));
    make_pki("ca1");
    make_pki("ca2");
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(tls, .init = setup, .fini = teardown, .timeout = 120);

/* dir/file, in a buffer of its own for the rest of the test (gc_options keep the pointers). */
static const char *path(const char *file)
{
    static char buf[256][128];
    static int next;
    cr_assert_lt(next, 256, "path(): out of buffers");
    char *p = buf[next++];
    snprintf(p, 128, "%s/%s", dir, file);
    return p;
}

/* Starts echo-svc with TLS from the files cert, key and (may be NULL) client_ca. */
static void start(proc *p, const char *cert, const char *key, const char *client_ca)
{
    char v1[200], v2[200], v3[200];
    snprintf(v1, sizeof(v1), "TALLY_TLS_CERT=%s", cert);
    snprintf(v2, sizeof(v2), "TALLY_TLS_KEY=%s", key);
    snprintf(v3, sizeof(v3), "TALLY_TLS_CLIENT_CA=%s", client_ca ? client_ca : "");
    const char *env[] = { v1, v2, v3, NULL };
    cr_assert_eq(proc_start(p, ECHO_SVC_PATH, env), 0, "echo-svc did not start:\n%s", p->log);
}

/* One Echo call on a new connection with opt (NULL: plaintext): its status code. */
static int echo(int port, const gc_options *opt, char *details, size_t len)
{
    char target[64], err[256];
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    gc_client *c = gc_new_ex(target, opt, err, sizeof(err));
    cr_assert(c, "%s", err);
    Tally__Test__V1__EchoRequest req = TALLY__TEST__V1__ECHO_REQUEST__INIT;
    req.text = "hello";
    gc_status st;
    gc_call_msg(c, "/tally.test.v1.Echo/Echo", &req.base, NULL, NULL, 3000, NULL, &st);
    if (details)
        snprintf(details, len, "%s", st.message);
    gc_free(c);
    return st.code;
}

static gc_options trusting(const char *ca)
{
    gc_options o = { .tls_ca_path = path(ca) };
    return o;
}

Test(tls, tls_is_required)
{
    proc p;
    char why[1100];
    start(&p, path("ca1-server.crt"), path("ca1-server.key"), NULL);
    gc_options ok = trusting("ca1-ca.crt"), other = trusting("ca2-ca.crt");
    cr_expect_eq(echo(p.grpc_port, &ok, why, sizeof(why)), TALLY_GRPC_OK, "%s", why);
    cr_expect_eq(echo(p.grpc_port, NULL, why, sizeof(why)), TALLY_GRPC_UNAVAILABLE,
                 "plaintext to a TLS server: %s", why);
    cr_expect_eq(echo(p.grpc_port, &other, why, sizeof(why)), TALLY_GRPC_UNAVAILABLE,
                 "a client that trusts another CA: %s", why);
    cr_expect_eq(proc_stop(&p, SIGTERM, 10000), 0);
    proc_release(&p);
}

Test(tls, mutual_tls_requires_a_client_certificate)
{
    proc p;
    char why[1100];
    start(&p, path("ca1-server.crt"), path("ca1-server.key"), path("ca1-ca.crt"));
    gc_options none = trusting("ca1-ca.crt");
    gc_options good = { .tls_ca_path = path("ca1-ca.crt"),
                        .tls_cert_path = path("ca1-client.crt"),
                        .tls_key_path = path("ca1-client.key") };
    gc_options foreign = { .tls_ca_path = path("ca1-ca.crt"),
                           .tls_cert_path = path("ca2-client.crt"),
                           .tls_key_path = path("ca2-client.key") };
    cr_expect_eq(echo(p.grpc_port, &good, why, sizeof(why)), TALLY_GRPC_OK, "%s", why);
    cr_expect_eq(echo(p.grpc_port, &none, why, sizeof(why)), TALLY_GRPC_UNAVAILABLE,
                 "no client certificate: %s", why);
    cr_expect_eq(echo(p.grpc_port, &foreign, why, sizeof(why)), TALLY_GRPC_UNAVAILABLE,
                 "a client certificate of another CA: %s", why);
    cr_expect_eq(echo(p.grpc_port, NULL, why, sizeof(why)), TALLY_GRPC_UNAVAILABLE, "plaintext: %s",
                 why);
    cr_expect_eq(proc_stop(&p, SIGTERM, 10000), 0);
    proc_release(&p);
}

/*
 * Copies file from to to through a temporary name and a rename, as a Secret update does. Every
 * copy is padded to 4096 bytes (NULs after the PEM, which readers stop at), so that one can
 * also be written in place unseen (rewrite_unseen).
 */
static void replace(const char *from, const char *to)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "cp %s %s.new && truncate -s 4096 %s.new && mv -f %s.new %s",
             path(from), path(to), path(to), path(to), path(to));
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

/* Writes from over to in place (same inode, size and mtime): a change stat cannot see. */
static void rewrite_unseen(const char *from, const char *to)
{
    char cmd[800];
    snprintf(cmd, sizeof(cmd),
             "touch -r %s %s.when && cp %s %s.new && truncate -s 4096 %s.new && cat %s.new > %s "
             "&& touch -r %s.when %s && rm -f %s.new %s.when",
             path(to), path(to), path(from), path(to), path(to), path(to), path(to), path(to),
             path(to), path(to), path(to));
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

Test(tls, certificates_rotate_without_a_restart)
{
    proc p;
    char why[1100];
    replace("ca1-server.crt", "live.crt");
    replace("ca1-server.key", "live.key");
    start(&p, path("live.crt"), path("live.key"), NULL);
    gc_options ca1 = trusting("ca1-ca.crt"), ca2 = trusting("ca2-ca.crt");
    cr_assert_eq(echo(p.grpc_port, &ca1, why, sizeof(why)), TALLY_GRPC_OK, "%s", why);
    cr_assert_eq(echo(p.grpc_port, &ca2, why, sizeof(why)), TALLY_GRPC_UNAVAILABLE);

    /* The rotation: key first, then the certificate (between the two, the pair does not match
       and the server keeps serving the old one). */
    replace("ca2-server.key", "live.key");
    cr_expect_eq(echo(p.grpc_port, &ca1, why, sizeof(why)), TALLY_GRPC_OK,
                 "half rotated: the previous certificate still serves: %s", why);
    cr_expect(proc_log_wait(&p, "TLS files not reloaded", 5000), "the half rotation is logged:\n%s",
              p.log);
    replace("ca2-server.crt", "live.crt");
    cr_expect_eq(echo(p.grpc_port, &ca2, why, sizeof(why)), TALLY_GRPC_OK,
                 "rotated: the new certificate serves: %s", why);
    cr_expect_eq(echo(p.grpc_port, &ca1, why, sizeof(why)), TALLY_GRPC_UNAVAILABLE,
                 "rotated: the old CA no longer verifies: %s", why);
    cr_expect(proc_log_wait(&p, "TLS certificate reloaded", 5000), "%s", p.log);

    /* Back to ca1's pair, written in place so that nothing a stat sees changes: still ca2's
       certificate serves; after SIGHUP the next connection gets ca1's. */
    rewrite_unseen("ca1-server.key", "live.key");
    rewrite_unseen("ca1-server.crt", "live.crt");
    cr_expect_eq(echo(p.grpc_port, &ca2, why, sizeof(why)), TALLY_GRPC_OK,
                 "an unseen change: the certificate in use stays: %s", why);
    cr_assert_eq(kill(p.pid, SIGHUP), 0);
    cr_expect(proc_log_wait(&p, "TLS files will be read again", 5000), "%s", p.log);
    cr_expect_eq(echo(p.grpc_port, &ca1, why, sizeof(why)), TALLY_GRPC_OK,
                 "after SIGHUP the files are read again: %s", why);
    cr_expect_eq(echo(p.grpc_port, &ca2, why, sizeof(why)), TALLY_GRPC_UNAVAILABLE,
                 "after SIGHUP, ca2's certificate is gone: %s", why);
    cr_expect_eq(proc_stop(&p, SIGTERM, 10000), 0);
    proc_release(&p);
}

/* `tally get` against echo-svc with the given TLS options: its output in out. */
static int tally_get(int port, const char *ca, const char *cert, const char *key, char **out)
{
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    const char *argv[24] = { TALLY_BIN_DIR "/tally", "--command", target, "--timeout", "3000" };
    int n = 5;
    if (ca) {
        argv[n++] = "--tls-ca";
        argv[n++] = ca;
    }
    if (cert) {
        argv[n++] = "--tls-cert";
        argv[n++] = cert;
        argv[n++] = "--tls-key";
        argv[n++] = key;
    }
    const char *rest[] = { "get", "--tenant", "acme", "--complaint", "1", NULL };
    for (int i = 0; rest[i]; i++)
        argv[n++] = rest[i];
    argv[n] = NULL;
    return proc_run_output(out, argv, 20000);
}

Test(tls, the_cli_speaks_tls_and_mtls)
{
    proc p;
    char *out;
    start(&p, path("ca1-server.crt"), path("ca1-server.key"), path("ca1-ca.crt"));
    cr_expect_eq(tally_get(p.grpc_port, path("ca1-ca.crt"), path("ca1-client.crt"),
                           path("ca1-client.key"), &out),
                 1);
    cr_expect(strstr(out, "UNIMPLEMENTED"), "mTLS from the CLI reaches the server: %s", out);
    free(out);
    cr_expect_eq(tally_get(p.grpc_port, path("ca1-ca.crt"), NULL, NULL, &out), 1);
    cr_expect(strstr(out, "UNAVAILABLE"), "without a client certificate: %s", out);
    free(out);
    cr_expect_eq(proc_stop(&p, SIGTERM, 10000), 0);
    proc_release(&p);

    start(&p, path("ca1-server.crt"), path("ca1-server.key"), NULL);
    cr_expect_eq(tally_get(p.grpc_port, path("ca1-ca.crt"), NULL, NULL, &out), 1);
    cr_expect(strstr(out, "UNIMPLEMENTED"), "TLS from the CLI reaches the server: %s", out);
    free(out);
    cr_expect_eq(tally_get(p.grpc_port, NULL, NULL, NULL, &out), 1);
    cr_expect(strstr(out, "UNAVAILABLE"), "plaintext CLI to a TLS server: %s", out);
    free(out);
    cr_expect_eq(proc_stop(&p, SIGTERM, 10000), 0);
    proc_release(&p);
}
