/* Request metrics: counters by route, method and status, a latency histogram per route and the
 * in-flight gauge, on preallocated slots updated with relaxed atomics; rendered for /metrics. */
#include "edge/edge_int.h"
#include "common/ec_mem.h"

#include <stdlib.h>
#include <string.h>

static const int status_codes[EDGE__NSTATUS - 1] = {
    200, 201, 202, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 406,
    408, 409, 411, 413, 414, 415, 422, 429, 431, 500, 501, 502, 503, 504,
};

/* Upper bounds in microseconds, and as Prometheus writes them in seconds. */
static const uint64_t bucket_us[EDGE__NBUCKETS - 1] = {
    500,    1000,   2500,   5000,    10000,   25000,   50000,
    100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};
static const char *const bucket_le[EDGE__NBUCKETS] = {
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
    "0.25",   "0.5",   "1",      "2.5",   "5",    "10",    "+Inf",
};

static size_t status_index(int status)
{
    /* Small and sorted: a binary search is cheaper than a hash here. */
    size_t lo = 0, hi = EDGE__NSTATUS - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (status_codes[mid] < status)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < EDGE__NSTATUS - 1 && status_codes[lo] == status ? lo : EDGE__NSTATUS - 1;
}

void edge__metrics_init(struct edge__metrics *m, const char *const *labels, size_t n)
{
    m->slots = ec_xcalloc(n, sizeof(*m->slots));
    m->nslots = n;
    for (size_t i = 0; i < n; i++)
        m->slots[i].route = labels[i];
    atomic_init(&m->in_flight, 0);
}

void edge__metrics_release(struct edge__metrics *m)
{
    free(m->slots);
    m->slots = NULL;
    m->nslots = 0;
}

void edge__metrics_observe(struct edge__metrics *m, size_t slot, enum edge_method method,
                           int http_status, int64_t dur_us)
{
    EC_ASSERT(slot < m->nslots);
    struct edge__metric_slot *s = &m->slots[slot];
    if ((unsigned)method >= EDGE_M_COUNT)
        method = EDGE_M_OTHER;
    uint64_t us = dur_us > 0 ? (uint64_t)dur_us : 0;
    size_t b = 0;
    while (b < EDGE__NBUCKETS - 1 && us > bucket_us[b])
        b++;
    atomic_fetch_add_explicit(&s->requests[method][status_index(http_status)], 1,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&s->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->sum_us, us, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
}

/* Label values are route patterns and fixed words; escape anyway, as the format requires. */
static void put_label(struct ec_buf *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            ec_buf_putc(out, '\\');
        if (*v == '\n') {
            ec_buf_puts(out, "\\n");
            continue;
        }
        ec_buf_putc(out, *v);
    }
}

void edge__metrics_render(struct edge__metrics *m, struct ec_buf *out, edge_metrics_fn extra,
                          void *ctx)
{
    ec_buf_puts(out, "# HELP edgecoder_http_requests_total HTTP requests answered, by route "
                     "pattern, method and status.\n"
                     "# TYPE edgecoder_http_requests_total counter\n");
    for (size_t i = 0; i < m->nslots; i++) {
        struct edge__metric_slot *s = &m->slots[i];
        for (int meth = 0; meth < EDGE_M_COUNT; meth++) {
            for (size_t k = 0; k < EDGE__NSTATUS; k++) {
                uint64_t n = atomic_load_explicit(&s->requests[meth][k], memory_order_relaxed);
                if (n == 0)
                    continue;
                ec_buf_puts(out, "edgecoder_http_requests_total{route=\"");
                put_label(out, s->route);
                ec_buf_printf(out, "\",method=\"%s\",status=\"", edge_method_name(meth));
                if (k < EDGE__NSTATUS - 1)
                    ec_buf_printf(out, "%d", status_codes[k]);
                else
                    ec_buf_puts(out, "other");
                ec_buf_printf(out, "\"} %llu\n", (unsigned long long)n);
            }
        }
    }
    ec_buf_puts(out, "# HELP edgecoder_http_request_duration_seconds Time from the request's "
                     "headers to the response written, by route pattern.\n"
                     "# TYPE edgecoder_http_request_duration_seconds histogram\n");
    for (size_t i = 0; i < m->nslots; i++) {
        struct edge__metric_slot *s = &m->slots[i];
        /* Read count first: the buckets then add up to at least count (racing increments
         * only make them larger), so the rendered histogram never goes down. */
        uint64_t count = atomic_load_explicit(&s->count, memory_order_relaxed);
        if (count == 0)
            continue;
        uint64_t cum = 0;
        for (size_t b = 0; b < EDGE__NBUCKETS; b++) {
            cum += atomic_load_explicit(&s->buckets[b], memory_order_relaxed);
            ec_buf_puts(out, "edgecoder_http_request_duration_seconds_bucket{route=\"");
            put_label(out, s->route);
            ec_buf_printf(
                out, "\",le=\"%s\"} %llu\n", bucket_le[b],
                (unsigned long long)(b == EDGE__NBUCKETS - 1 && cum < count ? count : cum));
        }
        uint64_t sum_us = atomic_load_explicit(&s->sum_us, memory_order_relaxed);
        ec_buf_puts(out, "edgecoder_http_request_duration_seconds_sum{route=\"");
        put_label(out, s->route);
        ec_buf_printf(out, "\"} %.6f\n", (double)sum_us / 1e6);
        ec_buf_puts(out, "edgecoder_http_request_duration_seconds_count{route=\"");
        put_label(out, s->route);
        ec_buf_printf(out, "\"} %llu\n", (unsigned long long)(cum > count ? cum : count));
    }
    ec_buf_printf(out,
                  "# HELP edgecoder_http_requests_in_flight HTTP requests being handled now.\n"
                  "# TYPE edgecoder_http_requests_in_flight gauge\n"
                  "edgecoder_http_requests_in_flight %lld\n",
                  (long long)atomic_load_explicit(&m->in_flight, memory_order_relaxed));
    if (extra != NULL)
        extra(out, ctx);
}
