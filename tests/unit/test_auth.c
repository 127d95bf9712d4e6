/*
 * common/auth: token verification and minting, without a server. Keys are made here with
 * OpenSSL (an EC P-256 pair and an RSA 2048 pair), written to temporary PEM files.
 *
 * - Each accepted form (HS256, ES256 with two keys chosen by kid, RS256; tenant or tenants;
 *   "*"; aud a string or a list) verifies with its claims; the leeway works both ways.
 * - Each rejection has its reason: expired, not yet valid, bad signature, a tampered payload,
 *   another algorithm (HS512, none, HS256 signed with an RSA public key for an RS256
 *   verifier), unknown or missing kid, issuer and audience, bad or missing role and tenants,
 *   both tenant claims, a missing or out-of-range exp or nbf, a signature spelled another way
 *   (padding, unused bits), malformed tokens (parts, characters, JSON, duplicate claims,
 *   length).
 * - Keys: the wrong kind (RSA for ES256, secp256k1), private keys, unnamed keys among several.
 * - Configuration problems name the variable.
 * - auth_bearer's parsing of the metadata value.
 */
#include "auth.h"
#include "err.h"

#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOW    1800000000LL
#define SECRET "an-hs256-secret-of-more-than-32-bytes!"

static char tok[AUTH_TOKEN_MAX + 1];
static char why[256];

static auth_settings hs_settings(void)
{
    auth_settings s = { .mode = "jwt",
                        .alg = "HS256",
                        .secret = SECRET,
                        .secret_file = "",
                        .keys_file = "",
                        .issuer = "",
                        .audience = "",
                        .leeway_s = 30 };
    return s;
}

static auth_verifier *must_new(const auth_settings *s)
{
    char err[512] = "";
    auth_verifier *v = auth_new(s, err, sizeof(err));
    cr_assert(v, "auth_new: %s", err);
    return v;
}

static void must_mint(auth_mint_opts o)
{
    char err[256];
    if (!o.now_s)
        o.now_s = NOW;
    if (!o.ttl_s)
        o.ttl_s = 600;
    cr_assert_eq(auth_mint(&o, tok, sizeof(tok), err, sizeof(err)), 0, "mint: %s", err);
}

static int verify(const auth_verifier *v, const char *t, auth_claims *c)
{
    auth_claims scratch;
    why[0] = '\0';
    return auth_verify(v, t, strlen(t), NOW, c ? c : &scratch, why, sizeof(why));
}

static void expect_refused(const auth_verifier *v, const char *t, const char *reason)
{
    cr_expect_eq(verify(v, t, NULL), TALLY_EUNAUTH, "accepted, want \"%s\"", reason);
    cr_expect(strstr(why, reason), "reason \"%s\", want \"%s\"", why, reason);
}

/* ---- keys ---------------------------------------------------------------------------------- */

/* A PEM of k (public or private) into a malloc'd string. */
static char *pem_of(EVP_PKEY *k, bool private_key)
{
    BIO *b = BIO_new(BIO_s_mem());
    cr_assert(private_key ? PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL)
                          : PEM_write_bio_PUBKEY(b, k));
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *out = malloc((size_t)n + 1);
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    BIO_free(b);
    return out;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
}

Test(auth, hs256_accepts_and_reads_claims)
{
    auth_settings s = hs_settings();
    auth_verifier *v = must_new(&s);
    auth_claims c;
    must_mint((auth_mint_opts){
        .key = SECRET, .role = "manager", .tenants = "acme,globex", .subject = "dash-gw" });
    cr_assert_eq(verify(v, tok, &c), 0, "%s", why);
    cr_expect_eq(c.role, AUTH_MANAGER);
    cr_expect_eq(c.ntenants, 2);
    cr_expect_not(c.all_tenants);
    cr_expect(auth_tenant_granted(&c, "acme") && auth_tenant_granted(&c, "globex"));
    cr_expect_not(auth_tenant_granted(&c, "initech"));
    cr_expect_not(auth_tenant_granted(&c, "acm"));
    cr_expect_str_eq(c.subject, "dash-gw");
    cr_expect_eq(c.exp, NOW + 600);

    must_mint((auth_mint_opts){ .key = SECRET, .role = "admin", .tenants = "*" });
    cr_assert_eq(verify(v, tok, &c), 0, "%s", why);
    cr_expect(c.all_tenants && auth_tenant_granted(&c, "anyone"));
    auth_free(v);
}

