-- The Postgres queue's fetch walks the queue in FIFO order and stops after the rows it
-- hands out: with 20,000 messages queued it reads about as many rows as with 20 (before,
-- it sorted every visible message on every fetch). A message is skipped while another
-- message of its thread is in flight, found through the in-flight index; delete, extend
-- and release find their message by receipt instead of scanning the table.
CREATE INDEX queue_messages_fifo ON queue_messages (created_at, execution_id);
CREATE INDEX queue_messages_in_flight ON queue_messages (thread_key) WHERE receipt IS NOT NULL;
CREATE UNIQUE INDEX queue_messages_receipt ON queue_messages (receipt) WHERE receipt IS NOT NULL;
-- Nothing orders or filters by visibility alone any more.
DROP INDEX queue_messages_visible;
