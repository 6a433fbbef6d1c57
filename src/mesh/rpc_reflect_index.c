/* An index of a serialized FileDescriptorSet for server reflection: file names, dependencies and
 * fully-qualified symbols. A hand-written, bounds-checked wire-format walker, so descriptor.proto
 * need not be compiled. The bytes are our own build output, but a bad set still fails cleanly. */
#include "common/ec_mem.h"
#include "mesh/rpc_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

extern const unsigned char ec_descriptor_set[];
extern const size_t ec_descriptor_set_len;

#define MAX_DEPTH 32 /* nesting of message types */
#define MAX_NAME  512

struct pb_reader {
    const uint8_t *p;
    const uint8_t *end;
};

struct pb_field {
    uint32_t number;
    uint32_t wire_type;
    const uint8_t *data; /* wire type 2 */
    size_t len;
};

static bool read_varint(struct pb_reader *r, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end)
            return false;
        uint8_t b = *r->p++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0)
            return true;
    }
    return false;
}

/* The next field, or false at the end (r->p == r->end) or on malformed input (r->p != r->end). */
static bool next_field(struct pb_reader *r, struct pb_field *f, bool *bad)
{
    uint64_t key, v;
    *bad = false;
    if (r->p >= r->end)
        return false;
    if (!read_varint(r, &key) || (key >> 3) == 0 || (key >> 3) > UINT32_MAX)
        goto fail;
    f->number = (uint32_t)(key >> 3);
    f->wire_type = (uint32_t)(key & 7);
    f->data = NULL;
    f->len = 0;
    switch (f->wire_type) {
    case 0:
        if (!read_varint(r, &v))
            goto fail;
        return true;
    case 1:
    case 5: {
        size_t n = f->wire_type == 1 ? 8 : 4;
        if ((size_t)(r->end - r->p) < n)
            goto fail;
        r->p += n;
        return true;
    }
    case 2:
        if (!read_varint(r, &v) || v > (uint64_t)(r->end - r->p))
            goto fail;
        f->data = r->p;
        f->len = (size_t)v;
        r->p += v;
        return true;
    default: /* groups are not used by descriptor.proto */
        goto fail;
    }
fail:
    *bad = true;
    return false;
}

struct builder {
    struct rpc__reflect_index *idx;
    size_t cap_symbols;
    struct ec_err *err;
};

static enum ec_status bad_set(struct builder *b, const char *what)
{
    return ec_err_set(b->err, EC_EINVAL, NULL, "malformed descriptor set: %s", what);
}

/* "scope.name" (or "name" at the root) into out; false if it would not fit. */
static bool qualify(char *out, const char *scope, const uint8_t *name, size_t len)
{
    size_t s = strlen(scope);
    if (s + 1 + len + 1 > MAX_NAME || len == 0 || memchr(name, '\0', len) != NULL)
        return false;
    memcpy(out, scope, s);
    if (s > 0)
        out[s++] = '.';
    memcpy(out + s, name, len);
    out[s + len] = '\0';
    return true;
}

static void add_symbol(struct builder *b, const char *name, int file, enum rpc__symbol_kind kind)
{
    struct rpc__reflect_index *idx = b->idx;
    if (idx->n_symbols == b->cap_symbols) {
        b->cap_symbols = b->cap_symbols ? b->cap_symbols * 2 : 64;
        idx->symbols = ec_xrealloc(idx->symbols, b->cap_symbols * sizeof(*idx->symbols));
    }
    idx->symbols[idx->n_symbols++] = (struct rpc__reflect_symbol){ ec_xstrdup(name), file, kind };
}

/* The `name` field (number 1) of a descriptor message. */
static bool message_name(const uint8_t *data, size_t len, const uint8_t **name, size_t *name_len)
{
    struct pb_reader r = { data, data + len };
    struct pb_field f;
    bool bad;
    while (next_field(&r, &f, &bad))
        if (f.number == 1 && f.wire_type == 2) {
            *name = f.data;
            *name_len = f.len;
            return true;
        }
    return false;
}

/* A named child (field, enum value, method, oneof): add "scope.name". */
static enum ec_status add_named(struct builder *b, const char *scope, const struct pb_field *f,
                                int file, enum rpc__symbol_kind kind)
{
    const uint8_t *name;
    size_t len;
    char full[MAX_NAME];
    if (f->wire_type != 2 || !message_name(f->data, f->len, &name, &len) ||
        !qualify(full, scope, name, len))
        return bad_set(b, "a nameless or overlong declaration");
    add_symbol(b, full, file, kind);
    return EC_OK;
}

