/* Protobuf-c descriptors built at run time from serialized FileDescriptorProtos (as server
 * reflection sends them), so `edgecoder rpc` can pack, unpack and print messages it has no
 * generated code for. The bytes come from the network: the reader is bounds-checked and a
 * malformed or inconsistent file fails with EC_EINVAL naming the problem.
 *
 * A pool owns everything (one arena); it is confined to one thread. Add files, build, then look
 * up messages, enums and services; every pointer it hands out lives until rpc_dyn_pool_free. */
#ifndef EC_RPC_DYNAMIC_H
#define EC_RPC_DYNAMIC_H

#include "common/ec_status.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* FieldDescriptorProto.Type, numerically as in descriptor.proto. */
enum rpc_dyn_type {
    RPC_DYN_DOUBLE = 1,
    RPC_DYN_FLOAT = 2,
    RPC_DYN_INT64 = 3,
    RPC_DYN_UINT64 = 4,
    RPC_DYN_INT32 = 5,
    RPC_DYN_FIXED64 = 6,
    RPC_DYN_FIXED32 = 7,
    RPC_DYN_BOOL = 8,
    RPC_DYN_STRING = 9,
    RPC_DYN_GROUP = 10, /* refused: protobuf-c has no groups */
    RPC_DYN_MESSAGE = 11,
    RPC_DYN_BYTES = 12,
    RPC_DYN_UINT32 = 13,
    RPC_DYN_ENUM = 14,
    RPC_DYN_SFIXED32 = 15,
    RPC_DYN_SFIXED64 = 16,
    RPC_DYN_SINT32 = 17,
    RPC_DYN_SINT64 = 18,
};

/* FieldDescriptorProto.Label. */
enum rpc_dyn_label {
    RPC_DYN_LABEL_OPTIONAL = 1,
    RPC_DYN_LABEL_REQUIRED = 2,
    RPC_DYN_LABEL_REPEATED = 3,
};

struct rpc_dyn_message;
struct rpc_dyn_enum;

struct rpc_dyn_field {
    const char *name;
    int32_t number;
    enum rpc_dyn_label label;
    enum rpc_dyn_type type;   /* 0 in the file when only type_name was given; set by build */
    const char *type_name;    /* as written (".pkg.Msg"); NULL for scalar types */
    const char *default_text; /* proto2 [default = ...] as text; NULL when none */
    int32_t oneof_index;      /* into the message's oneofs; -1 for none */
    bool proto3_optional;     /* proto3 `optional`: its oneof is synthetic */
    int packed;               /* [packed = ...]: -1 not given, 0 false, 1 true */
    bool deprecated;
    /* Set by build: the field's message or enum type. */
    const struct rpc_dyn_message *message_type;
    const struct rpc_dyn_enum *enum_type;
};

struct rpc_dyn_file;

struct rpc_dyn_message {
    const char *full_name; /* "edgecoder.v1.EchoRequest", no leading dot */
    const char *name;      /* "EchoRequest" */
    const struct rpc_dyn_file *file;
    struct rpc_dyn_field *fields; /* declaration order */
    size_t n_fields;
    const char **oneofs; /* names, by oneof_index */
    size_t n_oneofs;
    struct rpc_dyn_message *nested;
    size_t n_nested;
    struct rpc_dyn_enum *enums;
    size_t n_enums;
    bool map_entry;                         /* MessageOptions.map_entry */
    const ProtobufCMessageDescriptor *desc; /* set by build */
};

struct rpc_dyn_enum_value {
    const char *name;
    int32_t number;
};

struct rpc_dyn_enum {
    const char *full_name;
    const char *name;
    const struct rpc_dyn_file *file;
    struct rpc_dyn_enum_value *values; /* declaration order */
    size_t n_values;
    const ProtobufCEnumDescriptor *desc; /* set by build */
};

