/* The agent's configuration table: the original worker's variables (AGENT_*, COORDINATOR_URL,
 * CONTROL_PLANE_URL, COORDINATOR_DISCOVERY_URL, MESH_AUTH_TOKEN, LOCAL_MODEL_PROVIDER, OLLAMA_*,
 * MAX_CONCURRENT_TASKS, SANDBOX_MODE) and this runtime's own (state directory, TLS CA, timing). */
#include "agent/agent_int.h"
#include "common/ec_mem.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define CFG(field) offsetof(struct agent_config, field)

static enum ec_status validate_mode(const char *v, struct ec_err *err)
{
    static const char *const allowed[] = { "swarm-only", "ide-enabled", NULL };
    return ec_cfg_validate_one_of(v, allowed, err);
}

static enum ec_status validate_provider(const char *v, struct ec_err *err)
{
    static const char *const allowed[] = { AGENT_PROVIDER_LOC, AGENT_PROVIDER_OLL, NULL };
    return ec_cfg_validate_one_of(v, allowed, err);
}

static enum ec_status validate_sandbox(const char *v, struct ec_err *err)
{
    static const char *const allowed[] = { "bubblewrap", "bwrap", "docker", "none", NULL };
    return ec_cfg_validate_one_of(v, allowed, err);
}

static enum ec_status validate_url_list(const char *v, struct ec_err *err)
{
    struct agent_urls l = { 0 };
    enum ec_status st = agent_urls_parse(v, &l, err);
    agent_urls_release(&l);
    return st;
}

static enum ec_status validate_http_url(const char *v, struct ec_err *err)
{
    char out[AGENT_URL_MAX];
    return agent_url_normalize(v, strlen(v), out, sizeof(out), err);
}

static enum ec_status validate_agent_id(const char *v, struct ec_err *err)
{
    size_t n = strlen(v);
    if (n > AGENT_ID_MAX)
        return ec_err_set(err, EC_EINVAL, NULL, "is longer than %d characters", AGENT_ID_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f)
            return ec_err_set(err, EC_EINVAL, NULL,
                              "\"%.64s\" holds white space or a non-ASCII character", v);
    return EC_OK;
}

static bool set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

static void agent_check(const void *cfgp, bool production, struct ec_cfg_problems *p)
{
    const struct agent_config *c = cfgp;
    if (!set(c->coordinator_url) && !set(c->control_plane_url) && !set(c->discovery_url))
        ec_cfg_problem(p, "COORDINATOR_URL",
                       "no coordinator: set COORDINATOR_URL, CONTROL_PLANE_URL or "
                       "COORDINATOR_DISCOVERY_URL");
    if (c->backoff_max_ms < c->backoff_base_ms)
        ec_cfg_problem(p, "AGENT_BACKOFF_MAX_MS", "is below AGENT_BACKOFF_BASE_MS (%lld)",
                       (long long)c->backoff_base_ms);
    if (!production)
        return;
    if (set(c->sandbox_mode) && strcmp(c->sandbox_mode, "none") == 0)
        ec_cfg_problem(p, "SANDBOX_MODE",
                       "none runs untrusted code on the host; it is refused when "
                       "EDGECODER_ENV=production");
    if (!set(c->registration_token))
        ec_cfg_problem(p, "AGENT_REGISTRATION_TOKEN",
                       "is required when EDGECODER_ENV=production (the portal's enrollment "
                       "token for this node)");
}

