//! The Kubernetes sandbox backend against a fake API server over real HTTP (no real API
//! server can run here): pods created idempotently, attached over `pods/attach`, status
//! from the watch, and failures (OOM kill, image pull, deletion) reported in words an
//! operator can act on. Every generated object is validated against the Kubernetes schema.

use centaur_config::{Env, KubernetesConfig};
use centaur_core::{Harness, SandboxId};
use centaur_kubernetes::KubernetesBackend;
use centaur_sandbox::{Attachment, SandboxBackend, SandboxError, SandboxSpec, SandboxStatus};
use centaur_tests::binaries::binary;
use centaur_tests::eventually;
use centaur_tests::fake_kube::FakeKube;
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const NAMESPACE: &str = "centaur-test";

fn config(image: &str) -> KubernetesConfig {
    KubernetesConfig::from_env(&Env::from_pairs([
        ("KUBERNETES_NAMESPACE", NAMESPACE),
        (
            "SANDBOX_PROXY_URL",
            "http://centaur-centaur-iron-proxy.centaur-test.svc:8080",
        ),
        ("SANDBOX_IMAGE", image),
        ("SANDBOX_RUNTIME_CLASS_NAME", "gvisor"),
        ("SANDBOX_START_TIMEOUT_S", "20"),
    ]))
    .expect("valid config")
}

async fn start(image: &str) -> (FakeKube, KubernetesBackend) {
    let fake = FakeKube::start(binary("sandbox"))
        .await
        .expect("fake API server");
    KubernetesBackend::install_crypto_provider();
    let mut client_config = kube::Config::new(fake.url.parse().expect("url"));
    client_config.default_namespace = NAMESPACE.into();
    let client = kube::Client::try_from(client_config).expect("client");
    let backend = KubernetesBackend::new(client, config(image));
    (fake, backend)
}

fn spec(id: &str, thread_key: Option<&str>) -> SandboxSpec {
    let mut env: BTreeMap<String, String> = [
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "AMP_API_KEY",
        "GITHUB_TOKEN",
    ]
    .iter()
    .map(|name| ((*name).to_owned(), (*name).to_owned()))
    .collect();
    env.insert(
        "CENTAUR_API_URL".into(),
        "http://centaur-centaur-api.centaur-test.svc:8000".into(),
    );
    SandboxSpec {
        id: SandboxId::from_stored(id),
        harness: Harness::Echo,
        thread_key: thread_key.map(str::to_owned),
        env,
        prompt_files: BTreeMap::from([(
            "AGENTS_BASE.md".to_owned(),
            "You are Centaur.".to_owned(),
        )]),
        warm: thread_key.is_none(),
    }
}

fn turn_line(execution_id: &str, text: &str) -> String {
    json!({
        "type": "user",
        "message": {"role": "user", "content": [{"type": "text", "text": text}]},
        "thread_key": "thread-1",
        "execution_id": execution_id,
    })
    .to_string()
}

/// Reads output lines until `turn.done` (or the stream ends); the events read.
async fn read_turn(attachment: &mut Attachment) -> Vec<Value> {
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Ok(Some(line)) = tokio::time::timeout_at(deadline, attachment.output.next()).await {
        let event: Value = serde_json::from_str(&line.expect("line")).expect("json line");
        let done = event["type"] == "turn.done";
        events.push(event);
        if done {
            break;
        }
    }
    events
}

/// Reads output lines until the turn's `turn.started` (the sandbox is inside the turn).
async fn read_until_started(attachment: &mut Attachment) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Ok(Some(line)) = tokio::time::timeout_at(deadline, attachment.output.next()).await {
        let event: Value = serde_json::from_str(&line.expect("line")).expect("json line");
        if event["type"] == "turn.started" {
            return event;
        }
    }
    panic!("no turn.started within 20 s")
}

