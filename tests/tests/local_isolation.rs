//! Isolation on one machine (workspace.md): looked at from inside a running local sandbox
//! (the `echo` harness's `@sh` directive), the control plane's secrets are out of reach —
//! the dispatcher's and the API's `/proc/<pid>/environ`, a `.centaur/env`-like mode-600
//! file, the sandbox's own environment — and the sandbox runs as another uid (as root) or
//! in another PID namespace (bubblewrap). With `SANDBOX_PROXY_URL`/`SANDBOX_CA_FILE` the
//! sandbox gets the pod's egress contract, with a CA copy it can read.
#![allow(clippy::unwrap_used)]

use centaur_tests::stack::{running_as_root, TEST_SIGNING_KEY, TEST_SLACKBOT_KEY};
use centaur_tests::{Stack, StackOptions};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

/// The `command` events of `execution`, by command line: (exit code, output).
fn commands(execution: &Value) -> BTreeMap<String, (Option<i64>, String)> {
    execution["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["event_kind"] == "harness_event")
        .map(|event| &event["event_json"])
        .filter(|event| event["type"] == "command")
        .map(|event| {
            (
                event["command"].as_str().unwrap().to_owned(),
                (
                    event["exit_code"].as_i64(),
                    event["output"].as_str().unwrap_or("").to_owned(),
                ),
            )
        })
        .collect()
}

/// `Uid:` (real uid) of a process, from its `/proc/<pid>/status`.
fn uid_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .unwrap()
        .to_owned()
}

/// From inside a sandbox: ask the API for an admin key over loopback, with no key.
const ADMIN_KEY_WITHOUT_A_KEY: &str = "curl -s -o /dev/null -w '%{http_code}' -X POST \"$CENTAUR_API_URL/admin/api-keys\" -H 'Content-Type: application/json' -d '{\"name\":\"mine\",\"scopes\":[\"admin\"]}'";

