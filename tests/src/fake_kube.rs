//! A fake Kubernetes API server speaking real HTTP: the pod and secret endpoints the
//! Kubernetes sandbox backend uses (create, get, list, watch, delete, and `pods/attach`
//! over a WebSocket with the `v5`/`v4.channel.k8s.io` framing). No real API server can run
//! on these machines, so this stands in for one, with a fake kubelet that runs each pod's
//! command as a real `sandbox` process. Tests can OOM-kill a pod's container, fail its image
//! pull (images whose name contains `missing`), or delete it, and read every object created.
//! Pods whose image contains `parked` report Running without a process (for benchmarks
//! that need many live pods but never attach).

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Image names containing this never pull.
pub const MISSING_IMAGE_MARKER: &str = "missing";
/// Image names containing this run without a process (cannot be attached to).
pub const PARKED_IMAGE_MARKER: &str = "parked";

/// A running fake API server.
pub struct FakeKube {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    state: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.server.abort();
        for (_, process) in self.state.lock().processes.iter_mut() {
            if let Some(kill) = process.kill.take() {
                let _ = kill.send(());
            }
        }
    }
}

struct Shared {
    inner: Mutex<Inner>,
    watch: broadcast::Sender<(u64, Value)>,
    sandbox_binary: PathBuf,
    work_dir: PathBuf,
}

#[derive(Default)]
struct Inner {
    resource_version: u64,
    pods: BTreeMap<String, Value>,
    secrets: BTreeMap<String, Value>,
    processes: HashMap<String, PodProcess>,
    history: Vec<(u64, Value)>,
    created: Vec<Value>,
    requests: Vec<String>,
}

/// The fake kubelet's handle on a pod's container.
struct PodProcess {
    stdin: mpsc::UnboundedSender<Vec<u8>>,
    /// Where the container's stdout goes: the current attach session, if any.
    attached: Option<mpsc::UnboundedSender<Vec<u8>>>,
    kill: Option<oneshot::Sender<()>>,
    oom_killed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stores `pod` with a new resource version and tells watchers (`ADDED`/`MODIFIED`/`DELETED`).
    fn publish(&self, inner: &mut Inner, kind: &str, mut pod: Value) -> Value {
        inner.resource_version += 1;
        let rv = inner.resource_version;
        pod["metadata"]["resourceVersion"] = rv.to_string().into();
        let name = pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if kind == "DELETED" {
            inner.pods.remove(&name);
        } else {
            inner.pods.insert(name, pod.clone());
        }
        let event = json!({"type": kind, "object": pod});
        inner.history.push((rv, event.clone()));
        let _ = self.watch.send((rv, event));
        pod
    }

    /// Replaces the pod's status (if the pod still exists).
    fn set_status(&self, name: &str, status: Value) {
        let mut inner = self.lock();
        if let Some(mut pod) = inner.pods.get(name).cloned() {
            pod["status"] = status;
            self.publish(&mut inner, "MODIFIED", pod);
        }
    }
}

fn status_error(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    (code, Json(body)).into_response()
}

fn container_status(state: Value) -> Value {
    json!([{"name": "sandbox", "image": "", "imageID": "", "ready": state.get("running").is_some(),
            "restartCount": 0, "state": state}])
}

fn matches_selector(object: &Value, selector: Option<&String>) -> bool {
    selector.is_none_or(|selector| {
        selector.split(',').filter(|s| !s.is_empty()).all(|term| {
            let (key, value) = term.split_once('=').unwrap_or((term, ""));
            object["metadata"]["labels"][key].as_str() == Some(value)
        })
    })
}

impl FakeKube {
    /// Starts the server; pods run `sandbox_binary` with their command's arguments.
    pub async fn start(sandbox_binary: PathBuf) -> anyhow::Result<Self> {
        let work_dir =
            std::env::temp_dir().join(format!("centaur-fake-kube-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&work_dir)?;
        let (watch, _) = broadcast::channel(4096);
        let state = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            watch,
            sandbox_binary,
            work_dir,
        });
        let router = Router::new()
            .route(
                "/api/v1/namespaces/{ns}/pods",
                post(create_pod).get(list_or_watch_pods),
            )
            .route(
                "/api/v1/namespaces/{ns}/pods/{name}",
                get(get_pod).delete(delete_pod),
            )
            .route("/api/v1/namespaces/{ns}/pods/{name}/attach", get(attach))
            .route("/api/v1/namespaces/{ns}/secrets", post(create_secret))
            .route(
                "/api/v1/namespaces/{ns}/secrets/{name}",
                get(get_secret).delete(delete_secret),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self { url, state, server })
    }

