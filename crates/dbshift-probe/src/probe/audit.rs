//! The probe's two reads of the server outside the schedules: the preflight before the first
//! attempt (the target takes writes, the probe table exists), and the audit after the last
//! (every acknowledged write read back from wherever the target points then).

use std::collections::HashSet;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::record::Attempt;
use crate::summary::Audit;
use crate::target::TargetResolver;

use super::attempt::is_tls_error;
use super::{ProbeConfig, Shared, PROBE_TABLE};

/// Resolve, connect, check that the target takes writes, create the probe table if missing.
pub(super) async fn preflight(target: &TargetResolver, timeout: Duration) -> Result<()> {
    let connect_timeout = timeout.max(Duration::from_secs(3));
    let opts = target.resolve(connect_timeout).await?;
    let endpoint = opts.endpoint();
    let mut conn = match tokio::time::timeout(connect_timeout, Conn::new(opts.to_opts())).await {
        Ok(Ok(c)) => c,
        Ok(Err(mysql_async::Error::Server(e))) if matches!(e.code, 1044 | 1045 | 1698) => {
            return Err(Error::AccessDenied {
                endpoint,
                user: opts.user.clone(),
                reason: e.message,
            })
        }
        Ok(Err(e)) => {
            let reason = e.to_string();
            return Err(if is_tls_error(&e) {
                Error::Untrusted {
                    target: target.describe(),
                    endpoint,
                    reason,
                }
            } else {
                Error::Unreachable {
                    target: target.describe(),
                    endpoint,
                    reason,
                }
            });
        }
        Err(_) => {
            return Err(Error::Unreachable {
                target: target.describe(),
                endpoint,
                reason: format!("no answer within {connect_timeout:?}"),
            })
        }
    };
    let cannot = |reason: String| Error::CannotWrite {
        endpoint: endpoint.clone(),
        reason,
    };
    let read_only: Option<u8> = conn
        .query_first("SELECT @@read_only")
        .await
        .map_err(|e| cannot(e.to_string()))?;
    if read_only == Some(1) {
        return Err(Error::ReadOnly {
            target: target.describe(),
            endpoint,
        });
    }
    for sql in [
        "CREATE DATABASE IF NOT EXISTS dbshift".to_string(),
        format!(
            "CREATE TABLE IF NOT EXISTS {PROBE_TABLE} (\
             run_id VARCHAR(64) NOT NULL, seq BIGINT UNSIGNED NOT NULL, \
             sent_at DATETIME(6) NOT NULL, PRIMARY KEY (run_id, seq)) ENGINE=InnoDB"
        ),
    ] {
        conn.query_drop(sql.as_str())
            .await
            .map_err(|e| cannot(e.to_string()))?;
    }
    let _ = conn.disconnect().await;
    Ok(())
}

/// Read back every seq of the run from wherever the target points now, retrying while the
/// target is still coming back, then (unless kept) delete the run's rows.
pub(super) async fn audit(shared: &Shared, config: &ProbeConfig, attempts: &[Attempt]) -> Audit {
    let give_up = Instant::now() + config.audit_timeout;
    let mut last_err = String::from("not tried");
    while Instant::now() < give_up {
        match read_back(shared, config).await {
            Ok((endpoint, found)) => return Audit::compare(endpoint, attempts, &found),
            Err(e) => {
                tracing::warn!(error = %e, "probe audit: cannot read back yet; retrying");
                last_err = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    Audit::failed(format!(
        "could not read the probe rows back within {:?}: {last_err}",
        config.audit_timeout
    ))
}

async fn read_back(
    shared: &Shared,
    config: &ProbeConfig,
) -> Result<(String, HashSet<u64>), String> {
    let connect_timeout = config.timeout.max(Duration::from_secs(3));
    let opts = shared
        .target
        .resolve(connect_timeout)
        .await
        .map_err(|e| e.to_string())?;
    let endpoint = opts.endpoint();
    let mut conn = tokio::time::timeout(connect_timeout, Conn::new(opts.to_opts()))
        .await
        .map_err(|_| format!("{endpoint}: no connection within {connect_timeout:?}"))?
        .map_err(|e| format!("{endpoint}: {e}"))?;
    let seqs: Vec<u64> = conn
        .query(format!(
            "SELECT seq FROM {PROBE_TABLE} WHERE run_id='{}'",
            shared.run_id
        ))
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?;
    if !config.keep_rows {
        // In chunks, so a long run's cleanup does not hold one big transaction on a production
        // writer. A failure here leaves rows behind, nothing worse: say so and go on.
        loop {
            let r = conn
                .query_iter(format!(
                    "DELETE FROM {PROBE_TABLE} WHERE run_id='{}' LIMIT 5000",
                    shared.run_id
                ))
                .await;
            match r {
                Ok(res) => {
                    let n = res.affected_rows();
                    drop(res);
                    if n == 0 {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, run_id = %shared.run_id, "could not delete the probe rows; they stay in dbshift.probe");
                    break;
                }
            }
        }
    }
    let _ = conn.disconnect().await;
    Ok((endpoint, seqs.into_iter().collect()))
}
