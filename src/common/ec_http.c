/* HTTP client on libcurl. Each pooled curl handle is driven through its own multi handle: the multi
 * owns the connection cache (keep-alive survives between requests) and our own poll loop checks
 * the first-byte and idle timeouts to the millisecond, which curl's options cannot express. */
#include "common/ec_http.h"
#include "common/ec_log.h"
#include "common/ec_mem.h"

#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Far beyond any sane timeout, near enough to zero that deadline arithmetic cannot overflow. */
#define MAX_TIMEOUT_MS (30LL * 24 * 3600 * 1000)
/* curl's poll wakes at least this often even when no timer of ours is close. */
#define MAX_POLL_WAIT_MS 1000
#define DEFAULT_MAX_IDLE 8

/* ---- global init */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init_once(void)
{
    signal(SIGPIPE, SIG_IGN);
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

enum ec_status ec_http_global_init(struct ec_err *err)
{
    pthread_once(&global_once, global_init_once);
    if (global_rc != CURLE_OK)
        return ec_err_set(err, EC_EINTERNAL, NULL, "cannot initialize libcurl: %s",
                          curl_easy_strerror(global_rc));
    return EC_OK;
}

void ec_http_global_cleanup(void)
{
    if (global_rc == CURLE_OK)
        curl_global_cleanup();
    global_rc = CURLE_FAILED_INIT;
}

/* ---- the client and its pool of handles */

/* One curl handle and the buffers its requests reuse. Confined to the thread that took it from
 * the pool until it is put back. */
struct http_handle {
    CURLM *multi; /* owns the connection cache */
    CURL *easy;
    struct ec_buf line;        /* a stream's partial line */
    struct ec_buf req_body;    /* ec_http_json's serialized body */
    struct ec_buf header_line; /* "Name: value" while building the header list */
    char errbuf[CURL_ERROR_SIZE];
    struct http_handle *next;
};

struct ec_http_client {
    pthread_mutex_t lock;     /* guards idle and idle_count; everything else is immutable */
    struct http_handle *idle; /* most recently used first, so a thread gets its warm connection */
    size_t idle_count;
    size_t max_idle;
    char *user_agent;
    char *ca_file;
    char *cert_file;
    char *key_file;
};

static char *dup_or_null(const char *s)
{
    return s != NULL ? ec_xstrdup(s) : NULL;
}

struct ec_http_client *ec_http_client_new(const struct ec_http_client_opts *opts)
{
    /* Cannot fail short of out-of-memory; a forgotten call in main is caught here, once. */
    EC_ASSERT(ec_http_global_init(NULL) == EC_OK);
    struct ec_http_client *c = ec_xcalloc(1, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
    c->max_idle = DEFAULT_MAX_IDLE;
    c->user_agent = ec_xstrdup("edgecoder");
    if (opts != NULL) {
        if (opts->max_idle > 0)
            c->max_idle = opts->max_idle;
        if (opts->user_agent != NULL) {
            free(c->user_agent);
            c->user_agent = ec_xstrdup(opts->user_agent);
        }
        c->ca_file = dup_or_null(opts->tls.ca_file);
        c->cert_file = dup_or_null(opts->tls.cert_file);
        c->key_file = dup_or_null(opts->tls.key_file);
    }
    return c;
}

static void handle_free(struct http_handle *h)
{
    /* The easy handle is never left in the multi, so the multi can go first. */
    curl_multi_cleanup(h->multi);
    curl_easy_cleanup(h->easy);
    ec_buf_release(&h->line);
    ec_buf_release(&h->req_body);
    ec_buf_release(&h->header_line);
    free(h);
}

void ec_http_client_free(struct ec_http_client *client)
{
    if (client == NULL)
        return;
    while (client->idle != NULL) {
        struct http_handle *h = client->idle;
        client->idle = h->next;
        handle_free(h);
    }
    pthread_mutex_destroy(&client->lock);
    free(client->user_agent);
    free(client->ca_file);
    free(client->cert_file);
    free(client->key_file);
    free(client);
}

static struct http_handle *handle_get(struct ec_http_client *c)
{
    pthread_mutex_lock(&c->lock);
    struct http_handle *h = c->idle;
    if (h != NULL) {
        c->idle = h->next;
        c->idle_count--;
    }
    pthread_mutex_unlock(&c->lock);
    if (h != NULL)
        return h;
    h = ec_xcalloc(1, sizeof(*h));
    h->multi = curl_multi_init();
    h->easy = curl_easy_init();
    EC_ASSERT(h->multi != NULL && h->easy != NULL); /* only fails out of memory */
    /* The default (4 x attached handles) drops to 0 between requests; a handle talks to few hosts.
     */
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, 4L);
    ec_buf_init(&h->line, 0);
    ec_buf_init(&h->req_body, 0);
    ec_buf_init(&h->header_line, 0);
    return h;
}

static void handle_put(struct ec_http_client *c, struct http_handle *h)
{
    /* The options point at the caller's body and our header list, both gone after the call. */
    curl_easy_reset(h->easy);
    pthread_mutex_lock(&c->lock);
    bool keep = c->idle_count < c->max_idle;
    if (keep) {
        h->next = c->idle;
        c->idle = h;
        c->idle_count++;
    }
    pthread_mutex_unlock(&c->lock);
    if (!keep)
        handle_free(h);
}

/* ---- responses */

void ec_http_response_init(struct ec_http_response *resp)
{
    memset(resp, 0, sizeof(*resp));
    ec_buf_init(&resp->body, EC_HTTP_DEFAULT_MAX_RESPONSE_BYTES);
    ec_buf_init(&resp->header_data, EC_HTTP_MAX_HEADER_BYTES);
}

void ec_http_response_release(struct ec_http_response *resp)
{
    ec_buf_release(&resp->body);
    ec_buf_release(&resp->header_data);
    json_decref(resp->json);
    resp->json = NULL;
    resp->header_count = 0;
    resp->status = 0;
}

static void response_reset(struct ec_http_response *resp, size_t max_body)
{
    resp->status = 0;
    ec_buf_reset(&resp->body);
    resp->body.max = max_body;
    json_decref(resp->json);
    resp->json = NULL;
    ec_buf_reset(&resp->header_data);
    resp->header_count = 0;
    resp->host[0] = '\0';
}

const char *ec_http_response_header(const struct ec_http_response *resp, const char *name)
{
    const char *p = resp->header_data.data;
    for (size_t i = 0; i < resp->header_count; i++) {
        const char *value = p + strlen(p) + 1;
        if (strcasecmp(p, name) == 0)
            return value;
        p = value + strlen(value) + 1;
    }
    return NULL;
}

const char *ec_http_response_content_type(const struct ec_http_response *resp)
{
    return ec_http_response_header(resp, "content-type");
}

/* application/json or any structured-syntax "+json" type, parameters ignored. */
static bool content_type_is_json(const char *ct)
{
    if (ct == NULL)
        return false;
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    static const char exact[] = "application/json";
    static const char suffix[] = "+json";
    if (n == sizeof(exact) - 1 && strncasecmp(ct, exact, n) == 0)
        return true;
    return n > sizeof(suffix) - 1 &&
           strncasecmp(ct + n - (sizeof(suffix) - 1), suffix, sizeof(suffix) - 1) == 0;
}

enum ec_status ec_http_response_check(const struct ec_http_response *resp, struct ec_err *err)
{
    if (resp->status >= 200 && resp->status < 300)
        return EC_OK;
    if (resp->status == 0)
        return ec_err_set(err, EC_EUNAVAIL, NULL, "no answer from \"%s\"", resp->host);
    if (resp->status == 429)
        return ec_err_set(err, EC_EUNAVAIL, NULL, "\"%s\" is rate limiting requests (HTTP 429)",
                          resp->host);
    return ec_err_set(err, EC_EUPSTREAM, NULL, "\"%s\" answered HTTP %ld", resp->host,
                      resp->status);
}

/* Position only: jansson's error text quotes the body, which may hold a token. */
static enum ec_status response_parse_json(struct ec_http_response *resp, struct ec_err *err)
{
    if (resp->body.len == 0 || !content_type_is_json(ec_http_response_content_type(resp)))
        return EC_OK;
    json_error_t jerr;
    resp->json = json_loadb(resp->body.data, resp->body.len, JSON_DECODE_ANY, &jerr);
    if (resp->json == NULL)
        return ec_err_set(err, EC_EUPSTREAM, NULL,
                          "cannot parse response from \"%s\" as JSON at line %d, column %d",
                          resp->host, jerr.line, jerr.column);
    return EC_OK;
}

/* The authority's host, without userinfo or port, for messages: the path and query may carry
 * tokens and the userinfo a password. */
static void url_host(const char *url, char *out, size_t cap)
{
    const char *p = strstr(url, "://");
    p = p != NULL ? p + 3 : url;
    size_t n = strcspn(p, "/?#");
    const char *at = memrchr(p, '@', n);
    if (at != NULL) {
        n -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    const char *end = p[0] == '[' ? memchr(p, ']', n) : memchr(p, ':', n);
    if (end != NULL)
        n = (size_t)(end - p) + (p[0] == '[');
    snprintf(out, cap, "%.*s", (int)n, p);
}

/* ---- one transfer */

enum http_abort {
    ABORT_NONE = 0,
    ABORT_BODY_CAP,
    ABORT_HEADER_CAP,
    ABORT_LINE_CAP,
    ABORT_CALLBACK,
    ABORT_FIRST_BYTE,
    ABORT_IDLE,
};

struct http_transfer {
    struct http_handle *h;
    struct ec_http_response *resp;
    ec_http_line_fn line_cb; /* NULL: collect the body */
    void *ctx;
    struct ec_err *err;
    size_t max_body;
    size_t max_line;
    int64_t first_byte_timeout_ms;
    int64_t idle_timeout_ms;
    int64_t started_ms;
    int64_t last_rx_ms;
    bool got_byte;
    bool body_started;
    bool streaming; /* the body goes to line_cb: set at the first body byte of a 2xx */
    enum http_abort abort;
    enum ec_status cb_status;
};

static void transfer_note_rx(struct http_transfer *t)
{
    t->got_byte = true;
    t->last_rx_ms = ec_mono_ms();
}

static size_t on_header(char *data, size_t size, size_t nitems, void *userdata)
{
    struct http_transfer *t = userdata;
    struct ec_http_response *resp = t->resp;
    size_t n = size * nitems;
    transfer_note_rx(t);
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        /* A new response (after a 1xx): only the final one's headers count. */
        ec_buf_reset(&resp->header_data);
        resp->header_count = 0;
        const char *sp = memchr(data, ' ', n);
        if (sp != NULL)
            resp->status = strtol(sp + 1, NULL, 10);
        return n;
    }
    size_t len = n;
    while (len > 0 && (data[len - 1] == '\r' || data[len - 1] == '\n'))
        len--;
    const char *colon = memchr(data, ':', len);
    /* The blank end-of-headers line and obsolete folded continuations carry nothing we keep. */
    if (len == 0 || data[0] == ' ' || data[0] == '\t' || colon == NULL)
        return n;
    const char *value = colon + 1;
    const char *end = data + len;
    while (value < end && (*value == ' ' || *value == '\t'))
        value++;
    while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    struct ec_buf *hd = &resp->header_data;
    if (resp->header_count >= EC_HTTP_MAX_HEADERS ||
        ec_buf_append(hd, data, (size_t)(colon - data)) != EC_OK ||
        ec_buf_putc(hd, '\0') != EC_OK ||
        ec_buf_append(hd, value, (size_t)(end - value)) != EC_OK ||
        ec_buf_putc(hd, '\0') != EC_OK) {
        t->abort = ABORT_HEADER_CAP;
        return 0;
    }
    resp->header_count++;
    return n;
}

/* Hands the reassembled line to the callback; a cancel is remembered for the result. */
static enum ec_status stream_emit(struct http_transfer *t)
{
    struct ec_buf *line = &t->h->line;
    size_t len = line->len;
    if (len > 0 && line->data[len - 1] == '\r')
        len--;
    enum ec_status st = EC_OK;
    if (len > 0) {
        line->data[len] = '\0';
        st = t->line_cb(t->ctx, line->data, len, t->err);
    }
    ec_buf_reset(line);
    if (st != EC_OK) {
        t->abort = ABORT_CALLBACK;
        t->cb_status = st;
    }
    return st;
}

static enum ec_status stream_feed(struct http_transfer *t, const char *data, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        size_t take = nl != NULL ? (size_t)(nl - data) : n;
        if (ec_buf_append(&t->h->line, data, take) != EC_OK) {
            t->abort = ABORT_LINE_CAP;
            return EC_ETOOBIG;
        }
        if (nl == NULL)
            break;
        enum ec_status st = stream_emit(t);
        if (st != EC_OK)
            return st;
        data += take + 1;
        n -= take + 1;
    }
    return EC_OK;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct http_transfer *t = userdata;
    size_t n = size * nmemb;
    transfer_note_rx(t);
    if (!t->body_started) {
        t->body_started = true;
        t->streaming = t->line_cb != NULL && t->resp->status >= 200 && t->resp->status < 300;
    }
    if (t->streaming)
        return stream_feed(t, data, n) == EC_OK ? n : 0;
    if (ec_buf_append(&t->resp->body, data, n) != EC_OK) {
        t->abort = ABORT_BODY_CAP;
        return 0;
    }
    return n;
}

