/* The request pipeline, one civetweb worker thread per connection: route, pre-route hook, body,
 * auth, handler, one write, the access log line and the metrics. */
#include "edge/edge_int.h"
#include "common/ec_log.h"
#include "common/ec_mem.h"

#include <civetweb.h>

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define READ_PIECE  16384
#define DISCARD_MAX ((long long)64 * 1024) /* civetweb may skip this much unread body */
#define DRAIN_MAX   ((size_t)256 * 1024)   /* read past a refused body before closing */
#define DRAIN_US    1000000

/* What one request turned into, for the access log and metrics. */
struct outcome {
    size_t slot;
    const char *route_label;
    const char *error_code;
    bool must_close;
    bool body_read; /* the whole body was consumed */
};

static void req_init(const struct edge_server *srv, struct edge_worker *w,
                     const struct mg_request_info *ri, struct edge_req *req)
{
    req->arena = &w->arena;
    req->method = ri->request_method;
    req->path = ri->local_uri_raw ? ri->local_uri_raw : "";
    req->query_string = ri->query_string ? ri->query_string : "";
    req->route = NULL;
    req->ctx = srv->svc.ctx;
    req->body = "";
    req->body_len = 0;
    req->nparams = 0;
    req->server_ = srv;
    req->json_ = NULL;
    int nh = ri->num_headers < EDGE_MAX_HEADERS ? ri->num_headers : EDGE_MAX_HEADERS;
    for (int i = 0; i < nh; i++) {
        req->headers[i].name = ri->http_headers[i].name;
        req->headers[i].value = ri->http_headers[i].value;
    }
    req->nheaders = (size_t)(nh > 0 ? nh : 0);
    const char *given = edge_req_header(req, "x-request-id");
    if (edge__request_id_valid(given))
        memcpy(req->id_buf_, given, strlen(given) + 1);
    else
        edge__request_id_make(req->id_buf_);
    req->id = req->id_buf_;
    edge__client_ip(req, srv->trust_proxy_header, ri->remote_addr, req->ip_buf_);
    req->client_ip = req->ip_buf_;
}

static bool client_wants_keep_alive(const struct edge_req *req, const struct mg_request_info *ri)
{
    const char *c = edge_req_header(req, "connection");
    if (c != NULL)
        return strcasestr(c, "keep-alive") != NULL;
    return ri->http_version != NULL && strcmp(ri->http_version, "1.1") == 0;
}

static enum ec_status read_body(struct mg_connection *conn, struct edge_worker *w,
                                struct edge_req *req, size_t limit, struct outcome *oc,
                                struct ec_err *err)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *te = edge_req_header(req, "transfer-encoding");
    bool chunked = te != NULL && strcasecmp(te, "chunked") == 0;
    long long cl = ri->content_length;
    if (!chunked && cl <= 0) {
        oc->body_read = true;
        return EC_OK;
    }
    if (!chunked && (unsigned long long)cl > limit) {
        oc->must_close = true; /* never read it, not even to discard it */
        return ec_err_set(err, EC_ETOOBIG, NULL, "the body is %lld bytes; the limit is %zu", cl,
                          limit);
    }
    const char *expect = edge_req_header(req, "expect");
    if (expect != NULL && strcasecmp(expect, "100-continue") == 0)
        mg_write(conn, "HTTP/1.1 100 Continue\r\n\r\n", 25);

    struct ec_buf *b = &w->body_in;
    ec_buf_reset(b);
    size_t want = chunked ? limit + 1 : (size_t)cl; /* one byte past the limit proves "over" */
    while (b->len < want) {
        size_t piece = want - b->len < READ_PIECE ? want - b->len : READ_PIECE;
        ec_buf_reserve(b, piece);
        int n = mg_read(conn, b->data + b->len, piece);
        if (n < 0 || (n == 0 && !chunked)) {
            oc->must_close = true;
            return ec_err_set(err, EC_EINVAL, "invalid_body",
                              "the body ended after %zu bytes, before its end", b->len);
        }
        if (n == 0)
            break;
        b->len += (size_t)n;
        b->data[b->len] = '\0';
    }
    if (b->len > limit) {
        oc->must_close = true;
        return ec_err_set(err, EC_ETOOBIG, NULL, "the chunked body is over the limit of %zu bytes",
                          limit);
    }
    req->body = b->data ? b->data : "";
    req->body_len = b->len;
    oc->body_read = true;
    return EC_OK;
}

static enum ec_status serve_asset(const struct edge_server *srv, const struct edge__asset *as,
                                  struct edge_req *req, struct edge_resp *resp,
                                  struct edge__head *head)
{
    head->etag = as->etag;
    head->cache_control = as->cache_control;
    edge_resp_bytes(resp, as->content_type, as->data, as->len);
    if (edge__etag_matches(edge_req_header(req, "if-none-match"), as->etag))
        head->status = 304;
    return EC_OK;
}

/* Reads a little of a refused body before the connection closes: closing a socket with unread
 * data sends a RST, which can make a client that is still sending miss the response. Bounded in
 * bytes and time, so a slow client cannot hold the worker. */
