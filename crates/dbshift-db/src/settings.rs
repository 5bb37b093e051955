//! Typed values of the server settings the guards and the dialect depend on: GTID mode and
//! consistency, binary log format, the read-only fence, and which semi-synchronous plugins
//! (and under which names) a server has. A workflow reads them through [`crate::Server`]
//! methods and never names a variable.
//!
//! This module is pure: it never talks to a server. An unknown value is a parse error, never
//! a guess.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

fn parse_enum<T: Copy>(
    what: &'static str,
    text: &str,
    choices: &[(&str, T)],
    expected: &str,
) -> Result<T> {
    let t = text.trim();
    choices
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(t))
        .map(|&(_, v)| v)
        .ok_or_else(|| Error::parse(what, text, format!("expected {expected}")))
}

/// MySQL `@@gtid_mode`
/// (<https://dev.mysql.com/doc/refman/8.4/en/replication-options-gtids.html#sysvar_gtid_mode>).
/// MariaDB has no such variable: its GTIDs are always on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GtidMode {
    /// New and replicated transactions are anonymous (no GTID). RDS for MySQL's default.
    Off,
    /// New transactions anonymous; replicated ones may carry a GTID.
    OffPermissive,
    /// New transactions get a GTID; replicated ones may be anonymous.
    OnPermissive,
    /// Every transaction has a GTID: `gtid_executed` is the whole history.
    On,
}

impl GtidMode {
    /// Whether `gtid_executed` holds every transaction of the server, so that positions can
    /// be GTID sets (and auto-position used): only `ON`. In the permissive modes some
    /// transactions are anonymous, so the set would say a server has less than it has, or a
    /// replica is caught up when it is not.
    pub fn gtid_positions(self) -> bool {
        self == GtidMode::On
    }
}

impl FromStr for GtidMode {
    type Err = Error;

    /// `OFF`, `OFF_PERMISSIVE`, `ON_PERMISSIVE`, `ON` (any case), as the server prints them;
    /// also the numbers 0 to 3 the enum stands for.
    fn from_str(s: &str) -> Result<GtidMode> {
        use GtidMode::*;
        parse_enum(
            "gtid_mode",
            s,
            &[
                ("OFF", Off),
                ("OFF_PERMISSIVE", OffPermissive),
                ("ON_PERMISSIVE", OnPermissive),
                ("ON", On),
                ("0", Off),
                ("1", OffPermissive),
                ("2", OnPermissive),
                ("3", On),
            ],
            "OFF, OFF_PERMISSIVE, ON_PERMISSIVE or ON",
        )
    }
}

impl fmt::Display for GtidMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GtidMode::Off => "OFF",
            GtidMode::OffPermissive => "OFF_PERMISSIVE",
            GtidMode::OnPermissive => "ON_PERMISSIVE",
            GtidMode::On => "ON",
        })
    }
}

/// MySQL `@@enforce_gtid_consistency`
/// (<https://dev.mysql.com/doc/refman/8.4/en/replication-options-gtids.html#sysvar_enforce_gtid_consistency>):
/// whether statements that cannot be logged safely with GTIDs are refused (`ON`), only warned
/// about (`WARN`) or allowed (`OFF`). `gtid_mode=ON` needs `ON`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EnforceGtidConsistency {
    Off,
    On,
    Warn,
}

impl FromStr for EnforceGtidConsistency {
    type Err = Error;

    /// `OFF`, `ON`, `WARN` (any case), or 0, 1, 2.
    fn from_str(s: &str) -> Result<EnforceGtidConsistency> {
        use EnforceGtidConsistency::*;
        parse_enum(
            "enforce_gtid_consistency",
            s,
            &[
                ("OFF", Off),
                ("ON", On),
                ("WARN", Warn),
                ("0", Off),
                ("1", On),
                ("2", Warn),
            ],
            "OFF, ON or WARN",
        )
    }
}

impl fmt::Display for EnforceGtidConsistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EnforceGtidConsistency::Off => "OFF",
            EnforceGtidConsistency::On => "ON",
            EnforceGtidConsistency::Warn => "WARN",
        })
    }
}

/// `@@binlog_format`: how changes are written to the binary log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinlogFormat {
    Row,
    Statement,
    Mixed,
}

impl FromStr for BinlogFormat {
    type Err = Error;

    /// `ROW`, `STATEMENT`, `MIXED` (any case).
    fn from_str(s: &str) -> Result<BinlogFormat> {
        parse_enum(
            "binlog_format",
            s,
            &[
                ("ROW", BinlogFormat::Row),
                ("STATEMENT", BinlogFormat::Statement),
                ("MIXED", BinlogFormat::Mixed),
            ],
            "ROW, STATEMENT or MIXED",
        )
    }
}

