/* The ordering ledger. Without a database: the record hash against vectors computed by
 * JSON.stringify and by Python, and argument checks. With EC_TEST_DATABASE_URL (a migrated
 * coordinator database, see tests/integration/42_coord_ledger_gate.py): chaining, snapshots,
 * continuity across restarts, an event that commits after a higher id was chained, tamper
 * detection, and four threads recording while two chainers (two "machines") run. */
#include "common/ec_arena.h"
#include "common/ec_crypto.h"
#include "common/ec_log.h"
#include "common/ec_mem.h"
#include "common/ec_pg.h"
#include "coord/coord_ledger.h"
#include "coord/coord_ledger_int.h"

#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
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

static const char *db_url;
static struct ec_pg_pool *pool;
static struct ec_key *key;

/* --- the hash, without a database ------------------------------------------------------------ */

static const struct coord__ledger_rec rec1 = {
    .event_type = "task_claim",
    .task_id = "task-1",
    .subtask_id = "task-1:0",
    .actor_id = "agent-1",
    .sequence = 7,
    .issued_at_ms = 1700000000123,
    .prev_hash = "GENESIS",
    .coordinator_id = "coord-0123456789ab",
    .payload_json = "{\"attempt\":1,\"leaseExpiresAtMs\":1700000030123}",
};
static const char rec1_json[] =
    "{\"eventType\":\"task_claim\",\"taskId\":\"task-1\",\"subtaskId\":\"task-1:0\","
    "\"actorId\":\"agent-1\",\"sequence\":7,\"issuedAtMs\":1700000000123,\"prevHash\":\"GENESIS\","
    "\"coordinatorId\":\"coord-0123456789ab\","
    "\"payloadJson\":\"{\\\"attempt\\\":1,\\\"leaseExpiresAtMs\\\":1700000030123}\"}";
/* node -e 'console.log(require("crypto").createHash("sha256").update(JSON.stringify({eventType:
 *   "task_claim",taskId:"task-1",subtaskId:"task-1:0",actorId:"agent-1",sequence:7,
 *   issuedAtMs:1700000000123,prevHash:"GENESIS",coordinatorId:"coord-0123456789ab",
 *   checkpointHeight:undefined,payloadJson:JSON.stringify({attempt:1,
 *   leaseExpiresAtMs:1700000030123})})).digest("hex"))'
 * and python3 -c 'import json,hashlib; print(hashlib.sha256(json.dumps({"eventType":
 *   "task_claim","taskId":"task-1","subtaskId":"task-1:0","actorId":"agent-1","sequence":7,
 *   "issuedAtMs":1700000000123,"prevHash":"GENESIS","coordinatorId":"coord-0123456789ab",
 *   "payloadJson":"{\"attempt\":1,\"leaseExpiresAtMs\":1700000030123}"},
 *   separators=(",",":"),ensure_ascii=False).encode()).hexdigest())' both print: */
static const char rec1_hash[] = "85e9d69be49eba6b1cae3c4ba0558b7a6258fd4a0714f2af8393a5208e4d43b7";

/* Every escape JSON.stringify makes, DEL and non-ASCII kept, undefined keys left out, and a
 * checkpoint height. */
static const struct coord__ledger_rec rec2 = {
    .event_type = "node_validation",
    .actor_id = "agent-\"q\"\\b",
    .sequence = 12,
    .issued_at_ms = 1,
    .prev_hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    .coordinator_id = "coord-x",
    .has_checkpoint_height = true,
    .checkpoint_height = 3,
    .checkpoint_hash = "abc",
    .payload_json = "\b\f\n\r\t\x01\x1f\x7f \xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80 </script> "
                    "\xe2\x80\xa8",
};
static const char rec2_json[] =
    "{\"eventType\":\"node_validation\",\"actorId\":\"agent-\\\"q\\\"\\\\b\",\"sequence\":12,"
    "\"issuedAtMs\":1,\"prevHash\":"
    "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\","
    "\"coordinatorId\":\"coord-x\",\"checkpointHeight\":3,\"checkpointHash\":\"abc\","
    "\"payloadJson\":\"\\b\\f\\n\\r\\t\\u0001\\u001f\x7f \xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80 "
    "</script> \xe2\x80\xa8\"}";
/* The same two commands on this record (payloadJson:"\b\f\n\r\t\x01\x1f\x7f é ✓ 😀 </script>
 * \u2028", taskId and subtaskId undefined) print: */
