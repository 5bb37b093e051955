//! One connection to one server, and the operations that read or change its replication role.
//! The operations are grouped by concern in child modules (`server/lease.rs`, `sessions.rs`,
//! `roles.rs`, `positions.rs`, `snapshot.rs`, `checks.rs`, `rds.rs`,
//! `settings.rs`); every statement comes from the
//! [`Dialect`], so a workflow never writes SQL.
//!
//! Every statement goes through [`Server::exec`] so that it is logged in its redacted form
//! before and after it runs; a password never reaches a log or an error message. Functions that
//! change a server are named for what they change. This module must never decide *whether* to
//! change something (that is a workflow's job): it only does what it is told, exactly.
//!
//! No statement may wait on a server without a bound: a replica whose SQL thread waits on a
//! metadata lock makes `STOP SLAVE` hang, and a switchover with it. Every statement is bounded
//! by the connection's statement timeout, except the replication waits (`MASTER_GTID_WAIT` and
//! kin), which carry their own deadline. A statement that runs past its bound leaves the
//! connection in an unknown protocol state, so the connection is abandoned (every later call
//! fails at once with [`Error::Broken`]) and the statement is cancelled with `KILL QUERY` from a
//! fresh connection.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row, SslOpts, Value};
use serde::Serialize;

use crate::dialect::{quote_literal, Dialect, SourceSpec, Statement};
use crate::error::{human_duration, Cancel, Error, Result};
use crate::flavor::Flavor;
use crate::gtid::{mariadb, mysql};
use crate::position::BinlogPosition;
use crate::status::ReplicationStatus;

mod checks;
mod lease;
mod positions;
mod rds;
mod roles;
mod sessions;
mod settings;
mod snapshot;
mod topology;

pub use checks::Heartbeats;
pub use topology::ReplicaHost;

/// TLS settings of a client connection.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// PEM file of the CA (or bundle) that the server's chain must verify against.
    pub ca_path: PathBuf,
    /// Check that the certificate names the host we connected to.
    pub verify_identity: bool,
}

/// Where and how to connect. `Debug` never shows the password.
#[derive(Clone)]
pub struct ConnectOptions {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: Option<String>,
    pub tls: Option<TlsOptions>,
    pub connect_timeout: Duration,
    /// The bound of every statement but the replication waits (see [`Server::exec`]).
    pub statement_timeout: Duration,
}

/// The statement timeout of a new [`ConnectOptions`]: long enough for any statement dbshift
/// sends to a healthy server, short enough that a stuck one fails a switchover while an
/// operator still watches.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The bound of cancelling an abandoned statement (connect, `KILL QUERY`, quit): it runs while
/// the caller waits for its error, and its failure changes nothing but the message.
const CANCEL_BOUND: Duration = Duration::from_secs(5);

/// "Unknown system variable" (MySQL and MariaDB alike).
const ER_UNKNOWN_SYSTEM_VARIABLE: u16 = 1193;

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"***")
            .field("database", &self.database)
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

impl ConnectOptions {
    pub fn new(host: impl Into<String>, port: u16, user: impl Into<String>) -> Self {
        ConnectOptions {
            host: host.into(),
            port,
            user: user.into(),
            password: String::new(),
            database: None,
            tls: None,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
        }
    }

    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = password.into();
        self
    }

    pub fn database(mut self, database: impl Into<String>) -> Self {
        self.database = Some(database.into());
        self
    }

    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The bound of each statement on the connection (default [`DEFAULT_STATEMENT_TIMEOUT`]).
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// `host:port`, for messages.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The mysql_async options. The socket is never preferred: a switchover and a probe must
    /// measure the TCP (and TLS) path that clients use.
    pub fn to_opts(&self) -> mysql_async::Opts {
        let mut b = OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(Some(self.password.clone()))
            .db_name(self.database.clone())
            .prefer_socket(false)
            .tcp_nodelay(true)
            .stmt_cache_size(0);
        if let Some(tls) = &self.tls {
            let ssl = SslOpts::default()
                .with_root_certs(vec![tls.ca_path.clone().into()])
                .with_disable_built_in_roots(true)
                .with_danger_skip_domain_validation(!tls.verify_identity);
            b = b.ssl_opts(Some(ssl));
        }
        b.into()
    }
}

