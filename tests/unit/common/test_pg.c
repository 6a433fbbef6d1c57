/* The PostgreSQL pool. Without a database: SQLSTATE mapping, argument checks, the breaker and the
 * connect timeout. With EC_TEST_DATABASE_URL: queries, errors, the statement cache, replay after a
 * lost connection, the acquire timeout and serialization retries. With EC_TEST_PG_RESTART=1 as
 * well, only the restart test runs: it queries in a loop while tests/integration/10_postgres.py
 * stops and starts the server, and checks that failures are fast and that it recovers. */
#include "common/ec_arena.h"
#include "common/ec_log.h"
#include "common/ec_mem.h"
#include "common/ec_pg.h"
#include "common/ec_status.h"

#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

static const char *db_url;

/* Asserts success and shows the error message otherwise; expects a local `err`. */
#define assert_ok(call)                                                 \
    do {                                                                \
        if ((call) != EC_OK)                                            \
            fail_msg("%s: %s (%s)", #call, err.msg, ec_err_code(&err)); \
    } while (0)

static void sleep_ms(int ms)
{
    usleep((useconds_t)ms * 1000);
}

/* A TCP port on 127.0.0.1: closed (nothing listens) or, with listen_fd, one that accepts
 * connections into its backlog and never answers, like a hung server. */
static int local_port(int *listen_fd)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    if (listen_fd != NULL) {
        assert_int_equal(listen(fd, 8), 0);
        *listen_fd = fd;
    } else {
        close(fd);
    }
    return ntohs(sa.sin_port);
}

/* --- without a database ------------------------------------------------------------------- */

static void test_sqlstate_map(void **state)
{
    const char *code;
    assert_int_equal(ec_pg_status_from_sqlstate("23505", &code), EC_ECONFLICT);
    assert_int_equal(ec_pg_status_from_sqlstate("22P02", &code), EC_EINVAL);
    assert_null(code);
    assert_int_equal(ec_pg_status_from_sqlstate("22003", NULL), EC_EINVAL);
    static const char *const down[] = { "08006", "08001", "57P01", "57P02", "57P03", "53300" };
    for (size_t i = 0; i < sizeof(down) / sizeof(down[0]); i++) {
        assert_int_equal(ec_pg_status_from_sqlstate(down[i], &code), EC_EUNAVAIL);
        assert_string_equal(code, "database_unavailable");
    }
    assert_int_equal(ec_pg_status_from_sqlstate(NULL, &code), EC_EUNAVAIL);
    assert_string_equal(code, "database_unavailable");
    assert_int_equal(ec_pg_status_from_sqlstate("40001", &code), EC_EUNAVAIL);
    assert_string_equal(code, "database_busy");
    assert_int_equal(ec_pg_status_from_sqlstate("57014", &code), EC_ETIMEOUT);
    assert_int_equal(ec_pg_status_from_sqlstate("57P04", &code), EC_EINTERNAL);
    assert_int_equal(ec_pg_status_from_sqlstate("23503", &code), EC_EINTERNAL);
    assert_int_equal(ec_pg_status_from_sqlstate("42601", &code), EC_EINTERNAL);
    assert_int_equal(ec_pg_status_from_sqlstate("XX000", &code), EC_EINTERNAL);
}

static void test_pool_args(void **state)
{
    struct ec_pg_pool *pool = (struct ec_pg_pool *)1;
    struct ec_err err = { 0 };
    assert_int_equal(ec_pg_pool_new("host=x", 0, NULL, &pool, &err), EC_EINVAL);
    assert_null(pool);
    /* The message never quotes the string: it may hold a password. */
    assert_int_equal(ec_pg_pool_new("password=s3cret host='x", 2, NULL, &pool, &err), EC_EINVAL);
    assert_null(strstr(err.msg, "s3cret"));
    assert_int_equal(
        ec_pg_pool_new("postgresql://u:s3cret@h/db?nosuchoption=1", 2, NULL, &pool, &err),
        EC_EINVAL);
    assert_null(strstr(err.msg, "s3cret"));
    ec_pg_pool_free(NULL);
}