static const char rec2_hash[] = "d0751ae3a3a07e6eb260f4369ff0cfbcd9911b6b03e65c78ecc0ddb97ff0b515";

static void sha256_hex(const char *s, char hex[65])
{
    uint8_t d[EC_SHA256_LEN];
    ec_sha256(s, strlen(s), d);
    ec_hex_encode(hex, 65, d, sizeof(d));
}

static void test_hash_vectors(void **state)
{
    struct ec_buf b;
    ec_buf_init(&b, 0);
    char hex[65], want[65];

    assert_int_equal(coord__ledger_canonical_json(&rec1, &b), EC_OK);
    assert_string_equal(b.data, rec1_json);
    assert_int_equal(coord__ledger_hash(&rec1, &b, hex), EC_OK);
    sha256_hex(rec1_json, want);
    assert_string_equal(hex, want);
    assert_string_equal(hex, rec1_hash);

    ec_buf_reset(&b);
    assert_int_equal(coord__ledger_canonical_json(&rec2, &b), EC_OK);
    assert_string_equal(b.data, rec2_json);
    assert_int_equal(coord__ledger_hash(&rec2, &b, hex), EC_OK);
    sha256_hex(rec2_json, want);
    assert_string_equal(hex, want);
    assert_string_equal(hex, rec2_hash);
    ec_buf_release(&b);
}

/* jansson, an independent serialiser, agrees on a record without control characters. */
static void test_hash_matches_jansson(void **state)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:s}", "eventType", rec1.event_type,
                          "taskId", rec1.task_id, "subtaskId", rec1.subtask_id, "actorId",
                          rec1.actor_id, "sequence", (json_int_t)rec1.sequence, "issuedAtMs",
                          (json_int_t)rec1.issued_at_ms, "prevHash", rec1.prev_hash,
                          "coordinatorId", rec1.coordinator_id, "payloadJson", rec1.payload_json);
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(text, rec1_json);
    free(text);
    json_decref(o);
}

static void test_record_args(void **state)
{
    struct ec_err err = { 0 };
    struct coord_ledger_event ev = { .event_type = "task_teleport", .actor_id = "a" };
    /* Checked before the connection is touched. */
    assert_int_equal(coord_ledger_record(NULL, NULL, &ev, &err), EC_EINVAL);
    assert_non_null(strstr(err.msg, "task_teleport"));
    ev.event_type = "task_claim";
    ev.actor_id = NULL;
    assert_int_equal(coord_ledger_record(NULL, NULL, &ev, &err), EC_EINVAL);
    ev.actor_id = "a";
    char *big = ec_xmalloc(COORD_LEDGER_PAYLOAD_MAX + 2);
    memset(big, 'x', COORD_LEDGER_PAYLOAD_MAX + 1);
    big[COORD_LEDGER_PAYLOAD_MAX + 1] = '\0';
    ev.payload_json = big;
    assert_int_equal(coord_ledger_record(NULL, NULL, &ev, &err), EC_ETOOBIG);
    free(big);

    struct coord_ledger *l = NULL;
    struct ec_key *x = NULL;
    assert_int_equal(ec_key_generate(EC_KEY_X25519, &x, &err), EC_OK);
    struct coord_ledger_opts opts = { .pool = (struct ec_pg_pool *)&err,
                                      .coordinator_id = "c",
                                      .signing_key = x };
    assert_int_equal(coord_ledger_start(&opts, &l, &err), EC_EINVAL);
    opts.coordinator_id = "";
    assert_int_equal(coord_ledger_start(&opts, &l, &err), EC_EINVAL);
    assert_null(l);
    ec_key_free(x);
    coord_ledger_stop(NULL);
}

/* --- with a database ----------------------------------------------------------------------------
 */

static void exec_sql(const char *sql)
{
    struct ec_err err = { 0 };
    struct ec_pg_conn *c = NULL;
    assert_ok(ec_pg_acquire(pool, &c, &err));
    assert_ok(ec_pg_query(c, sql, 0, NULL, NULL, NULL, &err));
    ec_pg_release(c);
}

