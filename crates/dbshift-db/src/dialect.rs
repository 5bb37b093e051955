//! The SQL each flavor needs for the few things dbshift does to a server: read replication and
//! binlog status, point a replica at a source, start and stop replication, wait for a position,
//! fence writes, reload TLS, end a session.
//!
//! Every statement is built here, from a [`Flavor`], as text: MariaDB keeps the `SLAVE` /
//! `MASTER` words, MySQL moved to `REPLICA` (8.0.22) and `SOURCE` (8.0.23) and dropped the old
//! words in 8.4, and RDS and Aurora, which withhold SUPER, only allow replication changes
//! through `mysql.rds_*` procedures. A combination that does not exist is an
//! [`Error::Unsupported`] that says why, never a statement that would fail on the server or,
//! worse, do something else.
//!
//! This module is pure: it never talks to a server. It must never let a password out: each
//! [`Statement`] carries a `redacted` twin with `'***'` in place of the password literal, and
//! `Display` and `Debug` print only that twin. Every string value is quoted by
//! [`quote_literal`]; none is ever pasted into SQL as is.
//!
//! Every statement dbshift sends to a server is built in this module or one of its children,
//! each named for a concern: `lease` (the commit lease), `sessions` (which client sessions to
//! end), `roles` (event scheduler, semi-sync, `sql_log_bin`), `positions` (the replication
//! position API), `snapshot` (a consistent snapshot and a replica run until a position),
//! `checks` (the guards' reads), `rds` (the `mysql.rds_*` procedures with no SQL twin) and
//! `capabilities` (what a server takes by SQL at all).

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::flavor::Flavor;
use crate::gtid::{mariadb, mysql};
use crate::position::BinlogPosition;
use crate::settings::GtidMode;

mod capabilities;
mod checks;
#[cfg(test)]
mod fixtures;
mod lease;
mod positions;
mod rds;
mod roles;
mod sessions;
mod settings;
mod snapshot;
mod topology;

pub use lease::CommitLease;
pub use rds::{parse_binlog_retention_hours, BINLOG_RETENTION_HOURS};
pub use snapshot::{ReplicaThread, SnapshotPlan, SnapshotRead};

/// What a password literal becomes in the redacted form of a statement.
pub const REDACTED: &str = "'***'";

/// A statement to run, with its redacted twin for logs and errors.
#[derive(Clone, PartialEq, Eq)]
pub struct Statement {
    /// The SQL to send to the server. Never log this.
    pub sql: String,
    /// The same SQL with any password literal replaced by `'***'`: safe to log.
    pub redacted: String,
}

impl Statement {
    /// A statement that holds no secret: its redacted form is itself.
    pub fn plain(sql: impl Into<String>) -> Statement {
        let sql = sql.into();
        Statement {
            redacted: sql.clone(),
            sql,
        }
    }

    /// A statement that holds one secret. `build` receives the literal to place where the
    /// secret goes, and is called twice: with the quoted secret for `sql` and with `'***'` for
    /// `redacted`, so the two forms differ only there.
    pub fn with_secret(secret: &str, build: impl Fn(&str) -> String) -> Statement {
        Statement {
            sql: build(&quote_literal(secret)),
            redacted: build(REDACTED),
        }
    }
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Statement").field(&self.redacted).finish()
    }
}

/// A scheduled event: schema, name and definer (`user@host`, as `information_schema.EVENTS`
/// shows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRef {
    pub schema: String,
    pub name: String,
    pub definer: String,
}

/// `ALTER DEFINER=... EVENT ... <action>` (e.g. `ENABLE`, `DISABLE ON SLAVE`). The definer is
/// restated: a plain `ALTER EVENT` makes the altering user the definer, and dbshift's user can
/// write through `read_only`, which would turn a harmless event into one that defeats a fence.
pub fn alter_event(e: &EventRef, action: &str) -> String {
    let definer = match e.definer.rsplit_once('@') {
        Some((user, host)) => format!("{}@{}", quote_literal(user), quote_literal(host)),
        None => quote_literal(&e.definer),
    };
    format!(
        "ALTER DEFINER={definer} EVENT `{}`.`{}` {action}",
        e.schema.replace('`', "``"),
        e.name.replace('`', "``")
    )
}

