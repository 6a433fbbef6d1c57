/* Unit tests for the JSON <-> protobuf-c codec (edge_pbjson): every field type, presence, the
 * options, and an error naming its path for every kind of bad input. */
#include "edge/edge_pbjson.h"
#include "edgecoder/test/codec_test.pb-c.h"
#include "edgecoder/test/codec_test_proto2.pb-c.h"

#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define ALL_TYPES (&edgecoder__test__all_types__descriptor)
#define TREE      (&edgecoder__test__tree__descriptor)
#define LEGACY    (&edgecoder__test__legacy__descriptor)

/* One arena and one output buffer per test, released by the teardown. */
static struct ec_arena arena;
static struct ec_buf text;

static int setup(void **state)
{
    ec_arena_init(&arena);
    ec_buf_init(&text, 0);
    return 0;
}

static int teardown(void **state)
{
    ec_arena_release(&arena);
    ec_buf_release(&text);
    return 0;
}

static ProtobufCMessage *decode_ok(const ProtobufCMessageDescriptor *desc, const char *json,
                                   const struct edge_pbjson_opts *opts)
{
    ProtobufCMessage *msg = NULL;
    struct ec_err err = { 0 };
    enum ec_status st = edge_pbjson_decode(desc, json, strlen(json), opts, &arena, &msg, &err);
    if (st != EC_OK)
        fail_msg("decode of %s failed: %s", json, err.msg);
    assert_non_null(msg);
    return msg;
}

static void decode_fails(const ProtobufCMessageDescriptor *desc, const char *json,
                         const struct edge_pbjson_opts *opts, enum ec_status want,
                         const char *want_msg)
{
    ProtobufCMessage *msg = (ProtobufCMessage *)&arena; /* must be reset to NULL */
    struct ec_err err = { 0 };
    enum ec_status st = edge_pbjson_decode(desc, json, strlen(json), opts, &arena, &msg, &err);
    if (st == EC_OK)
        fail_msg("decode of %s succeeded, want \"%s\"", json, want_msg);
    assert_int_equal(st, want);
    assert_null(msg);
    assert_int_equal(err.status, want);
    assert_string_equal(err.msg, want_msg);
}

/* Encodes into the shared buffer (from empty) and returns its text. */
static const char *encode_ok(const ProtobufCMessage *msg, const struct edge_pbjson_opts *opts)
{
    struct ec_err err = { 0 };
    ec_buf_reset(&text);
    enum ec_status st = edge_pbjson_encode(msg, opts, &text, &err);
    if (st != EC_OK)
        fail_msg("encode failed: %s", err.msg);
    return text.data;
}

/* The wire form, for comparing two messages field by field in one call. */
static uint8_t *pack(const ProtobufCMessage *msg, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(msg);
    uint8_t *bytes = ec_arena_alloc(&arena, *len + 1);
    assert_int_equal(protobuf_c_message_pack(msg, bytes), *len);
    return bytes;
}

static void assert_same_message(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
    size_t alen, blen;
    uint8_t *abytes = pack(a, &alen);
    uint8_t *bbytes = pack(b, &blen);
    assert_int_equal(alen, blen);
    assert_memory_equal(abytes, bbytes, alen);
}

/* decode(in) encodes to exactly want; decoding that gives the same message and the same text. */
static ProtobufCMessage *roundtrip(const ProtobufCMessageDescriptor *desc, const char *in,
                                   const struct edge_pbjson_opts *opts, const char *want)
{
    ProtobufCMessage *first = decode_ok(desc, in, opts);
    char *out = ec_arena_strdup(&arena, encode_ok(first, opts));
    assert_string_equal(out, want);
    ProtobufCMessage *second = decode_ok(desc, out, opts);
    assert_same_message(first, second);
    assert_string_equal(encode_ok(second, opts), want);
    return first;
}

/* --- every field type --------------------------------------------------------------------- */

static void test_fixed_message_exact_text(void **state)
{
    Edgecoder__Test__Inner inner = EDGECODER__TEST__INNER__INIT;
    inner.count = 3;
    inner.label = "x";
    Edgecoder__Test__AllTypes nested = EDGECODER__TEST__ALL_TYPES__INIT;
    nested.agent_id = "r";
    Edgecoder__Test__AllTypes m = EDGECODER__TEST__ALL_TYPES__INIT;
    m.f_int32 = -42;
    m.f_sint32 = -7;
    m.f_sfixed32 = 123456;
    m.f_uint32 = UINT32_MAX;
    m.f_fixed32 = 7;
    m.f_int64 = INT64_MIN;
    m.f_sint64 = -1;
    m.f_sfixed64 = INT64_MAX;
    m.f_uint64 = UINT64_MAX;
    m.f_fixed64 = 9007199254740993u;
    m.f_float = 0.1f;
    m.f_double = 0.1;
    m.f_bool = 1;
    m.f_string = "h\xc3\xa9llo \"q\"\n";
    m.f_bytes.data = (uint8_t *)"\x00\xff\x10";
    m.f_bytes.len = 3;
    m.f_enum = EDGECODER__TEST__COLOR__COLOR_INFRARED;
    m.f_inner = &inner;
    m.recursive = &nested;
    m.agent_id = "a-1";
    const char *want =
        "{\"fInt32\":-42,\"fSint32\":-7,\"fSfixed32\":123456,\"fUint32\":4294967295,"
        "\"fFixed32\":7,\"fInt64\":-9223372036854775808,\"fSint64\":-1,"
        "\"fSfixed64\":9223372036854775807,\"fUint64\":\"18446744073709551615\","
        "\"fFixed64\":9007199254740993,\"fFloat\":0.1,\"fDouble\":0.1,\"fBool\":true,"
        "\"fString\":\"h\xc3\xa9llo "
        "\\\"q\\\"\\n\",\"fBytes\":\"AP8Q\",\"fEnum\":\"COLOR_INFRARED\","
        "\"fInner\":{\"count\":3,\"label\":\"x\"},\"recursive\":{\"agentId\":\"r\"},"
        "\"agentId\":\"a-1\"}";
    assert_string_equal(encode_ok(&m.base, NULL), want);

    ProtobufCMessage *back = decode_ok(ALL_TYPES, want, NULL);
    assert_same_message(&m.base, back);
    Edgecoder__Test__AllTypes *d = (Edgecoder__Test__AllTypes *)back;
    assert_true(d->f_int64 == INT64_MIN && d->f_uint64 == UINT64_MAX);
    assert_true(d->f_float == 0.1f);
    assert_int_equal(d->f_bytes.len, 3);
    assert_memory_equal(d->f_bytes.data, "\x00\xff\x10", 3);
    assert_string_equal(encode_ok(back, NULL), want);
}