/* Runs the transfer to its end or to one of our timeouts; *code is curl's result. */
static enum ec_status transfer_run(struct http_transfer *t, CURLcode *code, struct ec_err *err)
{
    CURLM *multi = t->h->multi;
    *code = CURLE_FAILED_INIT;
    t->started_ms = ec_mono_ms();
    CURLMcode mc = curl_multi_add_handle(multi, t->h->easy);
    while (mc == CURLM_OK) {
        int running = 0;
        mc = curl_multi_perform(multi, &running);
        CURLMsg *msg;
        int queued;
        bool done = false;
        while ((msg = curl_multi_info_read(multi, &queued)) != NULL) {
            if (msg->msg == CURLMSG_DONE) {
                *code = msg->data.result;
                done = true;
            }
        }
        if (mc != CURLM_OK || done || running == 0)
            break;
        int64_t now = ec_mono_ms();
        int64_t deadline = t->got_byte ? t->last_rx_ms + t->idle_timeout_ms
                                       : t->started_ms + t->first_byte_timeout_ms;
        if (now >= deadline) {
            t->abort = t->got_byte ? ABORT_IDLE : ABORT_FIRST_BYTE;
            break;
        }
        int64_t wait = deadline - now < MAX_POLL_WAIT_MS ? deadline - now : MAX_POLL_WAIT_MS;
        mc = curl_multi_poll(multi, NULL, 0, (int)wait, NULL);
    }
    /* Removing an unfinished transfer closes its connection, so a cancelled stream stops. */
    curl_multi_remove_handle(multi, t->h->easy);
    if (mc != CURLM_OK)
        return ec_err_set(err, EC_EINTERNAL, NULL, "cannot drive request to \"%s\": %s",
                          t->resp->host, curl_multi_strerror(mc));
    return EC_OK;
}

