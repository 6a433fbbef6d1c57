/* The FileDescriptorProto reader of the dynamic descriptor pool: a hand-written, bounds-checked
 * protobuf wire walker (descriptor.proto is not compiled here) that fills the rpc_dyn_* model.
 * Its input comes from the network, so every length is checked against the bytes left, names
 * must be identifiers (they end up on a terminal), and declarations count against a budget. */
#include "mesh/rpc_dynamic_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* --- wire format ------------------------------------------------------------------------------ */

struct wire {
    const uint8_t *p;
    const uint8_t *end;
};

struct wfield {
    uint32_t number;
    uint32_t wire_type;
    uint64_t value;      /* wire type 0 */
    const uint8_t *data; /* wire type 2 */
    size_t len;
};

static bool wire_varint(struct wire *w, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (w->p >= w->end)
            return false;
        uint8_t b = *w->p++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0)
            return true;
    }
    return false;
}

/* 1: the next field is in *f; 0: the end; -1: malformed (groups included: descriptor.proto has
 * none). */
static int wire_next(struct wire *w, struct wfield *f)
{
    uint64_t key, v;
    if (w->p >= w->end)
        return 0;
    if (!wire_varint(w, &key) || (key >> 3) == 0 || (key >> 3) > 0x1fffffff)
        return -1;
    f->number = (uint32_t)(key >> 3);
    f->wire_type = (uint32_t)(key & 7);
    f->value = 0;
    f->data = NULL;
    f->len = 0;
    switch (f->wire_type) {
    case 0:
        return wire_varint(w, &f->value) ? 1 : -1;
    case 1:
    case 5: {
        size_t n = f->wire_type == 1 ? 8 : 4;
        if ((size_t)(w->end - w->p) < n)
            return -1;
        w->p += n;
        return 1;
    }
    case 2:
        if (!wire_varint(w, &v) || v > (uint64_t)(w->end - w->p))
            return -1;
        f->data = w->p;
        f->len = (size_t)v;
        w->p += v;
        return 1;
    default:
        return -1;
    }
}

int rpc__dyn_set_next(const uint8_t *set, size_t len, size_t *pos, const uint8_t **file,
                      size_t *file_len)
{
    if (*pos > len)
        return -1;
    struct wire w = { set + *pos, set + len };
    struct wfield f;
    int r;
    while ((r = wire_next(&w, &f)) == 1) {
        if (f.number != 1) /* FileDescriptorSet.file */
            continue;
        if (f.wire_type != 2)
            return -1;
        *pos = (size_t)(w.p - set);
        *file = f.data;
        *file_len = f.len;
        return 1;
    }
    *pos = len;
    return r;
}

bool rpc__dyn_peek_name(const uint8_t *bytes, size_t len, char *out, size_t cap)
{
    struct wire w = { bytes, bytes + len };
    struct wfield f;
    bool found = false;
    while (wire_next(&w, &f) == 1)
        if (f.number == 1 && f.wire_type == 2 && f.len < cap &&
            memchr(f.data, '\0', f.len) == NULL) {
            memcpy(out, f.data, f.len);
            out[f.len] = '\0';
            found = true; /* the last one wins, as in the full parse */
        }
    return found;
}

/* --- the reader ------------------------------------------------------------------------------- */

struct parser {
    struct ec_arena *arena;
    size_t *budget;
    const char *file; /* the file's name once known */
    struct ec_err *err;
};