struct rpc_dyn_method {
    const char *name;
    const char *input_type; /* as written (".pkg.Msg") */
    const char *output_type;
    bool client_streaming;
    bool server_streaming;
    /* Set by build. */
    const struct rpc_dyn_message *input;
    const struct rpc_dyn_message *output;
};

struct rpc_dyn_service {
    const char *full_name; /* "edgecoder.v1.Demo" */
    const char *name;
    const struct rpc_dyn_file *file;
    struct rpc_dyn_method *methods;
    size_t n_methods;
};

struct rpc_dyn_file {
    const char *name;    /* "edgecoder/v1/demo.proto" */
    const char *package; /* "" when none */
    bool proto3;
    const char **deps; /* file names */
    size_t n_deps;
    struct rpc_dyn_message *messages;
    size_t n_messages;
    struct rpc_dyn_enum *enums;
    size_t n_enums;
    struct rpc_dyn_service *services;
    size_t n_services;
};

struct rpc_dyn_pool;

struct rpc_dyn_pool *rpc_dyn_pool_new(void);
void rpc_dyn_pool_free(struct rpc_dyn_pool *pool); /* NULL is a no-op */

/* Parses one serialized FileDescriptorProto (the bytes are not kept). A file whose name the pool
 * already has is skipped unread. On failure the pool is unchanged apart from arena memory. At
 * most 200,000 declarations (types, fields, values, methods...) are accepted in all. */
enum ec_status rpc_dyn_pool_add_file(struct rpc_dyn_pool *pool, const uint8_t *bytes, size_t len,
                                     struct ec_err *err);
/* Each file of a serialized FileDescriptorSet, as rpc_dyn_pool_add_file. */
enum ec_status rpc_dyn_pool_add_set(struct rpc_dyn_pool *pool, const uint8_t *bytes, size_t len,
                                    struct ec_err *err);
bool rpc_dyn_pool_has_file(const struct rpc_dyn_pool *pool, const char *name);
/* The name of a dependency of some file that the pool does not have yet, or NULL. */
const char *rpc_dyn_pool_missing_dep(const struct rpc_dyn_pool *pool);

/* Resolves type names and builds the protobuf-c descriptors of every file added since the last
 * build. Fails (EC_EINVAL) on a name defined twice, a type that is not in the pool, duplicate
 * field numbers, a group field, a bad default and the like; then the files added since the last
 * build are dropped, and what was built before stays usable.
 *
 * The descriptors have no message_init: protobuf-c's unpack (and the JSON codec) zero the struct
 * and apply the defaults. Oneof members get no default (protobuf-c would write each member's
 * over the shared union); otherwise fields, offsets, quantifiers, flags, defaults and indices are
 * what protoc-c generates for the same .proto. */
enum ec_status rpc_dyn_pool_build(struct rpc_dyn_pool *pool, struct ec_err *err);

/* Look-ups by fully-qualified name (a leading dot is allowed); NULL when absent. The descriptors
 * are set once the pool is built. */
const struct rpc_dyn_message *rpc_dyn_pool_message(const struct rpc_dyn_pool *pool,
                                                   const char *name);
const struct rpc_dyn_enum *rpc_dyn_pool_enum(const struct rpc_dyn_pool *pool, const char *name);
const struct rpc_dyn_service *rpc_dyn_pool_service(const struct rpc_dyn_pool *pool,
                                                   const char *name);
const struct rpc_dyn_method *rpc_dyn_service_method(const struct rpc_dyn_service *svc,
                                                    const char *name);

/* Every message type built so far (declaration order within a file, nested types after their
 * parent), for tools and fuzzing. */
size_t rpc_dyn_pool_n_messages(const struct rpc_dyn_pool *pool);
const struct rpc_dyn_message *rpc_dyn_pool_message_at(const struct rpc_dyn_pool *pool, size_t i);

/* The proto name of a field type: "int32", "string"; "message"/"enum"/"group" for those. */
const char *rpc_dyn_type_name(enum rpc_dyn_type type);

#endif
