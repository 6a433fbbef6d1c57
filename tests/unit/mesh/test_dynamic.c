/* Dynamic protobuf-c descriptors built from FileDescriptorProtos (rpc_dynamic): they must match
 * protoc-c's generated ones field for field (offsets, quantifiers, flags, defaults, indices),
 * round-trip messages both ways on the wire and in JSON, and refuse bad descriptors cleanly. */
#include "edge/edge_pbjson.h"
#include "mesh/rpc_dynamic.h"

#include "edgecoder/test/codec_test.pb-c.h"
#include "edgecoder/test/codec_test_proto2.pb-c.h"
#include "edgecoder/v1/demo.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

extern const unsigned char ec_descriptor_set[];
extern const size_t ec_descriptor_set_len;

static struct rpc_dyn_pool *embedded_pool(void)
{
    struct rpc_dyn_pool *pool = rpc_dyn_pool_new();
    struct ec_err err = { 0 };
    if (rpc_dyn_pool_add_set(pool, ec_descriptor_set, ec_descriptor_set_len, &err) != EC_OK ||
        rpc_dyn_pool_build(pool, &err) != EC_OK)
        fail_msg("embedded set: %s", err.msg);
    return pool;
}

/* codec_test.proto and codec_test_proto2.proto are not embedded: protoc makes their set. */
static struct rpc_dyn_pool *codec_pool(void)
{
    const char *src = getenv("EC_SOURCE_DIR") ? getenv("EC_SOURCE_DIR") : ".";
    char dir[] = "/tmp/ec-dyn-XXXXXX";
    if (mkdtemp(dir) == NULL)
        fail_msg("mkdtemp failed");
    char path[128], cmd[1024];
    snprintf(path, sizeof(path), "%s/set.pb", dir);
    snprintf(cmd, sizeof(cmd),
             "protoc -I%s/tests/proto --include_imports --descriptor_set_out=%s "
             "edgecoder/test/codec_test.proto edgecoder/test/codec_test_proto2.proto",
             src, path);
    if (system(cmd) != 0)
        fail_msg("protoc failed: %s", cmd);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static uint8_t buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    unlink(path);
    rmdir(dir);
    struct rpc_dyn_pool *pool = rpc_dyn_pool_new();
    struct ec_err err = { 0 };
    if (rpc_dyn_pool_add_set(pool, buf, n, &err) != EC_OK ||
        rpc_dyn_pool_build(pool, &err) != EC_OK)
        fail_msg("codec set: %s", err.msg);
    return pool;
}

/* --- generated vs dynamic, field by field ----------------------------------------------------- */

static size_t default_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BYTES:
        return 0; /* compared by content */
    default:
        return 4;
    }
}

static void assert_same_enum(const ProtobufCEnumDescriptor *g, const ProtobufCEnumDescriptor *d)
{
    assert_non_null(d);
    assert_int_equal(d->magic, PROTOBUF_C__ENUM_DESCRIPTOR_MAGIC);
    assert_string_equal(g->name, d->name);
    assert_string_equal(g->short_name, d->short_name);
    assert_string_equal(g->package_name, d->package_name);
    assert_int_equal(g->n_values, d->n_values);
    for (unsigned i = 0; i < g->n_values; i++) {
        assert_string_equal(g->values[i].name, d->values[i].name);
        assert_int_equal(g->values[i].value, d->values[i].value);
    }
    assert_int_equal(g->n_value_names, d->n_value_names);
    for (unsigned i = 0; i < g->n_value_names; i++) {
        assert_string_equal(g->values_by_name[i].name, d->values_by_name[i].name);
        assert_int_equal(g->values_by_name[i].index, d->values_by_name[i].index);
    }
    assert_int_equal(g->n_value_ranges, d->n_value_ranges);
    for (unsigned i = 0; i <= g->n_value_ranges; i++) {
        assert_int_equal(g->value_ranges[i].start_value, d->value_ranges[i].start_value);
        assert_int_equal(g->value_ranges[i].orig_index, d->value_ranges[i].orig_index);
    }
}

