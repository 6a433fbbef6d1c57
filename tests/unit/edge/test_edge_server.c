/* The edge server in-process on an ephemeral port, spoken to over a raw socket: the pre-route
 * hook runs before 404/405, handler errors with and without err filled, success statuses and
 * headers, the extra-metrics callback, and bad configs. */
#include "edge/edge.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

/* Only /health is open; everything else, known or not, wants the token. */
static enum ec_status token_everywhere_but_health(struct edge_req *req, struct ec_err *err)
{
    if (strcmp(req->path, "/health") == 0)
        return EC_OK;
    if (req->route != NULL || req->nparams != 0)
        return ec_err_set(err, EC_EINTERNAL, NULL, "%s", "routed before the hook");
    const char *t = edge_req_header(req, "x-mesh-token");
    if (t == NULL || strcmp(t, "good") != 0)
        return ec_err_set(err, EC_EUNAUTH, "mesh_unauthorized", "%s", "");
    return EC_OK;
}

static enum ec_status h_health(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    edge_resp_json_text(resp, "{\"ok\":true}");
    return EC_OK;
}

static enum ec_status h_created(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    edge_resp_status(resp, EDGE_OK_201);
    edge_resp_header(resp, "Location", "/things/7");
    edge_resp_json(resp, json_pack("{s:s}", "id", edge_req_param(req, "id")));
    return EC_OK;
}

static enum ec_status h_empty(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    edge_resp_status(resp, EDGE_OK_204);
    return EC_OK;
}

/* Fails without touching err: the status table's code, no reason. */
static enum ec_status h_conflict(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    return EC_ECONFLICT;
}

static enum ec_status h_internal(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    return ec_err_set(err, EC_EINTERNAL, NULL, "%s", "secret database host db-7.internal");
}

static enum ec_status h_echo_len(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    char text[64];
    snprintf(text, sizeof(text), "{\"len\":%zu}", req->body_len);
    edge_resp_json_text(resp, text);
    return EC_OK;
}

static void extra_metrics(struct ec_buf *out, void *ctx)
{
    ec_buf_puts(out, "# TYPE test_extra gauge\ntest_extra 42\n");
}

static const struct edge_route routes[] = {
    { "GET", "/health", NULL, 0, h_health },       { "POST", "/things/:id", NULL, 0, h_created },
    { "DELETE", "/things/:id", NULL, 0, h_empty }, { "GET", "/conflict", NULL, 0, h_conflict },
    { "GET", "/internal", NULL, 0, h_internal },   { "POST", "/small", NULL, 8, h_echo_len },
};

static struct edge_server *srv;

static int start(void **state)
{
    struct edge_config cfg = { .host = "127.0.0.1", .port = 0, .threads = 4 };
    struct edge_service svc = { .name = "test",
                                .routes = routes,
                                .nroutes = sizeof(routes) / sizeof(routes[0]),
                                .pre_route = token_everywhere_but_health,
                                .metrics = extra_metrics };
    struct ec_err err = { 0 };
    if (edge_server_start(&cfg, &svc, &srv, &err) != EC_OK)
        fail_msg("start: %s", err.msg);
    assert_true(edge_server_port(srv) > 0);
    return 0;
}

static int stop(void **state)
{
    edge_server_stop(srv);
    srv = NULL;
    return 0;
}

/* One request on a fresh connection ("Connection: close" so the read ends); the raw reply. */
static char *roundtrip(const char *request)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(edge_server_port(srv)) };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    size_t n = strlen(request);
    assert_int_equal(write(fd, request, n), (ssize_t)n);
    size_t cap = 65536, len = 0;
    char *out = calloc(1, cap + 1);
    ssize_t r;
    while (len < cap && (r = read(fd, out + len, cap - len)) > 0)
        len += (size_t)r;
    close(fd);
    return out;
}

static void expect(const char *request, const char *status_line, const char *const *has)
{
    char *out = roundtrip(request);
    if (strncmp(out, status_line, strlen(status_line)) != 0)
        fail_msg("for %s\nwant %s\ngot %s", request, status_line, out);
    for (; has && *has; has++)
        if (strstr(out, *has) == NULL)
            fail_msg("for %s\nwant \"%s\" in\n%s", request, *has, out);
    free(out);
}

#define REQ(method_path, headers) \
    method_path " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" headers "\r\n"

static void test_pre_route_runs_before_404_and_405(void **state)
{
    /* Without the token, a known path, an unknown path and a wrong method all look the same. */
    const char *const unauth[] = { "{\"error\":\"mesh_unauthorized\"}", NULL };
    expect(REQ("GET /conflict", ""), "HTTP/1.1 401 ", unauth);
    expect(REQ("GET /no/such/path", ""), "HTTP/1.1 401 ", unauth);
    expect(REQ("PUT /conflict", ""), "HTTP/1.1 401 ", unauth);
    expect(REQ("GET /things/1", "x-mesh-token: bad\r\n"), "HTTP/1.1 401 ", unauth);
    /* With it, routing answers. */
    const char *const nf[] = { "{\"error\":\"not_found\"}", NULL };
    expect(REQ("GET /no/such/path", "x-mesh-token: good\r\n"), "HTTP/1.1 404 ", nf);
    const char *const mna[] = { "Allow: POST, DELETE\r\n", "method_not_allowed", NULL };
    expect(REQ("GET /things/1", "x-mesh-token: good\r\n"), "HTTP/1.1 405 ", mna);
    const char *const ok[] = { "{\"ok\":true}", NULL };
    expect(REQ("GET /health", ""), "HTTP/1.1 200 ", ok);
}

