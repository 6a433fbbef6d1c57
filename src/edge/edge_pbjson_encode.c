/* protobuf-c -> JSON: walks a message by its descriptor and appends compact JSON text straight
 * to an ec_buf, with no intermediate jansson tree. */
#include "edge/edge_pbjson.h"
#include "edge/edge_pbjson_int.h"
#include "common/ec_mem.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pbjson_encoder {
    const struct edge_pbjson_opts *opts;
    struct ec_buf *out;
    struct ec_err *err;
    unsigned depth;
    unsigned max_depth;
    /* The first failure. Once set, output stops and the walk unwinds; checking one sticky
     * status keeps every append from needing its own error branch. */
    enum ec_status status;
};

/* How a singular field stands in its message. */
enum field_state {
    FIELD_SET,     /* has a value to emit */
    FIELD_UNSET,   /* has presence and is not set: omitted, or null with emit_nulls */
    FIELD_DEFAULT, /* proto3 scalar at its zero value: omitted unless emit_defaults */
    FIELD_SIBLING, /* another member of its oneof is set: always omitted */
};

static void encode_message(struct pbjson_encoder *enc, const ProtobufCMessage *msg);

/* Fails with EC_EINTERNAL: a message that has no JSON form is a bug in whoever built it. */
static void __attribute__((format(printf, 4, 5)))
enc_fail(struct pbjson_encoder *enc, const ProtobufCMessageDescriptor *desc,
         const ProtobufCFieldDescriptor *f, const char *fmt, ...)
{
    if (enc->status != EC_OK)
        return;
    char reason[sizeof(((struct ec_err *)0)->msg)];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    enc->status =
        ec_err_set(enc->err, EC_EINTERNAL, NULL, "%s.%s: %s", desc->name, f->name, reason);
}

static void enc_fail_buf(struct pbjson_encoder *enc, enum ec_status st)
{
    if (enc->status != EC_OK)
        return;
    if (st == EC_ETOOBIG)
        enc->status = ec_err_set(enc->err, st, NULL, "JSON output is over its limit of %zu bytes",
                                 enc->out->max);
    else
        enc->status = ec_err_set(enc->err, st, NULL, "cannot append JSON output");
}

static void put(struct pbjson_encoder *enc, const char *s, size_t n)
{
    if (enc->status != EC_OK)
        return;
    enum ec_status st = ec_buf_append(enc->out, s, n);
    if (st != EC_OK)
        enc_fail_buf(enc, st);
}

static void put_str(struct pbjson_encoder *enc, const char *s)
{
    put(enc, s, strlen(s));
}

static void put_uint(struct pbjson_encoder *enc, uint64_t magnitude, bool negative, bool quoted)
{
    char text[24];
    char *p = text + sizeof(text);
    if (quoted)
        *--p = '"';
    do {
        *--p = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude != 0);
    if (negative)
        *--p = '-';
    if (quoted)
        *--p = '"';
    put(enc, p, (size_t)(text + sizeof(text) - p));
}

static void put_int(struct pbjson_encoder *enc, int64_t value, bool quoted)
{
    /* unsigned negation is exact for INT64_MIN too */
    uint64_t magnitude = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
    put_uint(enc, magnitude, value < 0, quoted);
}

