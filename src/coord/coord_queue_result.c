/* Answers and expiry: accepting a result from the current lease's holder (a repeat of the
 * accepted one is idempotent), releasing or failing the subtasks that depend on it, and the
 * sweep that returns expired leases to the queue or fails them once out of attempts. */
#include "coord/coord_ledger.h"
#include "coord/coord_queue.h"
#include "coord/coord_queue_int.h"

#include "common/ec_mem.h"

#include <stdlib.h>
#include <string.h>

/* --- dependants --------------------------------------------------------------------------- */

enum ec_status coord_queue__release_dependants(struct ec_pg_conn *conn, struct ec_arena *arena,
                                               const char *task_id, int index, int *released,
                                               struct ec_err *err)
{
    if (released != NULL)
        *released = 0;
    const char *params[] = { task_id, coord_queue__i64(arena, index) };
    enum ec_status st = ec_pg_query_deferred(conn,
                                             "UPDATE subtasks SET deps_pending = deps_pending - 1 "
                                             "WHERE task_id = $1 AND state = 'blocked' "
                                             "AND $2::integer = ANY (depends_on)",
                                             2, params, err);
    if (st != EC_OK)
        return st;
    /* The original's context block (SubtaskDepTracker.buildDependencyContext): one line per
     * dependency with an output, numbered by its place in dependsOn, nothing if none. */
    struct pg_result *res;
    st = ec_pg_query(
        conn,
        "UPDATE subtasks t SET state = 'queued', input = coalesce(("
        " SELECT E'[Context from previous subtasks]\\n'"
        "  || string_agg('Subtask ' || d.ord || ' result: ' || r.output, E'\\n' ORDER BY d.ord)"
        "  || E'\\n\\n[Your task]\\n'"
        " FROM unnest(t.depends_on) WITH ORDINALITY AS d(idx, ord)"
        " JOIN subtasks s ON s.task_id = t.task_id AND s.subtask_index = d.idx"
        " JOIN results r ON r.subtask_id = s.subtask_id), '') || t.input "
        "WHERE t.task_id = $1 AND t.state = 'blocked' AND t.deps_pending = 0 "
        "RETURNING t.subtask_id",
        1, params, arena, &res, err);
    if (st != EC_OK)
        return st;
    if (released != NULL)
        *released = ec_pg_nrows(res);
    return EC_OK;
}

enum ec_status coord_queue__fail_dependants(struct ec_pg_conn *conn, struct ec_arena *arena,
                                            const char *task_id, int index, int64_t now_ms,
                                            struct ec_err *err)
{
    const char *params[] = { task_id, coord_queue__i64(arena, index),
                             coord_queue__i64(arena, now_ms) };
    return ec_pg_query(
        conn,
        "WITH RECURSIVE dead(idx) AS (SELECT $2::integer UNION "
        " SELECT s.subtask_index FROM subtasks s, dead WHERE s.task_id = $1"
        " AND s.state = 'blocked' AND dead.idx = ANY (s.depends_on)) "
        "UPDATE subtasks s SET state = 'failed', fail_reason = 'dependency_failed', "
        "finished_at_ms = $3::bigint FROM dead "
        "WHERE s.task_id = $1 AND s.subtask_index = dead.idx AND s.state = 'blocked'",
        3, params, NULL, NULL, err);
}

/* --- complete ----------------------------------------------------------------------------- */

struct complete_ctx {
    struct coord_queue *q;
    const struct coord_result *r;
    bool duplicate;
};