/// A string as an SQL literal: `'...'`, safe for MySQL and MariaDB with the default
/// `sql_mode`.
///
/// Quotes are doubled (`''`) rather than backslash-escaped, so even under
/// `NO_BACKSLASH_ESCAPES` the literal cannot be closed early (a value holding backslashes would
/// then read back altered, but never escape). Backslash, NUL, newline, carriage return and
/// Ctrl-Z are backslash-escaped as `mysql_real_escape_string` does, so logs and terminals never
/// see them raw. The connection character set is assumed to be utf8mb4 (a multi-byte set
/// like GBK, where a byte of a character can look like a backslash, is not supported).
pub fn quote_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\x1a' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Where a replica should start reading from its new source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceStart {
    /// Continue from what the replica already has: MariaDB `MASTER_USE_GTID=slave_pos`, MySQL
    /// `SOURCE_AUTO_POSITION=1`.
    Gtid,
    /// MariaDB only: set `gtid_slave_pos` to this position, then `MASTER_USE_GTID=slave_pos`.
    GtidAt(mariadb::GtidPos),
    /// A binary log file and offset on the source.
    File(BinlogPosition),
    /// MariaDB 10.10+ only: turn a former primary into a replica, moving its own binlogged
    /// transactions into `gtid_slave_pos` (`MASTER_DEMOTE_TO_SLAVE=1` with
    /// `MASTER_USE_GTID=slave_pos`).
    DemoteToReplica,
}

/// TLS of the replication connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SslSpec {
    /// A CA file on the replica's file system; `None` leaves the replica's setting as it is.
    pub ca_path: Option<String>,
    /// Whether the replica checks the source's certificate and host name.
    pub verify_server_cert: bool,
}

/// Everything needed to point a replica at a source.
#[derive(Clone, PartialEq, Eq)]
pub struct SourceSpec {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The replication user's password. Never printed: `Debug` shows `***`.
    pub password: String,
    pub start: SourceStart,
    /// `None` is a plain-text replication connection (`MASTER_SSL=0`).
    pub ssl: Option<SslSpec>,
    /// Seconds between reconnection attempts; `None` leaves the replica's setting. The
    /// `mysql.rds_*` procedures take no such argument, so it is ignored there.
    pub connect_retry_s: Option<u32>,
    /// Milliseconds between the source's heartbeats to the replica when it has nothing else
    /// to send (`MASTER_HEARTBEAT_PERIOD`); `None` leaves the server's default (half of
    /// `slave_net_timeout`). dbshift sets [`HEARTBEAT_PERIOD_MS`] so that a replica that
    /// hears nothing for a few periods shows a hung or cut-off source quickly. Ignored by the
    /// `mysql.rds_*` procedures.
    pub heartbeat_period_ms: Option<u32>,
}

/// The heartbeat period dbshift gives the replicas it points (see
/// [`SourceSpec::heartbeat_period_ms`]).
pub const HEARTBEAT_PERIOD_MS: u32 = 500;

impl fmt::Debug for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceSpec")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"***")
            .field("start", &self.start)
            .field("ssl", &self.ssl)
            .field("connect_retry_s", &self.connect_retry_s)
            .field("heartbeat_period_ms", &self.heartbeat_period_ms)
            .finish()
    }
}

/// Where a MySQL `START REPLICA ... UNTIL` stops relative to a GTID set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// `SQL_BEFORE_GTIDS`: stop before the first transaction of the set.
    BeforeGtids,
    /// `SQL_AFTER_GTIDS`: stop once every transaction of the set has been applied.
    AfterGtids,
}

/// The SQL of one flavor (and, on MySQL, of one GTID mode).
#[derive(Clone, Debug)]
pub struct Dialect {
    flavor: Flavor,
    /// MySQL `@@gtid_mode`, when known ([`Dialect::with_gtid_mode`]). Unknown is taken as
    /// `ON`, as dbshift always did: [`crate::Server`] reads it at connect time.
    gtid_mode: Option<GtidMode>,
}

impl Dialect {
    /// The dialect of `flavor`, its GTID mode unknown (on MySQL, positions are GTID sets).
    pub fn new(flavor: Flavor) -> Dialect {
        Dialect {
            flavor,
            gtid_mode: None,
        }
    }

