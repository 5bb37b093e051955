//! What the proxy's tasks share: the configuration and the control channel every session
//! follows ([`Control`]), what the control sees of each session ([`SessionInfo`]), the
//! backend's defaults for new clients, the accounts cache and the greeting ids. It decides
//! nothing: the sessions act on it, the control (pause, switch, resume) changes it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use crate::auth::{self, AuthSource};
use crate::backend::{Backend, Target};
use crate::config::ProxyConfig;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::tracking;

/// What every session follows. Sessions act on a change at their next command boundary
/// (at once when idle).
#[derive(Clone)]
pub(crate) struct Control {
    pub paused: bool,
    /// The pause's bound has passed: sessions with state that cannot move are held too.
    pub drain_over: bool,
    pub generation: u64,
    pub target: Arc<Target>,
    /// Raised to end every session that is still in a transaction (or busy) or that holds
    /// state that cannot move.
    pub end_pinned: u64,
    pub shutdown: bool,
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
pub(crate) async fn tracking_defaults(
    pool: Option<&mysql_async::Pool>,
) -> tracking::ClientTracking {
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

    pub(crate) fn sessions(&self) -> Vec<Arc<SessionInfo>> {
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

    pub(crate) fn make_target(&self, backend: Backend) -> Target {
        Target {
            backend,
            tls: self.backend_tls.clone(),
            connect_timeout: self.cfg.connect_timeout,
        }
    }

    pub(crate) fn admin_pool_for(&self, backend: &Backend) -> Option<mysql_async::Pool> {
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
