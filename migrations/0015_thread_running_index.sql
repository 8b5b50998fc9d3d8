-- A thread's running executions (at most one). A claim asks whether its thread has one;
-- read through `executions_unfinished`, that question visited every queued turn of the
-- thread, so a claim cost more the deeper the thread's backlog.
CREATE INDEX executions_running ON executions (thread_key)
    WHERE status IN ('running','cancel_requested');
