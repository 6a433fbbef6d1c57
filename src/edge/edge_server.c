/* The civetweb server: start (options, the TLS PEM, per-thread state), graceful stop, and the
 * built-in /metrics route. The request pipeline is in edge_pipeline.c. */
#include "edge/edge_int.h"
#include "common/ec_crypto.h"
#include "common/ec_log.h"
#include "common/ec_mem.h"

#include <civetweb.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BUF_KEEP      ((size_t)256 * 1024) /* a worker's buffers shrink back past this */
#define RESP_BODY_MAX ((size_t)64 << 20)   /* a larger response body is a bug: answered 500 */

int64_t edge__mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* --- worker threads ----------------------------------------------------------------------- */

static void *on_init_thread(const struct mg_context *ctx, int thread_type)
{
    if (thread_type != 1)
        return NULL;
    struct edge_worker *w = ec_xcalloc(1, sizeof(*w));
    ec_arena_init(&w->arena);
    ec_buf_init(&w->body_in, 0);
    ec_buf_init(&w->resp, RESP_BODY_MAX);
    ec_buf_init(&w->out, 0);
    return w;
}

static void on_exit_thread(const struct mg_context *ctx, int thread_type, void *ptr)
{
    struct edge_worker *w = ptr;
    if (w == NULL)
        return;
    ec_arena_release(&w->arena);
    ec_buf_release(&w->body_in);
    ec_buf_release(&w->resp);
    ec_buf_release(&w->out);
    free(w);
}

void edge__worker_trim(struct edge_worker *w)
{
    ec_arena_reset(&w->arena);
    struct ec_buf *bufs[] = { &w->body_in, &w->resp, &w->out };
    for (size_t i = 0; i < 3; i++)
        if (bufs[i]->cap > BUF_KEEP)
            ec_buf_release(bufs[i]);
}

const char *edge__worker_date(struct edge_worker *w)
{
    time_t now = time(NULL);
    if (now != w->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(w->date, sizeof(w->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        w->date_sec = now;
    }
    return w->date;
}

/* --- civetweb's own messages and the built-in /metrics ------------------------------------ */

static int on_log_message(const struct mg_connection *conn, const char *message)
{
    /* Failed handshakes come from TCP health checks, scanners and old clients: not worth a
     * warning each. Start-up failures reach the caller through mg_start2's error text. */
    if (strncmp(message, "sslize error", 12) == 0)
        EC_DEBUG("civetweb", EC_LS("detail", message));
    else
        EC_WARN("civetweb", EC_LS("detail", message));
    return 1;
}

static enum ec_status metrics_handler(struct edge_req *req, struct edge_resp *resp,
                                      struct ec_err *err)
{
    struct edge_server *srv = (struct edge_server *)req->server_;
    ec_buf_reset(resp->buf);
    edge__metrics_render(&srv->metrics, resp->buf, srv->svc.metrics, srv->svc.ctx);
    edge_resp_bytes(resp, "text/plain; version=0.0.4; charset=utf-8", resp->buf->data,
                    resp->buf->len);
    return EC_OK;
}

/* --- start and stop ----------------------------------------------------------------------- */

static enum ec_status append_file(int fd, const char *path, struct ec_err *err)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return ec_err_set(err, EC_EINVAL, NULL, "cannot read \"%s\": %s", path, strerror(errno));
    char buf[4096];
    size_t n;
    bool last_newline = true;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        if (write(fd, buf, n) != (ssize_t)n) {
            fclose(f);
            ec_crypto_wipe(buf, sizeof(buf));
            return ec_err_set(err, EC_EINTERNAL, NULL, "cannot write the TLS PEM: %s",
                              strerror(errno));
        }
        last_newline = buf[n - 1] == '\n';
    }
    fclose(f);
    ec_crypto_wipe(buf, sizeof(buf)); /* it held key material */
    if (!last_newline && write(fd, "\n", 1) != 1)
        return ec_err_set(err, EC_EINTERNAL, NULL, "cannot write the TLS PEM");
    return EC_OK;
}

/* civetweb wants certificate and key in one PEM: a private file, mode 0600, removed as soon as
 * civetweb has loaded it. */
