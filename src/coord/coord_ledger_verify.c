/* The ordering ledger's read side: the original's record hash (JSON.stringify of the record's
 * fields, byte for byte), verification of the whole chain from the database in constant memory,
 * and snapshots. */
#include "coord/coord_ledger.h"
#include "coord/coord_ledger_int.h"

#include "common/ec_mem.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- the hash ------------------------------------------------------------------------------- */

/* A JSON string literal as JSON.stringify writes it (see ec_buf_json_escape). */
static enum ec_status put_string(struct ec_buf *b, const char *s)
{
    enum ec_status st = ec_buf_putc(b, '"');
    if (st == EC_OK)
        st = ec_buf_json_escape(b, s, strlen(s));
    return st == EC_OK ? ec_buf_putc(b, '"') : st;
}

struct json_writer {
    struct ec_buf *b;
    bool first;
    enum ec_status st;
};

static void put_key(struct json_writer *w, const char *key)
{
    if (w->st == EC_OK && !w->first)
        w->st = ec_buf_putc(w->b, ',');
    w->first = false;
    if (w->st == EC_OK)
        w->st = put_string(w->b, key);
    if (w->st == EC_OK)
        w->st = ec_buf_putc(w->b, ':');
}

static void put_str_field(struct json_writer *w, const char *key, const char *value)
{
    if (value == NULL) /* undefined: JSON.stringify leaves the key out */
        return;
    put_key(w, key);
    if (w->st == EC_OK)
        w->st = put_string(w->b, value);
}

/* Integers print as JavaScript prints numbers of this size: plain decimal. */
static void put_int_field(struct json_writer *w, const char *key, int64_t value)
{
    put_key(w, key);
    if (w->st == EC_OK)
        w->st = ec_buf_printf(w->b, "%" PRId64, value);
}

enum ec_status coord__ledger_canonical_json(const struct coord__ledger_rec *r, struct ec_buf *out)
{
    struct json_writer w = { out, true, ec_buf_putc(out, '{') };
    put_str_field(&w, "eventType", r->event_type);
    put_str_field(&w, "taskId", r->task_id);
    put_str_field(&w, "subtaskId", r->subtask_id);
    put_str_field(&w, "actorId", r->actor_id);
    put_int_field(&w, "sequence", r->sequence);
    put_int_field(&w, "issuedAtMs", r->issued_at_ms);
    put_str_field(&w, "prevHash", r->prev_hash);
    put_str_field(&w, "coordinatorId", r->coordinator_id);
    if (r->has_checkpoint_height)
        put_int_field(&w, "checkpointHeight", r->checkpoint_height);
    put_str_field(&w, "checkpointHash", r->checkpoint_hash);
    put_str_field(&w, "payloadJson", r->payload_json);
    return w.st == EC_OK ? ec_buf_putc(out, '}') : w.st;
}

enum ec_status coord__ledger_hash(const struct coord__ledger_rec *r, struct ec_buf *scratch,
                                  char hex[COORD_LEDGER_HASH_HEX_LEN + 1])
{
    ec_buf_reset(scratch);
    enum ec_status st = coord__ledger_canonical_json(r, scratch);
    if (st != EC_OK)
        return st;
    uint8_t digest[EC_SHA256_LEN];
    ec_sha256(scratch->data, scratch->len, digest);
    ec_hex_encode(hex, COORD_LEDGER_HASH_HEX_LEN + 1, digest, sizeof(digest));
    return EC_OK;
}

/* --- rows ----------------------------------------------------------------------------------- */

static int64_t int_at(const struct pg_result *res, int row, int col)
{
    const char *v = ec_pg_value(res, row, col);
    return v != NULL ? strtoll(v, NULL, 10) : 0;
}

