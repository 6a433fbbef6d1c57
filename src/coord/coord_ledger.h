/* The coordinator's ordering ledger: hash-chained, Ed25519-signed records (the original's
 * QueueEventRecord format, §5.4), durable in PostgreSQL and continuing across restarts.
 *
 * Recording is split from chaining so the queue's hot transactions never serialise on the chain
 * head: coord_ledger_record INSERTs an event into ledger_pending inside the caller's transaction
 * (the event exists exactly when the state change it describes committed); the chainer (a thread
 * per process; machines sharing a database serialise on an advisory lock) takes pending events in
 * commit order in batches, assigns sequence and prevHash, computes the hash, signs it and moves
 * them to ledger_records. */
#ifndef COORD_LEDGER_H
#define COORD_LEDGER_H

#include "common/ec_arena.h"
#include "common/ec_crypto.h"
#include "common/ec_pg.h"
#include "common/ec_status.h"

#include <jansson.h>
#include <stdint.h>

struct coord_ledger_event {
    const char *event_type;   /* task_enqueue, task_claim, task_complete, task_requeue,
                                 node_validation, node_approval */
    const char *task_id;      /* may be NULL (node events) */
    const char *subtask_id;   /* may be NULL */
    const char *actor_id;     /* agent id, coordinator id, or "portal" */
    const char *payload_json; /* may be NULL; stored and hashed verbatim */
    int64_t issued_at_ms;
};

/* Inside the caller's transaction on conn. */
enum ec_status coord_ledger_record(struct ec_pg_conn *conn, struct ec_arena *arena,
                                   const struct coord_ledger_event *ev, struct ec_err *err);

struct coord_ledger_opts {
    struct ec_pg_pool *pool;          /* borrowed */
    const char *coordinator_id;       /* COORDINATOR_PEER_ID */
    const struct ec_key *signing_key; /* borrowed Ed25519 private key */
    int64_t chain_interval_ms;        /* how often the chainer looks for pending events; 50 */
};

struct coord_ledger;

/* Starts the chainer thread. */
enum ec_status coord_ledger_start(const struct coord_ledger_opts *opts, struct coord_ledger **out,
                                  struct ec_err *err);
/* Chains what is pending, then stops the thread and frees. NULL is a no-op. */
void coord_ledger_stop(struct coord_ledger *l);
/* Chains everything pending now, from the calling thread (tests; shutdown). */
enum ec_status coord_ledger_chain_now(struct coord_ledger *l, struct ec_err *err);

/* GET /ledger/snapshot: {records:[...newest `limit` records, oldest first...],
 * proof:{recordId,hash,prevHash,sequence,signerPeerId}|null}. *out is owned by the caller. */
enum ec_status coord_ledger_snapshot(struct coord_ledger *l, size_t limit, json_t **out,
                                     struct ec_err *err);
/* GET /ledger/verify: walks the whole chain from the database: {ok:true,count} or
 * {ok:false,reason:"invalid_sequence"|"invalid_prev_hash"|"hash_mismatch"|"invalid_signature",
 * sequence}. */
enum ec_status coord_ledger_verify(struct coord_ledger *l, json_t **out, struct ec_err *err);

#endif
