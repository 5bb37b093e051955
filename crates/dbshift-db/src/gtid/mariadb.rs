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
