-- Every index of a table is written on every insert, and on every update that changes a
-- column it reads. A turn appends about eight events and moves its execution through two
-- status changes, so each index here cost every turn eight or two entries.
--
-- An event is known by its thread and its place in the thread: the events stream's SSE
-- `id` and every follower's cursor is `thread_seq`, and nothing looks an event up by
-- `event_id` alone. `(thread_key, thread_seq)` becomes the primary key and the index on
-- `event_id` goes (the bigserial stays: it orders one execution's events).
ALTER TABLE execution_events DROP CONSTRAINT execution_events_pkey;
ALTER TABLE execution_events
    ADD CONSTRAINT execution_events_pkey PRIMARY KEY USING INDEX execution_events_thread_seq;

-- `executions_active` indexed every unfinished execution by status and lease; it served the
-- expired-lease scan and the sweep of waiting turns. The running ones are already in
-- `executions_running` (a few rows: one per running turn), the waiting ones in
-- `executions_unfinished`; each claim paid for a third index entry of the same row.
DROP INDEX executions_active;

-- `seq` is drawn from its sequence and read only within a thread (`executions_thread_newest`,
-- `executions_unfinished`) or over the few unfinished rows; its UNIQUE index was a third
-- full index written by every insert, claim and finish.
ALTER TABLE executions DROP CONSTRAINT executions_seq_key;
