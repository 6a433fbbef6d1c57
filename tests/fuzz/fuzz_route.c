/* libFuzzer target for the route matcher and the query parser: "METHOD path[?query]" bytes
 * (NULs included) against a fixed table must never crash, and every answer must be consistent. */
#include "edge/edge_route.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static enum ec_status h_any(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    return EC_OK;
}

static const struct edge_route table[] = {
    { "GET", "/", NULL, 0, h_any },
    { "GET", "/demo/hello", NULL, 0, h_any },
    { "POST", "/demo/echo", NULL, 0, h_any },
    { "GET", "/tasks/:taskId", NULL, 0, h_any },
    { "DELETE", "/tasks/:id", NULL, 0, h_any },
    { "POST", "/tasks/stats", NULL, 0, h_any },
    { "GET", "/agents/:agentId/tasks/:taskId", NULL, 0, h_any },
    { "PUT", "/agents/:agentId/tasks/:taskId", NULL, 0, h_any },
    { "GET", "/agents/me/tasks/:taskId", NULL, 0, h_any },
    { "PATCH", "/a/:b/c/:d/e/:f/g/:h/i/:j/k/:l/m/:n/o/:p", NULL, 0, h_any },
    { "OPTIONS", "/x%y/z", NULL, 0, h_any }, /* rejected: the table is then the rest */
};

static struct edge_router *router;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_route: %s\n", what);
    abort();
}

static void check_match(const char *method, const char *path, size_t len, struct ec_arena *arena)
{
    struct edge_match m;
    memset(&m, 0xa5, sizeof(m));
    enum edge_match_kind kind = edge_router_match(router, method, path, len, arena, &m);
    switch (kind) {
    case EDGE_MATCH_FOUND:
        if (m.route >= sizeof(table) / sizeof(table[0]) - 1 || m.nparams > EDGE_MAX_PARAMS)
            die("found a route out of range");
        if (len == 0 || path[0] != '/' || memchr(path, '\0', len) != NULL)
            die("found a route for a path that should be rejected");
        for (size_t i = 0; i < m.nparams; i++) {
            size_t vlen = strlen(m.params[i].value);
            if (vlen == 0 || vlen > len || m.params[i].name == NULL)
                die("a parameter is empty or longer than the path");
            if (strcmp(m.params[i].value, "..") == 0)
                die("a \"..\" segment was accepted as a parameter");
        }
        break;
    case EDGE_MATCH_NO_METHOD:
        if (m.allow == 0 || (m.allow >> EDGE_M_OTHER) != 0)
            die("405 without a sensible Allow set");
        char allow[64];
        if (edge_allow_format(m.allow, allow, sizeof(allow)) == 0)
            die("405 with an empty Allow header");
        break;
    case EDGE_MATCH_NO_PATH:
        if (m.allow != 0)
            die("404 with an Allow set");
        break;
    case EDGE_MATCH_BAD_PATH:
        break;
    default:
        die("unknown match kind");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (router == NULL) {
        struct ec_err err = { 0 };
        /* The last row is malformed on purpose: the table must be refused... */
        if (edge_router_new(table, sizeof(table) / sizeof(table[0]), &router, &err) == EC_OK)
            die("a table with a bad pattern was accepted");
        /* ...and the rest accepted. */
        if (edge_router_new(table, sizeof(table) / sizeof(table[0]) - 1, &router, &err) != EC_OK)
            die(err.msg);
    }
    const char *text = (const char *)data;
    const char *sp = memchr(text, ' ', size);
    size_t mlen = sp ? (size_t)(sp - text) : 0;
    char method[16];
    if (mlen >= sizeof(method))
        mlen = sizeof(method) - 1;
    memcpy(method, text, mlen);
    method[mlen] = '\0';
    const char *path = sp ? sp + 1 : text;
    size_t plen = size - (size_t)(path - text);
    const char *q = memchr(path, '?', plen);
    size_t route_len = q ? (size_t)(q - path) : plen;

    struct ec_arena arena;
    ec_arena_init(&arena);
    check_match(method, path, route_len, &arena);

    /* The query string as civetweb would hand it over: NUL-terminated at the first NUL. */
    if (q != NULL) {
        char *qs = ec_arena_memdup(&arena, q + 1, plen - route_len - 1);
        struct edge_req req;
        memset(&req, 0, sizeof(req));
        req.arena = &arena;
        req.query_string = qs;
        static const char *const names[] = { "ms", "a", "", "x y", "name" };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            const char *v = edge_req_query(&req, names[i]);
            if (v != NULL && strlen(v) > strlen(qs))
                die("a decoded query value is longer than the query");
        }
        char *dst = ec_arena_alloc(&arena, plen + 1);
        long n = edge_pct_decode(q + 1, plen - route_len - 1, dst, 1);
        if (n > (long)(plen - route_len - 1))
            die("decoding grew the text");
    }
    ec_arena_release(&arena);
    return 0;
}