static void assert_same_field(const ProtobufCFieldDescriptor *g, const ProtobufCFieldDescriptor *d)
{
    assert_string_equal(g->name, d->name);
    assert_int_equal(g->id, d->id);
    assert_int_equal(g->label, d->label);
    assert_int_equal(g->type, d->type);
    assert_int_equal(g->offset, d->offset);
    assert_int_equal(g->quantifier_offset, d->quantifier_offset);
    assert_int_equal(g->flags, d->flags);
    if (g->type == PROTOBUF_C_TYPE_MESSAGE)
        assert_string_equal(((const ProtobufCMessageDescriptor *)g->descriptor)->name,
                            ((const ProtobufCMessageDescriptor *)d->descriptor)->name);
    if (g->type == PROTOBUF_C_TYPE_ENUM)
        assert_same_enum(g->descriptor, d->descriptor);
    if ((g->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0) {
        /* protobuf-c's generic init would write a member's default over the union */
        assert_null(d->default_value);
        return;
    }
    if ((g->default_value == NULL) != (d->default_value == NULL))
        fail_msg("field %s: default %p vs %p", g->name, g->default_value, d->default_value);
    if (g->default_value == NULL) {
        assert_null(d->default_value);
    } else if (g->type == PROTOBUF_C_TYPE_STRING) {
        assert_non_null(d->default_value);
        assert_string_equal(g->default_value, d->default_value);
    } else if (g->type == PROTOBUF_C_TYPE_BYTES) {
        const ProtobufCBinaryData *gb = g->default_value, *db = d->default_value;
        assert_int_equal(gb->len, db->len);
        assert_memory_equal(gb->data, db->data, gb->len);
    } else {
        assert_non_null(d->default_value);
        assert_memory_equal(g->default_value, d->default_value, default_size(g->type));
    }
}

static void assert_same_message(const ProtobufCMessageDescriptor *g,
                                const ProtobufCMessageDescriptor *d)
{
    assert_non_null(d);
    assert_int_equal(d->magic, PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC);
    assert_string_equal(g->name, d->name);
    assert_string_equal(g->short_name, d->short_name);
    assert_string_equal(g->c_name, d->c_name);
    assert_string_equal(g->package_name, d->package_name);
    assert_int_equal(g->sizeof_message, d->sizeof_message);
    assert_int_equal(g->n_fields, d->n_fields);
    assert_null(d->message_init);
    for (unsigned i = 0; i < g->n_fields; i++) {
        assert_same_field(&g->fields[i], &d->fields[i]);
        assert_int_equal(g->fields_sorted_by_name[i], d->fields_sorted_by_name[i]);
    }
    assert_int_equal(g->n_field_ranges, d->n_field_ranges);
    for (unsigned i = 0; i <= g->n_field_ranges && g->n_fields > 0; i++) {
        assert_int_equal(g->field_ranges[i].start_value, d->field_ranges[i].start_value);
        assert_int_equal(g->field_ranges[i].orig_index, d->field_ranges[i].orig_index);
    }
}

static const struct rpc_dyn_message *dyn(const struct rpc_dyn_pool *pool, const char *name)
{
    const struct rpc_dyn_message *m = rpc_dyn_pool_message(pool, name);
    if (m == NULL)
        fail_msg("no dynamic message %s", name);
    return m;
}

static void test_embedded_matches_generated(void **state)
{
    static const ProtobufCMessageDescriptor *const generated[] = {
        &edgecoder__v1__error_reply__descriptor,
        &edgecoder__v1__health_reply__descriptor,
        &edgecoder__v1__echo_request__descriptor,
        &edgecoder__v1__echo_reply__descriptor,
        &edgecoder__v1__count_request__descriptor,
        &edgecoder__v1__count_reply__descriptor,
        &grpc__health__v1__health_check_request__descriptor,
        &grpc__health__v1__health_check_response__descriptor,
        &grpc__reflection__v1__server_reflection_request__descriptor,
        &grpc__reflection__v1__server_reflection_response__descriptor,
        &grpc__reflection__v1__file_descriptor_response__descriptor,
        &grpc__reflection__v1__list_service_response__descriptor,
        &grpc__reflection__v1__error_response__descriptor,
    };
    struct rpc_dyn_pool *pool = embedded_pool();
    for (size_t i = 0; i < sizeof(generated) / sizeof(generated[0]); i++)
        assert_same_message(generated[i], dyn(pool, generated[i]->name)->desc);
    /* A leading dot is accepted; services, methods and their types resolve. */
    assert_non_null(rpc_dyn_pool_message(pool, ".edgecoder.v1.EchoReply"));
    const struct rpc_dyn_service *svc = rpc_dyn_pool_service(pool, "edgecoder.v1.Demo");
    assert_non_null(svc);
    const struct rpc_dyn_method *count = rpc_dyn_service_method(svc, "Count");
    assert_non_null(count);
    assert_true(count->server_streaming);
    assert_false(count->client_streaming);
    assert_string_equal(count->input->full_name, "edgecoder.v1.CountRequest");
    assert_ptr_equal(count->output, dyn(pool, "edgecoder.v1.CountReply"));
    assert_null(rpc_dyn_service_method(svc, "Nope"));
    assert_null(rpc_dyn_pool_service(pool, "edgecoder.v1.EchoRequest"));
    assert_null(rpc_dyn_pool_message(pool, "edgecoder.v1.Demo"));
    assert_non_null(rpc_dyn_pool_enum(pool, "grpc.health.v1.HealthCheckResponse.ServingStatus"));
    assert_true(rpc_dyn_pool_has_file(pool, "edgecoder/v1/demo.proto"));
    assert_null(rpc_dyn_pool_missing_dep(pool));
    rpc_dyn_pool_free(pool);
}

static void test_codec_protos_match_generated(void **state)
{
    static const ProtobufCMessageDescriptor *const generated[] = {
        &edgecoder__test__inner__descriptor,
        &edgecoder__test__tree__descriptor,
        &edgecoder__test__all_types__descriptor,
        &edgecoder__test__all_types__labels_entry__descriptor,
        &edgecoder__test__all_types__counters_entry__descriptor,
        &edgecoder__test__all_types__by_id_entry__descriptor,
        &edgecoder__test__all_types__flags_entry__descriptor,
        &edgecoder__test__all_types__blobs_entry__descriptor,
        &edgecoder__test__legacy__descriptor,
        &edgecoder__test__legacy__tags_entry__descriptor,
    };
    struct rpc_dyn_pool *pool = codec_pool();
    for (size_t i = 0; i < sizeof(generated) / sizeof(generated[0]); i++)
        assert_same_message(generated[i], dyn(pool, generated[i]->name)->desc);
    assert_same_enum(&edgecoder__test__color__descriptor,
                     rpc_dyn_pool_enum(pool, "edgecoder.test.Color")->desc);
    assert_same_enum(&edgecoder__test__level__descriptor,
                     rpc_dyn_pool_enum(pool, "edgecoder.test.Level")->desc);
    assert_true(dyn(pool, "edgecoder.test.AllTypes.LabelsEntry")->map_entry);
    rpc_dyn_pool_free(pool);
}

/* --- round trips ------------------------------------------------------------------------------ */

static char *to_json(const ProtobufCMessage *msg, const struct edge_pbjson_opts *opts)
{
    struct ec_buf out;
    struct ec_err err = { 0 };
    ec_buf_init(&out, 0);
    if (edge_pbjson_encode(msg, opts, &out, &err) != EC_OK)
        fail_msg("encode %s: %s", msg->descriptor->name, err.msg);
    return out.data; /* malloc'd: the caller frees */
}

static uint8_t *pack(const ProtobufCMessage *msg, size_t *len, struct ec_arena *a)
{
    *len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = ec_arena_alloc(a, *len + 1);
    assert_int_equal(protobuf_c_message_pack(msg, buf), *len);
    return buf;
}

/* JSON -> generated -> wire -> dynamic -> wire, and JSON -> dynamic -> wire -> generated: the
 * same bytes and the same JSON every way. */
static void roundtrip(const ProtobufCMessageDescriptor *gen,
                      const ProtobufCMessageDescriptor *dyn_desc, const char *json)
{
    static const struct edge_pbjson_opts variants[] = { { 0 }, { .emit_defaults = true } };
    struct ec_arena a;
    struct ec_err err = { 0 };
    ProtobufCAllocator alloc;
    ec_arena_init(&a);
    edge_pbjson_allocator_init(&alloc, &a);
    struct edge_pbjson_opts strict = { .reject_unknown = true };
    ProtobufCMessage *g1 = NULL, *d2 = NULL;
    if (edge_pbjson_decode(gen, json, strlen(json), &strict, &a, &g1, &err) != EC_OK)
        fail_msg("generated decode: %s", err.msg);
    if (edge_pbjson_decode(dyn_desc, json, strlen(json), &strict, &a, &d2, &err) != EC_OK)
        fail_msg("dynamic decode: %s", err.msg);
    size_t len1, len2, len3, len4;
    uint8_t *w1 = pack(g1, &len1, &a);
    uint8_t *w2 = pack(d2, &len2, &a);
    assert_int_equal(len1, len2);
    assert_memory_equal(w1, w2, len1);
    ProtobufCMessage *d1 = protobuf_c_message_unpack(dyn_desc, &alloc, len1, w1);
    ProtobufCMessage *g2 = protobuf_c_message_unpack(gen, &alloc, len2, w2);
    assert_non_null(d1);
    assert_non_null(g2);
    uint8_t *w3 = pack(d1, &len3, &a);
    uint8_t *w4 = pack(g2, &len4, &a);
    assert_int_equal(len3, len1);
    assert_memory_equal(w3, w1, len1);
    assert_int_equal(len4, len1);
    assert_memory_equal(w4, w1, len1);
    for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
        char *jg1 = to_json(g1, &variants[v]), *jd1 = to_json(d1, &variants[v]);
        char *jd2 = to_json(d2, &variants[v]), *jg2 = to_json(g2, &variants[v]);
        assert_string_equal(jg1, jd1);
        assert_string_equal(jg1, jd2);
        assert_string_equal(jg1, jg2);
        free(jg1);
        free(jd1);
        free(jd2);
        free(jg2);
    }
    ec_arena_release(&a);
}

