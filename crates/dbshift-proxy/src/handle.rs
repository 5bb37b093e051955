//! The running proxy: [`start`] and the [`ProxyHandle`] it returns, with what it reports
//! (status, metrics). The pause, switch, resume and shutdown of the handle are the control's
//! (`control.rs`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::backend::{self, Backend, Target};
use crate::config::ProxyConfig;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::shared::{pin, tracking_defaults, ClientDefaults, Control, Shared};
use crate::{auth, protocol, session};

/// A running proxy. Cheap to clone; every clone controls the same proxy.
#[derive(Clone)]
pub struct ProxyHandle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) local_addr: SocketAddr,
}

/// One session in [`Status`].
#[derive(Debug, Clone, Serialize)]
pub struct SessionStatus {
    pub id: u32,
    pub user: String,
    pub client: String,
    pub in_transaction: bool,
    pub held: bool,
    pub unmovable: Vec<&'static str>,
}

/// The proxy's state, for `GET /status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub listen: String,
    pub backend: Backend,
    pub paused: bool,
    pub paused_ms: Option<u64>,
    pub generation: u64,
    pub server_version: String,
    pub sessions: Vec<SessionStatus>,
    pub held_connections: u64,
}

/// Start the proxy: read the backend's greeting (its version string is mirrored to clients),
/// bind `cfg.listen` and accept clients in the background.
pub async fn start(cfg: ProxyConfig) -> Result<ProxyHandle> {
    let backend_tls = match &cfg.backend_tls {
        Some(ca) => Some(backend::client_tls_config(ca)?),
        None => None,
    };
    let client_tls = match &cfg.client_tls {
        Some(t) => Some(backend::server_tls_config(&t.cert, &t.key)?),
        None => None,
    };
    let secrets = match &cfg.secrets_file {
        Some(f) => auth::Secrets::load(f)?,
        None => auth::Secrets::default(),
    };
    if cfg.drain_bound.is_zero() || cfg.hold_bound.is_zero() {
        return Err(Error::Config(
            "drain and hold bounds must be positive".into(),
        ));
    }
    let target = Target {
        backend: cfg.backend.clone(),
        tls: backend_tls.clone(),
        connect_timeout: cfg.connect_timeout,
    };
    let greeting = target.greeting().await?;
    let listener = TcpListener::bind(cfg.listen).await?;
    let local_addr = listener.local_addr()?;
    let (control, _) = watch::channel(Control {
        paused: false,
        drain_over: false,
        generation: 1,
        target: Arc::new(target),
        end_pinned: 0,
        shutdown: false,
    });
    let shared = Arc::new(Shared {
        cfg,
        control,
        sessions: Mutex::new(HashMap::new()),
        session_event: Notify::new(),
        metrics: Metrics::default(),
        server_version: greeting.server_version.clone(),
        charset: greeting.charset,
        client_defaults: RwLock::new(ClientDefaults {
            status: greeting.status & protocol::status::AUTOCOMMIT,
            tracking: Default::default(),
        }),
        offer: protocol::offer(&greeting),
        admin_pool: RwLock::new(None),
        client_tls,
        backend_tls,
        // Thread ids the proxy hands out (the greeting's, what `KILL` takes) start far above
        // any server's own counter, at a random place so that several proxies rarely meet.
        next_connection_id: AtomicU32::new(rand::Rng::random_range(
            &mut rand::rng(),
            0x4000_0000..0x6000_0000,
        )),
        claimed_ids: Mutex::new(Default::default()),
        held_connections: AtomicU64::new(0),
        ops: tokio::sync::Mutex::new(()),
        paused_at: Mutex::new(None),
        pause_epoch: AtomicU64::new(0),
        hash_cache: Mutex::new(HashMap::new()),
        secrets,
    });
    *shared.admin_pool.write().unwrap_or_else(|p| p.into_inner()) =
        shared.admin_pool_for(&shared.cfg.backend);
    let defaults = tracking_defaults(shared.admin_pool().as_ref()).await;
    shared
        .client_defaults
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .tracking = defaults;
    tracing::info!(listen = %local_addr, backend = %shared.cfg.backend, "proxy started");
    let acceptor = shared.clone();
    tokio::spawn(async move {
        let mut rx = acceptor.control.subscribe();
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((tcp, peer)) => {
                        let s = acceptor.clone();
                        tokio::spawn(session::run(s, tcp, peer));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                r = rx.changed() => {
                    if r.is_err() || rx.borrow().shutdown {
                        break;
                    }
                }
            }
        }
    });
    Ok(ProxyHandle { shared, local_addr })
}

impl ProxyHandle {
    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The backend commands go to now.
    pub fn backend(&self) -> Backend {
        self.shared.control().target.backend.clone()
    }

    /// Sessions, backend and pause state now.
    pub fn status(&self) -> Status {
        let ctl = self.shared.control();
        let paused_ms = self
            .shared
            .paused_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|t| t.elapsed().as_millis() as u64);
        let mut sessions: Vec<SessionStatus> = self
            .shared
            .sessions()
            .iter()
            .map(|s| SessionStatus {
                id: s.id,
                user: s.user.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                client: s.client.to_string(),
                in_transaction: s.in_trans.load(Relaxed),
                held: s.held.load(Relaxed),
                unmovable: pin::describe(s.unmovable.load(Relaxed)),
            })
            .collect();
        sessions.sort_by_key(|s| s.id);
        Status {
            listen: self.local_addr.to_string(),
            backend: ctl.target.backend.clone(),
            paused: ctl.paused,
            paused_ms,
            generation: ctl.generation,
            server_version: String::from_utf8_lossy(&self.shared.server_version).into_owned(),
            sessions,
            held_connections: self.shared.held_connections.load(Relaxed),
        }
    }

    /// The metrics in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let held = self
            .shared
            .sessions()
            .iter()
            .filter(|s| s.held.load(Relaxed))
            .count()
            + self.shared.held_connections.load(Relaxed) as usize;
        self.shared
            .metrics
            .render(self.shared.control().paused, held)
    }
}