static void test_repeated_every_type(void **state)
{
    const char *in =
        "{\"r_int32\":[1,-2,\"3\"],\"rSint32\":[-2147483648,2147483647],\"rSfixed32\":[0],"
        "\"rUint32\":[4294967295],\"rFixed32\":[1],"
        "\"rInt64\":[\"-9223372036854775808\",9223372036854775807],\"rSint64\":[-5],"
        "\"rSfixed64\":[6],\"rUint64\":[\"18446744073709551615\",1],\"rFixed64\":[2],"
        "\"rFloat\":[1.5,\"NaN\",\"-Infinity\"],\"rDouble\":[1e300,\"Infinity\",-0.0],"
        "\"rBool\":[true,false],\"rString\":[\"a\",\"\"],\"rBytes\":[\"AQ==\",\"_-8\"],"
        "\"rEnum\":[\"COLOR_RED\",2,-3],\"rInner\":[{\"count\":1},{}],"
        "\"children\":[{\"agentId\":\"c\"}]}";
    const char *want =
        "{\"rInt32\":[1,-2,3],\"rSint32\":[-2147483648,2147483647],\"rSfixed32\":[0],"
        "\"rUint32\":[4294967295],\"rFixed32\":[1],"
        "\"rInt64\":[-9223372036854775808,9223372036854775807],\"rSint64\":[-5],"
        "\"rSfixed64\":[6],\"rUint64\":[\"18446744073709551615\",1],\"rFixed64\":[2],"
        "\"rFloat\":[1.5,\"NaN\",\"-Infinity\"],\"rDouble\":[1e+300,\"Infinity\",-0.0],"
        "\"rBool\":[true,false],\"rString\":[\"a\",\"\"],\"rBytes\":[\"AQ==\",\"/+8=\"],"
        "\"rEnum\":[\"COLOR_RED\",\"COLOR_GREEN\",\"COLOR_INFRARED\"],"
        "\"rInner\":[{\"count\":1},{}],\"children\":[{\"agentId\":\"c\"}]}";
    /* NaN != NaN, so compare text only for the float array's round trip. */
    ProtobufCMessage *first = decode_ok(ALL_TYPES, in, NULL);
    assert_string_equal(encode_ok(first, NULL), want);
    ProtobufCMessage *second = decode_ok(ALL_TYPES, want, NULL);
    assert_string_equal(encode_ok(second, NULL), want);
    Edgecoder__Test__AllTypes *m = (Edgecoder__Test__AllTypes *)first;
    assert_int_equal(m->n_r_int32, 3);
    assert_int_equal(m->r_int32[2], 3);
    assert_true(m->r_int64[0] == INT64_MIN);
    assert_true(isnan(m->r_float[1]) && isinf(m->r_float[2]) && m->r_float[2] < 0);
    assert_true(m->r_double[2] == 0 && signbit(m->r_double[2]));
    assert_int_equal(m->r_bytes[1].len, 2);
    assert_memory_equal(m->r_bytes[1].data, "\xff\xef", 2);
    assert_int_equal(m->r_enum[2], EDGECODER__TEST__COLOR__COLOR_INFRARED);
    assert_int_equal(m->n_r_inner, 2);
    assert_int_equal(m->r_inner[0]->count, 1);
}

static void test_maps(void **state)
{
    const char *in = "{\"labels\":{\"b\":\"2\",\"a\":\"1\"},"
                     "\"counters\":{\"x\":\"-9223372036854775808\"},"
                     "\"by_id\":{\"-7\":{\"count\":1},\"0\":{}},"
                     "\"flags\":{\"true\":\"COLOR_RED\",\"false\":0},"
                     "\"blobs\":{\"18446744073709551615\":\"AAE=\"}}";
    const char *want = "{\"labels\":{\"b\":\"2\",\"a\":\"1\"},"
                       "\"counters\":{\"x\":-9223372036854775808},"
                       "\"byId\":{\"-7\":{\"count\":1},\"0\":{}},"
                       "\"flags\":{\"true\":\"COLOR_RED\",\"false\":\"COLOR_UNSPECIFIED\"},"
                       "\"blobs\":{\"18446744073709551615\":\"AAE=\"}}";
    Edgecoder__Test__AllTypes *m =
        (Edgecoder__Test__AllTypes *)roundtrip(ALL_TYPES, in, NULL, want);
    assert_int_equal(m->n_labels, 2);
    assert_string_equal(m->labels[0]->key, "b");
    assert_string_equal(m->labels[0]->value, "2");
    assert_int_equal(m->by_id[0]->key, -7);
    assert_int_equal(m->by_id[0]->value->count, 1);
    assert_non_null(m->by_id[1]->value);
    assert_true(m->blobs[0]->key == UINT64_MAX);
    assert_int_equal(m->flags[0]->key, 1);

    struct edge_pbjson_opts as_string = { .int64_as_string = true };
    roundtrip(ALL_TYPES, "{\"counters\":{\"x\":5}}", &as_string, "{\"counters\":{\"x\":\"5\"}}");
}

/* --- numbers ------------------------------------------------------------------------------ */

