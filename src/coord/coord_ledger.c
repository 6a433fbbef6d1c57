/* The ordering ledger's write side: recording events into ledger_pending inside the caller's
 * transaction, and the chainer that turns them into hash-chained, signed ledger_records.
 *
 * Why there is no settle window: bigserial ids are taken at INSERT and commit in any order, so a
 * high-water mark ("chain ids above the last one chained") would skip an event whose transaction
 * commits after a higher id was chained. The chainer never keeps a mark: each pass DELETEs the
 * pending rows it can see (committed ones only) and chains them, lowest id first. A lower id that
 * commits late is still pending at the next pass and is chained then, with the next sequence. So
 * every committed event is chained exactly once, in the order the chainer saw the commits, and no
 * clock is involved. The DELETE and the INSERT of the records commit together, so a crash between
 * them loses nothing; the advisory lock makes machines sharing the database take turns, and the
 * head (sequence, hash) is read from the database after the lock is held, so the chain continues
 * across restarts and machines. */
#include "coord/coord_ledger.h"
#include "coord/coord_ledger_int.h"

#include "common/ec_log.h"
#include "common/ec_mem.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* pg_advisory_xact_lock key of the chainer: "ECLEDGER" as a big-endian int64. */
#define CHAIN_LOCK_KEY "4990916672438617426"
/* While chaining keeps failing, repeat the warning at most this often. */
#define FAILURE_LOG_EVERY_MS 30000

/* The original's event types (§5.4); anything else is a caller bug. */
static const char *const event_types[] = {
    "task_enqueue",
    "task_claim",
    "task_complete",
    "task_requeue",
    "node_approval",
    "node_validation",
    "earnings_accrual",
    "stats_checkpoint_proposal",
    "stats_checkpoint_signature",
    "stats_checkpoint_commit",
};

static bool event_type_known(const char *t)
{
    for (size_t i = 0; i < sizeof(event_types) / sizeof(event_types[0]); i++)
        if (strcmp(t, event_types[i]) == 0)
            return true;
    return false;
}

enum ec_status coord_ledger_record(struct ec_pg_conn *conn, struct ec_arena *arena,
                                   const struct coord_ledger_event *ev, struct ec_err *err)
{
    if (ev == NULL || ev->event_type == NULL || !event_type_known(ev->event_type))
        return ec_err_set(err, EC_EINVAL, NULL, "ledger event type \"%.40s\" is not known",
                          ev == NULL || ev->event_type == NULL ? "(null)" : ev->event_type);
    if (ev->actor_id == NULL || ev->actor_id[0] == '\0')
        return ec_err_set(err, EC_EINVAL, NULL, "ledger event %s has no actor", ev->event_type);
    if (ev->payload_json != NULL && strlen(ev->payload_json) > COORD_LEDGER_PAYLOAD_MAX)
        return ec_err_set(err, EC_ETOOBIG, NULL, "ledger payload of %zu bytes is over %d",
                          strlen(ev->payload_json), COORD_LEDGER_PAYLOAD_MAX);
    char issued[24];
    snprintf(issued, sizeof(issued), "%" PRId64,
             ev->issued_at_ms > 0 ? ev->issued_at_ms : ec_now_ms());
    const char *params[] = { ev->event_type, ev->task_id,      ev->subtask_id,
                             ev->actor_id,   ev->payload_json, issued };
    /* Deferred: it travels with the transaction's next statement or its COMMIT. */
    return ec_pg_query_deferred(conn,
                                "INSERT INTO ledger_pending (event_type, task_id, subtask_id, "
                                "actor_id, payload_json, issued_at_ms) "
                                "VALUES ($1, $2, $3, $4, $5, $6)",
                                6, params, err);
}

/* --- chaining ------------------------------------------------------------------------------- */

