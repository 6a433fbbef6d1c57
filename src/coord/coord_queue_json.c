/* GET /tasks/:taskId: a task with its subtasks, their answers and every attempt, read in one
 * snapshot. The original could not read results back at all. */
#include "coord/coord_queue.h"
#include "coord/coord_queue_int.h"

#include <stdlib.h>
#include <string.h>

static json_t *jtext(const struct pg_result *res, int row, int col)
{
    const char *v = ec_pg_value(res, row, col);
    return v != NULL ? json_string(v) : json_null();
}

static json_t *jint(const struct pg_result *res, int row, int col)
{
    return ec_pg_isnull(res, row, col) ? json_null()
                                       : json_integer(coord_queue__int(res, row, col));
}

static json_t *jbool(const struct pg_result *res, int row, int col)
{
    return json_boolean(strcmp(ec_pg_value(res, row, col), "t") == 0);
}

/* The task's status from its subtasks' states. */
static const char *task_status(int n, int completed, int failed, int leased)
{
    if (completed + failed == n)
        return failed > 0 ? "failed" : "completed";
    if (completed + failed + leased > 0)
        return "running";
    return "queued";
}

struct json_ctx {
    const char *task_id;
    json_t *out;
};

enum {
    S_ID,
    S_INDEX,
    S_STATE,
    S_ATTEMPT,
    S_MAX,
    S_INPUT,
    S_DEPS,
    S_KIND,
    S_LANG,
    S_TIMEOUT,
    S_EXPIRES,
    S_AGENT,
    S_FAIL,
    S_FINISHED,
    R_PRESENT,
    R_AGENT,
    R_ATTEMPT,
    R_OK,
    R_OUTPUT,
    R_ERROR,
    R_DURATION,
    R_RECEIVED
};

static json_t *subtask_json(const struct pg_result *s, int i)
{
    json_t *result = json_null();
    if (strcmp(ec_pg_value(s, i, R_PRESENT), "t") == 0)
        result = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "agentId", jtext(s, i, R_AGENT),
                           "attempt", jint(s, i, R_ATTEMPT), "ok", jbool(s, i, R_OK), "output",
                           jtext(s, i, R_OUTPUT), "error", jtext(s, i, R_ERROR), "durationMs",
                           jint(s, i, R_DURATION), "receivedAtMs", jint(s, i, R_RECEIVED));
    bool leased = strcmp(ec_pg_value(s, i, S_STATE), "leased") == 0;
    json_t *deps = json_loads(ec_pg_value(s, i, S_DEPS), 0, NULL);
    return json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:[]}",
                     "subtaskId", jtext(s, i, S_ID), "index", jint(s, i, S_INDEX), "state",
                     jtext(s, i, S_STATE), "attempt", jint(s, i, S_ATTEMPT), "maxAttempts",
                     jint(s, i, S_MAX), "kind", jtext(s, i, S_KIND), "language",
                     jtext(s, i, S_LANG), "timeoutMs", jint(s, i, S_TIMEOUT), "input",
                     jtext(s, i, S_INPUT), "dependsOn", deps != NULL ? deps : json_array(),
                     "leaseAgentId", leased ? jtext(s, i, S_AGENT) : json_null(),
                     "leaseExpiresAtMs", jint(s, i, S_EXPIRES), "failReason", jtext(s, i, S_FAIL),
                     "finishedAtMs", jint(s, i, S_FINISHED), "result", result, "attempts");
}

