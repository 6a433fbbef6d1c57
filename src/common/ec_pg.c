/* The libpq connection pool: acquire/release with a bounded wait, a circuit breaker around
 * connecting, per-connection prepared-statement caches, SQLSTATE mapping and transactions that
 * retry serialization failures. */
#include "common/ec_pg.h"
#include "common/ec_log.h"
#include "common/ec_mem.h"

#include <libpq-fe.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static bool sqlstate_is_retryable(const char *sqlstate)
{
    return sqlstate != NULL && (strcmp(sqlstate, "40001") == 0 || strcmp(sqlstate, "40P01") == 0);
}

static enum ec_status unavailable(struct ec_err *err)
{
    ec_err_set(err, EC_EUNAVAIL, CODE_UNAVAILABLE, "database unavailable");
    return EC_EUNAVAIL;
}

/* --- connecting and the breaker --------------------------------------------------------- */

static void notice_log(void *arg, const char *message)
{
    (void)arg;
    EC_DEBUG("database notice", EC_LS("notice", message));
}

static void first_line(char *dst, size_t n, const char *src)
{
    size_t len = strcspn(src, "\n");
    if (len >= n)
        len = n - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* One connection attempt bounded by connect_timeout_ms (libpq's own connect_timeout only
 * applies to blocking connects). Returns NULL with a reason fit for logs. */
static PGconn *pg_connect(struct ec_pg_pool *pool, char *why, size_t whylen)
{
    /* Defaults first: keywords in the caller's URL (expanded from dbname, last) override them.
     * Keepalives and tcp_user_timeout make a vanished server an error instead of a hang. */
    const char *const keys[] = { "connect_timeout",     "keepalives",       "keepalives_idle",
                                 "keepalives_interval", "keepalives_count", "tcp_user_timeout",
                                 "application_name",    "dbname",           NULL };
    const char *const vals[] = {
        "2", "1", "5", "2", "3", "5000", pool->application_name, pool->conninfo, NULL
    };
    PGconn *pg = PQconnectStartParams(keys, vals, 1);
    if (pg == NULL) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    int64_t deadline = ec_mono_ms() + pool->connect_timeout_ms;
    PostgresPollingStatusType poll_st = PGRES_POLLING_WRITING;
    while (PQstatus(pg) != CONNECTION_BAD && poll_st != PGRES_POLLING_OK &&
           poll_st != PGRES_POLLING_FAILED) {
        int64_t left = deadline - ec_mono_ms();
        struct pollfd p = { .fd = PQsocket(pg),
                            .events = poll_st == PGRES_POLLING_READING ? POLLIN : POLLOUT };
        if (left <= 0 || p.fd < 0) {
            snprintf(why, whylen, "connect timed out after %d ms", pool->connect_timeout_ms);
            PQfinish(pg);
            return NULL;
        }
        int n = poll(&p, 1, (int)left);
        if (n < 0 && errno != EINTR) {
            snprintf(why, whylen, "poll failed: %s", strerror(errno));
            PQfinish(pg);
            return NULL;
        }
        if (n > 0)
            poll_st = PQconnectPoll(pg);
    }
    if (PQstatus(pg) != CONNECTION_OK) {
        first_line(why, whylen, PQerrorMessage(pg));
        PQfinish(pg);
        return NULL;
    }
    PQsetNoticeProcessor(pg, notice_log, NULL);
    if (pool->statement_timeout_ms > 0) {
        char set[64];
        snprintf(set, sizeof(set), "SET statement_timeout = %d", pool->statement_timeout_ms);
        PGresult *r = PQexec(pg, set);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!ok) {
            first_line(why, whylen, PQerrorMessage(pg));
            PQfinish(pg);
            return NULL;
        }
    }
    return pg;
}

/* Under pool->lock. Whether a connect may be tried now; while down, the one caller let through
 * becomes the probe and everyone else keeps failing fast until it reports. */
static bool breaker_allows(struct ec_pg_pool *pool, bool *probe)
{
    *probe = false;
    if (!pool->down)
        return true;
    if (pool->probing || ec_mono_ms() < pool->retry_at_ms) {
        pool->counters.fast_failures++;
        return false;
    }
    pool->probing = true;
    *probe = true;
    return true;
}

enum breaker_change { BREAKER_SAME, BREAKER_OPENED, BREAKER_CLOSED };

