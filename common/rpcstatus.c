#include "rpcstatus.h"

#include "err.h"
#include "utf8.h"

#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TYPE_PREFIX "type.googleapis.com/"

void rpc_error_clear(rpc_error *e)
{
    memset(e, 0, sizeof(*e));
}

void rpc_error_reason(rpc_error *e, const char *reason)
{
    size_t i = 0;
    for (; reason[i] && i + 1 < sizeof(e->reason); i++) {
        char c = (char)toupper((unsigned char)reason[i]);
        e->reason[i] = (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ? c : '_';
    }
    e->reason[i] = '\0';
}

void rpc_error_meta(rpc_error *e, const char *key, const char *value)
{
    int i = 0;
    while (i < e->nmeta && strcmp(e->meta[i].key, key) != 0)
        i++;
    if (i == RPC_META_MAX)
        return;
    snprintf(e->meta[i].key, sizeof(e->meta[i].key), "%s", key);
    snprintf(e->meta[i].value, sizeof(e->meta[i].value), "%s", value);
    if (i == e->nmeta)
        e->nmeta++;
}

void rpc_utf8_clean(char *s)
{
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq((const unsigned char *)s + i, len - i);
        if (n == 0) {
            s[i++] = '?';
            continue;
        }
        i += n;
    }
}

bool rpc_field_path(const char *msg, char *field, size_t len)
{
    const char *colon = strstr(msg, ": ");
    size_t n = colon ? (size_t)(colon - msg) : 0;
    bool ok = n > 0 && n < len && isalpha((unsigned char)msg[0]);
    for (size_t i = 0; ok && i < n; i++) {
        unsigned char c = (unsigned char)msg[i];
        ok = isalnum(c) || c == '_' || c == '.' || c == '[' || c == ']';
    }
    if (len)
        field[0] = '\0';
    if (!ok)
        return false;
    memcpy(field, msg, n);
    field[n] = '\0';
    return true;
}

const char *rpc_default_reason(int code, const char *msg)
{
    char field[128];
    if (code == TALLY_GRPC_INVALID_ARGUMENT)
        return rpc_field_path(msg, field, sizeof(field)) ? "INVALID_FIELD" : "MALFORMED_REQUEST";
    return tally_grpc_code_name(code);
}

/* Packs msg into an Any named by its descriptor; NULL when out of memory. */
static Google__Protobuf__Any *any_of(const ProtobufCMessage *msg, Google__Protobuf__Any *any,
                                     char *type_url, size_t urllen)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    any->value.data = malloc(n ? n : 1);
    if (!any->value.data)
        return NULL;
    any->value.len = protobuf_c_message_pack(msg, any->value.data);
    snprintf(type_url, urllen, TYPE_PREFIX "%s", msg->descriptor->name);
    any->type_url = type_url;
    return any;
}

size_t rpc_status_pack(int code, const char *msg, const rpc_error *e, uint8_t *buf, size_t cap)
{
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    Google__Rpc__ErrorInfo info = GOOGLE__RPC__ERROR_INFO__INIT;
    Google__Rpc__ErrorInfo__MetadataEntry entries[RPC_META_MAX], *pentries[RPC_META_MAX];
    Google__Rpc__BadRequest bad = GOOGLE__RPC__BAD_REQUEST__INIT;
    Google__Rpc__BadRequest__FieldViolation fv = GOOGLE__RPC__BAD_REQUEST__FIELD_VIOLATION__INIT;
    Google__Rpc__BadRequest__FieldViolation *pfv = &fv;
    Google__Rpc__RetryInfo retry = GOOGLE__RPC__RETRY_INFO__INIT;
    Google__Protobuf__Duration delay = GOOGLE__PROTOBUF__DURATION__INIT;
    Google__Protobuf__Any anys[3] = { GOOGLE__PROTOBUF__ANY__INIT, GOOGLE__PROTOBUF__ANY__INIT,
                                      GOOGLE__PROTOBUF__ANY__INIT };
    Google__Protobuf__Any *details[3];
    char urls[3][96], field[128];
    size_t n = 0, out = 0;
    if (code <= 0 || code > 16)
        return 0;
    st.code = code;
    st.message = (char *)msg;
    info.reason = (char *)(e && e->reason[0] ? e->reason : rpc_default_reason(code, msg));
    info.domain = (char *)RPC_DOMAIN;
    for (int i = 0; e && i < e->nmeta; i++) {
        google__rpc__error_info__metadata_entry__init(&entries[i]);
        entries[i].key = (char *)e->meta[i].key;
        entries[i].value = (char *)e->meta[i].value;
        pentries[i] = &entries[i];
    }
    info.n_metadata = e ? (size_t)e->nmeta : 0;
    info.metadata = pentries;
    if (!(details[n] = any_of(&info.base, &anys[n], urls[n], sizeof(urls[n]))))
        goto out_free;
    n++;
    if (code == TALLY_GRPC_INVALID_ARGUMENT) {
        bool named = rpc_field_path(msg, field, sizeof(field));
        fv.field = field;
        fv.description = (char *)(named ? msg + strlen(field) + 2 : msg);
        bad.n_field_violations = 1;
        bad.field_violations = &pfv;
        if (!(details[n] = any_of(&bad.base, &anys[n], urls[n], sizeof(urls[n]))))
            goto out_free;
        n++;
    }
    if (code == TALLY_GRPC_UNAVAILABLE || code == TALLY_GRPC_RESOURCE_EXHAUSTED) {
        int64_t ms = e && e->retry_ms > 0 ? e->retry_ms : RPC_RETRY_MS;
        delay.seconds = ms / 1000;
        delay.nanos = (int32_t)(ms % 1000) * 1000000;
        retry.retry_delay = &delay;
        if (!(details[n] = any_of(&retry.base, &anys[n], urls[n], sizeof(urls[n]))))
            goto out_free;
        n++;
    }
    st.n_details = n;
    st.details = details;
    if (protobuf_c_message_get_packed_size(&st.base) <= cap)
        out = protobuf_c_message_pack(&st.base, buf);
out_free:
    for (size_t i = 0; i < 3; i++)
        free(anys[i].value.data);
    return out;
}

