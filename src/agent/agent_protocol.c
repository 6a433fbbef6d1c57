/* The agent's side of the coordinator's JSON API (original-system.md §2.1, §4, §5.3, §5.7):
 * POST /register, /heartbeat, /pull (plain or sealed work) and /result (plain or sealed), and
 * what each answer means for the runtime: carry on, register again, stay dormant, or retry. */
#include "agent/agent_int.h"
#include "common/ec_log.h"
#include "common/ec_mem.h"
#include "coord/coord_envelope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INPUT_MAX (1u << 20)

const char *agent_outcome_name(enum agent_outcome o)
{
    static const char *const names[] = { "ok",    "unregistered", "dormant",
                                         "retry", "rate_limited", "dropped" };
    return (size_t)o < sizeof(names) / sizeof(names[0]) ? names[o] : "unknown";
}

enum agent_outcome agent_classify(long status, const char *error, const char *reason)
{
    if (status >= 200 && status < 300)
        return AGENT_OK;
    if (status == 401) {
        if (strcmp(error, "mesh_unauthorized") == 0)
            return AGENT_UNREGISTERED; /* unknown agent, or no mesh token yet: /register gives it */
        if (strcmp(error, "signature_invalid") == 0) {
            if (strcmp(reason, "rate_limited") == 0)
                return AGENT_RATE_LIMITED;
            if (strcmp(reason, "agent_key_not_registered") == 0 ||
                strcmp(reason, "signature_mismatch") == 0 ||
                strcmp(reason, "unsigned_request_from_keyed_agent") == 0)
                return AGENT_UNREGISTERED;
        }
        return AGENT_RETRY;
    }
    if (status == 403 &&
        (strcmp(error, "node_not_activated") == 0 || strcmp(error, "agent_blacklisted") == 0))
        return AGENT_DORMANT;
    if (status == 429)
        return AGENT_RATE_LIMITED;
    return AGENT_RETRY;
}

static enum agent_outcome classify(const struct ec_http_response *resp)
{
    return agent_classify(resp->status, agent_resp_error(resp), agent_resp_reason(resp));
}

void agent_apply_policy(struct agent *a, const json_t *policy)
{
    if (!json_is_object(policy))
        return;
    const json_t *maxc = json_object_get(policy, "maxConcurrentTasks");
    const json_t *mem = json_object_get(policy, "memoryLimitMb");
    pthread_mutex_lock(&a->lock);
    int cap = (int)a->cfg->max_concurrent;
    if (json_is_integer(maxc) && json_integer_value(maxc) >= 1 && json_integer_value(maxc) < cap)
        cap = (int)json_integer_value(maxc);
    int64_t mem_mb = a->cfg->sandbox_memory_mb;
    if (json_is_integer(mem) && json_integer_value(mem) >= 16 && json_integer_value(mem) < mem_mb)
        mem_mb = json_integer_value(mem);
    bool changed = cap != a->cap || mem_mb != a->memory_limit_mb;
    a->cap = cap;
    a->memory_limit_mb = mem_mb;
    pthread_mutex_unlock(&a->lock);
    if (changed)
        EC_INFO("coordinator policy applied", EC_LI("max_concurrent_tasks", cap),
                EC_LI("memory_limit_mb", mem_mb));
}

static enum agent_outcome post(struct agent *a, const char *path, json_t *body, bool sign,
                               struct ec_http_response *resp, const char *url)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    EC_ASSERT(text != NULL);
    struct ec_err err = { 0 };
    enum ec_status st = agent_post(a, url, path, text, strlen(text), sign, resp, &err);
    free(text);
    if (st != EC_OK) {
        EC_INFO("coordinator request failed", EC_LS("path", path), EC_LS("url", url),
                EC_LS("reason", err.msg));
        return AGENT_RETRY;
    }
    enum agent_outcome o = classify(resp);
    if (o != AGENT_OK)
        EC_INFO("coordinator refused a request", EC_LS("path", path), EC_LI("status", resp->status),
                EC_LS("error", agent_resp_error(resp)), EC_LS("reason", agent_resp_reason(resp)),
                EC_LS("outcome", agent_outcome_name(o)));
    return o;
}

/* --- /register ---------------------------------------------------------------------------- */