static int64_t count_sql(const char *sql)
{
    struct ec_err err = { 0 };
    struct ec_arena a;
    ec_arena_init(&a);
    struct ec_pg_conn *c = NULL;
    struct pg_result *res = NULL;
    assert_ok(ec_pg_acquire(pool, &c, &err));
    assert_ok(ec_pg_query(c, sql, 0, NULL, &a, &res, &err));
    int64_t n = strtoll(ec_pg_value(res, 0, 0), NULL, 10);
    ec_pg_release(c);
    ec_arena_release(&a);
    return n;
}

struct batch {
    const char *actor;
    int first, n;
};

static enum ec_status record_batch(struct ec_pg_conn *conn, struct ec_arena *arena, void *ctx,
                                   struct ec_err *err)
{
    const struct batch *b = ctx;
    for (int i = b->first; i < b->first + b->n; i++) {
        char task[32], payload[64];
        snprintf(task, sizeof(task), "task-%d", i);
        snprintf(payload, sizeof(payload), "{\"actor\":\"%s\",\"n\":%d}", b->actor, i);
        struct coord_ledger_event ev = { .event_type = "task_enqueue",
                                         .task_id = task,
                                         .actor_id = b->actor,
                                         .payload_json = payload,
                                         .issued_at_ms = 1700000000000 + i };
        enum ec_status st = coord_ledger_record(conn, arena, &ev, err);
        if (st != EC_OK)
            return st;
    }
    return EC_OK;
}

static void record_n(const char *actor, int first, int n)
{
    struct ec_err err = { 0 };
    struct ec_arena a;
    ec_arena_init(&a);
    struct batch b = { actor, first, n };
    assert_ok(ec_pg_tx(pool, EC_PG_READ_COMMITTED, &a, record_batch, &b, &err));
    ec_arena_release(&a);
}

/* A ledger whose thread stays out of the way (an hour between passes after its first). */
static struct coord_ledger *start_ledger(const char *coordinator_id, const struct ec_key *k,
                                         int64_t interval_ms)
{
    struct ec_err err = { 0 };
    struct coord_ledger_opts opts = { .pool = pool,
                                      .coordinator_id = coordinator_id,
                                      .signing_key = k,
                                      .chain_interval_ms = interval_ms };
    struct coord_ledger *l = NULL;
    assert_ok(coord_ledger_start(&opts, &l, &err));
    return l;
}

static void expect_verify(struct coord_ledger *l, bool ok, const char *reason, int64_t seq_or_count)
{
    struct ec_err err = { 0 };
    json_t *v = NULL;
    assert_ok(coord_ledger_verify(l, &v, &err));
    char *text = json_dumps(v, JSON_COMPACT);
    if (json_is_true(json_object_get(v, "ok")) != ok)
        fail_msg("verify: %s", text);
    if (ok) {
        assert_int_equal(json_integer_value(json_object_get(v, "count")), seq_or_count);
    } else {
        assert_string_equal(json_string_value(json_object_get(v, "reason")), reason);
        assert_int_equal(json_integer_value(json_object_get(v, "sequence")), seq_or_count);
    }
    free(text);
    json_decref(v);
}

static int reset_tables(void **state)
{
    exec_sql("TRUNCATE ledger_pending, ledger_records");
    return 0;
}