/* EnumDescriptorProto: the enum in scope, its values beside it (C++ scoping). */
static enum ec_status index_enum(struct builder *b, const char *scope, const struct pb_field *ef,
                                 int file)
{
    const uint8_t *name;
    size_t len;
    char full[MAX_NAME];
    if (ef->wire_type != 2 || !message_name(ef->data, ef->len, &name, &len) ||
        !qualify(full, scope, name, len))
        return bad_set(b, "an enum without a name");
    add_symbol(b, full, file, RPC_SYM_ENUM);
    struct pb_reader r = { ef->data, ef->data + ef->len };
    struct pb_field f;
    bool bad;
    while (next_field(&r, &f, &bad))
        if (f.number == 2 && add_named(b, scope, &f, file, RPC_SYM_ENUM_VALUE) != EC_OK)
            return EC_EINVAL;
    return bad ? bad_set(b, "a truncated enum") : EC_OK;
}

/* DescriptorProto: name 1, field 2, nested_type 3, enum_type 4, extension 6, oneof_decl 8. */
static enum ec_status index_message(struct builder *b, const char *scope, const struct pb_field *mf,
                                    int file, int depth)
{
    const uint8_t *name;
    size_t len;
    char full[MAX_NAME];
    if (depth > MAX_DEPTH)
        return bad_set(b, "message types nested too deeply");
    if (mf->wire_type != 2 || !message_name(mf->data, mf->len, &name, &len) ||
        !qualify(full, scope, name, len))
        return bad_set(b, "a message without a name");
    add_symbol(b, full, file, RPC_SYM_MESSAGE);
    struct pb_reader r = { mf->data, mf->data + mf->len };
    struct pb_field f;
    bool bad;
    while (next_field(&r, &f, &bad)) {
        enum ec_status st = EC_OK;
        if (f.number == 2 || f.number == 6 || f.number == 8)
            st = add_named(b, full, &f, file, RPC_SYM_FIELD);
        else if (f.number == 3)
            st = index_message(b, full, &f, file, depth + 1);
        else if (f.number == 4)
            st = index_enum(b, full, &f, file);
        if (st != EC_OK)
            return st;
    }
    return bad ? bad_set(b, "a truncated message type") : EC_OK;
}

/* ServiceDescriptorProto: name 1, method 2. */
static enum ec_status index_service(struct builder *b, const char *scope, const struct pb_field *sf,
                                    int file)
{
    const uint8_t *name;
    size_t len;
    char full[MAX_NAME];
    if (sf->wire_type != 2 || !message_name(sf->data, sf->len, &name, &len) ||
        !qualify(full, scope, name, len))
        return bad_set(b, "a service without a name");
    add_symbol(b, full, file, RPC_SYM_SERVICE);
    struct pb_reader r = { sf->data, sf->data + sf->len };
    struct pb_field f;
    bool bad;
    while (next_field(&r, &f, &bad))
        if (f.number == 2 && add_named(b, full, &f, file, RPC_SYM_METHOD) != EC_OK)
            return EC_EINVAL;
    return bad ? bad_set(b, "a truncated service") : EC_OK;
}

/* FileDescriptorProto: name 1, package 2, dependency 3, message_type 4, enum_type 5, service 6,
 * extension 7. Dependencies are resolved once every file is named. */
static enum ec_status index_file(struct builder *b, int file)
{
    struct rpc__reflect_file *fd = &b->idx->files[file];
    char package[MAX_NAME] = "";
    struct pb_reader r = { fd->bytes, fd->bytes + fd->len };
    struct pb_field f;
    bool bad;
    while (next_field(&r, &f, &bad)) { /* the package first: it may come after the types */
        if (f.wire_type != 2)
            continue;
        if (f.number == 1 && fd->name == NULL && memchr(f.data, '\0', f.len) == NULL)
            fd->name = ec_xstrndup((const char *)f.data, f.len);
        else if (f.number == 2 && f.len > 0 && !qualify(package, "", f.data, f.len))
            return bad_set(b, "an overlong package name");
    }
    if (bad || fd->name == NULL)
        return bad_set(b, "a file without a name");
    r = (struct pb_reader){ fd->bytes, fd->bytes + fd->len };
    while (next_field(&r, &f, &bad)) {
        enum ec_status st = EC_OK;
        if (f.number == 4)
            st = index_message(b, package, &f, file, 0);
        else if (f.number == 5)
            st = index_enum(b, package, &f, file);
        else if (f.number == 6)
            st = index_service(b, package, &f, file);
        else if (f.number == 7)
            st = add_named(b, package, &f, file, RPC_SYM_FIELD);
        if (st != EC_OK)
            return st;
    }
    return bad ? bad_set(b, "a truncated file") : EC_OK;
}