#[tokio::test(flavor = "multi_thread")]
async fn a_local_sandbox_cannot_read_the_control_planes_secrets() {
    let env_canary = format!("env-canary-{}", std::process::id());
    let file_canary = format!("file-canary-{}", std::process::id());
    let mut stack = Stack::start(StackOptions {
        extra_env: [(
            "CENTAUR_TEST_CONTROL_PLANE_SECRET".to_owned(),
            env_canary.clone(),
        )]
        .into(),
        ..StackOptions::default()
    })
    .await
    .unwrap();
    // The control plane's secrets file, as scripts/up.sh keeps it: next to the sandbox
    // state dir, mode 600.
    let secrets_file = stack.work_dir().join("env");
    std::fs::write(
        &secrets_file,
        format!("SANDBOX_SIGNING_KEY={TEST_SIGNING_KEY}\nCANARY={file_canary}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&secrets_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let dispatcher_pid = stack.dispatcher(0).pid();
    let api_pid = stack.api().pid();

    let probes = [
        "id -u".to_owned(),
        "readlink /proc/self/ns/pid".to_owned(),
        format!("cat /proc/{dispatcher_pid}/environ"),
        format!("cat /proc/{api_pid}/environ"),
        format!("cat {}", secrets_file.display()),
        "env".to_owned(),
        ADMIN_KEY_WITHOUT_A_KEY.to_owned(),
    ];
    let text = probes
        .iter()
        .map(|probe| format!("@sh {probe}"))
        .collect::<Vec<_>>()
        .join("\n");
    let execution = stack.completed_turn("isolation-probe", &text).await;
    let ran = commands(&execution);
    let result = |probe: &str| {
        ran.get(probe)
            .cloned()
            .unwrap_or_else(|| panic!("no command event for {probe}: {execution}"))
    };

    for probe in &probes[2..5] {
        let (exit_code, output) = result(probe);
        assert_ne!(exit_code, Some(0), "{probe} succeeded: {output}");
        assert!(exit_code.is_some(), "{probe}: {output}");
    }
    let (_, sandbox_uid) = result("id -u");
    let sandbox_uid = sandbox_uid.trim().to_owned();
    if running_as_root() {
        assert_ne!(
            sandbox_uid,
            uid_of(dispatcher_pid),
            "same uid as the dispatcher"
        );
        assert_ne!(sandbox_uid, "0");
    } else {
        let (_, namespace) = result("readlink /proc/self/ns/pid");
        let dispatcher_namespace =
            std::fs::read_link(format!("/proc/{dispatcher_pid}/ns/pid")).unwrap();
        assert_ne!(
            namespace.trim(),
            dispatcher_namespace.display().to_string(),
            "same PID namespace as the dispatcher"
        );
    }

    if running_as_root() {
        // Loopback without a key is the local operator only for the operator's own user.
        let (_, status) = result(ADMIN_KEY_WITHOUT_A_KEY);
        assert_eq!(
            status.trim(),
            "401",
            "a sandbox acted as the local operator"
        );
    }

    let (_, env) = result("env");
    let state_dir = stack.sandbox_state_dir().canonicalize().unwrap();
    let home = env
        .lines()
        .find_map(|line| line.strip_prefix("HOME="))
        .unwrap_or_else(|| panic!("no HOME in {env}"));
    assert!(
        home.starts_with(&state_dir.display().to_string()),
        "HOME {home} is not inside {}",
        state_dir.display()
    );
    for name in ["DATABASE_URL", "SANDBOX_SIGNING_KEY", "SLACKBOT_API_KEY"] {
        assert!(!env.contains(&format!("{name}=")), "{name} in {env}");
    }
    for name in ["HTTPS_PROXY", "SSL_CERT_FILE"] {
        assert!(
            !env.contains(&format!("{name}=")),
            "{name} without a proxy: {env}"
        );
    }

    let everything = execution.to_string();
    for (name, secret) in [
        ("SANDBOX_SIGNING_KEY", TEST_SIGNING_KEY),
        ("DATABASE_URL", stack.database.url.as_str()),
        ("SLACKBOT_API_KEY", TEST_SLACKBOT_KEY),
        ("an env-only secret", env_canary.as_str()),
        ("the secrets file", file_canary.as_str()),
    ] {
        assert!(
            !everything.contains(secret),
            "{name} leaked into the sandbox's answer: {}",
            execution["result_text"]
        );
    }
    stack.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_proxy_configured_a_local_sandbox_gets_the_egress_env_and_can_read_its_ca() {
    // A placeholder certificate: nothing in an echo turn connects through the proxy.
    let ca_dir = std::env::temp_dir().join(format!("centaur-isolation-ca-{}", std::process::id()));
    std::fs::create_dir_all(&ca_dir).unwrap();
    std::fs::set_permissions(&ca_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let ca_file = ca_dir.join("mitmproxy-ca-cert.pem");
    std::fs::write(
        &ca_file,
        "-----BEGIN CERTIFICATE-----\nTUlJQg==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::set_permissions(&ca_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let proxy_url = "http://127.0.0.1:18080";
    let stack = Stack::start(StackOptions {
        extra_env: [
            ("SANDBOX_PROXY_URL".to_owned(), proxy_url.to_owned()),
            ("SANDBOX_CA_FILE".to_owned(), ca_file.display().to_string()),
        ]
        .into(),
        ..StackOptions::default()
    })
    .await
    .unwrap();

    let execution = stack
        .completed_turn("egress-probe", "@sh env\n@sh cat \"$SSL_CERT_FILE\"")
        .await;
    let ran = commands(&execution);
    let (_, env) = ran.get("env").cloned().unwrap();
    let vars: BTreeMap<&str, &str> = env
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect();
    for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        assert_eq!(vars.get(name), Some(&proxy_url), "{name}: {env}");
    }
    assert_eq!(vars.get("NO_PROXY"), Some(&"localhost,127.0.0.1"), "{env}");
    let ca_copy = vars["SSL_CERT_FILE"];
    assert!(ca_copy.ends_with("/ca.crt"), "{ca_copy}");
    for name in [
        "NODE_EXTRA_CA_CERTS",
        "REQUESTS_CA_BUNDLE",
        "GIT_SSL_CAINFO",
    ] {
        assert_eq!(vars.get(name), Some(&ca_copy), "{name}: {env}");
    }
    let (exit_code, pem) = ran.get("cat \"$SSL_CERT_FILE\"").cloned().unwrap();
    assert_eq!(exit_code, Some(0), "the sandbox cannot read its CA: {pem}");
    assert_eq!(pem, std::fs::read_to_string(&ca_file).unwrap());

    stack.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&ca_dir);
}
