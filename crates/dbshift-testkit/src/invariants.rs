//! The invariants every switchover and failover scenario is checked against: never two
//! writable primaries at any instant, and no server_id that wrote in a GTID domain where it
//! had no business writing.
//!
//! [`InvariantChecker`] samples `@@read_only` of every instance every 10 ms, each over its own
//! connection, on a thread and runtime of its own so that a busy test runtime cannot starve it;
//! [`InvariantChecker::stop`] turns the samples into an [`InvariantReport`] with every interval
//! in which two or more instances were writable. [`check_gtid_history`] reads
//! `@@gtid_binlog_state` of every instance afterwards and reports every (domain, server_id)
//! that is not on the list of allowed writers.
//!
//! Sampling has a resolution: a writable spell shorter than one interval (10 ms) can fall
//! between two samples, and an instance that cannot be read counts as not writable. A report
//! says both (samples, unreachable samples and the longest gap per instance), so a scenario
//! can require that the instances it keeps up were read all along.
//!
//! This module observes and never changes a server: it reads variables and nothing else, so
//! a scenario's outcome is the scenario's own. It must never hide a violation either: a sample
//! that could not be taken is recorded as such, and the report keeps every sample.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dbshift_db::mariadb::Gtid;
use dbshift_db::server::ConnectOptions;
use dbshift_db::Server;
use dbshift_provider::local::Lab;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

/// An instance to watch: its id (for reports) and how to connect to it as an admin.
pub type Target = (String, ConnectOptions);

/// How the checker samples.
#[derive(Debug, Clone)]
pub struct CheckerOptions {
    /// Time between two samples of one instance.
    pub interval: Duration,
    /// Bound on one connection attempt and on one read; beyond it the sample is recorded as
    /// unreachable rather than delaying every later sample.
    pub timeout: Duration,
}

impl Default for CheckerOptions {
    fn default() -> Self {
        CheckerOptions {
            interval: Duration::from_millis(10),
            timeout: Duration::from_secs(1),
        }
    }
}

/// One reading of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Since the checker started: the middle of the round trip, the best estimate of when the
    /// server read the variable.
    pub at: Duration,
    pub instance: String,
    /// `Some(true)`: `read_only` was off. `None`: the instance could not be reached or did not
    /// answer within the bound; it counts as not writable.
    pub writable: Option<bool>,
}

/// A span of time, since the checker started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub from: Duration,
    pub to: Duration,
}

impl Interval {
    pub fn length(&self) -> Duration {
        self.to.saturating_sub(self.from)
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ms .. {} ms ({} ms)",
            ms(self.from),
            ms(self.to),
            ms(self.length())
        )
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// Every interval in which two or more instances were writable at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwoWriters {
    pub interval: Interval,
    /// The instances writable during (part of) the interval, by id.
    pub instances: Vec<String>,
}

/// What one instance looked like over the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSummary {
    pub instance: String,
    pub samples: usize,
    pub writable: usize,
    pub read_only: usize,
    pub unreachable: usize,
    /// The longest time between two consecutive samples, rounded up: how well the sampler
    /// kept up (a long gap is a window in which a change could have gone unseen).
    pub max_sample_gap_ms: u64,
    /// When the instance counted as writable: from a sample that said writable until the next
    /// sample that said otherwise (or the end of the run).
    pub writable_intervals: Vec<Interval>,
}

/// The outcome of a checked run.
#[derive(Debug, Clone)]
pub struct InvariantReport {
    /// When the checker started; every `at` is relative to it.
    pub started: Instant,
    /// How long the run lasted.
    pub ended: Duration,
    pub instances: Vec<InstanceSummary>,
    pub two_writers: Vec<TwoWriters>,
    /// Every sample, by time.
    pub samples: Vec<Sample>,
}

impl InvariantReport {
    /// The report of `samples` taken of the instances `ids` over a run of `ended`. Instances
    /// with no sample are listed with zero samples.
    pub fn from_samples(
        started: Instant,
        ids: &[String],
        mut samples: Vec<Sample>,
        ended: Duration,
    ) -> InvariantReport {
        samples.sort_by_key(|s| s.at);
        // A sample in flight when the run ended may land after it; the run covers it.
        let end = samples.iter().map(|s| s.at).fold(ended, Duration::max);
        let mut order: Vec<String> = ids.to_vec();
        for s in &samples {
            if !order.contains(&s.instance) {
                order.push(s.instance.clone());
            }
        }
        let instances: Vec<InstanceSummary> = order
            .iter()
            .map(|id| {
                let mine: Vec<&Sample> = samples.iter().filter(|s| &s.instance == id).collect();
                summarize(id, &mine, end)
            })
            .collect();
        let two_writers = overlaps(&instances);
        InvariantReport {
            started,
            ended: end,
            instances,
            two_writers,
            samples,
        }
    }

