/* The durable task queue: tasks and subtasks are rows; a claim is a lease with an attempt
 * number (fencing token) and an expiry; expired leases return to the queue; after max_attempts a
 * subtask fails for good and stays visible; a result is accepted only from the current lease's
 * holder and attempt, and a repeated identical result is idempotent. Ledger events are recorded
 * in the same transactions. Transport-free; thread-safe (state lives in PostgreSQL). */
#ifndef COORD_QUEUE_H
#define COORD_QUEUE_H

#include "common/ec_arena.h"
#include "common/ec_pg.h"
#include "common/ec_status.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct coord_queue_opts {
    struct ec_pg_pool *pool;    /* borrowed */
    const char *coordinator_id; /* actor of requeue ledger events */
    int64_t lease_grace_ms;     /* lease = subtask timeoutMs + this; default 30000 */
    int max_attempts;           /* default 3 */
};

struct coord_queue;

enum ec_status coord_queue_new(const struct coord_queue_opts *opts, struct coord_queue **out,
                               struct ec_err *err);
void coord_queue_free(struct coord_queue *q); /* NULL is a no-op */

/* Limits on what the queue stores; anything longer is EC_EINVAL/EC_ETOOBIG naming the field. */
#define COORD_QUEUE_ID_MAX          128          /* task, agent, project, tenant, account, model */
#define COORD_QUEUE_REF_MAX         2048         /* snapshotRef */
#define COORD_QUEUE_TEXT_MAX        (256 * 1024) /* prompt, subtask input, result output */
#define COORD_QUEUE_ERROR_MAX       (64 * 1024)  /* result error */
#define COORD_QUEUE_NONCE_MAX       256          /* reportNonce, reportSignature */
#define COORD_QUEUE_SUBTASKS_MAX    64
#define COORD_QUEUE_DEPS_MAX        16
#define COORD_QUEUE_TIMEOUT_MAX_MS  (60 * 60 * 1000)
#define COORD_QUEUE_TIMEOUT_DEFAULT 60000 /* the original's subtask timeoutMs */
#define COORD_QUEUE_ATTEMPTS_MAX    20
#define COORD_QUEUE_GRACE_MAX_MS    (60 * 60 * 1000)

struct coord_subtask_spec {
    const char *input;
    const char *language; /* "python" | "javascript" */
    const char *kind;     /* "micro_loop" | "single_step" */
    int64_t timeout_ms;
    const int *depends_on; /* indices into the task's subtasks; held until those complete */
    size_t n_depends_on;
};

struct coord_task_spec {
    const char *task_id;
    const char *prompt;
    const char *language;
    const char *snapshot_ref;
    const char *submitter_account_id; /* "anonymous" default */
    const char *project_id;           /* "default" */
    const char *tenant_id;            /* may be NULL */
    const char *resource_class;       /* "cpu" | "gpu" */
    int priority;                     /* 0..100, default 50 */
    const char *requested_model;      /* may be NULL */
    bool decomposition_fallback;      /* true: one subtask made without the inference service */
    const struct coord_subtask_spec *subtasks;
    size_t n_subtasks;
};

/* Stores the task and its subtasks in one transaction, with a task_enqueue ledger event.
 * Subtask ids ("<taskId>:<index>" or UUIDs) are returned in arena. A task id that exists with
 * a different body: EC_ECONFLICT "task_exists"; the same body again: idempotent, same ids. */
enum ec_status coord_queue_submit(struct coord_queue *q, struct ec_arena *arena,
                                  const struct coord_task_spec *spec, const char ***subtask_ids,
                                  size_t *n_ids, struct ec_err *err);

/* What an agent may be given. */
struct coord_claim_agent {
    const char *agent_id;
    const char *active_model;      /* may be NULL */
    bool has_sandbox;              /* sandboxMode != "none"; tenant work never goes to none */
    const char *x25519_public_key; /* base64; non-NULL: the payload is sealed (envelope) */
};