/* Non-finite values have no JSON number: the proto3 mapping spells them as strings. */
static void put_double(struct pbjson_encoder *enc, double value, bool is_float)
{
    if (isnan(value)) {
        put_str(enc, "\"NaN\"");
    } else if (isinf(value)) {
        put_str(enc, value > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    } else {
        char text[EDGE__PBJSON_NUM_MAX];
        size_t len = is_float ? edge__pbjson_format_float((float)value, text)
                              : edge__pbjson_format_double(value, text);
        put(enc, text, len);
    }
}

static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        /* overlong forms, UTF-16 surrogates and values past Unicode are not UTF-8 */
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

/* protobuf-c does not check that strings are UTF-8, but JSON text must be. */
static void put_string(struct pbjson_encoder *enc, const ProtobufCMessageDescriptor *desc,
                       const ProtobufCFieldDescriptor *f, const char *s)
{
    if (s == NULL)
        s = "";
    size_t len = strlen(s);
    if (!utf8_valid((const unsigned char *)s, len)) {
        enc_fail(enc, desc, f, "string is not valid UTF-8");
        return;
    }
    put(enc, "\"", 1);
    if (enc->status == EC_OK) {
        enum ec_status st = ec_buf_json_escape(enc->out, s, len);
        if (st != EC_OK)
            enc_fail_buf(enc, st);
    }
    put(enc, "\"", 1);
}

/* Standard padded base64, written in place after one reserve. */
static void put_base64(struct pbjson_encoder *enc, const ProtobufCBinaryData *bin)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (enc->status != EC_OK)
        return;
    size_t n = bin->data != NULL ? bin->len : 0;
    enum ec_status st = ec_buf_reserve(enc->out, (n + 2) / 3 * 4 + 2);
    if (st != EC_OK) {
        enc_fail_buf(enc, st);
        return;
    }
    const uint8_t *d = bin->data;
    char *p = enc->out->data + enc->out->len;
    *p++ = '"';
    size_t i = 0;
    for (; n - i >= 3; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        *p++ = alphabet[v >> 18];
        *p++ = alphabet[(v >> 12) & 63];
        *p++ = alphabet[(v >> 6) & 63];
        *p++ = alphabet[v & 63];
    }
    if (n - i > 0) {
        uint32_t v = (uint32_t)d[i] << 16 | (n - i == 2 ? (uint32_t)d[i + 1] << 8 : 0);
        *p++ = alphabet[v >> 18];
        *p++ = alphabet[(v >> 12) & 63];
        *p++ = n - i == 2 ? alphabet[(v >> 6) & 63] : '=';
        *p++ = '=';
    }
    *p++ = '"';
    *p = '\0';
    enc->out->len = (size_t)(p - enc->out->data);
}

/* `"jsonName":`, preceded by a comma for all but the first key of an object. */
static void put_key(struct pbjson_encoder *enc, const char *proto_name, bool *first)
{
    char name[128];
    size_t len = edge__pbjson_json_name(proto_name, name, sizeof(name));
    if (!*first)
        put(enc, ",", 1);
    *first = false;
    put(enc, "\"", 1);
    if (len < sizeof(name)) {
        put(enc, name, len);
    } else {
        char *long_name = ec_xmalloc(len + 1);
        edge__pbjson_json_name(proto_name, long_name, len + 1);
        put(enc, long_name, len);
        free(long_name);
    }
    put(enc, "\":", 2);
}

/* One value of field f (any label); member points at one element of f's C type. */
static void encode_value(struct pbjson_encoder *enc, const ProtobufCMessageDescriptor *desc,
                         const ProtobufCFieldDescriptor *f, const void *member)
{
    bool int64_quoted = enc->opts->int64_as_string;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        put_int(enc, *(const int32_t *)member, false);
        return;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        put_uint(enc, *(const uint32_t *)member, false, false);
        return;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        put_int(enc, *(const int64_t *)member, int64_quoted);
        return;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: {
        uint64_t value = *(const uint64_t *)member;
        /* past INT64_MAX, jansson cannot read the number back: always a string */
        put_uint(enc, value, false, int64_quoted || value > (uint64_t)INT64_MAX);
        return;
    }
    case PROTOBUF_C_TYPE_FLOAT:
        put_double(enc, *(const float *)member, true);
        return;
    case PROTOBUF_C_TYPE_DOUBLE:
        put_double(enc, *(const double *)member, false);
        return;
    case PROTOBUF_C_TYPE_BOOL:
        put_str(enc, *(const protobuf_c_boolean *)member ? "true" : "false");
        return;
    case PROTOBUF_C_TYPE_ENUM: {
        int value = *(const int *)member;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, value);
        if (ev == NULL) { /* a number from the wire that this build has no name for */
            put_int(enc, value, false);
            return;
        }
        put(enc, "\"", 1);
        put_str(enc, ev->name);
        put(enc, "\"", 1);
        return;
    }
    case PROTOBUF_C_TYPE_STRING:
        put_string(enc, desc, f, *(char *const *)member);
        return;
    case PROTOBUF_C_TYPE_BYTES:
        put_base64(enc, member);
        return;
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)member;
        if (sub == NULL)
            put_str(enc, "null");
        else
            encode_message(enc, sub);
        return;
    }
    }
    enc_fail(enc, desc, f, "unsupported field type %d", (int)f->type);
}

