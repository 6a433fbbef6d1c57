/* Protobuf-c descriptors for the dynamic descriptor pool: enums (values by number and by name,
 * ranges), and messages laid out the way protoc-c lays out its structs (fields in declaration
 * order, n_/has_ quantifiers before their values, each oneof a case word and a union at the
 * end), so generated and dynamic messages agree byte for byte. */
#include "common/ec_mem.h"
#include "mesh/rpc_dynamic_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct desc_builder {
    struct ec_arena *arena;
    struct ec_err *err;
};

/* protoc-c's C name: "edgecoder.v1.EchoRequest" -> "Edgecoder__V1__EchoRequest". */
static const char *c_name_of(struct ec_arena *a, const char *full)
{
    size_t n = strlen(full), dots = 0;
    for (size_t i = 0; i < n; i++)
        dots += full[i] == '.';
    char *out = ec_arena_alloc(a, n + dots + 1), *o = out;
    bool start = true;
    for (size_t i = 0; i < n; i++) {
        if (full[i] == '.') {
            *o++ = '_';
            *o++ = '_';
            start = true;
            continue;
        }
        *o++ = start && full[i] >= 'a' && full[i] <= 'z' ? (char)(full[i] - 'a' + 'A') : full[i];
        start = false;
    }
    *o = '\0';
    return out;
}

/* Ranges of consecutive numbers over sorted, distinct values, plus protobuf-c's sentinel. */
static ProtobufCIntRange *int_ranges(struct ec_arena *a, const int32_t *sorted, size_t n,
                                     unsigned *n_ranges)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || (int64_t)sorted[i] != (int64_t)sorted[i - 1] + 1)
            count++;
    ProtobufCIntRange *r = ec_arena_alloc(a, (count + 1) * sizeof(*r));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || (int64_t)sorted[i] != (int64_t)sorted[i - 1] + 1)
            r[k++] = (ProtobufCIntRange){ sorted[i], (unsigned)i };
    r[k] = (ProtobufCIntRange){ 0, (unsigned)n };
    *n_ranges = (unsigned)count;
    return r;
}

struct named_index {
    const char *name;
    int32_t number;
    unsigned index;
};

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct named_index *)a)->name, ((const struct named_index *)b)->name);
}

static int by_number(const void *a, const void *b)
{
    const struct named_index *x = a, *y = b;
    if (x->number != y->number)
        return x->number < y->number ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index; /* stable: the first alias wins */
}

static enum ec_status build_enum(struct desc_builder *b, struct rpc_dyn_enum *e)
{
    struct ec_arena *a = b->arena;
    size_t n = e->n_values;
    struct named_index *tmp = ec_xmalloc((n ? n : 1) * sizeof(*tmp));
    for (size_t i = 0; i < n; i++)
        tmp[i] = (struct named_index){ e->values[i].name, e->values[i].number, (unsigned)i };
    qsort(tmp, n, sizeof(*tmp), by_number);
    ProtobufCEnumValue *values = ec_arena_zalloc(a, (n ? n : 1) * sizeof(*values));
    int32_t *numbers = ec_arena_alloc(a, (n ? n : 1) * sizeof(*numbers));
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++) {
        if (distinct > 0 && numbers[distinct - 1] == tmp[i].number)
            continue;
        values[distinct] = (ProtobufCEnumValue){ tmp[i].name, tmp[i].name, tmp[i].number };
        numbers[distinct++] = tmp[i].number;
    }
    /* Every name, aliases included, pointing at its number's entry in values. */
    ProtobufCEnumValueIndex *names = ec_arena_zalloc(a, (n ? n : 1) * sizeof(*names));
    for (size_t i = 0; i < n; i++) {
        size_t lo = 0, hi = distinct;
        while (hi - lo > 1) {
            size_t mid = (lo + hi) / 2;
            if (numbers[mid] <= e->values[i].number)
                lo = mid;
            else
                hi = mid;
        }
        tmp[i] = (struct named_index){ e->values[i].name, 0, (unsigned)lo };
    }
    qsort(tmp, n, sizeof(*tmp), by_name);
    enum ec_status st = EC_OK;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(tmp[i].name, tmp[i - 1].name) == 0)
            st = ec_err_set(b->err, EC_EINVAL, NULL, "enum %s has two values named %s",
                            e->full_name, tmp[i].name);
        names[i] = (ProtobufCEnumValueIndex){ tmp[i].name, tmp[i].index };
    }
    free(tmp);
    if (st != EC_OK)
        return st;
    ProtobufCEnumDescriptor *d = ec_arena_zalloc(a, sizeof(*d));
    d->magic = PROTOBUF_C__ENUM_DESCRIPTOR_MAGIC;
    d->name = e->full_name;
    d->short_name = e->name;
    d->c_name = c_name_of(a, e->full_name);
    d->package_name = e->file->package;
    d->n_values = (unsigned)distinct;
    d->values = values;
    d->n_value_names = (unsigned)n;
    d->values_by_name = names;
    d->value_ranges = int_ranges(a, numbers, distinct, &d->n_value_ranges);
    e->desc = d;
    return EC_OK;
}

