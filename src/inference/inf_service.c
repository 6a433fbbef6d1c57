/* The inference service's transport-free functions (decompose, escalate) and its lifetime: the
 * Ollama client, the trusted coordinator keys, the HTTP edge and the gRPC server. */
#include "inference/inference.h"

#include "common/ec_buf.h"
#include "common/ec_mem.h"
#include "mesh/rpc.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TASK_ID_LEN       128
#define MAX_SNAPSHOT_REF_LEN  512
#define MAX_ESCALATE_BYTES    (256u << 10)
#define MAX_ERROR_HISTORY     50
#define DECOMPOSE_TEMPERATURE 0.2

static bool set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

enum ec_status inf_service_new(const struct inf_config *cfg, struct inf_service **out,
                               struct ec_err *err)
{
    *out = NULL;
    struct inf_service *s = ec_xcalloc(1, sizeof(*s));
    s->cfg = cfg;
    s->started_ms = ec_now_ms();
    struct inf_sig_verifier_opts vopts = { .max_skew_ms = cfg->max_skew_ms,
                                           .nonce_ttl_ms = cfg->nonce_ttl_ms,
                                           .nonce_capacity = (size_t)cfg->nonce_capacity };
    s->verifier = inf_sig_verifier_new(&vopts);
    enum ec_status st = EC_OK;
    if (set(cfg->coordinator_peer_id) && set(cfg->coordinator_public_key_pem))
        st = inf_sig_verifier_add_pem(s->verifier, cfg->coordinator_peer_id,
                                      cfg->coordinator_public_key_pem, err);
    if (st == EC_OK && set(cfg->trusted_keys_json))
        st = inf_sig_verifier_add_json(s->verifier, cfg->trusted_keys_json, err);
    s->signatures_required = cfg->require_signed || inf_sig_verifier_key_count(s->verifier) > 0;
    struct inf_ollama_opts oopts = {
        .host = cfg->ollama_host,
        .connect_timeout_ms = cfg->ollama_connect_timeout_ms,
        .first_byte_timeout_ms = cfg->ollama_first_byte_timeout_ms,
        .idle_timeout_ms = cfg->ollama_idle_timeout_ms,
    };
    if (st == EC_OK)
        st = inf_ollama_new(&oopts, &s->ollama, err);
    if (st != EC_OK) {
        inf_service_free(s);
        return st;
    }
    *out = s;
    return EC_OK;
}

static enum ec_status start_rpc(struct inf_service *s, struct ec_err *err)
{
    const struct inf_config *cfg = s->cfg;
    if (!set(cfg->tls_cert)) {
        EC_WARN("no gRPC server: EDGECODER_TLS_CERT is unset (development only)");
        return EC_OK;
    }
    char listen[32];
    snprintf(listen, sizeof(listen), "0.0.0.0:%lld", (long long)cfg->grpc_port);
    struct rpc_server_opts opts = { .listen = listen,
                                    .tls = { cfg->tls_ca, cfg->tls_cert, cfg->tls_key },
                                    .threads = 2,
                                    .max_streams = (int)cfg->max_streams };
    s->rpc = rpc_server_new(&opts, err);
    if (s->rpc == NULL)
        return err != NULL ? err->status : EC_EINTERNAL;
    s->rpc_service = ec_xcalloc(1, sizeof(*s->rpc_service));
    *s->rpc_service =
        (struct rpc_service){ INF_RPC_SERVICE, inf__rpc_methods, inf__rpc_nmethods, s };
    enum ec_status st = rpc_server_add_service(s->rpc, s->rpc_service, err);
    if (st == EC_OK)
        st = rpc_server_start(s->rpc, err);
    return st;
}

enum ec_status inf_service_start(struct inf_service *s, struct ec_err *err)
{
    struct edge_config ecfg = { .port = (int)s->cfg->port };
    edge_env_apply(&s->cfg->http, &ecfg);
    struct edge_service svc = {
        .name = "inference",
        .routes = inf__routes,
        .nroutes = inf__nroutes,
        .metrics = inf__metrics_text,
        .ctx = s,
    };
    enum ec_status st = edge_server_start(&ecfg, &svc, &s->edge, err);
    if (st == EC_OK)
        st = start_rpc(s, err);
    if (st != EC_OK)
        return st;
    EC_INFO("inference started", EC_LI("http_port", edge_server_port(s->edge)),
            EC_LI("grpc_port", s->rpc != NULL ? rpc_server_port(s->rpc) : 0),
            EC_LS("ollama", inf_ollama_host(s->ollama)),
            EC_LS("decompose_model", s->cfg->coordinator_model),
            EC_LB("token", set(s->cfg->auth_token)),
            EC_LB("signatures_required", s->signatures_required),
            EC_LI("trusted_keys", (int64_t)inf_sig_verifier_key_count(s->verifier)));
    return EC_OK;
}

