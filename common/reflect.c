#include "reflect.h"

#include "err.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 512

typedef struct rfile {
    ProtobufCBinaryData bytes; /* the FileDescriptorProto, inside the set */
    char *name;
    char **deps;
    size_t ndeps;
} rfile;

typedef struct rsym {
    char *name; /* "tally.v1.Dashboard.GetDashboard" */
    size_t file;
} rsym;

struct reflect_index {
    rfile *files;
    size_t nfiles;
    rsym *syms;
    size_t nsyms, capsyms;
    bool failed; /* out of memory while indexing */
};

/* ---- the wire format, as far as descriptors need it ---------------------------------------- */

typedef struct wire {
    const uint8_t *p, *end;
} wire;

static bool varint(wire *w, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && w->p < w->end; shift += 7) {
        uint8_t b = *w->p++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return true;
    }
    return false;
}

/* The next field: its number and, for a length-delimited one, its bytes. false at the end or
   on bytes that are not protobuf. */
static bool field(wire *w, uint32_t *num, const uint8_t **data, size_t *len)
{
    uint64_t key, v;
    *data = NULL;
    *len = 0;
    if (w->p >= w->end || !varint(w, &key))
        return false;
    *num = (uint32_t)(key >> 3);
    switch (key & 7) {
    case 0:
        return varint(w, &v);
    case 1:
        if (w->end - w->p < 8)
            return false;
        w->p += 8;
        return true;
    case 2:
        if (!varint(w, &v) || v > (uint64_t)(w->end - w->p))
            return false;
        *data = w->p;
        *len = (size_t)v;
        w->p += v;
        return true;
    case 5:
        if (w->end - w->p < 4)
            return false;
        w->p += 4;
        return true;
    default:
        return false;
    }
}

static void add_sym(reflect_index *x, const char *prefix, const uint8_t *name, size_t len,
                    size_t file, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s%s%.*s", prefix, prefix[0] ? "." : "", (int)len,
                     (const char *)name);
    if (n < 0 || (size_t)n >= outlen)
        return;
    if (x->nsyms == x->capsyms) {
        size_t cap = x->capsyms ? 2 * x->capsyms : 64;
        rsym *s = realloc(x->syms, cap * sizeof(*s));
        if (!s) {
            x->failed = true;
            return;
        }
        x->syms = s;
        x->capsyms = cap;
    }
    if (!(x->syms[x->nsyms].name = strdup(out))) {
        x->failed = true;
        return;
    }
    x->syms[x->nsyms++].file = file;
}

/* The name (field 1) of a descriptor message. */
static bool name_of(const uint8_t *data, size_t len, const uint8_t **name, size_t *nlen)
{
    wire w = { data, data + len };
    uint32_t num;
    const uint8_t *d;
    size_t l;
    *name = NULL;
    while (field(&w, &num, &d, &l))
        if (num == 1 && d) {
            *name = d;
            *nlen = l;
        }
    return *name != NULL && w.p == w.end;
}

/* A DescriptorProto (a message, 3 its nested messages, 4 its enums), or a ServiceDescriptorProto
   (2 its methods): its symbol and those inside it. */
static bool index_type(reflect_index *x, const char *prefix, const uint8_t *data, size_t len,
                       size_t file, bool service)
{
    char full[NAME_MAX_LEN], inner[NAME_MAX_LEN];
    const uint8_t *name, *d, *n2;
    size_t nlen, l, l2;
    uint32_t num;
    if (!name_of(data, len, &name, &nlen))
        return false;
    add_sym(x, prefix, name, nlen, file, full, sizeof(full));
    wire w = { data, data + len };
    while (field(&w, &num, &d, &l)) {
        if (!d)
            continue;
        if (!service && num == 3 && !index_type(x, full, d, l, file, false))
            return false;
        if (((!service && num == 4) || (service && num == 2)) && name_of(d, l, &n2, &l2))
            add_sym(x, full, n2, l2, file, inner, sizeof(inner));
    }
    return true;
}

