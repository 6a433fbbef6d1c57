/* The HTTP edge: a civetweb server behind a per-service route table. Handlers see plain request
 * and response objects and return an ec_status; the edge maps statuses to HTTP, writes each
 * response with one write, logs one access line and keeps Prometheus metrics. civetweb-free. */
#ifndef EDGE_H
#define EDGE_H

#include "common/ec_arena.h"
#include "common/ec_buf.h"
#include "common/ec_config.h"
#include "common/ec_status.h"

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EDGE_BODY_LIMIT_DEFAULT ((size_t)1 << 20) /* a route's body_limit of 0 means this */
#define EDGE_MAX_PARAMS         8                 /* ":param" segments in one pattern */
#define EDGE_MAX_HEADERS        64                /* civetweb's MG_MAX_HEADERS */
#define EDGE_REQUEST_ID_MAX     64

struct edge_server;
struct edge_pbjson_opts; /* edge_pbjson.h */

struct edge_param {
    const char *name;  /* from the pattern, without the ':' */
    const char *value; /* percent-decoded, in the request arena */
};

struct edge_header {
    const char *name;
    const char *value;
};

/* One request. Every pointer is valid until the response is written; nothing here is the
 * handler's to free. Handlers read the fields and use the functions below. */
struct edge_req {
    struct ec_arena *arena;   /* per request: reset after the response */
    const char *method;       /* as sent: "GET", "POST", ... */
    const char *path;         /* raw (still percent-encoded), without the query string */
    const char *query_string; /* raw, after the '?'; "" when there is none */
    const char *route;        /* the matched pattern, or NULL before routing / when none */
    const char *id;           /* x-request-id: the caller's when valid, else made here */
    const char *client_ip;    /* the socket peer, or the trusted proxy header's value */
    void *ctx;                /* edge_service.ctx */
    /* The body, read in full before the route's auth policy and handler run (so a policy can
     * check a signature over it), capped at the route's body_limit, NUL-terminated. */
    const char *body;
    size_t body_len;
    size_t nparams;
    struct edge_param params[EDGE_MAX_PARAMS];
    size_t nheaders;
    struct edge_header headers[EDGE_MAX_HEADERS];
    /* Private to the edge. */
    const struct edge_server *server_;
    json_t *json_;
    char id_buf_[EDGE_REQUEST_ID_MAX + 1];
    char ip_buf_[48];
};

/* A ":name" segment's decoded value, or NULL when the route has no such parameter. */
const char *edge_req_param(const struct edge_req *req, const char *name);
/* The first query parameter called name, decoded ('+' is a space) into the arena; "" for
 * "?name" or "?name="; NULL when absent or when its value decodes to a NUL byte. */
const char *edge_req_query(struct edge_req *req, const char *name);
/* A request header (name compared without case), or NULL. */
const char *edge_req_header(const struct edge_req *req, const char *name);
/* The body parsed as a JSON object or array. *out is borrowed: it lives until the response is
 * written (json_incref it to hand it to edge_resp_json). Malformed JSON is EC_EINVAL with code
 * "invalid_json" and reason "<jansson's message> at line L column C"; an empty body too. */
enum ec_status edge_req_json(struct edge_req *req, json_t **out, struct ec_err *err);

/* Success statuses a handler may choose; errors are chosen by returning an ec_status. */
enum edge_ok {
    EDGE_OK_200 = 200,
    EDGE_OK_201 = 201,
    EDGE_OK_202 = 202,
    EDGE_OK_204 = 204, /* the body, if any was set, is not sent */
};

struct edge_resp_hdr;

/* The response a handler fills on success. Use the functions; the fields are the edge's. */
struct edge_resp {
    enum edge_ok status;
    const char *content_type;
    const char *body; /* NULL: "{}" */
    size_t body_len;
    struct edge_resp_hdr *headers; /* extra headers, in the arena */
    struct ec_arena *arena;
    struct ec_buf *buf; /* where copied bodies go; owned by the edge's worker thread */
    bool too_big_;      /* a body over the edge's cap: answered as a 500 */
};

