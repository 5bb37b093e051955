//! Watch: look at a cluster every interval, say what changed, and fail over when its writer is
//! dead.
//!
//! Dead means both: dbshift cannot reach the writer, *and* every replica that answers says its
//! IO thread lost it (not connected, or a connect error). dbshift alone could be the one cut
//! off; the replicas alone could be behind a broken link. After a failover no other one starts
//! for the block period (anti-flapping). Semi-synchronous replication is watched too:
//! `Rpl_semi_sync_master_status` falls back to asynchronous silently after its timeout, and
//! the watcher says so. With auto-rejoin, a former writer that comes back is made a replica
//! (`rejoin.rs`) unless it holds errant transactions. Everything seen and done is printed
//! (through the sink) and journaled.
//! This module decides *when*; the failover itself is `failover.rs`.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::events::{LogObserver, Observer};
use crate::failover::{self, FailoverOutcome, FailoverRequest};
use crate::journal::{Journal, RunStatus};
use crate::rejoin::{self, RejoinOutcome};
use dbshift_provider::Provider;

/// The journal kind of a watch.
pub const RUN_KIND: &str = "watch";

/// Heartbeat periods without a word from the writer (no event, no heartbeat) after which a
/// replica counts as having lost it, though its IO thread still says `Yes`.
pub const SILENT_PERIODS: u64 = 3;

/// What each replica last heard from the writer (its heartbeat count and fetch position), and
/// since when. A hung or cut-off writer falls silent at once, while the replicas' IO threads
/// give up only after `slave_net_timeout`; an idle healthy writer still sends a heartbeat
/// every period, and a busy one events, so either moves the mark.
#[derive(Debug, Default)]
pub struct Hearing {
    last: std::collections::BTreeMap<String, ((u64, Option<String>), Instant)>,
}

impl Hearing {
    /// Record a look taken at `now`; gives the replicas silent for [`SILENT_PERIODS`]
    /// heartbeat periods. A replica that is unreachable, whose IO thread is not connected
    /// (that case speaks for itself), or that does not report heartbeats is left out.
    pub fn update(
        &mut self,
        replicas: &[failover::Candidate],
        now: Instant,
    ) -> std::collections::BTreeSet<String> {
        let mut silent = std::collections::BTreeSet::new();
        let mut seen = std::collections::BTreeSet::new();
        for c in replicas {
            if !c.reachable || c.io_running != Some(dbshift_db::status::IoState::Yes) {
                continue;
            }
            let (Some(beats), Some(period)) = (c.heartbeats, c.heartbeat_period_ms) else {
                continue;
            };
            seen.insert(c.id.clone());
            let mark = (beats, c.source_log.clone());
            let entry = self
                .last
                .entry(c.id.clone())
                .or_insert_with(|| (mark.clone(), now));
            if entry.0 != mark {
                *entry = (mark, now);
            } else if now.saturating_duration_since(entry.1)
                >= Duration::from_millis(period * SILENT_PERIODS)
            {
                silent.insert(c.id.clone());
            }
        }
        self.last.retain(|id, _| seen.contains(id));
        silent
    }
}

#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub cluster: String,
    /// Time between two looks; also the writer's connect bound.
    pub interval: Duration,
    /// After a failover, no other one for this long.
    pub block: Duration,
    /// Fail over when the writer is dead (otherwise only report it).
    pub auto_failover: bool,
    /// Make an instance of the cluster that answers but replicates from nowhere (a former
    /// writer that came back) a replica of the writer, when it has no errant transaction.
    pub auto_rejoin: bool,
    /// Looks in a row that must find the writer dead before a failover.
    pub confirmations: u32,
    /// The failover's parameters (`to` is ignored: the most advanced replica is chosen).
    pub failover_timeout: Duration,
}

impl WatchOptions {
    pub fn new(cluster: &str) -> WatchOptions {
        WatchOptions {
            cluster: cluster.to_string(),
            interval: Duration::from_millis(500),
            block: Duration::from_secs(300),
            auto_failover: false,
            confirmations: 2,
            auto_rejoin: false,
            failover_timeout: Duration::from_secs(30),
        }
    }
}

