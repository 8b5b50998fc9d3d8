-- Event order a follower can trust: every event gets a per-thread sequence number
-- (`thread_seq`), gap-free and assigned under the thread's counter row lock, which the
-- inserting transaction holds until it commits. A later number therefore never becomes
-- visible before an earlier one, so `GET /agent/threads/{tk}/events?after_event_id=N`
-- (N is a thread_seq) can never skip an event that committed late. (The bigserial
-- `event_id` is assigned before commit, out of commit order, and stays an internal key.)
-- Each insert also notifies `centaur_events` with the thread key, delivered at commit:
-- event streams are pushed, not polled.
CREATE TABLE thread_event_counters (
    thread_key  text PRIMARY KEY,
    last_seq    bigint NOT NULL
);

ALTER TABLE execution_events ADD COLUMN thread_seq bigint;
UPDATE execution_events e SET thread_seq = numbered.n
FROM (SELECT event_id, row_number() OVER (PARTITION BY thread_key ORDER BY event_id) AS n
      FROM execution_events) numbered
WHERE e.event_id = numbered.event_id;
INSERT INTO thread_event_counters (thread_key, last_seq)
SELECT thread_key, max(thread_seq) FROM execution_events GROUP BY thread_key;
ALTER TABLE execution_events ALTER COLUMN thread_seq SET NOT NULL;
DROP INDEX execution_events_thread;
CREATE UNIQUE INDEX execution_events_thread_seq ON execution_events (thread_key, thread_seq);

CREATE FUNCTION execution_events_assign_thread_seq() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO thread_event_counters AS c (thread_key, last_seq) VALUES (NEW.thread_key, 1)
    ON CONFLICT (thread_key) DO UPDATE SET last_seq = c.last_seq + 1
    RETURNING last_seq INTO NEW.thread_seq;
    PERFORM pg_notify('centaur_events', NEW.thread_key);
    RETURN NEW;
END
$$;

CREATE TRIGGER execution_events_thread_seq BEFORE INSERT ON execution_events
    FOR EACH ROW EXECUTE FUNCTION execution_events_assign_thread_seq();
