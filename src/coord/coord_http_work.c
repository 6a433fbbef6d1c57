/* The work routes of an agent: POST /pull (a lease on the best subtask, sealed when the agent
 * registered an X25519 key) and POST /result (plain or sealed, accepted only from the lease's
 * holder and attempt). */
#include "coord/coord_envelope.h"
#include "coord/coord_http_int.h"

#include <stdlib.h>
#include <string.h>

#define SUBTASK_ID_MAX (COORD_ID_MAX + 16)
#define OUTPUT_MAX     (256 * 1024)
#define ERROR_MAX      (64 * 1024)
#define NONCE_MAX      256
#define SEALED_MAX     (OUTPUT_MAX * 2) /* base64 of a sealed {ok, output, error, durationMs} */

static json_t *str_or_null(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}

static json_t *subtask_json(const struct coord_claim *k)
{
    json_t *meta = json_pack("{s:s,s:s,s:i}", "projectId", k->project_id, "resourceClass",
                             k->resource_class, "priority", k->priority);
    if (k->tenant_id != NULL)
        json_object_set_new(meta, "tenantId", json_string(k->tenant_id));
    json_t *s =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:s,s:o,s:i,s:i,s:I}", "id", k->subtask_id, "taskId",
                  k->task_id, "kind", k->kind, "language", k->language, "input", k->input,
                  "timeoutMs", (json_int_t)k->timeout_ms, "snapshotRef", k->snapshot_ref,
                  "projectMeta", meta, "subtaskIndex", k->subtask_index, "attempt", k->attempt,
                  "leaseExpiresAtMs", (json_int_t)k->lease_expires_at_ms);
    if (k->requested_model != NULL)
        json_object_set_new(s, "requestedModel", json_string(k->requested_model));
    return s;
}

static json_t *envelope_json(const struct coord_claim *k)
{
    json_t *meta =
        json_pack("{s:s,s:i,s:s,s:i,s:s,s:I,s:s,s:o}", "resourceClass", k->resource_class,
                  "priority", k->priority, "language", k->language, "attempt", k->attempt, "taskId",
                  k->task_id, "timeoutMs", (json_int_t)k->timeout_ms, "kind", k->kind,
                  "requestedModel", str_or_null(k->requested_model));
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:o}", "subtaskId", k->subtask_id, "ephemeralPublicKey",
                     k->env_ephemeral_public_key, "encryptedPayload", k->env_encrypted_payload,
                     "nonce", k->env_nonce, "tag", k->env_tag, "metadata", meta);
}

enum ec_status coord__h_pull(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    struct coord *c = req->ctx;
    struct coord_agent_req ar;
    enum ec_status st = coord__agent_auth(req, &ar, err);
    if (st != EC_OK)
        return st;
    struct coord_claim_agent agent = {
        .agent_id = ar.agent_id,
        .active_model = ar.agent.active_model,
        .has_sandbox = strcmp(ar.agent.sandbox_mode, "none") != 0,
        .x25519_public_key = ar.agent.x25519_public_key,
    };
    if (coord_queue_surely_empty(c)) {
        edge_resp_json_text(resp, "{\"subtask\":null}");
        return EC_OK;
    }
    struct coord_claim *claim = NULL;
    if ((st = coord_queue_claim(c->queue, req->arena, &agent, &claim, err)) != EC_OK)
        return st;
    if (claim == NULL) {
        edge_resp_json_text(resp, "{\"subtask\":null}");
        return EC_OK;
    }
    coord_agents_lease_claimed(c->agents, ar.agent_id);
    json_t *out = claim->sealed
                      ? json_pack("{s:n,s:o}", "subtask", "envelope", envelope_json(claim))
                      : json_pack("{s:o}", "subtask", subtask_json(claim));
    if (out == NULL)
        return ec_err_set(err, EC_EINTERNAL, NULL, "cannot encode the claim of %s",
                          claim->subtask_id);
    edge_resp_json(resp, out);
    return EC_OK;
}

static void json_decref_cleanup(void *p)
{
    json_decref(p);
}

