-- Live progress of a Slack turn (slack.md "Live progress"): the thread's status message is
-- durable on the outbox row, so whichever dispatcher delivers the answer replaces that
-- message instead of posting a second one, also after a takeover. Progress updates hold a
-- short lease of their own; the final delivery waits for it, so a late progress update can
-- never overwrite the answer.
ALTER TABLE delivery_outbox
    ADD COLUMN status_ts text,
    ADD COLUMN status_posting_at timestamptz,
    ADD COLUMN progress_text text,
    ADD COLUMN progress_owner text,
    ADD COLUMN progress_lease_expires_at timestamptz,
    ADD COLUMN progress_next_at timestamptz;

CREATE INDEX delivery_outbox_running ON delivery_outbox (created_at) WHERE state = 'awaiting_terminal';

-- A refused Slack turn's short reply (failure loop, repo not allowed, …): no execution
-- exists to carry it, so it waits here until the dispatcher's deliverer posts it. One per
-- Slack message (notice_id = the message id), so Slack's retries make no second notice.
CREATE TABLE slack_notices (
    notice_id        text PRIMARY KEY,
    thread_key       text NOT NULL,
    delivery         jsonb NOT NULL,
    text             text NOT NULL CHECK (length(btrim(text)) > 0),
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending','sending','delivered','dead_letter')),
    attempt_count    integer NOT NULL DEFAULT 0,
    lease_owner      text,
    lease_expires_at timestamptz,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    posted_ts        text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    CONSTRAINT slack_notices_sending_has_lease CHECK (
        state <> 'sending' OR (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
);
CREATE INDEX slack_notices_due ON slack_notices (next_attempt_at) WHERE state IN ('pending','sending');