static void test_int64_extremes(void **state)
{
    const char *in = "{\"fInt64\":-9223372036854775808,\"fSint64\":\"-9223372036854775808\","
                     "\"fSfixed64\":9223372036854775807,\"fUint64\":\"18446744073709551615\","
                     "\"fFixed64\":\"9223372036854775807\"}";
    Edgecoder__Test__AllTypes *m = (Edgecoder__Test__AllTypes *)roundtrip(
        ALL_TYPES, in, NULL,
        "{\"fInt64\":-9223372036854775808,\"fSint64\":-9223372036854775808,"
        "\"fSfixed64\":9223372036854775807,\"fUint64\":\"18446744073709551615\","
        "\"fFixed64\":9223372036854775807}");
    assert_true(m->f_int64 == INT64_MIN && m->f_sint64 == INT64_MIN);
    assert_true(m->f_sfixed64 == INT64_MAX && m->f_uint64 == UINT64_MAX);
    assert_true(m->f_fixed64 == (uint64_t)INT64_MAX);

    struct edge_pbjson_opts as_string = { .int64_as_string = true };
    roundtrip(ALL_TYPES, in, &as_string,
              "{\"fInt64\":\"-9223372036854775808\",\"fSint64\":\"-9223372036854775808\","
              "\"fSfixed64\":\"9223372036854775807\",\"fUint64\":\"18446744073709551615\","
              "\"fFixed64\":\"9223372036854775807\"}");

    /* -2^63 is exact as a double; 2^63 is one past INT64_MAX */
    m = (Edgecoder__Test__AllTypes *)decode_ok(ALL_TYPES, "{\"fInt64\":-9.223372036854775808e18}",
                                               NULL);
    assert_true(m->f_int64 == INT64_MIN);
    decode_fails(ALL_TYPES, "{\"fInt64\":9.223372036854775808e18}", NULL, EC_EINVAL,
                 "fInt64: 9.223372036854776e+18 is out of range for int64");
    decode_fails(ALL_TYPES, "{\"fInt64\":\"9223372036854775808\"}", NULL, EC_EINVAL,
                 "fInt64: \"9223372036854775808\" is out of range for int64");
    decode_fails(ALL_TYPES, "{\"fUint64\":\"18446744073709551616\"}", NULL, EC_EINVAL,
                 "fUint64: \"18446744073709551616\" is out of range for uint64");
    decode_fails(ALL_TYPES, "{\"fUint64\":-1}", NULL, EC_EINVAL,
                 "fUint64: -1 is out of range for uint64");
    /* jansson cannot hold an integer past INT64_MAX: such uint64 values must be strings */
    struct ec_err err = { 0 };
    ProtobufCMessage *msg = NULL;
    const char *big = "{\"fUint64\":18446744073709551615}";
    assert_int_equal(edge_pbjson_decode(ALL_TYPES, big, strlen(big), NULL, &arena, &msg, &err),
                     EC_EINVAL);
    assert_true(strncmp(err.msg, "malformed JSON at line 1 column ", 32) == 0);
}

static void test_int32_ranges_and_forms(void **state)
{
    Edgecoder__Test__AllTypes *m = (Edgecoder__Test__AllTypes *)decode_ok(
        ALL_TYPES,
        "{\"fInt32\":1e3,\"fSint32\":\"-12\",\"fSfixed32\":2.0,\"fUint32\":\"4294967295\","
        "\"fFixed32\":-0}",
        NULL);
    assert_int_equal(m->f_int32, 1000);
    assert_int_equal(m->f_sint32, -12);
    assert_int_equal(m->f_sfixed32, 2);
    assert_true(m->f_uint32 == UINT32_MAX);
    assert_int_equal(m->f_fixed32, 0);

    decode_fails(ALL_TYPES, "{\"fInt32\":2147483648}", NULL, EC_EINVAL,
                 "fInt32: 2147483648 is out of range for int32");
    decode_fails(ALL_TYPES, "{\"fSint32\":\"-2147483649\"}", NULL, EC_EINVAL,
                 "fSint32: \"-2147483649\" is out of range for sint32");
    decode_fails(ALL_TYPES, "{\"fSfixed32\":-2147483649}", NULL, EC_EINVAL,
                 "fSfixed32: -2147483649 is out of range for sfixed32");
    decode_fails(ALL_TYPES, "{\"fUint32\":4294967296}", NULL, EC_EINVAL,
                 "fUint32: 4294967296 is out of range for uint32");
    decode_fails(ALL_TYPES, "{\"fFixed32\":-1}", NULL, EC_EINVAL,
                 "fFixed32: -1 is out of range for fixed32");
    decode_fails(ALL_TYPES, "{\"fInt32\":1.5}", NULL, EC_EINVAL,
                 "fInt32: expected an integer, got 1.5");
    decode_fails(ALL_TYPES, "{\"fInt32\":\"abc\"}", NULL, EC_EINVAL,
                 "fInt32: expected an integer, got \"abc\"");
    decode_fails(ALL_TYPES, "{\"fInt32\":\" 1\"}", NULL, EC_EINVAL,
                 "fInt32: expected an integer, got \" 1\"");
    decode_fails(ALL_TYPES, "{\"fInt32\":\"+1\"}", NULL, EC_EINVAL,
                 "fInt32: expected an integer, got \"+1\"");
    decode_fails(ALL_TYPES, "{\"fInt32\":true}", NULL, EC_EINVAL,
                 "fInt32: expected an integer, got true");
}