void inf_service_free(struct inf_service *s)
{
    if (s == NULL)
        return;
    edge_server_stop(s->edge);
    s->edge = NULL;
    if (s->rpc != NULL)
        rpc_server_shutdown(s->rpc);
    rpc_server_free(s->rpc);
    free(s->rpc_service);
    inf_ollama_free(s->ollama);
    inf_sig_verifier_free(s->verifier);
    free(s);
}

/* --- Decompose -------------------------------------------------------------------------------- */

static Edgecoder__V1__DecomposedSubtask *new_subtask(struct ec_arena *arena,
                                                     const Edgecoder__V1__DecomposeRequest *req,
                                                     const char *input, const char *language,
                                                     int64_t timeout_ms)
{
    Edgecoder__V1__DecomposedSubtask *st = ec_arena_alloc(arena, sizeof(*st));
    edgecoder__v1__decomposed_subtask__init(st);
    st->task_id = (char *)req->task_id;
    st->kind = "micro_loop";
    st->input = (char *)input;
    st->language = (char *)language;
    st->timeout_ms = timeout_ms;
    st->snapshot_ref = (char *)req->snapshot_ref;
    return st;
}

enum ec_status inf_decompose(struct inf_service *s, const Edgecoder__V1__DecomposeRequest *req,
                             struct ec_arena *arena, Edgecoder__V1__DecomposeReply **out,
                             struct ec_err *err)
{
    *out = NULL;
    atomic_fetch_add(&s->metrics.decompose_requests, 1);
    size_t prompt_len = strlen(req->prompt);
    if (prompt_len == 0)
        return ec_err_set(err, EC_EINVAL, "prompt_required", "prompt: must not be empty");
    if (prompt_len > INF_DECOMPOSE_MAX_PROMPT_BYTES)
        return ec_err_set(err, EC_EINVAL, NULL, "prompt: %zu bytes is over %u", prompt_len,
                          INF_DECOMPOSE_MAX_PROMPT_BYTES);
    if (strlen(req->task_id) > MAX_TASK_ID_LEN)
        return ec_err_set(err, EC_EINVAL, NULL, "taskId: over %d characters", MAX_TASK_ID_LEN);
    if (strlen(req->snapshot_ref) > MAX_SNAPSHOT_REF_LEN)
        return ec_err_set(err, EC_EINVAL, NULL, "snapshotRef: over %d characters",
                          MAX_SNAPSHOT_REF_LEN);
    const char *language =
        req->language[0] == '\0' ? INF_DEFAULT_LANGUAGE : inf_language_normalize(req->language);
    if (language == NULL)
        return ec_err_set(err, EC_EINVAL, NULL, "language: \"%.32s\" is not python or javascript",
                          req->language);

    int64_t started = ec_mono_ms();
    Edgecoder__V1__DecomposeReply *reply = ec_arena_alloc(arena, sizeof(*reply));
    edgecoder__v1__decompose_reply__init(reply);
    reply->model = s->cfg->coordinator_model;

    struct inf_ollama_gen_opts gopts = { .has_temperature = true,
                                         .temperature = DECOMPOSE_TEMPERATURE,
                                         .timeout_ms = s->cfg->decompose_timeout_ms,
                                         .max_text_bytes = INF_DECOMPOSE_MAX_ANSWER_BYTES };
    char *answer = NULL;
    struct ec_err merr = { 0 };
    atomic_fetch_add(&s->metrics.decompose_model_calls, 1);
    enum ec_status st = inf_ollama_generate(s->ollama, s->cfg->coordinator_model,
                                            inf_decompose_prompt(arena, req->prompt, language),
                                            &gopts, &answer, &merr);
    struct inf_subtask_list list = { 0 };
    if (st == EC_OK)
        st = inf_decompose_parse(answer, strlen(answer), language, arena, &list, &merr);
    free(answer);

    if (st == EC_OK) {
        reply->n_subtasks = list.count;
        reply->subtasks = ec_arena_alloc(arena, list.count * sizeof(*reply->subtasks));
        for (size_t i = 0; i < list.count; i++)
            reply->subtasks[i] = new_subtask(arena, req, list.items[i].input,
                                             list.items[i].language, list.items[i].timeout_ms);
        atomic_fetch_add(&s->metrics.decompose_successes, 1);
    } else {
        /* The original's fallback: the whole prompt as one subtask, and now the caller knows. */
        reply->n_subtasks = 1;
        reply->subtasks = ec_arena_alloc(arena, sizeof(*reply->subtasks));
        reply->subtasks[0] =
            new_subtask(arena, req, req->prompt, language, INF_FALLBACK_TIMEOUT_MS);
        reply->fallback = true;
        reply->fallback_reason_present_case =
            EDGECODER__V1__DECOMPOSE_REPLY__FALLBACK_REASON_PRESENT_FALLBACK_REASON;
        reply->fallback_reason = ec_arena_sprintf(arena, "%s: %s", ec_err_code(&merr), merr.msg);
        atomic_fetch_add(&s->metrics.decompose_fallbacks, 1);
        EC_WARN("decompose fell back to one subtask", EC_LS("task_id", req->task_id),
                EC_LS("error", ec_err_code(&merr)), EC_LS("reason", merr.msg));
    }
    atomic_fetch_add(&s->metrics.total_latency_ms, ec_mono_ms() - started);
    *out = reply;
    return EC_OK;
}