static void drain_body(struct mg_connection *conn)
{
    char buf[8192];
    size_t total = 0;
    int64_t deadline = edge__mono_us() + DRAIN_US;
    while (total < DRAIN_MAX && edge__mono_us() < deadline) {
        int n = mg_read(conn, buf, sizeof(buf));
        if (n <= 0)
            break;
        total += (size_t)n;
    }
}

/* Routes and runs one request; fills resp (or err), head and oc. */
static enum ec_status dispatch(struct edge_server *srv, struct mg_connection *conn,
                               struct edge_worker *w, struct edge_req *req, struct edge_resp *resp,
                               struct edge__head *head, struct outcome *oc, struct ec_err *err)
{
    struct edge_match m;
    enum edge_match_kind kind =
        edge_router_match(srv->router, req->method, req->path, strlen(req->path), req->arena, &m);
    const struct edge__asset *asset = NULL;
    if (kind == EDGE_MATCH_NO_PATH) {
        asset = edge__assets_find(&srv->assets, req->path, strlen(req->path));
        enum edge_method meth = edge_method_parse(req->method);
        if (asset != NULL && meth != EDGE_M_GET && meth != EDGE_M_HEAD) {
            kind = EDGE_MATCH_NO_METHOD;
            m.allow = 1u << EDGE_M_GET | 1u << EDGE_M_HEAD;
            asset = NULL;
        }
    }
    if (kind == EDGE_MATCH_FOUND) {
        oc->slot = m.route;
        oc->route_label = srv->routes[m.route].pattern;
    } else if (asset != NULL) {
        oc->slot = srv->slot_static;
        oc->route_label = "static";
    }

    /* The hook sees every request, matched or not, before any 404 or 405 is decided. */
    if (srv->svc.pre_route != NULL) {
        enum ec_status st = srv->svc.pre_route(req, err);
        if (st != EC_OK)
            return st;
    }
    switch (kind) {
    case EDGE_MATCH_BAD_PATH:
        return ec_err_set(err, EC_EINVAL, "invalid_path",
                          "the path has a malformed escape, a NUL byte or a \"..\" segment");
    case EDGE_MATCH_NO_METHOD: {
        char allow[64];
        edge_allow_format(m.allow, allow, sizeof(allow));
        head->allow = ec_arena_strdup(req->arena, allow);
        return ec_err_set(err, EC_EMETHOD, NULL, NULL);
    }
    case EDGE_MATCH_NO_PATH:
        if (asset != NULL)
            return serve_asset(srv, asset, req, resp, head);
        return ec_err_set(err, EC_ENOTFOUND, NULL, NULL);
    case EDGE_MATCH_FOUND:
        break;
    }

    const struct edge_route *rt = &srv->routes[m.route];
    req->route = rt->pattern;
    req->nparams = m.nparams;
    memcpy(req->params, m.params, m.nparams * sizeof(m.params[0]));
    enum ec_status st =
        read_body(conn, w, req, rt->body_limit ? rt->body_limit : EDGE_BODY_LIMIT_DEFAULT, oc, err);
    if (st != EC_OK)
        return st;
    if (rt->auth != NULL && (st = rt->auth(req, err)) != EC_OK)
        return st;
    return rt->handler(req, resp, err);
}

