//! A caller that sends the next turn the moment it reads `turn.done` must never find the
//! sandbox busy: the turn that wrote `turn.done` is over.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

#[test]
fn the_next_turn_sent_right_after_turn_done_is_never_refused_as_busy() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .args(["--harness", "echo"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sandbox");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    for turn in 0..200 {
        let line = serde_json::json!({
            "type": "user", "thread_key": "t", "execution_id": format!("exe_{turn}"),
            "message": {"role": "user", "content": [{"type": "text", "text": format!("turn {turn}")}]},
        });
        writeln!(stdin, "{line}").expect("write");
        stdin.flush().expect("flush");
        loop {
            let mut out = String::new();
            assert!(
                stdout.read_line(&mut out).expect("read") > 0,
                "sandbox exited"
            );
            let event: serde_json::Value = serde_json::from_str(&out).expect("json");
            assert_ne!(event["kind"], "busy", "turn {turn} was refused: {event}");
            if event["type"] == "turn.done" {
                assert_eq!(event["status"], "ok", "{event}");
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
