/* The durable queue against EC_TEST_DATABASE_URL (a migrated coordinator database, see
 * tests/integration/40_coord_queue.py; skipped without it): idempotent submit, leases and fencing,
 * the selection order, tenant work and sandboxes, dependencies and their context, expiry and
 * exhausted attempts, renewal, envelopes, GET /tasks/:id and the counts. Input checks are in
 * test_queue_input.c; load, concurrency and the claim plan on a large queue in
 * test_queue_load.c. */
#include "common/ec_arena.h"
#include "common/ec_crypto.h"
#include "common/ec_log.h"
#include "common/ec_mem.h"
#include "common/ec_pg.h"
#include "coord/coord_envelope.h"
#include "coord/coord_queue.h"
#include "coord/coord_queue_int.h"

#include <inttypes.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define assert_ok(call)                                                 \
    do {                                                                \
        if ((call) != EC_OK)                                            \
            fail_msg("%s: %s (%s)", #call, err.msg, ec_err_code(&err)); \
    } while (0)

#define GRACE_MS 1000

static const char *db_url;
static struct ec_pg_pool *pool;
static struct coord_queue *queue;
static struct ec_arena arena;

/* --- helpers ------------------------------------------------------------------------------ */

struct sqlq {
    const char *sql;
    int n;
    const char *const *params;
    struct pg_result *res;
};

static enum ec_status sqlq_fn(struct ec_pg_conn *c, struct ec_arena *a, void *p, struct ec_err *err)
{
    struct sqlq *q = p;
    return ec_pg_query(c, q->sql, q->n, q->params, a, &q->res, err);
}

static struct pg_result *sql(const char *text, int n, const char *const *params)
{
    struct sqlq q = { text, n, params, NULL };
    struct ec_err err = { 0 };
    assert_ok(ec_pg_with_conn(pool, &arena, sqlq_fn, &q, &err));
    return q.res;
}

/* The first column of the first row, with one optional parameter. */
static const char *sql_text(const char *text, const char *p1)
{
    struct pg_result *res = sql(text, p1 ? 1 : 0, p1 ? &p1 : NULL);
    assert_true(ec_pg_nrows(res) >= 1);
    return ec_pg_value(res, 0, 0);
}

static int64_t sql_int(const char *text, const char *p1)
{
    const char *v = sql_text(text, p1);
    assert_non_null(v);
    return strtoll(v, NULL, 10);
}

static int reset(void **state)
{
    (void)state;
    sql("TRUNCATE tasks, subtasks, results, subtask_attempts, project_completions, "
        "queue_totals, ledger_pending",
        0, NULL);
    return 0;
}

/* After every test: the counts behind /status, kept without counting rows, agree with the rows. */
static int teardown(void **state)
{
    (void)state;
    struct ec_err err = { 0 };
    struct coord_queue_counts k;
    int bad = coord_queue_counts(queue, &k, &err) != EC_OK;
    struct pg_result *res = sql(
        "SELECT count(*) FILTER (WHERE state IN ('queued', 'blocked')), "
        "count(*) FILTER (WHERE state = 'leased'), count(*) FILTER (WHERE state = 'completed'), "
        "count(*) FILTER (WHERE state = 'failed') FROM subtasks",
        0, NULL);
    int64_t want[4];
    for (int i = 0; i < 4; i++)
        want[i] = strtoll(ec_pg_value(res, 0, i), NULL, 10);
    if (bad || k.queued != want[0] || k.leased != want[1] || k.completed != want[2] ||
        k.failed != want[3]) {
        fprintf(stderr,
                "counts %" PRId64 "/%" PRId64 "/%" PRId64 "/%" PRId64 " != rows %" PRId64
                "/%" PRId64 "/%" PRId64 "/%" PRId64 " (%s)\n",
                k.queued, k.leased, k.completed, k.failed, want[0], want[1], want[2], want[3],
                err.msg);
        bad = 1;
    }
    ec_arena_reset(&arena);
    return bad ? -1 : 0;
}

struct task_opts {
    const char *project, *model, *tenant;
    int priority;
    int64_t timeout_ms;
};

/* n subtasks with inputs "<task>/<i>"; deps[i] (may be NULL) lists subtask i's dependencies,
 * terminated by -1. */
static enum ec_status submit_deps(const char *task_id, const struct task_opts *o, size_t n,
                                  const int *const *deps, struct ec_err *err)
{
    struct coord_subtask_spec *subs = ec_arena_zalloc(&arena, n * sizeof(*subs));
    for (size_t i = 0; i < n; i++) {
        subs[i].input = ec_arena_sprintf(&arena, "%s/%zu", task_id, i);
        subs[i].timeout_ms = o != NULL ? o->timeout_ms : 0;
        if (deps != NULL && deps[i] != NULL) {
            subs[i].depends_on = deps[i];
            while (deps[i][subs[i].n_depends_on] >= 0)
                subs[i].n_depends_on++;
        }
    }
    struct coord_task_spec spec = {
        .task_id = task_id,
        .prompt = "write a function",
        .snapshot_ref = "0123456789abcdef0123456789abcdef01234567",
        .project_id = o != NULL ? o->project : NULL,
        .tenant_id = o != NULL ? o->tenant : NULL,
        .requested_model = o != NULL ? o->model : NULL,
        .priority = o != NULL ? o->priority : 50,
        .subtasks = subs,
        .n_subtasks = n,
    };
    const char **ids;
    size_t n_ids;
    return coord_queue_submit(queue, &arena, &spec, &ids, &n_ids, err);
}

static void submit(const char *task_id, const struct task_opts *o, size_t n)
{
    struct ec_err err = { 0 };
    assert_ok(submit_deps(task_id, o, n, NULL, &err));
}

static struct coord_claim *claim_as(const char *agent, const char *model, bool sandbox,
                                    const char *x25519)
{
    struct coord_claim_agent ag = { .agent_id = agent,
                                    .active_model = model,
                                    .has_sandbox = sandbox,
                                    .x25519_public_key = x25519 };
    struct coord_claim *c = (struct coord_claim *)1;
    struct ec_err err = { 0 };
    assert_ok(coord_queue_claim(queue, &arena, &ag, &c, &err));
    return c;
}

static struct coord_claim *claim(const char *agent)
{
    return claim_as(agent, NULL, true, NULL);
}

static enum ec_status answer(const char *subtask_id, const char *agent, int attempt, bool ok,
                             const char *output, bool *dup, struct ec_err *err)
{
    struct coord_result r = { .subtask_id = subtask_id,
                              .task_id = subtask_id, /* as original agents send it */
                              .agent_id = agent,
                              .attempt = attempt,
                              .ok = ok,
                              .output = output,
                              .error = ok ? NULL : "boom",
                              .duration_ms = 12 };
    return coord_queue_complete(queue, &arena, &r, dup, err);
}

static void answer_ok(const char *subtask_id, const char *agent, const char *output)
{
    struct ec_err err = { 0 };
    bool dup = true;
    assert_ok(answer(subtask_id, agent, 0, true, output, &dup, &err));
    assert_false(dup);
}

static int64_t events(const char *type)
{
    return sql_int("SELECT count(*) FROM ledger_pending WHERE event_type = $1", type);
}

/* --- with a database ---------------------------------------------------------------------- */

static void test_submit_idempotent(void **state)
{
    (void)state;
    struct ec_err err = { 0 };
    struct coord_subtask_spec subs[2] = { { .input = "one" }, { .input = "two" } };
    struct coord_task_spec spec = { .task_id = "task-a",
                                    .prompt = "p",
                                    .snapshot_ref = "https://example.com/r.tar",
                                    .subtasks = subs,
                                    .n_subtasks = 2,
                                    .priority = 50 };
    const char **ids;
    size_t n;
    assert_ok(coord_queue_submit(queue, &arena, &spec, &ids, &n, &err));
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], "task-a:0");
    assert_string_equal(ids[1], "task-a:1");
    assert_ok(coord_queue_submit(queue, &arena, &spec, &ids, &n, &err));
    assert_int_equal(n, 2);
    assert_string_equal(ids[1], "task-a:1");
    assert_int_equal(sql_int("SELECT count(*) FROM subtasks", NULL), 2);
    assert_int_equal(events("task_enqueue"), 1);
    assert_string_equal(sql_text("SELECT actor_id FROM ledger_pending", NULL), "anonymous");
    /* Defaults are stored. */
    assert_string_equal(
        sql_text("SELECT t.language || t.project_id || t.resource_class || s.kind || "
                 "s.timeout_ms FROM tasks t JOIN subtasks s USING (task_id) "
                 "WHERE s.subtask_id = $1",
                 "task-a:0"),
        "pythondefaultcpusingle_step60000");

    spec.prompt = "another";
    assert_int_equal(coord_queue_submit(queue, &arena, &spec, &ids, &n, &err), EC_ECONFLICT);
    assert_string_equal(ec_err_code(&err), "task_exists");
    assert_int_equal(events("task_enqueue"), 1);
}