static void test_breaker_fails_fast(void **state)
{
    char url[128];
    snprintf(url, sizeof(url), "postgresql://postgres@127.0.0.1:%d/x", local_port(NULL));
    struct ec_pg_pool_opts opts = { .breaker_min_ms = 100, .breaker_max_ms = 300 };
    struct ec_pg_pool *pool;
    struct ec_err err = { 0 };
    assert_ok(ec_pg_pool_new(url, 4, &opts, &pool, &err));
    struct ec_pg_conn *c = (struct ec_pg_conn *)1;

    int64_t t0 = ec_mono_ms();
    assert_int_equal(ec_pg_acquire(pool, &c, &err), EC_EUNAVAIL);
    assert_null(c);
    assert_string_equal(ec_err_code(&err), "database_unavailable");
    /* Within the back-off nobody even tries. */
    for (int i = 0; i < 50; i++)
        assert_int_equal(ec_pg_acquire(pool, &c, &err), EC_EUNAVAIL);
    assert_true(ec_mono_ms() - t0 < 100);
    struct ec_pg_pool_stats stats;
    ec_pg_pool_stats_read(pool, &stats);
    assert_true(stats.down);
    assert_int_equal(stats.connect_failures, 1);
    assert_int_equal(stats.fast_failures, 50);
    assert_int_equal(stats.open, 0);
    assert_int_equal(ec_pg_pool_ping(pool, &err), EC_EUNAVAIL);

    /* After the back-off one caller probes; a failed probe doubles the back-off. */
    sleep_ms(120);
    assert_int_equal(ec_pg_acquire(pool, &c, &err), EC_EUNAVAIL);
    ec_pg_pool_stats_read(pool, &stats);
    assert_int_equal(stats.connect_failures, 2);
    sleep_ms(120); /* < 200 ms: still closed to probes */
    assert_int_equal(ec_pg_acquire(pool, &c, &err), EC_EUNAVAIL);
    ec_pg_pool_stats_read(pool, &stats);
    assert_int_equal(stats.connect_failures, 2);
    ec_pg_pool_free(pool);
}

static void test_connect_timeout(void **state)
{
    int listen_fd;
    char url[128];
    snprintf(url, sizeof(url), "postgresql://postgres@127.0.0.1:%d/x?sslmode=disable",
             local_port(&listen_fd));
    struct ec_pg_pool_opts opts = { .connect_timeout_ms = 200 };
    struct ec_pg_pool *pool;
    struct ec_err err = { 0 };
    assert_ok(ec_pg_pool_new(url, 2, &opts, &pool, &err));
    struct ec_pg_conn *c;
    int64_t t0 = ec_mono_ms();
    assert_int_equal(ec_pg_acquire(pool, &c, &err), EC_EUNAVAIL);
    int64_t took = ec_mono_ms() - t0;
    assert_true(took >= 190 && took < 1000);
    /* The hung server now costs the next caller nothing. */
    t0 = ec_mono_ms();
    assert_int_equal(ec_pg_acquire(pool, &c, &err), EC_EUNAVAIL);
    assert_true(ec_mono_ms() - t0 < 20);
    ec_pg_pool_free(pool);
    close(listen_fd);
}

/* --- with a database ---------------------------------------------------------------------- */

static struct ec_pg_pool *pool_open(int max_conns, const struct ec_pg_pool_opts *opts)
{
    struct ec_pg_pool *pool;
    struct ec_err err = { 0 };
    assert_ok(ec_pg_pool_new(db_url, max_conns, opts, &pool, &err));
    return pool;
}

static void exec_ok(struct ec_pg_pool *pool, const char *sql)
{
    struct ec_pg_conn *c;
    struct ec_err err = { 0 };
    assert_ok(ec_pg_acquire(pool, &c, &err));
    if (ec_pg_query(c, sql, 0, NULL, NULL, NULL, &err) != EC_OK)
        fail_msg("%s: %s", sql, err.msg);
    ec_pg_release(c);
}

static int backend_pid(struct ec_pg_conn *c, struct ec_arena *arena)
{
    struct pg_result *r;
    struct ec_err err = { 0 };
    assert_ok(ec_pg_query(c, "SELECT pg_backend_pid()", 0, NULL, arena, &r, &err));
    return atoi(ec_pg_value(r, 0, 0));
}

static void terminate_backend(struct ec_pg_pool *pool, struct ec_pg_conn *other, int pid)
{
    char pid_text[16];
    snprintf(pid_text, sizeof(pid_text), "%d", pid);
    const char *params[] = { pid_text };
    struct ec_err err = { 0 };
    assert_ok(ec_pg_query(other, "SELECT pg_terminate_backend($1::int, 5000)", 1, params, NULL,
                          NULL, &err));
    sleep_ms(20); /* let the FATAL and EOF reach the victim's socket */
}

