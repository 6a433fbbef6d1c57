/* The route matcher: exact and ":param" segments, trailing slashes, 404 vs 405 and Allow,
 * percent-decoding, rejected paths, specificity, many routes, and bad tables. */
#include "edge/edge_route.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static enum ec_status h_any(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    return EC_OK;
}

static const struct edge_route table[] = {
    /* 0 */ { "GET", "/", NULL, 0, h_any },
    /* 1 */ { "GET", "/demo/hello", NULL, 0, h_any },
    /* 2 */ { "POST", "/demo/echo", NULL, 1024, h_any },
    /* 3 */ { "GET", "/tasks/:taskId", NULL, 0, h_any },
    /* 4 */ { "DELETE", "/tasks/:id", NULL, 0, h_any },
    /* 5 */ { "POST", "/tasks/stats", NULL, 0, h_any },
    /* 6 */ { "GET", "/agents/:agentId/tasks/:taskId", NULL, 0, h_any },
    /* 7 */ { "PUT", "/agents/:agentId/tasks/:taskId", NULL, 0, h_any },
    /* 8 */ { "GET", "/agents/me/tasks/:taskId", NULL, 0, h_any },
    /* 9 */ { "HEAD", "/only-head", NULL, 0, h_any },
};
#define NTABLE (sizeof(table) / sizeof(table[0]))

struct fixture {
    struct edge_router *router;
    struct ec_arena arena;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct ec_err err = { 0 };
    assert_int_equal(edge_router_new(table, NTABLE, &f->router, &err), EC_OK);
    ec_arena_init(&f->arena);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    edge_router_free(f->router);
    ec_arena_release(&f->arena);
    free(f);
    return 0;
}

static enum edge_match_kind match(struct fixture *f, const char *method, const char *path,
                                  struct edge_match *m)
{
    return edge_router_match(f->router, method, path, strlen(path), &f->arena, m);
}

static void test_exact(void **state)
{
    struct fixture *f = *state;
    struct edge_match m;
    assert_int_equal(match(f, "GET", "/demo/hello", &m), EDGE_MATCH_FOUND);
    assert_int_equal(m.route, 1);
    assert_int_equal(m.nparams, 0);
    assert_int_equal(match(f, "POST", "/demo/echo", &m), EDGE_MATCH_FOUND);
    assert_int_equal(m.route, 2);
    assert_int_equal(match(f, "GET", "/", &m), EDGE_MATCH_FOUND);
    assert_int_equal(m.route, 0);
    /* Segments compare whole and case matters. */
    assert_int_equal(match(f, "GET", "/demo/hell", &m), EDGE_MATCH_NO_PATH);
    assert_int_equal(match(f, "GET", "/demo/helloo", &m), EDGE_MATCH_NO_PATH);
    assert_int_equal(match(f, "GET", "/Demo/hello", &m), EDGE_MATCH_NO_PATH);
    assert_int_equal(match(f, "GET", "/demo", &m), EDGE_MATCH_NO_PATH);
    assert_int_equal(match(f, "GET", "/demo/hello/x", &m), EDGE_MATCH_NO_PATH);
}

static void test_params(void **state)
{
    struct fixture *f = *state;
    struct edge_match m;
    assert_int_equal(match(f, "GET", "/tasks/t-42", &m), EDGE_MATCH_FOUND);
    assert_int_equal(m.route, 3);
    assert_int_equal(m.nparams, 1);
    assert_string_equal(m.params[0].name, "taskId");
    assert_string_equal(m.params[0].value, "t-42");
    /* Same shape, another method: that route's own parameter name. */
    assert_int_equal(match(f, "DELETE", "/tasks/t-42", &m), EDGE_MATCH_FOUND);
    assert_int_equal(m.route, 4);
    assert_string_equal(m.params[0].name, "id");
    assert_int_equal(match(f, "GET", "/agents/a1/tasks/t2", &m), EDGE_MATCH_FOUND);
    assert_int_equal(m.route, 6);
    assert_int_equal(m.nparams, 2);
    assert_string_equal(m.params[0].name, "agentId");
    assert_string_equal(m.params[0].value, "a1");
    assert_string_equal(m.params[1].name, "taskId");
    assert_string_equal(m.params[1].value, "t2");
    /* An empty parameter matches nothing. */
    assert_int_equal(match(f, "GET", "/tasks/", &m), EDGE_MATCH_NO_PATH);
    assert_int_equal(match(f, "GET", "/agents//tasks/t2", &m), EDGE_MATCH_NO_PATH);
}

