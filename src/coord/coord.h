/* The coordinator process: its configuration table, the context its two doors (the HTTP edge on
 * COORDINATOR_PORT, the gRPC Coordinator service on COORDINATOR_GRPC_PORT) share, the agent
 * registry, and the transport-free service functions both doors call. */
#ifndef COORD_H
#define COORD_H

#include "common/ec_arena.h"
#include "common/ec_config.h"
#include "common/ec_crypto.h"
#include "common/ec_log.h"
#include "common/ec_mem.h"
#include "common/ec_pg.h"
#include "common/ec_status.h"
#include "coord/coord_gate.h"
#include "coord/coord_queue.h"
#include "edge/edge.h"

struct inf_client;

#include "edgecoder/v1/coordinator.pb-c.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* --- configuration (coord_config.c) ------------------------------------------------------ */

#define COORD_PORTAL_GRPC_PORT    4410 /* PortalInternal, when PORTAL_SERVICE_URL is https:// */
#define COORD_INFERENCE_GRPC_PORT 4402 /* Inference, when INFERENCE_URL is https:// */

struct coord_config {
    int64_t port;      /* COORDINATOR_PORT: the HTTP edge */
    int64_t grpc_port; /* COORDINATOR_GRPC_PORT */
    char *database_url;
    int64_t db_pool_size;
    char *mesh_token; /* "" or NULL: the edge is open (development only) */
    char *peer_id;
    char *private_key_pem, *public_key_pem;
    char *public_url;
    char *portal_service_url, *portal_service_token;
    char *inference_url, *inference_auth_token;
    int64_t inference_timeout_ms;
    char *ollama_host, *local_model_provider, *ollama_model;
    char *network_mode;
    int64_t max_skew_ms, nonce_ttl_ms;
    int64_t rate_limit_max, rate_limit_window_ms;
    int64_t nonce_capacity;
    int64_t max_attempts, lease_grace_ms;
    int64_t online_window_ms;
    char *tls_ca, *tls_cert, *tls_key;
    struct edge_env http;
    struct ec_log_env log;
};

extern const struct ec_cfg_spec coord_config_spec;

/* --- the agent registry (coord_agents.c) ------------------------------------------------- */

struct coord_agents;

struct coord_agents_opts {
    struct ec_pg_pool *pool; /* borrowed */
    int64_t online_window_ms;
    size_t max_agents; /* most agents held in memory */
};

enum ec_status coord_agents_new(const struct coord_agents_opts *opts, struct coord_agents **out,
                                struct ec_err *err);
void coord_agents_free(struct coord_agents *a); /* NULL is a no-op */

/* An agent's Ed25519 key, shared and reference counted: a re-registration can replace the key
 * while another thread still verifies with the old one. */
struct coord_agent_key;
const struct ec_key *coord_agent_key_get(const struct coord_agent_key *k);
void coord_agent_key_unref(struct coord_agent_key *k); /* NULL is a no-op */

/* What a request needs to know of an agent; strings in the arena. */
struct coord_agent_view {
    struct coord_agent_key *key;   /* NULL: no signing key; else unreffed with the arena */
    const char *x25519_public_key; /* NULL: none */
    const char *sandbox_mode;
    const char *active_model;   /* NULL: none reported */
    const char *revoked_reason; /* NULL: active */
    char *public_key_pem;       /* the registered PEM (register compares it), or NULL */
};

/* Memory first; an agent not in memory is loaded from the database and cached.
 * EC_ENOTFOUND "agent_not_registered" when it never registered. */
enum ec_status coord_agents_lookup(struct coord_agents *a, const char *agent_id,
                                   struct ec_arena *arena, struct coord_agent_view *out,
                                   struct ec_err *err);

/* What POST /register stores. Strings borrowed; optional ones NULL. */
struct coord_agent_profile {
    const char *agent_id, *device_id, *os, *version, *mode, *local_model_provider, *client_type;
    int max_concurrent_tasks;
    const char *sandbox_mode;
    const char *public_key_pem;    /* NULL: keep the one registered (if any) */
    const char *x25519_public_key; /* NULL: keep the one registered (if any) */
    const char *power_telemetry_json;
    const char *owner_email, *enrollment_reason, *source_ip;
    /* sha256 of what the agent sent that the decision depends on (COORD_REGISTER_FP_LEN bytes):
     * an identical /register soon after is answered from memory. */
    const uint8_t *fingerprint;
};

#define COORD_REGISTER_FP_LEN   32
#define COORD_REGISTER_CACHE_MS 60000

