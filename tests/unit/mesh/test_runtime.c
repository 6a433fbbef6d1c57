/* The RPC runtime in one process (plaintext, as tests may): unary and streaming calls, metadata,
 * error codes across the wire, caller roles, deadlines, retries, health, async calls, many
 * threads, and shutdown with a call in flight. mTLS is covered by tests/integration/30_*. */
#include "common/ec_mem.h"
#include "mesh/demo_service.h"
#include "mesh/rpc.h"

#include "edgecoder/v1/demo.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static struct rpc_server *srv;
static struct rpc_channel *ch;
static int flaky_calls;

static Edgecoder__V1__EchoReply *reply(struct rpc_call *call, const char *text)
{
    Edgecoder__V1__EchoReply *out = ec_arena_alloc(rpc_call_arena(call), sizeof(*out));
    edgecoder__v1__echo_reply__init(out);
    out->text = (char *)text;
    return out;
}

static enum ec_status probe_echo(struct rpc_call *call, const ProtobufCMessage *req,
                                 ProtobufCMessage **resp, struct ec_err *err)
{
    const Edgecoder__V1__EchoRequest *in = (const void *)req;
    size_t len;
    const uint8_t *raw = rpc_call_request_bytes(call, &len);
    Edgecoder__V1__EchoReply *out = reply(call, in->text);
    /* The raw bytes are what the client packed: the handler can hash them for signatures. */
    if (raw == NULL || len != protobuf_c_message_get_packed_size(req))
        return ec_err_set(err, EC_EINTERNAL, NULL, "raw request bytes missing");
    const char *rid = rpc_call_metadata(call, "x-request-id");
    out->request_id = (char *)(rid ? rid : "");
    out->peer_role = (char *)rpc_role_name(rpc_call_peer(call)->role);
    out->deadline_ms = rpc_call_deadline_ms(call);
    *resp = &out->base;
    return EC_OK;
}

static enum ec_status probe_fail(struct rpc_call *call, const ProtobufCMessage *req,
                                 ProtobufCMessage **resp, struct ec_err *err)
{
    return ec_err_set(err, EC_ECONFLICT, "lease_not_held", "lease \"%s\" is not held",
                      ((const Edgecoder__V1__EchoRequest *)req)->text);
}

static enum ec_status probe_flaky(struct rpc_call *call, const ProtobufCMessage *req,
                                  ProtobufCMessage **resp, struct ec_err *err)
{
    if (__atomic_add_fetch(&flaky_calls, 1, __ATOMIC_SEQ_CST) <= 2)
        return ec_err_set(err, EC_EUNAVAIL, NULL, "not yet");
    *resp = &reply(call, "finally")->base;
    return EC_OK;
}

static enum ec_status probe_slow(struct rpc_call *call, const ProtobufCMessage *req,
                                 ProtobufCMessage **resp, struct ec_err *err)
{
    if (rpc_call_wait(call, 30000) == RPC_WAIT_DONE)
        return ec_err_set(err, EC_ETIMEOUT, NULL, "ended while waiting");
    *resp = &reply(call, "slept")->base;
    return EC_OK;
}

static enum ec_status probe_bad(struct rpc_call *call, const ProtobufCMessage *req,
                                ProtobufCMessage **resp, struct ec_err *err)
{
    return EC_OK; /* a bug: no response */
}

static enum ec_status probe_count(struct rpc_call *call, const ProtobufCMessage *req,
                                  struct ec_err *err)
{
    const Edgecoder__V1__CountRequest *in = (const void *)req;
    for (uint32_t i = 1; i <= in->n; i++) {
        Edgecoder__V1__CountReply out = EDGECODER__V1__COUNT_REPLY__INIT;
        out.i = i;
        if (in->interval_ms > 0 && rpc_call_wait(call, in->interval_ms) == RPC_WAIT_DONE)
            return EC_ETIMEOUT;
        enum ec_status st = rpc_stream_send(call, &out.base, err);
        if (st != EC_OK)
            return st;
    }
    return EC_OK;
}

