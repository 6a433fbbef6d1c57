/* HTTP client for outside services (Ollama, Resend, OIDC providers, the coordinator's JSON API) on
 * libcurl: capped responses, JSON in and out, NDJSON streaming, and one error mapping for all. */
#ifndef EC_HTTP_H
#define EC_HTTP_H

#include "common/ec_buf.h"
#include "common/ec_status.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Defaults for request fields left at 0. */
#define EC_HTTP_DEFAULT_CONNECT_TIMEOUT_MS    10000
#define EC_HTTP_DEFAULT_TIMEOUT_MS            30000  /* ec_http_do/json only; streams have none */
#define EC_HTTP_DEFAULT_FIRST_BYTE_TIMEOUT_MS 120000 /* a cold model load is slow */
#define EC_HTTP_DEFAULT_IDLE_TIMEOUT_MS       60000
#define EC_HTTP_DEFAULT_MAX_RESPONSE_BYTES    (8u << 20)
#define EC_HTTP_DEFAULT_MAX_LINE_BYTES        (1u << 20)
/* Response headers kept per response; more or larger aborts the transfer with EC_ETOOBIG. */
#define EC_HTTP_MAX_HEADERS      100
#define EC_HTTP_MAX_HEADER_BYTES (32u << 10)

/* Calls curl_global_init once and ignores SIGPIPE (a TLS write to a peer that reset must not kill
 * the process). Call from main before any thread starts; later calls are no-ops. */
enum ec_status ec_http_global_init(struct ec_err *err);
/* For tests and tools that want a leak-free exit; no client may exist any more. */
void ec_http_global_cleanup(void);

enum ec_http_method {
    EC_HTTP_GET = 0,
    EC_HTTP_POST,
    EC_HTTP_PUT,
    EC_HTTP_PATCH,
    EC_HTTP_DELETE,
    EC_HTTP_HEAD,
};

/* A request header. Values may carry tokens: they never appear in errors or logs. */
struct ec_http_header {
    const char *name;
    const char *value;
};

/* TLS settings. Peer and host verification are always on; a dev certificate is trusted by naming
 * its CA in ca_file, never by turning verification off. All paths are PEM files; NULL = unset. */
struct ec_http_tls {
    const char *ca_file;   /* NULL: the system store */
    const char *cert_file; /* client certificate for mTLS */
    const char *key_file;  /* its key */
};

/* One request. Everything is borrowed for the duration of the call. */
struct ec_http_request {
    enum ec_http_method method;
    const char *url; /* http:// or https:// only; redirects are not followed */
    const struct ec_http_header *headers;
    size_t header_count;
    const void *body; /* NULL: no body */
    size_t body_len;
    const char *content_type;      /* of body; NULL: application/octet-stream */
    const struct ec_http_tls *tls; /* NULL: the client's; else replaces it whole */

    int64_t connect_timeout_ms; /* 0: EC_HTTP_DEFAULT_CONNECT_TIMEOUT_MS */
    int64_t timeout_ms;         /* whole transfer; 0: the default for do/json, none for streams */
    int64_t first_byte_timeout_ms; /* start to the first response byte; 0: the default */
    int64_t idle_timeout_ms;       /* no byte for this long after the first; 0: the default */
    size_t max_response_bytes;     /* body cap; 0: the default (streams: caps a non-2xx body) */
    size_t max_line_bytes;         /* streams: one line's cap; 0: the default */
};

/* A response, reusable across requests: each request resets it and keeps its memory.
 * Init once, release once. */
struct ec_http_response {
    long status;        /* the HTTP status; 0 when no answer arrived */
    struct ec_buf body; /* capped by the request's max_response_bytes */
    json_t *json;       /* owned; set when the body is non-empty and the content type is JSON */
    char host[256];     /* the URL's host, for messages */
    /* Private: the final response's headers as "name\0value\0" pairs. */
    struct ec_buf header_data;
    size_t header_count;
};

void ec_http_response_init(struct ec_http_response *resp);
void ec_http_response_release(struct ec_http_response *resp);
/* The first header with this name (case-insensitive), or NULL. Borrowed until the next request. */
const char *ec_http_response_header(const struct ec_http_response *resp, const char *name);
const char *ec_http_response_content_type(const struct ec_http_response *resp);
/* For callers that treat any non-2xx answer as a failure: 2xx is EC_OK, 429 is EC_EUNAVAIL (retry
 * later), anything else EC_EUPSTREAM (a 5xx, or a 4xx meaning our own request was wrong). */
enum ec_status ec_http_response_check(const struct ec_http_response *resp, struct ec_err *err);

/* A client: reuses connections (keep-alive) through a small lock-protected pool of curl handles,
 * so it can be shared by many threads; a thread that makes requests one after another gets the
 * same handle and so the same connection. Created after ec_http_global_init. */
struct ec_http_client;

struct ec_http_client_opts {
    const char *user_agent; /* NULL: "edgecoder" */
    struct ec_http_tls tls; /* defaults for requests with tls == NULL; copied */
    size_t max_idle;        /* curl handles kept between requests; 0: 8 */
};

/* opts may be NULL. Caller frees with ec_http_client_free. */
struct ec_http_client *ec_http_client_new(const struct ec_http_client_opts *opts);
/* No request may be in flight. NULL is a no-op. */
void ec_http_client_free(struct ec_http_client *client);

/* Sends req and fills resp (status, headers, capped body, json when the content type is JSON).
 * A 4xx/5xx answer is EC_OK with resp->status set. Transport failures: cannot resolve or connect,
 * TLS failure, connection lost: EC_EUNAVAIL; any timeout: EC_ETIMEOUT; body or headers over their
 * cap: EC_ETOOBIG; a body declared JSON that does not parse: EC_EUPSTREAM (status and body are
 * still filled). err->msg names the host and curl's reason, never headers or bodies. */
enum ec_status ec_http_do(struct ec_http_client *client, const struct ec_http_request *req,
                          struct ec_http_response *resp, struct ec_err *err);

/* ec_http_do for JSON APIs: sends json_body (compact; NULL: req->body as JSON text, if any) with
 * Content-Type application/json, asks for application/json, parses the answer into resp->json. */
enum ec_status ec_http_json(struct ec_http_client *client, const struct ec_http_request *req,
                            const json_t *json_body, struct ec_http_response *resp,
                            struct ec_err *err);

/* Called with each complete line of a streamed body as it arrives: NUL-terminated, without its
 * "\n" or "\r\n"; empty lines are skipped. Anything but EC_OK cancels the transfer and becomes
 * ec_http_stream's result; the callback may fill err (the caller's, may be NULL) to say why. */
typedef enum ec_status (*ec_http_line_fn)(void *ctx, const char *line, size_t len,
                                          struct ec_err *err);

/* Streams an NDJSON (or any line-based) body: a 2xx body goes to line_cb line by line, the last
 * line delivered even without a trailing newline once the body ends cleanly; resp gets the status
 * and headers. A non-2xx body is not streamed: it is collected into resp->body (and resp->json)
 * as by ec_http_do, so an error object reads the same either way. Timeouts: connect, first byte,
 * idle (no byte for idle_timeout_ms: EC_ETIMEOUT) and, if timeout_ms is set, an overall deadline.
 * A line over max_line_bytes is EC_ETOOBIG; a connection lost mid-body is EC_EUNAVAIL. */
enum ec_status ec_http_stream(struct ec_http_client *client, const struct ec_http_request *req,
                              ec_http_line_fn line_cb, void *ctx, struct ec_http_response *resp,
                              struct ec_err *err);

#endif
