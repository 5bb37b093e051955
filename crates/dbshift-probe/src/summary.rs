//! From recorded attempts to what clients saw: outages, the longest write gap, latency
//! percentiles and the lost-write audit. Everything here is pure (no I/O), so it is tested on
//! hand-made attempt lists.
//!
//! Definitions (also in `docs/probe.md`):
//! - An **outage** of a kind is a maximal run of failed or timed-out attempts of that kind, in
//!   order of due time. It starts when the first of them was due and ends when the next
//!   successful attempt of that kind *answered*: the moment a client learns the service is
//!   back. One failure between successes is an outage too (short, but real).
//! - The **write gap** is the time between two consecutive acknowledgements of writes, in order
//!   of acknowledgement: what an application that writes continuously sees as "nothing got
//!   through". A run that ends inside an outage counts the time from the last acknowledgement
//!   to the end of the run.
//! - **Latency** percentiles (nearest rank) are over successful attempts only; failures and
//!   timeouts are counted, not averaged in.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::record::{Attempt, Event, Kind, Outcome};

/// When attempt `k` of an open-loop schedule at `rate` per second is due, from the start.
/// Computed from `k`, never by adding intervals, so the schedule does not drift.
pub fn due(k: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(k as f64 / rate)
}

/// The `p`th percentile (0 < p <= 100) by nearest rank of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50, p99 and max of successful attempts, in ms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Counts and latency of one kind of attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindSummary {
    pub attempted: u64,
    pub succeeded: u64,
    /// The server or the network said no.
    pub failed: u64,
    /// Timed out: for writes, not acknowledged and maybe committed.
    pub indeterminate: u64,
    /// `null` when nothing succeeded.
    pub latency_ms: Option<Latency>,
}

/// A window in which a kind of attempt did not succeed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outage {
    pub kind: Kind,
    pub start_ms: f64,
    pub end_ms: f64,
    pub duration_ms: f64,
    /// Failed or timed-out attempts in the window.
    pub attempts: u64,
    /// The run ended before a success closed the window.
    pub ongoing: bool,
}

/// The longest time without an acknowledged write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    pub from_ms: f64,
    pub to_ms: f64,
    pub duration_ms: f64,
}

/// Every seq of the run read back from where the target pointed at the end.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Audit {
    /// The `host:port` read back from; `null` if the audit could not connect.
    pub endpoint: Option<String>,
    /// Rows of this run found there.
    pub rows_found: u64,
    /// Acknowledged writes missing there.
    pub lost_writes: Vec<u64>,
    /// Timed-out writes that were committed after all.
    pub indeterminate_landed: Vec<u64>,
    /// Writes that reported an error but were committed (e.g. the connection broke after the
    /// commit).
    pub failed_landed: Vec<u64>,
    /// Why the audit could not run; then `lost_writes` is empty and means nothing.
    pub error: Option<String>,
}

impl Audit {
    /// Compare what the probe was told with what is on the server.
    pub fn compare(
        endpoint: String,
        attempts: &[Attempt],
        found: &std::collections::HashSet<u64>,
    ) -> Audit {
        let mut audit = Audit {
            endpoint: Some(endpoint),
            rows_found: found.len() as u64,
            ..Audit::default()
        };
        for a in attempts.iter().filter(|a| a.kind == Kind::Write) {
            let Some(seq) = a.seq else { continue };
            let there = found.contains(&seq);
            match (a.outcome, there) {
                (Outcome::Ok, false) => audit.lost_writes.push(seq),
                (Outcome::Timeout, true) => audit.indeterminate_landed.push(seq),
                (Outcome::Failed, true) => audit.failed_landed.push(seq),
                _ => {}
            }
        }
        audit.lost_writes.sort_unstable();
        audit.indeterminate_landed.sort_unstable();
        audit.failed_landed.sort_unstable();
        audit
    }

    /// The audit could not read the rows back.
    pub fn failed(error: String) -> Audit {
        Audit {
            error: Some(error),
            ..Audit::default()
        }
    }
}

