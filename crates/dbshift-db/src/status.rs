//! Replication status, normalized across flavors, from one row of `SHOW SLAVE STATUS`,
//! `SHOW REPLICA STATUS` or `CALL mysql.rds_replica_status`.
//!
//! The same facts go by different column names: MariaDB and MySQL before 8.0.22 say
//! `Slave_IO_Running`, `Master_Host`, `Seconds_Behind_Master`; MySQL 8.0.22+ says
//! `Replica_IO_Running`, `Source_Host`, `Seconds_Behind_Source`; RDS for MariaDB mixes both.
//! Each field is read from whichever name is present, so one parser serves every flavor.
//!
//! This module is pure: it never talks to a server. It never invents a value: a column that is
//! absent or empty is `None`, and a value that is present but unreadable is a parse error rather
//! than a guess. `seconds_behind` is reported but is no measure of lag on its own (it is NULL
//! or 0 in exactly the cases that matter); compare GTIDs or positions instead.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gtid::{mariadb, mysql};
use crate::position::BinlogPosition;

/// The state of the replication receiver (IO) thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IoState {
    /// Connected to the source and receiving.
    Yes,
    /// Stopped.
    No,
    /// Trying to connect (MariaDB also reports `Preparing` while it sets up, counted here).
    Connecting,
}

/// The replication status of one replica, whatever its flavor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationStatus {
    /// Whether the server has a replication source configured at all.
    pub configured: bool,
    pub source_host: Option<String>,
    pub source_port: Option<u16>,
    pub io_running: IoState,
    pub sql_running: bool,
    /// `(Last_IO_Errno, Last_IO_Error)` when there is an error.
    pub last_io_error: Option<(u32, String)>,
    /// `(Last_SQL_Errno, Last_SQL_Error)` when there is an error.
    pub last_sql_error: Option<(u32, String)>,
    /// `Seconds_Behind_Master` / `Seconds_Behind_Source`; `None` when NULL.
    pub seconds_behind: Option<u64>,
    /// `Master_Server_Id` / `Source_Server_Id`: the source's server_id as the IO thread last
    /// saw it; `None` (or 0 on the server) before it ever connected. Identifies the source
    /// whatever address (proxy, relay, DNS name) the replica reaches it by.
    #[serde(default)]
    pub source_server_id: Option<u32>,
    /// `Master_Log_File:Read_Master_Log_Pos`: how far the IO thread has fetched.
    pub source_log: Option<BinlogPosition>,
    /// `Relay_Master_Log_File:Exec_Master_Log_Pos`: how far the SQL thread has applied, in
    /// the source's coordinates.
    pub exec_source_log: Option<BinlogPosition>,
    /// MariaDB `Using_Gtid`: `No`, `Slave_Pos` or `Current_Pos`.
    pub using_gtid: Option<String>,
    /// `Until_Condition`: `None`, or what a `START SLAVE UNTIL` still pending stops at
    /// (`Gtid`, `Master`, `Relay`). A thread started alone keeps it.
    pub until_condition: Option<String>,
    /// MariaDB `Gtid_IO_Pos`: the last GTID per domain the IO thread received.
    pub gtid_io_pos: Option<mariadb::GtidPos>,
    /// MySQL `Retrieved_Gtid_Set`.
    pub retrieved_gtid_set: Option<mysql::GtidSet>,
    /// MySQL `Executed_Gtid_Set`.
    pub executed_gtid_set: Option<mysql::GtidSet>,
    /// MySQL `Auto_Position`.
    pub auto_position: Option<bool>,
    /// `Master_SSL_Allowed` / `Source_SSL_Allowed` (MySQL's `Ignored` counts as no).
    pub ssl: Option<bool>,
    /// `Master_SSL_Verify_Server_Cert` / `Source_SSL_Verify_Server_Cert`.
    pub ssl_verify_server_cert: Option<bool>,
    /// Every non-empty `Replicate_*` filter, as `Name=value`. Any filter means the replica may
    /// lack data its source has (RDS adds its own `Replicate_Ignore_Table` for `mysql.rds_*`).
    pub replicate_filters: Vec<String>,
}

