/* The PostgreSQL layer's entry points that are neither pooling nor statement execution: SQLSTATE
 * mapping, transactions that retry serialization failures, and reading results. The pool is
 * ec_pg_pool.c; statements and pipelines are ec_pg_exec.c. */
#include "common/ec_log.h"
#include "common/ec_mem.h"
#include "common/ec_pg_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* --- SQLSTATE to status ------------------------------------------------------------------ */

static const struct {
    const char *prefix; /* a whole SQLSTATE, or a two-letter class */
    enum ec_status status;
    const char *code;
} sqlstate_table[] = {
    { "08", EC_EUNAVAIL, CODE_UNAVAILABLE },    /* connection exception */
    { "57P01", EC_EUNAVAIL, CODE_UNAVAILABLE }, /* admin shutdown */
    { "57P02", EC_EUNAVAIL, CODE_UNAVAILABLE }, /* crash shutdown */
    { "57P03", EC_EUNAVAIL, CODE_UNAVAILABLE }, /* cannot connect now (starting, stopping) */
    { "53", EC_EUNAVAIL, CODE_UNAVAILABLE },    /* insufficient resources, too many clients */
    /* Contention is transient: a 503 asks the client to retry, a 409 would blame its input. */
    { "40001", EC_EUNAVAIL, "database_busy" },
    { "40P01", EC_EUNAVAIL, "database_busy" },
    { "57014", EC_ETIMEOUT, "database_timeout" }, /* statement_timeout */
    { "23505", EC_ECONFLICT, NULL },
    { "22", EC_EINVAL, NULL }, /* data exception */
};

enum ec_status ec_pg_status_from_sqlstate(const char *sqlstate, const char **code)
{
    const char *dummy;
    if (code == NULL)
        code = &dummy;
    *code = CODE_UNAVAILABLE;
    if (sqlstate == NULL || strlen(sqlstate) != 5)
        return EC_EUNAVAIL;
    for (size_t i = 0; i < sizeof(sqlstate_table) / sizeof(sqlstate_table[0]); i++) {
        const char *p = sqlstate_table[i].prefix;
        if (strncmp(sqlstate, p, strlen(p)) == 0) {
            *code = sqlstate_table[i].code;
            return sqlstate_table[i].status;
        }
    }
    *code = NULL;
    return EC_EINTERNAL;
}

bool ec_pg__sqlstate_retryable(const char *sqlstate)
{
    return sqlstate != NULL && (strcmp(sqlstate, "40001") == 0 || strcmp(sqlstate, "40P01") == 0);
}

enum ec_status ec_pg__unavailable(struct ec_err *err)
{
    ec_err_set(err, EC_EUNAVAIL, CODE_UNAVAILABLE, "database unavailable");
    return EC_EUNAVAIL;
}

/* --- transactions ------------------------------------------------------------------------- */

static const char *const begin_sql[] = {
    [EC_PG_READ_COMMITTED] = "BEGIN ISOLATION LEVEL READ COMMITTED",
    [EC_PG_REPEATABLE_READ] = "BEGIN ISOLATION LEVEL REPEATABLE READ",
    [EC_PG_SERIALIZABLE] = "BEGIN ISOLATION LEVEL SERIALIZABLE",
};

static enum ec_status tx_attempt(struct ec_pg_conn *c, enum ec_pg_isolation isolation,
                                 struct ec_arena *arena, ec_pg_tx_fn fn, void *ctx,
                                 struct ec_err *err)
{
    /* BEGIN travels with the first statement, and deferred statements with the next one or
     * with COMMIT: a transaction of one statement and a deferred insert is two round trips. */
    ec_pg__queue_clear(c);
    ec_pg__queue_push(c, begin_sql[isolation], 0, NULL, true);
    c->in_tx = true;
    enum ec_status st = fn(c, arena, ctx, err);
    c->in_tx = false;
    if (st == EC_OK && c->pg != NULL && PQtransactionStatus(c->pg) == PQTRANS_INERROR)
        /* COMMIT would quietly roll back; fn swallowed an error it should have returned. */
        st = ec_err_set(err, EC_EINTERNAL, NULL, "transaction aborted by an earlier error");
    if (st != EC_OK) {
        ec_pg__queue_clear(c);
        if (c->pg != NULL && PQstatus(c->pg) == CONNECTION_OK &&
            PQtransactionStatus(c->pg) != PQTRANS_IDLE)
            PQclear(PQexec(c->pg, "ROLLBACK")); /* release closes it if this failed */
        return st;
    }
    if (c->nqueued == 1 && c->queued[0].simple) {
        ec_pg__queue_clear(c); /* fn ran no statement: there is nothing to commit */
        return EC_OK;
    }
    return ec_pg__conn_run(c, "COMMIT", 0, NULL, true, NULL, NULL, err);
}

