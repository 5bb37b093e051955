//! Global transaction identifiers of both families, which look alike and mean different things.
//!
//! - [`mysql`]: a MySQL GTID is `uuid:gno` (8.4 adds `uuid:tag:gno`), and `gtid_executed` is a
//!   true *set* of them, so union, subset and difference are exact, and the errant transactions
//!   of a replica are simply `replica - source`.
//! - [`mariadb`]: a MariaDB GTID is `domain-server_id-seq`. What the server reports
//!   (`gtid_slave_pos`, `gtid_binlog_pos`, `Gtid_IO_Pos`, ...) is a *position*, not a set: see
//!   that module.
//!
//! Both are parsed strictly (a malformed text is an error, never a silently smaller set) and
//! printed canonically. This module is pure: it never talks to a server.

/// Serialize and deserialize a type as its `Display` / `FromStr` text, the form operators read
/// and servers accept.
macro_rules! serde_as_string {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(
                &self,
                serializer: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(
                deserializer: D,
            ) -> std::result::Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Pure digits, no sign, no blank: `str::parse` alone would accept `+5`.
fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

pub mod mysql {
    //! MySQL GTID sets: `uuid:1-5:7,uuid2:1-3`, and MySQL 8.4 tagged GTIDs
    //! (`uuid:tag:1-5`, `uuid:1-3:tag:5-9`).
    //!
    //! A set is kept canonical: UUIDs and tags in lower case, intervals sorted, merged when they
    //! overlap or touch, and printed the way MySQL prints them (UUIDs in order, each with its
    //! untagged intervals first and then each tag in order), except that elements are joined by
    //! `,` alone where MySQL's `gtid_executed` puts `,\n`.

    use std::collections::BTreeMap;
    use std::fmt;
    use std::str::FromStr;

    use crate::error::{Error, Result};

    /// The largest transaction number MySQL hands out: GNOs are signed 64-bit numbers.
    pub const MAX_GNO: u64 = i64::MAX as u64;

    const WHAT: &str = "MySQL GTID set";

    /// An inclusive interval of transaction numbers, `start <= end`, both at least 1.
    type Interval = (u64, u64);

    /// A set of MySQL GTIDs.
    #[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
    pub struct GtidSet {
        /// (uuid, tag) -> intervals. The tag is "" for untagged GTIDs, which sorts it first as
        /// MySQL prints it. Interval lists are sorted, disjoint, non-adjacent and never empty,
        /// so derived equality is set equality.
        sets: BTreeMap<(String, String), Vec<Interval>>,
    }

    impl GtidSet {
        /// The empty set.
        pub fn new() -> GtidSet {
            GtidSet::default()
        }

        /// Whether the set holds no GTID.
        pub fn is_empty(&self) -> bool {
            self.sets.is_empty()
        }

        /// How many GTIDs the set holds (saturating at `u64::MAX`).
        pub fn count(&self) -> u64 {
            self.sets
                .values()
                .flatten()
                .fold(0u64, |n, (s, e)| n.saturating_add(e - s + 1))
        }

        /// Whether `uuid[:tag]:gno` is in the set. `uuid` and `tag` are matched without regard
        /// to case; `None` or `Some("")` means untagged.
        pub fn contains(&self, uuid: &str, tag: Option<&str>, gno: u64) -> bool {
            let key = (
                uuid.trim().to_ascii_lowercase(),
                tag.unwrap_or("").trim().to_ascii_lowercase(),
            );
            self.sets
                .get(&key)
                .is_some_and(|ivs| ivs.iter().any(|&(s, e)| s <= gno && gno <= e))
        }

        /// Add `uuid[:tag]:start-end`, validated as the parser validates text.
        pub fn insert_interval(
            &mut self,
            uuid: &str,
            tag: Option<&str>,
            start: u64,
            end: u64,
        ) -> Result<()> {
            let text = format!(
                "{uuid}:{}{start}-{end}",
                tag.map(|t| format!("{t}:")).unwrap_or_default()
            );
            let uuid = normalize_uuid(uuid)
                .ok_or_else(|| Error::parse(WHAT, &text, format!("{uuid:?} is not a UUID")))?;
            let tag = match tag {
                None | Some("") => String::new(),
                Some(t) => normalize_tag(t).ok_or_else(|| bad_tag(&text, t))?,
            };
            check_interval(&text, start, end)?;
            self.add(uuid, tag, &[(start, end)]);
            Ok(())
        }

        /// Every (uuid, tag, intervals) of the set, in canonical order.
        pub fn intervals(&self) -> impl Iterator<Item = (&str, Option<&str>, &[(u64, u64)])> {
            self.sets.iter().map(|((uuid, tag), ivs)| {
                let tag = if tag.is_empty() {
                    None
                } else {
                    Some(tag.as_str())
                };
                (uuid.as_str(), tag, ivs.as_slice())
            })
        }

        /// Every GTID in `self` or `other`.
        pub fn union(&self, other: &GtidSet) -> GtidSet {
            let mut out = self.clone();
            for (key, ivs) in &other.sets {
                out.add(key.0.clone(), key.1.clone(), ivs);
            }
            out
        }

        /// Whether every GTID of `self` is also in `other`.
        pub fn is_subset(&self, other: &GtidSet) -> bool {
            self.sets
                .iter()
                .all(|(key, ivs)| match other.sets.get(key) {
                    None => false,
                    Some(theirs) => subtract(ivs, theirs).is_empty(),
                })
        }

        /// What `self` has that `other` lacks.
        pub fn difference(&self, other: &GtidSet) -> GtidSet {
            let mut out = GtidSet::new();
            for (key, ivs) in &self.sets {
                let rest = match other.sets.get(key) {
                    None => ivs.clone(),
                    Some(theirs) => subtract(ivs, theirs),
                };
                if !rest.is_empty() {
                    out.sets.insert(key.clone(), rest);
                }
            }
            out
        }

        /// What both sets have.
        pub fn intersection(&self, other: &GtidSet) -> GtidSet {
            let mut out = GtidSet::new();
            for (key, ivs) in &self.sets {
                if let Some(theirs) = other.sets.get(key) {
                    let both = intersect(ivs, theirs);
                    if !both.is_empty() {
                        out.sets.insert(key.clone(), both);
                    }
                }
            }
            out
        }

        /// The errant transactions of a replica: those it executed that its source never did
        /// (`replica_executed - source_executed`). Non-empty means promoting the replica, or
        /// pointing the source at it, would replay or lose them.
        pub fn errant(replica_executed: &GtidSet, source_executed: &GtidSet) -> GtidSet {
            replica_executed.difference(source_executed)
        }

        fn add(&mut self, uuid: String, tag: String, ivs: &[Interval]) {
            let list = self.sets.entry((uuid, tag)).or_default();
            list.extend_from_slice(ivs);
            normalize(list);
        }
    }

    /// Sort and merge overlapping or touching intervals (`1-5,6-7` is `1-7`, as MySQL prints).
    fn normalize(list: &mut Vec<Interval>) {
        list.sort_unstable();
        let mut merged: Vec<Interval> = Vec::with_capacity(list.len());
        for &(s, e) in list.iter() {
            match merged.last_mut() {
                Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        *list = merged;
    }

    /// `a - b` for canonical interval lists.
    fn subtract(a: &[Interval], b: &[Interval]) -> Vec<Interval> {
        let mut out = Vec::new();
        let mut j = 0;
        for &(start, end) in a {
            while j < b.len() && b[j].1 < start {
                j += 1;
            }
            let mut s = start;
            let mut covered = false;
            let mut k = j;
            while k < b.len() && b[k].0 <= end {
                let (bs, be) = b[k];
                if bs > s {
                    out.push((s, bs - 1));
                }
                if be >= end {
                    covered = true;
                    break;
                }
                s = s.max(be + 1);
                k += 1;
            }
            if !covered {
                out.push((s, end));
            }
        }
        out
    }

    /// `a ∩ b` for canonical interval lists.
    fn intersect(a: &[Interval], b: &[Interval]) -> Vec<Interval> {
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < a.len() && j < b.len() {
            let s = a[i].0.max(b[j].0);
            let e = a[i].1.min(b[j].1);
            if s <= e {
                out.push((s, e));
            }
            if a[i].1 < b[j].1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        out
    }

    /// `8-4-4-4-12` hex digits, returned in lower case.
    fn normalize_uuid(s: &str) -> Option<String> {
        let s = s.trim();
        let ok = s.len() == 36
            && s.bytes().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => b == b'-',
                _ => b.is_ascii_hexdigit(),
            });
        ok.then(|| s.to_ascii_lowercase())
    }

    /// MySQL 8.4 tags: `[a-z_][a-z0-9_]{0,31}`, case-insensitive, kept in lower case.
    fn normalize_tag(s: &str) -> Option<String> {
        let t = s.trim().to_ascii_lowercase();
        let mut bytes = t.bytes();
        let first_ok = matches!(bytes.next(), Some(b'a'..=b'z' | b'_'));
        let rest_ok = bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'));
        (first_ok && rest_ok && t.len() <= 32).then_some(t)
    }

    fn bad_tag(input: &str, tag: &str) -> Error {
        Error::parse(
            WHAT,
            input,
            format!("{tag:?} is not a tag (a letter or _, then up to 31 letters, digits or _)"),
        )
    }

    fn check_interval(input: &str, start: u64, end: u64) -> Result<()> {
        if start == 0 {
            return Err(Error::parse(WHAT, input, "transaction numbers start at 1"));
        }
        if end < start {
            return Err(Error::parse(
                WHAT,
                input,
                format!("the interval {start}-{end} is reversed"),
            ));
        }
        if end > MAX_GNO {
            return Err(Error::parse(
                WHAT,
                input,
                format!("{end} is above the largest transaction number {MAX_GNO}"),
            ));
        }
        Ok(())
    }

    fn parse_gno(input: &str, s: &str) -> Result<u64> {
        let s = s.trim();
        if !super::all_digits(s) {
            return Err(Error::parse(
                WHAT,
                input,
                format!("{s:?} is not a transaction number"),
            ));
        }
        s.parse()
            .map_err(|_| Error::parse(WHAT, input, format!("{s} is too large")))
    }

    fn parse_interval(input: &str, token: &str) -> Result<Interval> {
        let (start, end) = match token.split_once('-') {
            Some((a, b)) => (parse_gno(input, a)?, parse_gno(input, b)?),
            None => {
                let n = parse_gno(input, token)?;
                (n, n)
            }
        };
        check_interval(input, start, end)?;
        Ok((start, end))
    }

    impl FromStr for GtidSet {
        type Err = Error;

        /// Parses MySQL's text form. Whitespace and newlines around elements and separators
        /// (as `SHOW REPLICA STATUS` prints long sets) are ignored; an empty text is the empty
        /// set; anything else malformed is an error.
        fn from_str(input: &str) -> Result<GtidSet> {
            let mut set = GtidSet::new();
            if input.trim().is_empty() {
                return Ok(set);
            }
            for element in input.split(',') {
                let element = element.trim();
                if element.is_empty() {
                    return Err(Error::parse(WHAT, input, "an element is empty"));
                }
                let mut tokens = element.split(':').map(str::trim);
                let uuid_text = tokens.next().unwrap_or_default();
                let uuid = normalize_uuid(uuid_text).ok_or_else(|| {
                    Error::parse(WHAT, input, format!("{uuid_text:?} is not a UUID"))
                })?;
                let mut tag = String::new();
                // The untagged part may be absent (`uuid:tag:1-5`); a named tag may not.
                let mut tag_has_interval = true;
                let mut any_interval = false;
                for token in tokens {
                    if token.starts_with(|c: char| c.is_ascii_digit()) {
                        let iv = parse_interval(input, token)?;
                        set.add(uuid.clone(), tag.clone(), &[iv]);
                        tag_has_interval = true;
                        any_interval = true;
                    } else {
                        if !tag_has_interval {
                            return Err(Error::parse(
                                WHAT,
                                input,
                                format!("the tag {tag:?} has no interval"),
                            ));
                        }
                        tag = normalize_tag(token).ok_or_else(|| bad_tag(input, token))?;
                        tag_has_interval = false;
                    }
                }
                if !tag_has_interval {
                    return Err(Error::parse(
                        WHAT,
                        input,
                        format!("the tag {tag:?} has no interval"),
                    ));
                }
                if !any_interval {
                    return Err(Error::parse(WHAT, input, format!("{uuid} has no interval")));
                }
            }
            Ok(set)
        }
    }

    impl fmt::Display for GtidSet {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let mut current: Option<&str> = None;
            for ((uuid, tag), ivs) in &self.sets {
                if current != Some(uuid.as_str()) {
                    if current.is_some() {
                        f.write_str(",")?;
                    }
                    f.write_str(uuid)?;
                    current = Some(uuid);
                }
                if !tag.is_empty() {
                    write!(f, ":{tag}")?;
                }
                for &(s, e) in ivs {
                    if s == e {
                        write!(f, ":{s}")?;
                    } else {
                        write!(f, ":{s}-{e}")?;
                    }
                }
            }
            Ok(())
        }
    }

    serde_as_string!(GtidSet);
}

pub mod mariadb {
    //! MariaDB GTIDs: `domain-server_id-seq`.
    //!
    //! # A position is not a set
    //!
    //! `@@gtid_slave_pos`, `@@gtid_current_pos`, `@@gtid_binlog_pos`, `Gtid_IO_Pos` and
    //! `BINLOG_GTID_POS()` keep *one* GTID per replication domain: the last one applied or
    //! written there. `0-1-100` says "domain 0 is at seq 100", not "transactions 1..100 of
    //! server 1 were applied"; which server_ids wrote the earlier seqs, and whether some of
    //! them are missing, is not recorded. So there is no union, subset or difference of
    //! positions: [`GtidPos`] only compares per domain (which is exactly what
    //! `MASTER_GTID_WAIT` and `START SLAVE UNTIL master_gtid_pos` do), measures how many seqs
    //! one position is behind another, and merges by taking the furthest GTID per domain.
    //!
    //! # Errant transactions need the binlog state
    //!
    //! A transaction that a replica wrote itself (a stray write, an operator's statement, or a
    //! plain `FLUSH SSL`, which is binlogged unlike `FLUSH LOCAL SSL`) gets the replica's own
    //! server_id and the next seq of its domain. It moves `gtid_current_pos` and
    //! `gtid_binlog_pos` on the replica and can even hide behind a later seq from the source,
    //! so comparing positions can neither find nor rule it out. `@@gtid_binlog_state`
    //! ([`BinlogState`]) keeps the last seq of *every* (domain, server_id) that wrote to the
    //! binlog, so an entry the source lacks, or whose seq is ahead of the source's, is a
    //! transaction the source never had: [`BinlogState::errant_against`].

    use std::cmp::Ordering;
    use std::collections::BTreeMap;
    use std::fmt;
    use std::str::FromStr;

    use crate::error::{Error, Result};

    /// One MariaDB GTID: `domain-server_id-seq`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Gtid {
        /// The replication domain: an independent stream of transactions.
        pub domain: u32,
        /// The server that originally wrote the transaction.
        pub server_id: u32,
        /// The sequence number within the domain.
        pub seq: u64,
    }

    impl Gtid {
        /// A GTID from its parts.
        pub fn new(domain: u32, server_id: u32, seq: u64) -> Gtid {
            Gtid {
                domain,
                server_id,
                seq,
            }
        }

        fn parse_in(what: &'static str, input: &str, text: &str) -> Result<Gtid> {
            let parts: Vec<&str> = text.split('-').map(str::trim).collect();
            let [domain, server_id, seq] = parts.as_slice() else {
                return Err(Error::parse(
                    what,
                    input,
                    format!("{text:?} is not domain-server_id-seq"),
                ));
            };
            let number = |name: &str, s: &str| -> Result<u64> {
                if !super::all_digits(s) {
                    return Err(Error::parse(
                        what,
                        input,
                        format!("the {name} of {text:?} is not a number"),
                    ));
                }
                s.parse().map_err(|_| {
                    Error::parse(what, input, format!("the {name} of {text:?} is too large"))
                })
            };
            let small = |name: &str, s: &str| -> Result<u32> {
                u32::try_from(number(name, s)?).map_err(|_| {
                    Error::parse(what, input, format!("the {name} of {text:?} is too large"))
                })
            };
            Ok(Gtid {
                domain: small("domain", domain)?,
                server_id: small("server_id", server_id)?,
                seq: number("seq", seq)?,
            })
        }
    }

    impl fmt::Display for Gtid {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{}-{}-{}", self.domain, self.server_id, self.seq)
        }
    }

    impl FromStr for Gtid {
        type Err = Error;

        fn from_str(s: &str) -> Result<Gtid> {
            Gtid::parse_in("MariaDB GTID", s, s.trim())
        }
    }

    serde_as_string!(Gtid);

    /// A comma-separated list of GTIDs; empty text is an empty list.
    fn parse_list(what: &'static str, input: &str) -> Result<Vec<Gtid>> {
        if input.trim().is_empty() {
            return Ok(Vec::new());
        }
        input
            .split(',')
            .map(|item| {
                let item = item.trim();
                if item.is_empty() {
                    return Err(Error::parse(what, input, "an element is empty"));
                }
                Gtid::parse_in(what, input, item)
            })
            .collect()
    }

    /// A MariaDB GTID position: at most one GTID per domain (see the module doc).
    #[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
    pub struct GtidPos {
        by_domain: BTreeMap<u32, Gtid>,
    }

    impl GtidPos {
        /// The empty position (nothing applied in any domain).
        pub fn new() -> GtidPos {
            GtidPos::default()
        }

        /// A position from GTIDs; two GTIDs of one domain are an error.
        pub fn from_gtids(gtids: impl IntoIterator<Item = Gtid>) -> Result<GtidPos> {
            let mut pos = GtidPos::new();
            for g in gtids {
                if let Some(prev) = pos.by_domain.insert(g.domain, g) {
                    return Err(Error::parse(
                        "MariaDB GTID position",
                        &format!("{prev},{g}"),
                        format!("domain {} appears twice", g.domain),
                    ));
                }
            }
            Ok(pos)
        }

        /// Whether no domain has a GTID.
        pub fn is_empty(&self) -> bool {
            self.by_domain.is_empty()
        }

        /// How many domains have a GTID.
        pub fn len(&self) -> usize {
            self.by_domain.len()
        }

        /// The GTID of one domain.
        pub fn get(&self, domain: u32) -> Option<&Gtid> {
            self.by_domain.get(&domain)
        }

        /// The domains present, in ascending order.
        pub fn domains(&self) -> impl Iterator<Item = u32> + '_ {
            self.by_domain.keys().copied()
        }

        /// The GTIDs, by ascending domain.
        pub fn iter(&self) -> impl Iterator<Item = &Gtid> {
            self.by_domain.values()
        }

        /// Set the GTID of its domain, returning the one it replaces.
        pub fn insert(&mut self, gtid: Gtid) -> Option<Gtid> {
            self.by_domain.insert(gtid.domain, gtid)
        }

        /// How `self` compares with `other` in one domain, by seq.
        ///
        /// A domain absent from a position counts as "nothing applied there", before any seq.
        /// `None` when both have the same seq from different server_ids: two different
        /// transactions claim the same place, so the histories diverged and neither is ahead.
        pub fn compare_domain(&self, other: &GtidPos, domain: u32) -> Option<Ordering> {
            match (self.get(domain), other.get(domain)) {
                (None, None) => Some(Ordering::Equal),
                (None, Some(_)) => Some(Ordering::Less),
                (Some(_), None) => Some(Ordering::Greater),
                (Some(a), Some(b)) if a.seq == b.seq && a.server_id != b.server_id => None,
                (Some(a), Some(b)) => Some(a.seq.cmp(&b.seq)),
            }
        }

        /// Whether `other` has reached `self`: in every domain of `self`, `other` has a seq at
        /// least as high. This is the condition `MASTER_GTID_WAIT(self)` waits for on a server
        /// whose `gtid_slave_pos` is `other`. Domains only in `other` do not matter.
        pub fn reached_by(&self, other: &GtidPos) -> bool {
            self.by_domain.values().all(|mine| {
                other
                    .get(mine.domain)
                    .is_some_and(|theirs| theirs.seq >= mine.seq)
            })
        }

        /// How many transactions `self` is behind `other`: over the domains of `other`, the
        /// sum of how far its seq is ahead of ours (a domain we lack counts from 0). Zero when
        /// equal or ahead everywhere. Seqs in a domain count every transaction of that domain
        /// whatever its server_id, so this is the lag in transactions.
        pub fn behind(&self, other: &GtidPos) -> u64 {
            other.by_domain.values().fold(0u64, |sum, theirs| {
                let mine = self.get(theirs.domain).map_or(0, |g| g.seq);
                sum.saturating_add(theirs.seq.saturating_sub(mine))
            })
        }

        /// The furthest GTID of each domain of either position. On a tie in seq, `self`'s
        /// GTID is kept.
        pub fn merge_max(&self, other: &GtidPos) -> GtidPos {
            let mut out = self.clone();
            for theirs in other.by_domain.values() {
                match out.by_domain.get(&theirs.domain) {
                    Some(mine) if mine.seq >= theirs.seq => {}
                    _ => {
                        out.by_domain.insert(theirs.domain, *theirs);
                    }
                }
            }
            out
        }
    }

    impl fmt::Display for GtidPos {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            for (i, g) in self.by_domain.values().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{g}")?;
            }
            Ok(())
        }
    }

    impl FromStr for GtidPos {
        type Err = Error;

        /// Parses `0-1-100,1-2-5`; empty text is the empty position; two GTIDs of one
        /// domain are an error (a position has one per domain).
        fn from_str(input: &str) -> Result<GtidPos> {
            const WHAT: &str = "MariaDB GTID position";
            let mut pos = GtidPos::new();
            for g in parse_list(WHAT, input)? {
                if pos.by_domain.insert(g.domain, g).is_some() {
                    return Err(Error::parse(
                        WHAT,
                        input,
                        format!("domain {} appears twice", g.domain),
                    ));
                }
            }
            Ok(pos)
        }
    }

    impl From<Gtid> for GtidPos {
        fn from(g: Gtid) -> GtidPos {
            let mut pos = GtidPos::new();
            pos.insert(g);
            pos
        }
    }

    serde_as_string!(GtidPos);

    /// `@@gtid_binlog_state`: the last seq of every (domain, server_id) that wrote to this
    /// server's binary log (see the module doc for why errant detection needs it).
    #[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
    pub struct BinlogState {
        entries: BTreeMap<(u32, u32), u64>,
    }

    impl BinlogState {
        /// The empty state (an empty binary log).
        pub fn new() -> BinlogState {
            BinlogState::default()
        }

        /// A state from GTIDs; two GTIDs of one (domain, server_id) are an error.
        pub fn from_gtids(gtids: impl IntoIterator<Item = Gtid>) -> Result<BinlogState> {
            let mut state = BinlogState::new();
            for g in gtids {
                if state.insert(g).is_some() {
                    return Err(Error::parse(
                        "MariaDB binlog state",
                        &g.to_string(),
                        format!(
                            "domain {} server_id {} appears twice",
                            g.domain, g.server_id
                        ),
                    ));
                }
            }
            Ok(state)
        }

        /// Whether the state is empty.
        pub fn is_empty(&self) -> bool {
            self.entries.is_empty()
        }

        /// How many (domain, server_id) entries the state has.
        pub fn len(&self) -> usize {
            self.entries.len()
        }

        /// The last seq written by `server_id` in `domain`.
        pub fn get(&self, domain: u32, server_id: u32) -> Option<u64> {
            self.entries.get(&(domain, server_id)).copied()
        }

        /// Set the entry of the GTID's (domain, server_id), returning the seq it replaces.
        pub fn insert(&mut self, gtid: Gtid) -> Option<u64> {
            self.entries.insert((gtid.domain, gtid.server_id), gtid.seq)
        }

        /// Every entry as a GTID, by (domain, server_id).
        pub fn iter(&self) -> impl Iterator<Item = Gtid> + '_ {
            self.entries
                .iter()
                .map(|(&(domain, server_id), &seq)| Gtid::new(domain, server_id, seq))
        }

        /// The domains present, ascending, each once.
        pub fn domains(&self) -> impl Iterator<Item = u32> + '_ {
            let mut last = None;
            self.entries.keys().filter_map(move |&(d, _)| {
                if last == Some(d) {
                    None
                } else {
                    last = Some(d);
                    Some(d)
                }
            })
        }

        /// Whether every entry of `other` is in `self` with a seq at least as high: after a
        /// switch, the old writer's final binlog state must be contained in the new writer's,
        /// or some of the old writer's transactions never arrived.
        pub fn contains(&self, other: &BinlogState) -> bool {
            other
                .entries
                .iter()
                .all(|(key, &seq)| self.entries.get(key).is_some_and(|&mine| mine >= seq))
        }

        /// The entries of `self` (a replica) that `source` never had: a (domain, server_id)
        /// absent from the source, or a seq beyond the source's. Each stands for at least one
        /// transaction the replica wrote itself.
        pub fn errant_against(&self, source: &BinlogState) -> Vec<Gtid> {
            self.iter()
                .filter(|g| {
                    source
                        .get(g.domain, g.server_id)
                        .is_none_or(|theirs| g.seq > theirs)
                })
                .collect()
        }

        /// The transactions of `self` (the binlog state of the server whose `server_id` is
        /// `own`, e.g. the old writer) that a server whose binlog state is `state` and whose
        /// `gtid_current_pos` is `pos` does not have; empty when it has them all.
        ///
        /// By entry where `state` knows the (domain, server_id). The last GTID of each domain
        /// of `self` is had too when it is the very GTID of the position. An older entry of
        /// another server is had when the position is past it: a server restored from a
        /// backup (a green, a replica added from a snapshot) knows only the last GTID of each
        /// domain, not the history of the writers before. The server's own transactions are
        /// never taken by position: they are what an errant transaction is (so a server's own
        /// transactions from before a restored reference's backup are reported: the check
        /// errs on the side of refusing).
        pub fn missing_from(&self, own: u32, state: &BinlogState, pos: &GtidPos) -> Vec<Gtid> {
            let last = self.to_pos();
            self.iter()
                .filter(|g| {
                    let had = match state.get(g.domain, g.server_id) {
                        Some(seq) => seq >= g.seq,
                        None if last.get(g.domain) == Some(g) => pos.get(g.domain) == Some(g),
                        None if g.server_id == own => false,
                        None => pos.get(g.domain).is_some_and(|p| p.seq > g.seq),
                    };
                    !had
                })
                .collect()
        }

        /// Every entry of either state, at the higher seq where both have it.
        pub fn merge_max(&self, other: &BinlogState) -> BinlogState {
            let mut out = self.clone();
            for g in other.iter() {
                if out
                    .get(g.domain, g.server_id)
                    .is_none_or(|mine| mine < g.seq)
                {
                    out.insert(g);
                }
            }
            out
        }

        /// The position of this binary log: the highest seq of each domain.
        pub fn to_pos(&self) -> GtidPos {
            let mut pos = GtidPos::new();
            for g in self.iter() {
                match pos.get(g.domain) {
                    Some(best) if best.seq >= g.seq => {}
                    _ => {
                        pos.insert(g);
                    }
                }
            }
            pos
        }
    }

    impl fmt::Display for BinlogState {
        /// Domains ascending; within a domain by ascending seq, so the GTID MariaDB treats as
        /// the domain's latest (the last one listed) is the highest, as [`Self::to_pos`] says.
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let mut gtids: Vec<Gtid> = self.iter().collect();
            gtids.sort_by_key(|g| (g.domain, g.seq, g.server_id));
            for (i, g) in gtids.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{g}")?;
            }
            Ok(())
        }
    }

    impl FromStr for BinlogState {
        type Err = Error;

        /// Parses `0-1-100,0-2-90,1-2-5`; empty text is the empty state; two GTIDs of one
        /// (domain, server_id) are an error.
        fn from_str(input: &str) -> Result<BinlogState> {
            const WHAT: &str = "MariaDB binlog state";
            let mut state = BinlogState::new();
            for g in parse_list(WHAT, input)? {
                if state.insert(g).is_some() {
                    return Err(Error::parse(
                        WHAT,
                        input,
                        format!(
                            "domain {} server_id {} appears twice",
                            g.domain, g.server_id
                        ),
                    ));
                }
            }
            Ok(state)
        }
    }

    serde_as_string!(BinlogState);
}

#[cfg(test)]
mod tests {
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
            state("1-101-403,1-201-2500").missing_from(
                101,
                &state("1-201-2500"),
                &pos("1-201-2500")
            ),
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
}
