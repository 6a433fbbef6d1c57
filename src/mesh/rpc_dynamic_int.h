/* Internals of the dynamic descriptor pool shared by its reader (rpc_dynamic_parse.c) and its
 * builder (rpc_dynamic.c). */
#ifndef EC_RPC_DYNAMIC_INT_H
#define EC_RPC_DYNAMIC_INT_H

#include "common/ec_arena.h"
#include "mesh/rpc_dynamic.h"

/* Declarations (types, fields, values, services, methods, oneofs, imports) a pool accepts in
 * all: a cap on the memory a hostile server can make us spend. */
#define RPC__DYN_MAX_DECLS 200000
/* Nesting of message types within a file, and the longest fully-qualified name. */
#define RPC__DYN_MAX_DEPTH 32
#define RPC__DYN_MAX_NAME  1024

/* Parses one serialized FileDescriptorProto into *out, allocated in arena. *budget is the number
 * of declarations still allowed; it is decremented. Bounds-checked: malformed bytes give
 * EC_EINVAL, never a read outside [bytes, bytes + len). */
enum ec_status rpc__dyn_parse_file(struct ec_arena *arena, const uint8_t *bytes, size_t len,
                                   size_t *budget, struct rpc_dyn_file **out, struct ec_err *err);

/* The files of a serialized FileDescriptorSet, one at a time: *file and *file_len are the next
 * FileDescriptorProto. Returns 1 for a file, 0 at the end, -1 on malformed bytes. *pos starts
 * at 0. */
int rpc__dyn_set_next(const uint8_t *set, size_t len, size_t *pos, const uint8_t **file,
                      size_t *file_len);

/* The name of a serialized FileDescriptorProto without parsing the rest, so a file already in
 * a pool costs nothing; false when there is none that fits in cap. */
bool rpc__dyn_peek_name(const uint8_t *bytes, size_t len, char *out, size_t cap);

/* Protobuf-c descriptors (rpc_dynamic_desc.c), for files whose type names are resolved. An
 * enum's, then the enums nested in a message (recursively); then a message and its nested types,
 * once every message it may refer to has its (zeroed) descriptor allocated in m->desc. */
enum ec_status rpc__dyn_build_enum(struct ec_arena *arena, struct rpc_dyn_enum *e,
                                   struct ec_err *err);
enum ec_status rpc__dyn_build_nested_enums(struct ec_arena *arena, struct rpc_dyn_message *m,
                                           struct ec_err *err);
enum ec_status rpc__dyn_build_message(struct ec_arena *arena, struct rpc_dyn_message *m,
                                      struct ec_err *err);

#endif
