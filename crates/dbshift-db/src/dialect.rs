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

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::flavor::Flavor;
use crate::gtid::{mariadb, mysql};
use crate::position::BinlogPosition;

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

/// The SQL of one flavor.
#[derive(Clone, Debug)]
pub struct Dialect {
    flavor: Flavor,
}

impl Dialect {
    pub fn new(flavor: Flavor) -> Dialect {
        Dialect { flavor }
    }

    pub fn flavor(&self) -> &Flavor {
        &self.flavor
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
mod tests {
    #[test]
    fn an_event_is_altered_with_its_own_definer_restated() {
        let e = EventRef {
            schema: "app".into(),
            name: "ti`ck".into(),
            definer: "app@127.0.0.1".into(),
        };
        assert_eq!(
            alter_event(&e, "ENABLE"),
            "ALTER DEFINER='app'@'127.0.0.1' EVENT `app`.`ti``ck` ENABLE"
        );
        let odd = EventRef {
            definer: "o'brien@%".into(),
            ..e
        };
        assert_eq!(
            alter_event(&odd, "DISABLE ON SLAVE"),
            "ALTER DEFINER='o''brien'@'%' EVENT `app`.`ti``ck` DISABLE ON SLAVE"
        );
    }

    use super::*;

    const PW: &str = "hunter2-Secret";

    fn dialect(version: &str, rds: bool, has_super: bool) -> Dialect {
        Dialect::new(Flavor::detect(version, "", None, rds, has_super))
    }

    fn maria_10_6() -> Dialect {
        dialect("10.6.18-MariaDB-log", false, true)
    }
    fn maria_10_11() -> Dialect {
        dialect("10.11.14-MariaDB-0+deb12u2-log", false, true)
    }
    fn maria_11_4() -> Dialect {
        dialect("11.4.2-MariaDB", false, true)
    }
    fn mysql_5_7() -> Dialect {
        dialect("5.7.44-log", false, true)
    }
    fn mysql_8_0_21() -> Dialect {
        dialect("8.0.21", false, true)
    }
    fn mysql_8_0_22() -> Dialect {
        dialect("8.0.22", false, true)
    }
    fn mysql_8_0_23() -> Dialect {
        dialect("8.0.23", false, true)
    }
    fn mysql_8_0_26() -> Dialect {
        dialect("8.0.26", false, true)
    }
    fn mysql_8_4() -> Dialect {
        dialect("8.4.3", false, true)
    }
    fn aurora() -> Dialect {
        Dialect::new(Flavor::detect(
            "8.0.mysql_aurora.3.05.2",
            "Source distribution",
            Some("3.05.2"),
            true,
            false,
        ))
    }
    fn rds_mysql_8_0() -> Dialect {
        dialect("8.0.36", true, false)
    }
    fn rds_mysql_8_4() -> Dialect {
        dialect("8.4.3", true, false)
    }
    fn rds_mariadb() -> Dialect {
        dialect("10.11.8-MariaDB-log", true, false)
    }

    fn all() -> Vec<(&'static str, Dialect)> {
        vec![
            ("mariadb 10.6", maria_10_6()),
            ("mariadb 10.11", maria_10_11()),
            ("mariadb 11.4", maria_11_4()),
            ("mysql 5.7", mysql_5_7()),
            ("mysql 8.0.21", mysql_8_0_21()),
            ("mysql 8.0.22", mysql_8_0_22()),
            ("mysql 8.0.23", mysql_8_0_23()),
            ("mysql 8.0.26", mysql_8_0_26()),
            ("mysql 8.4", mysql_8_4()),
            ("aurora", aurora()),
            ("rds mysql 8.0", rds_mysql_8_0()),
            ("rds mysql 8.4", rds_mysql_8_4()),
            ("rds mariadb", rds_mariadb()),
        ]
    }

    fn spec(start: SourceStart) -> SourceSpec {
        SourceSpec {
            host: "db-1.example".into(),
            port: 3306,
            user: "repl".into(),
            password: PW.into(),
            start,
            ssl: Some(SslSpec {
                ca_path: Some("/etc/mysql/ca.pem".into()),
                verify_server_cert: true,
            }),
            connect_retry_s: Some(10),
            heartbeat_period_ms: None,
        }
    }

    #[test]
    fn the_heartbeat_period_is_set_in_seconds_after_the_retry() {
        let s = SourceSpec {
            heartbeat_period_ms: Some(500),
            ..spec(SourceStart::Gtid)
        };
        let maria = maria_11_4().point_replica_at(&s).unwrap();
        assert!(
            maria[1]
                .sql
                .ends_with("MASTER_CONNECT_RETRY=10, MASTER_HEARTBEAT_PERIOD=0.500"),
            "{}",
            maria[1].sql
        );
        let mysql = mysql_8_4().point_replica_at(&s).unwrap();
        assert!(
            mysql[1].sql.contains("SOURCE_HEARTBEAT_PERIOD=0.500"),
            "{}",
            mysql[1].sql
        );
    }

    fn rds_spec(start: SourceStart) -> SourceSpec {
        SourceSpec {
            ssl: Some(SslSpec::default()),
            connect_retry_s: None,
            ..spec(start)
        }
    }

    fn plain_spec(start: SourceStart) -> SourceSpec {
        SourceSpec {
            ssl: None,
            connect_retry_s: None,
            ..spec(start)
        }
    }

    fn file() -> SourceStart {
        SourceStart::File(BinlogPosition::new("mysql-bin.000042", 1307))
    }

    fn at() -> SourceStart {
        SourceStart::GtidAt("0-1-100,1-2-5".parse().unwrap())
    }

    fn sql(stmts: &[Statement]) -> Vec<&str> {
        stmts.iter().map(|s| s.sql.as_str()).collect()
    }

    fn unsupported<T: fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(e @ Error::Unsupported { .. }) => e.to_string(),
            other => panic!("expected Unsupported, got {other:?}"),
        }
    }

