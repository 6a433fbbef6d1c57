/* Internals of the ordering ledger shared by coord_ledger.c (recording, chaining) and
 * coord_ledger_verify.c (hashing, verification, snapshots), and used by the unit tests. */
#ifndef COORD_LEDGER_INT_H
#define COORD_LEDGER_INT_H

#include "common/ec_buf.h"
#include "common/ec_crypto.h"
#include "common/ec_pg.h"
#include "coord/coord_ledger.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define COORD_LEDGER_GENESIS      "GENESIS"
#define COORD_LEDGER_HASH_HEX_LEN 64
/* Rows per chaining transaction, per verification query, and the most a snapshot returns. */
#define COORD_LEDGER_BATCH         1000
#define COORD_LEDGER_SNAPSHOT_MAX  5000
#define COORD_LEDGER_SNAPSHOT_DFLT 1000
/* The largest payload_json coord_ledger_record accepts. */
#define COORD_LEDGER_PAYLOAD_MAX (256 * 1024)

struct coord_ledger {
    struct ec_pg_pool *pool;          /* borrowed */
    char *coordinator_id;             /* owned */
    const struct ec_key *signing_key; /* borrowed; also the key records are verified with */
    int64_t chain_interval_ms;
    bool thread_started;
    pthread_t thread;
    pthread_mutex_t lock; /* guards stop; cond wakes the chainer */
    pthread_cond_t cond;
    bool stop;
    /* Chainer thread only: when the last failure was logged (0: not failing). */
    int64_t failing_since_log_ms;
};

/* One QueueEventRecord. NULL strings (and has_checkpoint_height false) are "undefined": left out
 * of the hash and of the JSON form. */
struct coord__ledger_rec {
    const char *id;
    const char *event_type;
    const char *task_id;
    const char *subtask_id;
    const char *actor_id;
    int64_t sequence;
    int64_t issued_at_ms;
    const char *prev_hash;
    const char *coordinator_id;
    bool has_checkpoint_height;
    int64_t checkpoint_height;
    const char *checkpoint_hash;
    const char *payload_json;
    const char *hash;
    const char *signature;
};

/* Appends the JSON text the original hashed: JSON.stringify({eventType, taskId, subtaskId,
 * actorId, sequence, issuedAtMs, prevHash, coordinatorId, checkpointHeight, checkpointHash,
 * payloadJson}) with undefined keys left out. */
enum ec_status coord__ledger_canonical_json(const struct coord__ledger_rec *r, struct ec_buf *out);
/* sha256 hex (lower case) of the canonical JSON; scratch is reset and reused. */
enum ec_status coord__ledger_hash(const struct coord__ledger_rec *r, struct ec_buf *scratch,
                                  char hex[COORD_LEDGER_HASH_HEX_LEN + 1]);

/* The columns the readers select, in this order, and a row of them as a record (strings
 * borrowed from res). */
#define COORD__LEDGER_COLUMNS                                                            \
    "sequence, id, event_type, task_id, subtask_id, actor_id, issued_at_ms, prev_hash, " \
    "coordinator_id, checkpoint_height, checkpoint_hash, payload_json, hash, signature"
void coord__ledger_rec_from_row(const struct pg_result *res, int row, struct coord__ledger_rec *r);
/* The record as the original's JSON object (for snapshots). */
json_t *coord__ledger_rec_json(const struct coord__ledger_rec *r);

#endif
