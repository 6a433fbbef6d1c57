/* The durable queue under load, against EC_TEST_DATABASE_URL (skipped without it): threads
 * claiming and completing at once never share a subtask; the claim statements use their indexes
 * on a queue of 100,000 rows (and how long a claim takes there); and 2,000 single-thread
 * submit -> claim -> complete cycles, timed. The figures are printed, never asserted.
 *
 * With EC_TEST_QUEUE_STRESS set, no cmocka test runs; tests/integration/40_coord_queue.py drives
 * several processes: "seed" empties the queue and submits EC_TEST_QUEUE_STRESS_N subtasks (500),
 * "work" runs EC_TEST_QUEUE_THREADS threads (4) that claim and complete until nothing is left,
 * printing "claimed <subtaskId> <attempt>" per claim, and "expire" returns every open lease to
 * the queue as the sweeper would a day later. */
#include "common/ec_arena.h"
#include "common/ec_log.h"
#include "common/ec_mem.h"
#include "common/ec_pg.h"
#include "coord/coord_queue.h"
#include "coord/coord_queue_int.h"

#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
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

#define SEED_TASK_SUBTASKS 10
#define MAX_THREADS        32

static const char *db_url;
static struct ec_pg_pool *pool;
static struct coord_queue *queue;

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

static enum ec_status sql_try(struct ec_arena *a, const char *text, struct pg_result **res,
                              struct ec_err *err)
{
    struct sqlq q = { text, 0, NULL, NULL };
    enum ec_status st = ec_pg_with_conn(pool, a, sqlq_fn, &q, err);
    if (res != NULL)
        *res = q.res;
    return st;
}

static int64_t sql_int(const char *text)
{
    struct ec_arena a;
    ec_arena_init(&a);
    struct ec_err err = { 0 };
    struct pg_result *res;
    assert_ok(sql_try(&a, text, &res, &err));
    int64_t v = strtoll(ec_pg_value(res, 0, 0), NULL, 10);
    ec_arena_release(&a);
    return v;
}

static void sql_exec(const char *text)
{
    struct ec_arena a;
    ec_arena_init(&a);
    struct ec_err err = { 0 };
    assert_ok(sql_try(&a, text, NULL, &err));
    ec_arena_release(&a);
}

static void reset(void)
{
    sql_exec("TRUNCATE tasks, subtasks, results, subtask_attempts, project_completions, "
             "queue_totals, ledger_pending");
}

/* n subtasks as tasks of SEED_TASK_SUBTASKS over five projects. */
static enum ec_status seed(int n, struct ec_err *err)
{
    struct ec_arena a;
    ec_arena_init(&a);
    enum ec_status st = EC_OK;
    for (int t = 0; st == EC_OK && t * SEED_TASK_SUBTASKS < n; t++) {
        struct coord_subtask_spec subs[SEED_TASK_SUBTASKS] = { 0 };
        size_t k = 0;
        for (; k < SEED_TASK_SUBTASKS && t * SEED_TASK_SUBTASKS + (int)k < n; k++)
            subs[k].input = "print(1)";
        struct coord_task_spec spec = {
            .task_id = ec_arena_sprintf(&a, "stress-%d", t),
            .prompt = "p",
            .snapshot_ref = "ref",
            .project_id = ec_arena_sprintf(&a, "project-%d", t % 5),
            .priority = (t * 37) % 101,
            .subtasks = subs,
            .n_subtasks = k,
        };
        const char **ids;
        size_t n_ids;
        st = coord_queue_submit(queue, &a, &spec, &ids, &n_ids, err);
        ec_arena_reset(&a);
    }
    ec_arena_release(&a);
    return st;
}

/* --- concurrent workers ------------------------------------------------------------------- */

struct worker_shared {
    atomic_int failures;
    char failure[256]; /* the first failure's message, under lock */
    pthread_mutex_t lock;
    int *claims; /* per seeded subtask (task * SEED_TASK_SUBTASKS + index), under lock */
    int n_subtasks;
    bool print;
};