static void uuid_v4(char out[37])
{
    uint8_t b[16];
    ec_random_bytes(b, sizeof(b));
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

static bool parse_i64(const char *s, int64_t *out)
{
    if (s == NULL || *s == '\0')
        return false;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

struct pending_row {
    int64_t id;
    int row;
};

static int pending_cmp(const void *a, const void *b)
{
    const struct pending_row *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

struct chain_ctx {
    struct coord_ledger *l;
    int taken; /* pending rows chained by this transaction */
};

/* A text column for json_populate_recordset; NULL stays out (SQL NULL). The database's text is
 * valid UTF-8 already, so it is not checked again. */
static void set_text(json_t *o, const char *key, const char *value)
{
    if (value != NULL)
        json_object_set_new(o, key, json_stringn_nocheck(value, strlen(value)));
}

/* Signs one record and appends it to rows, the JSON array the INSERT reads. */
static enum ec_status chain_one(struct coord_ledger *l, struct coord__ledger_rec *r,
                                struct ec_buf *scratch, char hash[COORD_LEDGER_HASH_HEX_LEN + 1],
                                json_t *rows, struct ec_err *err)
{
    enum ec_status st = coord__ledger_hash(r, scratch, hash);
    if (st != EC_OK)
        return ec_err_set(err, st, NULL, "cannot hash ledger record %" PRId64, r->sequence);
    uint8_t sig[EC_ED25519_SIG_LEN];
    st = ec_key_sign(l->signing_key, hash, COORD_LEDGER_HASH_HEX_LEN, sig, err);
    if (st != EC_OK)
        return st;
    char sig_b64[EC_B64_ENCODED_LEN(EC_ED25519_SIG_LEN) + 1];
    ec_b64_encode(sig_b64, sizeof(sig_b64), sig, sizeof(sig));
    json_t *o = json_object();
    json_object_set_new(o, "sequence", json_integer(r->sequence));
    json_object_set_new(o, "issued_at_ms", json_integer(r->issued_at_ms));
    set_text(o, "id", r->id);
    set_text(o, "event_type", r->event_type);
    set_text(o, "task_id", r->task_id);
    set_text(o, "subtask_id", r->subtask_id);
    set_text(o, "actor_id", r->actor_id);
    set_text(o, "prev_hash", r->prev_hash);
    set_text(o, "coordinator_id", r->coordinator_id);
    set_text(o, "payload_json", r->payload_json);
    set_text(o, "hash", hash);
    set_text(o, "signature", sig_b64);
    json_array_append_new(rows, o);
    return EC_OK;
}

static void free_json(void *p)
{
    json_decref(p);
}

static void free_mem(void *p)
{
    free(p);
}

/* One transaction: lock, take up to a batch of pending rows, read the head, chain, insert. */
static enum ec_status chain_batch_tx(struct ec_pg_conn *conn, struct ec_arena *arena, void *vctx,
                                     struct ec_err *err)
{
    struct chain_ctx *ctx = vctx;
    struct coord_ledger *l = ctx->l;
    ctx->taken = 0;
    const char *lock[] = { CHAIN_LOCK_KEY };
    enum ec_status st =
        ec_pg_query(conn, "SELECT pg_advisory_xact_lock($1::bigint)", 1, lock, NULL, NULL, err);
    if (st != EC_OK)
        return st;
    char limit[16];
    snprintf(limit, sizeof(limit), "%d", COORD_LEDGER_BATCH);
    const char *lp[] = { limit };
    struct pg_result *pend = NULL;
    st = ec_pg_query(conn,
                     "DELETE FROM ledger_pending WHERE id IN (SELECT id FROM ledger_pending "
                     "ORDER BY id LIMIT $1) RETURNING id, event_type, task_id, subtask_id, "
                     "actor_id, payload_json, issued_at_ms",
                     1, lp, arena, &pend, err);
    if (st != EC_OK)
        return st;
    int n = ec_pg_nrows(pend);
    if (n == 0)
        return EC_OK;

    struct pg_result *head = NULL;
    st = ec_pg_query(conn,
                     "SELECT sequence, hash FROM ledger_records ORDER BY sequence DESC LIMIT 1", 0,
                     NULL, arena, &head, err);
    if (st != EC_OK)
        return st;
    int64_t sequence = 0;
    char prev[COORD_LEDGER_HASH_HEX_LEN + 1] = COORD_LEDGER_GENESIS;
    if (ec_pg_nrows(head) == 1) {
        const char *h = ec_pg_value(head, 0, 1);
        if (!parse_i64(ec_pg_value(head, 0, 0), &sequence) || h == NULL ||
            strlen(h) != COORD_LEDGER_HASH_HEX_LEN)
            return ec_err_set(err, EC_EINTERNAL, NULL, "the ledger head is malformed");
        memcpy(prev, h, sizeof(prev));
    }

    /* RETURNING has no order: chain lowest id first. */
    struct pending_row *order = ec_arena_alloc(arena, sizeof(*order) * (size_t)n);
    for (int i = 0; i < n; i++) {
        order[i].row = i;
        if (!parse_i64(ec_pg_value(pend, i, 0), &order[i].id))
            return ec_err_set(err, EC_EINTERNAL, NULL, "pending ledger id is not a number");
    }
    qsort(order, (size_t)n, sizeof(*order), pending_cmp);

    json_t *rows = json_array();
    ec_arena_defer(arena, free_json, rows);
    struct ec_buf scratch;
    ec_buf_init(&scratch, 0);
    for (int k = 0; k < n && st == EC_OK; k++) {
        int i = order[k].row;
        char id[37], hash[COORD_LEDGER_HASH_HEX_LEN + 1];
        uuid_v4(id);
        struct coord__ledger_rec r = {
            .id = id,
            .event_type = ec_pg_value(pend, i, 1),
            .task_id = ec_pg_value(pend, i, 2),
            .subtask_id = ec_pg_value(pend, i, 3),
            .actor_id = ec_pg_value(pend, i, 4),
            .payload_json = ec_pg_value(pend, i, 5),
            .sequence = sequence + 1,
            .prev_hash = prev,
            .coordinator_id = l->coordinator_id,
        };
        if (!parse_i64(ec_pg_value(pend, i, 6), &r.issued_at_ms)) {
            st = ec_err_set(err, EC_EINTERNAL, NULL, "pending ledger time is not a number");
            break;
        }
        st = chain_one(l, &r, &scratch, hash, rows, err);
        sequence++;
        memcpy(prev, hash, sizeof(prev));
    }
    ec_buf_release(&scratch);
    if (st != EC_OK)
        return st;

    char *text = json_dumps(rows, JSON_COMPACT);
    EC_ASSERT(text != NULL);
    ec_arena_defer(arena, free_mem, text);
    const char *ip[] = { text };
    st = ec_pg_query(conn,
                     "INSERT INTO ledger_records (sequence, id, event_type, task_id, subtask_id, "
                     "actor_id, issued_at_ms, prev_hash, coordinator_id, payload_json, hash, "
                     "signature) SELECT sequence, id, event_type, task_id, subtask_id, actor_id, "
                     "issued_at_ms, prev_hash, coordinator_id, payload_json, hash, signature "
                     "FROM json_populate_recordset(NULL::ledger_records, $1::json) "
                     "ORDER BY sequence",
                     1, ip, NULL, NULL, err);
    if (st == EC_OK)
        ctx->taken = n;
    return st;
}

/* Chains until a transaction takes less than a full batch. */
static enum ec_status chain_all(struct coord_ledger *l, int64_t *chained, struct ec_err *err)
{
    struct ec_arena arena;
    ec_arena_init(&arena);
    enum ec_status st = EC_OK;
    *chained = 0;
    for (;;) {
        struct chain_ctx ctx = { .l = l };
        st = ec_pg_tx(l->pool, EC_PG_READ_COMMITTED, &arena, chain_batch_tx, &ctx, err);
        ec_arena_reset(&arena);
        if (st != EC_OK)
            break;
        *chained += ctx.taken;
        if (ctx.taken < COORD_LEDGER_BATCH)
            break;
    }
    ec_arena_release(&arena);
    return st;
}

enum ec_status coord_ledger_chain_now(struct coord_ledger *l, struct ec_err *err)
{
    int64_t chained;
    return chain_all(l, &chained, err);
}

/* --- the chainer thread ------------------------------------------------------------------------
 */

static void chainer_pass(struct coord_ledger *l)
{
    struct ec_err err = { 0 };
    int64_t chained = 0;
    enum ec_status st = chain_all(l, &chained, &err);
    int64_t now = ec_mono_ms();
    if (st != EC_OK) {
        if (l->failing_since_log_ms == 0 || now - l->failing_since_log_ms >= FAILURE_LOG_EVERY_MS) {
            EC_WARN("ledger chaining failed", EC_LS("error", err.msg),
                    EC_LS("code", ec_err_code(&err)));
            l->failing_since_log_ms = now;
        }
        return;
    }
    if (l->failing_since_log_ms != 0) {
        EC_INFO("ledger chaining recovered");
        l->failing_since_log_ms = 0;
    }
    if (chained > 0)
        EC_DEBUG("ledger records chained", EC_LI("count", chained));
}

static void *chainer_main(void *arg)
{
    struct coord_ledger *l = arg;
    pthread_mutex_lock(&l->lock);
    while (!l->stop) {
        pthread_mutex_unlock(&l->lock);
        chainer_pass(l);
        pthread_mutex_lock(&l->lock);
        if (l->stop)
            break;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        int64_t ns = until.tv_nsec + (l->chain_interval_ms % 1000) * 1000000;
        until.tv_sec += (time_t)(l->chain_interval_ms / 1000 + ns / 1000000000);
        until.tv_nsec = (long)(ns % 1000000000);
        int rc = 0;
        while (!l->stop && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&l->cond, &l->lock, &until);
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

static void ledger_free(struct coord_ledger *l)
{
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
    free(l->coordinator_id);
    free(l);
}

enum ec_status coord_ledger_start(const struct coord_ledger_opts *opts, struct coord_ledger **out,
                                  struct ec_err *err)
{
    *out = NULL;
    if (opts == NULL || opts->pool == NULL)
        return ec_err_set(err, EC_EINVAL, NULL, "the ledger needs a database pool");
    if (opts->coordinator_id == NULL || opts->coordinator_id[0] == '\0')
        return ec_err_set(err, EC_EINVAL, NULL, "the ledger needs a coordinator id");
    if (opts->signing_key == NULL || ec_key_get_alg(opts->signing_key) != EC_KEY_ED25519 ||
        !ec_key_has_private(opts->signing_key))
        return ec_err_set(err, EC_EINVAL, NULL, "the ledger needs an Ed25519 private key");
    struct coord_ledger *l = ec_xcalloc(1, sizeof(*l));
    l->pool = opts->pool;
    l->coordinator_id = ec_xstrdup(opts->coordinator_id);
    l->signing_key = opts->signing_key;
    l->chain_interval_ms = opts->chain_interval_ms > 0 ? opts->chain_interval_ms : 50;
    pthread_mutex_init(&l->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&l->cond, &attr);
    pthread_condattr_destroy(&attr);
    int rc = pthread_create(&l->thread, NULL, chainer_main, l);
    if (rc != 0) {
        ledger_free(l);
        return ec_err_set(err, EC_EINTERNAL, NULL, "cannot start the ledger chainer: %s",
                          strerror(rc));
    }
    l->thread_started = true;
    *out = l;
    return EC_OK;
}

void coord_ledger_stop(struct coord_ledger *l)
{
    if (l == NULL)
        return;
    if (l->thread_started) {
        pthread_mutex_lock(&l->lock);
        l->stop = true;
        pthread_cond_signal(&l->cond);
        pthread_mutex_unlock(&l->lock);
        pthread_join(l->thread, NULL);
    }
    struct ec_err err = { 0 };
    if (coord_ledger_chain_now(l, &err) != EC_OK)
        EC_WARN("ledger events left pending at stop", EC_LS("error", err.msg));
    ledger_free(l);
}