    /// Every statement keeps the password out of its redacted, Display and Debug forms.
    fn assert_redacted(stmts: &[Statement], password: &str) {
        for s in stmts {
            assert!(!s.redacted.contains(password), "{}", s.redacted);
            assert!(!s.to_string().contains(password));
            assert!(!format!("{s:?}").contains(password));
            assert!(!format!("{s:#?}").contains(password));
        }
        assert!(!format!("{stmts:?}").contains(password));
    }

    // ---- status and simple statements ----

    #[test]
    fn show_replica_status_per_flavor() {
        let expect = [
            ("mariadb 10.6", "SHOW SLAVE STATUS"),
            ("mariadb 10.11", "SHOW SLAVE STATUS"),
            ("mariadb 11.4", "SHOW SLAVE STATUS"),
            ("mysql 5.7", "SHOW SLAVE STATUS"),
            ("mysql 8.0.21", "SHOW SLAVE STATUS"),
            ("mysql 8.0.22", "SHOW REPLICA STATUS"),
            ("mysql 8.0.23", "SHOW REPLICA STATUS"),
            ("mysql 8.0.26", "SHOW REPLICA STATUS"),
            ("mysql 8.4", "SHOW REPLICA STATUS"),
            ("aurora", "SHOW REPLICA STATUS"),
            ("rds mysql 8.0", "SHOW REPLICA STATUS"),
            ("rds mysql 8.4", "SHOW REPLICA STATUS"),
            ("rds mariadb", "CALL mysql.rds_replica_status"),
        ];
        for ((name, d), (ename, want)) in all().into_iter().zip(expect) {
            assert_eq!(name, ename);
            assert_eq!(d.show_replica_status().sql, want, "{name}");
        }
        // RDS for MariaDB before 10.5 still allows SHOW SLAVE STATUS.
        assert_eq!(
            dialect("10.4.34-MariaDB-log", true, false)
                .show_replica_status()
                .sql,
            "SHOW SLAVE STATUS"
        );
    }

    #[test]
    fn show_binlog_status_per_flavor() {
        for (name, d) in all() {
            let want = if name == "mysql 8.4" || name == "rds mysql 8.4" {
                "SHOW BINARY LOG STATUS"
            } else {
                "SHOW MASTER STATUS"
            };
            assert_eq!(d.show_binlog_status().sql, want, "{name}");
        }
        assert_eq!(
            dialect("8.2.0", false, true).show_binlog_status().sql,
            "SHOW BINARY LOG STATUS"
        );
        assert_eq!(
            dialect("8.1.0", false, true).show_binlog_status().sql,
            "SHOW MASTER STATUS"
        );
    }

    #[test]
    fn stop_start_reset_per_flavor() {
        let expect = [
            (
                "mariadb 10.6",
                "STOP SLAVE",
                "START SLAVE",
                "RESET SLAVE ALL",
            ),
            (
                "mariadb 10.11",
                "STOP SLAVE",
                "START SLAVE",
                "RESET SLAVE ALL",
            ),
            (
                "mariadb 11.4",
                "STOP SLAVE",
                "START SLAVE",
                "RESET SLAVE ALL",
            ),
            ("mysql 5.7", "STOP SLAVE", "START SLAVE", "RESET SLAVE ALL"),
            (
                "mysql 8.0.21",
                "STOP SLAVE",
                "START SLAVE",
                "RESET SLAVE ALL",
            ),
            (
                "mysql 8.0.22",
                "STOP REPLICA",
                "START REPLICA",
                "RESET REPLICA ALL",
            ),
            (
                "mysql 8.0.23",
                "STOP REPLICA",
                "START REPLICA",
                "RESET REPLICA ALL",
            ),
            (
                "mysql 8.0.26",
                "STOP REPLICA",
                "START REPLICA",
                "RESET REPLICA ALL",
            ),
            (
                "mysql 8.4",
                "STOP REPLICA",
                "START REPLICA",
                "RESET REPLICA ALL",
            ),
            (
                "aurora",
                "CALL mysql.rds_stop_replication",
                "CALL mysql.rds_start_replication",
                "CALL mysql.rds_reset_external_master",
            ),
            (
                "rds mysql 8.0",
                "CALL mysql.rds_stop_replication",
                "CALL mysql.rds_start_replication",
                "CALL mysql.rds_reset_external_master",
            ),
            (
                "rds mysql 8.4",
                "CALL mysql.rds_stop_replication",
                "CALL mysql.rds_start_replication",
                "CALL mysql.rds_reset_external_source",
            ),
            (
                "rds mariadb",
                "CALL mysql.rds_stop_replication",
                "CALL mysql.rds_start_replication",
                "CALL mysql.rds_reset_external_master",
            ),
        ];
        for ((name, d), (ename, stop, start, reset)) in all().into_iter().zip(expect) {
            assert_eq!(name, ename);
            assert_eq!(d.stop_replica().sql, stop, "{name}");
            assert_eq!(d.start_replica().sql, start, "{name}");
            assert_eq!(d.reset_replica_all().sql, reset, "{name}");
        }
    }