#define UNARY(name, fn)                                                               \
    {                                                                                 \
        .path = "/test.Probe/" name, .req = &edgecoder__v1__echo_request__descriptor, \
        .resp = &edgecoder__v1__echo_reply__descriptor, .kind = RPC_UNARY,            \
        .allowed_roles = RPC_ROLES_ANY, .unary = fn                                   \
    }

static const struct rpc_method probe_methods[] = {
    UNARY("Echo", probe_echo),
    UNARY("Fail", probe_fail),
    UNARY("Flaky", probe_flaky),
    UNARY("Slow", probe_slow),
    UNARY("Bad", probe_bad),
    { .path = "/test.Probe/Count",
      .req = &edgecoder__v1__count_request__descriptor,
      .resp = &edgecoder__v1__count_reply__descriptor,
      .kind = RPC_SERVER_STREAM,
      .allowed_roles = RPC_ROLES_ANY,
      .server_stream = probe_count },
};
static const struct rpc_service probe_service = { "test.Probe", probe_methods, 6, NULL };

static struct rpc_server *start_server(int64_t grace_ms, int max_streams)
{
    struct rpc_server_opts opts = { .listen = "127.0.0.1:0",
                                    .plaintext = true,
                                    .threads = 2,
                                    .shutdown_grace_ms = grace_ms,
                                    .max_streams = max_streams };
    struct ec_err err = { 0 };
    struct rpc_server *s = rpc_server_new(&opts, &err);
    assert_non_null(s);
    assert_int_equal(rpc_server_add_service(s, &probe_service, &err), EC_OK);
    assert_int_equal(rpc_server_add_service(s, &demo_service, &err), EC_OK);
    assert_int_equal(rpc_server_start(s, &err), EC_OK);
    assert_true(rpc_server_port(s) > 0);
    return s;
}

static struct rpc_channel *connect_to(int port)
{
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    struct rpc_channel_opts opts = { .plaintext = true };
    struct ec_err err = { 0 };
    struct rpc_channel *c = rpc_channel_new(target, &opts, &err);
    assert_non_null(c);
    return c;
}

static int setup(void **state)
{
    rpc_runtime_init();
    srv = start_server(2000, 0);
    ch = connect_to(rpc_server_port(srv));
    return 0;
}

static int teardown(void **state)
{
    rpc_channel_free(ch);
    rpc_server_free(srv);
    rpc_runtime_shutdown();
    return 0;
}

static enum ec_status echo(const char *method, const char *text, const struct rpc_call_opts *o,
                           struct ec_arena *a, const Edgecoder__V1__EchoReply **out,
                           struct ec_err *err)
{
    Edgecoder__V1__EchoRequest req = EDGECODER__V1__ECHO_REQUEST__INIT;
    req.text = (char *)text;
    ProtobufCMessage *resp = NULL;
    enum ec_status st =
        rpc_unary(ch, method, &req.base, &edgecoder__v1__echo_reply__descriptor, a, &resp, o, err);
    *out = (const void *)resp;
    return st;
}

static void test_unary_and_metadata(void **state)
{
    struct ec_arena a;
    ec_arena_init(&a);
    struct ec_err err = { 0 };
    const Edgecoder__V1__EchoReply *r;
    struct rpc_md md[] = { { "x-request-id", "req-42" }, { "x-mesh-token", "t" } };
    struct rpc_call_opts o = { .timeout_ms = 3000, .md = md, .n_md = 2 };
    assert_int_equal(echo("/test.Probe/Echo", "hello", &o, &a, &r, &err), EC_OK);
    assert_string_equal(r->text, "hello");
    assert_string_equal(r->request_id, "req-42");
    assert_string_equal(r->peer_role, "none"); /* plaintext: no certificate, no role */
    assert_true(r->deadline_ms > 1000 && r->deadline_ms <= 3100);

    struct rpc_md bad_md[] = { { "Bad Key", "v" } };
    struct rpc_call_opts bad = { .md = bad_md, .n_md = 1 };
    assert_int_equal(echo("/test.Probe/Echo", "x", &bad, &a, &r, &err), EC_EINVAL);
    ec_arena_release(&a);
}

