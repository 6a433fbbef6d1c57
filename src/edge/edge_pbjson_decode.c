/* JSON -> protobuf-c: walks a jansson tree by the message descriptor, allocating the message in
 * an arena, and names the JSON path of the first bad value in the error. */
#include "edge/edge_pbjson.h"
#include "edge/edge_pbjson_int.h"
#include "common/ec_mem.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How much of a user-supplied string an error message quotes. */
#define QUOTE_MAX 32
#define QUOTE_CAP (QUOTE_MAX * 4 + 8)

struct pbjson_decoder {
    const struct edge_pbjson_opts *opts;
    ProtobufCAllocator alloc;
    struct ec_err *err;
    unsigned depth;
    unsigned max_depth;
    /* The JSON path of the value being decoded, e.g. `items[2].count`. path_len is the logical
     * length: segments past the buffer are counted but not stored, so popping stays exact. */
    size_t path_len;
    char path[112];
};

/* A JSON integer read as sign and magnitude, so that every int64 and uint64 fits. */
struct pbjson_int {
    bool negative;
    uint64_t magnitude;
};

static enum ec_status decode_message(struct pbjson_decoder *dec,
                                     const ProtobufCMessageDescriptor *desc, json_t *json,
                                     ProtobufCMessage **out);

/* --- paths and errors --------------------------------------------------------------------- */

