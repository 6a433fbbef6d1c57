/* The edge's civetweb-free parts: request accessors and ids, the client IP policy, response
 * assembly, static asset lookup and ETags, and the metrics text. */
#include "edge/edge_int.h"
#include "edgecoder/test/codec_test.pb-c.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static struct edge_req *new_req(struct ec_arena *arena)
{
    struct edge_req *req = calloc(1, sizeof(*req));
    req->arena = arena;
    req->method = "GET";
    req->path = "/";
    req->query_string = "";
    req->body = "";
    return req;
}

static void test_query(void **state)
{
    struct ec_arena arena;
    ec_arena_init(&arena);
    struct edge_req *req = new_req(&arena);
    req->query_string = "ms=250&name=a+b%21&flag&empty=&x%5Fy=1&ms=9&nul=a%00b&bad=%zz";
    assert_string_equal(edge_req_query(req, "ms"), "250"); /* the first one */
    assert_string_equal(edge_req_query(req, "name"), "a b!");
    assert_string_equal(edge_req_query(req, "flag"), "");
    assert_string_equal(edge_req_query(req, "empty"), "");
    assert_string_equal(edge_req_query(req, "x_y"), "1");
    assert_null(edge_req_query(req, "nul"));
    assert_null(edge_req_query(req, "bad"));
    assert_null(edge_req_query(req, "missing"));
    assert_null(edge_req_query(req, "m"));
    req->query_string = "";
    assert_null(edge_req_query(req, "ms"));
    free(req);
    ec_arena_release(&arena);
}

static void test_headers_and_params(void **state)
{
    struct ec_arena arena;
    ec_arena_init(&arena);
    struct edge_req *req = new_req(&arena);
    req->headers[0] = (struct edge_header){ "X-Mesh-Token", "t1" };
    req->headers[1] = (struct edge_header){ "Content-Type", "application/json" };
    req->nheaders = 2;
    assert_string_equal(edge_req_header(req, "x-mesh-token"), "t1");
    assert_string_equal(edge_req_header(req, "CONTENT-TYPE"), "application/json");
    assert_null(edge_req_header(req, "x-mesh"));
    req->params[0] = (struct edge_param){ "taskId", "t-1" };
    req->nparams = 1;
    assert_string_equal(edge_req_param(req, "taskId"), "t-1");
    assert_null(edge_req_param(req, "taskid"));
    free(req);
    ec_arena_release(&arena);
}

static void test_json_body(void **state)
{
    struct ec_arena arena;
    ec_arena_init(&arena);
    struct edge_req *req = new_req(&arena);
    struct ec_err err = { 0 };
    json_t *j = NULL;
    req->body = "{\"a\":1}";
    req->body_len = strlen(req->body);
    assert_int_equal(edge_req_json(req, &j, &err), EC_OK);
    assert_int_equal(json_integer_value(json_object_get(j, "a")), 1);
    json_t *again = NULL;
    assert_int_equal(edge_req_json(req, &again, &err), EC_OK);
    assert_ptr_equal(j, again); /* parsed once per request */
    ec_arena_reset(&arena);     /* frees it */

    req->json_ = NULL;
    req->body = "{\n  \"a\": 1,\n  \"b\": }";
    req->body_len = strlen(req->body);
    assert_int_equal(edge_req_json(req, &j, &err), EC_EINVAL);
    assert_null(j);
    assert_string_equal(ec_err_code(&err), "invalid_json");
    assert_non_null(strstr(err.msg, "at line 3 column"));

    req->body = "{\"a\":1,\"a\":2}";
    req->body_len = strlen(req->body);
    assert_int_equal(edge_req_json(req, &j, &err), EC_EINVAL);
    assert_non_null(strstr(err.msg, "duplicate"));

    req->body = "";
    req->body_len = 0;
    assert_int_equal(edge_req_json(req, &j, &err), EC_EINVAL);
    assert_string_equal(ec_err_code(&err), "invalid_json");
    free(req);
    ec_arena_release(&arena);
}

