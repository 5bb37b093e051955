//! Where a server is in its replication stream, and which transactions it holds, in terms that
//! do not depend on the flavor: what a workflow reads, compares and waits for.
//!
//! A MariaDB server reports *positions* (the last GTID per domain: not a set, see
//! [`crate::gtid::mariadb`]) and, for the whole history, `@@gtid_binlog_state`; a MySQL server
//! reports `gtid_executed`, a true set, for both. [`ReplicationPosition`] and [`History`] wrap
//! either, so that a workflow asks "does this server contain that position", "wait until it
//! does" and "which transactions does one have that the other lacks" without knowing which
//! flavor answers. The statements that read them are the dialect's
//! (`dialect/positions.rs`), the reads are [`crate::Server`]'s (`server/positions.rs`).
//!
//! Where GTIDs are off (MySQL whose `gtid_mode` is not `ON`: a MySQL 5.7 source set up
//! without them, RDS for MySQL by default), the only position there is is a binary log
//! coordinate, [`ReplicationPosition::Binlog`]. It is used only there: a server with GTIDs is
//! always read by GTID. A coordinate names a point of one server's binary log, so it compares
//! only with coordinates of the same binary log (a replica's applied position with its direct
//! source's executed position), and says nothing about how many transactions lie between two
//! points.
//!
//! This module is pure: it never talks to a server. Two values of different kinds are never
//! compared as if they were alike: such a comparison says "not contained" or "unknown".

use std::cmp::Ordering;
use std::fmt;

use crate::gtid::{mariadb, mysql};
use crate::position::BinlogPosition;

/// What a server has executed (or applied, or received), in its flavor's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicationPosition {
    /// MariaDB: the last GTID per domain (`gtid_binlog_pos`, `gtid_slave_pos`, ...).
    MariaDb(mariadb::GtidPos),
    /// MySQL: every executed GTID (`gtid_executed`).
    MySql(mysql::GtidSet),
    /// MySQL without GTIDs (`gtid_mode` not `ON`) only: a point in the binary log of the
    /// server that writes the stream, in its coordinates. A server's executed position is its
    /// own `SHOW BINARY LOG STATUS` (`SHOW MASTER STATUS` before 8.2); a replica's applied
    /// position is `Relay_Source_Log_File:Exec_Source_Log_Pos` (`Relay_Master_Log_File:
    /// Exec_Master_Log_Pos` before 8.0.22), its received one `Source_Log_File:
    /// Read_Source_Log_Pos`: all three in its source's coordinates. Two coordinates compare
    /// only within one binary log (see [`BinlogPosition::compare`]): across a replica's
    /// source change, or between two replicas' own binary logs, they say "unknown".
    Binlog(BinlogPosition),
}

impl ReplicationPosition {
    /// Whether a server at `self` holds everything up to `target`.
    ///
    /// MariaDB, per domain of `target`: `self` is past its seq, or at the very same GTID (the
    /// same seq written by another server is a different transaction: the histories diverged,
    /// so it is not contained). MySQL: `target` is a subset of `self`. Binary log
    /// coordinates: `self` is at or past `target` in the same binary log. Different kinds:
    /// never.
    pub fn contains(&self, target: &ReplicationPosition) -> bool {
        match (self, target) {
            (ReplicationPosition::MariaDb(mine), ReplicationPosition::MariaDb(theirs)) => {
                theirs.reached_by(mine)
                    && theirs
                        .domains()
                        .all(|d| theirs.compare_domain(mine, d).is_some())
            }
            (ReplicationPosition::MySql(mine), ReplicationPosition::MySql(theirs)) => {
                theirs.is_subset(mine)
            }
            (ReplicationPosition::Binlog(mine), ReplicationPosition::Binlog(theirs)) => {
                matches!(
                    mine.compare(theirs),
                    Some(Ordering::Greater | Ordering::Equal)
                )
            }
            _ => false,
        }
    }

    /// Whether a server at `self` stands exactly at `target` in every part of it: MariaDB,
    /// each domain of `target` at its very GTID (other domains do not matter, as for
    /// `START SLAVE UNTIL master_gtid_pos`); MySQL, the same set; binary log coordinates,
    /// the same file and offset.
    pub fn is_at(&self, target: &ReplicationPosition) -> bool {
        match (self, target) {
            (ReplicationPosition::MariaDb(mine), ReplicationPosition::MariaDb(theirs)) => {
                theirs.iter().all(|g| mine.get(g.domain) == Some(g))
            }
            (ReplicationPosition::MySql(mine), ReplicationPosition::MySql(theirs)) => {
                mine == theirs
            }
            (ReplicationPosition::Binlog(mine), ReplicationPosition::Binlog(theirs)) => {
                mine.compare(theirs) == Some(Ordering::Equal)
            }
            _ => false,
        }
    }