static void test_chain_snapshot_verify(void **state)
{
    struct ec_err err = { 0 };
    struct coord_ledger *l = start_ledger("coord-test-a", key, 3600000);
    expect_verify(l, true, NULL, 0); /* an empty chain verifies */
    record_n("agent-1", 0, 5);
    assert_ok(coord_ledger_chain_now(l, &err));
    assert_int_equal(count_sql("SELECT count(*) FROM ledger_pending"), 0);
    expect_verify(l, true, NULL, 5);

    /* The first record's hash, recomputed here from its columns with jansson. */
    struct ec_arena a;
    ec_arena_init(&a);
    struct ec_pg_conn *c = NULL;
    struct pg_result *res = NULL;
    assert_ok(ec_pg_acquire(pool, &c, &err));
    assert_ok(ec_pg_query(c,
                          "SELECT " COORD__LEDGER_COLUMNS " FROM ledger_records ORDER BY sequence",
                          0, NULL, &a, &res, &err));
    ec_pg_release(c);
    assert_int_equal(ec_pg_nrows(res), 5);
    struct coord__ledger_rec r;
    coord__ledger_rec_from_row(res, 0, &r);
    assert_int_equal(r.sequence, 1);
    assert_string_equal(r.prev_hash, "GENESIS");
    assert_null(r.subtask_id);
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:s}", "eventType", "task_enqueue", "taskId",
                  "task-0", "actorId", "agent-1", "sequence", (json_int_t)1, "issuedAtMs",
                  (json_int_t)1700000000000, "prevHash", "GENESIS", "coordinatorId", "coord-test-a",
                  "payloadJson", "{\"actor\":\"agent-1\",\"n\":0}");
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    char want[65];
    sha256_hex(text, want);
    assert_string_equal(r.hash, want);
    free(text);
    json_decref(o);
    uint8_t sig[EC_ED25519_SIG_LEN];
    size_t sig_len = 0;
    assert_ok(ec_b64_decode(sig, sizeof(sig), &sig_len, r.signature, strlen(r.signature), &err));
    assert_ok(ec_key_verify(key, r.hash, 64, sig, sig_len, &err));
    for (int i = 1; i < 5; i++) {
        assert_string_equal(ec_pg_value(res, i, 7), ec_pg_value(res, i - 1, 12));
        assert_int_equal(strtoll(ec_pg_value(res, i, 0), NULL, 10), i + 1);
    }

    /* Snapshot: the newest two, oldest first, and a proof of the head. */
    json_t *snap = NULL;
    assert_ok(coord_ledger_snapshot(l, 2, &snap, &err));
    json_t *recs = json_object_get(snap, "records");
    assert_int_equal(json_array_size(recs), 2);
    json_t *last = json_array_get(recs, 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(recs, 0), "sequence")), 4);
    assert_int_equal(json_integer_value(json_object_get(last, "sequence")), 5);
    assert_string_equal(json_string_value(json_object_get(last, "eventType")), "task_enqueue");
    assert_string_equal(json_string_value(json_object_get(last, "hash")), ec_pg_value(res, 4, 12));
    assert_null(json_object_get(last, "subtaskId")); /* undefined stays out */
    json_t *proof = json_object_get(snap, "proof");
    assert_int_equal(json_integer_value(json_object_get(proof, "sequence")), 5);
    assert_string_equal(json_string_value(json_object_get(proof, "recordId")),
                        ec_pg_value(res, 4, 1));
    assert_string_equal(json_string_value(json_object_get(proof, "prevHash")),
                        ec_pg_value(res, 3, 12));
    assert_string_equal(json_string_value(json_object_get(proof, "signerPeerId")), "coord-test-a");
    json_decref(snap);
    ec_arena_release(&a);
    coord_ledger_stop(l);
}

static void test_snapshot_empty(void **state)
{
    struct ec_err err = { 0 };
    struct coord_ledger *l = start_ledger("coord-test-a", key, 3600000);
    json_t *snap = NULL;
    assert_ok(coord_ledger_snapshot(l, 0, &snap, &err));
    assert_int_equal(json_array_size(json_object_get(snap, "records")), 0);
    assert_true(json_is_null(json_object_get(snap, "proof")));
    json_decref(snap);
    coord_ledger_stop(l);
}

/* A second instance (a restart) continues the sequence and the hash chain from the database; the
 * first one's stop chains what was pending. */
static void test_restart_continues_chain(void **state)
{
    struct ec_err err = { 0 };
    struct coord_ledger *l = start_ledger("coord-test-a", key, 3600000);
    record_n("agent-1", 0, 3);
    coord_ledger_stop(l);
    assert_int_equal(count_sql("SELECT count(*) FROM ledger_records"), 3);
    l = start_ledger("coord-test-a", key, 3600000);
    record_n("agent-2", 3, 4);
    assert_ok(coord_ledger_chain_now(l, &err));
    expect_verify(l, true, NULL, 7);
    assert_int_equal(count_sql("SELECT max(sequence) FROM ledger_records"), 7);
    assert_int_equal(count_sql("SELECT count(*) FROM ledger_records r JOIN ledger_records p "
                               "ON p.sequence = 3 WHERE r.sequence = 4 AND r.prev_hash = p.hash"),
                     1);
    coord_ledger_stop(l);
}

/* An event whose transaction commits after a later one was chained is chained next, not
 * skipped. */
