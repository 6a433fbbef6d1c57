/* A load generator over the real client API (blocking calls, or rpc_async for many calls in
 * flight per thread): the numbers `tools/bench rpc` prints and the load test checks. */
#include "common/ec_mem.h"
#include "mesh/demo_service.h"

#include "edgecoder/v1/demo.pb-c.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bench_worker {
    struct rpc_channel *ch;
    const struct demo_bench_opts *o;
    char *text;
    int64_t stop_us;
    uint32_t *lat_us; /* one per answered call */
    size_t n, cap;
    uint64_t errors;
    char first_error[240];
    pthread_t thread;
};

static void record(struct bench_worker *w, int64_t us)
{
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 4096;
        w->lat_us = ec_xrealloc(w->lat_us, w->cap * sizeof(uint32_t));
    }
    w->lat_us[w->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void failed(struct bench_worker *w, const struct ec_err *err)
{
    if (w->errors++ == 0)
        snprintf(w->first_error, sizeof(w->first_error), "%s", err->msg);
}

static void run_blocking(struct bench_worker *w, const Edgecoder__V1__EchoRequest *req,
                         const struct rpc_call_opts *opts)
{
    struct ec_arena arena;
    ec_arena_init(&arena);
    while (ec_mono_us() < w->stop_us) {
        struct ec_err err;
        ProtobufCMessage *resp;
        int64_t t0 = ec_mono_us();
        enum ec_status st =
            rpc_unary(w->ch, DEMO_ECHO_PATH, &req->base, &edgecoder__v1__echo_reply__descriptor,
                      &arena, &resp, opts, &err);
        if (st == EC_OK)
            record(w, ec_mono_us() - t0);
        else
            failed(w, &err);
        ec_arena_reset(&arena);
    }
    ec_arena_release(&arena);
}

static void run_async(struct bench_worker *w, const Edgecoder__V1__EchoRequest *req,
                      const struct rpc_call_opts *opts)
{
    struct rpc_async *q = rpc_async_new();
    int n = w->o->inflight;
    int64_t *started = ec_xcalloc((size_t)n, sizeof(int64_t));
    struct ec_err err;
    for (intptr_t slot = 0; slot < n; slot++) {
        started[slot] = ec_mono_us();
        if (rpc_async_unary(q, w->ch, DEMO_ECHO_PATH, &req->base,
                            &edgecoder__v1__echo_reply__descriptor, opts, (void *)slot,
                            &err) != EC_OK)
            failed(w, &err);
    }
    while (rpc_async_pending(q) > 0) {
        void *user;
        enum ec_status st = rpc_async_next(q, NULL, NULL, &user, &err);
        intptr_t slot = (intptr_t)user;
        int64_t now = ec_mono_us();
        if (st == EC_OK)
            record(w, now - started[slot]);
        else
            failed(w, &err);
        if (now < w->stop_us) {
            started[slot] = now;
            if (rpc_async_unary(q, w->ch, DEMO_ECHO_PATH, &req->base,
                                &edgecoder__v1__echo_reply__descriptor, opts, user, &err) != EC_OK)
                failed(w, &err);
        }
    }
    free(started);
    rpc_async_free(q);
}

static void *bench_main(void *arg)
{
    struct bench_worker *w = arg;
    Edgecoder__V1__EchoRequest req = EDGECODER__V1__ECHO_REQUEST__INIT;
    req.text = w->text;
    struct rpc_call_opts opts = { .timeout_ms = w->o->timeout_ms };
    if (w->o->inflight <= 1)
        run_blocking(w, &req, &opts);
    else
        run_async(w, &req, &opts);
    rpc_thread_release();
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

void demo_bench_run(struct rpc_channel *ch, const struct demo_bench_opts *o,
                    struct demo_bench_result *r)
{
    memset(r, 0, sizeof(*r));
    char *text = ec_xmalloc((size_t)o->payload + 1);
    memset(text, 'x', (size_t)o->payload);
    text[o->payload] = '\0';
    struct bench_worker *w = ec_xcalloc((size_t)o->threads, sizeof(*w));
    int64_t start = ec_mono_us();
    int64_t stop = start + (int64_t)(o->seconds * 1e6);
    for (int i = 0; i < o->threads; i++) {
        w[i] = (struct bench_worker){ .ch = ch, .o = o, .text = text, .stop_us = stop };
        if (pthread_create(&w[i].thread, NULL, bench_main, &w[i]) != 0)
            ec_assert_fail("cannot start a bench thread", __FILE__, __LINE__);
    }
    size_t total = 0;
    for (int i = 0; i < o->threads; i++) {
        pthread_join(w[i].thread, NULL);
        total += w[i].n;
    }
    r->seconds = (double)(ec_mono_us() - start) / 1e6;
    uint32_t *all = ec_xmalloc((total ? total : 1) * sizeof(uint32_t));
    size_t k = 0;
    for (int i = 0; i < o->threads; i++) {
        memcpy(all + k, w[i].lat_us, w[i].n * sizeof(uint32_t));
        k += w[i].n;
        r->errors += w[i].errors;
        if (r->first_error[0] == '\0' && w[i].first_error[0] != '\0')
            memcpy(r->first_error, w[i].first_error, sizeof(r->first_error));
        free(w[i].lat_us);
    }
    qsort(all, total, sizeof(uint32_t), cmp_u32);
    r->calls = total;
    r->rpcs_per_sec = r->seconds > 0 ? (double)total / r->seconds : 0;
    if (total > 0) {
        r->p50_us = all[total * 50 / 100];
        r->p90_us = all[total * 90 / 100];
        r->p99_us = all[total * 99 / 100];
        r->max_us = all[total - 1];
    }
    free(all);
    free(w);
    free(text);
}