static void test_lease_and_fencing(void **state)
{
    (void)state;
    struct ec_err err = { 0 };
    bool dup;
    struct task_opts o = { .priority = 50, .timeout_ms = 5000 };
    submit("t", &o, 2);
    int64_t before = ec_now_ms();
    struct coord_claim *c = claim("a1");
    assert_non_null(c);
    assert_string_equal(c->subtask_id, "t:0");
    assert_string_equal(c->task_id, "t");
    assert_string_equal(c->input, "t/0");
    assert_string_equal(c->snapshot_ref, "0123456789abcdef0123456789abcdef01234567");
    assert_string_equal(c->resource_class, "cpu");
    assert_string_equal(c->project_id, "default");
    assert_null(c->tenant_id);
    assert_int_equal(c->attempt, 1);
    assert_int_equal(c->timeout_ms, 5000);
    assert_false(c->sealed);
    assert_true(c->lease_expires_at_ms >= before + 5000 + GRACE_MS);
    assert_true(c->lease_expires_at_ms <= ec_now_ms() + 5000 + GRACE_MS);

    struct coord_claim *c2 = claim("a2");
    assert_string_equal(c2->subtask_id, "t:1");
    assert_null(claim("a3"));

    assert_int_equal(answer("nope:0", "a1", 0, true, "x", &dup, &err), EC_ENOTFOUND);
    assert_string_equal(ec_err_code(&err), "subtask_not_found");
    assert_int_equal(answer("t:0", "a2", 0, true, "x", &dup, &err), EC_ECONFLICT);
    assert_string_equal(ec_err_code(&err), "lease_not_held");
    assert_int_equal(answer("t:0", "a1", 2, true, "x", &dup, &err), EC_ECONFLICT);
    assert_string_equal(ec_err_code(&err), "lease_not_held");

    assert_ok(answer("t:0", "a1", 1, true, "42", &dup, &err));
    assert_false(dup);
    /* Identical repeats (with or without the attempt) are idempotent; anything else is not. */
    assert_ok(answer("t:0", "a1", 1, true, "42", &dup, &err));
    assert_true(dup);
    assert_ok(answer("t:0", "a1", 0, true, "42", &dup, &err));
    assert_true(dup);
    assert_int_equal(answer("t:0", "a1", 1, true, "43", &dup, &err), EC_ECONFLICT);
    assert_int_equal(answer("t:0", "a2", 0, true, "42", &dup, &err), EC_ECONFLICT);

    /* A failure is an answer too. */
    assert_ok(answer("t:1", "a2", 0, false, "partial", &dup, &err));
    assert_string_equal(sql_text("SELECT state || ok::text || error FROM subtasks "
                                 "JOIN results USING (subtask_id) WHERE subtask_id = $1",
                                 "t:1"),
                        "completedfalseboom");
    assert_int_equal(sql_int("SELECT count(*) FROM results", NULL), 2);
    assert_int_equal(events("task_claim"), 2);
    assert_int_equal(events("task_complete"), 2);
    /* The ledger carries the stored task id, not the one the agent sent. */
    assert_int_equal(sql_int("SELECT count(*) FROM ledger_pending WHERE task_id = 't' "
                             "AND event_type = 'task_complete' AND actor_id IN ('a1', 'a2')",
                             NULL),
                     2);
    assert_string_equal(sql_text("SELECT string_agg(outcome, ',') FROM subtask_attempts", NULL),
                        "completed,completed");
    struct coord_queue_counts k;
    assert_ok(coord_queue_counts(queue, &k, &err));
    assert_int_equal(k.queued, 0);
    assert_int_equal(k.leased, 0);
    assert_int_equal(k.completed, 2);
    assert_int_equal(k.failed, 0);
}