    /// A kubeconfig pointing at this server with `namespace` as the default.
    pub fn write_kubeconfig(&self, path: &std::path::Path, namespace: &str) -> anyhow::Result<()> {
        let config = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters:\n- name: fake\n  cluster:\n    server: {}\n\
             users:\n- name: fake\n  user: {{}}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {namespace}\n",
            self.url
        );
        std::fs::write(path, config)?;
        Ok(())
    }

    /// Every object POSTed to the server, as received.
    pub fn created_objects(&self) -> Vec<Value> {
        self.state.lock().created.clone()
    }

    /// `"<METHOD> <path> -> <status>"` for every request served.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().requests.clone()
    }

    /// The pod as the server holds it now.
    pub fn pod(&self, name: &str) -> Option<Value> {
        self.state.lock().pods.get(name).cloned()
    }

    /// Names of the pods that exist now.
    pub fn pod_names(&self) -> Vec<String> {
        self.state.lock().pods.keys().cloned().collect()
    }

    /// Names of the secrets that exist now.
    pub fn secret_names(&self) -> Vec<String> {
        self.state.lock().secrets.keys().cloned().collect()
    }

    /// Kills the pod's container as the kernel's OOM killer would (exit 137, `OOMKilled`).
    pub fn oom_kill(&self, name: &str) {
        let mut inner = self.state.lock();
        if let Some(process) = inner.processes.get_mut(name) {
            process.oom_killed = true;
            if let Some(kill) = process.kill.take() {
                let _ = kill.send(());
            }
        }
    }

    /// Deletes the pod as `kubectl delete pod` would.
    pub fn delete_pod(&self, name: &str) {
        remove_pod(&self.state, name);
    }
}

fn record(state: &Shared, line: String) {
    state.lock().requests.push(line);
}