static void path_append(struct pbjson_decoder *dec, const char *s, size_t n)
{
    size_t room = sizeof(dec->path) - 1;
    if (dec->path_len < room) {
        size_t k = n < room - dec->path_len ? n : room - dec->path_len;
        /* a cut path gets "..." appended: do not cut inside a UTF-8 sequence of a map key */
        while (k < n && k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
            k--;
        memcpy(dec->path + dec->path_len, s, k);
        dec->path[dec->path_len + k] = '\0';
    }
    dec->path_len += n;
}

static void path_pop(struct pbjson_decoder *dec, size_t saved)
{
    dec->path_len = saved;
    if (saved < sizeof(dec->path))
        dec->path[saved] = '\0';
}

static size_t path_push_key(struct pbjson_decoder *dec, const char *key, size_t len)
{
    size_t saved = dec->path_len;
    if (saved > 0)
        path_append(dec, ".", 1);
    path_append(dec, key, len);
    return saved;
}

static size_t path_push_index(struct pbjson_decoder *dec, size_t index)
{
    size_t saved = dec->path_len;
    char text[32];
    int n = snprintf(text, sizeof(text), "[%zu]", index);
    path_append(dec, text, (size_t)n);
    return saved;
}

/* Writes s as a double-quoted, escaped and possibly shortened string; out has QUOTE_CAP bytes. */
static const char *quote(const char *s, size_t n, char *out)
{
    size_t shown = n;
    if (shown > QUOTE_MAX) {
        shown = QUOTE_MAX;
        /* never cut a UTF-8 sequence: the message may end up in a JSON error body */
        while (shown > 0 && ((unsigned char)s[shown] & 0xC0) == 0x80)
            shown--;
    }
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < shown; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(out + o, 5, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    if (shown < n) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

static size_t path_push_map_key(struct pbjson_decoder *dec, const char *key, size_t len)
{
    size_t saved = dec->path_len;
    char quoted[QUOTE_CAP];
    quote(key, len, quoted);
    path_append(dec, "[", 1);
    path_append(dec, quoted, strlen(quoted));
    path_append(dec, "]", 1);
    return saved;
}

/* A JSON value as error messages show it: strings quoted, containers by kind. */
static const char *describe(const json_t *json, char *out)
{
    char num[EDGE__PBJSON_NUM_MAX];
    switch (json_typeof(json)) {
    case JSON_STRING:
        return quote(json_string_value(json), json_string_length(json), out);
    case JSON_INTEGER:
        (void)snprintf(out, QUOTE_CAP, "%" JSON_INTEGER_FORMAT, json_integer_value(json));
        return out;
    case JSON_REAL:
        edge__pbjson_format_double(json_real_value(json), num);
        (void)snprintf(out, QUOTE_CAP, "%s", num);
        return out;
    case JSON_TRUE:
        return "true";
    case JSON_FALSE:
        return "false";
    case JSON_NULL:
        return "null";
    case JSON_ARRAY:
        return "an array";
    case JSON_OBJECT:
        return "an object";
    }
    return "a value";
}

/* ec_err's message is a fixed buffer: drop a UTF-8 sequence it cut in two. */
static void utf8_trim_tail(char *s)
{
    size_t i = strlen(s);
    size_t continuation = 0;
    while (i > 0 && continuation < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) {
        i--;
        continuation++;
    }
    if (i == 0)
        return;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (need > 1 && continuation + 1 < need)
        s[i - 1] = '\0';
}

/* Fails with EC_EINVAL: "<path>: <reason>", or the bare reason at the top level. */
static enum ec_status __attribute__((format(printf, 2, 3)))
dec_fail(struct pbjson_decoder *dec, const char *fmt, ...)
{
    char reason[sizeof(((struct ec_err *)0)->msg)];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (dec->path_len == 0)
        ec_err_set(dec->err, EC_EINVAL, NULL, "%s", reason);
    else
        ec_err_set(dec->err, EC_EINVAL, NULL, "%s%s: %s", dec->path,
                   dec->path_len >= sizeof(dec->path) ? "..." : "", reason);
    if (dec->err != NULL)
        utf8_trim_tail(dec->err->msg);
    return EC_EINVAL;
}

static enum ec_status dec_fail_expected(struct pbjson_decoder *dec, const char *what,
                                        const json_t *json)
{
    char shown[QUOTE_CAP];
    return dec_fail(dec, "expected %s, got %s", what, describe(json, shown));
}

static enum ec_status dec_fail_range(struct pbjson_decoder *dec, const json_t *json,
                                     const char *type_name)
{
    char shown[QUOTE_CAP];
    return dec_fail(dec, "%s is out of range for %s", describe(json, shown), type_name);
}

/* --- scalars ------------------------------------------------------------------------------ */

/* Reads optional '-' and decimal digits filling all of s[0, n). false on any other text or on a
 * magnitude over UINT64_MAX (*overflow set). */
static bool parse_decimal(const char *s, size_t n, struct pbjson_int *out, bool *overflow)
{
    size_t i = 0;
    *overflow = false;
    out->negative = n > 0 && s[0] == '-';
    if (out->negative)
        i++;
    if (i == n)
        return false;
    uint64_t magnitude = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned digit = (unsigned)(s[i] - '0');
        if (magnitude > (UINT64_MAX - digit) / 10) {
            *overflow = true;
            return false;
        }
        magnitude = magnitude * 10 + digit;
    }
    out->magnitude = magnitude;
    return true;
}

/* An integer from a JSON integer, an integral JSON real (1e3) or a decimal string ("12"). */
static enum ec_status json_to_int(struct pbjson_decoder *dec, const json_t *json,
                                  const char *type_name, struct pbjson_int *out)
{
    if (json_is_integer(json)) {
        json_int_t v = json_integer_value(json);
        out->negative = v < 0;
        out->magnitude = v < 0 ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v;
        return EC_OK;
    }
    if (json_is_real(json)) {
        double v = json_real_value(json);
        if (!isfinite(v) || v != trunc(v))
            return dec_fail_expected(dec, "an integer", json);
        if (fabs(v) >= 0x1p64)
            return dec_fail_range(dec, json, type_name);
        out->negative = v < 0;
        out->magnitude = (uint64_t)fabs(v);
        return EC_OK;
    }
    if (json_is_string(json)) {
        bool overflow;
        if (parse_decimal(json_string_value(json), json_string_length(json), out, &overflow))
            return EC_OK;
        if (overflow)
            return dec_fail_range(dec, json, type_name);
    }
    return dec_fail_expected(dec, "an integer", json);
}

static bool int_fits_signed(const struct pbjson_int *v, int64_t max, int64_t *out)
{
    /* -min == max + 1 for two's complement ranges */
    if (v->magnitude > (uint64_t)max + (v->negative ? 1 : 0))
        return false;
    if (v->negative && v->magnitude > 0)
        *out = -(int64_t)(v->magnitude - 1) - 1;
    else
        *out = (int64_t)v->magnitude;
    return true;
}

static bool int_fits_unsigned(const struct pbjson_int *v, uint64_t max, uint64_t *out)
{
    if ((v->negative && v->magnitude > 0) || v->magnitude > max)
        return false;
    *out = v->magnitude;
    return true;
}

static enum ec_status json_to_signed(struct pbjson_decoder *dec, const json_t *json,
                                     ProtobufCType type, int64_t max, int64_t *out)
{
    struct pbjson_int v = { 0 };
    enum ec_status st = json_to_int(dec, json, edge__pbjson_type_name(type), &v);
    if (st == EC_OK && !int_fits_signed(&v, max, out))
        return dec_fail_range(dec, json, edge__pbjson_type_name(type));
    return st;
}

static enum ec_status json_to_unsigned(struct pbjson_decoder *dec, const json_t *json,
                                       ProtobufCType type, uint64_t max, uint64_t *out)
{
    struct pbjson_int v = { 0 };
    enum ec_status st = json_to_int(dec, json, edge__pbjson_type_name(type), &v);
    if (st == EC_OK && !int_fits_unsigned(&v, max, out))
        return dec_fail_range(dec, json, edge__pbjson_type_name(type));
    return st;
}

/* The JSON number grammar, so that strtod's extras (hex, "inf", spaces) stay out of strings. */
static bool is_json_number(const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    if (i < n && s[i] == '0') {
        i++;
    } else {
        size_t start = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start)
            return false;
    }
    if (i < n && s[i] == '.') {
        size_t start = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start)
            return false;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t start = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start)
            return false;
    }
    return i == n;
}