static void test_selection_order(void **state)
{
    (void)state;
    /* Priority beats age within a project; age breaks ties, then the subtask index. */
    submit("low", &(struct task_opts){ .priority = 10 }, 1);
    submit("high", &(struct task_opts){ .priority = 90 }, 2);
    submit("high2", &(struct task_opts){ .priority = 90 }, 1);
    assert_string_equal(claim("a")->subtask_id, "high:0");
    assert_string_equal(claim("a")->subtask_id, "high:1");
    assert_string_equal(claim("a")->subtask_id, "high2:0");
    assert_string_equal(claim("a")->subtask_id, "low:0");
    reset(NULL);

    /* The project with the fewest completions goes first, whatever the priority. */
    submit("busy", &(struct task_opts){ .project = "busy", .priority = 100 }, 3);
    answer_ok(claim("a")->subtask_id, "a", "done");
    submit("idle", &(struct task_opts){ .project = "idle", .priority = 0 }, 2);
    assert_string_equal(claim("a")->subtask_id, "idle:0");
    answer_ok("idle:0", "a", "done");
    /* 1 : 1 completions: the tie goes to the higher priority. */
    assert_string_equal(claim("a")->subtask_id, "busy:1");
    reset(NULL);

    /* Work that asked for the agent's active model first; anything else after. */
    submit("plain", &(struct task_opts){ .priority = 100 }, 1);
    submit("llama", &(struct task_opts){ .model = "llama3:8b", .priority = 0 }, 1);
    assert_string_equal(claim_as("a", "llama3:8b", true, NULL)->subtask_id, "llama:0");
    assert_string_equal(claim_as("b", "llama3:8b", true, NULL)->subtask_id, "plain:0");
    reset(NULL);
    submit("plain", &(struct task_opts){ .priority = 0 }, 1);
    submit("llama", &(struct task_opts){ .model = "llama3:8b", .priority = 100 }, 1);
    assert_string_equal(claim_as("a", "qwen", true, NULL)->subtask_id, "llama:0");
    assert_string_equal(claim_as("a", NULL, true, NULL)->subtask_id, "plain:0");
}