static enum ec_status write_pem(struct edge_server *srv, const char *cert, const char *key,
                                struct ec_err *err)
{
    const char *tmp = getenv("TMPDIR");
    int n = snprintf(srv->pem_path, sizeof(srv->pem_path), "%s/edgecoder-edge-XXXXXX",
                     tmp && tmp[0] ? tmp : "/tmp");
    if (n < 0 || (size_t)n >= sizeof(srv->pem_path)) {
        srv->pem_path[0] = '\0';
        return ec_err_set(err, EC_EINVAL, NULL, "TMPDIR is too long for the TLS PEM file");
    }
    int fd = mkstemp(srv->pem_path);
    if (fd < 0) {
        srv->pem_path[0] = '\0';
        return ec_err_set(err, EC_EINTERNAL, NULL, "cannot create the TLS PEM file: %s",
                          strerror(errno));
    }
    fchmod(fd, 0600);
    enum ec_status st = append_file(fd, cert, err);
    if (st == EC_OK)
        st = append_file(fd, key, err);
    close(fd);
    return st;
}

static void remove_pem(struct edge_server *srv)
{
    if (srv->pem_path[0] != '\0') {
        unlink(srv->pem_path);
        srv->pem_path[0] = '\0';
    }
}

static void server_free(struct edge_server *srv)
{
    remove_pem(srv);
    edge_router_free(srv->router);
    edge__metrics_release(&srv->metrics);
    edge__assets_release(&srv->assets);
    free(srv->labels);
    free(srv->routes);
    free(srv->trust_proxy_header);
    free(srv);
}

static enum ec_status server_prepare(struct edge_server *srv, const struct edge_service *svc,
                                     struct ec_err *err)
{
    srv->svc = *svc;
    srv->nroutes = svc->nroutes + 1;
    srv->routes = ec_xcalloc(srv->nroutes, sizeof(*srv->routes));
    if (svc->nroutes)
        memcpy(srv->routes, svc->routes, svc->nroutes * sizeof(*svc->routes));
    srv->metrics_route = svc->nroutes;
    srv->routes[srv->metrics_route] =
        (struct edge_route){ "GET", "/metrics", NULL, 0, metrics_handler };
    enum ec_status st = edge_router_new(srv->routes, srv->nroutes, &srv->router, err);
    if (st != EC_OK)
        return st;
    srv->slot_static = srv->nroutes;
    srv->slot_unmatched = srv->nroutes + 1;
    srv->labels = ec_xcalloc(srv->nroutes + 2, sizeof(*srv->labels));
    for (size_t i = 0; i < srv->nroutes; i++)
        srv->labels[i] = srv->routes[i].pattern;
    srv->labels[srv->slot_static] = "static";
    srv->labels[srv->slot_unmatched] = "unmatched";
    edge__metrics_init(&srv->metrics, srv->labels, srv->nroutes + 2);
    return edge__assets_init(&srv->assets, svc->assets_prefix, svc->assets_dir, err);
}

static void add_option(const char **options, size_t *n, const char *name, const char *value)
{
    options[(*n)++] = name;
    options[(*n)++] = value;
}

enum ec_status edge_server_start(const struct edge_config *cfg, const struct edge_service *svc,
                                 struct edge_server **out, struct ec_err *err)
{
    *out = NULL;
    bool has_cert = cfg->tls_cert != NULL && cfg->tls_cert[0] != '\0';
    bool has_key = cfg->tls_key != NULL && cfg->tls_key[0] != '\0';
    if (has_cert != has_key)
        return ec_err_set(err, EC_EINVAL, NULL, "TLS needs both a certificate and a key");
    if (cfg->port < 0 || cfg->port > 65535)
        return ec_err_set(err, EC_EINVAL, NULL, "port %d is out of range", cfg->port);

    struct edge_server *srv = ec_xcalloc(1, sizeof(*srv));
    atomic_init(&srv->stopping, false);
    srv->tls = has_cert;
    srv->stop_timeout_ms = cfg->stop_timeout_ms > 0 ? cfg->stop_timeout_ms : 15000;
    srv->trust_proxy_header = cfg->trust_proxy_header && cfg->trust_proxy_header[0]
                                  ? ec_xstrdup(cfg->trust_proxy_header)
                                  : NULL;
    enum ec_status st = server_prepare(srv, svc, err);
    if (st == EC_OK && srv->tls)
        st = write_pem(srv, cfg->tls_cert, cfg->tls_key, err);
    if (st != EC_OK) {
        server_free(srv);
        return st;
    }
    edge__request_id_setup();

