-- A turn whose harness failed to start (before any model output) is retried once in a fresh
-- sandbox. The decision is recorded as a `start_retry` event (first failure, the fresh
-- sandbox's id) so a dispatcher that crashes and reclaims never retries twice, and the
-- sandbox that failed ends its session as `failed`.
ALTER TABLE execution_events DROP CONSTRAINT execution_events_event_kind_check;
ALTER TABLE execution_events ADD CONSTRAINT execution_events_event_kind_check CHECK (event_kind IN
    ('message','execution_state','execution_started','harness_event','execution_summary',
     'final_delivery_ready','final_delivery_delivered','final_delivery_failed','start_retry'));

ALTER TABLE sandbox_sessions DROP CONSTRAINT sandbox_sessions_state_check;
ALTER TABLE sandbox_sessions ADD CONSTRAINT sandbox_sessions_state_check
    CHECK (state IN ('starting','live','stopping','stopped','lost','failed'));