/* Records the enrollment decision as a node_validation ledger event and, when allowed, upserts
 * the agent and records node_approval, in one transaction; then updates memory. A refusal with
 * revoke set (the portal's verdict on a node it knows: unapproved, unverified, inactive, not
 * enrolled) also marks a registered agent revoked, so that its other requests are refused until
 * it is allowed again. public_key is borrowed (the registry parses the stored PEM itself). */
enum ec_status coord_agents_register(struct coord_agents *a, struct ec_arena *arena,
                                     const struct coord_agent_profile *p,
                                     const struct ec_key *public_key, bool allowed, bool revoke,
                                     const char *coordinator_id, int64_t now_ms,
                                     struct ec_err *err);

/* True when the agent's last allowed registration on this machine had this fingerprint and was
 * less than COORD_REGISTER_CACHE_MS ago: the original's workers re-register every loop, and
 * asking the portal and writing the same row each time would make /register the busiest
 * route. The powerTelemetry it carries is taken as from a heartbeat. */
bool coord_agents_register_recent(struct coord_agents *a, const char *agent_id,
                                  const uint8_t fp[COORD_REGISTER_FP_LEN],
                                  const char *power_telemetry_json, int64_t now_ms);
/* Loads the agents seen since since_ms (at most the registry's capacity) so that a restarted
 * coordinator does not meet its returning agents with one query each. */
enum ec_status coord_agents_preload(struct coord_agents *a, int64_t since_ms, size_t *loaded,
                                    struct ec_err *err);

/* A heartbeat's report; NULL/absent fields leave what is known. */
struct coord_heartbeat {
    const char *power_telemetry_json;
    const char *active_model;
    const char *active_model_param_size;
    int model_swap_in_progress; /* -1: not sent */
    const char *sandbox_mode;
};

/* Memory only (flushed to the database by coord_agents_flush). The agent must have been looked
 * up first; EC_EUNAUTH "mesh_unauthorized" (reason agent_not_registered) otherwise. */
enum ec_status coord_agents_heartbeat(struct coord_agents *a, const char *agent_id,
                                      const struct coord_heartbeat *hb, int64_t now_ms,
                                      struct ec_err *err);
/* Lease bookkeeping for heartbeat renewals: a claim handed to the agent, an answer accepted. */
void coord_agents_lease_claimed(struct coord_agents *a, const char *agent_id);
void coord_agents_lease_done(struct coord_agents *a, const char *agent_id);

/* Writes the liveness of every agent seen since the last flush in one statement, and extends
 * the leases of those that hold any (coord_queue_renew). Run every second by the housekeeper. */
enum ec_status coord_agents_flush(struct coord_agents *a, struct coord_queue *queue, int64_t now_ms,
                                  struct ec_err *err);

/* Agents in memory, most recently seen first, as protobuf messages in the arena. */
struct coord_agents_filter {
    bool connected_only;
    bool with_owner; /* fill owner_email (gRPC ListAgents only) */
    size_t limit;
};
void coord_agents_list(struct coord_agents *a, struct ec_arena *arena,
                       const struct coord_agents_filter *f, int64_t now_ms,
                       Edgecoder__V1__Agent ***out, size_t *n);
int64_t coord_agents_count_online(struct coord_agents *a, int64_t now_ms);

/* POST /agent/diagnostics: events is a JSON array of {eventAtMs, message} (validated by the
 * caller), stored with source/runtimeState/modelState (NULL when absent); the newest 250 per
 * agent are kept. */
enum ec_status coord_agents_diag_store(struct coord_agents *a, struct ec_arena *arena,
                                       const char *agent_id, const char *events_json,
                                       const char *source, const char *runtime_state,
                                       const char *model_state, int64_t now_ms, int *stored,
                                       struct ec_err *err);
/* GET /agent/diagnostics/:agentId: {ok, agentId, events (newest first, at most 200), count,
 * latestEventAtMs}. *out owned by the caller. */
enum ec_status coord_agents_diag_read(struct coord_agents *a, struct ec_arena *arena,
                                      const char *agent_id, json_t **out, struct ec_err *err);

/* --- the coordinator context (coord_service.c) ------------------------------------------- */

struct coord_auth;
struct coord_ledger;
struct ec_http_client;
struct rpc_server;

/* The Ollama probe of GET /health/runtime, cached briefly so that an open route cannot be used
 * to hammer Ollama. */
struct coord_ollama_probe {
    bool reachable;
    char version[64];
    int64_t model_count;
    char error[sizeof(((struct ec_err *)0)->msg)];
    int64_t probed_at_ms;
};