    char listen[300], threads[16], timeout[16], keep_alive[16], header_max[24];
    const char *host = cfg->host && cfg->host[0] ? cfg->host : NULL;
    bool ipv6 = host != NULL && strchr(host, ':') != NULL;
    snprintf(listen, sizeof(listen), "%s%s%s%s%d%s", ipv6 ? "[" : "", host ? host : "",
             ipv6 ? "]" : "", host ? ":" : "", cfg->port, srv->tls ? "s" : "");
    snprintf(threads, sizeof(threads), "%d", cfg->threads > 0 ? cfg->threads : 64);
    snprintf(timeout, sizeof(timeout), "%d",
             cfg->request_timeout_ms > 0 ? cfg->request_timeout_ms : 10000);
    snprintf(keep_alive, sizeof(keep_alive), "%d",
             cfg->keep_alive_timeout_ms > 0 ? cfg->keep_alive_timeout_ms : 5000);
    snprintf(header_max, sizeof(header_max), "%zu",
             cfg->max_header_bytes > 0 ? cfg->max_header_bytes : (size_t)16384);
    const char *options[32];
    size_t nopt = 0;
    add_option(options, &nopt, "listening_ports", listen);
    add_option(options, &nopt, "num_threads", threads);
    add_option(options, &nopt, "request_timeout_ms", timeout);
    add_option(options, &nopt, "keep_alive_timeout_ms", keep_alive);
    add_option(options, &nopt, "enable_keep_alive", "yes");
    add_option(options, &nopt, "tcp_nodelay", "1"); /* with one write per response: no stalls */
    add_option(options, &nopt, "max_request_size", header_max);
    /* The router decodes segment by segment, so "%2F" stays inside a parameter. */
    add_option(options, &nopt, "decode_url", "no");
    add_option(options, &nopt, "listen_backlog", "512");
    if (srv->tls) {
        add_option(options, &nopt, "ssl_certificate", srv->pem_path);
        add_option(options, &nopt, "ssl_certificate_chain", srv->pem_path); /* intermediates */
        add_option(options, &nopt, "ssl_protocol_version", "4");            /* TLS 1.2 and 1.3 */
    }
    options[nopt] = NULL;

    struct mg_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    cb.begin_request = edge__on_begin_request;
    cb.http_error = edge__on_http_error;
    cb.log_message = on_log_message;
    cb.init_thread = on_init_thread;
    cb.exit_thread = on_exit_thread;

    mg_init_library(MG_FEATURES_TLS);
    char etext[256] = "";
    unsigned ecode = 0;
    struct mg_error_data edata = { .code = &ecode,
                                   .text = etext,
                                   .text_buffer_size = sizeof(etext) };
    struct mg_init_data init = { .callbacks = &cb,
                                 .user_data = srv,
                                 .configuration_options = options };
    srv->mg = mg_start2(&init, &edata);
    remove_pem(srv);
    if (srv->mg == NULL) {
        mg_exit_library();
        server_free(srv);
        return ec_err_set(err, EC_EUNAVAIL, NULL, "cannot start the HTTP server on %s: %s", listen,
                          etext[0] ? etext : "unknown error");
    }
    struct mg_server_port ports[4];
    int np = mg_get_server_ports(srv->mg, 4, ports);
    srv->port = np > 0 ? ports[0].port : cfg->port;
    EC_INFO("http edge listening", EC_LS("service", svc->name), EC_LI("port", srv->port),
            EC_LB("tls", srv->tls), EC_LI("threads", atoi(threads)));
    *out = srv;
    return EC_OK;
}

int edge_server_port(const struct edge_server *srv)
{
    return srv->port;
}

void edge_server_stop(struct edge_server *srv)
{
    if (srv == NULL)
        return;
    /* civetweb drops every write once mg_stop has begun, so in-flight requests finish first:
     * from here on new requests get a 503 (Connection: close) and we wait for the others. A
     * request counts itself in flight before it reads `stopping` and we set `stopping` before
     * reading the count (both seq_cst), so none is missed. */
    atomic_store(&srv->stopping, true);
    int64_t in_flight = atomic_load(&srv->metrics.in_flight);
    EC_INFO("http edge stopping", EC_LS("service", srv->svc.name), EC_LI("in_flight", in_flight));
    int64_t deadline = edge__mono_us() + (int64_t)srv->stop_timeout_ms * 1000;
    while (atomic_load(&srv->metrics.in_flight) > 0 && edge__mono_us() < deadline) {
        struct timespec ts = { .tv_sec = 0, .tv_nsec = 5000000L };
        nanosleep(&ts, NULL);
    }
    in_flight = atomic_load(&srv->metrics.in_flight);
    if (in_flight > 0)
        EC_WARN("http edge stop timeout: requests cut off", EC_LI("in_flight", in_flight));
    mg_stop(srv->mg); /* closes connections and joins the workers */
    mg_exit_library();
    EC_INFO("http edge stopped", EC_LS("service", srv->svc.name));
    server_free(srv);
}