static enum ec_status build_enums_of(struct desc_builder *b, struct rpc_dyn_message *m)
{
    enum ec_status st = EC_OK;
    for (size_t i = 0; st == EC_OK && i < m->n_enums; i++)
        st = build_enum(b, &m->enums[i]);
    for (size_t i = 0; st == EC_OK && i < m->n_nested; i++)
        st = build_enums_of(b, &m->nested[i]);
    return st;
}

/* --- message layout --------------------------------------------------------------------------- */

static ProtobufCType pc_type(enum rpc_dyn_type t)
{
    static const ProtobufCType map[] = {
        [RPC_DYN_DOUBLE] = PROTOBUF_C_TYPE_DOUBLE,
        [RPC_DYN_FLOAT] = PROTOBUF_C_TYPE_FLOAT,
        [RPC_DYN_INT64] = PROTOBUF_C_TYPE_INT64,
        [RPC_DYN_UINT64] = PROTOBUF_C_TYPE_UINT64,
        [RPC_DYN_INT32] = PROTOBUF_C_TYPE_INT32,
        [RPC_DYN_FIXED64] = PROTOBUF_C_TYPE_FIXED64,
        [RPC_DYN_FIXED32] = PROTOBUF_C_TYPE_FIXED32,
        [RPC_DYN_BOOL] = PROTOBUF_C_TYPE_BOOL,
        [RPC_DYN_STRING] = PROTOBUF_C_TYPE_STRING,
        [RPC_DYN_MESSAGE] = PROTOBUF_C_TYPE_MESSAGE,
        [RPC_DYN_BYTES] = PROTOBUF_C_TYPE_BYTES,
        [RPC_DYN_UINT32] = PROTOBUF_C_TYPE_UINT32,
        [RPC_DYN_ENUM] = PROTOBUF_C_TYPE_ENUM,
        [RPC_DYN_SFIXED32] = PROTOBUF_C_TYPE_SFIXED32,
        [RPC_DYN_SFIXED64] = PROTOBUF_C_TYPE_SFIXED64,
        [RPC_DYN_SINT32] = PROTOBUF_C_TYPE_SINT32,
        [RPC_DYN_SINT64] = PROTOBUF_C_TYPE_SINT64,
    };
    return map[t];
}

