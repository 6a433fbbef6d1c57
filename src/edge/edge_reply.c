/* Responses: what handlers set (status, body, headers) and how the edge assembles status line,
 * headers and body into one buffer, so that each response is one write (no Nagle stall). */
#include "edge/edge_int.h"
#include "common/ec_log.h"

#include <string.h>
#include <strings.h>

void edge__resp_init(struct edge_resp *resp, struct ec_arena *arena, struct ec_buf *buf)
{
    resp->status = EDGE_OK_200;
    resp->content_type = "application/json";
    resp->body = NULL;
    resp->body_len = 0;
    resp->headers = NULL;
    resp->arena = arena;
    resp->buf = buf;
    resp->too_big_ = false;
    ec_buf_reset(buf);
}

void edge_resp_status(struct edge_resp *resp, enum edge_ok status)
{
    switch (status) {
    case EDGE_OK_200:
    case EDGE_OK_201:
    case EDGE_OK_202:
    case EDGE_OK_204:
        resp->status = status;
        return;
    }
    EC_WARN("handler set a status that is not a success", EC_LI("status", status));
}

static void body_from_buf(struct edge_resp *resp, const char *content_type)
{
    resp->content_type = content_type;
    resp->body = resp->buf->data ? resp->buf->data : "";
    resp->body_len = resp->buf->len;
}

void edge_resp_json_text(struct edge_resp *resp, const char *json)
{
    ec_buf_reset(resp->buf);
    if (ec_buf_puts(resp->buf, json) != EC_OK)
        resp->too_big_ = true;
    body_from_buf(resp, "application/json");
}

static int dump_to_buf(const char *data, size_t size, void *ctx)
{
    return ec_buf_append(ctx, data, size) == EC_OK ? 0 : -1;
}

void edge_resp_json(struct edge_resp *resp, json_t *json)
{
    ec_buf_reset(resp->buf);
    if (json == NULL) {
        ec_buf_puts(resp->buf, "null");
    } else {
        if (json_dump_callback(json, dump_to_buf, resp->buf, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
            resp->too_big_ = true;
        json_decref(json);
    }
    body_from_buf(resp, "application/json");
}

void edge_resp_bytes(struct edge_resp *resp, const char *content_type, const void *data, size_t len)
{
    resp->content_type = content_type ? content_type : "application/octet-stream";
    resp->body = data ? data : "";
    resp->body_len = data ? len : 0;
}

static bool header_text_ok(const char *s)
{
    return s != NULL && strpbrk(s, "\r\n") == NULL;
}

void edge_resp_header(struct edge_resp *resp, const char *name, const char *value)
{
    if (!header_text_ok(name) || name[0] == '\0' || strchr(name, ':') || !header_text_ok(value)) {
        EC_WARN("response header dropped: CR, LF or ':' in it",
                EC_LS("header", header_text_ok(name) ? name : "(unprintable)"));
        return;
    }
    struct edge_resp_hdr *h = ec_arena_alloc(resp->arena, sizeof(*h));
    h->name = ec_arena_strdup(resp->arena, name);
    h->value = ec_arena_strdup(resp->arena, value);
    h->next = NULL;
    struct edge_resp_hdr **tail = &resp->headers;
    while (*tail != NULL)
        tail = &(*tail)->next;
    *tail = h;
}

void edge__resp_error(struct edge_resp *resp, const char *code, const char *reason)
{
    struct ec_buf *b = resp->buf;
    ec_buf_reset(b);
    ec_buf_puts(b, "{\"error\":\"");
    ec_buf_json_escape(b, code, strlen(code));
    if (reason != NULL && reason[0] != '\0') {
        ec_buf_puts(b, "\",\"reason\":\"");
        ec_buf_json_escape(b, reason, strlen(reason));
    }
    ec_buf_puts(b, "\"}");
    resp->headers = NULL; /* a failed handler's headers are not the error's */
    resp->too_big_ = false;
    body_from_buf(resp, "application/json");
}

const char *edge__reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

static void put_header(struct ec_buf *out, const char *name, const char *value)
{
    ec_buf_puts(out, name);
    ec_buf_append(out, ": ", 2);
    ec_buf_puts(out, value);
    ec_buf_append(out, "\r\n", 2);
}

static void put_uint(struct ec_buf *out, size_t v)
{
    char digits[24];
    size_t i = sizeof(digits);
    do {
        digits[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    ec_buf_append(out, digits + i, sizeof(digits) - i);
}

void edge__resp_assemble(const struct edge_resp *resp, const struct edge__head *h,
                         struct ec_buf *out)
{
    ec_buf_reset(out);
    ec_buf_append(out, "HTTP/1.1 ", 9);
    put_uint(out, (size_t)h->status);
    ec_buf_putc(out, ' ');
    ec_buf_puts(out, edge__reason_phrase(h->status));
    ec_buf_append(out, "\r\n", 2);

    /* 204 and 304 carry no body and, for 204, no length (RFC 9110 8.6). */
    bool no_body = h->status == 204 || h->status == 304;
    const char *body = resp->body ? resp->body : "{}";
    size_t body_len = resp->body ? resp->body_len : 2;
    if (!no_body) {
        put_header(out, "Content-Type", resp->content_type);
        ec_buf_append(out, "Content-Length: ", 16);
        put_uint(out, body_len);
        ec_buf_append(out, "\r\n", 2);
    }
    put_header(out, "X-Request-Id", h->req_id);
    if (h->date != NULL)
        put_header(out, "Date", h->date);
    put_header(out, "Connection", h->keep_alive ? "keep-alive" : "close");
    put_header(out, "X-Content-Type-Options", "nosniff");
    if (h->allow != NULL)
        put_header(out, "Allow", h->allow);
    if (h->etag != NULL)
        put_header(out, "ETag", h->etag);
    if (h->retry_after != NULL)
        put_header(out, "Retry-After", h->retry_after);
    bool own_cache_control = false;
    for (const struct edge_resp_hdr *x = resp->headers; x != NULL; x = x->next) {
        put_header(out, x->name, x->value);
        own_cache_control |= strcasecmp(x->name, "cache-control") == 0;
    }
    if (!own_cache_control && h->cache_control != NULL)
        put_header(out, "Cache-Control", h->cache_control);
    ec_buf_append(out, "\r\n", 2);
    if (!no_body && !h->head_only)
        ec_buf_append(out, body, body_len);
}
