/*
 * auth: bearer tokens (JWT) for the gRPC services: who the caller is, in which role, for which
 * tenants.
 *
 * A verifier holds the one algorithm it accepts (HS256, RS256 or ES256, from configuration,
 * never from the token) and its keys: an HS256 secret of at least 32 bytes, or RS256/ES256
 * public keys from a PEM file, several for rotation, chosen by the token's `kid`. auth_verify()
 * checks, in this order: the form (three base64url parts, at most AUTH_TOKEN_MAX bytes), the
 * header (alg exactly the configured one; typ JWT if present; a known kid), the signature
 * (libjwt), then the claims (libjwt checks none): `exp` required, `nbf` if present, both with
 * the configured leeway; `iss` and `aud` (a string or an array) when configured; `role` one of
 * writer|manager|admin; `tenants` (an array) or `tenant` (a string) of tenant ids, "*" for all.
 *
 * Every failure is TALLY_EUNAUTH with a short reason that says what is wrong with the token
 * ("token expired"), never anything about tenants: a token is judged on its own.
 *
 * A verifier is immutable after auth_new and may be shared by every worker thread.
 */
#ifndef TALLY_AUTH_H
#define TALLY_AUTH_H

#include "cfg.h"
#include "ident.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_TOKEN_MAX   8192 /* the longest token accepted, in bytes */
#define AUTH_TENANTS_MAX 64   /* tenants one token may name */
#define AUTH_SECRET_MIN  32   /* the shortest HS256 secret, in bytes */
#define AUTH_KEYS_MAX    8    /* public keys in a keys file */

/* Roles, as bits: a method lists the roles that may call it. */
enum auth_role {
    AUTH_WRITER = 1,  /* commands: create, assign, change status, import, read back */
    AUTH_MANAGER = 2, /* dashboards */
    AUTH_ADMIN = 4,   /* everything, and the operator calls (PutTenant) */
};
#define AUTH_ANY (AUTH_WRITER | AUTH_MANAGER | AUTH_ADMIN)

/* The configuration of a service's authentication (the TALLY_AUTH_* variables). */
typedef struct auth_settings {
    const char *mode;        /* "jwt" or "off" */
    const char *alg;         /* "HS256", "RS256" or "ES256" */
    const char *secret;      /* HS256: the secret itself (TALLY_AUTH_JWT_SECRET) */
    const char *secret_file; /* HS256: or a file holding it */
    const char *keys_file;   /* RS256/ES256: PEM public keys, each after a "kid: NAME" line */
    const char *issuer;      /* "" or the iss every token must carry */
    const char *audience;    /* "" or an aud every token must carry */
    long long leeway_s;      /* clock skew allowed for exp and nbf */
} auth_settings;

#define AUTH_NVARS 8

/* Fills out[0..AUTH_NVARS) with the TALLY_AUTH_* variables, writing into s. */
void auth_vars(auth_settings *s, cfg_var *out, const char *mode_default);

typedef struct auth_verifier auth_verifier;

/*
 * A verifier for s (mode "jwt"): reads and checks the keys. NULL with err naming the variable
 * and the problem ("TALLY_AUTH_JWT_SECRET: shorter than 32 bytes").
 */
auth_verifier *auth_new(const auth_settings *s, char *err, size_t errlen);

/* Accepts NULL. */
void auth_free(auth_verifier *v);

/* What a valid token says. */
typedef struct auth_claims {
    unsigned role; /* one enum auth_role bit */
    bool all_tenants;
    char subject[128]; /* sub, "" when absent (cut to fit) */
    int64_t exp;       /* Unix seconds */
    size_t ntenants;
    char tenants[AUTH_TENANTS_MAX][IDENT_MAX + 1]; /* last: a copy may end after ntenants */
} auth_claims;

/*
 * Verifies token (len bytes, not necessarily NUL-terminated) at time now_s (Unix seconds).
 * 0 with *out filled, or TALLY_EUNAUTH with the reason in why.
 */
int auth_verify(const auth_verifier *v, const char *token, size_t len, int64_t now_s,
                auth_claims *out, char *why, size_t whylen);

/*
 * A cache of tokens verified before, for one thread (a worker): a gateway sends the same token
 * on every call for its lifetime, and verifying it again costs tens of microseconds (HS256) to
 * a millisecond (ES256: libjwt reads the PEM key on every call). Only tokens that verified are
 * kept, compared in full (in constant time), and their exp is checked again on every use.
 */
typedef struct auth_cache auth_cache;

/* A cache of about slots entries (sets of 4 by the token's hash, the least recently used
   replaced first); NULL when out of memory. */
auth_cache *auth_cache_new(size_t slots);

/* Accepts NULL. */
void auth_cache_free(auth_cache *c);

/* Forgets every token (the keys changed: what they verified is no longer known good). */
void auth_cache_clear(auth_cache *c);

/* auth_verify, answered from cache when it holds the token (cache may be NULL). */
int auth_verify_cached(const auth_verifier *v, auth_cache *cache, const char *token, size_t len,
                       int64_t now_s, auth_claims *out, char *why, size_t whylen);

/*
 * The token of an `authorization` metadata value "Bearer TOKEN" (the scheme in any case, one
 * or more spaces): 0 with *tok and *toklen set, or TALLY_EUNAUTH with why set.
 */
int auth_bearer(const char *value, size_t len, const char **tok, size_t *toklen, char *why,
                size_t whylen);

/* Whether the claims grant tenant. */
bool auth_tenant_granted(const auth_claims *c, const char *tenant);

/* "writer", "manager", "admin"; parsed back by auth_role_parse (0 when unknown). */
const char *auth_role_name(unsigned role);
unsigned auth_role_parse(const char *name);

/* What auth_mint signs. */
typedef struct auth_mint_opts {
    const char *alg;         /* HS256 (default), RS256, ES256 (or another of libjwt's but none) */
    const char *key;         /* HS256: the secret; RS256/ES256: a PEM private key */
    size_t keylen;           /* 0: strlen(key) */
    const char *kid;         /* NULL: no kid header */
    const char *role;        /* written as given, so tests can mint bad ones */
    const char *tenants;     /* comma-separated tenant ids, or "*"; NULL: no tenant claim */
    const char *subject;     /* NULL: none */
    const char *issuer;      /* NULL: none */
    const char *audience;    /* NULL: none */
    int64_t now_s;           /* iat */
    int64_t ttl_s;           /* exp = now_s + ttl_s (negative: already expired) */
    int64_t nbf_s;           /* 0: no nbf; otherwise nbf = now_s + nbf_s */
    bool no_exp;             /* tests: leave exp out */
    const char *claims_json; /* tests: a JSON object of claims set last (over the others) */
} auth_mint_opts;

/* Signs a token with o into out. 0, or TALLY_EINVAL with err set. */
int auth_mint(const auth_mint_opts *o, char *out, size_t outlen, char *err, size_t errlen);

#endif