Test(auth, time_claims_with_leeway)
{
    auth_settings s = hs_settings();
    auth_verifier *v = must_new(&s);
    must_mint((auth_mint_opts){ .key = SECRET, .role = "writer", .tenants = "acme", .ttl_s = -20 });
    cr_expect_eq(verify(v, tok, NULL), 0, "20 s past exp is within the 30 s leeway: %s", why);
    must_mint((auth_mint_opts){ .key = SECRET, .role = "writer", .tenants = "acme", .ttl_s = -31 });
    expect_refused(v, tok, "token expired");
    must_mint((auth_mint_opts){ .key = SECRET, .role = "writer", .tenants = "acme", .nbf_s = 20 });
    cr_expect_eq(verify(v, tok, NULL), 0, "nbf 20 s ahead is within the leeway: %s", why);
    must_mint((auth_mint_opts){ .key = SECRET, .role = "writer", .tenants = "acme", .nbf_s = 60 });
    expect_refused(v, tok, "not yet valid");
    auth_free(v);
}

Test(auth, signatures_and_algorithms)
{
    auth_settings s = hs_settings();
    auth_verifier *v = must_new(&s);
    must_mint((auth_mint_opts){
        .key = "another-secret-of-more-than-32-bytes!!", .role = "writer", .tenants = "acme" });
    expect_refused(v, tok, "signature not valid");
    must_mint(
        (auth_mint_opts){ .alg = "HS512", .key = SECRET, .role = "writer", .tenants = "acme" });
    expect_refused(v, tok, "algorithm not accepted (only HS256)");

    /* A valid token with its payload swapped: {"exp":9999999999,"role":"admin","tenants":["*"]} */
    must_mint((auth_mint_opts){ .key = SECRET, .role = "writer", .tenants = "acme" });
    char forged[AUTH_TOKEN_MAX];
    snprintf(forged, sizeof(forged), "%.*s.%s.%s", (int)strcspn(tok, "."), tok,
             "eyJleHAiOjk5OTk5OTk5OTksInJvbGUiOiJhZG1pbiIsInRlbmFudHMiOlsiKiJdfQ",
             strrchr(tok, '.') + 1);
    expect_refused(v, forged, "signature not valid");
    /* alg none, with and without a signature part */
    snprintf(forged, sizeof(forged), "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.%.*s.",
             (int)(strrchr(tok, '.') - strchr(tok, '.') - 1), strchr(tok, '.') + 1);
    expect_refused(v, forged, "not a signed JWT");
    snprintf(forged, sizeof(forged), "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.%.*s.c2ln",
             (int)(strrchr(tok, '.') - strchr(tok, '.') - 1), strchr(tok, '.') + 1);
    expect_refused(v, forged, "algorithm not accepted");
    /* "alg":"hs256": libjwt would take any case; we take only the configured name */
    snprintf(forged, sizeof(forged), "eyJhbGciOiJoczI1NiJ9%s", strchr(tok, '.'));
    expect_refused(v, forged, "algorithm not accepted");
    auth_free(v);
}

