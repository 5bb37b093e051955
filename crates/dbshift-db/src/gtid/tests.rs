//! The GTID types' tests: MySQL sets (parse, print, arithmetic, errant transactions), then
//! MariaDB GTIDs, positions and binlog states (compare, merge, containment, errant detection).

use super::mariadb::{BinlogState, Gtid, GtidPos};
use super::mysql::GtidSet;
use crate::error::Error;
use serde::de::value::{Error as DeError, StrDeserializer};
use serde::de::IntoDeserializer;
use serde::Deserialize;
use std::cmp::Ordering;

const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const B: &str = "73f86016-978b-11ee-ade5-8d2a2a562feb";

fn set(s: &str) -> GtidSet {
    s.parse().unwrap()
}

fn pos(s: &str) -> GtidPos {
    s.parse().unwrap()
}

fn state(s: &str) -> BinlogState {
    s.parse().unwrap()
}

fn assert_parse_error<T: std::str::FromStr<Err = Error> + std::fmt::Debug>(s: &str) {
    match s.parse::<T>() {
        Err(Error::Parse { .. }) => {}
        other => panic!("{s:?} should not parse: {other:?}"),
    }
}

// ---- MySQL GTID sets ----

#[test]
fn mysql_parse_and_display_canonical() {
    let s = set(&format!("{B}:1-3,{A}:7:1-5"));
    assert_eq!(s.to_string(), format!("{A}:1-5:7,{B}:1-3"));
    assert_eq!(s.count(), 5 + 1 + 3);
    assert!(!s.is_empty());
}

#[test]
fn mysql_empty_text_is_empty_set() {
    for text in ["", "  ", "\n"] {
        let s = set(text);
        assert!(s.is_empty());
        assert_eq!(s.count(), 0);
        assert_eq!(s.to_string(), "");
    }
}

#[test]
fn mysql_tolerates_whitespace_newlines_and_upper_case() {
    // As SHOW REPLICA STATUS prints a long Executed_Gtid_Set.
    let text = format!(
        " {}:1-5,\n{}:1-3 \n",
        A.to_ascii_uppercase(),
        B.to_ascii_uppercase()
    );
    assert_eq!(set(&text).to_string(), format!("{A}:1-5,{B}:1-3"));
    assert_eq!(
        set(&format!("{A} : 1 - 5 : 7")).to_string(),
        format!("{A}:1-5:7")
    );
}

/// `SELECT @@GLOBAL.gtid_purged` and `@@GLOBAL.gtid_executed` of a server that replicated
/// from several sources and purged old binary logs, with the line breaks after commas the
/// server prints
/// (<https://dev.mysql.com/doc/refman/8.4/en/replication-options-gtids.html#sysvar_gtid_purged>).
/// What was purged is still executed; a replica that lacks purged GTIDs cannot be served by
/// auto-position.
#[test]
fn mysql_gtid_purged_is_a_subset_of_executed() {
    let purged = set("2174b383-5441-11e8-b90a-c80aa9429562:1-1029,\n\
         24bc7850-2c16-11e6-a073-0242ac110002:1-2143,\n\
         3e11fa47-71ca-11e1-9e33-c80aa9429562:1-108");
    let executed = set("2174b383-5441-11e8-b90a-c80aa9429562:1-1029,\n\
         24bc7850-2c16-11e6-a073-0242ac110002:1-2271,\n\
         3e11fa47-71ca-11e1-9e33-c80aa9429562:1-7014:7016-7107,\n\
         3e11fa47-71ca-11e1-9e33-c80aa9429562:batch:1-40");
    assert!(purged.is_subset(&executed));
    assert!(!executed.is_subset(&purged));
    // A replica needs what the source still has in its binary logs: executed - purged.
    let available = executed.difference(&purged);
    assert_eq!(
        available.to_string(),
        "24bc7850-2c16-11e6-a073-0242ac110002:2144-2271,\
         3e11fa47-71ca-11e1-9e33-c80aa9429562:109-7014:7016-7107:batch:1-40"
    );
    assert_eq!(available.count(), 128 + (7014 - 109 + 1) + 92 + 40);
    // A replica at the purged point is missing only what is still available.
    assert_eq!(
        executed.difference(&purged),
        GtidSet::errant(&executed, &purged)
    );
    assert!(set("").is_subset(&purged));
}

