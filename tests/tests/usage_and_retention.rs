//! Token usage and retention across the real processes: a turn's reported usage shows in
//! the API's views, in `centaur executions get` and on the dispatcher's
//! `centaur_tokens_total` (beside the time of each of the turn's steps); once the turn is past its window, the dispatcher's maintenance
//! loop prunes it and counts the rows.
#![allow(clippy::unwrap_used)]

use centaur_tests::binaries::binary;
use centaur_tests::{eventually, Stack, StackOptions};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// The value of the sample `name{labels}` in a Prometheus text (labels as rendered).
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<u64> {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

async fn dispatcher_metrics(stack: &Stack) -> anyhow::Result<String> {
    let url = format!("{}/metrics", stack.dispatcher_url(0));
    Ok(reqwest::get(&url).await?.error_for_status()?.text().await?)
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_is_shown_and_counted_and_old_turns_are_pruned() {
    let mut options = StackOptions::default();
    options
        .extra_env
        .insert("RETENTION_INTERVAL_S".into(), "1".into());
    let stack = Stack::start(options).await.unwrap();
    let client = stack.client();
    let pool = stack.database.pool().await.unwrap();

    let id = client.turn("usage-demo", "hello").await.unwrap();
    let done = client.wait_terminal(&id, WAIT).await.unwrap();
    assert_eq!(done["status"], "completed", "{done}\n{}", stack.logs());
    // The dispatcher timed each step of the turn, for operators to see where time goes
    // (the end's step is recorded just after its row is written).
    let steps = [
        "claim",
        "acquire_sandbox",
        "attach",
        "send_turn",
        "stream",
        "finish",
    ];
    eventually(WAIT, "each step of the turn to be timed", || async {
        let text = dispatcher_metrics(&stack).await?;
        let timed = steps.iter().all(|step| {
            let label = format!("step=\"{step}\"");
            sample(&text, "centaur_dispatcher_step_seconds_count", &[&label])
                .is_some_and(|calls| calls >= 1)
        });
        Ok(timed.then_some(()))
    })
    .await
    .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.logs()));
    assert_eq!(
        done["usage"],
        json!({"input_tokens": 0, "output_tokens": 0})
    );

    // The echo harness reports no usage: store two per-turn reports on the trail as the
    // dispatcher stores a harness's output.
    let reports: Vec<Value> = [(1000, 300), (200, 40)]
        .iter()
        .enumerate()
        .map(|(n, (input, output))| {
            json!({"execution_id": id, "seq": 100 + n, "type": "usage",
                   "input_tokens": input, "output_tokens": output})
        })
        .collect();
    centaur_store::events::append_batch(&pool, "usage-demo", &id, "harness_event", &reports)
        .await
        .unwrap();

    let execution = client.execution(&id).await.unwrap();
    assert_eq!(
        execution["usage"],
        json!({"input_tokens": 1200, "output_tokens": 340})
    );
    let (status, thread) = client.get("/agent/status?key=usage-demo").await.unwrap();
    assert_eq!(status, 200, "{thread}");
    assert_eq!(
        thread["usage"],
        json!({"input_tokens": 1200, "output_tokens": 340, "executions": 1})
    );
    let (status, per_harness) = client
        .get("/agent/usage?harness=echo&since=1h")
        .await
        .unwrap();
    assert_eq!(status, 200, "{per_harness}");
    assert_eq!(per_harness["total"]["input_tokens"], 1200);
    let (status, refused) = client.get("/agent/usage?since=soon").await.unwrap();
    assert_eq!(
        (status, &refused["code"]),
        (422, &json!("VALIDATION_ERROR"))
    );

    // The CLI shows it.
    let output = tokio::process::Command::new(binary("centaur"))
        .args(["executions", "get", &id])
        .env("CENTAUR_API_URL", &stack.api_url)
        .env_remove("CENTAUR_API_KEY")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains("usage      1200 input, 340 output tokens\n"),
        "{stdout}"
    );

    // The dispatcher counts it within a maintenance tick, once.
    eventually(
        WAIT,
        "centaur_tokens_total to count the reports",
        || async {
            let text = dispatcher_metrics(&stack).await?;
            let input = sample(
                &text,
                "centaur_tokens_total",
                &["harness=\"echo\"", "kind=\"input\""],
            );
            let output = sample(
                &text,
                "centaur_tokens_total",
                &["harness=\"echo\"", "kind=\"output\""],
            );
            Ok((input == Some(1200) && output == Some(340)).then_some(()))
        },
    )
    .await
    .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.logs()));

    // A month and more later (the clock moved by backdating the turn), on a released
    // thread: the next pruning pass removes the turn with its trail and counts the rows.
    let (status, released) = client
        .post("/agent/threads/usage-demo/release", &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{released}");
    sqlx::query(
        "UPDATE executions SET completed_at = now() - interval '31 days' WHERE execution_id = $1",
    )
    .bind(&id)
    .execute(&pool)
    .await
    .unwrap();
    eventually(WAIT, "the old turn to be pruned", || async {
        let (status, _) = client.get(&format!("/agent/executions/{id}")).await?;
        Ok((status == 404).then_some(()))
    })
    .await
    .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.logs()));
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM execution_events WHERE execution_id = $1)
              + (SELECT count(*) FROM messages WHERE delivered_execution_id = $1)",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(left, 0, "the trail and the messages went with the turn");
    // The pass counts its rows once its batch committed: the counter follows the 404.
    eventually(WAIT, "the pruned rows to be counted per table", || async {
        let text = dispatcher_metrics(&stack).await?;
        let counted = ["executions", "execution_events", "messages"]
            .iter()
            .all(|table| {
                let label = format!("table=\"{table}\"");
                sample(&text, "centaur_rows_pruned_total", &[&label]).is_some_and(|rows| rows >= 1)
            });
        Ok(counted.then_some(()))
    })
    .await
    .unwrap_or_else(|err| panic!("{err:#}\n{}", stack.logs()));
    stack.stop().await.unwrap();
}
