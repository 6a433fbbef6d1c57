/* The JSON codec's view of protobuf-c descriptors: JSON field names, map detection, value sizes,
 * number formatting, and the arena allocator that decoded messages live in. */
#include "edge/edge_pbjson.h"
#include "edge/edge_pbjson_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

unsigned edge__pbjson_max_depth(const struct edge_pbjson_opts *opts)
{
    if (opts == NULL || opts->max_depth == 0)
        return EDGE_PBJSON_MAX_DEPTH_DEFAULT;
    /* Both directions recurse once per level; the clamp bounds stack use on small thread stacks. */
    if (opts->max_depth > EDGE_PBJSON_MAX_DEPTH_LIMIT)
        return EDGE_PBJSON_MAX_DEPTH_LIMIT;
    return opts->max_depth;
}

/* Only ASCII letters change case: field names are identifiers, and ctype would follow the
 * locale. */
static char ascii_upper(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

size_t edge__pbjson_json_name(const char *proto_name, char *out, size_t cap)
{
    size_t len = 0;
    bool upper_next = false;
    for (const char *p = proto_name; *p != '\0'; p++) {
        if (*p == '_') {
            upper_next = true;
            continue;
        }
        if (len + 1 < cap)
            out[len] = upper_next ? ascii_upper(*p) : *p;
        len++;
        upper_next = false;
    }
    if (cap > 0)
        out[len < cap ? len : cap - 1] = '\0';
    return len;
}

bool edge__pbjson_json_name_eq(const char *proto_name, const char *key, size_t len)
{
    size_t i = 0;
    bool upper_next = false;
    for (const char *p = proto_name; *p != '\0'; p++) {
        if (*p == '_') {
            upper_next = true;
            continue;
        }
        char c = upper_next ? ascii_upper(*p) : *p;
        if (i == len || key[i] != c)
            return false;
        i++;
        upper_next = false;
    }
    return i == len;
}

/* Whether entry_short is protoc's MapEntryName(field): CamelCase of the field name + "Entry". */
static bool map_entry_name_eq(const char *field_name, const char *entry_short)
{
    const char *s = entry_short;
    bool upper_next = true;
    for (const char *p = field_name; *p != '\0'; p++) {
        if (*p == '_') {
            upper_next = true;
            continue;
        }
        char c = upper_next ? ascii_upper(*p) : *p;
        if (*s++ != c)
            return false;
        upper_next = false;
    }
    return strcmp(s, "Entry") == 0;
}

bool edge__pbjson_field_is_map(const ProtobufCMessageDescriptor *parent,
                               const ProtobufCFieldDescriptor *f)
{
    if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE)
        return false;
    const ProtobufCMessageDescriptor *entry = f->descriptor;
    if (entry == NULL || entry->n_fields != 2)
        return false;
    const ProtobufCFieldDescriptor *key = &entry->fields[0];
    const ProtobufCFieldDescriptor *value = &entry->fields[1];
    if (key->id != 1 || value->id != 2 || strcmp(key->name, "key") != 0 ||
        strcmp(value->name, "value") != 0 || key->label == PROTOBUF_C_LABEL_REPEATED ||
        value->label == PROTOBUF_C_LABEL_REPEATED)
        return false;
    switch (key->type) {
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_ENUM:
    case PROTOBUF_C_TYPE_MESSAGE:
        return false;
    default:
        break;
    }
    /* The entry type is nested directly in the parent: "<parent>.<FieldName>Entry". */
    size_t plen = strlen(parent->name);
    if (strncmp(entry->name, parent->name, plen) != 0 || entry->name[plen] != '.')
        return false;
    return map_entry_name_eq(f->name, entry->name + plen + 1);
}

size_t edge__pbjson_type_size(ProtobufCType type)
{
    switch (type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return sizeof(int32_t);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return sizeof(int64_t);
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int); /* protobuf-c forces every enum to int size */
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 0;
}

const char *edge__pbjson_type_name(ProtobufCType type)
{
    static const char *const names[] = {
        [PROTOBUF_C_TYPE_INT32] = "int32",       [PROTOBUF_C_TYPE_SINT32] = "sint32",
        [PROTOBUF_C_TYPE_SFIXED32] = "sfixed32", [PROTOBUF_C_TYPE_INT64] = "int64",
        [PROTOBUF_C_TYPE_SINT64] = "sint64",     [PROTOBUF_C_TYPE_SFIXED64] = "sfixed64",
        [PROTOBUF_C_TYPE_UINT32] = "uint32",     [PROTOBUF_C_TYPE_FIXED32] = "fixed32",
        [PROTOBUF_C_TYPE_UINT64] = "uint64",     [PROTOBUF_C_TYPE_FIXED64] = "fixed64",
        [PROTOBUF_C_TYPE_FLOAT] = "float",       [PROTOBUF_C_TYPE_DOUBLE] = "double",
        [PROTOBUF_C_TYPE_BOOL] = "bool",         [PROTOBUF_C_TYPE_ENUM] = "enum",
        [PROTOBUF_C_TYPE_STRING] = "string",     [PROTOBUF_C_TYPE_BYTES] = "bytes",
        [PROTOBUF_C_TYPE_MESSAGE] = "message",
    };
    if ((unsigned)type >= sizeof(names) / sizeof(names[0]))
        return "unknown";
    return names[type];
}

static size_t format_zero(double value, char out[EDGE__PBJSON_NUM_MAX])
{
    const char *text = signbit(value) ? "-0.0" : "0";
    size_t len = strlen(text);
    memcpy(out, text, len + 1);
    return len;
}

size_t edge__pbjson_format_double(double value, char out[EDGE__PBJSON_NUM_MAX])
{
    if (value == 0)
        return format_zero(value, out);
    int len = 0;
    for (int precision = 15; precision <= 17; precision++) {
        len = snprintf(out, EDGE__PBJSON_NUM_MAX, "%.*g", precision, value);
        if (strtod(out, NULL) == value)
            break;
    }
    return (size_t)len;
}

bool edge__pbjson_double_fits_float(double value)
{
    /* FLT_MAX plus half an ulp: from here on, round-to-nearest gives infinity. */
    return fabs(value) < 0x1.ffffffp127;
}

size_t edge__pbjson_format_float(float value, char out[EDGE__PBJSON_NUM_MAX])
{
    if (value == 0)
        return format_zero(value, out);
    int len = 0;
    /* The decoder reads a float as a double and then narrows it, so check that same path. */
    for (int precision = 6; precision <= 9; precision++) {
        len = snprintf(out, EDGE__PBJSON_NUM_MAX, "%.*g", precision, (double)value);
        double back = strtod(out, NULL);
        if (edge__pbjson_double_fits_float(back) && (float)back == value)
            break;
    }
    return (size_t)len;
}

static void *arena_alloc(void *arena, size_t size)
{
    return ec_arena_alloc(arena, size);
}

static void arena_free(void *arena, void *ptr)
{
    /* Arena memory is released all at once when the arena is reset. */
}

void edge_pbjson_allocator_init(ProtobufCAllocator *alloc, struct ec_arena *arena)
{
    alloc->alloc = arena_alloc;
    alloc->free = arena_free;
    alloc->allocator_data = arena;
}
