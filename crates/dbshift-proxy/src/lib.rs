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
//! switchover's hooks; [`serve_admin`] exposes them over loopback HTTP with a token,
//! [`serve_admin_tls`] over HTTPS on any address. The proxy
//! must never answer a held command with an error, never drop a session it could move, and
//! never log a password, a password hash or the SHA1 of a password. See docs/proxy.md.

pub mod admin;
pub mod auth;
pub mod backend;
mod config;
mod control;
pub mod error;
mod handle;
mod metrics;
pub mod protocol;
pub mod response;
mod session;
mod shared;
pub mod sql;
pub mod tracking;
mod wire;

pub use admin::{serve_admin, serve_admin_tls, AdminServer, AdminTls};
pub use auth::AuthSource;
pub use backend::Backend;
pub use config::{ClientTls, ProxyConfig};
pub use control::{PauseReport, ResumeReport, SwitchReport};
pub use error::{Error, Result};
pub use handle::{start, ProxyHandle, SessionStatus, Status};
