-- What sandboxes last reported about each harness's CLI (in their turn.started event):
-- whether the CLI is installed in the sandbox image and its version. /health/tools reads it.
CREATE TABLE harness_cli_reports (
    harness      text PRIMARY KEY,
    cli_present  boolean NOT NULL,
    cli_version  text,
    reported_at  timestamptz NOT NULL DEFAULT now()
);