/* curl's results as our statuses; the phrase is followed by the quoted host. */
static const struct {
    CURLcode code;
    enum ec_status status;
    const char *what;
} curl_errors[] = {
    { CURLE_UNSUPPORTED_PROTOCOL, EC_EINVAL, "unsupported URL scheme for" },
    { CURLE_URL_MALFORMAT, EC_EINVAL, "malformed URL for" },
    { CURLE_COULDNT_RESOLVE_PROXY, EC_EUNAVAIL, "cannot resolve the proxy for" },
    { CURLE_COULDNT_RESOLVE_HOST, EC_EUNAVAIL, "cannot resolve" },
    { CURLE_COULDNT_CONNECT, EC_EUNAVAIL, "cannot connect to" },
    { CURLE_OPERATION_TIMEDOUT, EC_ETIMEOUT, "timed out talking to" },
    { CURLE_PEER_FAILED_VERIFICATION, EC_EUNAVAIL, "certificate verification failed for" },
    { CURLE_SSL_PINNEDPUBKEYNOTMATCH, EC_EUNAVAIL, "certificate verification failed for" },
    { CURLE_SSL_CONNECT_ERROR, EC_EUNAVAIL, "TLS handshake failed with" },
    { CURLE_SSL_CACERT_BADFILE, EC_EINVAL, "cannot load the CA file for" },
    { CURLE_SSL_CERTPROBLEM, EC_EINVAL, "cannot load the client certificate for" },
    { CURLE_FILESIZE_EXCEEDED, EC_ETOOBIG, "response too large from" },
    { CURLE_GOT_NOTHING, EC_EUNAVAIL, "empty reply from" },
    { CURLE_PARTIAL_FILE, EC_EUNAVAIL, "connection closed mid-response by" },
    { CURLE_RECV_ERROR, EC_EUNAVAIL, "connection lost to" },
    { CURLE_SEND_ERROR, EC_EUNAVAIL, "connection lost to" },
    { CURLE_HTTP2, EC_EUNAVAIL, "HTTP/2 failure with" },
    { CURLE_HTTP2_STREAM, EC_EUNAVAIL, "HTTP/2 stream failure with" },
    { CURLE_WEIRD_SERVER_REPLY, EC_EUPSTREAM, "malformed reply from" },
    { CURLE_BAD_CONTENT_ENCODING, EC_EUPSTREAM, "malformed content encoding from" },
    { CURLE_OUT_OF_MEMORY, EC_EINTERNAL, "out of memory talking to" },
};