static enum ec_status resolve_deps(struct builder *b, int file)
{
    struct rpc__reflect_index *idx = b->idx;
    struct rpc__reflect_file *fd = &idx->files[file];
    struct pb_reader r = { fd->bytes, fd->bytes + fd->len };
    struct pb_field f;
    bool bad;
    char name[MAX_NAME];
    fd->deps = ec_xcalloc(idx->n_files, sizeof(int));
    while (next_field(&r, &f, &bad)) {
        if (f.number != 3 || f.wire_type != 2)
            continue;
        if (!qualify(name, "", f.data, f.len))
            return bad_set(b, "an overlong dependency name");
        int dep = rpc__reflect_find_file(idx, name);
        if (dep >= 0 && dep != file && fd->n_deps < idx->n_files)
            fd->deps[fd->n_deps++] = dep;
    }
    return EC_OK;
}

static int symbol_cmp(const void *a, const void *b)
{
    return strcmp(((const struct rpc__reflect_symbol *)a)->name,
                  ((const struct rpc__reflect_symbol *)b)->name);
}

enum ec_status rpc__reflect_index_build(const uint8_t *set, size_t len,
                                        struct rpc__reflect_index **out, struct ec_err *err)
{
    struct rpc__reflect_index *idx = ec_xcalloc(1, sizeof(*idx));
    struct builder b = { idx, 0, err };
    struct pb_reader r = { set, set + len };
    struct pb_field f;
    bool bad;
    size_t cap = 0;
    enum ec_status st = EC_OK;
    *out = NULL;
    while (next_field(&r, &f, &bad)) {
        if (f.number != 1 || f.wire_type != 2)
            continue;
        if (idx->n_files == cap) {
            cap = cap ? cap * 2 : 8;
            idx->files = ec_xrealloc(idx->files, cap * sizeof(*idx->files));
        }
        idx->files[idx->n_files++] = (struct rpc__reflect_file){ NULL, f.data, f.len, NULL, 0 };
    }
    if (bad)
        st = bad_set(&b, "truncated");
    for (size_t i = 0; st == EC_OK && i < idx->n_files; i++)
        st = index_file(&b, (int)i);
    for (size_t i = 0; st == EC_OK && i < idx->n_files; i++)
        st = resolve_deps(&b, (int)i);
    if (st != EC_OK) {
        rpc__reflect_index_free(idx);
        return st;
    }
    if (idx->n_symbols > 0)
        qsort(idx->symbols, idx->n_symbols, sizeof(*idx->symbols), symbol_cmp);
    *out = idx;
    return EC_OK;
}

void rpc__reflect_index_free(struct rpc__reflect_index *idx)
{
    if (idx == NULL)
        return;
    for (size_t i = 0; i < idx->n_files; i++) {
        free(idx->files[i].name);
        free(idx->files[i].deps);
    }
    for (size_t i = 0; i < idx->n_symbols; i++)
        free(idx->symbols[i].name);
    free(idx->files);
    free(idx->symbols);
    free(idx);
}

static pthread_once_t embedded_once = PTHREAD_ONCE_INIT;
static struct rpc__reflect_index *embedded;

static void build_embedded(void)
{
    struct ec_err err = { 0 };
    if (rpc__reflect_index_build(ec_descriptor_set, ec_descriptor_set_len, &embedded, &err) !=
        EC_OK)
        ec_assert_fail(err.msg, __FILE__, __LINE__); /* our own build output: a bug */
}

const struct rpc__reflect_index *rpc__reflect_index_embedded(void)
{
    pthread_once(&embedded_once, build_embedded);
    return embedded;
}

int rpc__reflect_find_file(const struct rpc__reflect_index *idx, const char *name)
{
    for (size_t i = 0; i < idx->n_files; i++)
        if (idx->files[i].name != NULL && strcmp(idx->files[i].name, name) == 0)
            return (int)i;
    return -1;
}

int rpc__reflect_find_symbol(const struct rpc__reflect_index *idx, const char *name,
                             enum rpc__symbol_kind *kind)
{
    if (name[0] == '.') /* a leading dot means fully qualified, which every name here is */
        name++;
    if (idx->n_symbols == 0)
        return -1;
    struct rpc__reflect_symbol key = { (char *)name, 0, RPC_SYM_MESSAGE };
    const struct rpc__reflect_symbol *s =
        bsearch(&key, idx->symbols, idx->n_symbols, sizeof(key), symbol_cmp);
    if (s == NULL)
        return -1;
    if (kind != NULL)
        *kind = s->kind;
    return s->file;
}

static void closure_visit(const struct rpc__reflect_index *idx, int file, bool *seen, int *out,
                          size_t *n)
{
    if (seen[file])
        return;
    seen[file] = true;
    out[(*n)++] = file;
    for (size_t i = 0; i < idx->files[file].n_deps; i++)
        closure_visit(idx, idx->files[file].deps[i], seen, out, n);
}

size_t rpc__reflect_closure(const struct rpc__reflect_index *idx, int file, int *out)
{
    if (file < 0 || (size_t)file >= idx->n_files)
        return 0;
    bool *seen = ec_xcalloc(idx->n_files, sizeof(bool));
    size_t n = 0;
    closure_visit(idx, file, seen, out, &n);
    free(seen);
    return n;
}