enum agent_outcome agent_register(struct agent *a, char *reason, size_t reason_cap)
{
    const struct agent_config *cfg = a->cfg;
    json_t *b = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:{s:s}}", "agentId", a->agent_id, "os", a->os,
        "version", AGENT_VERSION, "mode", cfg->mode, "localModelProvider", cfg->provider,
        "clientType", cfg->client_type, "maxConcurrentTasks", (json_int_t)cfg->max_concurrent,
        "sandboxMode", a->sandbox_advertised, "publicKeyPem", a->id.public_pem, "x25519PublicKey",
        a->id.x25519_b64, "powerTelemetry", "deviceType", "server");
    if (cfg->device_id != NULL && cfg->device_id[0] != '\0')
        json_object_set_new(b, "deviceId", json_string(cfg->device_id));
    if (cfg->registration_token != NULL && cfg->registration_token[0] != '\0')
        json_object_set_new(b, "registrationToken", json_string(cfg->registration_token));
    char url[AGENT_URL_MAX];
    agent_coords_current(&a->coords, url, sizeof(url));
    struct ec_http_response resp;
    ec_http_response_init(&resp);
    enum agent_outcome o = post(a, "/register", b, true, &resp, url);
    snprintf(reason, reason_cap, "%s", agent_resp_reason(&resp));
    if (o == AGENT_OK) {
        const char *token = json_string_value(json_object_get(resp.json, "meshToken"));
        if (token != NULL && token[0] != '\0') {
            pthread_mutex_lock(&a->lock);
            free(a->mesh_token);
            a->mesh_token = ec_xstrdup(token);
            pthread_mutex_unlock(&a->lock);
        }
        agent_apply_policy(a, json_object_get(resp.json, "policy"));
    } else if (o == AGENT_UNREGISTERED) {
        o = AGENT_RETRY; /* /register itself cannot be "unregistered": a wrong key or token */
    }
    ec_http_response_release(&resp);
    return o;
}

/* --- /heartbeat --------------------------------------------------------------------------- */

enum agent_outcome agent_heartbeat(struct agent *a)
{
    json_t *b = json_pack("{s:s,s:s,s:{s:s}}", "agentId", a->agent_id, "sandboxMode",
                          a->sandbox_advertised, "powerTelemetry", "deviceType", "server");
    if (strcmp(a->cfg->provider, AGENT_PROVIDER_OLL) == 0)
        json_object_set_new(b, "activeModel", json_string(a->cfg->ollama_model));
    char url[AGENT_URL_MAX];
    agent_coords_current(&a->coords, url, sizeof(url));
    struct ec_http_response resp;
    ec_http_response_init(&resp);
    enum agent_outcome o = post(a, "/heartbeat", b, true, &resp, url);
    if (o == AGENT_OK) {
        if (json_is_true(json_object_get(resp.json, "blacklisted"))) {
            EC_WARN("this agent is blacklisted; dormant",
                    EC_LS("reason", agent_resp_reason(&resp)));
            o = AGENT_DORMANT;
        } else {
            agent_apply_policy(a, json_object_get(resp.json, "policy"));
        }
    }
    ec_http_response_release(&resp);
    return o;
}

/* --- /pull -------------------------------------------------------------------------------- */

static const char *str(const json_t *o, const char *name)
{
    return json_string_value(json_object_get(o, name));
}

static int64_t num(const json_t *o, const char *name, int64_t dflt)
{
    const json_t *v = json_object_get(o, name);
    return json_is_integer(v) ? json_integer_value(v) : dflt;
}

static struct agent_job *job_new(const char *url)
{
    struct agent_job *job = ec_xcalloc(1, sizeof(*job));
    snprintf(job->coordinator_url, sizeof(job->coordinator_url), "%s", url);
    job->received_at_ms = ec_now_ms();
    return job;
}

static struct agent_job *job_from_plain(const json_t *s, const char *url)
{
    const char *id = str(s, "id"), *input = str(s, "input");
    if (id == NULL || input == NULL)
        return NULL;
    struct agent_job *job = job_new(url);
    job->subtask_id = ec_xstrdup(id);
    job->task_id = ec_xstrdup(str(s, "taskId") != NULL ? str(s, "taskId") : "");
    job->language = ec_xstrdup(str(s, "language") != NULL ? str(s, "language") : "python");
    job->kind = ec_xstrdup(str(s, "kind") != NULL ? str(s, "kind") : "single_step");
    job->input = ec_xstrndup(input, strnlen(input, INPUT_MAX));
    job->attempt = (int)num(s, "attempt", 0);
    job->timeout_ms = num(s, "timeoutMs", 0);
    return job;
}

