/* edgecoder.v1.Demo: a service for tests and benchmarks of the mesh runtime (Echo, Count). */
#ifndef EC_MESH_DEMO_SERVICE_H
#define EC_MESH_DEMO_SERVICE_H

#include "mesh/rpc.h"

#define DEMO_ECHO_PATH  "/edgecoder.v1.Demo/Echo"
#define DEMO_COUNT_PATH "/edgecoder.v1.Demo/Count"
#define DEMO_COUNT_MAX  100000

/* Coordinators and the control plane may call it. Static; no service data. */
extern const struct rpc_service demo_service;

/* A closed-loop load of Demo.Echo calls: `threads` threads, each keeping `inflight` calls in
 * flight (1: blocking calls; more: rpc_async) for `seconds`. */
struct demo_bench_opts {
    int threads;
    int inflight;
    double seconds;
    int payload; /* bytes of text per request */
    int64_t timeout_ms;
};

struct demo_bench_result {
    uint64_t calls; /* answered OK */
    uint64_t errors;
    double seconds;
    double rpcs_per_sec;
    uint32_t p50_us, p90_us, p99_us, max_us;
    char first_error[240];
};

void demo_bench_run(struct rpc_channel *ch, const struct demo_bench_opts *o,
                    struct demo_bench_result *r);

#endif