    /// The same dialect for a server whose `@@gtid_mode` is `mode` (MySQL; ignored on
    /// MariaDB, which has no such variable).
    pub fn with_gtid_mode(mut self, mode: Option<GtidMode>) -> Dialect {
        self.gtid_mode = mode.filter(|_| self.flavor.is_mysql());
        self
    }

    pub fn flavor(&self) -> &Flavor {
        &self.flavor
    }

    /// The server's `@@gtid_mode`, when known (MySQL only).
    pub fn gtid_mode(&self) -> Option<GtidMode> {
        self.gtid_mode
    }

    /// Whether this server's replication positions are binary log coordinates rather than
    /// GTIDs: MySQL whose `gtid_mode` is known and not `ON` (MySQL 5.7 sources without GTIDs,
    /// RDS for MySQL by default). See [`crate::ReplicationPosition::Binlog`].
    pub fn uses_binlog_positions(&self) -> bool {
        self.flavor.is_mysql() && self.gtid_mode.is_some_and(|m| !m.gtid_positions())
    }

    fn unsupported(&self, what: impl Into<String>) -> Error {
        Error::Unsupported {
            flavor: self.flavor.to_string(),
            what: what.into(),
        }
    }

    /// `SLAVE` or `REPLICA` in START/STOP/RESET/SHOW.
    fn replica_word(&self) -> &'static str {
        if self.flavor.uses_replica_keywords() {
            "REPLICA"
        } else {
            "SLAVE"
        }
    }

    /// The replication status of the (default) replication channel or connection.
    pub fn show_replica_status(&self) -> Statement {
        if self.flavor.needs_rds_replica_status() {
            return Statement::plain("CALL mysql.rds_replica_status");
        }
        Statement::plain(format!("SHOW {} STATUS", self.replica_word()))
    }

    /// The current binary log file and position (and on MySQL, `Executed_Gtid_Set`).
    pub fn show_binlog_status(&self) -> Statement {
        if self.flavor.has_binary_log_status() {
            Statement::plain("SHOW BINARY LOG STATUS")
        } else {
            Statement::plain("SHOW MASTER STATUS")
        }
    }

    /// Stop both replication threads. Stopping a stopped replica is a warning, not an error.
    pub fn stop_replica(&self) -> Statement {
        if self.flavor.needs_rds_procedures() {
            return Statement::plain("CALL mysql.rds_stop_replication");
        }
        Statement::plain(format!("STOP {}", self.replica_word()))
    }

    /// Start both replication threads.
    pub fn start_replica(&self) -> Statement {
        if self.flavor.needs_rds_procedures() {
            return Statement::plain("CALL mysql.rds_start_replication");
        }
        Statement::plain(format!("START {}", self.replica_word()))
    }

    /// Forget the source entirely. Replication must be stopped first.
    pub fn reset_replica_all(&self) -> Statement {
        if self.flavor.uses_rds_source_procedures() {
            return Statement::plain("CALL mysql.rds_reset_external_source");
        }
        if self.flavor.needs_rds_procedures() {
            return Statement::plain("CALL mysql.rds_reset_external_master");
        }
        Statement::plain(format!("RESET {} ALL", self.replica_word()))
    }

    /// The whole sequence that points this server's replication at `spec` and starts it:
    /// stop, (MariaDB `GtidAt`: set `gtid_slave_pos`), change the source, start.
    ///
    /// Options the spec leaves out keep the replica's current value, except TLS, which is
    /// always set: `MASTER_SSL` and the certificate check are never inherited from an earlier
    /// source. Without TLS, MySQL 8 also gets `GET_SOURCE_PUBLIC_KEY=1`, without which a
    /// `caching_sha2_password` replication user cannot log in over plain text.
    pub fn point_replica_at(&self, spec: &SourceSpec) -> Result<Vec<Statement>> {
        if spec.host.trim().is_empty() {
            return Err(Error::parse(
                "replication source",
                &spec.host,
                "the host is empty",
            ));
        }
        if self.flavor.needs_rds_procedures() {
            self.point_replica_at_rds(spec)
        } else if self.flavor.is_mariadb() {
            self.point_mariadb_replica_at(spec)
        } else {
            self.point_mysql_replica_at(spec)
        }
    }

    fn point_mariadb_replica_at(&self, spec: &SourceSpec) -> Result<Vec<Statement>> {
        let mut out = vec![self.stop_replica()];
        let mut position = Vec::new();
        let mut last = Vec::new();
        match &spec.start {
            SourceStart::Gtid => position.push("MASTER_USE_GTID=slave_pos".to_string()),
            SourceStart::GtidAt(pos) => {
                // Only settable while replication is stopped, hence after the stop above.
                out.push(Statement::plain(format!(
                    "SET GLOBAL gtid_slave_pos={}",
                    quote_literal(&pos.to_string())
                )));
                position.push("MASTER_USE_GTID=slave_pos".to_string());
            }
            SourceStart::File(at) => {
                // Explicitly off: since 10.10 a replica defaults to slave_pos, which would
                // ignore the file and offset.
                position.push(format!("MASTER_LOG_FILE={}", quote_literal(&at.file)));
                position.push(format!("MASTER_LOG_POS={}", at.pos));
                position.push("MASTER_USE_GTID=no".to_string());
            }
            SourceStart::DemoteToReplica => {
                if !self.flavor.has_demote_to_slave() {
                    return Err(self.unsupported("MASTER_DEMOTE_TO_SLAVE (MariaDB 10.10 or later)"));
                }
                position.push("MASTER_USE_GTID=slave_pos".to_string());
                last.push("MASTER_DEMOTE_TO_SLAVE=1".to_string());
            }
        }
        out.push(self.change_source(spec, "CHANGE MASTER TO", "MASTER", position, last));
        out.push(self.start_replica());
        Ok(out)
    }

    fn point_mysql_replica_at(&self, spec: &SourceSpec) -> Result<Vec<Statement>> {
        let (verb, prefix) = if self.flavor.uses_change_replication_source() {
            ("CHANGE REPLICATION SOURCE TO", "SOURCE")
        } else {
            ("CHANGE MASTER TO", "MASTER")
        };
        let position = match &spec.start {
            SourceStart::Gtid => vec![format!("{prefix}_AUTO_POSITION=1")],
            SourceStart::File(at) => vec![
                // Auto-position must be off in the same statement, or MySQL refuses the file.
                format!("{prefix}_AUTO_POSITION=0"),
                format!("{prefix}_LOG_FILE={}", quote_literal(&at.file)),
                format!("{prefix}_LOG_POS={}", at.pos),
            ],
            SourceStart::GtidAt(_) => {
                return Err(self.unsupported(
                    "starting at a MariaDB GTID position (a MySQL replica starts from its own \
                     gtid_executed with auto-position)",
                ))
            }
            SourceStart::DemoteToReplica => {
                return Err(self.unsupported("MASTER_DEMOTE_TO_SLAVE (a MariaDB 10.10+ option)"))
            }
        };
        Ok(vec![
            self.stop_replica(),
            self.change_source(spec, verb, prefix, position, Vec::new()),
            self.start_replica(),
        ])
    }

    /// `CHANGE MASTER TO` / `CHANGE REPLICATION SOURCE TO` with the options in a fixed order:
    /// connection, position, TLS, retry, then `last`.
    fn change_source(
        &self,
        spec: &SourceSpec,
        verb: &str,
        prefix: &str,
        position: Vec<String>,
        last: Vec<String>,
    ) -> Statement {
        let mut rest = position;
        match &spec.ssl {
            None => {
                rest.push(format!("{prefix}_SSL=0"));
                if self.flavor.has_get_public_key() {
                    rest.push(format!("GET_{prefix}_PUBLIC_KEY=1"));
                }
            }
            Some(ssl) => {
                rest.push(format!("{prefix}_SSL=1"));
                if let Some(ca) = &ssl.ca_path {
                    rest.push(format!("{prefix}_SSL_CA={}", quote_literal(ca)));
                }
                rest.push(format!(
                    "{prefix}_SSL_VERIFY_SERVER_CERT={}",
                    u8::from(ssl.verify_server_cert)
                ));
            }
        }
        if let Some(retry) = spec.connect_retry_s {
            rest.push(format!("{prefix}_CONNECT_RETRY={retry}"));
        }
        if let Some(ms) = spec.heartbeat_period_ms {
            rest.push(format!(
                "{prefix}_HEARTBEAT_PERIOD={}.{:03}",
                ms / 1000,
                ms % 1000
            ));
        }
        rest.extend(last);
        let rest = rest.join(", ");
        let host = quote_literal(&spec.host);
        let user = quote_literal(&spec.user);
        let port = spec.port;
        Statement::with_secret(&spec.password, |password| {
            format!(
                "{verb} {prefix}_HOST={host}, {prefix}_PORT={port}, {prefix}_USER={user}, \
                 {prefix}_PASSWORD={password}, {rest}"
            )
        })
    }

    fn point_replica_at_rds(&self, spec: &SourceSpec) -> Result<Vec<Statement>> {
        let ssl_encryption = match &spec.ssl {
            None => 0,
            Some(ssl) => {
                if ssl.ca_path.is_some() {
                    return Err(self.unsupported(
                        "a replication CA file through the mysql.rds_* procedures (import the \
                         CA with mysql.rds_import_binlog_ssl_material instead)",
                    ));
                }
                if ssl.verify_server_cert {
                    return Err(self.unsupported(
                        "verifying the source's certificate through the mysql.rds_* procedures \
                         (they always set MASTER_SSL_VERIFY_SERVER_CERT=0)",
                    ));
                }
                1
            }
        };
        let host = quote_literal(&spec.host);
        let user = quote_literal(&spec.user);
        let port = spec.port;
        let word = if self.flavor.uses_rds_source_procedures() {
            "source"
        } else {
            "master"
        };
        let call =
            match &spec.start {
                SourceStart::File(at) => {
                    let file = quote_literal(&at.file);
                    let offset = at.pos;
                    Statement::with_secret(&spec.password, |password| {
                        format!(
                        "CALL mysql.rds_set_external_{word}({host}, {port}, {user}, {password}, \
                         {file}, {offset}, {ssl_encryption})"
                    )
                    })
                }
                SourceStart::Gtid if self.flavor.is_mysql() => {
                    // The last argument is the replication delay in seconds.
                    Statement::with_secret(&spec.password, |password| {
                        format!(
                        "CALL mysql.rds_set_external_{word}_with_auto_position({host}, {port}, \
                         {user}, {password}, {ssl_encryption}, 0)"
                    )
                    })
                }
                SourceStart::Gtid => return Err(self.unsupported(
                    "keeping gtid_slave_pos through mysql.rds_set_external_master_gtid (it needs \
                     an explicit position: read @@gtid_slave_pos and start at it)",
                )),
                SourceStart::GtidAt(pos) if self.flavor.is_mariadb() => {
                    let gtid = quote_literal(&pos.to_string());
                    Statement::with_secret(&spec.password, |password| {
                        format!(
                            "CALL mysql.rds_set_external_master_gtid({host}, {port}, {user}, \
                         {password}, {gtid}, {ssl_encryption})"
                        )
                    })
                }
                SourceStart::GtidAt(_) => {
                    return Err(self.unsupported(
                        "starting at a MariaDB GTID position (a MySQL replica starts from its own \
                     gtid_executed with auto-position)",
                    ))
                }
                SourceStart::DemoteToReplica => {
                    return Err(self
                        .unsupported("MASTER_DEMOTE_TO_SLAVE through the mysql.rds_* procedures"))
                }
            };
        Ok(vec![self.stop_replica(), call, self.start_replica()])
    }

    /// MariaDB: stop replication, then start it to run until `pos` is reached in each of its
    /// domains (both threads stop there). Replication must use GTIDs.
    pub fn start_replica_until_gtid(&self, pos: &mariadb::GtidPos) -> Result<Vec<Statement>> {
        if !self.flavor.is_mariadb() {
            return Err(self.unsupported(
                "START SLAVE UNTIL master_gtid_pos (MariaDB only; MySQL stops at a GTID set)",
            ));
        }
        if self.flavor.needs_rds_procedures() {
            return Err(self.unsupported(
                "START SLAVE UNTIL master_gtid_pos without SUPER (no mysql.rds_* procedure \
                 does it)",
            ));
        }
        // A START SLAVE UNTIL on a running replica is only a warning and the UNTIL is lost,
        // so the stop is part of the sequence.
        Ok(vec![
            self.stop_replica(),
            Statement::plain(format!(
                "START SLAVE UNTIL master_gtid_pos={}",
                quote_literal(&pos.to_string())
            )),
        ])
    }

    /// MySQL: stop the applier, make sure the receiver runs, then start the applier until
    /// `set` (before or after it). With `replica_parallel_workers > 0`, MySQL before 8.3
    /// may refuse `SQL_AFTER_GTIDS`.
    pub fn start_replica_until_gtid_set(
        &self,
        set: &mysql::GtidSet,
        until: Until,
    ) -> Result<Vec<Statement>> {
        if self.flavor.is_mariadb() {
            return Err(self.unsupported(
                "START REPLICA UNTIL SQL_*_GTIDS (MySQL only; MariaDB stops at a GTID position)",
            ));
        }
        let gtids = quote_literal(&set.to_string());
        if self.flavor.needs_rds_procedures() {
            return match until {
                Until::AfterGtids => Ok(vec![
                    self.stop_replica(),
                    Statement::plain(format!(
                        "CALL mysql.rds_start_replication_until_gtid({gtids})"
                    )),
                ]),
                Until::BeforeGtids => Err(self.unsupported(
                    "START REPLICA UNTIL SQL_BEFORE_GTIDS without SUPER (the mysql.rds_* \
                     procedure stops after the GTIDs)",
                )),
            };
        }
        let word = self.replica_word();
        let condition = match until {
            Until::BeforeGtids => "SQL_BEFORE_GTIDS",
            Until::AfterGtids => "SQL_AFTER_GTIDS",
        };
        // A START ... UNTIL on a running applier is only a warning and the UNTIL is lost.
        Ok(vec![
            Statement::plain(format!("STOP {word} SQL_THREAD")),
            Statement::plain(format!("START {word} IO_THREAD")),
            Statement::plain(format!("START {word} SQL_THREAD UNTIL {condition}={gtids}")),
        ])
    }

    /// MariaDB `MASTER_GTID_WAIT`: returns 0 once `gtid_slave_pos` reaches `pos` in each of its
    /// domains, -1 on timeout.
    pub fn wait_for_gtid_mariadb(&self, pos: &mariadb::GtidPos, timeout: Duration) -> Statement {
        Statement::plain(format!(
            "SELECT MASTER_GTID_WAIT({}, {})",
            quote_literal(&pos.to_string()),
            fractional_seconds(timeout)
        ))
    }

    /// MySQL `WAIT_FOR_EXECUTED_GTID_SET`: returns 0 once `gtid_executed` contains `set`, 1 on
    /// timeout.
    pub fn wait_for_gtid_set(&self, set: &mysql::GtidSet, timeout: Duration) -> Statement {
        // MySQL 8.0 reads the timeout as a real number; 5.7 as an integer, where a fraction
        // rounding to 0 would mean "wait forever".
        let timeout = if self.flavor.at_least(8, 0, 0) {
            fractional_seconds(timeout)
        } else {
            whole_seconds(timeout)
        };
        Statement::plain(format!(
            "SELECT WAIT_FOR_EXECUTED_GTID_SET({}, {timeout})",
            quote_literal(&set.to_string())
        ))
    }

    /// `MASTER_POS_WAIT` / `SOURCE_POS_WAIT` (MySQL 8.0.26+): the number of events waited for,
    /// -1 on timeout, NULL when the applier is not running. The timeout is in whole seconds,
    /// rounded up: MariaDB and older MySQL read it as an integer, and 0 means forever.
    pub fn wait_for_position(&self, pos: &BinlogPosition, timeout: Duration) -> Statement {
        let function = if self.flavor.uses_source_pos_wait() {
            "SOURCE_POS_WAIT"
        } else {
            "MASTER_POS_WAIT"
        };
        Statement::plain(format!(
            "SELECT {function}({}, {}, {})",
            quote_literal(&pos.file),
            pos.pos,
            whole_seconds(timeout)
        ))
    }

    /// Turn the server's read-only fence on or off.
    ///
    /// MySQL 5.7.8+ uses `super_read_only`, which also stops users holding SUPER (turning it
    /// on implies `read_only`; turning it off leaves `read_only` on, hence two statements).
    /// MariaDB has only `read_only`. Without SUPER on RDS or Aurora neither can be set from
    /// SQL.
    /// Whether the fence ([`Dialect::set_read_only`]) stops every user, SUPER included: on
    /// MySQL 5.7.8+ it sets `super_read_only`, which "prevents updates even by users who have
    /// the SUPER privilege" (MySQL manual, server system variables, `super_read_only`). Not on
    /// MariaDB (READ ONLY ADMIN writes through `read_only`) nor where the fence is the
    /// platform's parameter (RDS, Aurora).
    pub fn fence_stops_privileged_users(&self) -> bool {
        self.flavor.is_mysql()
            && self.flavor.has_super_read_only()
            && !self.flavor.needs_rds_procedures()
    }

    pub fn set_read_only(&self, on: bool) -> Result<Vec<Statement>> {
        if self.flavor.needs_rds_procedures() {
            return Err(self.unsupported(
                "changing read_only without SUPER (set it in the DB parameter group, or fence \
                 writes at the proxy)",
            ));
        }
        let value = if on { "ON" } else { "OFF" };
        if !self.flavor.has_super_read_only() {
            return Ok(vec![Statement::plain(format!(
                "SET GLOBAL read_only={value}"
            ))]);
        }
        if on {
            Ok(vec![Statement::plain("SET GLOBAL super_read_only=ON")])
        } else {
            Ok(vec![
                Statement::plain("SET GLOBAL super_read_only=OFF"),
                Statement::plain("SET GLOBAL read_only=OFF"),
            ])
        }
    }

    /// The writer's final GTID state: MariaDB `gtid_binlog_pos` and `gtid_binlog_state` (one
    /// row, two columns), MySQL `gtid_executed` (one column).
    pub fn gtid_state_query(&self) -> Statement {
        if self.flavor.is_mariadb() {
            Statement::plain("SELECT @@gtid_binlog_pos, @@gtid_binlog_state")
        } else {
            Statement::plain("SELECT @@GLOBAL.gtid_executed")
        }
    }

    /// Reload the server's TLS certificate and key without a restart.
    ///
    /// On MariaDB always `FLUSH LOCAL SSL`: a plain `FLUSH SSL` is written to the binary log,
    /// replicated, and plants an errant GTID on every replica.
    pub fn flush_ssl(&self) -> Result<Statement> {
        if self.flavor.needs_rds_procedures() {
            return Err(self.unsupported(
                "reloading TLS certificates on RDS or Aurora (AWS manages them: change the CA \
                 through the control plane)",
            ));
        }
        if self.flavor.is_mariadb() {
            if self.flavor.has_flush_ssl() {
                Ok(Statement::plain("FLUSH LOCAL SSL"))
            } else {
                Err(self.unsupported("FLUSH SSL (MariaDB 10.4 or later)"))
            }
        } else if self.flavor.has_reload_tls() {
            Ok(Statement::plain("ALTER INSTANCE RELOAD TLS"))
        } else {
            Err(self.unsupported("ALTER INSTANCE RELOAD TLS (MySQL 8.0.16 or later)"))
        }
    }

    /// End a client session.
    pub fn kill_connection(&self, id: u64) -> Statement {
        if self.flavor.needs_rds_procedures() {
            Statement::plain(format!("CALL mysql.rds_kill({id})"))
        } else {
            Statement::plain(format!("KILL CONNECTION {id}"))
        }
    }

    /// End the statement a session is running, and leave the session.
    pub fn kill_query(&self, id: u64) -> Statement {
        if self.flavor.needs_rds_procedures() {
            Statement::plain(format!("CALL mysql.rds_kill_query({id})"))
        } else {
            Statement::plain(format!("KILL QUERY {id}"))
        }
    }
}

/// Seconds with up to microsecond precision (`1.5`, `30`), never below 1 ms: to the wait
/// functions 0 (or a negative number) means "wait forever".
fn fractional_seconds(d: Duration) -> String {
    let micros = d.as_micros().max(1_000);
    let (secs, frac) = (micros / 1_000_000, micros % 1_000_000);
    if frac == 0 {
        secs.to_string()
    } else {
        let frac = format!("{frac:06}");
        format!("{secs}.{}", frac.trim_end_matches('0'))
    }
}

/// Whole seconds rounded up, at least 1, for functions that read an integer where 0 means
/// "wait forever".
fn whole_seconds(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1).to_string()
}

#[cfg(test)]
mod tests;
