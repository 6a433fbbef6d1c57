/* The dynamic descriptor pool: files parsed from FileDescriptorProtos, their symbols, type-name
 * resolution, and the build that makes protobuf-c descriptors for them (rpc_dynamic_desc.c). */
#include "common/ec_mem.h"
#include "mesh/rpc_dynamic_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum sym_kind { SYM_MESSAGE, SYM_ENUM, SYM_SERVICE };

struct sym {
    const char *name;
    enum sym_kind kind;
    const struct rpc_dyn_file *file;
    void *ptr;
};

struct rpc_dyn_pool {
    struct ec_arena arena;
    size_t budget; /* declarations left */
    struct rpc_dyn_file **files;
    size_t n_files, cap_files;
    size_t n_built;   /* files[0, n_built) are built */
    struct sym *syms; /* of built files, sorted by name */
    size_t n_syms;
    struct rpc_dyn_message **messages; /* of built files */
    size_t n_messages;
};

struct rpc_dyn_pool *rpc_dyn_pool_new(void)
{
    struct rpc_dyn_pool *pool = ec_xcalloc(1, sizeof(*pool));
    ec_arena_init(&pool->arena);
    pool->budget = RPC__DYN_MAX_DECLS;
    return pool;
}

void rpc_dyn_pool_free(struct rpc_dyn_pool *pool)
{
    if (pool == NULL)
        return;
    ec_arena_release(&pool->arena);
    free(pool->files);
    free(pool->syms);
    free(pool->messages);
    free(pool);
}

bool rpc_dyn_pool_has_file(const struct rpc_dyn_pool *pool, const char *name)
{
    for (size_t i = 0; i < pool->n_files; i++)
        if (strcmp(pool->files[i]->name, name) == 0)
            return true;
    return false;
}

const char *rpc_dyn_pool_missing_dep(const struct rpc_dyn_pool *pool)
{
    for (size_t i = 0; i < pool->n_files; i++)
        for (size_t d = 0; d < pool->files[i]->n_deps; d++)
            if (!rpc_dyn_pool_has_file(pool, pool->files[i]->deps[d]))
                return pool->files[i]->deps[d];
    return NULL;
}

enum ec_status rpc_dyn_pool_add_file(struct rpc_dyn_pool *pool, const uint8_t *bytes, size_t len,
                                     struct ec_err *err)
{
    struct rpc_dyn_file *file;
    size_t budget = pool->budget;
    char name[RPC__DYN_MAX_NAME + 1];
    if (rpc__dyn_peek_name(bytes, len, name, sizeof(name)) && rpc_dyn_pool_has_file(pool, name))
        return EC_OK; /* servers resend the imports with every answer */
    enum ec_status st = rpc__dyn_parse_file(&pool->arena, bytes, len, &budget, &file, err);
    if (st != EC_OK || rpc_dyn_pool_has_file(pool, file->name))
        return st;
    pool->budget = budget;
    if (pool->n_files == pool->cap_files) {
        pool->cap_files = pool->cap_files ? pool->cap_files * 2 : 16;
        pool->files = ec_xrealloc(pool->files, pool->cap_files * sizeof(*pool->files));
    }
    pool->files[pool->n_files++] = file;
    return EC_OK;
}

enum ec_status rpc_dyn_pool_add_set(struct rpc_dyn_pool *pool, const uint8_t *bytes, size_t len,
                                    struct ec_err *err)
{
    size_t pos = 0, file_len;
    const uint8_t *file;
    int r;
    while ((r = rpc__dyn_set_next(bytes, len, &pos, &file, &file_len)) == 1) {
        enum ec_status st = rpc_dyn_pool_add_file(pool, file, file_len, err);
        if (st != EC_OK)
            return st;
    }
    return r < 0 ? ec_err_set(err, EC_EINVAL, NULL, "malformed descriptor set") : EC_OK;
}

/* --- symbols ---------------------------------------------------------------------------------- */

struct symtab {
    struct sym *v;
    size_t n, cap;
};

static void sym_push(struct symtab *t, const char *name, enum sym_kind kind,
                     const struct rpc_dyn_file *file, void *ptr)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->v = ec_xrealloc(t->v, t->cap * sizeof(*t->v));
    }
    t->v[t->n++] = (struct sym){ name, kind, file, ptr };
}