static enum ec_status json_to_double(struct pbjson_decoder *dec, const json_t *json,
                                     ProtobufCType type, double *out)
{
    if (json_is_integer(json)) {
        *out = (double)json_integer_value(json);
        return EC_OK;
    }
    if (json_is_real(json)) {
        *out = json_real_value(json);
        return EC_OK;
    }
    if (json_is_string(json)) {
        const char *s = json_string_value(json);
        size_t n = json_string_length(json);
        if (strcmp(s, "NaN") == 0) {
            *out = NAN;
            return EC_OK;
        }
        if (strcmp(s, "Infinity") == 0 || strcmp(s, "-Infinity") == 0) {
            *out = s[0] == '-' ? -INFINITY : INFINITY;
            return EC_OK;
        }
        if (is_json_number(s, n)) {
            *out = strtod(s, NULL);
            if (isinf(*out))
                return dec_fail_range(dec, json, edge__pbjson_type_name(type));
            return EC_OK;
        }
    }
    return dec_fail_expected(dec, "a number", json);
}

static enum ec_status json_to_enum(struct pbjson_decoder *dec, const ProtobufCFieldDescriptor *f,
                                   const json_t *json, int *out)
{
    const ProtobufCEnumDescriptor *ed = f->descriptor;
    char shown[QUOTE_CAP];
    if (json_is_string(json)) {
        const char *name = json_string_value(json);
        const ProtobufCEnumValue *ev = NULL;
        if (strlen(name) == json_string_length(json))
            ev = protobuf_c_enum_descriptor_get_value_by_name(ed, name);
        if (ev == NULL)
            return dec_fail(dec, "%s is not a value of enum %s", describe(json, shown), ed->name);
        *out = ev->value;
        return EC_OK;
    }
    if (!json_is_number(json))
        return dec_fail_expected(dec, "an enum name or number", json);
    int64_t number = 0;
    enum ec_status st = json_to_signed(dec, json, PROTOBUF_C_TYPE_INT32, INT32_MAX, &number);
    if (st != EC_OK)
        return st;
    /* Unknown numbers would reach services as values no switch handles; clients send names. */
    if (protobuf_c_enum_descriptor_get_value(ed, (int)number) == NULL)
        return dec_fail(dec, "%s is not a value of enum %s", describe(json, shown), ed->name);
    *out = (int)number;
    return EC_OK;
}

