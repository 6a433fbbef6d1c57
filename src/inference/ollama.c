/* The Ollama client: every call is one ec_http request to OLLAMA_HOST; every failure of Ollama
 * becomes EC_EUNAVAIL "ollama_unavailable" with the cause in the message. */
#include "inference/ollama.h"

#include "common/ec_http.h"
#include "common/ec_mem.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_MAX_TEXT_BYTES (8u << 20)
#define MAX_MODELS             1000
#define MAX_NAME_LEN           256

struct inf_ollama {
    struct ec_http_client *http;
    char *base; /* "http://host:port", no trailing '/' */
    int64_t connect_timeout_ms;
    int64_t first_byte_timeout_ms;
    int64_t idle_timeout_ms;
    int64_t probe_timeout_ms;
};

static int64_t ms_or(int64_t v, int64_t dflt)
{
    return v > 0 ? v : dflt;
}

enum ec_status inf_ollama_base_url(const char *host, char **url, struct ec_err *err)
{
    *url = NULL;
    if (host == NULL || host[0] == '\0')
        host = INF_OLLAMA_DEFAULT_HOST;
    size_t n = strlen(host);
    if (n > 200)
        return ec_err_set(err, EC_EINVAL, NULL, "OLLAMA_HOST \"%.64s...\" is too long", host);
    for (size_t i = 0; i < n; i++)
        if (isspace((unsigned char)host[i]) || iscntrl((unsigned char)host[i]))
            return ec_err_set(err, EC_EINVAL, NULL, "OLLAMA_HOST \"%.64s\" holds white space",
                              host);
    const char *scheme = "http://";
    const char *rest = host;
    if (strncasecmp(host, "http://", 7) == 0) {
        rest = host + 7;
    } else if (strncasecmp(host, "https://", 8) == 0) {
        scheme = "https://";
        rest = host + 8;
    } else if (strstr(host, "://") != NULL) {
        return ec_err_set(err, EC_EINVAL, NULL,
                          "OLLAMA_HOST \"%.64s\": only http:// or https:// is allowed", host);
    }
    if (rest[0] == '\0' || rest[0] == '/' || rest[0] == ':')
        return ec_err_set(err, EC_EINVAL, NULL, "OLLAMA_HOST \"%.64s\" has no host", host);
    size_t rest_len = strlen(rest);
    while (rest_len > 0 && rest[rest_len - 1] == '/')
        rest_len--;
    size_t cap = strlen(scheme) + rest_len + 1;
    char *out = ec_xmalloc(cap);
    snprintf(out, cap, "%s%.*s", scheme, (int)rest_len, rest);
    *url = out;
    return EC_OK;
}

enum ec_status inf_ollama_new(const struct inf_ollama_opts *opts, struct inf_ollama **out,
                              struct ec_err *err)
{
    *out = NULL;
    struct inf_ollama_opts o = { 0 };
    if (opts != NULL)
        o = *opts;
    const char *host = o.host != NULL ? o.host : getenv("OLLAMA_HOST");
    char *base = NULL;
    enum ec_status st = inf_ollama_base_url(host, &base, err);
    if (st != EC_OK)
        return st;
    struct inf_ollama *ol = ec_xcalloc(1, sizeof(*ol));
    ol->base = base;
    ol->connect_timeout_ms = ms_or(o.connect_timeout_ms, INF_OLLAMA_DEFAULT_CONNECT_TIMEOUT_MS);
    ol->first_byte_timeout_ms =
        ms_or(o.first_byte_timeout_ms, INF_OLLAMA_DEFAULT_FIRST_BYTE_TIMEOUT_MS);
    ol->idle_timeout_ms = ms_or(o.idle_timeout_ms, INF_OLLAMA_DEFAULT_IDLE_TIMEOUT_MS);
    ol->probe_timeout_ms = ms_or(o.probe_timeout_ms, INF_OLLAMA_PROBE_TIMEOUT_MS);
    struct ec_http_client_opts hopts = { .user_agent = "edgecoder-ollama" };
    ol->http = ec_http_client_new(&hopts);
    *out = ol;
    return EC_OK;
}

void inf_ollama_free(struct inf_ollama *ol)
{
    if (ol == NULL)
        return;
    ec_http_client_free(ol->http);
    free(ol->base);
    free(ol);
}