struct worker {
    struct worker_shared *shared;
    char agent_id[32];
    int claimed;
};

static void worker_fail(struct worker_shared *sh, const char *what, const struct ec_err *err)
{
    pthread_mutex_lock(&sh->lock);
    if (atomic_fetch_add(&sh->failures, 1) == 0)
        snprintf(sh->failure, sizeof(sh->failure), "%s: %s (%s)", what, err->msg, ec_err_code(err));
    pthread_mutex_unlock(&sh->lock);
}

static void *worker_main(void *p)
{
    struct worker *w = p;
    struct worker_shared *sh = w->shared;
    struct ec_arena a;
    ec_arena_init(&a);
    struct coord_claim_agent ag = { .agent_id = w->agent_id, .has_sandbox = true };
    for (;;) {
        ec_arena_reset(&a);
        struct ec_err err = { 0 };
        struct coord_claim *c;
        if (coord_queue_claim(queue, &a, &ag, &c, &err) != EC_OK) {
            worker_fail(sh, "claim", &err);
            break;
        }
        if (c == NULL) {
            /* Nothing free right now: done once nothing is queued (rows locked by other
             * claimers are skipped, so a claim can come back empty while they finish). */
            struct coord_queue_counts k;
            if (coord_queue_counts(queue, &k, &err) != EC_OK) {
                worker_fail(sh, "counts", &err);
                break;
            }
            if (k.queued == 0)
                break;
            usleep(1000);
            continue;
        }
        w->claimed++;
        int task = -1, index = -1;
        if (sscanf(c->subtask_id, "stress-%d:%d", &task, &index) == 2 && task >= 0 && index >= 0 &&
            task * SEED_TASK_SUBTASKS + index < sh->n_subtasks) {
            pthread_mutex_lock(&sh->lock);
            sh->claims[task * SEED_TASK_SUBTASKS + index]++;
            if (sh->print)
                printf("claimed %s %d\n", c->subtask_id, c->attempt);
            pthread_mutex_unlock(&sh->lock);
        }
        struct coord_result r = { .subtask_id = c->subtask_id,
                                  .agent_id = w->agent_id,
                                  .attempt = c->attempt,
                                  .ok = true,
                                  .output = c->subtask_id,
                                  .duration_ms = 1 };
        bool dup = false;
        if (coord_queue_complete(queue, &a, &r, &dup, &err) != EC_OK || dup) {
            worker_fail(sh, dup ? "duplicate" : "complete", &err);
            break;
        }
    }
    ec_arena_release(&a);
    return NULL;
}

/* Runs n_threads workers; returns the number of claims. */
static int run_workers(struct worker_shared *sh, int n_threads, const char *prefix)
{
    pthread_t threads[MAX_THREADS];
    struct worker workers[MAX_THREADS];
    for (int i = 0; i < n_threads; i++) {
        workers[i] = (struct worker){ .shared = sh };
        snprintf(workers[i].agent_id, sizeof(workers[i].agent_id), "%s-%d", prefix, i);
        EC_ASSERT(pthread_create(&threads[i], NULL, worker_main, &workers[i]) == 0);
    }
    int total = 0;
    for (int i = 0; i < n_threads; i++) {
        pthread_join(threads[i], NULL);
        total += workers[i].claimed;
    }
    return total;
}

static int env_int(const char *name, int dflt, int lo, int hi)
{
    const char *v = getenv(name);
    int n = v != NULL && v[0] != '\0' ? atoi(v) : dflt;
    return n < lo ? lo : n > hi ? hi : n;
}