static const char all_types_json[] =
    "{\"fInt32\":-42,\"fSint32\":-7,\"fSfixed32\":123456,\"fUint32\":4294967295,\"fFixed32\":7,"
    "\"fInt64\":-9223372036854775808,\"fSint64\":-1,\"fSfixed64\":9223372036854775807,"
    "\"fUint64\":\"18446744073709551615\",\"fFixed64\":9007199254740993,\"fFloat\":0.1,"
    "\"fDouble\":0.1,\"fBool\":true,\"fString\":\"h\\u00e9llo\",\"fBytes\":\"AP8Q\","
    "\"fEnum\":\"COLOR_INFRARED\",\"fInner\":{\"count\":3,\"label\":\"x\"},"
    "\"recursive\":{\"agentId\":\"r\",\"children\":[{\"fInt32\":1},{}]},\"agentId\":\"a-1\","
    "\"rInt32\":[1,-2,3],\"rSint32\":[-1,5],\"rSfixed32\":[5],\"rUint32\":[7,8],\"rFixed32\":[8],"
    "\"rInt64\":[-5],\"rSint64\":[-6],\"rSfixed64\":[9],\"rUint64\":[\"18446744073709551615\"],"
    "\"rFixed64\":[1],\"rFloat\":[1.5,-2.25],\"rDouble\":[0.1,1e300],\"rBool\":[true,false],"
    "\"rString\":[\"a\",\"\",\"b\"],\"rBytes\":[\"AAE=\",\"\"],"
    "\"rEnum\":[\"COLOR_RED\",\"COLOR_INFRARED\"],\"rInner\":[{\"count\":1},{\"label\":\"y\"}],"
    "\"choiceInner\":{\"count\":9},\"optCount\":0,\"optName\":\"\",\"optRatio\":-2.5,"
    "\"labels\":{\"b\":\"2\",\"a\":\"1\"},\"counters\":{\"x\":\"-9223372036854775808\"},"
    "\"byId\":{\"-7\":{\"count\":1},\"0\":{}},\"flags\":{\"true\":\"COLOR_RED\",\"false\":0},"
    "\"blobs\":{\"18446744073709551615\":\"AAE=\"}}";

