//! One attempt of the probe: a write or read on a pooled connection, or a new connection
//! (`SELECT 1`, close), bounded by the timeout from its due time, its failure classified
//! (refused, timed out, TLS), and recorded. A broken connection is dropped and a new one opened
//! to wherever the target resolves then.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

use crate::error::Result;
use crate::record::{Attempt, Kind, Outcome};

use super::Shared;

/// A small pool of connections for one kind; a broken connection is dropped, and a new one is
/// opened to wherever the target resolves then.
pub(super) struct Pool {
    permits: Semaphore,
    idle: Mutex<Vec<(Conn, String)>>,
    backoff: Mutex<Backoff>,
}

#[derive(Default)]
struct Backoff {
    until: Option<Instant>,
    delay: Duration,
    last: Option<(Option<u16>, String)>,
}

const BACKOFF_FIRST: Duration = Duration::from_millis(10);
/// Short, so the end of an outage is seen within this much of the server coming back.
const BACKOFF_MAX: Duration = Duration::from_millis(50);

impl Pool {
    pub(super) fn new(size: usize) -> Pool {
        Pool {
            permits: Semaphore::new(size),
            idle: Mutex::new(Vec::new()),
            backoff: Mutex::new(Backoff::default()),
        }
    }

    fn take_idle(&self) -> Option<(Conn, String)> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn put_back(&self, c: (Conn, String)) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(c);
    }

    /// Open a connection, unless a recent connect failed: then fail at once with that error,
    /// as a client's pool does, instead of hammering a server that is down.
    async fn open(&self, shared: &Shared, deadline: Instant) -> Result<(Conn, String), Failure> {
        {
            let b = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
            if let (Some(until), Some((code, msg))) = (b.until, &b.last) {
                if Instant::now() < until {
                    return Err(Failure::failed(
                        *code,
                        format!("reconnecting (backoff): {msg}"),
                        None,
                    ));
                }
            }
        }
        match connect(shared, deadline).await {
            Ok(c) => {
                *self.backoff.lock().unwrap_or_else(|p| p.into_inner()) = Backoff::default();
                Ok(c)
            }
            Err(f) => {
                let mut b = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
                b.delay = if b.delay.is_zero() {
                    BACKOFF_FIRST
                } else {
                    (b.delay * 2).min(BACKOFF_MAX)
                };
                b.until = Some(Instant::now() + b.delay);
                b.last = Some((f.code, f.message.clone()));
                Err(f)
            }
        }
    }
}

/// Why an attempt did not succeed.
struct Failure {
    outcome: Outcome,
    code: Option<u16>,
    message: String,
    endpoint: Option<String>,
}

impl Failure {
    fn failed(code: Option<u16>, message: String, endpoint: Option<String>) -> Failure {
        Failure {
            outcome: Outcome::Failed,
            code,
            message,
            endpoint,
        }
    }

    fn from_mysql(e: &mysql_async::Error, endpoint: Option<String>) -> Failure {
        let code = match e {
            mysql_async::Error::Server(s) => Some(s.code),
            _ => None,
        };
        Failure::failed(code, e.to_string(), endpoint)
    }
}

/// Resolve the target again and open a connection before `deadline`.
async fn connect(shared: &Shared, deadline: Instant) -> Result<(Conn, String), Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    let opts = shared
        .target
        .resolve(left)
        .await
        .map_err(|e| Failure::failed(None, e.to_string(), None))?;
    let ep = opts.endpoint();
    match tokio::time::timeout_at(deadline, Conn::new(opts.to_opts())).await {
        Ok(Ok(c)) => Ok((c, ep)),
        Ok(Err(e)) => Err(Failure::from_mysql(&e, Some(ep))),
        Err(_) => Err(Failure {
            outcome: Outcome::Timeout,
            code: None,
            message: format!("no connection within {:?}", shared.timeout),
            endpoint: Some(ep),
        }),
    }
}