static void test_tenant_needs_sandbox(void **state)
{
    (void)state;
    submit("tenant", &(struct task_opts){ .tenant = "acme", .priority = 100 }, 1);
    assert_null(claim_as("bare", NULL, false, NULL));
    submit("open", &(struct task_opts){ .priority = 0 }, 1);
    submit("empty", &(struct task_opts){ .tenant = "", .priority = 0 }, 1); /* "" is none */
    assert_string_equal(claim_as("bare", NULL, false, NULL)->subtask_id, "open:0");
    assert_string_equal(claim_as("bare", NULL, false, NULL)->subtask_id, "empty:0");
    assert_null(claim_as("bare", NULL, false, NULL));
    struct coord_claim *c = claim_as("boxed", NULL, true, NULL);
    assert_string_equal(c->subtask_id, "tenant:0");
    assert_string_equal(c->tenant_id, "acme");
    /* With a model too. */
    submit("tm", &(struct task_opts){ .tenant = "acme", .model = "m" }, 1);
    assert_null(claim_as("bare", "m", false, NULL));
    assert_string_equal(claim_as("boxed", "m", true, NULL)->subtask_id, "tm:0");
}

static void test_dependencies(void **state)
{
    (void)state;
    struct ec_err err = { 0 };
    /* 2 waits for 1 and 0, in that order of dependsOn. */
    const int d2[] = { 1, 0, -1 };
    const int *deps[] = { NULL, NULL, d2 };
    assert_ok(submit_deps("dep", NULL, 3, deps, &err));
    assert_string_equal(sql_text("SELECT state FROM subtasks WHERE subtask_id = $1", "dep:2"),
                        "blocked");
    assert_string_equal(claim("a")->subtask_id, "dep:0");
    assert_string_equal(claim("b")->subtask_id, "dep:1");
    assert_null(claim("c"));
    struct coord_queue_counts k;
    assert_ok(coord_queue_counts(queue, &k, &err));
    assert_int_equal(k.queued, 1); /* blocked counts as queued */
    assert_int_equal(k.leased, 2);

    answer_ok("dep:1", "b", "struct Foo { bar: i32 }");
    assert_null(claim("c"));
    answer_ok("dep:0", "a", "out-A");
    struct coord_claim *c = claim("c");
    assert_non_null(c);
    assert_string_equal(c->subtask_id, "dep:2");
    assert_string_equal(c->input, "[Context from previous subtasks]\n"
                                  "Subtask 1 result: struct Foo { bar: i32 }\n"
                                  "Subtask 2 result: out-A\n\n"
                                  "[Your task]\n"
                                  "dep/2");
}

