/* `edgecoder rpc`: the session and its server reflection client. Each question is one
 * ServerReflectionInfo call sent as server-streaming on the wire (one request, half-close, one
 * response), over grpc.reflection.v1, falling back to v1alpha when v1 is UNIMPLEMENTED. */
#include "common/ec_mem.h"
#include "edge/edge_pbjson.h"
#include "mesh/rpc_cli_int.h"

#include "grpc/reflection/v1/reflection.pb-c.h"

#include <stdlib.h>
#include <string.h>

#define REQ(x)  GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_##x
#define RESP(x) GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_##x

/* Files fetched for one symbol, imports included: a server that keeps naming new imports is
 * cut off here. */
#define MAX_FILE_REQUESTS 256

#define N_CODES 17 /* gRPC status codes 0..16 */

const char *rpc__cli_code_name(int grpc_code)
{
    return rpc_code_name(grpc_code);
}

void rpc_cli_error_text(const struct ec_err *err, char *buf, size_t cap)
{
    const char *prefix = rpc__cli_code_name(ec_status_info(err->status)->grpc_code);
    for (size_t i = 0; i < N_CODES; i++) {
        const char *name = rpc_code_name((int)i);
        size_t n = strlen(name);
        if (strncmp(err->msg, name, n) == 0 && strncmp(err->msg + n, ": ", 2) == 0) {
            prefix = NULL; /* the runtime's "<GRPC_CODE>: <details>" */
            break;
        }
    }
    snprintf(buf, cap, "%s%s%s (code %s)", prefix ? prefix : "", prefix ? ": " : "", err->msg,
             ec_err_code(err));
}

struct rpc_cli *rpc_cli_new(const struct rpc_cli_opts *opts, struct ec_err *err)
{
    struct rpc_channel *ch = rpc_channel_new(opts->target, &opts->channel, err);
    if (ch == NULL)
        return NULL;
    struct rpc_cli *cli = ec_xcalloc(1, sizeof(*cli));
    cli->ch = ch;
    cli->call = opts->call;
    cli->emit_defaults = opts->emit_defaults;
    cli->reflection = RPC__CLI_REFLECT_V1;
    cli->pool = rpc_dyn_pool_new();
    return cli;
}

void rpc_cli_free(struct rpc_cli *cli)
{
    if (cli == NULL)
        return;
    rpc_channel_free(cli->ch);
    rpc_dyn_pool_free(cli->pool);
    free(cli);
}

/* --- one reflection exchange ------------------------------------------------------------------ */

struct exchange {
    struct rpc_cli *cli;
    struct ec_arena *arena; /* where service names go */
    int responses;
    char **services;
    size_t n_services;
};

static enum ec_status take_files(struct exchange *x,
                                 const Grpc__Reflection__V1__FileDescriptorResponse *fr,
                                 struct ec_err *err)
{
    for (size_t i = 0; fr != NULL && i < fr->n_file_descriptor_proto; i++) {
        const ProtobufCBinaryData *b = &fr->file_descriptor_proto[i];
        struct ec_err why = { 0 };
        if (rpc_dyn_pool_add_file(x->cli->pool, b->data, b->len, &why) != EC_OK)
            return ec_err_set(err, EC_EINTERNAL, NULL, "server reflection sent a bad file: %s",
                              why.msg);
    }
    return EC_OK;
}

static enum ec_status take_services(struct exchange *x,
                                    const Grpc__Reflection__V1__ListServiceResponse *ls)
{
    size_t n = ls != NULL ? ls->n_service : 0;
    x->services = ec_arena_alloc(x->arena, (n ? n : 1) * sizeof(*x->services));
    for (size_t i = 0; i < n; i++)
        if (ls->service[i] != NULL && ls->service[i]->name != NULL)
            x->services[x->n_services++] = ec_arena_strdup(x->arena, ls->service[i]->name);
    return EC_OK;
}

static enum ec_status on_response(void *ud, const uint8_t *msg, size_t len, struct ec_err *err)
{
    struct exchange *x = ud;
    if (x->responses++ > 0)
        return ec_err_set(err, EC_EINTERNAL, NULL, "server reflection answered twice");
    struct ec_arena arena;
    ProtobufCAllocator alloc;
    ec_arena_init(&arena);
    edge_pbjson_allocator_init(&alloc, &arena);
    const Grpc__Reflection__V1__ServerReflectionResponse *resp =
        (const void *)protobuf_c_message_unpack(
            &grpc__reflection__v1__server_reflection_response__descriptor, &alloc, len, msg);
    enum ec_status st;
    if (resp == NULL) {
        st = ec_err_set(err, EC_EINTERNAL, NULL, "cannot decode a server reflection response");
    } else if (resp->message_response_case == RESP(ERROR_RESPONSE) && resp->error_response) {
        int code = resp->error_response->error_code;
        const char *m = resp->error_response->error_message;
        enum ec_status mapped = ec_status_from_grpc(code);
        st = ec_err_set(err, mapped == EC_OK ? EC_EINTERNAL : mapped, NULL, "%s: %.200s",
                        rpc__cli_code_name(code), m ? m : "");
    } else if (resp->message_response_case == RESP(FILE_DESCRIPTOR_RESPONSE)) {
        st = take_files(x, resp->file_descriptor_response, err);
    } else if (resp->message_response_case == RESP(LIST_SERVICES_RESPONSE)) {
        st = take_services(x, resp->list_services_response);
    } else {
        st = ec_err_set(err, EC_EINTERNAL, NULL, "unexpected server reflection response %d",
                        (int)resp->message_response_case);
    }
    ec_arena_release(&arena);
    return st;
}