    /// The summary of one instance.
    pub fn instance(&self, id: &str) -> Option<&InstanceSummary> {
        self.instances.iter().find(|i| i.instance == id)
    }

    /// The samples of one instance, by time.
    pub fn samples_of<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.instance == id)
    }

    /// The instances that were writable at some point of the run.
    pub fn writers(&self) -> Vec<&str> {
        self.instances
            .iter()
            .filter(|i| !i.writable_intervals.is_empty())
            .map(|i| i.instance.as_str())
            .collect()
    }

    /// Panic, with every interval, the instances and the samples around it, if two instances
    /// were ever writable at the same time.
    #[track_caller]
    pub fn assert_never_two_writers(&self) {
        if self.two_writers.is_empty() {
            return;
        }
        let mut msg = format!(
            "two writable primaries at once, {} time(s):\n",
            self.two_writers.len()
        );
        for tw in &self.two_writers {
            msg.push_str(&format!(
                "  {}: {} writable\n",
                tw.interval,
                tw.instances.join(", ")
            ));
            for id in &tw.instances {
                let around: Vec<String> = self
                    .samples_of(id)
                    .filter(|s| {
                        s.at + Duration::from_millis(50) >= tw.interval.from
                            && s.at <= tw.interval.to + Duration::from_millis(50)
                    })
                    .map(|s| format!("{}:{}", ms(s.at), state_word(s.writable)))
                    .collect();
                msg.push_str(&format!("    {id} samples: {}\n", around.join(" ")));
            }
        }
        msg.push_str(&self.to_string());
        panic!("{msg}");
    }
}

fn state_word(w: Option<bool>) -> &'static str {
    match w {
        Some(true) => "writable",
        Some(false) => "read-only",
        None => "unreachable",
    }
}

impl fmt::Display for InvariantReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invariant check over {} ms: {} two-writer interval(s)",
            ms(self.ended),
            self.two_writers.len()
        )?;
        for i in &self.instances {
            let spans: Vec<String> = i.writable_intervals.iter().map(|w| w.to_string()).collect();
            writeln!(
                f,
                "  {}: {} samples ({} writable, {} read-only, {} unreachable), max gap {} ms, \
                 writable during [{}]",
                i.instance,
                i.samples,
                i.writable,
                i.read_only,
                i.unreachable,
                i.max_sample_gap_ms,
                spans.join("; ")
            )?;
        }
        Ok(())
    }
}

fn summarize(id: &str, samples: &[&Sample], end: Duration) -> InstanceSummary {
    let mut writable_intervals = Vec::new();
    let mut open: Option<Duration> = None;
    let mut max_gap = Duration::ZERO;
    let mut last: Option<Duration> = None;
    for s in samples {
        if let Some(prev) = last {
            max_gap = max_gap.max(s.at.saturating_sub(prev));
        }
        last = Some(s.at);
        match (open, s.writable == Some(true)) {
            (None, true) => open = Some(s.at),
            (Some(from), false) => {
                writable_intervals.push(Interval { from, to: s.at });
                open = None;
            }
            _ => {}
        }
    }
    if let Some(from) = open {
        writable_intervals.push(Interval {
            from,
            to: end.max(from),
        });
    }
    InstanceSummary {
        instance: id.to_string(),
        samples: samples.len(),
        writable: samples.iter().filter(|s| s.writable == Some(true)).count(),
        read_only: samples.iter().filter(|s| s.writable == Some(false)).count(),
        unreachable: samples.iter().filter(|s| s.writable.is_none()).count(),
        max_sample_gap_ms: max_gap.as_micros().div_ceil(1000) as u64,
        writable_intervals,
    }
}