static void test_expiry_and_attempts(void **state)
{
    (void)state;
    struct ec_err err = { 0 };
    bool dup;
    int requeued, failed;
    const int d1[] = { 0, -1 }, d2[] = { 1, -1 };
    const int *deps[] = { NULL, d1, d2 };
    assert_ok(submit_deps("exp", &(struct task_opts){ .timeout_ms = 1000 }, 3, deps, &err));

    struct coord_claim *c = claim("a1");
    assert_int_equal(c->attempt, 1);
    int64_t expires = c->lease_expires_at_ms;
    assert_ok(coord_queue_expire(queue, expires - 1, &requeued, &failed, &err));
    assert_int_equal(requeued + failed, 0);
    assert_ok(coord_queue_expire(queue, expires + 1, &requeued, &failed, &err));
    assert_int_equal(requeued, 1);
    assert_int_equal(failed, 0);
    /* A late answer from the expired lease is refused. */
    assert_int_equal(answer("exp:0", "a1", 1, true, "late", &dup, &err), EC_ECONFLICT);
    assert_string_equal(ec_err_code(&err), "lease_not_held");

    c = claim("a2");
    assert_string_equal(c->subtask_id, "exp:0");
    assert_int_equal(c->attempt, 2);
    assert_int_equal(answer("exp:0", "a1", 0, true, "late", &dup, &err), EC_ECONFLICT);
    assert_int_equal(answer("exp:0", "a2", 1, true, "stale", &dup, &err), EC_ECONFLICT);
    assert_ok(coord_queue_expire(queue, ec_now_ms() + 60000, &requeued, &failed, &err));
    assert_int_equal(requeued, 1);
    c = claim("a3");
    assert_int_equal(c->attempt, 3);
    assert_ok(coord_queue_expire(queue, ec_now_ms() + 60000, &requeued, &failed, &err));
    assert_int_equal(requeued, 0);
    assert_int_equal(failed, 1);
    assert_null(claim("a4"));
    assert_int_equal(answer("exp:0", "a3", 3, true, "late", &dup, &err), EC_ECONFLICT);

    json_t *j;
    assert_ok(coord_queue_task_json(queue, "exp", &j, &err));
    assert_string_equal(json_string_value(json_object_get(j, "status")), "failed");
    json_t *subs = json_object_get(j, "subtasks");
    json_t *s0 = json_array_get(subs, 0);
    assert_string_equal(json_string_value(json_object_get(s0, "state")), "failed");
    assert_string_equal(json_string_value(json_object_get(s0, "failReason")), "attempts_exhausted");
    assert_int_equal(json_integer_value(json_object_get(s0, "attempt")), 3);
    assert_int_equal(json_integer_value(json_object_get(s0, "maxAttempts")), 3);
    assert_true(json_is_null(json_object_get(s0, "result")));
    json_t *attempts = json_object_get(s0, "attempts");
    assert_int_equal(json_array_size(attempts), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *a = json_array_get(attempts, i);
        char agent[8];
        snprintf(agent, sizeof(agent), "a%zu", i + 1);
        assert_int_equal(json_integer_value(json_object_get(a, "attempt")), (json_int_t)i + 1);
        assert_string_equal(json_string_value(json_object_get(a, "agentId")), agent);
        assert_string_equal(json_string_value(json_object_get(a, "outcome")), "expired");
        assert_true(json_is_integer(json_object_get(a, "endedAtMs")));
    }
    /* Its dependants, transitively, can never run. */
    for (size_t i = 1; i < 3; i++) {
        json_t *s = json_array_get(subs, i);
        assert_string_equal(json_string_value(json_object_get(s, "state")), "failed");
        assert_string_equal(json_string_value(json_object_get(s, "failReason")),
                            "dependency_failed");
    }
    json_decref(j);
    assert_int_equal(events("task_requeue"), 3);
    assert_int_equal(sql_int("SELECT count(*) FROM ledger_pending WHERE actor_id = 'coord-test' "
                             "AND payload_json LIKE '%\"outcome\":\"failed\"%'",
                             NULL),
                     1);
    struct coord_queue_counts k;
    assert_ok(coord_queue_counts(queue, &k, &err));
    assert_int_equal(k.failed, 3);
    assert_int_equal(k.queued + k.leased + k.completed, 0);
}