Test(auth, malformed_tokens)
{
    auth_settings s = hs_settings();
    auth_verifier *v = must_new(&s);
    static char big[AUTH_TOKEN_MAX + 2];
    memset(big, 'a', sizeof(big) - 1);
    expect_refused(v, "", "empty token");
    expect_refused(v, big, "longer than 8192 bytes");
    expect_refused(v, "abc", "three base64url parts");
    expect_refused(v, "a.b", "three base64url parts");
    expect_refused(v, "a.b.c.d", "three base64url parts");
    expect_refused(v, "e30=.e30.c2ln", "token header: not base64url JSON"); /* padding */
    expect_refused(v, "e+0.e30.c2ln", "token header: not base64url JSON");
    expect_refused(v, "bm90IGpzb24.e30.c2ln", "token header: not base64url JSON");
    expect_refused(v, "WzFd.e30.c2ln", "token header: not base64url JSON"); /* [1] */
    /* {"alg":"HS256","alg":"none"}: a duplicate key is not JSON we read */
    expect_refused(v, "eyJhbGciOiJIUzI1NiIsImFsZyI6Im5vbmUifQ.e30.c2ln",
                   "token header: not base64url JSON");
    /* {"alg":"HS256","typ":"JOSE+JSON"} */
    expect_refused(v, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpPU0UrSlNPTiJ9.e30.c2ln", "typ");
    auth_claims c;
    cr_expect_eq(auth_verify(v, "e30.e\0.c2ln", 11, NOW, &c, why, sizeof(why)), TALLY_EUNAUTH,
                 "a NUL inside");
    cr_expect(strstr(why, "three base64url parts"), "%s", why);
    auth_free(v);
}

Test(auth, claims_are_checked)
{
    auth_settings s = hs_settings();
    s.issuer = "https://id.example";
    s.audience = "tally";
    auth_verifier *v = must_new(&s);
    auth_mint_opts base = { .key = SECRET,
                            .role = "writer",
                            .tenants = "acme",
                            .issuer = "https://id.example",
                            .audience = "tally" };
    auth_mint_opts o = base;
    must_mint(o);
    cr_expect_eq(verify(v, tok, NULL), 0, "%s", why);
    o = base;
    o.issuer = NULL;
    must_mint(o);
    expect_refused(v, tok, "issuer");
    o = base;
    o.issuer = "https://evil.example";
    must_mint(o);
    expect_refused(v, tok, "issuer");
    o = base;
    o.audience = "someone-else";
    must_mint(o);
    expect_refused(v, tok, "audience");
    o = base;
    o.role = "root";
    must_mint(o);
    expect_refused(v, tok, "role");
    o = base;
    o.role = NULL;
    must_mint(o);
    expect_refused(v, tok, "role");
    o = base;
    o.tenants = NULL;
    must_mint(o);
    expect_refused(v, tok, "grants no tenant");
    o = base;
    o.tenants = "acme,bad tenant";
    must_mint(o);
    expect_refused(v, tok, "not a tenant id");
    o = base;
    o.tenants = "";
    must_mint(o);
    expect_refused(v, tok, "grants no tenant");
    auth_free(v);

    s = hs_settings();
    v = must_new(&s);
    /* exp is required, and must be a time (a huge one would overflow exp + leeway). */
    must_mint(
        (auth_mint_opts){ .key = SECRET, .role = "writer", .tenants = "acme", .no_exp = true });
    expect_refused(v, tok, "token has no exp claim");
    must_mint((auth_mint_opts){ .key = SECRET,
                                .role = "writer",
                                .tenants = "acme",
                                .claims_json = "{\"exp\":9223372036854775807}" });
    expect_refused(v, tok, "exp: not a time");
    must_mint((auth_mint_opts){
        .key = SECRET, .role = "writer", .tenants = "acme", .claims_json = "{\"exp\":\"soon\"}" });
    expect_refused(v, tok, "exp: not a time");
    must_mint((auth_mint_opts){ .key = SECRET,
                                .role = "writer",
                                .tenants = "acme",
                                .claims_json = "{\"nbf\":-9223372036854775807}" });
    expect_refused(v, tok, "nbf: not a time");
    /* One tenant as a string; "*" as a list or a string; both claims at once is refused. */
    auth_claims c;
    must_mint((auth_mint_opts){
        .key = SECRET, .role = "writer", .claims_json = "{\"tenant\":\"acme\"}" });
    cr_assert_eq(verify(v, tok, &c), 0, "%s", why);
    cr_expect(c.ntenants == 1 && auth_tenant_granted(&c, "acme") && !c.all_tenants);
    must_mint(
        (auth_mint_opts){ .key = SECRET, .role = "writer", .claims_json = "{\"tenant\":\"*\"}" });
    cr_assert_eq(verify(v, tok, &c), 0, "%s", why);
    cr_expect(c.all_tenants);
    must_mint((auth_mint_opts){ .key = SECRET,
                                .role = "writer",
                                .tenants = "acme",
                                .claims_json = "{\"tenant\":\"globex\"}" });
    expect_refused(v, tok, "both tenant and tenants");
    must_mint(
        (auth_mint_opts){ .key = SECRET, .role = "writer", .claims_json = "{\"tenants\":\"*\"}" });
    expect_refused(v, tok, "tenants: not a list");
    auth_free(v);

    /* aud as a list: it must hold the configured audience. */
    s = hs_settings();
    s.audience = "tally";
    v = must_new(&s);
    must_mint((auth_mint_opts){ .key = SECRET,
                                .role = "writer",
                                .tenants = "acme",
                                .claims_json = "{\"aud\":[\"billing\",\"tally\"]}" });
    cr_expect_eq(verify(v, tok, NULL), 0, "%s", why);
    must_mint((auth_mint_opts){ .key = SECRET,
                                .role = "writer",
                                .tenants = "acme",
                                .claims_json = "{\"aud\":[\"billing\",\"talley\"]}" });
    expect_refused(v, tok, "audience");
    auth_free(v);
}

/* The token with the last character of its signature changed in bits that decode to nothing. */
static void respell_last(char *t)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *last = t + strlen(t) - 1;
    int v = (int)(strchr(alphabet, *last) - alphabet);
    *last = alphabet[v ^ 1];
}