static void test_concurrent_claims(void **state)
{
    (void)state;
    struct ec_err err = { 0 };
    const int n = 500, n_threads = env_int("EC_TEST_QUEUE_THREADS", 8, 1, MAX_THREADS);
    reset();
    assert_ok(seed(n, &err));
    struct worker_shared sh = { .n_subtasks = n, .claims = ec_xcalloc((size_t)n, sizeof(int)) };
    pthread_mutex_init(&sh.lock, NULL);
    int64_t t0 = ec_mono_us();
    int total = run_workers(&sh, n_threads, "agent");
    double secs = (double)(ec_mono_us() - t0) / 1e6;
    pthread_mutex_destroy(&sh.lock);
    if (atomic_load(&sh.failures) > 0)
        fail_msg("%d worker failures, first: %s", atomic_load(&sh.failures), sh.failure);
    for (int i = 0; i < n; i++)
        if (sh.claims[i] != 1)
            fail_msg("subtask stress-%d:%d claimed %d times", i / SEED_TASK_SUBTASKS,
                     i % SEED_TASK_SUBTASKS, sh.claims[i]);
    free(sh.claims);
    assert_int_equal(total, n);
    assert_int_equal(sql_int("SELECT count(*) FROM results"), n);
    assert_int_equal(sql_int("SELECT count(DISTINCT subtask_id) FROM results"), n);
    assert_int_equal(sql_int("SELECT count(*) FROM subtask_attempts WHERE attempt = 1 "
                             "AND outcome = 'completed'"),
                     n);
    assert_int_equal(sql_int("SELECT count(*) FROM subtasks WHERE state <> 'completed'"), 0);
    assert_int_equal(
        sql_int("SELECT count(*) FROM ledger_pending WHERE event_type = 'task_complete'"), n);
    assert_int_equal(sql_int("SELECT sum(completions) FROM project_completions"), n);
    struct coord_queue_counts k;
    assert_ok(coord_queue_counts(queue, &k, &err));
    assert_int_equal(k.queued + k.leased + k.failed, 0);
    assert_int_equal(k.completed, n);
    printf("concurrent: %d threads claimed and completed %d subtasks in %.2f s (%.0f/s)\n",
           n_threads, n, secs, n / secs);
}

/* --- the claim plan on a large queue ------------------------------------------------------ */

struct explain_ctx {
    const char *sql;
    const char *args; /* of EXECUTE */
    const char *plan_custom, *plan_generic;
};

static const char *explain_text(struct ec_pg_conn *c, struct ec_arena *a, struct ec_err *err,
                                const char *exec)
{
    struct pg_result *res;
    if (ec_pg_query(c, exec, 0, NULL, a, &res, err) != EC_OK)
        return NULL;
    char *out = ec_arena_strdup(a, "");
    for (int i = 0; i < ec_pg_nrows(res); i++)
        out = ec_arena_sprintf(a, "%s%s\n", out, ec_pg_value(res, i, 0));
    return out;
}

/* The plan of x->sql as first run (custom) and as cached after a few runs (generic). */
static enum ec_status explain_fn(struct ec_pg_conn *c, struct ec_arena *a, void *p,
                                 struct ec_err *err)
{
    struct explain_ctx *x = p;
    enum ec_status st =
        ec_pg_query(c, ec_arena_sprintf(a, "PREPARE q(text, text, text, text, text) AS %s", x->sql),
                    0, NULL, NULL, NULL, err);
    if (st != EC_OK)
        return st;
    const char *exec = ec_arena_sprintf(a, "EXPLAIN EXECUTE q%s", x->args);
    x->plan_custom = explain_text(c, a, err, exec);
    if (x->plan_custom == NULL || ec_pg_query(c, "SET plan_cache_mode = force_generic_plan", 0,
                                              NULL, NULL, NULL, err) != EC_OK)
        return EC_EINTERNAL;
    x->plan_generic = explain_text(c, a, err, exec);
    ec_pg_query(c, "RESET plan_cache_mode", 0, NULL, NULL, NULL, err);
    ec_pg_query(c, "DEALLOCATE q", 0, NULL, NULL, NULL, err);
    return x->plan_generic != NULL ? EC_OK : EC_EINTERNAL;
}

static void check_plan(const char *name, const char *plan, const char *want_index)
{
    if (getenv("EC_TEST_QUEUE_PLANS") != NULL)
        printf("--- %s\n%s", name, plan);
    if (strstr(plan, "Seq Scan on subtasks") != NULL || strstr(plan, want_index) == NULL)
        fail_msg("%s: want %s and no sequential scan of subtasks:\n%s", name, want_index, plan);
}