/// MySQL 8.3+ tagged GTIDs as `gtid_executed` prints them: per UUID, the untagged intervals,
/// then each tag with its own
/// (<https://dev.mysql.com/doc/refman/8.4/en/replication-gtids-concepts.html>).
#[test]
fn mysql_tagged_sets_from_several_servers() {
    let text = format!("{A}:1-10:alpha:1-3:beta:1,\n{B}:tagged_only:5-6");
    let s = set(&text);
    assert_eq!(
        s.to_string(),
        format!("{A}:1-10:alpha:1-3:beta:1,{B}:tagged_only:5-6")
    );
    let replica = set(&format!("{A}:1-10:alpha:1-3"));
    assert_eq!(
        GtidSet::errant(&s, &replica).to_string(),
        format!("{A}:beta:1,{B}:tagged_only:5-6")
    );
    assert!(replica.is_subset(&s));
    // A tag without an interval is malformed, even mid-set.
    assert!(format!("{A}:1-10:alpha,{B}:1").parse::<GtidSet>().is_err());
}

#[test]
fn mysql_merges_overlapping_and_adjacent_intervals() {
    assert_eq!(set(&format!("{A}:1-5:6-7")).to_string(), format!("{A}:1-7"));
    assert_eq!(set(&format!("{A}:3-9:1-4")).to_string(), format!("{A}:1-9"));
    assert_eq!(
        set(&format!("{A}:1-2,{A}:2-3:5")).to_string(),
        format!("{A}:1-3:5")
    );
    assert_eq!(set(&format!("{A}:4:4:4")).to_string(), format!("{A}:4"));
}

#[test]
fn mysql_tagged_gtids() {
    let s = set(&format!("{A}:1-3:Tag_1:5-9,{A}:aa:1"));
    // Untagged first, then tags in order; tags lower-cased.
    assert_eq!(s.to_string(), format!("{A}:1-3:aa:1:tag_1:5-9"));
    assert!(s.contains(A, None, 2));
    assert!(s.contains(A, Some("TAG_1"), 7));
    assert!(!s.contains(A, Some("tag_1"), 2));
    assert!(!s.contains(A, None, 7));
    assert!(s.contains(A, Some("aa"), 1));
    assert_eq!(s.count(), 3 + 1 + 5);

    let only_tagged = set(&format!("{A}:tag:1-5"));
    assert_eq!(only_tagged.to_string(), format!("{A}:tag:1-5"));
    assert!(!only_tagged.contains(A, None, 1));

    let max_tag = format!("_{}", "a".repeat(31));
    assert!(format!("{A}:{max_tag}:1").parse::<GtidSet>().is_ok());
}

#[test]
fn mysql_rejects_malformed() {
    for text in [
        format!("{A}:0"),
        format!("{A}:0-5"),
        format!("{A}:5-3"),
        A.to_string(),
        format!("{A}:"),
        format!("{A}:tag"),
        format!("{A}:tag:1:other"),
        format!("{A}:1-"),
        format!("{A}:-5"),
        format!("{A}:1-5-7"),
        format!("{A}:x1"),
        format!("{A}:1tag:1"),
        format!("{A}:tag-1:1"),
        format!("{A}:{}:1", "a".repeat(33)),
        format!("{A}:9223372036854775808"),
        format!("{A}:1,"),
        format!(",{A}:1"),
        format!("{A}:1,,{B}:1"),
        "3e11fa47-71ca-11e1-9e33-c80aa942956:1".to_string(),
        "3e11fa47-71ca-11e1-9e33-c80aa94295622:1".to_string(),
        "3e11fa4771ca11e19e33c80aa9429562abcd:1".to_string(),
        "ge11fa47-71ca-11e1-9e33-c80aa9429562:1".to_string(),
        "not a gtid".to_string(),
    ] {
        assert_parse_error::<GtidSet>(&text);
    }
    // The largest GNO is accepted.
    assert!(format!("{A}:9223372036854775807")
        .parse::<GtidSet>()
        .is_ok());
}

