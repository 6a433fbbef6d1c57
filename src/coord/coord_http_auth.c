/* Who may call the coordinator's HTTP edge: the x-mesh-token gate that runs before routing (so an
 * unknown path answers 401 like a known one), and the signed-agent-request check of /heartbeat,
 * /pull and /result. */
#include "coord/coord_auth.h"
#include "coord/coord_http_int.h"
#include "common/ec_mem.h"

#include <string.h>

static bool set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

static bool is_get(const struct edge_req *req)
{
    return strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
}

enum ec_status coord__pre_route(struct edge_req *req, struct ec_err *err)
{
    const struct coord *c = req->ctx;
    const char *token = c->cfg->mesh_token;
    if (!set(token))
        return EC_OK; /* development without a token: refused in production by the config */
    /* Exact raw paths: an encoded or decorated variant is not exempt, so it needs the token. */
    if (strcmp(req->method, "POST") == 0 && strcmp(req->path, "/register") == 0)
        return EC_OK;
    if (is_get(req) && strcmp(req->path, "/health/runtime") == 0)
        return EC_OK;
    if (is_get(req) && strncmp(req->path, "/agent/diagnostics/", 19) == 0 &&
        set(c->cfg->portal_service_token) &&
        ec_ct_streq(edge_req_header(req, "x-portal-service-token"), c->cfg->portal_service_token))
        return EC_OK;
    if (ec_ct_streq(edge_req_header(req, "x-mesh-token"), token))
        return EC_OK;
    return ec_err_set(err, EC_EUNAUTH, "mesh_unauthorized", "%s", "");
}

bool coord__socket_is_loopback(const struct edge_req *req)
{
    const struct coord *c = req->ctx;
    const char *hdr = c->cfg->http.trust_proxy_header;
    /* With the header present, client_ip may be its value: only the socket may be believed. */
    if (set(hdr) && edge_req_header(req, hdr) != NULL)
        return false;
    return coord_ip_is_loopback(req->client_ip);
}

const char *coord__gate_ip(const struct edge_req *req)
{
    if (coord__socket_is_loopback(req))
        return req->client_ip;
    return coord_ip_is_loopback(req->client_ip) ? "" : req->client_ip;
}

enum ec_status coord__agent_auth(struct edge_req *req, struct coord_agent_req *out,
                                 struct ec_err *err)
{
    struct coord *c = req->ctx;
    memset(out, 0, sizeof(*out));
    enum ec_status st = coord__body_object(req, &out->body, err);
    if (st != EC_OK)
        return st;
    if ((st = coord__field_id(out->body, "agentId", true, &out->agent_id, err)) != EC_OK)
        return st;
    struct coord_signed_headers h = {
        .agent_id = edge_req_header(req, "x-agent-id"),
        .timestamp_ms = edge_req_header(req, "x-timestamp-ms"),
        .nonce = edge_req_header(req, "x-nonce"),
        .body_sha256 = edge_req_header(req, "x-body-sha256"),
        .signature = edge_req_header(req, "x-signature"),
    };
    bool is_signed = coord_signed_headers_present(&h);
    /* A signed request names its signer in x-agent-id; coord_auth_verify then insists that the
     * body's agentId is the same. */
    const char *who = is_signed ? h.agent_id : out->agent_id;
    if (!coord__id_ok(who, COORD_ID_MAX))
        return ec_err_set(err, EC_EUNAUTH, "signature_invalid", "x-agent-id is malformed");
    st = coord_agents_lookup(c->agents, who, req->arena, &out->agent, err);
    if (st == EC_OK)
        out->known = true;
    else if (st != EC_ENOTFOUND)
        return st;
    else if (!is_signed && h.agent_id == NULL && h.signature == NULL && h.nonce == NULL &&
             h.timestamp_ms == NULL && h.body_sha256 == NULL)
        return ec_err_set(err, EC_EUNAUTH, "mesh_unauthorized", "%s", "agent_not_registered");
    ec_err_clear(err);
    st = coord_auth_verify(c->auth, &h, "POST", req->path, req->body, req->body_len,
                           coord_agent_key_get(out->agent.key), out->agent_id,
                           coord__socket_is_loopback(req), ec_now_ms(), err);
    if (st != EC_OK)
        return st;   /* coord_auth_verify logged why */
    if (!out->known) /* signed by an agent that never registered: refused by verify already */
        return ec_err_set(err, EC_EUNAUTH, "mesh_unauthorized", "%s", "agent_not_registered");
    if (out->agent.revoked_reason != NULL)
        return ec_err_set(err, EC_EFORBIDDEN, "node_not_activated", "%s",
                          out->agent.revoked_reason);
    out->signed_ = is_signed;
    return EC_OK;
}
