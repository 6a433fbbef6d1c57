/* Claiming work: choose the best runnable subtask for an agent, lease it with FOR UPDATE SKIP
 * LOCKED (attempt + 1, expiry), seal it for agents with an X25519 key and keep the envelope key
 * with the lease; renewing an agent's leases; reading a lease's key back to open its result. */
#include "coord/coord_envelope.h"
#include "coord/coord_ledger.h"
#include "coord/coord_queue.h"
#include "coord/coord_queue_int.h"

#include "common/ec_crypto.h"
#include "common/ec_mem.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* --- the statement ------------------------------------------------------------------------ */

/* The WHERE clause of a runnable row for each variant; literal so that the planner matches the
 * partial indexes of 0002_queue.sql (subtasks_claim, _open, _model, _model_open). $1 is the
 * model; the variants without one test "$1 IS NULL" (always true), so that all four take the
 * same parameters. */
#define Q_ALL  "$1::text IS NULL AND s.state = 'queued'"
#define Q_OPEN "$1::text IS NULL AND s.state = 'queued' AND s.tenant_id IS NULL"
#define Q_MODEL \
    "s.state = 'queued' AND s.requested_model IS NOT NULL AND s.requested_model = $1::text"
#define Q_MODEL_OPEN Q_MODEL " AND s.tenant_id IS NULL"

/* One statement, one round trip:
 *  - pr: the projects with runnable work, by a loose index scan (one probe per project however
 *    many rows it holds), at most COORD_QUEUE_PROJECT_SCAN of them;
 *  - best: those projects ranked by completions (fewest first), then by their best row's
 *    priority and age; nothing is locked here;
 *  - c: the best row of project $2, or of the first-ranked project when $2 is NULL, that no
 *    concurrent claimer is locking (FOR UPDATE SKIP LOCKED);
 *  - u, a: its lease (attempt + 1, expiry $4 + timeout + grace $5, holder $3) and the attempt's
 *    history row.
 * It returns one row: the ranked project ids (JSON, NULL when nothing is runnable) and the
 * leased subtask (NULLs when none: every row of that project is being claimed right now, and
 * the caller tries the next projects by passing them as $2). */
#define CLAIM_SQL(W)                                                                            \
    "WITH RECURSIVE pr(project_id, n) AS ("                                                     \
    " (SELECT s.project_id, 1 FROM subtasks s WHERE " W " ORDER BY s.project_id LIMIT 1)"       \
    " UNION ALL"                                                                                \
    " SELECT (SELECT s.project_id FROM subtasks s WHERE " W " AND s.project_id > pr.project_id" \
    "         ORDER BY s.project_id LIMIT 1), pr.n + 1"                                         \
    " FROM pr WHERE pr.project_id IS NOT NULL AND pr.n < 256), "                                \
    "best AS (SELECT pr.project_id,"                                                            \
    " row_number() OVER (ORDER BY d.done, b.priority DESC, b.seq) AS rank FROM pr"              \
    " CROSS JOIN LATERAL (SELECT s.priority, s.seq FROM subtasks s WHERE " W                    \
    "  AND s.project_id = pr.project_id ORDER BY s.priority DESC, s.seq LIMIT 1) b"             \
    " CROSS JOIN LATERAL (SELECT coalesce(sum(pc.completions), 0) AS done"                      \
    "  FROM project_completions pc WHERE pc.project_id = pr.project_id) d"                      \
    " WHERE pr.project_id IS NOT NULL ORDER BY rank LIMIT 16), "                                \
    "c AS (SELECT s.subtask_id FROM subtasks s WHERE " W " AND s.project_id = "                 \
    " coalesce($2::text, (SELECT best.project_id FROM best WHERE best.rank = 1))"               \
    " ORDER BY s.priority DESC, s.seq LIMIT 1 FOR UPDATE SKIP LOCKED), "                        \
    "u AS (UPDATE subtasks s SET state = 'leased', attempt = s.attempt + 1,"                    \
    " lease_agent_id = $3, lease_claimed_at_ms = $4::bigint,"                                   \
    " lease_expires_at_ms = $4::bigint + s.timeout_ms + $5::bigint, lease_key = NULL"           \
    " FROM c WHERE s.subtask_id = c.subtask_id"                                                 \
    " RETURNING s.subtask_id, s.task_id, s.kind, s.language, s.input, s.project_id,"            \
    " s.tenant_id, s.requested_model, s.priority, s.timeout_ms, s.attempt,"                     \
    " s.lease_expires_at_ms, s.subtask_index), "                                                \
    "a AS (INSERT INTO subtask_attempts (subtask_id, attempt, agent_id, claimed_at_ms)"         \
    " SELECT u.subtask_id, u.attempt, $3, $4::bigint FROM u) "                                  \
    "SELECT (SELECT json_agg(best.project_id ORDER BY best.rank) FROM best)::text,"             \
    " u.subtask_id, u.task_id, u.kind, u.language, u.input, t.snapshot_ref,"                    \
    " u.project_id, u.tenant_id, t.resource_class, u.requested_model, u.priority,"              \
    " u.timeout_ms, u.attempt, u.lease_expires_at_ms, u.subtask_index "                         \
    "FROM (SELECT 1) one LEFT JOIN u ON true LEFT JOIN tasks t ON t.task_id = u.task_id"