static enum ec_status transfer_result(struct http_transfer *t, CURLcode code, struct ec_err *err)
{
    const char *host = t->resp->host;
    switch (t->abort) {
    case ABORT_BODY_CAP:
        return ec_err_set(err, EC_ETOOBIG, NULL, "response from \"%s\" exceeds %zu bytes", host,
                          t->max_body);
    case ABORT_HEADER_CAP:
        return ec_err_set(err, EC_ETOOBIG, NULL,
                          "response headers from \"%s\" exceed %d headers or %u bytes", host,
                          EC_HTTP_MAX_HEADERS, EC_HTTP_MAX_HEADER_BYTES);
    case ABORT_LINE_CAP:
        return ec_err_set(err, EC_ETOOBIG, NULL, "line in stream from \"%s\" exceeds %zu bytes",
                          host, t->max_line);
    case ABORT_CALLBACK:
        if (err != NULL && err->msg[0] != '\0')
            return t->cb_status; /* the callback said why */
        return ec_err_set(err, t->cb_status, NULL, "stream from \"%s\" cancelled by its consumer",
                          host);
    case ABORT_FIRST_BYTE:
        return ec_err_set(err, EC_ETIMEOUT, NULL, "no response from \"%s\" within %lld ms", host,
                          (long long)t->first_byte_timeout_ms);
    case ABORT_IDLE:
        return ec_err_set(err, EC_ETIMEOUT, NULL, "no data from \"%s\" for %lld ms", host,
                          (long long)t->idle_timeout_ms);
    case ABORT_NONE:
        break;
    }
    if (code == CURLE_OK)
        return EC_OK;
    if (code == CURLE_FILESIZE_EXCEEDED)
        return ec_err_set(err, EC_ETOOBIG, NULL, "response from \"%s\" exceeds %zu bytes", host,
                          t->max_body);
    const char *reason = t->h->errbuf[0] != '\0' ? t->h->errbuf : curl_easy_strerror(code);
    for (size_t i = 0; i < sizeof(curl_errors) / sizeof(curl_errors[0]); i++) {
        if (curl_errors[i].code == code)
            return ec_err_set(err, curl_errors[i].status, NULL, "%s \"%s\": %s",
                              curl_errors[i].what, host, reason);
    }
    return ec_err_set(err, EC_EUNAVAIL, NULL, "request to \"%s\" failed: %s", host, reason);
}

