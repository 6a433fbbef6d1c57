/* grpc.reflection.v1.ServerReflection and v1alpha (wire-identical: one protobuf-c binding serves
 * both paths), answered from the embedded FileDescriptorSet, so grpcurl and other tools can list,
 * describe and call our services. */
#include "common/ec_mem.h"
#include "mesh/rpc_grpc.h"

#include "grpc/reflection/v1/reflection.pb-c.h"

#include <string.h>

#define REQ(x)  GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_##x
#define RESP(x) GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_##x

enum { GRPC_CODE_INVALID_ARGUMENT = 3, GRPC_CODE_NOT_FOUND = 5 };

static void answer_error(Grpc__Reflection__V1__ServerReflectionResponse *out, int code,
                         char *message, struct ec_arena *a)
{
    Grpc__Reflection__V1__ErrorResponse *e = ec_arena_alloc(a, sizeof(*e));
    grpc__reflection__v1__error_response__init(e);
    e->error_code = code;
    e->error_message = message;
    out->message_response_case = RESP(ERROR_RESPONSE);
    out->error_response = e;
}

static void answer_not_found(Grpc__Reflection__V1__ServerReflectionResponse *out, const char *what,
                             const char *name, struct ec_arena *a)
{
    answer_error(out, GRPC_CODE_NOT_FOUND,
                 ec_arena_sprintf(a, "%s \"%.200s\" not found", what, name), a);
}

static void answer_files(Grpc__Reflection__V1__ServerReflectionResponse *out, struct ec_arena *a,
                         const struct rpc__reflect_index *idx, int file)
{
    int *files = ec_arena_alloc(a, idx->n_files * sizeof(int));
    size_t n = rpc__reflect_closure(idx, file, files);
    Grpc__Reflection__V1__FileDescriptorResponse *fr = ec_arena_alloc(a, sizeof(*fr));
    grpc__reflection__v1__file_descriptor_response__init(fr);
    fr->file_descriptor_proto = ec_arena_alloc(a, n * sizeof(ProtobufCBinaryData));
    for (size_t i = 0; i < n; i++) {
        const struct rpc__reflect_file *f = &idx->files[files[i]];
        fr->file_descriptor_proto[i] = (ProtobufCBinaryData){ f->len, (uint8_t *)f->bytes };
    }
    fr->n_file_descriptor_proto = n;
    out->message_response_case = RESP(FILE_DESCRIPTOR_RESPONSE);
    out->file_descriptor_response = fr;
}

static void answer_services(Grpc__Reflection__V1__ServerReflectionResponse *out, struct ec_arena *a,
                            const struct rpc_server *srv)
{
    Grpc__Reflection__V1__ListServiceResponse *ls = ec_arena_alloc(a, sizeof(*ls));
    grpc__reflection__v1__list_service_response__init(ls);
    ls->service = ec_arena_alloc(a, srv->n_services * sizeof(*ls->service));
    for (size_t i = 0; i < srv->n_services; i++) {
        Grpc__Reflection__V1__ServiceResponse *s = ec_arena_alloc(a, sizeof(*s));
        grpc__reflection__v1__service_response__init(s);
        s->name = (char *)srv->services[i].name;
        ls->service[ls->n_service++] = s;
    }
    out->message_response_case = RESP(LIST_SERVICES_RESPONSE);
    out->list_services_response = ls;
}