static void test_specificity(void **state)
{
    struct fixture *f = *state;
    struct edge_match m;
    /* A literal beats a parameter at the first segment where two shapes differ. */
    assert_int_equal(match(f, "GET", "/agents/me/tasks/t9", &m), EDGE_MATCH_FOUND);
    assert_int_equal(m.route, 8);
    assert_string_equal(m.params[0].value, "t9");
    /* ...but only for a method it has: PUT falls through to the parameter shape. */
    assert_int_equal(match(f, "PUT", "/agents/me/tasks/t9", &m), EDGE_MATCH_FOUND);
    assert_int_equal(m.route, 7);
    assert_string_equal(m.params[0].value, "me");
    assert_int_equal(match(f, "POST", "/tasks/stats", &m), EDGE_MATCH_FOUND);
    assert_int_equal(m.route, 5);
    assert_int_equal(match(f, "GET", "/tasks/stats", &m), EDGE_MATCH_FOUND);
    assert_int_equal(m.route, 3);
    assert_string_equal(m.params[0].value, "stats");
}

static void test_trailing_slash(void **state)
{
    struct fixture *f = *state;
    struct edge_match m;
    /* Policy: a trailing slash is significant; "/a/" is not "/a" (404, no redirect). */
    assert_int_equal(match(f, "GET", "/demo/hello/", &m), EDGE_MATCH_NO_PATH);
    assert_int_equal(match(f, "GET", "/tasks/t1/", &m), EDGE_MATCH_NO_PATH);
    assert_int_equal(match(f, "GET", "//", &m), EDGE_MATCH_NO_PATH);
    assert_int_equal(match(f, "GET", "/demo//hello", &m), EDGE_MATCH_NO_PATH);
}

static void test_not_found_vs_method(void **state)
{
    struct fixture *f = *state;
    struct edge_match m;
    char allow[64];
    assert_int_equal(match(f, "GET", "/nope", &m), EDGE_MATCH_NO_PATH);
    assert_int_equal(m.allow, 0);
    assert_int_equal(match(f, "POST", "/demo/hello", &m), EDGE_MATCH_NO_METHOD);
    edge_allow_format(m.allow, allow, sizeof(allow));
    assert_string_equal(allow, "GET, HEAD");
    assert_int_equal(match(f, "GET", "/demo/echo", &m), EDGE_MATCH_NO_METHOD);
    edge_allow_format(m.allow, allow, sizeof(allow));
    assert_string_equal(allow, "POST");
    /* Allow unites every shape the path matches. */
    assert_int_equal(match(f, "PATCH", "/tasks/stats", &m), EDGE_MATCH_NO_METHOD);
    edge_allow_format(m.allow, allow, sizeof(allow));
    assert_string_equal(allow, "GET, HEAD, POST, DELETE");
    /* An unknown method on a known path is a 405 too, never routed. */
    assert_int_equal(match(f, "BREW", "/demo/hello", &m), EDGE_MATCH_NO_METHOD);
    assert_int_equal(match(f, "get", "/demo/hello", &m), EDGE_MATCH_NO_METHOD);
    /* HEAD answers from GET; a HEAD-only route does not answer GET. */
    assert_int_equal(match(f, "HEAD", "/demo/hello", &m), EDGE_MATCH_FOUND);
    assert_int_equal(m.route, 1);
    assert_int_equal(match(f, "HEAD", "/only-head", &m), EDGE_MATCH_FOUND);
    assert_int_equal(m.route, 9);
    assert_int_equal(match(f, "GET", "/only-head", &m), EDGE_MATCH_NO_METHOD);
    edge_allow_format(m.allow, allow, sizeof(allow));
    assert_string_equal(allow, "HEAD");
    /* A short buffer truncates at a whole name. */
    edge_allow_format(1u << EDGE_M_GET | 1u << EDGE_M_POST, allow, 8);
    assert_string_equal(allow, "GET");
}

static void test_percent_decoding(void **state)
{
    struct fixture *f = *state;
    struct edge_match m;
    assert_int_equal(match(f, "GET", "/tasks/a%20b", &m), EDGE_MATCH_FOUND);
    assert_string_equal(m.params[0].value, "a b");
    /* An encoded slash stays inside its parameter; '+' is not a space in a path. */
    assert_int_equal(match(f, "GET", "/tasks/a%2Fb+c", &m), EDGE_MATCH_FOUND);
    assert_string_equal(m.params[0].value, "a/b+c");
    assert_int_equal(match(f, "GET", "/tasks/%C3%A9t%c3%a9", &m), EDGE_MATCH_FOUND);
    assert_string_equal(m.params[0].value, "\xc3\xa9t\xc3\xa9");
    /* Literal segments compare decoded. */
    assert_int_equal(match(f, "GET", "/demo/h%65llo", &m), EDGE_MATCH_FOUND);
    assert_int_equal(m.route, 1);
    assert_int_equal(match(f, "GET", "/demo%2Fhello", &m), EDGE_MATCH_NO_PATH);
    /* A single dot is harmless: no route has one. */
    assert_int_equal(match(f, "GET", "/tasks/.", &m), EDGE_MATCH_FOUND);
    assert_string_equal(m.params[0].value, ".");
    assert_int_equal(match(f, "GET", "/tasks/...", &m), EDGE_MATCH_FOUND);
    assert_string_equal(m.params[0].value, "...");

    char out[16];
    assert_int_equal(edge_pct_decode("a+b%41", 6, out, 1), 4);
    assert_string_equal(out, "a bA");
    assert_int_equal(edge_pct_decode("a+b", 3, out, 0), 3);
    assert_string_equal(out, "a+b");
    assert_int_equal(edge_pct_decode("%4", 2, out, 0), -1);
    assert_int_equal(edge_pct_decode("%g1", 3, out, 0), -1);
    assert_int_equal(edge_pct_decode("x%00", 4, out, 0), -1);
    assert_int_equal(edge_pct_decode("", 0, out, 0), 0);
    assert_string_equal(out, "");
}

