#include "auth.h"

#include "err.h"
#include "hash.h"

#include <jansson.h>
#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SECRET_MAX  512        /* the longest HS256 secret */
#define KID_MAX     64         /* the longest key id */
#define KEYS_LIMIT  (64 << 10) /* the largest keys file */
#define HEADER_MAX  1024       /* the longest decoded header */
#define PAYLOAD_MAX 6144       /* the longest decoded payload */

typedef struct auth_key {
    char kid[KID_MAX + 1]; /* "" when the file names none (then it is the only key) */
    unsigned char *pem;    /* what libjwt takes: the PEM (or the HS256 secret) */
    int len;
    EVP_PKEY *pkey; /* RS256/ES256: the key parsed once, for our own check of signatures */
    size_t siglen;  /* the signature's length: 32 (HS256), 64 (ES256), the modulus (RS256) */
} auth_key;

struct auth_verifier {
    jwt_alg_t alg;
    char alg_name[8];
    auth_key keys[AUTH_KEYS_MAX];
    size_t nkeys;
    char issuer[256];
    char audience[256];
    int64_t leeway_s;
};

void auth_vars(auth_settings *s, cfg_var *out, const char *mode_default)
{
    const cfg_var vars[AUTH_NVARS] = {
        { "TALLY_AUTH", CFG_STR, mode_default, 0, 0, 0, &s->mode,
          "jwt (bearer tokens required) or off (every caller trusted: development only)" },
        { "TALLY_AUTH_JWT_ALG", CFG_STR, "HS256", 0, 0, 0, &s->alg,
          "the one token algorithm accepted: HS256, RS256 or ES256" },
        { "TALLY_AUTH_JWT_SECRET", CFG_STR, "", 0, 0, CFG_SECRET, &s->secret,
          "HS256: the shared secret (32 bytes or more); prefer TALLY_AUTH_JWT_SECRET_FILE" },
        { "TALLY_AUTH_JWT_SECRET_FILE", CFG_FILE, "", 0, 0, 0, &s->secret_file,
          "HS256: a file holding the secret on one line" },
        { "TALLY_AUTH_JWT_KEYS_FILE", CFG_FILE, "", 0, 0, 0, &s->keys_file,
          "RS256/ES256: PEM public keys, each after a line \"kid: NAME\"" },
        { "TALLY_AUTH_JWT_ISSUER", CFG_STR, "", 0, 0, 0, &s->issuer,
          "when set, the iss every token must carry" },
        { "TALLY_AUTH_JWT_AUDIENCE", CFG_STR, "", 0, 0, 0, &s->audience,
          "when set, an aud every token must carry" },
        { "TALLY_AUTH_JWT_LEEWAY_S", CFG_INT, "30", 0, 3600, 0, &s->leeway_s,
          "seconds of clock skew allowed when checking exp and nbf" },
    };
    memcpy(out, vars, sizeof(vars));
}

const char *auth_role_name(unsigned role)
{
    switch (role) {
    case AUTH_WRITER:
        return "writer";
    case AUTH_MANAGER:
        return "manager";
    case AUTH_ADMIN:
        return "admin";
    default:
        return "none";
    }
}

unsigned auth_role_parse(const char *name)
{
    if (strcmp(name, "writer") == 0)
        return AUTH_WRITER;
    if (strcmp(name, "manager") == 0)
        return AUTH_MANAGER;
    if (strcmp(name, "admin") == 0)
        return AUTH_ADMIN;
    return 0;
}

/* ---- keys -------------------------------------------------------------------------------- */

