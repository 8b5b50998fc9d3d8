//! Waiting for a state, the one way the tests do it: probe until the probe says yes or the
//! timeout passes, then fail saying what was awaited and what was seen last.

use anyhow::anyhow;
use std::future::Future;
use std::time::{Duration, Instant};

/// How long to wait between probes.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// Calls `probe` until it returns `Ok(Some(value))`, and returns that value. `Ok(None)`
/// means "not yet"; an `Err` is remembered (the state may not exist yet) and reported if
/// the timeout passes. The error names `what` was awaited.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match probe().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(err) => last_error = Some(err),
        }
        if Instant::now() >= deadline {
            return Err(match last_error {
                Some(err) => err.context(format!("{what}: not within {timeout:?}")),
                None => anyhow!("{what}: not within {timeout:?}"),
            });
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

/// [`eventually`] for a yes/no probe.
pub async fn until<F, Fut>(timeout: Duration, what: &str, mut probe: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually(timeout, what, || {
        let answer = probe();
        async move { Ok(answer.await.then_some(())) }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn returns_the_first_yes() {
        let calls = AtomicU32::new(0);
        let value = eventually(Duration::from_secs(5), "the third call", || {
            let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Ok((call == 3).then_some(call)) }
        })
        .await
        .expect("reached");
        assert_eq!(value, 3);
    }

    #[tokio::test]
    async fn fails_naming_what_was_awaited_and_the_last_error() {
        let err = eventually::<(), _, _>(
            Duration::from_millis(60),
            "the sandbox to start",
            || async { Err(anyhow!("socket missing")) },
        )
        .await
        .expect_err("times out");
        let text = format!("{err:#}");
        assert!(text.contains("the sandbox to start"), "{text}");
        assert!(text.contains("socket missing"), "{text}");
    }
}