static void test_query_params(void **state)
{
    struct ec_pg_pool *pool = pool_open(2, NULL);
    struct ec_arena arena;
    ec_arena_init(&arena);
    struct ec_err err = { 0 };
    struct ec_pg_conn *c;
    assert_ok(ec_pg_acquire(pool, &c, &err));
    const char *params[] = { "2", "40", NULL, "it's; DROP TABLE x" };
    struct pg_result *r;
    const char *sql = "SELECT $1::int + $2::int AS sum, $3::text IS NULL AS is_null, $3::text AS "
                      "nothing, $4::text AS echo";
    for (int i = 0; i < 3; i++) {
        assert_ok(ec_pg_query(c, sql, 4, params, &arena, &r, &err));
        assert_int_equal(ec_pg_nrows(r), 1);
        assert_int_equal(ec_pg_ncols(r), 4);
        assert_string_equal(ec_pg_value(r, 0, ec_pg_column(r, "sum")), "42");
        assert_string_equal(ec_pg_value(r, 0, 1), "t");
        assert_true(ec_pg_isnull(r, 0, 2));
        assert_null(ec_pg_value(r, 0, 2));
        assert_string_equal(ec_pg_value(r, 0, 3), "it's; DROP TABLE x");
        assert_int_equal(ec_pg_column(r, "nosuch"), -1);
    }
    /* Prepared once on this connection, run three times. */
    const char *sql_param[] = { sql };
    assert_ok(ec_pg_query(c,
                          "SELECT count(*) FROM pg_prepared_statements WHERE statement "
                          "= $1",
                          1, sql_param, &arena, &r, &err));
    assert_string_equal(ec_pg_value(r, 0, 0), "1");

    exec_ok(pool, "DROP TABLE IF EXISTS t_pg_rows");
    exec_ok(pool, "CREATE TABLE t_pg_rows (id int PRIMARY KEY, v int)");
    assert_ok(ec_pg_query(c, "INSERT INTO t_pg_rows SELECT g, 0 FROM generate_series(1, 5) g", 0,
                          NULL, &arena, &r, &err));
    assert_int_equal(ec_pg_affected(r), 5);
    assert_ok(ec_pg_query(c, "UPDATE t_pg_rows SET v = 1 WHERE id > 3", 0, NULL, &arena, &r, &err));
    assert_int_equal(ec_pg_affected(r), 2);
    assert_ok(ec_pg_query(c, "SELECT 1", 0, NULL, &arena, &r, &err));
    assert_int_equal(ec_pg_affected(r), 1);
    assert_ok(ec_pg_query(c, "SET application_name = 'test_pg'", 0, NULL, &arena, &r, &err));
    assert_int_equal(ec_pg_affected(r), 0);
    assert_ok(ec_pg_pool_ping(pool, &err));
    ec_pg_release(c);
    ec_arena_release(&arena); /* the results' PQclear runs here; ASan checks nothing leaks */
    ec_pg_pool_free(pool);
}

static void test_query_errors(void **state)
{
    struct ec_pg_pool *pool = pool_open(2, NULL);
    exec_ok(pool, "DROP TABLE IF EXISTS t_pg_unique");
    exec_ok(pool, "CREATE TABLE t_pg_unique (email text CONSTRAINT t_pg_unique_email UNIQUE)");
    struct ec_err err = { 0 };
    struct ec_pg_conn *c;
    assert_ok(ec_pg_acquire(pool, &c, &err));
    const char *email[] = { "secret-address@example.com" };
    const char *insert = "INSERT INTO t_pg_unique (email) VALUES ($1)";
    assert_ok(ec_pg_query(c, insert, 1, email, NULL, NULL, &err));
    assert_string_equal(ec_pg_conn_sqlstate(c), "");
    assert_int_equal(ec_pg_query(c, insert, 1, email, NULL, NULL, &err), EC_ECONFLICT);
    assert_string_equal(ec_pg_conn_sqlstate(c), "23505");
    assert_non_null(strstr(err.msg, "t_pg_unique_email"));
    assert_null(strstr(err.msg, "secret-address")); /* parameters never reach messages */

    const char *not_int[] = { "abc" };
    assert_int_equal(ec_pg_query(c, "SELECT $1::int", 1, not_int, NULL, NULL, &err), EC_EINVAL);
    assert_string_equal(ec_pg_conn_sqlstate(c), "22P02");
    assert_null(strstr(err.msg, "abc"));
    assert_int_equal(ec_pg_query(c, "SELECT 1/0", 0, NULL, NULL, NULL, &err), EC_EINVAL);

    assert_int_equal(ec_pg_query(c, "SELEC 1", 0, NULL, NULL, NULL, &err), EC_EINTERNAL);
    assert_string_equal(ec_err_code(&err), "internal_error");
    assert_string_equal(ec_pg_conn_sqlstate(c), "42601");
    assert_null(strstr(err.msg, "SELEC"));
    /* Still usable afterwards. */
    assert_ok(ec_pg_query(c, "SELECT 1", 0, NULL, NULL, NULL, &err));
    ec_pg_release(c);

    struct ec_pg_pool_opts opts = { .statement_timeout_ms = 50 };
    struct ec_pg_pool *slow = pool_open(1, &opts);
    assert_ok(ec_pg_acquire(slow, &c, &err));
    assert_int_equal(ec_pg_query(c, "SELECT pg_sleep(1)", 0, NULL, NULL, NULL, &err), EC_ETIMEOUT);
    ec_pg_release(c);
    ec_pg_pool_free(slow);
    ec_pg_pool_free(pool);
}

