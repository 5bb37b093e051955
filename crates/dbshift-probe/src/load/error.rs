//! The load's error type: what stopped it from starting, each with the provider's or the
//! server's error as its source (a caller maps those to exit codes as it always has).

/// Errors of the application load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The cluster name did not resolve.
    #[error("resolving {cluster}")]
    Resolve {
        cluster: String,
        #[source]
        source: dbshift_provider::Error,
    },
    /// The provider gave no application user.
    #[error("reading the lab's users")]
    Credentials {
        #[source]
        source: dbshift_provider::Error,
    },
    /// The first connection, to create the tables, failed.
    #[error("connecting to {cluster} as the application user")]
    Connect {
        cluster: String,
        #[source]
        source: dbshift_db::Error,
    },
    /// The tables could not be created or seeded.
    #[error("creating the load's tables on {cluster}")]
    Seed {
        cluster: String,
        #[source]
        source: dbshift_db::Error,
    },
    /// The load's task failed (a bug, or the runtime shutting down).
    #[error("the write load's task failed: {0}")]
    Task(String),
}