int edge__on_begin_request(struct mg_connection *conn)
{
    struct edge_server *srv = mg_get_user_data(mg_get_context(conn));
    struct edge_worker *w = mg_get_thread_pointer(conn);
    const struct mg_request_info *ri = mg_get_request_info(conn);
    EC_ASSERT(srv != NULL && w != NULL);
    int64_t t0 = edge__mono_us();
    atomic_fetch_add(&srv->metrics.in_flight, 1); /* before reading stopping */
    bool stopping = atomic_load(&srv->stopping);

    struct edge_req *req = &w->req;
    req_init(srv, w, ri, req);
    struct edge_resp resp;
    edge__resp_init(&resp, &w->arena, &w->resp);
    struct ec_err err;
    ec_err_clear(&err);
    struct edge__head head = { .status = 200, .req_id = req->id, .cache_control = "no-store" };
    struct outcome oc = { .slot = srv->slot_unmatched,
                          .route_label = "unmatched",
                          .must_close = stopping };

    enum ec_status st = stopping ? ec_err_set(&err, EC_EUNAVAIL, "shutting_down", NULL)
                                 : dispatch(srv, conn, w, req, &resp, &head, &oc, &err);
    if (st == EC_OK && resp.too_big_) {
        EC_ERROR("response body over the edge's cap", EC_LS("req_id", req->id),
                 EC_LS("route", oc.route_label));
        st = ec_err_set(&err, EC_EINTERNAL, "response_too_large", NULL);
    }
    if (st != EC_OK) {
        /* An err left unfilled, or filled for another status, still gets st's own code. */
        bool filled = err.status == st;
        const char *code = filled && err.code ? err.code : ec_status_info(st)->code;
        head.status = ec_status_info(st)->http_status;
        head.etag = NULL;
        head.cache_control = "no-store";
        /* A 4xx reason tells the caller what to fix; a 5xx reason describes our insides (a
         * database host, an upstream's words), so it goes to the log under the request id. */
        bool server_side = head.status >= 500;
        if (server_side && filled && err.msg[0] != '\0')
            EC_WARN("request failed", EC_LS("req_id", req->id), EC_LS("route", oc.route_label),
                    EC_LI("status", head.status), EC_LS("error", code), EC_LS("reason", err.msg));
        edge__resp_error(&resp, code, filled && !server_side ? err.msg : NULL);
        if (head.status == 503)
            head.retry_after = "1";
        oc.error_code = code;
    } else if (head.status == 200) {
        head.status = (int)resp.status;
    }
    /* A body left unread is skipped by civetweb to keep the connection; past a small size (or
     * of unknown size) the connection closes instead, after a bounded drain below. */
    const char *te = edge_req_header(req, "transfer-encoding");
    bool has_body = ri->content_length > 0 || (te != NULL && strcasecmp(te, "chunked") == 0);
    if (has_body && !oc.body_read && (ri->content_length < 0 || ri->content_length > DISCARD_MAX))
        oc.must_close = true;
    if (oc.must_close)
        mg_disable_connection_keep_alive(conn);
    head.keep_alive =
        !oc.must_close && client_wants_keep_alive(req, ri) && !atomic_load(&srv->stopping);
    head.head_only = strcmp(req->method, "HEAD") == 0;
    head.date = edge__worker_date(w);
    edge__resp_assemble(&resp, &head, &w->out);
    mg_write(conn, w->out.data, w->out.len);
    if (oc.must_close && has_body && !oc.body_read)
        drain_body(conn);

    int64_t dur_us = edge__mono_us() - t0;
    size_t body_bytes = head.head_only || head.status == 204 || head.status == 304
                            ? 0
                            : (resp.body ? resp.body_len : 2);
    if (oc.error_code != NULL)
        EC_INFO("http request", EC_LS("req_id", req->id), EC_LS("method", req->method),
                EC_LS("route", oc.route_label), EC_LI("status", head.status),
                EC_LD("dur_ms", (double)dur_us / 1000.0), EC_LI("bytes", body_bytes),
                EC_LS("client_ip", req->client_ip), EC_LS("error", oc.error_code));
    else
        EC_INFO("http request", EC_LS("req_id", req->id), EC_LS("method", req->method),
                EC_LS("route", oc.route_label), EC_LI("status", head.status),
                EC_LD("dur_ms", (double)dur_us / 1000.0), EC_LI("bytes", body_bytes),
                EC_LS("client_ip", req->client_ip));
    edge__metrics_observe(&srv->metrics, oc.slot, edge_method_parse(req->method), head.status,
                          dur_us);
    edge__worker_trim(w);
    atomic_fetch_sub(&srv->metrics.in_flight, 1);
    return head.status;
}

/* Errors civetweb finds before a request reaches us (a malformed request line, headers over
 * max_request_size, a bad Content-Length) get the same JSON shape; the connection closes. */
int edge__on_http_error(struct mg_connection *conn, int status, const char *errmsg)
{
    struct edge_server *srv = mg_get_user_data(mg_get_context(conn));
    struct edge_worker *w = mg_get_thread_pointer(conn);
    if (srv == NULL || w == NULL)
        return 1;
    const char *code = "invalid_request";
    switch (status) {
    case 408:
        code = "timeout";
        break;
    case 411:
        code = "invalid_content_length";
        break;
    case 413:
        code = "request_too_large";
        break;
    case 414:
        code = "uri_too_long";
        break;
    case 431:
        code = "request_too_large";
        break;
    case 505:
        code = "http_version_not_supported";
        break;
    default:
        code = status >= 500 ? "internal_error" : "invalid_request";
        break;
    }
    char id[EDGE_REQUEST_ID_MAX + 1];
    edge__request_id_make(id);
    struct edge_resp resp;
    edge__resp_init(&resp, &w->arena, &w->resp);
    /* civetweb's messages are fixed phrases ("Malformed message"); headers over
     * max_request_size come out as that 400 too. */
    char reason[128];
    snprintf(reason, sizeof(reason), "%s", errmsg ? errmsg : "");
    reason[0] = (char)tolower((unsigned char)reason[0]);
    edge__resp_error(&resp, code, reason);
    struct edge__head head = {
        .status = status, .req_id = id, .cache_control = "no-store", .date = edge__worker_date(w)
    };
    edge__resp_assemble(&resp, &head, &w->out);
    mg_disable_connection_keep_alive(conn);
    mg_write(conn, w->out.data, w->out.len);
    const struct mg_request_info *ri = mg_get_request_info(conn);
    EC_INFO("http request rejected", EC_LS("req_id", id), EC_LI("status", status),
            EC_LS("error", code), EC_LS("reason", reason),
            EC_LS("client_ip", ri ? ri->remote_addr : NULL));
    edge__metrics_observe(&srv->metrics, srv->slot_unmatched, EDGE_M_OTHER, status, 0);
    edge__worker_trim(w);
    return 0;
}
