/* `edgecoder rpc call`: resolves the method through reflection, turns the JSON request into
 * wire bytes with the dynamic descriptors and the edge's JSON codec, calls it, and prints each
 * response as one line of JSON. */
#include "edge/edge_pbjson.h"
#include "mesh/rpc_cli_int.h"

#include <string.h>

/* A reply is at most the channel's message cap (4 MiB by default); its JSON is bounded too. */
#define MAX_JSON_OUT ((size_t)64 << 20)

struct method_name {
    char service[512];
    const char *method;
};

/* "/pkg.Service/Method", "pkg.Service/Method" or "pkg.Service.Method". */
static bool parse_method(const char *in, struct method_name *out)
{
    if (in[0] == '/')
        in++;
    const char *cut = strchr(in, '/');
    if (cut == NULL)
        cut = strrchr(in, '.');
    if (cut == NULL || cut == in || cut[1] == '\0' || strchr(cut + 1, '/') != NULL ||
        strchr(cut + 1, '.') != NULL || (size_t)(cut - in) >= sizeof(out->service))
        return false;
    snprintf(out->service, sizeof(out->service), "%.*s", (int)(cut - in), in);
    out->method = cut + 1;
    return true;
}

static enum ec_status find_method(struct rpc_cli *cli, const struct method_name *name,
                                  const struct rpc_dyn_service **svc_out,
                                  const struct rpc_dyn_method **out, struct ec_err *err)
{
    enum ec_status st = rpc__cli_load(cli, name->service, err);
    if (st != EC_OK)
        return st;
    const struct rpc_dyn_service *svc = rpc_dyn_pool_service(cli->pool, name->service);
    if (svc == NULL)
        return ec_err_set(err, EC_ENOTFOUND, NULL, "\"%s\" is not a service", name->service);
    *svc_out = svc;
    *out = rpc_dyn_service_method(svc, name->method);
    if (*out != NULL)
        return EC_OK;
    char known[160] = "";
    for (size_t i = 0; i < svc->n_methods && strlen(known) < sizeof(known) - 40; i++)
        snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s", i ? ", " : "",
                 svc->methods[i].name);
    return ec_err_set(err, EC_ENOTFOUND, NULL, "service %s has no method \"%.60s\" (it has: %s)",
                      svc->full_name, name->method, known[0] ? known : "none");
}

struct printer {
    struct rpc_cli *cli;
    const struct rpc_dyn_message *type;
    const char *path;
    FILE *out;
};

/* Unpacks one reply with the dynamic descriptor and prints it as a line of JSON. */
static enum ec_status print_reply(void *ud, const uint8_t *msg, size_t len, struct ec_err *err)
{
    struct printer *p = ud;
    struct ec_arena arena;
    ProtobufCAllocator alloc;
    struct ec_buf text;
    ec_arena_init(&arena);
    edge_pbjson_allocator_init(&alloc, &arena);
    ec_buf_init(&text, MAX_JSON_OUT);
    struct edge_pbjson_opts opts = { .emit_defaults = p->cli->emit_defaults };
    enum ec_status st = EC_OK;
    ProtobufCMessage *reply = protobuf_c_message_unpack(p->type->desc, &alloc, len, msg);
    if (reply == NULL)
        st = ec_err_set(err, EC_EINTERNAL, NULL, "cannot decode the reply of %s as %s", p->path,
                        p->type->full_name);
    else
        st = edge_pbjson_encode(reply, &opts, &text, err);
    if (st == EC_OK) {
        fwrite(text.data, 1, text.len, p->out);
        fputc('\n', p->out);
        fflush(p->out);
    }
    ec_buf_release(&text);
    ec_arena_release(&arena);
    return st;
}

static enum ec_status encode_request(const struct rpc_dyn_method *md, const char *json, size_t len,
                                     struct ec_arena *arena, uint8_t **buf, size_t *buf_len,
                                     struct ec_err *err)
{
    struct edge_pbjson_opts strict = { .reject_unknown = true };
    ProtobufCMessage *req = NULL;
    struct ec_err why = { 0 };
    if (edge_pbjson_decode(md->input->desc, json, len, &strict, arena, &req, &why) != EC_OK)
        return ec_err_set(err, why.status, NULL, "bad request for %s: %s", md->input->full_name,
                          why.msg);
    *buf_len = protobuf_c_message_get_packed_size(req);
    *buf = ec_arena_alloc(arena, *buf_len);
    protobuf_c_message_pack(req, *buf);
    return EC_OK;
}

enum ec_status rpc_cli_call(struct rpc_cli *cli, const char *method, const char *json, size_t len,
                            FILE *out, struct ec_err *err)
{
    struct method_name name;
    if (!parse_method(method, &name))
        return ec_err_set(err, EC_EINVAL, NULL,
                          "cannot read \"%.100s\" as a method: use /package.Service/Method",
                          method);
    const struct rpc_dyn_service *svc;
    const struct rpc_dyn_method *md;
    enum ec_status st = find_method(cli, &name, &svc, &md, err);
    if (st != EC_OK)
        return st;
    struct ec_arena arena;
    ec_arena_init(&arena);
    uint8_t *req = NULL;
    size_t req_len = 0;
    char *path = ec_arena_sprintf(&arena, "/%s/%s", svc->full_name, md->name);
    struct printer p = { cli, md->output, path, out };
    st = encode_request(md, json, len, &arena, &req, &req_len, err);
    if (st == EC_OK && md->server_streaming) {
        st = rpc_server_stream_raw(cli->ch, path, req, req_len, print_reply, &p, &cli->call, err);
    } else if (st == EC_OK) {
        uint8_t *resp = NULL;
        size_t resp_len = 0;
        st = rpc_unary_raw(cli->ch, path, req, req_len, &arena, &resp, &resp_len, &cli->call, err);
        if (st == EC_OK)
            st = print_reply(&p, resp, resp_len, err);
    }
    ec_arena_release(&arena);
    return st;
}
