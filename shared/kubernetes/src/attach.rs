//! An [`Attachment`] over a `pods/attach` WebSocket.

use centaur_sandbox::{Attachment, LineSink, SandboxError};
use futures::StreamExt;
use kube::api::AttachedProcess;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, SimplexStream, WriteHalf};
use tokio_stream::wrappers::LinesStream;

/// Wraps an attached process: stdin takes protocol lines, stdout yields them. The process
/// handle travels with the output stream, so the WebSocket lives as long as it is read.
pub fn attachment(mut process: AttachedProcess) -> Result<Attachment, SandboxError> {
    let stdin = process
        .stdin()
        .ok_or_else(|| SandboxError::Io("attach opened without stdin".into()))?;
    let stdout = process
        .stdout()
        .ok_or_else(|| SandboxError::Io("attach opened without stdout".into()))?;
    let lines = LinesStream::new(BufReader::new(stdout).lines());
    let output = futures::stream::unfold((process, lines), |(process, mut lines)| async move {
        let item = lines.next().await?;
        Some((
            item.map_err(|err| SandboxError::Io(format!("reading the pod's stdout: {err}"))),
            (process, lines),
        ))
    })
    .boxed();
    Ok(Attachment {
        input: Box::new(AttachedStdin { stdin }),
        output,
    })
}

/// The writing half: lines go to the pod's stdin over the attach WebSocket.
struct AttachedStdin {
    stdin: WriteHalf<SimplexStream>,
}

#[async_trait::async_trait]
impl LineSink for AttachedStdin {
    async fn send_line(&mut self, line: &str) -> Result<(), SandboxError> {
        let io =
            |err: std::io::Error| SandboxError::Io(format!("writing to the pod's stdin: {err}"));
        self.stdin.write_all(line.as_bytes()).await.map_err(io)?;
        self.stdin.write_all(b"\n").await.map_err(io)?;
        self.stdin.flush().await.map_err(io)
    }
}
