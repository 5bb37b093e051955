//! The `mysql.rds_*` procedures dbshift calls that have no plain-SQL twin: binary log
//! retention (a replica of an RDS or Aurora source needs the source's binary logs kept until
//! it has read them), moving a replica to the source's next binary log after error 1236, and
//! turning auto-position on or off.
//!
//! The procedure names follow the engine and version: Aurora MySQL version 3 and RDS for MySQL
//! 8.4 use `*_source`, Aurora MySQL version 2, RDS for MySQL 8.0/5.7 and RDS for MariaDB
//! `*_master` ([`crate::Flavor::uses_rds_source_procedures`]). See
//! <https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/mysql-stored-proc-replicating.html>,
//! <https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/mysql-stored-proc-replicating.html> and
//! <https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/mysql-stored-proc-configuring.html>.
//!
//! There is deliberately no builder for `mysql.rds_skip_repl_error`: skipping a replicated
//! transaction silently makes a replica differ from its source, which no workflow of dbshift
//! may decide on its own.

use super::{Dialect, Statement};
use crate::error::{Error, Result};

/// The `mysql.rds_show_configuration` row that holds the binary log retention.
pub const BINLOG_RETENTION_HOURS: &str = "binlog retention hours";

impl Dialect {
    fn require_rds(&self, what: &str) -> Result<()> {
        if self.flavor.rds || self.flavor.aurora {
            Ok(())
        } else {
            Err(self.unsupported(format!("{what} (an RDS or Aurora procedure)")))
        }
    }

    /// `*_source` or `*_master` in a procedure name.
    fn rds_word(&self) -> &'static str {
        if self.flavor.uses_rds_source_procedures() {
            "source"
        } else {
            "master"
        }
    }

    /// Keep binary logs for `hours` (`None`: back to the default, NULL, where RDS purges them
    /// as soon as no replica of its own needs them). RDS allows up to 168 hours (7 days),
    /// Aurora MySQL 2.11+ and 3 up to 2160 (90 days).
    pub fn set_binlog_retention_hours(&self, hours: Option<u32>) -> Result<Statement> {
        self.require_rds("mysql.rds_set_configuration")?;
        let long =
            self.flavor.aurora_major() >= Some(3) || self.flavor.aurora_version >= Some((2, 11, 0));
        let max = if long { 2160 } else { 168 };
        let value = match hours {
            None => "NULL".to_string(),
            Some(h) if h == 0 || h > max => {
                return Err(Error::parse(
                    "binlog retention hours",
                    &h.to_string(),
                    format!("expected 1 to {max} on {}", self.flavor),
                ))
            }
            Some(h) => h.to_string(),
        };
        Ok(Statement::plain(format!(
            "CALL mysql.rds_set_configuration('{BINLOG_RETENTION_HOURS}', {value})"
        )))
    }

    /// The RDS configuration (`name`, `value`, `description` rows); read the retention with
    /// [`parse_binlog_retention_hours`].
    pub fn show_rds_configuration(&self) -> Result<Statement> {
        self.require_rds("mysql.rds_show_configuration")?;
        Ok(Statement::plain("CALL mysql.rds_show_configuration"))
    }

    /// After replication error 1236 on a replica of an RDS source that failed over: move to
    /// the start of the source's next binary log, `current_index` being the number of the
    /// current one (`12345` for `mysql-bin-changelog.012345`). Transactions the old source
    /// never flushed are lost: a workflow only offers this to an operator.
    pub fn next_source_log(&self, current_index: u64) -> Result<Statement> {
        self.require_rds("moving to the source's next binary log")?;
        Ok(Statement::plain(format!(
            "CALL mysql.rds_next_{}_log({current_index})",
            self.rds_word()
        )))
    }

    /// Turn GTID auto-position on or off for the replica's current source (MySQL only).
    pub fn set_source_auto_position(&self, on: bool) -> Result<Statement> {
        self.require_rds("mysql.rds_set_source_auto_position")?;
        if self.flavor.is_mariadb() {
            return Err(self.unsupported("auto-position (a MySQL replication option)"));
        }
        Ok(Statement::plain(format!(
            "CALL mysql.rds_set_{}_auto_position({})",
            self.rds_word(),
            u8::from(on)
        )))
    }
}