/* The public key of pem (len bytes) if it is of the kind alg verifies with, else NULL. */
static EVP_PKEY *key_load(jwt_alg_t alg, const unsigned char *pem, int len)
{
    BIO *bio = BIO_new_mem_buf(pem, len);
    EVP_PKEY *k = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    char group[64] = "";
    bool ok = false;
    if (k) {
        int id = EVP_PKEY_get_base_id(k);
        if (alg == JWT_ALG_RS256)
            ok = id == EVP_PKEY_RSA && EVP_PKEY_get_bits(k) >= 2048 &&
                 EVP_PKEY_get_bits(k) <= 8192; /* its signatures must fit our buffer */
        else /* ES256 is P-256 only: another 256-bit curve (secp256k1) is not it */
            ok = id == EVP_PKEY_EC &&
                 EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                                NULL) == 1 &&
                 strcmp(group, "prime256v1") == 0;
    }
    BIO_free(bio);
    if (!ok) {
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

/*
 * Our own check of an RS256/ES256 signature (sig, the raw JWS bytes) over the signing input,
 * with the key parsed once: a forged signature costs tens of microseconds, not libjwt's PEM
 * parse. libjwt checks the good ones again.
 */
static bool signature_ok(jwt_alg_t alg, EVP_PKEY *k, const unsigned char *sig, size_t siglen,
                         const char *input, size_t inlen)
{
    unsigned char der[80];
    const unsigned char *s = sig;
    size_t slen = siglen;
    bool ok = false;
    if (alg == JWT_ALG_ES256) { /* JWS's R || S to the DER that OpenSSL verifies */
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, 32, NULL), *ss = BN_bin2bn(sig + 32, 32, NULL);
        unsigned char *out = der;
        int n = -1;
        if (es && r && ss && ECDSA_SIG_set0(es, r, ss) == 1) {
            r = ss = NULL; /* owned by es now */
            if (i2d_ECDSA_SIG(es, NULL) <= (int)sizeof(der))
                n = i2d_ECDSA_SIG(es, &out);
        }
        BN_free(r);
        BN_free(ss);
        ECDSA_SIG_free(es);
        if (n <= 0)
            return false;
        s = der;
        slen = (size_t)n;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k) == 1)
        ok = EVP_DigestVerify(ctx, s, slen, (const unsigned char *)input, inlen) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

/* Reads the keys file: blocks "-----BEGIN PUBLIC KEY-----" .. "-----END PUBLIC KEY-----",
   each after an optional "kid: NAME" line. */
