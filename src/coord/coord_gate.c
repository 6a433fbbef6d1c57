/* The enrollment gate of POST /register: the original's decision order and reasons (§3.5), asking
 * the portal over gRPC (PortalInternal.ValidateNode) on one shared channel. The loopback exemption
 * looks at the socket address only: the original believed fly-client-ip and friends, so anyone
 * could claim to be 127.0.0.1. */
#include "coord/coord_gate.h"

#include "common/ec_crypto.h"
#include "common/ec_log.h"
#include "common/ec_mem.h"

#include "edgecoder/v1/portal_internal.pb-c.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#define VALIDATE_NODE_PATH "/edgecoder.v1.PortalInternal/ValidateNode"
/* Registration tokens are 64 hex characters; anything much longer is not one. */
#define TOKEN_MAX 512

struct coord_gate {
    struct rpc_channel *channel; /* NULL: validation disabled */
    char *service_token;         /* owned; wiped at free; NULL: none configured */
    int64_t timeout_ms;
};

/* Reasons the portal gives for a refusal (original-system.md §3 status vocabulary). */
static const char *const portal_reasons[] = {
    "node_not_enrolled",
    "node_kind_mismatch",
    "registration_token_invalid",
    "email_unverified",
    "node_pending_coordinator_approval",
    "node_inactive",
};

static const char *portal_reason(const char *s)
{
    if (s == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof(portal_reasons) / sizeof(portal_reasons[0]); i++)
        if (strcmp(s, portal_reasons[i]) == 0)
            return portal_reasons[i];
    return NULL;
}

bool coord_ip_is_loopback(const char *ip)
{
    if (ip == NULL)
        return false;
    struct in_addr v4;
    if (inet_pton(AF_INET, ip, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    struct in6_addr v6;
    if (inet_pton(AF_INET6, ip, &v6) != 1)
        return false;
    static const uint8_t loopback6[16] = { [15] = 1 };
    static const uint8_t mapped_prefix[12] = { [10] = 0xff, [11] = 0xff };
    if (memcmp(v6.s6_addr, loopback6, 16) == 0)
        return true;
    return memcmp(v6.s6_addr, mapped_prefix, 12) == 0 && v6.s6_addr[12] == 127;
}

enum ec_status coord_gate_new(const struct coord_gate_opts *opts, struct coord_gate **out,
                              struct ec_err *err)
{
    *out = NULL;
    struct coord_gate *g = ec_xcalloc(1, sizeof(*g));
    g->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 5000;
    if (opts->portal_target != NULL && opts->portal_target[0] != '\0') {
        struct rpc_channel_opts copts = { .tls = opts->tls };
        g->channel = rpc_channel_new(opts->portal_target, &copts, err);
        if (g->channel == NULL) {
            free(g);
            return err != NULL ? err->status : EC_EINVAL;
        }
        if (opts->service_token != NULL && opts->service_token[0] != '\0')
            g->service_token = ec_xstrdup(opts->service_token);
    }
    *out = g;
    return EC_OK;
}

void coord_gate_free(struct coord_gate *g)
{
    if (g == NULL)
        return;
    rpc_channel_free(g->channel);
    if (g->service_token != NULL) {
        ec_crypto_wipe(g->service_token, strlen(g->service_token));
        free(g->service_token);
    }
    free(g);
}

static enum ec_status decide(struct coord_gate_decision *out, bool allowed, const char *reason)
{
    out->allowed = allowed;
    out->reason = reason;
    return EC_OK;
}

/* An OK reply: allowed only when the portal says so and the node is active; a refusal keeps the
 * portal's reason when it is one of the vocabulary, else says why from the flags, as the
 * original derived it. */
static enum ec_status decide_reply(const Edgecoder__V1__ValidateNodeReply *r,
                                   struct coord_gate_decision *out)
{
    if (r->owner_email != NULL && r->owner_email[0] != '\0')
        out->owner_email = r->owner_email; /* in the call's arena */
    if (r->allowed && r->active)
        return decide(out, true, "ok");
    const char *reason = portal_reason(r->reason);
    if (reason == NULL)
        reason = !r->email_verified  ? "email_unverified"
                 : !r->node_approved ? "node_pending_coordinator_approval"
                                     : "node_inactive";
    return decide(out, false, reason);
}

/* A failed call: unreachable or timed out -> the cached-agent path; an error the portal chose ->
 * its reason if it is one of the vocabulary, else portal_validation_failed_<code>. */
static enum ec_status decide_error(struct ec_arena *arena, const struct ec_err *call_err,
                                   bool agent_known, const char *node_id,
                                   struct coord_gate_decision *out)
{
    if (call_err->status == EC_EUNAVAIL || call_err->status == EC_ETIMEOUT) {
        EC_WARN("portal validation unreachable", EC_LS("node_id", node_id),
                EC_LS("error", call_err->msg), EC_LB("cached_agent", agent_known));
        return agent_known ? decide(out, true, "portal_validation_unreachable_cached_agent")
                           : decide(out, false, "portal_validation_unreachable");
    }
    const char *code = ec_err_code(call_err); /* snake_case: the client interns only those */
    EC_WARN("portal validation failed", EC_LS("node_id", node_id), EC_LS("code", code),
            EC_LS("error", call_err->msg));
    const char *reason = portal_reason(code);
    if (reason != NULL)
        return decide(out, false, reason);
    return decide(out, false, ec_arena_sprintf(arena, "portal_validation_failed_%s", code));
}

enum ec_status coord_gate_check(struct coord_gate *g, struct ec_arena *arena, const char *node_id,
                                const char *registration_token, const char *socket_ip,
                                bool agent_known, const char *request_id,
                                struct coord_gate_decision *out, struct ec_err *err)
{
    *out = (struct coord_gate_decision){ 0 };
    if (g->channel == NULL)
        return decide(out, true, "portal_validation_disabled");
    if (coord_ip_is_loopback(socket_ip))
        return decide(out, true, "loopback_self_registration");
    if (registration_token == NULL || registration_token[0] == '\0')
        return agent_known ? decide(out, true, "registration_token_missing_cached_agent")
                           : decide(out, false, "registration_token_required");
    if (strlen(registration_token) > TOKEN_MAX)
        return decide(out, false, "registration_token_invalid");

    Edgecoder__V1__ValidateNodeRequest req = EDGECODER__V1__VALIDATE_NODE_REQUEST__INIT;
    req.node_id = (char *)(node_id != NULL ? node_id : "");
    req.node_kind = (char *)"agent";
    req.registration_token = (char *)registration_token;
    req.source_ip = (char *)(socket_ip != NULL ? socket_ip : "");
    struct rpc_md md[2];
    size_t n_md = 0;
    if (g->service_token != NULL)
        md[n_md++] = (struct rpc_md){ "x-portal-service-token", g->service_token };
    if (request_id != NULL && request_id[0] != '\0')
        md[n_md++] = (struct rpc_md){ "x-request-id", request_id };
    struct rpc_call_opts copts = { .timeout_ms = g->timeout_ms, .md = md, .n_md = n_md };
    ProtobufCMessage *resp = NULL;
    struct ec_err call_err = { 0 };
    enum ec_status st =
        rpc_unary(g->channel, VALIDATE_NODE_PATH, &req.base,
                  &edgecoder__v1__validate_node_reply__descriptor, arena, &resp, &copts, &call_err);
    if (st != EC_OK)
        return decide_error(arena, &call_err, agent_known, req.node_id, out);
    return decide_reply((const Edgecoder__V1__ValidateNodeReply *)resp, out);
}