/* --- Escalate --------------------------------------------------------------------------------- */

static char *escalate_prompt(struct ec_arena *arena, const Edgecoder__V1__EscalateRequest *req,
                             const char *language)
{
    struct ec_buf b;
    ec_buf_init(&b, 0);
    ec_buf_printf(&b,
                  "A worker tried to solve a %s task and failed. Fix the code.\n"
                  "Answer with one JSON object only: {\"improvedCode\": \"<the complete fixed "
                  "code>\", \"explanation\": \"<one or two sentences>\"}.\n\nTask:\n%s\n\n"
                  "Failed code:\n%s\n\nErrors, oldest first:\n",
                  language, req->task, req->failed_code);
    for (size_t i = 0; i < req->n_error_history; i++)
        ec_buf_printf(&b, "%zu. %s\n", i + 1, req->error_history[i]);
    char *text = ec_arena_strndup(arena, b.data != NULL ? b.data : "", b.len);
    ec_buf_release(&b);
    return text;
}

/* The text inside the first ``` fence, or the whole text. */
static char *strip_fence(struct ec_arena *arena, const char *text)
{
    const char *open = strstr(text, "```");
    if (open == NULL)
        return ec_arena_strdup(arena, text);
    const char *body = strchr(open + 3, '\n');
    body = body != NULL ? body + 1 : open + 3;
    const char *close = strstr(body, "```");
    return ec_arena_strndup(arena, body, close != NULL ? (size_t)(close - body) : strlen(body));
}

enum ec_status inf_escalate(struct inf_service *s, const Edgecoder__V1__EscalateRequest *req,
                            struct ec_arena *arena, Edgecoder__V1__EscalateReply **out,
                            struct ec_err *err)
{
    *out = NULL;
    atomic_fetch_add(&s->metrics.escalate_requests, 1);
    size_t total = strlen(req->task) + strlen(req->failed_code);
    if (req->n_error_history > MAX_ERROR_HISTORY)
        return ec_err_set(err, EC_EINVAL, NULL, "errorHistory: %zu entries is over %d",
                          req->n_error_history, MAX_ERROR_HISTORY);
    for (size_t i = 0; i < req->n_error_history; i++)
        total += strlen(req->error_history[i]);
    if (total > MAX_ESCALATE_BYTES)
        return ec_err_set(err, EC_EINVAL, NULL, "task, failedCode and errorHistory: over %u bytes",
                          MAX_ESCALATE_BYTES);
    if (req->task[0] == '\0')
        return ec_err_set(err, EC_EINVAL, NULL, "task: must not be empty");
    const char *language = req->language[0] == '\0' ? INF_DEFAULT_LANGUAGE : req->language;
    if (inf_language_normalize(language) == NULL)
        return ec_err_set(err, EC_EINVAL, NULL, "language: \"%.32s\" is not python or javascript",
                          req->language);
    language = inf_language_normalize(language);

    int64_t started = ec_mono_ms();
    struct inf_ollama_gen_opts gopts = { .json_format = true,
                                         .timeout_ms = s->cfg->decompose_timeout_ms };
    char *answer = NULL;
    enum ec_status st =
        inf_ollama_generate(s->ollama, s->cfg->escalation_model,
                            escalate_prompt(arena, req, language), &gopts, &answer, err);
    atomic_fetch_add(&s->metrics.total_latency_ms, ec_mono_ms() - started);
    if (st != EC_OK) {
        atomic_fetch_add(&s->metrics.escalate_failures, 1);
        char cause[sizeof(err->msg)];
        snprintf(cause, sizeof(cause), "%s", err->msg);
        return ec_err_set(err, EC_EUNAVAIL, INF_OLLAMA_ERROR_CODE,
                          "Escalation inference failed: %.200s", cause);
    }
    Edgecoder__V1__EscalateReply *reply = ec_arena_alloc(arena, sizeof(*reply));
    edgecoder__v1__escalate_reply__init(reply);
    json_error_t jerr;
    json_t *obj = json_loads(answer, 0, &jerr);
    const char *code = json_string_value(json_object_get(obj, "improvedCode"));
    const char *why = json_string_value(json_object_get(obj, "explanation"));
    if (code != NULL) {
        reply->improved_code = ec_arena_strdup(arena, code);
        reply->explanation = ec_arena_strdup(arena, why != NULL ? why : "");
    } else {
        reply->improved_code = strip_fence(arena, answer);
        reply->explanation = "the model answered with code only";
    }
    json_decref(obj);
    free(answer);
    atomic_fetch_add(&s->metrics.escalate_successes, 1);
    *out = reply;
    return EC_OK;
}