/* ---- request setup */

/* RFC 9110 token characters: anything else in a name would let a caller split the header. */
static bool header_name_ok(const char *name)
{
    if (name == NULL || name[0] == '\0')
        return false;
    for (const char *p = name; *p != '\0'; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("!#$%&'*+-.^_`|~", *p) != NULL))
            return false;
    }
    return true;
}

static struct curl_slist *slist_add(struct curl_slist *list, const char *line)
{
    struct curl_slist *next = curl_slist_append(list, line);
    EC_ASSERT(next != NULL); /* only fails out of memory */
    return next;
}

static bool has_header(const struct ec_http_request *req, const char *name)
{
    for (size_t i = 0; i < req->header_count; i++) {
        if (strcasecmp(req->headers[i].name, name) == 0)
            return true;
    }
    return false;
}

/* The header list; values are checked for line breaks but never quoted back in the error. */
static enum ec_status headers_build(struct http_handle *h, const struct ec_http_request *req,
                                    bool has_body, bool want_json, struct curl_slist **out,
                                    struct ec_err *err)
{
    struct curl_slist *list = NULL;
    struct ec_buf *line = &h->header_line;
    for (size_t i = 0; i < req->header_count; i++) {
        const struct ec_http_header *hd = &req->headers[i];
        if (!header_name_ok(hd->name) || hd->value == NULL || strpbrk(hd->value, "\r\n")) {
            curl_slist_free_all(list);
            return ec_err_set(err, EC_EINVAL, NULL, "invalid request header \"%s\"",
                              header_name_ok(hd->name) ? hd->name : "(bad name)");
        }
        ec_buf_reset(line);
        /* curl drops "Name:" with an empty value; "Name;" is how it sends one. */
        if (hd->value[0] == '\0')
            ec_buf_printf(line, "%s;", hd->name);
        else
            ec_buf_printf(line, "%s: %s", hd->name, hd->value);
        list = slist_add(list, line->data);
    }
    if (has_body && !has_header(req, "content-type")) {
        ec_buf_reset(line);
        ec_buf_printf(line, "Content-Type: %s",
                      req->content_type != NULL ? req->content_type : "application/octet-stream");
        list = slist_add(list, line->data);
    } else if (!has_body) {
        /* A bodiless POST would otherwise claim to be a form. */
        list = slist_add(list, "Content-Type:");
    }
    if (want_json && !has_header(req, "accept"))
        list = slist_add(list, "Accept: application/json");
    /* 100-continue costs a round trip, or a second's stall against servers that ignore it. */
    list = slist_add(list, "Expect:");
    *out = list;
    return EC_OK;
}

