//! The running probe: three open-loop schedules (writes, reads, new connections), every
//! attempt recorded, and at the end the audit and the report files.
//!
//! Open loop: attempt `k` of a kind is due at `start + k / rate`, whatever happened to the
//! attempts before it, and its latency is measured from that due time. A stalled server thus
//! shows as many slow or failed attempts, not as one slow attempt that hid the rest (the
//! "coordinated omission" of closed-loop probes). Each attempt runs in its own task and takes a
//! connection from a small pool; a stalled connection holds only its own attempt.
//!
//! This module must never write anything but its own rows of `dbshift.probe`, and never log or
//! record a password.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::chart;
use crate::error::{Error, Result};
use crate::record::{Attempt, Event, Kind};
use crate::summary::{due, RunInfo, Summary};
use crate::target::TargetResolver;

mod attempt;
mod audit;

use attempt::{new_connection, pooled, Pool};
use audit::{audit, preflight};

/// The probe table. `run_id` separates runs, so probes can share it.
pub const PROBE_TABLE: &str = "dbshift.probe";

/// How a probe runs. [`ProbeConfig::default`] is the CLI's default.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Writes per second.
    pub rate: f64,
    /// Reads per second; `None`: the write rate, at most 50.
    pub read_rate: Option<f64>,
    /// New connections per second; 0 turns the loop off.
    pub connect_rate: f64,
    /// Each attempt's bound, from its due time (waiting for a connection counts).
    pub timeout: Duration,
    /// Connections the writes share, so several writes can be in flight.
    pub write_connections: usize,
    /// Where `attempts.jsonl`, `summary.json` and `timeline.svg` go; `None`: nowhere.
    pub report_dir: Option<PathBuf>,
    /// Leave this run's rows in `dbshift.probe` after the audit (default: delete them).
    pub keep_rows: bool,
    /// How long the final audit keeps trying to reach the target.
    pub audit_timeout: Duration,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            rate: 200.0,
            read_rate: None,
            connect_rate: 20.0,
            timeout: Duration::from_secs(1),
            write_connections: 8,
            report_dir: None,
            keep_rows: false,
            audit_timeout: Duration::from_secs(30),
        }
    }
}

impl ProbeConfig {
    /// Refuse settings that cannot make a probe, before anything is touched.
    pub fn validate(&self) -> Result<()> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(self.rate) {
            return Err(Error::BadInput(format!(
                "the write rate must be a number above 0 per second, not {}",
                self.rate
            )));
        }
        if self.rate > 100_000.0 {
            return Err(Error::BadInput(format!(
                "a write rate of {} per second is more than a probe should put on a server (at most 100000)",
                self.rate
            )));
        }
        if let Some(r) = self.read_rate {
            if !positive(r) {
                return Err(Error::BadInput(format!(
                    "the read rate must be above 0, not {r}"
                )));
            }
        }
        if !(self.connect_rate.is_finite() && self.connect_rate >= 0.0) {
            return Err(Error::BadInput(format!(
                "the connection rate must be 0 or more, not {}",
                self.connect_rate
            )));
        }
        if self.timeout.is_zero() {
            return Err(Error::BadInput("the timeout must be above 0".into()));
        }
        if self.write_connections == 0 {
            return Err(Error::BadInput(
                "the probe needs at least one write connection".into(),
            ));
        }
        Ok(())
    }

    fn effective_read_rate(&self) -> f64 {
        self.read_rate.unwrap_or(self.rate.min(50.0))
    }
}

/// Counters for a progress line while the probe runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub writes_ok: u64,
    pub writes_not_ok: u64,
    pub reads_ok: u64,
    pub reads_not_ok: u64,
    pub connects_ok: u64,
    pub connects_not_ok: u64,
}

#[derive(Default)]
struct Counters([AtomicU64; 6]);