/* Size and alignment of one value of a type in a protoc-c struct (one element when repeated). */
static void value_shape(ProtobufCType t, size_t *size, size_t *align)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        *size = sizeof(int64_t), *align = _Alignof(int64_t);
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        *size = sizeof(double), *align = _Alignof(double);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        *size = sizeof(float), *align = _Alignof(float);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        *size = sizeof(protobuf_c_boolean), *align = _Alignof(protobuf_c_boolean);
        break;
    case PROTOBUF_C_TYPE_ENUM:
        *size = sizeof(int), *align = _Alignof(int); /* protoc-c forces enums to int size */
        break;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        *size = sizeof(void *), *align = _Alignof(void *);
        break;
    case PROTOBUF_C_TYPE_BYTES:
        *size = sizeof(ProtobufCBinaryData), *align = _Alignof(ProtobufCBinaryData);
        break;
    default: /* the 32-bit integers */
        *size = sizeof(int32_t), *align = _Alignof(int32_t);
        break;
    }
}

struct layout {
    size_t offset;
    size_t max_align;
};

static unsigned place(struct layout *l, size_t size, size_t align)
{
    l->offset = (l->offset + align - 1) / align * align;
    unsigned at = (unsigned)l->offset;
    l->offset += size;
    if (align > l->max_align)
        l->max_align = align;
    return at;
}

static bool in_real_oneof(const struct rpc_dyn_field *f)
{
    return f->oneof_index >= 0 && !f->proto3_optional;
}

/* A has_ flag guards the scalar and bytes fields of proto2 `optional` and proto3 `optional`. */
static bool has_flag(const struct rpc_dyn_message *m, const struct rpc_dyn_field *f,
                     ProtobufCType t)
{
    return f->label == RPC_DYN_LABEL_OPTIONAL && !in_real_oneof(f) &&
           (!m->file->proto3 || f->proto3_optional) && t != PROTOBUF_C_TYPE_STRING &&
           t != PROTOBUF_C_TYPE_MESSAGE;
}

static ProtobufCLabel pc_label(const struct rpc_dyn_message *m, const struct rpc_dyn_field *f)
{
    if (f->label == RPC_DYN_LABEL_REPEATED)
        return PROTOBUF_C_LABEL_REPEATED;
    if (f->label == RPC_DYN_LABEL_REQUIRED)
        return PROTOBUF_C_LABEL_REQUIRED;
    if (m->file->proto3 && !f->proto3_optional)
        return PROTOBUF_C_LABEL_NONE;
    return PROTOBUF_C_LABEL_OPTIONAL;
}

static void lay_out(const struct rpc_dyn_message *m, ProtobufCFieldDescriptor *fields,
                    const unsigned *pos, ProtobufCMessageDescriptor *d)
{
    struct layout l = { sizeof(ProtobufCMessage), _Alignof(ProtobufCMessage) };
    size_t size, align;
    for (size_t i = 0; i < m->n_fields; i++) {
        const struct rpc_dyn_field *f = &m->fields[i];
        ProtobufCFieldDescriptor *fd = &fields[pos[i]];
        if (in_real_oneof(f))
            continue;
        value_shape(fd->type, &size, &align);
        if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
            fd->quantifier_offset = place(&l, sizeof(size_t), _Alignof(size_t));
            fd->offset = place(&l, sizeof(void *), _Alignof(void *));
            continue;
        }
        if (has_flag(m, f, fd->type))
            fd->quantifier_offset =
                place(&l, sizeof(protobuf_c_boolean), _Alignof(protobuf_c_boolean));
        fd->offset = place(&l, size, align);
    }
    /* Each oneof: a case word (a C enum: int-sized), then a union of its members. */
    for (size_t k = 0; k < m->n_oneofs; k++) {
        size_t union_size = 0, union_align = 1;
        bool any = false;
        for (size_t i = 0; i < m->n_fields; i++) {
            if (!in_real_oneof(&m->fields[i]) || m->fields[i].oneof_index != (int32_t)k)
                continue;
            value_shape(fields[pos[i]].type, &size, &align);
            union_size = size > union_size ? size : union_size;
            union_align = align > union_align ? align : union_align;
            any = true;
        }
        if (!any)
            continue; /* a proto3 `optional` field's synthetic oneof */
        unsigned case_at = place(&l, sizeof(uint32_t), _Alignof(uint32_t));
        union_size = (union_size + union_align - 1) / union_align * union_align;
        unsigned union_at = place(&l, union_size, union_align);
        for (size_t i = 0; i < m->n_fields; i++)
            if (in_real_oneof(&m->fields[i]) && m->fields[i].oneof_index == (int32_t)k) {
                fields[pos[i]].quantifier_offset = case_at;
                fields[pos[i]].offset = union_at;
            }
    }
    d->sizeof_message = (l.offset + l.max_align - 1) / l.max_align * l.max_align;
}

