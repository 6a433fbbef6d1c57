/* The request object's accessors (parameters, query, headers, JSON body), request ids, the
 * client IP policy, and the EDGECODER_HTTP_* config rows every edge service shares. */
#include "edge/edge_int.h"
#include "common/ec_crypto.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>

const char *edge_req_param(const struct edge_req *req, const char *name)
{
    for (size_t i = 0; i < req->nparams; i++)
        if (strcmp(req->params[i].name, name) == 0)
            return req->params[i].value;
    return NULL;
}

const char *edge_req_query(struct edge_req *req, const char *name)
{
    size_t nlen = strlen(name);
    const char *p = req->query_string ? req->query_string : "";
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t n = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        size_t klen = eq ? (size_t)(eq - p) : n;
        char key[128];
        long kdec = klen < sizeof(key) ? edge_pct_decode(p, klen, key, 1) : -1;
        if (kdec >= 0 && (size_t)kdec == nlen && memcmp(key, name, nlen) == 0) {
            const char *v = eq ? eq + 1 : p + n;
            size_t vlen = (size_t)(p + n - v);
            char *out = ec_arena_alloc(req->arena, vlen + 1);
            return edge_pct_decode(v, vlen, out, 1) < 0 ? NULL : out;
        }
        if (amp == NULL)
            break;
        p = amp + 1;
    }
    return NULL;
}

const char *edge_req_header(const struct edge_req *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

static void json_cleanup(void *json)
{
    json_decref(json);
}

enum ec_status edge_req_json(struct edge_req *req, json_t **out, struct ec_err *err)
{
    *out = NULL;
    if (req->json_ != NULL) {
        *out = req->json_;
        return EC_OK;
    }
    if (req->body_len == 0)
        return ec_err_set(err, EC_EINVAL, "invalid_json", "the request body is empty");
    json_error_t jerr;
    json_t *j = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (j == NULL)
        return ec_err_set(err, EC_EINVAL, "invalid_json", "%s at line %d column %d", jerr.text,
                          jerr.line, jerr.column);
    ec_arena_defer(req->arena, json_cleanup, j);
    req->json_ = j;
    *out = j;
    return EC_OK;
}

/* --- request ids -------------------------------------------------------------------------- */

static char id_prefix[9];
static _Atomic uint64_t id_counter;
static pthread_once_t id_once = PTHREAD_ONCE_INIT;

static void id_prefix_init(void)
{
    uint8_t raw[4];
    ec_random_bytes(raw, sizeof(raw));
    ec_hex_encode(id_prefix, sizeof(id_prefix), raw, sizeof(raw));
}

void edge__request_id_setup(void)
{
    pthread_once(&id_once, id_prefix_init);
}

bool edge__request_id_valid(const char *id)
{
    if (id == NULL)
        return false;
    size_t n = 0;
    for (; id[n]; n++) {
        unsigned char c = (unsigned char)id[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok || n >= EDGE_REQUEST_ID_MAX)
            return false;
    }
    return n > 0;
}

void edge__request_id_make(char *buf)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t n = atomic_fetch_add_explicit(&id_counter, 1, memory_order_relaxed) + 1;
    memcpy(buf, id_prefix, 8);
    buf[8] = '-';
    /* 12 hex digits: 2^48 requests before the counter wraps within a process. */
    for (int i = 0; i < 12; i++)
        buf[9 + i] = hex[(n >> (4 * (11 - i))) & 15];
    buf[21] = '\0';
}

/* --- client IP ---------------------------------------------------------------------------- */

static bool ip_shaped(const char *s, size_t n)
{
    if (n == 0 || n > 45)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
              c == '.' || c == ':'))
            return false;
    }
    return true;
}

void edge__client_ip(const struct edge_req *req, const char *trust_header, const char *peer,
                     char *buf)
{
    const char *v = trust_header ? edge_req_header(req, trust_header) : NULL;
    if (v != NULL) {
        /* In a list (x-forwarded-for) only the last element was added by the proxy we trust. */
        const char *comma = strrchr(v, ',');
        const char *s = comma ? comma + 1 : v;
        while (*s == ' ' || *s == '\t')
            s++;
        size_t n = strlen(s);
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
            n--;
        if (ip_shaped(s, n)) {
            memcpy(buf, s, n);
            buf[n] = '\0';
            return;
        }
    }
    size_t n = strnlen(peer, 47);
    memcpy(buf, peer, n);
    buf[n] = '\0';
}

/* --- shared config rows ------------------------------------------------------------------- */

void edge_env_check(const struct edge_env *env, struct ec_cfg_problems *problems)
{
    bool cert = env->tls_cert != NULL && env->tls_cert[0] != '\0';
    bool key = env->tls_key != NULL && env->tls_key[0] != '\0';
    if (cert && !key)
        ec_cfg_problem(problems, "EDGECODER_HTTP_TLS_KEY",
                       "is required when EDGECODER_HTTP_TLS_CERT is set");
    if (key && !cert)
        ec_cfg_problem(problems, "EDGECODER_HTTP_TLS_CERT",
                       "is required when EDGECODER_HTTP_TLS_KEY is set");
    const char *h = env->trust_proxy_header;
    for (size_t i = 0; h != NULL && h[i] != '\0'; i++) {
        unsigned char c = (unsigned char)h[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_')) {
            ec_cfg_problem(problems, "EDGECODER_TRUST_PROXY_HEADER", "\"%s\" is not a header name",
                           h);
            break;
        }
    }
}

void edge_env_apply(const struct edge_env *env, struct edge_config *cfg)
{
    cfg->tls_cert = env->tls_cert;
    cfg->tls_key = env->tls_key;
    cfg->threads = (int)env->threads;
    cfg->request_timeout_ms = (int)env->request_timeout_ms;
    cfg->trust_proxy_header =
        env->trust_proxy_header && env->trust_proxy_header[0] ? env->trust_proxy_header : NULL;
}