    #[test]
    fn gtid_state_query_per_engine() {
        for (name, d) in all() {
            let want = if name.contains("mariadb") {
                "SELECT @@gtid_binlog_pos, @@gtid_binlog_state"
            } else {
                "SELECT @@GLOBAL.gtid_executed"
            };
            assert_eq!(d.gtid_state_query().sql, want, "{name}");
        }
    }

    #[test]
    fn kill_connection_per_flavor() {
        for (name, d) in all() {
            let want = if name.starts_with("rds") || name == "aurora" {
                "CALL mysql.rds_kill(42)"
            } else {
                "KILL CONNECTION 42"
            };
            assert_eq!(d.kill_connection(42).sql, want, "{name}");
        }
    }

    #[test]
    fn kill_query_per_flavor() {
        for (name, d) in all() {
            let want = if name.starts_with("rds") || name == "aurora" {
                "CALL mysql.rds_kill_query(42)"
            } else {
                "KILL QUERY 42"
            };
            assert_eq!(d.kill_query(42).sql, want, "{name}");
        }
    }

    // ---- point_replica_at ----

    #[test]
    fn point_mariadb_with_gtid() {
        for d in [maria_10_6(), maria_10_11(), maria_11_4()] {
            let stmts = d.point_replica_at(&spec(SourceStart::Gtid)).unwrap();
            assert_eq!(
                sql(&stmts),
                [
                    "STOP SLAVE",
                    "CHANGE MASTER TO MASTER_HOST='db-1.example', MASTER_PORT=3306, \
                     MASTER_USER='repl', MASTER_PASSWORD='hunter2-Secret', \
                     MASTER_USE_GTID=slave_pos, MASTER_SSL=1, MASTER_SSL_CA='/etc/mysql/ca.pem', \
                     MASTER_SSL_VERIFY_SERVER_CERT=1, MASTER_CONNECT_RETRY=10",
                    "START SLAVE",
                ]
            );
            assert_eq!(
                stmts[1].redacted,
                "CHANGE MASTER TO MASTER_HOST='db-1.example', MASTER_PORT=3306, \
                 MASTER_USER='repl', MASTER_PASSWORD='***', MASTER_USE_GTID=slave_pos, \
                 MASTER_SSL=1, MASTER_SSL_CA='/etc/mysql/ca.pem', \
                 MASTER_SSL_VERIFY_SERVER_CERT=1, MASTER_CONNECT_RETRY=10"
            );
            assert_redacted(&stmts, PW);
        }
    }

    #[test]
    fn point_mariadb_at_gtid_position() {
        let stmts = maria_10_11().point_replica_at(&plain_spec(at())).unwrap();
        assert_eq!(
            sql(&stmts),
            [
                "STOP SLAVE",
                "SET GLOBAL gtid_slave_pos='0-1-100,1-2-5'",
                "CHANGE MASTER TO MASTER_HOST='db-1.example', MASTER_PORT=3306, \
                 MASTER_USER='repl', MASTER_PASSWORD='hunter2-Secret', \
                 MASTER_USE_GTID=slave_pos, MASTER_SSL=0",
                "START SLAVE",
            ]
        );
        assert_redacted(&stmts, PW);
    }

    #[test]
    fn point_mariadb_at_file() {
        let stmts = maria_11_4().point_replica_at(&plain_spec(file())).unwrap();
        assert_eq!(
            sql(&stmts),
            [
                "STOP SLAVE",
                "CHANGE MASTER TO MASTER_HOST='db-1.example', MASTER_PORT=3306, \
                 MASTER_USER='repl', MASTER_PASSWORD='hunter2-Secret', \
                 MASTER_LOG_FILE='mysql-bin.000042', MASTER_LOG_POS=1307, \
                 MASTER_USE_GTID=no, MASTER_SSL=0",
                "START SLAVE",
            ]
        );
    }

    #[test]
    fn point_mariadb_demote() {
        let stmts = maria_10_11()
            .point_replica_at(&spec(SourceStart::DemoteToReplica))
            .unwrap();
        assert_eq!(
            stmts[1].sql,
            "CHANGE MASTER TO MASTER_HOST='db-1.example', MASTER_PORT=3306, \
             MASTER_USER='repl', MASTER_PASSWORD='hunter2-Secret', MASTER_USE_GTID=slave_pos, \
             MASTER_SSL=1, MASTER_SSL_CA='/etc/mysql/ca.pem', MASTER_SSL_VERIFY_SERVER_CERT=1, \
             MASTER_CONNECT_RETRY=10, MASTER_DEMOTE_TO_SLAVE=1"
        );
        let err = unsupported(maria_10_6().point_replica_at(&spec(SourceStart::DemoteToReplica)));
        assert!(err.contains("MariaDB 10.10"), "{err}");
    }