static void test_floats(void **state)
{
    Edgecoder__Test__AllTypes *m = (Edgecoder__Test__AllTypes *)roundtrip(
        ALL_TYPES, "{\"fFloat\":3.4028235e38,\"fDouble\":\"-Infinity\"}", NULL,
        "{\"fFloat\":3.4028235e+38,\"fDouble\":\"-Infinity\"}");
    assert_true(m->f_float == FLT_MAX);
    assert_true(isinf(m->f_double) && m->f_double < 0);

    m = (Edgecoder__Test__AllTypes *)decode_ok(ALL_TYPES,
                                               "{\"fFloat\":\"NaN\",\"fDouble\":\"1.5\"}", NULL);
    assert_true(isnan(m->f_float));
    assert_true(m->f_double == 1.5);
    assert_string_equal(encode_ok(&m->base, NULL), "{\"fFloat\":\"NaN\",\"fDouble\":1.5}");

    roundtrip(ALL_TYPES, "{\"fFloat\":0.1,\"fDouble\":123456789012345678}", NULL,
              "{\"fFloat\":0.1,\"fDouble\":1.2345678901234568e+17}");
    /* at least 6 (float) or 15 (double) significant digits, fewer only when they are zeros */
    roundtrip(ALL_TYPES, "{\"fDouble\":5e-324,\"fFloat\":1e-45}", NULL,
              "{\"fFloat\":1.4013e-45,\"fDouble\":4.94065645841247e-324}");

    /* negative zero is a proto3 default, but keeps its sign when emitted */
    struct edge_pbjson_opts defaults = { .emit_defaults = true };
    m = (Edgecoder__Test__AllTypes *)decode_ok(ALL_TYPES, "{\"fDouble\":-0.0}", NULL);
    assert_true(m->f_double == 0 && signbit(m->f_double));
    assert_string_equal(encode_ok(&m->base, NULL), "{}");
    assert_non_null(strstr(encode_ok(&m->base, &defaults), "\"fDouble\":-0.0,"));

    decode_fails(ALL_TYPES, "{\"fFloat\":1e39}", NULL, EC_EINVAL,
                 "fFloat: 1e+39 is out of range for float");
    decode_fails(ALL_TYPES, "{\"fFloat\":\"-3.5e38\"}", NULL, EC_EINVAL,
                 "fFloat: \"-3.5e38\" is out of range for float");
    decode_fails(ALL_TYPES, "{\"fDouble\":\"1e999\"}", NULL, EC_EINVAL,
                 "fDouble: \"1e999\" is out of range for double");
    decode_fails(ALL_TYPES, "{\"fDouble\":\"abc\"}", NULL, EC_EINVAL,
                 "fDouble: expected a number, got \"abc\"");
    decode_fails(ALL_TYPES, "{\"fDouble\":\"0x10\"}", NULL, EC_EINVAL,
                 "fDouble: expected a number, got \"0x10\"");
    decode_fails(ALL_TYPES, "{\"fDouble\":\"inf\"}", NULL, EC_EINVAL,
                 "fDouble: expected a number, got \"inf\"");
}

/* --- bytes, strings, bools, enums --------------------------------------------------------- */

static void test_bytes_base64(void **state)
{
    Edgecoder__Test__AllTypes *m =
        (Edgecoder__Test__AllTypes *)decode_ok(ALL_TYPES, "{\"fBytes\":\"aGVsbG8=\"}", NULL);
    assert_int_equal(m->f_bytes.len, 5);
    assert_memory_equal(m->f_bytes.data, "hello", 5);
    m = (Edgecoder__Test__AllTypes *)decode_ok(ALL_TYPES, "{\"fBytes\":\"aGVsbG8\"}", NULL);
    assert_int_equal(m->f_bytes.len, 5);
    m = (Edgecoder__Test__AllTypes *)decode_ok(ALL_TYPES, "{\"fBytes\":\"-_-_\"}", NULL);
    assert_int_equal(m->f_bytes.len, 3);
    assert_memory_equal(m->f_bytes.data, "\xfb\xff\xbf", 3);
    assert_string_equal(encode_ok(&m->base, NULL), "{\"fBytes\":\"+/+/\"}");
    roundtrip(ALL_TYPES, "{\"fBytes\":\"\"}", NULL, "{}");
    roundtrip(ALL_TYPES, "{\"rBytes\":[\"\",\"AA==\",\"AAA=\",\"AAAA\"]}", NULL,
              "{\"rBytes\":[\"\",\"AA==\",\"AAA=\",\"AAAA\"]}");

    decode_fails(ALL_TYPES, "{\"fBytes\":\"@@@@\"}", NULL, EC_EINVAL,
                 "fBytes: invalid base64: unexpected character at offset 0");
    decode_fails(ALL_TYPES, "{\"fBytes\":\"AAAAA\"}", NULL, EC_EINVAL,
                 "fBytes: invalid base64: 5 characters cannot hold whole bytes");
    decode_fails(ALL_TYPES, "{\"fBytes\":\"A===\"}", NULL, EC_EINVAL,
                 "fBytes: invalid base64: unexpected character at offset 1");
    decode_fails(ALL_TYPES, "{\"fBytes\":7}", NULL, EC_EINVAL,
                 "fBytes: expected a base64 string, got 7");
}

static void test_strings_and_bools(void **state)
{
    roundtrip(ALL_TYPES, "{\"fString\":\"tab\\there \\u00e9 \\ud83d\\ude00\",\"fBool\":true}", NULL,
              "{\"fBool\":true,\"fString\":\"tab\\there \xc3\xa9 \xf0\x9f\x98\x80\"}");
    decode_fails(ALL_TYPES, "{\"fString\":5}", NULL, EC_EINVAL,
                 "fString: expected a string, got 5");
    decode_fails(ALL_TYPES, "{\"fBool\":\"true\"}", NULL, EC_EINVAL,
                 "fBool: expected true or false, got \"true\"");
    decode_fails(ALL_TYPES, "{\"fBool\":1}", NULL, EC_EINVAL,
                 "fBool: expected true or false, got 1");

    /* jansson refuses \u0000 unless asked; a json_t holding one is refused by the codec */
    json_t *doc = json_object();
    json_object_set_new(doc, "fString", json_stringn("a\0b", 3));
    ProtobufCMessage *msg = NULL;
    struct ec_err err = { 0 };
    assert_int_equal(edge_pbjson_decode_json(ALL_TYPES, doc, NULL, &arena, &msg, &err), EC_EINVAL);
    assert_string_equal(err.msg, "fString: string contains a NUL character");
    json_decref(doc);
}