impl Counters {
    fn add(&self, kind: Kind, ok: bool) {
        let i = match kind {
            Kind::Write => 0,
            Kind::Read => 2,
            Kind::Connect => 4,
        } + usize::from(!ok);
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything the attempt tasks share.
struct Shared {
    start: Instant,
    target: TargetResolver,
    timeout: Duration,
    run_id: String,
    counters: Counters,
}

impl Shared {
    fn ms_since_start(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.start).as_secs_f64() * 1000.0
    }
}

/// The probe, started by [`Probe::start`].
pub struct Probe;

/// A running probe: mark workflow events on it, then stop it to get the summary.
pub struct ProbeHandle {
    shared: Arc<Shared>,
    config: ProbeConfig,
    started_at: String,
    stop_tx: watch::Sender<Option<Instant>>,
    loops: Vec<tokio::task::JoinHandle<()>>,
    collector: Option<tokio::task::JoinHandle<(Vec<Attempt>, Option<std::io::Error>)>>,
    events: Arc<Mutex<Vec<Event>>>,
}

/// A handle dropped without [`ProbeHandle::stop`] (a workflow's error path) stops the loops:
/// a forgotten probe must not keep writing to a production server. There is no audit then.
impl Drop for ProbeHandle {
    fn drop(&mut self) {
        self.stop_tx.send_if_modified(|stop| {
            if stop.is_none() {
                *stop = Some(Instant::now());
                true
            } else {
                false
            }
        });
    }
}

impl Probe {
    /// Check the config, resolve the target, connect, create the probe table if missing
    /// (the preflight: any failure here is an error and nothing has been written), then start
    /// the loops.
    pub async fn start(config: ProbeConfig, target: TargetResolver) -> Result<ProbeHandle> {
        config.validate()?;
        preflight(&target, config.timeout).await?;

        let run_id = new_run_id();
        let mut jsonl = None;
        if let Some(dir) = &config.report_dir {
            std::fs::create_dir_all(dir).map_err(|source| Error::Report {
                path: dir.clone(),
                source,
            })?;
            let path = dir.join("attempts.jsonl");
            let f =
                std::fs::File::create(&path).map_err(|source| Error::Report { path, source })?;
            jsonl = Some(std::io::BufWriter::new(f));
        }
        let started_at = now_rfc3339();
        let shared = Arc::new(Shared {
            start: Instant::now(),
            target,
            timeout: config.timeout,
            run_id,
            counters: Counters::default(),
        });
        tracing::info!(run_id = %shared.run_id, target = %shared.target.describe(), rate = config.rate, "probe started");
        let (stop_tx, stop_rx) = watch::channel(None);
        let (tx, rx) = mpsc::unbounded_channel();
        let collector = tokio::spawn(collect(rx, jsonl));

        let write_pool = Arc::new(Pool::new(config.write_connections));
        let read_pool = Arc::new(Pool::new(2));
        let mut loops = Vec::new();
        {
            let (shared, tx, stop) = (shared.clone(), tx.clone(), stop_rx.clone());
            let rate = config.rate;
            loops.push(tokio::spawn(schedule(
                shared.clone(),
                rate,
                stop,
                move |k, due_at| {
                    let sql = format!(
                        "INSERT INTO {PROBE_TABLE} (run_id, seq, sent_at) VALUES ('{}', {k}, '{}')",
                        shared.run_id,
                        now_sql()
                    );
                    pooled(
                        shared.clone(),
                        write_pool.clone(),
                        tx.clone(),
                        Kind::Write,
                        Some(k),
                        due_at,
                        sql,
                    )
                },
            )));
        }
        {
            let (shared, tx, stop) = (shared.clone(), tx.clone(), stop_rx.clone());
            let sql = format!(
                "SELECT MAX(seq) FROM {PROBE_TABLE} WHERE run_id='{}'",
                shared.run_id
            );
            loops.push(tokio::spawn(schedule(
                shared.clone(),
                config.effective_read_rate(),
                stop,
                move |_, due_at| {
                    pooled(
                        shared.clone(),
                        read_pool.clone(),
                        tx.clone(),
                        Kind::Read,
                        None,
                        due_at,
                        sql.clone(),
                    )
                },
            )));
        }
        if config.connect_rate > 0.0 {
            let (shared, tx, stop) = (shared.clone(), tx.clone(), stop_rx.clone());
            loops.push(tokio::spawn(schedule(
                shared.clone(),
                config.connect_rate,
                stop,
                move |_, due_at| new_connection(shared.clone(), tx.clone(), due_at),
            )));
        }
        drop(tx);
        Ok(ProbeHandle {
            shared,
            config,
            started_at,
            stop_tx,
            loops,
            collector: Some(collector),
            events: Arc::new(Mutex::new(Vec::new())),
        })
    }
}

impl ProbeHandle {
    /// This run's id: its rows in `dbshift.probe` carry it.
    pub fn run_id(&self) -> &str {
        &self.shared.run_id
    }