/* Under pool->lock: the outcome of a connect attempt. */
static enum breaker_change breaker_record(struct ec_pg_pool *pool, bool ok, bool probe,
                                          int64_t *down_ms)
{
    int64_t now = ec_mono_ms();
    if (probe)
        pool->probing = false;
    if (ok) {
        pool->counters.connects++;
        if (!pool->down)
            return BREAKER_SAME;
        pool->down = false;
        *down_ms = now - pool->down_since_ms;
        return BREAKER_CLOSED;
    }
    pool->counters.connect_failures++;
    enum breaker_change change = BREAKER_SAME;
    if (!pool->down) {
        pool->down = true;
        pool->down_since_ms = now;
        pool->backoff_ms = pool->breaker_min_ms;
        change = BREAKER_OPENED;
    } else if (probe) {
        pool->backoff_ms *= 2;
        if (pool->backoff_ms > pool->breaker_max_ms)
            pool->backoff_ms = pool->breaker_max_ms;
    }
    pool->retry_at_ms = now + pool->backoff_ms;
    /* Waiters for a busy pool should fail fast now rather than wait out their timeout. */
    pthread_cond_broadcast(&pool->freed);
    return change;
}

/* Connects c->pg; probe says whether this caller is the breaker's probe. */
static enum ec_status conn_open(struct ec_pg_conn *c, bool probe, struct ec_err *err)
{
    struct ec_pg_pool *pool = c->pool;
    char why[200] = "";
    c->pg = pg_connect(pool, why, sizeof(why));
    int64_t down_ms = 0;
    pthread_mutex_lock(&pool->lock);
    enum breaker_change change = breaker_record(pool, c->pg != NULL, probe, &down_ms);
    pthread_mutex_unlock(&pool->lock);
    /* One line per outage, not one per request. */
    if (change == BREAKER_OPENED)
        EC_WARN("database unavailable", EC_LS("reason", why));
    else if (change == BREAKER_CLOSED)
        EC_INFO("database available", EC_LI("down_ms", down_ms));
    if (c->pg == NULL) {
        EC_DEBUG("database connect failed", EC_LS("reason", why));
        return unavailable(err);
    }
    return EC_OK;
}

static void conn_close_pg(struct ec_pg_conn *c)
{
    for (size_t i = 0; i < c->nstmts; i++)
        free(c->stmts[i].sql);
    free(c->stmts);
    c->stmts = NULL;
    c->nstmts = c->stmts_cap = 0;
    if (c->pg != NULL)
        PQfinish(c->pg);
    c->pg = NULL;
}

static void queue_clear(struct ec_pg_conn *c);

/* Closes the connection and frees the slot's memory. */
static void conn_free(struct ec_pg_conn *c)
{
    conn_close_pg(c);
    queue_clear(c);
    free(c->queued);
    free(c);
}

/* An idle connection has nothing to say: anything readable is the server's goodbye (a FATAL and
 * EOF after a restart or a terminated backend) or a reset found by keepalives. One poll(2) is
 * far cheaper than a round trip, so every acquire can afford it. */
static bool conn_idle_ok(struct ec_pg_conn *c)
{
    if (PQstatus(c->pg) != CONNECTION_OK)
        return false;
    struct pollfd p = { .fd = PQsocket(c->pg), .events = POLLIN };
    int n;
    do
        n = poll(&p, 1, 0);
    while (n < 0 && errno == EINTR);
    return n == 0;
}

/* --- the pool ----------------------------------------------------------------------------- */

static int opt_or(int value, int dflt)
{
    return value > 0 ? value : dflt;
}

enum ec_status ec_pg_pool_new(const char *conninfo, int max_conns,
                              const struct ec_pg_pool_opts *opts, struct ec_pg_pool **out,
                              struct ec_err *err)
{
    static const struct ec_pg_pool_opts defaults = { 0 };
    *out = NULL;
    if (opts == NULL)
        opts = &defaults;
    if (max_conns < 1 || max_conns > 1000)
        return ec_err_set(err, EC_EINVAL, NULL, "pool size %d is outside 1..1000", max_conns);
    char *parse_msg = NULL;
    PQconninfoOption *parsed = PQconninfoParse(conninfo != NULL ? conninfo : "", &parse_msg);
    if (parsed == NULL) {
        /* libpq's message may quote the string, and the string may hold a password. */
        PQfreemem(parse_msg);
        return ec_err_set(err, EC_EINVAL, NULL, "cannot parse the database URL");
    }
    PQconninfoFree(parsed);