static void test_roundtrip_codec_types(void **state)
{
    struct rpc_dyn_pool *pool = codec_pool();
    const ProtobufCMessageDescriptor *all = dyn(pool, "edgecoder.test.AllTypes")->desc;
    const ProtobufCMessageDescriptor *legacy = dyn(pool, "edgecoder.test.Legacy")->desc;
    roundtrip(&edgecoder__test__all_types__descriptor, all, all_types_json);
    roundtrip(&edgecoder__test__all_types__descriptor, all, "{}");
    roundtrip(&edgecoder__test__all_types__descriptor, all, "{\"choiceText\":\"t\"}");
    roundtrip(&edgecoder__test__all_types__descriptor, all, "{\"choiceColor\":\"COLOR_GREEN\"}");
    roundtrip(&edgecoder__test__all_types__descriptor, all, "{\"choiceBytes\":\"AQID\"}");
    roundtrip(&edgecoder__test__tree__descriptor, dyn(pool, "edgecoder.test.Tree")->desc,
              "{\"name\":\"root\",\"children\":[{\"name\":\"a\",\"children\":[{}]},{}]}");
    /* proto2: has_ flags, a required field, and the defaults (3, true) on absent fields. */
    roundtrip(&edgecoder__test__legacy__descriptor, legacy,
              "{\"id\":\"a\",\"retries\":0,\"enabled\":false,\"note\":\"\",\"blob\":\"\","
              "\"level\":\"LEVEL_HIGH\",\"next\":{\"id\":\"b\"},\"values\":[\"1\",-2],"
              "\"tags\":{\"k\":5}}");
    roundtrip(&edgecoder__test__legacy__descriptor, legacy, "{\"id\":\"only\"}");

    /* The defaults apply on unpack through the dynamic descriptor, as with generated code. */
    struct ec_arena a;
    ProtobufCAllocator alloc;
    ec_arena_init(&a);
    edge_pbjson_allocator_init(&alloc, &a);
    static const uint8_t id_only[] = { 0x0a, 0x01, 'x' };
    const ProtobufCMessage *m = protobuf_c_message_unpack(legacy, &alloc, sizeof(id_only), id_only);
    assert_non_null(m);
    const ProtobufCFieldDescriptor *retries = protobuf_c_message_descriptor_get_field(legacy, 2);
    const ProtobufCFieldDescriptor *enabled =
        protobuf_c_message_descriptor_get_field_by_name(legacy, "enabled");
    assert_int_equal(*(const int32_t *)((const char *)m + retries->offset), 3);
    assert_int_equal(*(const protobuf_c_boolean *)((const char *)m + enabled->offset), 1);
    /* A missing required field fails the unpack, as with generated code. */
    assert_null(protobuf_c_message_unpack(legacy, &alloc, 0, id_only));
    ec_arena_release(&a);
    rpc_dyn_pool_free(pool);
}