    #[test]
    fn point_mysql_5_7_and_8_0_21_use_change_master() {
        let stmts = mysql_5_7()
            .point_replica_at(&spec(SourceStart::Gtid))
            .unwrap();
        assert_eq!(
            sql(&stmts),
            [
                "STOP SLAVE",
                "CHANGE MASTER TO MASTER_HOST='db-1.example', MASTER_PORT=3306, \
                 MASTER_USER='repl', MASTER_PASSWORD='hunter2-Secret', MASTER_AUTO_POSITION=1, \
                 MASTER_SSL=1, MASTER_SSL_CA='/etc/mysql/ca.pem', \
                 MASTER_SSL_VERIFY_SERVER_CERT=1, MASTER_CONNECT_RETRY=10",
                "START SLAVE",
            ]
        );
        // No TLS: 5.7 has no GET_MASTER_PUBLIC_KEY.
        let stmts = mysql_5_7().point_replica_at(&plain_spec(file())).unwrap();
        assert_eq!(
            stmts[1].sql,
            "CHANGE MASTER TO MASTER_HOST='db-1.example', MASTER_PORT=3306, MASTER_USER='repl', \
             MASTER_PASSWORD='hunter2-Secret', MASTER_AUTO_POSITION=0, \
             MASTER_LOG_FILE='mysql-bin.000042', MASTER_LOG_POS=1307, MASTER_SSL=0"
        );
        let stmts = mysql_8_0_21()
            .point_replica_at(&plain_spec(file()))
            .unwrap();
        assert_eq!(
            sql(&stmts),
            [
                "STOP SLAVE",
                "CHANGE MASTER TO MASTER_HOST='db-1.example', MASTER_PORT=3306, \
                 MASTER_USER='repl', MASTER_PASSWORD='hunter2-Secret', MASTER_AUTO_POSITION=0, \
                 MASTER_LOG_FILE='mysql-bin.000042', MASTER_LOG_POS=1307, MASTER_SSL=0, \
                 GET_MASTER_PUBLIC_KEY=1",
                "START SLAVE",
            ]
        );
    }

    #[test]
    fn point_mysql_8_0_22_mixes_replica_and_change_master() {
        let stmts = mysql_8_0_22()
            .point_replica_at(&spec(SourceStart::Gtid))
            .unwrap();
        assert_eq!(
            sql(&stmts),
            [
                "STOP REPLICA",
                "CHANGE MASTER TO MASTER_HOST='db-1.example', MASTER_PORT=3306, \
                 MASTER_USER='repl', MASTER_PASSWORD='hunter2-Secret', MASTER_AUTO_POSITION=1, \
                 MASTER_SSL=1, MASTER_SSL_CA='/etc/mysql/ca.pem', \
                 MASTER_SSL_VERIFY_SERVER_CERT=1, MASTER_CONNECT_RETRY=10",
                "START REPLICA",
            ]
        );
    }

    #[test]
    fn point_mysql_8_0_23_and_later_use_change_replication_source() {
        for d in [mysql_8_0_23(), mysql_8_0_26(), mysql_8_4()] {
            let stmts = d.point_replica_at(&spec(SourceStart::Gtid)).unwrap();
            assert_eq!(
                sql(&stmts),
                [
                    "STOP REPLICA",
                    "CHANGE REPLICATION SOURCE TO SOURCE_HOST='db-1.example', SOURCE_PORT=3306, \
                     SOURCE_USER='repl', SOURCE_PASSWORD='hunter2-Secret', \
                     SOURCE_AUTO_POSITION=1, SOURCE_SSL=1, SOURCE_SSL_CA='/etc/mysql/ca.pem', \
                     SOURCE_SSL_VERIFY_SERVER_CERT=1, SOURCE_CONNECT_RETRY=10",
                    "START REPLICA",
                ]
            );
            assert_redacted(&stmts, PW);
            let stmts = d.point_replica_at(&plain_spec(file())).unwrap();
            assert_eq!(
                stmts[1].sql,
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST='db-1.example', SOURCE_PORT=3306, \
                 SOURCE_USER='repl', SOURCE_PASSWORD='hunter2-Secret', SOURCE_AUTO_POSITION=0, \
                 SOURCE_LOG_FILE='mysql-bin.000042', SOURCE_LOG_POS=1307, SOURCE_SSL=0, \
                 GET_SOURCE_PUBLIC_KEY=1"
            );
            assert_eq!(
                stmts[1].redacted,
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST='db-1.example', SOURCE_PORT=3306, \
                 SOURCE_USER='repl', SOURCE_PASSWORD='***', SOURCE_AUTO_POSITION=0, \
                 SOURCE_LOG_FILE='mysql-bin.000042', SOURCE_LOG_POS=1307, SOURCE_SSL=0, \
                 GET_SOURCE_PUBLIC_KEY=1"
            );
        }
        // TLS without a CA file and without verification.
        let mut s = spec(SourceStart::Gtid);
        s.ssl = Some(SslSpec::default());
        s.connect_retry_s = None;
        assert_eq!(
            mysql_8_4().point_replica_at(&s).unwrap()[1].sql,
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST='db-1.example', SOURCE_PORT=3306, \
             SOURCE_USER='repl', SOURCE_PASSWORD='hunter2-Secret', SOURCE_AUTO_POSITION=1, \
             SOURCE_SSL=1, SOURCE_SSL_VERIFY_SERVER_CERT=0"
        );
    }

