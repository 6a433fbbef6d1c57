/* Static files: the embedded edge_assets rows under one folder, served under a URL mount with a
 * content type by extension, a cache policy and a strong ETag (a SHA-256 prefix of the bytes). */
#include "edge/edge_int.h"
#include "common/ec_crypto.h"
#include "common/ec_embed.h"
#include "common/ec_mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct {
    const char *ext;
    const char *type;
} content_types[] = {
    { ".html", "text/html; charset=utf-8" },
    { ".css", "text/css; charset=utf-8" },
    { ".js", "text/javascript; charset=utf-8" },
    { ".mjs", "text/javascript; charset=utf-8" },
    { ".json", "application/json" },
    { ".map", "application/json" },
    { ".txt", "text/plain; charset=utf-8" },
    { ".svg", "image/svg+xml" },
    { ".png", "image/png" },
    { ".jpg", "image/jpeg" },
    { ".jpeg", "image/jpeg" },
    { ".gif", "image/gif" },
    { ".webp", "image/webp" },
    { ".ico", "image/x-icon" },
    { ".woff2", "font/woff2" },
    { ".woff", "font/woff" },
    { ".wasm", "application/wasm" },
    { ".webmanifest", "application/manifest+json" },
};

const char *edge__content_type(const char *path)
{
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (dot != NULL && (slash == NULL || dot > slash))
        for (size_t i = 0; i < sizeof(content_types) / sizeof(content_types[0]); i++)
            if (strcasecmp(dot, content_types[i].ext) == 0)
                return content_types[i].type;
    return "application/octet-stream";
}

enum ec_status edge__assets_init(struct edge__assets *a, const char *prefix, const char *dir,
                                 struct ec_err *err)
{
    memset(a, 0, sizeof(*a));
    if (prefix == NULL)
        return EC_OK;
    if (prefix[0] != '/')
        return ec_err_set(err, EC_EINVAL, NULL, "assets prefix \"%s\" does not start with '/'",
                          prefix);
    size_t plen = strlen(prefix);
    a->prefix = ec_xmalloc(plen + 2);
    snprintf(a->prefix, plen + 2, "%s%s", prefix, prefix[plen - 1] == '/' ? "" : "/");
    const char *folder = dir ? dir : "";
    size_t dlen = strlen(folder);
    size_t n = 0;
    for (const struct ec_embedded_file *f = edge_assets; f->path != NULL; f++)
        n++;
    a->files = ec_xcalloc(n ? n : 1, sizeof(*a->files));
    for (const struct ec_embedded_file *f = edge_assets; f->path != NULL; f++) {
        if (strncmp(f->path, folder, dlen) != 0 || f->path[dlen] == '\0')
            continue;
        const char *rel = f->path + dlen;
        if (dlen > 0 && folder[dlen - 1] != '/') {
            if (rel[0] != '/')
                continue;
            rel++;
        }
        struct edge__asset *as = &a->files[a->nfiles++];
        size_t len = strlen(a->prefix) + strlen(rel) + 1;
        as->url_path = ec_xmalloc(len);
        snprintf(as->url_path, len, "%s%s", a->prefix, rel);
        as->data = f->data;
        as->len = f->len;
        as->content_type = edge__content_type(rel);
        /* HTML names stay fixed while their content changes: revalidate every time. */
        as->cache_control =
            strncmp(as->content_type, "text/html", 9) == 0 ? "no-cache" : "public, max-age=3600";
        uint8_t digest[EC_SHA256_LEN];
        ec_sha256(f->data, f->len, digest);
        char hex[17];
        ec_hex_encode(hex, sizeof(hex), digest, 8);
        snprintf(as->etag, sizeof(as->etag), "\"%s\"", hex);
    }
    return EC_OK;
}

void edge__assets_release(struct edge__assets *a)
{
    for (size_t i = 0; i < a->nfiles; i++)
        free(a->files[i].url_path);
    free(a->files);
    free(a->prefix);
    memset(a, 0, sizeof(*a));
}

static const struct edge__asset *find_exact(const struct edge__assets *a, const char *path,
                                            size_t len)
{
    for (size_t i = 0; i < a->nfiles; i++)
        if (strlen(a->files[i].url_path) == len && memcmp(a->files[i].url_path, path, len) == 0)
            return &a->files[i];
    return NULL;
}

const struct edge__asset *edge__assets_find(const struct edge__assets *a, const char *path,
                                            size_t len)
{
    if (a->prefix == NULL || a->nfiles == 0)
        return NULL;
    size_t plen = strlen(a->prefix);
    /* The mount itself without its slash ("/ui") means its index too. */
    int bare_mount = len + 1 == plen && memcmp(path, a->prefix, len) == 0;
    if (!bare_mount && (len < plen || memcmp(path, a->prefix, plen) != 0))
        return NULL;
    if (len > 0 && path[len - 1] != '/' && !bare_mount)
        return find_exact(a, path, len);
    char index[512];
    int n =
        snprintf(index, sizeof(index), "%.*s%sindex.html", (int)len, path, bare_mount ? "/" : "");
    if (n < 0 || (size_t)n >= sizeof(index))
        return NULL;
    return find_exact(a, index, (size_t)n);
}

bool edge__etag_matches(const char *if_none_match, const char *etag)
{
    if (if_none_match == NULL)
        return false;
    size_t elen = strlen(etag);
    const char *p = if_none_match;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return true;
        if (p[0] == 'W' && p[1] == '/')
            p += 2; /* If-None-Match uses the weak comparison */
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if ((size_t)(end - start) == elen && memcmp(start, etag, elen) == 0)
            return true;
    }
    return false;
}