static void test_enums(void **state)
{
    Edgecoder__Test__AllTypes *m = (Edgecoder__Test__AllTypes *)roundtrip(
        ALL_TYPES, "{\"fEnum\":\"COLOR_GREEN\",\"choiceColor\":-3}", NULL,
        "{\"fEnum\":\"COLOR_GREEN\",\"choiceColor\":\"COLOR_INFRARED\"}");
    assert_int_equal(m->f_enum, EDGECODER__TEST__COLOR__COLOR_GREEN);
    m = (Edgecoder__Test__AllTypes *)decode_ok(ALL_TYPES, "{\"fEnum\":1}", NULL);
    assert_int_equal(m->f_enum, EDGECODER__TEST__COLOR__COLOR_RED);

    decode_fails(ALL_TYPES, "{\"fEnum\":\"COLOR_PURPLE\"}", NULL, EC_EINVAL,
                 "fEnum: \"COLOR_PURPLE\" is not a value of enum edgecoder.test.Color");
    decode_fails(ALL_TYPES, "{\"fEnum\":\"color_red\"}", NULL, EC_EINVAL,
                 "fEnum: \"color_red\" is not a value of enum edgecoder.test.Color");
    decode_fails(ALL_TYPES, "{\"rEnum\":[1,7]}", NULL, EC_EINVAL,
                 "rEnum[1]: 7 is not a value of enum edgecoder.test.Color");
    decode_fails(ALL_TYPES, "{\"fEnum\":true}", NULL, EC_EINVAL,
                 "fEnum: expected an enum name or number, got true");
    decode_fails(ALL_TYPES, "{\"fEnum\":4294967296}", NULL, EC_EINVAL,
                 "fEnum: 4294967296 is out of range for int32");

    /* a number this build has no name for (from the wire) is emitted as the number */
    Edgecoder__Test__AllTypes wire = EDGECODER__TEST__ALL_TYPES__INIT;
    wire.f_enum = 99;
    assert_string_equal(encode_ok(&wire.base, NULL), "{\"fEnum\":99}");
}

/* --- structure ---------------------------------------------------------------------------- */

static void test_nested_and_recursive(void **state)
{
    const char *tree =
        "{\"name\":\"root\",\"children\":[{\"name\":\"a\",\"children\":"
        "[{\"name\":\"a1\"},{\"name\":\"a2\",\"children\":[{}]}]},{\"name\":\"b\"}]}";
    Edgecoder__Test__Tree *t = (Edgecoder__Test__Tree *)roundtrip(TREE, tree, NULL, tree);
    assert_int_equal(t->n_children, 2);
    assert_string_equal(t->children[0]->children[1]->name, "a2");
    assert_int_equal(t->children[0]->children[1]->n_children, 1);

    roundtrip(ALL_TYPES, "{\"recursive\":{\"recursive\":{\"fInner\":{\"label\":\"deep\"}}}}", NULL,
              "{\"recursive\":{\"recursive\":{\"fInner\":{\"label\":\"deep\"}}}}");
    decode_fails(ALL_TYPES, "{\"recursive\":{\"recursive\":{\"fInt32\":{}}}}", NULL, EC_EINVAL,
                 "recursive.recursive.fInt32: expected an integer, got an object");
    decode_fails(ALL_TYPES, "{\"rInner\":[{},{},{\"count\":\"abc\"}]}", NULL, EC_EINVAL,
                 "rInner[2].count: expected an integer, got \"abc\"");
    decode_fails(ALL_TYPES, "{\"fInner\":{\"count\":2147483648}}", NULL, EC_EINVAL,
                 "fInner.count: 2147483648 is out of range for int32");
    decode_fails(ALL_TYPES, "{\"fInner\":[]}", NULL, EC_EINVAL,
                 "fInner: expected an object, got an array");
    decode_fails(ALL_TYPES, "{\"rInt32\":{}}", NULL, EC_EINVAL,
                 "rInt32: expected an array, got an object");
    decode_fails(ALL_TYPES, "{\"rInt32\":[1,null]}", NULL, EC_EINVAL,
                 "rInt32[1]: null is not allowed in a repeated field");
    decode_fails(ALL_TYPES, "{\"children\":[{\"rInner\":[5]}]}", NULL, EC_EINVAL,
                 "children[0].rInner[0]: expected an object, got 5");
}

static void test_map_errors(void **state)
{
    decode_fails(ALL_TYPES, "{\"labels\":{\"a\":1}}", NULL, EC_EINVAL,
                 "labels[\"a\"]: expected a string, got 1");
    decode_fails(ALL_TYPES, "{\"labels\":{\"a\":null}}", NULL, EC_EINVAL,
                 "labels[\"a\"]: null is not allowed as a map value");
    decode_fails(ALL_TYPES, "{\"labels\":[]}", NULL, EC_EINVAL,
                 "labels: expected an object, got an array");
    decode_fails(ALL_TYPES, "{\"byId\":{\"07\":{}}}", NULL, EC_EINVAL,
                 "byId[\"07\"]: key is not a canonical integer");
    decode_fails(ALL_TYPES, "{\"byId\":{\"-0\":{}}}", NULL, EC_EINVAL,
                 "byId[\"-0\"]: key is not a canonical integer");
    decode_fails(ALL_TYPES, "{\"byId\":{\"2147483648\":{}}}", NULL, EC_EINVAL,
                 "byId[\"2147483648\"]: key is out of range for int32");
    decode_fails(ALL_TYPES, "{\"blobs\":{\"-1\":\"\"}}", NULL, EC_EINVAL,
                 "blobs[\"-1\"]: key is out of range for uint64");
    decode_fails(ALL_TYPES, "{\"flags\":{\"yes\":0}}", NULL, EC_EINVAL,
                 "flags[\"yes\"]: key is not true or false");
    decode_fails(ALL_TYPES, "{\"byId\":{\"1\":{\"count\":\"x\"}}}", NULL, EC_EINVAL,
                 "byId[\"1\"].count: expected an integer, got \"x\"");
    decode_fails(ALL_TYPES, "{\"labels\":{\"a\\\"b\\n\":5}}", NULL, EC_EINVAL,
                 "labels[\"a\\\"b\\x0a\"]: expected a string, got 5");
}

