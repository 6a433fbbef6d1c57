/* The mesh RPC runtime: gRPC servers and clients over mutual TLS with transport-free handlers,
 * caller roles from SPIFFE ids, health and reflection. Only src/mesh/rpc*.c include grpc; services
 * and the CLI use this header.
 *
 * Errors on the wire: the status code comes from ec_status_info()->grpc_code; the stable
 * snake_case code (ec_err_code) travels in the trailing metadata `x-error-code` and err->msg in
 * the status details. The client turns them back into err->status, err->code and err->msg. */
#ifndef EC_RPC_H
#define EC_RPC_H

#include "common/ec_arena.h"
#include "common/ec_status.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* --- process lifetime ------------------------------------------------------------------------ */

/* grpc_init, with gRPC's own log messages sent to ec_log as JSON lines ("grpc library message")
 * and abseil's debug-only mutex deadlock detection (left on by Debian's build) turned off. Block
 * SIGINT/SIGTERM before calling it: gRPC's threads inherit the signal mask. Never fork after. */
void rpc_runtime_init(void);
/* Releases the calling thread's client completion queue, then grpc_shutdown. Every server must be
 * freed and every other thread that made client calls must have exited first. */
void rpc_runtime_shutdown(void);

/* --- addresses ------------------------------------------------------------------------------ */

/* A gRPC service address from one of the seed's URL variables: "grpcs://host[:port]" gives
 * host:port (default_port when absent); "https://host[:port][/...]" gives host:default_port
 * (the URL names the service's public HTTPS address; its gRPC port is the service's own).
 * grpc:// and http:// are refused: the mesh never speaks plaintext. *target is heap text the
 * caller frees. */
enum ec_status rpc_target_from_url(const char *url, int default_port, char **target,
                                   struct ec_err *err);

/* The three variables of a service's mesh identity for its ec_cfg table; cfg_type has the fields
 * char *tls_ca, *tls_cert, *tls_key; role is the SPIFFE role its certificate names. */
/* clang-format off */
#define RPC_TLS_CFG_VARS(cfg_type, role)                                                           \
    { .env = "EDGECODER_TLS_CA", .type = EC_CFG_PATH, .offset = offsetof(cfg_type, tls_ca),        \
      .desc = "PEM CA that signs every mesh certificate (peers must present one it signed)" },     \
    { .env = "EDGECODER_TLS_CERT", .type = EC_CFG_PATH, .offset = offsetof(cfg_type, tls_cert),    \
      .desc = "PEM certificate of this service (spiffe://edgecoder/" role "/<id>); unset "         \
              "(development only): no gRPC server" },                                              \
    { .env = "EDGECODER_TLS_KEY", .type = EC_CFG_PATH, .offset = offsetof(cfg_type, tls_key),      \
      .flags = EC_CFG_SECRET, .desc = "PEM private key of EDGECODER_TLS_CERT" }
/* clang-format on */

struct ec_cfg_problems;
/* For a service's config check: the three go together, and with production set they are
 * required (service names the gRPC service in the message). True when all three are set. */
bool rpc_tls_cfg_check(const char *ca, const char *cert, const char *key, bool production,
                       const char *service, struct ec_cfg_problems *p);

/* --- identity: spiffe://edgecoder/<role>/<id> ------------------------------------------------- */

enum rpc_role {
    RPC_ROLE_NONE = 0, /* no edgecoder SPIFFE id in the certificate (or plaintext) */
    RPC_ROLE_COORDINATOR = 1u << 0,
    RPC_ROLE_CONTROL_PLANE = 1u << 1,
    RPC_ROLE_INFERENCE = 1u << 2,
    RPC_ROLE_PORTAL = 1u << 3,
    RPC_ROLE_AGENT = 1u << 4,
};
/* allowed_roles value: any mTLS-verified peer, with or without a SPIFFE id (health, reflection). */
#define RPC_ROLES_ANY     0xffffffffu
#define RPC_TRUST_DOMAIN  "edgecoder"
#define RPC_PEER_ID_MAX   128
#define RPC_SPIFFE_ID_MAX (sizeof("spiffe://" RPC_TRUST_DOMAIN "/control-plane/") + RPC_PEER_ID_MAX)