static int base64_digit(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-') /* standard or URL-safe alphabet */
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Standard or URL-safe base64, padded or not. */
static enum ec_status json_to_bytes(struct pbjson_decoder *dec, const json_t *json,
                                    ProtobufCBinaryData *out)
{
    if (!json_is_string(json))
        return dec_fail_expected(dec, "a base64 string", json);
    const unsigned char *s = (const unsigned char *)json_string_value(json);
    size_t n = json_string_length(json);
    size_t data_len = n;
    if (n % 4 == 0 && n > 0 && s[n - 1] == '=')
        data_len -= s[n - 2] == '=' ? 2 : 1;
    if (data_len % 4 == 1)
        return dec_fail(dec, "invalid base64: %zu characters cannot hold whole bytes", data_len);
    uint8_t *bytes = dec->alloc.alloc(dec->alloc.allocator_data, data_len / 4 * 3 + 3);
    size_t len = 0;
    uint32_t acc = 0;
    for (size_t i = 0; i < data_len; i++) {
        int digit = base64_digit(s[i]);
        if (digit < 0)
            return dec_fail(dec, "invalid base64: unexpected character at offset %zu", i);
        acc = acc << 6 | (uint32_t)digit;
        if (i % 4 == 3) {
            bytes[len++] = (uint8_t)(acc >> 16);
            bytes[len++] = (uint8_t)(acc >> 8);
            bytes[len++] = (uint8_t)acc;
            acc = 0;
        }
    }
    if (data_len % 4 == 2) {
        bytes[len++] = (uint8_t)(acc >> 4);
    } else if (data_len % 4 == 3) {
        bytes[len++] = (uint8_t)(acc >> 10);
        bytes[len++] = (uint8_t)(acc >> 2);
    }
    out->data = len > 0 ? bytes : NULL;
    out->len = len;
    return EC_OK;
}

static enum ec_status json_to_string(struct pbjson_decoder *dec, const json_t *json, char **out)
{
    if (!json_is_string(json))
        return dec_fail_expected(dec, "a string", json);
    const char *s = json_string_value(json);
    size_t n = json_string_length(json);
    /* protobuf-c strings end at the first NUL; refuse rather than silently cut. */
    if (memchr(s, '\0', n) != NULL)
        return dec_fail(dec, "string contains a NUL character");
    char *copy = dec->alloc.alloc(dec->alloc.allocator_data, n + 1);
    memcpy(copy, s, n + 1);
    *out = copy;
    return EC_OK;
}

/* One value of field f (any label) into dst, which points at one element of f's C type. */
static enum ec_status decode_value(struct pbjson_decoder *dec, const ProtobufCFieldDescriptor *f,
                                   json_t *json, void *dst)
{
    enum ec_status st = EC_OK;
    int64_t s64 = 0;
    uint64_t u64 = 0;
    double d = 0;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        st = json_to_signed(dec, json, f->type, INT32_MAX, &s64);
        if (st == EC_OK)
            *(int32_t *)dst = (int32_t)s64;
        return st;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return json_to_signed(dec, json, f->type, INT64_MAX, dst);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        st = json_to_unsigned(dec, json, f->type, UINT32_MAX, &u64);
        if (st == EC_OK)
            *(uint32_t *)dst = (uint32_t)u64;
        return st;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return json_to_unsigned(dec, json, f->type, UINT64_MAX, dst);
    case PROTOBUF_C_TYPE_FLOAT:
        st = json_to_double(dec, json, f->type, &d);
        if (st != EC_OK)
            return st;
        if (isfinite(d) && !edge__pbjson_double_fits_float(d))
            return dec_fail_range(dec, json, "float");
        *(float *)dst = (float)d;
        return EC_OK;
    case PROTOBUF_C_TYPE_DOUBLE:
        return json_to_double(dec, json, f->type, dst);
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(json))
            return dec_fail_expected(dec, "true or false", json);
        *(protobuf_c_boolean *)dst = json_is_true(json);
        return EC_OK;
    case PROTOBUF_C_TYPE_ENUM:
        return json_to_enum(dec, f, json, dst);
    case PROTOBUF_C_TYPE_STRING:
        return json_to_string(dec, json, dst);
    case PROTOBUF_C_TYPE_BYTES:
        return json_to_bytes(dec, json, dst);
    case PROTOBUF_C_TYPE_MESSAGE:
        return decode_message(dec, f->descriptor, json, dst);
    }
    return dec_fail(dec, "unsupported field type %d", (int)f->type);
}