static void test_request_ids(void **state)
{
    assert_true(edge__request_id_valid("abc-1"));
    assert_true(edge__request_id_valid("A.b_c:d-9"));
    char max[EDGE_REQUEST_ID_MAX + 2];
    memset(max, 'a', EDGE_REQUEST_ID_MAX);
    max[EDGE_REQUEST_ID_MAX] = '\0';
    assert_true(edge__request_id_valid(max));
    max[EDGE_REQUEST_ID_MAX] = 'a';
    max[EDGE_REQUEST_ID_MAX + 1] = '\0';
    assert_false(edge__request_id_valid(max));
    assert_false(edge__request_id_valid(""));
    assert_false(edge__request_id_valid(NULL));
    assert_false(edge__request_id_valid("a b"));
    assert_false(edge__request_id_valid("a\"b"));
    assert_false(edge__request_id_valid("a/b"));

    edge__request_id_setup();
    char a[EDGE_REQUEST_ID_MAX + 1], b[EDGE_REQUEST_ID_MAX + 1];
    edge__request_id_make(a);
    edge__request_id_make(b);
    assert_true(edge__request_id_valid(a));
    assert_int_equal(strlen(a), 21);
    assert_string_not_equal(a, b);
    assert_memory_equal(a, b, 9); /* the same process prefix */
}

static void test_client_ip(void **state)
{
    struct ec_arena arena;
    ec_arena_init(&arena);
    struct edge_req *req = new_req(&arena);
    char ip[48];
    req->headers[0] = (struct edge_header){ "Fly-Client-IP", "203.0.113.9" };
    req->headers[1] = (struct edge_header){ "X-Forwarded-For", "6.6.6.6, 198.51.100.2 " };
    req->headers[2] = (struct edge_header){ "X-Bad", "<script>" };
    req->nheaders = 3;
    edge__client_ip(req, NULL, "10.0.0.1", ip);
    assert_string_equal(ip, "10.0.0.1"); /* never believed by default */
    edge__client_ip(req, "fly-client-ip", "10.0.0.1", ip);
    assert_string_equal(ip, "203.0.113.9");
    edge__client_ip(req, "x-forwarded-for", "10.0.0.1", ip);
    assert_string_equal(ip, "198.51.100.2"); /* the element the proxy added */
    edge__client_ip(req, "x-bad", "10.0.0.1", ip);
    assert_string_equal(ip, "10.0.0.1");
    edge__client_ip(req, "x-absent", "::1", ip);
    assert_string_equal(ip, "::1");
    free(req);
    ec_arena_release(&arena);
}