static void answer(const struct rpc_server *srv, const struct rpc__reflect_index *idx,
                   const Grpc__Reflection__V1__ServerReflectionRequest *req,
                   Grpc__Reflection__V1__ServerReflectionResponse *out, struct ec_arena *a)
{
    enum rpc__symbol_kind kind;
    int file;
    switch (req->message_request_case) {
    case REQ(LIST_SERVICES):
        answer_services(out, a, srv);
        break;
    case REQ(FILE_BY_FILENAME):
        file = rpc__reflect_find_file(idx, req->file_by_filename);
        if (file < 0)
            answer_not_found(out, "file", req->file_by_filename, a);
        else
            answer_files(out, a, idx, file);
        break;
    case REQ(FILE_CONTAINING_SYMBOL):
        file = rpc__reflect_find_symbol(idx, req->file_containing_symbol, NULL);
        if (file < 0)
            answer_not_found(out, "symbol", req->file_containing_symbol, a);
        else
            answer_files(out, a, idx, file);
        break;
    case REQ(ALL_EXTENSION_NUMBERS_OF_TYPE): {
        /* proto3 has no extensions: a known message type has none, which is a valid answer. */
        const char *type = req->all_extension_numbers_of_type;
        file = rpc__reflect_find_symbol(idx, type, &kind);
        if (file < 0 || kind != RPC_SYM_MESSAGE) {
            answer_not_found(out, "message type", type, a);
            break;
        }
        Grpc__Reflection__V1__ExtensionNumberResponse *en = ec_arena_alloc(a, sizeof(*en));
        grpc__reflection__v1__extension_number_response__init(en);
        en->base_type_name = (char *)(type[0] == '.' ? type + 1 : type);
        out->message_response_case = RESP(ALL_EXTENSION_NUMBERS_RESPONSE);
        out->all_extension_numbers_response = en;
        break;
    }
    case REQ(FILE_CONTAINING_EXTENSION):
        /* proto3 declares no extensions, so there is never a file to return. */
        answer_not_found(out, "an extension of",
                         req->file_containing_extension != NULL
                             ? req->file_containing_extension->containing_type
                             : "",
                         a);
        break;
    default:
        answer_error(out, GRPC_CODE_INVALID_ARGUMENT,
                     (char *)"the request asks no question this server knows", a);
        break;
    }
}

static enum ec_status reflection_info(struct rpc_call *call, struct ec_err *err)
{
    const struct rpc_server *srv = rpc_call_service_data(call);
    const struct rpc__reflect_index *idx = rpc__reflect_index_embedded();
    struct ec_arena scratch; /* one request and its answer at a time */
    ec_arena_init(&scratch);
    enum ec_status st;
    for (;;) {
        ProtobufCMessage *m = NULL;
        st = rpc_stream_recv(call, &grpc__reflection__v1__server_reflection_request__descriptor,
                             &scratch, &m, err);
        if (st != EC_OK || m == NULL)
            break;
        const Grpc__Reflection__V1__ServerReflectionRequest *req = (const void *)m;
        Grpc__Reflection__V1__ServerReflectionResponse out =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
        out.valid_host = req->host;
        out.original_request = (Grpc__Reflection__V1__ServerReflectionRequest *)req;
        answer(srv, idx, req, &out, &scratch);
        st = rpc_stream_send(call, &out.base, err);
        ec_arena_reset(&scratch);
        if (st != EC_OK)
            break;
    }
    ec_arena_release(&scratch);
    return st;
}

static const struct rpc_method v1_methods[] = {
    { .path = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      .req = &grpc__reflection__v1__server_reflection_request__descriptor,
      .resp = &grpc__reflection__v1__server_reflection_response__descriptor,
      .kind = RPC_BIDI_STREAM,
      .allowed_roles = RPC_ROLES_ANY,
      .idempotent = true,
      .bidi = reflection_info },
};

static const struct rpc_method v1alpha_methods[] = {
    { .path = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
      .req = &grpc__reflection__v1__server_reflection_request__descriptor,
      .resp = &grpc__reflection__v1__server_reflection_response__descriptor,
      .kind = RPC_BIDI_STREAM,
      .allowed_roles = RPC_ROLES_ANY,
      .idempotent = true,
      .bidi = reflection_info },
};

const struct rpc_service rpc__reflection_v1 = { "grpc.reflection.v1.ServerReflection", v1_methods,
                                                1, NULL };
const struct rpc_service rpc__reflection_v1alpha = { "grpc.reflection.v1alpha.ServerReflection",
                                                     v1alpha_methods, 1, NULL };
