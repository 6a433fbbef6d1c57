/* Shared inside src/edge only: metrics slots, the static asset table, response assembly and
 * request helpers used by edge_server.c. civetweb-free, so each piece is testable alone. */
#ifndef EDGE_INT_H
#define EDGE_INT_H

#include "edge/edge.h"
#include "edge/edge_route.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* --- metrics (edge_metrics.c) ------------------------------------------------------------- */

#define EDGE__NBUCKETS 15 /* 14 bounds and +Inf */

/* HTTP statuses with a counter of their own (28), and a last one for "other". */
enum { EDGE__NSTATUS = 29 };

/* One per route, plus "/metrics", "static" and "unmatched". Lock-free: relaxed atomics. */
struct edge__metric_slot {
    const char *route; /* the label; borrowed */
    _Atomic uint64_t requests[EDGE_M_COUNT][EDGE__NSTATUS];
    _Atomic uint64_t buckets[EDGE__NBUCKETS]; /* not cumulative; cumulated when rendered */
    _Atomic uint64_t sum_us;
    _Atomic uint64_t count;
};

struct edge__metrics {
    struct edge__metric_slot *slots;
    size_t nslots;
    _Atomic int64_t in_flight;
};

void edge__metrics_init(struct edge__metrics *m, const char *const *labels, size_t n);
void edge__metrics_release(struct edge__metrics *m);
void edge__metrics_observe(struct edge__metrics *m, size_t slot, enum edge_method method,
                           int http_status, int64_t dur_us);
/* Prometheus text exposition of every counter, then extra(out, ctx) when given. */
void edge__metrics_render(struct edge__metrics *m, struct ec_buf *out, edge_metrics_fn extra,
                          void *ctx);

/* --- static assets (edge_assets.c) -------------------------------------------------------- */

struct edge__asset {
    char *url_path; /* "/index.html" under the mount */
    const unsigned char *data;
    size_t len;
    const char *content_type;
    const char *cache_control;
    char etag[20]; /* "\"" + 16 hex + "\"" */
};

struct edge__assets {
    struct edge__asset *files;
    size_t nfiles;
    char *prefix; /* "/" or "/ui/": always ends in '/' */
};

/* Indexes edge_assets rows under dir for the URL mount prefix. A NULL prefix serves nothing. */
enum ec_status edge__assets_init(struct edge__assets *a, const char *prefix, const char *dir,
                                 struct ec_err *err);
void edge__assets_release(struct edge__assets *a);
/* The file for a raw request path; "/x/" means "/x/index.html". NULL when none. */
const struct edge__asset *edge__assets_find(const struct edge__assets *a, const char *path,
                                            size_t len);
/* True when an If-None-Match header value lists etag (or is "*"); weak tags compare too. */
bool edge__etag_matches(const char *if_none_match, const char *etag);
const char *edge__content_type(const char *path);

/* --- responses (edge_reply.c) ------------------------------------------------------------- */

struct edge_resp_hdr {
    struct edge_resp_hdr *next;
    const char *name;
    const char *value;
};

void edge__resp_init(struct edge_resp *resp, struct ec_arena *arena, struct ec_buf *buf);
/* Replaces resp's body with {"error":code[,"reason":reason]}. */
void edge__resp_error(struct edge_resp *resp, const char *code, const char *reason);
/* What to put on the wire besides resp itself. */
struct edge__head {
    int status;
    const char *req_id;
    const char *allow;         /* Allow header, or NULL */
    const char *etag;          /* ETag header, or NULL */
    const char *cache_control; /* default for JSON: no-store (a handler's own header wins) */
    const char *date;          /* "Tue, 15 Nov 1994 08:12:31 GMT" */
    const char *retry_after;   /* Retry-After seconds (503), or NULL */
    bool keep_alive;
    bool head_only; /* HEAD or 304: headers only, Content-Length still the body's */
};
/* Builds status line, headers and body into out (reset first): one buffer, one write. */
void edge__resp_assemble(const struct edge_resp *resp, const struct edge__head *h,
                         struct ec_buf *out);
const char *edge__reason_phrase(int status);

/* --- requests (edge_req.c) ---------------------------------------------------------------- */

/* Sets up the per-process request-id prefix (random); idempotent and thread-safe. */
void edge__request_id_setup(void);
/* A caller's x-request-id is kept when it is 1..64 of [A-Za-z0-9._:-]. */
bool edge__request_id_valid(const char *id);
/* "<8 hex prefix>-<counter>" into buf (EDGE_REQUEST_ID_MAX + 1 bytes); no syscall. */
void edge__request_id_make(char *buf);
/* The client IP: the proxy header's value (last element of a list) when configured, present
 * and IP-shaped, else the socket address. Writes into buf (48 bytes). */
void edge__client_ip(const struct edge_req *req, const char *trust_header, const char *peer,
                     char *buf);

/* --- the server (edge_server.c: start, stop, threads; edge_pipeline.c: requests) --------- */

struct mg_context;
struct mg_connection;

struct edge_server {
    struct mg_context *mg;
    struct edge_service svc;
    struct edge_route *routes; /* svc's, then the built-in GET /metrics */
    size_t nroutes;
    size_t metrics_route;
    struct edge_router *router;
    struct edge__metrics metrics;
    const char **labels;
    size_t slot_static, slot_unmatched;
    struct edge__assets assets;
    char *trust_proxy_header;
    char pem_path[256];
    int port;
    int stop_timeout_ms;
    bool tls;
    atomic_bool stopping; /* with metrics.in_flight: seq_cst, see edge_server_stop */
};

/* Per worker thread, so the hot path reuses memory instead of allocating. */
struct edge_worker {
    struct ec_arena arena;
    struct ec_buf body_in; /* the request body */
    struct ec_buf resp;    /* the response body */
    struct ec_buf out;     /* status line + headers + body */
    struct edge_req req;
    time_t date_sec;
    char date[40];
};

int64_t edge__mono_us(void);
/* Per-second cached HTTP date for w's responses. */
const char *edge__worker_date(struct edge_worker *w);
/* Resets w's arena and shrinks its buffers after a large request. */
void edge__worker_trim(struct edge_worker *w);
/* civetweb callbacks. */
int edge__on_begin_request(struct mg_connection *conn);
int edge__on_http_error(struct mg_connection *conn, int status, const char *errmsg);

#endif