_Static_assert(COORD_QUEUE_PROJECT_SCAN == 256, "CLAIM_SQL spells the scan limit");

const char *const coord_queue__claim_sql[4] = {
    [0] = CLAIM_SQL(Q_ALL),
    [COORD_QUEUE_CLAIM_OPEN] = CLAIM_SQL(Q_OPEN),
    [COORD_QUEUE_CLAIM_MODEL] = CLAIM_SQL(Q_MODEL),
    [COORD_QUEUE_CLAIM_MODEL | COORD_QUEUE_CLAIM_OPEN] = CLAIM_SQL(Q_MODEL_OPEN),
};

/* --- claim -------------------------------------------------------------------------------- */

struct claim_ctx {
    struct coord_queue *q;
    const struct coord_claim_agent *agent;
    struct coord_claim *out;
};

/* Column 0 of the claim statement's row is the project list; the lease follows. */
static const char *val(const struct pg_result *res, int col)
{
    return ec_pg_value(res, 0, col + 1);
}

static int64_t ival(const struct pg_result *res, int col)
{
    return coord_queue__int(res, 0, col + 1);
}

static void claim_from_row(const struct pg_result *res, struct coord_claim *c)
{
    c->subtask_id = val(res, 0);
    c->task_id = val(res, 1);
    c->kind = val(res, 2);
    c->language = val(res, 3);
    c->input = val(res, 4);
    c->snapshot_ref = val(res, 5);
    c->project_id = val(res, 6);
    c->tenant_id = val(res, 7);
    c->resource_class = val(res, 8);
    c->requested_model = val(res, 9);
    c->priority = (int)ival(res, 10);
    c->timeout_ms = ival(res, 11);
    c->attempt = (int)ival(res, 12);
    c->lease_expires_at_ms = ival(res, 13);
    c->subtask_index = (int)ival(res, 14);
}

/* Seals {input, snapshotRef, kind:<language>} (the original's key order) for the agent and
 * stores the derived key with the lease, in the claim's transaction. */
static enum ec_status seal(struct ec_pg_conn *conn, struct ec_arena *a, const char *agent_key,
                           struct coord_claim *c, struct ec_err *err)
{
    json_t *j = json_pack("{s:s,s:s,s:s}", "input", c->input, "snapshotRef", c->snapshot_ref,
                          "kind", c->language);
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (text == NULL)
        return ec_err_set(err, EC_EINTERNAL, NULL, "cannot encode subtask %.140s", c->subtask_id);
    struct coord_envelope env;
    memset(&env, 0, sizeof(env));
    enum ec_status st =
        coord_envelope_seal(agent_key, c->subtask_id, text, strlen(text), a, &env, err);
    ec_crypto_wipe(text, strlen(text));
    free(text);
    if (st != EC_OK) {
        ec_crypto_wipe(env.key, sizeof(env.key));
        return st;
    }
    char key_hex[EC_HEX_ENCODED_LEN(COORD_ENVELOPE_KEY_LEN) + 1];
    ec_hex_encode(key_hex, sizeof(key_hex), env.key, sizeof(env.key));
    ec_crypto_wipe(env.key, sizeof(env.key));
    const char *params[] = { c->subtask_id, key_hex };
    st = ec_pg_query_deferred(
        conn, "UPDATE subtasks SET lease_key = decode($2, 'hex') WHERE subtask_id = $1", 2, params,
        err);
    ec_crypto_wipe(key_hex, sizeof(key_hex));
    if (st != EC_OK)
        return st;
    c->sealed = true;
    c->env_ephemeral_public_key = env.ephemeral_public_key;
    c->env_encrypted_payload = env.encrypted_payload;
    c->env_nonce = env.nonce;
    c->env_tag = env.tag;
    return EC_OK;
}