    /// Milliseconds since the probe started.
    pub fn elapsed_ms(&self) -> f64 {
        self.shared.ms_since_start(Instant::now())
    }

    /// Record a workflow event now; it is drawn on the chart and listed in the summary.
    pub fn mark(&self, label: impl Into<String>) {
        let e = Event {
            t_ms: self.elapsed_ms(),
            label: label.into(),
        };
        tracing::info!(run_id = %self.shared.run_id, t_ms = e.t_ms, label = %e.label, "probe mark");
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e);
    }

    /// A cheap handle for marking events from other tasks.
    pub fn marker(&self) -> Marker {
        Marker {
            start: self.shared.start,
            events: self.events.clone(),
        }
    }

    /// Counts so far, for a progress line.
    pub fn progress(&self) -> Progress {
        let c = &self.shared.counters.0;
        let g = |i: usize| c[i].load(Ordering::Relaxed);
        Progress {
            writes_ok: g(0),
            writes_not_ok: g(1),
            reads_ok: g(2),
            reads_not_ok: g(3),
            connects_ok: g(4),
            connects_not_ok: g(5),
        }
    }

    /// Stop scheduling, let the attempts in flight finish (each within its timeout), audit,
    /// write the report files and return the summary.
    pub async fn stop(self) -> Result<Summary> {
        Ok(self.stop_with_attempts().await?.0)
    }

    /// As [`ProbeHandle::stop`], also returning every attempt.
    pub async fn stop_with_attempts(mut self) -> Result<(Summary, Vec<Attempt>)> {
        let stop_at = Instant::now();
        let _ = self.stop_tx.send(Some(stop_at));
        for l in std::mem::take(&mut self.loops) {
            l.await.map_err(|e| Error::Internal(e.to_string()))?;
        }
        let collector = self
            .collector
            .take()
            .ok_or_else(|| Error::Internal("the probe was already stopped".into()))?;
        let (mut attempts, io_err) = collector
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        let dir = self.config.report_dir.clone();
        if let (Some(e), Some(dir)) = (io_err, &dir) {
            return Err(Error::Report {
                path: dir.join("attempts.jsonl"),
                source: e,
            });
        }
        attempts.sort_by(|a, b| a.kind.cmp(&b.kind).then(a.t_ms.total_cmp(&b.t_ms)));
        let duration_ms = self.shared.ms_since_start(stop_at);
        tracing::info!(run_id = %self.shared.run_id, attempts = attempts.len(), "probe stopped; auditing");
        let audit = audit(&self.shared, &self.config, &attempts).await;
        let events = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let info = RunInfo {
            run_id: self.shared.run_id.clone(),
            target: self.shared.target.describe(),
            started_at: self.started_at.clone(),
            duration_ms,
            requested_write_rate: self.config.rate,
            timeout_ms: self.config.timeout.as_secs_f64() * 1000.0,
            report_dir: dir.clone(),
        };
        let summary = Summary::build(info, &attempts, events.clone(), audit);
        if let Some(dir) = &dir {
            write_reports(dir, &summary, &attempts, &events)?;
        }
        Ok((summary, attempts))
    }
}

/// Marks events on a running probe from anywhere (cloneable, `Send`).
#[derive(Clone)]
pub struct Marker {
    start: Instant,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Marker {
    pub fn mark(&self, label: impl Into<String>) {
        let e = Event {
            t_ms: self.start.elapsed().as_secs_f64() * 1000.0,
            label: label.into(),
        };
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e);
    }
}

fn write_reports(
    dir: &Path,
    summary: &Summary,
    attempts: &[Attempt],
    events: &[Event],
) -> Result<()> {
    let write = |name: &str, body: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, body).map_err(|source| Error::Report { path, source })
    };
    let json = serde_json::to_vec_pretty(summary).map_err(|e| Error::Internal(e.to_string()))?;
    write("summary.json", &json)?;
    write(
        "timeline.svg",
        chart::render(summary, attempts, events).as_bytes(),
    )?;
    Ok(())
}

