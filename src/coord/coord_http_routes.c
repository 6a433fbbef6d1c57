/* The coordinator's HTTP route table (the original's paths, §2.1, plus GET /tasks/:taskId). The
 * x-mesh-token gate runs before it (coord__pre_route); agent routes verify signatures in their
 * handlers, where the parsed body is at hand. */
#include "coord/coord_http_int.h"

const struct edge_route coord__routes[] = {
    { "POST", "/register", NULL, COORD_BODY_MEDIUM, coord__h_register },
    { "POST", "/heartbeat", NULL, COORD_BODY_SMALL, coord__h_heartbeat },
    { "POST", "/pull", NULL, COORD_BODY_SMALL, coord__h_pull },
    { "POST", "/result", NULL, 2 * COORD_BODY_LARGE, coord__h_result },
    { "POST", "/submit", NULL, 2 * COORD_BODY_LARGE, coord__h_submit },
    { "POST", "/agent/diagnostics", NULL, COORD_BODY_MEDIUM, coord__h_diag_post },
    { "GET", "/agent/diagnostics/:agentId", NULL, 0, coord__h_diag_get },
    { "GET", "/tasks/:taskId", NULL, 0, coord__h_task },
    { "GET", "/status", NULL, 0, coord__h_status },
    { "GET", "/health/runtime", NULL, 0, coord__h_health },
    { "GET", "/capacity", NULL, 0, coord__h_capacity },
    { "GET", "/identity", NULL, 0, coord__h_identity },
    { "GET", "/features", NULL, 0, coord__h_features },
    { "GET", "/models/available", NULL, 0, coord__h_models },
    { "GET", "/ledger/snapshot", NULL, 0, coord__h_ledger_snapshot },
    { "GET", "/ledger/verify", NULL, 0, coord__h_ledger_verify },
};

const size_t coord__nroutes = sizeof(coord__routes) / sizeof(coord__routes[0]);