static void test_big_queue(void **state)
{
    (void)state;
    struct ec_err err = { 0 };
    reset();
    /* 100,000 queued rows over four projects (a tenth tenant work, a tenth asking for
     * model-a), a project of tenant work only, and 50,000 finished rows of history. */
    sql_exec("INSERT INTO tasks (task_id, prompt, language, snapshot_ref, submitter_account_id, "
             "project_id, resource_class, priority, decomposition_fallback, n_subtasks, "
             "has_dependencies, spec_sha256, created_at_ms) "
             "SELECT 'big-' || p, 'p', 'python', 'ref', 'anonymous', 'proj-' || p, 'cpu', 50, "
             "false, 1, false, 'x', 0 FROM generate_series(0, 5) p");
    sql_exec("INSERT INTO subtasks (subtask_id, task_id, subtask_index, kind, language, input, "
             "timeout_ms, project_id, tenant_id, priority, requested_model, state, "
             "max_attempts, enqueued_at_ms, finished_at_ms) "
             "SELECT 'big-' || (i % 4) || ':' || (i / 4), 'big-' || (i % 4), i / 4, "
             "'single_step', 'python', 'input ' || i, 60000, 'proj-' || (i % 4), "
             "CASE WHEN i % 10 = 0 THEN 'tenant' END, (i * 7919) % 101, "
             "CASE WHEN i % 10 = 3 THEN 'model-a' END, 'queued', 3, 0, NULL::bigint "
             "FROM generate_series(0, 99999) i "
             "UNION ALL SELECT 'big-4:' || i, 'big-4', i, 'single_step', 'python', 'x', 60000, "
             "'proj-4', 'tenant', 50, NULL, 'queued', 3, 0, NULL::bigint "
             "FROM generate_series(0, 9999) i "
             "UNION ALL SELECT 'big-5:' || i, 'big-5', i, 'single_step', 'python', 'x', 60000, "
             "'proj-5', NULL, 50, NULL, 'completed', 3, 0, 1 "
             "FROM generate_series(0, 49999) i");
    sql_exec("INSERT INTO queue_totals VALUES (0, 160000)");
    sql_exec("INSERT INTO project_completions VALUES ('proj-5', 0, 50000)");
    sql_exec("VACUUM ANALYZE subtasks");

    static const char *const names[4] = { "any", "open", "model", "model+open" };
    static const char *const indexes[4] = { "subtasks_claim ", "subtasks_claim_open ",
                                            "subtasks_claim_model ", "subtasks_claim_model_open " };
    for (int v = 0; v < 4; v++) {
        const char *model = (v & COORD_QUEUE_CLAIM_MODEL) ? "'model-a'" : "NULL";
        for (int with_project = 0; with_project < 2; with_project++) {
            struct ec_arena a;
            ec_arena_init(&a);
            struct explain_ctx x = {
                .sql = coord_queue__claim_sql[v],
                .args = ec_arena_sprintf(&a, "(%s, %s, 'agent', '1', '1000')", model,
                                         with_project ? "'proj-1'" : "NULL"),
            };
            assert_ok(ec_pg_with_conn(pool, &a, explain_fn, &x, &err));
            char name[64];
            snprintf(name, sizeof(name), "claim/%s/%s (custom)", names[v],
                     with_project ? "project" : "ranked");
            check_plan(name, x.plan_custom, indexes[v]);
            snprintf(name, sizeof(name), "claim/%s/%s (generic)", names[v],
                     with_project ? "project" : "ranked");
            check_plan(name, x.plan_generic, indexes[v]);
            ec_arena_release(&a);
        }
    }

    /* Time claims (each with its answer) for every kind of agent. */
    enum { N = 400 };
    static const struct coord_claim_agent agents[4] = {
        { .agent_id = "boxed", .has_sandbox = true },
        { .agent_id = "bare", .has_sandbox = false },
        { .agent_id = "boxed-m", .has_sandbox = true, .active_model = "model-a" },
        { .agent_id = "bare-m", .has_sandbox = false, .active_model = "model-a" },
    };
    int64_t claim_us[N], worst = 0, sum = 0;
    struct ec_arena a;
    ec_arena_init(&a);
    for (int i = 0; i < N; i++) {
        const struct coord_claim_agent *ag = &agents[i % 4];
        struct coord_claim *c;
        int64_t t0 = ec_mono_us();
        assert_ok(coord_queue_claim(queue, &a, ag, &c, &err));
        claim_us[i] = ec_mono_us() - t0;
        assert_non_null(c);
        if (!ag->has_sandbox)
            assert_null(c->tenant_id);
        struct coord_result r = {
            .subtask_id = c->subtask_id, .agent_id = ag->agent_id, .ok = true, .output = "x"
        };
        assert_ok(coord_queue_complete(queue, &a, &r, NULL, &err));
        ec_arena_reset(&a);
    }
    ec_arena_release(&a);
    for (int i = 0; i < N; i++) {
        sum += claim_us[i];
        worst = claim_us[i] > worst ? claim_us[i] : worst;
    }
    struct coord_queue_counts k;
    int64_t t0 = ec_mono_us();
    assert_ok(coord_queue_counts(queue, &k, &err));
    int64_t counts_us = ec_mono_us() - t0;
    assert_int_equal(k.queued, 110000 - N);
    assert_int_equal(k.completed, 50000 + N);
    printf("big queue: %" PRId64 " queued over 5 projects + 50000 finished rows: "
           "claim avg %.2f ms, worst %.2f ms over %d claims; counts %.2f ms\n",
           k.queued, (double)sum / N / 1000.0, (double)worst / 1000.0, N,
           (double)counts_us / 1000.0);
}

