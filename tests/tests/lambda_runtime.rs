//! Every function binary runs under the real Lambda runtime contract: started with
//! `AWS_LAMBDA_RUNTIME_API` pointing at a runtime API over HTTP, it polls for an API
//! Gateway v2 event, serves it through `lambda_http`, and posts the response back.
#![allow(clippy::unwrap_used)]

use centaur_http::testing::apigw_v2_event;
use centaur_tests::binaries::binary;
use centaur_tests::lambda_runtime::{FakeLambdaRuntime, Invocation};
use centaur_tests::stack::TEST_SIGNING_KEY;
use centaur_tests::{ChildProcess, TestDatabase};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const OPERATOR_KEY: &str = "cnt_lambda_test_operator_key_0123456789abcdef";

struct Call {
    function: &'static str,
    method: &'static str,
    path: &'static str,
    query: &'static str,
    body: Option<Value>,
    with_key: bool,
    expect_status: u16,
}

async fn invoke(database: &TestDatabase, call: &Call, log_dir: &std::path::Path) -> Value {
    let mut runtime = FakeLambdaRuntime::start().await.unwrap();
    let env: BTreeMap<String, String> = [
        ("AWS_LAMBDA_RUNTIME_API", runtime.address.as_str()),
        ("AWS_LAMBDA_FUNCTION_NAME", call.function),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_REGION", "us-east-1"),
        ("DATABASE_URL", database.url.as_str()),
        ("SANDBOX_SIGNING_KEY", TEST_SIGNING_KEY),
        ("LOCAL_DEV_API_KEY", OPERATOR_KEY),
        ("CENTAUR_DEFAULT_HARNESS", "echo"),
        ("SLACK_SIGNING_SECRET", "lambda-test-signing-secret"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let process =
        ChildProcess::spawn(call.function, &binary(call.function), &[], &env, log_dir).unwrap();
    let headers: Vec<(&str, &str)> = if call.with_key {
        vec![("x-api-key", OPERATOR_KEY)]
    } else {
        vec![]
    };
    let body = call.body.as_ref().map(Value::to_string);
    let event = apigw_v2_event(
        call.method,
        call.path,
        call.query,
        &headers,
        body.as_deref(),
    );
    let outcome = runtime
        .invoke("req-1", event, Duration::from_secs(30))
        .await
        .unwrap_or_else(|err| panic!("{}: {err}\n{}", call.function, process.log_tail(30)));
    let Invocation::Response(response) = outcome else {
        panic!(
            "{} reported an error: {outcome:?}\n{}",
            call.function,
            process.log_tail(30)
        );
    };
    assert_eq!(
        response["statusCode"], call.expect_status,
        "{} {} {}: {response}",
        call.function, call.method, call.path
    );
    serde_json::from_str(response["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_function_binary_serves_an_api_gateway_event_through_the_lambda_runtime_api() {
    let database = TestDatabase::create().await.unwrap();
    let log_dir = std::env::temp_dir().join(format!("centaur-lambda-{}", std::process::id()));
    std::fs::create_dir_all(&log_dir).unwrap();
    let thread = json!({"thread_key": "lambda-thread"});
    let calls = [
        Call {
            function: "health",
            method: "GET",
            path: "/health",
            query: "",
            body: None,
            with_key: false,
            expect_status: 200,
        },
        Call {
            function: "admin-api-keys",
            method: "GET",
            path: "/admin/api-keys",
            query: "",
            body: None,
            with_key: true,
            expect_status: 200,
        },
        Call {
            function: "agent-spawn",
            method: "POST",
            path: "/agent/spawn",
            query: "",
            body: Some(thread.clone()),
            with_key: true,
            expect_status: 200,
        },
        Call {
            function: "agent-message",
            method: "POST",
            path: "/agent/message",
            query: "",
            body: Some(
                json!({"thread_key": "lambda-thread", "assignment_generation": 1, "parts": [{"type": "text", "text": "hi"}]}),
            ),
            with_key: true,
            expect_status: 200,
        },
        Call {
            function: "agent-execute",
            method: "POST",
            path: "/agent/execute",
            query: "",
            body: Some(
                json!({"thread_key": "lambda-thread", "assignment_generation": 1, "delivery": {"platform": "dev"}}),
            ),
            with_key: true,
            expect_status: 202,
        },
        Call {
            function: "agent-executions",
            method: "GET",
            path: "/agent/threads/lambda-thread/executions",
            query: "",
            body: None,
            with_key: true,
            expect_status: 200,
        },
        Call {
            function: "agent-events",
            method: "GET",
            path: "/agent/threads/lambda-thread/events",
            query: "",
            body: None,
            with_key: false,
            expect_status: 401,
        },
        Call {
            function: "agent-threads",
            method: "GET",
            path: "/agent/status",
            query: "key=lambda-thread",
            body: None,
            with_key: true,
            expect_status: 200,
        },
        Call {
            function: "final-deliveries",
            method: "POST",
            path: "/agent/final-deliveries/claim",
            query: "",
            body: Some(json!({"worker_id": "lambda-deliverer"})),
            with_key: true,
            expect_status: 200,
        },
        Call {
            function: "slack-webhook",
            method: "POST",
            path: "/api/webhooks/slack",
            query: "",
            body: Some(json!({"type": "url_verification", "challenge": "unsigned"})),
            with_key: false,
            expect_status: 401,
        },
    ];
    let mut bodies = Vec::new();
    for call in &calls {
        bodies.push(invoke(&database, call, &log_dir).await);
    }
    assert_eq!(bodies[0], json!({"status": "ok"}));
    assert_eq!(bodies[2]["assignment_generation"], 1);
    assert_eq!(bodies[4]["status"], "queued");
    assert_eq!(bodies[5]["executions"].as_array().unwrap().len(), 1);
    assert_eq!(
        bodies[6]["detail"], "Missing API key",
        "Lambda requests are never the local operator"
    );
    assert_eq!(bodies[7]["latest_execution"]["status"], "queued");
    assert_eq!(
        bodies[8]["deliveries"],
        json!([]),
        "dev delivery has no outbox row"
    );
    assert_eq!(
        bodies[9],
        json!({"ok": false, "error": "missing_signature"}),
        "the webhook checks Slack's signature"
    );
    database.drop_database().await.unwrap();
    let _ = std::fs::remove_dir_all(&log_dir);
}
