//! dbshift-proxy: a MySQL-protocol proxy in front of a cluster's writer that holds clients
//! through a switch, so that they see added latency and nothing else.
//!
//! The proxy terminates every client connection (its own handshake, the client checked against
//! the account the server would pick: mysql_native_password by its stored hash, ed25519 by its
//! public key, caching_sha2_password by the password in the secrets file) and opens its own backend connection per client session.
//! It forwards one command at a time and follows each response to its end, so it always knows
//! where the command boundaries are, whether the session is inside a transaction (status
//! flags) and what session state it carries (the server's `session_track_*` reports, prepared
//! statements, and a glance at statement text for what the server does not report).
//!
//! [`ProxyHandle::pause`], [`ProxyHandle::switch`] and [`ProxyHandle::resume`] are the
//! switchover's hooks; [`serve_admin`] exposes them over loopback HTTP with a token. The proxy
//! must never answer a held command with an error, never drop a session it could move, and
//! never log a password, a password hash or the SHA1 of a password. See docs/proxy.md.

pub mod admin;
pub mod auth;
pub mod backend;
mod control;
pub mod error;
mod metrics;
pub mod protocol;
pub mod response;
mod session;
pub mod sql;
pub mod tracking;
mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

pub use admin::serve_admin;
pub use auth::AuthSource;
pub use backend::Backend;
pub use control::{PauseReport, ResumeReport, SwitchReport};
pub use error::{Error, Result};

use backend::Target;
pub(crate) use control::Control;
use metrics::Metrics;

/// TLS towards clients: the proxy's certificate chain and key (PEM files).
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Everything the proxy needs. Field by field in docs/proxy.md.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where clients connect (port 0: any free port, see [`ProxyHandle::local_addr`]).
    pub listen: SocketAddr,
    /// The writer the proxy forwards to at start.
    pub backend: Backend,
    /// CA bundle (PEM) the backend's certificate must verify against, host name included.
    /// `None`: plain TCP to the backend.
    pub backend_tls: Option<PathBuf>,
    /// TLS offered to clients. `None`: clients connect in plain TCP.
    pub client_tls: Option<ClientTls>,
    /// Where the stored password hashes come from.
    pub auth: AuthSource,
    /// A file of `user = "password"` lines (TOML, mode 0600): the passwords of the users whose
    /// plugin needs one towards the server (ed25519, caching_sha2_password), and of users a
    /// caching_sha2_password client may log in as. `None`: mysql_native_password only.
    pub secrets_file: Option<PathBuf>,
    /// How long a switch waits for sessions with state that cannot move (and, when no bound
    /// is given, how long a pause lets open transactions finish).
    pub drain_bound: Duration,
    /// The longest the proxy stays paused: past it, it resumes by itself on the backend it
    /// has, so that a switchover that died cannot hold clients forever.
    pub hold_bound: Duration,
    /// TCP connect and greeting timeout towards backends.
    pub connect_timeout: Duration,
}