    /// How many transactions `self` is behind `other`: MariaDB, the seqs it lacks over the
    /// domains of `other`; MySQL, the GTIDs of `other` it lacks. `None` across kinds, and
    /// always `None` for binary log coordinates: a byte offset does not say how many
    /// transactions lie before it (use [`Self::compare`] to know whether `self` is behind at
    /// all).
    pub fn behind(&self, other: &ReplicationPosition) -> Option<u64> {
        match (self, other) {
            (ReplicationPosition::MariaDb(mine), ReplicationPosition::MariaDb(theirs)) => {
                Some(mine.behind(theirs))
            }
            (ReplicationPosition::MySql(mine), ReplicationPosition::MySql(theirs)) => {
                Some(theirs.difference(mine).count())
            }
            // Unknown, not zero: the coordinates say where, not how many.
            (ReplicationPosition::Binlog(_), ReplicationPosition::Binlog(_)) => None,
            _ => None,
        }
    }

    /// Everything either has: MariaDB, the furthest GTID of each domain; MySQL, the union;
    /// binary log coordinates, the further of the two (`self` when they are of different
    /// binary logs). Across kinds, `self` (nothing of `other` can be expressed in it).
    pub fn merge(&self, other: &ReplicationPosition) -> ReplicationPosition {
        match (self, other) {
            (ReplicationPosition::MariaDb(mine), ReplicationPosition::MariaDb(theirs)) => {
                ReplicationPosition::MariaDb(mine.merge_max(theirs))
            }
            (ReplicationPosition::MySql(mine), ReplicationPosition::MySql(theirs)) => {
                ReplicationPosition::MySql(mine.union(theirs))
            }
            (ReplicationPosition::Binlog(mine), ReplicationPosition::Binlog(theirs)) => {
                match mine.compare(theirs) {
                    Some(Ordering::Less) => other.clone(),
                    _ => self.clone(),
                }
            }
            _ => self.clone(),
        }
    }

    /// `self` against `other` over everything either has: `Some(Greater)` when `self` is
    /// ahead somewhere and behind nowhere, `Some(Equal)` when neither is ahead, `None` when
    /// each is ahead somewhere or they diverged (MariaDB: one seq of a domain from two
    /// servers; MySQL: neither set includes the other; binary log coordinates: of different
    /// binary logs). Across kinds, `None`.
    pub fn compare(&self, other: &ReplicationPosition) -> Option<Ordering> {
        match (self, other) {
            (ReplicationPosition::MariaDb(a), ReplicationPosition::MariaDb(b)) => {
                let mut result = Ordering::Equal;
                let domains: std::collections::BTreeSet<u32> =
                    a.domains().chain(b.domains()).collect();
                for d in domains {
                    match (result, a.compare_domain(b, d)?) {
                        (_, Ordering::Equal) => {}
                        (Ordering::Equal, o) => result = o,
                        (r, o) if r == o => {}
                        _ => return None,
                    }
                }
                Some(result)
            }
            (ReplicationPosition::MySql(a), ReplicationPosition::MySql(b)) => {
                match (b.is_subset(a), a.is_subset(b)) {
                    (true, true) => Some(Ordering::Equal),
                    (true, false) => Some(Ordering::Greater),
                    (false, true) => Some(Ordering::Less),
                    (false, false) => None,
                }
            }
            (ReplicationPosition::Binlog(a), ReplicationPosition::Binlog(b)) => a.compare(b),
            _ => None,
        }
    }

    /// Whether nothing at all was executed. A binary log coordinate always names a point
    /// (even the start of the first file), so it is empty only without a file name.
    pub fn is_empty(&self) -> bool {
        match self {
            ReplicationPosition::MariaDb(p) => p.is_empty(),
            ReplicationPosition::MySql(s) => s.is_empty(),
            ReplicationPosition::Binlog(b) => b.file.is_empty(),
        }
    }

    /// Whether this is a binary log coordinate (GTIDs are off on the server it comes from).
    pub fn is_binlog(&self) -> bool {
        matches!(self, ReplicationPosition::Binlog(_))
    }
}