static void test_lost_connection(void **state)
{
    struct ec_pg_pool *pool = pool_open(3, NULL);
    struct ec_arena arena;
    ec_arena_init(&arena);
    struct ec_err err = { 0 };
    struct ec_pg_conn *c, *other;
    struct ec_pg_pool_stats stats;

    /* Killed while acquired but before its first statement: replayed on a fresh connection. */
    assert_ok(ec_pg_acquire(pool, &c, &err));
    int pid = backend_pid(c, &arena);
    ec_pg_release(c);
    assert_ok(ec_pg_acquire(pool, &c, &err)); /* the same one: LIFO */
    assert_ok(ec_pg_acquire(pool, &other, &err));
    terminate_backend(pool, other, pid);
    int new_pid = backend_pid(c, &arena);
    assert_int_not_equal(new_pid, pid);
    ec_pg_pool_stats_read(pool, &stats);
    assert_int_equal(stats.retried_queries, 1);

    /* Killed after a statement: not replayed, and the connection is not pooled again. */
    terminate_backend(pool, other, new_pid);
    assert_int_equal(ec_pg_query(c, "SELECT 1", 0, NULL, NULL, NULL, &err), EC_EUNAVAIL);
    assert_string_equal(ec_err_code(&err), "database_unavailable");
    ec_pg_pool_stats_read(pool, &stats);
    assert_int_equal(stats.open, 2);
    ec_pg_release(c);
    ec_pg_pool_stats_read(pool, &stats);
    assert_int_equal(stats.open, 1);
    assert_int_equal(stats.retried_queries, 1);

    /* Killed while idle in the pool: acquire notices and hands out a live one. */
    assert_ok(ec_pg_acquire(pool, &c, &err));
    pid = backend_pid(c, &arena);
    ec_pg_release(c);
    terminate_backend(pool, other, pid);
    assert_ok(ec_pg_acquire(pool, &c, &err));
    assert_int_not_equal(backend_pid(c, &arena), pid);
    ec_pg_pool_stats_read(pool, &stats);
    assert_int_equal(stats.retried_queries, 1);

    /* Killed inside a transaction: an error, never a silent replay. */
    assert_ok(ec_pg_query(c, "BEGIN", 0, NULL, NULL, NULL, &err));
    pid = backend_pid(c, &arena);
    terminate_backend(pool, other, pid);
    assert_int_equal(ec_pg_query(c, "SELECT 1", 0, NULL, NULL, NULL, &err), EC_EUNAVAIL);
    ec_pg_release(c);
    ec_pg_release(other);
    ec_pg_pool_stats_read(pool, &stats);
    assert_int_equal(stats.open, stats.idle);
    assert_false(stats.down);
    ec_arena_release(&arena);
    ec_pg_pool_free(pool);
}

struct releaser {
    struct ec_pg_conn *conn;
    int after_ms;
};

static void *release_later(void *arg)
{
    struct releaser *r = arg;
    sleep_ms(r->after_ms);
    ec_pg_release(r->conn);
    return NULL;
}

