//! Retry-until-expected, for tests: a check run again and again until it holds or its bound
//! passes, then a failure that shows what was last seen. Tests wait for what they expect this
//! way instead of sleeping for a guessed time and hoping the servers have settled.
//!
//! Nothing here sleeps for a scenario: a sleep that is part of what a test does (a lock held
//! for N ms, a SIGSTOP of a given length) stays a sleep in the test.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

/// The pause between two tries.
const PAUSE: Duration = Duration::from_millis(50);

/// Run `check` until it gives `Ok`, and give that value. `Err` carries what was observed
/// instead; after `timeout` the test fails with `what` and the last observation.
pub async fn eventually<T, E, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    E: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => {
                assert!(
                    started.elapsed() < timeout,
                    "{what}: still not so after {timeout:?}; last seen: {last:#?}"
                );
            }
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// [`eventually`] for synchronous tests (a check that runs the `dbshift` binary, reads a
/// file): the same retries on the calling thread.
pub fn eventually_blocking<T, E, F>(timeout: Duration, what: &str, mut check: F) -> T
where
    E: Debug,
    F: FnMut() -> Result<T, E>,
{
    let started = Instant::now();
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) => {
                assert!(
                    started.elapsed() < timeout,
                    "{what}: still not so after {timeout:?}; last seen: {last:#?}"
                );
            }
        }
        std::thread::sleep(PAUSE);
    }
}

/// `Ok(())` when `cond` holds, else `Err(seen)`: the usual shape of a check given to
/// [`eventually`].
pub fn holds<S>(cond: bool, seen: S) -> Result<(), S> {
    if cond {
        Ok(())
    } else {
        Err(seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn gives_the_first_ok_and_fails_with_the_last_observation() {
        let mut n = 0;
        let v = eventually(Duration::from_secs(5), "three tries", || {
            n += 1;
            let seen = n;
            async move { holds(seen >= 3, seen).map(|()| seen) }
        })
        .await;
        assert_eq!(v, 3);

        let failed = std::panic::catch_unwind(|| {
            eventually_blocking(Duration::from_millis(120), "never", || {
                Err::<(), _>("the value seen last")
            })
        });
        let msg = *failed.unwrap_err().downcast::<String>().unwrap();
        assert!(
            msg.contains("never") && msg.contains("the value seen last"),
            "{msg}"
        );
    }
}