/* --- proto2 defaults -------------------------------------------------------------------------- */

static bool unescape_bytes(struct ec_arena *a, const char *s, ProtobufCBinaryData *out)
{
    static const char simple[] = "n\nr\rt\ta\ab\bf\fv\v\\\\''\"\"??";
    size_t n = strlen(s);
    uint8_t *buf = ec_arena_alloc(a, n + 1), *o = buf;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            *o++ = (uint8_t)s[i];
            continue;
        }
        if (++i == n)
            return false;
        const char *e = strchr(simple, s[i]);
        unsigned v = 0, digits = 0;
        if (e != NULL && (e - simple) % 2 == 0 && s[i] != '\0') {
            *o++ = (uint8_t)e[1];
        } else if (s[i] >= '0' && s[i] <= '7') {
            for (; digits < 3 && i < n && s[i] >= '0' && s[i] <= '7'; digits++, i++)
                v = v * 8 + (unsigned)(s[i] - '0');
            i--;
            if (v > 255)
                return false;
            *o++ = (uint8_t)v;
        } else if (s[i] == 'x' || s[i] == 'X') {
            for (i++; digits < 2 && i < n && strchr("0123456789abcdefABCDEF", s[i]); digits++, i++)
                v = v * 16 + (unsigned)(s[i] <= '9' ? s[i] - '0' : (s[i] | 0x20) - 'a' + 10);
            i--;
            if (digits == 0)
                return false;
            *o++ = (uint8_t)v;
        } else {
            return false;
        }
    }
    out->data = buf;
    out->len = (size_t)(o - buf);
    return true;
}

/* Proto integer literals: decimal, 0x hex or 0 octal; an optional sign for signed types. */
static bool parse_integer(const char *s, bool is_signed, int64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    if (s[0] == '\0' || s[0] == ' ' || (!is_signed && (s[0] == '-' || s[0] == '+')))
        return false;
    if (is_signed) {
        long long v = strtoll(s, &end, 0);
        if (errno != 0 || *end != '\0' || v < lo || (v > 0 && (uint64_t)v > hi))
            return false;
        *out = (uint64_t)v;
    } else {
        unsigned long long v = strtoull(s, &end, 0);
        if (errno != 0 || *end != '\0' || v > hi)
            return false;
        *out = v;
    }
    return true;
}