#[test]
fn mysql_union_subset_difference() {
    let a = set(&format!("{A}:1-5,{B}:1-3"));
    let b = set(&format!("{A}:4-10"));
    assert_eq!(a.union(&b).to_string(), format!("{A}:1-10,{B}:1-3"));
    assert_eq!(b.union(&a), a.union(&b));
    assert_eq!(a.difference(&b).to_string(), format!("{A}:1-3,{B}:1-3"));
    assert_eq!(b.difference(&a).to_string(), format!("{A}:6-10"));
    assert_eq!(a.intersection(&b).to_string(), format!("{A}:4-5"));
    assert!(!a.is_subset(&b));
    assert!(set(&format!("{A}:2-4")).is_subset(&a));
    assert!(GtidSet::new().is_subset(&a));
    assert!(a.is_subset(&a));
    assert!(a.difference(&a).is_empty());
    assert!(!set(&format!("{A}:tag:2")).is_subset(&a));
}

#[test]
fn mysql_difference_splits_intervals() {
    let a = set(&format!("{A}:1-20"));
    let holes = set(&format!("{A}:3-4:8:15-30"));
    assert_eq!(
        a.difference(&holes).to_string(),
        format!("{A}:1-2:5-7:9-14")
    );
    let many = set(&format!("{A}:1-3:5-9:11-12"));
    let cut = set(&format!("{A}:2-6:12"));
    assert_eq!(many.difference(&cut).to_string(), format!("{A}:1:7-9:11"));
    assert_eq!(
        many.intersection(&cut).to_string(),
        format!("{A}:2-3:5-6:12")
    );
    assert_eq!(many.difference(&cut).union(&many.intersection(&cut)), many);
}

#[test]
fn mysql_errant_transactions() {
    let source = set(&format!("{A}:1-100"));
    let replica = set(&format!("{A}:1-90,{B}:1-2"));
    assert_eq!(
        GtidSet::errant(&replica, &source).to_string(),
        format!("{B}:1-2")
    );
    assert!(GtidSet::errant(&set(&format!("{A}:1-90")), &source).is_empty());
    // Tagged writes on a replica are errant too.
    let tagged = set(&format!("{A}:1-90:ops:1"));
    assert_eq!(
        GtidSet::errant(&tagged, &source).to_string(),
        format!("{A}:ops:1")
    );
}

#[test]
fn mysql_insert_interval_validates() {
    let mut s = GtidSet::new();
    s.insert_interval(&A.to_ascii_uppercase(), None, 1, 5)
        .unwrap();
    s.insert_interval(A, Some("T"), 2, 2).unwrap();
    assert_eq!(s.to_string(), format!("{A}:1-5:t:2"));
    assert!(s.insert_interval(A, None, 0, 1).is_err());
    assert!(s.insert_interval(A, None, 5, 1).is_err());
    assert!(s.insert_interval("nope", None, 1, 1).is_err());
    assert!(s.insert_interval(A, Some("9x"), 1, 1).is_err());
    let listed: Vec<_> = s.intervals().collect();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0], (A, None, &[(1, 5)][..]));
    assert_eq!(listed[1], (A, Some("t"), &[(2, 2)][..]));
}

#[test]
fn mysql_count_saturates() {
    let s = set(&format!(
        "{A}:1-9223372036854775807,{B}:1-9223372036854775807:x:1-5"
    ));
    assert_eq!(s.count(), u64::MAX);
}

#[test]
fn mysql_serde_as_string() {
    let text = format!("{B}:1-3,{A}:1-5");
    let de: StrDeserializer<DeError> = text.as_str().into_deserializer();
    let s = GtidSet::deserialize(de).unwrap();
    assert_eq!(s.to_string(), format!("{A}:1-5,{B}:1-3"));
    let bad: StrDeserializer<DeError> = "garbage".into_deserializer();
    assert!(GtidSet::deserialize(bad).is_err());
}