/* Shared by every request and RPC. Immutable after coord_start except where a field says. */
struct coord {
    const struct coord_config *cfg; /* borrowed */
    bool production;
    char *peer_id;
    struct ec_key *identity_key; /* Ed25519 pair: ledger signatures */
    char *public_key_pem;
    bool ephemeral_key; /* generated at start (development without a configured key) */
    char *portal_target;
    struct ec_pg_pool *pool;
    struct coord_queue *queue;
    struct coord_auth *auth;
    struct coord_ledger *ledger;
    struct coord_gate *gate;
    struct coord_agents *agents;
    struct ec_http_client *http;  /* Ollama */
    struct inf_client *inference; /* NULL: INFERENCE_URL unset, /submit makes one subtask */
    struct edge_server *edge;
    struct rpc_server *rpc;
    struct rpc_service *rpc_service; /* the table with data = this */
    char ollama_base[256];           /* OLLAMA_HOST with a scheme, no trailing '/' */

    /* Queue counts, refreshed by the housekeeper; served by /status without a query. */
    _Atomic int64_t count_queued, count_leased, count_completed, count_failed;
    _Atomic int64_t counts_at_ms;            /* 0: never read */
    _Atomic int64_t counts_failing_since_ms; /* 0: the last refresh worked */
    _Atomic int64_t count_online;            /* agents seen within the online window */
    /* Bumped whenever this machine may have made work runnable (a submit, an answer releasing
     * dependants, a requeue); the housekeeper notes its value before each count. While queued
     * is 0 and no bump happened since, an idle agent's /pull needs no query. */
    _Atomic uint64_t work_seq, counts_work_seq;
    _Atomic int64_t last_requeued;

    pthread_mutex_t probe_lock; /* guards probe and probing */
    struct coord_ollama_probe probe;
    bool probing; /* a probe is under way: others take the last answer */

    /* Background threads. */
    pthread_mutex_t bg_lock; /* guards bg_stop; bg_cond wakes the threads */
    pthread_cond_t bg_cond;
    bool bg_stop;
    bool sweeper_started, housekeeper_started;
    pthread_t sweeper, housekeeper;
};

/* Loads the keys, makes the pool, queue, auth, gate and registry. Nothing listens yet. */
enum ec_status coord_new(const struct coord_config *cfg, struct coord **out, struct ec_err *err);
/* Starts the ledger chainer, the sweeper and the housekeeper, the HTTP edge and (when TLS files
 * are configured) the gRPC server. */
enum ec_status coord_start(struct coord *c, struct ec_err *err);
/* Graceful: the edge and the gRPC server finish what is in flight, the threads stop, liveness is
 * flushed and the ledger chains what is pending. Idempotent. */
void coord_stop(struct coord *c);
void coord_free(struct coord *c); /* stops first; NULL is a no-op */

/* --- service functions (both doors) ------------------------------------------------------ */

/* GET /status, gRPC GetStatus: from the housekeeper's counts (refreshed four times a second).
 * EC_EUNAVAIL "database_unavailable" when they were never read, or reading them has failed for
 * a second (a slow refresh under load is not a failure: the last counts are served). */
enum ec_status coord_status_get(struct coord *c, Edgecoder__V1__StatusReply *out,
                                struct ec_err *err);
/* True when the queue is known to hold nothing queued (see work_seq). */
bool coord_queue_surely_empty(struct coord *c);
/* Something may have become runnable. */
void coord_work_added(struct coord *c);

/* GET /capacity, gRPC GetCapacity; allocated in arena. */
void coord_capacity_get(struct coord *c, struct ec_arena *arena, Edgecoder__V1__CapacityReply *out,
                        Edgecoder__V1__CapacityTotals *totals);
/* The Ollama probe (cached for 2 seconds). */
void coord_ollama_probe_get(struct coord *c, struct coord_ollama_probe *out);

/* --- transports (coord_http_*.c, coord_rpc.c) -------------------------------------------- */

extern const struct edge_route coord__routes[];
extern const size_t coord__nroutes;
/* The x-mesh-token gate, before routing: every path but POST /register and GET /health/runtime
 * (and, with a portal service token, GET /agent/diagnostics/:id). */
enum ec_status coord__pre_route(struct edge_req *req, struct ec_err *err);

/* The Coordinator gRPC service table; data is the struct coord. */
extern const struct rpc_method coord__rpc_methods[];
extern const size_t coord__rpc_nmethods;
#define COORD_RPC_SERVICE "edgecoder.v1.Coordinator"

#endif
