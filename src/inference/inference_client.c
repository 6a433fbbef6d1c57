/* The coordinator's Inference client: packs each request once, signs exactly those bytes, sends
 * them with rpc_unary_raw, and copies the reply into the caller's arena. */
#include "inference/inference_client.h"

#include "common/ec_mem.h"
#include "inference/inference_sig.h"
#include "mesh/rpc.h"

#include "edgecoder/v1/inference.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_DECOMPOSE "/edgecoder.v1.Inference/Decompose"
#define PATH_ESCALATE  "/edgecoder.v1.Inference/Escalate"

struct inf_client {
    struct rpc_channel *channel;
    char *auth_token;
    char *peer_id;
    const struct ec_key *signing_key;
    int64_t timeout_ms;
};

enum ec_status inf_client_target(const char *url, char **target, struct ec_err *err)
{
    return rpc_target_from_url(url, INF_GRPC_PORT, target, err);
}

enum ec_status inf_client_new(const struct inf_client_opts *opts, struct inf_client **out,
                              struct ec_err *err)
{
    *out = NULL;
    if ((opts->peer_id == NULL) != (opts->signing_key == NULL))
        return ec_err_set(err, EC_EINVAL, NULL,
                          "peer_id and signing_key go together (both or neither)");
    if (opts->signing_key != NULL && !ec_key_has_private(opts->signing_key))
        return ec_err_set(err, EC_EINVAL, NULL, "signing_key has no private key");
    char *target = NULL;
    enum ec_status st = inf_client_target(opts->url, &target, err);
    if (st != EC_OK)
        return st;
    struct rpc_channel_opts copts = {
        .tls = { opts->tls.ca_file, opts->tls.cert_file, opts->tls.key_file },
        .server_name = opts->server_name,
    };
    struct rpc_channel *ch = rpc_channel_new(target, &copts, err);
    free(target);
    if (ch == NULL)
        return err != NULL && err->status != EC_OK ? err->status : EC_EINVAL;
    struct inf_client *c = ec_xcalloc(1, sizeof(*c));
    c->channel = ch;
    c->auth_token = opts->auth_token != NULL && opts->auth_token[0] != '\0'
                        ? ec_xstrdup(opts->auth_token)
                        : NULL;
    c->peer_id = opts->peer_id != NULL ? ec_xstrdup(opts->peer_id) : NULL;
    c->signing_key = opts->signing_key;
    c->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : INF_CLIENT_TIMEOUT_MS;
    *out = c;
    return EC_OK;
}

void inf_client_free(struct inf_client *c)
{
    if (c == NULL)
        return;
    rpc_channel_free(c->channel);
    if (c->auth_token != NULL) {
        ec_crypto_wipe(c->auth_token, strlen(c->auth_token));
        free(c->auth_token);
    }
    free(c->peer_id);
    free(c);
}

/* Packs req, signs the bytes, calls path; the reply is unpacked with the default allocator
 * (caller frees with protobuf_c_message_free_unpacked). */
static enum ec_status call_signed(struct inf_client *c, const char *path,
                                  const ProtobufCMessage *req,
                                  const ProtobufCMessageDescriptor *resp_desc,
                                  struct ec_arena *arena, ProtobufCMessage **resp,
                                  struct ec_err *err)
{
    *resp = NULL;
    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t *bytes = ec_arena_alloc(arena, len > 0 ? len : 1);
    protobuf_c_message_pack(req, bytes);

    struct rpc_md md[6];
    size_t n = 0;
    struct inf_sig_md sig;
    if (c->auth_token != NULL)
        md[n++] = (struct rpc_md){ INF_TOKEN_MD, c->auth_token };
    if (c->signing_key != NULL) {
        enum ec_status st =
            inf_sig_sign(c->signing_key, c->peer_id, path, bytes, len, ec_now_ms(), &sig, err);
        if (st != EC_OK)
            return st;
        md[n++] = (struct rpc_md){ INF_SIG_MD_PEER_ID, sig.peer_id };
        md[n++] = (struct rpc_md){ INF_SIG_MD_TIMESTAMP, sig.timestamp_ms };
        md[n++] = (struct rpc_md){ INF_SIG_MD_NONCE, sig.nonce };
        md[n++] = (struct rpc_md){ INF_SIG_MD_BODY, sig.body_sha256 };
        md[n++] = (struct rpc_md){ INF_SIG_MD_SIGNATURE, sig.signature };
    }
    struct rpc_call_opts copts = { .timeout_ms = c->timeout_ms, .md = md, .n_md = n };
    uint8_t *out = NULL;
    size_t out_len = 0;
    enum ec_status st =
        rpc_unary_raw(c->channel, path, bytes, len, arena, &out, &out_len, &copts, err);
    if (st != EC_OK)
        return st;
    *resp = protobuf_c_message_unpack(resp_desc, NULL, out_len, out);
    if (*resp == NULL)
        return ec_err_set(err, EC_EUPSTREAM, NULL, "the %s reply does not parse", path);
    return EC_OK;
}

