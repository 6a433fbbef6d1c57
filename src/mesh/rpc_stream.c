/* Streaming calls on the server: a pool of stream threads (up to max_streams) runs streaming and
 * bidi handlers, which block in rpc_stream_send/recv while the completion-queue workers signal
 * each batch's end. A stream keeps RECV_CLOSE_ON_SERVER in flight in its own batch, so a caller
 * that goes away ends rpc_call_wait at once. */
#include "common/ec_log.h"
#include "common/ec_mem.h"
#include "mesh/rpc_grpc.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

static void run_stream(struct rpc_call *c);

static void *stream_main(void *arg)
{
    struct rpc_server *srv = arg;
    pthread_mutex_lock(&srv->mu);
    for (;;) {
        while (srv->queue_head == NULL && !srv->streams_stop) {
            srv->idle_stream_threads++;
            pthread_cond_wait(&srv->cv, &srv->mu);
            srv->idle_stream_threads--;
        }
        struct rpc_call *c = srv->queue_head;
        if (c == NULL)
            break; /* stopping and nothing queued */
        srv->queue_head = c->queue_next;
        if (srv->queue_head == NULL)
            srv->queue_tail = NULL;
        c->live_next = srv->live; /* rpc__stream_wake_all reaches it from now on */
        c->live_prev = NULL;
        if (srv->live != NULL)
            srv->live->live_prev = c;
        srv->live = c;
        pthread_mutex_unlock(&srv->mu);
        run_stream(c); /* frees c */
        pthread_mutex_lock(&srv->mu);
        srv->active_streams--;
        pthread_cond_broadcast(&srv->cv);
    }
    pthread_mutex_unlock(&srv->mu);
    return NULL;
}

bool rpc__stream_enqueue(struct rpc_call *c)
{
    struct rpc_server *srv = c->srv;
    pthread_mutex_lock(&srv->mu);
    if (srv->active_streams >= srv->opts.max_streams || srv->streams_stop) {
        pthread_mutex_unlock(&srv->mu);
        return false;
    }
    c->is_stream = true;
    pthread_mutex_init(&c->mu, NULL);
    rpc__cond_init_monotonic(&c->cv);
    c->step_tag.kind = RPC__TAG_STREAM_OP;
    c->queue_next = NULL;
    if (srv->queue_tail != NULL)
        srv->queue_tail->queue_next = c;
    else
        srv->queue_head = c;
    srv->queue_tail = c;
    srv->active_streams++;
    /* Every queued call needs a thread of its own: more queued than idle threads means start one
     * (there is always a slot: active_streams <= max_streams). */
    int queued = 0;
    for (struct rpc_call *q = srv->queue_head; q != NULL; q = q->queue_next)
        queued++;
    if (queued > srv->idle_stream_threads && srv->n_stream_threads < srv->opts.max_streams) {
        if (pthread_create(&srv->stream_threads[srv->n_stream_threads], NULL, stream_main, srv) ==
            0)
            srv->n_stream_threads++;
        else if (srv->n_stream_threads == 0)
            ec_assert_fail("cannot start an RPC stream thread", __FILE__, __LINE__);
    }
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
    return true;
}

void rpc__stream_on_tag(struct rpc__tag *tag, bool ok)
{
    struct rpc_call *c = tag->kind == RPC__TAG_STREAM_OP ? RPC__CALL_OF(tag, step_tag)
                                                         : RPC__CALL_OF(tag, close_tag);
    pthread_mutex_lock(&c->mu);
    if (tag->kind == RPC__TAG_STREAM_OP) {
        c->op_done = true;
        c->op_ok = ok;
    } else {
        c->closed = true;
    }
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu); /* the stream thread may free c from here on */
}