    #[test]
    fn point_mysql_refuses_mariadb_only_starts() {
        for d in [mysql_5_7(), mysql_8_0_23(), mysql_8_4()] {
            let err = unsupported(d.point_replica_at(&spec(at())));
            assert!(err.contains("MariaDB GTID position"), "{err}");
            let err = unsupported(d.point_replica_at(&spec(SourceStart::DemoteToReplica)));
            assert!(err.contains("MASTER_DEMOTE_TO_SLAVE"), "{err}");
        }
    }

    #[test]
    fn point_rds_mysql_8_0_and_aurora() {
        for d in [rds_mysql_8_0(), aurora()] {
            let stmts = d.point_replica_at(&rds_spec(file())).unwrap();
            assert_eq!(
                sql(&stmts),
                [
                    "CALL mysql.rds_stop_replication",
                    "CALL mysql.rds_set_external_master('db-1.example', 3306, 'repl', \
                     'hunter2-Secret', 'mysql-bin.000042', 1307, 1)",
                    "CALL mysql.rds_start_replication",
                ]
            );
            assert_eq!(
                stmts[1].redacted,
                "CALL mysql.rds_set_external_master('db-1.example', 3306, 'repl', '***', \
                 'mysql-bin.000042', 1307, 1)"
            );
            assert_redacted(&stmts, PW);
            let stmts = d.point_replica_at(&plain_spec(SourceStart::Gtid)).unwrap();
            assert_eq!(
                stmts[1].sql,
                "CALL mysql.rds_set_external_master_with_auto_position('db-1.example', 3306, \
                 'repl', 'hunter2-Secret', 0, 0)"
            );
            assert_redacted(&stmts, PW);
        }
    }

    #[test]
    fn point_rds_mysql_8_4_uses_source_procedures() {
        let d = rds_mysql_8_4();
        let stmts = d.point_replica_at(&rds_spec(SourceStart::Gtid)).unwrap();
        assert_eq!(
            sql(&stmts),
            [
                "CALL mysql.rds_stop_replication",
                "CALL mysql.rds_set_external_source_with_auto_position('db-1.example', 3306, \
                 'repl', 'hunter2-Secret', 1, 0)",
                "CALL mysql.rds_start_replication",
            ]
        );
        let stmts = d.point_replica_at(&rds_spec(file())).unwrap();
        assert_eq!(
            stmts[1].sql,
            "CALL mysql.rds_set_external_source('db-1.example', 3306, 'repl', 'hunter2-Secret', \
             'mysql-bin.000042', 1307, 1)"
        );
        assert_redacted(&stmts, PW);
    }

    #[test]
    fn point_rds_mariadb() {
        let d = rds_mariadb();
        let stmts = d.point_replica_at(&rds_spec(at())).unwrap();
        assert_eq!(
            sql(&stmts),
            [
                "CALL mysql.rds_stop_replication",
                "CALL mysql.rds_set_external_master_gtid('db-1.example', 3306, 'repl', \
                 'hunter2-Secret', '0-1-100,1-2-5', 1)",
                "CALL mysql.rds_start_replication",
            ]
        );
        assert_eq!(
            stmts[1].redacted,
            "CALL mysql.rds_set_external_master_gtid('db-1.example', 3306, 'repl', '***', \
             '0-1-100,1-2-5', 1)"
        );
        let stmts = d.point_replica_at(&plain_spec(file())).unwrap();
        assert_eq!(
            stmts[1].sql,
            "CALL mysql.rds_set_external_master('db-1.example', 3306, 'repl', 'hunter2-Secret', \
             'mysql-bin.000042', 1307, 0)"
        );
        let err = unsupported(d.point_replica_at(&rds_spec(SourceStart::Gtid)));
        assert!(err.contains("explicit position"), "{err}");
        unsupported(d.point_replica_at(&rds_spec(SourceStart::DemoteToReplica)));
    }

    #[test]
    fn point_rds_refuses_what_the_procedures_cannot_do() {
        for d in [rds_mysql_8_0(), rds_mysql_8_4(), aurora(), rds_mariadb()] {
            // A CA file or certificate checks cannot be passed to the procedures.
            let err = unsupported(d.point_replica_at(&spec(file())));
            assert!(err.contains("rds_import_binlog_ssl_material"), "{err}");
            let mut s = rds_spec(file());
            s.ssl = Some(SslSpec {
                ca_path: None,
                verify_server_cert: true,
            });
            let err = unsupported(d.point_replica_at(&s));
            assert!(err.contains("VERIFY_SERVER_CERT"), "{err}");
        }
        for d in [rds_mysql_8_0(), rds_mysql_8_4(), aurora()] {
            unsupported(d.point_replica_at(&rds_spec(at())));
            unsupported(d.point_replica_at(&rds_spec(SourceStart::DemoteToReplica)));
        }
    }

