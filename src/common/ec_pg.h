/* A thread-safe PostgreSQL connection pool on libpq: parameterised queries with per-connection
 * prepared-statement caching, transactions with serialization-failure retry, and a circuit
 * breaker so that requests fail fast while the database is down and succeed again once it is
 * back. Service code includes this header; only store code includes libpq-fe.h. */
#ifndef EC_PG_H
#define EC_PG_H

#include "common/ec_arena.h"
#include "common/ec_status.h"

#include <stdbool.h>
#include <stdint.h>

struct pg_conn;   /* libpq's PGconn */
struct pg_result; /* libpq's PGresult */

/* Opaque. The pool is shared by every thread; a connection belongs to the thread that acquired
 * it until ec_pg_release. */
struct ec_pg_pool;
struct ec_pg_conn;

struct ec_pg_pool_opts {
    int acquire_timeout_ms;   /* wait for a free connection when all are busy; default 2000 */
    int connect_timeout_ms;   /* one connection attempt, DNS excluded; default 2000 */
    int breaker_min_ms;       /* first back-off after a failed connect; default 250 */
    int breaker_max_ms;       /* the back-off doubles up to this; default 2000 */
    int statement_timeout_ms; /* sent as statement_timeout on each new connection; 0 = server's */
    const char *application_name; /* default "edgecoder"; copied */
};

struct ec_pg_pool_stats {
    int max_conns;
    int open; /* connected or being connected, including idle ones */
    int idle;
    bool down;         /* the breaker is open: the last connect attempt failed */
    uint64_t connects; /* successful connects since the pool was made */
    uint64_t connect_failures;
    uint64_t fast_failures;    /* acquires refused by the open breaker without trying */
    uint64_t acquire_timeouts; /* acquires that waited the full timeout for a busy pool */
    uint64_t retried_queries;  /* first statements replayed on a fresh connection */
};

enum ec_pg_isolation { EC_PG_READ_COMMITTED, EC_PG_REPEATABLE_READ, EC_PG_SERIALIZABLE };

/* Attempts ec_pg_tx makes before giving up on serialization failures and deadlocks. */
#define EC_PG_TX_ATTEMPTS 5

/* Checks conninfo (a postgresql:// URL or key=value string; never logged, it may hold a
 * password) but does not connect: a service can start while its database is down. opts may be
 * NULL for the defaults. Free with ec_pg_pool_free once no connection is acquired. */
enum ec_status ec_pg_pool_new(const char *conninfo, int max_conns,
                              const struct ec_pg_pool_opts *opts, struct ec_pg_pool **out,
                              struct ec_err *err);
void ec_pg_pool_free(struct ec_pg_pool *pool);
void ec_pg_pool_stats_read(struct ec_pg_pool *pool, struct ec_pg_pool_stats *out);

/* A connection for the caller's thread. Fails with EC_EUNAVAIL, code "database_unavailable",
 * immediately while the breaker is open, after one failed connect, or after the acquire timeout
 * when every connection stays busy. */
enum ec_status ec_pg_acquire(struct ec_pg_pool *pool, struct ec_pg_conn **out, struct ec_err *err);
/* Returns the connection to the pool; a broken one is closed instead, and one left inside a
 * transaction is rolled back. NULL is a no-op. */
void ec_pg_release(struct ec_pg_conn *conn);

/* Runs one statement with text parameters ($1..$n; a NULL entry is SQL NULL). The statement is
 * prepared once per connection, keyed by its text, so keep parameters out of the SQL. The result
 * is freed with the arena; pass result NULL (and arena NULL) when only success matters.
 * Errors: EC_EUNAVAIL "database_unavailable" (connection lost, server shutting down, cannot
 * connect), EC_ECONFLICT (unique violation), EC_EINVAL (data errors, SQLSTATE class 22),
 * EC_EUNAVAIL "database_busy" (serialization failure or deadlock), EC_ETIMEOUT (statement
 * timeout), EC_EINTERNAL otherwise. If the connection turns out to have died while idle in the
 * pool, the first statement after ec_pg_acquire is replayed once on a fresh connection. */
enum ec_status ec_pg_query(struct ec_pg_conn *conn, const char *sql, int nparams,
                           const char *const *params, struct ec_arena *arena,
                           struct pg_result **result, struct ec_err *err);

/* A statement whose result nobody reads (an audit insert, a bookkeeping update). Inside
 * ec_pg_tx it waits and travels with the transaction's next statement or with its COMMIT, in one
 * pipeline: a round trip saved. Its failure then fails that statement (or the COMMIT), naming it
 * in the log. Outside a transaction it runs at once, as ec_pg_query. */
enum ec_status ec_pg_query_deferred(struct ec_pg_conn *conn, const char *sql, int nparams,
                                    const char *const *params, struct ec_err *err);

/* The SQLSTATE of the last failed statement on conn ("" if none): lets a store tell apart, say,
 * a foreign-key violation (23503) from other internal errors. */
const char *ec_pg_conn_sqlstate(const struct ec_pg_conn *conn);
/* The libpq connection, for store code that needs more than ec_pg_query (COPY, pipelines).
 * Borrowed; do not PQfinish. */
struct pg_conn *ec_pg_conn_raw(struct ec_pg_conn *conn);

/* The body of a transaction. It may run several times, so it must not have side effects outside
 * the database beyond what it puts in arena or ctx; it must not acquire from the same pool. */
typedef enum ec_status (*ec_pg_tx_fn)(struct ec_pg_conn *conn, struct ec_arena *arena, void *ctx,
                                      struct ec_err *err);

/* BEGIN at the isolation level, fn, COMMIT. On a serialization failure (40001) or deadlock
 * (40P01), in fn or at COMMIT, rolls back and runs fn again after a jittered back-off, up to
 * EC_PG_TX_ATTEMPTS times; any other failure rolls back and is returned as fn or COMMIT left it.
 * arena is passed to fn for its results and may be NULL if fn needs none. */
enum ec_status ec_pg_tx(struct ec_pg_pool *pool, enum ec_pg_isolation isolation,
                        struct ec_arena *arena, ec_pg_tx_fn fn, void *ctx, struct ec_err *err);
/* Acquire, fn, release: for a few autocommit statements on one connection. */
enum ec_status ec_pg_with_conn(struct ec_pg_pool *pool, struct ec_arena *arena, ec_pg_tx_fn fn,
                               void *ctx, struct ec_err *err);
/* One round trip on a pooled connection, for health checks. */
enum ec_status ec_pg_pool_ping(struct ec_pg_pool *pool, struct ec_err *err);

/* The status (and specific code, or NULL) for a SQLSTATE; NULL sqlstate means libpq lost the
 * connection without a server error. Exposed for the migrator and for tests. */
enum ec_status ec_pg_status_from_sqlstate(const char *sqlstate, const char **code);

/* Reading results without libpq. Rows and columns count from 0; out of range is a bug. */
int ec_pg_nrows(const struct pg_result *res);
int ec_pg_ncols(const struct pg_result *res);
/* The column's index by name, or -1. */
int ec_pg_column(const struct pg_result *res, const char *name);
bool ec_pg_isnull(const struct pg_result *res, int row, int col);
/* The value as text, or NULL for SQL NULL. Lives as long as the result. */
const char *ec_pg_value(const struct pg_result *res, int row, int col);
/* Rows affected by INSERT/UPDATE/DELETE or returned by SELECT; 0 for other statements. */
int64_t ec_pg_affected(const struct pg_result *res);

#endif