static int load_keys(auth_verifier *v, const char *path, char *err, size_t errlen)
{
    char why[300], *p;
    char kid[KID_MAX + 1] = "";
    int rc = TALLY_EINVAL;
    char *buf = cfg_read_file(path, KEYS_LIMIT, why, sizeof(why));
    if (!buf) {
        snprintf(err, errlen, "TALLY_AUTH_JWT_KEYS_FILE: %s", why);
        return TALLY_EINVAL;
    }
    for (p = buf; *p;) {
        char *eol = p + strcspn(p, "\n");
        size_t linelen = (size_t)(eol - p);
        if (strncmp(p, "kid:", 4) == 0) {
            const char *k = p + 4;
            while (*k == ' ')
                k++;
            size_t klen = (size_t)(eol - k);
            while (klen && (k[klen - 1] == ' ' || k[klen - 1] == '\r'))
                klen--;
            if (klen == 0 || klen > KID_MAX) {
                snprintf(err, errlen, "TALLY_AUTH_JWT_KEYS_FILE: a kid of 1 to %d bytes, got %.*s",
                         KID_MAX, (int)linelen, p);
                goto out;
            }
            memcpy(kid, k, klen);
            kid[klen] = '\0';
        } else if (strncmp(p, "-----BEGIN ", 11) == 0) {
            char *end = strstr(p, "-----END ");
            char *stop = end ? strstr(end + 9, "-----") : NULL;
            if (!stop || strncmp(p, "-----BEGIN PUBLIC KEY-----", 26) != 0) {
                snprintf(err, errlen,
                         "TALLY_AUTH_JWT_KEYS_FILE: key %zu is not a complete PEM PUBLIC KEY",
                         v->nkeys + 1);
                goto out;
            }
            stop += 5;
            if (v->nkeys == AUTH_KEYS_MAX) {
                snprintf(err, errlen, "TALLY_AUTH_JWT_KEYS_FILE: more than %d keys", AUTH_KEYS_MAX);
                goto out;
            }
            for (size_t i = 0; i < v->nkeys; i++)
                if (strcmp(v->keys[i].kid, kid) == 0) {
                    snprintf(err, errlen,
                             kid[0] ? "TALLY_AUTH_JWT_KEYS_FILE: two keys with kid %s"
                                    : "TALLY_AUTH_JWT_KEYS_FILE: several keys need a kid: "
                                      "line each%s",
                             kid);
                    goto out;
                }
            auth_key *key = &v->keys[v->nkeys];
            key->len = (int)(stop - p);
            key->pem = malloc((size_t)key->len + 1);
            if (!key->pem) {
                snprintf(err, errlen, "out of memory");
                goto out;
            }
            memcpy(key->pem, p, (size_t)key->len);
            key->pem[key->len] = '\0';
            memcpy(key->kid, kid, sizeof(kid));
            v->nkeys++;
            if (!(key->pkey = key_load(v->alg, key->pem, key->len))) {
                snprintf(err, errlen, "TALLY_AUTH_JWT_KEYS_FILE: key %zu%s%s is not %s", v->nkeys,
                         kid[0] ? " kid " : "", kid,
                         v->alg == JWT_ALG_RS256 ? "an RSA public key of 2048 to 8192 bits"
                                                 : "an EC P-256 public key");
                goto out;
            }
            key->siglen = v->alg == JWT_ALG_ES256 ? 64 : (size_t)EVP_PKEY_get_size(key->pkey);
            for (size_t i = 0; v->nkeys > 1 && i < v->nkeys; i++)
                if (!v->keys[i].kid[0]) {
                    snprintf(err, errlen,
                             "TALLY_AUTH_JWT_KEYS_FILE: several keys need a kid: line each");
                    goto out;
                }
            kid[0] = '\0';
            eol = stop + strcspn(stop, "\n");
        } else if (linelen && strspn(p, " \t\r") != linelen && p[0] != '#') {
            snprintf(err, errlen, "TALLY_AUTH_JWT_KEYS_FILE: unexpected line %.*s",
                     (int)(linelen > 60 ? 60 : linelen), p);
            goto out;
        }
        p = *eol ? eol + 1 : eol;
    }
    if (v->nkeys == 0) {
        snprintf(err, errlen, "TALLY_AUTH_JWT_KEYS_FILE: %s holds no PUBLIC KEY", path);
        goto out;
    }
    rc = 0;
out:
    free(buf);
    return rc;
}