impl ProxyConfig {
    /// A configuration with the usual bounds (drain 5 s, hold 30 s, connect 5 s).
    pub fn new(listen: SocketAddr, backend: Backend, auth: AuthSource) -> ProxyConfig {
        ProxyConfig {
            listen,
            backend,
            backend_tls: None,
            client_tls: None,
            auth,
            secrets_file: None,
            drain_bound: Duration::from_secs(5),
            hold_bound: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a session cannot be moved right now (bits of [`SessionInfo::unmovable`]).
pub(crate) mod pin {
    pub const TEMP_TABLES: u32 = 1;
    pub const USER_LOCKS: u32 = 1 << 1;
    pub const CURSORS: u32 = 1 << 2;
    pub const LOCK_TABLES: u32 = 1 << 3;
    pub const LONG_DATA: u32 = 1 << 4;

    pub fn describe(bits: u32) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (b, name) in [
            (TEMP_TABLES, "temporary tables"),
            (USER_LOCKS, "GET_LOCK locks"),
            (CURSORS, "open cursors"),
            (LOCK_TABLES, "LOCK TABLES"),
            (LONG_DATA, "unsent long data"),
        ] {
            if bits & b != 0 {
                v.push(name);
            }
        }
        v
    }
}

/// What the control sees of one session; the session task owns everything else.
pub(crate) struct SessionInfo {
    pub id: u32,
    /// The session's user: the login's, then the last successful COM_CHANGE_USER's.
    pub user: Mutex<String>,
    pub client: SocketAddr,
    pub generation: AtomicU64,
    pub in_trans: AtomicBool,
    /// A command is between the client and the backend.
    pub busy: AtomicBool,
    pub held: AtomicBool,
    pub unmovable: AtomicU32,
    /// The server's id of the session's backend connection now (it changes with a switch):
    /// where a `KILL` of the session's own id goes.
    pub backend_thread: AtomicU32,
}

pub(crate) struct Shared {
    pub cfg: ProxyConfig,
    pub control: watch::Sender<Control>,
    pub sessions: Mutex<HashMap<u32, Arc<SessionInfo>>>,
    /// Notified whenever a session changes what the control waits for.
    pub session_event: Notify,
    pub metrics: Metrics,
    pub server_version: Vec<u8>,
    pub charset: u8,
    /// What a client of the current backend starts with: the greeting's status flags (the
    /// server's autocommit) and the server's session tracking defaults.
    pub client_defaults: RwLock<ClientDefaults>,
    /// The capabilities offered to clients (basic, MariaDB extended), from the backend's
    /// greeting at start: see [`protocol::offer`].
    pub offer: (u32, u32),
    pub admin_pool: RwLock<Option<mysql_async::Pool>>,
    pub client_tls: Option<Arc<rustls::ServerConfig>>,
    pub backend_tls: Option<Arc<rustls::ClientConfig>>,
    pub next_connection_id: AtomicU32,
    /// The ids given in greetings of live connections (unique across this proxy's sessions).
    pub claimed_ids: Mutex<std::collections::HashSet<u32>>,
    /// Connections held before their handshake.
    pub held_connections: AtomicU64,
    pub ops: tokio::sync::Mutex<()>,
    pub paused_at: Mutex<Option<Instant>>,
    pub pause_epoch: AtomicU64,
    /// The accounts (stored hashes and keys) by user, with when they were read: a storm of
    /// reconnections (after a switch) costs the backend one lookup per user, not one per login.
    /// A hash is not a login secret (the server stores it); a refused password re-reads it once.
    pub hash_cache: Mutex<HashMap<String, (Instant, Vec<auth::StoredCredential>)>>,
    /// Passwords from `cfg.secrets_file` (read once at start).
    pub secrets: auth::Secrets,
}

/// A greeting id held by a live connection (see [`Shared::claim_id`]).
pub(crate) struct IdClaim {
    shared: Arc<Shared>,
    pub id: u32,
}

impl Drop for IdClaim {
    fn drop(&mut self) {
        self.shared
            .claimed_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// What a new client session starts with, as on a direct connection to the current backend.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientDefaults {
    pub status: u16,
    pub tracking: tracking::ClientTracking,
}

/// The server's session tracking defaults, read with the admin credential; MariaDB's own
/// defaults when there is none or the server does not answer.
async fn tracking_defaults(pool: Option<&mysql_async::Pool>) -> tracking::ClientTracking {
    let Some(pool) = pool else {
        return tracking::ClientTracking::default();
    };
    let read = async {
        let mut c = pool.get_conn().await?;
        mysql_async::prelude::Queryable::query_first::<(Vec<u8>, Vec<u8>), _>(
            &mut c,
            tracking::DEFAULTS_SQL,
        )
        .await
    };
    match tokio::time::timeout(Duration::from_secs(5), read).await {
        Ok(Ok(Some((schema, vars)))) => tracking::ClientTracking::parse(&schema, &vars),
        Ok(Ok(None)) => tracking::ClientTracking::default(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the server's session tracking defaults; using MariaDB's");
            tracking::ClientTracking::default()
        }
        Err(_) => {
            tracing::warn!(
                "the server's session tracking defaults were not read in time; using MariaDB's"
            );
            tracking::ClientTracking::default()
        }
    }
}

/// How long a stored hash read from the backend is reused.
pub(crate) const HASH_CACHE_TTL: Duration = Duration::from_secs(60);

impl Shared {
    pub fn control(&self) -> Control {
        self.control.borrow().clone()
    }

    fn sessions(&self) -> Vec<Arc<SessionInfo>> {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The accounts that may match the user (its rows and the anonymous ones), from the cache
    /// while fresh (`fresh_only`: never the cache), else read from the backend within twice the
    /// connect timeout (a hung writer gives an error, not a hang).
    pub(crate) async fn stored_credentials(
        &self,
        user: &str,
        fresh_only: bool,
    ) -> Result<(Vec<auth::StoredCredential>, bool)> {
        if !fresh_only {
            let cache = self.hash_cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, creds)) = cache.get(user) {
                if at.elapsed() < HASH_CACHE_TTL {
                    return Ok((creds.clone(), true));
                }
            }
        }
        let bound = self.cfg.connect_timeout * 2;
        let pool = self.admin_pool();
        Metrics::inc(&self.metrics.auth_lookups_total);
        let creds = tokio::time::timeout(bound, auth::lookup(&self.cfg.auth, pool.as_ref(), user))
            .await
            .unwrap_or_else(|_| {
                Err(Error::AuthSource(format!(
                    "the writer did not answer within {bound:?}; retry later"
                )))
            })?;
        self.hash_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user.to_string(), (Instant::now(), creds.clone()));
        Ok((creds, false))
    }

    /// The id to greet a new connection with: `wanted` (its backend connection's own id, so
    /// that `CONNECTION_ID()` agrees) unless another live session has it, else one of the
    /// proxy's own (counted from far above any server's counter). Released when the claim is
    /// dropped.
    pub(crate) fn claim_id(self: &Arc<Self>, wanted: Option<u32>) -> IdClaim {
        let mut claimed = self.claimed_ids.lock().unwrap_or_else(|p| p.into_inner());
        let id = match wanted.filter(|w| *w != 0 && !claimed.contains(w)) {
            Some(w) => w,
            None => loop {
                let n = self.next_connection_id.fetch_add(1, Relaxed);
                if n != 0 && !claimed.contains(&n) {
                    break n;
                }
            },
        };
        claimed.insert(id);
        IdClaim {
            shared: self.clone(),
            id,
        }
    }

    /// Where a `KILL n` from a client goes: the backend connection of the proxy session
    /// whose id (the greeting's) is `n`, or `n` itself when it is the backend id of one of this
    /// proxy's sessions (`CONNECTION_ID()` says that one). `None`: no session of this proxy,
    /// which the proxy refuses rather than kill a bystander whose server id happens to be `n`.
    pub(crate) fn kill_target(&self, n: u64) -> Option<u32> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let n32 = u32::try_from(n).ok()?;
        if let Some(s) = sessions.get(&n32) {
            return Some(s.backend_thread.load(Relaxed));
        }
        sessions
            .values()
            .any(|s| s.backend_thread.load(Relaxed) == n32)
            .then_some(n32)
    }