static bool index_file(reflect_index *x, rfile *f, size_t i)
{
    char pkg[NAME_MAX_LEN] = "", sym[NAME_MAX_LEN];
    wire w = { f->bytes.data, f->bytes.data + f->bytes.len };
    uint32_t num;
    const uint8_t *d, *n;
    size_t l, nl;
    while (field(&w, &num, &d, &l)) /* the package first: it qualifies everything else */
        if (num == 2 && d && l < sizeof(pkg))
            snprintf(pkg, sizeof(pkg), "%.*s", (int)l, (const char *)d);
    w.p = f->bytes.data;
    while (field(&w, &num, &d, &l)) {
        if (!d)
            continue;
        if (num == 1 && !f->name)
            f->name = strndup((const char *)d, l);
        else if (num == 3) {
            char **deps = realloc(f->deps, (f->ndeps + 1) * sizeof(*deps));
            if (!deps || !(deps[f->ndeps] = strndup((const char *)d, l))) {
                if (deps)
                    f->deps = deps;
                return false;
            }
            f->deps = deps;
            f->ndeps++;
        } else if ((num == 4 || num == 6) && !index_type(x, pkg, d, l, i, num == 6))
            return false;
        else if (num == 5 && name_of(d, l, &n, &nl))
            add_sym(x, pkg, n, nl, i, sym, sizeof(sym));
    }
    return f->name && w.p == w.end && !x->failed;
}

reflect_index *reflect_index_new(const uint8_t *set, size_t len)
{
    reflect_index *x = calloc(1, sizeof(*x));
    wire w = { set, set + len };
    uint32_t num;
    const uint8_t *d;
    size_t l;
    if (!x)
        return NULL;
    while (field(&w, &num, &d, &l)) {
        if (num != 1 || !d)
            continue;
        rfile *files = realloc(x->files, (x->nfiles + 1) * sizeof(*files));
        if (!files)
            goto out_fail;
        x->files = files;
        memset(&x->files[x->nfiles], 0, sizeof(rfile));
        x->files[x->nfiles].bytes = (ProtobufCBinaryData){ l, (uint8_t *)d };
        x->nfiles++;
        if (!index_file(x, &x->files[x->nfiles - 1], x->nfiles - 1))
            goto out_fail;
    }
    if (w.p != w.end || x->nfiles == 0)
        goto out_fail;
    return x;
out_fail:
    reflect_index_free(x);
    return NULL;
}

void reflect_index_free(reflect_index *x)
{
    if (!x)
        return;
    for (size_t i = 0; i < x->nfiles; i++) {
        free(x->files[i].name);
        for (size_t k = 0; k < x->files[i].ndeps; k++)
            free(x->files[i].deps[k]);
        free(x->files[i].deps);
    }
    for (size_t i = 0; i < x->nsyms; i++)
        free(x->syms[i].name);
    free(x->files);
    free(x->syms);
    free(x);
}

/* ---- answers ----------------------------------------------------------------------------- */

static long file_named(const reflect_index *x, const char *name)
{
    for (size_t i = 0; i < x->nfiles; i++)
        if (strcmp(x->files[i].name, name) == 0)
            return (long)i;
    return -1;
}

/* The file defining symbol, or the one defining its parent ("Msg.field" is in Msg's file). */
static long file_of_symbol(const reflect_index *x, const char *symbol)
{
    char s[NAME_MAX_LEN];
    if (snprintf(s, sizeof(s), "%s", symbol) >= (int)sizeof(s))
        return -1;
    for (char *dot;; *dot = '\0') {
        for (size_t i = 0; i < x->nsyms; i++)
            if (strcmp(x->syms[i].name, s) == 0)
                return (long)x->syms[i].file;
        if (!(dot = strrchr(s, '.')))
            return -1;
    }
}

/* Marks file i and what it imports, transitively. */
static void with_deps(const reflect_index *x, size_t i, bool *in)
{
    if (in[i])
        return;
    in[i] = true;
    for (size_t k = 0; k < x->files[i].ndeps; k++) {
        long d = file_named(x, x->files[i].deps[k]);
        if (d >= 0)
            with_deps(x, (size_t)d, in);
    }
}