auth_verifier *auth_new(const auth_settings *s, char *err, size_t errlen)
{
    auth_verifier *v = calloc(1, sizeof(*v));
    if (!v) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    v->leeway_s = s->leeway_s;
    if (strcmp(s->alg, "HS256") == 0)
        v->alg = JWT_ALG_HS256;
    else if (strcmp(s->alg, "RS256") == 0)
        v->alg = JWT_ALG_RS256;
    else if (strcmp(s->alg, "ES256") == 0)
        v->alg = JWT_ALG_ES256;
    else {
        snprintf(err, errlen, "TALLY_AUTH_JWT_ALG: HS256, RS256 or ES256, got \"%.40s\"", s->alg);
        goto out_free;
    }
    snprintf(v->alg_name, sizeof(v->alg_name), "%s", s->alg);
    if ((size_t)snprintf(v->issuer, sizeof(v->issuer), "%s", s->issuer) >= sizeof(v->issuer) ||
        (size_t)snprintf(v->audience, sizeof(v->audience), "%s", s->audience) >=
            sizeof(v->audience)) {
        snprintf(err, errlen, "TALLY_AUTH_JWT_ISSUER, TALLY_AUTH_JWT_AUDIENCE: at most 255 bytes");
        goto out_free;
    }
    if (v->alg == JWT_ALG_HS256) {
        char secret[SECRET_MAX + 1], why[256];
        if (s->keys_file[0]) {
            snprintf(err, errlen,
                     "TALLY_AUTH_JWT_KEYS_FILE: for RS256 and ES256; HS256 takes "
                     "TALLY_AUTH_JWT_SECRET or TALLY_AUTH_JWT_SECRET_FILE");
            goto out_free;
        }
        if (s->secret[0] && s->secret_file[0]) {
            snprintf(err, errlen,
                     "TALLY_AUTH_JWT_SECRET, TALLY_AUTH_JWT_SECRET_FILE: set one, not both");
            goto out_free;
        }
        if (!s->secret[0] && !s->secret_file[0]) {
            snprintf(err, errlen,
                     "TALLY_AUTH_JWT_SECRET or TALLY_AUTH_JWT_SECRET_FILE: required for HS256 "
                     "(or TALLY_AUTH=off to trust every caller)");
            goto out_free;
        }
        if (s->secret_file[0]) {
            if (cfg_read_secret(s->secret_file, secret, sizeof(secret), why, sizeof(why)) != 0) {
                snprintf(err, errlen, "TALLY_AUTH_JWT_SECRET_FILE: %s", why);
                goto out_free;
            }
        } else if ((size_t)snprintf(secret, sizeof(secret), "%s", s->secret) >= sizeof(secret)) {
            snprintf(err, errlen, "TALLY_AUTH_JWT_SECRET: longer than %d bytes", SECRET_MAX);
            goto out_free;
        }
        size_t len = strlen(secret);
        if (len < AUTH_SECRET_MIN) {
            memset(secret, 0, sizeof(secret));
            snprintf(err, errlen, "%s: shorter than %d bytes",
                     s->secret_file[0] ? "TALLY_AUTH_JWT_SECRET_FILE" : "TALLY_AUTH_JWT_SECRET",
                     AUTH_SECRET_MIN);
            goto out_free;
        }
        v->keys[0].pem = malloc(len + 1);
        if (!v->keys[0].pem) {
            snprintf(err, errlen, "out of memory");
            goto out_free;
        }
        memcpy(v->keys[0].pem, secret, len + 1);
        memset(secret, 0, sizeof(secret));
        v->keys[0].len = (int)len;
        v->keys[0].siglen = 32;
        v->nkeys = 1;
    } else {
        if (s->secret[0] || s->secret_file[0]) {
            snprintf(err, errlen,
                     "TALLY_AUTH_JWT_SECRET: for HS256; %s takes "
                     "TALLY_AUTH_JWT_KEYS_FILE",
                     v->alg_name);
            goto out_free;
        }
        if (!s->keys_file[0]) {
            snprintf(err, errlen,
                     "TALLY_AUTH_JWT_KEYS_FILE: required for %s (or TALLY_AUTH=off to trust "
                     "every caller)",
                     v->alg_name);
            goto out_free;
        }
        if (load_keys(v, s->keys_file, err, errlen) != 0)
            goto out_free;
    }
    return v;
out_free:
    auth_free(v);
    return NULL;
}

void auth_free(auth_verifier *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->nkeys; i++) {
        if (v->keys[i].pem)
            memset(v->keys[i].pem, 0, (size_t)v->keys[i].len);
        free(v->keys[i].pem);
        EVP_PKEY_free(v->keys[i].pkey);
    }
    free(v);
}

/* ---- verification ------------------------------------------------------------------------ */

