/* The agent's own routes: POST /register (enrollment gate, key registration), POST /heartbeat
 * (liveness, in memory), and POST/GET /agent/diagnostics. */
#include "coord/coord_auth.h"
#include "coord/coord_http_int.h"
#include "common/ec_mem.h"

#include <stdio.h>
#include <string.h>

static const char *const modes[] = { "swarm-only", "ide-enabled", NULL };
static const char *const providers[] = { "edgecoder-local", "ollama-local", NULL };
static const char *const sandboxes[] = { "none", "docker", "vm", "bubblewrap", NULL };

#define PEM_MAX   2048
#define TOKEN_MAX 512

/* --- POST /register ---------------------------------------------------------------------- */

static void key_free_cleanup(void *p)
{
    ec_key_free(p);
}

static enum ec_status parse_keys(struct ec_arena *arena, struct coord_register_input *in,
                                 struct ec_err *err)
{
    if (in->p.public_key_pem != NULL) {
        if (ec_key_load_public_pem(EC_KEY_ED25519, in->p.public_key_pem,
                                   strlen(in->p.public_key_pem), &in->public_key, NULL) != EC_OK)
            return ec_err_set(err, EC_EINVAL, NULL,
                              "publicKeyPem: is not an Ed25519 public key (SPKI PEM)");
        ec_arena_defer(arena, key_free_cleanup, in->public_key);
    }
    if (in->p.x25519_public_key != NULL) {
        uint8_t raw[EC_KEY_RAW_LEN + 2];
        size_t n = 0;
        struct ec_key *k = NULL;
        if (ec_b64_decode(raw, sizeof(raw), &n, in->p.x25519_public_key,
                          strlen(in->p.x25519_public_key), NULL) != EC_OK ||
            n != EC_KEY_RAW_LEN ||
            ec_key_import_raw_public(EC_KEY_X25519, raw, n, &k, NULL) != EC_OK)
            return ec_err_set(err, EC_EINVAL, NULL,
                              "x25519PublicKey: expected base64 of a raw 32-byte X25519 key");
        ec_key_free(k);
    }
    return EC_OK;
}

enum ec_status coord__parse_register(struct ec_arena *arena, const json_t *b,
                                     struct coord_register_input *in, struct ec_err *err)
{
    struct coord_agent_profile *p = &in->p;
    int64_t maxc = 1;
    enum ec_status st;
    if ((st = coord__field_id(b, "agentId", true, &p->agent_id, err)) != EC_OK ||
        (st = coord__field_str(b, "deviceId", false, 3, 128, NULL, &p->device_id, err)) != EC_OK ||
        (st = coord__field_str(b, "os", true, 2, 64, NULL, &p->os, err)) != EC_OK ||
        (st = coord__field_str(b, "version", true, 1, 64, NULL, &p->version, err)) != EC_OK ||
        (st = coord__field_enum(b, "mode", modes, true, NULL, &p->mode, err)) != EC_OK ||
        (st = coord__field_str(b, "registrationToken", false, 0, TOKEN_MAX, NULL,
                               &in->registration_token, err)) != EC_OK ||
        (st = coord__field_enum(b, "localModelProvider", providers, false, "edgecoder-local",
                                &p->local_model_provider, err)) != EC_OK ||
        (st = coord__field_str(b, "clientType", false, 1, 64, "edgecoder-native", &p->client_type,
                               err)) != EC_OK ||
        (st = coord__field_int(b, "maxConcurrentTasks", false, 1, 64, 1, &maxc, err)) != EC_OK ||
        (st = coord__field_object_text(b, "powerTelemetry", COORD_TELEMETRY_MAX, arena,
                                       &p->power_telemetry_json, err)) != EC_OK ||
        (st = coord__field_str(b, "publicKeyPem", false, 1, PEM_MAX, NULL, &p->public_key_pem,
                               err)) != EC_OK ||
        (st = coord__field_str(b, "x25519PublicKey", false, 1, 64, NULL, &p->x25519_public_key,
                               err)) != EC_OK ||
        (st = coord__field_enum(b, "sandboxMode", sandboxes, false, "none", &p->sandbox_mode,
                                err)) != EC_OK)
        return st;
    p->max_concurrent_tasks = (int)maxc;
    return parse_keys(arena, in, err);
}