impl ReplicationStatus {
    /// The status of a server that is no replica (an empty result).
    pub fn not_configured() -> ReplicationStatus {
        ReplicationStatus {
            configured: false,
            source_host: None,
            source_port: None,
            io_running: IoState::No,
            sql_running: false,
            last_io_error: None,
            last_sql_error: None,
            seconds_behind: None,
            source_server_id: None,
            source_log: None,
            exec_source_log: None,
            using_gtid: None,
            until_condition: None,
            gtid_io_pos: None,
            retrieved_gtid_set: None,
            executed_gtid_set: None,
            auto_position: None,
            ssl: None,
            ssl_verify_server_cert: None,
            replicate_filters: Vec::new(),
        }
    }

    /// Both threads running and no error recorded.
    pub fn healthy(&self) -> bool {
        self.io_running == IoState::Yes
            && self.sql_running
            && self.last_io_error.is_none()
            && self.last_sql_error.is_none()
    }

    /// Normalize one status row, given as (column name, value) pairs with NULL as `None`.
    /// An empty row is a server that is no replica.
    pub fn from_row(columns: &[(String, Option<String>)]) -> Result<ReplicationStatus> {
        if columns.is_empty() {
            return Ok(ReplicationStatus::not_configured());
        }
        let row = Row(columns);
        let io_running = match row.required(&["Slave_IO_Running", "Replica_IO_Running"])? {
            v if v.eq_ignore_ascii_case("Yes") => IoState::Yes,
            v if v.eq_ignore_ascii_case("No") => IoState::No,
            v if v.eq_ignore_ascii_case("Connecting") || v.eq_ignore_ascii_case("Preparing") => {
                IoState::Connecting
            }
            v => return Err(bad("Slave_IO_Running", v, "expected Yes, No or Connecting")),
        };
        let sql_running = row
            .yes_no(&["Slave_SQL_Running", "Replica_SQL_Running"])?
            .ok_or_else(|| missing("Slave_SQL_Running"))?;
        Ok(ReplicationStatus {
            configured: true,
            source_host: row.text(&["Master_Host", "Source_Host"]).map(String::from),
            source_port: row.number(&["Master_Port", "Source_Port"])?,
            io_running,
            sql_running,
            last_io_error: row.error(&["Last_IO_Errno"], &["Last_IO_Error"])?,
            last_sql_error: row.error(
                &["Last_SQL_Errno", "Last_Errno"],
                &["Last_SQL_Error", "Last_Error"],
            )?,
            seconds_behind: row.number(&["Seconds_Behind_Master", "Seconds_Behind_Source"])?,
            source_server_id: row
                .number::<u32>(&["Master_Server_Id", "Source_Server_Id"])?
                .filter(|id| *id != 0),
            source_log: row.position(
                &["Master_Log_File", "Source_Log_File"],
                &["Read_Master_Log_Pos", "Read_Source_Log_Pos"],
            )?,
            exec_source_log: row.position(
                &["Relay_Master_Log_File", "Relay_Source_Log_File"],
                &["Exec_Master_Log_Pos", "Exec_Source_Log_Pos"],
            )?,
            using_gtid: row.text(&["Using_Gtid"]).map(String::from),
            until_condition: row.text(&["Until_Condition"]).map(String::from),
            gtid_io_pos: row.parsed(&["Gtid_IO_Pos"])?,
            retrieved_gtid_set: row.parsed(&["Retrieved_Gtid_Set"])?,
            executed_gtid_set: row.parsed(&["Executed_Gtid_Set"])?,
            auto_position: row.flag(&["Auto_Position"])?,
            ssl: row.yes_no(&["Master_SSL_Allowed", "Source_SSL_Allowed"])?,
            ssl_verify_server_cert: row.yes_no(&[
                "Master_SSL_Verify_Server_Cert",
                "Source_SSL_Verify_Server_Cert",
            ])?,
            replicate_filters: row.filters(),
        })
    }
}