static int b64url_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Decodes unpadded base64url; the length, or -1 (a bad character, a bad length, too long). */
static long b64url_decode(const char *in, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    if (len % 4 == 1)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_val((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap)
                return -1;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
        return -1; /* non-canonical trailing bits */
    return (long)o;
}

static json_t *part_json(const char *in, size_t len, size_t cap)
{
    char buf[PAYLOAD_MAX];
    long n = b64url_decode(in, len, buf, cap < sizeof(buf) ? cap : sizeof(buf));
    if (n <= 0)
        return NULL;
    json_t *j = json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

static int fail(char *why, size_t whylen, const char *reason)
{
    snprintf(why, whylen, "%s", reason);
    return TALLY_EUNAUTH;
}

#define DATE_MAX 253402300799LL /* 9999-12-31T23:59:59Z: no sum with a leeway can overflow */

/* Reads a NumericDate claim (an integer; JSON reals are allowed by RFC 7519, truncated),
   0..DATE_MAX. */
static bool numeric_date(json_t *claims, const char *name, int64_t *out)
{
    json_t *j = json_object_get(claims, name);
    if (json_is_integer(j))
        *out = (int64_t)json_integer_value(j);
    else if (json_is_real(j) && json_real_value(j) >= 0 && json_real_value(j) <= (double)DATE_MAX)
        *out = (int64_t)json_real_value(j);
    else
        return false;
    return *out >= 0 && *out <= DATE_MAX;
}

static bool audience_ok(json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    if (json_is_array(aud)) {
        size_t i;
        json_t *e;
        json_array_foreach(aud, i, e)
        {
            if (json_is_string(e) && strcmp(json_string_value(e), want) == 0)
                return true;
        }
    }
    return false;
}

static int add_tenant(auth_claims *out, json_t *t, char *why, size_t whylen)
{
    const char *s = json_string_value(t);
    if (!s)
        return fail(why, whylen, "token claim tenants: not a list of strings");
    if (strcmp(s, "*") == 0) {
        out->all_tenants = true;
        return 0;
    }
    if (ident_check(s) != IDENT_OK || json_string_length(t) != strlen(s))
        return fail(why, whylen, "token claim tenants: not a tenant id");
    if (out->ntenants == AUTH_TENANTS_MAX)
        return fail(why, whylen, "token claim tenants: more than 64 tenants");
    memcpy(out->tenants[out->ntenants++], s, strlen(s) + 1);
    return 0;
}

static int read_claims(const auth_verifier *v, json_t *claims, int64_t now_s, auth_claims *out,
                       char *why, size_t whylen)
{
    int64_t exp, nbf;
    json_t *j;
    if (!json_object_get(claims, "exp"))
        return fail(why, whylen, "token has no exp claim");
    if (!numeric_date(claims, "exp", &exp))
        return fail(why, whylen, "token claim exp: not a time from 1970 to 9999");
    if (now_s > exp + v->leeway_s)
        return fail(why, whylen, "token expired");
    if (json_object_get(claims, "nbf")) {
        if (!numeric_date(claims, "nbf", &nbf))
            return fail(why, whylen, "token claim nbf: not a time from 1970 to 9999");
        if (now_s + v->leeway_s < nbf)
            return fail(why, whylen, "token not yet valid (nbf)");
    }
    if (v->issuer[0]) {
        j = json_object_get(claims, "iss");
        if (!json_is_string(j) || strcmp(json_string_value(j), v->issuer) != 0)
            return fail(why, whylen, "token issuer (iss) not accepted");
    }
    if (v->audience[0] && !audience_ok(json_object_get(claims, "aud"), v->audience))
        return fail(why, whylen, "token audience (aud) not accepted");
    j = json_object_get(claims, "role");
    out->role = json_is_string(j) ? auth_role_parse(json_string_value(j)) : 0;
    if (!out->role)
        return fail(why, whylen, "token claim role: writer, manager or admin required");
    out->exp = exp;
    out->ntenants = 0;
    out->all_tenants = false;
    json_t *list = json_object_get(claims, "tenants");
    json_t *one = json_object_get(claims, "tenant");
    if (list && one)
        return fail(why, whylen, "token has both tenant and tenants claims");
    if (list) {
        size_t i;
        if (!json_is_array(list))
            return fail(why, whylen, "token claim tenants: not a list of strings");
        json_array_foreach(list, i, j)
        {
            if (add_tenant(out, j, why, whylen) != 0)
                return TALLY_EUNAUTH;
        }
    } else if (one && add_tenant(out, one, why, whylen) != 0) {
        return TALLY_EUNAUTH;
    }
    if (!out->all_tenants && out->ntenants == 0)
        return fail(why, whylen, "token grants no tenant (claim tenant or tenants)");
    j = json_object_get(claims, "sub");
    snprintf(out->subject, sizeof(out->subject), "%s",
             json_is_string(j) ? json_string_value(j) : "");
    return 0;
}

int auth_verify(const auth_verifier *v, const char *token, size_t len, int64_t now_s,
                auth_claims *out, char *why, size_t whylen)
{
    char copy[AUTH_TOKEN_MAX + 1];
    const char *dot1, *dot2;
    const auth_key *key = NULL;
    json_t *header, *claims = NULL;
    jwt_t *jwt = NULL;
    int rc = TALLY_EUNAUTH;

    if (len == 0)
        return fail(why, whylen, "empty token");
    if (len > AUTH_TOKEN_MAX)
        return fail(why, whylen, "token longer than 8192 bytes");
    memcpy(copy, token, len);
    copy[len] = '\0';
    dot1 = memchr(copy, '.', len);
    dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - copy)) : NULL;
    if (!dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - copy)) || strlen(copy) != len ||
        dot2 + 1 == copy + len)
        return fail(why, whylen, "not a signed JWT (three base64url parts)");

    header = part_json(copy, (size_t)(dot1 - copy), HEADER_MAX);
    if (!header)
        return fail(why, whylen, "token header: not base64url JSON");
    json_t *alg = json_object_get(header, "alg");
    json_t *typ = json_object_get(header, "typ");
    json_t *kid = json_object_get(header, "kid");
    if (!json_is_string(alg) || strcmp(json_string_value(alg), v->alg_name) != 0) {
        snprintf(why, whylen, "token algorithm not accepted (only %s)", v->alg_name);
        goto out;
    }
    if (typ && (!json_is_string(typ) || strcmp(json_string_value(typ), "JWT") != 0)) {
        fail(why, whylen, "token type (typ) is not JWT");
        goto out;
    }
    if (json_object_get(header, "crit")) {
        fail(why, whylen, "token header has crit extensions");
        goto out;
    }
    if (kid && !json_is_string(kid)) {
        fail(why, whylen, "token key id (kid) is not a string");
        goto out;
    }
    if (v->nkeys == 1 && !v->keys[0].kid[0]) /* one key without a name: every token's */
        key = &v->keys[0];
    for (size_t i = 0; kid && !key && i < v->nkeys; i++)
        if (strcmp(v->keys[i].kid, json_string_value(kid)) == 0)
            key = &v->keys[i];
    if (!key) {
        fail(why, whylen, kid ? "token key id (kid) unknown" : "token has no key id (kid)");
        goto out;
    }
    /* The signature, strictly: canonical base64url of exactly the algorithm's length (libjwt
       would take padding, '+' and '/', and stray bits, so one token would have many spellings). */
    unsigned char sig[1024];
    size_t siglen_in = len - (size_t)(dot2 + 1 - copy);
    long siglen = b64url_decode(dot2 + 1, siglen_in, (char *)sig, sizeof(sig));
    if (siglen < 0 || (size_t)siglen != key->siglen) {
        fail(why, whylen, "token signature not valid");
        goto out;
    }
    if (key->pkey &&
        !signature_ok(v->alg, key->pkey, sig, (size_t)siglen, copy, (size_t)(dot2 - copy))) {
        fail(why, whylen, "token signature not valid");
        goto out;
    }
    if (jwt_decode(&jwt, copy, key->pem, key->len) != 0 || !jwt) {
        fail(why, whylen, "token signature not valid");
        goto out;
    }
    if (jwt_get_alg(jwt) != v->alg) { /* never trust one parser's view of the header alone */
        fail(why, whylen, "token algorithm not accepted");
        goto out;
    }
    claims = part_json(dot1 + 1, (size_t)(dot2 - dot1 - 1), PAYLOAD_MAX);
    if (!claims) {
        fail(why, whylen, "token claims: not base64url JSON");
        goto out;
    }
    rc = read_claims(v, claims, now_s, out, why, whylen);