Test(auth, es256_keys_by_kid_and_rs256)
{
    char dir[] = "/tmp/test-auth-XXXXXX", path[128], text[8192];
    cr_assert(mkdtemp(dir));
    EVP_PKEY *k1 = EVP_EC_gen("P-256"), *k2 = EVP_EC_gen("P-256"), *rsa = EVP_RSA_gen(2048);
    cr_assert(k1 && k2 && rsa);
    char *pub1 = pem_of(k1, false), *pub2 = pem_of(k2, false), *priv1 = pem_of(k1, true),
         *priv2 = pem_of(k2, true), *rsa_pub = pem_of(rsa, false), *rsa_priv = pem_of(rsa, true);

    snprintf(path, sizeof(path), "%s/keys.pem", dir);
    snprintf(text, sizeof(text),
             "# rotation: 2026-12 first, then 2027-01\nkid: 2026-12\n%s\n"
             "kid: 2027-01\n%s",
             pub1, pub2);
    write_file(path, text);
    auth_settings s = hs_settings();
    s.alg = "ES256";
    s.secret = "";
    s.keys_file = path;
    auth_verifier *v = must_new(&s);
    must_mint((auth_mint_opts){
        .alg = "ES256", .key = priv1, .kid = "2026-12", .role = "writer", .tenants = "acme" });
    cr_expect_eq(verify(v, tok, NULL), 0, "kid 2026-12: %s", why);
    must_mint((auth_mint_opts){
        .alg = "ES256", .key = priv2, .kid = "2027-01", .role = "writer", .tenants = "acme" });
    cr_expect_eq(verify(v, tok, NULL), 0, "kid 2027-01: %s", why);
    must_mint((auth_mint_opts){
        .alg = "ES256", .key = priv2, .kid = "2026-12", .role = "writer", .tenants = "acme" });
    expect_refused(v, tok, "signature not valid");
    must_mint((auth_mint_opts){
        .alg = "ES256", .key = priv1, .kid = "2025-01", .role = "writer", .tenants = "acme" });
    expect_refused(v, tok, "kid) unknown");
    must_mint(
        (auth_mint_opts){ .alg = "ES256", .key = priv1, .role = "writer", .tenants = "acme" });
    expect_refused(v, tok, "no key id");
    /* One signature, one spelling: padding, or other bits in the last character's unused
       low bits (an ES256 signature is 86 characters for 64 bytes), are refused. */
    must_mint((auth_mint_opts){
        .alg = "ES256", .key = priv1, .kid = "2026-12", .role = "writer", .tenants = "acme" });
    cr_assert_eq(verify(v, tok, NULL), 0, "%s", why);
    char spelled[AUTH_TOKEN_MAX + 4];
    snprintf(spelled, sizeof(spelled), "%s=", tok);
    expect_refused(v, spelled, "signature not valid");
    snprintf(spelled, sizeof(spelled), "%s", tok);
    respell_last(spelled);
    expect_refused(v, spelled, "signature not valid");
    /* An HS256 token whose "secret" is the public key's PEM: the classic confusion. */
    must_mint((auth_mint_opts){ .key = pub1, .kid = "2026-12", .role = "admin", .tenants = "*" });
    expect_refused(v, tok, "algorithm not accepted (only ES256)");
    auth_free(v);

    /* RS256 with one key and no kid line: every token's key. */
    write_file(path, rsa_pub);
    s.alg = "RS256";
    v = must_new(&s);
    must_mint(
        (auth_mint_opts){ .alg = "RS256", .key = rsa_priv, .role = "manager", .tenants = "acme" });
    cr_expect_eq(verify(v, tok, NULL), 0, "RS256: %s", why);
    must_mint((auth_mint_opts){ .key = rsa_pub, .role = "admin", .tenants = "*" });
    expect_refused(v, tok, "algorithm not accepted (only RS256)");
    auth_free(v);

    /* Configuration: the wrong kind of key, a private key, two keys without kids. */
    char err[512];
    s.alg = "ES256";
    write_file(path, rsa_pub);
    cr_expect_null(auth_new(&s, err, sizeof(err)));
    cr_expect(strstr(err, "TALLY_AUTH_JWT_KEYS_FILE: key 1 is not an EC P-256 public key"), "%s",
              err);
    write_file(path, priv1);
    cr_expect_null(auth_new(&s, err, sizeof(err)));
    cr_expect(strstr(err, "not a complete PEM PUBLIC KEY"), "%s", err);
    snprintf(text, sizeof(text), "%s%s", pub1, pub2);
    write_file(path, text);
    cr_expect_null(auth_new(&s, err, sizeof(err)));
    cr_expect(strstr(err, "several keys need a kid"), "%s", err);
    snprintf(text, sizeof(text), "kid: a\n%s%s", pub1, pub2); /* the second one unnamed */
    write_file(path, text);
    cr_expect_null(auth_new(&s, err, sizeof(err)));
    cr_expect(strstr(err, "several keys need a kid"), "%s", err);
    EVP_PKEY *k256k1 = EVP_EC_gen("secp256k1");
    char *pub256k1 = pem_of(k256k1, false);
    write_file(path, pub256k1);
    cr_expect_null(auth_new(&s, err, sizeof(err)));
    cr_expect(strstr(err, "not an EC P-256 public key"), "secp256k1 is not P-256: %s", err);
    free(pub256k1);
    EVP_PKEY_free(k256k1);
    write_file(path, "nothing here\n");
    cr_expect_null(auth_new(&s, err, sizeof(err)));
    cr_expect(strstr(err, "TALLY_AUTH_JWT_KEYS_FILE"), "%s", err);

    unlink(path);
    rmdir(dir);
    free(pub1), free(pub2), free(priv1), free(priv2), free(rsa_pub), free(rsa_priv);
    EVP_PKEY_free(k1), EVP_PKEY_free(k2), EVP_PKEY_free(rsa);
}

