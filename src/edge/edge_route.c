/* Route matching: patterns are compiled into shapes (a segment list where ":name" segments are
 * wildcards) sorted most specific first; a request path is validated and split once, in place. */
#include "edge/edge_route.h"
#include "common/ec_mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct shape_seg {
    const char *lit; /* NULL: a parameter */
    size_t lit_len;
};

/* Routes that share a shape differ by method only ("GET /tasks/:id", "DELETE /tasks/:taskId"). */
struct shape {
    size_t nseg;
    struct shape_seg *segs;
    size_t route_for[EDGE_M_COUNT]; /* SIZE_MAX: no route for that method */
    unsigned methods;
};

struct route_info {
    size_t nparams;
    const char *names[EDGE_MAX_PARAMS];
    size_t seg_of[EDGE_MAX_PARAMS];
};

struct edge_router {
    struct shape *shapes; /* sorted by nseg, then most specific first */
    size_t nshapes;
    size_t first_of_len[EDGE_ROUTE_MAX_SEGMENTS + 2]; /* shapes with nseg == n start here */
    struct route_info *info;                          /* one per route */
    size_t nroutes;
};

static const char *const method_names[EDGE_M_COUNT] = {
    [EDGE_M_GET] = "GET",         [EDGE_M_HEAD] = "HEAD",   [EDGE_M_POST] = "POST",
    [EDGE_M_PUT] = "PUT",         [EDGE_M_PATCH] = "PATCH", [EDGE_M_DELETE] = "DELETE",
    [EDGE_M_OPTIONS] = "OPTIONS", [EDGE_M_OTHER] = "other",
};

enum edge_method edge_method_parse(const char *method)
{
    for (int m = 0; m < EDGE_M_OTHER; m++)
        if (strcmp(method, method_names[m]) == 0)
            return (enum edge_method)m;
    return EDGE_M_OTHER;
}

const char *edge_method_name(enum edge_method m)
{
    return (unsigned)m < EDGE_M_COUNT ? method_names[m] : "other";
}

size_t edge_allow_format(unsigned allow, char *buf, size_t cap)
{
    size_t len = 0;
    if (cap == 0)
        return 0;
    buf[0] = '\0';
    for (int m = 0; m < EDGE_M_OTHER; m++) {
        if (!(allow & (1u << m)))
            continue;
        const char *name = method_names[m];
        size_t need = strlen(name) + (len ? 2 : 0);
        if (len + need >= cap)
            break;
        if (len) {
            memcpy(buf + len, ", ", 2);
            len += 2;
        }
        memcpy(buf + len, name, strlen(name));
        len += strlen(name);
        buf[len] = '\0';
    }
    return len;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long edge_pct_decode(const char *src, size_t n, char *dst, int plus_space)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c == '%') {
            if (n - i < 3)
                return -1;
            int hi = hexval((unsigned char)src[i + 1]), lo = hexval((unsigned char)src[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+' && plus_space) {
            c = ' ';
        }
        if (c == '\0')
            return -1;
        dst[j++] = (char)c;
    }
    dst[j] = '\0';
    return (long)j;
}

/* --- compiling ---------------------------------------------------------------------------- */

static int shape_cmp(const void *pa, const void *pb)
{
    const struct shape *a = pa, *b = pb;
    if (a->nseg != b->nseg)
        return a->nseg < b->nseg ? -1 : 1;
    for (size_t i = 0; i < a->nseg; i++) {
        const struct shape_seg *x = &a->segs[i], *y = &b->segs[i];
        if ((x->lit == NULL) != (y->lit == NULL))
            return x->lit != NULL ? -1 : 1; /* a literal beats a parameter */
        if (x->lit != NULL) {
            size_t n = x->lit_len < y->lit_len ? x->lit_len : y->lit_len;
            int c = memcmp(x->lit, y->lit, n);
            if (c == 0 && x->lit_len != y->lit_len)
                c = x->lit_len < y->lit_len ? -1 : 1;
            if (c != 0)
                return c;
        }
    }
    return 0;
}

static int literal_char_ok(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '%' && c != '?' && c != '#' && c != '/';
}

