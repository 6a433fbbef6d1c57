-- The durable queue (DESIGN.md "Queue"): tasks and their subtasks, each claim a lease with an
-- attempt number (fencing token) and an expiry, the results, every attempt's history, and the
-- per-project completion counts the claim uses to share agents fairly between projects.
-- Timestamps are epoch milliseconds (bigint), ids text, as in the original (section 9).

CREATE TABLE tasks (
    task_id                text    PRIMARY KEY,
    prompt                 text    NOT NULL,
    language               text    NOT NULL,
    snapshot_ref           text    NOT NULL,
    submitter_account_id   text    NOT NULL,
    project_id             text    NOT NULL,
    tenant_id              text,            -- NULL: no tenant (never '')
    resource_class         text    NOT NULL,
    priority               integer NOT NULL CHECK (priority BETWEEN 0 AND 100),
    requested_model        text,
    decomposition_fallback boolean NOT NULL,
    n_subtasks             integer NOT NULL,
    has_dependencies       boolean NOT NULL,
    spec_sha256            text    NOT NULL, -- of the normalised submission: a resubmit must match
    created_at_ms          bigint  NOT NULL
);

-- state: blocked (waiting for depends_on) -> queued -> leased -> completed | failed; an expired
-- lease goes back to queued, or to failed once attempt = max_attempts. project_id, tenant_id,
-- priority and requested_model are copied from the task so that the claim indexes can hold them.
CREATE TABLE subtasks (
    subtask_id          text    PRIMARY KEY,
    task_id             text    NOT NULL REFERENCES tasks (task_id),
    subtask_index       integer NOT NULL,
    seq                 bigint  GENERATED ALWAYS AS IDENTITY, -- age: first in, first out
    kind                text    NOT NULL,
    language            text    NOT NULL,
    input               text    NOT NULL, -- with the dependency context once released
    timeout_ms          bigint  NOT NULL,
    project_id          text    NOT NULL,
    tenant_id           text,
    priority            integer NOT NULL,
    requested_model     text,
    state               text    NOT NULL
        CHECK (state IN ('blocked', 'queued', 'leased', 'completed', 'failed')),
    attempt             integer NOT NULL DEFAULT 0, -- of the current or last lease
    max_attempts        integer NOT NULL CHECK (max_attempts >= 1),
    depends_on          integer[] NOT NULL DEFAULT '{}', -- subtask_index values of this task
    deps_pending        integer NOT NULL DEFAULT 0,
    lease_agent_id      text,   -- the holder; kept after completion (it answered)
    lease_claimed_at_ms bigint,
    lease_expires_at_ms bigint, -- set exactly while leased
    lease_key           bytea,  -- envelope key; kept an hour after the answer for repeats
    fail_reason         text,   -- attempts_exhausted | dependency_failed
    enqueued_at_ms      bigint  NOT NULL,
    finished_at_ms      bigint,
    UNIQUE (task_id, subtask_index),
    CHECK ((state = 'leased') = (lease_expires_at_ms IS NOT NULL))
);

-- The claim (coord_queue_claim.c) walks the projects that have queued work (a loose index scan
-- on project_id), takes each one's best row (priority DESC, seq) and orders the projects by
-- completions; then it locks the chosen project's first row with FOR UPDATE SKIP LOCKED. Every
-- step is an index probe, so its cost depends on the number of projects, not on the number of
-- queued rows. Variants: agents without a sandbox never see tenant work, and an agent with an
-- active model first looks at the work that asked for that model. Partial indexes hold queued
-- rows only, so leased and finished rows cost them nothing.
CREATE INDEX subtasks_claim ON subtasks (project_id, priority DESC, seq)
    WHERE state = 'queued';
CREATE INDEX subtasks_claim_open ON subtasks (project_id, priority DESC, seq)
    WHERE state = 'queued' AND tenant_id IS NULL;
CREATE INDEX subtasks_claim_model ON subtasks (requested_model, project_id, priority DESC, seq)
    WHERE state = 'queued' AND requested_model IS NOT NULL;
CREATE INDEX subtasks_claim_model_open ON subtasks (requested_model, project_id, priority DESC, seq)
    WHERE state = 'queued' AND requested_model IS NOT NULL AND tenant_id IS NULL;
-- The expiry sweep, heartbeat renewal, and the counts of the small states.
CREATE INDEX subtasks_lease_expiry ON subtasks (lease_expires_at_ms) WHERE state = 'leased';
CREATE INDEX subtasks_lease_agent ON subtasks (lease_agent_id) WHERE state = 'leased';
CREATE INDEX subtasks_blocked ON subtasks (task_id) WHERE state = 'blocked';
CREATE INDEX subtasks_failed ON subtasks (task_id) WHERE state = 'failed';
-- Envelope keys of answered subtasks are wiped an hour after the answer.
CREATE INDEX subtasks_key_retention ON subtasks (finished_at_ms)
    WHERE lease_key IS NOT NULL AND state <> 'leased';

-- A queue table churns: vacuum it early so that the partial indexes stay free of dead entries.
ALTER TABLE subtasks SET (autovacuum_vacuum_scale_factor = 0.02,
                          autovacuum_analyze_scale_factor = 0.02);

-- One accepted answer per subtask (ok = false is an answer too: the agent's failure is terminal).
CREATE TABLE results (
    subtask_id       text    PRIMARY KEY REFERENCES subtasks (subtask_id),
    task_id          text    NOT NULL,
    agent_id         text    NOT NULL,
    attempt          integer NOT NULL,
    ok               boolean NOT NULL,
    output           text    NOT NULL,
    error            text,
    duration_ms      bigint  NOT NULL,
    report_nonce     text,
    report_signature text,
    received_at_ms   bigint  NOT NULL
);

-- Every lease ever granted: outcome leased (open), completed or expired.
CREATE TABLE subtask_attempts (
    subtask_id    text    NOT NULL REFERENCES subtasks (subtask_id),
    attempt       integer NOT NULL,
    agent_id      text    NOT NULL,
    claimed_at_ms bigint  NOT NULL,
    ended_at_ms   bigint,
    outcome       text    NOT NULL DEFAULT 'leased'
        CHECK (outcome IN ('leased', 'completed', 'expired')),
    PRIMARY KEY (subtask_id, attempt)
);

-- Subtasks ever enqueued, over shard rows like project_completions: /status derives "queued"
-- as enqueued - leased - completed - failed without counting a backlog row by row. Whatever
-- deletes subtasks (an archiver) must subtract them here and in project_completions.
CREATE TABLE queue_totals (
    shard    smallint PRIMARY KEY,
    enqueued bigint   NOT NULL
);

-- Completions per project, spread over a few shard rows so that concurrent completions in one
-- project seldom wait for each other's row lock; a project's count is the sum of its shards.
CREATE TABLE project_completions (
    project_id  text     NOT NULL,
    shard       smallint NOT NULL,
    completions bigint   NOT NULL,
    PRIMARY KEY (project_id, shard)
);