static void test_success_statuses_and_headers(void **state)
{
    const char *const created[] = { "Location: /things/7\r\n",
                                    "{\"id\":\"a b\"}",
                                    "Content-Type: application/json\r\n",
                                    "X-Request-Id: ",
                                    "Cache-Control: no-store\r\n",
                                    NULL };
    expect(REQ("POST /things/a%20b", "x-mesh-token: good\r\nContent-Length: 0\r\n"),
           "HTTP/1.1 201 Created\r\n", created);
    char *out = roundtrip(REQ("DELETE /things/1", "x-mesh-token: good\r\n"));
    assert_true(strncmp(out, "HTTP/1.1 204 No Content\r\n", 25) == 0);
    assert_null(strstr(out, "Content-Length"));
    assert_non_null(strstr(out, "\r\n\r\n"));
    assert_string_equal(strstr(out, "\r\n\r\n"), "\r\n\r\n");
    free(out);
}

static void test_handler_errors(void **state)
{
    const char *const conflict[] = { "\r\n\r\n{\"error\":\"conflict\"}", NULL };
    expect(REQ("GET /conflict", "x-mesh-token: good\r\n"), "HTTP/1.1 409 ", conflict);
    /* A 5xx keeps its reason out of the body. */
    char *out = roundtrip(REQ("GET /internal", "x-mesh-token: good\r\n"));
    assert_true(strncmp(out, "HTTP/1.1 500 ", 13) == 0);
    assert_non_null(strstr(out, "{\"error\":\"internal_error\"}"));
    assert_null(strstr(out, "db-7"));
    free(out);
}

static void test_body_limit(void **state)
{
    const char *const ok[] = { "{\"len\":8}", NULL };
    expect(REQ("POST /small", "x-mesh-token: good\r\nContent-Length: 8\r\n") "12345678",
           "HTTP/1.1 200 ", ok);
    const char *const big[] = { "payload_too_large", "Connection: close\r\n", NULL };
    expect(REQ("POST /small", "x-mesh-token: good\r\nContent-Length: 9\r\n") "123456789",
           "HTTP/1.1 413 ", big);
    expect(REQ("POST /small",
               "x-mesh-token: good\r\nTransfer-Encoding: chunked\r\n") "5\r\n12345\r\n5\r\n67890\r"
                                                                       "\n0\r\n\r\n",
           "HTTP/1.1 413 ", big);
    const char *const chunked_ok[] = { "{\"len\":7}", NULL };
    expect(REQ("POST /small",
               "x-mesh-token: good\r\nTransfer-Encoding: chunked\r\n") "3\r\n123\r\n4\r\n4567\r\n0"
                                                                       "\r\n\r\n",
           "HTTP/1.1 200 ", chunked_ok);
}

static void test_metrics_callback(void **state)
{
    const char *const has[] = {
        "test_extra 42\n",
        "edgecoder_http_requests_total{route=\"/health\",method=\"GET\",status=\"200\"} ",
        "edgecoder_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"401\"} ",
        "edgecoder_http_requests_in_flight 1\n", NULL
    };
    expect(REQ("GET /health", ""), "HTTP/1.1 200 ", NULL);
    expect(REQ("GET /metrics", "x-mesh-token: good\r\n"), "HTTP/1.1 200 ", has);
}

static void test_bad_configs(void **state)
{
    struct edge_server *s = NULL;
    struct ec_err err = { 0 };
    struct edge_service svc = { .name = "bad", .routes = routes, .nroutes = 1 };
    struct edge_config only_cert = { .host = "127.0.0.1", .tls_cert = "/nonexistent.pem" };
    assert_int_equal(edge_server_start(&only_cert, &svc, &s, &err), EC_EINVAL);
    assert_null(s);
    struct edge_config missing = { .host = "127.0.0.1",
                                   .tls_cert = "/nonexistent.pem",
                                   .tls_key = "/nonexistent.key" };
    assert_int_equal(edge_server_start(&missing, &svc, &s, &err), EC_EINVAL);
    assert_non_null(strstr(err.msg, "/nonexistent.pem"));
    const struct edge_route dup[] = { { "GET", "/metrics", NULL, 0, h_health } };
    struct edge_service dup_svc = { .name = "dup", .routes = dup, .nroutes = 1 };
    struct edge_config plain = { .host = "127.0.0.1" };
    assert_int_equal(edge_server_start(&plain, &dup_svc, &s, &err), EC_EINVAL);
    assert_non_null(strstr(err.msg, "/metrics"));
    struct edge_service bad_assets = { .name = "a", .assets_prefix = "nope" };
    assert_int_equal(edge_server_start(&plain, &bad_assets, &s, &err), EC_EINVAL);
    /* A port already taken. */
    struct edge_config taken = { .host = "127.0.0.1", .port = edge_server_port(srv) };
    assert_int_equal(edge_server_start(&taken, &svc, &s, &err), EC_EUNAVAIL);
    assert_null(s);
    edge_server_stop(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pre_route_runs_before_404_and_405),
        cmocka_unit_test(test_success_statuses_and_headers),
        cmocka_unit_test(test_handler_errors),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_metrics_callback),
        cmocka_unit_test(test_bad_configs),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
