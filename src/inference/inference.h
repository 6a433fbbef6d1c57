/* The inference process: its configuration table, the context its two doors (the HTTP edge on
 * INFERENCE_PORT with /health and /metrics, the gRPC Inference service on INFERENCE_GRPC_PORT)
 * share, and the transport-free service functions (decompose, escalate). */
#ifndef INFERENCE_H
#define INFERENCE_H

#include "common/ec_arena.h"
#include "common/ec_config.h"
#include "common/ec_log.h"
#include "common/ec_status.h"
#include "edge/edge.h"
#include "inference/inf_decompose.h"
#include "inference/inference_sig.h"
#include "inference/ollama.h"
#include "mesh/rpc.h"

#include "edgecoder/v1/inference.pb-c.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define INF_RPC_SERVICE "edgecoder.v1.Inference"

struct inf_config {
    int64_t port, grpc_port;
    char *ollama_host;
    char *coordinator_model; /* OLLAMA_COORDINATOR_MODEL: Decompose */
    char *escalation_model;  /* OLLAMA_ESCALATION_MODEL: Escalate */
    char *default_model;     /* OLLAMA_MODEL: Generate and Chat without a model */
    int64_t ollama_connect_timeout_ms, ollama_first_byte_timeout_ms, ollama_idle_timeout_ms;
    int64_t decompose_timeout_ms;
    char *auth_token;
    bool require_signed;
    char *coordinator_peer_id, *coordinator_public_key_pem, *trusted_keys_json;
    int64_t max_skew_ms, nonce_ttl_ms, nonce_capacity;
    int64_t max_streams;
    char *tls_ca, *tls_cert, *tls_key;
    struct edge_env http;
    struct ec_log_env log;
};

extern const struct ec_cfg_spec inf_config_spec;

/* Counters for /metrics (the original's names, as Prometheus counters). */
struct inf_metrics {
    atomic_llong decompose_requests, decompose_successes, decompose_model_calls,
        decompose_fallbacks;
    atomic_llong escalate_requests, escalate_successes, escalate_failures;
    atomic_llong stream_requests, stream_failures, stream_tokens;
    atomic_llong auth_failures;
    atomic_llong total_latency_ms;
};

struct inf_service {
    const struct inf_config *cfg; /* borrowed */
    struct inf_ollama *ollama;
    struct inf_sig_verifier *verifier;
    bool signatures_required;
    struct inf_metrics metrics;
    int64_t started_ms;
    struct edge_server *edge;
    struct rpc_server *rpc;
    struct rpc_service *rpc_service;
};

/* Loads keys and makes the Ollama client; nothing listens yet. A bad key is EC_EINVAL. */
enum ec_status inf_service_new(const struct inf_config *cfg, struct inf_service **out,
                               struct ec_err *err);
/* Starts the HTTP edge and (with TLS files) the gRPC server. */
enum ec_status inf_service_start(struct inf_service *s, struct ec_err *err);
void inf_service_free(struct inf_service *s); /* stops first; NULL is a no-op */

/* Decompose: never fails for a model problem (the reply says fallback); EC_EINVAL for a bad
 * request. The reply is allocated in arena. */
enum ec_status inf_decompose(struct inf_service *s, const Edgecoder__V1__DecomposeRequest *req,
                             struct ec_arena *arena, Edgecoder__V1__DecomposeReply **out,
                             struct ec_err *err);
/* Escalate: EC_EUNAVAIL when the model fails ("Escalation inference failed: ..."). */
enum ec_status inf_escalate(struct inf_service *s, const Edgecoder__V1__EscalateRequest *req,
                            struct ec_arena *arena, Edgecoder__V1__EscalateReply **out,
                            struct ec_err *err);

/* inf_rpc.c and inf_http.c */
extern const struct rpc_method inf__rpc_methods[];
extern const size_t inf__rpc_nmethods;
void inf__metrics_text(struct ec_buf *out, void *ctx);
extern const struct edge_route inf__routes[];
extern const size_t inf__nroutes;

#endif
