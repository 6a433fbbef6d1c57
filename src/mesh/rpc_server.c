/* The gRPC server: mutual TLS, completion-queue workers, generic method dispatch through the
 * method table, caller-role checks before handlers, unary calls as a one-batch-at-a-time state
 * machine, and the graceful shutdown order of toolchain-notes gotcha 10. */
#include "common/ec_config.h"
#include "common/ec_log.h"
#include "common/ec_mem.h"
#include "mesh/rpc_grpc.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct rpc_call *call_new(struct rpc_server *srv)
{
    struct rpc_call *c = ec_xcalloc(1, sizeof(*c));
    c->srv = srv;
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->request_md);
    ec_arena_init(&c->arena);
    c->step_tag.kind = RPC__TAG_NEW_CALL;
    c->close_tag.kind = RPC__TAG_STREAM_CLOSE;
    c->state = RPC__CALL_REQUESTED;
    return c;
}

void rpc__call_free(struct rpc_call *c)
{
    if (c->call != NULL)
        grpc_call_unref(c->call);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->request_md);
    if (c->recv_buf != NULL)
        grpc_byte_buffer_destroy(c->recv_buf);
    if (c->send_buf != NULL)
        grpc_byte_buffer_destroy(c->send_buf);
    if (c->have_request)
        grpc_slice_unref(c->request);
    if (c->have_details)
        grpc_slice_unref(c->status_details);
    ec_arena_release(&c->arena);
    if (c->is_stream) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
    }
    free(c);
}

/* Keeps one more grpc_server_request_call outstanding. Under srv->mu, so that none is posted
 * once shutdown has begun. */
static void post_request_locked(struct rpc_server *srv)
{
    if (srv->shutting_down)
        return;
    struct rpc_call *c = call_new(srv);
    grpc_call_error e = grpc_server_request_call(srv->server, &c->call, &c->details, &c->request_md,
                                                 srv->cq, srv->cq, &c->step_tag);
    if (e != GRPC_CALL_OK) {
        EC_ERROR("rpc request_call failed", EC_LI("grpc_call_error", e));
        rpc__call_free(c);
    }
}

/* Starts a batch on the unary state machine's tag; a call that cannot take it is dropped. */
static void start_step(struct rpc_call *c, const grpc_op *ops, size_t n)
{
    c->step_tag.kind = RPC__TAG_STEP;
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, &c->step_tag, NULL);
    if (e != GRPC_CALL_OK) {
        EC_ERROR("rpc start_batch failed", EC_LI("grpc_call_error", e));
        rpc__call_free(c);
    }
}

size_t rpc__call_status_ops(struct rpc_call *c, enum ec_status st, const struct ec_err *err,
                            grpc_op *ops, bool skip_close)
{
    size_t n = 0;
    if (!c->sent_initial_md) {
        memset(&ops[n], 0, sizeof(ops[n]));
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->sent_initial_md = true;
    }
    grpc_op *op = &ops[n++];
    memset(op, 0, sizeof(*op));
    op->op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    op->data.send_status_from_server.status = (grpc_status_code)ec_status_info(st)->grpc_code;
    if (st != EC_OK) {
        /* The code is a static string by ec_err's contract; the message is copied. */
        const char *code =
            err != NULL && err->status == st ? ec_err_code(err) : ec_status_info(st)->code;
        const char *msg = err != NULL && err->msg[0] != '\0' ? err->msg : code;
        c->trailing[0].key = grpc_slice_from_static_string(RPC__ERROR_CODE_KEY);
        c->trailing[0].value = grpc_slice_from_static_string(code);
        op->data.send_status_from_server.trailing_metadata_count = 1;
        op->data.send_status_from_server.trailing_metadata = c->trailing;
        if (c->have_details)
            grpc_slice_unref(c->status_details);
        c->status_details = grpc_slice_from_copied_string(msg);
        c->have_details = true;
        op->data.send_status_from_server.status_details = &c->status_details;
    }
    if (!skip_close) {
        memset(&ops[n], 0, sizeof(ops[n]));
        ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
    }
    return n;
}

void rpc__call_log_failure(struct rpc_call *c, enum ec_status st, const struct ec_err *err)
{
    const char *method = c->entry != NULL ? c->entry->method->path : "?";
    if (st == EC_EINTERNAL)
        EC_ERROR("rpc handler failed", EC_LS("method", method), EC_LS("code", ec_err_code(err)),
                 EC_LS("error", err->msg));
    else
        EC_DEBUG("rpc call refused", EC_LS("method", method), EC_LS("code", ec_err_code(err)),
                 EC_LS("error", err->msg));
}

