-- The receipt of the queue message that woke the execution's latest claim. A dispatcher
-- that reclaims the execution after another one died adopts it: it keeps the message
-- invisible while the turn runs and deletes it when the turn ends, so the thread's next
-- turn (FIFO group on SQS, per-thread order on the Postgres queue) is not held back until
-- the dead dispatcher's message times out.
ALTER TABLE executions ADD COLUMN queue_receipt text;
