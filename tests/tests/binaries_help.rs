//! Every binary the images ship answers `--help` (and refuses an unknown argument) without
//! starting anything: no database, no network, no environment.
#![allow(clippy::unwrap_used)]

use centaur_tests::binaries::binary;
use std::path::Path;
use std::process::{Command, Stdio};

/// Every binary of the workspace: each function crate, the merged api, the dispatcher, the
/// sandbox program and the `centaur` CLI.
fn every_binary() -> Vec<String> {
    let functions = Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions");
    let mut names: Vec<String> = std::fs::read_dir(functions)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.extend(["dispatcher", "sandbox", "centaur"].map(str::to_owned));
    names.sort();
    names
}

fn run_bare(name: &str, args: &[&str]) -> std::process::Output {
    Command::new(binary(name))
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn every_binary_answers_help_without_starting() {
    for name in every_binary() {
        let output = run_bare(&name, &["--help"]);
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{name} --help: {output:?}");
        assert!(text.contains("Usage:"), "{name} --help printed: {text}");
    }
}

#[test]
fn every_binary_refuses_an_unknown_argument_with_usage() {
    for name in every_binary() {
        let output = run_bare(&name, &["--no-such-flag"]);
        assert_eq!(output.status.code(), Some(2), "{name}: {output:?}");
        let text = String::from_utf8_lossy(&output.stderr);
        assert!(text.contains("Usage:"), "{name}: {text}");
    }
}