async fn collect(
    mut rx: mpsc::UnboundedReceiver<Attempt>,
    mut out: Option<std::io::BufWriter<std::fs::File>>,
) -> (Vec<Attempt>, Option<std::io::Error>) {
    let mut all = Vec::new();
    let mut err = None;
    while let Some(a) = rx.recv().await {
        if let (Some(w), None) = (out.as_mut(), err.as_ref()) {
            let line = serde_json::to_string(&a).unwrap_or_default();
            if let Err(e) = writeln!(w, "{line}") {
                err = Some(e);
            }
        }
        all.push(a);
    }
    if let (Some(mut w), None) = (out, err.as_ref()) {
        if let Err(e) = w.flush() {
            err = Some(e);
        }
    }
    (all, err)
}

/// Run `make(k, due)` for every `k` due before the stop, each in its own task, then wait for
/// them all.
async fn schedule<F, Fut>(
    shared: Arc<Shared>,
    rate: f64,
    mut stop: watch::Receiver<Option<Instant>>,
    make: F,
) where
    F: Fn(u64, Instant) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    let mut k: u64 = 0;
    loop {
        let due_at = shared.start + due(k, rate);
        let stop_at = *stop.borrow();
        match stop_at {
            // After the stop, attempts due before it still run (the scheduler may be behind).
            Some(stop_at) if due_at >= stop_at => break,
            Some(_) => {}
            None => {
                tokio::select! {
                    _ = tokio::time::sleep_until(due_at) => {}
                    // A closed channel means the handle is gone: stop scheduling.
                    changed = stop.changed() => if changed.is_err() { break } else { continue },
                }
            }
        }
        tasks.spawn(make(k, due_at));
        k += 1;
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

fn new_run_id() -> String {
    let t = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let stamp = t.format(&fmt).unwrap_or_else(|_| "run".into());
    format!("{stamp}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The client's clock, as a DATETIME(6) literal.
fn now_sql() -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]"
    );
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_else(|_| "1970-01-01 00:00:00".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rates_are_refused() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e9] {
            let c = ProbeConfig {
                rate,
                ..ProbeConfig::default()
            };
            assert!(matches!(c.validate(), Err(Error::BadInput(_))), "{rate}");
        }
        assert!(ProbeConfig::default().validate().is_ok());
        let c = ProbeConfig {
            timeout: Duration::ZERO,
            ..ProbeConfig::default()
        };
        assert!(c.validate().is_err());
    }

    /// A stalled attempt does not delay the ones behind it, every attempt due before the stop
    /// runs, and none after it (tokio's paused clock: no real waiting, no flakiness).
    #[tokio::test(start_paused = true)]
    async fn the_schedule_is_open_loop() {
        let target = TargetResolver::url(
            crate::target::UrlTarget::parse("mysql://u@127.0.0.1:1", None).expect("a valid URL"),
        );
        let shared = Arc::new(Shared {
            start: Instant::now(),
            target,
            timeout: Duration::from_secs(1),
            run_id: "t".into(),
            counters: Counters::default(),
        });
        let started: Arc<Mutex<Vec<(u64, Duration)>>> = Arc::default();
        let (stop_tx, stop_rx) = watch::channel(None);
        let s2 = shared.clone();
        let st = started.clone();
        let sched = tokio::spawn(schedule(
            shared.clone(),
            100.0,
            stop_rx,
            move |k, due_at| {
                let (s2, st) = (s2.clone(), st.clone());
                async move {
                    st.lock().unwrap().push((k, Instant::now() - s2.start));
                    assert_eq!(due_at, s2.start + due(k, 100.0));
                    // Attempt 3 stalls for half a second.
                    if k == 3 {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            },
        ));
        // Between two due times, so that no attempt is due at the very instant of the stop
        // (which one of the two wakes first at that instant is up to the runtime).
        tokio::time::sleep(Duration::from_millis(995)).await;
        stop_tx.send(Some(Instant::now())).unwrap();
        sched.await.unwrap();
        let mut got = started.lock().unwrap().clone();
        got.sort();
        // Due at 0, 10, ..., 990 ms: 100 attempts, the last one due before the stop at 995.
        assert_eq!(got.len(), 100);
        for (k, at) in got {
            assert_eq!(at, due(k, 100.0), "attempt {k} started late");
        }
    }

    #[test]
    fn run_ids_are_safe_sql_literals() {
        let id = new_run_id();
        assert!(id.len() < 64);
        assert!(
            id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{id}"
        );
        assert_ne!(id, new_run_id());
        assert_eq!(now_sql().len(), "2026-01-01 00:00:00.000000".len());
    }
}
