//! Binary log coordinates (`file:pos`) and their order across files.
//!
//! A coordinate names a byte offset in one binary log file of one server. Files of one server
//! share a base name and differ by a numeric extension that only grows
//! (`mysql-bin.000009` < `mysql-bin.000010` < `mysql-bin.1000000`: the extension widens past six
//! digits, so comparing the names as text would be wrong). Coordinates of different servers, or
//! of one server whose `log_bin_basename` changed, have different base names and no order.
//!
//! This module is pure: it never talks to a server and never guesses an order it cannot prove.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A position in a server's binary log: `file:pos`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BinlogPosition {
    /// The binary log file name, e.g. `mysql-bin.000042`.
    pub file: String,
    /// The byte offset in that file.
    pub pos: u64,
}

impl BinlogPosition {
    /// A position from its parts.
    pub fn new(file: impl Into<String>, pos: u64) -> BinlogPosition {
        BinlogPosition {
            file: file.into(),
            pos,
        }
    }

    /// The file name without its numeric extension (`mysql-bin` for `mysql-bin.000042`), or the
    /// whole name when it has none.
    pub fn base_name(&self) -> &str {
        match split_file(&self.file) {
            Some((base, _)) => base,
            None => &self.file,
        }
    }

    /// The numeric extension of the file name (`42` for `mysql-bin.000042`), when it has one.
    pub fn file_index(&self) -> Option<u64> {
        split_file(&self.file).map(|(_, index)| index)
    }

    /// The order of two positions of one server's binary log.
    ///
    /// `None` when they cannot be ordered: different base names (different servers or a renamed
    /// binary log), a file name without a numeric extension, or two spellings of one index
    /// (`x.10` and `x.000010`), which no real server produces.
    pub fn compare(&self, other: &BinlogPosition) -> Option<Ordering> {
        if self.file == other.file {
            return Some(self.pos.cmp(&other.pos));
        }
        let (base_a, index_a) = split_file(&self.file)?;
        let (base_b, index_b) = split_file(&other.file)?;
        if base_a != base_b || index_a == index_b {
            return None;
        }
        Some(index_a.cmp(&index_b))
    }
}

impl BinlogPosition {
    /// The current position from the row of `SHOW BINARY LOG STATUS` / `SHOW MASTER STATUS`
    /// as (column, value) pairs (`File`, `Position`, `Binlog_Do_DB`, `Binlog_Ignore_DB`,
    /// `Executed_Gtid_Set`); `None` when the row is empty or has no file (binary log off).
    pub fn from_binlog_status(row: &[(String, Option<String>)]) -> Result<Option<BinlogPosition>> {
        let get = |name: &str| {
            row.iter()
                .find(|(c, _)| c.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.as_deref())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        match (get("File"), get("Position")) {
            (Some(file), Some(pos)) => {
                let pos = pos
                    .parse()
                    .map_err(|_| Error::parse("binlog position", pos, "not a number"))?;
                Ok(Some(BinlogPosition::new(file, pos)))
            }
            _ => Ok(None),
        }
    }
}

/// Splits `base.000042` into (`base`, 42); `None` without a numeric extension.
fn split_file(file: &str) -> Option<(&str, u64)> {
    let (base, ext) = file.rsplit_once('.')?;
    if ext.is_empty() || !ext.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((base, ext.parse().ok()?))
}

impl PartialOrd for BinlogPosition {
    fn partial_cmp(&self, other: &BinlogPosition) -> Option<Ordering> {
        self.compare(other)
    }
}

impl fmt::Display for BinlogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

impl FromStr for BinlogPosition {
    type Err = Error;