enum ec_status inf_client_decompose(struct inf_client *c, const char *task_id, const char *prompt,
                                    const char *language, const char *snapshot_ref,
                                    struct ec_arena *arena, struct inf_decomposition *out,
                                    struct ec_err *err)
{
    memset(out, 0, sizeof(*out));
    Edgecoder__V1__DecomposeRequest req;
    edgecoder__v1__decompose_request__init(&req);
    req.task_id = (char *)(task_id != NULL ? task_id : "");
    req.prompt = (char *)(prompt != NULL ? prompt : "");
    req.language = (char *)(language != NULL ? language : "");
    req.snapshot_ref = (char *)(snapshot_ref != NULL ? snapshot_ref : "");
    ProtobufCMessage *msg = NULL;
    enum ec_status st = call_signed(c, PATH_DECOMPOSE, &req.base,
                                    &edgecoder__v1__decompose_reply__descriptor, arena, &msg, err);
    if (st != EC_OK)
        return st;
    const Edgecoder__V1__DecomposeReply *reply = (const void *)msg;
    if (reply->n_subtasks == 0 || reply->n_subtasks > INF_DECOMPOSE_MAX_SUBTASKS) {
        protobuf_c_message_free_unpacked(msg, NULL);
        return ec_err_set(err, EC_EUPSTREAM, NULL, "Decompose answered %zu subtasks",
                          reply->n_subtasks);
    }
    out->subtasks = ec_arena_alloc(arena, reply->n_subtasks * sizeof(*out->subtasks));
    for (size_t i = 0; i < reply->n_subtasks; i++) {
        const Edgecoder__V1__DecomposedSubtask *s = reply->subtasks[i];
        const char *lang = inf_language_normalize(s->language);
        out->subtasks[i] = (struct inf_subtask){
            .input = ec_arena_strdup(arena, s->input),
            .language = lang != NULL ? lang : INF_DEFAULT_LANGUAGE,
            .timeout_ms = s->timeout_ms,
        };
    }
    out->count = reply->n_subtasks;
    out->fallback = reply->fallback;
    out->fallback_reason = ec_arena_strdup(
        arena, reply->fallback_reason_present_case ==
                       EDGECODER__V1__DECOMPOSE_REPLY__FALLBACK_REASON_PRESENT_FALLBACK_REASON
                   ? reply->fallback_reason
                   : "");
    protobuf_c_message_free_unpacked(msg, NULL);
    return EC_OK;
}

enum ec_status inf_client_escalate(struct inf_client *c, const char *task_id, const char *task,
                                   const char *failed_code, const char *const *error_history,
                                   size_t n_errors, const char *language, struct ec_arena *arena,
                                   struct inf_escalation *out, struct ec_err *err)
{
    memset(out, 0, sizeof(*out));
    Edgecoder__V1__EscalateRequest req;
    edgecoder__v1__escalate_request__init(&req);
    req.task_id = (char *)(task_id != NULL ? task_id : "");
    req.task = (char *)(task != NULL ? task : "");
    req.failed_code = (char *)(failed_code != NULL ? failed_code : "");
    req.error_history = (char **)error_history;
    req.n_error_history = n_errors;
    req.language = (char *)(language != NULL ? language : "");
    ProtobufCMessage *msg = NULL;
    enum ec_status st = call_signed(c, PATH_ESCALATE, &req.base,
                                    &edgecoder__v1__escalate_reply__descriptor, arena, &msg, err);
    if (st != EC_OK)
        return st;
    const Edgecoder__V1__EscalateReply *reply = (const void *)msg;
    out->improved_code = ec_arena_strdup(arena, reply->improved_code);
    out->explanation = ec_arena_strdup(arena, reply->explanation);
    protobuf_c_message_free_unpacked(msg, NULL);
    return EC_OK;
}