impl fmt::Display for ReplicationPosition {
    /// The text the server itself uses (`0-1-100,1-2-5`, `uuid:1-5`), and `file:pos` for
    /// binary log coordinates (`binlog.000042:1307`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplicationPosition::MariaDb(p) => p.fmt(f),
            ReplicationPosition::MySql(s) => s.fmt(f),
            ReplicationPosition::Binlog(b) => b.fmt(f),
        }
    }
}

impl serde::Serialize for ReplicationPosition {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Every transaction a server's binary log holds, as far as its flavor records it: what is
/// compared to find transactions one server has and another lacks (errant transactions, a
/// demotion that would bury writes, a replica ahead of its writer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum History {
    /// MariaDB: `@@gtid_binlog_state` (the last seq of every domain and server_id that wrote)
    /// and `@@gtid_current_pos` (for a server restored from a backup, which knows only each
    /// domain's last GTID).
    MariaDb {
        state: mariadb::BinlogState,
        current: mariadb::GtidPos,
    },
    /// MySQL: `@@gtid_executed`.
    MySql(mysql::GtidSet),
}

impl History {
    /// The transactions of `self` (the history of the server whose `server_id` is `own`) that
    /// a server with history `other` does not have; empty when it has them all.
    ///
    /// MariaDB: [`mariadb::BinlogState::missing_from`] (by entry, or by position where `other`
    /// was restored from a backup; `own`'s transactions never by position). MySQL: the set
    /// difference (`own` is not needed: a set records every transaction). Across flavors,
    /// everything of `self` is reported missing: nothing proves the other has it.
    pub fn missing_from(&self, own: u32, other: &History) -> Transactions {
        match (self, other) {
            (
                History::MariaDb { state, .. },
                History::MariaDb {
                    state: theirs,
                    current,
                },
            ) => Transactions::MariaDb(state.missing_from(own, theirs, current)),
            (History::MySql(mine), History::MySql(theirs)) => {
                Transactions::MySql(mine.difference(theirs))
            }
            (History::MariaDb { state, .. }, History::MySql(_)) => {
                Transactions::MariaDb(state.iter().collect())
            }
            (History::MySql(mine), History::MariaDb { .. }) => Transactions::MySql(mine.clone()),
        }
    }

    /// Both histories as one: MariaDB, every entry of either state at its higher seq (the
    /// current position stays `self`'s); MySQL, the union. Across flavors, `self`.
    pub fn merge(&self, other: &History) -> History {
        match (self, other) {
            (History::MariaDb { state, current }, History::MariaDb { state: theirs, .. }) => {
                History::MariaDb {
                    state: state.merge_max(theirs),
                    current: current.clone(),
                }
            }
            (History::MySql(mine), History::MySql(theirs)) => History::MySql(mine.union(theirs)),
            _ => self.clone(),
        }
    }
}

impl fmt::Display for History {
    /// MariaDB: the binlog state (`0-1-100,0-2-90`); MySQL: the GTID set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            History::MariaDb { state, .. } => state.fmt(f),
            History::MySql(set) => set.fmt(f),
        }
    }
}

/// Transactions one server has and another lacks ([`History::missing_from`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transactions {
    /// MariaDB: one GTID per (domain, server_id) entry that is missing: it stands for at
    /// least that transaction.
    MariaDb(Vec<mariadb::Gtid>),
    /// MySQL: exactly the missing GTIDs.
    MySql(mysql::GtidSet),
}

impl Transactions {
    /// Whether none is missing.
    pub fn is_empty(&self) -> bool {
        match self {
            Transactions::MariaDb(g) => g.is_empty(),
            Transactions::MySql(s) => s.is_empty(),
        }
    }

    /// Each as text: MariaDB GTIDs (`0-2-7`), MySQL `uuid:interval` elements.
    pub fn to_strings(&self) -> Vec<String> {
        match self {
            Transactions::MariaDb(g) => g.iter().map(|g| g.to_string()).collect(),
            Transactions::MySql(s) if s.is_empty() => Vec::new(),
            Transactions::MySql(s) => s.to_string().split(',').map(String::from).collect(),
        }
    }
}