/* The lease is made: seal it if asked, record task_claim. */
static enum ec_status claimed(struct ec_pg_conn *conn, struct ec_arena *a, struct claim_ctx *x,
                              const struct pg_result *res, int64_t now, struct ec_err *err)
{
    const struct coord_claim_agent *ag = x->agent;
    struct coord_claim *c = ec_arena_zalloc(a, sizeof(*c));
    claim_from_row(res, c);
    enum ec_status st;
    if (ag->x25519_public_key != NULL && ag->x25519_public_key[0] != '\0' &&
        (st = seal(conn, a, ag->x25519_public_key, c, err)) != EC_OK)
        return st;
    struct coord_ledger_event ev = {
        .event_type = "task_claim",
        .task_id = c->task_id,
        .subtask_id = c->subtask_id,
        .actor_id = ag->agent_id,
        .payload_json = ec_arena_sprintf(a, "{\"attempt\":%d,\"leaseExpiresAtMs\":%" PRId64 "}",
                                         c->attempt, c->lease_expires_at_ms),
        .issued_at_ms = now,
    };
    if ((st = coord_ledger_record(conn, a, &ev, err)) != EC_OK)
        return st;
    x->out = c;
    return EC_OK;
}

/* Tries one variant: the first-ranked project in the same statement as the ranking, the next
 * ones only if every runnable row of the first was being claimed by someone else. */
static enum ec_status claim_variant(struct ec_pg_conn *conn, struct ec_arena *a,
                                    struct claim_ctx *x, int variant, int64_t now,
                                    struct ec_err *err)
{
    const struct coord_claim_agent *ag = x->agent;
    const char *model = (variant & COORD_QUEUE_CLAIM_MODEL) ? ag->active_model : NULL;
    const char *params[] = { model, NULL, ag->agent_id, coord_queue__i64(a, now),
                             coord_queue__i64(a, x->q->lease_grace_ms) };
    const char *sql = coord_queue__claim_sql[variant];
    struct pg_result *res;
    enum ec_status st = ec_pg_query(conn, sql, 5, params, a, &res, err);
    if (st != EC_OK)
        return st;
    if (!ec_pg_isnull(res, 0, 1))
        return claimed(conn, a, x, res, now, err);
    const char *ranked = ec_pg_value(res, 0, 0);
    if (ranked == NULL)
        return EC_OK; /* nothing runnable for this agent */
    json_t *projects = json_loads(ranked, 0, NULL);
    EC_ASSERT(json_is_array(projects));
    for (size_t i = 1; i < json_array_size(projects); i++) {
        params[1] = ec_arena_strdup(a, json_string_value(json_array_get(projects, i)));
        if ((st = ec_pg_query(conn, sql, 5, params, a, &res, err)) != EC_OK)
            break;
        if (!ec_pg_isnull(res, 0, 1)) {
            st = claimed(conn, a, x, res, now, err);
            break;
        }
    }
    json_decref(projects);
    return st;
}

static enum ec_status claim_tx(struct ec_pg_conn *conn, struct ec_arena *a, void *p,
                               struct ec_err *err)
{
    struct claim_ctx *x = p;
    x->out = NULL;
    const struct coord_claim_agent *ag = x->agent;
    int64_t now = ec_now_ms();
    int open = ag->has_sandbox ? 0 : COORD_QUEUE_CLAIM_OPEN;
    enum ec_status st = EC_OK;
    /* Work that asked for the agent's active model first, then anything it may run. */
    if (ag->active_model != NULL && ag->active_model[0] != '\0')
        st = claim_variant(conn, a, x, COORD_QUEUE_CLAIM_MODEL | open, now, err);
    if (st == EC_OK && x->out == NULL)
        st = claim_variant(conn, a, x, open, now, err);
    return st;
}

enum ec_status coord_queue_claim(struct coord_queue *q, struct ec_arena *arena,
                                 const struct coord_claim_agent *agent, struct coord_claim **out,
                                 struct ec_err *err)
{
    *out = NULL;
    enum ec_status st = coord_queue__check_id("agentId", agent->agent_id, true, err);
    if (st != EC_OK)
        return st;
    if (agent->active_model != NULL && agent->active_model[0] != '\0' &&
        (st = coord_queue__check_id("activeModel", agent->active_model, true, err)) != EC_OK)
        return st;
    struct claim_ctx x = { .q = q, .agent = agent };
    st = ec_pg_tx(q->pool, EC_PG_READ_COMMITTED, arena, claim_tx, &x, err);
    if (st == EC_OK)
        *out = x.out;
    return st;
}

/* --- renew -------------------------------------------------------------------------------- */

struct renew_ctx {
    struct coord_queue *q;
    const char *agent_id;
    int64_t now_ms;
    int renewed;
};