static void test_assemble(void **state)
{
    struct ec_arena arena;
    ec_arena_init(&arena);
    struct ec_buf body, out;
    ec_buf_init(&body, 0);
    ec_buf_init(&out, 0);
    struct edge_resp resp;
    edge__resp_init(&resp, &arena, &body);
    edge_resp_json(&resp, json_pack("{s:b}", "ok", 1));
    edge_resp_status(&resp, EDGE_OK_201);
    edge_resp_header(&resp, "Location", "/tasks/1");
    edge_resp_header(&resp, "X-Evil", "a\r\nSet-Cookie: x=1"); /* dropped */
    edge_resp_header(&resp, "Bad:Name", "v");                  /* dropped */
    struct edge__head h = {
        .status = resp.status, .req_id = "rid-1", .cache_control = "no-store", .keep_alive = true
    };
    edge__resp_assemble(&resp, &h, &out);
    const char *want = "HTTP/1.1 201 Created\r\n"
                       "Content-Type: application/json\r\n"
                       "Content-Length: 11\r\n"
                       "X-Request-Id: rid-1\r\n"
                       "Connection: keep-alive\r\n"
                       "X-Content-Type-Options: nosniff\r\n"
                       "Location: /tasks/1\r\n"
                       "Cache-Control: no-store\r\n"
                       "\r\n"
                       "{\"ok\":true}";
    assert_string_equal(out.data, want);

    /* A handler's own Cache-Control wins; HEAD keeps the length but drops the body. */
    edge__resp_init(&resp, &arena, &body);
    edge_resp_bytes(&resp, "text/plain", "hello", 5);
    edge_resp_header(&resp, "cache-control", "max-age=60");
    h.head_only = true;
    h.keep_alive = false;
    edge__resp_assemble(&resp, &h, &out);
    assert_non_null(strstr(out.data, "Content-Length: 5\r\n"));
    assert_non_null(strstr(out.data, "cache-control: max-age=60\r\n"));
    assert_null(strstr(out.data, "no-store"));
    assert_non_null(strstr(out.data, "Connection: close\r\n"));
    assert_null(strstr(out.data, "hello"));

    /* 204: no body, no length. An error replaces body and headers. */
    edge__resp_init(&resp, &arena, &body);
    edge_resp_json_text(&resp, "{\"ignored\":1}");
    h = (struct edge__head){ .status = 204, .req_id = "r", .keep_alive = true };
    edge__resp_assemble(&resp, &h, &out);
    assert_null(strstr(out.data, "Content-Length"));
    assert_null(strstr(out.data, "ignored"));
    edge_resp_header(&resp, "X-Handler", "1");
    edge__resp_error(&resp, "mesh_unauthorized", "token \"x\" is wrong");
    h.status = 401;
    edge__resp_assemble(&resp, &h, &out);
    assert_non_null(strstr(out.data, "HTTP/1.1 401 Unauthorized\r\n"));
    assert_null(strstr(out.data, "X-Handler"));
    assert_non_null(strstr(out.data, "\r\n\r\n{\"error\":\"mesh_unauthorized\",\"reason\":\"token "
                                     "\\\"x\\\" is wrong\"}"));
    edge__resp_error(&resp, "not_found", "");
    h.status = 404;
    edge__resp_assemble(&resp, &h, &out);
    assert_non_null(strstr(out.data, "Content-Length: 21\r\n"));
    assert_non_null(strstr(out.data, "\r\n\r\n{\"error\":\"not_found\"}"));
    /* No body set at all: "{}". */
    edge__resp_init(&resp, &arena, &body);
    h.status = 200;
    edge__resp_assemble(&resp, &h, &out);
    assert_non_null(strstr(out.data, "Content-Length: 2\r\n"));
    assert_int_equal(out.data[out.len - 1], '}');

    ec_buf_release(&body);
    ec_buf_release(&out);
    ec_arena_release(&arena);
}

static void test_assets(void **state)
{
    struct edge__assets a;
    struct ec_err err = { 0 };
    assert_int_equal(edge__assets_init(&a, "/", "demo/", &err), EC_OK);
    const struct edge__asset *index = edge__assets_find(&a, "/", 1);
    assert_non_null(index);
    assert_string_equal(index->url_path, "/index.html");
    assert_string_equal(index->content_type, "text/html; charset=utf-8");
    assert_ptr_equal(edge__assets_find(&a, "/index.html", 11), index);
    assert_null(edge__assets_find(&a, "/nope.html", 10));
    assert_null(edge__assets_find(&a, "/demo/index.html", 16));
    assert_int_equal(strlen(index->etag), 18);
    assert_true(edge__etag_matches(index->etag, index->etag));
    char list[64];
    snprintf(list, sizeof(list), "\"x\", W/%s", index->etag);
    assert_true(edge__etag_matches(list, index->etag));
    assert_true(edge__etag_matches("*", index->etag));
    assert_false(edge__etag_matches("\"other\"", index->etag));
    assert_false(edge__etag_matches(NULL, index->etag));
    assert_false(edge__etag_matches("", index->etag));
    edge__assets_release(&a);

    assert_int_equal(edge__assets_init(&a, "/ui", "demo", &err), EC_OK);
    assert_non_null(edge__assets_find(&a, "/ui", 3));
    assert_non_null(edge__assets_find(&a, "/ui/", 4));
    assert_non_null(edge__assets_find(&a, "/ui/index.html", 14));
    assert_null(edge__assets_find(&a, "/index.html", 11));
    edge__assets_release(&a);

    assert_int_equal(edge__assets_init(&a, NULL, NULL, &err), EC_OK);
    assert_null(edge__assets_find(&a, "/", 1));
    edge__assets_release(&a);
    assert_int_equal(edge__assets_init(&a, "ui", "demo", &err), EC_EINVAL);

    assert_string_equal(edge__content_type("a/b.CSS"), "text/css; charset=utf-8");
    assert_string_equal(edge__content_type("x.woff2"), "font/woff2");
    assert_string_equal(edge__content_type("noext"), "application/octet-stream");
    assert_string_equal(edge__content_type("dir.d/noext"), "application/octet-stream");
}

