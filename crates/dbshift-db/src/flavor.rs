//! Which server this is: engine, version, and the AWS variants, from what the server says
//! about itself (`VERSION()`, `@@version_comment`, `AURORA_VERSION()`, whether `mysql.rds_*`
//! procedures exist, whether the user holds SUPER).
//!
//! Every version-dependent choice of the dialect is a named helper here, each with the release
//! that introduced the feature, so that a reader checks one line against the manual. This
//! module is pure: it never queries a server itself, and it never fails (an unreadable version
//! is taken as 0.0.0, which selects the oldest syntax).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The server family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Engine {
    /// MariaDB (including RDS for MariaDB).
    MariaDb,
    /// MySQL and its relatives: Percona Server, RDS for MySQL, Aurora MySQL.
    MySql,
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::MariaDb => "MariaDB",
            Engine::MySql => "MySQL",
        })
    }
}

/// What kind of server this is, as far as the SQL we send depends on it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Flavor {
    pub engine: Engine,
    /// The community version (for Aurora, the MySQL version it is compatible with).
    pub version: (u32, u32, u32),
    /// Aurora MySQL.
    pub aurora: bool,
    /// The Aurora version (`3.05.2` is `(3, 5, 2)`), when known.
    pub aurora_version: Option<(u32, u32, u32)>,
    /// The `mysql.rds_*` procedures exist (RDS, Aurora).
    pub rds: bool,
    /// The connected user holds SUPER (never the case on RDS or Aurora).
    pub has_super: bool,
}

impl Flavor {
    /// Recognize a server from `VERSION()`, `@@version_comment`, `AURORA_VERSION()` (when the
    /// function exists), whether `mysql.rds_*` procedures exist, and whether the user holds
    /// SUPER.
    ///
    /// MariaDB says so in its version (`10.11.14-MariaDB-0+deb12u2-log`); in the handshake it
    /// is prefixed with `5.5.5-` for old clients, which is skipped. Old Aurora MySQL 3 releases
    /// report `8.0.mysql_aurora.3.02.0`; their MySQL patch level then comes from a table of
    /// Aurora releases.
    pub fn detect(
        version: &str,
        version_comment: &str,
        aurora_version: Option<&str>,
        rds_procedures: bool,
        has_super: bool,
    ) -> Flavor {
        let version = version.trim();
        let mariadb = version.to_ascii_lowercase().contains("mariadb")
            || version_comment.to_ascii_lowercase().contains("mariadb");
        if mariadb {
            let text = version.strip_prefix("5.5.5-").unwrap_or(version);
            let (major, minor, patch) = leading_version(text).unwrap_or((0, 0, None));
            return Flavor {
                engine: Engine::MariaDb,
                version: (major, minor, patch.unwrap_or(0)),
                aurora: false,
                aurora_version: None,
                rds: rds_procedures,
                has_super,
            };
        }

        let aurora_text = aurora_version
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .or_else(|| version.split_once("mysql_aurora.").map(|(_, rest)| rest));
        let aurora = aurora_text.is_some() || version.contains("mysql_aurora");
        let aurora_version = aurora_text
            .and_then(leading_version)
            .map(|(a, b, c)| (a, b, c.unwrap_or(0)));
        let version = match leading_version(version) {
            Some((major, minor, Some(patch))) => (major, minor, patch),
            Some((major, minor, None)) => aurora_version
                .and_then(aurora_compatible_mysql)
                .filter(|&(ma, mi, _)| (ma, mi) == (major, minor))
                .unwrap_or((major, minor, 0)),
            None => (0, 0, 0),
        };
        Flavor {
            engine: Engine::MySql,
            version,
            aurora,
            aurora_version,
            rds: rds_procedures,
            has_super,
        }
    }

    pub fn is_mariadb(&self) -> bool {
        self.engine == Engine::MariaDb
    }

    pub fn is_mysql(&self) -> bool {
        self.engine == Engine::MySql
    }

