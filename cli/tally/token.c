/*
 * token.c: `tally token`, which mints the bearer tokens the services accept (common/auth),
 * with the services' own key variables, for development, tests and the demo.
 */
#include "auth.h"
#include "tally_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEY_MAX (16 << 10) /* the largest private key file */

/* The signing key: --key-file, else the services' TALLY_AUTH_JWT_SECRET(_FILE). */
static int read_key(const cli *c, const char *alg, char *key, size_t cap)
{
    const char *file = cli_get(c, OPT_KEY_FILE);
    char why[300];
    bool hs = strcmp(alg, "HS256") == 0;
    if (!file && hs)
        file = getenv("TALLY_AUTH_JWT_SECRET_FILE");
    if (file && file[0] && hs) {
        if (cfg_read_secret(file, key, cap, why, sizeof(why)) != 0) {
            fprintf(stderr, "tally: the HS256 secret: %s\n", why);
            return EXIT_FAIL;
        }
        return EXIT_OK;
    }
    if (file && file[0]) {
        char *pem = cfg_read_file(file, cap - 1, why, sizeof(why));
        if (!pem || !pem[0]) {
            fprintf(stderr, "tally: --key-file: %s\n", pem ? "empty" : why);
            free(pem);
            return EXIT_FAIL;
        }
        memcpy(key, pem, strlen(pem) + 1);
        memset(pem, 0, strlen(pem));
        free(pem);
        return EXIT_OK;
    }
    if (!hs)
        return cli_usage_error(c, "--key-file: required for %s (a PEM private key)", alg);
    const char *secret = getenv("TALLY_AUTH_JWT_SECRET");
    if (!secret || !secret[0] || strlen(secret) >= cap)
        return cli_usage_error(c, "no HS256 secret: give --key-file, or set "
                                  "TALLY_AUTH_JWT_SECRET_FILE or TALLY_AUTH_JWT_SECRET as the "
                                  "services have them (scripts/stack env)");
    memcpy(key, secret, strlen(secret) + 1);
    return EXIT_OK;
}

int cli_run_token(const cli *c)
{
    static char key[KEY_MAX];
    char tok[AUTH_TOKEN_MAX + 1], err[256];
    const char *role = cli_need(c, OPT_ROLE), *tenants = role ? cli_need(c, OPT_TENANT) : NULL;
    int64_t ttl = 3600;
    int rc;
    if (!tenants)
        return EXIT_USAGE;
    if (!auth_role_parse(role))
        return cli_usage_error(c, "--role: writer, manager or admin, got \"%s\"", role);
    for (const char *p = tenants; *p;) {
        size_t n = strcspn(p, ",");
        char one[IDENT_MAX + 2];
        snprintf(one, sizeof(one), "%.*s", (int)(n < sizeof(one) - 1 ? n : sizeof(one) - 1), p);
        if (strcmp(one, "*") != 0 && (n >= sizeof(one) - 1 || ident_check(one) != IDENT_OK))
            return cli_usage_error(c, "--tenant: tenant ids (or *), comma-separated, got \"%s\"",
                                   tenants);
        p += n + (p[n] == ',');
    }
    if (cli_has(c, OPT_TTL) && (rc = cli_int(c, OPT_TTL, 1, 31536000, &ttl)) != 0)
        return rc;
    const char *alg = cli_get_or(c, OPT_ALG, getenv("TALLY_AUTH_JWT_ALG"));
    if (!alg || !alg[0])
        alg = "HS256";
    if (strcmp(alg, "HS256") != 0 && strcmp(alg, "RS256") != 0 && strcmp(alg, "ES256") != 0)
        return cli_usage_error(c, "--alg: HS256, RS256 or ES256, got \"%s\"", alg);
    if ((rc = read_key(c, alg, key, sizeof(key))) != EXIT_OK)
        return rc;
    const char *iss = cli_get_or(c, OPT_ISSUER, getenv("TALLY_AUTH_JWT_ISSUER"));
    const char *aud = cli_get_or(c, OPT_AUDIENCE, getenv("TALLY_AUTH_JWT_AUDIENCE"));
    auth_mint_opts o = { .alg = alg,
                         .key = key,
                         .kid = cli_get(c, OPT_KID),
                         .role = role,
                         .tenants = tenants,
                         .subject = cli_get_or(c, OPT_SUBJECT, "tally-cli"),
                         .issuer = iss && iss[0] ? iss : NULL,
                         .audience = aud && aud[0] ? aud : NULL,
                         .now_s = (int64_t)time(NULL),
                         .ttl_s = ttl };
    rc = auth_mint(&o, tok, sizeof(tok), err, sizeof(err));
    memset(key, 0, sizeof(key));
    if (rc != 0) {
        fprintf(stderr, "tally: %s\n", err);
        return EXIT_FAIL;
    }
    printf("%s\n", tok);
    return EXIT_OK;
}