static void test_errors_cross_the_wire(void **state)
{
    struct ec_arena a;
    ec_arena_init(&a);
    struct ec_err err = { 0 };
    const Edgecoder__V1__EchoReply *r;
    assert_int_equal(echo("/test.Probe/Fail", "L1", NULL, &a, &r, &err), EC_ECONFLICT);
    assert_string_equal(ec_err_code(&err), "lease_not_held");
    assert_string_equal(err.msg, "FAILED_PRECONDITION: lease \"L1\" is not held");

    assert_int_equal(echo("/test.Probe/Nope", "x", NULL, &a, &r, &err), EC_EUNIMPL);
    assert_string_equal(ec_err_code(&err), "method_not_found");
    assert_non_null(strstr(err.msg, "/test.Probe/Nope"));

    /* Demo allows coordinators and the control plane only: a peer without a role is refused
     * before the handler runs. */
    assert_int_equal(echo(DEMO_ECHO_PATH, "x", NULL, &a, &r, &err), EC_EFORBIDDEN);
    assert_string_equal(ec_err_code(&err), "role_not_allowed");
    assert_non_null(strstr(err.msg, "role \"none\" may not call /edgecoder.v1.Demo/Echo"));

    assert_int_equal(echo("/test.Probe/Bad", "x", NULL, &a, &r, &err), EC_EINTERNAL);
    assert_string_equal(ec_err_code(&err), "internal_error");

    /* Bytes that are not the request message. */
    static const uint8_t garbage[] = { 0x0a, 0xff, 0xff };
    uint8_t *out;
    size_t out_len;
    assert_int_equal(rpc_unary_raw(ch, "/test.Probe/Echo", garbage, sizeof(garbage), &a, &out,
                                   &out_len, NULL, &err),
                     EC_EINVAL);
    assert_non_null(strstr(err.msg, "cannot decode the request as edgecoder.v1.EchoRequest"));

    /* Over the 4 MiB message limit. */
    char *big = ec_xmalloc(5u << 20);
    memset(big, 'b', (5u << 20) - 1);
    big[(5u << 20) - 1] = '\0';
    assert_int_equal(echo("/test.Probe/Echo", big, NULL, &a, &r, &err), EC_ERATELIMIT);
    assert_non_null(strstr(err.msg, "RESOURCE_EXHAUSTED"));
    free(big);
    ec_arena_release(&a);
}

static void test_deadline(void **state)
{
    struct ec_arena a;
    ec_arena_init(&a);
    struct ec_err err = { 0 };
    const Edgecoder__V1__EchoReply *r;
    struct rpc_call_opts o = { .timeout_ms = 200 };
    int64_t t0 = ec_mono_ms();
    assert_int_equal(echo("/test.Probe/Slow", "x", &o, &a, &r, &err), EC_ETIMEOUT);
    assert_true(ec_mono_ms() - t0 < 2000);
    assert_non_null(strstr(err.msg, "DEADLINE_EXCEEDED"));
    ec_arena_release(&a);
}

static void test_retry_idempotent(void **state)
{
    struct ec_arena a;
    ec_arena_init(&a);
    struct ec_err err = { 0 };
    const Edgecoder__V1__EchoReply *r;
    flaky_calls = 0;
    struct rpc_call_opts once = { .timeout_ms = 3000 };
    assert_int_equal(echo("/test.Probe/Flaky", "x", &once, &a, &r, &err), EC_EUNAVAIL);
    assert_int_equal(flaky_calls, 1);
    flaky_calls = 0;
    struct rpc_call_opts retry = { .timeout_ms = 3000, .idempotent = true };
    assert_int_equal(echo("/test.Probe/Flaky", "x", &retry, &a, &r, &err), EC_OK);
    assert_string_equal(r->text, "finally");
    assert_int_equal(flaky_calls, 3);
    /* Retries stop at the deadline. */
    flaky_calls = -1000000;
    struct rpc_call_opts short_retry = { .timeout_ms = 300, .idempotent = true };
    int64_t t0 = ec_mono_ms();
    assert_int_equal(echo("/test.Probe/Flaky", "x", &short_retry, &a, &r, &err), EC_EUNAVAIL);
    assert_true(ec_mono_ms() - t0 < 1500);
    assert_true(flaky_calls > -1000000 + 1);
    ec_arena_release(&a);
}

struct counted {
    uint32_t seen;
    uint32_t stop_at;
};