// ---- MariaDB GTIDs ----

#[test]
fn mariadb_gtid_parse_display() {
    let g: Gtid = "0-1-100".parse().unwrap();
    assert_eq!(g, Gtid::new(0, 1, 100));
    assert_eq!(g.to_string(), "0-1-100");
    assert_eq!(
        "4294967295-4294967295-18446744073709551615"
            .parse::<Gtid>()
            .unwrap(),
        Gtid::new(u32::MAX, u32::MAX, u64::MAX)
    );
    for bad in [
        "",
        "0-1",
        "0-1-2-3",
        "0--1",
        "a-1-2",
        "-1-2-3",
        "0-+1-2",
        "4294967296-1-1",
        "0-4294967296-1",
        "0-1-18446744073709551616",
    ] {
        assert_parse_error::<Gtid>(bad);
    }
}

#[test]
fn mariadb_pos_parse_display() {
    let p = pos("1-2-5,0-1-100");
    assert_eq!(p.to_string(), "0-1-100,1-2-5");
    assert_eq!(p.len(), 2);
    assert_eq!(p.get(1), Some(&Gtid::new(1, 2, 5)));
    assert_eq!(p.get(7), None);
    assert_eq!(p.domains().collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(pos(" 0-1-100 ,\n 1-2-5 "), p);
    assert!(pos("").is_empty());
    assert_eq!(pos("").to_string(), "");
    assert_parse_error::<GtidPos>("0-1-100,0-2-101");
    assert_parse_error::<GtidPos>("0-1-100,");
    assert_parse_error::<GtidPos>("0-1-100,,1-1-1");
    assert_parse_error::<GtidPos>("0-1");
}

#[test]
fn mariadb_pos_compare_domain() {
    let a = pos("0-1-100,1-2-5");
    let b = pos("0-1-90,1-2-5,2-3-1");
    assert_eq!(a.compare_domain(&b, 0), Some(Ordering::Greater));
    assert_eq!(b.compare_domain(&a, 0), Some(Ordering::Less));
    assert_eq!(a.compare_domain(&b, 1), Some(Ordering::Equal));
    assert_eq!(a.compare_domain(&b, 2), Some(Ordering::Less));
    assert_eq!(a.compare_domain(&b, 9), Some(Ordering::Equal));
    // Same seq, different writers: diverged, no order.
    assert_eq!(pos("0-1-100").compare_domain(&pos("0-2-100"), 0), None);
    // Different seqs compare by seq whatever the writer (a promoted replica continues
    // the domain's sequence).
    assert_eq!(
        pos("0-2-101").compare_domain(&pos("0-1-100"), 0),
        Some(Ordering::Greater)
    );
}

#[test]
fn mariadb_pos_reached_by() {
    let target = pos("0-1-100,1-2-5");
    assert!(target.reached_by(&pos("0-1-100,1-2-5")));
    assert!(target.reached_by(&pos("0-3-150,1-2-6,2-1-1")));
    assert!(!target.reached_by(&pos("0-1-99,1-2-5")));
    assert!(!target.reached_by(&pos("0-1-100")));
    assert!(GtidPos::new().reached_by(&GtidPos::new()));
    assert!(GtidPos::new().reached_by(&target));
}

#[test]
fn mariadb_pos_behind() {
    let replica = pos("0-1-90,1-2-5");
    let source = pos("0-1-100,1-2-7,2-3-4");
    assert_eq!(replica.behind(&source), 10 + 2 + 4);
    assert_eq!(source.behind(&replica), 0);
    assert_eq!(source.behind(&source), 0);
    // Ahead in one domain does not cancel behind in another.
    assert_eq!(pos("0-1-200,1-2-1").behind(&pos("0-1-100,1-2-3")), 2);
    assert_eq!(
        GtidPos::new().behind(&pos("0-1-18446744073709551615,1-1-5")),
        u64::MAX
    );
}

#[test]
fn mariadb_pos_merge_max() {
    let a = pos("0-1-100,1-2-5");
    let b = pos("0-3-101,1-2-4,2-1-1");
    assert_eq!(a.merge_max(&b).to_string(), "0-3-101,1-2-5,2-1-1");
    assert_eq!(b.merge_max(&a).to_string(), "0-3-101,1-2-5,2-1-1");
    // A tie keeps self's GTID.
    assert_eq!(pos("0-1-5").merge_max(&pos("0-2-5")).to_string(), "0-1-5");
}

#[test]
fn mariadb_pos_from_gtids_and_insert() {
    let p = GtidPos::from_gtids([Gtid::new(1, 1, 1), Gtid::new(0, 2, 3)]).unwrap();
    assert_eq!(p.to_string(), "0-2-3,1-1-1");
    assert!(GtidPos::from_gtids([Gtid::new(1, 1, 1), Gtid::new(1, 2, 3)]).is_err());
    let mut q = GtidPos::from(Gtid::new(0, 1, 1));
    assert_eq!(q.insert(Gtid::new(0, 2, 2)), Some(Gtid::new(0, 1, 1)));
    assert_eq!(
        q.iter().copied().collect::<Vec<_>>(),
        vec![Gtid::new(0, 2, 2)]
    );
}

#[test]
fn mariadb_binlog_state_parse_display() {
    let s = state("0-2-90,1-2-5,0-1-100");
    assert_eq!(s.len(), 3);
    assert_eq!(s.get(0, 1), Some(100));
    assert_eq!(s.get(0, 2), Some(90));
    assert_eq!(s.get(0, 3), None);
    assert_eq!(s.domains().collect::<Vec<_>>(), vec![0, 1]);
    // Within a domain the highest seq is listed last, as MariaDB lists its latest.
    assert_eq!(s.to_string(), "0-2-90,0-1-100,1-2-5");
    assert_eq!(state(&s.to_string()), s);
    assert!(state("").is_empty());
    assert_parse_error::<BinlogState>("0-1-100,0-1-101");
    assert_parse_error::<BinlogState>("0-1-100;0-2-1");
    assert!(BinlogState::from_gtids([Gtid::new(0, 1, 1), Gtid::new(0, 1, 2)]).is_err());
}

#[test]
fn mariadb_binlog_state_to_pos() {
    assert_eq!(
        state("0-1-100,0-2-90,1-2-5").to_pos().to_string(),
        "0-1-100,1-2-5"
    );
    assert_eq!(state("0-1-10,0-2-11").to_pos().to_string(), "0-2-11");
    assert!(BinlogState::new().to_pos().is_empty());
}

#[test]
fn mariadb_binlog_state_contains() {
    let new_writer = state("0-1-100,0-2-7");
    assert!(new_writer.contains(&state("0-1-100")));
    assert!(new_writer.contains(&state("0-1-99,0-2-7")));
    assert!(new_writer.contains(&BinlogState::new()));
    assert!(!new_writer.contains(&state("0-1-101")));
    assert!(!new_writer.contains(&state("0-1-100,0-3-1")));
}

#[test]
fn containment_by_position_for_a_restored_server() {
    // Issue 15, case 7: blue had a switchover (101 then 102 wrote in domain 1); green,
    // restored from a snapshot, binlogged only what it applied since.
    let old = state("1-101-403,1-102-1207");
    let green = state("1-102-1207");
    assert!(old.missing_from(102, &green, &pos("1-102-1207")).is_empty());
    // Nothing written since the restore: green's binlog is empty, its position knows.
    assert!(old
        .missing_from(102, &BinlogState::new(), &pos("1-102-1207"))
        .is_empty());
    // Green one transaction short.
    assert_eq!(
        old.missing_from(102, &state("1-102-1206"), &pos("1-102-1206")),
        vec![Gtid::new(1, 102, 1207)]
    );
    // The same seq from another server is not the same transaction.
    assert_eq!(
        old.missing_from(102, &BinlogState::new(), &pos("1-103-1207")),
        vec![Gtid::new(1, 102, 1207)]
    );
    // Rolling back: blue's writer (full history) against green (restored): blue's older
    // writers are had by position, green's own transactions by entry.
    let blue = state("1-101-2400,1-102-2073,1-201-2500");
    assert!(blue
        .missing_from(101, &state("1-101-2400,1-201-2500"), &pos("1-201-2500"))
        .is_empty());
    // Its own transactions from before green's restore are not taken by position: the
    // check errs on the side of refusing.
    assert_eq!(
        state("1-101-403,1-201-2500").missing_from(101, &state("1-201-2500"), &pos("1-201-2500")),
        vec![Gtid::new(1, 101, 403)]
    );
}

#[test]
fn containment_by_entry_where_the_server_knows_the_writer() {
    // Issue 15, case 4: the old writer took writes after the new one was promoted; the
    // new one's higher seq in the domain must not hide them.
    let old = state("1-101-950");
    let new = state("1-101-900,1-102-1000");
    assert_eq!(
        old.missing_from(101, &new, &pos("1-102-1000")),
        vec![Gtid::new(1, 101, 950)]
    );
    assert!(state("1-101-900")
        .missing_from(101, &new, &pos("1-102-1000"))
        .is_empty());
    // A domain the new one never saw.
    assert_eq!(
        state("1-101-900,2-101-5").missing_from(101, &new, &pos("1-102-1000")),
        vec![Gtid::new(2, 101, 5)]
    );
    // A replica's own old transaction, followed by replicated ones, is errant even
    // though the source's position is past it.
    assert_eq!(
        state("0-1-100,0-2-50").missing_from(2, &state("0-1-100"), &pos("0-1-100")),
        vec![Gtid::new(0, 2, 50)]
    );
}

#[test]
fn mariadb_errant_detection_uses_binlog_state() {
    // The source (server 1) wrote up to 100. The replica (server 2) applied all of it,
    // then a plain FLUSH SSL on the replica was binlogged as 0-2-101.
    let source = state("0-1-100");
    let replica = state("0-1-100,0-2-101");
    assert_eq!(replica.errant_against(&source), vec![Gtid::new(0, 2, 101)]);
    assert!(source.errant_against(&source).is_empty());

    // The source then writes 0-1-101: positions now look identical and the replica even
    // looks caught up, yet the replica's own transaction is still errant.
    let source = state("0-1-101");
    let replica_pos = pos("0-1-101");
    assert!(pos("0-1-101").reached_by(&replica_pos));
    assert_eq!(replica.errant_against(&source), vec![Gtid::new(0, 2, 101)]);

    // A replica ahead of its source in the source's own server_id is errant too (it
    // replicated from a writer the source never saw).
    assert_eq!(
        state("0-1-105").errant_against(&state("0-1-100")),
        vec![Gtid::new(0, 1, 105)]
    );
    // An older writer's entry the source still has is not errant.
    assert!(state("0-3-50,0-1-100")
        .errant_against(&state("0-3-50,0-1-120"))
        .is_empty());
}

#[test]
fn mariadb_serde_as_string() {
    let de: StrDeserializer<DeError> = "1-2-5,0-1-100".into_deserializer();
    assert_eq!(
        GtidPos::deserialize(de).unwrap().to_string(),
        "0-1-100,1-2-5"
    );
    let de: StrDeserializer<DeError> = "0-1-100,0-1-101".into_deserializer();
    assert!(GtidPos::deserialize(de).is_err());
    let de: StrDeserializer<DeError> = "0-1-100,0-2-3".into_deserializer();
    assert_eq!(
        BinlogState::deserialize(de).unwrap().to_string(),
        "0-2-3,0-1-100"
    );
    let de: StrDeserializer<DeError> = "7-8-9".into_deserializer();
    assert_eq!(Gtid::deserialize(de).unwrap(), Gtid::new(7, 8, 9));
}