out:
    jwt_free(jwt);
    json_decref(claims);
    json_decref(header);
    memset(copy, 0, len);
    return rc;
}

/* ---- the cache of verified tokens --------------------------------------------------------- */

#define CACHE_WAYS 4 /* entries per set: tokens that share a hash bucket still coexist */

typedef struct cache_entry {
    uint64_t hash;
    uint64_t used; /* the cache's clock when last used: the least recent goes first */
    size_t len;
    char *token;         /* NULL: empty slot */
    auth_claims *claims; /* sized to its tenants */
} cache_entry;

struct auth_cache {
    size_t nsets;
    uint64_t clock;
    cache_entry slots[];
};

auth_cache *auth_cache_new(size_t slots)
{
    size_t nsets = (slots + CACHE_WAYS - 1) / CACHE_WAYS;
    if (nsets == 0)
        nsets = 1;
    auth_cache *c = calloc(1, sizeof(*c) + nsets * CACHE_WAYS * sizeof(cache_entry));
    if (c)
        c->nsets = nsets;
    return c;
}

static void entry_clear(cache_entry *e)
{
    free(e->token);
    free(e->claims);
    memset(e, 0, sizeof(*e));
}

void auth_cache_clear(auth_cache *c)
{
    for (size_t i = 0; c && i < c->nsets * CACHE_WAYS; i++)
        entry_clear(&c->slots[i]);
}

