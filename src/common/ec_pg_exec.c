/* Running statements: the per-connection prepared-statement cache, pipelines (a transaction's
 * BEGIN and deferred statements travel with the next statement), the replay of a statement
 * that met a connection lost while idle, and the mapping of failures to statuses and logs. */
#include "common/ec_log.h"
#include "common/ec_mem.h"
#include "common/ec_pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- statements --------------------------------------------------------------------------- */

static uint64_t sql_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static struct pg_stmt *stmt_find(struct ec_pg_conn *c, uint64_t hash, const char *sql)
{
    /* Linear: a connection holds a few dozen statements and a round trip dwarfs the scan. */
    for (size_t i = 0; i < c->nstmts; i++)
        if (c->stmts[i].hash == hash && strcmp(c->stmts[i].sql, sql) == 0)
            return &c->stmts[i];
    return NULL;
}

static void stmt_forget(struct ec_pg_conn *c, struct pg_stmt *s)
{
    /* The server keeps the old name; a new one is prepared under a fresh name next time. */
    free(s->sql);
    *s = c->stmts[--c->nstmts];
}

static bool result_ok(const PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
}

void ec_pg__queue_push(struct ec_pg_conn *c, const char *sql, int nparams,
                       const char *const *params, bool simple)
{
    EC_ASSERT(c->nqueued < QUEUE_MAX);
    if (c->nqueued == c->queued_cap) {
        c->queued_cap = c->queued_cap ? c->queued_cap * 2 : 4;
        c->queued = ec_xrealloc(c->queued, c->queued_cap * sizeof(*c->queued));
    }
    struct pg_queued *q = &c->queued[c->nqueued++];
    q->sql = ec_xstrdup(sql);
    q->nparams = nparams;
    q->simple = simple;
    q->params = nparams > 0 ? ec_xcalloc((size_t)nparams, sizeof(*q->params)) : NULL;
    for (int i = 0; i < nparams; i++)
        q->params[i] = params[i] != NULL ? ec_xstrdup(params[i]) : NULL;
}

void ec_pg__queue_clear(struct ec_pg_conn *c)
{
    for (size_t i = 0; i < c->nqueued; i++) {
        struct pg_queued *q = &c->queued[i];
        for (int k = 0; k < q->nparams; k++) {
            if (q->params[k] != NULL) /* a parameter may be key material (a lease key) */
                explicit_bzero(q->params[k], strlen(q->params[k]));
            free(q->params[k]);
        }
        free(q->params);
        free(q->sql);
    }
    c->nqueued = 0;
}

/* One statement of a pipeline and what became of it. */
struct pl_item {
    const char *sql;
    const char *const *params;
    int nparams;
    bool simple;
    struct pg_stmt *stmt;  /* cached before this pipeline; valid while sending only */
    char prepare_name[16]; /* prepared within this pipeline ("" if not) */
    bool parsed_here;      /* this item sent that Parse */
};

/* The next result of the current pipeline command and the NULL that ends it; NULL if the
 * connection failed. */
static PGresult *pl_result(PGconn *pg)
{
    PGresult *r = PQgetResult(pg);
    if (r != NULL)
        for (PGresult *extra; (extra = PQgetResult(pg)) != NULL;)
            PQclear(extra); /* a command yields one result here; be safe */
    return r;
}

/* Sends the queued statements and sql in one pipeline (one round trip) and returns sql's result,
 * or the first failure with *failed_sql naming its statement. The queue is left as it was. */
