//! An application load: transactions at a fixed rate through a cluster name, as the
//! provider's application user over verified TLS, reconnecting (and resolving the name again)
//! after any error, counting what committed, what certainly did not, and what may have (a
//! COMMIT without an answer, never retried). `dbshift demo` runs it through a blue/green
//! switchover and back; the probe ([`crate::Probe`]) measures, this is the traffic.
//!
//! It writes only its own tables in the `app` schema (`orders`, `events`), which it drops and
//! recreates when it starts.

mod error;
mod transactions;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dbshift_db::server::{ConnectOptions, TlsOptions};
use dbshift_db::Server;
use dbshift_provider::Provider;
use serde::Serialize;
use tokio::sync::watch;

pub use error::LoadError;
use transactions::{run_tx, seed_statements, transaction, Rng, TxEnd};
pub use transactions::{SEED_EVENTS, SEED_ORDERS};

/// What the application load did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadTotals {
    pub rate: f64,
    pub duration_ms: u64,
    /// Transactions whose COMMIT the server acknowledged.
    pub committed: u64,
    /// Multi-statement transactions among them.
    pub committed_multi_statement: u64,
    /// Transactions that certainly did not commit (an error before or on COMMIT, or no
    /// connection).
    pub failed: u64,
    /// Transactions whose COMMIT got no answer: they may or may not have committed, and are
    /// never retried.
    pub indeterminate: u64,
    /// New connections opened after an error (each resolves the cluster name again).
    pub reconnects: u64,
    /// The longest time between two acknowledged commits.
    pub max_commit_gap_ms: u64,
    pub last_error: Option<String>,
}

/// The running load; see the module documentation.
pub struct Load {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<LoadTotals>,
    committed: Arc<AtomicU64>,
}

impl Load {
    /// Create the load's tables (dropping those of an earlier run), seed them, and start
    /// `rate` transactions a second through `cluster`.
    pub async fn start(
        provider: Arc<dyn Provider>,
        cluster: &str,
        rate: f64,
    ) -> Result<Load, LoadError> {
        let opts = load_options(provider.as_ref(), cluster).await?;
        let mut s = Server::connect(&opts)
            .await
            .map_err(|source| LoadError::Connect {
                cluster: cluster.to_string(),
                source,
            })?;
        for stmt in seed_statements() {
            s.exec_sql(&stmt).await.map_err(|source| LoadError::Seed {
                cluster: cluster.to_string(),
                source,
            })?;
        }
        s.close().await;
        let (stop, stop_rx) = watch::channel(false);
        let committed = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run_load(
            provider,
            cluster.to_string(),
            rate,
            stop_rx,
            committed.clone(),
        ));
        Ok(Load {
            stop,
            task,
            committed,
        })
    }

    /// Transactions committed so far.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// Stop after the transaction in flight, and give the totals.
    pub async fn stop(self) -> Result<LoadTotals, LoadError> {
        let _ = self.stop.send(true);
        self.task.await.map_err(|e| LoadError::Task(e.to_string()))
    }
}

/// An error and its sources, `outer: inner: ...`.
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn since_ms(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

/// Where the cluster name points now, as the application user over verified TLS.
async fn load_options(provider: &dyn Provider, cluster: &str) -> Result<ConnectOptions, LoadError> {
    let ep = provider
        .resolve(cluster)
        .await
        .map_err(|source| LoadError::Resolve {
            cluster: cluster.to_string(),
            source,
        })?;
    let creds = provider
        .credentials()
        .map_err(|source| LoadError::Credentials { source })?;
    let mut opts = ConnectOptions::new(ep.host.clone(), ep.port, creds.app.user.clone())
        .password(creds.app.password.clone());
    if let Some(ca) = &creds.ca_bundle {
        opts = opts.tls(TlsOptions {
            ca_path: ca.clone(),
            verify_identity: true,
        });
    }
    Ok(opts.database("app").connect_timeout(Duration::from_secs(2)))
}

async fn run_load(
    provider: Arc<dyn Provider>,
    cluster: String,
    rate: f64,
    mut stop: watch::Receiver<bool>,
    committed: Arc<AtomicU64>,
) -> LoadTotals {
    let started = Instant::now();
    let mut totals = LoadTotals {
        rate,
        ..Default::default()
    };
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    // Behind schedule (a stalled commit), the load carries on at its rate, without a burst.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let mut rng = Rng(seed | 1);
    let mut next_id = SEED_ORDERS + 1;
    let mut conn: Option<Server> = None;
    let mut connected_once = false;
    let mut last_commit = Instant::now();
    let mut k: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
        if conn.is_none() {
            let opened = match load_options(provider.as_ref(), &cluster).await {
                Ok(o) => Server::connect(&o).await.map_err(|e| with_sources(&e)),
                Err(e) => Err(with_sources(&e)),
            };
            match opened {
                Ok(s) => {
                    if connected_once {
                        totals.reconnects += 1;
                    }
                    connected_once = true;
                    conn = Some(s);
                }
                Err(e) => {
                    tracing::info!("load: no connection to {cluster}: {e}");
                    totals.failed += 1;
                    totals.last_error = Some(e);
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let (stmts, multi) = transaction(k, &mut rng, &mut next_id);
        k += 1;
        match run_tx(c, &stmts).await {
            TxEnd::Committed => {
                totals.committed += 1;
                if multi {
                    totals.committed_multi_statement += 1;
                }
                committed.fetch_add(1, Ordering::Relaxed);
                totals.max_commit_gap_ms = totals.max_commit_gap_ms.max(since_ms(last_commit));
                last_commit = Instant::now();
            }
            TxEnd::Failed(e) => {
                tracing::info!("load: transaction failed: {e}");
                totals.failed += 1;
                totals.last_error = Some(e);
                conn = None;
            }
            TxEnd::Indeterminate(e) => {
                tracing::warn!("load: COMMIT outcome unknown (not retried): {e}");
                totals.indeterminate += 1;
                totals.last_error = Some(e);
                conn = None;
            }
        }
    }
    if let Some(c) = conn {
        c.close().await;
    }
    totals.duration_ms = since_ms(started);
    totals
}