static void test_acquire_timeout(void **state)
{
    struct ec_pg_pool_opts opts = { .acquire_timeout_ms = 150 };
    struct ec_pg_pool *pool = pool_open(1, &opts);
    struct ec_err err = { 0 };
    struct ec_pg_conn *c, *c2;
    assert_ok(ec_pg_acquire(pool, &c, &err));
    int64_t t0 = ec_mono_ms();
    assert_int_equal(ec_pg_acquire(pool, &c2, &err), EC_EUNAVAIL);
    int64_t waited = ec_mono_ms() - t0;
    assert_true(waited >= 145 && waited < 1000);
    assert_string_equal(ec_err_code(&err), "database_unavailable");
    struct ec_pg_pool_stats stats;
    ec_pg_pool_stats_read(pool, &stats);
    assert_int_equal(stats.acquire_timeouts, 1);
    assert_false(stats.down);

    /* A waiter gets the connection as soon as it is released. */
    struct releaser rel = { c, 40 };
    pthread_t t;
    pthread_create(&t, NULL, release_later, &rel);
    t0 = ec_mono_ms();
    assert_ok(ec_pg_acquire(pool, &c2, &err));
    assert_true(ec_mono_ms() - t0 < 140);
    pthread_join(t, NULL);
    assert_ptr_equal(c2, c);
    ec_pg_release(c2);
    ec_pg_pool_free(pool);
}

struct skew {
    struct ec_pg_pool *pool;
    pthread_barrier_t *barrier;
    int id;
    int attempts;
    enum ec_status status;
    struct ec_err err;
};

/* Write skew: both read the sum, then each updates its own row. Serializable isolation must fail
 * one of them with 40001; ec_pg_tx must then run it again. */
static enum ec_status skew_fn(struct ec_pg_conn *c, struct ec_arena *arena, void *ctx,
                              struct ec_err *err)
{
    struct skew *s = ctx;
    s->attempts++;
    struct pg_result *r;
    enum ec_status st = ec_pg_query(c, "SELECT sum(v) FROM t_pg_skew", 0, NULL, arena, &r, err);
    if (st != EC_OK)
        return st;
    if (s->attempts == 1)
        pthread_barrier_wait(s->barrier);
    char id[12];
    snprintf(id, sizeof(id), "%d", s->id);
    const char *params[] = { id };
    return ec_pg_query(c, "UPDATE t_pg_skew SET v = v + 1 WHERE id = $1", 1, params, NULL, NULL,
                       err);
}

static void *skew_thread(void *arg)
{
    struct skew *s = arg;
    struct ec_arena arena;
    ec_arena_init(&arena);
    s->status = ec_pg_tx(s->pool, EC_PG_SERIALIZABLE, &arena, skew_fn, s, &s->err);
    ec_arena_release(&arena);
    return NULL;
}

static enum ec_status insert_then_fail(struct ec_pg_conn *c, struct ec_arena *arena, void *ctx,
                                       struct ec_err *err)
{
    enum ec_status st =
        ec_pg_query(c, "INSERT INTO t_pg_skew VALUES (99, 0)", 0, NULL, NULL, NULL, err);
    if (st != EC_OK)
        return st;
    return ec_err_set(err, EC_ECONFLICT, NULL, "business rule says no");
}

static enum ec_status swallow_error(struct ec_pg_conn *c, struct ec_arena *arena, void *ctx,
                                    struct ec_err *err)
{
    struct ec_err ignored = { 0 };
    ec_pg_query(c, "SELECT 1/0", 0, NULL, NULL, NULL, &ignored);
    return EC_OK;
}

