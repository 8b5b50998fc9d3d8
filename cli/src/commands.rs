//! Each command: the requests it sends and what it prints. The decisions live in
//! `request`, `render`, `doctor` and `exit`; this module only does the IO.

use crate::args::{Cli, Command, ExecutionsCommand, KeysCommand, RunArgs, ThreadsCommand};
use crate::client::Api;
use crate::doctor::{self, Observations, Verdict};
use crate::error::CliError;
use crate::exit::Exit;
use crate::render::{self, Renderer};
use crate::request::{self, RunRequest};
use crate::stream::{self, StreamedEvent};
use serde_json::{json, Value};
use std::io::{Read, Write};

/// Writes to stdout, ignoring a closed pipe (`centaur … | head` must not panic).
fn out(text: &str) {
    if text.is_empty() {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// One JSON value on one line.
fn out_line(value: &Value) {
    out(&format!("{value}\n"));
}

/// One JSON document, indented.
fn out_pretty(value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    out(&format!("{text}\n"));
}

/// Runs the command and returns how the process should exit; errors are printed as one
/// line on stderr.
pub async fn execute(cli: Cli) -> Exit {
    match dispatch(&cli).await {
        Ok(exit) => exit,
        Err(err) => {
            eprintln!("error: {err}");
            Exit::for_error(&err)
        }
    }
}

async fn dispatch(cli: &Cli) -> Result<Exit, CliError> {
    let base = request::base_url(&cli.global.api_url)?;
    let key = cli.global.api_key.as_ref().map(|key| key.0.as_str());
    let api = Api::new(base, key)?;
    let json = cli.global.json;
    match &cli.command {
        Command::Run(args) => run(&api, args, json).await,
        Command::Executions(command) => executions(&api, command, json).await,
        Command::Threads(command) => threads(&api, command, json).await,
        Command::Keys(command) => keys(&api, command, json).await,
        Command::Audit(args) => {
            let answer = api
                .get(&["admin", "audit"], &request::audit_query(args))
                .await?;
            show(json, &answer, render::audit_table);
            Ok(Exit::Success)
        }
        Command::Pool => {
            let answer = api.get(&["agent", "pool"], &[]).await?;
            show(json, &answer, render::pool);
            Ok(Exit::Success)
        }
        Command::Doctor => doctor(&api, json).await,
    }
}

/// Prints `answer` raw (`--json`) or through `human`.
fn show(json: bool, answer: &Value, human: impl FnOnce(&Value) -> String) {
    if json {
        out_pretty(answer);
    } else {
        out(&human(answer));
    }
}

fn message_text(raw: &str) -> Result<String, CliError> {
    if raw != "-" {
        return Ok(raw.to_owned());
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|err| CliError::Usage(format!("cannot read the message from stdin: {err}")))?;
    Ok(text)
}

fn missing(api: &Api, what: &str, answer: &Value) -> CliError {
    CliError::BadAnswer {
        url: api.shown_url(),
        cause: format!("no {what} in {answer}"),
    }
}

async fn run(api: &Api, args: &RunArgs, json: bool) -> Result<Exit, CliError> {
    let text = message_text(&args.text)?;
    let request = RunRequest::new(
        &text,
        args.thread.as_deref(),
        args.harness.as_deref(),
        args.repo.as_deref(),
    )?;
    let accepted = api.post(&["agent", "execute"], &request.body()).await?;
    let execution_id = accepted["execution_id"]
        .as_str()
        .ok_or_else(|| missing(api, "execution_id", &accepted))?
        .to_owned();
    let thread = &request.thread_key;
    if json {
        out_line(&accepted);
        if args.thread.is_none() {
            eprintln!("thread {thread} (continue it with --thread {thread})");
        }
    } else {
        let new = if args.thread.is_none() {
            format!(" (new; continue it with --thread {thread})")
        } else {
            String::new()
        };
        out(&format!(
            "thread {thread}{new}\nexecution {execution_id} {}\n",
            accepted["status"].as_str().unwrap_or("accepted")
        ));
    }
    if args.detach {
        if !json {
            out(&format!(
                "follow it: centaur executions watch {execution_id}\n"
            ));
        }
        return Ok(Exit::Success);
    }
    follow_to_end(api, thread.as_str(), &execution_id, json).await
}

/// Streams the execution until it ends, prints how it ended, and returns its exit.
async fn follow_to_end(
    api: &Api,
    thread_key: &str,
    execution_id: &str,
    json: bool,
) -> Result<Exit, CliError> {
    let mut renderer = Renderer::live();
    let followed = stream::follow(api, thread_key, execution_id, |event| {
        if json {
            out_line(&event.to_json());
        } else {
            out(&renderer.render(event));
        }
    });
    let terminal: StreamedEvent = tokio::select! {
        result = followed => result?,
        _ = tokio::signal::ctrl_c() => {
            out(&renderer.close_line());
            eprintln!(
                "stopped watching; the turn goes on: centaur executions watch {execution_id} (or: centaur executions cancel {execution_id})"
            );
            return Ok(Exit::Interrupted);
        }
    };
    let execution = match api
        .get(
            &["agent", "executions", execution_id],
            &[("events", "false".to_owned())],
        )
        .await
    {
        Ok(execution)
            if execution["status"]
                .as_str()
                .and_then(Exit::for_status)
                .is_some() =>
        {
            execution
        }
        // The end as the stream told it, if the execution cannot be read back.
        _ => {
            let mut fallback = terminal.event_json.clone();
            fallback["execution_id"] = json!(execution_id);
            fallback["thread_key"] = json!(thread_key);
            fallback
        }
    };
    if json {
        out_line(&execution);
    } else {
        out(&renderer.close_line());
        out(&render::outcome(&execution, renderer.shown_text()));
    }
    let status = execution["status"]
        .as_str()
        .or(terminal.terminal_status())
        .unwrap_or_default();
    Ok(Exit::for_status(status).unwrap_or(Exit::Failed))
}

async fn executions(api: &Api, command: &ExecutionsCommand, json: bool) -> Result<Exit, CliError> {
    match command {
        ExecutionsCommand::Get { id, events } => {
            let id = request::execution_id(id)?;
            let query = if *events {
                Vec::new()
            } else {
                vec![("events", "false".to_owned())]
            };
            let execution = api.get(&["agent", "executions", &id], &query).await?;
            show(json, &execution, |execution| {
                let mut text = render::execution_details(execution);
                if *events {
                    text.push('\n');
                    text.push_str(&render::trail(execution));
                }
                text
            });
        }
        ExecutionsCommand::List { thread, limit } => {
            let thread = request::thread_key(thread)?;
            let query: Vec<(&str, String)> = limit
                .map(|limit| vec![("limit", limit.to_string())])
                .unwrap_or_default();
            let list = api
                .get(&["agent", "threads", &thread, "executions"], &query)
                .await?;
            show(json, &list, render::executions_table);
        }
        ExecutionsCommand::Cancel { id } => {
            let id = request::execution_id(id)?;
            let answer = api
                .post(&["agent", "executions", &id, "cancel"], &json!({}))
                .await?;
            show(json, &answer, render::cancelled);
        }
        ExecutionsCommand::Watch { id } => {
            let id = request::execution_id(id)?;
            let execution = api
                .get(
                    &["agent", "executions", &id],
                    &[("events", "false".to_owned())],
                )
                .await?;
            let thread = execution["thread_key"]
                .as_str()
                .ok_or_else(|| missing(api, "thread_key", &execution))?
                .to_owned();
            if !json {
                out(&format!(
                    "execution {id} on thread {thread}: {}\n",
                    execution["status"].as_str().unwrap_or("unknown")
                ));
            }
            return follow_to_end(api, &thread, &id, json).await;
        }
    }
    Ok(Exit::Success)
}

async fn threads(api: &Api, command: &ThreadsCommand, json: bool) -> Result<Exit, CliError> {
    match command {
        ThreadsCommand::List { limit } => {
            let query: Vec<(&str, String)> = limit
                .map(|limit| vec![("limit", limit.to_string())])
                .unwrap_or_default();
            let list = api.get(&["agent", "threads"], &query).await?;
            show(json, &list, render::threads_table);
        }
        ThreadsCommand::Release {
            thread,
            cancel_inflight,
        } => {
            let thread = request::thread_key(thread)?;
            let answer = api
                .post(
                    &["agent", "threads", &thread, "release"],
                    &request::release_body(*cancel_inflight),
                )
                .await?;
            show(json, &answer, |answer| render::released(answer, &thread));
        }
    }
    Ok(Exit::Success)
}

async fn keys(api: &Api, command: &KeysCommand, json: bool) -> Result<Exit, CliError> {
    match command {
        KeysCommand::Create {
            name,
            scopes,
            created_by,
        } => {
            let body = request::key_create_body(name, scopes, created_by.as_deref())?;
            let created = api.post(&["admin", "api-keys"], &body).await?;
            show(json, &created, render::key_created);
        }
        KeysCommand::List => {
            let list = api.get(&["admin", "api-keys"], &[]).await?;
            show(json, &list, render::keys_table);
        }
        KeysCommand::Revoke { id } => {
            let id = id.trim();
            if id.is_empty() {
                return Err(CliError::Usage("the key id must not be empty".into()));
            }
            let answer = api.delete(&["admin", "api-keys", id]).await?;
            show(json, &answer, render::key_revoked);
        }
    }
    Ok(Exit::Success)
}

async fn doctor(api: &Api, json: bool) -> Result<Exit, CliError> {
    let probe = |segments: &'static [&'static str]| async move {
        api.probe(segments).await.map_err(|err| match err {
            CliError::Unreachable { cause, .. } | CliError::BadAnswer { cause, .. } => cause,
            other => other.to_string(),
        })
    };
    let health = probe(&["health"]).await;
    let (ready, auth, tools) = if health.is_ok() {
        let (ready, tools) = tokio::join!(probe(&["health", "ready"]), probe(&["health", "tools"]));
        let auth = api
            .send(
                reqwest::Method::GET,
                &["agent", "threads"],
                &[("limit", "1".to_owned())],
                None,
            )
            .await
            .map(|(status, text)| {
                let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
                (status, body)
            })
            .map_err(|err| err.to_string());
        (Some(ready), Some(auth), Some(tools))
    } else {
        (None, None, None)
    };
    let seen = Observations {
        api_url: api.shown_url(),
        has_key: api.has_key(),
        health,
        ready,
        auth,
        tools,
    };
    let report = doctor::diagnose(&seen);
    if json {
        out_pretty(&report.json(&seen));
    } else {
        out(&report.text());
    }
    Ok(match report.verdict {
        Verdict::Ready => Exit::Success,
        Verdict::NotReady => Exit::Failed,
        Verdict::Unreachable => Exit::Unreachable,
    })
}
