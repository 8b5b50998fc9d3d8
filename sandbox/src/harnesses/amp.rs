//! `amp`: `amp --execute <prompt> --stream-json` (Claude Code-compatible stream JSON),
//! resumed with `amp threads continue <thread>`. Sends `Authorization: Bearer $AMP_API_KEY`,
//! in a sandbox the placeholder `AMP_API_KEY` that iron-proxy swaps for ampcode.com.
//!
//! Start-up: amp's settings file (`$AMP_SETTINGS_FILE`, else `~/.config/amp/settings.json`)
//! gets `amp.proxy` = `HTTPS_PROXY` (amp's own proxy setting for every request to the Amp
//! server; its HTTP client also honours `HTTPS_PROXY`) and `amp.dangerouslyAllowAll` (the
//! pod is the sandbox: no confirmation prompts in execute mode). It trusts the proxy's CA
//! through `NODE_EXTRA_CA_CERTS`. The base prompt and the thread's instructions go to the
//! user-level `~/.config/amp/AGENTS.md`; amp reads the repository's own `AGENTS.md` itself.

use super::claude_stream::StreamJsonParser;
use super::cli::{self, CliInvocation};
use super::{HarnessDriver, StartFailure, Turn, TurnContext, TurnEvents, TurnResult};
use crate::prompt;
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The Amp driver.
pub struct AmpDriver;

/// The command line of a turn.
pub fn invocation(turn: &Turn, context: &TurnContext) -> CliInvocation {
    let mut args: Vec<String> = Vec::new();
    if let Some(thread) = &turn.agent_thread_id {
        args.extend(["threads".into(), "continue".into(), thread.clone()]);
    }
    args.extend([
        "--execute".into(),
        cli::prompt(turn),
        "--stream-json".into(),
    ]);
    CliInvocation {
        program: "amp".into(),
        args,
        env: BTreeMap::new(),
        cwd: context.cwd.clone(),
    }
}

/// amp's user configuration directory: `$XDG_CONFIG_HOME/amp`, else `$HOME/.config/amp`.
pub fn config_dir(turn: &Turn) -> Option<PathBuf> {
    turn.env_var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| turn.home().map(|home| home.join(".config")))
        .map(|config| config.join("amp"))
}

/// `settings` with the sandbox's entries: `amp.proxy` (removed without a proxy) and
/// `amp.dangerouslyAllowAll`. Other entries are kept.
pub fn sandbox_settings(settings: Option<Value>, proxy: Option<&str>) -> Value {
    let mut map = match settings {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    match proxy {
        Some(url) => map.insert("amp.proxy".into(), Value::String(url.to_owned())),
        None => map.remove("amp.proxy"),
    };
    map.insert("amp.dangerouslyAllowAll".into(), Value::Bool(true));
    Value::Object(map)
}

fn write_settings(path: &Path, proxy: Option<&str>) -> std::io::Result<()> {
    let existing = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    let settings = sandbox_settings(existing, proxy);
    let text = serde_json::to_string_pretty(&settings).map_err(std::io::Error::other)? + "\n";
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if std::fs::read_to_string(path).ok().as_deref() != Some(text.as_str()) {
        std::fs::write(path, text)?;
    }
    Ok(())
}

#[async_trait]
impl HarnessDriver for AmpDriver {
    fn name(&self) -> &'static str {
        "amp"
    }

    fn cli_program(&self) -> Option<&'static str> {
        Some("amp")
    }

    fn model_host(&self) -> Option<&'static str> {
        Some("ampcode.com")
    }

    async fn start_up(&self, turn: &Turn, context: &TurnContext) -> Result<(), StartFailure> {
        let Some(dir) = config_dir(turn) else {
            return Err(StartFailure::new(
                "amp settings",
                "neither XDG_CONFIG_HOME nor HOME is set",
            ));
        };
        let settings = turn
            .env_var("AMP_SETTINGS_FILE")
            .map_or_else(|| dir.join("settings.json"), PathBuf::from);
        let proxy = turn
            .env_var("HTTPS_PROXY")
            .or_else(|| turn.env_var("https_proxy"));
        write_settings(&settings, proxy.as_deref()).map_err(|err| {
            StartFailure::new("amp settings", format!("{}: {err}", settings.display()))
        })?;
        let agents_md = dir.join("AGENTS.md");
        prompt::install(
            &agents_md,
            context.system_prompt.global_agents_md().as_deref(),
        )
        .map_err(|err| StartFailure::new("amp prompt", format!("{}: {err}", agents_md.display())))
    }

    async fn run_turn(&self, turn: &Turn, events: &TurnEvents) -> TurnResult {
        self.run_in(turn, &TurnContext::default(), events).await
    }

    async fn run_in(&self, turn: &Turn, context: &TurnContext, events: &TurnEvents) -> TurnResult {
        cli::run(
            invocation(turn, context),
            &mut StreamJsonParser,
            turn,
            events,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_proxy_setting_is_added_and_other_settings_kept() {
        let settings = sandbox_settings(
            Some(json!({"amp.notifications.enabled": false, "amp.proxy": "http://old:1"})),
            Some("http://iron-proxy:8080"),
        );
        assert_eq!(settings["amp.proxy"], "http://iron-proxy:8080");
        assert_eq!(settings["amp.notifications.enabled"], false);
        assert_eq!(settings["amp.dangerouslyAllowAll"], true);
        let without = sandbox_settings(Some(settings), None);
        assert!(without.get("amp.proxy").is_none());
        assert_eq!(
            sandbox_settings(Some(json!([1])), None)["amp.dangerouslyAllowAll"],
            true
        );
    }
}