/// The probe's result: `summary.json` and the CLI's `--output json`. Field names are stable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub run_id: String,
    /// The target as given (never with a password).
    pub target: String,
    /// UTC, RFC 3339.
    pub started_at: String,
    pub duration_ms: f64,
    pub requested_write_rate: f64,
    /// Acknowledged writes per second over the run.
    pub achieved_write_rate: f64,
    /// achieved / requested.
    pub write_rate_ratio: f64,
    pub timeout_ms: f64,
    /// `write`, `read`, `connect`.
    pub kinds: BTreeMap<Kind, KindSummary>,
    pub outages: Vec<Outage>,
    pub max_write_gap_ms: f64,
    pub max_write_gap: Option<Gap>,
    /// Acknowledged writes missing at the end (seq numbers). Must be empty.
    pub lost_writes: Vec<u64>,
    /// Writes that timed out (not acknowledged, never counted as lost).
    pub indeterminate_writes: u64,
    pub audit: Audit,
    pub events: Vec<Event>,
    pub report_dir: Option<PathBuf>,
}

/// What [`Summary::build`] needs besides the attempts.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub run_id: String,
    pub target: String,
    pub started_at: String,
    pub duration_ms: f64,
    pub requested_write_rate: f64,
    pub timeout_ms: f64,
    pub report_dir: Option<PathBuf>,
}

impl Summary {
    pub fn build(info: RunInfo, attempts: &[Attempt], events: Vec<Event>, audit: Audit) -> Self {
        let mut kinds = BTreeMap::new();
        let mut all_outages = Vec::new();
        for kind in Kind::ALL {
            kinds.insert(kind, kind_summary(attempts, kind));
            all_outages.extend(outages(attempts, kind, info.duration_ms));
        }
        all_outages.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
        let write_ok = kinds.get(&Kind::Write).map(|k| k.succeeded).unwrap_or(0);
        let achieved = if info.duration_ms > 0.0 {
            write_ok as f64 / (info.duration_ms / 1000.0)
        } else {
            0.0
        };
        let gap = max_write_gap(attempts, info.duration_ms);
        Summary {
            run_id: info.run_id,
            target: info.target,
            started_at: info.started_at,
            duration_ms: info.duration_ms,
            requested_write_rate: info.requested_write_rate,
            achieved_write_rate: achieved,
            write_rate_ratio: if info.requested_write_rate > 0.0 {
                achieved / info.requested_write_rate
            } else {
                0.0
            },
            timeout_ms: info.timeout_ms,
            indeterminate_writes: kinds
                .get(&Kind::Write)
                .map(|k| k.indeterminate)
                .unwrap_or(0),
            kinds,
            outages: all_outages,
            max_write_gap_ms: gap.as_ref().map(|g| g.duration_ms).unwrap_or(0.0),
            max_write_gap: gap,
            lost_writes: audit.lost_writes.clone(),
            audit,
            events,
            report_dir: info.report_dir,
        }
    }
}

/// Counts and percentiles of one kind.
pub fn kind_summary(attempts: &[Attempt], kind: Kind) -> KindSummary {
    let mut s = KindSummary {
        attempted: 0,
        succeeded: 0,
        failed: 0,
        indeterminate: 0,
        latency_ms: None,
    };
    let mut lat = Vec::new();
    for a in attempts.iter().filter(|a| a.kind == kind) {
        s.attempted += 1;
        match a.outcome {
            Outcome::Ok => {
                s.succeeded += 1;
                lat.push(a.latency_ms);
            }
            Outcome::Failed => s.failed += 1,
            Outcome::Timeout => s.indeterminate += 1,
        }
    }
    lat.sort_by(f64::total_cmp);
    if let (Some(p50), Some(p99), Some(max)) = (
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat.last().copied(),
    ) {
        s.latency_ms = Some(Latency {
            p50_ms: p50,
            p99_ms: p99,
            max_ms: max,
        });
    }
    s
}

/// The outages of one kind (see the module doc). `run_end_ms` closes an outage still open when
/// the run ended.
pub fn outages(attempts: &[Attempt], kind: Kind, run_end_ms: f64) -> Vec<Outage> {
    let mut of_kind: Vec<&Attempt> = attempts.iter().filter(|a| a.kind == kind).collect();
    of_kind.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms).then(a.seq.cmp(&b.seq)));
    let mut out = Vec::new();
    let mut state = State::Up;
    for a in of_kind {
        state = match (state, a.ok()) {
            (State::Up, true) => State::Up,
            (State::Up, false) => State::Down {
                start: a.t_ms,
                failed: 1,
                last: a.end_ms(),
            },
            (
                State::Down {
                    start,
                    failed,
                    last,
                },
                false,
            ) => State::Down {
                start,
                failed: failed + 1,
                last: last.max(a.end_ms()),
            },
            (State::Down { start, failed, .. }, true) => State::Back {
                start,
                failed,
                first_answer: a.end_ms(),
            },
            // Several successes can be in flight at once: the outage ends at the earliest
            // answer among those that follow it, not at the one that happened to be due first.
            (
                State::Back {
                    start,
                    failed,
                    first_answer,
                },
                true,
            ) => State::Back {
                start,
                failed,
                first_answer: first_answer.min(a.end_ms()),
            },
            (
                State::Back {
                    start,
                    failed,
                    first_answer,
                },
                false,
            ) => {
                out.push(outage(kind, start, first_answer, failed, false));
                State::Down {
                    start: a.t_ms,
                    failed: 1,
                    last: a.end_ms(),
                }
            }
        };
    }
    match state {
        State::Up => {}
        State::Down {
            start,
            failed,
            last,
        } => out.push(outage(kind, start, run_end_ms.max(last), failed, true)),
        State::Back {
            start,
            failed,
            first_answer,
        } => out.push(outage(kind, start, first_answer, failed, false)),
    }
    out
}