void auth_cache_free(auth_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nsets * CACHE_WAYS; i++)
        entry_clear(&c->slots[i]);
    free(c);
}

/* The size of claims with only its tenants. */
static size_t claims_size(const auth_claims *cl)
{
    return offsetof(auth_claims, tenants) + cl->ntenants * sizeof(cl->tenants[0]);
}

int auth_verify_cached(const auth_verifier *v, auth_cache *cache, const char *token, size_t len,
                       int64_t now_s, auth_claims *out, char *why, size_t whylen)
{
    if (!cache || len == 0 || len > AUTH_TOKEN_MAX)
        return auth_verify(v, token, len, now_s, out, why, whylen);
    uint64_t h = hash_fnv1a(token, len, 0);
    cache_entry *set = &cache->slots[(h % cache->nsets) * CACHE_WAYS], *e = NULL, *victim = set;
    for (int i = 0; i < CACHE_WAYS && !e; i++) {
        cache_entry *x = &set[i];
        if (x->token && x->hash == h && x->len == len && CRYPTO_memcmp(x->token, token, len) == 0)
            e = x;
        else if (!x->token || (victim->token && x->used < victim->used))
            victim = x;
    }
    if (e && now_s <= e->claims->exp + v->leeway_s) {
        e->used = ++cache->clock;
        memcpy(out, e->claims, claims_size(e->claims));
        return 0;
    }
    if (e) { /* expired since: verify again (to say so) and forget it */
        entry_clear(e);
        victim = e;
    }
    int rc = auth_verify(v, token, len, now_s, out, why, whylen);
    if (rc != 0)
        return rc;
    entry_clear(victim);
    victim->token = malloc(len);
    victim->claims = malloc(claims_size(out));
    if (!victim->token || !victim->claims) {
        entry_clear(victim);
        return 0;
    }
    memcpy(victim->token, token, len);
    memcpy(victim->claims, out, claims_size(out));
    victim->hash = h;
    victim->len = len;
    victim->used = ++cache->clock;
    return 0;
}

int auth_bearer(const char *value, size_t len, const char **tok, size_t *toklen, char *why,
                size_t whylen)
{
    size_t i = 0;
    if (!value)
        return fail(why, whylen, "no authorization metadata (a bearer token is required)");
    if (len < 7 || strncasecmp(value, "bearer ", 7) != 0)
        return fail(why, whylen, "authorization: not a Bearer token");
    for (i = 7; i < len && value[i] == ' '; i++)
        ;
    while (len > i && value[len - 1] == ' ')
        len--;
    if (i == len)
        return fail(why, whylen, "authorization: empty Bearer token");
    *tok = value + i;
    *toklen = len - i;
    return 0;
}

