/* The gRPC client: one channel per target shared by every thread, a pluck completion queue per
 * thread, a deadline on every call, metadata, retries with backoff for idempotent methods, and
 * server-streaming reads. Also the process-wide grpc_init/grpc_shutdown. */
#include "common/ec_config.h"
#include "common/ec_log.h"
#include "common/ec_mem.h"
#include "mesh/rpc_client_int.h"

#include <dlfcn.h>
#include <grpc/support/log.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct rpc_channel {
    grpc_channel *channel;
    char *target;
    bool tls;
};

/* --- runtime and the per-thread completion queue ---------------------------------------------- */

static pthread_once_t cq_key_once = PTHREAD_ONCE_INIT;
static pthread_key_t cq_key;
static __thread grpc_completion_queue *thread_cq;

static void destroy_pluck_cq(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
}

static void cq_at_thread_exit(void *cq)
{
    destroy_pluck_cq(cq);
}

static void make_cq_key(void)
{
    if (pthread_key_create(&cq_key, cq_at_thread_exit) != 0)
        ec_assert_fail("pthread_key_create", __FILE__, __LINE__);
}

static grpc_completion_queue *my_cq(void)
{
    if (thread_cq == NULL) {
        pthread_once(&cq_key_once, make_cq_key);
        thread_cq = grpc_completion_queue_create_for_pluck(NULL);
        pthread_setspecific(cq_key, thread_cq);
    }
    return thread_cq;
}

void rpc_thread_release(void)
{
    if (thread_cq == NULL)
        return;
    pthread_setspecific(cq_key, NULL);
    destroy_pluck_cq(thread_cq);
    thread_cq = NULL;
}

/* Debian builds abseil without NDEBUG, which leaves absl::Mutex deadlock detection on: every lock
 * gRPC takes then updates a global lock graph. Turn it off (absl::OnDeadlockCycle::kIgnore = 0)
 * when the symbol is there; it is a C++ name, so it is looked up rather than linked. */
static void absl_deadlock_detection_off(void)
{
    void (*set_mode)(int) = (void (*)(int))dlsym(
        RTLD_DEFAULT, "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE");
    if (set_mode != NULL)
        set_mode(0);
}

/* gRPC's own messages (handshake failures and the like) as our JSON log lines. */
static void grpc_log_to_ec(gpr_log_func_args *args)
{
    enum ec_log_level lvl = args->severity == GPR_LOG_SEVERITY_ERROR  ? EC_LOG_WARN
                            : args->severity == GPR_LOG_SEVERITY_INFO ? EC_LOG_INFO
                                                                      : EC_LOG_DEBUG;
    EC_LOG_(lvl, "grpc library message", EC_LS("detail", args->message), EC_LS("file", args->file),
            EC_LI("line", args->line));
}

void rpc_runtime_init(void)
{
    absl_deadlock_detection_off();
    gpr_set_log_function(grpc_log_to_ec);
    grpc_init();
}

void rpc_runtime_shutdown(void)
{
    rpc_thread_release();
    grpc_shutdown_blocking(); /* all of gRPC's memory is freed before exit (LeakSanitizer) */
}

/* --- channels --------------------------------------------------------------------------------- */

