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
            let uuid = normalize_uuid(uuid_text)
                .ok_or_else(|| Error::parse(WHAT, input, format!("{uuid_text:?} is not a UUID")))?;
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