impl fmt::Display for BinlogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BinlogFormat::Row => "ROW",
            BinlogFormat::Statement => "STATEMENT",
            BinlogFormat::Mixed => "MIXED",
        })
    }
}

/// A boolean server variable as the server prints it: `ON`/`1` or `OFF`/`0`.
pub fn parse_switch(what: &'static str, text: &str) -> Result<bool> {
    parse_enum(
        what,
        text,
        &[("ON", true), ("1", true), ("OFF", false), ("0", false)],
        "ON or OFF",
    )
}

/// The read-only fence of a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadOnly {
    /// `read_only`: clients without SUPER (or `READ_ONLY ADMIN`, or on MySQL
    /// `CONNECTION_ADMIN`) cannot write.
    pub read_only: bool,
    /// MySQL 5.7.8+ `super_read_only`: nobody can write, SUPER or not. `None` where the server
    /// has no such variable (MariaDB, older MySQL).
    pub super_read_only: Option<bool>,
}

impl ReadOnly {
    /// Whether even privileged users are refused: `super_read_only` on. Where the server has
    /// no `super_read_only`, `read_only` lets privileged users write, so this is false: the
    /// fence then also ends their sessions ([`crate::Server::fence_writes`]).
    pub fn fences_everyone(&self) -> bool {
        self.super_read_only == Some(true)
    }
}

/// Which names a semi-synchronous replication plugin uses
/// (<https://dev.mysql.com/doc/refman/8.4/en/replication-semisync-installation.html>).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SemiSyncNaming {
    /// `rpl_semi_sync_master_*` / `rpl_semi_sync_slave_*`: MySQL's old plugins
    /// (`semisync_master.so`, `semisync_slave.so`) and MariaDB's built-in semi-sync.
    MasterSlave,
    /// `rpl_semi_sync_source_*` / `rpl_semi_sync_replica_*`: MySQL 8.0.26+'s new plugins
    /// (`semisync_source.so`, `semisync_replica.so`), the only ones in 8.4.
    SourceReplica,
}

impl SemiSyncNaming {
    /// The source side's word: `master` or `source`.
    pub fn source_word(self) -> &'static str {
        match self {
            SemiSyncNaming::MasterSlave => "master",
            SemiSyncNaming::SourceReplica => "source",
        }
    }

    /// The replica side's word: `slave` or `replica`.
    pub fn replica_word(self) -> &'static str {
        match self {
            SemiSyncNaming::MasterSlave => "slave",
            SemiSyncNaming::SourceReplica => "replica",
        }
    }
}

/// The semi-synchronous sides a server has, each with the names its plugin uses; `None` for a
/// side whose plugin is not installed. Read from the variables the server has, never guessed
/// from its version: a MySQL 8.0.26+ server may still run the old plugins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SemiSync {
    pub source: Option<SemiSyncNaming>,
    pub replica: Option<SemiSyncNaming>,
}