/* Sends one request; on_response takes the answer into x. */
static enum ec_status ask(struct rpc_cli *cli, Grpc__Reflection__V1__ServerReflectionRequest *req,
                          struct exchange *x, struct ec_err *err)
{
    size_t len = protobuf_c_message_get_packed_size(&req->base);
    uint8_t *buf = ec_xmalloc(len ? len : 1);
    protobuf_c_message_pack(&req->base, buf);
    enum ec_status st;
    for (;;) {
        x->responses = 0;
        st = rpc_server_stream_raw(cli->ch, cli->reflection, buf, len, on_response, x, &cli->call,
                                   err);
        /* UNIMPLEMENTED from the transport (not in a reflection answer): an older server. */
        if (st == EC_EUNIMPL && x->responses == 0 &&
            strcmp(cli->reflection, RPC__CLI_REFLECT_V1) == 0) {
            cli->reflection = RPC__CLI_REFLECT_V1ALPHA;
            continue;
        }
        break;
    }
    free(buf);
    if (st == EC_OK && x->responses == 0)
        st = ec_err_set(err, EC_EINTERNAL, NULL, "server reflection closed without an answer");
    return st;
}

enum ec_status rpc__cli_services(struct rpc_cli *cli, struct ec_arena *arena, char ***names,
                                 size_t *n, struct ec_err *err)
{
    Grpc__Reflection__V1__ServerReflectionRequest req =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    req.message_request_case = REQ(LIST_SERVICES);
    req.list_services = "";
    struct exchange x = { cli, arena, 0, NULL, 0 };
    enum ec_status st = ask(cli, &req, &x, err);
    if (st == EC_OK && x.services == NULL)
        st = ec_err_set(err, EC_EINTERNAL, NULL, "server reflection did not list services");
    *names = x.services;
    *n = x.n_services;
    return st;
}

enum ec_status rpc__cli_load(struct rpc_cli *cli, const char *symbol, struct ec_err *err)
{
    Grpc__Reflection__V1__ServerReflectionRequest req =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    req.message_request_case = REQ(FILE_CONTAINING_SYMBOL);
    req.file_containing_symbol = (char *)(symbol[0] == '.' ? symbol + 1 : symbol);
    struct exchange x = { cli, NULL, 0, NULL, 0 };
    enum ec_status st = ask(cli, &req, &x, err);
    /* Servers send imports along with the file, but may skip ones sent before on the stream:
     * ask for any that is still missing by name. */
    for (int i = 0; st == EC_OK && i < MAX_FILE_REQUESTS; i++) {
        const char *dep = rpc_dyn_pool_missing_dep(cli->pool);
        if (dep == NULL)
            break;
        char *name = ec_xstrdup(dep);
        req.message_request_case = REQ(FILE_BY_FILENAME);
        req.file_by_filename = name;
        st = ask(cli, &req, &x, err);
        if (st == EC_OK && rpc_dyn_pool_has_file(cli->pool, name) == false)
            st = ec_err_set(err, EC_EINTERNAL, NULL,
                            "server reflection did not send the import \"%s\"", name);
        free(name);
    }
    if (st == EC_OK && rpc_dyn_pool_missing_dep(cli->pool) != NULL)
        st = ec_err_set(err, EC_EINTERNAL, NULL, "too many imports from server reflection");
    if (st != EC_OK)
        return st;
    struct ec_err why = { 0 };
    if (rpc_dyn_pool_build(cli->pool, &why) != EC_OK)
        return ec_err_set(err, EC_EINTERNAL, NULL, "unusable descriptors from the server: %s",
                          why.msg);
    return EC_OK;
}

/* --- list ------------------------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

enum ec_status rpc_cli_list(struct rpc_cli *cli, const char *service, FILE *out, struct ec_err *err)
{
    if (service == NULL) {
        struct ec_arena arena;
        ec_arena_init(&arena);
        char **names;
        size_t n;
        enum ec_status st = rpc__cli_services(cli, &arena, &names, &n, err);
        if (st == EC_OK) {
            qsort(names, n, sizeof(*names), cmp_str);
            for (size_t i = 0; i < n; i++)
                fprintf(out, "%s\n", names[i]);
        }
        ec_arena_release(&arena);
        return st;
    }
    enum ec_status st = rpc__cli_load(cli, service, err);
    if (st != EC_OK)
        return st;
    const struct rpc_dyn_service *svc = rpc_dyn_pool_service(cli->pool, service);
    if (svc == NULL)
        return ec_err_set(err, EC_ENOTFOUND, NULL, "\"%s\" is not a service", service);
    for (size_t i = 0; i < svc->n_methods; i++)
        fprintf(out, "%s.%s\n", svc->full_name, svc->methods[i].name);
    return EC_OK;
}