static enum ec_status bad(struct parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static enum ec_status bad(struct parser *p, const char *fmt, ...)
{
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (p->file != NULL)
        return ec_err_set(p->err, EC_EINVAL, NULL, "malformed descriptor of \"%.200s\": %s",
                          p->file, what);
    return ec_err_set(p->err, EC_EINVAL, NULL, "malformed file descriptor: %s", what);
}

static enum ec_status spend(struct parser *p, size_t n)
{
    if (*p->budget < n)
        return bad(p, "more than %d declarations", RPC__DYN_MAX_DECLS);
    *p->budget -= n;
    return EC_OK;
}

enum name_kind {
    NAME_IDENT,   /* EchoRequest */
    NAME_DOTTED,  /* edgecoder.v1 */
    NAME_TYPEREF, /* .edgecoder.v1.EchoRequest or a relative name */
    NAME_PATH,    /* edgecoder/v1/demo.proto: printable ASCII */
    NAME_TEXT,    /* a default value: anything but NUL */
};

static bool is_ident_char(uint8_t c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (!first && c >= '0' && c <= '9');
}

static bool name_valid(const uint8_t *s, size_t n, enum name_kind kind)
{
    if (kind == NAME_TEXT)
        return memchr(s, '\0', n) == NULL;
    if (n == 0 || n > RPC__DYN_MAX_NAME)
        return false;
    if (kind == NAME_PATH) {
        for (size_t i = 0; i < n; i++)
            if (s[i] < 0x20 || s[i] > 0x7e)
                return false;
        return true;
    }
    size_t i = kind == NAME_TYPEREF && s[0] == '.' ? 1 : 0;
    bool start = true;
    if (i == n)
        return false;
    for (; i < n; i++) {
        if (s[i] == '.' && kind != NAME_IDENT && !start && i + 1 < n) {
            start = true;
            continue;
        }
        if (!is_ident_char(s[i], start))
            return false;
        start = false;
    }
    return true;
}

static enum ec_status take_str(struct parser *p, const struct wfield *f, enum name_kind kind,
                               const char *what, const char **out)
{
    if (f->wire_type != 2)
        return bad(p, "%s is not a string", what);
    if (!name_valid(f->data, f->len, kind))
        return bad(p, "%s is not a valid name", what);
    *out = ec_arena_strndup(p->arena, (const char *)f->data, f->len);
    return EC_OK;
}

static enum ec_status take_varint(struct parser *p, const struct wfield *f, const char *what,
                                  uint64_t *out)
{
    if (f->wire_type != 0)
        return bad(p, "%s is not a varint", what);
    *out = f->value;
    return EC_OK;
}

/* "scope.name", or "name" at the root. */
static enum ec_status qualify(struct parser *p, const char *scope, const char *name,
                              const char **out)
{
    size_t s = strlen(scope), n = strlen(name);
    if (s + 1 + n > RPC__DYN_MAX_NAME)
        return bad(p, "a name longer than %d characters", RPC__DYN_MAX_NAME);
    *out = s == 0 ? name : ec_arena_sprintf(p->arena, "%s.%s", scope, name);
    return EC_OK;
}

/* Counts the occurrences of each of numbers[0..n) and finds the name (field 1): the first pass
 * of every repeated-field parent, so the arrays are allocated once at the right size. */
static enum ec_status first_pass(struct parser *p, const uint8_t *data, size_t len,
                                 const uint32_t *numbers, size_t *counts, size_t n,
                                 const char *what, const char **name)
{
    struct wire w = { data, data + len };
    struct wfield f;
    int r;
    memset(counts, 0, n * sizeof(*counts));
    if (name != NULL)
        *name = NULL;
    while ((r = wire_next(&w, &f)) == 1) {
        if (f.number == 1 && name != NULL) {
            enum ec_status st = take_str(p, &f, NAME_IDENT, what, name);
            if (st != EC_OK)
                return st;
        }
        for (size_t i = 0; i < n; i++)
            if (f.number == numbers[i])
                counts[i]++;
    }
    if (r < 0)
        return bad(p, "truncated or invalid bytes in %s", what);
    if (name != NULL && *name == NULL)
        return bad(p, "%s without a name", what);
    return EC_OK;
}

static void *alloc_array(struct parser *p, size_t n, size_t size)
{
    return n == 0 ? NULL : ec_arena_zalloc(p->arena, n * size);
}

/* EnumDescriptorProto: name 1, value 2 (EnumValueDescriptorProto: name 1, number 2). */
static enum ec_status parse_enum(struct parser *p, const uint8_t *data, size_t len,
                                 const char *scope, const struct rpc_dyn_file *file,
                                 struct rpc_dyn_enum *out)
{
    static const uint32_t numbers[] = { 2 };
    size_t n_values;
    enum ec_status st = first_pass(p, data, len, numbers, &n_values, 1, "an enum", &out->name);
    if (st == EC_OK)
        st = spend(p, n_values);
    if (st == EC_OK)
        st = qualify(p, scope, out->name, &out->full_name);
    if (st != EC_OK)
        return st;
    out->file = file;
    out->values = alloc_array(p, n_values, sizeof(*out->values));
    struct wire w = { data, data + len };
    struct wfield f;
    while (wire_next(&w, &f) == 1) {
        if (f.number != 2 || out->n_values == n_values)
            continue;
        if (f.wire_type != 2)
            return bad(p, "a value of enum %s is not a message", out->full_name);
        struct rpc_dyn_enum_value *v = &out->values[out->n_values++];
        struct wire vw = { f.data, f.data + f.len };
        struct wfield vf;
        int r = 0;
        while (st == EC_OK && (r = wire_next(&vw, &vf)) == 1) {
            uint64_t num = 0;
            if (vf.number == 1)
                st = take_str(p, &vf, NAME_IDENT, "an enum value name", &v->name);
            else if (vf.number == 2 && (st = take_varint(p, &vf, "an enum number", &num)) == EC_OK)
                v->number = (int32_t)(uint32_t)num;
        }
        if (st != EC_OK)
            return st;
        if (r < 0 || v->name == NULL)
            return bad(p, "a malformed value in enum %s", out->full_name);
    }
    return EC_OK;
}

/* FieldOptions: packed 2, deprecated 3. Options are advisory: other wire types are skipped. */
static enum ec_status parse_field_options(struct parser *p, const struct wfield *of,
                                          struct rpc_dyn_field *out)
{
    if (of->wire_type != 2)
        return bad(p, "the options of field %s are not a message", out->name);
    struct wire w = { of->data, of->data + of->len };
    struct wfield f;
    int r;
    while ((r = wire_next(&w, &f)) == 1) {
        if (f.wire_type != 0)
            continue;
        if (f.number == 2)
            out->packed = f.value != 0;
        else if (f.number == 3)
            out->deprecated = f.value != 0;
    }
    return r < 0 ? bad(p, "malformed options of field %s", out->name) : EC_OK;
}

/* FieldDescriptorProto: name 1, number 3, label 4, type 5, type_name 6, default_value 7,
 * options 8, oneof_index 9, proto3_optional 17. Extendee 2 and json_name 10 are not used. */
static enum ec_status parse_field(struct parser *p, const uint8_t *data, size_t len,
                                  const char *message, struct rpc_dyn_field *out)
{
    struct wire w = { data, data + len };
    struct wfield f;
    const struct wfield *options = NULL;
    struct wfield options_field;
    enum ec_status st = EC_OK;
    uint64_t v = 0;
    bool have_number = false;
    int r = 0;
    out->oneof_index = -1;
    out->packed = -1;
    out->label = RPC_DYN_LABEL_OPTIONAL;
    while (st == EC_OK && (r = wire_next(&w, &f)) == 1) {
        switch (f.number) {
        case 1:
            st = take_str(p, &f, NAME_IDENT, "a field name", &out->name);
            break;
        case 3:
            if ((st = take_varint(p, &f, "a field number", &v)) == EC_OK) {
                out->number = (int32_t)(uint32_t)v;
                have_number = true;
            }
            break;
        case 4:
            if ((st = take_varint(p, &f, "a field label", &v)) == EC_OK && (v < 1 || v > 3))
                st = bad(p, "a field of %s has label %llu", message, (unsigned long long)v);
            out->label = (enum rpc_dyn_label)v;
            break;
        case 5:
            if ((st = take_varint(p, &f, "a field type", &v)) == EC_OK && (v < 1 || v > 18))
                st = bad(p, "a field of %s has type %llu", message, (unsigned long long)v);
            out->type = (enum rpc_dyn_type)v;
            break;
        case 6:
            st = take_str(p, &f, NAME_TYPEREF, "a field type name", &out->type_name);
            break;
        case 7:
            st = take_str(p, &f, NAME_TEXT, "a default value", &out->default_text);
            break;
        case 8:
            options_field = f;
            options = &options_field;
            break;
        case 9:
            if ((st = take_varint(p, &f, "a oneof index", &v)) == EC_OK)
                out->oneof_index = (int32_t)(uint32_t)v;
            break;
        case 17:
            if ((st = take_varint(p, &f, "proto3_optional", &v)) == EC_OK)
                out->proto3_optional = v != 0;
            break;
        default:
            break;
        }
    }
    if (st != EC_OK)
        return st;
    if (r < 0 || out->name == NULL)
        return bad(p, "a malformed field in %s", message);
    if (!have_number || out->number < 1 || out->number > 0x1fffffff)
        return bad(p, "field %s.%s has no valid number", message, out->name);
    if (out->type == 0 && out->type_name == NULL)
        return bad(p, "field %s.%s has neither a type nor a type name", message, out->name);
    return options != NULL ? parse_field_options(p, options, out) : EC_OK;
}

/* MessageOptions: map_entry 7. */
static enum ec_status parse_message_options(struct parser *p, const struct wfield *of,
                                            struct rpc_dyn_message *out)
{
    if (of->wire_type != 2)
        return bad(p, "the options of %s are not a message", out->full_name);
    struct wire w = { of->data, of->data + of->len };
    struct wfield f;
    int r;
    while ((r = wire_next(&w, &f)) == 1)
        if (f.number == 7 && f.wire_type == 0)
            out->map_entry = f.value != 0;
    return r < 0 ? bad(p, "malformed options of %s", out->full_name) : EC_OK;
}

static enum ec_status parse_oneof(struct parser *p, const struct wfield *f, const char *message,
                                  const char **name)
{
    if (f->wire_type != 2)
        return bad(p, "a oneof of %s is not a message", message);
    struct wire w = { f->data, f->data + f->len };
    struct wfield of;
    int r;
    *name = NULL;
    while ((r = wire_next(&w, &of)) == 1)
        if (of.number == 1) {
            enum ec_status st = take_str(p, &of, NAME_IDENT, "a oneof name", name);
            if (st != EC_OK)
                return st;
        }
    return r < 0 || *name == NULL ? bad(p, "a malformed oneof in %s", message) : EC_OK;
}

/* DescriptorProto: name 1, field 2, nested_type 3, enum_type 4, options 7, oneof_decl 8.
 * Extensions (6) and ranges are not needed to pack and unpack. */
static enum ec_status parse_message(struct parser *p, const uint8_t *data, size_t len,
                                    const char *scope, const struct rpc_dyn_file *file, int depth,
                                    struct rpc_dyn_message *out)
{
    static const uint32_t numbers[] = { 2, 3, 4, 8 };
    size_t counts[4];
    if (depth > RPC__DYN_MAX_DEPTH)
        return bad(p, "message types nested deeper than %d", RPC__DYN_MAX_DEPTH);
    enum ec_status st = first_pass(p, data, len, numbers, counts, 4, "a message", &out->name);
    if (st == EC_OK)
        st = spend(p, counts[0] + counts[1] + counts[2] + counts[3]);
    if (st == EC_OK)
        st = qualify(p, scope, out->name, &out->full_name);
    if (st != EC_OK)
        return st;
    out->file = file;
    out->fields = alloc_array(p, counts[0], sizeof(*out->fields));
    out->nested = alloc_array(p, counts[1], sizeof(*out->nested));
    out->enums = alloc_array(p, counts[2], sizeof(*out->enums));
    out->oneofs = alloc_array(p, counts[3], sizeof(*out->oneofs));
    struct wire w = { data, data + len };
    struct wfield f;
    while (st == EC_OK && wire_next(&w, &f) == 1) {
        if (f.number >= 2 && f.number <= 4 && f.wire_type != 2)
            return bad(p, "a declaration in %s is not a message", out->full_name);
        if (f.number == 2 && out->n_fields < counts[0])
            st = parse_field(p, f.data, f.len, out->full_name, &out->fields[out->n_fields++]);
        else if (f.number == 3 && out->n_nested < counts[1])
            st = parse_message(p, f.data, f.len, out->full_name, file, depth + 1,
                               &out->nested[out->n_nested++]);
        else if (f.number == 4 && out->n_enums < counts[2])
            st = parse_enum(p, f.data, f.len, out->full_name, file, &out->enums[out->n_enums++]);
        else if (f.number == 7)
            st = parse_message_options(p, &f, out);
        else if (f.number == 8 && out->n_oneofs < counts[3])
            st = parse_oneof(p, &f, out->full_name, &out->oneofs[out->n_oneofs++]);
    }
    if (st != EC_OK)
        return st;
    for (size_t i = 0; i < out->n_fields; i++) {
        const struct rpc_dyn_field *fd = &out->fields[i];
        if (fd->oneof_index < -1 || fd->oneof_index >= (int32_t)out->n_oneofs)
            return bad(p, "field %s.%s names oneof %d of %zu", out->full_name, fd->name,
                       (int)fd->oneof_index, out->n_oneofs);
    }
    return EC_OK;
}

/* MethodDescriptorProto: name 1, input_type 2, output_type 3, client_streaming 5,
 * server_streaming 6. */
static enum ec_status parse_method(struct parser *p, const struct wfield *mf, const char *service,
                                   struct rpc_dyn_method *out)
{
    if (mf->wire_type != 2)
        return bad(p, "a method of %s is not a message", service);
    struct wire w = { mf->data, mf->data + mf->len };
    struct wfield f;
    enum ec_status st = EC_OK;
    uint64_t v = 0;
    int r = 0;
    while (st == EC_OK && (r = wire_next(&w, &f)) == 1) {
        if (f.number == 1)
            st = take_str(p, &f, NAME_IDENT, "a method name", &out->name);
        else if (f.number == 2)
            st = take_str(p, &f, NAME_TYPEREF, "an input type", &out->input_type);
        else if (f.number == 3)
            st = take_str(p, &f, NAME_TYPEREF, "an output type", &out->output_type);
        else if (f.number == 5 && (st = take_varint(p, &f, "client_streaming", &v)) == EC_OK)
            out->client_streaming = v != 0;
        else if (f.number == 6 && (st = take_varint(p, &f, "server_streaming", &v)) == EC_OK)
            out->server_streaming = v != 0;
    }
    if (st != EC_OK)
        return st;
    if (r < 0 || out->name == NULL || out->input_type == NULL || out->output_type == NULL)
        return bad(p, "a malformed method in %s", service);
    return EC_OK;
}

/* ServiceDescriptorProto: name 1, method 2. */
static enum ec_status parse_service(struct parser *p, const uint8_t *data, size_t len,
                                    const char *scope, const struct rpc_dyn_file *file,
                                    struct rpc_dyn_service *out)
{
    static const uint32_t numbers[] = { 2 };
    size_t n_methods;
    enum ec_status st = first_pass(p, data, len, numbers, &n_methods, 1, "a service", &out->name);
    if (st == EC_OK)
        st = spend(p, n_methods);
    if (st == EC_OK)
        st = qualify(p, scope, out->name, &out->full_name);
    if (st != EC_OK)
        return st;
    out->file = file;
    out->methods = alloc_array(p, n_methods, sizeof(*out->methods));
    struct wire w = { data, data + len };
    struct wfield f;
    while (st == EC_OK && wire_next(&w, &f) == 1)
        if (f.number == 2 && out->n_methods < n_methods)
            st = parse_method(p, &f, out->full_name, &out->methods[out->n_methods++]);
    return st;
}

/* FileDescriptorProto, first pass: name 1, package 2, syntax 12; counts of dependency 3,
 * message_type 4, enum_type 5, service 6. */
static enum ec_status parse_file_header(struct parser *p, const uint8_t *bytes, size_t len,
                                        struct rpc_dyn_file *file, size_t counts[4])
{
    static const uint32_t numbers[] = { 3, 4, 5, 6 };
    enum ec_status st = first_pass(p, bytes, len, numbers, counts, 4, "a file", NULL);
    struct wire w = { bytes, bytes + len };
    struct wfield f;
    const char *syntax = "";
    file->package = "";
    while (st == EC_OK && wire_next(&w, &f) == 1) {
        if (f.number == 1)
            st = take_str(p, &f, NAME_PATH, "the file name", &file->name);
        else if (f.number == 2 && f.wire_type == 2 && f.len == 0)
            file->package = "";
        else if (f.number == 2)
            st = take_str(p, &f, NAME_DOTTED, "the package", &file->package);
        else if (f.number == 12 && f.wire_type == 2 && f.len == 0)
            syntax = "";
        else if (f.number == 12)
            st = take_str(p, &f, NAME_IDENT, "the syntax", &syntax);
    }
    if (st != EC_OK)
        return st;
    if (file->name == NULL)
        return bad(p, "a file without a name");
    p->file = file->name;
    if (strcmp(syntax, "proto3") == 0)
        file->proto3 = true;
    else if (syntax[0] != '\0' && strcmp(syntax, "proto2") != 0)
        return bad(p, "syntax \"%s\" is not supported", syntax);
    return spend(p, 1 + counts[0] + counts[1] + counts[2] + counts[3]);
}

enum ec_status rpc__dyn_parse_file(struct ec_arena *arena, const uint8_t *bytes, size_t len,
                                   size_t *budget, struct rpc_dyn_file **out, struct ec_err *err)
{
    struct parser p = { arena, budget, NULL, err };
    struct rpc_dyn_file *file = ec_arena_zalloc(arena, sizeof(*file));
    size_t counts[4];
    *out = NULL;
    enum ec_status st = parse_file_header(&p, bytes, len, file, counts);
    if (st != EC_OK)
        return st;
    file->deps = alloc_array(&p, counts[0], sizeof(*file->deps));
    file->messages = alloc_array(&p, counts[1], sizeof(*file->messages));
    file->enums = alloc_array(&p, counts[2], sizeof(*file->enums));
    file->services = alloc_array(&p, counts[3], sizeof(*file->services));
    struct wire w = { bytes, bytes + len };
    struct wfield f;
    while (st == EC_OK && wire_next(&w, &f) == 1) {
        if (f.number >= 4 && f.number <= 6 && f.wire_type != 2)
            return bad(&p, "a top-level declaration is not a message");
        if (f.number == 3 && file->n_deps < counts[0])
            st = take_str(&p, &f, NAME_PATH, "an import", &file->deps[file->n_deps++]);
        else if (f.number == 4 && file->n_messages < counts[1])
            st = parse_message(&p, f.data, f.len, file->package, file, 0,
                               &file->messages[file->n_messages++]);
        else if (f.number == 5 && file->n_enums < counts[2])
            st = parse_enum(&p, f.data, f.len, file->package, file, &file->enums[file->n_enums++]);
        else if (f.number == 6 && file->n_services < counts[3])
            st = parse_service(&p, f.data, f.len, file->package, file,
                               &file->services[file->n_services++]);
    }
    if (st == EC_OK)
        *out = file;
    return st;
}