const char *inf_ollama_host(const struct inf_ollama *ol)
{
    return ol->base;
}

/* --- errors ----------------------------------------------------------------------------------- */

/* An answer that is not 2xx: Ollama says why in {"error":"..."}. */
static enum ec_status answer_error(const struct ec_http_response *resp, const char *what,
                                   struct ec_err *err)
{
    const char *why = NULL;
    if (resp->json != NULL)
        why = json_string_value(json_object_get(resp->json, "error"));
    if (why == NULL && resp->body.len > 0 && resp->body.len < 200)
        why = resp->body.data;
    return ec_err_set(err, EC_EUNAVAIL, INF_OLLAMA_ERROR_CODE, "ollama %s answered %ld: %.160s",
                      what, resp->status, why != NULL ? why : "(no reason given)");
}

/* A transport failure of ec_http (its message names the host and curl's reason). */
static enum ec_status transport_error(enum ec_status st, const char *what, struct ec_err *err)
{
    char cause[sizeof(err->msg)];
    snprintf(cause, sizeof(cause), "%s", err != NULL ? err->msg : "");
    return ec_err_set(err, EC_EUNAVAIL, INF_OLLAMA_ERROR_CODE, "ollama %s failed (%s): %.180s",
                      what, ec_status_info(st)->code, cause);
}

static const char *str_or_empty(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s != NULL ? s : "";
}

/* --- probes ----------------------------------------------------------------------------------- */

static enum ec_status get_json(struct inf_ollama *ol, const char *path, const char *what,
                               struct ec_http_response *resp, struct ec_err *err)
{
    char url[512];
    snprintf(url, sizeof(url), "%s%s", ol->base, path);
    struct ec_http_request req = {
        .method = EC_HTTP_GET,
        .url = url,
        .connect_timeout_ms = ol->connect_timeout_ms,
        .timeout_ms = ol->probe_timeout_ms,
        .max_response_bytes = INF_OLLAMA_MAX_RESPONSE_BYTES,
    };
    enum ec_status st = ec_http_json(ol->http, &req, NULL, resp, err);
    if (st != EC_OK)
        return transport_error(st, what, err);
    if (resp->status < 200 || resp->status > 299)
        return answer_error(resp, what, err);
    if (!json_is_object(resp->json))
        return ec_err_set(err, EC_EUNAVAIL, INF_OLLAMA_ERROR_CODE,
                          "ollama %s answered without a JSON object", what);
    return EC_OK;
}

enum ec_status inf_ollama_version(struct inf_ollama *ol, char *out, size_t cap, struct ec_err *err)
{
    if (cap > 0)
        out[0] = '\0';
    struct ec_http_response resp;
    ec_http_response_init(&resp);
    enum ec_status st = get_json(ol, "/api/version", "/api/version", &resp, err);
    if (st == EC_OK) {
        const char *v = json_string_value(json_object_get(resp.json, "version"));
        if (v == NULL)
            st = ec_err_set(err, EC_EUNAVAIL, INF_OLLAMA_ERROR_CODE,
                            "ollama /api/version answered without \"version\"");
        else if (cap > 0)
            snprintf(out, cap, "%s", v);
    }
    ec_http_response_release(&resp);
    return st;
}

void inf_ollama_models_release(struct inf_ollama_models *models)
{
    if (models == NULL)
        return;
    for (size_t i = 0; i < models->count; i++) {
        struct inf_ollama_model *m = &models->items[i];
        free(m->name);
        free(m->digest);
        free(m->modified_at);
        free(m->parameter_size);
        free(m->quantization_level);
    }
    free(models->items);
    models->items = NULL;
    models->count = 0;
}