impl SemiSync {
    /// From the variable names of `SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync_%'`: a side is
    /// installed when its `*_enabled` variable exists.
    pub fn from_variable_names<'a>(names: impl IntoIterator<Item = &'a str>) -> SemiSync {
        let mut out = SemiSync::default();
        for name in names {
            let name = name.trim().to_ascii_lowercase();
            match name.as_str() {
                "rpl_semi_sync_master_enabled" => out.source = Some(SemiSyncNaming::MasterSlave),
                "rpl_semi_sync_source_enabled" => out.source = Some(SemiSyncNaming::SourceReplica),
                "rpl_semi_sync_slave_enabled" => out.replica = Some(SemiSyncNaming::MasterSlave),
                "rpl_semi_sync_replica_enabled" => {
                    out.replica = Some(SemiSyncNaming::SourceReplica)
                }
                _ => {}
            }
        }
        out
    }

    /// Whether neither side is installed.
    pub fn is_absent(&self) -> bool {
        self.source.is_none() && self.replica.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_modes_parse_as_the_server_prints_them() {
        for (text, mode) in [
            ("OFF", GtidMode::Off),
            ("OFF_PERMISSIVE", GtidMode::OffPermissive),
            ("ON_PERMISSIVE", GtidMode::OnPermissive),
            ("ON", GtidMode::On),
            (" on ", GtidMode::On),
            ("off_permissive", GtidMode::OffPermissive),
            ("3", GtidMode::On),
        ] {
            assert_eq!(text.parse::<GtidMode>().unwrap(), mode, "{text}");
        }
        for mode in [
            GtidMode::Off,
            GtidMode::OffPermissive,
            GtidMode::OnPermissive,
            GtidMode::On,
        ] {
            assert_eq!(mode.to_string().parse::<GtidMode>().unwrap(), mode);
            assert_eq!(mode.gtid_positions(), mode == GtidMode::On);
        }
        for bad in ["", "YES", "ON PERMISSIVE", "4"] {
            assert!(bad.parse::<GtidMode>().is_err(), "{bad}");
        }
    }

    #[test]
    fn enforce_gtid_consistency_parses_warn() {
        assert_eq!(
            "WARN".parse::<EnforceGtidConsistency>().unwrap(),
            EnforceGtidConsistency::Warn
        );
        assert_eq!(
            "ON".parse::<EnforceGtidConsistency>().unwrap(),
            EnforceGtidConsistency::On
        );
        assert_eq!(
            "off".parse::<EnforceGtidConsistency>().unwrap(),
            EnforceGtidConsistency::Off
        );
        assert_eq!(
            "2".parse::<EnforceGtidConsistency>().unwrap(),
            EnforceGtidConsistency::Warn
        );
        assert_eq!(EnforceGtidConsistency::Warn.to_string(), "WARN");
        assert!("MAYBE".parse::<EnforceGtidConsistency>().is_err());
    }

    #[test]
    fn binlog_formats_and_switches() {
        assert_eq!("ROW".parse::<BinlogFormat>().unwrap(), BinlogFormat::Row);
        assert_eq!(
            "mixed".parse::<BinlogFormat>().unwrap(),
            BinlogFormat::Mixed
        );
        assert_eq!(
            "STATEMENT".parse::<BinlogFormat>().unwrap().to_string(),
            "STATEMENT"
        );
        assert!("ROWS".parse::<BinlogFormat>().is_err());
        assert!(parse_switch("x", "ON").unwrap());
        assert!(parse_switch("x", "1").unwrap());
        assert!(!parse_switch("x", "OFF").unwrap());
        assert!(!parse_switch("x", "0").unwrap());
        assert!(parse_switch("x", "yes").is_err());
    }

    #[test]
    fn read_only_fences_everyone_only_with_super_read_only() {
        let ro = |read_only, super_read_only| ReadOnly {
            read_only,
            super_read_only,
        };
        assert!(ro(true, Some(true)).fences_everyone());
        assert!(!ro(true, Some(false)).fences_everyone());
        assert!(!ro(true, None).fences_everyone());
        assert!(!ro(false, None).fences_everyone());
    }

    /// `SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync_%'` as the MySQL manuals show it for each
    /// plugin pair (<https://dev.mysql.com/doc/refman/8.0/en/replication-semisync-installation.html>).
    #[test]
    fn semi_sync_naming_is_read_from_the_variables() {
        let new_source = [
            "rpl_semi_sync_source_enabled",
            "rpl_semi_sync_source_timeout",
            "rpl_semi_sync_source_trace_level",
            "rpl_semi_sync_source_wait_for_replica_count",
            "rpl_semi_sync_source_wait_no_replica",
            "rpl_semi_sync_source_wait_point",
        ];
        let s = SemiSync::from_variable_names(new_source);
        assert_eq!(s.source, Some(SemiSyncNaming::SourceReplica));
        assert_eq!(s.replica, None);
        let old_both = [
            "rpl_semi_sync_master_enabled",
            "rpl_semi_sync_master_timeout",
            "rpl_semi_sync_master_wait_point",
            "rpl_semi_sync_slave_enabled",
            "rpl_semi_sync_slave_trace_level",
        ];
        let s = SemiSync::from_variable_names(old_both);
        assert_eq!(s.source, Some(SemiSyncNaming::MasterSlave));
        assert_eq!(s.replica, Some(SemiSyncNaming::MasterSlave));
        assert_eq!(
            SemiSync::from_variable_names(["Rpl_semi_sync_replica_enabled"]).replica,
            Some(SemiSyncNaming::SourceReplica)
        );
        assert!(SemiSync::from_variable_names([]).is_absent());
        assert!(SemiSync::from_variable_names(["rpl_semi_sync_master_timeout"]).is_absent());
        assert_eq!(SemiSyncNaming::SourceReplica.source_word(), "source");
        assert_eq!(SemiSyncNaming::MasterSlave.replica_word(), "slave");
    }
}