static enum ec_status json_tx(struct ec_pg_conn *conn, struct ec_arena *a, void *p,
                              struct ec_err *err)
{
    struct json_ctx *x = p;
    json_decref(x->out);
    x->out = NULL;
    const char *params[] = { x->task_id };
    struct pg_result *t, *s, *at;
    enum ec_status st =
        ec_pg_query(conn,
                    "SELECT task_id, prompt, language, snapshot_ref, project_id, tenant_id, "
                    "submitter_account_id, resource_class, priority, requested_model, "
                    "decomposition_fallback, created_at_ms FROM tasks WHERE task_id = $1",
                    1, params, a, &t, err);
    if (st != EC_OK)
        return st;
    if (ec_pg_nrows(t) == 0)
        return ec_err_set(err, EC_ENOTFOUND, "task_not_found", "task %.128s is not known",
                          x->task_id);
    st = ec_pg_query(
        conn,
        "SELECT s.subtask_id, s.subtask_index, s.state, s.attempt, s.max_attempts, s.input, "
        "array_to_json(s.depends_on), s.kind, s.language, s.timeout_ms, s.lease_expires_at_ms, "
        "s.lease_agent_id, s.fail_reason, s.finished_at_ms, r.subtask_id IS NOT NULL, "
        "r.agent_id, r.attempt, r.ok, r.output, r.error, r.duration_ms, r.received_at_ms "
        "FROM subtasks s LEFT JOIN results r ON r.subtask_id = s.subtask_id "
        "WHERE s.task_id = $1 ORDER BY s.subtask_index",
        1, params, a, &s, err);
    if (st != EC_OK)
        return st;
    st = ec_pg_query(conn,
                     "SELECT s.subtask_index, x.attempt, x.agent_id, x.claimed_at_ms, "
                     "x.ended_at_ms, x.outcome FROM subtasks s "
                     "JOIN subtask_attempts x ON x.subtask_id = s.subtask_id "
                     "WHERE s.task_id = $1 ORDER BY s.subtask_index, x.attempt",
                     1, params, a, &at, err);
    if (st != EC_OK)
        return st;

    json_t *subtasks = json_array();
    int n = ec_pg_nrows(s), completed = 0, failed = 0, leased = 0, k = 0;
    for (int i = 0; i < n; i++) {
        const char *state = ec_pg_value(s, i, S_STATE);
        completed += strcmp(state, "completed") == 0;
        failed += strcmp(state, "failed") == 0;
        leased += strcmp(state, "leased") == 0;
        json_t *sj = subtask_json(s, i);
        if (sj == NULL) {
            json_decref(subtasks);
            return ec_err_set(err, EC_EINTERNAL, NULL, "cannot encode a subtask of %.128s",
                              x->task_id);
        }
        json_t *attempts = json_object_get(sj, "attempts");
        int64_t index = coord_queue__int(s, i, S_INDEX);
        /* Both lists are ordered by subtask index. */
        for (; k < ec_pg_nrows(at) && coord_queue__int(at, k, 0) == index; k++)
            json_array_append_new(attempts, json_pack("{s:o,s:o,s:o,s:o,s:o}", "attempt",
                                                      jint(at, k, 1), "agentId", jtext(at, k, 2),
                                                      "claimedAtMs", jint(at, k, 3), "endedAtMs",
                                                      jint(at, k, 4), "outcome", jtext(at, k, 5)));
        json_array_append_new(subtasks, sj);
    }
    x->out = json_pack(
        "{s:o,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "taskId", jtext(t, 0, 0),
        "status", task_status(n, completed, failed, leased), "prompt", jtext(t, 0, 1), "language",
        jtext(t, 0, 2), "snapshotRef", jtext(t, 0, 3), "projectId", jtext(t, 0, 4), "tenantId",
        jtext(t, 0, 5), "submitterAccountId", jtext(t, 0, 6), "resourceClass", jtext(t, 0, 7),
        "priority", jint(t, 0, 8), "requestedModel", jtext(t, 0, 9), "decompositionFallback",
        jbool(t, 0, 10), "createdAtMs", jint(t, 0, 11), "subtasks", subtasks);
    if (x->out == NULL)
        return ec_err_set(err, EC_EINTERNAL, NULL, "cannot encode task %.128s", x->task_id);
    return EC_OK;
}

enum ec_status coord_queue_task_json(struct coord_queue *q, const char *task_id, json_t **out,
                                     struct ec_err *err)
{
    *out = NULL;
    enum ec_status st = coord_queue__check_id("taskId", task_id, true, err);
    if (st != EC_OK)
        return st;
    struct json_ctx x = { .task_id = task_id };
    struct ec_arena a;
    ec_arena_init(&a);
    st = ec_pg_tx(q->pool, EC_PG_REPEATABLE_READ, &a, json_tx, &x, err);
    ec_arena_release(&a);
    if (st != EC_OK) {
        json_decref(x.out);
        return st;
    }
    *out = x.out;
    return EC_OK;
}
