/* The gRPC Inference service. Caller checks, in this order: the mTLS role (the method table:
 * coordinator; the portal too for Chat), x-inference-token when INFERENCE_AUTH_TOKEN is set,
 * then, when signatures are enforced, a coordinator caller's x-inference-* signature over the
 * request bytes as received. Streams relay Ollama's NDJSON lines as they arrive; an Ollama that
 * fails or vanishes mid-stream ends the call with UNAVAILABLE. */
#include "inference/inference.h"

#include "common/ec_crypto.h"
#include "common/ec_mem.h"
#include "inference/inf_relay.h"
#include "mesh/rpc.h"

#include <string.h>

#define MAX_CHAT_MESSAGES  256
#define MAX_CHAT_BYTES     (1u << 20)
#define MAX_GENERATE_BYTES (1u << 20)
#define MAX_MODEL_NAME     256
#define CHAT_TEMPERATURE   0.7
#define CHAT_NUM_PREDICT   4096
#define MAX_TOKENS_CAP     131072

static bool set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

static enum ec_status check_caller(struct rpc_call *call, struct inf_service *s, struct ec_err *err)
{
    const char *token = s->cfg->auth_token;
    enum ec_status st = EC_OK;
    if (set(token) && !ec_ct_streq(rpc_call_metadata(call, INF_TOKEN_MD), token))
        st = ec_err_set(err, EC_EUNAUTH, "inference_unauthorized",
                        "x-inference-token is missing or wrong");
    const struct rpc_peer *peer = rpc_call_peer(call);
    if (st == EC_OK && s->signatures_required && peer->role == RPC_ROLE_COORDINATOR) {
        struct inf_sig_request sr = {
            .peer_id = rpc_call_metadata(call, INF_SIG_MD_PEER_ID),
            .timestamp_ms = rpc_call_metadata(call, INF_SIG_MD_TIMESTAMP),
            .nonce = rpc_call_metadata(call, INF_SIG_MD_NONCE),
            .body_sha256 = rpc_call_metadata(call, INF_SIG_MD_BODY),
            .signature = rpc_call_metadata(call, INF_SIG_MD_SIGNATURE),
            .path = rpc_call_method(call),
        };
        const uint8_t *bytes = rpc_call_request_bytes(call, &sr.body_len);
        sr.body = bytes;
        st = inf_sig_verify(s->verifier, &sr, ec_now_ms(), err);
    }
    if (st != EC_OK) {
        atomic_fetch_add(&s->metrics.auth_failures, 1);
        EC_WARN("call refused", EC_LS("method", rpc_call_method(call)),
                EC_LS("peer", peer->spiffe_id), EC_LS("error", ec_err_code(err)));
    }
    return st;
}

static enum ec_status check_model(const char *model, struct ec_err *err)
{
    if (strlen(model) > MAX_MODEL_NAME)
        return ec_err_set(err, EC_EINVAL, NULL, "model: over %d characters", MAX_MODEL_NAME);
    return EC_OK;
}

/* A stream's Ollama call ends no later than the caller's deadline. */
static int64_t call_timeout_ms(struct rpc_call *call)
{
    int64_t left = rpc_call_deadline_ms(call);
    if (left == INT64_MAX)
        return 0;
    return left > 1 ? left : 1;
}

/* --- unary ------------------------------------------------------------------------------------ */

static enum ec_status rpc_decompose(struct rpc_call *call, const ProtobufCMessage *req,
                                    ProtobufCMessage **resp, struct ec_err *err)
{
    struct inf_service *s = rpc_call_service_data(call);
    enum ec_status st = check_caller(call, s, err);
    if (st != EC_OK)
        return st;
    Edgecoder__V1__DecomposeReply *out = NULL;
    st = inf_decompose(s, (const void *)req, rpc_call_arena(call), &out, err);
    if (st == EC_OK)
        *resp = &out->base;
    return st;
}