static void test_rejected_paths(void **state)
{
    struct fixture *f = *state;
    struct edge_match m;
    static const char *const bad[] = {
        "/tasks/..",
        "/../tasks/x",
        "/tasks/%2e%2e",
        "/tasks/%2E.",
        "/tasks/.%2e",
        "/a/../demo/hello",
        "/tasks/a%00b",
        "/tasks/%",
        "/tasks/%4",
        "/tasks/%zz",
        "/demo/hello/..",
        "tasks/x",
        "*",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (match(f, "GET", bad[i], &m) != EDGE_MATCH_BAD_PATH)
            fail_msg("\"%s\" was not rejected", bad[i]);
    }
    /* A raw NUL inside the bytes, which a C string would have hidden. */
    static const char nul_path[] = "/tasks/a\0b";
    assert_int_equal(
        edge_router_match(f->router, "GET", nul_path, sizeof(nul_path) - 1, &f->arena, &m),
        EDGE_MATCH_BAD_PATH);
    static const char nul_tail[] = "/demo/hello\0";
    assert_int_equal(
        edge_router_match(f->router, "GET", nul_tail, sizeof(nul_tail) - 1, &f->arena, &m),
        EDGE_MATCH_BAD_PATH);
    /* ".." inside a longer segment is just a name. */
    assert_int_equal(match(f, "GET", "/tasks/a..b", &m), EDGE_MATCH_FOUND);
    assert_string_equal(m.params[0].value, "a..b");
}

static void test_too_many_segments(void **state)
{
    struct fixture *f = *state;
    struct edge_match m;
    char path[256] = "";
    for (int i = 0; i < EDGE_ROUTE_MAX_SEGMENTS + 5; i++)
        strcat(path, "/x");
    assert_int_equal(match(f, "GET", path, &m), EDGE_MATCH_NO_PATH);
    /* Still validated to the end. */
    strcat(path, "/..");
    assert_int_equal(match(f, "GET", path, &m), EDGE_MATCH_BAD_PATH);
}

static void test_many_routes(void **state)
{
    enum { N = 300 };
    static struct edge_route routes[N];
    static char patterns[N][64];
    static const char *const methods[] = { "GET", "POST", "PUT", "DELETE" };
    for (int i = 0; i < N; i++) {
        switch (i % 3) {
        case 0:
            snprintf(patterns[i], sizeof(patterns[i]), "/svc%d/items", i / 4);
            break;
        case 1:
            snprintf(patterns[i], sizeof(patterns[i]), "/svc%d/items/:id", i / 4);
            break;
        default:
            snprintf(patterns[i], sizeof(patterns[i]), "/svc%d/:a/sub/:b/leaf", i / 4);
            break;
        }
        routes[i] = (struct edge_route){ methods[i % 4], patterns[i], NULL, 0, h_any };
    }
    struct edge_router *r = NULL;
    struct ec_err err = { 0 };
    assert_int_equal(edge_router_new(routes, N, &r, &err), EC_OK);
    struct ec_arena arena;
    ec_arena_init(&arena);
    for (int i = 0; i < N; i++) {
        char path[96];
        switch (i % 3) {
        case 0:
            snprintf(path, sizeof(path), "/svc%d/items", i / 4);
            break;
        case 1:
            snprintf(path, sizeof(path), "/svc%d/items/id%d", i / 4, i);
            break;
        default:
            snprintf(path, sizeof(path), "/svc%d/A%d/sub/B%d/leaf", i / 4, i, i);
            break;
        }
        struct edge_match m;
        assert_int_equal(edge_router_match(r, methods[i % 4], path, strlen(path), &arena, &m),
                         EDGE_MATCH_FOUND);
        assert_int_equal(m.route, (size_t)i);
        if (i % 3 == 2) {
            char want[16];
            snprintf(want, sizeof(want), "B%d", i);
            assert_string_equal(
                edge_req_param(&(struct edge_req){ .nparams = m.nparams,
                                                   .params = { m.params[0], m.params[1] } },
                               "b"),
                want);
        }
        ec_arena_reset(&arena);
    }
    struct edge_match m;
    assert_int_equal(edge_router_match(r, "GET", "/svc999/items", 13, &arena, &m),
                     EDGE_MATCH_NO_PATH);
    ec_arena_release(&arena);
    edge_router_free(r);
}