static int name_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Parses one pattern into segs (caller's array of EDGE_ROUTE_MAX_SEGMENTS) and info. */
static enum ec_status compile_pattern(const char *pattern, struct shape_seg *segs, size_t *nseg,
                                      struct route_info *info, struct ec_err *err)
{
    *nseg = 0;
    info->nparams = 0;
    if (pattern == NULL || pattern[0] != '/')
        return ec_err_set(err, EC_EINVAL, NULL, "route pattern \"%s\" does not start with '/'",
                          pattern ? pattern : "(null)");
    if (strcmp(pattern, "/") == 0)
        return EC_OK;
    const char *p = pattern + 1;
    for (;;) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 0)
            return ec_err_set(err, EC_EINVAL, NULL, "route pattern \"%s\" has an empty segment",
                              pattern);
        if (*nseg == EDGE_ROUTE_MAX_SEGMENTS)
            return ec_err_set(err, EC_EINVAL, NULL, "route pattern \"%s\" has over %d segments",
                              pattern, EDGE_ROUTE_MAX_SEGMENTS);
        struct shape_seg *s = &segs[(*nseg)++];
        if (p[0] == ':') {
            if (n == 1)
                return ec_err_set(err, EC_EINVAL, NULL,
                                  "route pattern \"%s\" has a parameter without a name", pattern);
            for (size_t i = 1; i < n; i++)
                if (!name_char_ok((unsigned char)p[i]))
                    return ec_err_set(err, EC_EINVAL, NULL,
                                      "route pattern \"%s\": a parameter name is [A-Za-z0-9_]+",
                                      pattern);
            if (info->nparams == EDGE_MAX_PARAMS)
                return ec_err_set(err, EC_EINVAL, NULL,
                                  "route pattern \"%s\" has over %d parameters", pattern,
                                  EDGE_MAX_PARAMS);
            for (size_t k = 0; k < info->nparams; k++)
                if (strlen(info->names[k]) == n - 1 && memcmp(info->names[k], p + 1, n - 1) == 0)
                    return ec_err_set(err, EC_EINVAL, NULL,
                                      "route pattern \"%s\" repeats a parameter name", pattern);
            info->seg_of[info->nparams] = *nseg - 1;
            info->names[info->nparams++] = ec_xstrndup(p + 1, n - 1);
            s->lit = NULL;
            s->lit_len = 0;
        } else {
            for (size_t i = 0; i < n; i++)
                if (!literal_char_ok((unsigned char)p[i]))
                    return ec_err_set(err, EC_EINVAL, NULL,
                                      "route pattern \"%s\" has a character not allowed in a "
                                      "literal segment",
                                      pattern);
            if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
                return ec_err_set(err, EC_EINVAL, NULL, "route pattern \"%s\" has a dot segment",
                                  pattern);
            s->lit = p;
            s->lit_len = n;
        }
        if (end == NULL)
            return EC_OK;
        p = end + 1;
    }
}

static struct shape *find_shape(struct edge_router *r, const struct shape_seg *segs, size_t nseg)
{
    for (size_t i = 0; i < r->nshapes; i++) {
        struct shape *s = &r->shapes[i];
        if (s->nseg != nseg)
            continue;
        size_t k = 0;
        for (; k < nseg; k++) {
            const struct shape_seg *x = &s->segs[k], *y = &segs[k];
            if ((x->lit == NULL) != (y->lit == NULL))
                break;
            if (x->lit && (x->lit_len != y->lit_len || memcmp(x->lit, y->lit, x->lit_len) != 0))
                break;
        }
        if (k == nseg)
            return s;
    }
    return NULL;
}

enum ec_status edge_router_new(const struct edge_route *routes, size_t nroutes,
                               struct edge_router **out, struct ec_err *err)
{
    *out = NULL;
    struct edge_router *r = ec_xcalloc(1, sizeof(*r));
    r->info = ec_xcalloc(nroutes ? nroutes : 1, sizeof(*r->info));
    r->shapes = ec_xcalloc(nroutes ? nroutes : 1, sizeof(*r->shapes));
    r->nroutes = nroutes;
    enum ec_status st = EC_OK;
    for (size_t i = 0; i < nroutes && st == EC_OK; i++) {
        const struct edge_route *rt = &routes[i];
        struct shape_seg segs[EDGE_ROUTE_MAX_SEGMENTS] = { 0 };
        size_t nseg = 0;
        st = compile_pattern(rt->pattern, segs, &nseg, &r->info[i], err);
        if (st != EC_OK)
            break;
        enum edge_method m = rt->method ? edge_method_parse(rt->method) : EDGE_M_OTHER;
        if (m == EDGE_M_OTHER) {
            st = ec_err_set(err, EC_EINVAL, NULL, "route \"%s\" has an unsupported method \"%s\"",
                            rt->pattern, rt->method ? rt->method : "(null)");
            break;
        }
        if (rt->handler == NULL) {
            st = ec_err_set(err, EC_EINVAL, NULL, "route %s %s has no handler", rt->method,
                            rt->pattern);
            break;
        }
        struct shape *s = find_shape(r, segs, nseg);
        if (s == NULL) {
            s = &r->shapes[r->nshapes++];
            s->nseg = nseg;
            s->segs = ec_xcalloc(nseg ? nseg : 1, sizeof(*s->segs));
            memcpy(s->segs, segs, nseg * sizeof(*segs));
            for (int k = 0; k < EDGE_M_COUNT; k++)
                s->route_for[k] = SIZE_MAX;
        }
        if (s->route_for[m] != SIZE_MAX) {
            st = ec_err_set(err, EC_EINVAL, NULL, "route %s %s duplicates %s %s", rt->method,
                            rt->pattern, rt->method, routes[s->route_for[m]].pattern);
            break;
        }
        s->route_for[m] = i;
        s->methods |= 1u << m;
    }
    if (st != EC_OK) {
        edge_router_free(r);
        return st;
    }
    qsort(r->shapes, r->nshapes, sizeof(*r->shapes), shape_cmp);
    size_t k = 0;
    for (size_t n = 0; n < EDGE_ROUTE_MAX_SEGMENTS + 2; n++) {
        while (k < r->nshapes && r->shapes[k].nseg < n)
            k++;
        r->first_of_len[n] = k;
    }
    *out = r;
    return EC_OK;
}