void coord__ledger_rec_from_row(const struct pg_result *res, int row, struct coord__ledger_rec *r)
{
    *r = (struct coord__ledger_rec){
        .sequence = int_at(res, row, 0),
        .id = ec_pg_value(res, row, 1),
        .event_type = ec_pg_value(res, row, 2),
        .task_id = ec_pg_value(res, row, 3),
        .subtask_id = ec_pg_value(res, row, 4),
        .actor_id = ec_pg_value(res, row, 5),
        .issued_at_ms = int_at(res, row, 6),
        .prev_hash = ec_pg_value(res, row, 7),
        .coordinator_id = ec_pg_value(res, row, 8),
        .has_checkpoint_height = !ec_pg_isnull(res, row, 9),
        .checkpoint_height = int_at(res, row, 9),
        .checkpoint_hash = ec_pg_value(res, row, 10),
        .payload_json = ec_pg_value(res, row, 11),
        .hash = ec_pg_value(res, row, 12),
        .signature = ec_pg_value(res, row, 13),
    };
}

static void set_str(json_t *o, const char *key, const char *value)
{
    if (value != NULL)
        json_object_set_new(o, key, json_stringn_nocheck(value, strlen(value)));
}

json_t *coord__ledger_rec_json(const struct coord__ledger_rec *r)
{
    json_t *o = json_object();
    set_str(o, "id", r->id);
    set_str(o, "eventType", r->event_type);
    set_str(o, "taskId", r->task_id);
    set_str(o, "subtaskId", r->subtask_id);
    set_str(o, "actorId", r->actor_id);
    json_object_set_new(o, "sequence", json_integer(r->sequence));
    json_object_set_new(o, "issuedAtMs", json_integer(r->issued_at_ms));
    set_str(o, "prevHash", r->prev_hash);
    set_str(o, "coordinatorId", r->coordinator_id);
    if (r->has_checkpoint_height)
        json_object_set_new(o, "checkpointHeight", json_integer(r->checkpoint_height));
    set_str(o, "checkpointHash", r->checkpoint_hash);
    set_str(o, "payloadJson", r->payload_json);
    set_str(o, "hash", r->hash);
    set_str(o, "signature", r->signature);
    return o;
}

/* --- verification ----------------------------------------------------------------------------- */

struct verify_ctx {
    struct coord_ledger *l;
    int64_t count;
    const char *reason; /* NULL: the chain verified */
    int64_t bad_sequence;
};

/* The first check a record fails, in the original's order, or NULL. */
static const char *check_record(const struct coord_ledger *l, const struct coord__ledger_rec *r,
                                int64_t expected, const char *prev, struct ec_buf *scratch)
{
    if (r->sequence != expected)
        return "invalid_sequence";
    if (r->prev_hash == NULL || strcmp(r->prev_hash, prev) != 0)
        return "invalid_prev_hash";
    char hash[COORD_LEDGER_HASH_HEX_LEN + 1];
    if (coord__ledger_hash(r, scratch, hash) != EC_OK || r->hash == NULL ||
        strcmp(hash, r->hash) != 0)
        return "hash_mismatch";
    uint8_t sig[EC_ED25519_SIG_LEN + 3];
    size_t sig_len = 0;
    if (r->signature == NULL ||
        ec_b64_decode(sig, sizeof(sig), &sig_len, r->signature, strlen(r->signature), NULL) !=
            EC_OK ||
        ec_key_verify(l->signing_key, r->hash, strlen(r->hash), sig, sig_len, NULL) != EC_OK)
        return "invalid_signature";
    return NULL;
}

