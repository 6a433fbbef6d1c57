/* The coordinator's configuration table: every variable the runbook names for it, with defaults,
 * ranges, validators and the production rules; --help-config prints it. */
#include "coord/coord.h"
#include "common/ec_mem.h"
#include "mesh/rpc.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CFG(field) offsetof(struct coord_config, field)

static enum ec_status validate_peer_id(const char *v, struct ec_err *err)
{
    size_t n = strlen(v);
    if (n > 128 ||
        strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") != n)
        return ec_err_set(err, EC_EINVAL, NULL,
                          "\"%.64s\" is not 1..128 characters of [A-Za-z0-9._:-]", v);
    return EC_OK;
}

static enum ec_status validate_portal_url(const char *v, struct ec_err *err)
{
    char *target = NULL;
    enum ec_status st = rpc_target_from_url(v, COORD_PORTAL_GRPC_PORT, &target, err);
    free(target);
    return st;
}

static enum ec_status validate_inference_url(const char *v, struct ec_err *err)
{
    char *target = NULL;
    enum ec_status st = rpc_target_from_url(v, COORD_INFERENCE_GRPC_PORT, &target, err);
    free(target);
    return st;
}

/* Ollama's own convention allows "host:port" without a scheme; a scheme must be http(s). */
static enum ec_status validate_ollama_host(const char *v, struct ec_err *err)
{
    const char *rest = v;
    if (strncasecmp(v, "http://", 7) == 0)
        rest = v + 7;
    else if (strncasecmp(v, "https://", 8) == 0)
        rest = v + 8;
    else if (strstr(v, "://") != NULL)
        return ec_err_set(err, EC_EINVAL, NULL, "\"%.64s\": only http:// or https:// is allowed",
                          v);
    if (rest[0] == '\0' || rest[0] == '/' || rest[0] == ':' || strlen(v) > 200)
        return ec_err_set(err, EC_EINVAL, NULL, "\"%.64s\" has no host", v);
    for (const char *p = v; *p; p++)
        if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
            return ec_err_set(err, EC_EINVAL, NULL, "\"%.64s\" holds white space", v);
    return EC_OK;
}

static enum ec_status validate_provider(const char *v, struct ec_err *err)
{
    static const char *const allowed[] = { "edgecoder-local", "ollama-local", NULL };
    return ec_cfg_validate_one_of(v, allowed, err);
}

static enum ec_status validate_network_mode(const char *v, struct ec_err *err)
{
    static const char *const allowed[] = { "public_mesh", "enterprise_overlay", NULL };
    return ec_cfg_validate_one_of(v, allowed, err);
}

static bool set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

static void coord_check(const void *cfgp, bool production, struct ec_cfg_problems *p)
{
    const struct coord_config *c = cfgp;
    edge_env_check(&c->http, p);
    if (c->port != 0 && c->port == c->grpc_port)
        ec_cfg_problem(p, "COORDINATOR_GRPC_PORT", "must differ from COORDINATOR_PORT (%lld)",
                       (long long)c->port);
    if (c->nonce_ttl_ms < 2 * c->max_skew_ms)
        ec_cfg_problem(p, "SECURITY_NONCE_TTL_MS",
                       "%lld is shorter than twice SECURITY_MAX_SKEW_MS (%lld): a replay inside "
                       "the skew window would go unseen",
                       (long long)c->nonce_ttl_ms, (long long)c->max_skew_ms);
    bool tls = rpc_tls_cfg_check(c->tls_ca, c->tls_cert, c->tls_key, production, "Coordinator", p);
    if (set(c->public_key_pem) && !set(c->private_key_pem))
        ec_cfg_problem(p, "COORDINATOR_PUBLIC_KEY_PEM",
                       "is set without COORDINATOR_PRIVATE_KEY_PEM (the key it belongs to)");
    if (set(c->public_key_pem) && set(c->private_key_pem)) {
        struct ec_key *priv = NULL, *pub = NULL;
        if (ec_key_load_private_pem(EC_KEY_ED25519, c->private_key_pem, strlen(c->private_key_pem),
                                    &priv, NULL) == EC_OK &&
            ec_key_load_public_pem(EC_KEY_ED25519, c->public_key_pem, strlen(c->public_key_pem),
                                   &pub, NULL) == EC_OK) {
            uint8_t a[EC_KEY_RAW_LEN], b[EC_KEY_RAW_LEN];
            ec_key_export_raw_public(priv, a);
            ec_key_export_raw_public(pub, b);
            if (memcmp(a, b, sizeof(a)) != 0)
                ec_cfg_problem(p, "COORDINATOR_PUBLIC_KEY_PEM",
                               "is not the public half of COORDINATOR_PRIVATE_KEY_PEM");
        }
        ec_key_free(priv);
        ec_key_free(pub);
    }
    if (set(c->inference_url) && !tls)
        ec_cfg_problem(p, "INFERENCE_URL",
                       "needs this coordinator's mTLS identity (EDGECODER_TLS_CA, "
                       "EDGECODER_TLS_CERT, EDGECODER_TLS_KEY) to call Inference");
    if (set(c->portal_service_url) && !tls)
        ec_cfg_problem(p, "PORTAL_SERVICE_URL",
                       "needs this coordinator's mTLS identity (EDGECODER_TLS_CA, "
                       "EDGECODER_TLS_CERT, EDGECODER_TLS_KEY) to call PortalInternal");
    if (!production)
        return;
    /* Production: no open doors. Without the portal every registration would be allowed and
     * handed the mesh token; without TLS files the control plane could not reach us. */
    if (!set(c->portal_service_url))
        ec_cfg_problem(p, "PORTAL_SERVICE_URL",
                       "is required when EDGECODER_ENV=production (without the enrollment gate "
                       "any caller could register and receive the mesh token)");
    if (!set(c->portal_service_token))
        ec_cfg_problem(p, "PORTAL_SERVICE_TOKEN", "is required when EDGECODER_ENV=production");
}

static const struct ec_cfg_var coord_vars[] = {
    { "COORDINATOR_PORT", EC_CFG_INT, CFG(port), "4301", 0, 65535, 0, NULL,
      "port of the HTTP edge (agent JSON API, /status, /health/runtime, /metrics); 0 picks one" },
    { "COORDINATOR_GRPC_PORT", EC_CFG_INT, CFG(grpc_port), "4401", 0, 65535, 0, NULL,
      "port of the gRPC Coordinator service (mTLS); 0 picks one" },
    { "DATABASE_URL", EC_CFG_STR, CFG(database_url), NULL, 0, 0, EC_CFG_REQUIRED | EC_CFG_SECRET,
      NULL, "PostgreSQL URL of the coordinator database (shared with the control plane)" },
    { "COORDINATOR_DB_POOL_SIZE", EC_CFG_INT, CFG(db_pool_size), "16", 1, 200, 0, NULL,
      "PostgreSQL connections this machine may open" },
    { "MESH_AUTH_TOKEN", EC_CFG_STR, CFG(mesh_token), NULL, 0, 0,
      EC_CFG_SECRET | EC_CFG_REQUIRED_PROD, NULL,
      "x-mesh-token every route but POST /register and GET /health/runtime requires; "
      "handed to agents the enrollment gate admits; unset (development only): no check" },
    { "COORDINATOR_PEER_ID", EC_CFG_STR, CFG(peer_id), NULL, 0, 0, 0, validate_peer_id,
      "this coordinator's id; default coord-<first 12 hex of sha256(COORDINATOR_PUBLIC_URL)>" },
    { "COORDINATOR_PRIVATE_KEY_PEM", EC_CFG_STR, CFG(private_key_pem), NULL, 0, 0,
      EC_CFG_SECRET | EC_CFG_REQUIRED_PROD, ec_key_validate_ed25519_private_pem,
      "Ed25519 private key (PKCS#8 PEM text) signing ledger records; unset (development "
      "only): an ephemeral key per start, so old signatures stop verifying" },
    { "COORDINATOR_PUBLIC_KEY_PEM", EC_CFG_STR, CFG(public_key_pem), NULL, 0, 0, 0,
      ec_key_validate_ed25519_public_pem,
      "its public key (SPKI PEM text); derived from the private key when unset" },
    { "COORDINATOR_PUBLIC_URL", EC_CFG_URL, CFG(public_url), "http://127.0.0.1:4301", 0, 0, 0, NULL,
      "the URL peers and agents reach this coordinator at (GET /identity)" },
    { "PORTAL_SERVICE_URL", EC_CFG_URL, CFG(portal_service_url), NULL, 0, 0, 0, validate_portal_url,
      "the portal's PortalInternal gRPC address for the enrollment gate: grpcs://host:port, "
      "or https://host whose host is used with port 4410; unset (development only): every "
      "registration is allowed" },
    { "PORTAL_SERVICE_TOKEN", EC_CFG_STR, CFG(portal_service_token), NULL, 0, 0, EC_CFG_SECRET,
      NULL,
      "sent to the portal as x-portal-service-token; also opens "
      "GET /agent/diagnostics/:agentId to the portal" },
    { "INFERENCE_URL", EC_CFG_URL, CFG(inference_url), NULL, 0, 0, 0, validate_inference_url,
      "the inference service's gRPC address (grpcs://host:port, or https://host with port "
      "4402); unset: /submit makes one subtask per task, as the original's fallback did" },
    { "INFERENCE_AUTH_TOKEN", EC_CFG_STR, CFG(inference_auth_token), NULL, 0, 0, EC_CFG_SECRET,
      NULL, "sent to the inference service as x-inference-token" },
    { "COORDINATOR_INFERENCE_TIMEOUT_MS", EC_CFG_INT, CFG(inference_timeout_ms), "120000", 1000,
      600000, 0, NULL,
      "how long /submit waits for Inference.Decompose (a cold model load is slow) before it "
      "falls back to one subtask" },
    { "OLLAMA_HOST", EC_CFG_STR, CFG(ollama_host), "http://127.0.0.1:11434", 0, 0, 0,
      validate_ollama_host, "Ollama base URL probed by GET /health/runtime" },
    { "LOCAL_MODEL_PROVIDER", EC_CFG_STR, CFG(local_model_provider), "edgecoder-local", 0, 0, 0,
      validate_provider, "edgecoder-local or ollama-local (reported by /health/runtime)" },
    { "OLLAMA_MODEL", EC_CFG_STR, CFG(ollama_model), "qwen2.5:7b", 0, 0, 0, NULL,
      "the coordinator's local model" },
    { "NETWORK_MODE", EC_CFG_STR, CFG(network_mode), "public_mesh", 0, 0, 0, validate_network_mode,
      "public_mesh or enterprise_overlay (GET /features, /identity)" },
    { "SECURITY_MAX_SKEW_MS", EC_CFG_INT, CFG(max_skew_ms), "120000", 1000, 3600000, 0, NULL,
      "signed agent requests: largest clock difference accepted, milliseconds" },
    { "SECURITY_NONCE_TTL_MS", EC_CFG_INT, CFG(nonce_ttl_ms), "300000", 2000, 7200000, 0, NULL,
      "signed agent requests: how long a nonce is remembered (at least twice the skew)" },
    { "COORDINATOR_NONCE_CAPACITY", EC_CFG_INT, CFG(nonce_capacity), "4194304", 65536, 67108864, 0,
      NULL,
      "signed requests remembered at once (about 15 bytes each, allocated as needed); a full "
      "cache refuses signed requests with 429, so keep it above the signed request rate times "
      "(SECURITY_NONCE_TTL_MS - SECURITY_MAX_SKEW_MS)" },
    { "AGENT_RATE_LIMIT_MAX", EC_CFG_INT, CFG(rate_limit_max), "30", 1, 1000000000, 0, NULL,
      "signed requests per agent per window (reset by each /register, as the original did; "
      "loopback callers are exempt)" },
    { "AGENT_RATE_LIMIT_WINDOW_MS", EC_CFG_INT, CFG(rate_limit_window_ms), "60000", 100, 3600000, 0,
      NULL, "the rate limit's sliding window, milliseconds" },
    { "COORDINATOR_MAX_ATTEMPTS", EC_CFG_INT, CFG(max_attempts), "3", 1, 100, 0, NULL,
      "leases a subtask may have before it fails for good" },
    { "COORDINATOR_LEASE_GRACE_MS", EC_CFG_INT, CFG(lease_grace_ms), "30000", 0, 3600000, 0, NULL,
      "a lease lasts the subtask's timeoutMs plus this; the holder's heartbeats extend it" },
    { "COORDINATOR_AGENT_ONLINE_WINDOW_MS", EC_CFG_INT, CFG(online_window_ms), "120000", 1000,
      86400000, 0, NULL, "an agent seen within this window counts as connected" },
    RPC_TLS_CFG_VARS(struct coord_config, "coordinator"),
    EDGE_ENV_CFG_VARS(struct coord_config, http),
    EC_LOG_ENV_CFG_VARS(struct coord_config, log),
};

const struct ec_cfg_spec coord_config_spec = {
    .service = "coordinator",
    .vars = coord_vars,
    .nvars = sizeof(coord_vars) / sizeof(coord_vars[0]),
    .check = coord_check,
};
