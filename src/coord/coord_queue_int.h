/* Internals of the durable queue, shared by coord_queue*.c (and its unit test): the queue
 * struct, input limits, and the state-change steps that completion and expiry share. */
#ifndef COORD_QUEUE_INT_H
#define COORD_QUEUE_INT_H

#include "coord/coord_queue.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Most projects one claim compares for fairness. With more projects holding queued work, the
 * claim chooses among the first ones by project id (documented in the README's queue section). */
#define COORD_QUEUE_PROJECT_SCAN 256
/* Expired leases handled per transaction, and transactions per coord_queue_expire call. */
#define COORD_QUEUE_EXPIRE_BATCH      256
#define COORD_QUEUE_EXPIRE_ROUNDS     16
#define COORD_QUEUE_KEY_TTL_MS        (60 * 60 * 1000) /* envelope keys of answered subtasks */
#define COORD_QUEUE_COMPLETION_SHARDS 16

struct coord_queue {
    /* Immutable after coord_queue_new; the queue is shared by every thread. */
    struct ec_pg_pool *pool; /* borrowed */
    char *coordinator_id;
    int64_t lease_grace_ms;
    int max_attempts;
};

/* Decimal text of v in a (a query parameter). */
const char *coord_queue__i64(struct ec_arena *a, int64_t v);
/* v as a number; the column must be a non-NULL integer. */
int64_t coord_queue__int(const struct pg_result *res, int row, int col);
/* NULL, or a non-empty id of at most COORD_QUEUE_ID_MAX bytes without control characters. */
enum ec_status coord_queue__check_id(const char *field, const char *v, bool required,
                                     struct ec_err *err);
/* A subtask id: "<taskId>:<index>" from this queue, so at most COORD_QUEUE_ID_MAX + 3 bytes. */
enum ec_status coord_queue__check_subtask_id(const char *v, struct ec_err *err);
/* Valid UTF-8 of at most max bytes, without NUL (a C string cannot hold one anyway). */
enum ec_status coord_queue__check_text(const char *field, const char *v, size_t max,
                                       struct ec_err *err);

/* After subtask (task_id, index) completed: one dependency fewer for its dependants; those with
 * none left are queued, their input prefixed with their dependencies' outputs. *released may
 * be NULL. Inside the caller's transaction. */
enum ec_status coord_queue__release_dependants(struct ec_pg_conn *conn, struct ec_arena *arena,
                                               const char *task_id, int index, int *released,
                                               struct ec_err *err);
/* After subtask (task_id, index) failed for good: its blocked dependants, transitively, fail too
 * ("dependency_failed"). */
enum ec_status coord_queue__fail_dependants(struct ec_pg_conn *conn, struct ec_arena *arena,
                                            const char *task_id, int index, int64_t now_ms,
                                            struct ec_err *err);

/* The claim statement, indexed by variant (bit 0: no sandbox, so tenant-free work only; bit 1:
 * only work that asked for the agent's active model), exposed so that the load test can EXPLAIN
 * it against a large queue. Parameters: $1 model, $2 project (NULL: the first-ranked), $3 agent,
 * $4 now, $5 grace. */
#define COORD_QUEUE_CLAIM_OPEN  1
#define COORD_QUEUE_CLAIM_MODEL 2
extern const char *const coord_queue__claim_sql[4];

#endif
