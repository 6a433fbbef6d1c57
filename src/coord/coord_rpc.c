/* The gRPC Coordinator service for the control plane (caller role control-plane, over mTLS, with
 * x-mesh-token metadata when MESH_AUTH_TOKEN is set): the same service functions as GET
 * /capacity, /status and /tasks/:taskId. The runtime adds health and reflection. */
#include "coord/coord.h"
#include "edge/edge_pbjson.h"
#include "mesh/rpc.h"

#include <string.h>

#define LIST_DEFAULT 1000
#define LIST_MAX     10000

static enum ec_status check_token(struct rpc_call *call, const struct coord *c, struct ec_err *err)
{
    const char *token = c->cfg->mesh_token;
    if (token == NULL || token[0] == '\0')
        return EC_OK;
    if (ec_ct_streq(rpc_call_metadata(call, "x-mesh-token"), token))
        return EC_OK;
    return ec_err_set(err, EC_EUNAUTH, "mesh_unauthorized", "x-mesh-token is missing or wrong");
}

static enum ec_status rpc_list_agents(struct rpc_call *call, const ProtobufCMessage *req,
                                      ProtobufCMessage **resp, struct ec_err *err)
{
    struct coord *c = rpc_call_service_data(call);
    enum ec_status st = check_token(call, c, err);
    if (st != EC_OK)
        return st;
    const Edgecoder__V1__ListAgentsRequest *in = (const void *)req;
    if (in->limit > LIST_MAX)
        return ec_err_set(err, EC_EINVAL, NULL, "limit: %u is over %d", in->limit, LIST_MAX);
    struct ec_arena *arena = rpc_call_arena(call);
    Edgecoder__V1__ListAgentsReply *out = ec_arena_alloc(arena, sizeof(*out));
    edgecoder__v1__list_agents_reply__init(out);
    struct coord_agents_filter f = { .connected_only = in->connected_only,
                                     .with_owner = true,
                                     .limit = in->limit ? in->limit : LIST_DEFAULT };
    coord_agents_list(c->agents, arena, &f, ec_now_ms(), &out->agents, &out->n_agents);
    *resp = &out->base;
    return EC_OK;
}

static enum ec_status rpc_get_capacity(struct rpc_call *call, const ProtobufCMessage *req,
                                       ProtobufCMessage **resp, struct ec_err *err)
{
    struct coord *c = rpc_call_service_data(call);
    enum ec_status st = check_token(call, c, err);
    if (st != EC_OK)
        return st;
    struct ec_arena *arena = rpc_call_arena(call);
    Edgecoder__V1__CapacityReply *out = ec_arena_alloc(arena, sizeof(*out));
    Edgecoder__V1__CapacityTotals *totals = ec_arena_alloc(arena, sizeof(*totals));
    coord_capacity_get(c, arena, out, totals);
    *resp = &out->base;
    return EC_OK;
}

static enum ec_status rpc_get_status(struct rpc_call *call, const ProtobufCMessage *req,
                                     ProtobufCMessage **resp, struct ec_err *err)
{
    struct coord *c = rpc_call_service_data(call);
    enum ec_status st = check_token(call, c, err);
    if (st != EC_OK)
        return st;
    Edgecoder__V1__StatusReply *out = ec_arena_alloc(rpc_call_arena(call), sizeof(*out));
    if ((st = coord_status_get(c, out, err)) != EC_OK)
        return st;
    *resp = &out->base;
    return EC_OK;
}

static void json_decref_cleanup(void *p)
{
    json_decref(p);
}

/* The queue describes a task as JSON (GET /tasks/:taskId); the reply message mirrors it field for
 * field, so the codec turns one into the other. */
static enum ec_status rpc_get_task(struct rpc_call *call, const ProtobufCMessage *req,
                                   ProtobufCMessage **resp, struct ec_err *err)
{
    struct coord *c = rpc_call_service_data(call);
    enum ec_status st = check_token(call, c, err);
    if (st != EC_OK)
        return st;
    const Edgecoder__V1__GetTaskRequest *in = (const void *)req;
    if (in->task_id == NULL || in->task_id[0] == '\0')
        return ec_err_set(err, EC_EINVAL, NULL, "task_id: is required");
    json_t *task = NULL;
    if ((st = coord_queue_task_json(c->queue, in->task_id, &task, err)) != EC_OK)
        return st;
    struct ec_arena *arena = rpc_call_arena(call);
    ec_arena_defer(arena, json_decref_cleanup, task);
    return edge_pbjson_decode_json(&edgecoder__v1__task_reply__descriptor, task, NULL, arena, resp,
                                   err);
}

#define METHOD(name, req_t, resp_t, fn)                                                       \
    {                                                                                         \
        .path = "/" COORD_RPC_SERVICE "/" name, .req = &edgecoder__v1__##req_t##__descriptor, \
        .resp = &edgecoder__v1__##resp_t##__descriptor, .kind = RPC_UNARY,                    \
        .allowed_roles = RPC_ROLE_CONTROL_PLANE, .idempotent = true, .unary = fn              \
    }

const struct rpc_method coord__rpc_methods[] = {
    METHOD("ListAgents", list_agents_request, list_agents_reply, rpc_list_agents),
    METHOD("GetCapacity", get_capacity_request, capacity_reply, rpc_get_capacity),
    METHOD("GetStatus", get_status_request, status_reply, rpc_get_status),
    METHOD("GetTask", get_task_request, task_reply, rpc_get_task),
};

const size_t coord__rpc_nmethods = sizeof(coord__rpc_methods) / sizeof(coord__rpc_methods[0]);