    #[test]
    fn point_refuses_an_empty_host() {
        let mut s = spec(SourceStart::Gtid);
        s.host = "  ".into();
        assert!(matches!(
            mysql_8_4().point_replica_at(&s),
            Err(Error::Parse { .. })
        ));
    }

    // ---- until, waits, fences, TLS ----

    #[test]
    fn start_until_mariadb_position() {
        let pos: mariadb::GtidPos = "0-1-100".parse().unwrap();
        for d in [maria_10_6(), maria_10_11(), maria_11_4()] {
            assert_eq!(
                sql(&d.start_replica_until_gtid(&pos).unwrap()),
                ["STOP SLAVE", "START SLAVE UNTIL master_gtid_pos='0-1-100'"]
            );
        }
        for d in [mysql_5_7(), mysql_8_4(), rds_mysql_8_0(), rds_mariadb()] {
            unsupported(d.start_replica_until_gtid(&pos));
        }
    }

    #[test]
    fn start_until_mysql_gtid_set() {
        let set: mysql::GtidSet = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5".parse().unwrap();
        assert_eq!(
            sql(&mysql_8_0_21()
                .start_replica_until_gtid_set(&set, Until::AfterGtids)
                .unwrap()),
            [
                "STOP SLAVE SQL_THREAD",
                "START SLAVE IO_THREAD",
                "START SLAVE SQL_THREAD UNTIL SQL_AFTER_GTIDS=\
                 '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5'",
            ]
        );
        assert_eq!(
            sql(&mysql_8_4()
                .start_replica_until_gtid_set(&set, Until::BeforeGtids)
                .unwrap()),
            [
                "STOP REPLICA SQL_THREAD",
                "START REPLICA IO_THREAD",
                "START REPLICA SQL_THREAD UNTIL SQL_BEFORE_GTIDS=\
                 '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5'",
            ]
        );
        assert_eq!(
            sql(&rds_mysql_8_0()
                .start_replica_until_gtid_set(&set, Until::AfterGtids)
                .unwrap()),
            [
                "CALL mysql.rds_stop_replication",
                "CALL mysql.rds_start_replication_until_gtid(\
                 '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5')",
            ]
        );
        unsupported(rds_mysql_8_4().start_replica_until_gtid_set(&set, Until::BeforeGtids));
        unsupported(maria_10_11().start_replica_until_gtid_set(&set, Until::AfterGtids));
    }

    #[test]
    fn waits_with_fractional_and_whole_seconds() {
        let pos: mariadb::GtidPos = "0-1-100,1-2-5".parse().unwrap();
        let d = maria_10_11();
        assert_eq!(
            d.wait_for_gtid_mariadb(&pos, Duration::from_millis(1500))
                .sql,
            "SELECT MASTER_GTID_WAIT('0-1-100,1-2-5', 1.5)"
        );
        assert_eq!(
            d.wait_for_gtid_mariadb(&pos, Duration::from_secs(30)).sql,
            "SELECT MASTER_GTID_WAIT('0-1-100,1-2-5', 30)"
        );
        // Zero would mean "forever" to some of these functions: never sent.
        assert_eq!(
            d.wait_for_gtid_mariadb(&pos, Duration::ZERO).sql,
            "SELECT MASTER_GTID_WAIT('0-1-100,1-2-5', 0.001)"
        );

        let set: mysql::GtidSet = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5".parse().unwrap();
        assert_eq!(
            mysql_8_4()
                .wait_for_gtid_set(&set, Duration::from_millis(2250))
                .sql,
            "SELECT WAIT_FOR_EXECUTED_GTID_SET('3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5', 2.25)"
        );
        assert_eq!(
            mysql_5_7()
                .wait_for_gtid_set(&set, Duration::from_millis(200))
                .sql,
            "SELECT WAIT_FOR_EXECUTED_GTID_SET('3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5', 1)"
        );

        let at = BinlogPosition::new("mysql-bin.000042", 1307);
        let t = Duration::from_millis(1500);
        assert_eq!(
            maria_10_11().wait_for_position(&at, t).sql,
            "SELECT MASTER_POS_WAIT('mysql-bin.000042', 1307, 2)"
        );
        assert_eq!(
            mysql_5_7().wait_for_position(&at, t).sql,
            "SELECT MASTER_POS_WAIT('mysql-bin.000042', 1307, 2)"
        );
        assert_eq!(
            mysql_8_0_23().wait_for_position(&at, t).sql,
            "SELECT MASTER_POS_WAIT('mysql-bin.000042', 1307, 2)"
        );
        assert_eq!(
            mysql_8_0_26().wait_for_position(&at, t).sql,
            "SELECT SOURCE_POS_WAIT('mysql-bin.000042', 1307, 2)"
        );
        assert_eq!(
            mysql_8_4()
                .wait_for_position(&at, Duration::from_secs(60))
                .sql,
            "SELECT SOURCE_POS_WAIT('mysql-bin.000042', 1307, 60)"
        );
        assert_eq!(
            rds_mysql_8_0().wait_for_position(&at, Duration::ZERO).sql,
            "SELECT SOURCE_POS_WAIT('mysql-bin.000042', 1307, 1)"
        );
    }