static struct agent_job *job_from_envelope(struct agent *a, const json_t *env, const char *url)
{
    const char *id = str(env, "subtaskId"), *eph = str(env, "ephemeralPublicKey");
    const char *payload = str(env, "encryptedPayload"), *nonce = str(env, "nonce");
    const char *tag = str(env, "tag");
    const json_t *meta = json_object_get(env, "metadata");
    if (id == NULL || eph == NULL || payload == NULL || nonce == NULL || tag == NULL) {
        EC_ERROR("a sealed subtask is missing fields; left to expire");
        return NULL;
    }
    struct agent_job *job = job_new(url);
    job->subtask_id = ec_xstrdup(id);
    job->sealed = true;
    struct ec_err err = { 0 };
    struct ec_arena arena;
    ec_arena_init(&arena);
    char *plain = NULL;
    size_t len = 0;
    json_t *inner = NULL;
    if (coord_envelope_agent_key(a->id.x25519, eph, id, job->key, &err) == EC_OK &&
        coord_envelope_open(job->key, payload, nonce, tag, &arena, &plain, &len, &err) == EC_OK)
        inner = json_loadb(plain, len, 0, NULL);
    if (plain != NULL)
        ec_crypto_wipe(plain, len);
    ec_arena_release(&arena);
    const char *input = str(inner, "input");
    if (input == NULL) {
        EC_ERROR("cannot open a sealed subtask; left to expire", EC_LS("subtask_id", id),
                 EC_LS("reason", err.msg[0] ? err.msg : "no input in the envelope"));
        json_decref(inner);
        agent_job_free(job);
        return NULL;
    }
    const char *lang = str(inner, "kind") != NULL ? str(inner, "kind") : str(meta, "language");
    job->input = ec_xstrndup(input, strnlen(input, INPUT_MAX));
    job->language = ec_xstrdup(lang != NULL ? lang : "python");
    job->task_id = ec_xstrdup(str(meta, "taskId") != NULL ? str(meta, "taskId") : "");
    job->kind = ec_xstrdup(str(meta, "kind") != NULL ? str(meta, "kind") : "single_step");
    job->attempt = (int)num(meta, "attempt", 0);
    job->timeout_ms = num(meta, "timeoutMs", 0);
    json_decref(inner);
    return job;
}

enum agent_outcome agent_pull(struct agent *a, struct agent_job **job, int64_t *defer_ms)
{
    *job = NULL;
    *defer_ms = 0;
    char url[AGENT_URL_MAX];
    agent_coords_current(&a->coords, url, sizeof(url));
    struct ec_http_response resp;
    ec_http_response_init(&resp);
    enum agent_outcome o =
        post(a, "/pull", json_pack("{s:s}", "agentId", a->agent_id), true, &resp, url);
    if (o == AGENT_OK) {
        const json_t *sub = json_object_get(resp.json, "subtask");
        const json_t *env = json_object_get(resp.json, "envelope");
        if (json_is_object(sub))
            *job = job_from_plain(sub, url);
        else if (json_is_object(env))
            *job = job_from_envelope(a, env, url);
        else if (json_is_true(json_object_get(resp.json, "powerDeferred")))
            *defer_ms = num(resp.json, "deferMs", 0);
        if (*job != NULL)
            EC_INFO("subtask taken", EC_LS("subtask_id", (*job)->subtask_id),
                    EC_LI("attempt", (*job)->attempt), EC_LS("language", (*job)->language),
                    EC_LB("sealed", (*job)->sealed));
    }
    ec_http_response_release(&resp);
    return o;
}

/* --- /result ------------------------------------------------------------------------------ */

/* The original's report signature: Ed25519 over {subtaskId,taskId,agentId,ok,durationMs,
 * reportNonce} as JSON, in that order. */