static void extra_metrics(struct ec_buf *out, void *ctx)
{
    ec_buf_printf(out, "demo_fallbacks_total %d\n", *(int *)ctx);
}

static void test_metrics(void **state)
{
    static const char *const labels[] = { "/tasks/:taskId", "we\"ird", "unmatched" };
    struct edge__metrics m;
    edge__metrics_init(&m, labels, 3);
    edge__metrics_observe(&m, 0, EDGE_M_GET, 200, 300);
    edge__metrics_observe(&m, 0, EDGE_M_GET, 200, 7000);
    edge__metrics_observe(&m, 0, EDGE_M_POST, 418, 20000000);
    edge__metrics_observe(&m, 2, EDGE_M_OTHER, 404, 0);
    struct ec_buf out;
    ec_buf_init(&out, 0);
    int fallbacks = 7;
    edge__metrics_render(&m, &out, extra_metrics, &fallbacks);
    const char *t = out.data;
    assert_non_null(strstr(t, "edgecoder_http_requests_total{route=\"/tasks/"
                              ":taskId\",method=\"GET\",status=\"200\"} 2\n"));
    assert_non_null(strstr(t, "edgecoder_http_requests_total{route=\"/tasks/"
                              ":taskId\",method=\"POST\",status=\"other\"} 1\n"));
    assert_non_null(strstr(
        t,
        "edgecoder_http_requests_total{route=\"unmatched\",method=\"other\",status=\"404\"} 1\n"));
    assert_null(strstr(t, "we\\\"ird\",method")); /* no samples: no line */
    assert_non_null(strstr(t, "edgecoder_http_request_duration_seconds_bucket{route=\"/tasks/"
                              ":taskId\",le=\"0.0005\"} 1\n"));
    assert_non_null(strstr(t, "edgecoder_http_request_duration_seconds_bucket{route=\"/tasks/"
                              ":taskId\",le=\"0.01\"} 2\n"));
    assert_non_null(strstr(
        t,
        "edgecoder_http_request_duration_seconds_bucket{route=\"/tasks/:taskId\",le=\"10\"} 2\n"));
    assert_non_null(strstr(t, "edgecoder_http_request_duration_seconds_bucket{route=\"/tasks/"
                              ":taskId\",le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(
        t, "edgecoder_http_request_duration_seconds_sum{route=\"/tasks/:taskId\"} 20.007300\n"));
    assert_non_null(
        strstr(t, "edgecoder_http_request_duration_seconds_count{route=\"/tasks/:taskId\"} 3\n"));
    assert_non_null(strstr(t, "edgecoder_http_requests_in_flight 0\n"));
    assert_non_null(strstr(t, "# TYPE edgecoder_http_request_duration_seconds histogram\n"));
    assert_non_null(strstr(t, "demo_fallbacks_total 7\n"));

    ec_buf_reset(&out);
    edge__metrics_observe(&m, 1, EDGE_M_GET, 200, 1);
    edge__metrics_render(&m, &out, NULL, NULL);
    assert_non_null(strstr(out.data, "route=\"we\\\"ird\""));
    ec_buf_release(&out);
    edge__metrics_release(&m);
}

