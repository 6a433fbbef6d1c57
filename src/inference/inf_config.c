/* The inference service's configuration table: every variable it reads, with defaults, ranges,
 * validators and the production rules; `edgecoder inference --help-config` prints it. */
#include "inference/inference.h"

#include "common/ec_crypto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CFG(field) offsetof(struct inf_config, field)

static enum ec_status validate_ollama_host(const char *v, struct ec_err *err)
{
    char *url = NULL;
    enum ec_status st = inf_ollama_base_url(v, &url, err);
    free(url);
    return st;
}

static enum ec_status validate_keys_json(const char *v, struct ec_err *err)
{
    struct inf_sig_verifier *ver = inf_sig_verifier_new(NULL);
    enum ec_status st = inf_sig_verifier_add_json(ver, v, err);
    inf_sig_verifier_free(ver);
    return st;
}

static bool set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

static void inf_check(const void *cfgp, bool production, struct ec_cfg_problems *p)
{
    const struct inf_config *c = cfgp;
    edge_env_check(&c->http, p);
    if (c->port != 0 && c->port == c->grpc_port)
        ec_cfg_problem(p, "INFERENCE_GRPC_PORT", "must differ from INFERENCE_PORT (%lld)",
                       (long long)c->port);
    if (set(c->coordinator_peer_id) != set(c->coordinator_public_key_pem))
        ec_cfg_problem(p, "INFERENCE_COORDINATOR_PUBLIC_KEY_PEM",
                       "INFERENCE_COORDINATOR_PEER_ID and INFERENCE_COORDINATOR_PUBLIC_KEY_PEM go "
                       "together");
    if (c->nonce_ttl_ms < c->max_skew_ms)
        ec_cfg_problem(p, "INFERENCE_NONCE_TTL_MS",
                       "%lld is shorter than INFERENCE_MAX_SIGNATURE_SKEW_MS (%lld): a replay "
                       "inside the skew window would go unseen",
                       (long long)c->nonce_ttl_ms, (long long)c->max_skew_ms);
    bool any_key = set(c->coordinator_public_key_pem) || set(c->trusted_keys_json);
    if (c->require_signed && !any_key)
        ec_cfg_problem(p, "INFERENCE_REQUIRE_SIGNED_COORDINATOR_REQUESTS",
                       "is true but no coordinator key is trusted "
                       "(INFERENCE_COORDINATOR_PUBLIC_KEY_PEM or "
                       "INFERENCE_TRUSTED_COORDINATOR_KEYS_JSON): every call would be refused");
    rpc_tls_cfg_check(c->tls_ca, c->tls_cert, c->tls_key, production, "Inference", p);
    if (!production)
        return;
    if (!set(c->auth_token))
        ec_cfg_problem(p, "INFERENCE_AUTH_TOKEN", "is required when EDGECODER_ENV=production");
    if (!any_key)
        ec_cfg_problem(p, "INFERENCE_COORDINATOR_PUBLIC_KEY_PEM",
                       "a trusted coordinator key is required when EDGECODER_ENV=production "
                       "(or INFERENCE_TRUSTED_COORDINATOR_KEYS_JSON)");
}