enum ec_status inf_ollama_tags(struct inf_ollama *ol, struct inf_ollama_models *out,
                               struct ec_err *err)
{
    out->items = NULL;
    out->count = 0;
    struct ec_http_response resp;
    ec_http_response_init(&resp);
    enum ec_status st = get_json(ol, "/api/tags", "/api/tags", &resp, err);
    json_t *models = st == EC_OK ? json_object_get(resp.json, "models") : NULL;
    if (st == EC_OK && !json_is_array(models))
        st = ec_err_set(err, EC_EUNAVAIL, INF_OLLAMA_ERROR_CODE,
                        "ollama /api/tags answered without a \"models\" array");
    if (st == EC_OK) {
        size_t n = json_array_size(models);
        if (n > MAX_MODELS)
            n = MAX_MODELS;
        out->items = ec_xcalloc(n > 0 ? n : 1, sizeof(*out->items));
        for (size_t i = 0; i < n; i++) {
            json_t *m = json_array_get(models, i);
            const char *name = json_string_value(json_object_get(m, "name"));
            if (name == NULL)
                name = json_string_value(json_object_get(m, "model"));
            if (name == NULL || strlen(name) > MAX_NAME_LEN)
                continue;
            struct inf_ollama_model *dst = &out->items[out->count++];
            json_t *details = json_object_get(m, "details");
            json_t *size = json_object_get(m, "size");
            dst->name = ec_xstrdup(name);
            dst->size = json_is_integer(size) ? (int64_t)json_integer_value(size) : 0;
            dst->digest = ec_xstrdup(str_or_empty(m, "digest"));
            dst->modified_at = ec_xstrdup(str_or_empty(m, "modified_at"));
            dst->parameter_size = ec_xstrdup(str_or_empty(details, "parameter_size"));
            dst->quantization_level = ec_xstrdup(str_or_empty(details, "quantization_level"));
        }
    }
    ec_http_response_release(&resp);
    return st;
}

bool inf_ollama_models_has(const struct inf_ollama_models *models, const char *name)
{
    size_t n = strlen(name);
    bool bare = strchr(name, ':') == NULL;
    for (size_t i = 0; i < models->count; i++) {
        const char *have = models->items[i].name;
        if (strcmp(have, name) == 0)
            return true;
        if (bare && strncmp(have, name, n) == 0 && strcmp(have + n, ":latest") == 0)
            return true;
    }
    return false;
}

/* --- generate and chat ------------------------------------------------------------------------ */

static json_t *request_body(const char *model, const struct inf_ollama_gen_opts *opts, bool stream)
{
    json_t *body = json_object();
    json_object_set_new(body, "model", json_string(model));
    json_object_set_new(body, "stream", json_boolean(stream));
    if (opts == NULL)
        return body;
    if (opts->json_format)
        json_object_set_new(body, "format", json_string("json"));
    if (opts->has_temperature || opts->num_predict > 0) {
        json_t *o = json_object();
        if (opts->has_temperature)
            json_object_set_new(o, "temperature", json_real(opts->temperature));
        if (opts->num_predict > 0)
            json_object_set_new(o, "num_predict", json_integer(opts->num_predict));
        json_object_set_new(body, "options", o);
    }
    return body;
}

static enum ec_status check_args(const char *model, const char *what, struct ec_err *err)
{
    if (model == NULL || model[0] == '\0')
        return ec_err_set(err, EC_EINVAL, "model_required", "%s needs a model name", what);
    if (strlen(model) > MAX_NAME_LEN)
        return ec_err_set(err, EC_EINVAL, "model_required", "model name \"%.64s...\" is too long",
                          model);
    return EC_OK;
}