/// Sweep the boundaries of every writable interval; each elementary span between two
/// boundaries lies wholly inside or outside each interval, so counting writers per span is
/// exact. Adjacent spans with two or more writers are merged.
fn overlaps(instances: &[InstanceSummary]) -> Vec<TwoWriters> {
    let mut points: Vec<Duration> = instances
        .iter()
        .flat_map(|i| i.writable_intervals.iter().flat_map(|w| [w.from, w.to]))
        .collect();
    points.sort();
    points.dedup();
    let mut out: Vec<TwoWriters> = Vec::new();
    for span in points.windows(2) {
        let (a, b) = (span[0], span[1]);
        let writers: Vec<String> = instances
            .iter()
            .filter(|i| {
                i.writable_intervals
                    .iter()
                    .any(|w| w.from <= a && b <= w.to)
            })
            .map(|i| i.instance.clone())
            .collect();
        if writers.len() < 2 {
            continue;
        }
        match out.last_mut() {
            Some(prev) if prev.interval.to == a => {
                prev.interval.to = b;
                for w in writers {
                    if !prev.instances.contains(&w) {
                        prev.instances.push(w);
                    }
                }
            }
            _ => out.push(TwoWriters {
                interval: Interval { from: a, to: b },
                instances: writers,
            }),
        }
    }
    out
}

/// Readings per instance (index as in `ids`), shared with the sampler thread.
type Timelines = Vec<Vec<(Duration, Option<bool>)>>;

/// Samples `@@read_only` of a set of instances until stopped.
pub struct InvariantChecker {
    ids: Vec<String>,
    started: Instant,
    timelines: Arc<watch::Sender<Timelines>>,
    stop: watch::Sender<bool>,
    done: Option<oneshot::Receiver<()>>,
}

impl fmt::Debug for InvariantChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvariantChecker")
            .field("instances", &self.ids)
            .field("running_for", &self.started.elapsed())
            .finish()
    }
}

impl InvariantChecker {
    /// Start one sampler per target, every 10 ms, and return once each has taken its first
    /// sample (whatever it found), so that a scenario started next is watched from its start.
    pub async fn start(targets: Vec<Target>) -> std::io::Result<InvariantChecker> {
        Self::start_with(targets, CheckerOptions::default()).await
    }

    /// [`InvariantChecker::start`] on every instance of a lab, as its admin user.
    pub async fn start_lab(lab: &Lab) -> std::io::Result<InvariantChecker> {
        Self::start(lab_targets(lab)).await
    }

    /// [`InvariantChecker::start`] with other options.
    pub async fn start_with(
        targets: Vec<Target>,
        options: CheckerOptions,
    ) -> std::io::Result<InvariantChecker> {
        // TLS connections need the crate's crypto provider, whoever calls first.
        crate::init();
        let ids: Vec<String> = targets.iter().map(|(id, _)| id.clone()).collect();
        let started = Instant::now();
        let (timelines, _) = watch::channel(vec![Vec::new(); targets.len()]);
        let timelines = Arc::new(timelines);
        let (stop, _) = watch::channel(false);
        let (done_tx, done) = oneshot::channel();
        // A runtime of its own on a thread of its own: the samplers keep their pace however
        // busy the test's runtime is, and a test that blocks its thread cannot stall them.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let stop_rx = stop.subscribe();
        let shared = Arc::clone(&timelines);
        std::thread::Builder::new()
            .name("dbshift-invariants".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut samplers = JoinSet::new();
                    for (index, (_, opts)) in targets.into_iter().enumerate() {
                        samplers.spawn(sample_instance(
                            index,
                            opts,
                            options.clone(),
                            started,
                            Arc::clone(&shared),
                            stop_rx.clone(),
                        ));
                    }
                    while samplers.join_next().await.is_some() {}
                });
                let _ = done_tx.send(());
            })?;
        let checker = InvariantChecker {
            ids,
            started,
            timelines,
            stop,
            done: Some(done),
        };
        // Every attempt is bounded (connect and read, each by the timeout, at most twice), so
        // this wait is too; past it the checker runs anyway and its report shows the gaps.
        checker.wait_for_samples(1, Duration::from_secs(30)).await;
        Ok(checker)
    }

    /// The instance ids watched, in the order given.
    pub fn instances(&self) -> &[String] {
        &self.ids
    }

    /// When the checker started; samples are timed from here.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Wait until every instance has at least `n` samples, up to `timeout`. Returns whether
    /// they all did.
    pub async fn wait_for_samples(&self, n: usize, timeout: Duration) -> bool {
        let mut rx = self.timelines.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|t| t.iter().all(|v| v.len() >= n)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The report so far, without stopping (to wait until the checker has seen something).
    pub fn snapshot(&self) -> InvariantReport {
        self.report(self.started.elapsed())
    }

    /// Stop every sampler and report.
    pub async fn stop(mut self) -> InvariantReport {
        let ended = self.started.elapsed();
        self.stop.send_replace(true);
        if let Some(done) = self.done.take() {
            // Err means the sampler thread is gone already; its samples are kept regardless.
            let _ = done.await;
        }
        self.report(ended)
    }

    fn report(&self, ended: Duration) -> InvariantReport {
        let samples: Vec<Sample> = {
            let timelines = self.timelines.borrow();
            timelines
                .iter()
                .zip(&self.ids)
                .flat_map(|(readings, id)| {
                    readings.iter().map(move |&(at, writable)| Sample {
                        at,
                        instance: id.clone(),
                        writable,
                    })
                })
                .collect()
        };
        InvariantReport::from_samples(self.started, &self.ids, samples, ended)
    }
}