/// The binary log retention, in hours, from the rows of `CALL mysql.rds_show_configuration`
/// as (column, value) pairs: `None` when it is NULL (the default: binary logs are purged as
/// soon as possible) or the row is absent.
pub fn parse_binlog_retention_hours(rows: &[Vec<(String, Option<String>)>]) -> Result<Option<u32>> {
    let column = |row: &[(String, Option<String>)], name: &str| {
        row.iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.clone())
    };
    let Some(row) = rows.iter().find(|r| {
        column(r, "name").is_some_and(|n| n.trim().eq_ignore_ascii_case(BINLOG_RETENTION_HOURS))
    }) else {
        return Ok(None);
    };
    match column(row, "value").map(|v| v.trim().to_string()) {
        None => Ok(None),
        Some(v) if v.is_empty() || v.eq_ignore_ascii_case("NULL") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| Error::parse("binlog retention hours", &v, "not a number of hours")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn procedure_names_follow_engine_and_version() {
        for (d, next, auto) in [
            (
                rds_mysql_5_7(),
                "CALL mysql.rds_next_master_log(12345)",
                "CALL mysql.rds_set_master_auto_position(1)",
            ),
            (
                rds_mysql_8_0(),
                "CALL mysql.rds_next_master_log(12345)",
                "CALL mysql.rds_set_master_auto_position(1)",
            ),
            (
                rds_mysql_8_4(),
                "CALL mysql.rds_next_source_log(12345)",
                "CALL mysql.rds_set_source_auto_position(1)",
            ),
            (
                aurora_2(),
                "CALL mysql.rds_next_master_log(12345)",
                "CALL mysql.rds_set_master_auto_position(1)",
            ),
            (
                aurora(),
                "CALL mysql.rds_next_source_log(12345)",
                "CALL mysql.rds_set_source_auto_position(1)",
            ),
        ] {
            let name = d.flavor().to_string();
            assert_eq!(d.next_source_log(12345).unwrap().sql, next, "{name}");
            assert_eq!(
                d.set_source_auto_position(true).unwrap().sql,
                auto,
                "{name}"
            );
            assert!(d
                .set_source_auto_position(false)
                .unwrap()
                .sql
                .ends_with("_auto_position(0)"));
        }
        assert_eq!(
            rds_mariadb().next_source_log(7).unwrap().sql,
            "CALL mysql.rds_next_master_log(7)"
        );
        unsupported(rds_mariadb().set_source_auto_position(true));
        for d in mysqls().into_iter().chain(mariadbs()) {
            unsupported(d.next_source_log(1));
            unsupported(d.set_source_auto_position(true));
            unsupported(d.set_binlog_retention_hours(Some(24)));
            unsupported(d.show_rds_configuration());
        }
    }

    /// <https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/mysql-stored-proc-configuring.html>
    #[test]
    fn binlog_retention_is_set_and_bounded() {
        for d in aws_mysqls().into_iter().chain([rds_mariadb()]) {
            assert_eq!(
                d.set_binlog_retention_hours(Some(24)).unwrap().sql,
                "CALL mysql.rds_set_configuration('binlog retention hours', 24)"
            );
            assert_eq!(
                d.set_binlog_retention_hours(None).unwrap().sql,
                "CALL mysql.rds_set_configuration('binlog retention hours', NULL)"
            );
            assert_eq!(
                d.show_rds_configuration().unwrap().sql,
                "CALL mysql.rds_show_configuration"
            );
            assert!(d.set_binlog_retention_hours(Some(0)).is_err());
        }
        assert!(rds_mysql_8_0()
            .set_binlog_retention_hours(Some(168))
            .is_ok());
        assert!(rds_mysql_8_0()
            .set_binlog_retention_hours(Some(169))
            .is_err());
        assert!(aurora().set_binlog_retention_hours(Some(2160)).is_ok());
        assert!(aurora().set_binlog_retention_hours(Some(2161)).is_err());
        assert!(aurora_2().set_binlog_retention_hours(Some(2160)).is_ok());
        let old_aurora_2 = Dialect::new(crate::Flavor::detect(
            "5.7.mysql_aurora.2.10.2",
            "",
            None,
            true,
            false,
        ));
        assert!(old_aurora_2.set_binlog_retention_hours(Some(169)).is_err());
    }

    fn row(name: &str, value: Option<&str>, description: &str) -> Vec<(String, Option<String>)> {
        vec![
            ("name".into(), Some(name.into())),
            ("value".into(), value.map(String::from)),
            ("description".into(), Some(description.into())),
        ]
    }

    /// `CALL mysql.rds_show_configuration` as the AWS page shows it (RDS for MySQL 8.0 adds
    /// `source delay` and `target delay` rows).
    #[test]
    fn retention_is_read_from_show_configuration() {
        let described = "binlog retention hours specifies the duration in hours before binary \
                         logs are automatically deleted.";
        let rows = vec![
            row(BINLOG_RETENTION_HOURS, Some("24"), described),
            row(
                "source delay",
                Some("0"),
                "source delay specifies replication delay in seconds between current instance \
                 and its master.",
            ),
            row(
                "target delay",
                Some("0"),
                "target delay specifies replication delay in seconds between current instance \
                 and its future read-replica.",
            ),
        ];
        assert_eq!(parse_binlog_retention_hours(&rows).unwrap(), Some(24));
        let default = vec![row(BINLOG_RETENTION_HOURS, None, described)];
        assert_eq!(parse_binlog_retention_hours(&default).unwrap(), None);
        assert_eq!(parse_binlog_retention_hours(&[]).unwrap(), None);
        let bad = vec![row(BINLOG_RETENTION_HOURS, Some("a day"), described)];
        assert!(parse_binlog_retention_hours(&bad).is_err());
    }
}
