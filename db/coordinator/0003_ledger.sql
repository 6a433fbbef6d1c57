-- The ordering ledger (original-system.md 5.4). Events are recorded into ledger_pending inside
-- the transaction of the state change they describe; the chainer moves them, in batches and under
-- an advisory lock, into ledger_records, assigning sequence and prev_hash, hashing and signing.

CREATE TABLE ledger_pending (
    id           bigserial PRIMARY KEY,
    event_type   text   NOT NULL,
    task_id      text,
    subtask_id   text,
    actor_id     text   NOT NULL,
    payload_json text,
    issued_at_ms bigint NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- One row per chained record, in the QueueEventRecord shape. hash is sha256 hex of the record's
-- canonical JSON; signature is base64 Ed25519 over the hash text by coordinator_id's key.
CREATE TABLE ledger_records (
    sequence          bigint PRIMARY KEY CHECK (sequence >= 1),
    id                text   NOT NULL UNIQUE,
    event_type        text   NOT NULL,
    task_id           text,
    subtask_id        text,
    actor_id          text   NOT NULL,
    issued_at_ms      bigint NOT NULL,
    prev_hash         text   NOT NULL,
    coordinator_id    text,
    checkpoint_height bigint,
    checkpoint_hash   text,
    payload_json      text,
    hash              text   NOT NULL,
    signature         text   NOT NULL,
    chained_at        timestamptz NOT NULL DEFAULT now()
);