static enum ec_status rpc_escalate(struct rpc_call *call, const ProtobufCMessage *req,
                                   ProtobufCMessage **resp, struct ec_err *err)
{
    struct inf_service *s = rpc_call_service_data(call);
    enum ec_status st = check_caller(call, s, err);
    if (st != EC_OK)
        return st;
    Edgecoder__V1__EscalateReply *out = NULL;
    st = inf_escalate(s, (const void *)req, rpc_call_arena(call), &out, err);
    if (st == EC_OK)
        *resp = &out->base;
    return st;
}

static enum ec_status rpc_list_models(struct rpc_call *call, const ProtobufCMessage *req,
                                      ProtobufCMessage **resp, struct ec_err *err)
{
    struct inf_service *s = rpc_call_service_data(call);
    enum ec_status st = check_caller(call, s, err);
    if (st != EC_OK)
        return st;
    struct inf_ollama_models models;
    st = inf_ollama_tags(s->ollama, &models, err);
    if (st != EC_OK) {
        inf_ollama_models_release(&models);
        return st;
    }
    struct ec_arena *arena = rpc_call_arena(call);
    Edgecoder__V1__ListModelsReply *out = ec_arena_alloc(arena, sizeof(*out));
    edgecoder__v1__list_models_reply__init(out);
    out->n_models = models.count;
    out->models = ec_arena_alloc(arena, (models.count + 1) * sizeof(*out->models));
    for (size_t i = 0; i < models.count; i++) {
        const struct inf_ollama_model *m = &models.items[i];
        Edgecoder__V1__ModelInfo *mi = ec_arena_alloc(arena, sizeof(*mi));
        edgecoder__v1__model_info__init(mi);
        mi->name = ec_arena_strdup(arena, m->name);
        mi->size = m->size;
        mi->parameter_size = ec_arena_strdup(arena, m->parameter_size);
        mi->quantization_level = ec_arena_strdup(arena, m->quantization_level);
        mi->digest = ec_arena_strdup(arena, m->digest);
        mi->modified_at = ec_arena_strdup(arena, m->modified_at);
        out->models[i] = mi;
    }
    inf_ollama_models_release(&models);
    *resp = &out->base;
    return EC_OK;
}

/* --- streams ---------------------------------------------------------------------------------- */

struct relay {
    struct rpc_call *call;
    const char *model;
};

/* The Ollama calls behind Generate and Chat, run by inf_relay_stream's helper thread. */
struct generate_job {
    struct inf_ollama *ollama;
    const char *model, *prompt;
    struct inf_ollama_gen_opts opts;
};

static enum ec_status run_generate(void *arg, inf_ollama_chunk_fn fn, void *ctx, struct ec_err *err)
{
    struct generate_job *j = arg;
    return inf_ollama_generate_stream(j->ollama, j->model, j->prompt, &j->opts, fn, ctx, err);
}

struct chat_job {
    struct inf_ollama *ollama;
    const char *model;
    const struct inf_ollama_message *messages;
    size_t n_messages;
    struct inf_ollama_gen_opts opts;
};

static enum ec_status run_chat(void *arg, inf_ollama_chunk_fn fn, void *ctx, struct ec_err *err)
{
    struct chat_job *j = arg;
    return inf_ollama_chat(j->ollama, j->model, j->messages, j->n_messages, &j->opts, fn, ctx, err);
}

static enum ec_status stream_done(struct inf_service *s, struct rpc_call *call, enum ec_status st,
                                  const struct ec_err *err)
{
    if (st != EC_OK) {
        atomic_fetch_add(&s->metrics.stream_failures, 1);
        EC_WARN("stream ended with an error", EC_LS("method", rpc_call_method(call)),
                EC_LS("error", ec_err_code(err)), EC_LS("reason", err->msg));
    }
    return st;
}