static enum ec_status on_count(void *ud, const ProtobufCMessage *msg, struct ec_err *err)
{
    struct counted *c = ud;
    const Edgecoder__V1__CountReply *r = (const void *)msg;
    if (r->i != c->seen + 1)
        return ec_err_set(err, EC_EINTERNAL, NULL, "out of order: %u after %u", r->i, c->seen);
    c->seen = r->i;
    if (c->stop_at != 0 && c->seen == c->stop_at)
        return ec_err_set(err, EC_ECONFLICT, "enough", "stopped at %u", c->seen);
    return EC_OK;
}

static void test_server_stream(void **state)
{
    struct ec_err err = { 0 };
    Edgecoder__V1__CountRequest req = EDGECODER__V1__COUNT_REQUEST__INIT;
    req.n = 500;
    struct counted c = { 0, 0 };
    assert_int_equal(rpc_server_stream(ch, "/test.Probe/Count", &req.base,
                                       &edgecoder__v1__count_reply__descriptor, on_count, &c, NULL,
                                       &err),
                     EC_OK);
    assert_int_equal(c.seen, 500);
    /* The callback stops the stream; the server's handler sees the caller go. */
    req.n = 100000;
    req.interval_present_case = EDGECODER__V1__COUNT_REQUEST__INTERVAL_PRESENT_INTERVAL_MS;
    req.interval_ms = 1;
    c = (struct counted){ 0, 3 };
    assert_int_equal(rpc_server_stream(ch, "/test.Probe/Count", &req.base,
                                       &edgecoder__v1__count_reply__descriptor, on_count, &c, NULL,
                                       &err),
                     EC_ECONFLICT);
    assert_int_equal(c.seen, 3);
    assert_string_equal(ec_err_code(&err), "enough");
    /* Deadline during a stream. */
    c = (struct counted){ 0, 0 };
    req.interval_ms = 20;
    struct rpc_call_opts o = { .timeout_ms = 300 };
    assert_int_equal(rpc_server_stream(ch, "/test.Probe/Count", &req.base,
                                       &edgecoder__v1__count_reply__descriptor, on_count, &c, &o,
                                       &err),
                     EC_ETIMEOUT);
    assert_true(c.seen > 2 && c.seen < 100);
}

static int health_of(const char *service, struct ec_err *err)
{
    struct ec_arena a;
    ec_arena_init(&a);
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)service;
    ProtobufCMessage *resp;
    enum ec_status st =
        rpc_unary(ch, "/grpc.health.v1.Health/Check", &req.base,
                  &grpc__health__v1__health_check_response__descriptor, &a, &resp, NULL, err);
    int status =
        st == EC_OK ? (int)((Grpc__Health__V1__HealthCheckResponse *)resp)->status : -(int)st;
    ec_arena_release(&a);
    return status;
}

static void test_health(void **state)
{
    struct ec_err err = { 0 };
    assert_int_equal(health_of("", &err), RPC_HEALTH_SERVING);
    assert_int_equal(health_of("test.Probe", &err), RPC_HEALTH_SERVING);
    assert_int_equal(health_of("edgecoder.v1.Demo", &err), RPC_HEALTH_SERVING);
    assert_int_equal(health_of("no.Such", &err), -(int)EC_ENOTFOUND);
    assert_string_equal(ec_err_code(&err), "service_unknown");
    rpc_server_set_health(srv, "test.Probe", RPC_HEALTH_NOT_SERVING);
    assert_int_equal(health_of("test.Probe", &err), RPC_HEALTH_NOT_SERVING);
    rpc_server_set_health(srv, "test.Probe", RPC_HEALTH_SERVING);
}