static enum ec_status check_result(const struct coord_result *r, struct ec_err *err)
{
    enum ec_status st;
    if ((st = coord_queue__check_subtask_id(r->subtask_id, err)) != EC_OK ||
        (st = coord_queue__check_id("agentId", r->agent_id, true, err)) != EC_OK)
        return st;
    if (r->output != NULL &&
        (st = coord_queue__check_text("output", r->output, COORD_QUEUE_TEXT_MAX, err)) != EC_OK)
        return st;
    if (r->error != NULL &&
        (st = coord_queue__check_text("error", r->error, COORD_QUEUE_ERROR_MAX, err)) != EC_OK)
        return st;
    if (r->report_nonce != NULL &&
        (st = coord_queue__check_text("reportNonce", r->report_nonce, COORD_QUEUE_NONCE_MAX,
                                      err)) != EC_OK)
        return st;
    if (r->report_signature != NULL &&
        (st = coord_queue__check_text("reportSignature", r->report_signature, COORD_QUEUE_NONCE_MAX,
                                      err)) != EC_OK)
        return st;
    if (r->duration_ms < 0)
        return ec_err_set(err, EC_EINVAL, NULL, "durationMs must not be negative");
    if (r->attempt < 0)
        return ec_err_set(err, EC_EINVAL, NULL, "attempt must not be negative");
    return EC_OK;
}

/* Not accepted: an identical repeat of the accepted answer (EC_OK, duplicate), or a conflict.
 * Runs after the subtask row was locked, so an answer committed meanwhile is seen. */
static enum ec_status not_accepted(struct ec_pg_conn *conn, struct ec_arena *a,
                                   struct complete_ctx *x, const char *const *params,
                                   const char *state, int attempt, struct ec_err *err)
{
    const struct coord_result *r = x->r;
    if (strcmp(state, "completed") == 0) {
        struct pg_result *res;
        enum ec_status st =
            ec_pg_query(conn,
                        "SELECT agent_id = $2 AND ok = $3::boolean AND output = $4 "
                        "AND error IS NOT DISTINCT FROM $5 AND duration_ms = $6::bigint "
                        "AND ($7::integer = 0 OR attempt = $7::integer) "
                        "FROM results WHERE subtask_id = $1",
                        7, params, a, &res, err);
        if (st != EC_OK)
            return st;
        if (ec_pg_nrows(res) == 1 && strcmp(ec_pg_value(res, 0, 0), "t") == 0) {
            x->duplicate = true;
            return EC_OK;
        }
        return ec_err_set(err, EC_ECONFLICT, "lease_not_held",
                          "subtask %.140s was answered already", r->subtask_id);
    }
    return ec_err_set(err, EC_ECONFLICT, "lease_not_held",
                      "agent %.128s does not hold attempt %d of subtask %.140s (%s, attempt %d)",
                      r->agent_id, r->attempt, r->subtask_id, state, attempt);
}

static enum ec_status complete_tx(struct ec_pg_conn *conn, struct ec_arena *a, void *p,
                                  struct ec_err *err)
{
    struct complete_ctx *x = p;
    const struct coord_result *r = x->r;
    x->duplicate = false;
    int64_t now = ec_now_ms();
    const char *params[] = { r->subtask_id,
                             r->agent_id,
                             r->ok ? "true" : "false",
                             r->output != NULL ? r->output : "",
                             r->error,
                             coord_queue__i64(a, r->duration_ms),
                             coord_queue__i64(a, r->attempt),
                             r->report_nonce,
                             r->report_signature,
                             coord_queue__i64(a, now),
                             coord_queue__i64(a, ec_mono_us() % COORD_QUEUE_COMPLETION_SHARDS) };
    struct pg_result *res;
    /* s locks the subtask (a concurrent repeat, or the expiry sweep, waits or skips it); u
     * completes it only if the agent holds the current lease and, when it names one, the same
     * attempt; then the answer, the attempt's outcome and the project's count, all at once.
     * The envelope key stays (an hour) so that an identical repeat can still be opened. */
    enum ec_status st = ec_pg_query(
        conn,
        "WITH s AS (SELECT subtask_id, state, attempt, lease_agent_id FROM subtasks "
        " WHERE subtask_id = $1 FOR UPDATE), "
        "u AS (UPDATE subtasks t SET state = 'completed', finished_at_ms = $10::bigint, "
        " lease_expires_at_ms = NULL FROM s WHERE t.subtask_id = s.subtask_id "
        " AND s.state = 'leased' AND s.lease_agent_id = $2 "
        " AND ($7::integer = 0 OR s.attempt = $7::integer) "
        " RETURNING t.task_id, t.project_id, t.subtask_index, t.attempt), "
        "r AS (INSERT INTO results (subtask_id, task_id, agent_id, attempt, ok, output, error, "
        " duration_ms, report_nonce, report_signature, received_at_ms) "
        " SELECT $1, u.task_id, $2, u.attempt, $3::boolean, $4, $5, $6::bigint, $8, $9, "
        " $10::bigint FROM u), "
        "a AS (UPDATE subtask_attempts x SET outcome = 'completed', ended_at_ms = $10::bigint "
        " FROM u WHERE x.subtask_id = $1 AND x.attempt = u.attempt), "
        "p AS (INSERT INTO project_completions (project_id, shard, completions) "
        " SELECT u.project_id, $11::smallint, 1 FROM u ON CONFLICT (project_id, shard) "
        " DO UPDATE SET completions = project_completions.completions + 1) "
        "SELECT s.state, s.attempt, u.task_id, u.subtask_index, t.has_dependencies "
        "FROM s LEFT JOIN u ON true LEFT JOIN tasks t ON t.task_id = u.task_id",
        11, params, a, &res, err);
    if (st != EC_OK)
        return st;
    if (ec_pg_nrows(res) == 0)
        return ec_err_set(err, EC_ENOTFOUND, "subtask_not_found", "subtask %.140s is not known",
                          r->subtask_id);
    int attempt = (int)coord_queue__int(res, 0, 1);
    if (ec_pg_isnull(res, 0, 2))
        return not_accepted(conn, a, x, params, ec_pg_value(res, 0, 0), attempt, err);

