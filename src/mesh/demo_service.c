/* edgecoder.v1.Demo: transport-free handlers that show what a service sees of a call (the caller's
 * identity, metadata, deadline) and exercise deadlines, streaming and error codes. */
#include "mesh/demo_service.h"

#include "edgecoder/v1/demo.pb-c.h"

#include <string.h>

/* The codes a caller may ask Echo to fail with, and the statuses they stand for. */
static const struct {
    const char *code;
    enum ec_status status;
} demo_failures[] = {
    { "not_found", EC_ENOTFOUND },
    { "conflict", EC_ECONFLICT },
    { "unavailable", EC_EUNAVAIL },
    { "demo_refused", EC_EFORBIDDEN },
};

static enum ec_status echo_fail(const Edgecoder__V1__ErrorReply *fail, struct ec_err *err)
{
    for (size_t i = 0; i < sizeof(demo_failures) / sizeof(demo_failures[0]); i++)
        if (strcmp(fail->error, demo_failures[i].code) == 0)
            return ec_err_set(err, demo_failures[i].status, demo_failures[i].code,
                              "failing as asked (%s)", demo_failures[i].code);
    return ec_err_set(err, EC_EINVAL, NULL, "fail.error \"%.64s\" is not a demo error code",
                      fail->error);
}

static enum ec_status demo_echo(struct rpc_call *call, const ProtobufCMessage *req,
                                ProtobufCMessage **resp, struct ec_err *err)
{
    const Edgecoder__V1__EchoRequest *in = (const void *)req;
    if (in->delay_present_case == EDGECODER__V1__ECHO_REQUEST__DELAY_PRESENT_DELAY_MS &&
        in->delay_ms > 0) {
        if (in->delay_ms > 60000)
            return ec_err_set(err, EC_EINVAL, NULL, "delay_ms %u is over 60000", in->delay_ms);
        if (rpc_call_wait(call, in->delay_ms) == RPC_WAIT_DONE)
            return ec_err_set(err, EC_ETIMEOUT, NULL, "the call ended during the delay");
    }
    if (in->fail != NULL)
        return echo_fail(in->fail, err);
    const struct rpc_peer *peer = rpc_call_peer(call);
    struct ec_arena *a = rpc_call_arena(call);
    Edgecoder__V1__EchoReply *out = ec_arena_alloc(a, sizeof(*out));
    edgecoder__v1__echo_reply__init(out);
    out->text = in->text;
    out->peer_spiffe_id = (char *)peer->spiffe_id;
    out->peer_role = (char *)(peer->role != RPC_ROLE_NONE ? rpc_role_name(peer->role) : "");
    out->peer_id = (char *)peer->id;
    const char *request_id = rpc_call_metadata(call, "x-request-id");
    out->request_id = (char *)(request_id != NULL ? request_id : "");
    int64_t left = rpc_call_deadline_ms(call);
    out->deadline_ms = left == INT64_MAX ? -1 : left;
    *resp = &out->base;
    return EC_OK;
}

static enum ec_status demo_count(struct rpc_call *call, const ProtobufCMessage *req,
                                 struct ec_err *err)
{
    const Edgecoder__V1__CountRequest *in = (const void *)req;
    if (in->n > DEMO_COUNT_MAX)
        return ec_err_set(err, EC_EINVAL, NULL, "n %u is over %d", in->n, DEMO_COUNT_MAX);
    uint32_t interval =
        in->interval_present_case == EDGECODER__V1__COUNT_REQUEST__INTERVAL_PRESENT_INTERVAL_MS
            ? in->interval_ms
            : 0;
    for (uint32_t i = 1; i <= in->n; i++) {
        if (i > 1 && interval > 0 && rpc_call_wait(call, interval) == RPC_WAIT_DONE)
            return ec_err_set(err, EC_ETIMEOUT, NULL, "the call ended at message %u", i);
        Edgecoder__V1__CountReply out = EDGECODER__V1__COUNT_REPLY__INIT;
        out.i = i;
        enum ec_status st = rpc_stream_send(call, &out.base, err);
        if (st != EC_OK)
            return st;
    }
    return EC_OK;
}

static const struct rpc_method demo_methods[] = {
    { .path = DEMO_ECHO_PATH,
      .req = &edgecoder__v1__echo_request__descriptor,
      .resp = &edgecoder__v1__echo_reply__descriptor,
      .kind = RPC_UNARY,
      .allowed_roles = RPC_ROLE_COORDINATOR | RPC_ROLE_CONTROL_PLANE,
      .idempotent = true,
      .unary = demo_echo },
    { .path = DEMO_COUNT_PATH,
      .req = &edgecoder__v1__count_request__descriptor,
      .resp = &edgecoder__v1__count_reply__descriptor,
      .kind = RPC_SERVER_STREAM,
      .allowed_roles = RPC_ROLE_COORDINATOR | RPC_ROLE_CONTROL_PLANE,
      .idempotent = true,
      .server_stream = demo_count },
};

const struct rpc_service demo_service = {
    "edgecoder.v1.Demo",
    demo_methods,
    sizeof(demo_methods) / sizeof(demo_methods[0]),
    NULL,
};
