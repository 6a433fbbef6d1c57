/* `edgecoder rpc`: a grpcurl-style client for people, driven by server reflection. It lists
 * services and methods, describes symbols in a proto-like text form, and calls any unary or
 * server-streaming method with JSON in and JSON out, building the message descriptors at run
 * time from what reflection sends (see mesh/rpc_dynamic.h). */
#ifndef EC_RPC_CLI_H
#define EC_RPC_CLI_H

#include "mesh/rpc.h"

#include <stdbool.h>
#include <stdio.h>

struct rpc_cli_opts {
    const char *target;              /* "host:port" */
    struct rpc_channel_opts channel; /* TLS files, or plaintext for tests */
    struct rpc_call_opts call;       /* deadline and metadata of every call, reflection's too */
    bool emit_defaults;              /* JSON output: also fields that hold their default */
};

struct rpc_cli;

/* A channel to the target (connected lazily) and an empty descriptor pool. Call after
 * rpc_runtime_init; free before rpc_runtime_shutdown. */
struct rpc_cli *rpc_cli_new(const struct rpc_cli_opts *opts, struct ec_err *err);
void rpc_cli_free(struct rpc_cli *cli); /* NULL is a no-op */

/* Without service: the server's services, sorted, one per line. With it: the service's methods
 * as full names ("pkg.Service.Method"), one per line. */
enum ec_status rpc_cli_list(struct rpc_cli *cli, const char *service, FILE *out,
                            struct ec_err *err);

/* A service, method, message, enum or field in a proto-like text form; NULL: every service. */
enum ec_status rpc_cli_describe(struct rpc_cli *cli, const char *symbol, FILE *out,
                                struct ec_err *err);

/* Calls method ("/pkg.Service/Method", "pkg.Service/Method" or "pkg.Service.Method") with the
 * request given as JSON text, and prints each response as one line of JSON, flushed as it comes
 * (server-streaming methods print one line per message). A client-streaming method gets the one
 * request. */
enum ec_status rpc_cli_call(struct rpc_cli *cli, const char *method, const char *json, size_t len,
                            FILE *out, struct ec_err *err);

/* "<GRPC_CODE>: <details> (code <x-error-code>)" for a failure of the functions above: a call
 * that failed on the wire already reads "<GRPC_CODE>: <details>"; other errors get the code of
 * their status in front. */
void rpc_cli_error_text(const struct ec_err *err, char *buf, size_t cap);

#endif