static void test_tx_retry(void **state)
{
    struct ec_pg_pool *pool = pool_open(4, NULL);
    exec_ok(pool, "DROP TABLE IF EXISTS t_pg_skew");
    exec_ok(pool, "CREATE TABLE t_pg_skew (id int PRIMARY KEY, v int NOT NULL)");
    exec_ok(pool, "INSERT INTO t_pg_skew VALUES (1, 0), (2, 0)");

    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 2);
    struct skew s[2] = { { .pool = pool, .barrier = &barrier, .id = 1 },
                         { .pool = pool, .barrier = &barrier, .id = 2 } };
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, skew_thread, &s[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&barrier);
    if (s[0].status != EC_OK || s[1].status != EC_OK)
        fail_msg("skew: %s / %s", s[0].err.msg, s[1].err.msg);
    /* One ran once; the other failed with 40001, was rolled back and ran again. */
    assert_int_equal(s[0].attempts + s[1].attempts, 3);

    struct ec_arena arena;
    ec_arena_init(&arena);
    struct ec_err err = { 0 };
    struct ec_pg_conn *c;
    struct pg_result *r;
    assert_ok(ec_pg_acquire(pool, &c, &err));
    assert_ok(ec_pg_query(c, "SELECT sum(v) FROM t_pg_skew WHERE id IN (1, 2)", 0, NULL, &arena, &r,
                          &err));
    assert_string_equal(ec_pg_value(r, 0, 0), "2");
    ec_pg_release(c);

    /* Any other failure rolls back once, with fn's own error. */
    assert_int_equal(ec_pg_tx(pool, EC_PG_READ_COMMITTED, &arena, insert_then_fail, NULL, &err),
                     EC_ECONFLICT);
    assert_string_equal(err.msg, "business rule says no");
    assert_int_equal(ec_pg_tx(pool, EC_PG_REPEATABLE_READ, &arena, swallow_error, NULL, &err),
                     EC_EINTERNAL);
    assert_ok(ec_pg_acquire(pool, &c, &err));
    assert_ok(
        ec_pg_query(c, "SELECT count(*) FROM t_pg_skew WHERE id = 99", 0, NULL, &arena, &r, &err));
    assert_string_equal(ec_pg_value(r, 0, 0), "0");
    ec_pg_release(c);
    struct ec_pg_pool_stats stats;
    ec_pg_pool_stats_read(pool, &stats);
    assert_int_equal(stats.open, stats.idle);
    ec_arena_release(&arena);
    ec_pg_pool_free(pool);
}

/* Pipelined transactions: BEGIN travels with the first statement, deferred statements with the
 * next one or with COMMIT. */
static enum ec_status deferred_then_read(struct ec_pg_conn *c, struct ec_arena *arena, void *ctx,
                                         struct ec_err *err)
{
    const char *p1[] = { "1", "first" };
    const char *p2[] = { "2", NULL };
    enum ec_status st;
    if ((st = ec_pg_query_deferred(c, "INSERT INTO t_pg_pipe VALUES ($1::int, $2)", 2, p1, err)) !=
            EC_OK ||
        (st = ec_pg_query_deferred(c, "INSERT INTO t_pg_pipe VALUES ($1::int, $2)", 2, p2, err)) !=
            EC_OK)
        return st;
    /* Both deferred rows are visible to the next statement of the same transaction. */
    struct pg_result *r;
    if ((st = ec_pg_query(c,
                          "SELECT count(*), txid_current_if_assigned() IS NOT NULL FROM "
                          "t_pg_pipe",
                          0, NULL, arena, &r, err)) != EC_OK)
        return st;
    *(int *)ctx = atoi(ec_pg_value(r, 0, 0)) * 10 + (ec_pg_value(r, 0, 1)[0] == 't');
    const char *p3[] = { "3", "at commit" };
    return ec_pg_query_deferred(c, "INSERT INTO t_pg_pipe VALUES ($1::int, $2)", 2, p3, err);
}

static enum ec_status deferred_fails_at_commit(struct ec_pg_conn *c, struct ec_arena *arena,
                                               void *ctx, struct ec_err *err)
{
    const char *p[] = { "4", "kept?" };
    enum ec_status st =
        ec_pg_query_deferred(c, "INSERT INTO t_pg_pipe VALUES ($1::int, $2)", 2, p, err);
    if (st != EC_OK)
        return st;
    const char *dup[] = { "1", "duplicate key" };
    return ec_pg_query_deferred(c, "INSERT INTO t_pg_pipe VALUES ($1::int, $2)", 2, dup, err);
}

static enum ec_status no_statement(struct ec_pg_conn *c, struct ec_arena *arena, void *ctx,
                                   struct ec_err *err)
{
    return EC_OK;
}

