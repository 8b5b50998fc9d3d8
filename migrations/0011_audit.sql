-- Audit (operator.md "Audit"): who made each state-changing request. A row is written by
-- the statement (or in the transaction) that makes the change it records, so a change and
-- its audit row are durable together or not at all. Kept `RETENTION_AUDIT_DAYS` (90).
CREATE TABLE audit_log (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    -- api_key: principal_id is the key's id, principal_name its name; local_operator:
    -- `local`; sandbox: the sandbox id, named by the token's thread; slack_user:
    -- `<team_id>:<user_id>`.
    principal_kind  text NOT NULL
        CHECK (principal_kind IN ('api_key', 'local_operator', 'sandbox', 'slack_user')),
    principal_id    text NOT NULL,
    principal_name  text NOT NULL,
    action          text NOT NULL
        CHECK (action IN ('spawn', 'message', 'execute', 'cancel', 'release',
                          'key_create', 'key_revoke')),
    thread_key      text,
    execution_id    text,
    -- The key a key_create / key_revoke changed.
    key_id          uuid,
    -- The client's address as the server saw it (socket peer, or Lambda's source IP).
    peer            text
);
-- Newest first (`id` is the paging cursor), alone or for one principal (by id or name);
-- `at` for `since` and for retention.
CREATE INDEX audit_log_principal_id ON audit_log (principal_id, id DESC);
CREATE INDEX audit_log_principal_name ON audit_log (principal_name, id DESC);
CREATE INDEX audit_log_at ON audit_log (at);