    pub(crate) fn admin_pool(&self) -> Option<mysql_async::Pool> {
        self.admin_pool
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn make_target(&self, backend: Backend) -> Target {
        Target {
            backend,
            tls: self.backend_tls.clone(),
            connect_timeout: self.cfg.connect_timeout,
        }
    }

    fn admin_pool_for(&self, backend: &Backend) -> Option<mysql_async::Pool> {
        let AuthSource::Admin { user, password } = &self.cfg.auth else {
            return None;
        };
        let mut opts = dbshift_db::ConnectOptions::new(&backend.host, backend.port, user)
            .password(password.clone())
            .connect_timeout(self.cfg.connect_timeout);
        if let Some(ca) = &self.cfg.backend_tls {
            opts = opts.tls(dbshift_db::server::TlsOptions {
                ca_path: ca.clone(),
                verify_identity: true,
            });
        }
        let constraints = mysql_async::PoolConstraints::new(0, 4).expect("0 <= 4");
        let pool_opts = mysql_async::PoolOpts::default()
            .with_constraints(constraints)
            .with_inactive_connection_ttl(Duration::from_secs(60));
        let o = mysql_async::OptsBuilder::from_opts(opts.to_opts()).pool_opts(pool_opts);
        Some(mysql_async::Pool::new(o))
    }
}

/// A running proxy. Cheap to clone; every clone controls the same proxy.
#[derive(Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
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