void rpc__stream_wake_all(struct rpc_server *srv)
{
    pthread_mutex_lock(&srv->mu);
    for (struct rpc_call *c = srv->live; c != NULL; c = c->live_next) {
        pthread_mutex_lock(&c->mu);
        c->woken = true;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_unlock(&srv->mu);
}

void rpc__stream_join_all(struct rpc_server *srv)
{
    pthread_mutex_lock(&srv->mu);
    srv->streams_stop = true;
    pthread_cond_broadcast(&srv->cv);
    int n = srv->n_stream_threads;
    pthread_mutex_unlock(&srv->mu);
    for (int i = 0; i < n; i++)
        pthread_join(srv->stream_threads[i], NULL);
}

/* One batch, waited for on this (stream) thread; false when the call is over. */
static bool stream_batch(struct rpc_call *c, const grpc_op *ops, size_t n)
{
    pthread_mutex_lock(&c->mu);
    c->op_done = false;
    pthread_mutex_unlock(&c->mu);
    if (grpc_call_start_batch(c->call, ops, n, &c->step_tag, NULL) != GRPC_CALL_OK)
        return false;
    pthread_mutex_lock(&c->mu);
    while (!c->op_done)
        pthread_cond_wait(&c->cv, &c->mu);
    bool ok = c->op_ok;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

static enum ec_status call_over(struct rpc_call *c, struct ec_err *err)
{
    if (rpc__ms_left(c->deadline) <= 0)
        return ec_err_set(err, EC_ETIMEOUT, NULL, "the caller's deadline passed");
    return ec_err_set(err, EC_EUNAVAIL, "caller_gone", "the caller went away");
}

enum ec_status rpc_stream_send(struct rpc_call *c, const ProtobufCMessage *msg, struct ec_err *err)
{
    if (!c->is_stream)
        return ec_err_set(err, EC_EINTERNAL, NULL, "rpc_stream_send on a unary call");
    pthread_mutex_lock(&c->mu);
    bool closed = c->closed;
    pthread_mutex_unlock(&c->mu);
    if (closed || rpc__ms_left(c->deadline) <= 0)
        return call_over(c, err);
    grpc_op ops[2];
    size_t n = 0;
    memset(ops, 0, sizeof(ops));
    if (!c->sent_initial_md) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->sent_initial_md = true;
    }
    c->send_buf = rpc__pack(msg);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = c->send_buf;
    bool ok = stream_batch(c, ops, n);
    grpc_byte_buffer_destroy(c->send_buf);
    c->send_buf = NULL;
    return ok ? EC_OK : call_over(c, err);
}

/* Reads one message; *out NULL at the end of the caller's stream. */
static enum ec_status recv_one(struct rpc_call *c, const ProtobufCMessageDescriptor *desc,
                               struct ec_arena *arena, ProtobufCMessage **out, struct ec_err *err)
{
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_buf;
    *out = NULL;
    if (!stream_batch(c, &op, 1))
        return call_over(c, err);
    if (c->recv_buf == NULL)
        return EC_OK;
    if (c->have_request)
        grpc_slice_unref(c->request);
    bool readable = rpc__buffer_slice(c->recv_buf, &c->request);
    c->have_request = true;
    grpc_byte_buffer_destroy(c->recv_buf);
    c->recv_buf = NULL;
    if (readable)
        *out = rpc__unpack(desc, GRPC_SLICE_START_PTR(c->request), GRPC_SLICE_LENGTH(c->request),
                           arena);
    if (*out == NULL)
        return ec_err_set(err, EC_EINVAL, NULL, "cannot decode the request as %s", desc->name);
    return EC_OK;
}

enum ec_status rpc_stream_recv(struct rpc_call *c, const ProtobufCMessageDescriptor *desc,
                               struct ec_arena *arena, ProtobufCMessage **msg, struct ec_err *err)
{
    if (!c->is_stream || c->entry->method->kind != RPC_BIDI_STREAM)
        return ec_err_set(err, EC_EINTERNAL, NULL, "rpc_stream_recv outside a bidi call");
    return recv_one(c, desc, arena != NULL ? arena : &c->arena, msg, err);
}

static void run_stream(struct rpc_call *c)
{
    struct rpc_server *srv = c->srv;
    const struct rpc_method *m = c->entry->method;
    struct ec_err err;
    ec_err_clear(&err);
    enum ec_status st;

    grpc_op close_op;
    memset(&close_op, 0, sizeof(close_op));
    close_op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    close_op.data.recv_close_on_server.cancelled = &c->cancelled;
    if (grpc_call_start_batch(c->call, &close_op, 1, &c->close_tag, NULL) != GRPC_CALL_OK)
        c->closed = true; /* nothing will complete it */

    if (m->kind == RPC_SERVER_STREAM) {
        ProtobufCMessage *req = NULL;
        st = recv_one(c, m->req, &c->arena, &req, &err);
        if (st == EC_OK && req == NULL)
            st = ec_err_set(&err, EC_EINVAL, NULL, "the call carried no request message");
        if (st == EC_OK)
            st = m->server_stream(c, req, &err);
    } else {
        st = m->bidi(c, &err);
    }
    if (st != EC_OK)
        rpc__call_log_failure(c, st, &err);
    grpc_op ops[2];
    size_t n = rpc__call_status_ops(c, st, &err, ops, true);
    stream_batch(c, ops, n);

    pthread_mutex_lock(&c->mu);
    while (!c->closed) /* the close batch must complete before the call is freed */
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);

    pthread_mutex_lock(&srv->mu);
    if (c->live_prev != NULL)
        c->live_prev->live_next = c->live_next;
    else
        srv->live = c->live_next;
    if (c->live_next != NULL)
        c->live_next->live_prev = c->live_prev;
    pthread_mutex_unlock(&srv->mu);
    rpc__call_free(c);
}

static enum rpc_wait wait_on(pthread_mutex_t *mu, pthread_cond_t *cv, const bool *done, bool *woken,
                             int64_t ms, int64_t left)
{
    bool deadline_first = left <= ms;
    struct timespec until = rpc__abstime_in(deadline_first ? left : ms);
    enum rpc_wait r;
    pthread_mutex_lock(mu);
    for (;;) {
        if (*done) {
            r = RPC_WAIT_DONE;
            break;
        }
        if (woken != NULL && *woken) {
            *woken = false;
            r = RPC_WAIT_WOKEN;
            break;
        }
        if (pthread_cond_timedwait(cv, mu, &until) == ETIMEDOUT) {
            r = deadline_first ? RPC_WAIT_DONE : RPC_WAIT_TIMEOUT;
            break;
        }
    }
    pthread_mutex_unlock(mu);
    return r;
}

enum rpc_wait rpc_call_wait(struct rpc_call *c, int64_t ms)
{
    int64_t left = rpc__ms_left(c->deadline);
    if (left <= 0)
        return RPC_WAIT_DONE;
    if (c->is_stream)
        return wait_on(&c->mu, &c->cv, &c->closed, &c->woken, ms, left);
    /* A unary call has no close notification: it ends with the deadline or shutdown's cancel. */
    return wait_on(&c->srv->mu, &c->srv->cv, &c->srv->cancelling, NULL, ms, left);
}