static void collect_message(struct symtab *t, struct rpc_dyn_message *m)
{
    sym_push(t, m->full_name, SYM_MESSAGE, m->file, m);
    for (size_t i = 0; i < m->n_nested; i++)
        collect_message(t, &m->nested[i]);
    for (size_t i = 0; i < m->n_enums; i++)
        sym_push(t, m->enums[i].full_name, SYM_ENUM, m->file, &m->enums[i]);
}

static int sym_cmp(const void *a, const void *b)
{
    return strcmp(((const struct sym *)a)->name, ((const struct sym *)b)->name);
}

static const struct sym *sym_find(const struct sym *syms, size_t n, const char *name)
{
    if (name[0] == '.')
        name++;
    struct sym key = { .name = name };
    return bsearch(&key, syms, n, sizeof(*syms), sym_cmp);
}

/* A type reference as protoc resolves it: ".a.B" is absolute; "B" or "x.B" is tried in the
 * scope, then each enclosing scope out to the root. */
static const struct sym *resolve(const struct symtab *t, const char *scope, const char *ref)
{
    if (ref[0] == '.')
        return sym_find(t->v, t->n, ref);
    char buf[2 * RPC__DYN_MAX_NAME + 2];
    size_t s = strlen(scope);
    for (;;) {
        if (s == 0)
            return sym_find(t->v, t->n, ref);
        snprintf(buf, sizeof(buf), "%.*s.%s", (int)s, scope, ref);
        const struct sym *found = sym_find(t->v, t->n, buf);
        if (found != NULL)
            return found;
        while (s > 0 && scope[s - 1] != '.')
            s--;
        if (s > 0)
            s--;
    }
}

/* --- building --------------------------------------------------------------------------------- */

struct builder {
    struct rpc_dyn_pool *pool;
    struct symtab syms; /* built and new files' symbols, sorted */
    struct ec_err *err;
};

static enum ec_status resolve_field(struct builder *b, const struct rpc_dyn_message *m,
                                    struct rpc_dyn_field *f)
{
    if (f->type == RPC_DYN_GROUP)
        return ec_err_set(b->err, EC_EINVAL, NULL, "field %s.%s is a group (not supported)",
                          m->full_name, f->name);
    if (f->type != 0 && f->type != RPC_DYN_MESSAGE && f->type != RPC_DYN_ENUM)
        return EC_OK; /* a scalar: any type_name is ignored */
    if (f->type_name == NULL)
        return ec_err_set(b->err, EC_EINVAL, NULL, "field %s.%s has no type name", m->full_name,
                          f->name);
    const struct sym *s = resolve(&b->syms, m->full_name, f->type_name);
    if (s == NULL || s->kind == SYM_SERVICE)
        return ec_err_set(b->err, EC_EINVAL, NULL, "type \"%s\" of field %s.%s is not known",
                          f->type_name, m->full_name, f->name);
    enum rpc_dyn_type want = s->kind == SYM_MESSAGE ? RPC_DYN_MESSAGE : RPC_DYN_ENUM;
    if (f->type != 0 && f->type != want)
        return ec_err_set(b->err, EC_EINVAL, NULL, "field %s.%s: \"%s\" is not %s", m->full_name,
                          f->name, f->type_name, f->type == RPC_DYN_ENUM ? "an enum" : "a message");
    f->type = want;
    if (want == RPC_DYN_MESSAGE)
        f->message_type = s->ptr;
    else
        f->enum_type = s->ptr;
    return EC_OK;
}

static enum ec_status resolve_message(struct builder *b, struct rpc_dyn_message *m)
{
    for (size_t i = 0; i < m->n_fields; i++) {
        enum ec_status st = resolve_field(b, m, &m->fields[i]);
        if (st != EC_OK)
            return st;
    }
    for (size_t i = 0; i < m->n_nested; i++) {
        enum ec_status st = resolve_message(b, &m->nested[i]);
        if (st != EC_OK)
            return st;
    }
    return EC_OK;
}