/* --- one thread, full cycles -------------------------------------------------------------- */

static void test_bench_cycles(void **state)
{
    (void)state;
    struct ec_err err = { 0 };
    reset();
    enum { N = 2000 };
    struct ec_arena a;
    ec_arena_init(&a);
    struct coord_claim_agent ag = { .agent_id = "bench-agent", .has_sandbox = true };
    int64_t us[3] = { 0 }; /* submit, claim, complete */
    int64_t t0 = ec_mono_us();
    for (int i = 0; i < N; i++) {
        struct coord_subtask_spec sub = { .input = "print(42)" };
        struct coord_task_spec spec = { .task_id = ec_arena_sprintf(&a, "bench-%d", i),
                                        .prompt = "p",
                                        .snapshot_ref = "ref",
                                        .priority = 50,
                                        .subtasks = &sub,
                                        .n_subtasks = 1 };
        const char **ids;
        size_t n_ids;
        int64_t t = ec_mono_us();
        assert_ok(coord_queue_submit(queue, &a, &spec, &ids, &n_ids, &err));
        int64_t t1 = ec_mono_us();
        struct coord_claim *c;
        assert_ok(coord_queue_claim(queue, &a, &ag, &c, &err));
        assert_non_null(c);
        int64_t t2 = ec_mono_us();
        struct coord_result r = { .subtask_id = c->subtask_id,
                                  .agent_id = ag.agent_id,
                                  .attempt = c->attempt,
                                  .ok = true,
                                  .output = "42" };
        assert_ok(coord_queue_complete(queue, &a, &r, NULL, &err));
        us[0] += t1 - t, us[1] += t2 - t1, us[2] += ec_mono_us() - t2;
        ec_arena_reset(&a);
    }
    double secs = (double)(ec_mono_us() - t0) / 1e6;
    ec_arena_release(&a);
    assert_int_equal(sql_int("SELECT count(*) FROM results"), N);
    printf("bench: %d submit->claim->complete cycles on one thread in %.2f s: %.0f cycles/s "
           "(submit %.2f ms, claim %.2f ms, complete %.2f ms)\n",
           N, secs, N / secs, us[0] / 1000.0 / N, us[1] / 1000.0 / N, us[2] / 1000.0 / N);
}

