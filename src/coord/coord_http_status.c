/* Read-only routes about the coordinator: GET /status, /health/runtime (with the Ollama probe),
 * /capacity, /identity, /features, /models/available, /ledger/snapshot and /ledger/verify. */
#include "coord/coord_http_int.h"
#include "coord/coord_ledger.h"
#include "edge/edge_pbjson.h"

#include <stdlib.h>
#include <string.h>

static const struct edge_pbjson_opts with_defaults = { .emit_defaults = true };

enum ec_status coord__h_status(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    Edgecoder__V1__StatusReply out;
    enum ec_status st = coord_status_get(req->ctx, &out, err);
    if (st != EC_OK)
        return st;
    return edge_resp_pb(resp, &out.base, &with_defaults, err);
}

enum ec_status coord__h_health(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    struct coord *c = req->ctx;
    struct coord_ollama_probe probe;
    coord_ollama_probe_get(c, &probe);
    Edgecoder__V1__StatusReply status;
    struct ec_err serr = { 0 };
    bool db_ok = coord_status_get(c, &status, &serr) == EC_OK;
    json_t *coordinator =
        json_pack("{s:s,s:s}", "provider", c->cfg->local_model_provider, "peerId", c->peer_id);
    if (db_ok) {
        json_object_set_new(coordinator, "queued", json_integer(status.queued));
        json_object_set_new(coordinator, "agents", json_integer(status.agents));
        json_object_set_new(coordinator, "results", json_integer(status.results));
    }
    json_t *ollama =
        json_pack("{s:s,s:s,s:b,s:o,s:o,s:o}", "expectedProvider", c->cfg->local_model_provider,
                  "host", c->ollama_base, "reachable", probe.reachable, "version",
                  probe.version[0] ? json_string(probe.version) : json_null(), "modelCount",
                  probe.reachable ? json_integer(probe.model_count) : json_null(), "error",
                  probe.reachable ? json_null() : json_string(probe.error));
    /* ok speaks for the coordinator itself (its database); Ollama's state is reported beside
     * it. The status stays 200 so that a platform health check does not restart a machine
     * whose database is away. */
    edge_resp_json(resp, json_pack("{s:b,s:o,s:o,s:{s:b}}", "ok", db_ok, "coordinator", coordinator,
                                   "ollama", ollama, "database", "reachable", db_ok));
    return EC_OK;
}

enum ec_status coord__h_capacity(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    Edgecoder__V1__CapacityReply cap;
    Edgecoder__V1__CapacityTotals totals;
    coord_capacity_get(req->ctx, req->arena, &cap, &totals);
    json_t *out = NULL;
    enum ec_status st = edge_pbjson_to_json(&cap.base, &with_defaults, &out, err);
    if (st != EC_OK)
        return st;
    /* The HTTP form: telemetry as the object it was, the owner's email never. */
    size_t i;
    json_t *agent;
    json_array_foreach(json_object_get(out, "agents"), i, agent)
    {
        const char *pt = json_string_value(json_object_get(agent, "powerTelemetryJson"));
        json_object_set_new(agent, "powerTelemetry",
                            pt && pt[0] ? json_loads(pt, 0, NULL) : json_null());
        json_object_del(agent, "powerTelemetryJson");
        json_object_del(agent, "ownerEmail");
    }
    edge_resp_json(resp, out);
    return EC_OK;
}

enum ec_status coord__h_identity(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    const struct coord *c = req->ctx;
    edge_resp_json(resp, json_pack("{s:s,s:s,s:s,s:s}", "peerId", c->peer_id, "publicKeyPem",
                                   c->public_key_pem, "coordinatorUrl", c->cfg->public_url,
                                   "networkMode", c->cfg->network_mode));
    return EC_OK;
}

enum ec_status coord__h_features(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    const struct coord *c = req->ctx;
    bool public_mesh = strcmp(c->cfg->network_mode, "public_mesh") == 0;
    edge_resp_json(resp, json_pack("{s:b,s:b}", "public_mesh", public_mesh, "enterprise_overlay",
                                   !public_mesh));
    return EC_OK;
}

/* [{model, paramSize, agentCount, avgLoad}] over connected agents reporting an active model;
 * load is the leases an agent holds over its maxConcurrentTasks. */
enum ec_status coord__h_models(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    struct coord *c = req->ctx;
    struct coord_agents_filter f = { .connected_only = true };
    Edgecoder__V1__Agent **agents;
    size_t n;
    coord_agents_list(c->agents, req->arena, &f, ec_now_ms(), &agents, &n);
    json_t *by_model = json_object();
    for (size_t i = 0; i < n; i++) {
        const Edgecoder__V1__Agent *a = agents[i];
        if (a->active_model[0] == '\0')
            continue;
        json_t *m = json_object_get(by_model, a->active_model);
        if (m == NULL) {
            m = json_pack("{s:s,s:s,s:i,s:f}", "model", a->active_model, "paramSize",
                          a->active_model_param_size, "agentCount", 0, "loadSum", 0.0);
            json_object_set_new(by_model, a->active_model, m);
        }
        double load = a->max_concurrent_tasks > 0
                          ? (double)a->leases_held / (double)a->max_concurrent_tasks
                          : 0.0;
        json_object_set_new(m, "agentCount",
                            json_integer(json_integer_value(json_object_get(m, "agentCount")) + 1));
        json_object_set_new(m, "loadSum",
                            json_real(json_real_value(json_object_get(m, "loadSum")) + load));
    }
    json_t *out = json_array();
    const char *key;
    json_t *m;
    json_object_foreach(by_model, key, m)
    {
        double count = (double)json_integer_value(json_object_get(m, "agentCount"));
        json_object_set_new(m, "avgLoad",
                            json_real(json_real_value(json_object_get(m, "loadSum")) / count));
        json_object_del(m, "loadSum");
        json_array_append(out, m);
    }
    json_decref(by_model);
    edge_resp_json(resp, out);
    return EC_OK;
}

enum ec_status coord__h_ledger_snapshot(struct edge_req *req, struct edge_resp *resp,
                                        struct ec_err *err)
{
    struct coord *c = req->ctx;
    const char *limit_text = edge_req_query(req, "limit");
    size_t limit = 0;
    if (limit_text != NULL) {
        char *end = NULL;
        long v = strtol(limit_text, &end, 10);
        if (end == limit_text || *end != '\0' || v < 1 || v > 5000)
            return ec_err_set(err, EC_EINVAL, NULL, "limit: expected an integer in 1..5000");
        limit = (size_t)v;
    }
    json_t *out = NULL;
    enum ec_status st = coord_ledger_snapshot(c->ledger, limit, &out, err);
    if (st != EC_OK)
        return st;
    edge_resp_json(resp, out);
    return EC_OK;
}

enum ec_status coord__h_ledger_verify(struct edge_req *req, struct edge_resp *resp,
                                      struct ec_err *err)
{
    struct coord *c = req->ctx;
    json_t *out = NULL;
    enum ec_status st = coord_ledger_verify(c->ledger, &out, err);
    if (st != EC_OK)
        return st;
    edge_resp_json(resp, out);
    return EC_OK;
}