void edge_resp_status(struct edge_resp *resp, enum edge_ok status);
/* JSON text, copied. */
void edge_resp_json_text(struct edge_resp *resp, const char *json);
/* A JSON value, serialised compactly; steals the reference (NULL gives "null"). */
void edge_resp_json(struct edge_resp *resp, json_t *json);
/* Any bytes. data is borrowed: static, or in the request arena. */
void edge_resp_bytes(struct edge_resp *resp, const char *content_type, const void *data,
                     size_t len);
/* An extra header, copied. A name or value holding CR, LF or NUL is dropped with a warning. */
void edge_resp_header(struct edge_resp *resp, const char *name, const char *value);

/* Protobuf messages as JSON bodies, through the codec of edge_pbjson.h (proto3 JSON mapping).
 * The request body decoded into a new message of type desc, allocated in the request arena:
 * malformed JSON is "invalid_json" as from edge_req_json, a bad field EC_EINVAL naming it. */
enum ec_status edge_req_decode_pb(struct edge_req *req, const ProtobufCMessageDescriptor *desc,
                                  const struct edge_pbjson_opts *opts, ProtobufCMessage **out,
                                  struct ec_err *err);
/* msg (borrowed) encoded as the response body. Fails (EC_EINTERNAL) only for a message with no
 * JSON form; return that status from the handler. */
enum ec_status edge_resp_pb(struct edge_resp *resp, const ProtobufCMessage *msg,
                            const struct edge_pbjson_opts *opts, struct ec_err *err);

/* A handler decodes the request, calls a transport-free service function, encodes the reply.
 * On EC_OK the edge writes resp; on failure {"error":code,"reason":err->msg} with the status's
 * HTTP code: code is err->code, else the status table's; the reason is left out when empty and
 * for 5xx statuses, whose reasons describe our insides and go to the log instead (with req_id).
 * A 503 also gets Retry-After: 1. */
typedef enum ec_status (*edge_handler_fn)(struct edge_req *req, struct edge_resp *resp,
                                          struct ec_err *err);
/* An auth policy: EC_OK to let the request through, else an error as from a handler. */
typedef enum ec_status (*edge_auth_fn)(struct edge_req *req, struct ec_err *err);
/* Runs for every request before routing takes effect (req->route is still NULL, the body not
 * read), so a check such as "a token on every path but /health" answers unknown paths the same
 * as known ones. */
typedef enum ec_status (*edge_pre_route_fn)(struct edge_req *req, struct ec_err *err);
/* Appends extra Prometheus text lines (with their # HELP/# TYPE) to /metrics. */
typedef void (*edge_metrics_fn)(struct ec_buf *out, void *ctx);

struct edge_route {
    const char *method;  /* GET, POST, PUT, PATCH, DELETE, OPTIONS; GET also answers HEAD */
    const char *pattern; /* "/tasks/:taskId": exact segments and ":name" segments */
    edge_auth_fn auth;   /* NULL: open */
    size_t body_limit;   /* bytes; 0: EDGE_BODY_LIMIT_DEFAULT */
    edge_handler_fn handler;
};

/* What a service serves. The route table and strings are borrowed for the server's life. */
struct edge_service {
    const char *name;
    const struct edge_route *routes;
    size_t nroutes;
    edge_pre_route_fn pre_route; /* optional */
    edge_metrics_fn metrics;     /* optional */
    void *ctx;                   /* handed to handlers as req->ctx */
    /* Static files from edge_assets (ec_embed.h): a GET under assets_prefix ("/") that no route
     * matches is looked up in the folder assets_dir ("demo/"); a path ending in '/' means its
     * index.html. NULL prefix: none. */
    const char *assets_prefix;
    const char *assets_dir;
};