    #[test]
    fn seconds_formatting() {
        assert_eq!(
            fractional_seconds(Duration::from_micros(1_000_001)),
            "1.000001"
        );
        assert_eq!(fractional_seconds(Duration::from_millis(100)), "0.1");
        assert_eq!(fractional_seconds(Duration::from_nanos(1)), "0.001");
        assert_eq!(whole_seconds(Duration::from_secs(5)), "5");
        assert_eq!(whole_seconds(Duration::from_nanos(5_000_000_001)), "6");
        assert_eq!(whole_seconds(Duration::ZERO), "1");
    }

    #[test]
    fn read_only_per_flavor() {
        for d in [maria_10_6(), maria_10_11(), maria_11_4()] {
            assert_eq!(
                sql(&d.set_read_only(true).unwrap()),
                ["SET GLOBAL read_only=ON"]
            );
            assert_eq!(
                sql(&d.set_read_only(false).unwrap()),
                ["SET GLOBAL read_only=OFF"]
            );
        }
        for d in [
            mysql_5_7(),
            mysql_8_0_21(),
            mysql_8_0_22(),
            mysql_8_0_23(),
            mysql_8_0_26(),
            mysql_8_4(),
        ] {
            assert_eq!(
                sql(&d.set_read_only(true).unwrap()),
                ["SET GLOBAL super_read_only=ON"]
            );
            assert_eq!(
                sql(&d.set_read_only(false).unwrap()),
                ["SET GLOBAL super_read_only=OFF", "SET GLOBAL read_only=OFF"]
            );
        }
        assert_eq!(
            sql(&dialect("5.6.51-log", false, true)
                .set_read_only(true)
                .unwrap()),
            ["SET GLOBAL read_only=ON"]
        );
        for d in [aurora(), rds_mysql_8_0(), rds_mysql_8_4(), rds_mariadb()] {
            let err = unsupported(d.set_read_only(true));
            assert!(err.contains("parameter group"), "{err}");
            assert!(err.contains("proxy"), "{err}");
            unsupported(d.set_read_only(false));
        }
    }

    #[test]
    fn flush_ssl_per_flavor() {
        for d in [maria_10_6(), maria_10_11(), maria_11_4()] {
            // Never the binlogged FLUSH SSL.
            assert_eq!(d.flush_ssl().unwrap().sql, "FLUSH LOCAL SSL");
        }
        let err = unsupported(dialect("10.3.39-MariaDB", false, true).flush_ssl());
        assert!(err.contains("10.4"), "{err}");
        for d in [mysql_8_0_21(), mysql_8_0_26(), mysql_8_4()] {
            assert_eq!(d.flush_ssl().unwrap().sql, "ALTER INSTANCE RELOAD TLS");
        }
        assert_eq!(
            dialect("8.0.16", false, true).flush_ssl().unwrap().sql,
            "ALTER INSTANCE RELOAD TLS"
        );
        unsupported(dialect("8.0.15", false, true).flush_ssl());
        unsupported(mysql_5_7().flush_ssl());
        for d in [aurora(), rds_mysql_8_0(), rds_mysql_8_4(), rds_mariadb()] {
            unsupported(d.flush_ssl());
        }
    }

    #[test]
    fn unsupported_names_the_flavor() {
        let err = unsupported(rds_mysql_8_4().set_read_only(true));
        assert!(
            err.ends_with("is not supported on MySQL 8.4.3 (RDS)"),
            "{err}"
        );
    }

    // ---- quoting and redaction ----

