-- Centaur control plane: the rows are the truth; the queue is only a wake-up signal.

CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    key_prefix  text NOT NULL,
    key_hash    text NOT NULL UNIQUE,
    scopes      text[] NOT NULL,
    created_by  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CONSTRAINT api_keys_hash_is_sha256_hex CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    CONSTRAINT api_keys_scopes_known CHECK (scopes <@ ARRAY['*','admin','agent','agent:execute','agent:status','agent:stop']::text[])
);

CREATE TABLE runtime_assignments (
    thread_key             text NOT NULL,
    assignment_generation  bigint NOT NULL CHECK (assignment_generation > 0),
    harness                text NOT NULL CHECK (harness IN ('codex','amp','claude-code','pi-mono','echo')),
    prompt_ref             text NOT NULL,
    state                  text NOT NULL CHECK (state IN ('active','released')),
    runtime_id             text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    released_at            timestamptz,
    PRIMARY KEY (thread_key, assignment_generation),
    CONSTRAINT runtime_assignments_released_has_time CHECK ((state = 'released') = (released_at IS NOT NULL))
);
CREATE UNIQUE INDEX runtime_assignments_one_active_per_thread
    ON runtime_assignments (thread_key) WHERE state = 'active';

-- Idempotency records: one table per request kind, keyed per thread.
CREATE TABLE spawn_requests (
    thread_key     text NOT NULL,
    spawn_id       text NOT NULL,
    request_hash   text NOT NULL,
    response_json  jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (thread_key, spawn_id)
);
CREATE TABLE message_requests (
    thread_key     text NOT NULL,
    message_id     text NOT NULL,
    request_hash   text NOT NULL,
    response_json  jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (thread_key, message_id)
);
CREATE TABLE release_requests (
    thread_key     text NOT NULL,
    release_id     text NOT NULL,
    request_hash   text NOT NULL,
    response_json  jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (thread_key, release_id)
);

CREATE TABLE messages (
    id                      text NOT NULL,
    thread_key              text NOT NULL,
    assignment_generation   bigint NOT NULL,
    role                    text NOT NULL CHECK (role IN ('user','assistant','system')),
    parts                   jsonb NOT NULL CHECK (jsonb_typeof(parts) = 'array' AND jsonb_array_length(parts) > 0),
    user_id                 text,
    metadata                jsonb NOT NULL DEFAULT '{}'::jsonb,
    delivered_execution_id  text,
    created_at              timestamptz NOT NULL DEFAULT now(),
    seq                     bigserial NOT NULL,
    PRIMARY KEY (thread_key, id)
);
CREATE INDEX messages_undelivered ON messages (thread_key, seq) WHERE delivered_execution_id IS NULL;

CREATE TABLE executions (
    execution_id           text PRIMARY KEY CHECK (execution_id ~ '^exe_[0-9a-f]{16}$'),
    seq                    bigserial NOT NULL UNIQUE,
    thread_key             text NOT NULL,
    assignment_generation  bigint NOT NULL,
    harness                text NOT NULL,
    execute_id             text NOT NULL,
    request_hash           text NOT NULL,
    status                 text NOT NULL CHECK (status IN
                             ('queued','running','retry_wait','cancel_requested','completed','failed_permanent','cancelled')),
    delivery               jsonb NOT NULL,
    metadata               jsonb NOT NULL DEFAULT '{}'::jsonb,
    worker_id              text,
    lease_expires_at       timestamptz,
    attempt                integer NOT NULL DEFAULT 0,
    created_at             timestamptz NOT NULL DEFAULT now(),
    claimed_at             timestamptz,
    started_at             timestamptz,
    turn_sent_at           timestamptz,
    last_progress_at       timestamptz,
    silence_deadline_at    timestamptz,
    hard_deadline_at       timestamptz,
    completed_at           timestamptz,
    terminal_reason        text,
    result_text            text,
    error_text             text,
    agent_thread_id        text,
    sandbox_id             text,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (thread_key, execute_id),
    CONSTRAINT executions_terminal_has_completed_at CHECK (
        (status IN ('completed','failed_permanent','cancelled')) = (completed_at IS NOT NULL)),
    CONSTRAINT executions_terminal_has_reason CHECK (
        status NOT IN ('completed','failed_permanent','cancelled') OR terminal_reason IS NOT NULL),
    CONSTRAINT executions_failure_has_error_text CHECK (
        status <> 'failed_permanent' OR error_text IS NOT NULL),
    CONSTRAINT executions_running_has_lease CHECK (
        status NOT IN ('running','cancel_requested') OR (worker_id IS NOT NULL AND lease_expires_at IS NOT NULL))
);
CREATE INDEX executions_thread_newest ON executions (thread_key, seq DESC);
CREATE INDEX executions_active ON executions (status, lease_expires_at)
    WHERE status IN ('queued','running','retry_wait','cancel_requested');
