//! The proxy's configuration, documented field by field in docs/proxy.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::AuthSource;
use crate::backend::Backend;

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