static void encode_array(struct pbjson_encoder *enc, const ProtobufCMessageDescriptor *desc,
                         const ProtobufCFieldDescriptor *f, const char *items, size_t count)
{
    size_t size = edge__pbjson_type_size(f->type);
    put(enc, "[", 1);
    for (size_t i = 0; i < count && enc->status == EC_OK; i++) {
        if (i > 0)
            put(enc, ",", 1);
        encode_value(enc, desc, f, items + i * size);
    }
    put(enc, "]", 1);
}

/* JSON object keys are strings, so integer and bool map keys are quoted. */
static void encode_map_key(struct pbjson_encoder *enc, const ProtobufCMessageDescriptor *entry_desc,
                           const ProtobufCFieldDescriptor *f, const void *member)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        put_string(enc, entry_desc, f, *(char *const *)member);
        return;
    case PROTOBUF_C_TYPE_BOOL:
        put_str(enc, *(const protobuf_c_boolean *)member ? "\"true\"" : "\"false\"");
        return;
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        put_int(enc, *(const int32_t *)member, true);
        return;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        put_uint(enc, *(const uint32_t *)member, false, true);
        return;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        put_uint(enc, *(const uint64_t *)member, false, true);
        return;
    default: /* 64-bit signed; edge__pbjson_field_is_map admits no other key type */
        put_int(enc, *(const int64_t *)member, true);
        return;
    }
}

static void encode_map(struct pbjson_encoder *enc, const ProtobufCFieldDescriptor *f,
                       ProtobufCMessage *const *entries, size_t count)
{
    const ProtobufCMessageDescriptor *entry_desc = f->descriptor;
    const ProtobufCFieldDescriptor *key_field = &entry_desc->fields[0];
    const ProtobufCFieldDescriptor *value_field = &entry_desc->fields[1];
    bool first = true;
    put(enc, "{", 1);
    for (size_t i = 0; i < count && enc->status == EC_OK; i++) {
        const char *entry = (const char *)entries[i];
        if (entry == NULL)
            continue;
        if (!first)
            put(enc, ",", 1);
        first = false;
        encode_map_key(enc, entry_desc, key_field, entry + key_field->offset);
        put(enc, ":", 1);
        const void *value = entry + value_field->offset;
        /* a map entry always has a value: a missing message is an empty one */
        if (value_field->type == PROTOBUF_C_TYPE_MESSAGE && *(void *const *)value == NULL)
            put(enc, "{}", 2);
        else
            encode_value(enc, entry_desc, value_field, value);
    }
    put(enc, "}", 1);
}

static bool value_is_zero(const ProtobufCFieldDescriptor *f, const void *member)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return *(const uint32_t *)member == 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return *(const uint64_t *)member == 0;
    case PROTOBUF_C_TYPE_FLOAT:
        return *(const float *)member == 0; /* -0 too, as protobuf-c's packer decides */
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *)member == 0;
    case PROTOBUF_C_TYPE_BOOL:
        return *(const protobuf_c_boolean *)member == 0;
    case PROTOBUF_C_TYPE_ENUM:
        return *(const int *)member == 0;
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)member;
        return s == NULL || s[0] == '\0';
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)member)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(void *const *)member == NULL;
    }
    return false;
}

