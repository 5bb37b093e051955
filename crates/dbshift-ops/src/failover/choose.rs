//! Choosing the replica to promote: the most advanced by what it received from the writer,
//! never one that would lose another's transactions.

use super::*;

/// Why no replica can be promoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `--to` is not a replica of the cluster, or is the writer (exit 2).
    Unknown(String),
    /// `--to` names a replica that is broken or behind another (exit 2).
    BadTarget(String),
    /// No replica can be promoted (exit 1).
    NoHealthyReplica(String),
    /// The replicas' histories diverged: none has everything the others have (exit 3).
    Diverged(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Unknown(m)
            | Refusal::BadTarget(m)
            | Refusal::NoHealthyReplica(m)
            | Refusal::Diverged(m) => f.write_str(m),
        }
    }
}

/// `a` against `b` (see [`ReplicationPosition::compare`]); an unknown position counts as
/// nothing received.
pub(super) fn compare_positions(
    a: &Option<ReplicationPosition>,
    b: &Option<ReplicationPosition>,
) -> Option<Ordering> {
    match (a, b) {
        (Some(a), Some(b)) => a.compare(b),
        (Some(a), None) if a.is_empty() => Some(Ordering::Equal),
        (Some(_), None) => Some(Ordering::Greater),
        (None, Some(b)) if b.is_empty() => Some(Ordering::Equal),
        (None, Some(_)) => Some(Ordering::Less),
        (None, None) => Some(Ordering::Equal),
    }
}

/// A position for a message; nothing known reads as nothing.
pub(super) fn shown(p: &Option<ReplicationPosition>) -> String {
    p.as_ref().map(|p| p.to_string()).unwrap_or_default()
}