struct rpc_peer {
    enum rpc_role role;
    char id[RPC_PEER_ID_MAX + 1];      /* "" when role is RPC_ROLE_NONE */
    char spiffe_id[RPC_SPIFFE_ID_MAX]; /* "" when role is RPC_ROLE_NONE */
};

/* Parses a URI SAN. The trust domain must be "edgecoder", the role one of the five, the id 1..128
 * characters of [A-Za-z0-9._-]. On failure out->role is RPC_ROLE_NONE. */
enum ec_status rpc_spiffe_parse(const char *uri, size_t len, struct rpc_peer *out,
                                struct ec_err *err);
const char *rpc_role_name(enum rpc_role role);                  /* "coordinator", ...; "none" */
enum rpc_role rpc_role_from_name(const char *name, size_t len); /* RPC_ROLE_NONE if unknown */
bool rpc_role_allowed(unsigned allowed_roles, enum rpc_role role);
/* "OK", "CANCELLED", ... "UNAUTHENTICATED" for gRPC status codes 0..16; else "UNKNOWN". */
const char *rpc_code_name(int grpc_code);

/* --- TLS files -------------------------------------------------------------------------------- */

/* PEM files, from EDGECODER_TLS_CA, EDGECODER_TLS_CERT and EDGECODER_TLS_KEY in each service's
 * config table. A client with cert_file NULL presents no certificate (servers refuse it). */
struct rpc_tls {
    const char *ca_file;
    const char *cert_file;
    const char *key_file;
};

/* --- server ----------------------------------------------------------------------------------- */

enum rpc_kind {
    RPC_UNARY,
    RPC_SERVER_STREAM,
    RPC_BIDI_STREAM, /* the runtime's own reflection service; not for services */
};

struct rpc_call; /* one call; valid until its handler returns */

/* A handler returns EC_OK with *resp set (allocate it in rpc_call_arena or static storage), or
 * a status with err filled. It never sees gRPC. */
typedef enum ec_status (*rpc_unary_fn)(struct rpc_call *call, const ProtobufCMessage *req,
                                       ProtobufCMessage **resp, struct ec_err *err);
/* Sends with rpc_stream_send; returning ends the stream with that status. */
typedef enum ec_status (*rpc_server_stream_fn)(struct rpc_call *call, const ProtobufCMessage *req,
                                               struct ec_err *err);
typedef enum ec_status (*rpc_bidi_fn)(struct rpc_call *call, struct ec_err *err);

struct rpc_method {
    const char *path; /* "/edgecoder.v1.Demo/Echo" */
    const ProtobufCMessageDescriptor *req;
    const ProtobufCMessageDescriptor *resp;
    enum rpc_kind kind;
    unsigned allowed_roles; /* RPC_ROLE_* bits or RPC_ROLES_ANY; others get PERMISSION_DENIED */
    bool idempotent;        /* clients may retry it on UNAVAILABLE */
    union {
        rpc_unary_fn unary;
        rpc_server_stream_fn server_stream;
        rpc_bidi_fn bidi;
    };
};

struct rpc_service {
    const char *name; /* "edgecoder.v1.Demo"; every method path starts with "/<name>/" */
    const struct rpc_method *methods; /* borrowed: must outlive the server */
    size_t n_methods;
    void *data; /* handed to handlers by rpc_call_service_data */
};

struct rpc_server_opts {
    const char *listen; /* "host:port"; port 0 picks a free one (see rpc_server_port) */
    struct rpc_tls tls; /* server certificate; clients must present one from the same CA */
    bool plaintext;     /* tests only; refused when EDGECODER_ENV=production */
    int threads;        /* completion-queue workers running unary handlers; 0 = online cores */
    int max_streams;    /* concurrent streaming calls (each holds a thread); 0 = 64 */
    size_t max_message_bytes;  /* each direction; 0 = 4 MiB */
    int64_t shutdown_grace_ms; /* calls in flight get this long at shutdown; 0 = 5000 */
};

