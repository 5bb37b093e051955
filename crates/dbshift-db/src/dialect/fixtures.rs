//! Flavors the statement builders are tested against (test builds only): one of each family
//! and version boundary the dialect cares about.

use super::Dialect;
use crate::error::Error;
use crate::flavor::Flavor;

pub(crate) fn dialect(version: &str, rds: bool, has_super: bool) -> Dialect {
    Dialect::new(Flavor::detect(version, "", None, rds, has_super))
}

pub(crate) fn maria_10_3() -> Dialect {
    dialect("10.3.39-MariaDB", false, true)
}
pub(crate) fn maria_10_4_0() -> Dialect {
    dialect("10.4.0-MariaDB", false, true)
}
pub(crate) fn maria_10_6() -> Dialect {
    dialect("10.6.18-MariaDB-log", false, true)
}
pub(crate) fn maria_10_11() -> Dialect {
    dialect("10.11.14-MariaDB-0+deb12u2-log", false, true)
}
pub(crate) fn maria_11_4() -> Dialect {
    dialect("11.4.2-MariaDB", false, true)
}
pub(crate) fn mysql_5_7() -> Dialect {
    dialect("5.7.44-log", false, true)
}
pub(crate) fn mysql_8_0_21() -> Dialect {
    dialect("8.0.21", false, true)
}
pub(crate) fn mysql_8_4() -> Dialect {
    dialect("8.4.3", false, true)
}
pub(crate) fn aurora() -> Dialect {
    Dialect::new(Flavor::detect(
        "8.0.mysql_aurora.3.05.2",
        "Source distribution",
        Some("3.05.2"),
        true,
        false,
    ))
}
/// Aurora MySQL version 2 (MySQL 5.7 compatible).
pub(crate) fn aurora_2() -> Dialect {
    Dialect::new(Flavor::detect(
        "5.7.mysql_aurora.2.11.2",
        "Source distribution",
        Some("2.11.2"),
        true,
        false,
    ))
}
pub(crate) fn mysql_8_0_23() -> Dialect {
    dialect("8.0.23", false, true)
}
pub(crate) fn mysql_8_0_26() -> Dialect {
    dialect("8.0.26", false, true)
}
pub(crate) fn rds_mysql_5_7() -> Dialect {
    dialect("5.7.44-log", true, false)
}
pub(crate) fn rds_mysql_8_4() -> Dialect {
    dialect("8.4.3", true, false)
}
pub(crate) fn rds_mysql_8_0() -> Dialect {
    dialect("8.0.36", true, false)
}
pub(crate) fn rds_mariadb() -> Dialect {
    dialect("10.11.8-MariaDB-log", true, false)
}
/// MariaDB on RDS with a user that holds SUPER (a self-managed server with the procedures
/// installed): plain SQL works there.
pub(crate) fn rds_mariadb_with_super() -> Dialect {
    dialect("10.11.8-MariaDB-log", true, true)
}

/// Plain MariaDB servers (SUPER, no procedures).
pub(crate) fn mariadbs() -> Vec<Dialect> {
    vec![maria_10_6(), maria_10_11(), maria_11_4()]
}

/// Plain MySQL servers.
pub(crate) fn mysqls() -> Vec<Dialect> {
    vec![mysql_5_7(), mysql_8_0_21(), mysql_8_4()]
}

/// Every MySQL release boundary the dialect cares about, with SUPER.
pub(crate) fn mysql_versions() -> Vec<Dialect> {
    vec![
        mysql_5_7(),
        mysql_8_0_21(),
        mysql_8_0_23(),
        mysql_8_0_26(),
        mysql_8_4(),
    ]
}

/// MySQL-family servers reached without SUPER: RDS for MySQL and Aurora MySQL.
pub(crate) fn aws_mysqls() -> Vec<Dialect> {
    vec![
        rds_mysql_5_7(),
        rds_mysql_8_0(),
        rds_mysql_8_4(),
        aurora_2(),
        aurora(),
    ]
}

/// Servers reached without SUPER, through the `mysql.rds_*` procedures.
pub(crate) fn without_super() -> Vec<Dialect> {
    vec![aurora(), rds_mysql_8_0(), rds_mariadb()]
}

/// The message of an [`Error::Unsupported`]; panics on anything else.
pub(crate) fn unsupported<T: std::fmt::Debug>(r: crate::error::Result<T>) -> String {
    match r {
        Err(e @ Error::Unsupported { .. }) => e.to_string(),
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

/// The SQL of each statement.
pub(crate) fn sql(stmts: &[super::Statement]) -> Vec<&str> {
    stmts.iter().map(|s| s.sql.as_str()).collect()
}