/// Pick the replica to promote: among the fit ones, the most advanced by what it received
/// (then by what it applied); ties broken by `to`, then the smallest relay backlog, then the
/// id. `to`, when given, must be fit and not behind the most advanced one.
pub fn choose(writer: &str, candidates: &[Candidate], to: Option<&str>) -> Result<String, Refusal> {
    if let Some(t) = to {
        if t == writer {
            return Err(Refusal::Unknown(format!(
                "{t} is the writer that failed; name one of its replicas: {}",
                candidates
                    .iter()
                    .map(|c| c.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if !candidates.iter().any(|c| c.id == t) {
            return Err(Refusal::Unknown(format!(
                "{t} is not a replica of this cluster; its replicas: {}",
                candidates
                    .iter()
                    .map(|c| c.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let fit: Vec<&Candidate> = candidates.iter().filter(|c| c.unfit.is_none()).collect();
    if fit.is_empty() {
        let why = candidates
            .iter()
            .map(|c| format!("{}: {}", c.id, c.unfit.as_deref().unwrap_or("?")))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(Refusal::NoHealthyReplica(format!(
            "no healthy replica to promote ({})",
            if why.is_empty() {
                "the cluster has no replica".into()
            } else {
                why
            }
        )));
    }
    if let Some(t) = to {
        let c = candidates
            .iter()
            .find(|c| c.id == t)
            .expect("checked above");
        if let Some(why) = &c.unfit {
            return Err(Refusal::BadTarget(format!(
                "--to {t} cannot be promoted: {why}"
            )));
        }
    }
    // Most advanced first; an incomparable pair (diverged histories, or each ahead in another
    // domain) leaves no safe choice.
    let mut best = fit[0];
    for c in &fit[1..] {
        match compare_positions(&c.received(), &best.received()) {
            Some(Ordering::Greater) => best = c,
            Some(Ordering::Less) => {}
            Some(Ordering::Equal) => {
                let applied = compare_positions(&c.gtid_slave_pos, &best.gtid_slave_pos);
                let key = |x: &Candidate| {
                    (
                        to != Some(x.id.as_str()),
                        x.relay_backlog,
                        x.seconds_behind.unwrap_or(0),
                        x.id.clone(),
                    )
                };
                match applied {
                    Some(Ordering::Greater) => best = c,
                    Some(Ordering::Less) => {}
                    _ if key(c) < key(best) => best = c,
                    _ => {}
                }
            }
            None => {
                return Err(Refusal::Diverged(format!(
                    "{} ({}) and {} ({}) each hold transactions the other lacks: promoting either \
                     would lose the other's; compare their relay logs by hand",
                    c.id,
                    shown(&c.received()),
                    best.id,
                    shown(&best.received())
                )))
            }
        }
    }
    // Every fit replica must be at or behind the chosen one, or re-pointing it would fail.
    for c in &fit {
        if compare_positions(&c.received(), &best.received()) == Some(Ordering::Greater) {
            return Err(Refusal::Diverged(format!(
                "{} is ahead of {} in one domain and behind in another",
                c.id, best.id
            )));
        }
    }
    if let Some(t) = to {
        if t != best.id {
            let c = candidates
                .iter()
                .find(|c| c.id == t)
                .expect("checked above");
            if compare_positions(&c.received(), &best.received()) == Some(Ordering::Less) {
                return Err(Refusal::BadTarget(format!(
                    "--to {t} is behind {}: it received {} while {} received {}; promoting it \
                     would lose those transactions (omit --to, or name {})",
                    best.id,
                    shown(&c.received()),
                    best.id,
                    shown(&best.received()),
                    best.id
                )));
            }
        }
    }
    Ok(best.id.clone())
}

pub(super) fn refusal_error(r: Refusal) -> FailoverError {
    match r {
        Refusal::Unknown(m) | Refusal::BadTarget(m) => FailoverError::BadInput(m),
        Refusal::NoHealthyReplica(m) | Refusal::Diverged(m) => FailoverError::Refused(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: &str, io: &str, applied: &str) -> Candidate {
        let io: dbshift_db::mariadb::GtidPos = io.parse().unwrap();
        let applied: dbshift_db::mariadb::GtidPos = applied.parse().unwrap();
        Candidate {
            id: id.into(),
            reachable: true,
            io_running: Some(IoState::Connecting),
            sql_running: true,
            io_error: Some("error 2003: can't connect".into()),
            sql_error: None,
            relay_backlog: applied.behind(&io),
            gtid_io_pos: Some(ReplicationPosition::MariaDb(io)),
            gtid_slave_pos: Some(ReplicationPosition::MariaDb(applied)),
            seconds_behind: None,
            read_only: Some(true),
            configured: true,
            unfit: None,
            heartbeats: Some(7),
            heartbeat_period_ms: Some(500),
            source_log: Some("binlog.000001:4242".into()),
        }
    }

    #[test]
    fn the_replica_that_received_most_wins_even_if_it_applied_less() {
        let c = [
            cand("r2", "1-101-50", "1-101-50"),
            cand("r3", "1-101-60", "1-101-40"),
        ];
        assert_eq!(choose("r1", &c, None).unwrap(), "r3");
    }

    #[test]
    fn a_replicas_own_binlogged_statement_does_not_make_it_look_ahead() {
        // gtid_current_pos of r2 would be 1-202-51 after a local FLUSH; only what it received
        // from the writer counts, and that is behind r3.
        let c = [
            cand("r2", "1-101-50", "1-101-50"),
            cand("r3", "1-101-51", "1-101-51"),
        ];
        assert_eq!(choose("r1", &c, None).unwrap(), "r3");
    }

    #[test]
    fn ties_go_to_the_requested_replica_then_the_smallest_backlog() {
        let c = [
            cand("r2", "1-101-50", "1-101-50"),
            cand("r3", "1-101-50", "1-101-50"),
        ];
        assert_eq!(choose("r1", &c, None).unwrap(), "r2");
        assert_eq!(choose("r1", &c, Some("r3")).unwrap(), "r3");
        let c = [
            cand("r2", "1-101-50", "1-101-45"),
            cand("r3", "1-101-50", "1-101-50"),
        ];
        assert_eq!(choose("r1", &c, None).unwrap(), "r3");
    }

    #[test]
    fn a_lagging_broken_or_unknown_target_is_refused() {
        let mut c = vec![
            cand("r2", "1-101-50", "1-101-50"),
            cand("r3", "1-101-60", "1-101-60"),
        ];
        assert!(
            matches!(choose("r1", &c, Some("r2")), Err(Refusal::BadTarget(m)) if m.contains("behind r3"))
        );
        assert!(matches!(
            choose("r1", &c, Some("r9")),
            Err(Refusal::Unknown(_))
        ));
        assert!(matches!(
            choose("r1", &c, Some("r1")),
            Err(Refusal::Unknown(_))
        ));
        c[1].unfit = Some("its SQL thread failed: error 1062".into());
        assert!(
            matches!(choose("r1", &c, Some("r3")), Err(Refusal::BadTarget(m)) if m.contains("1062"))
        );
        assert_eq!(choose("r1", &c, None).unwrap(), "r2");
        c[0].unfit = Some("unreachable".into());
        assert!(matches!(
            choose("r1", &c, None),
            Err(Refusal::NoHealthyReplica(_))
        ));
        assert!(matches!(
            choose("r1", &[], None),
            Err(Refusal::NoHealthyReplica(_))
        ));
    }

    #[test]
    fn diverged_histories_leave_no_choice() {
        let c = [
            cand("r2", "1-101-50", "1-101-50"),
            cand("r3", "1-102-50", "1-102-50"),
        ];
        assert!(matches!(choose("r1", &c, None), Err(Refusal::Diverged(_))));
        let c = [
            cand("r2", "1-101-50,2-101-3", "1-101-50,2-101-3"),
            cand("r3", "1-101-51,2-101-2", "1-101-51,2-101-2"),
        ];
        assert!(matches!(choose("r1", &c, None), Err(Refusal::Diverged(_))));
    }

    #[test]
    fn a_dead_writer_needs_the_replicas_to_agree() {
        let mut a = Assessment {
            cluster: "c".into(),
            writer: "r1".into(),
            writer_reachable: false,
            writer_error: Some("refused".into()),
            replicas: vec![
                cand("r2", "1-101-5", "1-101-5"),
                cand("r3", "1-101-5", "1-101-5"),
            ],
        };
        assert!(a.writer_dead());
        a.replicas[1].io_running = Some(IoState::Yes);
        a.replicas[1].io_error = None;
        assert!(
            !a.writer_dead(),
            "a replica still connected to the writer disagrees"
        );
        a.replicas[1].reachable = false;
        assert!(a.writer_dead(), "an unreachable replica has no say");
        a.replicas[0].reachable = false;
        assert!(!a.writer_dead(), "no replica to confirm");
        a.writer_reachable = true;
        assert!(!a.writer_dead());
    }
}