static void test_roundtrip_embedded_types(void **state)
{
    struct rpc_dyn_pool *pool = embedded_pool();
    roundtrip(&edgecoder__v1__echo_request__descriptor, dyn(pool, "edgecoder.v1.EchoRequest")->desc,
              "{\"text\":\"hi\",\"delayMs\":0,\"fail\":{\"error\":\"x\",\"reason\":\"r\"}}");
    roundtrip(
        &edgecoder__v1__echo_reply__descriptor, dyn(pool, "edgecoder.v1.EchoReply")->desc,
        "{\"text\":\"t\",\"peerSpiffeId\":\"spiffe://edgecoder/coordinator/c\","
        "\"peerRole\":\"coordinator\",\"peerId\":\"c\",\"requestId\":\"\",\"deadlineMs\":99}");
    roundtrip(&grpc__health__v1__health_check_response__descriptor,
              dyn(pool, "grpc.health.v1.HealthCheckResponse")->desc, "{\"status\":\"SERVING\"}");
    roundtrip(&grpc__reflection__v1__server_reflection_response__descriptor,
              dyn(pool, "grpc.reflection.v1.ServerReflectionResponse")->desc,
              "{\"validHost\":\"h\",\"originalRequest\":{\"listServices\":\"\"},"
              "\"listServicesResponse\":{\"service\":[{\"name\":\"a.B\"},{\"name\":\"c.D\"}]}}");
    rpc_dyn_pool_free(pool);
}

/* --- hand-made descriptors -------------------------------------------------------------------- */

struct wbuf {
    uint8_t b[2048];
    size_t n;
};