static int64_t ms_or(int64_t ms, int64_t dflt)
{
    if (ms <= 0)
        return dflt;
    return ms < MAX_TIMEOUT_MS ? ms : MAX_TIMEOUT_MS;
}

static int dump_to_buf(const char *data, size_t n, void *ctx)
{
    return ec_buf_append(ctx, data, n) == EC_OK ? 0 : -1;
}

static void easy_setup_method(CURL *easy, const struct ec_http_request *req, const void *body,
                              size_t body_len)
{
    static const char *const names[] = {
        [EC_HTTP_GET] = "GET",     [EC_HTTP_POST] = "POST",     [EC_HTTP_PUT] = "PUT",
        [EC_HTTP_PATCH] = "PATCH", [EC_HTTP_DELETE] = "DELETE", [EC_HTTP_HEAD] = "HEAD",
    };
    EC_ASSERT((unsigned)req->method < sizeof(names) / sizeof(names[0]));
    bool sends_body = body != NULL || req->method == EC_HTTP_POST || req->method == EC_HTTP_PUT ||
                      req->method == EC_HTTP_PATCH;
    if (req->method == EC_HTTP_HEAD)
        curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    else if (sends_body) {
        /* Not copied: the body outlives the call that borrows it. */
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body != NULL ? body : "");
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    if (req->method != EC_HTTP_GET && req->method != EC_HTTP_HEAD && req->method != EC_HTTP_POST)
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, names[req->method]);
}

static void easy_setup_tls(CURL *easy, const struct ec_http_client *c,
                           const struct ec_http_request *req)
{
    const char *ca = c->ca_file, *cert = c->cert_file, *key = c->key_file;
    if (req->tls != NULL) {
        ca = req->tls->ca_file;
        cert = req->tls->cert_file;
        key = req->tls->key_file;
    }
    /* Explicit, so no future default or leftover option can turn verification off. */
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
    if (ca != NULL)
        curl_easy_setopt(easy, CURLOPT_CAINFO, ca);
    if (cert != NULL)
        curl_easy_setopt(easy, CURLOPT_SSLCERT, cert);
    if (key != NULL)
        curl_easy_setopt(easy, CURLOPT_SSLKEY, key);
}

/* Options for this request only; handle_put resets them all. */
static void easy_setup(struct http_transfer *t, const struct ec_http_client *client,
                       const struct ec_http_request *req, struct curl_slist *headers,
                       const void *body, size_t body_len)
{
    CURL *easy = t->h->easy;
    t->h->errbuf[0] = '\0';
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t->h->errbuf);
    curl_easy_setopt(easy, CURLOPT_URL, req->url);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L); /* many threads; no SIGALRM for DNS timeouts */
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, client->user_agent);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)ms_or(req->connect_timeout_ms, EC_HTTP_DEFAULT_CONNECT_TIMEOUT_MS));
    int64_t total_ms = ms_or(req->timeout_ms, t->line_cb != NULL ? 0 : EC_HTTP_DEFAULT_TIMEOUT_MS);
    if (total_ms > 0)
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)total_ms);
    /* Refuses a declared Content-Length over the cap before reading it; a stream's 2xx body is
     * bounded per line instead, so only collected bodies get this. */
    if (t->line_cb == NULL)
        curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)t->max_body);
    easy_setup_tls(easy, client, req);
    easy_setup_method(easy, req, body, body_len);
}