static void backoff_sleep(int attempt)
{
    static _Thread_local unsigned seed;
    if (seed == 0)
        seed = (unsigned)ec_mono_us() ^ (unsigned)(uintptr_t)&seed;
    /* 5, 10, 20, 40 ms ceilings, each slept for a random half to whole of it, so that the
     * transactions that collided do not collide again in lockstep. */
    int ceiling_us = 5000 << (attempt - 1);
    int us = ceiling_us / 2 + rand_r(&seed) % (ceiling_us / 2 + 1);
    struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)us * 1000 };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

enum ec_status ec_pg_tx(struct ec_pg_pool *pool, enum ec_pg_isolation isolation,
                        struct ec_arena *arena, ec_pg_tx_fn fn, void *ctx, struct ec_err *err)
{
    EC_ASSERT((unsigned)isolation <= EC_PG_SERIALIZABLE);
    for (int attempt = 1;; attempt++) {
        struct ec_pg_conn *c;
        enum ec_status st = ec_pg_acquire(pool, &c, err);
        if (st != EC_OK)
            return st;
        c->saw_retryable = false;
        st = tx_attempt(c, isolation, arena, fn, ctx, err);
        bool retry = st != EC_OK && c->saw_retryable && attempt < EC_PG_TX_ATTEMPTS;
        if (retry)
            EC_DEBUG("transaction retried", EC_LI("attempt", attempt),
                     EC_LS("sqlstate", c->sqlstate));
        ec_pg_release(c);
        if (!retry)
            return st;
        backoff_sleep(attempt);
    }
}

enum ec_status ec_pg_with_conn(struct ec_pg_pool *pool, struct ec_arena *arena, ec_pg_tx_fn fn,
                               void *ctx, struct ec_err *err)
{
    struct ec_pg_conn *c;
    enum ec_status st = ec_pg_acquire(pool, &c, err);
    if (st != EC_OK)
        return st;
    st = fn(c, arena, ctx, err);
    ec_pg_release(c);
    return st;
}

enum ec_status ec_pg_pool_ping(struct ec_pg_pool *pool, struct ec_err *err)
{
    struct ec_pg_conn *c;
    enum ec_status st = ec_pg_acquire(pool, &c, err);
    if (st != EC_OK)
        return st;
    st = ec_pg__conn_run(c, "SELECT 1", 0, NULL, true, NULL, NULL, err);
    ec_pg_release(c);
    return st;
}

/* --- results ------------------------------------------------------------------------------ */

int ec_pg_nrows(const struct pg_result *res)
{
    return PQntuples(res);
}

int ec_pg_ncols(const struct pg_result *res)
{
    return PQnfields(res);
}

int ec_pg_column(const struct pg_result *res, const char *name)
{
    return PQfnumber(res, name);
}

bool ec_pg_isnull(const struct pg_result *res, int row, int col)
{
    EC_ASSERT(row >= 0 && row < PQntuples(res) && col >= 0 && col < PQnfields(res));
    return PQgetisnull(res, row, col) != 0;
}

const char *ec_pg_value(const struct pg_result *res, int row, int col)
{
    if (ec_pg_isnull(res, row, col))
        return NULL;
    return PQgetvalue(res, row, col);
}

int64_t ec_pg_affected(const struct pg_result *res)
{
    /* PQcmdTuples wants a non-const pointer but only reads. */
    const char *n = PQcmdTuples((PGresult *)res);
    return n[0] != '\0' ? strtoll(n, NULL, 10) : 0;
}
