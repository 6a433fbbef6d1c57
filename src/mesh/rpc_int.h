/* Internals of the RPC runtime that need no gRPC: the method table and the reflection index over
 * the embedded FileDescriptorSet. Shared by src/mesh/rpc*.c and the unit tests. */
#ifndef EC_RPC_INT_H
#define EC_RPC_INT_H

#include "mesh/rpc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* --- method table: every method of every service, sorted by path for binary search --------- */

struct rpc__method_entry {
    const struct rpc_method *method;   /* borrowed from the service */
    const struct rpc_service *service; /* borrowed */
    size_t path_len;
};

struct rpc__method_table {
    struct rpc__method_entry *entries; /* heap */
    size_t n;
};

/* Checks each path is "/<service>/<Method>" with a handler for its kind, rejects duplicates. */
enum ec_status rpc__method_table_build(struct rpc__method_table *t,
                                       const struct rpc_service *services, size_t n_services,
                                       struct ec_err *err);
const struct rpc__method_entry *rpc__method_table_find(const struct rpc__method_table *t,
                                                       const char *path, size_t len);
void rpc__method_table_release(struct rpc__method_table *t);

/* A snake_case error code from the wire as a static string: a status-table code or an entry of a
 * small, capped intern table. NULL when not a valid code or the table is full. */
const char *rpc__intern_code(const char *s, size_t len);

/* --- reflection index ------------------------------------------------------------------------ */

enum rpc__symbol_kind {
    RPC_SYM_MESSAGE,
    RPC_SYM_ENUM,
    RPC_SYM_ENUM_VALUE,
    RPC_SYM_FIELD,
    RPC_SYM_SERVICE,
    RPC_SYM_METHOD,
};

struct rpc__reflect_file {
    char *name;           /* "edgecoder/v1/demo.proto" */
    const uint8_t *bytes; /* the serialized FileDescriptorProto, borrowed from the set */
    size_t len;
    int *deps; /* indices of the direct dependencies that are in the set */
    size_t n_deps;
};

struct rpc__reflect_symbol {
    char *name; /* fully qualified, no leading dot: "edgecoder.v1.Demo.Echo" */
    int file;
    enum rpc__symbol_kind kind;
};

struct rpc__reflect_index {
    struct rpc__reflect_file *files;
    size_t n_files;
    struct rpc__reflect_symbol *symbols; /* sorted by name */
    size_t n_symbols;
};

/* Indexes a serialized FileDescriptorSet (borrowed: must outlive the index). Bounds-checked: a
 * malformed set gives EC_EINVAL, never a read past the end. */
enum ec_status rpc__reflect_index_build(const uint8_t *set, size_t len,
                                        struct rpc__reflect_index **out, struct ec_err *err);
void rpc__reflect_index_free(struct rpc__reflect_index *idx);
/* The index of the embedded ec_descriptor_set, built once; never NULL (a broken build aborts). */
const struct rpc__reflect_index *rpc__reflect_index_embedded(void);
int rpc__reflect_find_file(const struct rpc__reflect_index *idx, const char *name);
/* A symbol's file index, or -1; kind (may be NULL) receives what it is. */
int rpc__reflect_find_symbol(const struct rpc__reflect_index *idx, const char *name,
                             enum rpc__symbol_kind *kind);
/* The file and its transitive dependencies, the file first, each once; out needs n_files slots.
 * Returns how many were written. */
size_t rpc__reflect_closure(const struct rpc__reflect_index *idx, int file, int *out);

#endif