static void test_late_commit_is_not_skipped(void **state)
{
    struct ec_err err = { 0 };
    struct coord_ledger *l = start_ledger("coord-test-a", key, 3600000);
    struct ec_pg_conn *slow = NULL;
    assert_ok(ec_pg_acquire(pool, &slow, &err));
    assert_ok(ec_pg_query(slow, "BEGIN", 0, NULL, NULL, NULL, &err));
    struct coord_ledger_event ev = {
        .event_type = "task_claim", .task_id = "slow", .actor_id = "agent-slow", .issued_at_ms = 5
    };
    assert_ok(coord_ledger_record(slow, NULL, &ev, &err)); /* takes the lower id */
    record_n("agent-fast", 0, 2);
    assert_ok(coord_ledger_chain_now(l, &err));
    assert_int_equal(count_sql("SELECT count(*) FROM ledger_records"), 2);
    assert_ok(ec_pg_query(slow, "COMMIT", 0, NULL, NULL, NULL, &err));
    ec_pg_release(slow);
    assert_ok(coord_ledger_chain_now(l, &err));
    assert_int_equal(count_sql("SELECT sequence FROM ledger_records WHERE task_id = 'slow'"), 3);
    expect_verify(l, true, NULL, 3);
    coord_ledger_stop(l);
}

/* Builds a chain of 10, applies one tampering statement, expects verify's finding. */
static void tamper_case(const char *sql, const char *reason, int64_t sequence)
{
    struct ec_err err = { 0 };
    reset_tables(NULL);
    struct coord_ledger *l = start_ledger("coord-test-a", key, 3600000);
    record_n("agent-1", 0, 10);
    assert_ok(coord_ledger_chain_now(l, &err));
    expect_verify(l, true, NULL, 10);
    exec_sql(sql);
    expect_verify(l, false, reason, sequence);
    coord_ledger_stop(l);
}

static void test_tamper_detection(void **state)
{
    tamper_case("UPDATE ledger_records SET payload_json = '{\"n\":999}' WHERE sequence = 4",
                "hash_mismatch", 4);
    tamper_case("UPDATE ledger_records SET issued_at_ms = issued_at_ms + 1 WHERE sequence = 9",
                "hash_mismatch", 9);
    tamper_case("UPDATE ledger_records SET prev_hash = repeat('0', 64) WHERE sequence = 6",
                "invalid_prev_hash", 6);
    tamper_case("DELETE FROM ledger_records WHERE sequence = 3", "invalid_sequence", 4);
    tamper_case("DELETE FROM ledger_records WHERE sequence = 1", "invalid_sequence", 2);
    tamper_case("UPDATE ledger_records SET signature = (SELECT signature FROM ledger_records "
                "WHERE sequence = 4) WHERE sequence = 5",
                "invalid_signature", 5);
    tamper_case("UPDATE ledger_records SET signature = 'not base64' WHERE sequence = 2",
                "invalid_signature", 2);
    tamper_case("UPDATE ledger_records SET hash = repeat('a', 64) WHERE sequence = 10",
                "hash_mismatch", 10);
    /* The last record rewritten with a correctly recomputed hash still fails: the signature is
     * over the hash, and only the coordinator's key makes it. */
    tamper_case("UPDATE ledger_records SET payload_json = '{\"n\":999}', hash = "
                "encode(sha256(convert_to('{\"eventType\":\"task_enqueue\",\"taskId\":"
                "\"task-9\",\"actorId\":\"agent-1\",\"sequence\":10,\"issuedAtMs\":"
                "1700000000009,\"prevHash\":\"' || prev_hash || '\",\"coordinatorId\":"
                "\"coord-test-a\",\"payloadJson\":\"{\\\"n\\\":999}\"}', 'UTF8')), "
                "'hex') WHERE sequence = 10",
                "invalid_signature", 10);
}

/* Records verify with the configured key only: another key finds the first signature bad. */
static void test_verify_with_other_key(void **state)
{
    struct ec_err err = { 0 };
    struct coord_ledger *l = start_ledger("coord-test-a", key, 3600000);
    record_n("agent-1", 0, 2);
    assert_ok(coord_ledger_chain_now(l, &err));
    coord_ledger_stop(l);
    struct ec_key *other = NULL;
    assert_ok(ec_key_generate(EC_KEY_ED25519, &other, &err));
    l = start_ledger("coord-test-a", other, 3600000);
    expect_verify(l, false, "invalid_signature", 1);
    coord_ledger_stop(l);
    ec_key_free(other);
}

#define RECORDERS     4
#define PER_RECORDER  1000
#define TOTAL_RECORDS (RECORDERS * PER_RECORDER)