static enum ec_status rpc_generate(struct rpc_call *call, const ProtobufCMessage *req,
                                   struct ec_err *err)
{
    struct inf_service *s = rpc_call_service_data(call);
    enum ec_status st = check_caller(call, s, err);
    if (st != EC_OK)
        return st;
    const Edgecoder__V1__GenerateRequest *in = (const void *)req;
    if ((st = check_model(in->model, err)) != EC_OK)
        return st;
    if (strlen(in->prompt) > MAX_GENERATE_BYTES)
        return ec_err_set(err, EC_EINVAL, NULL, "prompt: over %u bytes", MAX_GENERATE_BYTES);
    if (in->max_tokens < 0 || in->max_tokens > MAX_TOKENS_CAP)
        return ec_err_set(err, EC_EINVAL, NULL, "maxTokens: %d is not within 0..%d", in->max_tokens,
                          MAX_TOKENS_CAP);
    atomic_fetch_add(&s->metrics.stream_requests, 1);
    struct generate_job job = {
        .ollama = s->ollama,
        .model = set(in->model) ? in->model : s->cfg->default_model,
        .prompt = in->prompt,
    };
    job.opts = (struct inf_ollama_gen_opts){
        .system = in->system_present_case == EDGECODER__V1__GENERATE_REQUEST__SYSTEM_PRESENT_SYSTEM
                      ? in->system
                      : NULL,
        .has_temperature = in->temperature_present_case ==
                           EDGECODER__V1__GENERATE_REQUEST__TEMPERATURE_PRESENT_TEMPERATURE,
        .temperature = in->temperature,
        .num_predict = in->max_tokens,
        .timeout_ms = call_timeout_ms(call),
    };
    int64_t tokens = 0;
    st = inf_relay_stream(call, job.model, run_generate, &job, &tokens, err);
    atomic_fetch_add(&s->metrics.stream_tokens, tokens);
    return stream_done(s, call, st, err);
}

static enum ec_status rpc_chat(struct rpc_call *call, const ProtobufCMessage *req,
                               struct ec_err *err)
{
    struct inf_service *s = rpc_call_service_data(call);
    enum ec_status st = check_caller(call, s, err);
    if (st != EC_OK)
        return st;
    const Edgecoder__V1__ChatRequest *in = (const void *)req;
    if ((st = check_model(in->model, err)) != EC_OK)
        return st;
    if (in->n_messages == 0 || in->n_messages > MAX_CHAT_MESSAGES)
        return ec_err_set(err, EC_EINVAL, NULL, "messages: %zu is not within 1..%d", in->n_messages,
                          MAX_CHAT_MESSAGES);
    if (in->max_tokens < 0 || in->max_tokens > MAX_TOKENS_CAP)
        return ec_err_set(err, EC_EINVAL, NULL, "maxTokens: %d is not within 0..%d", in->max_tokens,
                          MAX_TOKENS_CAP);
    struct inf_ollama_message *msgs =
        ec_arena_alloc(rpc_call_arena(call), in->n_messages * sizeof(*msgs));
    size_t total = 0;
    for (size_t i = 0; i < in->n_messages; i++) {
        const char *role = in->messages[i]->role;
        if (strcmp(role, "system") != 0 && strcmp(role, "user") != 0 &&
            strcmp(role, "assistant") != 0)
            return ec_err_set(err, EC_EINVAL, NULL,
                              "messages[%zu].role: \"%.32s\" is not system, user or assistant", i,
                              role);
        total += strlen(in->messages[i]->content);
        msgs[i] = (struct inf_ollama_message){ role, in->messages[i]->content };
    }
    if (total > MAX_CHAT_BYTES)
        return ec_err_set(err, EC_EINVAL, NULL, "messages: over %u bytes of content",
                          MAX_CHAT_BYTES);
    atomic_fetch_add(&s->metrics.stream_requests, 1);
    struct chat_job job = {
        .ollama = s->ollama,
        .model = set(in->model) ? in->model : s->cfg->default_model,
        .messages = msgs,
        .n_messages = in->n_messages,
    };
    bool has_temp = in->temperature_present_case ==
                    EDGECODER__V1__CHAT_REQUEST__TEMPERATURE_PRESENT_TEMPERATURE;
    job.opts = (struct inf_ollama_gen_opts){
        .has_temperature = true,
        .temperature = has_temp ? in->temperature : CHAT_TEMPERATURE,
        .num_predict = in->max_tokens > 0 ? in->max_tokens : CHAT_NUM_PREDICT,
        .timeout_ms = call_timeout_ms(call),
    };
    int64_t tokens = 0;
    st = inf_relay_stream(call, job.model, run_chat, &job, &tokens, err);
    atomic_fetch_add(&s->metrics.stream_tokens, tokens);
    return stream_done(s, call, st, err);
}