static bool is_type(const Google__Protobuf__Any *a, const ProtobufCMessageDescriptor *d)
{
    size_t p = strlen(TYPE_PREFIX);
    return a->type_url && strncmp(a->type_url, TYPE_PREFIX, p) == 0 &&
           strcmp(a->type_url + p, d->name) == 0;
}

int rpc_status_read(const uint8_t *buf, size_t len, rpc_status_view *out)
{
    Google__Rpc__Status *st = google__rpc__status__unpack(NULL, len, buf);
    memset(out, 0, sizeof(*out));
    if (!st)
        return -1;
    out->code = st->code;
    snprintf(out->message, sizeof(out->message), "%s", st->message);
    for (size_t i = 0; i < st->n_details; i++) {
        const Google__Protobuf__Any *a = st->details[i];
        if (is_type(a, &google__rpc__error_info__descriptor)) {
            Google__Rpc__ErrorInfo *info =
                google__rpc__error_info__unpack(NULL, a->value.len, a->value.data);
            if (!info)
                continue;
            snprintf(out->info.reason, sizeof(out->info.reason), "%s", info->reason);
            snprintf(out->domain, sizeof(out->domain), "%s", info->domain);
            for (size_t k = 0; k < info->n_metadata; k++)
                rpc_error_meta(&out->info, info->metadata[k]->key, info->metadata[k]->value);
            google__rpc__error_info__free_unpacked(info, NULL);
        } else if (is_type(a, &google__rpc__bad_request__descriptor)) {
            Google__Rpc__BadRequest *bad =
                google__rpc__bad_request__unpack(NULL, a->value.len, a->value.data);
            if (!bad)
                continue;
            out->has_bad_request = true;
            if (bad->n_field_violations > 0) {
                snprintf(out->field, sizeof(out->field), "%s", bad->field_violations[0]->field);
                snprintf(out->description, sizeof(out->description), "%s",
                         bad->field_violations[0]->description);
            }
            google__rpc__bad_request__free_unpacked(bad, NULL);
        } else if (is_type(a, &google__rpc__retry_info__descriptor)) {
            Google__Rpc__RetryInfo *r =
                google__rpc__retry_info__unpack(NULL, a->value.len, a->value.data);
            if (!r)
                continue;
            out->has_retry = true;
            if (r->retry_delay)
                out->retry_ms = r->retry_delay->seconds * 1000 + r->retry_delay->nanos / 1000000;
            google__rpc__retry_info__free_unpacked(r, NULL);
        }
    }
    google__rpc__status__free_unpacked(st, NULL);
    return 0;
}

const char *rpc_status_meta(const rpc_status_view *v, const char *key)
{
    for (int i = 0; i < v->info.nmeta; i++)
        if (strcmp(v->info.meta[i].key, key) == 0)
            return v->info.meta[i].value;
    return NULL;
}