static void finish_with(struct rpc_call *c, enum ec_status st, const char *code, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));
static void finish_with(struct rpc_call *c, enum ec_status st, const char *code, const char *fmt,
                        ...)
{
    struct ec_err err;
    va_list ap;
    va_start(ap, fmt);
    ec_err_vset(&err, st, code, fmt, ap);
    va_end(ap);
    grpc_op ops[3];
    size_t n = rpc__call_status_ops(c, st, &err, ops, false);
    c->state = RPC__CALL_FINISH;
    start_step(c, ops, n);
}

static void load_peer(struct rpc_call *c)
{
    if (c->peer_loaded)
        return;
    c->peer_loaded = true;
    memset(&c->peer, 0, sizeof(c->peer));
    grpc_auth_context *ctx = grpc_call_auth_context(c->call);
    if (ctx == NULL)
        return; /* plaintext */
    if (grpc_auth_context_peer_is_authenticated(ctx)) {
        /* peer_spiffe_id exists only for exactly one URI SAN; otherwise scan the SANs. */
        static const char *const names[] = { GRPC_PEER_SPIFFE_ID_PROPERTY_NAME,
                                             GRPC_X509_SAN_PROPERTY_NAME };
        bool found = false;
        for (size_t i = 0; i < 2 && !found; i++) {
            grpc_auth_property_iterator it =
                grpc_auth_context_find_properties_by_name(ctx, names[i]);
            const grpc_auth_property *p;
            while (!found && (p = grpc_auth_property_iterator_next(&it)) != NULL)
                found = rpc_spiffe_parse(p->value, p->value_length, &c->peer, NULL) == EC_OK;
        }
    }
    grpc_auth_context_release(ctx);
}

/* A new call: method lookup, role check, then read the request (unary) or hand it to a stream
 * thread. */
static void on_new_call(struct rpc_call *c, bool ok)
{
    struct rpc_server *srv = c->srv;
    if (!ok) { /* the server is shutting down */
        rpc__call_free(c);
        return;
    }
    pthread_mutex_lock(&srv->mu);
    post_request_locked(srv);
    pthread_mutex_unlock(&srv->mu);

    c->deadline = gpr_convert_clock_type(c->details.deadline, GPR_CLOCK_MONOTONIC);
    const char *path = (const char *)GRPC_SLICE_START_PTR(c->details.method);
    size_t path_len = GRPC_SLICE_LENGTH(c->details.method);
    c->entry = rpc__method_table_find(&srv->table, path, path_len);
    if (c->entry == NULL) {
        finish_with(c, EC_EUNIMPL, "method_not_found", "unknown method \"%.*s\"",
                    (int)(path_len > 200 ? 200 : path_len), path);
        return;
    }
    const struct rpc_method *m = c->entry->method;
    if (m->allowed_roles != RPC_ROLES_ANY) {
        load_peer(c);
        if (!rpc_role_allowed(m->allowed_roles, c->peer.role)) {
            EC_INFO("rpc caller role refused", EC_LS("method", m->path),
                    EC_LS("peer", c->peer.spiffe_id), EC_LS("role", rpc_role_name(c->peer.role)));
            finish_with(c, EC_EFORBIDDEN, "role_not_allowed", "role \"%s\" may not call %s",
                        rpc_role_name(c->peer.role), m->path);
            return;
        }
    }
    if (m->kind != RPC_UNARY) {
        if (!rpc__stream_enqueue(c))
            finish_with(c, EC_ERATELIMIT, "too_many_streams",
                        "the server is running its limit of %d streaming calls",
                        srv->opts.max_streams);
        return;
    }
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_buf;
    c->state = RPC__CALL_READ;
    start_step(c, &op, 1);
}