/* Reads the TLS files; nothing listens until rpc_server_start. */
struct rpc_server *rpc_server_new(const struct rpc_server_opts *opts, struct ec_err *err);
/* Before start. The service's health status starts as SERVING. */
enum ec_status rpc_server_add_service(struct rpc_server *srv, const struct rpc_service *svc,
                                      struct ec_err *err);
/* Adds grpc.health.v1.Health and grpc.reflection.v1{,alpha}.ServerReflection, binds, starts the
 * workers. */
enum ec_status rpc_server_start(struct rpc_server *srv, struct ec_err *err);
int rpc_server_port(const struct rpc_server *srv);

/* Health statuses (values of grpc.health.v1.HealthCheckResponse.ServingStatus). */
enum rpc_health { RPC_HEALTH_SERVING = 1, RPC_HEALTH_NOT_SERVING = 2 };
/* service "" is the server as a whole; an unknown name is added. Watchers see the change. */
void rpc_server_set_health(struct rpc_server *srv, const char *service, enum rpc_health status);

/* Graceful: health NOT_SERVING, no new calls, calls in flight get shutdown_grace_ms, then the rest
 * are cancelled; returns when every call and worker is done. Idempotent. */
void rpc_server_shutdown(struct rpc_server *srv);
/* Shuts down if needed, then frees. NULL is a no-op. */
void rpc_server_free(struct rpc_server *srv);

/* --- inside a handler ------------------------------------------------------------------------- */

/* The caller, from the URI SAN of its verified client certificate. */
const struct rpc_peer *rpc_call_peer(struct rpc_call *call);
/* The first value of a request metadata key (lower case), NUL-terminated in the call's arena; NULL
 * when absent. */
const char *rpc_call_metadata(struct rpc_call *call, const char *key);
/* Milliseconds left before the caller's deadline (<= 0: passed; INT64_MAX: none). */
int64_t rpc_call_deadline_ms(const struct rpc_call *call);
/* The per-call arena, released after the call's status is sent. */
struct ec_arena *rpc_call_arena(struct rpc_call *call);
/* The serialized request exactly as received (for body-hash signatures); NULL before it is read. */
const uint8_t *rpc_call_request_bytes(const struct rpc_call *call, size_t *len);
const char *rpc_call_method(const struct rpc_call *call);
void *rpc_call_service_data(const struct rpc_call *call);

enum rpc_wait {
    RPC_WAIT_TIMEOUT, /* ms elapsed */
    RPC_WAIT_WOKEN,   /* streams only: something changed (e.g. a health status) */
    RPC_WAIT_DONE,    /* the caller went away, the deadline passed or shutdown cancelled the call */
};
/* Waits up to ms; a handler that sleeps or polls uses this so it stops when the call is over. */
enum rpc_wait rpc_call_wait(struct rpc_call *call, int64_t ms);

/* Streaming handlers. Blocks until the message is handed to the transport; fails (EC_ETIMEOUT,
 * EC_EUNAVAIL) when the caller went away or the deadline passed, and the handler should return. */
enum ec_status rpc_stream_send(struct rpc_call *call, const ProtobufCMessage *msg,
                               struct ec_err *err);
/* Bidi only: the next request, allocated in arena (NULL: the call's arena; a long stream should
 * pass an arena it resets per message); *msg is NULL when the caller half-closed. */
enum ec_status rpc_stream_recv(struct rpc_call *call, const ProtobufCMessageDescriptor *desc,
                               struct ec_arena *arena, ProtobufCMessage **msg, struct ec_err *err);

/* --- client ----------------------------------------------------------------------------------- */

struct rpc_channel_opts {
    struct rpc_tls tls;
    bool plaintext;           /* tests only; refused when EDGECODER_ENV=production */
    const char *server_name;  /* name to verify in the server certificate; NULL: the target host */
    size_t max_message_bytes; /* 0 = 4 MiB */
};