/* After a clean end: the status, then the stream's unterminated last line or the parsed body. */
static enum ec_status transfer_finish(struct http_transfer *t, struct ec_err *err)
{
    long status = 0;
    curl_easy_getinfo(t->h->easy, CURLINFO_RESPONSE_CODE, &status);
    t->resp->status = status;
    if (!t->streaming)
        return response_parse_json(t->resp, err);
    if (t->h->line.len > 0 && stream_emit(t) != EC_OK)
        return transfer_result(t, CURLE_OK, err);
    return EC_OK;
}

/* The one path for every request: json_body (may be NULL) replaces req->body; line_cb (may be
 * NULL) turns a 2xx body into a stream. */
static enum ec_status http_run(struct ec_http_client *client, const struct ec_http_request *req,
                               const json_t *json_body, bool want_json, ec_http_line_fn line_cb,
                               void *ctx, struct ec_http_response *resp, struct ec_err *err)
{
    ec_err_clear(err);
    size_t max_body =
        req->max_response_bytes > 0 ? req->max_response_bytes : EC_HTTP_DEFAULT_MAX_RESPONSE_BYTES;
    response_reset(resp, max_body);
    if (req->url == NULL || req->url[0] == '\0')
        return ec_err_set(err, EC_EINVAL, NULL, "request has no URL");
    url_host(req->url, resp->host, sizeof(resp->host));

    struct http_handle *h = handle_get(client);
    struct http_transfer t = {
        .h = h,
        .resp = resp,
        .line_cb = line_cb,
        .ctx = ctx,
        .err = err,
        .max_body = max_body,
        .max_line = req->max_line_bytes > 0 ? req->max_line_bytes : EC_HTTP_DEFAULT_MAX_LINE_BYTES,
        .first_byte_timeout_ms =
            ms_or(req->first_byte_timeout_ms, EC_HTTP_DEFAULT_FIRST_BYTE_TIMEOUT_MS),
        .idle_timeout_ms = ms_or(req->idle_timeout_ms, EC_HTTP_DEFAULT_IDLE_TIMEOUT_MS),
    };
    struct curl_slist *headers = NULL;
    const void *body = req->body;
    size_t body_len = req->body_len;
    enum ec_status st = EC_OK;
    ec_buf_reset(&h->line);
    h->line.max = t.max_line;
    if (json_body != NULL) {
        ec_buf_reset(&h->req_body);
        if (json_dump_callback(json_body, dump_to_buf, &h->req_body, JSON_COMPACT) != 0) {
            st = ec_err_set(err, EC_EINVAL, NULL, "cannot serialize request body for \"%s\"",
                            resp->host);
            goto out;
        }
        body = h->req_body.data != NULL ? h->req_body.data : "";
        body_len = h->req_body.len;
    }
    st = headers_build(h, req, body != NULL, want_json, &headers, err);
    if (st != EC_OK)
        goto out;
    easy_setup(&t, client, req, headers, body, body_len);

    CURLcode code;
    st = transfer_run(&t, &code, err);
    if (st == EC_OK)
        st = transfer_result(&t, code, err);
    if (st == EC_OK)
        st = transfer_finish(&t, err);
    EC_DEBUG("http request", EC_LS("host", resp->host), EC_LI("status", resp->status),
             EC_LI("dur_ms", ec_mono_ms() - t.started_ms),
             EC_LS("result", ec_status_info(st)->code));
out:
    curl_slist_free_all(headers);
    handle_put(client, h);
    return st;
}

enum ec_status ec_http_do(struct ec_http_client *client, const struct ec_http_request *req,
                          struct ec_http_response *resp, struct ec_err *err)
{
    return http_run(client, req, NULL, false, NULL, NULL, resp, err);
}

enum ec_status ec_http_json(struct ec_http_client *client, const struct ec_http_request *req,
                            const json_t *json_body, struct ec_http_response *resp,
                            struct ec_err *err)
{
    struct ec_http_request r = *req;
    if (r.content_type == NULL)
        r.content_type = "application/json";
    return http_run(client, &r, json_body, true, NULL, NULL, resp, err);
}

enum ec_status ec_http_stream(struct ec_http_client *client, const struct ec_http_request *req,
                              ec_http_line_fn line_cb, void *ctx, struct ec_http_response *resp,
                              struct ec_err *err)
{
    EC_ASSERT(line_cb != NULL && resp != NULL);
    return http_run(client, req, NULL, false, line_cb, ctx, resp, err);
}