    struct ec_pg_pool *pool = ec_xcalloc(1, sizeof(*pool));
    pool->conninfo = ec_xstrdup(conninfo);
    pool->application_name =
        ec_xstrdup(opts->application_name != NULL ? opts->application_name : "edgecoder");
    pool->max_conns = max_conns;
    pool->acquire_timeout_ms = opt_or(opts->acquire_timeout_ms, 2000);
    pool->connect_timeout_ms = opt_or(opts->connect_timeout_ms, 2000);
    pool->breaker_min_ms = opt_or(opts->breaker_min_ms, 250);
    pool->breaker_max_ms = opt_or(opts->breaker_max_ms, 2000);
    if (pool->breaker_max_ms < pool->breaker_min_ms)
        pool->breaker_max_ms = pool->breaker_min_ms;
    pool->statement_timeout_ms = opts->statement_timeout_ms;
    pool->counters.max_conns = max_conns;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&pool->freed, &attr);
    pthread_condattr_destroy(&attr);
    *out = pool;
    return EC_OK;
}

void ec_pg_pool_free(struct ec_pg_pool *pool)
{
    if (pool == NULL)
        return;
    pthread_mutex_lock(&pool->lock);
    while (pool->idle != NULL) {
        struct ec_pg_conn *c = pool->idle;
        pool->idle = c->next;
        conn_free(c);
        pool->open--;
    }
    /* Freeing a pool under a connection still in use is a bug in the caller's shutdown. */
    EC_ASSERT(pool->open == 0);
    pthread_mutex_unlock(&pool->lock);
    pthread_cond_destroy(&pool->freed);
    pthread_mutex_destroy(&pool->lock);
    free(pool->conninfo);
    free(pool->application_name);
    free(pool);
}

void ec_pg_pool_stats_read(struct ec_pg_pool *pool, struct ec_pg_pool_stats *out)
{
    pthread_mutex_lock(&pool->lock);
    *out = pool->counters;
    out->open = pool->open;
    out->idle = pool->nidle;
    out->down = pool->down;
    pthread_mutex_unlock(&pool->lock);
}

static void deadline_timespec(int64_t deadline_ms, struct timespec *ts)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    int64_t left = deadline_ms - ec_mono_ms();
    if (left < 0)
        left = 0;
    ts->tv_sec += left / 1000;
    ts->tv_nsec += (left % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

/* Under pool->lock, which it drops: gives up a slot whose connection is gone. */
static void slot_free_unlock(struct ec_pg_pool *pool)
{
    pool->open--;
    pthread_cond_signal(&pool->freed);
    pthread_mutex_unlock(&pool->lock);
}

enum ec_status ec_pg_acquire(struct ec_pg_pool *pool, struct ec_pg_conn **out, struct ec_err *err)
{
    int64_t deadline = ec_mono_ms() + pool->acquire_timeout_ms;
    *out = NULL;
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        if (pool->idle != NULL) {
            struct ec_pg_conn *c = pool->idle;
            pool->idle = c->next;
            pool->nidle--;
            pthread_mutex_unlock(&pool->lock);
            if (conn_idle_ok(c)) {
                c->fresh = true;
                c->sqlstate[0] = '\0';
                *out = c;
                return EC_OK;
            }
            conn_free(c);
            pthread_mutex_lock(&pool->lock);
            pool->open--;
            continue;
        }
        if (pool->open < pool->max_conns) {
            bool probe;
            if (!breaker_allows(pool, &probe)) {
                pthread_mutex_unlock(&pool->lock);
                return unavailable(err);
            }
            pool->open++;
            pthread_mutex_unlock(&pool->lock);
            struct ec_pg_conn *c = ec_xcalloc(1, sizeof(*c));
            c->pool = pool;
            enum ec_status st = conn_open(c, probe, err);
            if (st != EC_OK) {
                free(c);
                pthread_mutex_lock(&pool->lock);
                slot_free_unlock(pool);
                return st;
            }
            c->fresh = true;
            *out = c;
            return EC_OK;
        }
        if (pool->down) {
            /* Every slot is busy and the database is down: those will fail too. */
            pool->counters.fast_failures++;
            pthread_mutex_unlock(&pool->lock);
            return unavailable(err);
        }
        if (ec_mono_ms() >= deadline) {
            pool->counters.acquire_timeouts++;
            pthread_mutex_unlock(&pool->lock);
            ec_err_set(err, EC_EUNAVAIL, CODE_UNAVAILABLE,
                       "no database connection free within %d ms", pool->acquire_timeout_ms);
            return EC_EUNAVAIL;
        }
        struct timespec ts;
        deadline_timespec(deadline, &ts);
        pthread_cond_timedwait(&pool->freed, &pool->lock, &ts);
    }
}