fn record(
    shared: &Shared,
    tx: &mpsc::UnboundedSender<Attempt>,
    kind: Kind,
    seq: Option<u64>,
    due_at: Instant,
    result: Result<String, Failure>,
) {
    let now = Instant::now();
    let t_ms = shared.ms_since_start(due_at);
    let latency_ms = now.saturating_duration_since(due_at).as_secs_f64() * 1000.0;
    let a = match result {
        Ok(ep) => Attempt {
            kind,
            seq,
            t_ms,
            latency_ms,
            outcome: Outcome::Ok,
            code: None,
            error: None,
            endpoint: Some(ep),
        },
        Err(f) => Attempt {
            kind,
            seq,
            t_ms,
            latency_ms,
            outcome: f.outcome,
            code: f.code,
            error: Some(f.message),
            endpoint: f.endpoint,
        },
    };
    shared.counters.add(kind, a.ok());
    // The collector outlives every attempt task; a send can only fail if it panicked.
    let _ = tx.send(a);
}

/// One write or read on a pooled connection, bounded by the timeout from its due time.
pub(super) async fn pooled(
    shared: Arc<Shared>,
    pool: Arc<Pool>,
    tx: mpsc::UnboundedSender<Attempt>,
    kind: Kind,
    seq: Option<u64>,
    due_at: Instant,
    sql: String,
) {
    let deadline = due_at + shared.timeout;
    let work = async {
        // The semaphore is never closed, so acquire cannot fail.
        let _permit = pool
            .permits
            .acquire()
            .await
            .map_err(|e| Failure::failed(None, e.to_string(), None))?;
        let (mut conn, ep) = match pool.take_idle() {
            Some(c) => c,
            None => pool.open(&shared, deadline).await?,
        };
        match conn.query_drop(sql.as_str()).await {
            Ok(()) => {
                pool.put_back((conn, ep.clone()));
                Ok(ep)
            }
            // The connection is dropped: the next attempt opens a new one to wherever the
            // target points then.
            Err(e) => Err(Failure::from_mysql(&e, Some(ep))),
        }
    };
    let result = match tokio::time::timeout_at(deadline, work).await {
        Ok(r) => r,
        Err(_) => Err(Failure {
            outcome: Outcome::Timeout,
            code: None,
            message: format!("no answer within {:?}", shared.timeout),
            endpoint: None,
        }),
    };
    record(&shared, &tx, kind, seq, due_at, result);
}

/// A new connection, `SELECT 1`, close: what a client that connects per request sees
/// (resolution, TCP, TLS with the chain verified, authentication).
pub(super) async fn new_connection(
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Attempt>,
    due_at: Instant,
) {
    let deadline = due_at + shared.timeout;
    let work = async {
        let (mut conn, ep) = connect(&shared, deadline).await?;
        conn.query_drop("SELECT 1")
            .await
            .map_err(|e| Failure::from_mysql(&e, Some(ep.clone())))?;
        Ok((conn, ep))
    };
    let result = match tokio::time::timeout_at(deadline, work).await {
        Ok(Ok((conn, ep))) => {
            record(&shared, &tx, Kind::Connect, None, due_at, Ok(ep));
            // Closing is not part of what the client waits for.
            let _ = tokio::time::timeout(shared.timeout, conn.disconnect()).await;
            return;
        }
        Ok(Err(f)) => Err(f),
        Err(_) => Err(Failure {
            outcome: Outcome::Timeout,
            code: None,
            message: format!("no connection within {:?}", shared.timeout),
            endpoint: None,
        }),
    };
    record(&shared, &tx, Kind::Connect, None, due_at, result);
}

/// A failed TLS handshake (an untrusted or malformed certificate), as opposed to a server
/// that is not there. mysql_async reports both as I/O errors; the TLS ones carry a rustls error.
pub(super) fn is_tls_error(e: &mysql_async::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<rustls::Error>() {
            return true;
        }
        source = err.source();
    }
    let text = e.to_string();
    text.contains("TLS error") || text.contains("certificate")
}