    const char *task_id = ec_pg_value(res, 0, 2);
    int index = (int)coord_queue__int(res, 0, 3);
    struct coord_ledger_event ev = {
        .event_type = "task_complete",
        .task_id = task_id, /* the stored one: original agents send the subtask id here */
        .subtask_id = r->subtask_id,
        .actor_id = r->agent_id,
        .payload_json =
            ec_arena_sprintf(a, "{\"attempt\":%d,\"ok\":%s}", attempt, r->ok ? "true" : "false"),
        .issued_at_ms = now,
    };
    if ((st = coord_ledger_record(conn, a, &ev, err)) != EC_OK)
        return st;
    if (strcmp(ec_pg_value(res, 0, 4), "t") == 0)
        return coord_queue__release_dependants(conn, a, task_id, index, NULL, err);
    return EC_OK;
}

enum ec_status coord_queue_complete(struct coord_queue *q, struct ec_arena *arena,
                                    const struct coord_result *r, bool *duplicate,
                                    struct ec_err *err)
{
    if (duplicate != NULL)
        *duplicate = false;
    enum ec_status st = check_result(r, err);
    if (st != EC_OK)
        return st;
    struct complete_ctx x = { .q = q, .r = r };
    st = ec_pg_tx(q->pool, EC_PG_READ_COMMITTED, arena, complete_tx, &x, err);
    if (st == EC_OK && duplicate != NULL)
        *duplicate = x.duplicate;
    return st;
}

/* --- expire ------------------------------------------------------------------------------- */

_Static_assert(COORD_QUEUE_EXPIRE_BATCH == 256, "the expiry statement spells the batch size");

struct expire_ctx {
    struct coord_queue *q;
    int64_t now_ms;
    bool first_round;
    int rows, requeued, failed;
};