static enum ec_status resolve_io(struct builder *b, const struct rpc_dyn_service *svc,
                                 const struct rpc_dyn_method *md, const char *ref,
                                 const struct rpc_dyn_message **out)
{
    const struct sym *s = resolve(&b->syms, svc->full_name, ref);
    if (s == NULL || s->kind != SYM_MESSAGE)
        return ec_err_set(b->err, EC_EINVAL, NULL, "type \"%s\" of method %s.%s is not known", ref,
                          svc->full_name, md->name);
    *out = s->ptr;
    return EC_OK;
}

static enum ec_status resolve_file(struct builder *b, struct rpc_dyn_file *file)
{
    enum ec_status st = EC_OK;
    for (size_t i = 0; st == EC_OK && i < file->n_messages; i++)
        st = resolve_message(b, &file->messages[i]);
    for (size_t i = 0; st == EC_OK && i < file->n_services; i++) {
        struct rpc_dyn_service *svc = &file->services[i];
        for (size_t j = 0; st == EC_OK && j < svc->n_methods; j++) {
            struct rpc_dyn_method *md = &svc->methods[j];
            st = resolve_io(b, svc, md, md->input_type, &md->input);
            if (st == EC_OK)
                st = resolve_io(b, svc, md, md->output_type, &md->output);
        }
    }
    return st;
}

/* Every message gets its (still empty) descriptor first, so fields can point at any of them. */
static void alloc_descriptors(struct builder *b, struct rpc_dyn_message *m)
{
    m->desc = ec_arena_zalloc(&b->pool->arena, sizeof(ProtobufCMessageDescriptor));
    for (size_t i = 0; i < m->n_nested; i++)
        alloc_descriptors(b, &m->nested[i]);
}

static void collect_file(struct symtab *t, struct rpc_dyn_file *file)
{
    for (size_t i = 0; i < file->n_messages; i++)
        collect_message(t, &file->messages[i]);
    for (size_t i = 0; i < file->n_enums; i++)
        sym_push(t, file->enums[i].full_name, SYM_ENUM, file, &file->enums[i]);
    for (size_t i = 0; i < file->n_services; i++)
        sym_push(t, file->services[i].full_name, SYM_SERVICE, file, &file->services[i]);
}

static enum ec_status build_file(struct builder *b, struct rpc_dyn_file *file)
{
    enum ec_status st = resolve_file(b, file);
    for (size_t i = 0; st == EC_OK && i < file->n_enums; i++)
        st = rpc__dyn_build_enum(&b->pool->arena, &file->enums[i], b->err);
    for (size_t i = 0; st == EC_OK && i < file->n_messages; i++)
        st = rpc__dyn_build_nested_enums(&b->pool->arena, &file->messages[i], b->err);
    return st;
}

static void remember_messages(struct rpc_dyn_pool *pool, struct rpc_dyn_message *m, size_t *cap)
{
    if (pool->n_messages == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        pool->messages = ec_xrealloc(pool->messages, *cap * sizeof(*pool->messages));
    }
    pool->messages[pool->n_messages++] = m;
    for (size_t i = 0; i < m->n_nested; i++)
        remember_messages(pool, &m->nested[i], cap);
}

