-- A thread's unfinished executions, in order. A claim asks whether an older one is still
-- unfinished, a finish which one waits next; both used to walk the thread's whole history
-- (and the claim every older execution of every thread), so their cost grew with every
-- turn ever run. Terminal rows, the vast majority, are not in this index.
CREATE INDEX executions_unfinished ON executions (thread_key, seq)
    WHERE status NOT IN ('completed','failed_permanent','cancelled');

-- `queue_messages_fifo` (created_at, execution_id) serves everything this one did (the
-- retention's `created_at <` scan); every enqueue paid for both.
DROP INDEX queue_messages_created;