bool auth_tenant_granted(const auth_claims *c, const char *tenant)
{
    if (c->all_tenants)
        return true;
    for (size_t i = 0; i < c->ntenants; i++)
        if (strcmp(c->tenants[i], tenant) == 0)
            return true;
    return false;
}

/* ---- minting ----------------------------------------------------------------------------- */

int auth_mint(const auth_mint_opts *o, char *out, size_t outlen, char *err, size_t errlen)
{
    const char *alg_name = o->alg && o->alg[0] ? o->alg : "HS256";
    jwt_alg_t alg = jwt_str_alg(alg_name);
    jwt_t *jwt = NULL;
    char *tok = NULL;
    json_t *tenants = NULL;
    int rc = TALLY_EINVAL;
    if (alg == JWT_ALG_NONE || alg == JWT_ALG_INVAL) { /* others too: tests mint wrong ones */
        snprintf(err, errlen, "algorithm: HS256, RS256 or ES256, got \"%.40s\"", alg_name);
        return TALLY_EINVAL;
    }
    if (!o->key || !o->key[0]) {
        snprintf(err, errlen, "no signing key");
        return TALLY_EINVAL;
    }
    if (jwt_new(&jwt) != 0) {
        snprintf(err, errlen, "out of memory");
        return TALLY_ENOMEM;
    }
    if (o->tenants) {
        tenants = json_array();
        for (const char *p = o->tenants; tenants && *p;) {
            size_t n = strcspn(p, ",");
            json_array_append_new(tenants, json_stringn(p, n));
            p += n + (p[n] == ',');
        }
    }
    json_t *claims = json_object();
    if (o->role)
        json_object_set_new(claims, "role", json_string(o->role));
    if (tenants)
        json_object_set_new(claims, "tenants", tenants);
    if (o->subject)
        json_object_set_new(claims, "sub", json_string(o->subject));
    if (o->issuer)
        json_object_set_new(claims, "iss", json_string(o->issuer));
    if (o->audience)
        json_object_set_new(claims, "aud", json_string(o->audience));
    json_object_set_new(claims, "iat", json_integer(o->now_s));
    if (!o->no_exp)
        json_object_set_new(claims, "exp", json_integer(o->now_s + o->ttl_s));
    if (o->nbf_s)
        json_object_set_new(claims, "nbf", json_integer(o->now_s + o->nbf_s));
    if (o->claims_json) {
        json_t *extra = json_loads(o->claims_json, 0, NULL);
        if (!json_is_object(extra) || json_object_update(claims, extra) != 0) {
            json_decref(extra);
            json_decref(claims);
            snprintf(err, errlen, "claims_json: not a JSON object");
            jwt_free(jwt);
            return TALLY_EINVAL;
        }
        json_decref(extra);
    }
    char *claims_str = json_dumps(claims, JSON_COMPACT);
    json_decref(claims);
    if (!claims_str || jwt_add_grants_json(jwt, claims_str) != 0 ||
        (o->kid && jwt_add_header(jwt, "kid", o->kid) != 0) ||
        jwt_set_alg(jwt, alg, (const unsigned char *)o->key,
                    (int)(o->keylen ? o->keylen : strlen(o->key))) != 0 ||
        !(tok = jwt_encode_str(jwt))) {
        snprintf(err, errlen, "cannot sign the token (is the key a %s key?)", alg_name);
        goto out;
    }
    if ((size_t)snprintf(out, outlen, "%s", tok) >= outlen) {
        snprintf(err, errlen, "token longer than %zu bytes", outlen - 1);
        goto out;
    }
    rc = 0;
out:
    free(claims_str);
    free(tok);
    jwt_free(jwt);
    return rc;
}