static PGresult *conn_exec_pipeline(struct ec_pg_conn *c, const char *sql, int nparams,
                                    const char *const *params, bool simple, struct pg_stmt **used,
                                    const char **failed_sql)
{
    size_t n = c->nqueued + 1;
    struct pl_item items[QUEUE_MAX + 1];
    EC_ASSERT(n <= QUEUE_MAX + 1);
    for (size_t i = 0; i < c->nqueued; i++)
        items[i] = (struct pl_item){ .sql = c->queued[i].sql,
                                     .params = (const char *const *)c->queued[i].params,
                                     .nparams = c->queued[i].nparams,
                                     .simple = c->queued[i].simple };
    items[n - 1] =
        (struct pl_item){ .sql = sql, .params = params, .nparams = nparams, .simple = simple };
    if (PQenterPipelineMode(c->pg) != 1)
        return NULL;
    bool sent = true;
    size_t pending_prepares = 0;
    for (size_t i = 0; i < n && sent; i++) {
        struct pl_item *it = &items[i];
        if (it->simple) {
            sent = PQsendQueryParams(c->pg, it->sql, 0, NULL, NULL, NULL, NULL, 0) == 1;
            continue;
        }
        it->stmt = stmt_find(c, sql_hash(it->sql), it->sql);
        /* The same new statement twice in one pipeline is prepared once. */
        for (size_t k = 0; it->stmt == NULL && k < i; k++)
            if (items[k].prepare_name[0] != '\0' && strcmp(items[k].sql, it->sql) == 0)
                memcpy(it->prepare_name, items[k].prepare_name, sizeof(it->prepare_name));
        const char *name = it->stmt != NULL ? it->stmt->name : NULL;
        if (name == NULL && it->prepare_name[0] != '\0') {
            name = it->prepare_name;
        } else if (name == NULL && c->nstmts + pending_prepares < STMT_CACHE_MAX) {
            snprintf(it->prepare_name, sizeof(it->prepare_name), "ec_%u", ++c->stmt_seq);
            sent = PQsendPrepare(c->pg, it->prepare_name, it->sql, 0, NULL) == 1;
            it->parsed_here = true;
            pending_prepares++;
            name = it->prepare_name;
            if (!sent)
                break;
        }
        if (name != NULL)
            sent = PQsendQueryPrepared(c->pg, name, it->nparams, it->params, NULL, NULL, 0) == 1;
        else
            sent = PQsendQueryParams(c->pg, it->sql, it->nparams, NULL, it->params, NULL, NULL,
                                     0) == 1;
    }
    if (!sent || PQpipelineSync(c->pg) != 1) {
        /* libpq could not even queue it: the connection is unusable for this pipeline. */
        ec_pg__conn_close(c);
        return NULL;
    }
    PGresult *out = NULL, *fail = NULL;
    for (size_t i = 0; i < n; i++) {
        struct pl_item *it = &items[i];
        if (it->parsed_here) {
            PGresult *pr = pl_result(c->pg);
            if (pr == NULL) {
                ec_pg__conn_close(c);
                PQclear(fail);
                return NULL;
            }
            if (PQresultStatus(pr) == PGRES_COMMAND_OK) {
                if (c->nstmts == c->stmts_cap) {
                    c->stmts_cap = c->stmts_cap ? c->stmts_cap * 2 : 16;
                    c->stmts = ec_xrealloc(c->stmts, c->stmts_cap * sizeof(*c->stmts));
                }
                struct pg_stmt *st = &c->stmts[c->nstmts++];
                st->hash = sql_hash(it->sql);
                st->sql = ec_xstrdup(it->sql);
                memcpy(st->name, it->prepare_name, sizeof(st->name));
                PQclear(pr);
            } else if (fail == NULL && PQresultStatus(pr) != PGRES_PIPELINE_ABORTED) {
                fail = pr;
                *failed_sql = it->sql;
            } else {
                PQclear(pr);
            }
        }
        PGresult *r = pl_result(c->pg);
        if (r == NULL) {
            ec_pg__conn_close(c);
            PQclear(fail);
            return NULL;
        }
        if (i == n - 1 && fail == NULL) {
            out = r;
            if (!it->simple)
                *used = stmt_find(c, sql_hash(it->sql), it->sql);
        } else if (fail == NULL && !result_ok(r)) {
            fail = r;
            *failed_sql = it->sql;
        } else {
            PQclear(r);
        }
    }
    PGresult *sync = PQgetResult(c->pg);
    bool synced = sync != NULL && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
    PQclear(sync);
    if (!synced || PQexitPipelineMode(c->pg) != 1) {
        ec_pg__conn_close(c);
        PQclear(out);
        PQclear(fail);
        return NULL;
    }
    if (fail != NULL) {
        PQclear(out);
        return fail;
    }
    *failed_sql = sql;
    return out;
}

/* Runs sql, preparing it on first use unless simple (transaction control goes through the
 * simple protocol: there is nothing to plan). *used is the cached statement run, if any. */