static bool same_key(const struct ec_key *a, const struct ec_key *b)
{
    uint8_t ra[EC_KEY_RAW_LEN], rb[EC_KEY_RAW_LEN];
    ec_key_export_raw_public(a, ra);
    ec_key_export_raw_public(b, rb);
    return memcmp(ra, rb, sizeof(ra)) == 0;
}

/* The original never checked /register's signature. Here a signed /register must verify, with
 * the key it registers (proof of possession) or else the one on file; a keyed agent's unsigned
 * /register is refused like its other unsigned requests; an unknown agent may still register
 * unsigned (its later requests must then be signed if it registers a key). */
static enum ec_status verify_register(struct edge_req *req, const struct coord_register_input *in,
                                      const struct coord_agent_view *known, struct ec_err *err)
{
    struct coord *c = req->ctx;
    struct coord_signed_headers h = {
        .agent_id = edge_req_header(req, "x-agent-id"),
        .timestamp_ms = edge_req_header(req, "x-timestamp-ms"),
        .nonce = edge_req_header(req, "x-nonce"),
        .body_sha256 = edge_req_header(req, "x-body-sha256"),
        .signature = edge_req_header(req, "x-signature"),
    };
    bool any = h.agent_id || h.timestamp_ms || h.nonce || h.body_sha256 || h.signature;
    const struct ec_key *key = coord_agent_key_get(known->key);
    if (any && in->public_key != NULL)
        key = in->public_key;
    return coord_auth_verify(c->auth, &h, "POST", req->path, req->body, req->body_len, key,
                             in->p.agent_id, coord__socket_is_loopback(req), ec_now_ms(), err);
}

/* What the decision depends on: the same again within COORD_REGISTER_CACHE_MS is answered from
 * memory (the original's workers register every loop). */
static void register_fingerprint(const struct coord_register_input *in,
                                 uint8_t fp[COORD_REGISTER_FP_LEN])
{
    const struct coord_agent_profile *p = &in->p;
    const char *parts[] = { p->agent_id,
                            in->registration_token,
                            p->public_key_pem,
                            p->x25519_public_key,
                            p->device_id,
                            p->os,
                            p->version,
                            p->mode,
                            p->local_model_provider,
                            p->client_type,
                            p->sandbox_mode };
    struct ec_sha256_ctx *ctx = ec_sha256_new();
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        uint8_t sep[2] = { parts[i] == NULL ? 0 : 1, 0x1f };
        ec_sha256_update(ctx, sep, sizeof(sep));
        if (parts[i] != NULL)
            ec_sha256_update(ctx, parts[i], strlen(parts[i]));
    }
    uint8_t maxc = (uint8_t)p->max_concurrent_tasks;
    ec_sha256_update(ctx, &maxc, 1);
    ec_sha256_final(ctx, fp);
    ec_sha256_free(ctx);
}

static void register_reply(struct coord *c, struct edge_resp *resp, const char *mode,
                           int max_concurrent_tasks)
{
    json_t *policy = json_loads(COORD_POLICY_JSON, 0, NULL);
    json_object_set_new(policy, "maxConcurrentTasks", json_integer(max_concurrent_tasks));
    json_t *out = json_pack("{s:b,s:o,s:s}", "accepted", 1, "policy", policy, "mode", mode);
    if (c->cfg->mesh_token != NULL && c->cfg->mesh_token[0] != '\0')
        json_object_set_new(out, "meshToken", json_string(c->cfg->mesh_token));
    edge_resp_json(resp, out);
}

