/* bench-bare-echo: the baseline for the runtime's overhead benchmark.
 *
 * A bare gRPC C-core server with no Tally runtime: it serves /tally.test.v1.Echo/Echo with the
 * sequence that GRPC-CORE.md measured to work, and nothing more (no logging, metrics, health or
 * configuration). Whatever echo-svc costs beyond this program per call is the runtime's
 * overhead. Unknown methods get UNIMPLEMENTED so that a stray client does not hang.
 *
 * Usage: bench-bare-echo <port> <threads>. Listens on 127.0.0.1:<port> (0 picks a free port;
 * the bound port is printed on stdout) and runs until SIGTERM or SIGINT, then shuts down
 * cleanly and exits 0.
 */
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "echo.pb-c.h"

#define PREPOSTED_ECHO    128
#define PREPOSTED_GENERIC 4
#define MAX_THREADS       64
#define SHUTDOWN_GRACE_MS 5000

/* One struct per call; it is the tag of every event of that call. A call is first requested
 * (answering == false) and then, once its answer batch is started, answering. */
struct call {
    bool generic; /* requested with grpc_server_request_call: an unknown method */
    bool answering;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    gpr_timespec deadline;
    grpc_byte_buffer *request;
    grpc_byte_buffer *reply;
    grpc_slice status_details;
    int cancelled;
};

static grpc_server *server;
static grpc_completion_queue *cq;
static void *echo_method;
static atomic_int live_calls;     /* calls received and not yet answered to completion */
static atomic_bool shutdown_done; /* the server's shutdown notification has arrived */

static void call_free(struct call *c)
{
    if (c == NULL)
        return;
    if (c->call != NULL)
        grpc_call_unref(c->call);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->md);
    if (c->request != NULL)
        grpc_byte_buffer_destroy(c->request);
    if (c->reply != NULL)
        grpc_byte_buffer_destroy(c->reply);
    grpc_slice_unref(c->status_details);
    free(c);
}

/* Pre-posts one request for an Echo call (generic == false) or for any other method. */
static void request_post(bool generic)
{
    struct call *c = calloc(1, sizeof(*c));
    grpc_call_error err;

    if (c == NULL)
        abort();
    c->generic = generic;
    c->status_details = grpc_empty_slice();
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->md);
    if (generic)
        err = grpc_server_request_call(server, &c->call, &c->details, &c->md, cq, cq, c);
    else
        err = grpc_server_request_registered_call(server, echo_method, &c->call, &c->deadline,
                                                  &c->md, &c->request, cq, cq, c);
    if (err != GRPC_CALL_OK) {
        fprintf(stderr, "bench-bare-echo: request call: error %d\n", (int)err);
        call_free(c);
    }
}

/* Unpacks the EchoRequest and packs a reply with the same text and payload into c->reply.
 * Returns the status to send. */
static grpc_status_code echo(struct call *c)
{
    grpc_byte_buffer_reader reader;
    Tally__Test__V1__EchoRequest *req;
    Tally__Test__V1__EchoReply rep = TALLY__TEST__V1__ECHO_REPLY__INIT;
    grpc_slice in, out;

    if (c->request == NULL || !grpc_byte_buffer_reader_init(&reader, c->request))
        return GRPC_STATUS_INVALID_ARGUMENT;
    in = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    req = tally__test__v1__echo_request__unpack(NULL, GRPC_SLICE_LENGTH(in),
                                                GRPC_SLICE_START_PTR(in));
    grpc_slice_unref(in);
    if (req == NULL)
        return GRPC_STATUS_INVALID_ARGUMENT;
    rep.text = req->text;
    rep.payload = req->payload;
    out = grpc_slice_malloc(tally__test__v1__echo_reply__get_packed_size(&rep));
    tally__test__v1__echo_reply__pack(&rep, GRPC_SLICE_START_PTR(out));
    c->reply = grpc_raw_byte_buffer_create(&out, 1);
    grpc_slice_unref(out);
    tally__test__v1__echo_request__free_unpacked(req, NULL);
    return GRPC_STATUS_OK;
}