/* Marks a proto2 optional scalar as present; string and message presence is the pointer. */
static void set_has(const ProtobufCFieldDescriptor *f, void *msg)
{
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
        f->type != PROTOBUF_C_TYPE_MESSAGE)
        *(protobuf_c_boolean *)((char *)msg + f->quantifier_offset) = 1;
}

/* --- repeated fields and maps ------------------------------------------------------------- */

static void *alloc_array(struct pbjson_decoder *dec, size_t count, size_t size)
{
    EC_ASSERT(size == 0 || count <= SIZE_MAX / size);
    return dec->alloc.alloc(dec->alloc.allocator_data, count * size);
}

static enum ec_status decode_repeated(struct pbjson_decoder *dec, const ProtobufCFieldDescriptor *f,
                                      json_t *json, void *msg)
{
    if (!json_is_array(json))
        return dec_fail_expected(dec, "an array", json);
    size_t count = json_array_size(json);
    size_t size = edge__pbjson_type_size(f->type);
    char *items = count > 0 ? alloc_array(dec, count, size) : NULL;
    for (size_t i = 0; i < count; i++) {
        json_t *item = json_array_get(json, i);
        size_t saved = path_push_index(dec, i);
        enum ec_status st = json_is_null(item)
                                ? dec_fail(dec, "null is not allowed in a repeated field")
                                : decode_value(dec, f, item, items + i * size);
        if (st != EC_OK)
            return st;
        path_pop(dec, saved);
    }
    *(size_t *)((char *)msg + f->quantifier_offset) = count;
    *(void **)((char *)msg + f->offset) = items;
    return EC_OK;
}

/* A map key is a JSON object key. Integer keys must be canonical ("7", not "07" or "-0") so that
 * one key cannot arrive twice under two spellings. */
static enum ec_status decode_map_key(struct pbjson_decoder *dec, const ProtobufCFieldDescriptor *f,
                                     const char *key, size_t len, void *dst)
{
    if (f->type == PROTOBUF_C_TYPE_STRING) {
        if (memchr(key, '\0', len) != NULL)
            return dec_fail(dec, "key contains a NUL character");
        char *copy = dec->alloc.alloc(dec->alloc.allocator_data, len + 1);
        memcpy(copy, key, len + 1);
        *(char **)dst = copy;
        return EC_OK;
    }
    if (f->type == PROTOBUF_C_TYPE_BOOL) {
        bool is_true = len == 4 && memcmp(key, "true", 4) == 0;
        if (!is_true && !(len == 5 && memcmp(key, "false", 5) == 0))
            return dec_fail(dec, "key is not true or false");
        *(protobuf_c_boolean *)dst = is_true;
        return EC_OK;
    }
    bool negative = len > 0 && key[0] == '-';
    const char *digits = key + (negative ? 1 : 0);
    size_t ndigits = len - (negative ? 1 : 0);
    struct pbjson_int v = { 0 };
    bool overflow = false;
    if (ndigits == 0 || (digits[0] == '0' && (ndigits > 1 || negative)) ||
        !parse_decimal(key, len, &v, &overflow)) {
        if (overflow)
            return dec_fail(dec, "key is out of range for %s", edge__pbjson_type_name(f->type));
        return dec_fail(dec, "key is not a canonical integer");
    }
    int64_t s64 = 0;
    uint64_t u64 = 0;
    bool fits = false;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if ((fits = int_fits_signed(&v, INT32_MAX, &s64)))
            *(int32_t *)dst = (int32_t)s64;
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if ((fits = int_fits_unsigned(&v, UINT32_MAX, &u64)))
            *(uint32_t *)dst = (uint32_t)u64;
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        fits = int_fits_unsigned(&v, UINT64_MAX, dst);
        break;
    default: /* 64-bit signed; edge__pbjson_field_is_map admits no other key type */
        fits = int_fits_signed(&v, INT64_MAX, dst);
        break;
    }
    if (!fits)
        return dec_fail(dec, "key is out of range for %s", edge__pbjson_type_name(f->type));
    return EC_OK;
}

