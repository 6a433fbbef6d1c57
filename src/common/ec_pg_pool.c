/* The libpq connection pool: connecting with a bounded wait, a circuit breaker around connecting
 * (fails fast while the database is down, probes with a back-off), acquire/release with a
 * bounded wait, and the check that an idle connection is still alive. */
#include "common/ec_log.h"
#include "common/ec_mem.h"
#include "common/ec_pg_int.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* --- connecting and the breaker --------------------------------------------------------- */

static void notice_log(void *arg, const char *message)
{
    (void)arg;
    EC_DEBUG("database notice", EC_LS("notice", message));
}

void ec_pg__first_line(char *dst, size_t n, const char *src)
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
        ec_pg__first_line(why, whylen, PQerrorMessage(pg));
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
            ec_pg__first_line(why, whylen, PQerrorMessage(pg));
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
        return ec_pg__unavailable(err);
    }
    return EC_OK;
}

void ec_pg__conn_close(struct ec_pg_conn *c)
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

/* Closes the connection and frees the slot's memory. */
static void conn_free(struct ec_pg_conn *c)
{
    ec_pg__conn_close(c);
    ec_pg__queue_clear(c);
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
                return ec_pg__unavailable(err);
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
            return ec_pg__unavailable(err);
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
enum ec_status ec_pg__conn_reopen(struct ec_pg_conn *c, struct ec_err *err)
{
    struct ec_pg_pool *pool = c->pool;
    ec_pg__conn_close(c);
    bool probe;
    pthread_mutex_lock(&pool->lock);
    bool allowed = breaker_allows(pool, &probe);
    pthread_mutex_unlock(&pool->lock);
    if (!allowed)
        return ec_pg__unavailable(err);
    return conn_open(c, probe, err);
}