static void run_unary(struct rpc_call *c)
{
    const struct rpc_method *m = c->entry->method;
    bool readable = rpc__buffer_slice(c->recv_buf, &c->request);
    c->have_request = true;
    grpc_byte_buffer_destroy(c->recv_buf);
    c->recv_buf = NULL;
    const ProtobufCMessage *req = readable ? rpc__unpack(m->req, GRPC_SLICE_START_PTR(c->request),
                                                         GRPC_SLICE_LENGTH(c->request), &c->arena)
                                           : NULL;
    if (req == NULL) {
        finish_with(c, EC_EINVAL, NULL, "cannot decode the request as %s", m->req->name);
        return;
    }
    struct ec_err err;
    ec_err_clear(&err);
    ProtobufCMessage *resp = NULL;
    enum ec_status st = m->unary(c, req, &resp, &err);
    if (st == EC_OK && (resp == NULL || resp->descriptor != m->resp))
        st = ec_err_set(&err, EC_EINTERNAL, NULL, "the handler of %s returned no %s", m->path,
                        m->resp->name);
    if (st != EC_OK)
        rpc__call_log_failure(c, st, &err);
    grpc_op ops[4];
    size_t n = 0;
    if (st == EC_OK) {
        c->send_buf = rpc__pack(resp);
        memset(&ops[0], 0, sizeof(ops[0]));
        ops[0].op = GRPC_OP_SEND_MESSAGE;
        ops[0].data.send_message.send_message = c->send_buf;
        n = 1;
    }
    n += rpc__call_status_ops(c, st, &err, ops + n, false);
    c->state = RPC__CALL_FINISH;
    start_step(c, ops, n);
}

static void on_step(struct rpc_call *c, bool ok)
{
    if (c->state == RPC__CALL_READ && ok) {
        if (c->recv_buf == NULL)
            finish_with(c, EC_EINVAL, NULL, "the call carried no request message");
        else
            run_unary(c);
        return;
    }
    rpc__call_free(c); /* finished, or the caller went away while we read */
}

static void *worker_main(void *arg)
{
    struct rpc_server *srv = arg;
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(srv->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        struct rpc__tag *tag = ev.tag;
        switch (tag->kind) {
        case RPC__TAG_NEW_CALL:
            on_new_call(RPC__CALL_OF(tag, step_tag), ev.success);
            break;
        case RPC__TAG_STEP:
            on_step(RPC__CALL_OF(tag, step_tag), ev.success);
            break;
        case RPC__TAG_STREAM_OP:
        case RPC__TAG_STREAM_CLOSE:
            rpc__stream_on_tag(tag, ev.success);
            break;
        case RPC__TAG_SHUTDOWN:
            pthread_mutex_lock(&srv->mu);
            srv->shutdown_done = true;
            pthread_cond_broadcast(&srv->cv);
            pthread_mutex_unlock(&srv->mu);
            break;
        }
    }
    return NULL;
}

struct rpc_server *rpc_server_new(const struct rpc_server_opts *opts, struct ec_err *err)
{
    if (opts->plaintext && ec_config_production()) {
        ec_err_set(err, EC_EINVAL, NULL, "plaintext gRPC is refused when EDGECODER_ENV=production");
        return NULL;
    }
    struct rpc_server *srv = ec_xcalloc(1, sizeof(*srv));
    srv->opts = *opts;
    srv->listen = ec_xstrdup(opts->listen != NULL ? opts->listen : "127.0.0.1:0");
    srv->opts.listen = srv->listen;
    memset(&srv->opts.tls, 0, sizeof(srv->opts.tls));
    if (srv->opts.threads <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        srv->opts.threads = cores < 1 ? 1 : cores > 64 ? 64 : (int)cores;
    }
    if (srv->opts.max_streams <= 0)
        srv->opts.max_streams = 64;
    if (srv->opts.max_message_bytes == 0 || srv->opts.max_message_bytes > INT32_MAX)
        srv->opts.max_message_bytes = RPC__DEFAULT_MAX_MESSAGE;
    if (srv->opts.shutdown_grace_ms <= 0)
        srv->opts.shutdown_grace_ms = 5000;
    pthread_mutex_init(&srv->mu, NULL);
    rpc__cond_init_monotonic(&srv->cv);
    pthread_mutex_init(&srv->health_mu, NULL);
    srv->shutdown_tag.kind = RPC__TAG_SHUTDOWN;
    rpc_server_set_health(srv, "", RPC_HEALTH_SERVING);
    if (!opts->plaintext) {
        srv->ca_pem = rpc__read_pem(opts->tls.ca_file, "TLS CA", err);
        srv->cert_pem =
            srv->ca_pem ? rpc__read_pem(opts->tls.cert_file, "TLS certificate", err) : NULL;
        srv->key_pem = srv->cert_pem ? rpc__read_pem(opts->tls.key_file, "TLS key", err) : NULL;
        if (srv->key_pem == NULL) {
            rpc_server_free(srv);
            return NULL;
        }
    }
    return srv;
}

