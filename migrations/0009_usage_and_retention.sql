-- Usage (operator.md "Usage"): the tokens the harnesses report in `usage` harness events
-- (one per turn, not cumulative) summed per execution. A trigger keeps the sum in the
-- transaction that stores the event, whichever statement stores it, so the sum can never
-- disagree with the trail. It lives in a 1:1 side table rather than on the executions row:
-- the events of a turn are inserted under the thread's event-counter lock, and updating
-- the executions row from there would take that row's lock after the counter's — the
-- opposite order to a cancel (executions row, then its event) — and could deadlock.
-- `metered_*` is how much of the sum a dispatcher has already added to its
-- `centaur_tokens_total` counter (each token is counted once across replicas).
CREATE TABLE execution_usage (
    execution_id           text PRIMARY KEY REFERENCES executions (execution_id) ON DELETE CASCADE,
    thread_key             text NOT NULL,
    harness                text NOT NULL,
    input_tokens           bigint NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens          bigint NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    usage_events           integer NOT NULL DEFAULT 0,
    metered_input_tokens   bigint NOT NULL DEFAULT 0,
    metered_output_tokens  bigint NOT NULL DEFAULT 0,
    first_reported_at      timestamptz NOT NULL DEFAULT now(),
    last_reported_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX execution_usage_thread ON execution_usage (thread_key);
CREATE INDEX execution_usage_harness ON execution_usage (harness, last_reported_at);
CREATE INDEX execution_usage_unmetered ON execution_usage (last_reported_at)
    WHERE input_tokens <> metered_input_tokens OR output_tokens <> metered_output_tokens;

-- A token count the sandbox wrote: a JSON integer of at most 15 digits, else 0 (a
-- malformed count must never make the event — and with it the turn's output — unstorable).
CREATE FUNCTION usage_token_count(value jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(value) = 'number' AND value::text ~ '^[0-9]{1,15}$'
                THEN value::text::bigint ELSE 0 END
$$;

CREATE FUNCTION execution_events_sum_usage() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO execution_usage AS u
        (execution_id, thread_key, harness, input_tokens, output_tokens, usage_events)
    SELECT NEW.execution_id, NEW.thread_key, e.harness,
           usage_token_count(NEW.event_json->'input_tokens'),
           usage_token_count(NEW.event_json->'output_tokens'), 1
    FROM executions e WHERE e.execution_id = NEW.execution_id
    ON CONFLICT (execution_id) DO UPDATE SET
        input_tokens = u.input_tokens + EXCLUDED.input_tokens,
        output_tokens = u.output_tokens + EXCLUDED.output_tokens,
        usage_events = u.usage_events + 1,
        last_reported_at = now();
    RETURN NULL;
END
$$;

CREATE TRIGGER execution_events_usage AFTER INSERT ON execution_events
    FOR EACH ROW
    WHEN (NEW.event_kind = 'harness_event' AND NEW.execution_id IS NOT NULL
          AND NEW.event_json->>'type' = 'usage')
    EXECUTE FUNCTION execution_events_sum_usage();

-- The usage already on the trail; it happened before the counter existed, so it counts as
-- metered (the counter starts at this deployment).
INSERT INTO execution_usage (execution_id, thread_key, harness, input_tokens, output_tokens,
                             usage_events, metered_input_tokens, metered_output_tokens,
                             first_reported_at, last_reported_at)
SELECT ev.execution_id, e.thread_key, e.harness,
       sum(usage_token_count(ev.event_json->'input_tokens')),
       sum(usage_token_count(ev.event_json->'output_tokens')), count(*),
       sum(usage_token_count(ev.event_json->'input_tokens')),
       sum(usage_token_count(ev.event_json->'output_tokens')),
       min(ev.created_at), max(ev.created_at)
FROM execution_events ev JOIN executions e ON e.execution_id = ev.execution_id
WHERE ev.event_kind = 'harness_event' AND ev.event_json->>'type' = 'usage'
GROUP BY ev.execution_id, e.thread_key, e.harness;

-- Retention (operator.md "Retention"): the dispatcher prunes in small batches; these
-- indexes find what is due without scanning the tables.
CREATE INDEX executions_terminal_completed ON executions (completed_at)
    WHERE status IN ('completed','failed_permanent','cancelled');
CREATE INDEX messages_delivered_execution ON messages (delivered_execution_id)
    WHERE delivered_execution_id IS NOT NULL;
CREATE INDEX execution_events_threadless ON execution_events (created_at)
    WHERE execution_id IS NULL;
CREATE INDEX delivery_outbox_delivered ON delivery_outbox (delivered_at)
    WHERE state = 'delivered';
CREATE INDEX slack_notices_delivered ON slack_notices (delivered_at)
    WHERE state = 'delivered';
CREATE INDEX slack_notices_dead_letter ON slack_notices (created_at)
    WHERE state = 'dead_letter';
CREATE INDEX spawn_requests_created ON spawn_requests (created_at);
CREATE INDEX message_requests_created ON message_requests (created_at);
CREATE INDEX release_requests_created ON release_requests (created_at);
CREATE INDEX queue_messages_created ON queue_messages (created_at);
