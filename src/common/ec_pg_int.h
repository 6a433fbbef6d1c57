/* Internals of the PostgreSQL layer shared by its files: ec_pg_pool.c (connecting, the breaker,
 * the pool), ec_pg_exec.c (statements, the prepared-statement cache, pipelines, errors) and
 * ec_pg.c (SQLSTATE mapping, transactions, results). */
#ifndef EC_PG_INT_H
#define EC_PG_INT_H

#include "common/ec_pg.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Beyond this many distinct statements a connection runs the rest unprepared: a service has a
 * few dozen hot queries, and a runaway caller building SQL text must not grow memory forever. */
#define STMT_CACHE_MAX 256

#define CODE_UNAVAILABLE "database_unavailable"

struct pg_stmt {
    uint64_t hash;
    char *sql;
    char name[16];
};

/* Most statements one pipeline carries; a deferred statement beyond that goes at once. */
#define QUEUE_MAX 16

struct pg_queued {
    char *sql;
    char **params;
    int nparams;
    bool simple; /* transaction control: no parameters, nothing to prepare */
};

struct ec_pg_conn {
    struct ec_pg_pool *pool;
    PGconn *pg;              /* NULL after a failed reconnect; the slot is freed on release */
    struct ec_pg_conn *next; /* in the pool's idle stack */
    struct pg_stmt *stmts;   /* names prepared on this PGconn; dies with it */
    size_t nstmts, stmts_cap;
    unsigned stmt_seq;
    /* Statements waiting to travel with the next one in one pipeline: a transaction's BEGIN
     * and statements whose results nobody reads (ec_pg_query_deferred). */
    struct pg_queued *queued;
    size_t nqueued, queued_cap;
    bool in_tx;         /* inside ec_pg_tx: deferred statements wait for the next one */
    bool fresh;         /* nothing sent since ec_pg_acquire: a lost connection may be replayed */
    bool saw_retryable; /* a serialization failure or deadlock since ec_pg_tx began an attempt */
    char sqlstate[6];
};

struct ec_pg_pool {
    /* Immutable after ec_pg_pool_new. */
    char *conninfo;
    char *application_name;
    int max_conns;
    int acquire_timeout_ms, connect_timeout_ms, breaker_min_ms, breaker_max_ms;
    int statement_timeout_ms;

    pthread_mutex_t lock;    /* guards everything below */
    pthread_cond_t freed;    /* a connection came back, a slot freed up, or the breaker opened */
    struct ec_pg_conn *idle; /* most recently used first, so hot connections stay hot */
    int nidle;
    int open;     /* slots in use: idle, acquired, or being connected */
    bool down;    /* the breaker is open */
    bool probing; /* a caller is trying to connect while down; the others fail fast */
    int backoff_ms;
    int64_t retry_at_ms;
    int64_t down_since_ms;
    struct ec_pg_pool_stats counters;
};

/* ec_pg.c */
enum ec_status ec_pg__unavailable(struct ec_err *err); /* EC_EUNAVAIL "database_unavailable" */
bool ec_pg__sqlstate_retryable(const char *sqlstate);  /* serialization failure or deadlock */

/* ec_pg_pool.c */
void ec_pg__first_line(char *dst, size_t n, const char *src); /* libpq's message, one line */
void ec_pg__conn_close(struct ec_pg_conn *c); /* closes the PGconn and forgets its statements */
/* Replaces a dead PGconn in place; the caller keeps its slot. */
enum ec_status ec_pg__conn_reopen(struct ec_pg_conn *c, struct ec_err *err);

/* ec_pg_exec.c */
/* Queues a statement to travel with the next one (strings copied); at most QUEUE_MAX. */
void ec_pg__queue_push(struct ec_pg_conn *c, const char *sql, int nparams,
                       const char *const *params, bool simple);
void ec_pg__queue_clear(struct ec_pg_conn *c);
/* Runs sql (with whatever is queued, in one pipeline); simple: transaction control through the
 * unnamed statement. result (and arena) may be NULL when only success matters. */
enum ec_status ec_pg__conn_run(struct ec_pg_conn *c, const char *sql, int nparams,
                               const char *const *params, bool simple, struct ec_arena *arena,
                               PGresult **result, struct ec_err *err);

#endif