static void test_tx_pipeline(void **state)
{
    struct ec_pg_pool *pool = pool_open(1, NULL);
    exec_ok(pool, "DROP TABLE IF EXISTS t_pg_pipe");
    exec_ok(pool, "CREATE TABLE t_pg_pipe (id int PRIMARY KEY, note text)");
    struct ec_arena arena;
    ec_arena_init(&arena);
    struct ec_err err = { 0 };
    int seen = 0;
    for (int round = 0; round < 2; round++) { /* the second round runs the cached statements */
        exec_ok(pool, "DELETE FROM t_pg_pipe");
        assert_ok(ec_pg_tx(pool, EC_PG_READ_COMMITTED, &arena, deferred_then_read, &seen, &err));
        assert_int_equal(seen, 21); /* two rows, inside a transaction */
    }
    struct ec_pg_conn *c;
    struct pg_result *r;
    assert_ok(ec_pg_acquire(pool, &c, &err));
    assert_ok(ec_pg_query(c,
                          "SELECT string_agg(id || ':' || coalesce(note, '-'), ',' ORDER BY id) "
                          "FROM t_pg_pipe",
                          0, NULL, &arena, &r, &err));
    assert_string_equal(ec_pg_value(r, 0, 0), "1:first,2:-,3:at commit");
    /* The insert statement was prepared once on this connection, inside a pipeline. */
    assert_ok(ec_pg_query(c,
                          "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE "
                          "'INSERT INTO t_pg_pipe%'",
                          0, NULL, &arena, &r, &err));
    assert_string_equal(ec_pg_value(r, 0, 0), "1");
    ec_pg_release(c);

    /* A deferred statement that fails fails the COMMIT it travelled with: nothing is kept, and
     * the error names the unique violation. */
    assert_int_equal(
        ec_pg_tx(pool, EC_PG_READ_COMMITTED, &arena, deferred_fails_at_commit, NULL, &err),
        EC_ECONFLICT);
    assert_ok(ec_pg_acquire(pool, &c, &err));
    assert_ok(
        ec_pg_query(c, "SELECT count(*) FROM t_pg_pipe WHERE id = 4", 0, NULL, &arena, &r, &err));
    assert_string_equal(ec_pg_value(r, 0, 0), "0");
    ec_pg_release(c);

    /* A transaction that ran nothing sends nothing, and the connection stays usable. */
    assert_ok(ec_pg_tx(pool, EC_PG_SERIALIZABLE, &arena, no_statement, NULL, &err));
    assert_ok(ec_pg_pool_ping(pool, &err));
    struct ec_pg_pool_stats stats;
    ec_pg_pool_stats_read(pool, &stats);
    assert_int_equal(stats.open, 1);
    ec_arena_release(&arena);
    ec_pg_pool_free(pool);
}

/* --- restart mode --------------------------------------------------------------------------- */

#define RESTART_THREADS 4

struct restart_run {
    struct ec_pg_pool *pool;
    atomic_bool stop;
    atomic_int ok, unavailable, other;
    atomic_llong first_fail_ms, last_fail_ms, first_ok_after_ms;
    atomic_llong slowest_fail_us;
    atomic_llong slowest_ok_us;
};

static enum ec_status restart_fn(struct ec_pg_conn *c, struct ec_arena *arena, void *ctx,
                                 struct ec_err *err)
{
    struct pg_result *r;
    const char *params[] = { "41" };
    enum ec_status st = ec_pg_query(c, "SELECT $1::int + 1", 1, params, arena, &r, err);
    if (st == EC_OK && strcmp(ec_pg_value(r, 0, 0), "42") != 0)
        st = ec_err_set(err, EC_EINTERNAL, NULL, "wrong answer");
    return st;
}

static void atomic_max(atomic_llong *v, long long x)
{
    long long cur = atomic_load(v);
    while (x > cur && !atomic_compare_exchange_weak(v, &cur, x))
        ;
}

static void *restart_worker(void *arg)
{
    struct restart_run *run = arg;
    struct ec_arena arena;
    ec_arena_init(&arena);
    while (!atomic_load(&run->stop)) {
        struct ec_err err = { 0 };
        int64_t t0 = ec_mono_us();
        enum ec_status st = ec_pg_with_conn(run->pool, &arena, restart_fn, NULL, &err);
        int64_t took = ec_mono_us() - t0, now = ec_mono_ms();
        ec_arena_reset(&arena);
        if (st == EC_OK) {
            atomic_fetch_add(&run->ok, 1);
            atomic_max(&run->slowest_ok_us, took);
            long long zero = 0;
            if (atomic_load(&run->last_fail_ms) != 0)
                atomic_compare_exchange_strong(&run->first_ok_after_ms, &zero, now);
        } else if (st == EC_EUNAVAIL && strcmp(ec_err_code(&err), "database_unavailable") == 0) {
            atomic_fetch_add(&run->unavailable, 1);
            atomic_max(&run->slowest_fail_us, took);
            long long zero = 0;
            atomic_compare_exchange_strong(&run->first_fail_ms, &zero, now);
            atomic_store(&run->last_fail_ms, now);
            atomic_store(&run->first_ok_after_ms, 0);
        } else {
            atomic_fetch_add(&run->other, 1);
            fprintf(stderr, "restart: unexpected %s: %s\n", ec_err_code(&err), err.msg);
        }
        sleep_ms(2);
    }
    ec_arena_release(&arena);
    return NULL;
}

