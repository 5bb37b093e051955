//! The proxy's control: pause, switch, resume and shutdown, the hooks a switchover drives
//! (through [`ProxyHandle`] or the admin API). A change is published on the control channel
//! ([`Control`](crate::shared::Control)) and each session acts on it at its next command
//! boundary; these functions wait for the sessions, bounded, and report what they did. They
//! must never answer a held command with an error, nor drop a session that could move.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::handle::ProxyHandle;
use crate::metrics::Metrics;
use crate::shared::{ClientDefaults, SessionInfo, Shared};
use crate::{protocol, tracking};

/// What [`ProxyHandle::pause`] did.
#[derive(Debug, Clone, Serialize)]
pub struct PauseReport {
    /// Sessions open when the pause began.
    pub sessions: usize,
    /// Sessions in a transaction (or running a command) when the pause began.
    pub draining_at_start: usize,
    /// Sessions ended because their transaction was still open at the bound.
    pub ended_in_transaction: usize,
    /// Sessions that hold state that cannot move (temporary tables, GET_LOCK, cursors, LOCK
    /// TABLES); a switch ends them, a resume lets them go on.
    pub unmovable: usize,
    /// How long the drain took.
    pub drain_ms: u64,
}

/// What [`ProxyHandle::switch`] did.
#[derive(Debug, Clone, Serialize)]
pub struct SwitchReport {
    pub from: Backend,
    pub to: Backend,
    /// Sessions re-attached to the new backend.
    pub moved: usize,
    /// Sessions ended (state that cannot move, open transaction, re-attach failure).
    pub ended: usize,
    pub took_ms: u64,
}

/// What [`ProxyHandle::resume`] did.
#[derive(Debug, Clone, Serialize)]
pub struct ResumeReport {
    /// Sessions and connections that were held and are now released.
    pub released: usize,
    pub paused_ms: u64,
}

