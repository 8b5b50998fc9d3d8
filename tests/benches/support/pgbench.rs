//! The SQL floor of `POST /agent/execute`: pgbench running the statements the one-call
//! execute ran before the round-trip work of issue 11 (a new thread each time: lock,
//! assignment, failure-loop count, message and its event, execution, binding, `queued`
//! event, commit; then the queue row and its NOTIFY in two more autocommit statements).
//! Kept as it was, so every run compares the API with the same fixed floor on the
//! machine as it is at that moment.

use std::process::Command;

const TODAYS_EXECUTE: &str = r#"\set n random(1, 4611686018427387903)
BEGIN;
SELECT pg_advisory_xact_lock(hashtext('pgb-' || :n));
SELECT thread_key, assignment_generation, harness, prompt_ref, repo FROM runtime_assignments WHERE thread_key = 'pgb-' || :n AND state = 'active';
INSERT INTO runtime_assignments (thread_key, assignment_generation, harness, prompt_ref, state, repo, agents_md_override) SELECT 'pgb-' || :n, COALESCE(max(assignment_generation), 0) + 1, 'echo', 'echo', 'active', NULL, NULL FROM runtime_assignments WHERE thread_key = 'pgb-' || :n RETURNING thread_key, assignment_generation, harness, prompt_ref, repo;
SELECT count(*) FROM executions WHERE thread_key = 'pgb-' || :n AND status = 'failed_permanent' AND completed_at > now() - make_interval(secs => 300);
INSERT INTO messages (id, thread_key, assignment_generation, role, parts, user_id, metadata) VALUES ('msg_' || :n, 'pgb-' || :n, 1, 'user', '[{"type":"text","text":"load"}]', NULL, '{}');
WITH appended AS (INSERT INTO execution_events (thread_key, execution_id, event_kind, event_json) SELECT thread_key, execution_id, event_kind, event_json FROM (SELECT 'pgb-' || :n AS thread_key, NULL::text AS execution_id, 'message' AS event_kind, '{"role":"user"}'::jsonb AS event_json, 1 AS ord) AS new_events ORDER BY ord RETURNING event_id) SELECT event_id FROM appended;
INSERT INTO executions (execution_id, thread_key, assignment_generation, harness, execute_id, request_hash, status, delivery, metadata) VALUES ('exe_' || lpad(to_hex(:n::bigint), 16, '0'), 'pgb-' || :n, 1, 'echo', 'exe_' || lpad(to_hex(:n::bigint), 16, '0'), 'h', 'queued', '{"platform":"dev"}', '{}');
UPDATE messages SET delivered_execution_id = 'exe_' || lpad(to_hex(:n::bigint), 16, '0') WHERE thread_key = 'pgb-' || :n AND delivered_execution_id IS NULL;
WITH appended AS (INSERT INTO execution_events (thread_key, execution_id, event_kind, event_json) SELECT thread_key, execution_id, event_kind, event_json FROM (SELECT 'pgb-' || :n AS thread_key, 'exe_' || lpad(to_hex(:n::bigint), 16, '0') AS execution_id, 'execution_state' AS event_kind, '{"status":"queued"}'::jsonb AS event_json, 1 AS ord) AS new_events ORDER BY ord RETURNING event_id) SELECT event_id FROM appended;
COMMIT;
INSERT INTO queue_messages (execution_id, thread_key) VALUES ('exe_' || lpad(to_hex(:n::bigint), 16, '0'), 'pgb-' || :n) ON CONFLICT (execution_id) DO UPDATE SET visible_at = now() WHERE queue_messages.receipt IS NULL;
SELECT pg_notify('centaur_queue', '');
"#;

/// What pgbench reported.
pub struct Floor {
    pub tps: f64,
    pub latency_ms: f64,
}

/// Runs the floor script on `database_url` with `clients` for `seconds`.
pub fn run(database_url: &str, clients: usize, seconds: u64) -> Result<Floor, String> {
    let script =
        std::env::temp_dir().join(format!("centaur-execute-floor-{}.sql", std::process::id()));
    std::fs::write(&script, TODAYS_EXECUTE).map_err(|err| err.to_string())?;
    let output = Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-j", "2"])
        .arg("-c")
        .arg(clients.to_string())
        .arg("-T")
        .arg(seconds.to_string())
        .arg("-f")
        .arg(&script)
        .arg(database_url)
        .output()
        .map_err(|err| format!("cannot run pgbench: {err}"))?;
    let _ = std::fs::remove_file(&script);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "pgbench failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let number_after = |prefix: &str| {
        stdout
            .lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse::<f64>().ok())
    };
    Ok(Floor {
        tps: number_after("tps = ").ok_or_else(|| format!("no tps in {stdout}"))?,
        latency_ms: number_after("latency average = ").unwrap_or(f64::NAN),
    })
}