static void report_signature(struct agent *a, const struct agent_job *job, bool ok,
                             int64_t duration_ms, json_t *body)
{
    uint8_t rnd[16], sig[EC_ED25519_SIG_LEN];
    char nonce[33], sig_b64[EC_B64_ENCODED_LEN(EC_ED25519_SIG_LEN) + 1];
    ec_random_bytes(rnd, sizeof(rnd));
    ec_hex_encode(nonce, sizeof(nonce), rnd, sizeof(rnd));
    json_t *signed_part = json_pack("{s:s,s:s,s:s,s:b,s:I,s:s}", "subtaskId", job->subtask_id,
                                    "taskId", job->task_id, "agentId", a->agent_id, "ok", ok,
                                    "durationMs", (json_int_t)duration_ms, "reportNonce", nonce);
    char *text = json_dumps(signed_part, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(signed_part);
    if (text != NULL && ec_key_sign(a->id.sign, text, strlen(text), sig, NULL) == EC_OK) {
        ec_b64_encode(sig_b64, sizeof(sig_b64), sig, sizeof(sig));
        json_object_set_new(body, "reportNonce", json_string(nonce));
        json_object_set_new(body, "reportSignature", json_string(sig_b64));
    }
    free(text);
}

char *agent_result_body(struct agent *a, const struct agent_job *job,
                        const struct agent_work_result *r)
{
    json_t *answer =
        json_pack("{s:b,s:s,s:I,s:s,s:s,s:I,s:I}", "ok", r->ok, "output", r->output, "durationMs",
                  (json_int_t)r->duration_ms, "provider", r->provider, "model",
                  r->model != NULL ? r->model : "", "startedAtMs", (json_int_t)r->started_at_ms,
                  "finishedAtMs", (json_int_t)r->finished_at_ms);
    if (answer == NULL) /* output that is not UTF-8 */
        answer = json_pack("{s:b,s:s,s:I,s:s}", "ok", 0, "output", "", "durationMs",
                           (json_int_t)r->duration_ms, "provider", r->provider);
    if (r->error != NULL) {
        json_t *e = json_string(r->error);
        json_object_set_new(answer, "error", e != NULL ? e : json_string("(not UTF-8)"));
    }
    json_t *body = json_pack("{s:s,s:s,s:s}", "subtaskId", job->subtask_id, "taskId", job->task_id,
                             "agentId", a->agent_id);
    if (job->attempt > 0)
        json_object_set_new(body, "attempt", json_integer(job->attempt));
    report_signature(a, job, r->ok, r->duration_ms, body);
    if (job->sealed) {
        char *plain = json_dumps(answer, JSON_COMPACT);
        struct ec_arena arena;
        ec_arena_init(&arena);
        const char *payload = NULL, *nonce = NULL, *tag = NULL;
        struct ec_err err = { 0 };
        if (plain != NULL && coord_envelope_seal_with_key(job->key, plain, strlen(plain), &arena,
                                                          &payload, &nonce, &tag, &err) == EC_OK) {
            json_object_set_new(body, "encryptedPayload", json_string(payload));
            json_object_set_new(body, "nonce", json_string(nonce));
            json_object_set_new(body, "tag", json_string(tag));
        } else {
            EC_ERROR("cannot seal a result", EC_LS("subtask_id", job->subtask_id),
                     EC_LS("reason", err.msg));
        }
        if (plain != NULL) {
            ec_crypto_wipe(plain, strlen(plain));
            free(plain);
        }
        ec_arena_release(&arena);
    } else {
        json_object_update(body, answer);
    }
    json_decref(answer);
    char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(body);
    return text;
}

enum agent_outcome agent_deliver(struct agent *a, const struct agent_outbox_item *item)
{
    char url[AGENT_URL_MAX];
    agent_coords_current(&a->coords, url, sizeof(url));
    struct ec_http_response resp;
    ec_http_response_init(&resp);
    struct ec_err err = { 0 };
    enum ec_status st =
        agent_post(a, url, "/result", item->body, strlen(item->body), true, &resp, &err);
    enum agent_outcome o;
    if (st != EC_OK) {
        EC_INFO("result not delivered; kept in the outbox", EC_LS("subtask_id", item->subtask_id),
                EC_LS("reason", err.msg));
        o = AGENT_RETRY;
    } else if (resp.status == 200) {
        EC_INFO("result delivered", EC_LS("subtask_id", item->subtask_id),
                EC_LI("attempt", item->attempt),
                EC_LB("duplicate", json_is_true(json_object_get(resp.json, "duplicate"))));
        o = AGENT_DROPPED;
    } else if (resp.status == 409 || resp.status == 404 || resp.status == 400 ||
               resp.status == 413) {
        /* Definite: the lease is gone or the coordinator will never take this result. */
        EC_WARN("result refused by the coordinator; dropped", EC_LS("subtask_id", item->subtask_id),
                EC_LI("status", resp.status), EC_LS("error", agent_resp_error(&resp)));
        o = AGENT_DROPPED;
    } else {
        o = classify(&resp);
        if (o == AGENT_OK)
            o = AGENT_DROPPED;
        EC_INFO("result not delivered; kept in the outbox", EC_LS("subtask_id", item->subtask_id),
                EC_LI("status", resp.status), EC_LS("error", agent_resp_error(&resp)));
    }
    ec_http_response_release(&resp);
    return o;
}
