//! dbshift-ops: the workflows. Each one combines the control plane (`dbshift-provider`) with
//! what the servers themselves say (`dbshift-db`). The inventory, the switchover guards and
//! core; the journal and locks they write are `dbshift-state`'s. This crate must never talk to
//! a platform or a server except through those two layers.

pub mod bluegreen;
pub mod ca_rotate;
pub(crate) mod endpoints;
pub mod error;
pub mod events;
pub mod failover;
pub mod guards;
pub mod inventory;
pub mod platform;
pub mod proxy_admin;
pub mod rejoin;
pub mod rollout;
pub mod runner;
pub mod switchover;
pub mod upgrade_check;
pub mod verify;
pub mod watch;

// The journal and the cluster locks live in the state store; their paths here stay as they were.
pub use dbshift_state::journal;
pub use dbshift_state::lock;

pub use error::{Error, Result, StepError, StepErrorKind, StepResult};

use dbshift_db::server::{ConnectOptions, TlsOptions};
use dbshift_provider::{Credential, Credentials, Endpoint};

/// Connection options for an endpoint with one of the provider's credentials, over TLS
/// verified against the provider's CA bundle when it has one.
pub fn connect_options(creds: &Credentials, who: &Credential, ep: &Endpoint) -> ConnectOptions {
    let mut opts = ConnectOptions::new(ep.host.clone(), ep.port, who.user.clone())
        .password(who.password.clone());
    if let Some(ca) = &creds.ca_bundle {
        opts = opts.tls(TlsOptions {
            ca_path: ca.clone(),
            verify_identity: true,
        });
    }
    opts
}

/// How a replica dbshift points connects to its source `ep`: the provider's replication user,
/// TLS verified against the provider's CA bundle when it has one, a 1 s connect retry and the
/// heartbeat the failover watcher reads. One place for the switchover core, failover and rejoin.
pub(crate) fn replica_source(
    creds: &Credentials,
    ep: &Endpoint,
    start: dbshift_db::dialect::SourceStart,
) -> dbshift_db::dialect::SourceSpec {
    dbshift_db::dialect::SourceSpec {
        host: ep.host.clone(),
        port: ep.port,
        user: creds.replication.user.clone(),
        password: creds.replication.password.clone(),
        start,
        ssl: Some(dbshift_db::dialect::SslSpec {
            ca_path: creds.ca_bundle.as_ref().map(|p| p.display().to_string()),
            verify_server_cert: creds.ca_bundle.is_some(),
        }),
        connect_retry_s: Some(1),
        heartbeat_period_ms: Some(dbshift_db::dialect::HEARTBEAT_PERIOD_MS),
    }
}

/// Whole milliseconds of a duration, as reports and journals keep them.
pub(crate) fn ms(d: std::time::Duration) -> u64 {
    d.as_millis() as u64
}
