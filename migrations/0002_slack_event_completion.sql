-- A Slack dedupe key is "in flight" until the turn it stands for is handed to the API.
-- An in-flight key older than the takeover window belongs to a webhook that died mid-way:
-- Slack's next retry may take it over instead of being dropped as a duplicate.
ALTER TABLE slack_events ADD COLUMN completed_at timestamptz;