    /// Reads one quoted literal the way the server does with the default sql_mode; returns
    /// the value and what follows the closing quote.
    fn read_literal_default_mode(sql: &str) -> (String, &str) {
        let mut chars = sql.char_indices();
        assert_eq!(chars.next(), Some((0, '\'')));
        let mut value = String::new();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    let (_, e) = chars.next().unwrap();
                    value.push(match e {
                        '0' => '\0',
                        'n' => '\n',
                        'r' => '\r',
                        'Z' => '\x1a',
                        other => other,
                    });
                }
                '\'' => {
                    if sql[i + 1..].starts_with('\'') {
                        chars.next();
                        value.push('\'');
                    } else {
                        return (value, &sql[i + 1..]);
                    }
                }
                c => value.push(c),
            }
        }
        panic!("unterminated literal: {sql}");
    }

    /// The same under NO_BACKSLASH_ESCAPES, where only a doubled quote escapes.
    fn literal_end_no_backslash_escapes(sql: &str) -> &str {
        let bytes = sql.as_bytes();
        assert_eq!(bytes[0], b'\'');
        let mut i = 1;
        while i < bytes.len() {
            if bytes[i] == b'\'' {
                if bytes.get(i + 1) == Some(&b'\'') {
                    i += 2;
                    continue;
                }
                return &sql[i + 1..];
            }
            i += 1;
        }
        panic!("unterminated literal: {sql}");
    }

    const HOSTILE: [&str; 12] = [
        "",
        "plain",
        "it's",
        "''",
        "\\",
        "\\'",
        "a\\'); DROP TABLE t; --",
        "x', MASTER_HOST='evil",
        "nul\0byte",
        "line\nbreak\rreturn",
        "ctrl\x1az",
        "ünïcødé 😀 \"double\"",
    ];

    #[test]
    fn quote_literal_examples() {
        assert_eq!(quote_literal("plain"), "'plain'");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b"), "'a\\\\b'");
        assert_eq!(quote_literal("a\0b"), "'a\\0b'");
        assert_eq!(quote_literal("a\nb\rc\x1ad"), "'a\\nb\\rc\\Zd'");
        assert_eq!(quote_literal("\"x\""), "'\"x\"'");
        assert_eq!(quote_literal(""), "''");
    }

    #[test]
    fn quote_literal_round_trips_and_never_ends_early() {
        for s in HOSTILE {
            let q = quote_literal(s);
            let (value, rest) = read_literal_default_mode(&q);
            assert_eq!(value, s, "{q}");
            assert_eq!(rest, "", "{q}");
            assert_eq!(literal_end_no_backslash_escapes(&q), "", "{q}");
            assert!(!q.contains('\0'), "{q:?}");
        }
    }

    #[test]
    fn hostile_values_stay_inside_their_literals() {
        let d = mysql_8_4();
        let s = SourceSpec {
            host: "h'; DROP TABLE x; --".into(),
            user: "u\\".into(),
            ..spec(SourceStart::File(BinlogPosition::new("f'\\.000001", 4)))
        };
        let stmts = d.point_replica_at(&s).unwrap();
        assert_eq!(
            stmts[1].sql,
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST='h''; DROP TABLE x; --', SOURCE_PORT=3306, \
             SOURCE_USER='u\\\\', SOURCE_PASSWORD='hunter2-Secret', SOURCE_AUTO_POSITION=0, \
             SOURCE_LOG_FILE='f''\\\\.000001', SOURCE_LOG_POS=4, SOURCE_SSL=1, \
             SOURCE_SSL_CA='/etc/mysql/ca.pem', SOURCE_SSL_VERIFY_SERVER_CERT=1, \
             SOURCE_CONNECT_RETRY=10"
        );
        let pos: mariadb::GtidPos = "0-1-1".parse().unwrap();
        let w = maria_10_11().wait_for_position(&BinlogPosition::new("a'b", 4), Duration::ZERO);
        assert_eq!(w.sql, "SELECT MASTER_POS_WAIT('a''b', 4, 1)");
        assert_eq!(
            maria_10_11().start_replica_until_gtid(&pos).unwrap()[1].sql,
            "START SLAVE UNTIL master_gtid_pos='0-1-1'"
        );
    }

    #[test]
    fn hostile_passwords_never_leak() {
        for password in HOSTILE.iter().filter(|p| p.len() >= 4) {
            for (name, d) in all() {
                for start in [
                    SourceStart::Gtid,
                    file(),
                    at(),
                    SourceStart::DemoteToReplica,
                ] {
                    for mut s in [spec(start.clone()), rds_spec(start.clone())] {
                        s.password = password.to_string();
                        let Ok(stmts) = d.point_replica_at(&s) else {
                            continue;
                        };
                        let change = stmts
                            .iter()
                            .find(|st| st.sql != st.redacted)
                            .unwrap_or_else(|| panic!("{name}: no statement holds the password"));
                        assert!(change.sql.contains(&quote_literal(password)), "{name}");
                        assert!(change.redacted.contains(REDACTED), "{name}");
                        assert!(
                            !change.redacted.contains(&quote_literal(password)),
                            "{name}"
                        );
                        assert_redacted(&stmts, password);
                        // Only the password literal differs between the two forms.
                        assert_eq!(
                            change.sql.replacen(&quote_literal(password), REDACTED, 1),
                            change.redacted,
                            "{name}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn debug_of_a_spec_hides_the_password() {
        let s = spec(SourceStart::Gtid);
        let shown = format!("{s:?}");
        assert!(!shown.contains(PW), "{shown}");
        assert!(shown.contains("password: \"***\""), "{shown}");
        assert!(shown.contains("db-1.example"), "{shown}");
    }

    #[test]
    fn statement_display_and_debug_show_the_redacted_form() {
        let st = Statement::with_secret(PW, |p| format!("SET PASSWORD = {p}"));
        assert_eq!(st.sql, "SET PASSWORD = 'hunter2-Secret'");
        assert_eq!(st.redacted, "SET PASSWORD = '***'");
        assert_eq!(st.to_string(), "SET PASSWORD = '***'");
        assert_eq!(format!("{st:?}"), "Statement(\"SET PASSWORD = '***'\")");
        let plain = Statement::plain("SELECT 1");
        assert_eq!(plain.sql, plain.redacted);
        assert_eq!(plain.to_string(), "SELECT 1");
    }
}