static void test_oneof(void **state)
{
    Edgecoder__Test__AllTypes *m = (Edgecoder__Test__AllTypes *)roundtrip(
        ALL_TYPES, "{\"choiceInner\":{}}", NULL, "{\"choiceInner\":{}}");
    assert_int_equal(m->choice_case, EDGECODER__TEST__ALL_TYPES__CHOICE_CHOICE_INNER);
    assert_non_null(m->choice_inner);

    m = (Edgecoder__Test__AllTypes *)roundtrip(ALL_TYPES, "{}", NULL, "{}");
    assert_int_equal(m->choice_case, EDGECODER__TEST__ALL_TYPES__CHOICE__NOT_SET);

    /* null is "not this member", so it never conflicts */
    m = (Edgecoder__Test__AllTypes *)roundtrip(
        ALL_TYPES, "{\"choiceText\":null,\"choice_number\":\"5\",\"choiceBytes\":null}", NULL,
        "{\"choiceNumber\":5}");
    assert_int_equal(m->choice_case, EDGECODER__TEST__ALL_TYPES__CHOICE_CHOICE_NUMBER);
    assert_int_equal(m->choice_number, 5);
    struct edge_pbjson_opts as_string = { .int64_as_string = true };
    assert_string_equal(encode_ok(&m->base, &as_string), "{\"choiceNumber\":\"5\"}");

    /* a member set to its zero value is still set */
    roundtrip(ALL_TYPES, "{\"choiceText\":\"\"}", NULL, "{\"choiceText\":\"\"}");

    decode_fails(ALL_TYPES, "{\"choiceText\":\"a\",\"choiceNumber\":1}", NULL, EC_EINVAL,
                 "both \"choiceText\" and \"choiceNumber\" are set but belong to one oneof");
    decode_fails(ALL_TYPES, "{\"children\":[{},{\"choice_text\":\"a\",\"choiceInner\":{}}]}", NULL,
                 EC_EINVAL,
                 "children[1]: both \"choice_text\" and \"choiceInner\" are set but belong to "
                 "one oneof");
}

static void test_presence_fields(void **state)
{
    Edgecoder__Test__AllTypes *m = (Edgecoder__Test__AllTypes *)roundtrip(
        ALL_TYPES, "{\"optCount\":0,\"opt_name\":\"\",\"optRatio\":0}", NULL,
        "{\"optCount\":0,\"optName\":\"\",\"optRatio\":0}");
    assert_int_equal(m->opt_count_present_case,
                     EDGECODER__TEST__ALL_TYPES__OPT_COUNT_PRESENT_OPT_COUNT);
    m = (Edgecoder__Test__AllTypes *)roundtrip(ALL_TYPES, "{\"optCount\":null}", NULL, "{}");
    assert_int_equal(m->opt_count_present_case,
                     EDGECODER__TEST__ALL_TYPES__OPT_COUNT_PRESENT__NOT_SET);
    /* a proto3 scalar without presence at zero is left out */
    roundtrip(ALL_TYPES, "{\"fInt32\":0,\"fString\":\"\",\"fInner\":null,\"rInt32\":[]}", NULL,
              "{}");
}

static void test_proto2_presence(void **state)
{
    Edgecoder__Test__Legacy *m =
        (Edgecoder__Test__Legacy *)roundtrip(LEGACY, "{\"id\":\"a\"}", NULL, "{\"id\":\"a\"}");
    assert_false(m->has_retries);
    assert_int_equal(m->retries, 3); /* the proto2 default */
    assert_false(m->has_enabled);
    assert_true(m->enabled);
    assert_null(m->note);

    m = (Edgecoder__Test__Legacy *)roundtrip(
        LEGACY,
        "{\"id\":\"a\",\"retries\":0,\"enabled\":false,\"note\":\"\",\"blob\":\"\","
        "\"level\":\"LEVEL_LOW\",\"next\":{\"id\":\"b\"},\"values\":[\"1\"],\"tags\":{\"k\":5}}",
        NULL,
        "{\"id\":\"a\",\"retries\":0,\"note\":\"\",\"blob\":\"\",\"level\":\"LEVEL_LOW\","
        "\"next\":{\"id\":\"b\"},\"values\":[1],\"tags\":{\"k\":5},\"enabled\":false}");
    assert_true(m->has_retries && m->has_blob && m->has_level && m->has_enabled);
    assert_int_equal(m->retries, 0);
    assert_true(m->tags[0]->has_value);

    struct edge_pbjson_opts nulls = { .emit_nulls = true };
    m = (Edgecoder__Test__Legacy *)decode_ok(LEGACY, "{\"id\":\"a\"}", NULL);
    assert_string_equal(encode_ok(&m->base, &nulls),
                        "{\"id\":\"a\",\"retries\":null,\"note\":null,\"blob\":null,"
                        "\"level\":null,\"next\":null,\"enabled\":null}");

    decode_fails(LEGACY, "{}", NULL, EC_EINVAL, "required field \"id\" is missing");
    decode_fails(LEGACY, "{\"id\":null}", NULL, EC_EINVAL, "required field \"id\" is missing");
    decode_fails(LEGACY, "{\"id\":\"a\",\"next\":{}}", NULL, EC_EINVAL,
                 "next: required field \"id\" is missing");
}

/* --- options ------------------------------------------------------------------------------ */