struct recorder {
    pthread_t thread;
    char actor[24];
    enum ec_status st;
    struct ec_err err;
};

/* One event per transaction, with now and then a transaction of several. */
static void *recorder_main(void *arg)
{
    struct recorder *r = arg;
    struct ec_arena a;
    ec_arena_init(&a);
    for (int i = 0; i < PER_RECORDER && r->st == EC_OK;) {
        int n = (i % 50 == 0 && i + 5 <= PER_RECORDER) ? 5 : 1;
        struct batch b = { r->actor, i, n };
        r->st = ec_pg_tx(pool, EC_PG_READ_COMMITTED, &a, record_batch, &b, &r->err);
        ec_arena_reset(&a);
        i += n;
    }
    ec_arena_release(&a);
    return NULL;
}

static void test_concurrent_recording_two_chainers(void **state)
{
    struct ec_err err = { 0 };
    /* Two machines sharing the database, chaining every 5 ms while the recorders run. */
    struct coord_ledger *l1 = start_ledger("coord-test-a", key, 5);
    struct coord_ledger *l2 = start_ledger("coord-test-a", key, 7);
    struct recorder rec[RECORDERS];
    for (int i = 0; i < RECORDERS; i++) {
        memset(&rec[i], 0, sizeof(rec[i]));
        snprintf(rec[i].actor, sizeof(rec[i].actor), "agent-%d", i);
        assert_int_equal(pthread_create(&rec[i].thread, NULL, recorder_main, &rec[i]), 0);
    }
    for (int i = 0; i < RECORDERS; i++) {
        pthread_join(rec[i].thread, NULL);
        if (rec[i].st != EC_OK)
            fail_msg("recorder %d: %s", i, rec[i].err.msg);
    }
    int64_t chained_while_running = count_sql("SELECT count(*) FROM ledger_records");
    assert_ok(coord_ledger_chain_now(l1, &err));
    coord_ledger_stop(l2);
    assert_int_equal(count_sql("SELECT count(*) FROM ledger_pending"), 0);
    assert_int_equal(count_sql("SELECT count(*) FROM ledger_records"), TOTAL_RECORDS);
    assert_int_equal(count_sql("SELECT count(DISTINCT payload_json) FROM ledger_records"),
                     TOTAL_RECORDS);
    assert_int_equal(count_sql("SELECT max(sequence) FROM ledger_records"), TOTAL_RECORDS);
    expect_verify(l1, true, NULL, TOTAL_RECORDS);
    coord_ledger_stop(l1);
    print_message("chained while recording: %" PRId64 " of %d\n", chained_while_running,
                  TOTAL_RECORDS);
    assert_true(chained_while_running > 0);
}

static int db_setup(void **state)
{
    struct ec_err err = { 0 };
    if (ec_pg_pool_new(db_url, 16, NULL, &pool, &err) != EC_OK ||
        ec_key_generate(EC_KEY_ED25519, &key, &err) != EC_OK) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int db_teardown(void **state)
{
    ec_key_free(key);
    ec_pg_pool_free(pool);
    return 0;
}

int main(void)
{
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_hash_vectors),
        cmocka_unit_test(test_hash_matches_jansson),
        cmocka_unit_test(test_record_args),
    };
    const struct CMUnitTest with_db[] = {
        cmocka_unit_test_setup(test_chain_snapshot_verify, reset_tables),
        cmocka_unit_test_setup(test_snapshot_empty, reset_tables),
        cmocka_unit_test_setup(test_restart_continues_chain, reset_tables),
        cmocka_unit_test_setup(test_late_commit_is_not_skipped, reset_tables),
        cmocka_unit_test_setup(test_tamper_detection, reset_tables),
        cmocka_unit_test_setup(test_verify_with_other_key, reset_tables),
        cmocka_unit_test_setup(test_concurrent_recording_two_chainers, reset_tables),
    };
    ec_log_setup("test_ledger", EC_LOG_ERROR + 1, STDERR_FILENO);
    int failed = cmocka_run_group_tests_name("ledger_pure", pure, NULL, NULL);
    db_url = getenv("EC_TEST_DATABASE_URL");
    if (db_url == NULL || db_url[0] == '\0') {
        printf("EC_TEST_DATABASE_URL not set: database tests skipped\n");
        return failed;
    }
    return failed + cmocka_run_group_tests_name("ledger_database", with_db, db_setup, db_teardown);
}