static enum ec_status relay_progress(void *ctx, const struct inf_ollama_progress *p,
                                     struct ec_err *err)
{
    struct relay *r = ctx;
    Edgecoder__V1__PullProgress msg;
    edgecoder__v1__pull_progress__init(&msg);
    msg.status = (char *)p->status;
    msg.digest = (char *)p->digest;
    msg.total = p->total;
    msg.completed = p->completed;
    return rpc_stream_send(r->call, &msg.base, err);
}

static enum ec_status rpc_pull_model(struct rpc_call *call, const ProtobufCMessage *req,
                                     struct ec_err *err)
{
    struct inf_service *s = rpc_call_service_data(call);
    enum ec_status st = check_caller(call, s, err);
    if (st != EC_OK)
        return st;
    const Edgecoder__V1__PullModelRequest *in = (const void *)req;
    if (!set(in->model))
        return ec_err_set(err, EC_EINVAL, "model_required", "model: must not be empty");
    if ((st = check_model(in->model, err)) != EC_OK)
        return st;
    atomic_fetch_add(&s->metrics.stream_requests, 1);
    struct relay r = { .call = call, .model = in->model };
    st = inf_ollama_pull(s->ollama, in->model, relay_progress, &r, err);
    return stream_done(s, call, st, err);
}

/* --- the method table ------------------------------------------------------------------------- */

#define PATH(name) "/" INF_RPC_SERVICE "/" name
#define DESC(t)    &edgecoder__v1__##t##__descriptor

/* None is idempotent for the runtime: a retry would resend a signature's nonce. */
const struct rpc_method inf__rpc_methods[] = {
    { .path = PATH("Decompose"),
      .req = DESC(decompose_request),
      .resp = DESC(decompose_reply),
      .kind = RPC_UNARY,
      .allowed_roles = RPC_ROLE_COORDINATOR,
      .unary = rpc_decompose },
    { .path = PATH("Escalate"),
      .req = DESC(escalate_request),
      .resp = DESC(escalate_reply),
      .kind = RPC_UNARY,
      .allowed_roles = RPC_ROLE_COORDINATOR,
      .unary = rpc_escalate },
    { .path = PATH("Generate"),
      .req = DESC(generate_request),
      .resp = DESC(token_chunk),
      .kind = RPC_SERVER_STREAM,
      .allowed_roles = RPC_ROLE_COORDINATOR,
      .server_stream = rpc_generate },
    { .path = PATH("Chat"),
      .req = DESC(chat_request),
      .resp = DESC(token_chunk),
      .kind = RPC_SERVER_STREAM,
      .allowed_roles = RPC_ROLE_COORDINATOR | RPC_ROLE_PORTAL,
      .server_stream = rpc_chat },
    { .path = PATH("ListModels"),
      .req = DESC(list_models_request),
      .resp = DESC(list_models_reply),
      .kind = RPC_UNARY,
      .allowed_roles = RPC_ROLE_COORDINATOR,
      .unary = rpc_list_models },
    { .path = PATH("PullModel"),
      .req = DESC(pull_model_request),
      .resp = DESC(pull_progress),
      .kind = RPC_SERVER_STREAM,
      .allowed_roles = RPC_ROLE_COORDINATOR,
      .server_stream = rpc_pull_model },
};
const size_t inf__rpc_nmethods = sizeof(inf__rpc_methods) / sizeof(inf__rpc_methods[0]);