static void test_emit_defaults(void **state)
{
    struct edge_pbjson_opts opts = { .emit_defaults = true };
    Edgecoder__Test__AllTypes m = EDGECODER__TEST__ALL_TYPES__INIT;
    const char *want =
        "{\"fInt32\":0,\"fSint32\":0,\"fSfixed32\":0,\"fUint32\":0,\"fFixed32\":0,\"fInt64\":0,"
        "\"fSint64\":0,\"fSfixed64\":0,\"fUint64\":0,\"fFixed64\":0,\"fFloat\":0,\"fDouble\":0,"
        "\"fBool\":false,\"fString\":\"\",\"fBytes\":\"\",\"fEnum\":\"COLOR_UNSPECIFIED\","
        "\"agentId\":\"\",\"rInt32\":[],\"rSint32\":[],\"rSfixed32\":[],\"rUint32\":[],"
        "\"rFixed32\":[],\"rInt64\":[],\"rSint64\":[],\"rSfixed64\":[],\"rUint64\":[],"
        "\"rFixed64\":[],\"rFloat\":[],\"rDouble\":[],\"rBool\":[],\"rString\":[],\"rBytes\":[],"
        "\"rEnum\":[],\"rInner\":[],\"children\":[],\"labels\":{},\"counters\":{},\"byId\":{},"
        "\"flags\":{},\"blobs\":{}}";
    assert_string_equal(encode_ok(&m.base, &opts), want);
    ProtobufCMessage *back = decode_ok(ALL_TYPES, want, NULL);
    assert_same_message(&m.base, back);

    struct edge_pbjson_opts strings = { .emit_defaults = true, .int64_as_string = true };
    Edgecoder__Test__Inner inner = EDGECODER__TEST__INNER__INIT;
    assert_string_equal(encode_ok(&inner.base, &strings), "{\"count\":0,\"label\":\"\"}");
    assert_non_null(strstr(encode_ok(&m.base, &strings), "\"fInt64\":\"0\""));
}

static void test_emit_nulls(void **state)
{
    struct edge_pbjson_opts opts = { .emit_nulls = true };
    Edgecoder__Test__AllTypes m = EDGECODER__TEST__ALL_TYPES__INIT;
    const char *want = "{\"fInner\":null,\"recursive\":null,\"choiceText\":null,"
                       "\"choiceNumber\":null,\"choiceInner\":null,\"choiceColor\":null,"
                       "\"choiceBytes\":null,\"optCount\":null,\"optName\":null,"
                       "\"optRatio\":null}";
    assert_string_equal(encode_ok(&m.base, &opts), want);
    ProtobufCMessage *back = decode_ok(ALL_TYPES, want, NULL);
    assert_same_message(&m.base, back);

    /* a set oneof member hides its siblings */
    m.choice_case = EDGECODER__TEST__ALL_TYPES__CHOICE_CHOICE_TEXT;
    m.choice_text = "t";
    assert_non_null(strstr(encode_ok(&m.base, &opts),
                           "\"recursive\":null,\"choiceText\":\"t\",\"optCount\":null"));
}

static void test_unknown_keys(void **state)
{
    const char *in = "{\"nope\":1,\"agentId\":\"x\",\"extra\":{\"deep\":[1,{\"x\":null}]},"
                     "\"fInner\":{\"count\":1,\"later\":true}}";
    roundtrip(ALL_TYPES, in, NULL, "{\"fInner\":{\"count\":1},\"agentId\":\"x\"}");

    struct edge_pbjson_opts strict = { .reject_unknown = true };
    decode_fails(ALL_TYPES, in, &strict, EC_EINVAL, "unknown field \"nope\"");
    decode_fails(ALL_TYPES, "{\"fInner\":{\"count\":1,\"later\":true}}", &strict, EC_EINVAL,
                 "fInner: unknown field \"later\"");
    decode_fails(ALL_TYPES, "{\"AgentId\":1}", &strict, EC_EINVAL, "unknown field \"AgentId\"");
    decode_fails(ALL_TYPES, "{\"agentID\":1}", &strict, EC_EINVAL, "unknown field \"agentID\"");
    decode_fails(ALL_TYPES, "{\"a_very_long_unknown_key_that_goes_on_and_on_and_on\":1}", &strict,
                 EC_EINVAL, "unknown field \"a_very_long_unknown_key_that_goe\"...");
}

static void test_both_spellings(void **state)
{
    Edgecoder__Test__AllTypes *m =
        (Edgecoder__Test__AllTypes *)decode_ok(ALL_TYPES, "{\"agent_id\":\"a\"}", NULL);
    assert_string_equal(m->agent_id, "a");
    m = (Edgecoder__Test__AllTypes *)decode_ok(ALL_TYPES, "{\"agentId\":\"b\"}", NULL);
    assert_string_equal(m->agent_id, "b");
    decode_fails(ALL_TYPES, "{\"agent_id\":\"a\",\"agentId\":\"b\"}", NULL, EC_EINVAL,
                 "field \"agentId\" is set twice, also as \"agent_id\"");
}

/* --- limits and malformed input ----------------------------------------------------------- */

static char *nested_trees(unsigned levels)
{
    struct ec_buf b;
    ec_buf_init(&b, 0);
    for (unsigned i = 1; i < levels; i++)
        ec_buf_puts(&b, "{\"children\":[");
    ec_buf_puts(&b, "{}");
    for (unsigned i = 1; i < levels; i++)
        ec_buf_puts(&b, "]}");
    char *json = ec_arena_strdup(&arena, b.data);
    ec_buf_release(&b);
    return json;
}

static void test_depth_limit(void **state)
{
    decode_ok(TREE, nested_trees(64), NULL);

    const char *deep = nested_trees(65);
    ProtobufCMessage *msg = NULL;
    struct ec_err err = { 0 };
    assert_int_equal(edge_pbjson_decode(TREE, deep, strlen(deep), NULL, &arena, &msg, &err),
                     EC_EINVAL);
    assert_true(strncmp(err.msg, "children[0].children[0].", 24) == 0);
    assert_non_null(strstr(err.msg, "...: messages are nested deeper than 64 levels"));

    struct edge_pbjson_opts shallow = { .max_depth = 2 };
    decode_ok(TREE, nested_trees(2), &shallow);
    decode_fails(TREE, nested_trees(3), &shallow, EC_EINVAL,
                 "children[0].children[0]: messages are nested deeper than 2 levels");

    /* the encoder holds the same line, so it never emits what the decoder would refuse */
    Edgecoder__Test__Tree *t = (Edgecoder__Test__Tree *)decode_ok(TREE, nested_trees(3), NULL);
    ec_buf_puts(&text, "keep");
    assert_int_equal(edge_pbjson_encode(&t->base, &shallow, &text, &err), EC_EINTERNAL);
    assert_string_equal(err.msg, "edgecoder.test.Tree: messages are nested deeper than 2 levels");
    assert_string_equal(text.data, "keep");
    assert_int_equal(text.len, 4);
}