/* Refusals that speak for the node's state at the portal, given only to the holder of its
 * valid token (or when the node is gone): they revoke a registered agent. A wrong token does
 * not, or anyone could revoke anyone. */
static bool portal_verdict(const char *reason)
{
    static const char *const verdicts[] = { "email_unverified", "node_pending_coordinator_approval",
                                            "node_inactive", "node_not_enrolled" };
    for (size_t i = 0; i < sizeof(verdicts) / sizeof(verdicts[0]); i++)
        if (strcmp(reason, verdicts[i]) == 0)
            return true;
    return false;
}

/* A registered key is replaced only on a fresh yes from the portal (or where the gate is open by
 * configuration or loopback): a cached-agent pass must not let anyone swap in their own key. */
static bool key_change_allowed(const char *reason)
{
    return strcmp(reason, "ok") == 0 || strcmp(reason, "portal_validation_disabled") == 0 ||
           strcmp(reason, "loopback_self_registration") == 0;
}

enum ec_status coord__h_register(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    struct coord *c = req->ctx;
    json_t *body;
    enum ec_status st = coord__body_object(req, &body, err);
    if (st != EC_OK)
        return st;
    struct coord_register_input in = { 0 };
    if ((st = coord__parse_register(req->arena, body, &in, err)) != EC_OK)
        return st;
    struct coord_agent_view known = { 0 };
    st = coord_agents_lookup(c->agents, in.p.agent_id, req->arena, &known, err);
    if (st != EC_OK && st != EC_ENOTFOUND)
        return st;
    bool agent_known = st == EC_OK;
    ec_err_clear(err);
    if ((st = verify_register(req, &in, &known, err)) != EC_OK)
        return st;
    uint8_t fp[COORD_REGISTER_FP_LEN];
    register_fingerprint(&in, fp);
    if (agent_known && coord_agents_register_recent(c->agents, in.p.agent_id, fp,
                                                    in.p.power_telemetry_json, ec_now_ms())) {
        coord_auth_reset_agent(c->auth, in.p.agent_id);
        register_reply(c, resp, in.p.mode, in.p.max_concurrent_tasks);
        return EC_OK;
    }
    in.p.fingerprint = fp;

    struct coord_gate_decision d;
    st = coord_gate_check(c->gate, req->arena, in.p.agent_id, in.registration_token,
                          coord__gate_ip(req), agent_known, req->id, &d, err);
    if (st != EC_OK)
        return st;
    /* Adding a key to a known agent counts as a change too: else anyone could lock an unkeyed
     * agent out by registering a key of their own on the cached-agent pass. */
    bool key_changes =
        agent_known && in.public_key != NULL &&
        (known.key == NULL || !same_key(coord_agent_key_get(known.key), in.public_key));
    if (d.allowed && key_changes && !key_change_allowed(d.reason)) {
        d.allowed = false;
        d.reason = "registration_token_required";
    }
    in.p.owner_email = d.owner_email;
    in.p.enrollment_reason = d.reason;
    in.p.source_ip = req->client_ip;
    st = coord_agents_register(c->agents, req->arena, &in.p, in.public_key, d.allowed,
                               agent_known && portal_verdict(d.reason), c->peer_id, ec_now_ms(),
                               err);
    if (st != EC_OK)
        return st;
    EC_INFO("agent registration", EC_LS("req_id", req->id), EC_LS("agent_id", in.p.agent_id),
            EC_LB("allowed", d.allowed), EC_LS("reason", d.reason));
    if (!d.allowed)
        return ec_err_set(err, EC_EFORBIDDEN, "node_not_activated", "%s", d.reason);
    coord_auth_reset_agent(c->auth, in.p.agent_id);
    register_reply(c, resp, in.p.mode, in.p.max_concurrent_tasks);
    return EC_OK;
}

/* --- POST /heartbeat --------------------------------------------------------------------- */

