//! The driver's one polling loop: look, and look again until done, failed
//! or out of time.

use std::time::{Duration, Instant};

/// What one look found.
#[derive(Debug)]
pub enum Look<T> {
    Done(T),
    /// Not yet; the text says how far it got, for the timeout's error.
    NotYet(String),
}

/// Calls `look` every `every` until it is [`Look::Done`] or returns an
/// error (a service that exited, say). After `timeout` it fails with the
/// last [`Look::NotYet`] text.
pub async fn until<T>(
    timeout: Duration,
    every: Duration,
    mut look: impl AsyncFnMut() -> anyhow::Result<Look<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let progress = match look().await? {
            Look::Done(value) => return Ok(value),
            Look::NotYet(progress) => progress,
        };
        anyhow::ensure!(
            Instant::now() < deadline,
            "{progress} (gave up after {timeout:?})"
        );
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn it_looks_until_done() {
        let mut looks = 0;
        let found = until(
            Duration::from_secs(10),
            Duration::from_secs(1),
            async || {
                looks += 1;
                Ok(if looks == 3 {
                    Look::Done(looks)
                } else {
                    Look::NotYet(format!("{looks} looks"))
                })
            },
        )
        .await;
        assert_eq!(found.ok(), Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn it_gives_up_with_the_last_progress() {
        let result: anyhow::Result<()> =
            until(Duration::from_secs(3), Duration::from_secs(1), async || {
                Ok(Look::NotYet("only 2 of 5".to_owned()))
            })
            .await;
        let error = result.expect_err("times out").to_string();
        assert!(error.starts_with("only 2 of 5"), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_ends_it_at_once() {
        let started = tokio::time::Instant::now();
        let result: anyhow::Result<()> = until(
            Duration::from_secs(60),
            Duration::from_secs(1),
            async || anyhow::bail!("the signer exited"),
        )
        .await;
        assert!(result.is_err());
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