impl Drop for InvariantChecker {
    fn drop(&mut self) {
        // Without `stop` the samplers end by themselves; nobody waits for them.
        self.stop.send_replace(true);
    }
}

async fn sample_instance(
    index: usize,
    opts: ConnectOptions,
    options: CheckerOptions,
    started: Instant,
    timelines: Arc<watch::Sender<Timelines>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conn: Option<Server> = None;
    let mut ticks = tokio::time::interval(options.interval);
    // After a slow sample, go on at the regular pace from now rather than in a burst.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            // Stop was asked for, or the checker is gone.
            _ = stop.changed() => break,
        }
        let sent = Instant::now();
        let writable = read_writable(&mut conn, &opts, options.timeout).await;
        let answered = Instant::now();
        let at = sent.duration_since(started) + answered.duration_since(sent) / 2;
        timelines.send_modify(|t| {
            if let Some(readings) = t.get_mut(index) {
                readings.push((at, writable));
            }
        });
    }
    if let Some(server) = conn {
        let _ = tokio::time::timeout(options.timeout, server.close()).await;
    }
}

/// `Some(!read_only)`, or `None` when the instance cannot be reached or does not answer in
/// time. A kept connection that fails is replaced and asked once more at once: a session
/// ended under us (a fence ends privileged sessions; a server restarts) must not be recorded
/// as an unreachable, hence not writable, instance.
async fn read_writable(
    conn: &mut Option<Server>,
    opts: &ConnectOptions,
    timeout: Duration,
) -> Option<bool> {
    let reused = conn.is_some();
    for attempt in 0..2 {
        if conn.is_none() {
            let fresh = tokio::time::timeout(timeout, Server::connect(opts))
                .await
                .ok()?
                .ok()?;
            *conn = Some(fresh);
        }
        let server = conn.as_mut()?;
        match tokio::time::timeout(timeout, server.read_only()).await {
            Ok(Ok(read_only)) => return Some(!read_only),
            Ok(Err(_)) if reused && attempt == 0 => *conn = None,
            // A read that hangs is not retried: the next sample is due.
            _ => {
                *conn = None;
                return None;
            }
        }
    }
    None
}

/// Every instance of a lab, as its admin user.
pub fn lab_targets(lab: &Lab) -> Vec<Target> {
    lab.state()
        .instances
        .iter()
        .map(|rec| {
            let opts = lab
                .admin_options(&rec.id)
                .expect("an instance id taken from the lab's own state is known to it");
            (rec.id.clone(), opts)
        })
        .collect()
}

/// The writers a lab's history allows now: for every cluster, its domain and the server_id of
/// its writer per the lab's state. After a switchover, add the new writer's server_id.
pub fn lab_writers(lab: &Lab) -> Vec<(u32, Vec<u32>)> {
    let state = lab.state();
    state
        .clusters
        .iter()
        .map(|c| {
            let writer = state
                .instances
                .iter()
                .filter(|i| i.id == c.writer)
                .map(|i| i.server_id)
                .collect();
            (c.gtid_domain_id, writer)
        })
        .collect()
}

/// A (domain, server_id) in some instance's binlog state that was not allowed to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryViolation {
    /// The instance whose `@@gtid_binlog_state` holds it.
    pub instance: String,
    /// The last GTID of that (domain, server_id) there.
    pub gtid: Gtid,
    /// The checked instance that has that server_id, when it is one of them.
    pub written_by: Option<String>,
}