static void expect_bad_table(const struct edge_route *routes, size_t n, const char *fragment)
{
    struct edge_router *r = NULL;
    struct ec_err err = { 0 };
    assert_int_equal(edge_router_new(routes, n, &r, &err), EC_EINVAL);
    assert_null(r);
    if (strstr(err.msg, fragment) == NULL)
        fail_msg("error \"%s\" does not mention \"%s\"", err.msg, fragment);
}

static void test_bad_tables(void **state)
{
    const struct edge_route no_slash[] = { { "GET", "tasks", NULL, 0, h_any } };
    expect_bad_table(no_slash, 1, "does not start with '/'");
    const struct edge_route empty_seg[] = { { "GET", "/a//b", NULL, 0, h_any } };
    expect_bad_table(empty_seg, 1, "empty segment");
    const struct edge_route trailing[] = { { "GET", "/a/", NULL, 0, h_any } };
    expect_bad_table(trailing, 1, "empty segment");
    const struct edge_route noname[] = { { "GET", "/a/:", NULL, 0, h_any } };
    expect_bad_table(noname, 1, "without a name");
    const struct edge_route badname[] = { { "GET", "/a/:x-y", NULL, 0, h_any } };
    expect_bad_table(badname, 1, "parameter name");
    const struct edge_route dupname[] = { { "GET", "/a/:x/:x", NULL, 0, h_any } };
    expect_bad_table(dupname, 1, "repeats");
    const struct edge_route dup[] = { { "GET", "/a/:x", NULL, 0, h_any },
                                      { "POST", "/a/:y", NULL, 0, h_any },
                                      { "GET", "/a/:z", NULL, 0, h_any } };
    expect_bad_table(dup, 3, "duplicates");
    const struct edge_route method[] = { { "BREW", "/a", NULL, 0, h_any } };
    expect_bad_table(method, 1, "unsupported method");
    const struct edge_route nohandler[] = { { "GET", "/a", NULL, 0, NULL } };
    expect_bad_table(nohandler, 1, "no handler");
    const struct edge_route pct[] = { { "GET", "/a%20b", NULL, 0, h_any } };
    expect_bad_table(pct, 1, "not allowed");
    const struct edge_route dots[] = { { "GET", "/a/..", NULL, 0, h_any } };
    expect_bad_table(dots, 1, "dot segment");
    const struct edge_route params[] = { { "GET", "/:a/:b/:c/:d/:e/:f/:g/:h/:i", NULL, 0, h_any } };
    expect_bad_table(params, 1, "parameters");
    /* An empty table is fine: everything is a 404. */
    struct edge_router *r = NULL;
    struct ec_err err = { 0 };
    assert_int_equal(edge_router_new(NULL, 0, &r, &err), EC_OK);
    struct ec_arena arena;
    ec_arena_init(&arena);
    struct edge_match m;
    assert_int_equal(edge_router_match(r, "GET", "/", 1, &arena, &m), EDGE_MATCH_NO_PATH);
    ec_arena_release(&arena);
    edge_router_free(r);
    edge_router_free(NULL);
}

static void test_methods(void **state)
{
    assert_int_equal(edge_method_parse("GET"), EDGE_M_GET);
    assert_int_equal(edge_method_parse("DELETE"), EDGE_M_DELETE);
    assert_int_equal(edge_method_parse("OPTIONS"), EDGE_M_OPTIONS);
    assert_int_equal(edge_method_parse("PROPFIND"), EDGE_M_OTHER);
    assert_int_equal(edge_method_parse(""), EDGE_M_OTHER);
    assert_string_equal(edge_method_name(EDGE_M_PATCH), "PATCH");
    assert_string_equal(edge_method_name(EDGE_M_OTHER), "other");
    assert_string_equal(edge_method_name((enum edge_method)99), "other");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_params, setup, teardown),
        cmocka_unit_test_setup_teardown(test_specificity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trailing_slash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found_vs_method, setup, teardown),
        cmocka_unit_test_setup_teardown(test_percent_decoding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rejected_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_many_segments, setup, teardown),
        cmocka_unit_test(test_many_routes),
        cmocka_unit_test(test_bad_tables),
        cmocka_unit_test(test_methods),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