/* Generated descriptors have an init function; descriptors built at run time (`edgecoder rpc`)
 * do not. Then do what protobuf-c's own fallback does: zero the struct, set the descriptor and
 * apply each field's default (oneof members share storage, so they keep none). */
static void message_init(const ProtobufCMessageDescriptor *desc, ProtobufCMessage *msg)
{
    if (desc->message_init != NULL) {
        desc->message_init(msg);
        return;
    }
    memset(msg, 0, desc->sizeof_message);
    msg->descriptor = desc;
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        if (f->default_value == NULL || f->label == PROTOBUF_C_LABEL_REPEATED ||
            (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0)
            continue;
        void *dst = (char *)msg + f->offset;
        if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE)
            memcpy(dst, &f->default_value, sizeof(void *));
        else
            memcpy(dst, f->default_value, edge__pbjson_type_size(f->type));
    }
}

static enum ec_status decode_map_entry(struct pbjson_decoder *dec,
                                       const ProtobufCMessageDescriptor *entry_desc,
                                       const char *key, size_t key_len, json_t *value,
                                       ProtobufCMessage **out)
{
    if (json_is_null(value))
        return dec_fail(dec, "null is not allowed as a map value");
    ProtobufCMessage *entry =
        dec->alloc.alloc(dec->alloc.allocator_data, entry_desc->sizeof_message);
    message_init(entry_desc, entry);
    const ProtobufCFieldDescriptor *key_field = &entry_desc->fields[0];
    const ProtobufCFieldDescriptor *value_field = &entry_desc->fields[1];
    enum ec_status st =
        decode_map_key(dec, key_field, key, key_len, (char *)entry + key_field->offset);
    if (st != EC_OK)
        return st;
    set_has(key_field, entry);
    st = decode_value(dec, value_field, value, (char *)entry + value_field->offset);
    if (st != EC_OK)
        return st;
    set_has(value_field, entry);
    *out = entry;
    return EC_OK;
}

static enum ec_status decode_map(struct pbjson_decoder *dec, const ProtobufCFieldDescriptor *f,
                                 json_t *json, void *msg)
{
    if (!json_is_object(json))
        return dec_fail_expected(dec, "an object", json);
    size_t count = json_object_size(json);
    ProtobufCMessage **entries =
        count > 0 ? alloc_array(dec, count, sizeof(ProtobufCMessage *)) : NULL;
    size_t i = 0;
    for (void *it = json_object_iter(json); it != NULL; it = json_object_iter_next(json, it)) {
        const char *key = json_object_iter_key(it);
        size_t key_len = json_object_iter_key_len(it);
        size_t saved = path_push_map_key(dec, key, key_len);
        enum ec_status st = decode_map_entry(dec, f->descriptor, key, key_len,
                                             json_object_iter_value(it), &entries[i++]);
        if (st != EC_OK)
            return st;
        path_pop(dec, saved);
    }
    *(size_t *)((char *)msg + f->quantifier_offset) = count;
    *(void **)((char *)msg + f->offset) = entries;
    return EC_OK;
}

