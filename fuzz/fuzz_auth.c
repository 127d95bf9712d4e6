/*
 * fuzz_auth: the bearer-token path of every call (common/auth.h): the authorization value
 * (auth_bearer), then the token through the verifier and its cache, as common/srv.c runs them,
 * with an HS256 verifier whose secret the seed tokens are signed with (so the fuzzer starts
 * from tokens that pass) and the clock fixed at FUZZ_NOW. The first byte picks whether the
 * input is the whole metadata value or the token alone.
 */
#include "auth.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_NOW    1800000000LL /* 2027-01-15: the seeds' tokens are valid then */
#define FUZZ_SECRET "fuzz-secret-of-more-than-32-bytes-0123"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static auth_verifier *verifier;
static auth_cache *cache;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[256];
    auth_claims claims;
    if (!verifier) {
        auth_settings s = { .mode = "jwt",
                            .alg = "HS256",
                            .secret = FUZZ_SECRET,
                            .secret_file = "",
                            .keys_file = "",
                            .issuer = "",
                            .audience = "",
                            .leeway_s = 30 };
        char err[256];
        verifier = auth_new(&s, err, sizeof(err));
        cache = auth_cache_new(64);
        if (!verifier || !cache)
            abort();
    }
    if (size < 1)
        return 0;
    const char *tok = (const char *)data + 1;
    size_t len = size - 1;
    if (data[0] & 1) {
        if (auth_bearer((const char *)data + 1, size - 1, &tok, &len, why, sizeof(why)) != 0)
            return 0;
    }
    int rc = auth_verify_cached(verifier, cache, tok, len, FUZZ_NOW, &claims, why, sizeof(why));
    if (rc == 0) {
        /* What it accepted must hold what the runtime relies on. */
        if (!claims.role || (!claims.all_tenants && claims.ntenants == 0) ||
            claims.ntenants > AUTH_TENANTS_MAX || FUZZ_NOW > claims.exp + 30)
            abort();
        auth_tenant_granted(&claims, "acme");
        if (auth_verify(verifier, tok, len, FUZZ_NOW, &claims, why, sizeof(why)) != 0)
            abort(); /* the cache said yes: so must a full verification */
    }
    return 0;
}