async fn create_pod(
    State(state): State<Arc<Shared>>,
    Path(namespace): Path<String>,
    Json(mut pod): Json<Value>,
) -> Response {
    let name = pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut inner = state.lock();
    inner.created.push(pod.clone());
    if inner.pods.contains_key(&name) {
        inner.requests.push(format!("POST pods/{name} -> 409"));
        return status_error(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("pods \"{name}\" already exists"),
        );
    }
    inner.requests.push(format!("POST pods/{name} -> 201"));
    pod["metadata"]["namespace"] = namespace.into();
    pod["metadata"]["uid"] = format!("uid-{}", rand::random::<u64>()).into();
    pod["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z".into();
    pod["status"] = json!({"phase": "Pending",
        "containerStatuses": container_status(json!({"waiting": {"reason": "ContainerCreating"}}))});
    let stored = state.publish(&mut inner, "ADDED", pod);
    drop(inner);
    tokio::spawn(run_kubelet(state.clone(), name));
    (StatusCode::CREATED, Json(stored)).into_response()
}

/// The fake kubelet: pulls (or fails to pull) the image, mounts the prompt secret, runs the
/// container's command as a real process and reports its state.
async fn run_kubelet(state: Arc<Shared>, name: String) {
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let Some(pod) = state.lock().pods.get(&name).cloned() else {
        return;
    };
    let container = pod["spec"]["containers"][0].clone();
    let image = container["image"].as_str().unwrap_or_default().to_owned();
    if image.contains(MISSING_IMAGE_MARKER) {
        let waiting = json!({"waiting": {"reason": "ImagePullBackOff",
            "message": format!("Back-off pulling image \"{image}\": not found")}});
        let mut statuses = container_status(waiting);
        statuses[0]["image"] = image.into();
        state.set_status(
            &name,
            json!({"phase": "Pending", "containerStatuses": statuses}),
        );
        return;
    }
    let pod_dir = state.work_dir.join(&name);
    let prompts_dir = pod_dir.join("prompts");
    let home = pod_dir.join("home");
    let _ = std::fs::create_dir_all(&prompts_dir);
    let _ = std::fs::create_dir_all(&home);
    let secret_name = pod["spec"]["volumes"]
        .as_array()
        .and_then(|volumes| volumes.iter().find(|v| v["name"] == "prompts"))
        .and_then(|v| v["secret"]["secretName"].as_str())
        .unwrap_or_default()
        .to_owned();
    let secret = state.lock().secrets.get(&secret_name).cloned();
    let Some(secret) = secret else {
        state.set_status(
            &name,
            json!({"phase": "Pending", "containerStatuses": container_status(
            json!({"waiting": {"reason": "CreateContainerConfigError",
                               "message": format!("secret \"{secret_name}\" not found")}}))}),
        );
        return;
    };
    if let Some(files) = secret["stringData"].as_object() {
        for (file, content) in files {
            let _ = std::fs::write(prompts_dir.join(file), content.as_str().unwrap_or_default());
        }
    }
    let args: Vec<String> = container["command"]
        .as_array()
        .map(|command| {
            command
                .iter()
                .skip(1)
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut command = tokio::process::Command::new(&state.sandbox_binary);
    command.args(&args).env_clear().current_dir(&home);
    for var in container["env"].as_array().into_iter().flatten() {
        command.env(
            var["name"].as_str().unwrap_or_default(),
            var["value"].as_str().unwrap_or_default(),
        );
    }
    command
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CENTAUR_PROMPTS_DIR", &prompts_dir)
        .env("HOME", &home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let Ok(mut child) = command.spawn() else {
        state.set_status(
            &name,
            json!({"phase": "Failed", "containerStatuses": container_status(
            json!({"terminated": {"exitCode": 127, "reason": "StartError"}}))}),
        );
        return;
    };
    let (stdin_tx, mut stdin_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let (kill_tx, kill_rx) = oneshot::channel();
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    tokio::spawn(async move {
        while let Some(bytes) = stdin_rx.recv().await {
            if let Some(stdin) = stdin.as_mut() {
                if stdin.write_all(&bytes).await.is_err() || stdin.flush().await.is_err() {
                    break;
                }
            }
        }
    });
    state.lock().processes.insert(
        name.clone(),
        PodProcess {
            stdin: stdin_tx,
            attached: None,
            kill: Some(kill_tx),
            oom_killed: false,
        },
    );
    state.set_status(&name, json!({"phase": "Running",
        "containerStatuses": container_status(json!({"running": {"startedAt": "2026-01-01T00:00:01Z"}}))}));
    let forward_state = state.clone();
    let forward_name = name.clone();
    let forward = tokio::spawn(async move {
        let mut buffer = vec![0u8; 16 * 1024];
        while let Some(out) = stdout.as_mut() {
            let read = match out.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            let inner = forward_state.lock();
            if let Some(attached) = inner
                .processes
                .get(&forward_name)
                .and_then(|p| p.attached.as_ref())
            {
                let _ = attached.send(buffer[..read].to_vec());
            }
        }
    });
    let exit = tokio::select! {
        status = child.wait() => status.ok().and_then(|s| s.code()),
        _ = kill_rx => {
            let _ = child.kill().await;
            Some(137)
        }
    };
    let _ = forward.await;
    let oom = state
        .lock()
        .processes
        .remove(&name)
        .is_some_and(|p| p.oom_killed);
    let code = exit.unwrap_or(137);
    let reason = if oom {
        "OOMKilled"
    } else if code == 0 {
        "Completed"
    } else {
        "Error"
    };
    state.set_status(&name, json!({
        "phase": if code == 0 { "Succeeded" } else { "Failed" },
        "containerStatuses": container_status(json!({"terminated": {"exitCode": code, "reason": reason}})),
    }));
}

async fn list_or_watch_pods(
    State(state): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let selector = query.get("labelSelector").cloned();
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let from: u64 = query
            .get("resourceVersion")
            .and_then(|rv| rv.parse().ok())
            .unwrap_or(0);
        let live = state.watch.subscribe();
        let replay: Vec<(u64, Value)> = state
            .lock()
            .history
            .iter()
            .filter(|(rv, _)| *rv > from)
            .cloned()
            .collect();
        record(&state, format!("WATCH pods from {from} -> 200"));
        let last = replay.last().map_or(from, |(rv, _)| *rv);
        let replayed: Vec<Result<String, Infallible>> = replay
            .into_iter()
            .filter(|(_, event)| matches_selector(&event["object"], selector.as_ref()))
            .map(|(_, event)| Ok(format!("{event}\n")))
            .collect();
        let replayed = futures::stream::iter(replayed);
        let live = futures::stream::unfold(
            (live, last, selector),
            |(mut live, last, selector)| async move {
                loop {
                    match live.recv().await {
                        Ok((rv, event))
                            if rv > last
                                && matches_selector(&event["object"], selector.as_ref()) =>
                        {
                            return Some((Ok(format!("{event}\n")), (live, rv, selector)));
                        }
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            },
        );
        let stream = futures::StreamExt::chain(replayed, live);
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_stream(stream))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let inner = state.lock();
    let items: Vec<Value> = inner
        .pods
        .values()
        .filter(|p| matches_selector(p, selector.as_ref()))
        .cloned()
        .collect();
    let body = json!({"apiVersion": "v1", "kind": "PodList",
        "metadata": {"resourceVersion": inner.resource_version.to_string()}, "items": items});
    Json(body).into_response()
}

async fn get_pod(
    State(state): State<Arc<Shared>>,
    Path((_ns, name)): Path<(String, String)>,
) -> Response {
    match state.lock().pods.get(&name) {
        Some(pod) => Json(pod.clone()).into_response(),
        None => status_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pods \"{name}\" not found"),
        ),
    }
}

/// Kills the container, removes the pod and tells watchers; the pod as it was, if any.
fn remove_pod(state: &Shared, name: &str) -> Option<Value> {
    let mut inner = state.lock();
    if let Some(mut process) = inner.processes.remove(name) {
        if let Some(kill) = process.kill.take() {
            let _ = kill.send(());
        }
    }
    let pod = inner.pods.get(name).cloned()?;
    Some(state.publish(&mut inner, "DELETED", pod))
}

async fn delete_pod(
    State(state): State<Arc<Shared>>,
    Path((_ns, name)): Path<(String, String)>,
) -> Response {
    match remove_pod(&state, &name) {
        Some(pod) => {
            record(&state, format!("DELETE pods/{name} -> 200"));
            Json(pod).into_response()
        }
        None => {
            record(&state, format!("DELETE pods/{name} -> 404"));
            status_error(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("pods \"{name}\" not found"),
            )
        }
    }
}

async fn attach(
    State(state): State<Arc<Shared>>,
    Path((_ns, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let running = state.lock().processes.contains_key(&name);
    if !running || query.get("stdin").map(String::as_str) != Some("true") {
        record(&state, format!("ATTACH pods/{name} -> 400"));
        return status_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("pod {name} is not running or stdin was not requested"),
        );
    }
    record(&state, format!("ATTACH pods/{name} -> 101"));
    upgrade
        .protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"])
        .on_upgrade(move |socket| serve_attach(state, name, socket))
}

/// Channel-framed stdin/stdout between the WebSocket and the container.
async fn serve_attach(state: Arc<Shared>, name: String, mut socket: WebSocket) {
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let stdin = {
        let mut inner = state.lock();
        let Some(process) = inner.processes.get_mut(&name) else {
            return;
        };
        process.attached = Some(out_tx);
        process.stdin.clone()
    };
    loop {
        tokio::select! {
            output = out_rx.recv() => match output {
                Some(bytes) => {
                    let mut frame = vec![1u8];
                    frame.extend_from_slice(&bytes);
                    if socket.send(Message::Binary(frame.into())).await.is_err() {
                        break;
                    }
                }
                None => {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Binary(data))) if data.first() == Some(&0) => {
                    let _ = stdin.send(data[1..].to_vec());
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn create_secret(
    State(state): State<Arc<Shared>>,
    Path(_namespace): Path<String>,
    Json(secret): Json<Value>,
) -> Response {
    let name = secret["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut inner = state.lock();
    inner.created.push(secret.clone());
    if inner.secrets.contains_key(&name) {
        inner.requests.push(format!("POST secrets/{name} -> 409"));
        return status_error(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("secrets \"{name}\" already exists"),
        );
    }
    inner.requests.push(format!("POST secrets/{name} -> 201"));
    inner.secrets.insert(name, secret.clone());
    (StatusCode::CREATED, Json(secret)).into_response()
}

async fn get_secret(
    State(state): State<Arc<Shared>>,
    Path((_ns, name)): Path<(String, String)>,
) -> Response {
    match state.lock().secrets.get(&name) {
        Some(secret) => Json(secret.clone()).into_response(),
        None => status_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("secrets \"{name}\" not found"),
        ),
    }
}

async fn delete_secret(
    State(state): State<Arc<Shared>>,
    Path((_ns, name)): Path<(String, String)>,
) -> Response {
    let removed = state.lock().secrets.remove(&name);
    record(
        &state,
        format!(
            "DELETE secrets/{name} -> {}",
            if removed.is_some() { 200 } else { 404 }
        ),
    );
    match removed {
        Some(secret) => Json(secret).into_response(),
        None => status_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("secrets \"{name}\" not found"),
        ),
    }
}
