/* Internals of `edgecoder rpc` shared by rpc_cli_*.c: the session, reflection requests, and the
 * proto-like text form. */
#ifndef EC_RPC_CLI_INT_H
#define EC_RPC_CLI_INT_H

#include "mesh/rpc_cli.h"
#include "mesh/rpc_dynamic.h"

#define RPC__CLI_REFLECT_V1      "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
#define RPC__CLI_REFLECT_V1ALPHA "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"

struct rpc_cli {
    struct rpc_channel *ch;
    struct rpc_call_opts call;
    bool emit_defaults;
    const char *reflection;    /* the method in use: v1, or v1alpha once v1 was UNIMPLEMENTED */
    struct rpc_dyn_pool *pool; /* every file reflection has sent so far, built */
};

/* The server's service names (in arena), as reflection lists them. */
enum ec_status rpc__cli_services(struct rpc_cli *cli, struct ec_arena *arena, char ***names,
                                 size_t *n, struct ec_err *err);
/* Asks reflection for the file that defines symbol and for any import still missing, adds them
 * to cli->pool and builds it. A symbol the server does not know is EC_ENOTFOUND. */
enum ec_status rpc__cli_load(struct rpc_cli *cli, const char *symbol, struct ec_err *err);

/* The gRPC name of a status code ("NOT_FOUND"); "UNKNOWN" when out of range. */
const char *rpc__cli_code_name(int grpc_code);

/* Text forms (rpc_cli_describe.c). */
void rpc__cli_print_service(FILE *out, const struct rpc_dyn_service *svc);
void rpc__cli_print_method(FILE *out, const struct rpc_dyn_method *m, const char *indent);
void rpc__cli_print_message(FILE *out, const struct rpc_dyn_message *m, const char *indent);
void rpc__cli_print_enum(FILE *out, const struct rpc_dyn_enum *e, const char *indent);
void rpc__cli_print_field(FILE *out, const struct rpc_dyn_message *m, const struct rpc_dyn_field *f,
                          const char *indent);

#endif
