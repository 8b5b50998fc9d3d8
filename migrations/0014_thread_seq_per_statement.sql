-- The event trail's one INSERT (centaur_store::events::insert_cte) numbers its rows itself:
-- one bump of the thread's counter per statement, instead of a trigger call and a counter
-- upsert per row (a turn's end writes four to seven events). The counter row is locked from
-- that bump to the commit, as it was by the trigger, so a thread's events still commit in
-- `thread_seq` order. The trigger stays for a row inserted without a number (an older
-- binary during a rolling upgrade, an operator's INSERT).
DROP TRIGGER execution_events_thread_seq ON execution_events;
CREATE TRIGGER execution_events_thread_seq BEFORE INSERT ON execution_events
    FOR EACH ROW WHEN (NEW.thread_seq IS NULL)
    EXECUTE FUNCTION execution_events_assign_thread_seq();
