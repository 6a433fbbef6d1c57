/* The reflection index over the embedded FileDescriptorSet: files, symbols, dependencies, and a
 * walker that stays inside the bytes whatever they are. */
#include "mesh/rpc_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

extern const unsigned char ec_descriptor_set[];
extern const size_t ec_descriptor_set_len;

static const char *file_of(const struct rpc__reflect_index *idx, const char *symbol,
                           enum rpc__symbol_kind *kind)
{
    int f = rpc__reflect_find_symbol(idx, symbol, kind);
    return f < 0 ? NULL : idx->files[f].name;
}

static void test_embedded_symbols(void **state)
{
    const struct rpc__reflect_index *idx = rpc__reflect_index_embedded();
    enum rpc__symbol_kind kind;
    assert_string_equal(file_of(idx, "edgecoder.v1.Demo", &kind), "edgecoder/v1/demo.proto");
    assert_int_equal(kind, RPC_SYM_SERVICE);
    assert_string_equal(file_of(idx, "edgecoder.v1.Demo.Echo", &kind), "edgecoder/v1/demo.proto");
    assert_int_equal(kind, RPC_SYM_METHOD);
    assert_string_equal(file_of(idx, "edgecoder.v1.Demo.Count", &kind), "edgecoder/v1/demo.proto");
    assert_string_equal(file_of(idx, "edgecoder.v1.EchoRequest", &kind), "edgecoder/v1/demo.proto");
    assert_int_equal(kind, RPC_SYM_MESSAGE);
    assert_string_equal(file_of(idx, ".edgecoder.v1.CountReply", &kind), "edgecoder/v1/demo.proto");
    assert_string_equal(file_of(idx, "edgecoder.v1.EchoRequest.delay_ms", &kind),
                        "edgecoder/v1/demo.proto");
    assert_int_equal(kind, RPC_SYM_FIELD);
    assert_string_equal(file_of(idx, "edgecoder.v1.ErrorReply", &kind),
                        "edgecoder/v1/common.proto");
    /* Nested enums and their values (C++ scoping: values are siblings of the enum). */
    assert_string_equal(file_of(idx, "grpc.health.v1.HealthCheckResponse.ServingStatus", &kind),
                        "grpc/health/v1/health.proto");
    assert_int_equal(kind, RPC_SYM_ENUM);
    assert_string_equal(file_of(idx, "grpc.health.v1.HealthCheckResponse.NOT_SERVING", &kind),
                        "grpc/health/v1/health.proto");
    assert_int_equal(kind, RPC_SYM_ENUM_VALUE);
    assert_string_equal(file_of(idx, "grpc.health.v1.Health.Watch", NULL),
                        "grpc/health/v1/health.proto");
    assert_string_equal(file_of(idx, "grpc.reflection.v1.ServerReflection", NULL),
                        "grpc/reflection/v1/reflection.proto");
    assert_string_equal(file_of(idx, "grpc.reflection.v1alpha.ServerReflection", NULL),
                        "grpc/reflection/v1alpha/reflection.proto");

    assert_null(file_of(idx, "edgecoder.v1.Nope", NULL));
    assert_null(file_of(idx, "edgecoder.v1.Demo.Nope", NULL));
    assert_null(file_of(idx, "edgecoder.v1", NULL));
    assert_null(file_of(idx, "", NULL));
    /* Sorted, so binary search is sound. */
    for (size_t i = 1; i < idx->n_symbols; i++)
        assert_true(strcmp(idx->symbols[i - 1].name, idx->symbols[i].name) <= 0);
}

static void test_embedded_files_and_deps(void **state)
{
    const struct rpc__reflect_index *idx = rpc__reflect_index_embedded();
    int demo = rpc__reflect_find_file(idx, "edgecoder/v1/demo.proto");
    int common = rpc__reflect_find_file(idx, "edgecoder/v1/common.proto");
    assert_true(demo >= 0 && common >= 0);
    assert_int_equal(rpc__reflect_find_file(idx, "edgecoder/v1/nope.proto"), -1);
    int *out = calloc(idx->n_files, sizeof(int));
    size_t n = rpc__reflect_closure(idx, demo, out);
    assert_true(n >= 2);
    assert_int_equal(out[0], demo); /* the file first, then what it needs */
    bool has_common = false;
    for (size_t i = 1; i < n; i++)
        has_common |= out[i] == common;
    assert_true(has_common);
    assert_int_equal(rpc__reflect_closure(idx, common, out), 1);
    assert_int_equal(rpc__reflect_closure(idx, -1, out), 0);
    assert_int_equal(rpc__reflect_closure(idx, (int)idx->n_files, out), 0);
    free(out);
    /* Each file's bytes lie inside the embedded set. */
    for (size_t i = 0; i < idx->n_files; i++) {
        assert_true(idx->files[i].bytes >= ec_descriptor_set);
        assert_true(idx->files[i].bytes + idx->files[i].len <=
                    ec_descriptor_set + ec_descriptor_set_len);
    }
}

/* Every prefix and many corruptions of the real set: never a read outside the copy (ASan
 * watches the exact-size heap copy), always OK or EC_EINVAL. */
static void test_malformed_sets(void **state)
{
    size_t len = ec_descriptor_set_len;
    for (size_t cut = 0; cut < len; cut += (cut < 256 ? 1 : 97)) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, ec_descriptor_set, cut);
        struct rpc__reflect_index *idx = NULL;
        struct ec_err err = { 0 };
        enum ec_status st = rpc__reflect_index_build(copy, cut, &idx, &err);
        assert_true(st == EC_OK || st == EC_EINVAL);
        assert_true((st == EC_OK) == (idx != NULL));
        rpc__reflect_index_free(idx);
        free(copy);
    }
    uint32_t x = 12345;
    for (int round = 0; round < 300; round++) {
        uint8_t *copy = malloc(len);
        memcpy(copy, ec_descriptor_set, len);
        for (int k = 0; k < 4; k++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            copy[x % len] = (uint8_t)(x >> 8);
        }
        struct rpc__reflect_index *idx = NULL;
        enum ec_status st = rpc__reflect_index_build(copy, len, &idx, NULL);
        assert_true(st == EC_OK || st == EC_EINVAL);
        if (idx != NULL) {
            int *out = calloc(idx->n_files ? idx->n_files : 1, sizeof(int));
            for (size_t i = 0; i < idx->n_files; i++)
                assert_true(rpc__reflect_closure(idx, (int)i, out) <= idx->n_files);
            free(out);
        }
        rpc__reflect_index_free(idx);
        free(copy);
    }
    static const uint8_t overlong_varint[] = { 0x0a, 0xff, 0xff, 0xff, 0xff, 0xff,
                                               0xff, 0xff, 0xff, 0xff, 0xff, 0x01 };
    struct rpc__reflect_index *idx = NULL;
    struct ec_err err = { 0 };
    assert_int_equal(rpc__reflect_index_build(overlong_varint, sizeof(overlong_varint), &idx, &err),
                     EC_EINVAL);
    assert_non_null(strstr(err.msg, "malformed descriptor set"));
    static const uint8_t empty_file[] = { 0x0a, 0x00 }; /* a file with no name */
    assert_int_equal(rpc__reflect_index_build(empty_file, sizeof(empty_file), &idx, NULL),
                     EC_EINVAL);
    assert_int_equal(rpc__reflect_index_build(NULL, 0, &idx, NULL), EC_OK);
    assert_int_equal(idx->n_files, 0);
    rpc__reflect_index_free(idx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedded_symbols),
        cmocka_unit_test(test_embedded_files_and_deps),
        cmocka_unit_test(test_malformed_sets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
