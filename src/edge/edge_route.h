/* The route matcher: compiles a route table into path shapes once at start; a match walks the
 * request path's segments in place and allocates only the decoded parameters, in the arena. */
#ifndef EDGE_ROUTE_H
#define EDGE_ROUTE_H

#include "edge/edge.h"

#include <stddef.h>

#define EDGE_ROUTE_MAX_SEGMENTS 32 /* a longer request path matches nothing */

enum edge_method {
    EDGE_M_GET,
    EDGE_M_HEAD,
    EDGE_M_POST,
    EDGE_M_PUT,
    EDGE_M_PATCH,
    EDGE_M_DELETE,
    EDGE_M_OPTIONS,
    EDGE_M_OTHER, /* any other token: never routed, labelled "other" in metrics */
    EDGE_M_COUNT
};

enum edge_method edge_method_parse(const char *method);
const char *edge_method_name(enum edge_method m);

enum edge_match_kind {
    EDGE_MATCH_FOUND,     /* m->route and m->params are set */
    EDGE_MATCH_NO_PATH,   /* 404 */
    EDGE_MATCH_NO_METHOD, /* 405: m->allow has the path's methods */
    EDGE_MATCH_BAD_PATH,  /* 400: not "/...", bad %-escape, NUL, or a ".." segment */
};

struct edge_match {
    size_t route;   /* index in the table given to edge_router_new */
    unsigned allow; /* bit (1u << enum edge_method) per method, for NO_METHOD */
    size_t nparams;
    struct edge_param params[EDGE_MAX_PARAMS];
};

/* Immutable once made: shared by every worker thread. */
struct edge_router;

/* Checks every pattern (starts with '/', no empty segment but the root, ":name" of
 * [A-Za-z0-9_], at most EDGE_MAX_PARAMS, no duplicate method+shape, a known method) and
 * compiles them. routes is borrowed for the router's life. */
enum ec_status edge_router_new(const struct edge_route *routes, size_t nroutes,
                               struct edge_router **out, struct ec_err *err);
void edge_router_free(struct edge_router *r);

/* Matches method + raw path (len bytes, may hold NUL bytes: they make a BAD_PATH). Literal
 * segments compare after percent-decoding; a trailing '/' is significant ("/a/" is not "/a").
 * When several shapes match, the one with a literal at the first differing segment wins; HEAD
 * falls back to a GET route. */
enum edge_match_kind edge_router_match(const struct edge_router *r, const char *method,
                                       const char *path, size_t len, struct ec_arena *arena,
                                       struct edge_match *m);

/* "GET, HEAD, POST" for an Allow header; returns the length written (truncated to cap-1). */
size_t edge_allow_format(unsigned allow, char *buf, size_t cap);

/* Percent-decodes src[0..n) into dst (room for n+1 bytes), NUL-terminated; plus_space turns
 * '+' into ' ' (query strings). Returns the decoded length, or -1 for a malformed escape or a
 * decoded NUL byte. */
long edge_pct_decode(const char *src, size_t n, char *dst, int plus_space);

#endif