static const struct ec_cfg_var agent_vars[] = {
    { "AGENT_ID", EC_CFG_STR, CFG(agent_id), NULL, 0, 0, 0, validate_agent_id,
      "this agent's id (the portal's nodeId); unset: agent-<12 hex of its key's sha256>" },
    { "AGENT_DEVICE_ID", EC_CFG_STR, CFG(device_id), NULL, 0, 0, 0, NULL,
      "optional device id sent with /register (3..128 characters)" },
    { "AGENT_OS", EC_CFG_STR, CFG(os), NULL, 0, 0, 0, NULL,
      "operating system reported to the coordinator; unset: detected (uname)" },
    { "AGENT_MODE", EC_CFG_STR, CFG(mode), "swarm-only", 0, 0, 0, validate_mode,
      "swarm-only or ide-enabled" },
    { "AGENT_CLIENT_TYPE", EC_CFG_STR, CFG(client_type), "edgecoder-native", 0, 0, 0, NULL,
      "clientType reported with /register" },
    { "AGENT_REGISTRATION_TOKEN", EC_CFG_STR, CFG(registration_token), NULL, 0, 0, EC_CFG_SECRET,
      NULL, "the enrollment token the portal gave for this node" },
    { "COORDINATOR_URL", EC_CFG_STR, CFG(coordinator_url), "http://127.0.0.1:4301", 0, 0, 0,
      validate_url_list,
      "coordinator base URL, or several separated by commas (tried in order after the "
      "registry and the cache)" },
    { "CONTROL_PLANE_URL", EC_CFG_STR, CFG(control_plane_url), NULL, 0, 0, 0, validate_http_url,
      "control plane base URL; its GET /network/coordinators is the discovery registry" },
    { "COORDINATOR_DISCOVERY_URL", EC_CFG_STR, CFG(discovery_url), NULL, 0, 0, 0, validate_http_url,
      "the discovery registry's full URL (wins over CONTROL_PLANE_URL)" },
    { "MESH_AUTH_TOKEN", EC_CFG_STR, CFG(mesh_token), NULL, 0, 0, EC_CFG_SECRET, NULL,
      "x-mesh-token for the coordinator; the meshToken /register returns replaces it" },
    { "LOCAL_MODEL_PROVIDER", EC_CFG_STR, CFG(provider), AGENT_PROVIDER_LOC, 0, 0, 0,
      validate_provider,
      "edgecoder-local (deterministic offline provider for development) or ollama-local" },
    { "OLLAMA_HOST", EC_CFG_STR, CFG(ollama_host), "http://127.0.0.1:11434", 0, 0, 0, NULL,
      "Ollama base URL (ollama-local)" },
    { "OLLAMA_MODEL", EC_CFG_STR, CFG(ollama_model), "qwen2.5:7b", 0, 0, 0, NULL,
      "the model ollama-local asks for" },
    { "MAX_CONCURRENT_TASKS", EC_CFG_INT, CFG(max_concurrent), "1", 1, 64, 0, NULL,
      "subtasks run at once (the coordinator's policy may lower it)" },
    { "SANDBOX_MODE", EC_CFG_STR, CFG(sandbox_mode), "bubblewrap", 0, 0, 0, validate_sandbox,
      "bubblewrap, docker, or none (the host; only when set explicitly, and advertised so "
      "tenant work stays away)" },
    { "AGENT_SANDBOX_MEMORY_MB", EC_CFG_INT, CFG(sandbox_memory_mb), "256", 16, 65536, 0, NULL,
      "address-space limit of one run, MiB (the coordinator's memoryLimitMb may lower it)" },
    { "AGENT_RUN_TIMEOUT_MS", EC_CFG_INT, CFG(run_timeout_ms), "10000", 100, 600000, 0, NULL,
      "longest one program may run (the subtask's timeoutMs may lower it)" },
    { "AGENT_STATE_DIR", EC_CFG_STR, CFG(state_dir), NULL, 0, 0, 0, NULL,
      "identity keys, coordinator cache and result outbox; unset: $HOME/.edgecoder/agent" },
    { "COORDINATOR_TLS_CA", EC_CFG_PATH, CFG(tls_ca), NULL, 0, 0, 0, NULL,
      "PEM CA bundle trusted for coordinator and registry HTTPS (a development CA); unset: the "
      "system store" },
    { "AGENT_POLL_INTERVAL_MS", EC_CFG_INT, CFG(poll_ms), "2000", 50, 600000, 0, NULL,
      "pause between pulls that found no work (keep signed requests under the coordinator's "
      "AGENT_RATE_LIMIT_MAX)" },
    { "AGENT_HEARTBEAT_INTERVAL_MS", EC_CFG_INT, CFG(heartbeat_ms), "10000", 100, 600000, 0, NULL,
      "time between heartbeats (they also extend the leases held)" },
    { "AGENT_HTTP_TIMEOUT_MS", EC_CFG_INT, CFG(http_timeout_ms), "15000", 500, 600000, 0, NULL,
      "longest one request to a coordinator may take" },
    { "AGENT_BACKOFF_BASE_MS", EC_CFG_INT, CFG(backoff_base_ms), "500", 10, 600000, 0, NULL,
      "first retry delay after a failure; doubles per failure, with jitter" },
    { "AGENT_BACKOFF_MAX_MS", EC_CFG_INT, CFG(backoff_max_ms), "30000", 10, 3600000, 0, NULL,
      "longest retry delay (also while waiting for approval)" },
    { "AGENT_FAILOVER_AFTER", EC_CFG_INT, CFG(failover_after), "3", 1, 100, 0, NULL,
      "failures in a row before the next coordinator is tried" },
    { "AGENT_SHUTDOWN_GRACE_MS", EC_CFG_INT, CFG(shutdown_grace_ms), "20000", 0, 600000, 0, NULL,
      "on SIGTERM, how long work in flight may still finish and be delivered" },
    EC_LOG_ENV_CFG_VARS(struct agent_config, log),
};

const struct ec_cfg_spec agent_config_spec = {
    .service = "agent",
    .vars = agent_vars,
    .nvars = sizeof(agent_vars) / sizeof(agent_vars[0]),
    .check = agent_check,
};
