/* libFuzzer target for the JSON <-> protobuf-c codec: any bytes must decode or fail cleanly, and
 * whatever decodes must survive encode -> decode -> encode with identical text. */
#include "edge/edge_pbjson.h"
#include "edgecoder/test/codec_test.pb-c.h"
#include "edgecoder/test/codec_test_proto2.pb-c.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what, const struct ec_err *err)
{
    fprintf(stderr, "fuzz_pbjson: %s: %s\n", what, err->msg);
    abort();
}

/* Round trip under one set of encode options; the input already decoded into first. */
static void check_roundtrip(const ProtobufCMessageDescriptor *desc, const ProtobufCMessage *first,
                            const struct edge_pbjson_opts *opts, struct ec_arena *arena)
{
    struct ec_err err = { 0 };
    struct ec_buf once, twice;
    ec_buf_init(&once, 0);
    ec_buf_init(&twice, 0);
    if (edge_pbjson_encode(first, opts, &once, &err) != EC_OK)
        die("encode of a decoded message failed", &err);
    ProtobufCMessage *second = NULL;
    if (edge_pbjson_decode(desc, once.data, once.len, opts, arena, &second, &err) != EC_OK)
        die("decode of encoded text failed", &err);
    if (edge_pbjson_encode(second, opts, &twice, &err) != EC_OK)
        die("second encode failed", &err);
    if (once.len != twice.len || memcmp(once.data, twice.data, once.len) != 0) {
        fprintf(stderr, "fuzz_pbjson: round trip changed the text\n%s\n%s\n", once.data,
                twice.data);
        abort();
    }
    ec_buf_release(&once);
    ec_buf_release(&twice);
}

static void fuzz_one(const ProtobufCMessageDescriptor *desc, const char *text, size_t len)
{
    struct ec_arena arena;
    ec_arena_init(&arena);
    struct ec_err err = { 0 };
    ProtobufCMessage *msg = NULL;
    struct edge_pbjson_opts strict = { .reject_unknown = true };
    enum ec_status strict_st = edge_pbjson_decode(desc, text, len, &strict, &arena, &msg, &err);
    enum ec_status st = edge_pbjson_decode(desc, text, len, NULL, &arena, &msg, &err);
    if (strict_st == EC_OK && st != EC_OK)
        die("lenient decode failed where strict decode passed", &err);
    if (st == EC_OK) {
        /* protobuf-c must be able to pack what the decoder built */
        size_t wire_len = protobuf_c_message_get_packed_size(msg);
        uint8_t *wire = ec_arena_alloc(&arena, wire_len + 1);
        if (protobuf_c_message_pack(msg, wire) != wire_len)
            abort();
        static const struct edge_pbjson_opts variants[] = {
            { 0 },
            { .emit_defaults = true, .emit_nulls = true, .reject_unknown = true },
            { .int64_as_string = true },
        };
        for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++)
            check_roundtrip(desc, msg, &variants[i], &arena);
    }
    ec_arena_release(&arena);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* One input, three shapes: most inputs fail fast on two of them. */
    fuzz_one(&edgecoder__test__all_types__descriptor, (const char *)data, size);
    fuzz_one(&edgecoder__test__tree__descriptor, (const char *)data, size);
    fuzz_one(&edgecoder__test__legacy__descriptor, (const char *)data, size);
    return 0;
}