static enum ec_status verify_fn(struct ec_pg_conn *conn, struct ec_arena *unused, void *vctx,
                                struct ec_err *err)
{
    struct verify_ctx *ctx = vctx;
    struct ec_arena arena;
    ec_arena_init(&arena);
    struct ec_buf scratch;
    ec_buf_init(&scratch, 0);
    char prev[COORD_LEDGER_HASH_HEX_LEN + 1] = COORD_LEDGER_GENESIS;
    int64_t last = 0;
    enum ec_status st = EC_OK;
    char limit[16];
    snprintf(limit, sizeof(limit), "%d", COORD_LEDGER_BATCH);
    for (;;) {
        char after[24];
        snprintf(after, sizeof(after), "%" PRId64, last);
        const char *params[] = { after, limit };
        struct pg_result *res = NULL;
        st = ec_pg_query(conn,
                         "SELECT " COORD__LEDGER_COLUMNS " FROM ledger_records WHERE sequence > $1 "
                         "ORDER BY sequence LIMIT $2",
                         2, params, &arena, &res, err);
        if (st != EC_OK)
            break;
        int n = ec_pg_nrows(res);
        for (int i = 0; i < n && ctx->reason == NULL; i++) {
            struct coord__ledger_rec r;
            coord__ledger_rec_from_row(res, i, &r);
            ctx->reason = check_record(ctx->l, &r, last + 1, prev, &scratch);
            if (ctx->reason != NULL) {
                ctx->bad_sequence = r.sequence;
                break;
            }
            last = r.sequence;
            memcpy(prev, r.hash, sizeof(prev)); /* 64 hex digits: the hash check passed */
            ctx->count++;
        }
        ec_arena_reset(&arena);
        if (ctx->reason != NULL || n < COORD_LEDGER_BATCH)
            break;
    }
    ec_buf_release(&scratch);
    ec_arena_release(&arena);
    return st;
}

enum ec_status coord_ledger_verify(struct coord_ledger *l, json_t **out, struct ec_err *err)
{
    *out = NULL;
    struct verify_ctx ctx = { .l = l };
    enum ec_status st = ec_pg_with_conn(l->pool, NULL, verify_fn, &ctx, err);
    if (st != EC_OK)
        return st;
    if (ctx.reason == NULL) {
        *out = json_pack("{s:b,s:I}", "ok", 1, "count", (json_int_t)ctx.count);
    } else {
        *out = json_pack("{s:b,s:s,s:I}", "ok", 0, "reason", ctx.reason, "sequence",
                         (json_int_t)ctx.bad_sequence);
    }
    EC_ASSERT(*out != NULL);
    return EC_OK;
}

/* --- snapshot --------------------------------------------------------------------------------- */

enum ec_status coord_ledger_snapshot(struct coord_ledger *l, size_t limit, json_t **out,
                                     struct ec_err *err)
{
    *out = NULL;
    if (limit == 0)
        limit = COORD_LEDGER_SNAPSHOT_DFLT;
    if (limit > COORD_LEDGER_SNAPSHOT_MAX)
        limit = COORD_LEDGER_SNAPSHOT_MAX;
    char lim[24];
    snprintf(lim, sizeof(lim), "%zu", limit);
    const char *params[] = { lim };
    struct ec_arena arena;
    ec_arena_init(&arena);
    struct ec_pg_conn *conn = NULL;
    struct pg_result *res = NULL;
    enum ec_status st = ec_pg_acquire(l->pool, &conn, err);
    if (st == EC_OK)
        st = ec_pg_query(conn,
                         "SELECT " COORD__LEDGER_COLUMNS " FROM (SELECT * FROM ledger_records "
                         "ORDER BY sequence DESC LIMIT $1) newest ORDER BY sequence",
                         1, params, &arena, &res, err);
    if (st == EC_OK) {
        json_t *records = json_array();
        json_t *proof = json_null();
        int n = ec_pg_nrows(res);
        struct coord__ledger_rec r;
        for (int i = 0; i < n; i++) {
            coord__ledger_rec_from_row(res, i, &r);
            json_array_append_new(records, coord__ledger_rec_json(&r));
        }
        if (n > 0) /* r is the newest record */
            proof =
                json_pack("{s:s?,s:s?,s:s?,s:I,s:s?}", "recordId", r.id, "hash", r.hash, "prevHash",
                          r.prev_hash, "sequence", (json_int_t)r.sequence, "signerPeerId",
                          r.coordinator_id != NULL ? r.coordinator_id : l->coordinator_id);
        EC_ASSERT(proof != NULL);
        *out = json_pack("{s:o,s:o}", "records", records, "proof", proof);
        EC_ASSERT(*out != NULL);
    }
    ec_pg_release(conn);
    ec_arena_release(&arena);
    return st;
}