/* One channel per target "host:port", shared by every thread. Connects lazily. */
struct rpc_channel *rpc_channel_new(const char *target, const struct rpc_channel_opts *opts,
                                    struct ec_err *err);
void rpc_channel_free(struct rpc_channel *ch); /* no calls may be running; NULL is a no-op */

struct rpc_md {
    const char *key; /* lower case, e.g. "x-request-id", "x-mesh-token" */
    const char *value;
};

#define RPC_DEFAULT_TIMEOUT_MS 10000

struct rpc_call_opts {
    int64_t timeout_ms; /* the call's deadline, retries included; 0 = RPC_DEFAULT_TIMEOUT_MS */
    const struct rpc_md *md;
    size_t n_md;
    bool idempotent; /* retry UNAVAILABLE with exponential backoff until the deadline */
};

/* Blocking unary call on the calling thread's completion queue. *resp is allocated in arena. On
 * failure err->status maps the gRPC code, err->code is the server's x-error-code (interned, static
 * lifetime) and err->msg reads "<GRPC_CODE>: <details>". opts may be NULL. */
enum ec_status rpc_unary(struct rpc_channel *ch, const char *method, const ProtobufCMessage *req,
                         const ProtobufCMessageDescriptor *resp_desc, struct ec_arena *arena,
                         ProtobufCMessage **resp, const struct rpc_call_opts *opts,
                         struct ec_err *err);
/* The same with serialized messages (for reflection-driven tools); *resp in arena. */
enum ec_status rpc_unary_raw(struct rpc_channel *ch, const char *method, const uint8_t *req,
                             size_t req_len, struct ec_arena *arena, uint8_t **resp,
                             size_t *resp_len, const struct rpc_call_opts *opts,
                             struct ec_err *err);

/* A server-streaming call: on_msg runs once per message, in order; each message lives until
 * on_msg returns. A non-OK return from on_msg cancels the call and is returned. */
typedef enum ec_status (*rpc_on_msg_fn)(void *ud, const ProtobufCMessage *msg, struct ec_err *err);
enum ec_status rpc_server_stream(struct rpc_channel *ch, const char *method,
                                 const ProtobufCMessage *req,
                                 const ProtobufCMessageDescriptor *resp_desc, rpc_on_msg_fn on_msg,
                                 void *ud, const struct rpc_call_opts *opts, struct ec_err *err);
typedef enum ec_status (*rpc_on_bytes_fn)(void *ud, const uint8_t *msg, size_t len,
                                          struct ec_err *err);
enum ec_status rpc_server_stream_raw(struct rpc_channel *ch, const char *method, const uint8_t *req,
                                     size_t req_len, rpc_on_bytes_fn on_msg, void *ud,
                                     const struct rpc_call_opts *opts, struct ec_err *err);

/* Destroys the calling thread's completion queue now (it is also destroyed at thread exit). */
void rpc_thread_release(void);

/* Many unary calls in flight from one thread (load tools, fan-out). Confined to one thread. */
struct rpc_async *rpc_async_new(void);
/* Every started call must have been collected with rpc_async_next. NULL is a no-op. */
void rpc_async_free(struct rpc_async *q);
enum ec_status rpc_async_unary(struct rpc_async *q, struct rpc_channel *ch, const char *method,
                               const ProtobufCMessage *req,
                               const ProtobufCMessageDescriptor *resp_desc,
                               const struct rpc_call_opts *opts, void *user, struct ec_err *err);
size_t rpc_async_pending(const struct rpc_async *q);
/* Waits for any started call to finish; returns its status (err as for rpc_unary), *user as
 * given to rpc_async_unary, *resp in arena (may be NULL when the caller does not want it). */
enum ec_status rpc_async_next(struct rpc_async *q, struct ec_arena *arena, ProtobufCMessage **resp,
                              void **user, struct ec_err *err);

#endif