/// What [`Server::fence_writes`] did, so that [`Server::unfence_writes`] can undo exactly that.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Fence {
    /// `event_scheduler` before the fence (`ON`, `OFF`).
    pub event_scheduler_before: String,
    /// `read_only` was already on before the fence.
    pub was_read_only: bool,
    /// Attempts it took to set `read_only` under the short lock wait.
    pub read_only_attempts: u32,
    /// Sessions ended because their user can write through `read_only`: (id, user).
    pub killed_sessions: Vec<(u64, String)>,
}

/// How hard [`Server::fence_writes`] tries.
#[derive(Debug, Clone)]
pub struct FenceOptions {
    /// `lock_wait_timeout` for `SET GLOBAL read_only=ON`, so that a long write in flight cannot
    /// stall every client queued behind the global read lock.
    pub lock_wait: Duration,
    /// Attempts before giving up (each bounded by `lock_wait`).
    pub attempts: u32,
    /// End sessions of users that can write through `read_only` (SUPER, READ_ONLY ADMIN).
    pub kill_privileged_sessions: bool,
}

impl Default for FenceOptions {
    fn default() -> Self {
        FenceOptions {
            lock_wait: Duration::from_secs(1),
            attempts: 3,
            kill_privileged_sessions: true,
        }
    }
}

/// The connection of a [`Server`], or why it is no longer used.
enum Link {
    Open(Conn),
    /// A statement ran past its bound: what is left on the wire is unknown, so nothing more is
    /// sent on it. `reason` goes into the error of every later call.
    Abandoned {
        reason: String,
    },
}

/// One open connection to one server, with its flavor detected at connect time.
pub struct Server {
    link: Link,
    /// The server's id of the session, kept to cancel its statement after it is abandoned.
    connection_id: u32,
    /// Kept to open the connection that cancels an abandoned statement. Holds the password:
    /// never logged, never shown (its `Debug` hides it and `Server`'s leaves it out).
    opts: ConnectOptions,
    statement_timeout: Duration,
    endpoint: String,
    flavor: Flavor,
    dialect: Dialect,
    server_id: u32,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("endpoint", &self.endpoint)
            .field("flavor", &self.flavor)
            .field("server_id", &self.server_id)
            .field("statement_timeout", &self.statement_timeout)
            .field("abandoned", &self.is_abandoned())
            .finish()
    }
}

/// End the statement that session `connection_id` runs, from a fresh connection made with
/// `opts`, within [`CANCEL_BOUND`]. Best effort: a failure is reported, never raised, because
/// the caller already has the error that matters.
async fn cancel_statement(opts: &ConnectOptions, dialect: &Dialect, connection_id: u32) -> Cancel {
    let endpoint = opts.endpoint();
    let kill = dialect.kill_query(u64::from(connection_id));
    tracing::info!(%endpoint, sql = %kill.redacted, "cancelling an abandoned statement");
    let attempt = async {
        let mut conn = Conn::new(opts.to_opts()).await?;
        let outcome = conn.query_drop(kill.sql.as_str()).await;
        let _ = conn.disconnect().await;
        outcome
    };
    let cancel = match tokio::time::timeout(CANCEL_BOUND, attempt).await {
        Ok(Ok(())) => Cancel::Sent { connection_id },
        // 1094: unknown thread id: the session ended by itself meanwhile.
        Ok(Err(mysql_async::Error::Server(e))) if e.code == 1094 => Cancel::Sent { connection_id },
        Ok(Err(e)) => Cancel::Failed {
            connection_id,
            reason: format!("`{}`: {e}", kill.redacted),
        },
        Err(_) => Cancel::Failed {
            connection_id,
            reason: format!(
                "`{}` got no answer within {}",
                kill.redacted,
                human_duration(CANCEL_BOUND)
            ),
        },
    };
    match &cancel {
        Cancel::Sent { .. } => {
            tracing::info!(%endpoint, sql = %kill.redacted, "KILL QUERY sent to the abandoned statement")
        }
        Cancel::Failed { reason, .. } => {
            tracing::warn!(%endpoint, %reason, "the abandoned statement could not be cancelled")
        }
    }
    cancel
}