Test(auth, configuration_names_the_variable)
{
    char err[512];
    auth_settings s = hs_settings();
    s.secret = "too-short";
    cr_expect_null(auth_new(&s, err, sizeof(err)));
    cr_expect(strstr(err, "TALLY_AUTH_JWT_SECRET: shorter than 32 bytes"), "%s", err);
    s.secret = "";
    cr_expect_null(auth_new(&s, err, sizeof(err)));
    cr_expect(strstr(err, "TALLY_AUTH_JWT_SECRET or TALLY_AUTH_JWT_SECRET_FILE: required"), "%s",
              err);
    s = hs_settings();
    s.secret_file = "/etc/hostname";
    cr_expect_null(auth_new(&s, err, sizeof(err)));
    cr_expect(strstr(err, "set one, not both"), "%s", err);
    s = hs_settings();
    s.alg = "none";
    cr_expect_null(auth_new(&s, err, sizeof(err)));
    cr_expect(strstr(err, "TALLY_AUTH_JWT_ALG"), "%s", err);
    s = hs_settings();
    s.alg = "RS256";
    cr_expect_null(auth_new(&s, err, sizeof(err)));
    cr_expect(strstr(err, "TALLY_AUTH_JWT_SECRET: for HS256"), "%s", err);
}

Test(auth, bearer_values)
{
    const char *t;
    size_t n;
    cr_expect_eq(auth_bearer("Bearer abc", 10, &t, &n, why, sizeof(why)), 0);
    cr_expect(n == 3 && memcmp(t, "abc", 3) == 0);
    cr_expect_eq(auth_bearer("bEaReR   abc  ", 14, &t, &n, why, sizeof(why)), 0);
    cr_expect(n == 3 && memcmp(t, "abc", 3) == 0);
    cr_expect_eq(auth_bearer(NULL, 0, &t, &n, why, sizeof(why)), TALLY_EUNAUTH);
    cr_expect(strstr(why, "no authorization"), "%s", why);
    cr_expect_eq(auth_bearer("Basic abc", 9, &t, &n, why, sizeof(why)), TALLY_EUNAUTH);
    cr_expect_eq(auth_bearer("Bearer", 6, &t, &n, why, sizeof(why)), TALLY_EUNAUTH);
    cr_expect_eq(auth_bearer("Bearer    ", 10, &t, &n, why, sizeof(why)), TALLY_EUNAUTH);
    cr_expect_eq(auth_bearer("Bearerabc", 9, &t, &n, why, sizeof(why)), TALLY_EUNAUTH);
}

