//! `dispatcher [migrate | check-config]`: runs queued executions in sandboxes (see the crate
//! docs). `migrate` applies the migrations and exits; `check-config` parses the environment
//! and exits, naming the first missing or invalid variable.

use anyhow::Context;
use centaur_config::{DispatcherConfig, Env, SandboxBackendKind};
use centaur_sandbox::{Isolation, LocalBackend, LocalEgress, SandboxBackend};
use clap::{Parser, Subcommand};
use dispatcher::{consumer, delivery, health, maintenance, Dispatcher};
use std::sync::Arc;

// What `dispatcher` does besides running executions.
#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations to DATABASE_URL and exit.
    Migrate,
    /// Parse the environment and exit, naming the first missing or invalid variable.
    CheckConfig,
}

/// `dispatcher`: runs queued executions in sandboxes.
#[derive(Parser)]
#[command(version, about, after_help = ENV_HELP)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
}

const ENV_HELP: &str = "\
Environment (parsed once at start; a missing or invalid value stops the start naming it):
  DATABASE_URL, SANDBOX_SIGNING_KEY   required
  QUEUE_BACKEND                       postgres (default) or sqs (SQS_QUEUE_URL)
  SANDBOX_BACKEND                     local (default) or kubernetes (KUBERNETES_NAMESPACE,
                                      SANDBOX_PROXY_URL, SANDBOX_IMAGE, ...)
  DISPATCHER_PORT                     /healthz, /readyz, /metrics (9000)
The README's Configuration section lists every variable.";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    centaur_telemetry::init_tracing("dispatcher");
    let _ = centaur_telemetry::metrics();
    let config = DispatcherConfig::from_env(&Env::from_process())?;
    // Local sandboxes' isolation is part of the configuration: a missing sandbox user
    // fails `check-config` too.
    let local_isolation = match config.sandbox.backend {
        SandboxBackendKind::Local => Some(Isolation::from_config(&config.sandbox.local)?),
        SandboxBackendKind::Kubernetes => None,
    };
    match args.command {
        Some(Command::CheckConfig) => {
            println!("configuration ok");
            return Ok(());
        }
        Some(Command::Migrate) => {
            centaur_store::migrate(&config.database.url).await?;
            tracing::info!("migrations applied");
            return Ok(());
        }
        None => {}
    }
    let pool = centaur_store::connect(&config.database.url, config.database.max_connections)
        .await
        .context("connecting to DATABASE_URL")?;
    centaur_store::wakeups::announce_in_background(pool.clone());
    let queue = centaur_queue::from_config(&config.queue, pool.clone()).await?;
    let backend: Arc<dyn SandboxBackend> = match config.sandbox.backend {
        SandboxBackendKind::Local => Arc::new(
            LocalBackend::new(
                &config.sandbox_command,
                &config.sandbox_state_dir,
                local_isolation.context("SANDBOX_BACKEND=local without its isolation")?,
            )?
            .with_egress(LocalEgress::from_config(&config.sandbox)),
        ),
        SandboxBackendKind::Kubernetes => {
            let kubernetes = config
                .kubernetes
                .clone()
                .context("SANDBOX_BACKEND=kubernetes without its settings")?;
            Arc::new(centaur_kubernetes::KubernetesBackend::connect(kubernetes).await?)
        }
    };
    let port = config.port;
    let worker_enabled = config.execution_worker_enabled;
    let dispatcher = Dispatcher::new(pool, queue, backend, config);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("binding DISPATCHER_PORT {port}"))?;
    let mut http_stop = stop_rx.clone();
    let router = health::router(dispatcher.clone());
    let http = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = http_stop.changed().await;
            })
            .await
    });
    let maintenance = tokio::spawn(maintenance::run(dispatcher.clone(), stop_rx.clone()));
    let deliverer = dispatcher.config.slack.as_ref().map(|slack| {
        let client = centaur_slack::SlackClient::new(&slack.api_url, &slack.bot_token);
        tokio::spawn(delivery::run(dispatcher.clone(), client, stop_rx.clone()))
    });
    let consumer = worker_enabled.then(|| tokio::spawn(consumer::run(dispatcher.clone(), stop_rx)));
    tracing::info!(
        port,
        worker_enabled,
        slack_delivery = deliverer.is_some(),
        "dispatcher running"
    );

    shutdown_signal().await;
    tracing::info!("shutting down; running sandboxes are kept for re-attach");
    // Every task holds a receiver until it returns, so the send reaches them all.
    stop_tx.send_replace(true);
    joined("maintenance", maintenance.await);
    if let Some(deliverer) = deliverer {
        joined("delivery", deliverer.await);
    }
    if let Some(consumer) = consumer {
        joined("consumer", consumer.await);
    }
    match http.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::error!(%err, "the health server failed"),
        Err(err) => tracing::error!(%err, "the health server's task panicked"),
    }
    Ok(())
}

/// Logs a background task that ended by panicking (its work is not lost: executions are
/// leased and deliveries claimed, so another dispatcher or the next start picks them up).
fn joined(task: &str, result: Result<(), tokio::task::JoinError>) {
    if let Err(err) = result {
        tracing::error!(%err, task, "a dispatcher task panicked");
    }
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
