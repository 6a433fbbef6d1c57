/* Agent diagnostics (POST /agent/diagnostics, GET /agent/diagnostics/:agentId): events kept in
 * PostgreSQL, the newest 250 per agent. */
#include "coord/coord_agents_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct diag_call {
    const char *params[7];
    int stored;
    struct pg_result *res;
};

static enum ec_status diag_store_tx(struct ec_pg_conn *conn, struct ec_arena *arena, void *ctx,
                                    struct ec_err *err)
{
    struct diag_call *call = ctx;
    struct pg_result *res = NULL;
    enum ec_status st = ec_pg_query(
        conn,
        "WITH ins AS (INSERT INTO agent_diagnostics (agent_id, event_at_ms, message, source, "
        "runtime_state, model_state, received_at_ms) SELECT $1, e.event_at_ms, e.message, $3, "
        "$4, $5, $6::bigint FROM jsonb_to_recordset($2::jsonb) AS e(event_at_ms bigint, "
        "message text) RETURNING 1) SELECT count(*) FROM ins",
        6, call->params, arena, &res, err);
    if (st != EC_OK && strcmp(ec_pg_conn_sqlstate(conn), "23503") == 0)
        return ec_err_set(err, EC_EUNAUTH, "agent_not_registered", "%s", "");
    if (st != EC_OK)
        return st;
    call->stored = atoi(ec_pg_value(res, 0, 0));
    return ec_pg_query(conn,
                       "DELETE FROM agent_diagnostics WHERE agent_id = $1 AND id < "
                       "(SELECT id FROM agent_diagnostics WHERE agent_id = $1 "
                       "ORDER BY id DESC OFFSET 249 LIMIT 1)",
                       1, call->params, NULL, NULL, err);
}

enum ec_status coord_agents_diag_store(struct coord_agents *a, struct ec_arena *arena,
                                       const char *agent_id, const char *events_json,
                                       const char *source, const char *runtime_state,
                                       const char *model_state, int64_t now_ms, int *stored,
                                       struct ec_err *err)
{
    char now[24];
    snprintf(now, sizeof(now), "%lld", (long long)now_ms);
    struct diag_call call = {
        .params = { agent_id, events_json, source, runtime_state, model_state, now },
    };
    enum ec_status st = ec_pg_tx(a->pool, EC_PG_READ_COMMITTED, arena, diag_store_tx, &call, err);
    *stored = call.stored;
    return st;
}

static enum ec_status diag_read_tx(struct ec_pg_conn *conn, struct ec_arena *arena, void *ctx,
                                   struct ec_err *err)
{
    struct diag_call *call = ctx;
    return ec_pg_query(conn,
                       "SELECT event_at_ms, message, source, runtime_state, model_state FROM "
                       "agent_diagnostics WHERE agent_id = $1 ORDER BY id DESC LIMIT 200",
                       1, call->params, arena, &call->res, err);
}

enum ec_status coord_agents_diag_read(struct coord_agents *a, struct ec_arena *arena,
                                      const char *agent_id, json_t **out, struct ec_err *err)
{
    struct diag_call call = { .params = { agent_id } };
    enum ec_status st = ec_pg_with_conn(a->pool, arena, diag_read_tx, &call, err);
    if (st != EC_OK)
        return st;
    json_t *events = json_array();
    int64_t latest = 0;
    for (int r = 0; r < ec_pg_nrows(call.res); r++) {
        int64_t at = strtoll(ec_pg_value(call.res, r, 0), NULL, 10);
        latest = at > latest ? at : latest;
        json_array_append_new(
            events, json_pack("{s:I,s:s,s:s?,s:s?,s:s?}", "eventAtMs", (json_int_t)at, "message",
                              ec_pg_value(call.res, r, 1), "source", ec_pg_value(call.res, r, 2),
                              "runtimeState", ec_pg_value(call.res, r, 3), "modelState",
                              ec_pg_value(call.res, r, 4)));
    }
    size_t count = json_array_size(events);
    *out =
        json_pack("{s:b,s:s,s:o,s:I,s:o}", "ok", 1, "agentId", agent_id, "events", events, "count",
                  (json_int_t)count, "latestEventAtMs", count ? json_integer(latest) : json_null());
    return EC_OK;
}