static const void *default_of(struct desc_builder *b, const struct rpc_dyn_message *m,
                              const struct rpc_dyn_field *f, const ProtobufCFieldDescriptor *fd,
                              bool *ok)
{
    struct ec_arena *a = b->arena;
    const char *s = f->default_text;
    *ok = true;
    /* Without an init function protobuf-c applies every default, oneof members included, and
     * would then take one member's default for the value of another (a string for a message):
     * oneof members get none, unlike protoc-c's. */
    if (in_real_oneof(f))
        return NULL;
    /* protoc-c gives every other proto3 string (repeated ones too) "" as its default. */
    if (m->file->proto3)
        return fd->type == PROTOBUF_C_TYPE_STRING && !f->proto3_optional ? protobuf_c_empty_string
                                                                         : NULL;
    if (s == NULL || fd->label == PROTOBUF_C_LABEL_REPEATED)
        return NULL;
    uint64_t u = 0;
    void *v = ec_arena_zalloc(a, sizeof(ProtobufCBinaryData));
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        *ok = parse_integer(s, true, INT32_MIN, INT32_MAX, &u);
        *(int32_t *)v = (int32_t)(int64_t)u;
        return v;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        *ok = parse_integer(s, false, 0, UINT32_MAX, &u);
        *(uint32_t *)v = (uint32_t)u;
        return v;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: {
        bool is_signed = fd->type != PROTOBUF_C_TYPE_UINT64 && fd->type != PROTOBUF_C_TYPE_FIXED64;
        *ok = parse_integer(s, is_signed, INT64_MIN, is_signed ? INT64_MAX : UINT64_MAX, &u);
        *(uint64_t *)v = u;
        return v;
    }
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: {
        char *end;
        double d = strtod(s, &end);
        *ok = s[0] != '\0' && *end == '\0';
        if (fd->type == PROTOBUF_C_TYPE_FLOAT)
            *(float *)v = (float)d;
        else
            *(double *)v = d;
        return v;
    }
    case PROTOBUF_C_TYPE_BOOL:
        *ok = strcmp(s, "true") == 0 || strcmp(s, "false") == 0;
        *(protobuf_c_boolean *)v = strcmp(s, "true") == 0;
        return v;
    case PROTOBUF_C_TYPE_STRING:
        return s;
    case PROTOBUF_C_TYPE_BYTES:
        *ok = unescape_bytes(a, s, v);
        return v;
    case PROTOBUF_C_TYPE_ENUM:
        for (size_t i = 0; i < f->enum_type->n_values; i++)
            if (strcmp(f->enum_type->values[i].name, s) == 0) {
                *(int *)v = f->enum_type->values[i].number;
                return v;
            }
        *ok = false;
        return NULL;
    default: /* messages have no default */
        *ok = false;
        return NULL;
    }
}

/* --- message descriptors ---------------------------------------------------------------------- */

static enum ec_status check_field(struct desc_builder *b, const struct rpc_dyn_message *m,
                                  const struct rpc_dyn_field *f)
{
    if (in_real_oneof(f) && f->label != RPC_DYN_LABEL_OPTIONAL)
        return ec_err_set(b->err, EC_EINVAL, NULL, "field %s.%s is in a oneof but %s", m->full_name,
                          f->name, f->label == RPC_DYN_LABEL_REPEATED ? "repeated" : "required");
    return EC_OK;
}

/* Numbers and names: sorted by number into fields, each number once; pos[i] is where the i-th
 * declared field went. The name index is checked for duplicates too. */
static enum ec_status index_fields(struct desc_builder *b, const struct rpc_dyn_message *m,
                                   unsigned *pos, int32_t *numbers, unsigned *by_name_out)
{
    size_t n = m->n_fields;
    struct named_index *tmp = ec_xmalloc((n ? n : 1) * sizeof(*tmp));
    enum ec_status st = EC_OK;
    for (size_t i = 0; i < n; i++)
        tmp[i] = (struct named_index){ m->fields[i].name, m->fields[i].number, (unsigned)i };
    qsort(tmp, n, sizeof(*tmp), by_number);
    for (size_t k = 0; k < n; k++) {
        if (k > 0 && tmp[k].number == tmp[k - 1].number)
            st = ec_err_set(b->err, EC_EINVAL, NULL, "%s uses field number %d twice", m->full_name,
                            (int)tmp[k].number);
        pos[tmp[k].index] = (unsigned)k;
        numbers[k] = tmp[k].number;
    }
    for (size_t k = 0; k < n; k++)
        tmp[k].index = (unsigned)k; /* now: the index in number order */
    qsort(tmp, n, sizeof(*tmp), by_name);
    for (size_t k = 0; k < n; k++) {
        if (k > 0 && strcmp(tmp[k].name, tmp[k - 1].name) == 0)
            st = ec_err_set(b->err, EC_EINVAL, NULL, "%s has two fields named %s", m->full_name,
                            tmp[k].name);
        by_name_out[k] = tmp[k].index;
    }
    free(tmp);
    return st;
}