    /// Whether the (community) version is at least `major.minor.patch`, whatever the engine.
    pub fn at_least(&self, major: u32, minor: u32, patch: u32) -> bool {
        self.version >= (major, minor, patch)
    }

    fn mysql_at_least(&self, major: u32, minor: u32, patch: u32) -> bool {
        self.is_mysql() && self.at_least(major, minor, patch)
    }

    fn mariadb_at_least(&self, major: u32, minor: u32, patch: u32) -> bool {
        self.is_mariadb() && self.at_least(major, minor, patch)
    }

    /// MySQL 8.0.22 renamed `SHOW SLAVE STATUS`, `START/STOP/RESET SLAVE` and the status
    /// columns to REPLICA/SOURCE; 8.4 removed the old names. MariaDB keeps the SLAVE forms.
    pub fn uses_replica_keywords(&self) -> bool {
        self.mysql_at_least(8, 0, 22)
    }

    /// MySQL 8.0.23 renamed `CHANGE MASTER TO ... MASTER_*` to
    /// `CHANGE REPLICATION SOURCE TO ... SOURCE_*` (one release after the keywords above).
    pub fn uses_change_replication_source(&self) -> bool {
        self.mysql_at_least(8, 0, 23)
    }

    /// MySQL 8.0.26 added `SOURCE_POS_WAIT()` and deprecated `MASTER_POS_WAIT()`.
    pub fn uses_source_pos_wait(&self) -> bool {
        self.mysql_at_least(8, 0, 26)
    }

    /// MySQL 8.2.0 added `SHOW BINARY LOG STATUS`; 8.4 removed `SHOW MASTER STATUS`.
    pub fn has_binary_log_status(&self) -> bool {
        self.mysql_at_least(8, 2, 0)
    }

    /// MySQL 5.7.8 added `super_read_only`, which also fences users holding SUPER.
    pub fn has_super_read_only(&self) -> bool {
        self.mysql_at_least(5, 7, 8)
    }

    /// MySQL 8.0.16 added `ALTER INSTANCE RELOAD TLS`.
    pub fn has_reload_tls(&self) -> bool {
        self.mysql_at_least(8, 0, 16)
    }

    /// MariaDB 10.4 added `FLUSH SSL`.
    pub fn has_flush_ssl(&self) -> bool {
        self.mariadb_at_least(10, 4, 0)
    }

    /// MariaDB 10.4.1 added `BACKUP STAGE` (whose `BLOCK_COMMIT` stage stops every commit).
    pub fn has_backup_stage(&self) -> bool {
        self.mariadb_at_least(10, 4, 1)
    }

    /// MariaDB 10.10 added `CHANGE MASTER TO MASTER_DEMOTE_TO_SLAVE=1`.
    pub fn has_demote_to_slave(&self) -> bool {
        self.mariadb_at_least(10, 10, 0)
    }

    /// MySQL 8.0.4 added `GET_MASTER_PUBLIC_KEY` (caching_sha2_password without TLS).
    pub fn has_get_public_key(&self) -> bool {
        self.mysql_at_least(8, 0, 4)
    }

    /// Replication and fences must go through `mysql.rds_*` procedures: RDS or Aurora, and no
    /// SUPER to run the statements directly.
    pub fn needs_rds_procedures(&self) -> bool {
        (self.rds || self.aurora) && !self.has_super
    }

    /// The Aurora MySQL major version: 2 (MySQL 5.7 compatible), 3 (8.0 compatible), from
    /// `AURORA_VERSION()` or, when it is unknown, from the compatible MySQL version. `None`
    /// elsewhere.
    pub fn aurora_major(&self) -> Option<u32> {
        if !self.aurora {
            return None;
        }
        match self.aurora_version {
            Some((major, _, _)) => Some(major),
            None if self.at_least(8, 0, 0) => Some(3),
            None if self.at_least(5, 7, 0) => Some(2),
            None => Some(1),
        }
    }