static void test_renew(void **state)
{
    (void)state;
    struct ec_err err = { 0 };
    int renewed, requeued, failed;
    submit("r", &(struct task_opts){ .timeout_ms = 1000 }, 2);
    struct coord_claim *c = claim("a");
    claim("a");
    const char *sql_exp = "SELECT lease_expires_at_ms FROM subtasks WHERE subtask_id = $1";
    int64_t claimed =
        sql_int("SELECT lease_claimed_at_ms FROM subtasks WHERE subtask_id = $1", c->subtask_id);
    assert_int_equal(sql_int(sql_exp, c->subtask_id), claimed + 1000 + GRACE_MS);
    /* An early heartbeat never shortens the lease. */
    assert_ok(coord_queue_renew(queue, "a", claimed, &renewed, &err));
    assert_int_equal(renewed, 2);
    assert_int_equal(sql_int(sql_exp, c->subtask_id), claimed + 1000 + GRACE_MS);
    assert_ok(coord_queue_renew(queue, "a", claimed + 1900, &renewed, &err));
    assert_int_equal(sql_int(sql_exp, c->subtask_id), claimed + 1900 + GRACE_MS);
    /* ... and never stretches it past twice its first term. */
    assert_ok(coord_queue_renew(queue, "a", claimed + 100000, &renewed, &err));
    assert_int_equal(sql_int(sql_exp, c->subtask_id), claimed + 2 * (1000 + GRACE_MS));
    assert_ok(coord_queue_renew(queue, "other", claimed, &renewed, &err));
    assert_int_equal(renewed, 0);
    assert_ok(coord_queue_expire(queue, claimed + 3999, &requeued, &failed, &err));
    assert_int_equal(requeued, 0);
    assert_ok(coord_queue_expire(queue, claimed + 60000, &requeued, &failed, &err));
    assert_int_equal(requeued, 2);
    assert_ok(coord_queue_renew(queue, "a", claimed, &renewed, &err));
    assert_int_equal(renewed, 0);
}