static enum ec_status add_service(struct rpc_server *srv, const struct rpc_service *svc, void *data,
                                  struct ec_err *err)
{
    if (srv->started)
        return ec_err_set(err, EC_ECONFLICT, NULL, "service %s added after start", svc->name);
    if (srv->n_services == RPC__MAX_SERVICES)
        return ec_err_set(err, EC_ETOOBIG, NULL, "more than %d services", RPC__MAX_SERVICES);
    srv->services[srv->n_services] = *svc;
    if (data != NULL)
        srv->services[srv->n_services].data = data;
    srv->n_services++;
    return EC_OK;
}

enum ec_status rpc_server_add_service(struct rpc_server *srv, const struct rpc_service *svc,
                                      struct ec_err *err)
{
    enum ec_status st = add_service(srv, svc, NULL, err);
    if (st == EC_OK)
        rpc_server_set_health(srv, svc->name, RPC_HEALTH_SERVING);
    return st;
}

static void destroy_cq(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
}

enum ec_status rpc_server_start(struct rpc_server *srv, struct ec_err *err)
{
    if (srv->started || srv->n_services > RPC__MAX_SERVICES - 3)
        return ec_err_set(err, EC_ECONFLICT, NULL, "server already started, or too many services");
    struct rpc_service health = rpc__health_service(srv);
    if (add_service(srv, &health, srv, err) != EC_OK ||
        add_service(srv, &rpc__reflection_v1, srv, err) != EC_OK ||
        add_service(srv, &rpc__reflection_v1alpha, srv, err) != EC_OK ||
        rpc__method_table_build(&srv->table, srv->services, srv->n_services, err) != EC_OK)
        return err != NULL ? err->status : EC_EINVAL;

    grpc_arg args[3] = {
        { GRPC_ARG_INTEGER,
          GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
          { .integer = (int)srv->opts.max_message_bytes } },
        { GRPC_ARG_INTEGER,
          GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
          { .integer = (int)srv->opts.max_message_bytes } },
        { GRPC_ARG_INTEGER, GRPC_ARG_ENABLE_RETRIES, { .integer = 0 } },
    };
    grpc_channel_args chargs = { 3, args };
    srv->server = grpc_server_create(&chargs, NULL);
    srv->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(srv->server, srv->cq, NULL);

    grpc_server_credentials *creds;
    if (srv->opts.plaintext) {
        creds = grpc_insecure_server_credentials_create();
    } else {
        grpc_ssl_pem_key_cert_pair pair = { srv->key_pem, srv->cert_pem };
        creds = grpc_ssl_server_credentials_create_ex(
            srv->ca_pem, &pair, 1, GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY,
            NULL);
    }
    srv->port = creds != NULL ? grpc_server_add_http2_port(srv->server, srv->listen, creds) : 0;
    if (creds != NULL)
        grpc_server_credentials_release(creds);
    if (srv->port == 0) {
        grpc_server_destroy(srv->server);
        srv->server = NULL;
        destroy_cq(srv->cq);
        srv->cq = NULL;
        if (creds == NULL)
            return ec_err_set(err, EC_EINVAL, NULL, "cannot use the TLS certificate and key");
        return ec_err_set(err, EC_EUNAVAIL, NULL,
                          "cannot listen on \"%s\" (in use, or not host:port)", srv->listen);
    }
    grpc_server_start(srv->server);
    srv->started = true;

    /* Several calls requested at once so new calls never wait for a worker to re-post. */
    pthread_mutex_lock(&srv->mu);
    for (int i = 0; i < 8 * srv->opts.threads + 8; i++)
        post_request_locked(srv);
    pthread_mutex_unlock(&srv->mu);
    srv->stream_threads = ec_xcalloc((size_t)srv->opts.max_streams, sizeof(pthread_t));
    srv->workers = ec_xcalloc((size_t)srv->opts.threads, sizeof(pthread_t));
    for (int i = 0; i < srv->opts.threads; i++) {
        if (pthread_create(&srv->workers[i], NULL, worker_main, srv) != 0)
            ec_assert_fail("cannot start an RPC worker thread", __FILE__, __LINE__);
        srv->n_workers++;
    }
    EC_INFO("rpc server listening", EC_LS("listen", srv->listen), EC_LI("port", srv->port),
            EC_LB("mtls", !srv->opts.plaintext), EC_LI("threads", srv->opts.threads));
    return EC_OK;
}