    /// Parses `file:pos`. The last colon separates, so a file name may itself hold one.
    fn from_str(s: &str) -> Result<BinlogPosition> {
        let (file, pos) = s
            .rsplit_once(':')
            .ok_or_else(|| Error::parse("binlog position", s, "expected file:pos"))?;
        let file = file.trim();
        if file.is_empty() {
            return Err(Error::parse("binlog position", s, "the file name is empty"));
        }
        let pos = pos.trim();
        if pos.is_empty() || !pos.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::parse(
                "binlog position",
                s,
                "the position is not a number",
            ));
        }
        let pos = pos
            .parse()
            .map_err(|_| Error::parse("binlog position", s, "the position is too large"))?;
        Ok(BinlogPosition::new(file, pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> BinlogPosition {
        s.parse().unwrap()
    }

    #[test]
    fn display_and_parse_round_trip() {
        let pos = BinlogPosition::new("mysql-bin.000042", 1307);
        assert_eq!(pos.to_string(), "mysql-bin.000042:1307");
        assert_eq!(p("mysql-bin.000042:1307"), pos);
        assert_eq!(p(" mysql-bin.000042 : 1307 "), pos);
    }

    #[test]
    fn parse_uses_the_last_colon() {
        let pos = p("C:weird.000001:4");
        assert_eq!(pos.file, "C:weird.000001");
        assert_eq!(pos.pos, 4);
    }

    #[test]
    fn parse_rejects_garbage() {
        for bad in [
            "",
            "mysql-bin.000001",
            ":4",
            "mysql-bin.000001:",
            "mysql-bin.000001:-4",
            "mysql-bin.000001:+4",
            "mysql-bin.000001:4x",
            "mysql-bin.000001:99999999999999999999999",
        ] {
            let err = bad.parse::<BinlogPosition>().unwrap_err();
            assert!(matches!(err, Error::Parse { .. }), "{bad:?}: {err}");
        }
    }

    #[test]
    fn orders_within_one_file_by_offset() {
        assert!(p("mysql-bin.000009:100") < p("mysql-bin.000009:200"));
        assert_eq!(
            p("mysql-bin.000009:100").compare(&p("mysql-bin.000009:100")),
            Some(Ordering::Equal)
        );
    }

    #[test]
    fn orders_across_files_by_numeric_extension() {
        assert!(p("mysql-bin.000009:9999") < p("mysql-bin.000010:4"));
        assert!(p("mysql-bin.000010:4") < p("mysql-bin.1000000:4"));
        assert!(p("mysql-bin.999999:4") < p("mysql-bin.1000000:4"));
        assert!(p("mysql-bin.1000000:4") > p("mysql-bin.000010:99999"));
        // Text order would say the opposite.
        assert!("mysql-bin.1000000" < "mysql-bin.999999");
    }

    #[test]
    fn no_order_between_different_base_names() {
        assert_eq!(p("mysql-bin.000009:4").compare(&p("binlog.000010:4")), None);
        assert_eq!(
            p("mysql-bin.000009:4").partial_cmp(&p("binlog.000010:4")),
            None
        );
        // None of the operators holds between them.
        let (a, b) = (p("mysql-bin.000009:4"), p("binlog.000010:4"));
        assert!(!a.lt(&b) && !a.le(&b) && !a.gt(&b) && !a.ge(&b));
    }

    #[test]
    fn no_order_without_numeric_extension_or_for_odd_spellings() {
        assert_eq!(p("mysql-bin:4").compare(&p("mysql-bin.000001:4")), None);
        assert_eq!(p("a.b:4").compare(&p("a.c:4")), None);
        assert_eq!(p("x.10:4").compare(&p("x.000010:4")), None);
        // Identical names compare by offset even without an extension.
        assert!(p("mysql-bin:4") < p("mysql-bin:5"));
    }

    fn row(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(c, v)| (c.to_string(), v.map(String::from)))
            .collect()
    }

    /// `SHOW BINARY LOG STATUS` as the MySQL 8.4 manual shows it
    /// (<https://dev.mysql.com/doc/refman/8.4/en/show-binary-log-status.html>), and `SHOW
    /// MASTER STATUS` of MySQL 5.7 (<https://dev.mysql.com/doc/refman/5.7/en/show-master-status.html>),
    /// here without GTIDs, so with an empty `Executed_Gtid_Set`.
    #[test]
    fn reads_the_binary_log_status_row() {
        let mysql_84 = row(&[
            ("File", Some("source-bin.000002")),
            ("Position", Some("1307")),
            ("Binlog_Do_DB", Some("test")),
            ("Binlog_Ignore_DB", Some("manual, mysql")),
            (
                "Executed_Gtid_Set",
                Some("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5"),
            ),
        ]);
        assert_eq!(
            BinlogPosition::from_binlog_status(&mysql_84).unwrap(),
            Some(p("source-bin.000002:1307"))
        );
        let mysql_57 = row(&[
            ("File", Some("master-bin.000002")),
            ("Position", Some("1307")),
            ("Binlog_Do_DB", Some("test")),
            ("Binlog_Ignore_DB", Some("manual, mysql")),
            ("Executed_Gtid_Set", Some("")),
        ]);
        assert_eq!(
            BinlogPosition::from_binlog_status(&mysql_57).unwrap(),
            Some(p("master-bin.000002:1307"))
        );
        assert_eq!(BinlogPosition::from_binlog_status(&[]).unwrap(), None);
        let bad = row(&[("File", Some("mysql-bin.003")), ("Position", Some("x"))]);
        assert!(BinlogPosition::from_binlog_status(&bad).is_err());
    }

    #[test]
    fn base_name_and_index() {
        let pos = p("/var/lib/mysql/mysql-bin-changelog.012345:4");
        assert_eq!(pos.base_name(), "/var/lib/mysql/mysql-bin-changelog");
        assert_eq!(pos.file_index(), Some(12345));
        let odd = p("noext:4");
        assert_eq!(odd.base_name(), "noext");
        assert_eq!(odd.file_index(), None);
    }
}
