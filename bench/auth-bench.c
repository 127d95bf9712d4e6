/*
 * bench-auth: what verifying a bearer token costs (common/auth), in CPU microseconds per
 * token on one thread, for HS256, RS256 and ES256: the first time a token is seen (a full
 * verification: libjwt reads the key and checks the signature, then the claims) and again
 * (answered by a worker's cache of verified tokens, as common/srv does), and a forged one (a
 * signature changed: refused, as a caller without the key sees it). Keys are made here; every
 * token is distinct (its own sub), so the first pass never hits the cache.
 *
 * Usage: bench-auth [--n N]   (N tokens per algorithm, default 2000)
 * Prints one line per algorithm; h2load-echo.sh measures the same end to end, per call.
 */
#include "args.h"
#include "auth.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *pem_of(EVP_PKEY *k, int private_key)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b || !(private_key ? PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL)
                            : PEM_write_bio_PUBKEY(b, k)))
        return NULL;
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *out = malloc((size_t)n + 1);
    if (out) {
        memcpy(out, data, (size_t)n);
        out[n] = '\0';
    }
    BIO_free(b);
    return out;
}

typedef struct opts {
    long n;
} opts;

static int take(void *arg, int opt, char *value)
{
    opts *o = arg;
    char *end;
    (void)opt;
    o->n = strtol(value, &end, 10);
    if (*end || o->n < 1 || o->n > 1000000) {
        fprintf(stderr, "bench-auth: --n: 1 to 1000000, got \"%s\"\n", value);
        return 1;
    }
    return 0;
}

/* Verifies n tokens of alg (signed with sign_key, checked against the verifier's key) twice. */
static int run(const char *alg, const char *sign_key, const char *keys_file, long n)
{
    static const char secret[] = "a-benchmark-secret-of-more-than-32-bytes";
    auth_settings s = { .mode = "jwt",
                        .alg = alg,
                        .secret = keys_file ? "" : secret,
                        .secret_file = "",
                        .keys_file = keys_file ? keys_file : "",
                        .issuer = "",
                        .audience = "",
                        .leeway_s = 30 };
    char err[512], why[256];
    auth_verifier *v = auth_new(&s, err, sizeof(err));
    auth_cache *cache = auth_cache_new(8 * (size_t)n); /* room for all: every second look hits */
    char(*toks)[1024] = malloc((size_t)n * sizeof(*toks));
    int64_t now = (int64_t)time(NULL);
    int rc = 1;
    if (!v || !cache || !toks) {
        fprintf(stderr, "bench-auth: %s: %s\n", alg, v ? "out of memory" : err);
        goto out;
    }
    for (long i = 0; i < n; i++) {
        char sub[32];
        snprintf(sub, sizeof(sub), "caller-%ld", i);
        auth_mint_opts o = { .alg = alg,
                             .key = keys_file ? sign_key : secret,
                             .role = "manager",
                             .tenants = "acme,globex",
                             .subject = sub,
                             .now_s = now,
                             .ttl_s = 3600 };
        if (auth_mint(&o, toks[i], sizeof(toks[i]), err, sizeof(err)) != 0) {
            fprintf(stderr, "bench-auth: %s: %s\n", alg, err);
            goto out;
        }
    }
    double t[3];
    auth_claims c;
    t[0] = cpu_seconds();
    for (int pass = 0; pass < 2; pass++) {
        for (long i = 0; i < n; i++)
            if (auth_verify_cached(v, cache, toks[i], strlen(toks[i]), now, &c, why, sizeof(why)) !=
                0) {
                fprintf(stderr, "bench-auth: %s: token %ld refused: %s\n", alg, i, why);
                goto out;
            }
        t[pass + 1] = cpu_seconds();
    }
    /* Forged: each token with a character of its signature changed (refused, never cached). */
    for (long i = 0; i < n; i++) {
        char *ch = toks[i] + strlen(toks[i]) - 3;
        *ch = *ch == 'A' ? 'B' : 'A';
    }
    double f0 = cpu_seconds();
    for (long i = 0; i < n; i++)
        if (auth_verify_cached(v, cache, toks[i], strlen(toks[i]), now, &c, why, sizeof(why)) ==
            0) {
            fprintf(stderr, "bench-auth: %s: a forged token %ld was accepted\n", alg, i);
            goto out;
        }
    double f1 = cpu_seconds();
    printf("%-6s %8ld %12.2f %12.3f %12.2f %10zu\n", alg, n, (t[1] - t[0]) * 1e6 / (double)n,
           (t[2] - t[1]) * 1e6 / (double)n, (f1 - f0) * 1e6 / (double)n, strlen(toks[0]));
    rc = 0;
out:
    free(toks);
    auth_cache_free(cache);
    auth_free(v);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = { { "n", required_argument, NULL, 'n' },
                                              { "help", no_argument, NULL, 'h' },
                                              { NULL, 0, NULL, 0 } };
    opts o = { .n = 2000 };
    args_spec spec = { .prog = "bench-auth",
                       .usage = "usage: bench-auth [--n N]\n",
                       .shortopts = "h",
                       .longopts = longopts,
                       .help = 'h',
                       .fn = take,
                       .arg = &o };
    int a = args_parse(&spec, argc, argv);
    if (a != ARGS_OK)
        return a == ARGS_HELP ? 0 : 2;

    char dir[] = "/tmp/bench-auth-XXXXXX", es_path[64], rs_path[64];
    if (!mkdtemp(dir))
        return 1;
    snprintf(es_path, sizeof(es_path), "%s/es256.pem", dir);
    snprintf(rs_path, sizeof(rs_path), "%s/rs256.pem", dir);
    EVP_PKEY *es = EVP_EC_gen("P-256"), *rs = EVP_RSA_gen(2048);
    char *es_pub = es ? pem_of(es, 0) : NULL, *es_priv = es ? pem_of(es, 1) : NULL;
    char *rs_pub = rs ? pem_of(rs, 0) : NULL, *rs_priv = rs ? pem_of(rs, 1) : NULL;
    FILE *f1 = fopen(es_path, "w"), *f2 = fopen(rs_path, "w");
    int rc = 1;
    if (!es_pub || !es_priv || !rs_pub || !rs_priv || !f1 || !f2) {
        fprintf(stderr, "bench-auth: cannot make the keys\n");
        goto out;
    }
    fputs(es_pub, f1);
    fputs(rs_pub, f2);
    fclose(f1);
    fclose(f2);
    f1 = f2 = NULL;
    printf("CPU microseconds per token, one thread (%s)\n", "first sight: full verification; "
                                                            "again: the worker's cache");
    printf("%-6s %8s %12s %12s %12s %10s\n", "alg", "tokens", "first us", "again us", "forged us",
           "bytes");
    rc = run("HS256", NULL, NULL, o.n) || run("RS256", rs_priv, rs_path, o.n) ||
         run("ES256", es_priv, es_path, o.n);
out:
    if (f1)
        fclose(f1);
    if (f2)
        fclose(f2);
    unlink(es_path);
    unlink(rs_path);
    rmdir(dir);
    free(es_pub), free(es_priv), free(rs_pub), free(rs_priv);
    EVP_PKEY_free(es);
    EVP_PKEY_free(rs);
    return rc;
}