    /// The replication procedures are the `*_source` ones (`mysql.rds_set_external_source`,
    /// `rds_reset_external_source`, `rds_next_source_log`, `rds_set_source_auto_position`)
    /// rather than the `*_master` ones: Aurora MySQL version 3, and RDS for MySQL 8.4
    /// (RDS for MySQL 8.0 and 5.7, Aurora MySQL version 2 and RDS for MariaDB keep
    /// `*_master`). See
    /// <https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/mysql-stored-proc-replicating.html>
    /// and <https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/mysql-stored-proc-replicating.html>.
    pub fn uses_rds_source_procedures(&self) -> bool {
        if !self.needs_rds_procedures() || !self.is_mysql() {
            return false;
        }
        match self.aurora_major() {
            Some(major) => major >= 3,
            None => self.mysql_at_least(8, 4, 0),
        }
    }

    /// MySQL 8.0.26 renamed `log_slave_updates` to `log_replica_updates` (the old name stays
    /// as a deprecated alias in 8.0 and is gone in 8.4); MariaDB keeps `log_slave_updates`.
    /// <https://dev.mysql.com/doc/refman/8.0/en/replication-options-binary-log.html#sysvar_log_replica_updates>
    pub fn uses_log_replica_updates(&self) -> bool {
        self.mysql_at_least(8, 0, 26)
    }

    /// RDS for MariaDB 10.5+ withholds the privilege `SHOW SLAVE STATUS` needs; its status
    /// comes from `CALL mysql.rds_replica_status` instead.
    pub fn needs_rds_replica_status(&self) -> bool {
        self.needs_rds_procedures() && self.mariadb_at_least(10, 5, 0)
    }
}

impl fmt::Display for Flavor {
    /// `MariaDB 10.11.14`, `MySQL 8.4.3 (RDS)`, `Aurora MySQL 3.05.2 (8.0.32)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (major, minor, patch) = self.version;
        if self.aurora {
            f.write_str("Aurora MySQL")?;
            if let Some((a, b, c)) = self.aurora_version {
                // Aurora writes its minor version with two digits.
                write!(f, " {a}.{b:02}.{c}")?;
            }
            return write!(f, " ({major}.{minor}.{patch})");
        }
        write!(f, "{} {major}.{minor}.{patch}", self.engine)?;
        if self.rds {
            f.write_str(" (RDS)")?;
        }
        Ok(())
    }
}

/// The leading `major.minor[.patch]` of a version text; `None` without at least
/// `major.minor`. The patch is `None` when the third part is not a number (`8.0.mysql_aurora`).
fn leading_version(text: &str) -> Option<(u32, u32, Option<u32>)> {
    let number = |s: &str| -> Option<u32> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    // `-` ends the version proper: `5.7.44-log`, `10.11.14-MariaDB-0+deb12u2-log`.
    let mut parts = text.trim().split(['.', '-']);
    let major = number(parts.next()?)?;
    let minor = number(parts.next()?)?;
    let patch = parts.next().and_then(number);
    Some((major, minor, patch))
}