/// The sandbox's status once `wanted` holds (or the last one seen, after 10 s, for the
/// caller's assertion to show).
async fn wait_for_status(
    backend: &KubernetesBackend,
    id: &SandboxId,
    wanted: impl Fn(&SandboxStatus) -> bool,
) -> SandboxStatus {
    let last = std::sync::Mutex::new(None);
    let reached = eventually(Duration::from_secs(10), "the sandbox status", || async {
        let status = backend.status(id).await?;
        let done = wanted(&status);
        if let Ok(mut last) = last.lock() {
            *last = Some(status.clone());
        }
        Ok(done.then_some(status))
    })
    .await;
    match reached {
        Ok(status) => status,
        Err(_) => last
            .into_inner()
            .ok()
            .flatten()
            .expect("at least one status was read"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_created_sandbox_runs_a_turn_over_pods_attach() {
    let (fake, backend) = start("centaur-agent:test").await;
    let id = backend
        .create(&spec("sbx-turn", Some("thread-1")))
        .await
        .expect("create");
    let mut attachment = backend.attach(&id).await.expect("attach");
    attachment
        .input
        .send_line(&turn_line("exe_1", "hello over attach"))
        .await
        .expect("send");
    let events = read_turn(&mut attachment).await;
    let done = events.last().expect("events");
    assert_eq!(done["type"], "turn.done", "{events:?}");
    assert_eq!(done["status"], "ok");
    assert_eq!(done["result_text"], "hello over attach");
    assert!(fake
        .requests()
        .contains(&"ATTACH pods/centaur-sbx-turn -> 101".to_owned()));
}

#[tokio::test(flavor = "multi_thread")]
async fn creating_the_same_sandbox_twice_adopts_the_existing_pod() {
    let (fake, backend) = start("centaur-agent:test").await;
    let spec = spec("sbx-twice", Some("thread-1"));
    let first = backend.create(&spec).await.expect("first create");
    let second = backend.create(&spec).await.expect("second create adopts");
    assert_eq!(first, second);
    assert_eq!(fake.pod_names(), vec!["centaur-sbx-twice".to_owned()]);
    let requests = fake.requests();
    assert!(
        requests.contains(&"POST pods/centaur-sbx-twice -> 409".to_owned()),
        "{requests:?}"
    );
    assert!(requests.contains(&"POST secrets/centaur-sbx-twice-prompt -> 409".to_owned()));
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_deletes_the_pod_and_its_prompt_secret_and_is_idempotent() {
    let (fake, backend) = start("centaur-agent:test").await;
    let id = backend
        .create(&spec("sbx-stop", Some("thread-1")))
        .await
        .expect("create");
    assert_eq!(
        fake.secret_names(),
        vec!["centaur-sbx-stop-prompt".to_owned()]
    );
    backend.stop(&id).await.expect("stop");
    assert!(fake.pod_names().is_empty());
    assert!(fake.secret_names().is_empty());
    backend
        .stop(&id)
        .await
        .expect("stopping a gone sandbox is fine");
    let status = wait_for_status(&backend, &id, |s| matches!(s, SandboxStatus::Gone { .. })).await;
    assert!(
        matches!(status, SandboxStatus::Gone { ref detail } if detail.contains("deleted")),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oom_killed_container_is_reported_with_its_exit_code_and_reason() {
    let (fake, backend) = start("centaur-agent:test").await;
    let id = backend
        .create(&spec("sbx-oom", Some("thread-1")))
        .await
        .expect("create");
    let mut attachment = backend.attach(&id).await.expect("attach");
    assert_eq!(
        backend.status(&id).await.expect("status"),
        SandboxStatus::Running
    );
    attachment
        .input
        .send_line(&turn_line("exe_oom", "@hang 30000"))
        .await
        .expect("send");
    let started = read_until_started(&mut attachment).await;
    assert_eq!(started["execution_id"], "exe_oom");
    fake.oom_kill("centaur-sbx-oom");
    let rest: Vec<_> = tokio::time::timeout(
        Duration::from_secs(10),
        attachment.output.collect::<Vec<_>>(),
    )
    .await
    .expect("the output stream ends when the container dies");
    assert!(
        rest.iter()
            .all(|line| !line.as_ref().is_ok_and(|l| l.contains("turn.done"))),
        "a killed turn never reports its end: {rest:?}"
    );
    let status = wait_for_status(&backend, &id, |s| !s.is_alive()).await;
    match status {
        SandboxStatus::Exited { code, detail } => {
            assert_eq!(code, Some(137));
            assert!(detail.contains("OOMKilled"), "{detail}");
        }
        other => panic!("expected an exited sandbox, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_deleted_mid_turn_ends_the_stream_and_reads_as_deleted() {
    let (fake, backend) = start("centaur-agent:test").await;
    let id = backend
        .create(&spec("sbx-deleted", Some("thread-1")))
        .await
        .expect("create");
    let mut attachment = backend.attach(&id).await.expect("attach");
    attachment
        .input
        .send_line(&turn_line("exe_del", "@hang 30000"))
        .await
        .expect("send");
    read_until_started(&mut attachment).await;
    fake.delete_pod("centaur-sbx-deleted");
    tokio::time::timeout(
        Duration::from_secs(10),
        attachment.output.collect::<Vec<_>>(),
    )
    .await
    .expect("the output stream ends when the pod is deleted");
    let status = wait_for_status(&backend, &id, |s| matches!(s, SandboxStatus::Gone { .. })).await;
    assert_eq!(
        status,
        SandboxStatus::Gone {
            detail: "pod centaur-sbx-deleted was deleted".into()
        }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_that_cannot_be_pulled_fails_the_start_naming_the_image() {
    let (_fake, backend) = start("registry.example/centaur-agent:missing").await;
    let id = backend
        .create(&spec("sbx-pull", Some("thread-1")))
        .await
        .expect("create");
    let Err(err) = backend.attach(&id).await else {
        panic!("attach must fail")
    };
    match err {
        SandboxError::StartFailed { reason, .. } => {
            assert!(
                reason.contains("image pull failed for registry.example/centaur-agent:missing"),
                "{reason}"
            );
            assert!(reason.contains("ImagePullBackOff"), "{reason}");
        }
        other => panic!("expected StartFailed, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_attachment_replays_a_finished_turn_without_running_it_again() {
    let (_fake, backend) = start("centaur-agent:test").await;
    let id = backend
        .create(&spec("sbx-replay", Some("thread-1")))
        .await
        .expect("create");
    let mut first = backend.attach(&id).await.expect("attach");
    first
        .input
        .send_line(&turn_line("exe_r", "once"))
        .await
        .expect("send");
    let original = read_turn(&mut first).await;
    drop(first);
    let mut second = backend.attach(&id).await.expect("re-attach");
    let resume = json!({"type": "resume", "execution_id": "exe_r", "after_seq": 1}).to_string();
    second.input.send_line(&resume).await.expect("resume");
    let replayed = read_turn(&mut second).await;
    assert_eq!(
        replayed,
        original[1..].to_vec(),
        "events after seq 1, exactly as first sent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn list_managed_reports_every_sandbox_pod_with_its_labels() {
    let (_fake, backend) = start("centaur-agent:test").await;
    backend
        .create(&spec("sbx-warm-1", None))
        .await
        .expect("warm");
    backend
        .create(&spec("sbx-thread-1", Some("thread-1")))
        .await
        .expect("thread");
    let mut managed = backend.list_managed().await.expect("list");
    managed.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    let summary: Vec<_> = managed
        .iter()
        .map(|m| (m.id.as_str(), m.harness.as_deref(), m.warm))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("sbx-thread-1", Some("echo"), false),
            ("sbx-warm-1", Some("echo"), true)
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_pods_carry_the_contracted_spec_and_validate_against_the_kubernetes_schema() {
    let (fake, backend) = start("centaur-agent:test").await;
    backend
        .create(&spec("sbx-schema", Some("thread-1")))
        .await
        .expect("create");
    backend
        .create(&spec("sbx-warm-schema", None))
        .await
        .expect("create warm");
    let objects = fake.created_objects();
    let pod = objects.iter().find(|o| o["kind"] == "Pod").expect("a pod");
    let labels = &pod["metadata"]["labels"];
    assert_eq!(labels["centaur.ai/managed"], "true");
    assert_eq!(labels["centaur.ai/sandbox-id"], "sbx-schema");
    assert_eq!(labels["centaur.ai/harness"], "echo");
    assert_eq!(labels["centaur.ai/warm"], "false");
    assert_eq!(labels["app.kubernetes.io/part-of"], "centaur");
    assert_eq!(
        pod["metadata"]["annotations"]["centaur.ai/thread-key"],
        "thread-1"
    );
    let spec = &pod["spec"];
    assert_eq!(spec["restartPolicy"], "Never");
    assert_eq!(spec["automountServiceAccountToken"], false);
    assert_eq!(spec["runtimeClassName"], "gvisor");
    let container = &spec["containers"][0];
    assert_eq!(container["name"], "sandbox");
    assert_eq!(
        container["command"],
        json!(["sandbox", "--harness", "echo"])
    );
    assert_eq!(
        (container["stdin"].clone(), container["tty"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(container["workingDir"], "/home/agent");
    assert_eq!(
        container["resources"]["limits"],
        json!({"cpu": "2", "memory": "4Gi"})
    );
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"], 1001);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    let env: BTreeMap<String, String> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().into(),
                e["value"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    for placeholder in [
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "AMP_API_KEY",
        "GITHUB_TOKEN",
    ] {
        assert_eq!(
            env[placeholder], placeholder,
            "only the placeholder reaches the pod"
        );
    }
    for proxy in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        assert_eq!(
            env[proxy],
            "http://centaur-centaur-iron-proxy.centaur-test.svc:8080"
        );
    }
    assert_eq!(
        env["NO_PROXY"],
        "localhost,127.0.0.1,centaur-centaur-api.centaur-test.svc"
    );
    for ca in [
        "SSL_CERT_FILE",
        "NODE_EXTRA_CA_CERTS",
        "REQUESTS_CA_BUNDLE",
        "GIT_SSL_CAINFO",
    ] {
        assert_eq!(env[ca], "/firewall-certs/ca.crt");
    }
    let ca_volume = spec["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "proxy-ca")
        .expect("ca");
    assert_eq!(ca_volume["secret"]["secretName"], "centaur-firewall-ca");
    assert_eq!(
        ca_volume["secret"]["items"],
        json!([{"key": "ca.crt", "path": "ca.crt"}]),
        "never the CA key"
    );

    let dir = std::env::temp_dir().join(format!("centaur-k8s-schema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("objects.json");
    std::fs::write(&file, serde_json::to_string(&objects).expect("json")).expect("write");
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import json, sys, kubernetes_validate\n\
             for obj in json.load(open(sys.argv[1])):\n\
             \x20   kubernetes_validate.validate(obj, '1.30', strict=True)\n\
             print('validated', flush=True)",
        )
        .arg(&file)
        .output()
        .expect("python3 with kubernetes-validate (pip install -r tests/requirements.txt)");
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("validated"),
        "schema validation failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
