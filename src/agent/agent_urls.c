/* Coordinator URL lists (COORDINATOR_URL, the discovery registry, the cache file) and the
 * exponential back-off with jitter used between failed attempts. Pure functions. */
#include "agent/agent_int.h"
#include "common/ec_mem.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum ec_status agent_url_normalize(const char *in, size_t len, char *out, size_t cap,
                                   struct ec_err *err)
{
    while (len > 0 && isspace((unsigned char)in[0])) {
        in++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)in[len - 1]))
        len--;
    while (len > 0 && in[len - 1] == '/')
        len--;
    size_t scheme = 0;
    if (len >= 7 && strncasecmp(in, "http://", 7) == 0)
        scheme = 7;
    else if (len >= 8 && strncasecmp(in, "https://", 8) == 0)
        scheme = 8;
    else
        return ec_err_set(err, EC_EINVAL, NULL, "\"%.*s\" is not an http:// or https:// URL",
                          (int)(len > 80 ? 80 : len), in);
    if (len == scheme || in[scheme] == '/' || in[scheme] == ':' || in[scheme] == '?')
        return ec_err_set(err, EC_EINVAL, NULL, "\"%.*s\" has no host", (int)(len > 80 ? 80 : len),
                          in);
    if (len >= cap)
        return ec_err_set(err, EC_EINVAL, NULL, "a URL of %zu characters is too long", len);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch <= 0x20 || ch == 0x7f || ch == '#' || ch == '?' || ch == '@')
            return ec_err_set(err, EC_EINVAL, NULL,
                              "\"%.*s\" holds a character a coordinator URL may not have",
                              (int)(len > 80 ? 80 : len), in);
    }
    /* The scheme in lower case, the rest as given. */
    for (size_t i = 0; i < scheme; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    memcpy(out + scheme, in + scheme, len - scheme);
    out[len] = '\0';
    return EC_OK;
}

bool agent_urls_add(struct agent_urls *l, const char *url)
{
    char norm[AGENT_URL_MAX];
    if (agent_url_normalize(url, strlen(url), norm, sizeof(norm), NULL) != EC_OK)
        return false;
    for (size_t i = 0; i < l->count; i++)
        if (strcasecmp(l->items[i], norm) == 0)
            return false;
    l->items = ec_xrealloc(l->items, (l->count + 1) * sizeof(*l->items));
    l->items[l->count++] = ec_xstrdup(norm);
    return true;
}

enum ec_status agent_urls_parse(const char *text, struct agent_urls *out, struct ec_err *err)
{
    const char *p = text != NULL ? text : "";
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        size_t k = 0;
        while (k < n && isspace((unsigned char)p[k]))
            k++;
        if (k < n) {
            char norm[AGENT_URL_MAX];
            enum ec_status st = agent_url_normalize(p, n, norm, sizeof(norm), err);
            if (st != EC_OK)
                return st;
            agent_urls_add(out, norm);
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return EC_OK;
}

void agent_urls_release(struct agent_urls *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

enum ec_status agent_urls_from_registry(const json_t *doc, struct agent_urls *out,
                                        struct ec_err *err)
{
    const json_t *list = json_object_get(doc, "coordinators");
    if (!json_is_array(list))
        return ec_err_set(err, EC_EINVAL, NULL,
                          "the registry answer has no \"coordinators\" array");
    size_t i;
    const json_t *entry;
    json_array_foreach(list, i, entry)
    {
        const char *url = json_string_value(json_object_get(entry, "coordinatorUrl"));
        if (url != NULL)
            agent_urls_add(out, url);
    }
    return EC_OK;
}

/* --- back-off ----------------------------------------------------------------------------- */

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

int64_t agent_backoff_next(struct agent_backoff *b)
{
    if (b->rng == 0) {
        while (b->rng == 0)
            ec_random_bytes(&b->rng, sizeof(b->rng));
    }
    int64_t base = b->base_ms > 0 ? b->base_ms : 1;
    int64_t max = b->max_ms >= base ? b->max_ms : base;
    int64_t d = base;
    for (int i = 0; i < b->attempts && d < max; i++)
        d *= 2;
    if (d > max)
        d = max;
    if (b->attempts < 62)
        b->attempts++;
    int64_t half = d / 2;
    return half + (int64_t)(xorshift(&b->rng) % (uint64_t)(d - half + 1));
}

void agent_backoff_reset(struct agent_backoff *b)
{
    b->attempts = 0;
}