static PGresult *conn_exec(struct ec_pg_conn *c, const char *sql, int nparams,
                           const char *const *params, bool simple, struct pg_stmt **used,
                           const char **failed_sql)
{
    *used = NULL;
    *failed_sql = sql;
    if (c->nqueued > 0)
        return conn_exec_pipeline(c, sql, nparams, params, simple, used, failed_sql);
    if (simple)
        return PQexec(c->pg, sql);
    uint64_t hash = sql_hash(sql);
    struct pg_stmt *s = stmt_find(c, hash, sql);
    if (s == NULL && c->nstmts < STMT_CACHE_MAX) {
        char name[16];
        snprintf(name, sizeof(name), "ec_%u", ++c->stmt_seq);
        PGresult *r = PQprepare(c->pg, name, sql, 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            return r;
        PQclear(r);
        if (c->nstmts == c->stmts_cap) {
            c->stmts_cap = c->stmts_cap ? c->stmts_cap * 2 : 16;
            c->stmts = ec_xrealloc(c->stmts, c->stmts_cap * sizeof(*c->stmts));
        }
        s = &c->stmts[c->nstmts++];
        s->hash = hash;
        s->sql = ec_xstrdup(sql);
        memcpy(s->name, name, sizeof(name));
    }
    if (s == NULL)
        return PQexecParams(c->pg, sql, nparams, NULL, params, NULL, NULL, 0);
    *used = s;
    return PQexecPrepared(c->pg, s->name, nparams, params, NULL, NULL, 0);
}

static void result_clear(void *r)
{
    PQclear(r);
}

static void field_or_empty(const PGresult *r, int field, const char **out)
{
    const char *v = r != NULL ? PQresultErrorField(r, field) : NULL;
    *out = v != NULL ? v : "";
}

/* Fills err for a failed statement and logs it: server messages in classes 22 and 23 can quote
 * the offending value (maybe a secret parameter), so those are logged by names only. */
static enum ec_status conn_fail(struct ec_pg_conn *c, const char *sql, const PGresult *r,
                                struct ec_err *err)
{
    const char *sqlstate = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    bool lost = c->pg == NULL || PQstatus(c->pg) == CONNECTION_BAD;
    const char *code = NULL;
    enum ec_status st;
    if (lost) {
        st = ec_pg_status_from_sqlstate(NULL, &code);
        snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", sqlstate != NULL ? sqlstate : "08006");
    } else if (sqlstate == NULL) {
        st = EC_EINTERNAL; /* libpq refused it locally, e.g. too many parameters */
        snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", "");
    } else {
        st = ec_pg_status_from_sqlstate(sqlstate, &code);
        snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", sqlstate);
    }
    if (ec_pg__sqlstate_retryable(sqlstate))
        c->saw_retryable = true;

    const char *constraint, *table, *column, *datatype;
    field_or_empty(r, PG_DIAG_CONSTRAINT_NAME, &constraint);
    field_or_empty(r, PG_DIAG_TABLE_NAME, &table);
    field_or_empty(r, PG_DIAG_COLUMN_NAME, &column);
    field_or_empty(r, PG_DIAG_DATATYPE_NAME, &datatype);
    char message[200];
    bool value_bearing = strncmp(c->sqlstate, "22", 2) == 0 || strncmp(c->sqlstate, "23", 2) == 0;
    if (value_bearing)
        snprintf(message, sizeof(message), "(withheld: may quote a value)");
    else if (r != NULL && PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) != NULL)
        ec_pg__first_line(message, sizeof(message), PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
    else
        ec_pg__first_line(message, sizeof(message), c->pg != NULL ? PQerrorMessage(c->pg) : "");
    enum ec_log_level lvl = st == EC_EINTERNAL || st == EC_ETIMEOUT ? EC_LOG_ERROR : EC_LOG_DEBUG;
    if (ec_log_enabled(lvl))
        ec_log_fields(lvl, "database statement failed",
                      (const struct ec_log_field[]){ EC_LS("sqlstate", c->sqlstate),
                                                     EC_LS("error", message),
                                                     EC_LS("constraint", constraint),
                                                     EC_LS("table", table),
                                                     EC_LS("column", column),
                                                     EC_LS("datatype", datatype),
                                                     EC_LS("sql", sql),
                                                     { 0 } });

    switch (st) {
    case EC_EUNAVAIL:
        if (code != NULL && strcmp(code, CODE_UNAVAILABLE) != 0)
            return ec_err_set(err, st, code, "database conflict between transactions (%s)",
                              c->sqlstate);
        return ec_pg__unavailable(err);
    case EC_ETIMEOUT:
        return ec_err_set(err, st, code, "database statement timed out");
    case EC_ECONFLICT:
        return ec_err_set(err, st, code, "duplicate value violates unique constraint \"%s\"",
                          constraint);
    case EC_EINVAL:
        return ec_err_set(err, st, code, "value rejected by the database (%s)", c->sqlstate);
    default:
        return ec_err_set(err, EC_EINTERNAL, code, "database error (%s)",
                          c->sqlstate[0] != '\0' ? c->sqlstate : "client");
    }
}

enum ec_status ec_pg__conn_run(struct ec_pg_conn *c, const char *sql, int nparams,
                               const char *const *params, bool simple, struct ec_arena *arena,
                               PGresult **result, struct ec_err *err)
{
    EC_ASSERT(nparams == 0 || params != NULL);
    EC_ASSERT(result == NULL || arena != NULL);
    if (result != NULL)
        *result = NULL;
    if (c->pg == NULL) {
        ec_pg__queue_clear(c);
        snprintf(c->sqlstate, sizeof(c->sqlstate), "08006");
        return ec_pg__unavailable(err);
    }
    /* Replaying is safe only if the statement cannot have run: nothing was sent since the
     * connection left the pool, and no transaction was open that it could have touched. */
    bool replayable = c->fresh && PQtransactionStatus(c->pg) == PQTRANS_IDLE;
    c->fresh = false;
    struct pg_stmt *used;
    const char *failed_sql;
    PGresult *r = conn_exec(c, sql, nparams, params, simple, &used, &failed_sql);
    if (!result_ok(r) && replayable && (c->pg == NULL || PQstatus(c->pg) == CONNECTION_BAD)) {
        PQclear(r);
        r = NULL;
        enum ec_status st = ec_pg__conn_reopen(c, err);
        if (st != EC_OK) {
            snprintf(c->sqlstate, sizeof(c->sqlstate), "08006");
            return st;
        }
        pthread_mutex_lock(&c->pool->lock);
        c->pool->counters.retried_queries++;
        pthread_mutex_unlock(&c->pool->lock);
        r = conn_exec(c, sql, nparams, params, simple, &used, &failed_sql);
    }
    if (!result_ok(r)) {
        enum ec_status st = conn_fail(c, failed_sql, r, err);
        /* A cached plan whose result type changed under a migration fails until re-prepared. */
        if (used != NULL && strcmp(c->sqlstate, "0A000") == 0)
            stmt_forget(c, used);
        PQclear(r);
        ec_pg__queue_clear(c); /* lost with the transaction it belonged to */
        return st;
    }
    ec_pg__queue_clear(c);
    c->sqlstate[0] = '\0';
    if (result == NULL) {
        PQclear(r);
        return EC_OK;
    }
    ec_arena_defer(arena, result_clear, r);
    *result = r;
    return EC_OK;
}

enum ec_status ec_pg_query(struct ec_pg_conn *conn, const char *sql, int nparams,
                           const char *const *params, struct ec_arena *arena,
                           struct pg_result **result, struct ec_err *err)
{
    return ec_pg__conn_run(conn, sql, nparams, params, false, arena, result, err);
}

enum ec_status ec_pg_query_deferred(struct ec_pg_conn *conn, const char *sql, int nparams,
                                    const char *const *params, struct ec_err *err)
{
    EC_ASSERT(nparams == 0 || params != NULL);
    if (!conn->in_tx || conn->nqueued >= QUEUE_MAX)
        return ec_pg__conn_run(conn, sql, nparams, params, false, NULL, NULL, err);
    ec_pg__queue_push(conn, sql, nparams, params, false);
    return EC_OK;
}

const char *ec_pg_conn_sqlstate(const struct ec_pg_conn *conn)
{
    return conn->sqlstate;
}

struct pg_conn *ec_pg_conn_raw(struct ec_pg_conn *conn)
{
    return conn->pg;
}