Test(auth, the_cache_answers_only_for_the_same_token_in_time)
{
    auth_settings s = hs_settings();
    auth_verifier *v = must_new(&s);
    auth_cache *cache = auth_cache_new(4); /* one set: tokens evict each other */
    cr_assert(cache);
    static char toks[10][AUTH_TOKEN_MAX + 1];
    for (int i = 0; i < 10; i++) {
        char tenant[16];
        snprintf(tenant, sizeof(tenant), "tenant-%d", i);
        must_mint((auth_mint_opts){ .key = SECRET,
                                    .role = i % 2 ? "manager" : "writer",
                                    .tenants = tenant,
                                    .ttl_s = 100 + i });
        snprintf(toks[i], sizeof(toks[i]), "%s", tok);
    }
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 10; i++) {
            auth_claims c;
            char tenant[16];
            snprintf(tenant, sizeof(tenant), "tenant-%d", i);
            cr_assert_eq(
                auth_verify_cached(v, cache, toks[i], strlen(toks[i]), NOW, &c, why, sizeof(why)),
                0, "%s", why);
            cr_expect_eq(c.role, i % 2 ? AUTH_MANAGER : AUTH_WRITER, "round %d token %d", round, i);
            cr_expect(c.ntenants == 1 && strcmp(c.tenants[0], tenant) == 0, "round %d token %d",
                      round, i);
            cr_expect_eq(c.exp, NOW + 100 + i);
        }
    /* Cached, and then expired: the cache checks exp on every use. */
    auth_claims c;
    cr_assert_eq(auth_verify_cached(v, cache, toks[9], strlen(toks[9]), NOW, &c, why, sizeof(why)),
                 0);
    cr_expect_eq(auth_verify_cached(v, cache, toks[9], strlen(toks[9]), NOW + 109 + 31, &c, why,
                                    sizeof(why)),
                 TALLY_EUNAUTH);
    cr_expect(strstr(why, "expired"), "%s", why);
    /* A token that differs from a cached one in its last byte is not the cached one (its hash
       differs too: that the comparison is in full is not shown here). */
    cr_assert_eq(auth_verify_cached(v, cache, toks[8], strlen(toks[8]), NOW, &c, why, sizeof(why)),
                 0);
    static char forged[AUTH_TOKEN_MAX + 1];
    snprintf(forged, sizeof(forged), "%s", toks[8]);
    forged[strlen(forged) - 1] ^= 1;
    cr_expect_eq(auth_verify_cached(v, cache, forged, strlen(forged), NOW, &c, why, sizeof(why)),
                 TALLY_EUNAUTH);
    auth_cache_free(cache);
    auth_free(v);
}