impl fmt::Display for Transactions {
    /// Comma-separated, as the servers print GTID lists.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_strings().join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    fn maria(s: &str) -> ReplicationPosition {
        ReplicationPosition::MariaDb(s.parse().unwrap())
    }

    fn my(s: &str) -> ReplicationPosition {
        ReplicationPosition::MySql(s.parse().unwrap())
    }

    fn maria_history(state: &str, current: &str) -> History {
        History::MariaDb {
            state: state.parse().unwrap(),
            current: current.parse().unwrap(),
        }
    }

    #[test]
    fn a_mariadb_position_contains_what_it_is_past_in_each_domain() {
        let at = maria("0-1-100,1-2-5");
        assert!(at.contains(&maria("0-1-100")));
        assert!(at.contains(&maria("0-1-99,1-2-5")));
        assert!(at.contains(&maria("")));
        assert!(!at.contains(&maria("0-1-101")));
        // A domain it never saw.
        assert!(!at.contains(&maria("2-1-1")));
        // The same seq from another server: another transaction, the histories diverged.
        assert!(!at.contains(&maria("0-7-100")));
    }

    #[test]
    fn a_mysql_position_contains_its_subsets() {
        let at = my(&format!("{A}:1-10"));
        assert!(at.contains(&my(&format!("{A}:3-5"))));
        assert!(at.contains(&my("")));
        assert!(!at.contains(&my(&format!("{A}:1-11"))));
    }

    #[test]
    fn flavors_never_compare() {
        let m = maria("0-1-1");
        let y = my(&format!("{A}:1"));
        assert!(!m.contains(&y) && !y.contains(&m));
        assert!(!m.is_at(&y));
        assert_eq!(m.behind(&y), None);
        assert_eq!(m.merge(&y), m);
    }

    #[test]
    fn exactly_at_and_behind() {
        let at = maria("0-1-100,1-2-5");
        assert!(at.is_at(&maria("0-1-100")));
        assert!(!at.is_at(&maria("0-1-99")));
        assert_eq!(maria("0-1-90").behind(&at), Some(15));
        assert_eq!(at.behind(&maria("0-1-90")), Some(0));
        assert!(my(&format!("{A}:1-5")).is_at(&my(&format!("{A}:1-5"))));
        assert_eq!(
            my(&format!("{A}:1-5")).behind(&my(&format!("{A}:1-9"))),
            Some(4)
        );
    }

    #[test]
    fn compare_orders_only_what_is_ahead_nowhere_behind() {
        use std::cmp::Ordering::*;
        assert_eq!(maria("0-1-5").compare(&maria("0-1-5")), Some(Equal));
        assert_eq!(maria("0-1-6").compare(&maria("0-1-5")), Some(Greater));
        assert_eq!(maria("0-1-5,1-1-1").compare(&maria("0-1-5")), Some(Greater));
        assert_eq!(maria("0-1-4").compare(&maria("0-1-5,1-1-1")), Some(Less));
        // Ahead in one domain, behind in another.
        assert_eq!(maria("0-1-6,1-1-1").compare(&maria("0-1-5,1-1-2")), None);
        // The same seq from two servers: diverged.
        assert_eq!(maria("0-1-5").compare(&maria("0-2-5")), None);
        assert_eq!(
            my(&format!("{A}:1-5")).compare(&my(&format!("{A}:1-5"))),
            Some(Equal)
        );
        assert_eq!(
            my(&format!("{A}:1-6")).compare(&my(&format!("{A}:1-5"))),
            Some(Greater)
        );
        assert_eq!(
            my(&format!("{A}:1-4")).compare(&my(&format!("{A}:1-5"))),
            Some(Less)
        );
        assert_eq!(
            my(&format!("{A}:1-4:6")).compare(&my(&format!("{A}:1-5"))),
            None
        );
        assert_eq!(maria("0-1-5").compare(&my(&format!("{A}:1-5"))), None);
    }

    #[test]
    fn merge_takes_the_furthest_of_each() {
        assert_eq!(
            maria("0-1-5,1-1-9").merge(&maria("0-1-7")).to_string(),
            "0-1-7,1-1-9"
        );
        assert_eq!(
            my(&format!("{A}:1-5"))
                .merge(&my(&format!("{A}:6-9")))
                .to_string(),
            format!("{A}:1-9")
        );
        assert!(maria("").is_empty() && !maria("0-1-1").is_empty());
    }

    fn bin(s: &str) -> ReplicationPosition {
        ReplicationPosition::Binlog(s.parse().unwrap())
    }

    #[test]
    fn binlog_coordinates_contain_what_they_are_past_in_one_binary_log() {
        let at = bin("binlog.000012:2365710");
        assert!(at.contains(&bin("binlog.000012:2365710")));
        assert!(at.contains(&bin("binlog.000012:4")));
        assert!(at.contains(&bin("binlog.000009:99999999")));
        assert!(!at.contains(&bin("binlog.000012:2365711")));
        assert!(!at.contains(&bin("binlog.000013:4")));
        // Another server's binary log (or a renamed one): no order, so not contained.
        assert!(!at.contains(&bin("mysql-bin-changelog.000012:4")));
        assert!(at.is_at(&bin("binlog.000012:2365710")));
        assert!(!at.is_at(&bin("binlog.000012:4")));
        assert!(at.is_binlog() && !at.is_empty());
        assert_eq!(at.to_string(), "binlog.000012:2365710");
        assert_eq!(
            serde_json::to_string(&at).unwrap(),
            "\"binlog.000012:2365710\""
        );
    }

    #[test]
    fn binlog_coordinates_order_but_never_count() {
        use std::cmp::Ordering::*;
        let a = bin("binlog.000012:100");
        let b = bin("binlog.000013:4");
        assert_eq!(a.compare(&b), Some(Less));
        assert_eq!(b.compare(&a), Some(Greater));
        assert_eq!(a.compare(&a.clone()), Some(Equal));
        assert_eq!(a.compare(&bin("other.000001:4")), None);
        // Behind, but by how many transactions nobody knows.
        assert_eq!(a.behind(&b), None);
        assert_eq!(b.behind(&a), None);
        assert_eq!(a.merge(&b), b);
        assert_eq!(b.merge(&a), b);
        assert_eq!(a.merge(&bin("other.000001:4")), a);
    }

    #[test]
    fn binlog_coordinates_never_compare_with_gtids() {
        let b = bin("binlog.000012:100");
        let y = my(&format!("{A}:1-5"));
        let m = maria("0-1-5");
        for other in [&y, &m] {
            assert!(!b.contains(other) && !other.contains(&b));
            assert!(!b.is_at(other));
            assert_eq!(b.compare(other), None);
            assert_eq!(b.behind(other), None);
            assert_eq!(other.behind(&b), None);
            assert_eq!(&b.merge(other), &b);
            assert_eq!(&other.merge(&b), other);
        }
    }

    #[test]
    fn displays_and_serializes_as_the_servers_text() {
        assert_eq!(maria("1-2-5,0-1-100").to_string(), "0-1-100,1-2-5");
        assert_eq!(
            serde_json::to_string(&maria("0-1-100")).unwrap(),
            "\"0-1-100\""
        );
    }

    #[test]
    fn mariadb_history_finds_what_the_other_lacks() {
        let old = maria_history("0-1-100,0-2-7", "0-1-100");
        let new = maria_history("0-1-100", "0-1-100");
        // Server 2's own transaction: never taken as had by position.
        let missing = old.missing_from(2, &new);
        assert_eq!(missing.to_string(), "0-2-7");
        // Another server's older transaction is had where the position is past it.
        assert!(old.missing_from(1, &new).is_empty());
        assert!(!missing.is_empty());
        assert!(new.missing_from(3, &old).is_empty());
        // A server restored from a backup knows only each domain's last GTID.
        let restored = maria_history("", "0-1-100");
        assert!(maria_history("0-2-7,0-1-100", "0-1-100")
            .missing_from(1, &restored)
            .is_empty());
        assert_eq!(old.to_string(), "0-2-7,0-1-100");
        assert_eq!(new.merge(&old), maria_history("0-1-100,0-2-7", "0-1-100"));
    }

    #[test]
    fn mysql_history_is_a_set_difference() {
        let old = History::MySql(format!("{A}:1-10").parse().unwrap());
        let new = History::MySql(format!("{A}:1-8").parse().unwrap());
        let missing = old.missing_from(1, &new);
        assert_eq!(missing.to_string(), format!("{A}:9-10"));
        assert_eq!(missing.to_strings(), vec![format!("{A}:9-10")]);
        assert!(new.missing_from(2, &old).is_empty());
        assert!(new.missing_from(2, &old).to_strings().is_empty());
        assert_eq!(new.merge(&old), old);
    }

    #[test]
    fn histories_of_different_flavors_share_nothing() {
        let m = maria_history("0-1-5", "0-1-5");
        let y = History::MySql(format!("{A}:1-2").parse().unwrap());
        assert_eq!(m.missing_from(1, &y).to_string(), "0-1-5");
        assert_eq!(y.missing_from(1, &m).to_string(), format!("{A}:1-2"));
        assert_eq!(m.merge(&y), m);
    }
}
