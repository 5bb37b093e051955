//! Work that blocks a thread (waiting for the lab's lock, for a process to exit, for a
//! program to finish, reading and writing files) run off the async runtime, so that a lab
//! action never holds up the probes and the other tasks of the process that asked for it.

use crate::error::{Error, Result};

/// Run `work` on the blocking pool and give its result; `what` names it if the pool fails.
pub(crate) async fn run<T, F>(what: &str, work: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Process {
            instance: what.to_string(),
            message: format!("the blocking task failed: {e}"),
        })?
}
