/* libFuzzer target for the dynamic descriptor pool (mesh/rpc_dynamic*.c): any bytes, read as a
 * FileDescriptorSet and as one FileDescriptorProto, must parse and build or fail cleanly; and
 * whatever builds must be a sound protobuf-c descriptor: the input unpacks (or not) without a
 * bad access, packs back to the size protobuf-c predicted, and encodes as JSON.
 */
#include "edge/edge_pbjson.h"
#include "mesh/rpc_dynamic.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* protobuf-c's unpack recurses once per nesting level: keep deep inputs off its stack. */
#define MAX_UNPACK 2048
#define MAX_TYPES  64

static void exercise_type(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t size)
{
    /* The system allocator (not an arena), so ASan sees each struct at its sizeof_message. */
    ProtobufCMessage *msg = protobuf_c_message_unpack(desc, NULL, size, data);
    if (msg == NULL)
        return;
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *wire = malloc(len + 1);
    if (protobuf_c_message_pack(msg, wire) != len) {
        fprintf(stderr, "fuzz_descriptor: %s packed to another size than predicted\n", desc->name);
        abort();
    }
    ProtobufCMessage *again = protobuf_c_message_unpack(desc, NULL, len, wire);
    if (again == NULL) {
        fprintf(stderr, "fuzz_descriptor: %s does not unpack its own packing\n", desc->name);
        abort();
    }
    struct ec_buf text;
    struct ec_err err = { 0 };
    struct edge_pbjson_opts opts = { .emit_defaults = true };
    ec_buf_init(&text, 1 << 20);
    if (edge_pbjson_encode(again, &opts, &text, &err) == EC_OK) {
        struct ec_arena arena;
        ProtobufCMessage *decoded = NULL;
        ec_arena_init(&arena);
        (void)edge_pbjson_decode(desc, text.data, text.len, NULL, &arena, &decoded, &err);
        ec_arena_release(&arena);
    }
    ec_buf_release(&text);
    protobuf_c_message_free_unpacked(again, NULL);
    protobuf_c_message_free_unpacked(msg, NULL);
    free(wire);
}

static void exercise(const uint8_t *data, size_t size, bool as_set)
{
    struct rpc_dyn_pool *pool = rpc_dyn_pool_new();
    struct ec_err err = { 0 };
    enum ec_status st = as_set ? rpc_dyn_pool_add_set(pool, data, size, &err)
                               : rpc_dyn_pool_add_file(pool, data, size, &err);
    if (st == EC_OK && rpc_dyn_pool_build(pool, &err) == EC_OK) {
        size_t n = rpc_dyn_pool_n_messages(pool);
        for (size_t i = 0; i < n && i < MAX_TYPES; i++) {
            const struct rpc_dyn_message *m = rpc_dyn_pool_message_at(pool, i);
            if (m->desc->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC ||
                rpc_dyn_pool_message(pool, m->full_name) != m)
                abort();
            if (size <= MAX_UNPACK)
                exercise_type(m->desc, data, size);
        }
    }
    rpc_dyn_pool_free(pool);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    exercise(data, size, true);
    exercise(data, size, false);
    return 0;
}
