//! The web console in a real browser: `tests/console/console.mjs` drives Debian's Chromium
//! with playwright-core against a live stack (`api` + `dispatcher` + local sandboxes running
//! the `echo` harness): sign-in, a turn whose events appear live, the cancel of another,
//! threads, health, pool, usage, API keys and the audit log (the turn's entry under the
//! signed-in key); screenshots land in `tests/console/artifacts`.
//! Needs `/usr/bin/chromium` (`apt-get install -y chromium`) and
//! `npm install --prefix tests/console`, which `scripts/test.sh` does.
#![allow(clippy::unwrap_used)]

use centaur_tests::{Stack, StackOptions};
use serde_json::json;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// How long the whole browser session may take (it runs two turns of a few seconds each).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(240);
const CHROMIUM: &str = "/usr/bin/chromium";

#[tokio::test(flavor = "multi_thread")]
async fn the_console_runs_a_turn_live_and_cancels_another_in_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: `apt-get install -y chromium` (scripts/test.sh does)"
    );
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: `npm install --prefix tests/console` (scripts/test.sh does)"
    );
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let (status, key) = stack
        .client()
        .post(
            "/admin/api-keys",
            &json!({"name": "console-operator", "scopes": ["admin", "agent"]}),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{key}");
    let key = key["key"].as_str().unwrap().to_owned();

    let run = tokio::process::Command::new("node")
        .arg(dir.join("console.mjs"))
        .env("CONSOLE_URL", &stack.api_url)
        .env("CONSOLE_KEY", &key)
        .env("CONSOLE_ARTIFACTS", dir.join("artifacts"))
        .env("CHROMIUM", CHROMIUM)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(BROWSER_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("the browser session took over {BROWSER_TIMEOUT:?}"))
        .expect("node runs (install Node.js)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the browser session failed ({}):\n{stdout}\n{stderr}\n--- stack logs ---\n{}",
        output.status,
        stack.logs()
    );
    stack.stop().await.unwrap();
}