/* Where and how to listen; zero fields take the defaults shown. */
struct edge_config {
    const char *host;               /* NULL or "": every IPv4 interface */
    int port;                       /* 0: an ephemeral port (edge_server_port tells which) */
    const char *tls_cert;           /* PEM file; both NULL/"": plain HTTP (behind a TLS proxy) */
    const char *tls_key;            /* PEM file, unencrypted */
    int threads;                    /* 64; civetweb holds one per open connection */
    int request_timeout_ms;         /* 10000: per read/write of a request */
    int keep_alive_timeout_ms;      /* 5000 */
    size_t max_header_bytes;        /* 16384: request line + headers (civetweb max_request_size) */
    const char *trust_proxy_header; /* e.g. "fly-client-ip"; NULL: the socket address only */
    int stop_timeout_ms;            /* 15000: how long edge_server_stop waits for requests */
};

/* Starts listening. Fails with EC_EINVAL for a bad route table or config, EC_EUNAVAIL when
 * civetweb cannot start (port in use, unreadable certificate). */
enum ec_status edge_server_start(const struct edge_config *cfg, const struct edge_service *svc,
                                 struct edge_server **out, struct ec_err *err);
/* The port listened on. */
int edge_server_port(const struct edge_server *srv);
/* Graceful stop: requests that arrive from now on get 503 and Connection: close; in-flight ones
 * finish (up to stop_timeout_ms); then the listener closes, the workers are joined and srv is
 * freed. NULL is a no-op. */
void edge_server_stop(struct edge_server *srv);

/* The EDGECODER_HTTP_* variables every service with an edge shares: embed a struct edge_env in
 * the service's config struct, put EDGE_ENV_CFG_VARS(struct my_cfg, member) in its ec_cfg_var
 * table, call edge_env_check from the spec's check and edge_env_apply before starting. */
struct edge_env {
    char *tls_cert;
    char *tls_key;
    int64_t threads;
    int64_t request_timeout_ms;
    char *trust_proxy_header;
};

/* clang-format off */
/* NOLINTBEGIN(bugprone-macro-parentheses): member is a field name */
#define EDGE_ENV_CFG_VARS(cfg_type, member)                                                        \
    { .env = "EDGECODER_HTTP_TLS_CERT", .type = EC_CFG_PATH,                                       \
      .offset = offsetof(cfg_type, member.tls_cert),                                                   \
      .desc = "TLS certificate chain (PEM) for the HTTP edge; unset: plain HTTP behind a proxy" }, \
    { .env = "EDGECODER_HTTP_TLS_KEY", .type = EC_CFG_PATH,                                        \
      .offset = offsetof(cfg_type, member.tls_key),                                                    \
      .desc = "private key (PEM) for EDGECODER_HTTP_TLS_CERT" },                                   \
    { .env = "EDGECODER_HTTP_THREADS", .type = EC_CFG_INT,                                         \
      .offset = offsetof(cfg_type, member.threads), .dflt = "64", .min = 1, .max = 1024,               \
      .desc = "HTTP worker threads: the most connections served at once" },                        \
    { .env = "EDGECODER_HTTP_REQUEST_TIMEOUT_MS", .type = EC_CFG_INT,                              \
      .offset = offsetof(cfg_type, member.request_timeout_ms), .dflt = "10000", .min = 100,            \
      .max = 600000, .desc = "HTTP read/write timeout per request, milliseconds" },                \
    { .env = "EDGECODER_TRUST_PROXY_HEADER", .type = EC_CFG_STR,                                   \
      .offset = offsetof(cfg_type, member.trust_proxy_header),                                         \
      .desc = "header carrying the client IP from a trusted proxy (fly-client-ip on Fly); "        \
              "unset: the socket address" }
/* NOLINTEND(bugprone-macro-parentheses) */
/* clang-format on */

void edge_env_check(const struct edge_env *env, struct ec_cfg_problems *problems);
void edge_env_apply(const struct edge_env *env, struct edge_config *cfg);

#endif