enum ec_status inf_ollama_generate(struct inf_ollama *ol, const char *model, const char *prompt,
                                   const struct inf_ollama_gen_opts *opts, char **text,
                                   struct ec_err *err)
{
    *text = NULL;
    enum ec_status st = check_args(model, "generate", err);
    if (st != EC_OK)
        return st;
    json_t *body = request_body(model, opts, false);
    json_object_set_new(body, "prompt", json_string(prompt != NULL ? prompt : ""));
    if (opts != NULL && opts->system != NULL)
        json_object_set_new(body, "system", json_string(opts->system));
    char url[512];
    snprintf(url, sizeof(url), "%s/api/generate", ol->base);
    size_t cap =
        opts != NULL && opts->max_text_bytes > 0 ? opts->max_text_bytes : DEFAULT_MAX_TEXT_BYTES;
    struct ec_http_request req = {
        .method = EC_HTTP_POST,
        .url = url,
        .connect_timeout_ms = ol->connect_timeout_ms,
        .first_byte_timeout_ms = ol->first_byte_timeout_ms,
        .idle_timeout_ms = ol->idle_timeout_ms,
        /* No body timeout by default: a long answer may take minutes; first byte and idle
         * timeouts catch a dead Ollama. ec_http_json's default would cut it at 30 s. */
        .timeout_ms = opts != NULL && opts->timeout_ms > 0 ? opts->timeout_ms : INT64_C(1) << 40,
        .max_response_bytes = cap + 64 * 1024,
    };
    struct ec_http_response resp;
    ec_http_response_init(&resp);
    st = ec_http_json(ol->http, &req, body, &resp, err);
    json_decref(body);
    if (st != EC_OK) {
        st = transport_error(st, "/api/generate", err);
    } else if (resp.status < 200 || resp.status > 299) {
        st = answer_error(&resp, "/api/generate", err);
    } else {
        const char *r = json_string_value(json_object_get(resp.json, "response"));
        const char *e = json_string_value(json_object_get(resp.json, "error"));
        if (e != NULL)
            st = ec_err_set(err, EC_EUNAVAIL, INF_OLLAMA_ERROR_CODE,
                            "ollama /api/generate failed: %.180s", e);
        else if (r == NULL)
            st = ec_err_set(err, EC_EUNAVAIL, INF_OLLAMA_ERROR_CODE,
                            "ollama /api/generate answered without \"response\"");
        else if (strlen(r) > cap)
            st = ec_err_set(err, EC_EUNAVAIL, INF_OLLAMA_ERROR_CODE,
                            "ollama /api/generate answer is over %zu bytes", cap);
        else
            *text = ec_xstrdup(r);
    }
    ec_http_response_release(&resp);
    return st;
}

struct stream_ctx {
    inf_ollama_chunk_fn fn;
    inf_ollama_progress_fn progress_fn;
    void *ctx;
    bool chat;
    bool done;
    bool cb_failed;     /* the caller's callback said stop: its status passes through */
    bool ollama_failed; /* a line carried {"error":...} */
};

static enum ec_status on_line(void *p, const char *line, size_t len, struct ec_err *err)
{
    struct stream_ctx *sc = p;
    json_error_t jerr;
    json_t *obj = json_loadb(line, len, 0, &jerr);
    if (!json_is_object(obj)) {
        json_decref(obj);
        sc->ollama_failed = true;
        return ec_err_set(err, EC_EUNAVAIL, INF_OLLAMA_ERROR_CODE,
                          "ollama sent a stream line that is not a JSON object");
    }
    const char *e = json_string_value(json_object_get(obj, "error"));
    if (e != NULL) {
        enum ec_status st =
            ec_err_set(err, EC_EUNAVAIL, INF_OLLAMA_ERROR_CODE, "ollama stream failed: %.180s", e);
        json_decref(obj);
        sc->ollama_failed = true;
        return st;
    }
    enum ec_status st = EC_OK;
    if (sc->progress_fn != NULL || (sc->fn == NULL && !sc->chat)) {
        /* pull progress */
        json_t *total = json_object_get(obj, "total");
        json_t *completed = json_object_get(obj, "completed");
        struct inf_ollama_progress pr = {
            .status = str_or_empty(obj, "status"),
            .digest = str_or_empty(obj, "digest"),
            .total = json_is_integer(total) ? (int64_t)json_integer_value(total) : 0,
            .completed = json_is_integer(completed) ? (int64_t)json_integer_value(completed) : 0,
        };
        if (strcmp(pr.status, "success") == 0)
            sc->done = true;
        if (sc->progress_fn != NULL)
            st = sc->progress_fn(sc->ctx, &pr, err);
    } else {
        json_t *content = sc->chat ? json_object_get(json_object_get(obj, "message"), "content")
                                   : json_object_get(obj, "response");
        json_t *eval = json_object_get(obj, "eval_count");
        struct inf_ollama_chunk ch = {
            .content = json_is_string(content) ? json_string_value(content) : "",
            .content_len = json_is_string(content) ? json_string_length(content) : 0,
            .done = json_is_true(json_object_get(obj, "done")),
            .done_reason = str_or_empty(obj, "done_reason"),
            .eval_count = json_is_integer(eval) ? (int64_t)json_integer_value(eval) : 0,
            .line = line,
            .line_len = len,
        };
        if (ch.done)
            sc->done = true;
        st = sc->fn(sc->ctx, &ch, err);
    }
    json_decref(obj);
    if (st != EC_OK)
        sc->cb_failed = true;
    return st;
}