/* The answer inside a sealed result: {ok, output, error?, durationMs}. */
static enum ec_status open_sealed(struct coord *c, struct edge_req *req, const json_t *body,
                                  struct coord_result *r, json_t **inner, struct ec_err *err)
{
    const char *payload, *nonce, *tag;
    enum ec_status st;
    if ((st = coord__field_str(body, "encryptedPayload", true, 1, SEALED_MAX, NULL, &payload,
                               err)) != EC_OK ||
        (st = coord__field_str(body, "nonce", true, 1, 64, NULL, &nonce, err)) != EC_OK ||
        (st = coord__field_str(body, "tag", true, 1, 64, NULL, &tag, err)) != EC_OK)
        return st;
    uint8_t key[COORD_ENVELOPE_KEY_LEN];
    if ((st = coord_queue_lease_key(c->queue, r->subtask_id, r->agent_id, key, err)) != EC_OK)
        return st;
    char *plain = NULL;
    size_t len = 0;
    st = coord_envelope_open(key, payload, nonce, tag, req->arena, &plain, &len, err);
    ec_crypto_wipe(key, sizeof(key));
    if (st != EC_OK)
        return ec_err_set(err, EC_EINVAL, "envelope_decrypt_failed", "%s", "");
    *inner = json_loadb(plain, len, 0, NULL);
    if (!json_is_object(*inner)) {
        json_decref(*inner);
        *inner = NULL;
        return ec_err_set(err, EC_EINVAL, "envelope_decrypt_failed",
                          "the sealed result is not a JSON object");
    }
    ec_arena_defer(req->arena, json_decref_cleanup, *inner);
    return EC_OK;
}

enum ec_status coord__parse_answer(const json_t *o, struct coord_result *r, struct ec_err *err)
{
    int ok = 0;
    int64_t duration = 0;
    enum ec_status st;
    if ((st = coord__field_bool(o, "ok", true, 0, &ok, err)) != EC_OK ||
        (st = coord__field_str(o, "output", false, 0, OUTPUT_MAX, "", &r->output, err)) != EC_OK ||
        (st = coord__field_str(o, "error", false, 0, ERROR_MAX, NULL, &r->error, err)) != EC_OK ||
        (st = coord__field_int(o, "durationMs", false, 0, INT64_C(1) << 40, 0, &duration, err)) !=
            EC_OK)
        return st;
    r->ok = ok != 0;
    r->duration_ms = duration;
    return EC_OK;
}

enum ec_status coord__h_result(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    struct coord *c = req->ctx;
    struct coord_agent_req ar;
    enum ec_status st = coord__agent_auth(req, &ar, err);
    if (st != EC_OK)
        return st;
    struct coord_result r = { .agent_id = ar.agent_id };
    int64_t attempt = 0;
    if ((st = coord__field_str(ar.body, "subtaskId", true, 1, SUBTASK_ID_MAX, NULL, &r.subtask_id,
                               err)) != EC_OK ||
        (st = coord__field_str(ar.body, "taskId", false, 0, SUBTASK_ID_MAX, NULL, &r.task_id,
                               err)) != EC_OK ||
        (st = coord__field_int(ar.body, "attempt", false, 1, 1000000, 0, &attempt, err)) != EC_OK ||
        (st = coord__field_str(ar.body, "reportNonce", false, 0, NONCE_MAX, NULL, &r.report_nonce,
                               err)) != EC_OK ||
        (st = coord__field_str(ar.body, "reportSignature", false, 0, NONCE_MAX, NULL,
                               &r.report_signature, err)) != EC_OK)
        return st;
    r.attempt = (int)attempt;
    if (json_object_get(ar.body, "encryptedPayload") != NULL) {
        json_t *inner = NULL;
        if ((st = open_sealed(c, req, ar.body, &r, &inner, err)) != EC_OK ||
            (st = coord__parse_answer(inner, &r, err)) != EC_OK)
            return st;
    } else if ((st = coord__parse_answer(ar.body, &r, err)) != EC_OK) {
        return st;
    }
    bool duplicate = false;
    if ((st = coord_queue_complete(c->queue, req->arena, &r, &duplicate, err)) != EC_OK)
        return st;
    if (!duplicate) {
        coord_agents_lease_done(c->agents, ar.agent_id);
        coord_work_added(c); /* dependants may have been released */
    }
    edge_resp_json_text(resp, duplicate ? "{\"ok\":true,\"duplicate\":true}" : "{\"ok\":true}");
    return EC_OK;
}
