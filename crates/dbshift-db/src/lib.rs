//! dbshift-db: one MySQL-family server over SQL.
//!
//! It knows flavors (MariaDB, MySQL 5.7/8.0/8.4+, Aurora MySQL, RDS without SUPER), their
//! dialects, binlog positions, MySQL GTID sets and MariaDB GTID positions, normalized
//! replication status, and the few operations that change a server's replication role
//! (fences, pointing a replica, waits). It must never know about providers or workflows.
//!
//! Positions are GTIDs wherever the server has them (MariaDB always, MySQL with
//! `gtid_mode=ON`); binary log coordinates ([`ReplicationPosition::Binlog`]) are used only on
//! MySQL whose `gtid_mode` is not `ON`, read at connect time.

pub mod checksum;
pub mod dialect;
pub mod error;
pub mod flavor;
pub mod gtid;
pub mod position;
pub mod replication_position;
pub mod server;
pub mod settings;
pub mod status;
pub mod upgrade;

pub use dialect::{quote_literal, CommitLease, Dialect, ReplicaThread, SourceSpec, Statement};
pub use error::{Cancel, Error, Result};
pub use flavor::Flavor;
pub use gtid::{mariadb, mysql};
pub use position::BinlogPosition;
pub use replication_position::{History, ReplicationPosition, Transactions};
pub use server::{ConnectOptions, Server};
pub use settings::{
    BinlogFormat, EnforceGtidConsistency, GtidMode, ReadOnly, SemiSync, SemiSyncNaming,
};
pub use status::ReplicationStatus;