impl fmt::Display for HistoryViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (server_id {}",
            self.instance, self.gtid, self.gtid.server_id
        )?;
        if let Some(w) = &self.written_by {
            write!(f, ", instance {w}")?;
        }
        write!(
            f,
            ") wrote in domain {} up to seq {}",
            self.gtid.domain, self.gtid.seq
        )
    }
}

/// Every (domain, server_id) in the `@@gtid_binlog_state` of the targets that
/// `expected_writers` does not allow. A domain that is not listed allows no writer. `Err`
/// when some target could not be read: a history that was not read is not a clean one.
pub async fn gtid_history_violations(
    targets: &[Target],
    expected_writers: &[(u32, Vec<u32>)],
) -> Result<Vec<HistoryViolation>, String> {
    crate::init();
    let mut states = Vec::new();
    let mut server_ids: BTreeMap<u32, String> = BTreeMap::new();
    let mut unreadable = Vec::new();
    for (id, opts) in targets {
        let mut server = match Server::connect(opts).await {
            Ok(s) => s,
            Err(e) => {
                unreadable.push(format!("{id}: {e}"));
                continue;
            }
        };
        server_ids.insert(server.server_id(), id.clone());
        match server.gtid_binlog_state().await {
            Ok(state) => states.push((id.clone(), state)),
            Err(e) => unreadable.push(format!("{id}: {e}")),
        }
        server.close().await;
    }
    if !unreadable.is_empty() {
        return Err(format!(
            "the GTID history could not be read everywhere: {}",
            unreadable.join("; ")
        ));
    }
    let allowed = |g: &Gtid| {
        expected_writers
            .iter()
            .filter(|(domain, _)| *domain == g.domain)
            .any(|(_, ids)| ids.contains(&g.server_id))
    };
    Ok(states
        .iter()
        .flat_map(|(id, state)| {
            state
                .iter()
                .filter(|g| !allowed(g))
                .map(|gtid| HistoryViolation {
                    instance: id.clone(),
                    gtid,
                    written_by: server_ids.get(&gtid.server_id).cloned(),
                })
                .collect::<Vec<_>>()
        })
        .collect())
}

/// `Ok` when no server_id wrote in a domain where `expected_writers` does not allow it, on any
/// of the targets; otherwise every violation, one per line. An errant write on a replica, or
/// a write an old writer accepted after its fence that then replicated, shows here.
pub async fn check_gtid_history(
    targets: &[Target],
    expected_writers: &[(u32, Vec<u32>)],
) -> Result<(), String> {
    let violations = gtid_history_violations(targets, expected_writers).await?;
    if violations.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = violations.iter().map(|v| format!("  {v}")).collect();
    Err(format!(
        "{} write(s) by a server_id not allowed in its domain (allowed: {}):\n{}",
        violations.len(),
        describe_allowed(expected_writers),
        lines.join("\n")
    ))
}

/// [`check_gtid_history`] on every instance of a lab.
pub async fn check_lab_gtid_history(
    lab: &Lab,
    expected_writers: &[(u32, Vec<u32>)],
) -> Result<(), String> {
    check_gtid_history(&lab_targets(lab), expected_writers).await
}

