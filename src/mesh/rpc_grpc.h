/* gRPC-facing internals of the RPC runtime: the server and call structs shared by rpc_server.c,
 * rpc_stream.c, rpc_health.c and rpc_reflect.c, and the codec helpers. Only rpc*.c include it. */
#ifndef EC_RPC_GRPC_H
#define EC_RPC_GRPC_H

#include "mesh/rpc.h"
#include "mesh/rpc_int.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stddef.h>
#include <time.h>

#define RPC__DEFAULT_MAX_MESSAGE (4u << 20)
#define RPC__MAX_SERVICES        32
#define RPC__HEALTH_MAX          (RPC__MAX_SERVICES + 1)
#define RPC__ERROR_CODE_KEY      "x-error-code"

/* Every completion-queue tag points at one of these, embedded in its owner. */
enum rpc__tag_kind {
    RPC__TAG_NEW_CALL,     /* a grpc_server_request_call completed: owner is a rpc_call */
    RPC__TAG_STEP,         /* the unary state machine's one batch in flight */
    RPC__TAG_STREAM_OP,    /* a stream thread waits for this batch */
    RPC__TAG_STREAM_CLOSE, /* a stream's RECV_CLOSE_ON_SERVER */
    RPC__TAG_SHUTDOWN,     /* grpc_server_shutdown_and_notify: owner is the server */
};

struct rpc__tag {
    enum rpc__tag_kind kind;
};

/* The call that embeds a tag as `member`. */
#define RPC__CALL_OF(tag, member) \
    ((struct rpc_call *)(void *)((char *)(tag)-offsetof(struct rpc_call, member)))

enum rpc__call_state { RPC__CALL_REQUESTED, RPC__CALL_READ, RPC__CALL_FINISH };

/* One server call. A unary call is driven by the workers with one batch in flight at a time, so
 * only one thread touches it at once. A streaming call belongs to a stream thread; the workers
 * only set op_done/closed under mu and signal cv. */
struct rpc_call {
    struct rpc_server *srv;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array request_md;
    const struct rpc__method_entry *entry;
    enum rpc__call_state state;
    struct rpc__tag step_tag;
    struct rpc__tag close_tag;
    grpc_byte_buffer *recv_buf;
    grpc_byte_buffer *send_buf;
    grpc_slice request; /* the request bytes (valid when have_request) */
    bool have_request;
    grpc_slice status_details; /* must live until the status batch completes */
    bool have_details;
    grpc_metadata trailing[1];
    int cancelled; /* RECV_CLOSE_ON_SERVER's answer */
    bool sent_initial_md;
    bool peer_loaded;
    struct rpc_peer peer;
    gpr_timespec deadline; /* monotonic */
    struct ec_arena arena;
    /* streams only */
    bool is_stream;
    pthread_mutex_t mu; /* guards op_done, op_ok, closed, woken */
    pthread_cond_t cv;
    bool op_done, op_ok, closed, woken;
    struct rpc_call *queue_next;            /* srv->queue, under srv->mu */
    struct rpc_call *live_prev, *live_next; /* srv->live, under srv->mu */
};

struct rpc__health_entry {
    char name[128];
    enum rpc_health status;
};

struct rpc_server {
    struct rpc_server_opts opts; /* listen points at listen below; tls paths unused after new */
    char *listen;
    char *ca_pem, *cert_pem, *key_pem;
    struct rpc_service services[RPC__MAX_SERVICES];
    size_t n_services;
    struct rpc__method_table table;
    grpc_server *server;
    grpc_completion_queue *cq;
    int port;
    pthread_t *workers;
    int n_workers;

    pthread_mutex_t mu; /* guards the lifecycle flags, the stream queue and lists below */
    pthread_cond_t cv;  /* monotonic clock; any change of the fields below */
    bool started, shutting_down, cancelling, shutdown_done, stopped, streams_stop;
    struct rpc__tag shutdown_tag;
    struct rpc_call *queue_head, *queue_tail; /* streams waiting for a thread */
    struct rpc_call *live;                    /* streams running */
    pthread_t *stream_threads;                /* max_streams slots */
    int n_stream_threads, idle_stream_threads, active_streams;

    pthread_mutex_t health_mu; /* guards health, n_health, health_gen */
    struct rpc__health_entry health[RPC__HEALTH_MAX];
    size_t n_health;
    uint64_t health_gen;
};

/* --- rpc_codec.c ----------------------------------------------------------------------------- */
grpc_byte_buffer *rpc__pack(const ProtobufCMessage *msg);
grpc_byte_buffer *rpc__bytes_to_buffer(const uint8_t *data, size_t len);
/* Flattens (and decompresses) a received message into one slice the caller unrefs; false (and
 * an empty slice) when it does not decompress. */
bool rpc__buffer_slice(grpc_byte_buffer *bb, grpc_slice *out);
/* NULL when the bytes do not decode; allocated in arena. */
ProtobufCMessage *rpc__unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                              size_t len, struct ec_arena *arena);
gpr_timespec rpc__deadline_in(int64_t ms); /* monotonic */
int64_t rpc__ms_left(gpr_timespec deadline);
/* An absolute CLOCK_MONOTONIC time ms from now, for pthread_cond_timedwait. */
struct timespec rpc__abstime_in(int64_t ms);
void rpc__cond_init_monotonic(pthread_cond_t *cv);
char *rpc__read_pem(const char *path, const char *what, struct ec_err *err);
grpc_slice rpc__slice_from_md(const grpc_metadata_array *md, const char *key, bool *found);

/* --- rpc_server.c ---------------------------------------------------------------------------- */
/* Fills the status ops (initial metadata if not yet sent, status with x-error-code, receive
 * close unless skip_close) into ops; returns how many. */
size_t rpc__call_status_ops(struct rpc_call *c, enum ec_status st, const struct ec_err *err,
                            grpc_op *ops, bool skip_close);
void rpc__call_free(struct rpc_call *c);
/* Logs a handler failure worth an operator's attention (internal errors). */
void rpc__call_log_failure(struct rpc_call *c, enum ec_status st, const struct ec_err *err);

/* --- rpc_stream.c ---------------------------------------------------------------------------- */
/* From a worker: queue a streaming call for a stream thread, or refuse it when all are busy. */
bool rpc__stream_enqueue(struct rpc_call *c);
void rpc__stream_on_tag(struct rpc__tag *tag, bool ok);
void rpc__stream_wake_all(struct rpc_server *srv);
void rpc__stream_join_all(struct rpc_server *srv);

/* --- rpc_health.c / rpc_reflect.c ------------------------------------------------------------ */
struct rpc_service rpc__health_service(struct rpc_server *srv);
void rpc__health_set_all(struct rpc_server *srv, enum rpc_health status);
extern const struct rpc_service rpc__reflection_v1, rpc__reflection_v1alpha;

#endif