static void test_malformed_json(void **state)
{
    ProtobufCMessage *msg = NULL;
    struct ec_err err = { 0 };
    const char *bad = "{\"a\":";
    assert_int_equal(edge_pbjson_decode(ALL_TYPES, bad, strlen(bad), NULL, &arena, &msg, &err),
                     EC_EINVAL);
    assert_null(msg);
    assert_string_equal(ec_err_code(&err), "invalid_request");
    assert_true(strncmp(err.msg, "malformed JSON at line 1 column 5: ", 35) == 0);

    const char *dup = "{\"fInt32\":1,\"fInt32\":2}";
    assert_int_equal(edge_pbjson_decode(ALL_TYPES, dup, strlen(dup), NULL, &arena, &msg, &err),
                     EC_EINVAL);
    assert_non_null(strstr(err.msg, "duplicate object key"));

    const char *nonascii = "{\"a\":\xff}";
    assert_int_equal(
        edge_pbjson_decode(ALL_TYPES, nonascii, strlen(nonascii), NULL, &arena, &msg, &err),
        EC_EINVAL);
    for (const char *p = err.msg; *p != '\0'; p++)
        assert_true((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);

    assert_int_equal(edge_pbjson_decode(ALL_TYPES, "", 0, NULL, &arena, &msg, &err), EC_EINVAL);
    decode_fails(ALL_TYPES, "[]", NULL, EC_EINVAL, "expected a JSON object, got an array");
    /* the length bounds the text; what follows is not read */
    assert_int_equal(edge_pbjson_decode(ALL_TYPES, "{}garbage", 2, NULL, &arena, &msg, &err),
                     EC_OK);
}

static void test_text_limit(void **state)
{
    struct edge_pbjson_opts small = { .max_text_len = 8 };
    decode_ok(ALL_TYPES, "{\"a\":1}", &small);
    decode_fails(ALL_TYPES, "{\"ab\":12}", &small, EC_ETOOBIG,
                 "JSON text of 9 bytes is over the limit of 8 bytes");
}

/* --- the other entry points --------------------------------------------------------------- */

static void test_decode_json_and_to_json(void **state)
{
    json_t *doc = json_pack("{s:s, s:[i,i], s:I}", "agentId", "z", "rInt32", 1, 2, "fInt64",
                            (json_int_t)INT64_MIN);
    ProtobufCMessage *msg = NULL;
    struct ec_err err = { 0 };
    assert_int_equal(edge_pbjson_decode_json(ALL_TYPES, doc, NULL, &arena, &msg, &err), EC_OK);
    json_t *back = NULL;
    assert_int_equal(edge_pbjson_to_json(msg, NULL, &back, &err), EC_OK);
    assert_true(json_equal(doc, back));
    json_decref(back);
    json_decref(doc);

    json_t *number = json_integer(1);
    assert_int_equal(edge_pbjson_decode_json(ALL_TYPES, number, NULL, &arena, &msg, &err),
                     EC_EINVAL);
    assert_null(msg);
    assert_string_equal(err.msg, "expected a JSON object, got 1");
    json_decref(number);

    Edgecoder__Test__AllTypes bad = EDGECODER__TEST__ALL_TYPES__INIT;
    bad.f_string = "\xff";
    assert_int_equal(edge_pbjson_to_json(&bad.base, NULL, &back, &err), EC_EINTERNAL);
    assert_null(back);
}

static void test_encode_appends_and_caps(void **state)
{
    Edgecoder__Test__Inner inner = EDGECODER__TEST__INNER__INIT;
    inner.label = "hello";
    struct ec_err err = { 0 };
    ec_buf_puts(&text, "x");
    assert_int_equal(edge_pbjson_encode(&inner.base, NULL, &text, &err), EC_OK);
    assert_string_equal(text.data, "x{\"label\":\"hello\"}");

    struct ec_buf capped;
    ec_buf_init(&capped, 10);
    ec_buf_puts(&capped, "abc");
    assert_int_equal(edge_pbjson_encode(&inner.base, NULL, &capped, &err), EC_ETOOBIG);
    assert_string_equal(err.msg, "JSON output is over its limit of 10 bytes");
    assert_int_equal(capped.len, 3);
    assert_string_equal(capped.data, "abc");
    ec_buf_release(&capped);

    /* strings from the wire are not checked by protobuf-c; JSON output must be UTF-8 */
    const char *invalid[] = { "\xff", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "a\xe2\x82" };
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        inner.label = (char *)invalid[i];
        assert_int_equal(edge_pbjson_encode(&inner.base, NULL, &text, &err), EC_EINTERNAL);
        assert_string_equal(err.msg, "edgecoder.test.Inner.label: string is not valid UTF-8");
    }
}

static void test_arena_allocator_unpack(void **state)
{
    Edgecoder__Test__AllTypes *m = (Edgecoder__Test__AllTypes *)decode_ok(
        ALL_TYPES, "{\"agentId\":\"w\",\"labels\":{\"k\":\"v\"},\"rInner\":[{\"count\":2}]}", NULL);
    size_t len;
    uint8_t *wire = pack(&m->base, &len);
    ProtobufCAllocator alloc;
    edge_pbjson_allocator_init(&alloc, &arena);
    ProtobufCMessage *unpacked = protobuf_c_message_unpack(ALL_TYPES, &alloc, len, wire);
    assert_non_null(unpacked);
    assert_same_message(&m->base, unpacked);
    /* a no-op: the memory is the arena's (LSan would report it otherwise) */
    protobuf_c_message_free_unpacked(unpacked, &alloc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fixed_message_exact_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repeated_every_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_maps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_int64_extremes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_int32_ranges_and_forms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_floats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bytes_base64, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strings_and_bools, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enums, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested_and_recursive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oneof, setup, teardown),
        cmocka_unit_test_setup_teardown(test_presence_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proto2_presence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_emit_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_emit_nulls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_both_spellings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_depth_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_json_and_to_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_appends_and_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arena_allocator_unpack, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