static void test_async_many_in_flight(void **state)
{
    struct rpc_async *q = rpc_async_new();
    struct ec_err err = { 0 };
    Edgecoder__V1__EchoRequest req = EDGECODER__V1__ECHO_REQUEST__INIT;
    req.text = "many";
    bool seen[300] = { false };
    for (intptr_t i = 0; i < 300; i++)
        assert_int_equal(rpc_async_unary(q, ch, "/test.Probe/Echo", &req.base,
                                         &edgecoder__v1__echo_reply__descriptor, NULL, (void *)i,
                                         &err),
                         EC_OK);
    assert_int_equal(rpc_async_pending(q), 300);
    struct ec_arena a;
    ec_arena_init(&a);
    for (int i = 0; i < 300; i++) {
        void *user;
        ProtobufCMessage *resp;
        assert_int_equal(rpc_async_next(q, &a, &resp, &user, &err), EC_OK);
        assert_string_equal(((Edgecoder__V1__EchoReply *)resp)->text, "many");
        assert_false(seen[(intptr_t)user]);
        seen[(intptr_t)user] = true;
    }
    assert_int_equal(rpc_async_next(q, &a, NULL, NULL, &err), EC_EINVAL);
    ec_arena_release(&a);
    rpc_async_free(q);
}

static void *hammer(void *arg)
{
    int *failures = arg;
    struct ec_arena a;
    ec_arena_init(&a);
    for (int i = 0; i < 200; i++) {
        struct ec_err err;
        const Edgecoder__V1__EchoReply *r;
        if (echo("/test.Probe/Echo", "t", NULL, &a, &r, &err) != EC_OK)
            __atomic_add_fetch(failures, 1, __ATOMIC_SEQ_CST);
        ec_arena_reset(&a);
    }
    ec_arena_release(&a);
    return NULL; /* the thread's completion queue goes with the thread */
}

static void test_threads_share_a_channel(void **state)
{
    pthread_t t[8];
    int failures = 0;
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &failures), 0);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(failures, 0);
}

static void test_unreachable(void **state)
{
    struct rpc_channel *c = connect_to(1); /* nothing listens on port 1 */
    struct ec_arena a;
    ec_arena_init(&a);
    Edgecoder__V1__EchoRequest req = EDGECODER__V1__ECHO_REQUEST__INIT;
    ProtobufCMessage *resp;
    struct ec_err err = { 0 };
    struct rpc_call_opts o = { .timeout_ms = 2000 };
    assert_int_equal(rpc_unary(c, "/test.Probe/Echo", &req.base,
                               &edgecoder__v1__echo_reply__descriptor, &a, &resp, &o, &err),
                     EC_EUNAVAIL);
    assert_non_null(strstr(err.msg, "UNAVAILABLE"));
    ec_arena_release(&a);
    rpc_channel_free(c);
}

static void *slow_caller(void *arg)
{
    struct rpc_channel *c = arg;
    struct ec_arena a;
    ec_arena_init(&a);
    Edgecoder__V1__EchoRequest req = EDGECODER__V1__ECHO_REQUEST__INIT;
    ProtobufCMessage *resp;
    struct ec_err err = { 0 };
    enum ec_status st = rpc_unary(c, "/test.Probe/Slow", &req.base,
                                  &edgecoder__v1__echo_reply__descriptor, &a, &resp, NULL, &err);
    ec_arena_release(&a);
    return (void *)(intptr_t)st;
}

static void test_shutdown_with_call_in_flight(void **state)
{
    struct rpc_server *s = start_server(200, 0);
    struct rpc_channel *c = connect_to(rpc_server_port(s));
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, slow_caller, c), 0);
    struct timespec pause = { 0, 500 * 1000000 };
    nanosleep(&pause, NULL); /* the slow call is in its handler */
    int64_t t0 = ec_mono_ms();
    rpc_server_free(s); /* grace 200 ms, then the call is cancelled */
    assert_true(ec_mono_ms() - t0 < 3000);
    void *st;
    pthread_join(t, &st);
    assert_int_not_equal((intptr_t)st, EC_OK);
    rpc_channel_free(c);
}

struct watch_state {
    int statuses[4];
    int n;
    int stop_at;      /* end the call after this many answers */
    const char *flip; /* a service set NOT_SERVING on the first answer, or NULL */
};

static enum ec_status on_watch(void *ud, const ProtobufCMessage *msg, struct ec_err *err)
{
    struct watch_state *w = ud;
    w->statuses[w->n++] = ((const Grpc__Health__V1__HealthCheckResponse *)msg)->status;
    if (w->n == 1 && w->flip != NULL) /* the first answer is the current status */
        rpc_server_set_health(srv, w->flip, RPC_HEALTH_NOT_SERVING);
    if (w->n == w->stop_at)
        return ec_err_set(err, EC_ECONFLICT, "seen", "seen enough");
    return EC_OK;
}