/* --- multi-process stress mode ------------------------------------------------------------ */

static int stress(const char *mode)
{
    struct ec_err err = { 0 };
    int n = env_int("EC_TEST_QUEUE_STRESS_N", 500, 1, 100000);
    if (strcmp(mode, "seed") == 0) {
        struct ec_arena a;
        ec_arena_init(&a);
        enum ec_status st = sql_try(&a,
                                    "TRUNCATE tasks, subtasks, results, subtask_attempts, "
                                    "project_completions, queue_totals, ledger_pending",
                                    NULL, &err);
        ec_arena_release(&a);
        if (st == EC_OK)
            st = seed(n, &err);
        if (st != EC_OK) {
            fprintf(stderr, "seed: %s\n", err.msg);
            return 1;
        }
        printf("seeded %d\n", n);
        return 0;
    }
    if (strcmp(mode, "expire") == 0) {
        /* As the sweeper would, a day from now: every open lease has expired. */
        int requeued = 0, failed = 0;
        if (coord_queue_expire(queue, ec_now_ms() + 86400000, &requeued, &failed, &err) != EC_OK) {
            fprintf(stderr, "expire: %s\n", err.msg);
            return 1;
        }
        printf("expired %d failed %d\n", requeued, failed);
        return 0;
    }
    if (strcmp(mode, "work") != 0) {
        fprintf(stderr, "EC_TEST_QUEUE_STRESS must be seed, work or expire\n");
        return 2;
    }
    struct worker_shared sh = { .n_subtasks = n,
                                .print = true,
                                .claims = ec_xcalloc((size_t)n, sizeof(int)) };
    pthread_mutex_init(&sh.lock, NULL);
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "agent-%d", (int)getpid());
    int total = run_workers(&sh, env_int("EC_TEST_QUEUE_THREADS", 4, 1, MAX_THREADS), prefix);
    pthread_mutex_destroy(&sh.lock);
    int dups = 0;
    for (int i = 0; i < n; i++)
        dups += sh.claims[i] > 1;
    free(sh.claims);
    printf("worker-done %d\n", total);
    fflush(stdout);
    if (atomic_load(&sh.failures) > 0 || dups > 0) {
        fprintf(stderr, "%d failures (first: %s), %d subtasks claimed twice\n",
                atomic_load(&sh.failures), sh.failure, dups);
        return 1;
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest with_db[] = {
        cmocka_unit_test(test_concurrent_claims),
        cmocka_unit_test(test_big_queue),
        cmocka_unit_test(test_bench_cycles),
    };
    ec_log_setup("test_queue_load", EC_LOG_ERROR + 1, STDERR_FILENO);
    db_url = getenv("EC_TEST_DATABASE_URL");
    if (db_url == NULL || db_url[0] == '\0') {
        printf("EC_TEST_DATABASE_URL not set: queue load tests skipped\n");
        return 0;
    }
    struct ec_err err = { 0 };
    struct ec_pg_pool_opts popts = { .acquire_timeout_ms = 10000 };
    struct coord_queue_opts o = { .coordinator_id = "coord-load", .lease_grace_ms = 30000 };
    if (ec_pg_pool_new(db_url, MAX_THREADS, &popts, &pool, &err) != EC_OK ||
        (o.pool = pool, coord_queue_new(&o, &queue, &err)) != EC_OK) {
        fprintf(stderr, "cannot set up: %s\n", err.msg);
        return 1;
    }
    const char *only = getenv("EC_TEST_QUEUE_ONLY"); /* e.g. test_bench_cycles */
    if (only != NULL && only[0] != '\0')
        cmocka_set_test_filter(only);
    const char *mode = getenv("EC_TEST_QUEUE_STRESS");
    int failed = mode != NULL && mode[0] != '\0'
                     ? stress(mode)
                     : cmocka_run_group_tests_name("queue_load", with_db, NULL, NULL);
    coord_queue_free(queue);
    ec_pg_pool_free(pool);
    return failed;
}