static void test_envelope(void **state)
{
    (void)state;
    struct ec_err err = { 0 };
    struct ec_key *agent_key;
    assert_ok(ec_key_generate(EC_KEY_X25519, &agent_key, &err));
    uint8_t raw[EC_KEY_RAW_LEN];
    ec_key_export_raw_public(agent_key, raw);
    char *pub = ec_b64_encode_arena(&arena, raw, sizeof(raw));
    submit("env", NULL, 2);

    /* A malformed key fails the claim and leaves the queue as it was. */
    struct coord_claim_agent bad = { .agent_id = "x",
                                     .has_sandbox = true,
                                     .x25519_public_key = "AAAA" };
    struct coord_claim *c;
    assert_int_equal(coord_queue_claim(queue, &arena, &bad, &c, &err), EC_EINVAL);
    assert_null(c);
    assert_int_equal(sql_int("SELECT count(*) FROM subtasks WHERE state = 'queued'", NULL), 2);
    assert_int_equal(sql_int("SELECT count(*) FROM subtask_attempts", NULL), 0);

    c = claim_as("agent-x", NULL, true, pub);
    assert_true(c->sealed);
    assert_int_equal(c->attempt, 1);
    uint8_t key[COORD_ENVELOPE_KEY_LEN], agent_side[COORD_ENVELOPE_KEY_LEN];
    assert_ok(coord_queue_lease_key(queue, c->subtask_id, "agent-x", key, &err));
    assert_ok(coord_envelope_agent_key(agent_key, c->env_ephemeral_public_key, c->subtask_id,
                                       agent_side, &err));
    assert_memory_equal(key, agent_side, sizeof(key));
    char *plain;
    size_t len;
    assert_ok(coord_envelope_open(agent_side, c->env_encrypted_payload, c->env_nonce, c->env_tag,
                                  &arena, &plain, &len, &err));
    assert_string_equal(plain, "{\"input\":\"env/0\",\"snapshotRef\":"
                               "\"0123456789abcdef0123456789abcdef01234567\",\"kind\":\"python\"}");

    assert_int_equal(coord_queue_lease_key(queue, c->subtask_id, "agent-y", key, &err),
                     EC_ECONFLICT);
    assert_string_equal(ec_err_code(&err), "lease_not_held");
    assert_int_equal(coord_queue_lease_key(queue, "env:9", "agent-x", key, &err), EC_ENOTFOUND);
    /* A plain claim has no key. */
    struct coord_claim *plain_claim = claim("agent-p");
    assert_int_equal(coord_queue_lease_key(queue, plain_claim->subtask_id, "agent-p", key, &err),
                     EC_ECONFLICT);

    /* After the answer the key stays for an hour (identical repeats), then the sweep wipes it. */
    answer_ok(c->subtask_id, "agent-x", "ok");
    assert_ok(coord_queue_lease_key(queue, c->subtask_id, "agent-x", key, &err));
    int requeued, failed;
    assert_ok(coord_queue_expire(queue, ec_now_ms() + COORD_QUEUE_KEY_TTL_MS - 60000, &requeued,
                                 &failed, &err));
    assert_ok(coord_queue_lease_key(queue, c->subtask_id, "agent-x", key, &err));
    assert_ok(coord_queue_expire(queue, ec_now_ms() + COORD_QUEUE_KEY_TTL_MS + 60000, &requeued,
                                 &failed, &err));
    assert_int_equal(coord_queue_lease_key(queue, c->subtask_id, "agent-x", key, &err),
                     EC_ECONFLICT);
    ec_key_free(agent_key);
}