void ec_pg_release(struct ec_pg_conn *c)
{
    if (c == NULL)
        return;
    struct ec_pg_pool *pool = c->pool;
    bool keep = c->pg != NULL && PQstatus(c->pg) == CONNECTION_OK;
    if (keep) {
        PGTransactionStatusType ts = PQtransactionStatus(c->pg);
        if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) {
            PGresult *r = PQexec(c->pg, "ROLLBACK");
            keep = PQresultStatus(r) == PGRES_COMMAND_OK;
            PQclear(r);
        } else if (ts != PQTRANS_IDLE) {
            keep = false; /* mid-COPY or unknown: cheaper to reconnect than to untangle */
        }
    }
    if (!keep) {
        conn_free(c);
        pthread_mutex_lock(&pool->lock);
        slot_free_unlock(pool);
        return;
    }
    pthread_mutex_lock(&pool->lock);
    c->next = pool->idle;
    pool->idle = c;
    pool->nidle++;
    pthread_cond_signal(&pool->freed);
    pthread_mutex_unlock(&pool->lock);
}

/* Replaces a dead PGconn in place; the caller keeps its slot. */
static enum ec_status conn_reopen(struct ec_pg_conn *c, struct ec_err *err)
{
    struct ec_pg_pool *pool = c->pool;
    conn_close_pg(c);
    bool probe;
    pthread_mutex_lock(&pool->lock);
    bool allowed = breaker_allows(pool, &probe);
    pthread_mutex_unlock(&pool->lock);
    if (!allowed)
        return unavailable(err);
    return conn_open(c, probe, err);
}

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

static void queue_push(struct ec_pg_conn *c, const char *sql, int nparams,
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

static void queue_clear(struct ec_pg_conn *c)
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
        conn_close_pg(c);
        return NULL;
    }
    PGresult *out = NULL, *fail = NULL;
    for (size_t i = 0; i < n; i++) {
        struct pl_item *it = &items[i];
        if (it->parsed_here) {
            PGresult *pr = pl_result(c->pg);
            if (pr == NULL) {
                conn_close_pg(c);
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
            conn_close_pg(c);
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
        conn_close_pg(c);
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
    if (sqlstate_is_retryable(sqlstate))
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
        first_line(message, sizeof(message), PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
    else
        first_line(message, sizeof(message), c->pg != NULL ? PQerrorMessage(c->pg) : "");
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
        return unavailable(err);
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

static enum ec_status conn_run(struct ec_pg_conn *c, const char *sql, int nparams,
                               const char *const *params, bool simple, struct ec_arena *arena,
                               PGresult **result, struct ec_err *err)
{
    EC_ASSERT(nparams == 0 || params != NULL);
    EC_ASSERT(result == NULL || arena != NULL);
    if (result != NULL)
        *result = NULL;
    if (c->pg == NULL) {
        queue_clear(c);
        snprintf(c->sqlstate, sizeof(c->sqlstate), "08006");
        return unavailable(err);
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
        enum ec_status st = conn_reopen(c, err);
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
        queue_clear(c); /* lost with the transaction it belonged to */
        return st;
    }
    queue_clear(c);
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
    return conn_run(conn, sql, nparams, params, false, arena, result, err);
}

enum ec_status ec_pg_query_deferred(struct ec_pg_conn *conn, const char *sql, int nparams,
                                    const char *const *params, struct ec_err *err)
{
    EC_ASSERT(nparams == 0 || params != NULL);
    if (!conn->in_tx || conn->nqueued >= QUEUE_MAX)
        return conn_run(conn, sql, nparams, params, false, NULL, NULL, err);
    queue_push(conn, sql, nparams, params, false);
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
    queue_clear(c);
    queue_push(c, begin_sql[isolation], 0, NULL, true);
    c->in_tx = true;
    enum ec_status st = fn(c, arena, ctx, err);
    c->in_tx = false;
    if (st == EC_OK && c->pg != NULL && PQtransactionStatus(c->pg) == PQTRANS_INERROR)
        /* COMMIT would quietly roll back; fn swallowed an error it should have returned. */
        st = ec_err_set(err, EC_EINTERNAL, NULL, "transaction aborted by an earlier error");
    if (st != EC_OK) {
        queue_clear(c);
        if (c->pg != NULL && PQstatus(c->pg) == CONNECTION_OK &&
            PQtransactionStatus(c->pg) != PQTRANS_IDLE)
            PQclear(PQexec(c->pg, "ROLLBACK")); /* release closes it if this failed */
        return st;
    }
    if (c->nqueued == 1 && c->queued[0].simple) {
        queue_clear(c); /* fn ran no statement: there is nothing to commit */
        return EC_OK;
    }
    return conn_run(c, "COMMIT", 0, NULL, true, NULL, NULL, err);
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
    st = conn_run(c, "SELECT 1", 0, NULL, true, NULL, NULL, err);
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