enum ec_status rpc_dyn_pool_build(struct rpc_dyn_pool *pool, struct ec_err *err)
{
    if (pool->n_built == pool->n_files)
        return EC_OK;
    struct builder b = { pool, { NULL, 0, 0 }, err };
    b.syms.cap = pool->n_syms + 64;
    b.syms.v = ec_xmalloc(b.syms.cap * sizeof(*b.syms.v));
    if (pool->n_syms > 0)
        memcpy(b.syms.v, pool->syms, pool->n_syms * sizeof(*pool->syms));
    b.syms.n = pool->n_syms;
    for (size_t i = pool->n_built; i < pool->n_files; i++)
        collect_file(&b.syms, pool->files[i]);
    qsort(b.syms.v, b.syms.n, sizeof(*b.syms.v), sym_cmp);
    enum ec_status st = EC_OK;
    for (size_t i = 1; st == EC_OK && i < b.syms.n; i++)
        if (strcmp(b.syms.v[i].name, b.syms.v[i - 1].name) == 0)
            st = ec_err_set(err, EC_EINVAL, NULL, "%s is defined twice (in %s and %s)",
                            b.syms.v[i].name, b.syms.v[i - 1].file->name, b.syms.v[i].file->name);
    for (size_t i = pool->n_built; st == EC_OK && i < pool->n_files; i++)
        st = build_file(&b, pool->files[i]);
    for (size_t i = pool->n_built; st == EC_OK && i < pool->n_files; i++)
        for (size_t j = 0; j < pool->files[i]->n_messages; j++)
            alloc_descriptors(&b, &pool->files[i]->messages[j]);
    for (size_t i = pool->n_built; st == EC_OK && i < pool->n_files; i++)
        for (size_t j = 0; st == EC_OK && j < pool->files[i]->n_messages; j++)
            st = rpc__dyn_build_message(&pool->arena, &pool->files[i]->messages[j], err);
    if (st != EC_OK) { /* drop what failed; what was built before stays usable */
        free(b.syms.v);
        pool->n_files = pool->n_built;
        return st;
    }
    free(pool->syms);
    pool->syms = b.syms.v;
    pool->n_syms = b.syms.n;
    size_t cap = pool->n_messages;
    for (size_t i = pool->n_built; i < pool->n_files; i++)
        for (size_t j = 0; j < pool->files[i]->n_messages; j++)
            remember_messages(pool, &pool->files[i]->messages[j], &cap);
    pool->n_built = pool->n_files;
    return EC_OK;
}

/* --- look-ups --------------------------------------------------------------------------------- */

static void *pool_find(const struct rpc_dyn_pool *pool, const char *name, enum sym_kind kind)
{
    const struct sym *s = sym_find(pool->syms, pool->n_syms, name);
    return s != NULL && s->kind == kind ? s->ptr : NULL;
}

const struct rpc_dyn_message *rpc_dyn_pool_message(const struct rpc_dyn_pool *pool,
                                                   const char *name)
{
    return pool_find(pool, name, SYM_MESSAGE);
}

const struct rpc_dyn_enum *rpc_dyn_pool_enum(const struct rpc_dyn_pool *pool, const char *name)
{
    return pool_find(pool, name, SYM_ENUM);
}

const struct rpc_dyn_service *rpc_dyn_pool_service(const struct rpc_dyn_pool *pool,
                                                   const char *name)
{
    return pool_find(pool, name, SYM_SERVICE);
}

const struct rpc_dyn_method *rpc_dyn_service_method(const struct rpc_dyn_service *svc,
                                                    const char *name)
{
    for (size_t i = 0; i < svc->n_methods; i++)
        if (strcmp(svc->methods[i].name, name) == 0)
            return &svc->methods[i];
    return NULL;
}

size_t rpc_dyn_pool_n_messages(const struct rpc_dyn_pool *pool)
{
    return pool->n_messages;
}

const struct rpc_dyn_message *rpc_dyn_pool_message_at(const struct rpc_dyn_pool *pool, size_t i)
{
    return i < pool->n_messages ? pool->messages[i] : NULL;
}

const char *rpc_dyn_type_name(enum rpc_dyn_type type)
{
    static const char *const names[] = {
        [RPC_DYN_DOUBLE] = "double",     [RPC_DYN_FLOAT] = "float",
        [RPC_DYN_INT64] = "int64",       [RPC_DYN_UINT64] = "uint64",
        [RPC_DYN_INT32] = "int32",       [RPC_DYN_FIXED64] = "fixed64",
        [RPC_DYN_FIXED32] = "fixed32",   [RPC_DYN_BOOL] = "bool",
        [RPC_DYN_STRING] = "string",     [RPC_DYN_GROUP] = "group",
        [RPC_DYN_MESSAGE] = "message",   [RPC_DYN_BYTES] = "bytes",
        [RPC_DYN_UINT32] = "uint32",     [RPC_DYN_ENUM] = "enum",
        [RPC_DYN_SFIXED32] = "sfixed32", [RPC_DYN_SFIXED64] = "sfixed64",
        [RPC_DYN_SINT32] = "sint32",     [RPC_DYN_SINT64] = "sint64",
    };
    if ((unsigned)type < sizeof(names) / sizeof(names[0]) && names[type] != NULL)
        return names[type];
    return "unknown";
}
