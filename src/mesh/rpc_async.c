/* Many unary calls in flight from one thread, on a completion queue of its own: start any
 * number, then collect them in completion order. For load tools and fan-out. */
#include "common/ec_mem.h"
#include "mesh/rpc_client_int.h"

#include <stdlib.h>

struct rpc_async {
    grpc_completion_queue *cq;
    size_t pending;
};

struct rpc_async *rpc_async_new(void)
{
    struct rpc_async *q = ec_xcalloc(1, sizeof(*q));
    q->cq = grpc_completion_queue_create_for_next(NULL);
    return q;
}

void rpc_async_free(struct rpc_async *q)
{
    if (q == NULL)
        return;
    EC_ASSERT(q->pending == 0);
    grpc_completion_queue_shutdown(q->cq);
    while (grpc_completion_queue_next(q->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(q->cq);
    free(q);
}

size_t rpc_async_pending(const struct rpc_async *q)
{
    return q->pending;
}

enum ec_status rpc_async_unary(struct rpc_async *q, struct rpc_channel *ch, const char *method,
                               const ProtobufCMessage *req,
                               const ProtobufCMessageDescriptor *resp_desc,
                               const struct rpc_call_opts *opts, void *user, struct ec_err *err)
{
    static const struct rpc_call_opts no_opts;
    const struct rpc_call_opts *o = opts != NULL ? opts : &no_opts;
    struct rpc__client_call *cc = ec_xmalloc(sizeof(*cc));
    rpc__client_call_init(cc);
    cc->send = rpc__pack(req);
    cc->resp_desc = resp_desc;
    cc->user = user;
    cc->tls = rpc__channel_tls(ch);
    enum ec_status st = rpc__client_call_start(
        cc, ch, q->cq, method, o,
        rpc__deadline_in(o->timeout_ms > 0 ? o->timeout_ms : RPC_DEFAULT_TIMEOUT_MS), true, err);
    if (st != EC_OK) {
        rpc__client_call_release(cc);
        free(cc);
        return st;
    }
    q->pending++;
    return EC_OK;
}

enum ec_status rpc_async_next(struct rpc_async *q, struct ec_arena *arena, ProtobufCMessage **resp,
                              void **user, struct ec_err *err)
{
    if (resp != NULL)
        *resp = NULL;
    if (q->pending == 0)
        return ec_err_set(err, EC_EINVAL, NULL, "no call is in flight");
    grpc_event ev = grpc_completion_queue_next(q->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    EC_ASSERT(ev.type == GRPC_OP_COMPLETE); /* every call has a deadline */
    struct rpc__client_call *cc = ev.tag;
    q->pending--;
    if (user != NULL)
        *user = cc->user;
    enum ec_status st = rpc__client_call_status(cc, cc->tls, err);
    if (st == EC_OK && cc->recv == NULL)
        st = ec_err_set(err, EC_EUPSTREAM, NULL, "answered OK without a message");
    if (st == EC_OK && resp != NULL) {
        grpc_slice s;
        *resp =
            rpc__buffer_slice(cc->recv, &s)
                ? rpc__unpack(cc->resp_desc, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), arena)
                : NULL;
        grpc_slice_unref(s);
        if (*resp == NULL)
            st = ec_err_set(err, EC_EUPSTREAM, NULL, "cannot decode the reply as %s",
                            cc->resp_desc->name);
    }
    rpc__client_call_release(cc);
    free(cc);
    return st;
}