static void test_restart(void **state)
{
    struct restart_run run = { 0 };
    run.pool = pool_open(RESTART_THREADS, NULL);
    pthread_t t[RESTART_THREADS];
    for (int i = 0; i < RESTART_THREADS; i++)
        pthread_create(&t[i], NULL, restart_worker, &run);
    int64_t start = ec_mono_ms();
    while (atomic_load(&run.ok) < 50 && ec_mono_ms() - start < 10000)
        sleep_ms(5);
    /* The integration test stops and starts the server when it reads this line. */
    printf("restart-ready\n");
    fflush(stdout);
    /* Done once the server went away and answered again for a whole second. */
    int64_t deadline = ec_mono_ms() + 60000;
    while (ec_mono_ms() < deadline) {
        long long back = atomic_load(&run.first_ok_after_ms);
        if (back != 0 && ec_mono_ms() - back >= 1000)
            break;
        sleep_ms(10);
    }
    atomic_store(&run.stop, true);
    for (int i = 0; i < RESTART_THREADS; i++)
        pthread_join(t[i], NULL);
    struct ec_pg_pool_stats stats;
    ec_pg_pool_stats_read(run.pool, &stats);
    printf("restart-stats {\"ok\":%d,\"unavailable\":%d,\"other\":%d,\"slowest_fail_ms\":%.1f,"
           "\"slowest_ok_ms\":%.1f,\"outage_ms\":%lld,\"recovered_after_last_fail_ms\":%lld,"
           "\"connects\":%llu,\"connect_failures\":%llu,\"fast_failures\":%llu,"
           "\"retried_queries\":%llu}\n",
           atomic_load(&run.ok), atomic_load(&run.unavailable), atomic_load(&run.other),
           atomic_load(&run.slowest_fail_us) / 1000.0, atomic_load(&run.slowest_ok_us) / 1000.0,
           atomic_load(&run.last_fail_ms) - atomic_load(&run.first_fail_ms),
           atomic_load(&run.first_ok_after_ms) - atomic_load(&run.last_fail_ms),
           (unsigned long long)stats.connects, (unsigned long long)stats.connect_failures,
           (unsigned long long)stats.fast_failures, (unsigned long long)stats.retried_queries);
    fflush(stdout);
    assert_int_equal(atomic_load(&run.other), 0);
    assert_true(atomic_load(&run.unavailable) > 0);          /* the server did go away */
    assert_true(atomic_load(&run.first_ok_after_ms) != 0);   /* and the pool came back */
    assert_true(atomic_load(&run.slowest_fail_us) < 100000); /* every failure was fast */
    assert_false(stats.down);
    ec_pg_pool_free(run.pool);
}

int main(void)
{
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_sqlstate_map),
        cmocka_unit_test(test_pool_args),
        cmocka_unit_test(test_breaker_fails_fast),
        cmocka_unit_test(test_connect_timeout),
    };
    const struct CMUnitTest with_db[] = {
        cmocka_unit_test(test_query_params),    cmocka_unit_test(test_query_errors),
        cmocka_unit_test(test_lost_connection), cmocka_unit_test(test_acquire_timeout),
        cmocka_unit_test(test_tx_retry),        cmocka_unit_test(test_tx_pipeline),
    };
    const struct CMUnitTest restart[] = {
        cmocka_unit_test(test_restart),
    };
    /* Logs would drown the test output; the restart mode keeps warnings (down/up lines). */
    db_url = getenv("EC_TEST_DATABASE_URL");
    if (db_url != NULL && db_url[0] == '\0')
        db_url = NULL;
    const char *restart_env = getenv("EC_TEST_PG_RESTART");
    if (db_url != NULL && restart_env != NULL && strcmp(restart_env, "1") == 0) {
        ec_log_setup("test_pg", EC_LOG_INFO, STDERR_FILENO);
        return cmocka_run_group_tests_name("pg_restart", restart, NULL, NULL);
    }
    ec_log_setup("test_pg", EC_LOG_ERROR + 1, STDERR_FILENO);
    int failed = cmocka_run_group_tests_name("pg_pure", pure, NULL, NULL);
    if (db_url == NULL) {
        printf("EC_TEST_DATABASE_URL not set: database tests skipped\n");
        return failed;
    }
    return failed + cmocka_run_group_tests_name("pg_database", with_db, NULL, NULL);
}