struct coord_claim {
    const char *subtask_id, *task_id, *kind, *language, *input, *snapshot_ref;
    const char *project_id, *tenant_id, *resource_class, *requested_model;
    int priority;
    int64_t timeout_ms;
    int attempt; /* the fencing token: results may echo it */
    int64_t lease_expires_at_ms;
    int subtask_index;
    /* With an x25519 key: the sealed form of {input, snapshotRef, kind:<language>}, in arena;
     * the derived key is stored with the lease so the result can be opened after a restart. */
    bool sealed;
    const char *env_ephemeral_public_key, *env_encrypted_payload, *env_nonce, *env_tag;
};

/* Claims the best runnable subtask with FOR UPDATE SKIP LOCKED: requested model matching the
 * agent's active model first, then the project with the fewest completions, then higher
 * priority, then age; creates the lease (attempt + 1) and a task_claim ledger event in the same
 * transaction. *out is NULL when nothing is runnable for this agent. */
enum ec_status coord_queue_claim(struct coord_queue *q, struct ec_arena *arena,
                                 const struct coord_claim_agent *agent, struct coord_claim **out,
                                 struct ec_err *err);

/* Extends the expiry of every lease agent_id holds (its heartbeat). */
enum ec_status coord_queue_renew(struct coord_queue *q, const char *agent_id, int64_t now_ms,
                                 int *renewed, struct ec_err *err);

struct coord_result {
    const char *subtask_id;
    const char *task_id; /* may be NULL or wrong (original agents send the subtask id) */
    const char *agent_id;
    int attempt; /* 0: not sent (original agents); else must equal the lease's */
    bool ok;
    const char *output;
    const char *error; /* may be NULL */
    int64_t duration_ms;
    const char *report_nonce, *report_signature; /* stored as given; may be NULL */
};

/* Encrypted results: the lease's stored envelope key for (subtask, agent), to open the payload.
 * EC_ENOTFOUND "subtask_not_found" / EC_ECONFLICT "lease_not_held". */
enum ec_status coord_queue_lease_key(struct coord_queue *q, const char *subtask_id,
                                     const char *agent_id, uint8_t key[32], struct ec_err *err);

/* Accepts a result: unknown subtask -> EC_ENOTFOUND "subtask_not_found"; not leased to this agent
 * (or another attempt) -> EC_ECONFLICT "lease_not_held", except that an identical repeat of the
 * accepted result is EC_OK (*duplicate = true). Completes the subtask (ok or not: an agent's
 * failure is an answer), releases dependants whose dependencies are all complete, records
 * task_complete, bumps the project's completion count. */
enum ec_status coord_queue_complete(struct coord_queue *q, struct ec_arena *arena,
                                    const struct coord_result *r, bool *duplicate,
                                    struct ec_err *err);

/* Returns expired leases to the queue (task_requeue events); subtasks out of attempts become
 * "failed" for good. Run by a sweeper every second or so; safe on several machines at once. */
enum ec_status coord_queue_expire(struct coord_queue *q, int64_t now_ms, int *requeued, int *failed,
                                  struct ec_err *err);

/* GET /tasks/:taskId: {taskId, status, prompt, language, snapshotRef, projectId, createdAtMs,
 * subtasks:[{subtaskId, index, state, attempt, maxAttempts, input, dependsOn, result|null,
 * attempts:[{attempt, agentId, claimedAtMs, endedAtMs, outcome}]}]}. EC_ENOTFOUND
 * "task_not_found". *out owned by the caller. */
enum ec_status coord_queue_task_json(struct coord_queue *q, const char *task_id, json_t **out,
                                     struct ec_err *err);

struct coord_queue_counts {
    int64_t queued; /* runnable or blocked, not leased */
    int64_t leased;
    int64_t completed;
    int64_t failed;
};
enum ec_status coord_queue_counts(struct coord_queue *q, struct coord_queue_counts *out,
                                  struct ec_err *err);

#endif