int rpc_server_port(const struct rpc_server *srv)
{
    return srv->port;
}

void rpc_server_shutdown(struct rpc_server *srv)
{
    pthread_mutex_lock(&srv->mu);
    bool run = srv->started && !srv->shutting_down;
    srv->shutting_down = true;
    pthread_mutex_unlock(&srv->mu);
    if (!run)
        return;
    int64_t started = ec_mono_ms();
    rpc__health_set_all(srv, RPC_HEALTH_NOT_SERVING); /* watchers see it and end their streams */
    grpc_server_shutdown_and_notify(srv->server, srv->cq, &srv->shutdown_tag);

    pthread_mutex_lock(&srv->mu);
    struct timespec grace = rpc__abstime_in(srv->opts.shutdown_grace_ms);
    while (!srv->shutdown_done)
        if (pthread_cond_timedwait(&srv->cv, &srv->mu, &grace) == ETIMEDOUT)
            break;
    bool graceful = srv->shutdown_done;
    if (!graceful) {
        srv->cancelling = true; /* wakes handlers sleeping in rpc_call_wait */
        pthread_cond_broadcast(&srv->cv);
    }
    pthread_mutex_unlock(&srv->mu);
    if (!graceful) {
        EC_WARN("rpc shutdown grace over, cancelling calls",
                EC_LI("grace_ms", srv->opts.shutdown_grace_ms));
        grpc_server_cancel_all_calls(srv->server);
        pthread_mutex_lock(&srv->mu);
        while (!srv->shutdown_done) /* a worker must dequeue the tag before destroy */
            pthread_cond_wait(&srv->cv, &srv->mu);
        pthread_mutex_unlock(&srv->mu);
    }
    rpc__stream_join_all(srv);
    grpc_server_destroy(srv->server);
    srv->server = NULL;
    grpc_completion_queue_shutdown(srv->cq); /* the workers see GRPC_QUEUE_SHUTDOWN and exit */
    for (int i = 0; i < srv->n_workers; i++)
        pthread_join(srv->workers[i], NULL);
    grpc_completion_queue_destroy(srv->cq);
    srv->cq = NULL;
    pthread_mutex_lock(&srv->mu);
    srv->stopped = true;
    pthread_mutex_unlock(&srv->mu);
    EC_INFO("rpc server stopped", EC_LI("port", srv->port), EC_LB("graceful", graceful),
            EC_LI("dur_ms", ec_mono_ms() - started));
}

static void free_secret(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void rpc_server_free(struct rpc_server *srv)
{
    if (srv == NULL)
        return;
    rpc_server_shutdown(srv);
    rpc__method_table_release(&srv->table);
    free(srv->listen);
    free(srv->ca_pem);
    free(srv->cert_pem);
    free_secret(srv->key_pem);
    free(srv->workers);
    free(srv->stream_threads);
    pthread_mutex_destroy(&srv->mu);
    pthread_cond_destroy(&srv->cv);
    pthread_mutex_destroy(&srv->health_mu);
    free(srv);
}

/* --- the call context handlers see ------------------------------------------------------------ */

const struct rpc_peer *rpc_call_peer(struct rpc_call *call)
{
    load_peer(call);
    return &call->peer;
}

const char *rpc_call_metadata(struct rpc_call *call, const char *key)
{
    bool found;
    grpc_slice v = rpc__slice_from_md(&call->request_md, key, &found);
    if (!found)
        return NULL;
    return ec_arena_strndup(&call->arena, (const char *)GRPC_SLICE_START_PTR(v),
                            GRPC_SLICE_LENGTH(v));
}

int64_t rpc_call_deadline_ms(const struct rpc_call *call)
{
    return rpc__ms_left(call->deadline);
}

struct ec_arena *rpc_call_arena(struct rpc_call *call)
{
    return &call->arena;
}

const uint8_t *rpc_call_request_bytes(const struct rpc_call *call, size_t *len)
{
    if (!call->have_request) {
        *len = 0;
        return NULL;
    }
    *len = GRPC_SLICE_LENGTH(call->request);
    return GRPC_SLICE_START_PTR(call->request);
}

const char *rpc_call_method(const struct rpc_call *call)
{
    return call->entry->method->path;
}

void *rpc_call_service_data(const struct rpc_call *call)
{
    return call->entry->service->data;
}