static void free_secret(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

struct rpc_channel *rpc_channel_new(const char *target, const struct rpc_channel_opts *opts,
                                    struct ec_err *err)
{
    grpc_channel_credentials *creds;
    if (opts->plaintext) {
        if (ec_config_production()) {
            ec_err_set(err, EC_EINVAL, NULL,
                       "plaintext gRPC is refused when EDGECODER_ENV=production");
            return NULL;
        }
        creds = grpc_insecure_credentials_create();
    } else {
        char *ca = rpc__read_pem(opts->tls.ca_file, "TLS CA", err);
        char *cert = NULL, *key = NULL;
        if (ca != NULL && opts->tls.cert_file != NULL) {
            cert = rpc__read_pem(opts->tls.cert_file, "TLS certificate", err);
            key = cert ? rpc__read_pem(opts->tls.key_file, "TLS key", err) : NULL;
        }
        if (ca == NULL || (opts->tls.cert_file != NULL && key == NULL)) {
            free(ca);
            free(cert);
            return NULL;
        }
        grpc_ssl_pem_key_cert_pair pair = { key, cert };
        creds = grpc_ssl_credentials_create(ca, cert ? &pair : NULL, NULL, NULL); /* copies */
        free(ca);
        free(cert);
        free_secret(key);
        if (creds == NULL) {
            ec_err_set(err, EC_EINVAL, NULL, "cannot use the TLS files for %s", target);
            return NULL;
        }
    }
    int max = (int)(opts->max_message_bytes > 0 && opts->max_message_bytes <= INT32_MAX
                        ? opts->max_message_bytes
                        : RPC__DEFAULT_MAX_MESSAGE);
    grpc_arg args[6] = {
        { GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, { .integer = max } },
        { GRPC_ARG_INTEGER, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, { .integer = max } },
        { GRPC_ARG_INTEGER, GRPC_ARG_ENABLE_RETRIES, { .integer = 0 } }, /* ours, below */
        /* A peer that restarts is reachable again within a retry's deadline. */
        { GRPC_ARG_INTEGER, GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, { .integer = 200 } },
        { GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, { .integer = 5000 } },
        { GRPC_ARG_STRING,
          GRPC_SSL_TARGET_NAME_OVERRIDE_ARG,
          { .string = (char *)opts->server_name } },
    };
    grpc_channel_args chargs = { opts->server_name != NULL && !opts->plaintext ? 6 : 5, args };
    struct rpc_channel *ch = ec_xcalloc(1, sizeof(*ch));
    ch->target = ec_xstrdup(target);
    ch->tls = !opts->plaintext;
    ch->channel = grpc_channel_create(target, creds, &chargs);
    grpc_channel_credentials_release(creds);
    return ch;
}

void rpc_channel_free(struct rpc_channel *ch)
{
    if (ch == NULL)
        return;
    grpc_channel_destroy(ch->channel);
    free(ch->target);
    free(ch);
}

bool rpc__channel_tls(const struct rpc_channel *ch)
{
    return ch->tls;
}

/* --- shared by sync and async calls ----------------------------------------------------------- */

void rpc__client_call_init(struct rpc__client_call *cc)
{
    memset(cc, 0, sizeof(*cc));
    grpc_metadata_array_init(&cc->initial_md);
    grpc_metadata_array_init(&cc->trailing_md);
    cc->details = grpc_empty_slice();
}

void rpc__client_call_release(struct rpc__client_call *cc)
{
    if (cc->call != NULL)
        grpc_call_unref(cc->call);
    for (size_t i = 0; i < cc->n_md; i++) {
        grpc_slice_unref(cc->md[i].key);
        grpc_slice_unref(cc->md[i].value);
    }
    grpc_metadata_array_destroy(&cc->initial_md);
    grpc_metadata_array_destroy(&cc->trailing_md);
    grpc_slice_unref(cc->details);
    if (cc->error_string != NULL)
        gpr_free((void *)cc->error_string);
    if (cc->send != NULL)
        grpc_byte_buffer_destroy(cc->send);
    if (cc->recv != NULL)
        grpc_byte_buffer_destroy(cc->recv);
    memset(cc, 0, sizeof(*cc));
}

enum ec_status rpc__client_call_start(struct rpc__client_call *cc, struct rpc_channel *ch,
                                      grpc_completion_queue *cq, const char *method,
                                      const struct rpc_call_opts *o, gpr_timespec deadline,
                                      bool unary, struct ec_err *err)
{
    if (o->n_md > RPC__CLIENT_MAX_MD)
        return ec_err_set(err, EC_EINVAL, NULL, "more than %d metadata entries",
                          RPC__CLIENT_MAX_MD);
    for (size_t i = 0; i < o->n_md; i++) {
        cc->md[i].key = grpc_slice_from_copied_string(o->md[i].key);
        cc->md[i].value = grpc_slice_from_copied_string(o->md[i].value);
        cc->n_md++;
    }
    grpc_slice path = grpc_slice_from_copied_string(method); /* the call keeps its own ref */
    cc->call = grpc_channel_create_call(ch->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, path, NULL,
                                        deadline, NULL);
    grpc_slice_unref(path);
    grpc_op *ops = cc->ops;
    memset(cc->ops, 0, sizeof(cc->ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = cc->n_md;
    ops[0].data.send_initial_metadata.metadata = cc->md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = cc->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &cc->initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &cc->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &cc->trailing_md;
    ops[5].data.recv_status_on_client.status = &cc->status;
    ops[5].data.recv_status_on_client.status_details = &cc->details;
    ops[5].data.recv_status_on_client.error_string = &cc->error_string;
    /* A streaming call starts with the first four and reads messages and status one by one. */
    grpc_call_error e = grpc_call_start_batch(cc->call, ops, unary ? 6 : 4, cc, NULL);
    if (e == GRPC_CALL_ERROR_INVALID_METADATA)
        return ec_err_set(err, EC_EINVAL, NULL, "invalid metadata for %s", method);
    if (e != GRPC_CALL_OK)
        return ec_err_set(err, EC_EINTERNAL, NULL, "cannot start %s (grpc_call_error %d)", method,
                          (int)e);
    return EC_OK;
}

enum ec_status rpc__client_call_status(const struct rpc__client_call *cc, bool tls,
                                       struct ec_err *err)
{
    if (cc->status == GRPC_STATUS_OK)
        return EC_OK;
    enum ec_status st = ec_status_from_grpc(cc->status);
    bool found;
    grpc_slice code = rpc__slice_from_md(&cc->trailing_md, RPC__ERROR_CODE_KEY, &found);
    const char *interned =
        found ? rpc__intern_code((const char *)GRPC_SLICE_START_PTR(code), GRPC_SLICE_LENGTH(code))
              : NULL;
    size_t dlen = GRPC_SLICE_LENGTH(cc->details);
    const char *details = (const char *)GRPC_SLICE_START_PTR(cc->details);
    if (dlen == 0 && cc->error_string != NULL) { /* the transport's own account */
        details = cc->error_string;
        dlen = strlen(details);
    }
    /* With TLS 1.3 a server refuses a client certificate after the client's side of the
     * handshake is done: all the client sees is the socket closing. Say what that usually means. */
    const char *hint = "";
    if (tls && cc->status == GRPC_STATUS_UNAVAILABLE && memmem(details, dlen, "Socket closed", 13))
        hint = "connection closed in the TLS handshake (is the client certificate missing, "
               "expired or from another CA?): ";
    return ec_err_set(err, st, interned, "%s: %s%.*s", rpc_code_name((int)cc->status), hint,
                      (int)(dlen > 400 ? 400 : dlen), details);
}

/* --- blocking calls --------------------------------------------------------------------------- */

static const struct rpc_call_opts no_opts;

static gpr_timespec deadline_of(const struct rpc_call_opts *o)
{
    return rpc__deadline_in(o->timeout_ms > 0 ? o->timeout_ms : RPC_DEFAULT_TIMEOUT_MS);
}

static enum ec_status unary_once(struct rpc_channel *ch, const char *method, const uint8_t *req,
                                 size_t req_len, struct ec_arena *arena, uint8_t **resp,
                                 size_t *resp_len, const struct rpc_call_opts *o,
                                 gpr_timespec deadline, struct ec_err *err)
{
    grpc_completion_queue *cq = my_cq();
    struct rpc__client_call cc;
    rpc__client_call_init(&cc);
    cc.send = rpc__bytes_to_buffer(req, req_len);
    enum ec_status st = rpc__client_call_start(&cc, ch, cq, method, o, deadline, true, err);
    if (st == EC_OK) {
        /* The call's deadline ends the wait. */
        grpc_completion_queue_pluck(cq, &cc, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        st = rpc__client_call_status(&cc, ch->tls, err);
    }
    if (st == EC_OK && cc.recv == NULL)
        st = ec_err_set(err, EC_EUPSTREAM, NULL, "%s answered OK without a message", method);
    grpc_slice s;
    if (st == EC_OK && !rpc__buffer_slice(cc.recv, &s))
        st = ec_err_set(err, EC_EUPSTREAM, NULL, "cannot decompress the reply of %s", method);
    if (st == EC_OK) {
        *resp_len = GRPC_SLICE_LENGTH(s);
        *resp = (uint8_t *)ec_arena_memdup(arena, GRPC_SLICE_START_PTR(s), *resp_len);
        grpc_slice_unref(s);
    }
    rpc__client_call_release(&cc);
    return st;
}

static uint32_t jitter_state;

static int64_t jittered(int64_t ms)
{
    /* Spread retries from many threads: ms/2 .. ms. Races on the state only cost randomness. */
    uint32_t x = __atomic_load_n(&jitter_state, __ATOMIC_RELAXED);
    if (x == 0)
        x = (uint32_t)ec_mono_us() | 1u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    __atomic_store_n(&jitter_state, x, __ATOMIC_RELAXED);
    return ms / 2 + (int64_t)(x % (uint32_t)(ms / 2 + 1));
}

enum ec_status rpc_unary_raw(struct rpc_channel *ch, const char *method, const uint8_t *req,
                             size_t req_len, struct ec_arena *arena, uint8_t **resp,
                             size_t *resp_len, const struct rpc_call_opts *opts, struct ec_err *err)
{
    const struct rpc_call_opts *o = opts != NULL ? opts : &no_opts;
    gpr_timespec deadline = deadline_of(o);
    int64_t backoff_ms = 50;
    for (;;) {
        enum ec_status st =
            unary_once(ch, method, req, req_len, arena, resp, resp_len, o, deadline, err);
        if (st != EC_EUNAVAIL || !o->idempotent)
            return st;
        int64_t pause = jittered(backoff_ms);
        if (rpc__ms_left(deadline) <= pause)
            return st;
        struct timespec ts = { pause / 1000, (pause % 1000) * 1000000 };
        nanosleep(&ts, NULL);
        backoff_ms = backoff_ms * 2 > 1000 ? 1000 : backoff_ms * 2;
    }
}

enum ec_status rpc_unary(struct rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                         const ProtobufCMessageDescriptor *resp_desc, struct ec_arena *arena,
                         ProtobufCMessage **resp, const struct rpc_call_opts *opts,
                         struct ec_err *err)
{
    uint8_t stack[512];
    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t *buf = len <= sizeof(stack) ? stack : ec_arena_alloc(arena, len);
    protobuf_c_message_pack(req, buf);
    uint8_t *out;
    size_t out_len;
    *resp = NULL;
    enum ec_status st = rpc_unary_raw(ch, method, buf, len, arena, &out, &out_len, opts, err);
    if (st != EC_OK)
        return st;
    *resp = rpc__unpack(resp_desc, out, out_len, arena);
    if (*resp == NULL)
        return ec_err_set(err, EC_EUPSTREAM, NULL, "cannot decode the reply of %s as %s", method,
                          resp_desc->name);
    return EC_OK;
}

/* One batch on this thread's queue, waited for. */
static bool pluck_batch(grpc_call *call, grpc_completion_queue *cq, const grpc_op *ops, size_t n,
                        void *tag)
{
    if (grpc_call_start_batch(call, ops, n, tag, NULL) != GRPC_CALL_OK)
        return false;
    return grpc_completion_queue_pluck(cq, tag, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).success;
}

enum ec_status rpc_server_stream_raw(struct rpc_channel *ch, const char *method, const uint8_t *req,
                                     size_t req_len, rpc_on_bytes_fn on_msg, void *ud,
                                     const struct rpc_call_opts *opts, struct ec_err *err)
{
    const struct rpc_call_opts *o = opts != NULL ? opts : &no_opts;
    grpc_completion_queue *cq = my_cq();
    struct rpc__client_call cc;
    rpc__client_call_init(&cc);
    cc.send = rpc__bytes_to_buffer(req, req_len);
    enum ec_status st = rpc__client_call_start(&cc, ch, cq, method, o, deadline_of(o), false, err);
    if (st != EC_OK) {
        rpc__client_call_release(&cc);
        return st;
    }
    bool ok =
        grpc_completion_queue_pluck(cq, &cc, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).success;
    enum ec_status stopped = EC_OK;
    while (ok) {
        grpc_op op;
        memset(&op, 0, sizeof(op));
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &cc.recv;
        if (!pluck_batch(cc.call, cq, &op, 1, &cc) || cc.recv == NULL)
            break;
        grpc_slice s;
        bool readable = rpc__buffer_slice(cc.recv, &s);
        grpc_byte_buffer_destroy(cc.recv);
        cc.recv = NULL;
        stopped = readable ? on_msg(ud, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), err)
                           : ec_err_set(err, EC_EUPSTREAM, NULL,
                                        "cannot decompress a message of %s", method);
        grpc_slice_unref(s);
        if (stopped != EC_OK) {
            grpc_call_cancel(cc.call, NULL);
            break;
        }
    }
    pluck_batch(cc.call, cq, &cc.ops[5], 1, &cc); /* RECV_STATUS_ON_CLIENT, prepared by start */
    st = stopped != EC_OK ? stopped : rpc__client_call_status(&cc, ch->tls, err);
    rpc__client_call_release(&cc);
    return st;
}

struct typed_stream {
    const ProtobufCMessageDescriptor *desc;
    rpc_on_msg_fn on_msg;
    void *ud;
    struct ec_arena arena; /* one message at a time */
    const char *method;
};

static enum ec_status typed_on_bytes(void *ud, const uint8_t *msg, size_t len, struct ec_err *err)
{
    struct typed_stream *ts = ud;
    ProtobufCMessage *m = rpc__unpack(ts->desc, msg, len, &ts->arena);
    enum ec_status st =
        m == NULL ? ec_err_set(err, EC_EUPSTREAM, NULL, "cannot decode a message of %s as %s",
                               ts->method, ts->desc->name)
                  : ts->on_msg(ts->ud, m, err);
    ec_arena_reset(&ts->arena);
    return st;
}

enum ec_status rpc_server_stream(struct rpc_channel *ch, const char *method,
                                 const ProtobufCMessage *req,
                                 const ProtobufCMessageDescriptor *resp_desc, rpc_on_msg_fn on_msg,
                                 void *ud, const struct rpc_call_opts *opts, struct ec_err *err)
{
    struct typed_stream ts = { resp_desc, on_msg, ud, { 0 }, method };
    ec_arena_init(&ts.arena);
    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t *buf = ec_xmalloc(len ? len : 1);
    protobuf_c_message_pack(req, buf);
    enum ec_status st = rpc_server_stream_raw(ch, method, buf, len, typed_on_bytes, &ts, opts, err);
    free(buf);
    ec_arena_release(&ts.arena);
    return st;
}