static enum ec_status build_message(struct desc_builder *b, struct rpc_dyn_message *m)
{
    struct ec_arena *a = b->arena;
    ProtobufCMessageDescriptor *d = (ProtobufCMessageDescriptor *)m->desc;
    size_t n = m->n_fields;
    unsigned *pos = ec_arena_alloc(a, (n ? n : 1) * sizeof(*pos));
    int32_t *numbers = ec_arena_alloc(a, (n ? n : 1) * sizeof(*numbers));
    unsigned *by_name = ec_arena_alloc(a, (n ? n : 1) * sizeof(*by_name));
    enum ec_status st = index_fields(b, m, pos, numbers, by_name);
    /* protobuf-c reads fields[0] of a message without fields unless the pointer is NULL. */
    ProtobufCFieldDescriptor *fields = n ? ec_arena_zalloc(a, n * sizeof(*fields)) : NULL;
    for (size_t i = 0; st == EC_OK && i < n; i++) {
        const struct rpc_dyn_field *f = &m->fields[i];
        ProtobufCFieldDescriptor *fd = &fields[pos[i]];
        if ((st = check_field(b, m, f)) != EC_OK)
            break;
        fd->name = f->name;
        fd->id = (uint32_t)f->number;
        fd->type = pc_type(f->type);
        fd->label = pc_label(m, f);
        if (f->type == RPC_DYN_MESSAGE)
            fd->descriptor = f->message_type->desc;
        else if (f->type == RPC_DYN_ENUM)
            fd->descriptor = f->enum_type->desc;
        if (in_real_oneof(f))
            fd->flags |= PROTOBUF_C_FIELD_FLAG_ONEOF;
        if (f->deprecated)
            fd->flags |= PROTOBUF_C_FIELD_FLAG_DEPRECATED;
        if (fd->label == PROTOBUF_C_LABEL_REPEATED && fd->type != PROTOBUF_C_TYPE_STRING &&
            fd->type != PROTOBUF_C_TYPE_BYTES && fd->type != PROTOBUF_C_TYPE_MESSAGE &&
            (f->packed == 1 || (f->packed == -1 && m->file->proto3)))
            fd->flags |= PROTOBUF_C_FIELD_FLAG_PACKED;
        bool ok;
        fd->default_value = default_of(b, m, f, fd, &ok);
        if (!ok)
            st = ec_err_set(b->err, EC_EINVAL, NULL, "field %s.%s has a bad default \"%.60s\"",
                            m->full_name, f->name, f->default_text);
    }
    if (st != EC_OK)
        return st;
    lay_out(m, fields, pos, d);
    d->magic = PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC;
    d->name = m->full_name;
    d->short_name = m->name;
    d->c_name = c_name_of(a, m->full_name);
    d->package_name = m->file->package;
    d->n_fields = (unsigned)n;
    d->fields = fields;
    d->fields_sorted_by_name = n ? by_name : NULL;
    d->field_ranges = int_ranges(a, numbers, n, &d->n_field_ranges);
    d->message_init = NULL; /* protobuf-c then zeroes the struct and applies the defaults */
    for (size_t i = 0; st == EC_OK && i < m->n_nested; i++)
        st = build_message(b, &m->nested[i]);
    return st;
}

enum ec_status rpc__dyn_build_enum(struct ec_arena *arena, struct rpc_dyn_enum *e,
                                   struct ec_err *err)
{
    struct desc_builder b = { arena, err };
    return build_enum(&b, e);
}

enum ec_status rpc__dyn_build_nested_enums(struct ec_arena *arena, struct rpc_dyn_message *m,
                                           struct ec_err *err)
{
    struct desc_builder b = { arena, err };
    return build_enums_of(&b, m);
}

enum ec_status rpc__dyn_build_message(struct ec_arena *arena, struct rpc_dyn_message *m,
                                      struct ec_err *err)
{
    struct desc_builder b = { arena, err };
    return build_message(&b, m);
}