void edge_router_free(struct edge_router *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nroutes; i++)
        for (size_t k = 0; k < r->info[i].nparams; k++)
            free((void *)r->info[i].names[k]);
    for (size_t i = 0; i < r->nshapes; i++)
        free(r->shapes[i].segs);
    free(r->shapes);
    free(r->info);
    free(r);
}

/* --- matching ----------------------------------------------------------------------------- */

/* The next byte of a validated segment, decoding an escape. */
static unsigned char seg_byte(const char *raw, size_t *i)
{
    unsigned char c = (unsigned char)raw[*i];
    if (c == '%') {
        c = (unsigned char)(hexval((unsigned char)raw[*i + 1]) << 4 |
                            hexval((unsigned char)raw[*i + 2]));
        *i += 3;
    } else {
        *i += 1;
    }
    return c;
}

/* A segment is valid when its escapes are well formed, it decodes to no NUL, and it is not ".."
 * in any spelling ("%2e%2E" included). */
static int seg_valid(const char *raw, size_t n)
{
    size_t decoded = 0, dots = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)raw[i];
        if (c == '\0')
            return 0;
        if (c == '%' && (n - i < 3 || hexval((unsigned char)raw[i + 1]) < 0 ||
                         hexval((unsigned char)raw[i + 2]) < 0))
            return 0;
        c = seg_byte(raw, &i);
        if (c == '\0')
            return 0;
        decoded++;
        dots += c == '.';
    }
    return !(decoded == 2 && dots == 2);
}

static int seg_eq(const char *raw, size_t n, const struct shape_seg *lit)
{
    size_t j = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = seg_byte(raw, &i);
        if (j >= lit->lit_len || (unsigned char)lit->lit[j] != c)
            return 0;
        j++;
    }
    return j == lit->lit_len;
}

enum edge_match_kind edge_router_match(const struct edge_router *r, const char *method,
                                       const char *path, size_t len, struct ec_arena *arena,
                                       struct edge_match *m)
{
    m->route = SIZE_MAX;
    m->allow = 0;
    m->nparams = 0;
    if (len == 0 || path[0] != '/')
        return EDGE_MATCH_BAD_PATH;

    size_t start[EDGE_ROUTE_MAX_SEGMENTS], seglen[EDGE_ROUTE_MAX_SEGMENTS];
    size_t nseg = 0;
    int too_long = 0;
    if (len > 1) {
        size_t i = 1;
        for (;;) {
            const char *slash = memchr(path + i, '/', len - i);
            size_t end = slash ? (size_t)(slash - path) : len;
            if (!seg_valid(path + i, end - i))
                return EDGE_MATCH_BAD_PATH;
            if (nseg < EDGE_ROUTE_MAX_SEGMENTS) {
                start[nseg] = i;
                seglen[nseg] = end - i;
                nseg++;
            } else {
                too_long = 1; /* keep validating: a bad path is a 400 however long */
            }
            if (slash == NULL)
                break;
            i = end + 1;
        }
    }
    if (too_long)
        return EDGE_MATCH_NO_PATH;

    enum edge_method meth = edge_method_parse(method);
    for (size_t k = r->first_of_len[nseg]; k < r->first_of_len[nseg + 1]; k++) {
        const struct shape *s = &r->shapes[k];
        size_t i = 0;
        for (; i < nseg; i++) {
            const struct shape_seg *sg = &s->segs[i];
            if (sg->lit == NULL ? seglen[i] == 0 : !seg_eq(path + start[i], seglen[i], sg))
                break;
        }
        if (i < nseg)
            continue;
        size_t route = meth == EDGE_M_OTHER ? SIZE_MAX : s->route_for[meth];
        if (route == SIZE_MAX && meth == EDGE_M_HEAD)
            route = s->route_for[EDGE_M_GET];
        if (route == SIZE_MAX) {
            m->allow |= s->methods;
            if (s->methods & (1u << EDGE_M_GET))
                m->allow |= 1u << EDGE_M_HEAD;
            continue;
        }
        const struct route_info *info = &r->info[route];
        for (size_t p = 0; p < info->nparams; p++) {
            size_t sg = info->seg_of[p];
            char *val = ec_arena_alloc(arena, seglen[sg] + 1);
            edge_pct_decode(path + start[sg], seglen[sg], val, 0); /* validated above */
            m->params[p].name = info->names[p];
            m->params[p].value = val;
        }
        m->nparams = info->nparams;
        m->route = route;
        return EDGE_MATCH_FOUND;
    }
    return m->allow ? EDGE_MATCH_NO_METHOD : EDGE_MATCH_NO_PATH;
}