#[derive(Clone, Copy)]
enum State {
    Up,
    Down {
        start: f64,
        failed: u64,
        last: f64,
    },
    Back {
        start: f64,
        failed: u64,
        first_answer: f64,
    },
}

fn outage(kind: Kind, start: f64, end: f64, attempts: u64, ongoing: bool) -> Outage {
    Outage {
        kind,
        start_ms: start,
        end_ms: end,
        duration_ms: end - start,
        attempts,
        ongoing,
    }
}

/// The longest time between two consecutive write acknowledgements (see the module doc).
pub fn max_write_gap(attempts: &[Attempt], run_end_ms: f64) -> Option<Gap> {
    let mut acks: Vec<f64> = attempts
        .iter()
        .filter(|a| a.kind == Kind::Write && a.ok())
        .map(Attempt::end_ms)
        .collect();
    acks.sort_by(f64::total_cmp);
    let last_ack = *acks.last()?;
    // A run that ends in an outage: the gap runs to the end of the run.
    let failed_after_last = attempts
        .iter()
        .any(|a| a.kind == Kind::Write && !a.ok() && a.t_ms > last_ack);
    if failed_after_last {
        acks.push(run_end_ms.max(last_ack));
    }
    acks.windows(2)
        .map(|w| Gap {
            from_ms: w[0],
            to_ms: w[1],
            duration_ms: w[1] - w[0],
        })
        .max_by(|a, b| a.duration_ms.total_cmp(&b.duration_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn at(kind: Kind, seq: u64, t: f64, lat: f64, outcome: Outcome) -> Attempt {
        Attempt {
            kind,
            seq: (kind == Kind::Write).then_some(seq),
            t_ms: t,
            latency_ms: lat,
            outcome,
            code: None,
            error: None,
            endpoint: None,
        }
    }

    fn w(seq: u64, t: f64, lat: f64, o: Outcome) -> Attempt {
        at(Kind::Write, seq, t, lat, o)
    }

    #[test]
    fn open_loop_schedule_does_not_drift() {
        assert_eq!(due(0, 200.0), Duration::ZERO);
        assert_eq!(due(1, 200.0), Duration::from_millis(5));
        assert_eq!(due(1000, 1000.0), Duration::from_secs(1));
        // After an hour at 1000/s the schedule is still exact to the microsecond.
        let d = due(3_600_000, 1000.0);
        assert!((d.as_secs_f64() - 3600.0).abs() < 1e-6, "{d:?}");
        assert_eq!(due(3, 0.5), Duration::from_secs(6));
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50.0), Some(2.0));
    }

    #[test]
    fn an_outage_runs_from_the_first_failure_to_the_next_answer() {
        let a = vec![
            w(0, 0.0, 1.0, Outcome::Ok),
            w(1, 10.0, 1.0, Outcome::Ok),
            w(2, 20.0, 1000.0, Outcome::Timeout),
            w(3, 30.0, 2.0, Outcome::Failed),
            // Out of order in the list: sorting by due time must not care.
            w(5, 50.0, 3.0, Outcome::Ok),
            w(4, 40.0, 1500.0, Outcome::Ok),
            w(6, 60.0, 1.0, Outcome::Failed),
            w(7, 70.0, 1.0, Outcome::Ok),
            at(Kind::Read, 0, 25.0, 1.0, Outcome::Failed),
        ];
        let o = outages(&a, Kind::Write, 100.0);
        assert_eq!(o.len(), 2);
        // seq 4 was due first after the failures but seq 5 answered first (at 53).
        assert_eq!((o[0].start_ms, o[0].end_ms, o[0].attempts), (20.0, 53.0, 2));
        assert_eq!(o[0].duration_ms, 33.0);
        assert!(!o[0].ongoing);
        assert_eq!((o[1].start_ms, o[1].end_ms), (60.0, 71.0));
        // The read failure is not a write outage, and is an ongoing read outage.
        let r = outages(&a, Kind::Read, 100.0);
        assert_eq!(r.len(), 1);
        assert!(r[0].ongoing);
        assert_eq!((r[0].start_ms, r[0].end_ms), (25.0, 100.0));
        assert!(outages(&a, Kind::Connect, 100.0).is_empty());
    }

    #[test]
    fn write_gap_is_between_acknowledgements() {
        let a = vec![
            w(0, 0.0, 1.0, Outcome::Ok),      // ack 1
            w(1, 10.0, 1.0, Outcome::Ok),     // ack 11
            w(2, 20.0, 5.0, Outcome::Failed), // no ack
            w(3, 30.0, 2000.0, Outcome::Ok),  // ack 2030
            w(4, 40.0, 1980.0, Outcome::Ok),  // ack 2020
            w(5, 2050.0, 1.0, Outcome::Ok),   // ack 2051
        ];
        let g = max_write_gap(&a, 3000.0).unwrap();
        assert_eq!((g.from_ms, g.to_ms, g.duration_ms), (11.0, 2020.0, 2009.0));
        // Ending inside an outage: the gap runs to the end of the run.
        let mut b = a.clone();
        b.push(w(6, 2100.0, 1000.0, Outcome::Timeout));
        let g = max_write_gap(&b, 5000.0).unwrap();
        assert_eq!((g.from_ms, g.to_ms), (2051.0, 5000.0));
        assert_eq!(
            max_write_gap(&[w(0, 0.0, 1.0, Outcome::Failed)], 10.0),
            None
        );
    }

    #[test]
    fn the_audit_finds_exactly_the_missing_acknowledged_writes() {
        let a = vec![
            w(0, 0.0, 1.0, Outcome::Ok),
            w(1, 1.0, 1.0, Outcome::Ok),
            w(2, 2.0, 1000.0, Outcome::Timeout),
            w(3, 3.0, 1000.0, Outcome::Timeout),
            w(4, 4.0, 1.0, Outcome::Failed),
            w(5, 5.0, 1.0, Outcome::Ok),
        ];
        let found: HashSet<u64> = [0, 2, 4].into_iter().collect();
        let audit = Audit::compare("h:1".into(), &a, &found);
        assert_eq!(audit.lost_writes, vec![1, 5]);
        assert_eq!(audit.indeterminate_landed, vec![2]);
        assert_eq!(audit.failed_landed, vec![4]);
        assert_eq!(audit.rows_found, 3);
    }

    #[test]
    fn summary_counts_and_rate() {
        let mut a: Vec<Attempt> = (0..100)
            .map(|k| w(k, k as f64 * 10.0, 1.0 + (k % 10) as f64, Outcome::Ok))
            .collect();
        a[50].outcome = Outcome::Timeout;
        a[51].outcome = Outcome::Failed;
        let info = RunInfo {
            run_id: "r".into(),
            target: "t".into(),
            started_at: "now".into(),
            duration_ms: 1000.0,
            requested_write_rate: 100.0,
            timeout_ms: 1000.0,
            report_dir: None,
        };
        let found: HashSet<u64> = (0..100).collect();
        let audit = Audit::compare("h:1".into(), &a, &found);
        let s = Summary::build(info, &a, vec![], audit);
        let ws = &s.kinds[&Kind::Write];
        assert_eq!(
            (ws.attempted, ws.succeeded, ws.failed, ws.indeterminate),
            (100, 98, 1, 1)
        );
        assert_eq!(s.indeterminate_writes, 1);
        assert_eq!(s.achieved_write_rate, 98.0);
        assert!((s.write_rate_ratio - 0.98).abs() < 1e-9);
        assert_eq!(s.outages.len(), 1);
        assert_eq!(s.outages[0].start_ms, 500.0);
        assert_eq!(s.lost_writes, Vec::<u64>::new());
        let lat = ws.latency_ms.as_ref().unwrap();
        assert_eq!(lat.max_ms, 10.0);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["kinds"]["write"]["succeeded"], 98);
        assert!(json["kinds"]["connect"]["latency_ms"].is_null());
    }
}