/// A column value as text: NULL is `None`; numbers and dates are formatted.
pub fn value_to_string(v: &Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

/// A row as (column name, text value) pairs, in the server's column order.
pub fn row_to_columns(row: &Row) -> Vec<(String, Option<String>)> {
    row.columns_ref()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let v = row.as_ref(i).and_then(value_to_string);
            (c.name_str().into_owned(), v)
        })
        .collect()
}

impl Server {
    /// Connect, then detect the flavor. Fails with [`Error::Connect`] on a network, TLS or
    /// authentication problem, within `opts.connect_timeout`.
    pub async fn connect(opts: &ConnectOptions) -> Result<Server> {
        let endpoint = opts.endpoint();
        let conn = match tokio::time::timeout(opts.connect_timeout, Conn::new(opts.to_opts())).await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(source)) => return Err(Error::Connect { endpoint, source }),
            Err(_) => {
                return Err(Error::Timeout {
                    endpoint,
                    what: "the connection to open".into(),
                    after: opts.connect_timeout,
                })
            }
        };
        // The detection query below is the same on every flavor; the provisional flavor is
        // replaced before `connect` returns, so no caller ever sees it.
        let provisional = Flavor::detect("", "", None, false, false);
        let mut server = Server {
            connection_id: conn.id(),
            link: Link::Open(conn),
            opts: opts.clone(),
            statement_timeout: opts.statement_timeout,
            endpoint,
            dialect: Dialect::new(provisional.clone()),
            flavor: provisional,
            server_id: 0,
        };
        server.detect_flavor().await?;
        Ok(server)
    }

    /// One round trip: version, comment, server_id, RDS procedures, SUPER; on MySQL a second
    /// one for `gtid_mode`, and on Aurora one for `AURORA_VERSION()`.
    async fn detect_flavor(&mut self) -> Result<()> {
        let row = self
            .query_one(
                "SELECT VERSION(), @@version_comment, @@server_id, \
                 (SELECT COUNT(*) FROM information_schema.ROUTINES \
                  WHERE ROUTINE_SCHEMA='mysql' AND ROUTINE_NAME LIKE 'rds\\_%'), \
                 (SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES \
                  WHERE PRIVILEGE_TYPE='SUPER' AND GRANTEE=CONCAT('''', \
                  SUBSTRING_INDEX(CURRENT_USER(),'@',1), '''@''', \
                  SUBSTRING_INDEX(CURRENT_USER(),'@',-1), ''''))",
            )
            .await?;
        let text = |i: usize| row.get(i).and_then(|c| c.1.clone()).unwrap_or_default();
        let count = |i: usize| text(i).parse::<u64>().unwrap_or(0);
        let version = text(0);
        let comment = text(1);
        self.server_id = text(2).parse().unwrap_or(0);
        let rds_procedures = count(3) > 0;
        let has_super = count(4) > 0;
        // Aurora exposes its own version as a function; elsewhere the call fails.
        let aurora = if version.contains("aurora") || comment.to_lowercase().contains("aurora") {
            self.query_scalar("SELECT AURORA_VERSION()")
                .await
                .ok()
                .flatten()
        } else {
            None
        };
        self.flavor = Flavor::detect(
            &version,
            &comment,
            aurora.as_deref(),
            rds_procedures,
            has_super,
        );
        self.dialect = Dialect::new(self.flavor.clone());
        // MySQL only (MariaDB has no gtid_mode): whether positions are GTID sets or binary
        // log coordinates.
        let gtid_mode = self.gtid_mode().await?;
        tracing::debug!(endpoint = %self.endpoint, flavor = %self.flavor, ?gtid_mode, "connected");
        Ok(())
    }

    /// Whether the current user holds a global privilege (e.g. `SUPER`, `READ_ONLY ADMIN`).
    pub async fn has_privilege(&mut self, privilege: &str) -> Result<bool> {
        let sql = format!(
            "SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES WHERE PRIVILEGE_TYPE={} \
             AND GRANTEE=CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(),'@',1), '''@''', \
             SUBSTRING_INDEX(CURRENT_USER(),'@',-1), '''')",
            crate::dialect::quote_literal(privilege)
        );
        Ok(self
            .query_scalar(&sql)
            .await?
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
            > 0)
    }

    pub fn flavor(&self) -> &Flavor {
        &self.flavor
    }

    pub fn dialect(&self) -> &Dialect {
        &self.dialect
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn server_id(&self) -> u32 {
        self.server_id
    }

    /// The server's id of this connection (`CONNECTION_ID()`).
    pub fn connection_id(&self) -> u32 {
        self.connection_id
    }

    /// The bound of each statement on this connection but the replication waits.
    pub fn statement_timeout(&self) -> Duration {
        self.statement_timeout
    }

    /// Change the bound of the statements to come on this connection (the default comes from
    /// [`ConnectOptions::statement_timeout`]).
    pub fn set_statement_timeout(&mut self, timeout: Duration) {
        self.statement_timeout = timeout;
    }

    /// Whether a statement ran past its bound and the connection is no longer used.
    pub fn is_abandoned(&self) -> bool {
        matches!(self.link, Link::Abandoned { .. })
    }

    /// The open connection, or [`Error::Broken`] at once when it was abandoned.
    fn conn(&mut self) -> Result<&mut Conn> {
        match &mut self.link {
            Link::Open(conn) => Ok(conn),
            Link::Abandoned { reason } => Err(Error::Broken {
                endpoint: self.endpoint.clone(),
                reason: reason.clone(),
            }),
        }
    }

    /// Give up the connection after `redacted` ran past `after`, cancel the statement, and
    /// say so in an [`Error::StatementTimeout`].
    async fn abandon(&mut self, redacted: &str, after: Duration) -> Error {
        let reason = format!(
            "`{redacted}` did not finish within {}",
            human_duration(after)
        );
        tracing::warn!(endpoint = %self.endpoint, sql = %redacted, ?after, connection_id = self.connection_id, "statement ran past its bound; abandoning the connection");
        // Dropping the connection hands it to mysql_async, which reads what is pending and quits
        // in the background: the session, and any lock it holds, ends as soon as the statement
        // does, instead of when the caller drops this Server.
        drop(std::mem::replace(
            &mut self.link,
            Link::Abandoned { reason },
        ));
        let cancel = cancel_statement(&self.opts, &self.dialect, self.connection_id).await;
        Error::StatementTimeout {
            endpoint: self.endpoint.clone(),
            sql: redacted.to_string(),
            after,
            cancel,
        }
    }

    /// Run a generated statement within the statement timeout, logging its redacted form
    /// before and after. Past the bound it fails with [`Error::StatementTimeout`] and the
    /// connection is abandoned.
    pub async fn exec(&mut self, stmt: &Statement) -> Result<()> {
        tracing::debug!(endpoint = %self.endpoint, sql = %stmt.redacted, "exec");
        let started = Instant::now();
        let bound = self.statement_timeout;
        let outcome = tokio::time::timeout(bound, self.conn()?.query_drop(stmt.sql.as_str()))
            .await
            .ok();
        match outcome {
            Some(done) => done.map_err(|source| Error::Sql {
                endpoint: self.endpoint.clone(),
                sql: stmt.redacted.clone(),
                source,
            })?,
            None => return Err(self.abandon(&stmt.redacted, bound).await),
        }
        tracing::debug!(endpoint = %self.endpoint, sql = %stmt.redacted, elapsed = ?started.elapsed(), "done");
        Ok(())
    }

    /// Run statements in order; the first failure stops the sequence.
    pub async fn exec_all(&mut self, stmts: &[Statement]) -> Result<()> {
        for s in stmts {
            self.exec(s).await?;
        }
        Ok(())
    }

    /// Run SQL that holds no secret.
    pub async fn exec_sql(&mut self, sql: &str) -> Result<()> {
        self.exec(&Statement::plain(sql)).await
    }

    /// Every row of a query, as (column, text) pairs, within the statement timeout (past it:
    /// [`Error::StatementTimeout`], and the connection is abandoned). For SQL that holds no
    /// secret.
    pub async fn query_rows(&mut self, sql: &str) -> Result<Vec<Vec<(String, Option<String>)>>> {
        let bound = self.statement_timeout;
        let rows = match self.rows_within(sql, bound).await? {
            Some(rows) => rows,
            None => return Err(self.abandon(sql, bound).await),
        };
        Ok(rows.iter().map(row_to_columns).collect())
    }

    /// Every row of `sql`, or `None` when `bound` ran out first; then the caller must abandon
    /// the connection. The bound is the caller's: the statement timeout, or the deadline of a
    /// replication wait.
    async fn rows_within(&mut self, sql: &str, bound: Duration) -> Result<Option<Vec<Row>>> {
        let outcome = tokio::time::timeout(bound, self.conn()?.query::<Row, _>(sql))
            .await
            .ok();
        match outcome {
            Some(rows) => rows.map(Some).map_err(|source| Error::Sql {
                endpoint: self.endpoint.clone(),
                sql: sql.to_string(),
                source,
            }),
            None => Ok(None),
        }
    }

    /// The first row of a query; an error if there is none.
    pub async fn query_one(&mut self, sql: &str) -> Result<Vec<(String, Option<String>)>> {
        self.query_rows(sql)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::State {
                endpoint: self.endpoint.clone(),
                message: format!("`{sql}` returned no row"),
            })
    }

    /// The first column of the first row, if any.
    pub async fn query_scalar(&mut self, sql: &str) -> Result<Option<String>> {
        Ok(self
            .query_rows(sql)
            .await?
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .and_then(|(_, v)| v))
    }

    /// A global system variable, as text; `None` when it is NULL or the server has no
    /// variable of that name.
    pub async fn variable(&mut self, name: &str) -> Result<Option<String>> {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::parse(
                "variable name",
                name,
                "only letters, digits and _",
            ));
        }
        match self.query_scalar(&format!("SELECT @@GLOBAL.{name}")).await {
            // One flavor's or version's variable asked of another (MariaDB's
            // innodb_encrypt_tables of MySQL, expire_logs_days of MySQL 8.4): absent, as NULL.
            Err(e) if e.server_code() == Some(ER_UNKNOWN_SYSTEM_VARIABLE) => Ok(None),
            other => other,
        }
    }

    /// A boolean global variable (`ON`/`1` is true).
    pub async fn variable_bool(&mut self, name: &str) -> Result<bool> {
        Ok(matches!(
            self.variable(name).await?.as_deref(),
            Some("1") | Some("ON") | Some("on")
        ))
    }

    /// The events whose `STATUS` is `status` (`ENABLED`, `DISABLED`, `SLAVESIDE_DISABLED`).
    pub async fn events_with_status(
        &mut self,
        status: &str,
    ) -> Result<Vec<crate::dialect::EventRef>> {
        let rows = self
            .query_rows(&format!(
                "SELECT EVENT_SCHEMA, EVENT_NAME, DEFINER FROM information_schema.EVENTS \
                 WHERE STATUS={}",
                quote_literal(status)
            ))
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let col = |i: usize| r.get(i).and_then(|c| c.1.clone()).unwrap_or_default();
                crate::dialect::EventRef {
                    schema: col(0),
                    name: col(1),
                    definer: col(2),
                }
            })
            .collect())
    }

    /// Whether `read_only` is on (clients without SUPER cannot write). See
    /// [`Self::read_only_state`] for `super_read_only` too.
    pub async fn read_only(&mut self) -> Result<bool> {
        self.variable_bool("read_only").await
    }

    /// Normalized replication status; `configured == false` when the server is no replica.
    pub async fn replication_status(&mut self) -> Result<ReplicationStatus> {
        let stmt = self.dialect.show_replica_status();
        let rows = self.query_rows(&stmt.sql).await?;
        match rows.first() {
            None => Ok(ReplicationStatus::not_configured()),
            Some(row) => ReplicationStatus::from_row(row),
        }
    }

    /// The binary log's current file and position (`SHOW MASTER STATUS` or its 8.4 name);
    /// `None` when binary logging is off.
    pub async fn binlog_position(&mut self) -> Result<Option<BinlogPosition>> {
        let stmt = self.dialect.show_binlog_status();
        let rows = self.query_rows(&stmt.sql).await?;
        match rows.first() {
            None => Ok(None),
            Some(row) => BinlogPosition::from_binlog_status(row),
        }
    }

    fn require_mariadb(&self, what: &str) -> Result<()> {
        if self.flavor.is_mariadb() {
            Ok(())
        } else {
            Err(Error::Unsupported {
                flavor: self.flavor.to_string(),
                what: what.to_string(),
            })
        }
    }

    async fn mariadb_pos(&mut self, variable: &'static str) -> Result<mariadb::GtidPos> {
        self.require_mariadb(variable)?;
        let text = self.variable(variable).await?.unwrap_or_default();
        text.parse()
    }

    /// MariaDB `@@gtid_binlog_pos`: the last GTID per domain written to this server's binlog.
    pub async fn gtid_binlog_pos(&mut self) -> Result<mariadb::GtidPos> {
        self.mariadb_pos("gtid_binlog_pos").await
    }

    /// MariaDB `@@gtid_slave_pos`: the last GTID per domain applied by replication.
    pub async fn gtid_slave_pos(&mut self) -> Result<mariadb::GtidPos> {
        self.mariadb_pos("gtid_slave_pos").await
    }

    /// MariaDB `@@gtid_current_pos`. Moved by this server's own binlogged statements too, so it
    /// is never used to find errant transactions.
    pub async fn gtid_current_pos(&mut self) -> Result<mariadb::GtidPos> {
        self.mariadb_pos("gtid_current_pos").await
    }

    /// MariaDB `@@gtid_binlog_state`: the last GTID per (domain, server_id) in the binlog.
    pub async fn gtid_binlog_state(&mut self) -> Result<mariadb::BinlogState> {
        self.require_mariadb("gtid_binlog_state")?;
        let text = self
            .variable("gtid_binlog_state")
            .await?
            .unwrap_or_default();
        text.parse()
    }

    /// MySQL `@@GLOBAL.gtid_executed`.
    pub async fn gtid_executed(&mut self) -> Result<mysql::GtidSet> {
        if self.flavor.is_mariadb() {
            return Err(Error::Unsupported {
                flavor: self.flavor.to_string(),
                what: "gtid_executed".into(),
            });
        }
        let text = self.variable("gtid_executed").await?.unwrap_or_default();
        text.parse()
    }

    /// Stop writes from clients: `event_scheduler=OFF`, then `read_only=ON` under a short
    /// `lock_wait_timeout` (retried), then end sessions whose users can write through
    /// `read_only`. On failure the server is left as it was found.
    pub async fn fence_writes(&mut self, opts: &FenceOptions) -> Result<Fence> {
        let event_scheduler_before = self
            .variable("event_scheduler")
            .await?
            .unwrap_or_else(|| "OFF".into());
        let was_read_only = self.read_only().await?;
        tracing::info!(endpoint = %self.endpoint, "fencing writes");
        if event_scheduler_before.eq_ignore_ascii_case("ON") {
            let stmt = self.dialect.set_event_scheduler(false)?;
            self.exec(&stmt).await?;
        }
        let stmt = self.dialect.lock_wait_timeout(opts.lock_wait);
        self.exec(&stmt).await?;
        let mut attempts = 0;
        let set_ro = self.dialect.set_read_only(true)?;
        let outcome = loop {
            attempts += 1;
            match self.exec_all(&set_ro).await {
                Ok(()) => break Ok(()),
                // 1205: lock wait timeout. A long write holds the way; try again, then give up.
                Err(e) if e.server_code() == Some(1205) && attempts < opts.attempts.max(1) => {
                    tracing::warn!(endpoint = %self.endpoint, attempts, "read_only waited too long; retrying");
                }
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = outcome {
            if event_scheduler_before.eq_ignore_ascii_case("ON") {
                // Put the server back as it was found; the original error is what matters.
                if let Ok(stmt) = self.dialect.set_event_scheduler(true) {
                    let _ = self.exec(&stmt).await;
                }
            }
            return Err(e);
        }
        let mut killed_sessions = Vec::new();
        if opts.kill_privileged_sessions {
            killed_sessions = self.end_privileged_sessions().await?;
        }
        tracing::info!(endpoint = %self.endpoint, attempts, killed = killed_sessions.len(), "writes fenced");
        Ok(Fence {
            event_scheduler_before,
            was_read_only,
            read_only_attempts: attempts,
            killed_sessions,
        })
    }

    /// Undo [`Server::fence_writes`]: `read_only` back off (unless it was on before) and the
    /// event scheduler as it was.
    pub async fn unfence_writes(&mut self, fence: &Fence) -> Result<()> {
        tracing::info!(endpoint = %self.endpoint, "unfencing writes");
        if !fence.was_read_only {
            let stmts = self.dialect.set_read_only(false)?;
            self.exec_all(&stmts).await?;
        }
        if fence.event_scheduler_before.eq_ignore_ascii_case("ON") {
            let stmt = self.dialect.set_event_scheduler(true)?;
            self.exec(&stmt).await?;
        }
        tracing::info!(endpoint = %self.endpoint, "writes unfenced");
        Ok(())
    }

    /// Make the server writable (`read_only=OFF`).
    pub async fn set_writable(&mut self) -> Result<()> {
        let stmts = self.dialect.set_read_only(false)?;
        self.exec_all(&stmts).await
    }

    /// Make the server read-only (`read_only=ON`), without the fence's session handling.
    pub async fn set_read_only(&mut self) -> Result<()> {
        let stmts = self.dialect.set_read_only(true)?;
        self.exec_all(&stmts).await
    }

    /// Load the server's TLS certificate, key and CA files again, for new connections
    /// (`FLUSH LOCAL SSL` on MariaDB 10.4+, never the binlogged plain form;
    /// `ALTER INSTANCE RELOAD TLS` on MySQL 8.0.16+). Refused by the dialect where the server
    /// cannot (older versions; RDS and Aurora, whose certificates AWS manages).
    pub async fn reload_tls(&mut self) -> Result<()> {
        let stmt = self.dialect.flush_ssl()?;
        tracing::info!(endpoint = %self.endpoint, "reloading TLS material");
        self.exec(&stmt).await?;
        tracing::info!(endpoint = %self.endpoint, "TLS material reloaded");
        Ok(())
    }

    /// Point this server's replication at a source and start it.
    pub async fn point_replica_at(&mut self, spec: &SourceSpec) -> Result<()> {
        tracing::info!(endpoint = %self.endpoint, source = %format!("{}:{}", spec.host, spec.port), "pointing replica");
        let stmts = self.dialect.point_replica_at(spec)?;
        self.exec_all(&stmts).await?;
        tracing::info!(endpoint = %self.endpoint, "replica pointed");
        Ok(())
    }

    pub async fn stop_replication(&mut self) -> Result<()> {
        let stmt = self.dialect.stop_replica();
        self.exec(&stmt).await
    }

    pub async fn start_replication(&mut self) -> Result<()> {
        let stmt = self.dialect.start_replica();
        self.exec(&stmt).await
    }

    /// Stop replication and forget the source (`RESET SLAVE ALL` or its equivalent).
    pub async fn reset_replication(&mut self) -> Result<()> {
        self.stop_replication().await?;
        let stmt = self.dialect.reset_replica_all();
        self.exec(&stmt).await
    }

    /// Wait until this replica has applied `pos` in every domain of it (MariaDB), or fail with
    /// [`Error::Timeout`] after `deadline`.
    pub async fn wait_for_gtid(
        &mut self,
        pos: &mariadb::GtidPos,
        deadline: Duration,
    ) -> Result<()> {
        let stmt = self.dialect.wait_for_gtid_mariadb(pos, deadline);
        self.wait_statement(&stmt, deadline, &format!("GTID position {pos}"), |v| {
            v == "0"
        })
        .await
    }

    /// Wait until this replica has executed every GTID of `set` (MySQL).
    pub async fn wait_for_gtid_set(
        &mut self,
        set: &mysql::GtidSet,
        deadline: Duration,
    ) -> Result<()> {
        let stmt = self.dialect.wait_for_gtid_set(set, deadline);
        self.wait_statement(&stmt, deadline, &format!("GTID set {set}"), |v| v == "0")
            .await
    }

    /// Wait until this replica has applied the source's binlog up to `pos`.
    pub async fn wait_for_position(
        &mut self,
        pos: &BinlogPosition,
        deadline: Duration,
    ) -> Result<()> {
        let stmt = self.dialect.wait_for_position(pos, deadline);
        // MASTER_POS_WAIT returns the number of events waited for (>= 0), -1 on timeout and
        // NULL when replication is not running.
        self.wait_statement(&stmt, deadline, &format!("binlog position {pos}"), |v| {
            v.parse::<i64>().map(|n| n >= 0).unwrap_or(false)
        })
        .await
    }

    async fn wait_statement(
        &mut self,
        stmt: &Statement,
        deadline: Duration,
        what: &str,
        ok: impl Fn(&str) -> bool,
    ) -> Result<()> {
        let started = Instant::now();
        // The server bounds the wait, so the statement timeout must not cut it short; the client
        // bound adds a margin for a hung server.
        let bound = deadline + Duration::from_secs(2);
        let value = match self.rows_within(&stmt.sql, bound).await? {
            Some(rows) => rows
                .first()
                .and_then(|row| row.as_ref(0))
                .and_then(value_to_string),
            None => {
                // The connection's state is unknown now; it is given up as any statement past
                // its bound, and the caller still gets the wait's own error.
                let _ = self.abandon(&stmt.redacted, bound).await;
                None
            }
        };
        match value {
            Some(v) if ok(&v) => {
                tracing::debug!(endpoint = %self.endpoint, what, elapsed = ?started.elapsed(), "reached");
                Ok(())
            }
            None if started.elapsed() < deadline => Err(Error::State {
                endpoint: self.endpoint.clone(),
                message: format!("cannot wait for {what}: replication is not running"),
            }),
            _ => Err(Error::Timeout {
                endpoint: self.endpoint.clone(),
                what: what.to_string(),
                after: deadline,
            }),
        }
    }

    /// Close the connection politely. A hung server cannot hold this up past the statement
    /// timeout: the connection is then dropped, which ends it in the background.
    pub async fn close(self) {
        if let Link::Open(conn) = self.link {
            let _ = tokio::time::timeout(self.statement_timeout, conn.disconnect()).await;
        }
    }
}
