/* The durable queue's option and input checks, which fail before any query: no database is
 * needed (the pool points at a closed port and never connects). */
#include "common/ec_arena.h"
#include "common/ec_log.h"
#include "common/ec_mem.h"
#include "common/ec_pg.h"
#include "coord/coord_queue.h"
#include "coord/coord_queue_int.h"

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

static struct ec_arena arena;

static void test_new_args(void **state)
{
    (void)state;
    struct ec_err err = { 0 };
    struct coord_queue *q = (struct coord_queue *)1;
    struct coord_queue_opts o = { 0 };
    assert_int_equal(coord_queue_new(&o, &q, &err), EC_EINVAL);
    assert_null(q);
    o.pool = (struct ec_pg_pool *)1;
    assert_int_equal(coord_queue_new(&o, &q, &err), EC_EINVAL); /* no coordinator id */
    o.coordinator_id = "c";
    o.max_attempts = COORD_QUEUE_ATTEMPTS_MAX + 1;
    assert_int_equal(coord_queue_new(&o, &q, &err), EC_EINVAL);
    o.max_attempts = 0;
    o.lease_grace_ms = -1;
    assert_int_equal(coord_queue_new(&o, &q, &err), EC_EINVAL);
    o.lease_grace_ms = 0;
    assert_ok(coord_queue_new(&o, &q, &err));
    assert_int_equal(q->max_attempts, 3);
    assert_int_equal(q->lease_grace_ms, 30000);
    coord_queue_free(q);
    coord_queue_free(NULL);
}

/* Expects submit to fail with status and a message containing field. */
static void bad_submit(struct coord_queue *q, const struct coord_task_spec *spec,
                       enum ec_status status, const char *field)
{
    struct ec_err err = { 0 };
    const char **ids = (const char **)1;
    size_t n = 99;
    struct ec_arena a;
    ec_arena_init(&a);
    enum ec_status st = coord_queue_submit(q, &a, spec, &ids, &n, &err);
    ec_arena_release(&a);
    if (st != status || strstr(err.msg, field) == NULL)
        fail_msg("want %d naming %s, got %d: %s", status, field, st, err.msg);
    assert_null(ids);
    assert_int_equal(n, 0);
}

static void test_submit_validation(void **state)
{
    (void)state;
    struct ec_err err = { 0 };
    struct ec_pg_pool *nowhere;
    /* Checks come before any query, so the pool never connects. */
    assert_ok(ec_pg_pool_new("postgresql://u@127.0.0.1:1/x", 1, NULL, &nowhere, &err));
    struct coord_queue_opts o = { .pool = nowhere, .coordinator_id = "c" };
    struct coord_queue *q;
    assert_ok(coord_queue_new(&o, &q, &err));

    int self[] = { 1 }, far[] = { 7 }, twice[] = { 0, 0 }, to1[] = { 1 }, to2[] = { 2 },
        to0[] = { 0 };
    struct coord_subtask_spec subs[3] = { { .input = "a" }, { .input = "b" }, { .input = "c" } };
    struct coord_task_spec good = { .task_id = "t",
                                    .prompt = "p",
                                    .snapshot_ref = "ref",
                                    .subtasks = subs,
                                    .n_subtasks = 3,
                                    .priority = 50 };
    struct coord_task_spec s = good;
    s.task_id = NULL;
    bad_submit(q, &s, EC_EINVAL, "taskId");
    s.task_id = "bad\nid";
    bad_submit(q, &s, EC_EINVAL, "taskId");
    char long_id[COORD_QUEUE_ID_MAX + 2];
    memset(long_id, 'x', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    s.task_id = long_id;
    bad_submit(q, &s, EC_EINVAL, "taskId");
    s = good;
    s.prompt = "";
    bad_submit(q, &s, EC_EINVAL, "prompt");
    s = good;
    s.language = "cobol";
    bad_submit(q, &s, EC_EINVAL, "language");
    s = good;
    s.priority = 101;
    bad_submit(q, &s, EC_EINVAL, "priority");
    s = good;
    s.resource_class = "tpu";
    bad_submit(q, &s, EC_EINVAL, "resourceClass");
    s = good;
    s.snapshot_ref = NULL;
    bad_submit(q, &s, EC_EINVAL, "snapshotRef");
    s = good;
    s.project_id = "\xff\xfe";
    bad_submit(q, &s, EC_EINVAL, "projectId");
    s = good;
    s.n_subtasks = 0;
    bad_submit(q, &s, EC_EINVAL, "subtasks");
    s.n_subtasks = COORD_QUEUE_SUBTASKS_MAX + 1;
    bad_submit(q, &s, EC_EINVAL, "subtasks");

    s = good;
    subs[1].input = "\xc0\x80"; /* overlong NUL */
    bad_submit(q, &s, EC_EINVAL, "subtasks[1].input");
    char *big = ec_xmalloc(COORD_QUEUE_TEXT_MAX + 2);
    memset(big, 'a', COORD_QUEUE_TEXT_MAX + 1);
    big[COORD_QUEUE_TEXT_MAX + 1] = '\0';
    subs[1].input = big;
    bad_submit(q, &s, EC_ETOOBIG, "subtasks[1].input");
    free(big);
    subs[1].input = "b";
    subs[2].kind = "loop";
    bad_submit(q, &s, EC_EINVAL, "subtasks[2].kind");
    subs[2].kind = NULL;
    subs[2].timeout_ms = COORD_QUEUE_TIMEOUT_MAX_MS + 1;
    bad_submit(q, &s, EC_EINVAL, "subtasks[2].timeoutMs");
    subs[2].timeout_ms = 0;

    subs[1].depends_on = self, subs[1].n_depends_on = 1;
    bad_submit(q, &s, EC_EINVAL, "subtasks[1].dependsOn");
    subs[1].depends_on = far;
    bad_submit(q, &s, EC_EINVAL, "subtasks[1].dependsOn");
    subs[1].depends_on = twice, subs[1].n_depends_on = 2;
    bad_submit(q, &s, EC_EINVAL, "subtasks[1].dependsOn");
    /* 0 -> 1 -> 2 -> 0 */
    subs[0].depends_on = to1, subs[0].n_depends_on = 1;
    subs[1].depends_on = to2, subs[1].n_depends_on = 1;
    subs[2].depends_on = to0, subs[2].n_depends_on = 1;
    bad_submit(q, &s, EC_EINVAL, "cycle");

    /* Results are checked before any query too. */
    struct coord_result r = { .subtask_id = "t:0", .agent_id = "a", .duration_ms = -1 };
    assert_int_equal(coord_queue_complete(q, &arena, &r, NULL, &err), EC_EINVAL);
    r.duration_ms = 0;
    r.agent_id = NULL;
    assert_int_equal(coord_queue_complete(q, &arena, &r, NULL, &err), EC_EINVAL);
    struct coord_claim_agent ag = { .agent_id = "" };
    struct coord_claim *c;
    assert_int_equal(coord_queue_claim(q, &arena, &ag, &c, &err), EC_EINVAL);

    coord_queue_free(q);
    ec_pg_pool_free(nowhere);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_args),
        cmocka_unit_test(test_submit_validation),
    };
    ec_log_setup("test_queue_input", EC_LOG_ERROR + 1, STDERR_FILENO);
    ec_arena_init(&arena);
    int failed = cmocka_run_group_tests_name("queue_input", tests, NULL, NULL);
    ec_arena_release(&arena);
    return failed;
}