static enum ec_status expire_tx(struct ec_pg_conn *conn, struct ec_arena *a, void *p,
                                struct ec_err *err)
{
    struct expire_ctx *x = p;
    x->rows = x->requeued = x->failed = 0;
    const char *now_s = coord_queue__i64(a, x->now_ms);
    enum ec_status st;
    if (x->first_round) {
        /* Envelope keys of subtasks answered over an hour ago are no longer needed. */
        const char *kp[] = { coord_queue__i64(a, x->now_ms - COORD_QUEUE_KEY_TTL_MS) };
        st = ec_pg_query(conn,
                         "UPDATE subtasks SET lease_key = NULL WHERE subtask_id IN ("
                         " SELECT subtask_id FROM subtasks WHERE lease_key IS NOT NULL"
                         " AND state <> 'leased' AND finished_at_ms < $1::bigint"
                         " LIMIT 1000 FOR UPDATE SKIP LOCKED)",
                         1, kp, NULL, NULL, err);
        if (st != EC_OK)
            return st;
    }
    const char *params[] = { now_s };
    struct pg_result *res;
    st = ec_pg_query(
        conn,
        "WITH due AS (SELECT subtask_id, lease_agent_id FROM subtasks "
        " WHERE state = 'leased' AND lease_expires_at_ms < $1::bigint "
        " ORDER BY lease_expires_at_ms LIMIT 256 FOR UPDATE SKIP LOCKED), "
        "u AS (UPDATE subtasks s SET "
        " state = CASE WHEN s.attempt >= s.max_attempts THEN 'failed' ELSE 'queued' END, "
        " fail_reason = CASE WHEN s.attempt >= s.max_attempts THEN 'attempts_exhausted' END, "
        " finished_at_ms = CASE WHEN s.attempt >= s.max_attempts THEN $1::bigint END, "
        " lease_agent_id = NULL, lease_claimed_at_ms = NULL, lease_expires_at_ms = NULL, "
        " lease_key = NULL FROM due WHERE s.subtask_id = due.subtask_id "
        " RETURNING s.subtask_id, s.task_id, s.subtask_index, s.attempt, s.state, "
        " due.lease_agent_id), "
        "a AS (UPDATE subtask_attempts x SET outcome = 'expired', ended_at_ms = $1::bigint "
        " FROM u WHERE x.subtask_id = u.subtask_id AND x.attempt = u.attempt) "
        "SELECT subtask_id, task_id, subtask_index, attempt, state, lease_agent_id FROM u",
        1, params, a, &res, err);
    if (st != EC_OK)
        return st;
    x->rows = ec_pg_nrows(res);
    for (int i = 0; i < x->rows; i++) {
        const char *subtask_id = ec_pg_value(res, i, 0);
        const char *task_id = ec_pg_value(res, i, 1);
        bool failed = strcmp(ec_pg_value(res, i, 4), "failed") == 0;
        const char *agent = ec_pg_value(res, i, 5);
        json_t *j = json_pack("{s:I,s:s?,s:s,s:s}", "attempt",
                              (json_int_t)coord_queue__int(res, i, 3), "agentId", agent, "reason",
                              "lease_expired", "outcome", failed ? "failed" : "requeued");
        char *payload = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (payload == NULL)
            return ec_err_set(err, EC_EINTERNAL, NULL, "cannot encode a requeue event");
        struct coord_ledger_event ev = { .event_type = "task_requeue",
                                         .task_id = task_id,
                                         .subtask_id = subtask_id,
                                         .actor_id = x->q->coordinator_id,
                                         .payload_json = ec_arena_strdup(a, payload),
                                         .issued_at_ms = x->now_ms };
        free(payload);
        if ((st = coord_ledger_record(conn, a, &ev, err)) != EC_OK)
            return st;
        if (failed) {
            x->failed++;
            st = coord_queue__fail_dependants(conn, a, task_id, (int)coord_queue__int(res, i, 2),
                                              x->now_ms, err);
            if (st != EC_OK)
                return st;
        } else {
            x->requeued++;
        }
    }
    return EC_OK;
}

enum ec_status coord_queue_expire(struct coord_queue *q, int64_t now_ms, int *requeued, int *failed,
                                  struct ec_err *err)
{
    int total_requeued = 0, total_failed = 0;
    enum ec_status st = EC_OK;
    struct ec_arena a;
    ec_arena_init(&a);
    for (int round = 0; round < COORD_QUEUE_EXPIRE_ROUNDS; round++) {
        struct expire_ctx x = { .q = q, .now_ms = now_ms, .first_round = round == 0 };
        st = ec_pg_tx(q->pool, EC_PG_READ_COMMITTED, &a, expire_tx, &x, err);
        ec_arena_reset(&a);
        if (st != EC_OK)
            break;
        total_requeued += x.requeued;
        total_failed += x.failed;
        if (x.rows < COORD_QUEUE_EXPIRE_BATCH)
            break;
    }
    ec_arena_release(&a);
    if (requeued != NULL)
        *requeued = total_requeued;
    if (failed != NULL)
        *failed = total_failed;
    return st;
}