impl ProxyHandle {
    /// Stop forwarding new commands at statement boundaries; commands that arrive are held,
    /// not answered, and new connections are held before their handshake. Sessions inside a
    /// transaction (or running a command) may go on until they commit or roll back, up to
    /// `bound`; past it they are ended with a clear error. Returns when no session is in a
    /// transaction or running a command any more.
    pub async fn pause(&self, bound: Duration) -> Result<PauseReport> {
        let _op = self.shared.ops.lock().await;
        let started = Instant::now();
        tracing::info!(bound_ms = bound.as_millis() as u64, "pausing the proxy");
        let epoch = self.shared.pause_epoch.fetch_add(1, Relaxed) + 1;
        {
            let mut at = self
                .shared
                .paused_at
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            at.get_or_insert(started);
        }
        self.shared.control.send_modify(|c| {
            c.paused = true;
            c.drain_over = false;
        });
        Metrics::inc(&self.shared.metrics.pauses_total);
        self.arm_hold_watchdog(epoch);
        let draining = |s: &SessionInfo| s.in_trans.load(Relaxed) || s.busy.load(Relaxed);
        let sessions = self.shared.sessions();
        let draining_at_start = sessions.iter().filter(|s| draining(s)).count();
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let notified = self.shared.session_event.notified();
            if !self.shared.sessions().iter().any(|s| draining(s)) {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        let still: Vec<_> = self
            .shared
            .sessions()
            .into_iter()
            .filter(|s| draining(s))
            .collect();
        let ended = still.len();
        if ended > 0 {
            tracing::warn!(
                sessions = ended,
                "transactions still open at the pause bound: ending those sessions"
            );
            self.shared.control.send_modify(|c| c.end_pinned += 1);
            self.wait_gone(&still, Duration::from_secs(2)).await;
        }
        self.shared.control.send_modify(|c| c.drain_over = true);
        let unmovable = self
            .shared
            .sessions()
            .iter()
            .filter(|s| s.unmovable.load(Relaxed) != 0)
            .count();
        let report = PauseReport {
            sessions: sessions.len(),
            draining_at_start,
            ended_in_transaction: ended,
            unmovable,
            drain_ms: started.elapsed().as_millis() as u64,
        };
        tracing::info!(?report, "proxy paused");
        Ok(report)
    }

    fn arm_hold_watchdog(&self, epoch: u64) {
        let shared = self.shared.clone();
        let hold = shared.cfg.hold_bound;
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            if shared.pause_epoch.load(Relaxed) == epoch && shared.control().paused {
                let _op = shared.ops.lock().await;
                if shared.pause_epoch.load(Relaxed) == epoch && shared.control().paused {
                    tracing::warn!(
                        hold_ms = hold.as_millis() as u64,
                        "paused longer than the hold bound: resuming on the current backend"
                    );
                    resume_inner(&shared);
                }
            }
        });
    }

    async fn wait_gone(&self, sessions: &[Arc<SessionInfo>], limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.shared.session_event.notified();
            let any = {
                let live = self
                    .shared
                    .sessions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                sessions.iter().any(|s| live.contains_key(&s.id))
            };
            if !any || tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    /// Re-attach every session to `new_backend`: a new backend connection per session,
    /// authenticated as its user, with its schema, system variables, user variables and
    /// prepared statements replayed, then the old connection closed. Sessions with state that
    /// cannot move are ended with a clear error (at once after a pause's drain, else after
    /// the drain bound). Fails, changing nothing, when the new backend cannot be reached.
    pub async fn switch(&self, new_backend: Backend) -> Result<SwitchReport> {
        let _op = self.shared.ops.lock().await;
        let started = Instant::now();
        let from = self.backend();
        tracing::info!(from = %from, to = %new_backend, "switching the proxy's backend");
        let target = self.shared.make_target(new_backend.clone());
        let greeting = target.greeting().await?;
        let pool = self.shared.admin_pool_for(&new_backend);
        let mut tracking = tracking::ClientTracking::default();
        if let Some(p) = &pool {
            let mut c = p.get_conn().await.map_err(|e| Error::Backend {
                endpoint: new_backend.to_string(),
                message: format!("admin connection: {e}"),
            })?;
            let defaults: Option<(Vec<u8>, Vec<u8>)> =
                mysql_async::prelude::Queryable::query_first(&mut c, tracking::DEFAULTS_SQL)
                    .await
                    .map_err(|e| Error::Backend {
                        endpoint: new_backend.to_string(),
                        message: format!("admin connection: {e}"),
                    })?;
            if let Some((schema, vars)) = defaults {
                tracking = tracking::ClientTracking::parse(&schema, &vars);
            }
        }
        *self
            .shared
            .client_defaults
            .write()
            .unwrap_or_else(|p| p.into_inner()) = ClientDefaults {
            status: greeting.status & protocol::status::AUTOCOMMIT,
            tracking,
        };
        let old_pool = std::mem::replace(
            &mut *self
                .shared
                .admin_pool
                .write()
                .unwrap_or_else(|p| p.into_inner()),
            pool,
        );
        if let Some(p) = old_pool {
            tokio::spawn(async move {
                let _ = p.disconnect().await;
            });
        }
        let mut generation = 0;
        self.shared.control.send_modify(|c| {
            c.generation += 1;
            c.target = Arc::new(target);
            generation = c.generation;
        });
        let before = self.shared.sessions();
        let moved_before = self.shared.metrics.sessions_moved_total.load(Relaxed);
        let ended_before = self.shared.metrics.sessions_ended_total.load(Relaxed);
        let deadline = tokio::time::Instant::now() + self.shared.cfg.drain_bound;
        let pending = |shared: &Shared| {
            shared
                .sessions()
                .into_iter()
                .filter(|s| s.generation.load(Relaxed) != generation)
                .collect::<Vec<_>>()
        };
        loop {
            let notified = self.shared.session_event.notified();
            if pending(&self.shared).is_empty() {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        let left = pending(&self.shared);
        if !left.is_empty() {
            tracing::warn!(
                sessions = left.len(),
                "sessions could not move within the drain bound: ending them"
            );
            self.shared.control.send_modify(|c| c.end_pinned += 1);
            self.wait_gone(&left, Duration::from_secs(2)).await;
        }
        Metrics::inc(&self.shared.metrics.switches_total);
        let report = SwitchReport {
            from,
            to: new_backend,
            moved: (self.shared.metrics.sessions_moved_total.load(Relaxed) - moved_before) as usize,
            ended: ((self.shared.metrics.sessions_ended_total.load(Relaxed) - ended_before)
                as usize)
                .min(before.len()),
            took_ms: started.elapsed().as_millis() as u64,
        };
        tracing::info!(?report, "proxy switched");
        Ok(report)
    }

    /// Release everything held: commands go to the (possibly new) backend.
    pub async fn resume(&self) -> ResumeReport {
        let _op = self.shared.ops.lock().await;
        resume_inner(&self.shared)
    }

    /// Stop accepting, end every session (clients see their connection closed) and close the
    /// admin connections.
    pub async fn shutdown(&self) {
        tracing::info!("proxy shutting down");
        self.shared.control.send_modify(|c| c.shutdown = true);
        let all = self.shared.sessions();
        self.wait_gone(&all, Duration::from_secs(2)).await;
        let pool = self
            .shared
            .admin_pool
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(p) = pool {
            let _ = p.disconnect().await;
        }
    }
}

fn resume_inner(shared: &Shared) -> ResumeReport {
    let held = shared
        .sessions()
        .iter()
        .filter(|s| s.held.load(Relaxed))
        .count()
        + shared.held_connections.load(Relaxed) as usize;
    let paused_ms = shared
        .paused_at
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .map(|t| t.elapsed().as_millis() as u64)
        .unwrap_or(0);
    shared.control.send_modify(|c| {
        c.paused = false;
        c.drain_over = false;
    });
    let report = ResumeReport {
        released: held,
        paused_ms,
    };
    tracing::info!(?report, "proxy resumed");
    report
}