static void w_varint(struct wbuf *w, uint64_t v)
{
    do {
        assert_true(w->n < sizeof(w->b));
        w->b[w->n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v != 0);
}

static void w_int(struct wbuf *w, uint32_t number, uint64_t v)
{
    w_varint(w, (uint64_t)number << 3);
    w_varint(w, v);
}

static void w_bytes(struct wbuf *w, uint32_t number, const void *p, size_t len)
{
    w_varint(w, (uint64_t)number << 3 | 2);
    w_varint(w, len);
    assert_true(w->n + len <= sizeof(w->b));
    memcpy(w->b + w->n, p, len);
    w->n += len;
}

static void w_str(struct wbuf *w, uint32_t number, const char *s)
{
    w_bytes(w, number, s, strlen(s));
}

static void w_msg(struct wbuf *w, uint32_t number, const struct wbuf *sub)
{
    w_bytes(w, number, sub->b, sub->n);
}

/* A FieldDescriptorProto appended to a DescriptorProto. */
static void w_field(struct wbuf *msg, const char *name, int number, int label, int type,
                    const char *type_name, const char *dflt)
{
    struct wbuf f = { .n = 0 };
    w_str(&f, 1, name);
    w_int(&f, 3, (uint64_t)(uint32_t)number);
    w_int(&f, 4, (uint64_t)label);
    if (type != 0)
        w_int(&f, 5, (uint64_t)type);
    if (type_name != NULL)
        w_str(&f, 6, type_name);
    if (dflt != NULL)
        w_str(&f, 7, dflt);
    w_msg(msg, 2, &f);
}

static struct wbuf file_with(const char *name, const char *syntax, const struct wbuf *msg)
{
    struct wbuf file = { .n = 0 };
    w_str(&file, 1, name);
    w_str(&file, 2, "t.p");
    if (syntax != NULL)
        w_str(&file, 12, syntax);
    if (msg != NULL)
        w_msg(&file, 4, msg);
    return file;
}

/* add + build of one file: the status, with err filled. */
static enum ec_status try_file(const struct wbuf *file, struct ec_err *err)
{
    struct rpc_dyn_pool *pool = rpc_dyn_pool_new();
    enum ec_status st = rpc_dyn_pool_add_file(pool, file->b, file->n, err);
    if (st == EC_OK)
        st = rpc_dyn_pool_build(pool, err);
    rpc_dyn_pool_free(pool);
    return st;
}

static void expect_refused(const struct wbuf *file, const char *needle)
{
    struct ec_err err = { 0 };
    assert_int_equal(try_file(file, &err), EC_EINVAL);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("\"%s\" does not mention \"%s\"", err.msg, needle);
}

static void test_refuses_bad_descriptors(void **state)
{
    struct wbuf m = { .n = 0 }, file;
    w_str(&m, 1, "M");
    w_field(&m, "a", 1, 1, 11, ".t.p.Nope", NULL);
    file = file_with("a.proto", "proto3", &m);
    expect_refused(&file, "type \".t.p.Nope\" of field t.p.M.a is not known");

    m.n = 0;
    w_str(&m, 1, "M");
    w_field(&m, "a", 1, 1, 5, NULL, NULL);
    w_field(&m, "b", 1, 1, 5, NULL, NULL);
    file = file_with("a.proto", "proto3", &m);
    expect_refused(&file, "t.p.M uses field number 1 twice");

    m.n = 0;
    w_str(&m, 1, "M");
    w_field(&m, "a", 1, 1, 5, NULL, NULL);
    w_field(&m, "a", 2, 1, 5, NULL, NULL);
    file = file_with("a.proto", "proto3", &m);
    expect_refused(&file, "two fields named a");

    m.n = 0;
    w_str(&m, 1, "M");
    w_field(&m, "g", 1, 1, 10, ".t.p.M", NULL);
    file = file_with("a.proto", "proto2", &m);
    expect_refused(&file, "is a group");

    m.n = 0;
    w_str(&m, 1, "M");
    w_field(&m, "n", 1, 1, 5, NULL, "twelve");
    file = file_with("a.proto", "proto2", &m);
    expect_refused(&file, "bad default \"twelve\"");

    m.n = 0;
    w_str(&m, 1, "M");
    w_field(&m, "n", 0, 1, 5, NULL, NULL);
    file = file_with("a.proto", "proto3", &m);
    expect_refused(&file, "no valid number");

    m.n = 0;
    w_str(&m, 1, "bad name");
    file = file_with("a.proto", "proto3", &m);
    expect_refused(&file, "not a valid name");

    file = file_with("a.proto", "editions", NULL);
    expect_refused(&file, "syntax \"editions\" is not supported");

    /* A oneof index past the declared oneofs. */
    m.n = 0;
    w_str(&m, 1, "M");
    struct wbuf f = { .n = 0 };
    w_str(&f, 1, "x");
    w_int(&f, 3, 1);
    w_int(&f, 5, 5);
    w_int(&f, 9, 3);
    w_msg(&m, 2, &f);
    file = file_with("a.proto", "proto3", &m);
    expect_refused(&file, "names oneof 3 of 0");

    /* Message types nested past the limit. */
    struct wbuf nest = { .n = 0 };
    w_str(&nest, 1, "N");
    for (int i = 0; i < 40; i++) {
        struct wbuf outer = { .n = 0 };
        w_str(&outer, 1, "N");
        w_msg(&outer, 3, &nest);
        nest = outer;
    }
    file = file_with("a.proto", "proto3", &nest);
    expect_refused(&file, "nested deeper");

    /* Truncated: a length past the end. */
    file = file_with("a.proto", "proto3", NULL);
    file.b[1] = 60;
    expect_refused(&file, "truncated or invalid");
}

static void test_resolution_presence_and_defaults(void **state)
{
    /* package t.p; message Outer { message In { Color c = 1 [default=B]; } enum Color {A=0;B=1;
     * C=1 (alias)} In in = 1 (relative name); optional int32 o = 2 (proto3 optional); } */
    struct wbuf in = { .n = 0 }, en = { .n = 0 }, val = { .n = 0 }, outer = { .n = 0 };
    w_str(&in, 1, "In");
    w_field(&in, "c", 1, 1, 14, "Color", "B");
    w_field(&in, "raw", 2, 1, 12, NULL, "a\\001\\x7f\\n");
    w_field(&in, "big", 3, 1, 4, NULL, "0xffffffffffffffff");
    w_field(&in, "neg", 4, 1, 18, NULL, "-9223372036854775808");
    w_field(&in, "inf", 5, 1, 1, NULL, "-inf");
    w_str(&en, 1, "Color");
    const char *names[] = { "A", "B", "C" };
    const int numbers[] = { 0, 1, 1 };
    for (int i = 0; i < 3; i++) {
        val.n = 0;
        w_str(&val, 1, names[i]);
        w_int(&val, 2, (uint64_t)numbers[i]);
        w_msg(&en, 2, &val);
    }
    w_str(&outer, 1, "Outer");
    w_msg(&outer, 3, &in);
    w_msg(&outer, 4, &en);
    w_field(&outer, "in", 1, 1, 0, "Outer.In", NULL); /* the type comes from the look-up */
    struct wbuf opt = { .n = 0 }, oneof = { .n = 0 };
    w_str(&opt, 1, "o");
    w_int(&opt, 3, 2);
    w_int(&opt, 4, 1);
    w_int(&opt, 5, 5);
    w_int(&opt, 9, 0);
    w_int(&opt, 17, 1);
    w_msg(&outer, 2, &opt);
    w_str(&oneof, 1, "_o");
    w_msg(&outer, 8, &oneof);
    struct wbuf file = file_with("p2.proto", "proto2", &outer);

    struct rpc_dyn_pool *pool = rpc_dyn_pool_new();
    struct ec_err err = { 0 };
    assert_int_equal(rpc_dyn_pool_add_file(pool, file.b, file.n, &err), EC_OK);
    assert_int_equal(rpc_dyn_pool_build(pool, &err), EC_OK);
    const struct rpc_dyn_message *o = dyn(pool, "t.p.Outer");
    assert_int_equal(o->fields[0].type, RPC_DYN_MESSAGE);
    assert_ptr_equal(o->fields[0].message_type, dyn(pool, "t.p.Outer.In"));
    const ProtobufCFieldDescriptor *of = &o->desc->fields[1];
    assert_int_equal(of->label, PROTOBUF_C_LABEL_OPTIONAL); /* a has_ flag, no oneof union */
    assert_int_equal(of->flags & PROTOBUF_C_FIELD_FLAG_ONEOF, 0);
    assert_int_not_equal(of->quantifier_offset, 0);
    const ProtobufCEnumDescriptor *color = rpc_dyn_pool_enum(pool, "t.p.Outer.Color")->desc;
    assert_int_equal(color->n_values, 2); /* distinct numbers */
    assert_int_equal(color->n_value_names, 3);
    assert_int_equal(protobuf_c_enum_descriptor_get_value_by_name(color, "C")->value, 1);
    assert_string_equal(protobuf_c_enum_descriptor_get_value(color, 1)->name, "B");

    const ProtobufCMessageDescriptor *ind = dyn(pool, "t.p.Outer.In")->desc;
    assert_int_equal(*(const int *)ind->fields[0].default_value, 1);
    const ProtobufCBinaryData *raw = ind->fields[1].default_value;
    assert_int_equal(raw->len, 4);
    assert_memory_equal(raw->data, "a\001\177\n", 4);
    assert_int_equal(*(const uint64_t *)ind->fields[2].default_value, UINT64_MAX);
    assert_int_equal(*(const int64_t *)ind->fields[3].default_value, INT64_MIN);
    assert_true(*(const double *)ind->fields[4].default_value < -1e308);

    /* JSON through the dynamic descriptors: defaults on decode, presence kept. */
    struct ec_arena a;
    ec_arena_init(&a);
    ProtobufCMessage *msg = NULL;
    const char *json = "{\"in\":{},\"o\":0}";
    assert_int_equal(edge_pbjson_decode(o->desc, json, strlen(json), NULL, &a, &msg, &err), EC_OK);
    char *text = to_json(msg, NULL);
    assert_string_equal(text, "{\"in\":{},\"o\":0}");
    free(text);
    ec_arena_release(&a);

    /* A second file defining the same name is refused; the first stays usable. */
    struct wbuf again = file_with("p3.proto", "proto2", &outer);
    assert_int_equal(rpc_dyn_pool_add_file(pool, again.b, again.n, &err), EC_OK);
    assert_int_equal(rpc_dyn_pool_build(pool, &err), EC_EINVAL);
    assert_non_null(strstr(err.msg, "t.p.Outer is defined twice"));
    assert_false(rpc_dyn_pool_has_file(pool, "p3.proto"));
    assert_non_null(rpc_dyn_pool_message(pool, "t.p.Outer"));
    /* The same file name again is skipped. */
    assert_int_equal(rpc_dyn_pool_add_file(pool, file.b, file.n, &err), EC_OK);
    assert_int_equal(rpc_dyn_pool_build(pool, &err), EC_OK);
    rpc_dyn_pool_free(pool);
}

static void test_empty_message_unpacks(void **state)
{
    struct wbuf m = { .n = 0 };
    w_str(&m, 1, "Empty");
    struct wbuf file = file_with("e.proto", "proto3", &m);
    struct rpc_dyn_pool *pool = rpc_dyn_pool_new();
    struct ec_err err = { 0 };
    assert_int_equal(rpc_dyn_pool_add_file(pool, file.b, file.n, &err), EC_OK);
    assert_int_equal(rpc_dyn_pool_build(pool, &err), EC_OK);
    const ProtobufCMessageDescriptor *d = dyn(pool, "t.p.Empty")->desc;
    assert_null(d->fields);
    struct ec_arena a;
    ProtobufCAllocator alloc;
    ec_arena_init(&a);
    edge_pbjson_allocator_init(&alloc, &a);
    static const uint8_t unknown[] = { 0x08, 0x01, 0x12, 0x00 };
    ProtobufCMessage *msg = protobuf_c_message_unpack(d, &alloc, sizeof(unknown), unknown);
    assert_non_null(msg);
    assert_int_equal(msg->n_unknown_fields, 2);
    char *text = to_json(msg, NULL);
    assert_string_equal(text, "{}");
    free(text);
    ec_arena_release(&a);
    rpc_dyn_pool_free(pool);
}

/* Every truncation and a corrupted byte at every offset of each embedded file: parse and build
 * either succeed or fail cleanly (ASan watches the reads). */
static void test_mutations_fail_cleanly(void **state)
{
    size_t pos = 0;
    int files = 0;
    for (;;) {
        /* FileDescriptorSet.file entries: tag 0x0a, a varint length, the bytes. */
        if (pos >= ec_descriptor_set_len)
            break;
        assert_int_equal(ec_descriptor_set[pos], 0x0a);
        size_t len = 0, shift = 0, p = pos + 1;
        while (ec_descriptor_set[p] & 0x80)
            len |= (size_t)(ec_descriptor_set[p++] & 0x7f) << shift, shift += 7;
        len |= (size_t)ec_descriptor_set[p++] << shift;
        const uint8_t *bytes = ec_descriptor_set + p;
        uint8_t *copy = malloc(len);
        for (size_t cut = 0; cut < len; cut++) {
            memcpy(copy, bytes, cut); /* exactly cut bytes, so ASan sees any over-read */
            struct rpc_dyn_pool *pool = rpc_dyn_pool_new();
            struct ec_err err = { 0 };
            if (rpc_dyn_pool_add_file(pool, copy, cut, &err) == EC_OK)
                (void)rpc_dyn_pool_build(pool, &err);
            rpc_dyn_pool_free(pool);
        }
        for (size_t at = 0; at < len; at++) {
            memcpy(copy, bytes, len);
            copy[at] ^= (uint8_t)(0x5a + at);
            struct rpc_dyn_pool *pool = rpc_dyn_pool_new();
            struct ec_err err = { 0 };
            if (rpc_dyn_pool_add_file(pool, copy, len, &err) == EC_OK)
                (void)rpc_dyn_pool_build(pool, &err);
            rpc_dyn_pool_free(pool);
        }
        free(copy);
        pos = p + len;
        files++;
    }
    assert_true(files >= 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedded_matches_generated),
        cmocka_unit_test(test_codec_protos_match_generated),
        cmocka_unit_test(test_roundtrip_codec_types),
        cmocka_unit_test(test_roundtrip_embedded_types),
        cmocka_unit_test(test_refuses_bad_descriptors),
        cmocka_unit_test(test_resolution_presence_and_defaults),
        cmocka_unit_test(test_empty_message_unpacks),
        cmocka_unit_test(test_mutations_fail_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
