-- Event inserts no longer NOTIFY from their trigger: a NOTIFY inside a writing transaction
-- holds Postgres's notification lock through that transaction's WAL flush, so every event
-- writer committed one after another. Writers now notify `centaur_events` after their
-- commit, in a transaction of their own (`centaur_store::wakeups::announce`).
CREATE OR REPLACE FUNCTION execution_events_assign_thread_seq() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO thread_event_counters AS c (thread_key, last_seq) VALUES (NEW.thread_key, 1)
    ON CONFLICT (thread_key) DO UPDATE SET last_seq = c.last_seq + 1
    RETURNING last_seq INTO NEW.thread_seq;
    RETURN NEW;
END
$$;