int reflect_answer(const reflect_index *x, const char *const *services, size_t n,
                   const Grpc__Reflection__V1__ServerReflectionRequest *req, uint8_t **out,
                   size_t *len)
{
    Grpc__Reflection__V1__ServerReflectionResponse resp =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
    Grpc__Reflection__V1__FileDescriptorResponse files =
        GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT;
    Grpc__Reflection__V1__ListServiceResponse list =
        GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT;
    Grpc__Reflection__V1__ExtensionNumberResponse ext =
        GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT;
    Grpc__Reflection__V1__ErrorResponse error = GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT;
    Grpc__Reflection__V1__ServiceResponse *svc = calloc(n ? n : 1, sizeof(*svc));
    Grpc__Reflection__V1__ServiceResponse **psvc = calloc(n ? n : 1, sizeof(*psvc));
    ProtobufCBinaryData *fds = calloc(x->nfiles, sizeof(*fds));
    bool *in = calloc(x->nfiles, sizeof(*in));
    char why[NAME_MAX_LEN + 64];
    long f = -1;
    int rc = TALLY_ENOMEM;
    if (!svc || !psvc || !fds || !in)
        goto out_free;
    /* The request echoed without the fields protobuf-c kept unknown: a hostile client's junk
       (a field number 0, say) would make the whole answer undecodable. */
    Grpc__Reflection__V1__ServerReflectionRequest echo = *req;
    Grpc__Reflection__V1__ExtensionRequest ext_echo;
    echo.base.n_unknown_fields = 0;
    echo.base.unknown_fields = NULL;
    if (req->message_request_case ==
            GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION &&
        req->file_containing_extension) { /* the one message inside: the same */
        ext_echo = *req->file_containing_extension;
        ext_echo.base.n_unknown_fields = 0;
        ext_echo.base.unknown_fields = NULL;
        echo.file_containing_extension = &ext_echo;
    }
    resp.valid_host = req->host;
    resp.original_request = &echo;
    switch (req->message_request_case) {
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        for (size_t i = 0; i < n; i++) {
            grpc__reflection__v1__service_response__init(&svc[i]);
            svc[i].name = (char *)services[i];
            psvc[i] = &svc[i];
        }
        list.n_service = n;
        list.service = psvc;
        resp.message_response_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
        resp.list_services_response = &list;
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
        f = file_named(x, req->file_by_filename);
        snprintf(why, sizeof(why), "file not found: %.*s", NAME_MAX_LEN, req->file_by_filename);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
        f = file_of_symbol(x, req->file_containing_symbol);
        snprintf(why, sizeof(why), "symbol not found: %.*s", NAME_MAX_LEN,
                 req->file_containing_symbol);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
        if (file_of_symbol(x, req->all_extension_numbers_of_type) >= 0) {
            ext.base_type_name = req->all_extension_numbers_of_type;
            resp.message_response_case =
                GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
            resp.all_extension_numbers_response = &ext;
        }
        snprintf(why, sizeof(why), "type not found: %.*s", NAME_MAX_LEN,
                 req->all_extension_numbers_of_type);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
        snprintf(why, sizeof(why), "extension not found: the API defines no extensions");
        break;
    default:
        snprintf(why, sizeof(why), "no request in the ServerReflectionRequest");
        error.error_code = TALLY_GRPC_INVALID_ARGUMENT;
        break;
    }
    if (f >= 0) {
        with_deps(x, (size_t)f, in);
        for (size_t i = 0; i < x->nfiles; i++)
            if (in[i])
                fds[files.n_file_descriptor_proto++] = x->files[i].bytes;
        files.file_descriptor_proto = fds;
        resp.message_response_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
        resp.file_descriptor_response = &files;
    }
    if (resp.message_response_case ==
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE__NOT_SET) {
        if (!error.error_code)
            error.error_code = TALLY_GRPC_NOT_FOUND;
        error.error_message = why;
        resp.message_response_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
        resp.error_response = &error;
    }
    *len = protobuf_c_message_get_packed_size(&resp.base);
    if ((*out = malloc(*len ? *len : 1)) != NULL) {
        protobuf_c_message_pack(&resp.base, *out);
        rc = 0;
    }
out_free:
    free(svc);
    free(psvc);
    free(fds);
    free(in);
    return rc;
}