static void test_env(void **state)
{
    struct ec_cfg_problems p;
    ec_buf_init(&p.text, 0);
    p.count = 0;
    struct edge_env env = { .tls_cert = "cert.pem", .threads = 8, .request_timeout_ms = 500 };
    edge_env_check(&env, &p);
    assert_int_equal(p.count, 1);
    assert_non_null(strstr(p.text.data, "EDGECODER_HTTP_TLS_KEY"));
    env.tls_key = "key.pem";
    env.trust_proxy_header = "fly client ip";
    edge_env_check(&env, &p);
    assert_int_equal(p.count, 2);
    assert_non_null(strstr(p.text.data, "EDGECODER_TRUST_PROXY_HEADER"));
    ec_buf_release(&p.text);

    struct edge_config cfg = { 0 };
    env.trust_proxy_header = "";
    edge_env_apply(&env, &cfg);
    assert_string_equal(cfg.tls_cert, "cert.pem");
    assert_int_equal(cfg.threads, 8);
    assert_int_equal(cfg.request_timeout_ms, 500);
    assert_null(cfg.trust_proxy_header); /* empty means none */
}

static void test_protobuf_bodies(void **state)
{
    struct ec_arena arena;
    ec_arena_init(&arena);
    struct edge_req *req = new_req(&arena);
    struct ec_err err = { 0 };
    ProtobufCMessage *msg = NULL;
    req->body = "{\"count\": 7, \"label\": \"seven\"}";
    req->body_len = strlen(req->body);
    assert_int_equal(edge_req_decode_pb(req, &edgecoder__test__inner__descriptor, NULL, &msg, &err),
                     EC_OK);
    Edgecoder__Test__Inner *inner = (Edgecoder__Test__Inner *)msg;
    assert_int_equal(inner->count, 7);
    assert_string_equal(inner->label, "seven");

    struct ec_buf body, out;
    ec_buf_init(&body, 0);
    ec_buf_init(&out, 0);
    struct edge_resp resp;
    edge__resp_init(&resp, &arena, &body);
    assert_int_equal(edge_resp_pb(&resp, msg, NULL, &err), EC_OK);
    assert_string_equal(resp.content_type, "application/json");
    assert_memory_equal(resp.body, "{\"count\":7,\"label\":\"seven\"}", resp.body_len);

    /* Malformed JSON is invalid_json, as everywhere; a wrong field names the field. */
    req->json_ = NULL;
    req->body = "{\"count\": ";
    req->body_len = strlen(req->body);
    assert_int_equal(edge_req_decode_pb(req, &edgecoder__test__inner__descriptor, NULL, &msg, &err),
                     EC_EINVAL);
    assert_string_equal(ec_err_code(&err), "invalid_json");
    assert_null(msg);
    req->json_ = NULL;
    req->body = "{\"count\": \"many\"}";
    req->body_len = strlen(req->body);
    assert_int_equal(edge_req_decode_pb(req, &edgecoder__test__inner__descriptor, NULL, &msg, &err),
                     EC_EINVAL);
    assert_non_null(strstr(err.msg, "count"));
    ec_buf_release(&body);
    ec_buf_release(&out);
    free(req);
    ec_arena_release(&arena);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query),     cmocka_unit_test(test_headers_and_params),
        cmocka_unit_test(test_json_body), cmocka_unit_test(test_request_ids),
        cmocka_unit_test(test_client_ip), cmocka_unit_test(test_assemble),
        cmocka_unit_test(test_assets),    cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_env),       cmocka_unit_test(test_protobuf_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
