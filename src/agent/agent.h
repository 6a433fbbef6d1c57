/* The agent runtime (`edgecoder agent`): an enrolled worker that registers with a coordinator,
 * heartbeats, pulls subtasks, runs them through a local provider and the sandbox, and delivers
 * the results through a durable outbox, failing over between coordinators when one goes away. */
#ifndef EC_AGENT_H
#define EC_AGENT_H

#include "common/ec_config.h"
#include "common/ec_log.h"
#include "common/ec_status.h"

#include <stdint.h>

struct agent_config {
    char *agent_id;           /* AGENT_ID; empty: agent-<12 hex of sha256(signing public key)> */
    char *device_id;          /* AGENT_DEVICE_ID, optional */
    char *os;                 /* AGENT_OS; empty: uname's system name, lower case */
    char *mode;               /* AGENT_MODE: swarm-only | ide-enabled */
    char *client_type;        /* AGENT_CLIENT_TYPE */
    char *registration_token; /* AGENT_REGISTRATION_TOKEN (secret) */
    char *coordinator_url;    /* COORDINATOR_URL: one URL or a comma-separated list */
    char *control_plane_url;  /* CONTROL_PLANE_URL: its /network/coordinators is the registry */
    char *discovery_url;      /* COORDINATOR_DISCOVERY_URL: the registry's full URL */
    char *mesh_token;         /* MESH_AUTH_TOKEN (secret); /register's meshToken replaces it */
    char *provider;           /* LOCAL_MODEL_PROVIDER: edgecoder-local | ollama-local */
    char *ollama_host;        /* OLLAMA_HOST */
    char *ollama_model;       /* OLLAMA_MODEL */
    int64_t max_concurrent;   /* MAX_CONCURRENT_TASKS */
    char *sandbox_mode;       /* SANDBOX_MODE: bubblewrap | docker | none */
    int64_t sandbox_memory_mb;
    int64_t run_timeout_ms;
    char *state_dir;      /* AGENT_STATE_DIR */
    char *tls_ca;         /* COORDINATOR_TLS_CA: PEM CA trusted for coordinator HTTPS */
    int64_t poll_ms;      /* AGENT_POLL_INTERVAL_MS */
    int64_t heartbeat_ms; /* AGENT_HEARTBEAT_INTERVAL_MS */
    int64_t http_timeout_ms;
    int64_t backoff_base_ms;
    int64_t backoff_max_ms;
    int64_t failover_after; /* consecutive failures before the next coordinator is tried */
    int64_t shutdown_grace_ms;
    struct ec_log_env log;
};

extern const struct ec_cfg_spec agent_config_spec;

struct agent;

/* Loads or creates the identity in the state directory, opens the outbox, starts the worker
 * threads. cfg is borrowed for the agent's life. Caller frees with agent_free. */
enum ec_status agent_new(const struct agent_config *cfg, struct agent **out, struct ec_err *err);
/* Runs the control loop in the calling thread until agent_stop; then finishes the work in
 * flight (bounded by AGENT_SHUTDOWN_GRACE_MS), delivers what it can and leaves the rest in the
 * outbox. */
void agent_run(struct agent *a);
/* Async-signal-unsafe but thread-safe: asks agent_run to wind down. */
void agent_stop(struct agent *a);
void agent_free(struct agent *a); /* NULL is a no-op */

#endif