static void test_task_json(void **state)
{
    (void)state;
    struct ec_err err = { 0 };
    json_t *j = (json_t *)1;
    assert_int_equal(coord_queue_task_json(queue, "missing", &j, &err), EC_ENOTFOUND);
    assert_string_equal(ec_err_code(&err), "task_not_found");
    assert_null(j);

    const int d1[] = { 0, -1 };
    const int *deps[] = { NULL, d1 };
    assert_ok(
        submit_deps("tj", &(struct task_opts){ .project = "proj", .priority = 7 }, 2, deps, &err));
    assert_ok(coord_queue_task_json(queue, "tj", &j, &err));
    assert_string_equal(json_string_value(json_object_get(j, "status")), "queued");
    json_decref(j);

    struct coord_claim *c = claim("a");
    assert_ok(coord_queue_task_json(queue, "tj", &j, &err));
    assert_string_equal(json_string_value(json_object_get(j, "status")), "running");
    json_t *s0 = json_array_get(json_object_get(j, "subtasks"), 0);
    assert_string_equal(json_string_value(json_object_get(s0, "leaseAgentId")), "a");
    assert_int_equal(json_integer_value(json_object_get(s0, "leaseExpiresAtMs")),
                     c->lease_expires_at_ms);
    json_decref(j);

    answer_ok("tj:0", "a", "first");
    answer_ok(claim("b")->subtask_id, "b", "second");
    assert_ok(coord_queue_task_json(queue, "tj", &j, &err));
    char *text = json_dumps(j, JSON_COMPACT);
    assert_non_null(text);
    free(text);
    assert_string_equal(json_string_value(json_object_get(j, "taskId")), "tj");
    assert_string_equal(json_string_value(json_object_get(j, "status")), "completed");
    assert_string_equal(json_string_value(json_object_get(j, "projectId")), "proj");
    assert_int_equal(json_integer_value(json_object_get(j, "priority")), 7);
    assert_string_equal(json_string_value(json_object_get(j, "prompt")), "write a function");
    assert_true(json_is_integer(json_object_get(j, "createdAtMs")));
    json_t *s1 = json_array_get(json_object_get(j, "subtasks"), 1);
    assert_string_equal(json_string_value(json_object_get(s1, "subtaskId")), "tj:1");
    assert_int_equal(json_integer_value(json_array_get(json_object_get(s1, "dependsOn"), 0)), 0);
    assert_true(json_is_null(json_object_get(s1, "leaseAgentId")));
    assert_non_null(strstr(json_string_value(json_object_get(s1, "input")), "first"));
    json_t *res = json_object_get(s1, "result");
    assert_string_equal(json_string_value(json_object_get(res, "agentId")), "b");
    assert_string_equal(json_string_value(json_object_get(res, "output")), "second");
    assert_true(json_is_true(json_object_get(res, "ok")));
    assert_int_equal(json_integer_value(json_object_get(res, "attempt")), 1);
    assert_int_equal(json_integer_value(json_object_get(res, "durationMs")), 12);
    json_t *a = json_array_get(json_object_get(s1, "attempts"), 0);
    assert_string_equal(json_string_value(json_object_get(a, "outcome")), "completed");
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest with_db[] = {
        cmocka_unit_test_setup_teardown(test_submit_idempotent, reset, teardown),
        cmocka_unit_test_setup_teardown(test_lease_and_fencing, reset, teardown),
        cmocka_unit_test_setup_teardown(test_selection_order, reset, teardown),
        cmocka_unit_test_setup_teardown(test_tenant_needs_sandbox, reset, teardown),
        cmocka_unit_test_setup_teardown(test_dependencies, reset, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_and_attempts, reset, teardown),
        cmocka_unit_test_setup_teardown(test_renew, reset, teardown),
        cmocka_unit_test_setup_teardown(test_envelope, reset, teardown),
        cmocka_unit_test_setup_teardown(test_task_json, reset, teardown),
    };
    ec_log_setup("test_queue", EC_LOG_ERROR + 1, STDERR_FILENO);
    ec_arena_init(&arena);
    db_url = getenv("EC_TEST_DATABASE_URL");
    if (db_url == NULL || db_url[0] == '\0') {
        printf("EC_TEST_DATABASE_URL not set: queue database tests skipped\n");
        ec_arena_release(&arena);
        return 0;
    }
    struct ec_err err = { 0 };
    struct coord_queue_opts o = { .coordinator_id = "coord-test",
                                  .lease_grace_ms = GRACE_MS,
                                  .max_attempts = 3 };
    if (ec_pg_pool_new(db_url, 4, NULL, &pool, &err) != EC_OK ||
        (o.pool = pool, coord_queue_new(&o, &queue, &err)) != EC_OK) {
        fprintf(stderr, "cannot set up: %s\n", err.msg);
        return 1;
    }
    int failed = cmocka_run_group_tests_name("queue_database", with_db, NULL, NULL);
    coord_queue_free(queue);
    ec_pg_pool_free(pool);
    ec_arena_release(&arena);
    return failed;
}