/// The MySQL version an Aurora release is compatible with, for releases whose `VERSION()`
/// does not say (`8.0.mysql_aurora.3.02.0`). Aurora 1 and 2 all report 5.6.10 and 5.7.12
/// compatibility. An Aurora 3 minor newer than the table is at least as new as its last row,
/// which is all the dialect's "at least" checks need.
fn aurora_compatible_mysql(aurora: (u32, u32, u32)) -> Option<(u32, u32, u32)> {
    // (Aurora 3 minor, MySQL 8.0 patch), from the Aurora MySQL 3 release notes.
    const AURORA3: [(u32, u32); 8] = [
        (1, 23),
        (2, 23),
        (3, 26),
        (4, 28),
        (5, 32),
        (6, 34),
        (7, 36),
        (8, 39),
    ];
    match aurora {
        (1, _, _) => Some((5, 6, 10)),
        (2, _, _) => Some((5, 7, 12)),
        (3, minor, _) => {
            let patch = AURORA3
                .iter()
                .rev()
                .find(|(m, _)| *m <= minor)
                .map_or(23, |&(_, p)| p);
            Some((8, 0, patch))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mysql(version: &str) -> Flavor {
        Flavor::detect(version, "MySQL Community Server - GPL", None, false, true)
    }

    fn mariadb(version: &str) -> Flavor {
        Flavor::detect(
            version,
            "mariadb.org binary distribution",
            None,
            false,
            true,
        )
    }

    #[test]
    fn detects_mariadb() {
        let f = mariadb("10.11.14-MariaDB-0+deb12u2-log");
        assert_eq!(f.engine, Engine::MariaDb);
        assert_eq!(f.version, (10, 11, 14));
        assert!(f.is_mariadb() && !f.is_mysql());
        assert_eq!(f.to_string(), "MariaDB 10.11.14");

        assert_eq!(mariadb("11.4.2-MariaDB").version, (11, 4, 2));
        // The handshake prefix for old clients is skipped.
        let f = mariadb("5.5.5-10.11.6-MariaDB");
        assert_eq!(f.version, (10, 11, 6));
        assert_eq!(f.to_string(), "MariaDB 10.11.6");
        // Recognized from the version even with an unhelpful comment.
        assert!(Flavor::detect("10.6.12-MariaDB-log", "", None, false, false).is_mariadb());
        // And from the comment when a build hides it in the version.
        assert!(Flavor::detect("10.6.12", "MariaDB Server", None, false, false).is_mariadb());
    }

    #[test]
    fn detects_mysql() {
        let f = mysql("8.0.36");
        assert_eq!(f.engine, Engine::MySql);
        assert_eq!(f.version, (8, 0, 36));
        assert_eq!(f.to_string(), "MySQL 8.0.36");
        assert_eq!(mysql("8.4.3").version, (8, 4, 3));
        assert_eq!(mysql("5.7.44-log").version, (5, 7, 44));
        assert_eq!(mysql("8.0.36-0ubuntu0.22.04.1").version, (8, 0, 36));
        assert_eq!(mysql("8.0.36-28").version, (8, 0, 36));
        assert_eq!(mysql(" 9.1.0-commercial ").version, (9, 1, 0));
        assert!(!mysql("8.0.36").aurora);
    }

    #[test]
    fn unreadable_versions_fall_back_to_oldest_syntax() {
        assert_eq!(mysql("").version, (0, 0, 0));
        assert_eq!(mysql("garbage").version, (0, 0, 0));
        assert_eq!(mysql("8").version, (0, 0, 0));
        assert_eq!(mysql("8.0").version, (8, 0, 0));
        assert!(!mysql("garbage").uses_replica_keywords());
    }

    #[test]
    fn detects_aurora() {
        let f = Flavor::detect(
            "8.0.mysql_aurora.3.05.2",
            "Source distribution",
            Some("3.05.2"),
            true,
            false,
        );
        assert!(f.aurora && f.is_mysql());
        assert_eq!(f.aurora_version, Some((3, 5, 2)));
        assert_eq!(f.version, (8, 0, 32));
        assert_eq!(f.to_string(), "Aurora MySQL 3.05.2 (8.0.32)");
        assert!(f.needs_rds_procedures());
        // Aurora MySQL version 3 has the `*_source` procedures.
        assert_eq!(f.aurora_major(), Some(3));
        assert!(f.uses_rds_source_procedures());

        // Newer Aurora releases report the community version directly.
        let f = Flavor::detect("8.0.39", "Source distribution", Some("3.08.0"), true, false);
        assert_eq!(f.version, (8, 0, 39));
        assert_eq!(f.to_string(), "Aurora MySQL 3.08.0 (8.0.39)");

        // Aurora found from the version text alone.
        let f = Flavor::detect("8.0.mysql_aurora.3.02.0", "", None, true, false);
        assert!(f.aurora);
        assert_eq!(f.aurora_version, Some((3, 2, 0)));
        assert_eq!(f.version, (8, 0, 23));
        assert!(f.uses_change_replication_source());

        // A minor newer than the table: at least the last known compatibility.
        let f = Flavor::detect("8.0.mysql_aurora.3.42.0", "", None, true, false);
        assert_eq!(f.version, (8, 0, 39));

        let f = Flavor::detect("5.7.mysql_aurora.2.11.2", "", Some("2.11.2"), true, false);
        assert_eq!(f.version, (5, 7, 12));
        assert_eq!(f.to_string(), "Aurora MySQL 2.11.2 (5.7.12)");
        // Aurora MySQL version 2 keeps the `*_master` procedures.
        assert_eq!(f.aurora_major(), Some(2));
        assert!(f.needs_rds_procedures() && !f.uses_rds_source_procedures());
    }

    /// `SELECT VERSION(), @@version_comment, AURORA_VERSION()` as Aurora answers: Aurora 2
    /// reports `5.7.mysql_aurora.2.11.2`, Aurora 3 before 3.04 `8.0.mysql_aurora.3.02.0`, from
    /// 3.04 the community version (`8.0.28`), and always `Source distribution`.
    /// <https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/AuroraMySQL.Updates.Versions.html>
    #[test]
    fn detects_aurora_2_and_3_as_inventory_shows_them() {
        let cases = [
            (
                "5.7.mysql_aurora.2.11.2",
                Some("2.11.2"),
                (5, 7, 12),
                2,
                "Aurora MySQL 2.11.2 (5.7.12)",
            ),
            (
                "5.7.mysql_aurora.2.12.1",
                None,
                (5, 7, 12),
                2,
                "Aurora MySQL 2.12.1 (5.7.12)",
            ),
            (
                "8.0.mysql_aurora.3.02.0",
                Some("3.02.0"),
                (8, 0, 23),
                3,
                "Aurora MySQL 3.02.0 (8.0.23)",
            ),
            (
                "8.0.32",
                Some("3.05.2"),
                (8, 0, 32),
                3,
                "Aurora MySQL 3.05.2 (8.0.32)",
            ),
            (
                "8.0.39",
                Some("3.08.0"),
                (8, 0, 39),
                3,
                "Aurora MySQL 3.08.0 (8.0.39)",
            ),
        ];
        for (version, aurora, mysql, major, shown) in cases {
            let f = Flavor::detect(version, "Source distribution", aurora, true, false);
            assert!(f.aurora && f.rds && f.is_mysql(), "{version}");
            assert_eq!(f.version, mysql, "{version}");
            assert_eq!(f.aurora_major(), Some(major), "{version}");
            assert_eq!(f.to_string(), shown, "{version}");
            assert_eq!(f.uses_rds_source_procedures(), major == 3, "{version}");
        }
        // Aurora with an unknown Aurora version: the major comes from the MySQL version.
        let f = Flavor::detect("8.0.mysql_aurora", "", None, true, false);
        assert!(f.aurora);
        assert_eq!(f.aurora_major(), Some(3));
        assert_eq!(mysql("8.0.36").aurora_major(), None);
    }

    /// RDS for MySQL answers `VERSION()` with the community version (`8.0.39`) and
    /// `@@version_comment` with `Source distribution`; it is told from self-managed MySQL by its
    /// `mysql.rds_*` procedures.
    #[test]
    fn detects_rds_mysql_versions() {
        for (version, source_procedures, shown) in [
            ("5.7.44-log", false, "MySQL 5.7.44 (RDS)"),
            ("8.0.39", false, "MySQL 8.0.39 (RDS)"),
            ("8.4.3", true, "MySQL 8.4.3 (RDS)"),
        ] {
            let f = Flavor::detect(version, "Source distribution", None, true, false);
            assert!(f.rds && !f.aurora && f.is_mysql(), "{version}");
            assert_eq!(f.to_string(), shown);
            assert!(f.needs_rds_procedures());
            assert_eq!(
                f.uses_rds_source_procedures(),
                source_procedures,
                "{version}"
            );
        }
        // Self-managed: no procedures, plain statements.
        let f = Flavor::detect("8.0.39", "MySQL Community Server - GPL", None, false, true);
        assert_eq!(f.to_string(), "MySQL 8.0.39");
        assert!(!f.needs_rds_procedures() && !f.uses_rds_source_procedures());
    }

    #[test]
    fn rds_display_and_procedures() {
        let f = Flavor::detect("8.4.3", "Source distribution", None, true, false);
        assert_eq!(f.to_string(), "MySQL 8.4.3 (RDS)");
        assert!(f.needs_rds_procedures());
        assert!(f.uses_rds_source_procedures());

        let f = Flavor::detect("8.0.36", "Source distribution", None, true, false);
        assert!(f.needs_rds_procedures());
        assert!(!f.uses_rds_source_procedures());

        let f = Flavor::detect(
            "10.11.8-MariaDB-log",
            "Source distribution",
            None,
            true,
            false,
        );
        assert_eq!(f.to_string(), "MariaDB 10.11.8 (RDS)");
        assert!(f.needs_rds_procedures());
        assert!(!f.uses_rds_source_procedures());
        assert!(f.needs_rds_replica_status());
        let old = Flavor::detect("10.4.34-MariaDB-log", "", None, true, false);
        assert!(!old.needs_rds_replica_status());

        // The procedures exist but SUPER lets us run the statements directly.
        let f = Flavor::detect("8.0.36", "", None, true, true);
        assert!(!f.needs_rds_procedures());
    }

    #[test]
    fn version_gates_follow_the_manuals() {
        let v = mysql;
        assert!(!v("8.0.21").uses_replica_keywords());
        assert!(v("8.0.22").uses_replica_keywords());
        assert!(!v("8.0.22").uses_change_replication_source());
        assert!(v("8.0.23").uses_change_replication_source());
        assert!(!v("8.0.25").uses_source_pos_wait());
        assert!(v("8.0.26").uses_source_pos_wait());
        assert!(!v("8.1.0").has_binary_log_status());
        assert!(v("8.2.0").has_binary_log_status());
        assert!(v("8.4.3").has_binary_log_status());
        assert!(!v("5.7.7").has_super_read_only());
        assert!(v("5.7.44").has_super_read_only());
        assert!(!v("8.0.25").uses_log_replica_updates());
        assert!(v("8.0.26").uses_log_replica_updates());
        assert!(v("8.4.3").uses_log_replica_updates());
        assert!(!mariadb("11.4.2-MariaDB").uses_log_replica_updates());
        assert!(!v("8.0.15").has_reload_tls());
        assert!(v("8.0.16").has_reload_tls());
        assert!(!v("5.7.44").has_get_public_key());
        assert!(v("8.0.4").has_get_public_key());

        let m = mariadb;
        assert!(!m("10.11.14-MariaDB").uses_replica_keywords());
        assert!(!m("11.4.2-MariaDB").uses_change_replication_source());
        assert!(!m("11.4.2-MariaDB").has_binary_log_status());
        assert!(!m("11.4.2-MariaDB").has_super_read_only());
        assert!(!m("10.3.39-MariaDB").has_flush_ssl());
        assert!(m("10.4.0-MariaDB").has_flush_ssl());
        assert!(!m("10.9.8-MariaDB").has_demote_to_slave());
        assert!(m("10.10.1-MariaDB").has_demote_to_slave());
        assert!(!mysql("8.4.3").has_flush_ssl());
        assert!(!mysql("8.4.3").has_demote_to_slave());
    }

    #[test]
    fn at_least_compares_whole_versions() {
        let f = mysql("8.0.36");
        assert!(f.at_least(8, 0, 36));
        assert!(f.at_least(5, 7, 99));
        assert!(!f.at_least(8, 0, 37));
        assert!(!f.at_least(8, 1, 0));
    }

    #[test]
    fn engine_display() {
        assert_eq!(Engine::MariaDb.to_string(), "MariaDB");
        assert_eq!(Engine::MySql.to_string(), "MySQL");
    }
}