/* Serves a call that has just arrived: re-posts a request first, then answers in one batch. */
static void call_serve(struct call *c)
{
    grpc_op ops[4];
    grpc_status_code status;
    size_t n = 0;

    request_post(c->generic);
    atomic_fetch_add(&live_calls, 1);
    c->answering = true;
    if (c->generic) {
        status = GRPC_STATUS_UNIMPLEMENTED;
        c->status_details = grpc_slice_from_static_string("unknown method");
    } else {
        status = echo(c);
        if (status != GRPC_STATUS_OK)
            c->status_details = grpc_slice_from_static_string("malformed EchoRequest");
    }
    memset(ops, 0, sizeof(ops));
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (status == GRPC_STATUS_OK) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->reply;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = status;
    ops[n++].data.send_status_from_server.status_details = &c->status_details;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
    if (grpc_call_start_batch(c->call, ops, n, c, NULL) != GRPC_CALL_OK) {
        atomic_fetch_sub(&live_calls, 1);
        call_free(c);
    }
}

/* Handles one event of the shared queue. At shutdown pending requests complete with ok == 0:
 * they are freed, not re-posted. */
static void event_handle(grpc_event ev)
{
    struct call *c = ev.tag;

    if (c->answering) {
        atomic_fetch_sub(&live_calls, 1);
        call_free(c);
    } else if (ev.success) {
        call_serve(c);
    } else {
        call_free(c);
    }
}

/* Polls the shared queue with a short deadline, so that it can leave once the server's
 * shutdown is done, no call is live, and the queue has been idle for one poll. */
static void *worker_main(void *arg)
{
    (void)arg;
    for (;;) {
        gpr_timespec until =
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(100, GPR_TIMESPAN));
        grpc_event ev = grpc_completion_queue_next(cq, until, NULL);

        if (ev.type == GRPC_OP_COMPLETE)
            event_handle(ev);
        else if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        else if (atomic_load(&shutdown_done) && atomic_load(&live_calls) == 0)
            break;
    }
    return NULL;
}

/* Starts the server's shutdown and waits for it, cancelling what is left after the grace
 * period. */
static void server_stop(void)
{
    grpc_completion_queue *scq = grpc_completion_queue_create_for_pluck(NULL);
    gpr_timespec grace = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                      gpr_time_from_millis(SHUTDOWN_GRACE_MS, GPR_TIMESPAN));
    int tag;

    grpc_server_shutdown_and_notify(server, scq, &tag);
    if (grpc_completion_queue_pluck(scq, &tag, grace, NULL).type == GRPC_QUEUE_TIMEOUT) {
        grpc_server_cancel_all_calls(server);
        grpc_completion_queue_pluck(scq, &tag, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    }
    atomic_store(&shutdown_done, true);
    grpc_completion_queue_shutdown(scq);
    grpc_completion_queue_destroy(scq);
}

int main(int argc, char **argv)
{
    pthread_t threads[MAX_THREADS];
    grpc_server_credentials *creds;
    sigset_t sigs;
    char addr[64];
    int nthreads, port, sig;

    if (argc != 3 || atoi(argv[1]) < 0 || atoi(argv[1]) > 65535 || atoi(argv[2]) < 1 ||
        atoi(argv[2]) > MAX_THREADS) {
        fprintf(stderr, "usage: bench-bare-echo <port> <threads 1..%d>\n", MAX_THREADS);
        return 2;
    }
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", atoi(argv[1]));
    nthreads = atoi(argv[2]);

    /* gRPC's own threads start in grpc_init() and inherit this mask. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    grpc_init();

    server = grpc_server_create(NULL, NULL);
    echo_method = grpc_server_register_method(server, "/tally.test.v1.Echo/Echo", NULL,
                                              GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(server, cq, NULL);
    creds = grpc_insecure_server_credentials_create();
    port = grpc_server_add_http2_port(server, addr, creds);
    grpc_server_credentials_release(creds);
    if (port == 0) {
        fprintf(stderr, "bench-bare-echo: cannot listen on %s\n", addr);
        grpc_server_destroy(server);
        grpc_completion_queue_shutdown(cq);
        while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(cq);
        grpc_shutdown_blocking();
        return 1;
    }
    grpc_server_start(server);
    for (int i = 0; i < PREPOSTED_ECHO; i++)
        request_post(false);
    for (int i = 0; i < PREPOSTED_GENERIC; i++)
        request_post(true);
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&threads[i], NULL, worker_main, NULL) != 0)
            abort();
    }
    printf("bench-bare-echo listening on 127.0.0.1 port %d with %d threads\n", port, nthreads);
    fflush(stdout);

    sigwait(&sigs, &sig);
    server_stop();
    for (int i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    grpc_server_destroy(server);
    grpc_completion_queue_shutdown(cq);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);

        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE)
            call_free(ev.tag);
    }
    grpc_completion_queue_destroy(cq);
    grpc_shutdown_blocking();
    return 0;
}