CREATE INDEX executions_recent_failures ON executions (thread_key, completed_at)
    WHERE status = 'failed_permanent';

CREATE TABLE execution_events (
    event_id      bigserial PRIMARY KEY,
    thread_key    text NOT NULL,
    execution_id  text REFERENCES executions (execution_id) ON DELETE CASCADE,
    event_kind    text NOT NULL CHECK (event_kind IN
                    ('message','execution_state','execution_started','harness_event','execution_summary',
                     'final_delivery_ready','final_delivery_delivered','final_delivery_failed')),
    event_json    jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX execution_events_thread ON execution_events (thread_key, event_id);
CREATE INDEX execution_events_execution ON execution_events (execution_id, event_id);

CREATE TABLE delivery_outbox (
    execution_id      text PRIMARY KEY REFERENCES executions (execution_id) ON DELETE CASCADE,
    thread_key        text NOT NULL,
    delivery          jsonb NOT NULL,
    state             text NOT NULL CHECK (state IN ('awaiting_terminal','pending','sending','delivered','dead_letter')),
    payload           jsonb,
    attempt_count     integer NOT NULL DEFAULT 0,
    delivered_chunks  integer NOT NULL DEFAULT 0,
    lease_owner       text,
    lease_expires_at  timestamptz,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    last_error        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    delivered_at      timestamptz,
    CONSTRAINT delivery_outbox_delivered_has_time CHECK ((state = 'delivered') = (delivered_at IS NOT NULL)),
    CONSTRAINT delivery_outbox_sending_has_lease CHECK (
        state <> 'sending' OR (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
);
CREATE INDEX delivery_outbox_due ON delivery_outbox (next_attempt_at) WHERE state IN ('pending','sending');

CREATE TABLE sandbox_sessions (
    thread_key              text PRIMARY KEY,
    sandbox_id              text NOT NULL,
    harness                 text NOT NULL,
    state                   text NOT NULL CHECK (state IN ('starting','live','stopping','stopped','lost')),
    agent_thread_id         text,
    last_delivered_message  text,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    last_used_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sandbox_sessions_sandbox ON sandbox_sessions (sandbox_id);

CREATE TABLE warm_sandboxes (
    sandbox_id         text PRIMARY KEY,
    harness            text NOT NULL,
    state              text NOT NULL CHECK (state IN ('ready','claimed','failed')),
    claimed_by_thread  text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    claimed_at         timestamptz,
    CONSTRAINT warm_sandboxes_claimed_has_thread CHECK ((state = 'claimed') = (claimed_by_thread IS NOT NULL))
);
CREATE INDEX warm_sandboxes_ready ON warm_sandboxes (harness, created_at) WHERE state = 'ready';

CREATE TABLE slack_events (
    dedupe_key   text PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX slack_events_received ON slack_events (received_at);

-- Postgres implementation of the queue (QUEUE_BACKEND=postgres). One message per execution:
-- a re-send while a message is present only makes it visible sooner.
CREATE TABLE queue_messages (
    execution_id   text PRIMARY KEY,
    thread_key     text NOT NULL,
    visible_at     timestamptz NOT NULL DEFAULT now(),
    receive_count  integer NOT NULL DEFAULT 0,
    receipt        uuid,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX queue_messages_visible ON queue_messages (visible_at);
