/* The method table (every method of every service of a server, sorted by path) and the intern
 * table that gives error codes from the wire a static lifetime. */
#include "common/ec_mem.h"
#include "mesh/rpc_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static int entry_cmp(const void *a, const void *b)
{
    const struct rpc__method_entry *x = a, *y = b;
    return strcmp(x->method->path, y->method->path);
}

static enum ec_status check_method(const struct rpc_service *svc, const struct rpc_method *m,
                                   struct ec_err *err)
{
    size_t svc_len = strlen(svc->name);
    const char *p = m->path;
    if (p == NULL || p[0] != '/' || strncmp(p + 1, svc->name, svc_len) != 0 ||
        p[1 + svc_len] != '/' || p[2 + svc_len] == '\0' || strchr(p + 2 + svc_len, '/') != NULL)
        return ec_err_set(err, EC_EINVAL, NULL, "method path \"%s\" is not /%s/<Method>",
                          p ? p : "(null)", svc->name);
    if (m->req == NULL || m->resp == NULL)
        return ec_err_set(err, EC_EINVAL, NULL, "method %s has no message descriptors", p);
    if (m->unary == NULL) /* the union: whichever handler the kind uses */
        return ec_err_set(err, EC_EINVAL, NULL, "method %s has no handler", p);
    if (m->kind != RPC_UNARY && m->kind != RPC_SERVER_STREAM && m->kind != RPC_BIDI_STREAM)
        return ec_err_set(err, EC_EINVAL, NULL, "method %s has an unknown kind", p);
    return EC_OK;
}

enum ec_status rpc__method_table_build(struct rpc__method_table *t,
                                       const struct rpc_service *services, size_t n_services,
                                       struct ec_err *err)
{
    size_t n = 0;
    t->entries = NULL;
    t->n = 0;
    for (size_t i = 0; i < n_services; i++)
        n += services[i].n_methods;
    struct rpc__method_entry *e = ec_xcalloc(n ? n : 1, sizeof(*e));
    size_t k = 0;
    for (size_t i = 0; i < n_services; i++) {
        for (size_t j = 0; j < services[i].n_methods; j++) {
            const struct rpc_method *m = &services[i].methods[j];
            if (check_method(&services[i], m, err) != EC_OK) {
                free(e);
                return err ? err->status : EC_EINVAL;
            }
            e[k++] = (struct rpc__method_entry){ m, &services[i], strlen(m->path) };
        }
    }
    qsort(e, n, sizeof(*e), entry_cmp);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(e[i - 1].method->path, e[i].method->path) == 0) {
            ec_err_set(err, EC_ECONFLICT, NULL, "method %s is registered twice", e[i].method->path);
            free(e);
            return EC_ECONFLICT;
        }
    }
    t->entries = e;
    t->n = n;
    return EC_OK;
}

/* details.method is a slice, not a C string: compare with its length. */
static int path_cmp(const char *path, size_t len, const struct rpc__method_entry *e)
{
    size_t n = len < e->path_len ? len : e->path_len;
    int c = memcmp(path, e->method->path, n);
    if (c != 0)
        return c;
    return len < e->path_len ? -1 : len > e->path_len ? 1 : 0;
}

const struct rpc__method_entry *rpc__method_table_find(const struct rpc__method_table *t,
                                                       const char *path, size_t len)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = path_cmp(path, len, &t->entries[mid]);
        if (c == 0)
            return &t->entries[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

void rpc__method_table_release(struct rpc__method_table *t)
{
    free(t->entries);
    t->entries = NULL;
    t->n = 0;
}

/* Codes a peer sent us; bounded so a hostile server cannot grow it. Entries are never freed. */
#define INTERN_MAX      128
#define INTERN_CODE_MAX 64
static pthread_mutex_t intern_lock = PTHREAD_MUTEX_INITIALIZER;
static char intern_codes[INTERN_MAX][INTERN_CODE_MAX + 1];
static size_t intern_n;

const char *rpc__intern_code(const char *s, size_t len)
{
    if (len == 0 || len > INTERN_CODE_MAX)
        return NULL;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return NULL;
    for (int st = 0; st < EC_STATUS_COUNT; st++) {
        const char *code = ec_status_info((enum ec_status)st)->code;
        if (strlen(code) == len && memcmp(code, s, len) == 0)
            return code;
    }
    const char *found = NULL;
    pthread_mutex_lock(&intern_lock);
    for (size_t i = 0; i < intern_n && found == NULL; i++)
        if (strlen(intern_codes[i]) == len && memcmp(intern_codes[i], s, len) == 0)
            found = intern_codes[i];
    if (found == NULL && intern_n < INTERN_MAX) {
        memcpy(intern_codes[intern_n], s, len);
        intern_codes[intern_n][len] = '\0';
        found = intern_codes[intern_n++];
    }
    pthread_mutex_unlock(&intern_lock);
    return found;
}
