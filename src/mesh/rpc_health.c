/* grpc.health.v1.Health on every server: Check, and Watch (the current status, then every change
 * until the caller leaves or the server shuts down). Statuses are per service name; "" is the
 * server as a whole. */
#include "common/ec_mem.h"
#include "mesh/rpc_grpc.h"

#include "grpc/health/v1/health.pb-c.h"

#include <string.h>

#define SERVICE_UNKNOWN GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN

/* The status of a service, or -1 when the server does not know it. */
static int lookup(struct rpc_server *srv, const char *service)
{
    int status = -1;
    pthread_mutex_lock(&srv->health_mu);
    for (size_t i = 0; i < srv->n_health && status < 0; i++)
        if (strcmp(srv->health[i].name, service) == 0)
            status = (int)srv->health[i].status;
    pthread_mutex_unlock(&srv->health_mu);
    return status;
}

void rpc_server_set_health(struct rpc_server *srv, const char *service, enum rpc_health status)
{
    if (strlen(service) >= sizeof(srv->health[0].name))
        return;
    pthread_mutex_lock(&srv->health_mu);
    size_t i = 0;
    while (i < srv->n_health && strcmp(srv->health[i].name, service) != 0)
        i++;
    if (i == srv->n_health && i < RPC__HEALTH_MAX) {
        strcpy(srv->health[i].name, service);
        srv->n_health++;
    }
    if (i < srv->n_health)
        srv->health[i].status = status;
    srv->health_gen++;
    pthread_mutex_unlock(&srv->health_mu);
    rpc__stream_wake_all(srv);
}

void rpc__health_set_all(struct rpc_server *srv, enum rpc_health status)
{
    pthread_mutex_lock(&srv->health_mu);
    for (size_t i = 0; i < srv->n_health; i++)
        srv->health[i].status = status;
    srv->health_gen++;
    pthread_mutex_unlock(&srv->health_mu);
    rpc__stream_wake_all(srv);
}

static enum ec_status health_check(struct rpc_call *call, const ProtobufCMessage *req,
                                   ProtobufCMessage **resp, struct ec_err *err)
{
    const Grpc__Health__V1__HealthCheckRequest *r = (const void *)req;
    int status = lookup(rpc_call_service_data(call), r->service);
    if (status < 0)
        return ec_err_set(err, EC_ENOTFOUND, "service_unknown", "unknown service \"%.100s\"",
                          r->service);
    Grpc__Health__V1__HealthCheckResponse *out = ec_arena_alloc(rpc_call_arena(call), sizeof(*out));
    grpc__health__v1__health_check_response__init(out);
    out->status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)status;
    *resp = &out->base;
    return EC_OK;
}

static enum ec_status health_watch(struct rpc_call *call, const ProtobufCMessage *req,
                                   struct ec_err *err)
{
    const Grpc__Health__V1__HealthCheckRequest *r = (const void *)req;
    struct rpc_server *srv = rpc_call_service_data(call);
    int last = -1;
    for (;;) {
        int status = lookup(srv, r->service);
        if (status < 0)
            status = SERVICE_UNKNOWN; /* Watch reports it rather than failing, per the spec */
        if (status != last) {
            Grpc__Health__V1__HealthCheckResponse out =
                GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
            out.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)status;
            enum ec_status st = rpc_stream_send(call, &out.base, err);
            if (st != EC_OK)
                return st;
            last = status;
        }
        pthread_mutex_lock(&srv->mu);
        bool stopping = srv->shutting_down;
        pthread_mutex_unlock(&srv->mu);
        if (stopping) /* NOT_SERVING was just sent; a watcher should not hold shutdown up */
            return ec_err_set(err, EC_EUNAVAIL, "shutting_down", "the server is shutting down");
        if (rpc_call_wait(call, 3600 * 1000) == RPC_WAIT_DONE)
            return EC_OK;
    }
}

static const struct rpc_method health_methods[] = {
    { .path = "/grpc.health.v1.Health/Check",
      .req = &grpc__health__v1__health_check_request__descriptor,
      .resp = &grpc__health__v1__health_check_response__descriptor,
      .kind = RPC_UNARY,
      .allowed_roles = RPC_ROLES_ANY,
      .idempotent = true,
      .unary = health_check },
    { .path = "/grpc.health.v1.Health/Watch",
      .req = &grpc__health__v1__health_check_request__descriptor,
      .resp = &grpc__health__v1__health_check_response__descriptor,
      .kind = RPC_SERVER_STREAM,
      .allowed_roles = RPC_ROLES_ANY,
      .idempotent = true,
      .server_stream = health_watch },
};

struct rpc_service rpc__health_service(struct rpc_server *srv)
{
    return (struct rpc_service){ "grpc.health.v1.Health", health_methods, 2, srv };
}