fn describe_allowed(expected_writers: &[(u32, Vec<u32>)]) -> String {
    if expected_writers.is_empty() {
        return "none".into();
    }
    expected_writers
        .iter()
        .map(|(d, ids)| format!("domain {d}: server_id {ids:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at_ms: u64, instance: &str, writable: Option<bool>) -> Sample {
        Sample {
            at: Duration::from_millis(at_ms),
            instance: instance.into(),
            writable,
        }
    }

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn iv(from: u64, to: u64) -> Interval {
        Interval {
            from: Duration::from_millis(from),
            to: Duration::from_millis(to),
        }
    }

    #[test]
    fn one_writer_at_a_time_is_clean() {
        // A handed over to B: A read-only at 30, B writable from 50.
        let samples = vec![
            s(0, "a", Some(true)),
            s(10, "a", Some(true)),
            s(30, "a", Some(false)),
            s(60, "a", Some(false)),
            s(1, "b", Some(false)),
            s(31, "b", Some(false)),
            s(50, "b", Some(true)),
            s(61, "b", Some(true)),
        ];
        let r = InvariantReport::from_samples(Instant::now(), &ids(&["a", "b"]), samples, ms_(70));
        assert!(r.two_writers.is_empty(), "{r}");
        r.assert_never_two_writers();
        assert_eq!(r.instance("a").unwrap().writable_intervals, vec![iv(0, 30)]);
        // The last sample said writable: writable until the end of the run.
        assert_eq!(
            r.instance("b").unwrap().writable_intervals,
            vec![iv(50, 70)]
        );
        assert_eq!(r.writers(), vec!["a", "b"]);
        assert_eq!(r.instance("a").unwrap().max_sample_gap_ms, 30);
        assert_eq!(r.instance("b").unwrap().samples, 4);
    }

    fn ms_(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn overlapping_writers_are_reported_with_their_span() {
        let samples = vec![
            s(0, "a", Some(true)),
            s(100, "a", Some(true)),
            s(0, "b", Some(false)),
            s(40, "b", Some(true)),
            s(60, "b", Some(false)),
            s(0, "c", Some(false)),
            s(55, "c", Some(true)),
            s(90, "c", None),
        ];
        let r = InvariantReport::from_samples(
            Instant::now(),
            &ids(&["a", "b", "c"]),
            samples,
            ms_(120),
        );
        // a+b from 40, a+b+c from 55, a+c until 90: one merged interval.
        assert_eq!(r.two_writers.len(), 1, "{r}");
        assert_eq!(r.two_writers[0].interval, iv(40, 90));
        assert_eq!(r.two_writers[0].instances, ids(&["a", "b", "c"]));
        // Unreachable ends a writable interval: it counts as not writable.
        assert_eq!(
            r.instance("c").unwrap().writable_intervals,
            vec![iv(55, 90)]
        );
        assert_eq!(r.instance("c").unwrap().unreachable, 1);
        let err = std::panic::catch_unwind(|| r.assert_never_two_writers()).unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.contains("40.0 ms .. 90.0 ms"), "{msg}");
        assert!(msg.contains("b samples: "), "{msg}");
    }

    #[test]
    fn a_hand_over_without_gap_is_not_an_overlap() {
        let samples = vec![
            s(0, "a", Some(true)),
            s(10, "a", Some(false)),
            s(0, "b", Some(false)),
            s(10, "b", Some(true)),
        ];
        let r = InvariantReport::from_samples(Instant::now(), &ids(&["a", "b"]), samples, ms_(20));
        assert!(r.two_writers.is_empty(), "{r}");
    }

    #[test]
    fn separate_overlaps_stay_separate_and_adjacent_ones_merge() {
        let samples = vec![
            s(0, "a", Some(true)),
            s(100, "a", Some(true)),
            s(0, "b", Some(true)),
            s(10, "b", Some(false)),
            s(50, "b", Some(true)),
            s(60, "b", Some(false)),
            // c writable exactly when b stops: touching, not overlapping.
            s(60, "c", Some(true)),
            s(61, "c", Some(false)),
        ];
        let r = InvariantReport::from_samples(
            Instant::now(),
            &ids(&["a", "b", "c"]),
            samples,
            ms_(100),
        );
        let spans: Vec<Interval> = r.two_writers.iter().map(|t| t.interval).collect();
        assert_eq!(spans, vec![iv(0, 10), iv(50, 61)], "{r}");
        assert_eq!(r.two_writers[1].instances, ids(&["a", "b", "c"]));
    }

    #[test]
    fn an_instance_without_samples_is_listed() {
        let r = InvariantReport::from_samples(
            Instant::now(),
            &ids(&["a", "b"]),
            vec![s(0, "a", Some(true))],
            ms_(5),
        );
        let b = r.instance("b").unwrap();
        assert_eq!(b.samples, 0);
        assert!(b.writable_intervals.is_empty());
        assert!(r.two_writers.is_empty());
    }

    #[test]
    fn violations_name_the_writer() {
        let v = HistoryViolation {
            instance: "lab-1-2".into(),
            gtid: Gtid::new(77, 3, 2),
            written_by: Some("lab-1-3".into()),
        };
        assert_eq!(
            v.to_string(),
            "lab-1-2: 77-3-2 (server_id 3, instance lab-1-3) wrote in domain 77 up to seq 2"
        );
        assert_eq!(describe_allowed(&[]), "none");
        assert_eq!(
            describe_allowed(&[(1, vec![1, 2])]),
            "domain 1: server_id [1, 2]"
        );
    }
}