enum ec_status coord__parse_heartbeat(struct ec_arena *arena, const json_t *b,
                                      struct coord_heartbeat *hb, struct ec_err *err)
{
    enum ec_status st;
    if ((st = coord__field_object_text(b, "powerTelemetry", COORD_TELEMETRY_MAX, arena,
                                       &hb->power_telemetry_json, err)) != EC_OK ||
        (st = coord__field_str(b, "activeModel", false, 0, 128, NULL, &hb->active_model, err)) !=
            EC_OK ||
        (st = coord__field_scalar_text(b, "activeModelParamSize", 32, arena,
                                       &hb->active_model_param_size, err)) != EC_OK ||
        (st = coord__field_bool(b, "modelSwapInProgress", false, -1, &hb->model_swap_in_progress,
                                err)) != EC_OK)
        return st;
    return coord__field_enum(b, "sandboxMode", sandboxes, false, NULL, &hb->sandbox_mode, err);
}

enum ec_status coord__h_heartbeat(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    struct coord *c = req->ctx;
    struct coord_agent_req ar;
    enum ec_status st = coord__agent_auth(req, &ar, err);
    if (st != EC_OK)
        return st;
    struct coord_heartbeat hb = { 0 };
    if ((st = coord__parse_heartbeat(req->arena, ar.body, &hb, err)) != EC_OK)
        return st;
    if ((st = coord_agents_heartbeat(c->agents, ar.agent_id, &hb, ec_now_ms(), err)) != EC_OK)
        return st;
    char *out =
        ec_arena_sprintf(req->arena,
                         "{\"ok\":true,\"requeued\":%lld,\"policy\":" COORD_POLICY_JSON
                         ",\"orchestration\":null,\"tunnelInvites\":[],\"tunnelCloseNotices\":[],"
                         "\"directWorkOffers\":[],\"blacklist\":{\"version\":0,\"agents\":[]}}",
                         (long long)atomic_load(&c->last_requeued));
    edge_resp_bytes(resp, "application/json", out, strlen(out));
    return EC_OK;
}

/* --- /agent/diagnostics ------------------------------------------------------------------ */

#define DIAG_EVENTS_MAX  40
#define DIAG_MESSAGE_MAX 500
#define DIAG_STATE_MAX   4096

/* runtimeState / modelState: a string or an object, kept as text. */
static enum ec_status state_text(const json_t *b, const char *name, struct ec_arena *arena,
                                 const char **out, struct ec_err *err)
{
    if (json_is_object(json_object_get(b, name)))
        return coord__field_object_text(b, name, DIAG_STATE_MAX, arena, out, err);
    return coord__field_str(b, name, false, 0, DIAG_STATE_MAX, NULL, out, err);
}

enum ec_status coord__parse_diag_events(const json_t *b, int64_t now_ms, json_t **out,
                                        struct ec_err *err)
{
    const json_t *events = json_object_get(b, "events");
    if (!json_is_array(events))
        return ec_err_set(err, EC_EINVAL, NULL, "events: expected an array");
    if (json_array_size(events) > DIAG_EVENTS_MAX)
        return ec_err_set(err, EC_EINVAL, NULL, "events: %zu items; at most %d",
                          json_array_size(events), DIAG_EVENTS_MAX);
    json_t *rows = json_array();
    size_t i;
    const json_t *ev;
    json_array_foreach(events, i, ev)
    {
        char field[32];
        const char *message;
        int64_t at;
        enum ec_status st = EC_OK;
        snprintf(field, sizeof(field), "events[%zu]", i);
        if (!json_is_object(ev))
            st = ec_err_set(err, EC_EINVAL, NULL, "%s: expected an object", field);
        if (st == EC_OK)
            st = coord__field_str(ev, "message", true, 1, DIAG_MESSAGE_MAX, NULL, &message, err);
        if (st == EC_OK)
            st = coord__field_int(ev, "eventAtMs", false, 0, INT64_C(1) << 50, now_ms, &at, err);
        if (st != EC_OK) {
            /* Name the item: "events[3].message: is required". */
            char inner[sizeof(err->msg)];
            snprintf(inner, sizeof(inner), "%s", err->msg);
            json_decref(rows);
            if (strncmp(inner, field, strlen(field)) == 0)
                return ec_err_set(err, EC_EINVAL, NULL, "%s", inner);
            return ec_err_set(err, EC_EINVAL, NULL, "%s.%s", field, inner);
        }
        json_array_append_new(
            rows, json_pack("{s:I,s:s}", "event_at_ms", (json_int_t)at, "message", message));
    }
    *out = rows;
    return EC_OK;
}