const WHAT: &str = "replication status";

fn bad(column: &str, value: &str, reason: &str) -> Error {
    Error::parse(WHAT, value, format!("{column}: {reason}"))
}

fn missing(column: &str) -> Error {
    Error::parse(WHAT, "", format!("the row has no {column} column"))
}

/// A status row, read by any of a field's column names.
struct Row<'a>(&'a [(String, Option<String>)]);

impl Row<'_> {
    /// The trimmed value of the first present column among `names`, `None` when absent, NULL
    /// or empty. Names are matched without regard to case (`Channel_name`, `Channel_Name`).
    fn text(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|name| {
            self.0
                .iter()
                .find(|(column, _)| column.eq_ignore_ascii_case(name))
                .and_then(|(_, value)| value.as_deref())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        })
    }

    /// Whether any of `names` is a column of the row, whatever its value.
    fn has(&self, names: &[&str]) -> bool {
        self.0
            .iter()
            .any(|(column, _)| names.iter().any(|n| column.eq_ignore_ascii_case(n)))
    }

    fn required(&self, names: &[&str]) -> Result<&str> {
        self.text(names).ok_or_else(|| missing(names[0]))
    }

    fn number<T: std::str::FromStr>(&self, names: &[&str]) -> Result<Option<T>> {
        match self.text(names) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("NULL") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| bad(names[0], v, "not a number in range")),
        }
    }

    /// `Yes`/`No` (MySQL's `Ignored`, for TLS the replica cannot use, is a no).
    fn yes_no(&self, names: &[&str]) -> Result<Option<bool>> {
        match self.text(names) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("Yes") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("No") || v.eq_ignore_ascii_case("Ignored") => {
                Ok(Some(false))
            }
            Some(v) => Err(bad(names[0], v, "expected Yes or No")),
        }
    }

    /// `1`/`0`.
    fn flag(&self, names: &[&str]) -> Result<Option<bool>> {
        match self.text(names) {
            None => Ok(None),
            Some("1") => Ok(Some(true)),
            Some("0") => Ok(Some(false)),
            Some(v) => Err(bad(names[0], v, "expected 1 or 0")),
        }
    }

    /// A GTID value: `None` when the column is absent (another flavor), the parsed value
    /// (possibly empty) when present.
    fn parsed<T: std::str::FromStr<Err = Error>>(&self, names: &[&str]) -> Result<Option<T>> {
        if !self.has(names) {
            return Ok(None);
        }
        self.text(names).unwrap_or_default().parse().map(Some)
    }

    fn position(&self, files: &[&str], offsets: &[&str]) -> Result<Option<BinlogPosition>> {
        let Some(file) = self.text(files) else {
            return Ok(None);
        };
        Ok(self
            .number(offsets)?
            .map(|pos| BinlogPosition::new(file, pos)))
    }

    /// An error number and message; `None` when the number is 0 and the message empty.
    fn error(&self, numbers: &[&str], messages: &[&str]) -> Result<Option<(u32, String)>> {
        let number: u32 = self.number(numbers)?.unwrap_or(0);
        let message = self.text(messages).unwrap_or_default();
        if number == 0 && message.is_empty() {
            Ok(None)
        } else {
            Ok(Some((number, message.to_string())))
        }
    }

    fn filters(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|(column, _)| {
                column
                    .get(..10)
                    .is_some_and(|p| p.eq_ignore_ascii_case("Replicate_"))
            })
            .filter_map(|(column, value)| {
                let value = value.as_deref()?.trim();
                (!value.is_empty()).then(|| format!("{column}={value}"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