static const struct ec_cfg_var inf_vars[] = {
    { "INFERENCE_PORT", EC_CFG_INT, CFG(port), "4302", 0, 65535, 0, NULL,
      "port of the HTTP edge (/health, /metrics); 0 picks one" },
    { "INFERENCE_GRPC_PORT", EC_CFG_INT, CFG(grpc_port), "4402", 0, 65535, 0, NULL,
      "port of the gRPC Inference service (mTLS); 0 picks one" },
    { "OLLAMA_HOST", EC_CFG_STR, CFG(ollama_host), "http://127.0.0.1:11434", 0, 0, 0,
      validate_ollama_host, "Ollama base URL (\"host:port\" without a scheme means http://)" },
    { "OLLAMA_COORDINATOR_MODEL", EC_CFG_STR, CFG(coordinator_model), "qwen2.5:7b", 0, 0, 0, NULL,
      "the model Decompose asks" },
    { "OLLAMA_ESCALATION_MODEL", EC_CFG_STR, CFG(escalation_model), "qwen2.5:7b", 0, 0, 0, NULL,
      "the model Escalate asks" },
    { "OLLAMA_MODEL", EC_CFG_STR, CFG(default_model), "qwen2.5:7b", 0, 0, 0, NULL,
      "the model Generate and Chat use when the request names none" },
    { "OLLAMA_CONNECT_TIMEOUT_MS", EC_CFG_INT, CFG(ollama_connect_timeout_ms), "2000", 100, 60000,
      0, NULL, "connecting to Ollama, milliseconds" },
    { "OLLAMA_FIRST_BYTE_TIMEOUT_MS", EC_CFG_INT, CFG(ollama_first_byte_timeout_ms), "120000", 100,
      3600000, 0, NULL, "request sent to Ollama's first answer byte (a cold model load is slow)" },
    { "OLLAMA_IDLE_TIMEOUT_MS", EC_CFG_INT, CFG(ollama_idle_timeout_ms), "60000", 100, 3600000, 0,
      NULL, "a stream from Ollama silent this long is cancelled" },
    { "INFERENCE_DECOMPOSE_TIMEOUT_MS", EC_CFG_INT, CFG(decompose_timeout_ms), "300000", 1000,
      3600000, 0, NULL, "the longest Decompose waits for the model before falling back" },
    { "INFERENCE_AUTH_TOKEN", EC_CFG_STR, CFG(auth_token), NULL, 0, 0,
      EC_CFG_SECRET | EC_CFG_REQUIRED_PROD, NULL,
      "x-inference-token every call must carry (inference_unauthorized); unset "
      "(development only): no token check" },
    { "INFERENCE_REQUIRE_SIGNED_COORDINATOR_REQUESTS", EC_CFG_BOOL, CFG(require_signed), "false", 0,
      0, 0, NULL,
      "require the coordinator's Ed25519 signature metadata (also required whenever a trusted "
      "key is configured)" },
    { "INFERENCE_COORDINATOR_PEER_ID", EC_CFG_STR, CFG(coordinator_peer_id), NULL, 0, 0, 0, NULL,
      "peer id of the coordinator whose key is INFERENCE_COORDINATOR_PUBLIC_KEY_PEM" },
    { "INFERENCE_COORDINATOR_PUBLIC_KEY_PEM", EC_CFG_STR, CFG(coordinator_public_key_pem), NULL, 0,
      0, 0, ec_key_validate_ed25519_public_pem,
      "a trusted coordinator's Ed25519 public key (SPKI PEM text)" },
    { "INFERENCE_TRUSTED_COORDINATOR_KEYS_JSON", EC_CFG_STR, CFG(trusted_keys_json), NULL, 0, 0, 0,
      validate_keys_json, "more trusted coordinators: {\"peerId\":\"PEM\", ...}" },
    { "INFERENCE_MAX_SIGNATURE_SKEW_MS", EC_CFG_INT, CFG(max_skew_ms), "120000", 1000, 3600000, 0,
      NULL, "largest clock difference a signature may have, milliseconds" },
    { "INFERENCE_NONCE_TTL_MS", EC_CFG_INT, CFG(nonce_ttl_ms), "300000", 1000, 7200000, 0, NULL,
      "how long a signature nonce is remembered (at least the skew)" },
    { "INFERENCE_NONCE_CAPACITY", EC_CFG_INT, CFG(nonce_capacity), "1048576", 1024, 67108864, 0,
      NULL, "nonces remembered at once; a full cache refuses signed calls (RESOURCE_EXHAUSTED)" },
    { "INFERENCE_MAX_STREAMS", EC_CFG_INT, CFG(max_streams), "64", 1, 4096, 0, NULL,
      "concurrent Generate, Chat and PullModel streams" },
    RPC_TLS_CFG_VARS(struct inf_config, "inference"),
    EDGE_ENV_CFG_VARS(struct inf_config, http),
    EC_LOG_ENV_CFG_VARS(struct inf_config, log),
};

const struct ec_cfg_spec inf_config_spec = {
    .service = "inference",
    .vars = inf_vars,
    .nvars = sizeof(inf_vars) / sizeof(inf_vars[0]),
    .check = inf_check,
};