static enum ec_status run_stream(struct inf_ollama *ol, const char *path, json_t *body,
                                 int64_t timeout_ms, struct stream_ctx *sc, struct ec_err *err)
{
    char url[512];
    snprintf(url, sizeof(url), "%s%s", ol->base, path);
    char *text = json_dumps(body, JSON_COMPACT);
    if (text == NULL)
        return ec_err_set(err, EC_EINVAL, NULL, "cannot serialize the %s request", path);
    struct ec_http_request req = {
        .method = EC_HTTP_POST,
        .url = url,
        .body = text,
        .body_len = strlen(text),
        .content_type = "application/json",
        .connect_timeout_ms = ol->connect_timeout_ms,
        .first_byte_timeout_ms = ol->first_byte_timeout_ms,
        .idle_timeout_ms = ol->idle_timeout_ms,
        .timeout_ms = timeout_ms,
        .max_response_bytes = 64 * 1024,
    };
    struct ec_http_response resp;
    ec_http_response_init(&resp);
    enum ec_status st = ec_http_stream(ol->http, &req, on_line, sc, &resp, err);
    free(text);
    if (st != EC_OK) {
        if (!sc->cb_failed && !sc->ollama_failed)
            st = transport_error(st, path, err);
    } else if (resp.status < 200 || resp.status > 299) {
        st = answer_error(&resp, path, err);
    } else if (!sc->done) {
        st = ec_err_set(err, EC_EUNAVAIL, INF_OLLAMA_ERROR_CODE,
                        "ollama %s stream ended before it was done", path);
    }
    ec_http_response_release(&resp);
    return st;
}

enum ec_status inf_ollama_generate_stream(struct inf_ollama *ol, const char *model,
                                          const char *prompt,
                                          const struct inf_ollama_gen_opts *opts,
                                          inf_ollama_chunk_fn fn, void *ctx, struct ec_err *err)
{
    enum ec_status st = check_args(model, "generate", err);
    if (st != EC_OK)
        return st;
    EC_ASSERT(fn != NULL);
    json_t *body = request_body(model, opts, true);
    json_object_set_new(body, "prompt", json_string(prompt != NULL ? prompt : ""));
    if (opts != NULL && opts->system != NULL)
        json_object_set_new(body, "system", json_string(opts->system));
    struct stream_ctx sc = { .fn = fn, .ctx = ctx };
    st = run_stream(ol, "/api/generate", body, opts != NULL ? opts->timeout_ms : 0, &sc, err);
    json_decref(body);
    return st;
}

enum ec_status inf_ollama_chat(struct inf_ollama *ol, const char *model,
                               const struct inf_ollama_message *messages, size_t n_messages,
                               const struct inf_ollama_gen_opts *opts, inf_ollama_chunk_fn fn,
                               void *ctx, struct ec_err *err)
{
    enum ec_status st = check_args(model, "chat", err);
    if (st != EC_OK)
        return st;
    EC_ASSERT(fn != NULL);
    json_t *body = request_body(model, opts, true);
    json_t *msgs = json_array();
    for (size_t i = 0; i < n_messages; i++) {
        json_t *m = json_object();
        json_object_set_new(m, "role", json_string(messages[i].role ? messages[i].role : "user"));
        json_object_set_new(m, "content",
                            json_string(messages[i].content ? messages[i].content : ""));
        json_array_append_new(msgs, m);
    }
    json_object_set_new(body, "messages", msgs);
    struct stream_ctx sc = { .fn = fn, .ctx = ctx, .chat = true };
    st = run_stream(ol, "/api/chat", body, opts != NULL ? opts->timeout_ms : 0, &sc, err);
    json_decref(body);
    return st;
}

enum ec_status inf_ollama_pull(struct inf_ollama *ol, const char *model, inf_ollama_progress_fn fn,
                               void *ctx, struct ec_err *err)
{
    enum ec_status st = check_args(model, "pull", err);
    if (st != EC_OK)
        return st;
    json_t *body = json_object();
    json_object_set_new(body, "name", json_string(model));
    json_object_set_new(body, "model", json_string(model));
    json_object_set_new(body, "stream", json_true());
    struct stream_ctx sc = { .progress_fn = fn, .ctx = ctx };
    st = run_stream(ol, "/api/pull", body, 0, &sc, err);
    json_decref(body);
    return st;
}
