-- Registered agents (POST /register) and their diagnostics (POST /agent/diagnostics).
-- Liveness (last_seen_ms, the active model, power telemetry) is kept in the coordinator's memory
-- and written here in batches every second or so; a heartbeat never waits for this table.

CREATE TABLE agents (
    agent_id                text PRIMARY KEY,
    device_id               text,
    os                      text    NOT NULL,
    version                 text    NOT NULL,
    mode                    text    NOT NULL CHECK (mode IN ('swarm-only', 'ide-enabled')),
    local_model_provider    text    NOT NULL,
    client_type             text    NOT NULL,
    max_concurrent_tasks    integer NOT NULL CHECK (max_concurrent_tasks BETWEEN 1 AND 64),
    sandbox_mode            text    NOT NULL CHECK (sandbox_mode IN ('none', 'docker', 'vm')),
    -- Ed25519 SubjectPublicKeyInfo PEM: once set, the agent's requests must be signed with it.
    public_key_pem          text,
    -- base64 of the raw 32-byte X25519 key: work for this agent is sealed to it.
    x25519_public_key       text,
    owner_email             text,
    enrollment_reason       text    NOT NULL,
    -- Set when the portal later refuses the node (unapproved, unverified, no longer enrolled):
    -- its requests are refused with node_not_activated until it is allowed again.
    revoked_reason          text,
    source_ip               text,
    power_telemetry         text,
    active_model            text,
    active_model_param_size text,
    model_swap_in_progress  boolean NOT NULL DEFAULT false,
    registered_at_ms        bigint  NOT NULL,
    last_seen_ms            bigint  NOT NULL
);

CREATE INDEX agents_last_seen ON agents (last_seen_ms DESC);

CREATE TABLE agent_diagnostics (
    id             bigserial PRIMARY KEY,
    agent_id       text   NOT NULL REFERENCES agents (agent_id) ON DELETE CASCADE,
    event_at_ms    bigint NOT NULL,
    message        text   NOT NULL,
    source         text,
    runtime_state  text,
    model_state    text,
    received_at_ms bigint NOT NULL
);

CREATE INDEX agent_diagnostics_agent ON agent_diagnostics (agent_id, id DESC);