static void test_health_watch_sees_changes(void **state)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = "test.Probe";
    struct watch_state w = { { 0 }, 0, 2, "test.Probe" };
    struct ec_err err = { 0 };
    struct rpc_call_opts o = { .timeout_ms = 5000 };
    int64_t t0 = ec_mono_ms();
    assert_int_equal(rpc_server_stream(ch, "/grpc.health.v1.Health/Watch", &req.base,
                                       &grpc__health__v1__health_check_response__descriptor,
                                       on_watch, &w, &o, &err),
                     EC_ECONFLICT);
    assert_true(ec_mono_ms() - t0 < 3000); /* woken by the change, not by the deadline */
    assert_int_equal(w.n, 2);
    assert_int_equal(w.statuses[0], RPC_HEALTH_SERVING);
    assert_int_equal(w.statuses[1], RPC_HEALTH_NOT_SERVING);
    rpc_server_set_health(srv, "test.Probe", RPC_HEALTH_SERVING);
    /* An unknown service is reported, not refused, by Watch. */
    req.service = "no.Such";
    w = (struct watch_state){ { 0 }, 0, 1, NULL };
    assert_int_equal(rpc_server_stream(ch, "/grpc.health.v1.Health/Watch", &req.base,
                                       &grpc__health__v1__health_check_response__descriptor,
                                       on_watch, &w, &o, &err),
                     EC_ECONFLICT);
    assert_int_equal(w.statuses[0], 3); /* SERVICE_UNKNOWN */
}

static void *long_stream(void *arg)
{
    struct rpc_channel *c = arg;
    Edgecoder__V1__CountRequest req = EDGECODER__V1__COUNT_REQUEST__INIT;
    req.n = 20;
    req.interval_present_case = EDGECODER__V1__COUNT_REQUEST__INTERVAL_PRESENT_INTERVAL_MS;
    req.interval_ms = 50;
    struct counted cnt = { 0, 0 };
    struct ec_err err = { 0 };
    enum ec_status st =
        rpc_server_stream(c, "/test.Probe/Count", &req.base,
                          &edgecoder__v1__count_reply__descriptor, on_count, &cnt, NULL, &err);
    return (void *)(intptr_t)(st == EC_OK && cnt.seen == 20);
}

static void test_stream_limit(void **state)
{
    struct rpc_server *s = start_server(2000, 1);
    struct rpc_channel *c = connect_to(rpc_server_port(s));
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, long_stream, c), 0);
    struct timespec pause = { 0, 300 * 1000000 };
    nanosleep(&pause, NULL); /* the one allowed stream is running */
    Edgecoder__V1__CountRequest req = EDGECODER__V1__COUNT_REQUEST__INIT;
    req.n = 1;
    struct counted cnt = { 0, 0 };
    struct ec_err err = { 0 };
    assert_int_equal(rpc_server_stream(c, "/test.Probe/Count", &req.base,
                                       &edgecoder__v1__count_reply__descriptor, on_count, &cnt,
                                       NULL, &err),
                     EC_ERATELIMIT);
    assert_string_equal(ec_err_code(&err), "too_many_streams");
    void *ok;
    pthread_join(t, &ok);
    assert_true((intptr_t)ok); /* the running stream was not disturbed */
    cnt = (struct counted){ 0, 0 };
    assert_int_equal(rpc_server_stream(c, "/test.Probe/Count", &req.base,
                                       &edgecoder__v1__count_reply__descriptor, on_count, &cnt,
                                       NULL, &err),
                     EC_OK); /* the slot is free again */
    rpc_channel_free(c);
    rpc_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary_and_metadata),
        cmocka_unit_test(test_errors_cross_the_wire),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_retry_idempotent),
        cmocka_unit_test(test_server_stream),
        cmocka_unit_test(test_health),
        cmocka_unit_test(test_health_watch_sees_changes),
        cmocka_unit_test(test_stream_limit),
        cmocka_unit_test(test_async_many_in_flight),
        cmocka_unit_test(test_threads_share_a_channel),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_shutdown_with_call_in_flight),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
