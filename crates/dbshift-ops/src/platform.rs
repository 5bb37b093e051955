//! `read_only` through the platform, where dbshift's database user has no SUPER (RDS,
//! Aurora): the provider changes it (a DB parameter group on AWS) and the server is polled
//! until it shows the change.
//!
//! RDS applies a dynamic parameter of a parameter group asynchronously: "applied immediately"
//! still means some seconds later, without a reboot ("Modifying parameters in a DB parameter
//! group", https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_WorkingWithParamGroups.Modifying.html).
//! A fence that is trusted the moment the API accepted it is no fence: the server is the truth.

use std::time::{Duration, Instant};

use dbshift_db::Server;
use dbshift_provider::Provider;

use crate::error::{StepError, StepResult};

/// How long a `read_only` change made through the provider may take to show on the server.
pub const PARAMETER_APPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// One read of the server, bounded: a hung server fails the poll instead of holding it.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Set `read_only` of `id` to `on` through the provider, then poll `server` (a connection to
/// `id`) until it reports that value: back-off from 50 ms to 2 s, for at most
/// [`PARAMETER_APPLY_TIMEOUT`].
pub async fn set_read_only(
    provider: &dyn Provider,
    server: &mut Server,
    id: &str,
    on: bool,
) -> StepResult<()> {
    provider.set_read_only(id, on).await.map_err(|e| {
        StepError::from(e).context(format!("setting read_only on {id} through the provider"))
    })?;
    applied(server, id, on, PARAMETER_APPLY_TIMEOUT).await
}

/// Poll until the server's `read_only` is `on`, within `bound`.
pub async fn applied(server: &mut Server, id: &str, on: bool, bound: Duration) -> StepResult<()> {
    let deadline = Instant::now() + bound;
    let mut pause = Duration::from_millis(50);
    loop {
        let now = match tokio::time::timeout(READ_TIMEOUT, server.read_only()).await {
            Ok(r) => {
                r.map_err(|e| StepError::from(e).context(format!("reading read_only of {id}")))?
            }
            Err(_) => {
                return Err(StepError::timeout(format!(
                    "{id} did not answer a read of read_only within {} s",
                    READ_TIMEOUT.as_secs()
                )))
            }
        };
        if now == on {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let what = if on { "read-only" } else { "writable" };
            return Err(StepError::timeout(format!(
                "{id} is not {what} {} s after read_only was changed through the provider; \
                 check the status of its parameter group (the change applies asynchronously)",
                bound.as_secs()
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}