static enum ec_status renew_tx(struct ec_pg_conn *conn, struct ec_arena *a, void *p,
                               struct ec_err *err)
{
    struct renew_ctx *x = p;
    const char *params[] = { x->agent_id, coord_queue__i64(a, x->now_ms),
                             coord_queue__i64(a, x->q->lease_grace_ms) };
    struct pg_result *res;
    /* A heartbeat keeps a lease alive for another grace period, but a lease never outlives
     * twice its first term: an agent that heartbeats while its executor hangs loses the work. */
    enum ec_status st = ec_pg_query(
        conn,
        "UPDATE subtasks SET lease_expires_at_ms = least(greatest(lease_expires_at_ms, "
        "$2::bigint + $3::bigint), lease_claimed_at_ms + 2 * (timeout_ms + $3::bigint)) "
        "WHERE state = 'leased' AND lease_agent_id = $1",
        3, params, a, &res, err);
    if (st == EC_OK)
        x->renewed = (int)ec_pg_affected(res);
    return st;
}

enum ec_status coord_queue_renew(struct coord_queue *q, const char *agent_id, int64_t now_ms,
                                 int *renewed, struct ec_err *err)
{
    if (renewed != NULL)
        *renewed = 0;
    enum ec_status st = coord_queue__check_id("agentId", agent_id, true, err);
    if (st != EC_OK)
        return st;
    struct renew_ctx x = { .q = q, .agent_id = agent_id, .now_ms = now_ms };
    struct ec_arena a;
    ec_arena_init(&a);
    st = ec_pg_tx(q->pool, EC_PG_READ_COMMITTED, &a, renew_tx, &x, err);
    ec_arena_release(&a);
    if (st == EC_OK && renewed != NULL)
        *renewed = x.renewed;
    return st;
}

/* --- lease key ---------------------------------------------------------------------------- */

struct key_ctx {
    const char *subtask_id, *agent_id;
    uint8_t *key;
};

static enum ec_status key_fn(struct ec_pg_conn *conn, struct ec_arena *a, void *p,
                             struct ec_err *err)
{
    struct key_ctx *x = p;
    const char *params[] = { x->subtask_id, x->agent_id };
    struct pg_result *res;
    /* The holder of the current lease, or the agent whose answer was accepted (so that an
     * identical repeat of an encrypted result can still be opened). */
    enum ec_status st = ec_pg_query(
        conn,
        "SELECT state IN ('leased', 'completed') AND lease_agent_id = $2 "
        "AND lease_key IS NOT NULL, encode(lease_key, 'hex') FROM subtasks WHERE subtask_id = $1",
        2, params, a, &res, err);
    if (st != EC_OK)
        return st;
    if (ec_pg_nrows(res) == 0)
        return ec_err_set(err, EC_ENOTFOUND, "subtask_not_found", "subtask %.140s is not known",
                          x->subtask_id);
    if (strcmp(ec_pg_value(res, 0, 0), "t") != 0)
        return ec_err_set(err, EC_ECONFLICT, "lease_not_held",
                          "agent %.128s holds no envelope lease on subtask %.140s", x->agent_id,
                          x->subtask_id);
    char *hex = (char *)ec_pg_value(res, 0, 1);
    size_t n = 0;
    st = ec_hex_decode(x->key, COORD_ENVELOPE_KEY_LEN, &n, hex, strlen(hex), err);
    ec_crypto_wipe(hex, strlen(hex)); /* libpq's copy of the key */
    if (st == EC_OK && n != COORD_ENVELOPE_KEY_LEN)
        st = ec_err_set(err, EC_EINTERNAL, NULL, "stored envelope key has %zu bytes", n);
    return st;
}

enum ec_status coord_queue_lease_key(struct coord_queue *q, const char *subtask_id,
                                     const char *agent_id, uint8_t key[32], struct ec_err *err)
{
    memset(key, 0, COORD_ENVELOPE_KEY_LEN);
    enum ec_status st;
    if ((st = coord_queue__check_subtask_id(subtask_id, err)) != EC_OK ||
        (st = coord_queue__check_id("agentId", agent_id, true, err)) != EC_OK)
        return st;
    struct key_ctx x = { .subtask_id = subtask_id, .agent_id = agent_id, .key = key };
    struct ec_arena a;
    ec_arena_init(&a);
    st = ec_pg_with_conn(q->pool, &a, key_fn, &x, err);
    ec_arena_release(&a);
    if (st != EC_OK)
        ec_crypto_wipe(key, COORD_ENVELOPE_KEY_LEN);
    return st;
}