/* --- messages ----------------------------------------------------------------------------- */

/* The field a JSON key names: the proto name (binary search) or the lowerCamelCase JSON name. */
static const ProtobufCFieldDescriptor *field_by_key(const ProtobufCMessageDescriptor *desc,
                                                    const char *key, size_t len)
{
    if (strlen(key) != len)
        return NULL;
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(desc, key);
    if (f != NULL)
        return f;
    for (unsigned i = 0; i < desc->n_fields; i++) {
        if (edge__pbjson_json_name_eq(desc->fields[i].name, key, len))
            return &desc->fields[i];
    }
    return NULL;
}

/* Rejects a second member of a oneof, naming both as the input spelled them. */
static enum ec_status check_oneof(struct pbjson_decoder *dec,
                                  const ProtobufCMessageDescriptor *desc,
                                  const ProtobufCFieldDescriptor *f, const char *key,
                                  const char *const *seen, const void *msg)
{
    uint32_t set_case = *(const uint32_t *)((const char *)msg + f->quantifier_offset);
    if (set_case == 0)
        return EC_OK;
    const ProtobufCFieldDescriptor *other = protobuf_c_message_descriptor_get_field(desc, set_case);
    const char *other_key = other != NULL ? seen[other - desc->fields] : NULL;
    return dec_fail(dec, "both \"%s\" and \"%s\" are set but belong to one oneof",
                    other_key != NULL ? other_key : "?", key);
}

static enum ec_status decode_field(struct pbjson_decoder *dec,
                                   const ProtobufCMessageDescriptor *desc,
                                   const ProtobufCFieldDescriptor *f, json_t *json, void *msg)
{
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        if (edge__pbjson_field_is_map(desc, f))
            return decode_map(dec, f, json, msg);
        return decode_repeated(dec, f, json, msg);
    }
    enum ec_status st = decode_value(dec, f, json, (char *)msg + f->offset);
    if (st != EC_OK)
        return st;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        *(uint32_t *)((char *)msg + f->quantifier_offset) = f->id;
    else
        set_has(f, msg);
    return EC_OK;
}

static enum ec_status check_required(struct pbjson_decoder *dec,
                                     const ProtobufCMessageDescriptor *desc,
                                     const char *const *seen)
{
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        if (f->label == PROTOBUF_C_LABEL_REQUIRED && seen[i] == NULL) {
            char name[64];
            edge__pbjson_json_name(f->name, name, sizeof(name));
            return dec_fail(dec, "required field \"%s\" is missing", name);
        }
    }
    return EC_OK;
}

/* Out of line so that the recursive frames stay small. */
static enum ec_status dec_fail_unknown(struct pbjson_decoder *dec, const char *key, size_t len)
{
    char shown[QUOTE_CAP];
    return dec_fail(dec, "unknown field %s", quote(key, len, shown));
}

static enum ec_status decode_fields(struct pbjson_decoder *dec,
                                    const ProtobufCMessageDescriptor *desc, json_t *json,
                                    ProtobufCMessage *msg, const char **seen)
{
    for (void *it = json_object_iter(json); it != NULL; it = json_object_iter_next(json, it)) {
        const char *key = json_object_iter_key(it);
        size_t key_len = json_object_iter_key_len(it);
        json_t *value = json_object_iter_value(it);
        const ProtobufCFieldDescriptor *f = field_by_key(desc, key, key_len);
        if (f == NULL) {
            if (dec->opts->reject_unknown)
                return dec_fail_unknown(dec, key, key_len);
            continue;
        }
        size_t index = (size_t)(f - desc->fields);
        if (seen[index] != NULL)
            return dec_fail(dec, "field \"%s\" is set twice, also as \"%s\"", key, seen[index]);
        if (json_is_null(value))
            continue; /* null means unset: the default, or no member of a oneof */
        enum ec_status st = EC_OK;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
            st = check_oneof(dec, desc, f, key, seen, msg);
        if (st != EC_OK)
            return st;
        seen[index] = key;
        size_t saved = path_push_key(dec, key, key_len);
        st = decode_field(dec, desc, f, value, msg);
        if (st != EC_OK)
            return st;
        path_pop(dec, saved);
    }
    return check_required(dec, desc, seen);
}

