/* The Ollama client, over ec_http (libcurl): version and tags probes, whole and streamed
 * /api/generate, streamed /api/chat, /api/pull with progress. Shared by the inference service,
 * the coordinator and the agent runtime.
 *
 * Usage:
 *     struct inf_ollama *ol = NULL;
 *     if (inf_ollama_new(NULL, &ol, &err) != EC_OK) ...     // OLLAMA_HOST or 127.0.0.1:11434
 *     char *text = NULL;
 *     if (inf_ollama_generate(ol, "qwen2.5:7b", "Say hi", NULL, &text, &err) == EC_OK) {
 *         ... use text ...
 *         free(text);
 *     }
 *     inf_ollama_free(ol);
 *
 * ec_http_global_init must have run (main does it). A client is thread-safe: share one per
 * process. Every failure of Ollama (not running, refused, timed out, an error answer, a stream cut
 * short or carrying {"error":...}) is EC_EUNAVAIL with code "ollama_unavailable" and the cause in
 * err->msg; only bad arguments from the caller are EC_EINVAL, and a callback's own non-OK status
 * is passed through unchanged. */
#ifndef INF_OLLAMA_H
#define INF_OLLAMA_H

#include "common/ec_status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INF_OLLAMA_DEFAULT_HOST                  "http://127.0.0.1:11434"
#define INF_OLLAMA_DEFAULT_CONNECT_TIMEOUT_MS    2000
#define INF_OLLAMA_DEFAULT_FIRST_BYTE_TIMEOUT_MS 120000 /* a cold model load */
#define INF_OLLAMA_DEFAULT_IDLE_TIMEOUT_MS       60000
#define INF_OLLAMA_PROBE_TIMEOUT_MS              2000 /* version and tags */
#define INF_OLLAMA_MAX_RESPONSE_BYTES            (8u << 20)
#define INF_OLLAMA_ERROR_CODE                    "ollama_unavailable"

struct inf_ollama;

/* Fields left 0/NULL take the defaults. Borrowed during inf_ollama_new only. */
struct inf_ollama_opts {
    const char *host;              /* NULL: $OLLAMA_HOST, else INF_OLLAMA_DEFAULT_HOST */
    int64_t connect_timeout_ms;    /* 0: INF_OLLAMA_DEFAULT_CONNECT_TIMEOUT_MS */
    int64_t first_byte_timeout_ms; /* 0: INF_OLLAMA_DEFAULT_FIRST_BYTE_TIMEOUT_MS */
    int64_t idle_timeout_ms;       /* streams: no byte for this long cancels; 0: the default */
    int64_t probe_timeout_ms;      /* version and tags, whole request; 0: the default */
};

/* "host:port" (Ollama's own convention), "http://host:port" or "https://host:port[/prefix]" to
 * a base URL with a scheme and no trailing '/'. Caller frees *url with free(). */
enum ec_status inf_ollama_base_url(const char *host, char **url, struct ec_err *err);

/* opts may be NULL. An invalid host is EC_EINVAL. Caller frees with inf_ollama_free. */
enum ec_status inf_ollama_new(const struct inf_ollama_opts *opts, struct inf_ollama **out,
                              struct ec_err *err);
void inf_ollama_free(struct inf_ollama *ol); /* no call may be running; NULL is a no-op */
/* The base URL in use ("http://127.0.0.1:11434"); borrowed for the client's life. */
const char *inf_ollama_host(const struct inf_ollama *ol);

/* GET /api/version: writes the "version" string (truncated to cap) into out. */
enum ec_status inf_ollama_version(struct inf_ollama *ol, char *out, size_t cap, struct ec_err *err);

struct inf_ollama_model {
    char *name;
    int64_t size;             /* bytes; 0 when absent */
    char *digest;             /* "" when absent */
    char *modified_at;        /* "" when absent */
    char *parameter_size;     /* details.parameter_size, "" when absent */
    char *quantization_level; /* details.quantization_level, "" when absent */
};

struct inf_ollama_models {
    struct inf_ollama_model *items; /* owned */
    size_t count;
};

/* GET /api/tags: the installed models (at most 1000). Release out with
 * inf_ollama_models_release, also after a failure. */
enum ec_status inf_ollama_tags(struct inf_ollama *ol, struct inf_ollama_models *out,
                               struct ec_err *err);
void inf_ollama_models_release(struct inf_ollama_models *models);
/* True when name is installed; "qwen2.5" also matches "qwen2.5:latest". */
bool inf_ollama_models_has(const struct inf_ollama_models *models, const char *name);

/* Options of one generate or chat call; NULL means all defaults. */
struct inf_ollama_gen_opts {
    const char *system;    /* generate only: system prompt; NULL: the model's */
    bool has_temperature;  /* else the model's default */
    double temperature;    /* options.temperature */
    int64_t num_predict;   /* options.num_predict; 0: unset */
    bool json_format;      /* "format":"json" */
    int64_t timeout_ms;    /* whole call; 0: none beyond first-byte and idle timeouts */
    size_t max_text_bytes; /* cap on the text collected by inf_ollama_generate; 0: 8 MiB */
};

/* POST /api/generate with stream:false: the "response" text. Caller frees *text with free(). */
enum ec_status inf_ollama_generate(struct inf_ollama *ol, const char *model, const char *prompt,
                                   const struct inf_ollama_gen_opts *opts, char **text,
                                   struct ec_err *err);

/* One NDJSON line of a streamed generate or chat, handed on as it arrives. Everything is
 * borrowed until the callback returns. */
struct inf_ollama_chunk {
    const char *content; /* generate: "response"; chat: "message.content"; "" when absent */
    size_t content_len;
    bool done;
    const char *done_reason; /* "" unless done */
    int64_t eval_count;      /* tokens generated, on the done line; else 0 */
    const char *line;        /* the raw NDJSON line */
    size_t line_len;
};

/* Anything but EC_OK cancels the stream and is returned as is. */
typedef enum ec_status (*inf_ollama_chunk_fn)(void *ctx, const struct inf_ollama_chunk *chunk,
                                              struct ec_err *err);

/* POST /api/generate with stream:true. A stream that ends without a done line is EC_EUNAVAIL. */
enum ec_status inf_ollama_generate_stream(struct inf_ollama *ol, const char *model,
                                          const char *prompt,
                                          const struct inf_ollama_gen_opts *opts,
                                          inf_ollama_chunk_fn fn, void *ctx, struct ec_err *err);

struct inf_ollama_message {
    const char *role; /* "system", "user", "assistant" */
    const char *content;
};

/* POST /api/chat with stream:true. As generate_stream. */
enum ec_status inf_ollama_chat(struct inf_ollama *ol, const char *model,
                               const struct inf_ollama_message *messages, size_t n_messages,
                               const struct inf_ollama_gen_opts *opts, inf_ollama_chunk_fn fn,
                               void *ctx, struct ec_err *err);

struct inf_ollama_progress {
    const char *status; /* "pulling manifest", "downloading ...", "success" */
    const char *digest; /* "" when absent */
    int64_t total;      /* bytes, 0 when unknown */
    int64_t completed;
};

typedef enum ec_status (*inf_ollama_progress_fn)(void *ctx,
                                                 const struct inf_ollama_progress *progress,
                                                 struct ec_err *err);

/* POST /api/pull with stream:true; fn (may be NULL) sees each progress line. EC_OK once Ollama
 * says "success". */
enum ec_status inf_ollama_pull(struct inf_ollama *ol, const char *model, inf_ollama_progress_fn fn,
                               void *ctx, struct ec_err *err);

#endif
