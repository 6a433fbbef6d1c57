/* The enrollment gate of POST /register: asks the portal (gRPC PortalInternal.ValidateNode)
 * whether a registration token belongs to an enrolled, email-verified, approved node, with the
 * original's decision order and reasons (§3.5), minus its spoofable-header loopback bypass. */
#ifndef COORD_GATE_H
#define COORD_GATE_H

#include "common/ec_arena.h"
#include "common/ec_status.h"
#include "mesh/rpc.h"

#include <stdbool.h>
#include <stdint.h>

struct coord_gate_opts {
    const char *portal_target; /* "host:port" of PortalInternal; NULL/"": validation disabled */
    struct rpc_tls tls;        /* this coordinator's mTLS identity */
    const char *service_token; /* PORTAL_SERVICE_TOKEN, sent as x-portal-service-token */
    int64_t timeout_ms;        /* 5000 */
};

struct coord_gate_decision {
    bool allowed;
    const char *reason;      /* static string or in the arena: "ok", "portal_validation_disabled",
                                "loopback_self_registration", "registration_token_required",
                                "registration_token_missing_cached_agent", "email_unverified",
                                "node_pending_coordinator_approval", "node_inactive",
                                "node_not_enrolled", "registration_token_invalid",
                                "portal_validation_failed_<code>", "portal_validation_unreachable",
                                "portal_validation_unreachable_cached_agent", ... */
    const char *owner_email; /* from the portal when it answered; else NULL */
};

struct coord_gate;

enum ec_status coord_gate_new(const struct coord_gate_opts *opts, struct coord_gate **out,
                              struct ec_err *err);
void coord_gate_free(struct coord_gate *g); /* NULL is a no-op */

/* Decision order: validation disabled -> allow; socket address is loopback (the caller passes
 * the socket address, never a header) -> allow; no token -> allow if agent_known else deny
 * "registration_token_required"; else ask the portal: its answer decides; unreachable or
 * timed out -> allow if agent_known ("..._cached_agent") else deny. Returns EC_OK with *out
 * filled in every case a decision was made (allowed or not). */
enum ec_status coord_gate_check(struct coord_gate *g, struct ec_arena *arena, const char *node_id,
                                const char *registration_token, const char *socket_ip,
                                bool agent_known, const char *request_id,
                                struct coord_gate_decision *out, struct ec_err *err);

/* Loopback per the socket address: 127.0.0.0/8, ::1, ::ffff:127.x.y.z. */
bool coord_ip_is_loopback(const char *ip);

#endif