static enum ec_status decode_message(struct pbjson_decoder *dec,
                                     const ProtobufCMessageDescriptor *desc, json_t *json,
                                     ProtobufCMessage **out)
{
    if (!json_is_object(json))
        return dec_fail_expected(dec, "an object", json);
    if (dec->depth >= dec->max_depth)
        return dec_fail(dec, "messages are nested deeper than %u levels", dec->max_depth);
    EC_ASSERT(desc->magic == PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC);
    ProtobufCMessage *msg = dec->alloc.alloc(dec->alloc.allocator_data, desc->sizeof_message);
    message_init(desc, msg);
    /* The key that set each field, by field index: catches a field given under both of its
     * names, and lets a oneof conflict name both members as the client spelled them. */
    const char *seen_small[32] = { 0 };
    const char **seen = seen_small;
    if (desc->n_fields > 32) {
        seen = alloc_array(dec, desc->n_fields, sizeof(*seen));
        memset(seen, 0, desc->n_fields * sizeof(*seen));
    }
    dec->depth++;
    enum ec_status st = decode_fields(dec, desc, json, msg, seen);
    dec->depth--;
    if (st == EC_OK)
        *out = msg;
    return st;
}

/* --- entry points ------------------------------------------------------------------------- */

enum ec_status edge_pbjson_decode_json(const ProtobufCMessageDescriptor *desc, const json_t *json,
                                       const struct edge_pbjson_opts *opts, struct ec_arena *arena,
                                       ProtobufCMessage **out, struct ec_err *err)
{
    static const struct edge_pbjson_opts defaults;
    struct pbjson_decoder dec = {
        .opts = opts != NULL ? opts : &defaults,
        .err = err,
        .max_depth = edge__pbjson_max_depth(opts),
    };
    edge_pbjson_allocator_init(&dec.alloc, arena);
    *out = NULL;
    /* jansson's read accessors take non-const pointers but do not modify. */
    json_t *root = (json_t *)json;
    if (!json_is_object(root))
        return dec_fail_expected(&dec, "a JSON object", root);
    ProtobufCMessage *msg = NULL;
    enum ec_status st = decode_message(&dec, desc, root, &msg);
    if (st == EC_OK)
        *out = msg;
    return st;
}

enum ec_status edge_pbjson_decode(const ProtobufCMessageDescriptor *desc, const char *text,
                                  size_t len, const struct edge_pbjson_opts *opts,
                                  struct ec_arena *arena, ProtobufCMessage **out,
                                  struct ec_err *err)
{
    EC_ASSERT(text != NULL || len == 0);
    *out = NULL;
    size_t max =
        opts != NULL && opts->max_text_len != 0 ? opts->max_text_len : EDGE_PBJSON_MAX_TEXT_DEFAULT;
    if (len > max)
        return ec_err_set(err, EC_ETOOBIG, NULL,
                          "JSON text of %zu bytes is over the limit of %zu bytes", len, max);
    json_error_t jerr;
    /* Duplicate keys are rejected: which one wins differs between parsers. */
    json_t *root = json_loadb(text != NULL ? text : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        /* jansson quotes raw input near the error; keep only printable ASCII of it */
        for (char *p = jerr.text; *p != '\0'; p++) {
            if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
                *p = '?';
        }
        return ec_err_set(err, EC_EINVAL, NULL, "malformed JSON at line %d column %d: %s",
                          jerr.line, jerr.column, jerr.text);
    }
    enum ec_status st = edge_pbjson_decode_json(desc, root, opts, arena, out, err);
    json_decref(root);
    return st;
}