/// Something the watcher saw or did.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WatchEvent {
    Started {
        cluster: String,
        writer: String,
    },
    /// dbshift cannot reach the writer.
    WriterUnreachable {
        writer: String,
        error: String,
        replicas_agree: bool,
    },
    /// The writer answers again (before any failover).
    WriterBack {
        writer: String,
    },
    /// Semi-sync is enabled on the writer but it is running asynchronously.
    SemiSyncFellBack {
        writer: String,
    },
    SemiSyncBack {
        writer: String,
    },
    /// A replica's replication broke (while the writer answers).
    ReplicaBroken {
        replica: String,
        error: String,
    },
    FailoverStarted {
        writer: String,
        detection_ms: u64,
        /// What the replicas said: their IO threads lost the writer, or some heard nothing
        /// from it for several heartbeat periods.
        evidence: String,
    },
    FailoverDone {
        outcome: Box<FailoverOutcome>,
    },
    FailoverFailed {
        error: String,
    },
    /// The look itself failed (the control plane did not answer); the next one follows.
    LookFailed {
        error: String,
    },
    /// A former writer that came back was made a replica of the writer.
    Rejoined {
        instance: String,
        writer: String,
    },
    /// A former writer that came back was left alone: errant transactions, or a failure.
    RejoinRefused {
        instance: String,
        reason: String,
    },
    /// Dead, but a failover was done less than the block period ago.
    Blocked {
        writer: String,
        remaining_ms: u64,
    },
    Stopped,
}

/// Where events go (printed by the CLI, collected by tests).
pub trait WatchSink: Send + Sync {
    fn saw(&self, event: &WatchEvent);
}

/// What the writer's semi-sync says: `(enabled, active)`.
async fn semi_sync(
    provider: &dyn Provider,
    cluster: &str,
    writer: &str,
    timeout: Duration,
) -> Option<(bool, bool)> {
    let creds = provider.credentials_for(cluster).ok()?;
    let ep = provider.describe_instance(writer).await.ok()?.endpoint;
    let opts = crate::connect_options(&creds, &creds.admin, &ep).connect_timeout(timeout);
    let mut s = tokio::time::timeout(timeout, dbshift_db::Server::connect(&opts))
        .await
        .ok()?
        .ok()?;
    let enabled = s.semi_sync_source_enabled().await.unwrap_or(false);
    let active = s.semi_sync_source_active().await.unwrap_or(false);
    s.close().await;
    Some((enabled, active))
}