enum ec_status coord__h_diag_post(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    struct coord *c = req->ctx;
    json_t *body;
    const char *agent_id, *source, *runtime_state, *model_state;
    enum ec_status st = coord__body_object(req, &body, err);
    if (st != EC_OK)
        return st;
    if ((st = coord__field_id(body, "agentId", true, &agent_id, err)) != EC_OK ||
        (st = coord__field_str(body, "source", false, 0, 64, NULL, &source, err)) != EC_OK ||
        (st = state_text(body, "runtimeState", req->arena, &runtime_state, err)) != EC_OK ||
        (st = state_text(body, "modelState", req->arena, &model_state, err)) != EC_OK)
        return st;
    json_t *rows = NULL;
    int64_t now = ec_now_ms();
    if ((st = coord__parse_diag_events(body, now, &rows, err)) != EC_OK)
        return st;
    char *rows_text = json_dumps(rows, JSON_COMPACT);
    json_decref(rows);
    const char *events_json = ec_arena_strdup(req->arena, rows_text);
    free(rows_text);

    struct coord_agent_view agent;
    st = coord_agents_lookup(c->agents, agent_id, req->arena, &agent, err);
    if (st == EC_ENOTFOUND)
        return ec_err_set(err, EC_EUNAUTH, "agent_not_registered", "%s", "");
    if (st != EC_OK)
        return st;
    /* Signed diagnostics are verified; the original's workers send them unsigned, so unsigned
     * ones from a keyed agent are still taken (they change nothing but this log). */
    const char *sig = edge_req_header(req, "x-signature");
    if (sig != NULL) {
        struct coord_signed_headers h = {
            .agent_id = edge_req_header(req, "x-agent-id"),
            .timestamp_ms = edge_req_header(req, "x-timestamp-ms"),
            .nonce = edge_req_header(req, "x-nonce"),
            .body_sha256 = edge_req_header(req, "x-body-sha256"),
            .signature = sig,
        };
        st = coord_auth_verify(c->auth, &h, "POST", req->path, req->body, req->body_len,
                               coord_agent_key_get(agent.key), agent_id,
                               coord__socket_is_loopback(req), now, err);
        if (st != EC_OK)
            return st;
    }
    int stored = 0;
    st = coord_agents_diag_store(c->agents, req->arena, agent_id, events_json, source,
                                 runtime_state, model_state, now, &stored, err);
    if (st != EC_OK)
        return st;
    edge_resp_json(resp, json_pack("{s:b,s:i}", "ok", 1, "stored", stored));
    return EC_OK;
}

enum ec_status coord__h_diag_get(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    struct coord *c = req->ctx;
    const char *agent_id = edge_req_param(req, "agentId");
    if (agent_id == NULL || !coord__id_ok(agent_id, COORD_ID_MAX))
        return ec_err_set(err, EC_EINVAL, NULL, "agentId: must be 1..%d printable characters",
                          COORD_ID_MAX);
    json_t *out = NULL;
    enum ec_status st = coord_agents_diag_read(c->agents, req->arena, agent_id, &out, err);
    if (st != EC_OK)
        return st;
    edge_resp_json(resp, out);
    return EC_OK;
}