/* Presence as protobuf-c's packer sees it: oneof case, has_ flag, pointer, or non-zero value. */
static enum field_state field_state(const ProtobufCFieldDescriptor *f, const char *msg)
{
    const void *member = msg + f->offset;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t set_case = *(const uint32_t *)(msg + f->quantifier_offset);
        return set_case == f->id ? FIELD_SET : set_case == 0 ? FIELD_UNSET : FIELD_SIBLING;
    }
    switch (f->label) {
    case PROTOBUF_C_LABEL_REQUIRED:
        return FIELD_SET;
    case PROTOBUF_C_LABEL_OPTIONAL:
        if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE) {
            const void *p = *(const void *const *)member;
            return p == NULL || p == f->default_value ? FIELD_UNSET : FIELD_SET;
        }
        return *(const protobuf_c_boolean *)(msg + f->quantifier_offset) ? FIELD_SET : FIELD_UNSET;
    default:
        if (f->type == PROTOBUF_C_TYPE_MESSAGE)
            return *(void *const *)member != NULL ? FIELD_SET : FIELD_UNSET;
        return value_is_zero(f, member) ? FIELD_DEFAULT : FIELD_SET;
    }
}

static void encode_field(struct pbjson_encoder *enc, const ProtobufCMessageDescriptor *desc,
                         const ProtobufCFieldDescriptor *f, const char *msg, bool *first)
{
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        size_t count = *(const size_t *)(msg + f->quantifier_offset);
        if (count == 0 && !enc->opts->emit_defaults)
            return;
        const void *items = *(const void *const *)(msg + f->offset);
        put_key(enc, f->name, first);
        if (edge__pbjson_field_is_map(desc, f))
            encode_map(enc, f, items, count);
        else
            encode_array(enc, desc, f, items, count);
        return;
    }
    switch (field_state(f, msg)) {
    case FIELD_SET:
        put_key(enc, f->name, first);
        encode_value(enc, desc, f, msg + f->offset);
        return;
    case FIELD_UNSET:
        if (enc->opts->emit_nulls) {
            put_key(enc, f->name, first);
            put(enc, "null", 4);
        }
        return;
    case FIELD_DEFAULT:
        if (enc->opts->emit_defaults) {
            put_key(enc, f->name, first);
            encode_value(enc, desc, f, msg + f->offset);
        }
        return;
    case FIELD_SIBLING:
        return;
    }
}

static void encode_message(struct pbjson_encoder *enc, const ProtobufCMessage *msg)
{
    const ProtobufCMessageDescriptor *desc = msg->descriptor;
    EC_ASSERT(desc->magic == PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC);
    if (enc->depth >= enc->max_depth) {
        if (enc->status == EC_OK)
            enc->status = ec_err_set(enc->err, EC_EINTERNAL, NULL,
                                     "%s: messages are nested deeper than %u levels", desc->name,
                                     enc->max_depth);
        return;
    }
    enc->depth++;
    bool first = true;
    put(enc, "{", 1);
    for (unsigned i = 0; i < desc->n_fields && enc->status == EC_OK; i++)
        encode_field(enc, desc, &desc->fields[i], (const char *)msg, &first);
    put(enc, "}", 1);
    enc->depth--;
}

enum ec_status edge_pbjson_encode(const ProtobufCMessage *msg, const struct edge_pbjson_opts *opts,
                                  struct ec_buf *out, struct ec_err *err)
{
    static const struct edge_pbjson_opts defaults;
    struct pbjson_encoder enc = {
        .opts = opts != NULL ? opts : &defaults,
        .out = out,
        .err = err,
        .max_depth = edge__pbjson_max_depth(opts),
    };
    size_t start = out->len;
    encode_message(&enc, msg);
    if (enc.status != EC_OK) {
        /* no half-written document is left behind */
        out->len = start;
        if (out->data != NULL)
            out->data[start] = '\0';
    }
    return enc.status;
}

enum ec_status edge_pbjson_to_json(const ProtobufCMessage *msg, const struct edge_pbjson_opts *opts,
                                   json_t **out, struct ec_err *err)
{
    *out = NULL;
    struct ec_buf text;
    ec_buf_init(&text, 0);
    enum ec_status st = edge_pbjson_encode(msg, opts, &text, err);
    if (st == EC_OK) {
        json_error_t jerr;
        *out = json_loadb(text.data, text.len, 0, &jerr);
        if (*out == NULL)
            st =
                ec_err_set(err, EC_EINTERNAL, NULL, "cannot read back encoded JSON: %s", jerr.text);
    }
    ec_buf_release(&text);
    return st;
}