/// Watch `opts.cluster` until `stop` turns true; gives the failovers done.
pub async fn watch(
    provider: &dyn Provider,
    journal: &Journal,
    opts: &WatchOptions,
    sink: &dyn WatchSink,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<FailoverOutcome>, failover::FailoverError> {
    // One watcher that fails over per cluster: a second would act on the same dead writer.
    let _watching = if opts.auto_failover {
        Some(
            journal
                .locks()
                .acquire(
                    &format!("watch-{}", opts.cluster),
                    &format!("watch --auto-failover of {}", opts.cluster),
                )
                .await?,
        )
    } else {
        None
    };
    let run = journal
        .create_run(
            RUN_KIND,
            &opts.cluster,
            &serde_json::json!({
                "interval_ms": crate::ms(opts.interval),
                "block_ms": crate::ms(opts.block),
                "auto_failover": opts.auto_failover,
                "confirmations": opts.confirmations,
            }),
        )
        .await?;
    let mut seq = 0u32;
    let first = failover::assess(provider, &opts.cluster, opts.interval).await?;
    record(
        journal,
        &run,
        sink,
        &mut seq,
        WatchEvent::Started {
            cluster: opts.cluster.clone(),
            writer: first.writer.clone(),
        },
    )
    .await?;
    let mut done = Vec::new();
    let mut last_failover: Option<Instant> = None;
    let mut dead_since: Option<Instant> = None;
    let mut dead_looks = 0u32;
    let mut unreachable_reported = false;
    let mut semi_sync_active: Option<bool> = None;
    let mut broken: std::collections::BTreeSet<String> = Default::default();
    // Reported once each; `dbshift rejoin` by hand after a fix.
    let mut refused_rejoin: std::collections::BTreeSet<String> = Default::default();
    let mut unconfigured: std::collections::BTreeMap<String, u32> = Default::default();
    let mut hearing = Hearing::default();
    loop {
        if *stop.borrow() {
            break;
        }
        let look_started = Instant::now();
        let a = match failover::assess(provider, &opts.cluster, opts.interval).await {
            Ok(a) => a,
            Err(e) => {
                record(
                    journal,
                    &run,
                    sink,
                    &mut seq,
                    WatchEvent::LookFailed {
                        error: e.to_string(),
                    },
                )
                .await?;
                let rest = opts.interval.saturating_sub(look_started.elapsed());
                tokio::select! {
                    _ = tokio::time::sleep(rest) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
        };
        let silent = hearing.update(&a.replicas, look_started);
        if a.writer_reachable {
            if unreachable_reported {
                record(
                    journal,
                    &run,
                    sink,
                    &mut seq,
                    WatchEvent::WriterBack {
                        writer: a.writer.clone(),
                    },
                )
                .await?;
            }
            unreachable_reported = false;
            dead_since = None;
            dead_looks = 0;
            if let Some((true, active)) =
                semi_sync(provider, &opts.cluster, &a.writer, opts.interval).await
            {
                if semi_sync_active != Some(active) {
                    let ev = if active {
                        WatchEvent::SemiSyncBack {
                            writer: a.writer.clone(),
                        }
                    } else {
                        WatchEvent::SemiSyncFellBack {
                            writer: a.writer.clone(),
                        }
                    };
                    // The first look reports only a fallback, not the normal state.
                    if semi_sync_active.is_some() || !active {
                        record(journal, &run, sink, &mut seq, ev).await?;
                    }
                    semi_sync_active = Some(active);
                }
            }
            // Seen without a source twice in a row: not the instant between a switchover's
            // promotion and its demotion of the old writer.
            unconfigured.retain(|id, _| {
                a.replicas
                    .iter()
                    .any(|c| &c.id == id && c.reachable && !c.configured)
            });
            for c in a.replicas.iter().filter(|c| c.configured) {
                refused_rejoin.remove(&c.id);
            }
            for c in a.replicas.iter().filter(|c| c.reachable && !c.configured) {
                let looks = unconfigured.entry(c.id.clone()).or_insert(0);
                *looks += 1;
                if !opts.auto_rejoin || *looks < 2 || refused_rejoin.contains(&c.id) {
                    continue;
                }
                let ev = match rejoin::rejoin(provider, journal, &c.id, opts.failover_timeout).await
                {
                    Ok(RejoinOutcome::Rejoined {
                        instance, writer, ..
                    }) => WatchEvent::Rejoined { instance, writer },
                    Ok(RejoinOutcome::Errant {
                        instance, errant, ..
                    }) => {
                        refused_rejoin.insert(instance.clone());
                        WatchEvent::RejoinRefused {
                            instance,
                            reason: format!(
                                "errant transactions {}: left read-only, not replicating",
                                errant.join(",")
                            ),
                        }
                    }
                    Err(e) => {
                        refused_rejoin.insert(c.id.clone());
                        WatchEvent::RejoinRefused {
                            instance: c.id.clone(),
                            reason: e.to_string(),
                        }
                    }
                };
                record(journal, &run, sink, &mut seq, ev).await?;
            }
            for c in a.replicas.iter().filter(|c| c.configured) {
                let err = c.sql_error.clone().or_else(|| c.io_error.clone());
                match err {
                    Some(e) if c.reachable && broken.insert(c.id.clone()) => {
                        record(
                            journal,
                            &run,
                            sink,
                            &mut seq,
                            WatchEvent::ReplicaBroken {
                                replica: c.id.clone(),
                                error: e,
                            },
                        )
                        .await?;
                    }
                    None => {
                        broken.remove(&c.id);
                    }
                    _ => {}
                }
            }
        } else {
            let since = *dead_since.get_or_insert(look_started);
            let agree = a.writer_dead_or_silent(&silent);
            if !unreachable_reported {
                record(
                    journal,
                    &run,
                    sink,
                    &mut seq,
                    WatchEvent::WriterUnreachable {
                        writer: a.writer.clone(),
                        error: a.writer_error.clone().unwrap_or_default(),
                        replicas_agree: agree,
                    },
                )
                .await?;
                unreachable_reported = true;
            }
            dead_looks = if agree { dead_looks + 1 } else { 0 };
            if agree && dead_looks >= opts.confirmations.max(1) && opts.auto_failover {
                let blocked = last_failover
                    .map(|t| t.elapsed())
                    .filter(|e| *e < opts.block);
                if let Some(elapsed) = blocked {
                    record(
                        journal,
                        &run,
                        sink,
                        &mut seq,
                        WatchEvent::Blocked {
                            writer: a.writer.clone(),
                            remaining_ms: crate::ms(opts.block - elapsed),
                        },
                    )
                    .await?;
                } else {
                    let detection = since.elapsed();
                    record(
                        journal,
                        &run,
                        sink,
                        &mut seq,
                        WatchEvent::FailoverStarted {
                            writer: a.writer.clone(),
                            detection_ms: crate::ms(detection),
                            evidence: evidence(&a, &silent),
                        },
                    )
                    .await?;
                    let mut req = FailoverRequest::new(&opts.cluster);
                    req.writer_timeout = opts.interval;
                    req.timeout = opts.failover_timeout;
                    req.detection = detection;
                    req.unplanned_only = true;
                    let observer: &dyn Observer = &LogObserver;
                    match failover::run(provider, journal, &req, observer).await {
                        Ok(outcome) => {
                            // Blocked from now on: something changed. A refusal changed
                            // nothing and leaves the next look free to try again.
                            last_failover = Some(Instant::now());
                            record(
                                journal,
                                &run,
                                sink,
                                &mut seq,
                                WatchEvent::FailoverDone {
                                    outcome: Box::new(outcome.clone()),
                                },
                            )
                            .await?;
                            done.push(outcome);
                        }
                        Err(e) => {
                            record(
                                journal,
                                &run,
                                sink,
                                &mut seq,
                                WatchEvent::FailoverFailed {
                                    error: e.to_string(),
                                },
                            )
                            .await?;
                        }
                    }
                    unreachable_reported = false;
                    dead_since = None;
                    dead_looks = 0;
                    semi_sync_active = None;
                }
            }
        }
        let rest = opts.interval.saturating_sub(look_started.elapsed());
        tokio::select! {
            _ = tokio::time::sleep(rest) => {}
            _ = stop.changed() => {}
        }
    }
    record(journal, &run, sink, &mut seq, WatchEvent::Stopped).await?;
    journal
        .set_status(&run, RunStatus::Done, Some("stopped"))
        .await?;
    Ok(done)
}

/// Why the replicas agree that the writer is gone, for the report.
fn evidence(a: &failover::Assessment, silent: &std::collections::BTreeSet<String>) -> String {
    a.replicas
        .iter()
        .filter(|c| c.reachable)
        .map(|c| {
            if c.sees_writer_down() {
                format!("{}: IO thread lost it", c.id)
            } else if silent.contains(&c.id) {
                format!(
                    "{}: no event or heartbeat for {} heartbeat periods of {} ms",
                    c.id,
                    SILENT_PERIODS,
                    c.heartbeat_period_ms.unwrap_or(0)
                )
            } else {
                format!("{}: ?", c.id)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

async fn record(
    journal: &Journal,
    run: &str,
    sink: &dyn WatchSink,
    seq: &mut u32,
    ev: WatchEvent,
) -> Result<(), crate::journal::JournalError> {
    sink.saw(&ev);
    *seq += 1;
    let step = format!("{:05}:{}", seq, event_name(&ev));
    let detail = serde_json::to_value(&ev).unwrap_or_default();
    journal.begin(run, &step).await?;
    journal.end(run, &step, detail).await
}

fn event_name(ev: &WatchEvent) -> &'static str {
    match ev {
        WatchEvent::Started { .. } => "started",
        WatchEvent::WriterUnreachable { .. } => "writer_unreachable",
        WatchEvent::WriterBack { .. } => "writer_back",
        WatchEvent::SemiSyncFellBack { .. } => "semi_sync_fell_back",
        WatchEvent::SemiSyncBack { .. } => "semi_sync_back",
        WatchEvent::ReplicaBroken { .. } => "replica_broken",
        WatchEvent::FailoverStarted { .. } => "failover_started",
        WatchEvent::FailoverDone { .. } => "failover_done",
        WatchEvent::FailoverFailed { .. } => "failover_failed",
        WatchEvent::LookFailed { .. } => "look_failed",
        WatchEvent::Blocked { .. } => "blocked",
        WatchEvent::Rejoined { .. } => "rejoined",
        WatchEvent::RejoinRefused { .. } => "rejoin_refused",
        WatchEvent::Stopped => "stopped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dbshift_db::status::IoState;

    fn replica(id: &str, beats: u64, pos: u64) -> failover::Candidate {
        failover::Candidate {
            id: id.into(),
            reachable: true,
            io_running: Some(IoState::Yes),
            sql_running: true,
            io_error: None,
            sql_error: None,
            gtid_io_pos: None,
            gtid_slave_pos: None,
            relay_backlog: 0,
            seconds_behind: Some(0),
            read_only: Some(true),
            configured: true,
            unfit: None,
            heartbeats: Some(beats),
            heartbeat_period_ms: Some(500),
            source_log: Some(format!("binlog.000001:{pos}")),
        }
    }

    #[test]
    fn silence_needs_three_periods_without_a_heartbeat_or_an_event() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut h = Hearing::default();
        // Idle but healthy: a heartbeat every 500 ms, the position still.
        for (i, ms) in (0..20u64).map(|i| (i, i * 200)) {
            let silent = h.update(&[replica("r2", i * 2 / 5, 100)], at(ms));
            assert!(silent.is_empty(), "idle writer taken for silent at {ms} ms");
        }
        // Busy: no heartbeat (events go out instead), the position moves.
        let mut h = Hearing::default();
        for (i, ms) in (0..20u64).map(|i| (i, i * 200)) {
            let silent = h.update(&[replica("r2", 3, 100 + i * 1000)], at(ms));
            assert!(silent.is_empty(), "busy writer taken for silent at {ms} ms");
        }
        // Hung: nothing moves; silent once 1500 ms passed since the last change.
        let mut h = Hearing::default();
        assert!(h.update(&[replica("r2", 3, 100)], at(0)).is_empty());
        assert!(h.update(&[replica("r2", 3, 100)], at(1400)).is_empty());
        assert_eq!(
            h.update(&[replica("r2", 3, 100)], at(1500))
                .into_iter()
                .collect::<Vec<_>>(),
            vec!["r2".to_string()]
        );
        // A replica whose IO thread reconnected, or that is gone, starts over.
        let mut r = replica("r2", 3, 100);
        r.io_running = Some(IoState::Connecting);
        assert!(h.update(&[r], at(1600)).is_empty());
        assert!(h.update(&[replica("r2", 3, 100)], at(1700)).is_empty());
        // No heartbeat figures (another flavor): never silent.
        let mut r = replica("r3", 3, 100);
        r.heartbeats = None;
        assert!(h.update(std::slice::from_ref(&r), at(0)).is_empty());
        assert!(h.update(&[r], at(60_000)).is_empty());
    }

    #[test]
    fn silent_replicas_agree_only_when_dbshift_cannot_reach_the_writer() {
        let mut a = failover::Assessment {
            cluster: "c".into(),
            writer: "r1".into(),
            writer_reachable: false,
            writer_error: Some("no answer".into()),
            replicas: vec![replica("r2", 3, 100), replica("r3", 3, 100)],
        };
        let mut silent = std::collections::BTreeSet::new();
        assert!(!a.writer_dead_or_silent(&silent));
        silent.insert("r2".to_string());
        assert!(!a.writer_dead_or_silent(&silent), "r3 still hears it");
        silent.insert("r3".to_string());
        assert!(a.writer_dead_or_silent(&silent));
        assert!(evidence(&a, &silent).contains("heartbeat"));
        a.writer_reachable = true;
        assert!(!a.writer_dead_or_silent(&silent));
    }
}
