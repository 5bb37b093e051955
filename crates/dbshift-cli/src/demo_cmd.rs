//! `dbshift demo`: the blue/green workflow end to end on a lab of its own, under an
//! application's write load, and what clients saw. It builds a lab of one cluster, starts a
//! load through the cluster name, builds an encrypted green from a hot snapshot, verifies it,
//! switches over and rolls back through the switchover core with the downtime probe running,
//! verifies again, and reports. Everything here is wiring of `dbshift_ops`, the probe and the
//! lab; the only code of its own is the load, which stands in for an application.
//!
//! It must never touch the user's lab (`--dir`), and never delete a directory it did not make:
//! the lab directory carries a marker file, and a directory without it is refused.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use dbshift_db::{ConnectOptions, Server};
use dbshift_ops::bluegreen::{self, BlueGreenError, SwitchOptions};
use dbshift_ops::journal::Journal;
use dbshift_ops::switchover::Outcome;
use dbshift_ops::verify::{VerifyOptions, VerifyReport};
use dbshift_provider::local::{Lab, UpOptions};
use dbshift_provider::{Deployment, Fleet, GreenSpec, Provider, Side};
use serde::Serialize;
use tokio::sync::watch;

use crate::output::{print_json, Table};
use crate::switchover_cmd::{
    observer_for, report_outcome, start_probe, stop_probe, stopped_part_way,
};
use crate::{Exit, Format, OutputArgs};

/// The file that marks a directory as made by `dbshift demo` (and so deletable by it).
const MARKER: &str = ".dbshift-demo";
/// Blue: the demo lab's only cluster.
const CLUSTER: &str = "lab-1";
/// The blue/green deployment, also green's cluster name.
const DEPLOYMENT: &str = "lab-1-green";
/// Rows the load's tables start with, so that the verify compares more than a handful.
const SEED_ORDERS: u64 = 20_000;
const SEED_EVENTS: u64 = 2_000;
/// How long green's encryption threads may take to encrypt every tablespace.
const ENCRYPTION_TIMEOUT: Duration = Duration::from_secs(120);
/// The load's bound on one statement; past it the connection is dropped.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// The demo's own lab directory, never the `--dir` lab. A directory an earlier demo made is
    /// taken down and reused; anything else is refused.
    #[arg(long, default_value = ".dbshift/demo")]
    pub lab_dir: PathBuf,
    /// Leave the lab running at the end (blue serving, green its standby) instead of deleting
    /// it.
    #[arg(long)]
    pub keep: bool,
    /// The downtime probe's writes per second during each switch.
    #[arg(long, default_value_t = 200.0)]
    pub probe_rate: f64,
    /// The application load's transactions per second, from before green is built until
    /// after the rollback.
    #[arg(long, default_value_t = 50.0)]
    pub load_rate: f64,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// One step as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub name: String,
    pub elapsed_ms: u64,
    pub detail: String,
}

/// One switch (switchover or rollback) and what the probe saw through it.
#[derive(Debug, Clone, Serialize)]
pub struct SwitchSummary {
    pub run_id: String,
    /// `done`, `refused`, `rolled_back` or `needs_human`.
    pub outcome: String,
    /// Why it did not end `done`.
    pub reason: Option<String>,
    pub from: String,
    pub to: String,
    pub elapsed_ms: u64,
    /// Fence to promotion, as the switchover core measured it.
    pub write_gap_ms: Option<u64>,
    /// The longest gap between the probe's acknowledged writes.
    pub max_write_gap_ms: f64,
    pub probe_writes: u64,
    pub failed_writes: u64,
    pub lost_writes: u64,
    pub indeterminate: u64,
    pub outages: usize,
    pub report_dir: Option<PathBuf>,
    /// `timeline.svg` in the report directory.
    pub chart: Option<PathBuf>,
}

/// One verify of the standby against the serving writer.
#[derive(Debug, Clone, Serialize)]
pub struct VerifySummary {
    pub equal: bool,
    pub position: String,
    pub tables: usize,
    pub rows_blue: u64,
    pub rows_green: u64,
    /// Rows read on both sides.
    pub rows_compared: u64,
    pub rows_per_s: f64,
    pub elapsed_ms: u64,
    pub differences: usize,
}

impl From<&VerifyReport> for VerifySummary {
    fn from(r: &VerifyReport) -> Self {
        VerifySummary {
            equal: r.equal,
            position: r.position.clone(),
            tables: r.tables.len(),
            rows_blue: r.rows_blue,
            rows_green: r.rows_green,
            rows_compared: r.rows_blue + r.rows_green,
            rows_per_s: r.rows_per_s,
            elapsed_ms: r.elapsed_ms,
            differences: r.differences.len(),
        }
    }
}

/// Green's writer's InnoDB tablespaces and their encryption.
#[derive(Debug, Clone, Serialize)]
pub struct EncryptionSummary {
    pub instance: String,
    /// Rows of `information_schema.INNODB_TABLESPACES_ENCRYPTION` with ENCRYPTION_SCHEME=1.
    pub tablespaces_encrypted: u64,
    /// Rows of `information_schema.INNODB_TABLESPACES_ENCRYPTION`, or of
    /// `INNODB_SYS_TABLESPACES` (the temporary tablespace aside) when there are more.
    pub tablespaces_total: u64,
    /// Every row has ENCRYPTION_SCHEME=1 (and the table is not empty).
    pub all_encrypted: bool,
    /// How long the encryption threads took to get there after green was built.
    pub waited_ms: u64,
}

/// What the application load did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadTotals {
    pub rate: f64,
    pub duration_ms: u64,
    /// Transactions whose COMMIT the server acknowledged.
    pub committed: u64,
    /// Multi-statement transactions among them.
    pub committed_multi_statement: u64,
    /// Transactions that certainly did not commit (an error before or on COMMIT, or no
    /// connection).
    pub failed: u64,
    /// Transactions whose COMMIT got no answer: they may or may not have committed, and are
    /// never retried.
    pub indeterminate: u64,
    /// New connections opened after an error (each resolves the cluster name again).
    pub reconnects: u64,
    /// The longest time between two acknowledged commits.
    pub max_commit_gap_ms: u64,
    pub last_error: Option<String>,
}

/// A check the demo's exit code depends on.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// The demo's report, as `--output json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// Every check passed.
    pub ok: bool,
    pub checks: Vec<Check>,
    pub lab_dir: PathBuf,
    /// Kept (`--keep`) or taken down and deleted.
    pub lab_kept: bool,
    pub reports_dir: PathBuf,
    pub engine_version: String,
    pub steps: Vec<StepReport>,
    pub encryption: Option<EncryptionSummary>,
    /// Right after green was built.
    pub verify: Option<VerifySummary>,
    pub switchover: Option<SwitchSummary>,
    pub rollback: Option<SwitchSummary>,
    /// After the rollback, green being the standby again.
    pub verify_after_rollback: Option<VerifySummary>,
    pub load: Option<LoadTotals>,
}

impl DemoReport {
    fn new(lab_dir: PathBuf, reports_dir: PathBuf, keep: bool) -> Self {
        DemoReport {
            ok: false,
            checks: Vec::new(),
            lab_dir,
            lab_kept: keep,
            reports_dir,
            engine_version: String::new(),
            steps: Vec::new(),
            encryption: None,
            verify: None,
            switchover: None,
            rollback: None,
            verify_after_rollback: None,
            load: None,
        }
    }
}

pub async fn run(a: DemoArgs) -> anyhow::Result<()> {
    if !(a.probe_rate.is_finite() && a.probe_rate > 0.0) {
        return Err(Exit::new(2, "--probe-rate must be more than zero").into());
    }
    if !(a.load_rate.is_finite() && a.load_rate > 0.0 && a.load_rate <= 1000.0) {
        return Err(Exit::new(2, "--load-rate must be more than 0 and at most 1000").into());
    }
    let dir = a.lab_dir.clone();
    let reports_dir = reports_root(&dir)?.join(format!(
        "run-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    ));
    let t = Instant::now();
    let earlier = claim_dir(&dir)?;

    let mut demo = Demo {
        dir: dir.clone(),
        format: a.output.output,
        report: DemoReport::new(dir.clone(), reports_dir, a.keep),
        load: None,
        journal: None,
    };
    if let Some(stopped) = earlier {
        demo.step(
            "earlier demo removed",
            t,
            format!(
                "{} server(s) of the lab an earlier demo left in {} stopped, its files deleted",
                stopped.len(),
                dir.display()
            ),
        );
    }
    // A Ctrl-C still takes the lab down: its servers are not tied to this process.
    let result = tokio::select! {
        r = demo.flow(&a) => r,
        _ = tokio::signal::ctrl_c() => Err(Exit::new(1, "interrupted").into()),
    };
    if let Some(load) = demo.load.take() {
        match load.stop().await {
            Ok(totals) => demo.report.load = Some(totals),
            Err(e) => tracing::warn!("stopping the load: {e:#}"),
        }
    }
    if let Some(j) = demo.journal.take() {
        j.close().await;
    }
    let teardown = if a.keep { Ok(()) } else { demo.take_down() };
    result?;
    teardown?;
    demo.finish(&a)
}

/// `D-reports` next to the lab directory `D`: the probe's reports survive the lab's deletion.
fn reports_root(dir: &Path) -> anyhow::Result<PathBuf> {
    let name = dir.file_name().ok_or_else(|| {
        Exit::new(
            2,
            format!(
                "--lab-dir {}: name a directory (e.g. .dbshift/demo)",
                dir.display()
            ),
        )
    })?;
    let mut reports = name.to_os_string();
    reports.push("-reports");
    Ok(dir.with_file_name(reports))
}

/// Make `dir` the demo's: create it, or take down the lab an earlier demo left there (then the
/// servers it stopped are returned). A directory that holds anything else is refused, and
/// nothing in it is touched.
fn claim_dir(dir: &Path) -> anyhow::Result<Option<Vec<String>>> {
    let refuse = |what: &str| -> anyhow::Error {
        Exit::new(
            2,
            format!(
                "--lab-dir {} {what} that `dbshift demo` did not make; pass another --lab-dir \
                 (the demo deletes its lab directory at the end)",
                dir.display()
            ),
        )
        .into()
    };
    if dir.exists() && !dir.is_dir() {
        return Err(refuse("is a file"));
    }
    if dir.join(MARKER).is_file() {
        tracing::info!(dir = %dir.display(), "taking down the lab of an earlier demo");
        let stopped = match Lab::down(dir, true) {
            Ok(r) => r.stopped,
            Err(dbshift_provider::Error::NoLab(_)) => Vec::new(),
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "taking down the lab an earlier demo left in {}",
                    dir.display()
                )))
            }
        };
        remove_journal(dir);
        return Ok(Some(stopped));
    }
    if dir.is_dir() {
        let mut entries = std::fs::read_dir(dir)
            .with_context(|| format!("reading --lab-dir {}", dir.display()))?;
        if entries.next().is_some() {
            return Err(refuse("holds files"));
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "made by `dbshift demo`, which deletes this directory when it ends\n",
    )
    .with_context(|| format!("writing {}", dir.join(MARKER).display()))?;
    Ok(None)
}

/// The journal's files (SQLite with its write-ahead log).
fn remove_journal(dir: &Path) {
    for f in ["journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

fn since_ms(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

struct Demo {
    dir: PathBuf,
    format: Format,
    report: DemoReport,
    load: Option<Load>,
    journal: Option<Journal>,
}

impl Demo {
    /// Record a step and print its line (table output only).
    fn step(&mut self, name: &str, started: Instant, detail: String) {
        let elapsed_ms = since_ms(started);
        if self.format == Format::Table {
            println!("{:>8}  {name}: {detail}", secs(elapsed_ms));
        }
        self.report.steps.push(StepReport {
            name: name.to_string(),
            elapsed_ms,
            detail,
        });
    }

    fn load_committed(&self) -> u64 {
        self.load.as_ref().map(|l| l.committed()).unwrap_or(0)
    }

    /// Every step; stops early (with the report so far) when a check makes the next step
    /// pointless: an unequal verify, or a switch that did not end done.
    async fn flow(&mut self, a: &DemoArgs) -> anyhow::Result<()> {
        let t = Instant::now();
        let opts = UpOptions {
            clusters: Some(1),
            replicas: Some(2),
            die_with_parent: false,
            ..Default::default()
        };
        let (lab, _) = Lab::up(&self.dir, &opts)
            .await
            .with_context(|| format!("bringing up the demo lab in {}", self.dir.display()))?;
        let status = lab.status();
        self.report.engine_version = status.engine_version.clone();
        let writer = status
            .clusters
            .iter()
            .find(|c| c.name == CLUSTER)
            .map(|c| c.writer.clone())
            .unwrap_or_default();
        self.step(
            "lab up",
            t,
            format!(
                "{CLUSTER} = writer {writer} + 2 replicas, MariaDB {} in {}",
                status.engine_version,
                self.dir.display()
            ),
        );

        let t = Instant::now();
        let provider: Arc<dyn Provider> = Arc::new(lab.clone());
        let load = Load::start(provider, CLUSTER, a.load_rate)
            .await
            .context("starting the write load")?;
        self.load = Some(load);
        self.step(
            "load",
            t,
            format!(
                "{}/s transactions as the application user through {CLUSTER} (app.orders with a \
                 primary key, {SEED_ORDERS} rows; app.events without one, {SEED_EVENTS} rows)",
                a.load_rate
            ),
        );

        let t = Instant::now();
        let spec = GreenSpec {
            name: DEPLOYMENT.into(),
            source: CLUSTER.into(),
            replicas: 1,
            encrypt: true,
            engine_binary: None,
        };
        let d = bluegreen::create(&lab, &spec)
            .await
            .map_err(crate::bluegreen_cmd::bg_err)
            .with_context(|| format!("building green {DEPLOYMENT} from {CLUSTER}"))?;
        let built = Instant::now();
        self.step(
            "bluegreen create",
            t,
            format!(
                "green {} (writer {} + 1 replica, encrypted) from a hot snapshot of {}, \
                 replicating from {} since {}; load: {} committed so far",
                d.green,
                d.green_writer,
                d.snapshot_taken_on,
                d.blue_writer,
                d.source_position,
                self.load_committed()
            ),
        );

        let t = Instant::now();
        let enc = wait_encrypted(&lab, &d.green_writer, built).await?;
        self.step(
            "encryption",
            t,
            format!(
                "{}/{} InnoDB tablespaces of {} encrypted (ENCRYPTION_SCHEME=1)",
                enc.tablespaces_encrypted, enc.tablespaces_total, enc.instance
            ),
        );
        self.report.encryption = Some(enc);

        let v = self.verify(&lab, "verify").await?;
        self.report.verify = Some(v.clone());
        if !v.equal {
            return Ok(());
        }

        let journal = crate::provider_cmd::journal_in(&self.dir, &lab).await?;
        self.journal = Some(journal);
        let s = self.switch(&lab, Side::Green, a.probe_rate).await?;
        let done = s.outcome == "done";
        self.report.switchover = Some(s);
        if !done {
            return Ok(());
        }
        let s = self.switch(&lab, Side::Blue, a.probe_rate).await?;
        let done = s.outcome == "done";
        self.report.rollback = Some(s);

        let t = Instant::now();
        if let Some(load) = self.load.take() {
            let totals = load.stop().await?;
            self.step(
                "load stopped",
                t,
                format!(
                    "{} committed, {} failed, {} indeterminate",
                    totals.committed, totals.failed, totals.indeterminate
                ),
            );
            self.report.load = Some(totals);
        }
        if !done {
            return Ok(());
        }
        let v = self.verify(&lab, "verify after rollback").await?;
        self.report.verify_after_rollback = Some(v);
        Ok(())
    }

    async fn verify(&mut self, lab: &Lab, name: &str) -> anyhow::Result<VerifySummary> {
        let t = Instant::now();
        let d = bluegreen::find(lab, Some(DEPLOYMENT))
            .await
            .map_err(crate::bluegreen_cmd::bg_err)?;
        let r = bluegreen::verify(lab, &d, &VerifyOptions::default())
            .await
            .map_err(crate::bluegreen_cmd::bg_err)
            .with_context(|| format!("verifying {} against its standby", d.name))?;
        let v = VerifySummary::from(&r);
        self.step(
            name,
            t,
            format!(
                "{} at {}: {} tables, {} rows compared ({:.0} rows/s){}",
                if v.equal { "EQUAL" } else { "DIFFERENT" },
                v.position,
                v.tables,
                v.rows_compared,
                v.rows_per_s,
                if v.equal {
                    String::new()
                } else {
                    format!(", {} chunk(s) differ", v.differences)
                }
            ),
        );
        if self.format == Format::Table {
            for diff in &r.differences {
                println!(
                    "          difference: {}.{} where {} (blue {} rows, green {} rows): {}",
                    diff.schema,
                    diff.table,
                    diff.range,
                    diff.rows_blue,
                    diff.rows_green,
                    diff.reason
                );
            }
        }
        Ok(v)
    }

    /// Make `to` serve, with the probe on blue's cluster name.
    async fn switch(&mut self, lab: &Lab, to: Side, rate: f64) -> anyhow::Result<SwitchSummary> {
        let t = Instant::now();
        let name = match to {
            Side::Green => "switchover",
            Side::Blue => "rollback",
        };
        let d: Deployment = bluegreen::find(lab, Some(DEPLOYMENT))
            .await
            .map_err(crate::bluegreen_cmd::bg_err)?;
        let params = bluegreen::switch_params(lab, &d, to, &SwitchOptions::default())
            .await
            .map_err(crate::bluegreen_cmd::bg_err)
            .with_context(|| format!("preparing the {name} of {}", d.name))?;
        let (from, new) = (params.from.clone(), params.to.clone());
        let report_dir = self.report.reports_dir.join(name);
        let probe = start_probe(
            true,
            std::sync::Arc::new(lab.clone()),
            &self.dir,
            &d.blue,
            &format!("demo-{name}"),
            rate,
            Some(report_dir),
        )
        .await?
        .expect("asked for");
        let observer = observer_for(Some(&probe));
        let journal = self
            .journal
            .as_ref()
            .expect("the journal is opened before the first switch");
        let result = bluegreen::switch(lab, journal, params, to, observer.as_ref()).await;
        let summary = stop_probe(Some(probe))
            .await?
            .expect("a started probe gives a summary");
        let (run_id, outcome) = result.map_err(|e| match e {
            BlueGreenError::Switchover(s) => stopped_part_way(s),
            other => crate::bluegreen_cmd::bg_err(other),
        })?;
        let (outcome_name, reason, write_gap_ms) = match &outcome {
            Outcome::Done(r) => ("done", None, r.write_gap_ms),
            Outcome::Refused(g) => ("refused", Some(g.failure_text()), None),
            Outcome::RolledBack { reason } => ("rolled_back", Some(reason.clone()), None),
            Outcome::ClusterChanged { reason, .. } => {
                ("cluster_changed", Some(reason.clone()), None)
            }
            Outcome::NeedsHuman { reason } => ("needs_human", Some(reason.clone()), None),
        };
        let (probe_writes, failed_writes) = summary
            .kinds
            .get(&dbshift_probe::Kind::Write)
            .map(|w| (w.attempted, w.failed))
            .unwrap_or((0, 0));
        let s = SwitchSummary {
            run_id,
            outcome: outcome_name.into(),
            reason,
            from,
            to: new,
            elapsed_ms: since_ms(t),
            write_gap_ms,
            max_write_gap_ms: summary.max_write_gap_ms,
            probe_writes,
            failed_writes,
            lost_writes: summary.lost_writes.len() as u64,
            indeterminate: summary.indeterminate_writes,
            outages: summary.outages.len(),
            chart: summary
                .report_dir
                .as_ref()
                .map(|d| d.join("timeline.svg"))
                .filter(|p| p.is_file()),
            report_dir: summary.report_dir.clone(),
        };
        self.step(
            name,
            t,
            format!(
                "{} -> {}: {}; writes paused {} ms (core), probe: longest write gap {:.0} ms, \
                 {} failed, {} lost, {} indeterminate",
                s.from,
                s.to,
                s.outcome.replace('_', " "),
                s.write_gap_ms
                    .map(|g| g.to_string())
                    .unwrap_or_else(|| "-".into()),
                s.max_write_gap_ms,
                s.failed_writes,
                s.lost_writes,
                s.indeterminate
            ),
        );
        if self.format == Format::Table {
            // The core's own account of the run (steps and their times, the probe's outages);
            // its verdict is the demo's checks below, not an error here.
            let _ = report_outcome(&outcome, Some(&summary), Format::Table);
            println!();
        }
        Ok(s)
    }

    /// Stop the lab's servers and delete the lab directory; the reports stay.
    fn take_down(&mut self) -> anyhow::Result<()> {
        let t = Instant::now();
        let r = match Lab::down(&self.dir, true) {
            Ok(r) => r.stopped.len(),
            Err(dbshift_provider::Error::NoLab(_)) => 0,
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "taking down the demo lab in {}",
                    self.dir.display()
                )))
            }
        };
        remove_journal(&self.dir);
        let _ = std::fs::remove_file(self.dir.join(MARKER));
        let detail = match std::fs::remove_dir(&self.dir) {
            Ok(()) => format!("{r} server(s) stopped, {} deleted", self.dir.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                format!("{r} server(s) stopped, {} deleted", self.dir.display())
            }
            Err(e) => {
                tracing::warn!("{} was not deleted: {e}", self.dir.display());
                format!(
                    "{r} server(s) stopped; {} left in place ({e})",
                    self.dir.display()
                )
            }
        };
        self.step("lab down", t, detail);
        Ok(())
    }

    /// The checks, the report, and the exit code: 0 when both switches are done with no
    /// lost write and both verifies are equal; 3 when a switch needs a human or a write was
    /// lost; 1 otherwise.
    fn finish(mut self, a: &DemoArgs) -> anyhow::Result<()> {
        let r = &mut self.report;
        let mut checks = Vec::new();
        for (name, v) in [
            ("verify", &r.verify),
            ("verify_after_rollback", &r.verify_after_rollback),
        ] {
            checks.push(match v {
                Some(v) => Check {
                    name: name.into(),
                    ok: v.equal,
                    detail: if v.equal {
                        format!("equal at {}", v.position)
                    } else {
                        format!("{} chunk(s) differ at {}", v.differences, v.position)
                    },
                },
                None => Check {
                    name: name.into(),
                    ok: false,
                    detail: "not run: an earlier check failed".into(),
                },
            });
        }
        for (name, s) in [("switchover", &r.switchover), ("rollback", &r.rollback)] {
            checks.push(match s {
                Some(s) => Check {
                    name: name.into(),
                    ok: s.outcome == "done",
                    detail: match &s.reason {
                        Some(why) => format!("{}: {why}", s.outcome.replace('_', " ")),
                        None => s.outcome.clone(),
                    },
                },
                None => Check {
                    name: name.into(),
                    ok: false,
                    detail: "not run: an earlier check failed".into(),
                },
            });
            if let Some(s) = s {
                checks.push(Check {
                    name: format!("{name}_lost_writes"),
                    ok: s.lost_writes == 0,
                    detail: format!("{} acknowledged probe write(s) missing", s.lost_writes),
                });
            }
        }
        // Reported, not a condition of success: the threads may still be at work on a slow
        // machine, and the verify and switches do not depend on them.
        if let Some(e) = &r.encryption {
            if !e.all_encrypted {
                tracing::warn!(
                    "only {}/{} tablespaces of {} were encrypted after {} s",
                    e.tablespaces_encrypted,
                    e.tablespaces_total,
                    e.instance,
                    e.waited_ms / 1000
                );
            }
        }
        r.ok = checks.iter().all(|c| c.ok);
        r.checks = checks;
        match self.format {
            Format::Json => print_json(&self.report)?,
            Format::Table => print_report(&self.report, a),
        }
        let r = &self.report;
        if r.ok {
            return Ok(());
        }
        // A switch left for a human, or an acknowledged write lost: 3, as the switchover says.
        let needs_human = [&r.switchover, &r.rollback].iter().any(|s| {
            s.as_ref()
                .is_some_and(|s| s.outcome == "needs_human" || s.lost_writes > 0)
        });
        let failed: Vec<String> = r
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{} ({})", c.name, c.detail))
            .collect();
        Err(Exit::new(
            if needs_human { 3 } else { 1 },
            format!("the demo failed: {}", failed.join("; ")),
        )
        .into())
    }
}

fn print_report(r: &DemoReport, a: &DemoArgs) {
    println!();
    let mut t = Table::new(&[
        "SWITCH",
        "RUN",
        "OUTCOME",
        "WRITE_GAP_MS",
        "PROBE_MAX_GAP_MS",
        "FAILED",
        "LOST",
        "INDETERMINATE",
        "CHART",
    ]);
    for (name, s) in [("switchover", &r.switchover), ("rollback", &r.rollback)] {
        match s {
            Some(s) => t.row(vec![
                name.into(),
                s.run_id.clone(),
                s.outcome.clone(),
                s.write_gap_ms
                    .map(|g| g.to_string())
                    .unwrap_or_else(|| "-".into()),
                format!("{:.0}", s.max_write_gap_ms),
                format!("{}/{}", s.failed_writes, s.probe_writes),
                s.lost_writes.to_string(),
                s.indeterminate.to_string(),
                s.chart
                    .as_ref()
                    .map(|c| c.display().to_string())
                    .unwrap_or_else(|| "-".into()),
            ]),
            None => t.row(vec![name.into(), "-".into(), "not run".into()]),
        }
    }
    print!("{}", t.render());
    println!();
    let mut t = Table::new(&["VERIFY", "EQUAL", "TABLES", "ROWS", "ROWS/S", "POSITION"]);
    for (name, v) in [
        ("after create", &r.verify),
        ("after rollback", &r.verify_after_rollback),
    ] {
        match v {
            Some(v) => t.row(vec![
                name.into(),
                if v.equal { "yes" } else { "NO" }.into(),
                v.tables.to_string(),
                v.rows_compared.to_string(),
                format!("{:.0}", v.rows_per_s),
                v.position.clone(),
            ]),
            None => t.row(vec![name.into(), "not run".into()]),
        }
    }
    print!("{}", t.render());
    println!();
    if let Some(e) = &r.encryption {
        println!(
            "encryption: {}/{} InnoDB tablespaces of green's writer {} encrypted",
            e.tablespaces_encrypted, e.tablespaces_total, e.instance
        );
    }
    if let Some(l) = &r.load {
        println!(
            "load: {} committed ({} multi-statement), {} failed, {} indeterminate, {} reconnect(s) \
             in {} at {}/s; longest time between commits {} ms",
            l.committed,
            l.committed_multi_statement,
            l.failed,
            l.indeterminate,
            l.reconnects,
            secs(l.duration_ms),
            l.rate,
            l.max_commit_gap_ms
        );
    }
    println!("reports: {}", r.reports_dir.display());
    if a.keep {
        println!(
            "the lab is still running: DBSHIFT_LAB_DIR={} dbshift inventory \
             (dbshift bluegreen status, dbshift runs; `dbshift --dir {} lab down --purge` to end it)",
            r.lab_dir.display(),
            r.lab_dir.display()
        );
    }
    for c in r.checks.iter().filter(|c| !c.ok) {
        println!("FAILED {}: {}", c.name, c.detail);
    }
    if r.ok {
        println!("result: OK (both switches done, no lost write, both verifies equal)");
    }
}

/// Wait (bounded) until every row of green's writer's `INNODB_TABLESPACES_ENCRYPTION` has
/// ENCRYPTION_SCHEME=1; the encryption threads work in the background after the restore.
async fn wait_encrypted(
    lab: &Lab,
    instance: &str,
    since: Instant,
) -> anyhow::Result<EncryptionSummary> {
    let ep = lab
        .describe_instance(instance)
        .await
        .with_context(|| format!("looking up green's writer {instance}"))?
        .endpoint;
    let creds = lab.credentials().context("reading the lab's users")?;
    let mut server = Server::connect(&dbshift_ops::connect_options(&creds, &creds.admin, &ep))
        .await
        .with_context(|| format!("connecting to green's writer {instance}"))?;
    let deadline = Instant::now() + ENCRYPTION_TIMEOUT;
    loop {
        let row = server
            .query_one(
                "SELECT COUNT(*), COALESCE(SUM(ENCRYPTION_SCHEME = 1), 0), \
                 (SELECT COUNT(*) FROM information_schema.INNODB_SYS_TABLESPACES \
                  WHERE NAME <> 'innodb_temporary') \
                 FROM information_schema.INNODB_TABLESPACES_ENCRYPTION",
            )
            .await
            .with_context(|| format!("reading the tablespaces' encryption on {instance}"))?;
        let n = |i: usize| {
            row.get(i)
                .and_then(|c| c.1.as_deref())
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // A tablespace the encryption threads have not reached yet may be missing from the
        // view: it counts as not encrypted.
        let (total, encrypted) = (n(0).max(n(2)), n(1));
        let all = total > 0 && encrypted == total;
        if all || Instant::now() >= deadline {
            server.close().await;
            return Ok(EncryptionSummary {
                instance: instance.to_string(),
                tablespaces_encrypted: encrypted,
                tablespaces_total: total,
                all_encrypted: all,
                waited_ms: since_ms(since),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The application: transactions at a fixed rate through the cluster name, as the
/// application user, reconnecting (and resolving the name again) after any error.
struct Load {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<LoadTotals>,
    committed: Arc<AtomicU64>,
}

impl Load {
    /// Create the load's tables (dropping those of an earlier run), seed them, and start.
    async fn start(provider: Arc<dyn Provider>, cluster: &str, rate: f64) -> anyhow::Result<Load> {
        let opts = load_options(provider.as_ref(), cluster).await?;
        let mut s = Server::connect(&opts)
            .await
            .with_context(|| format!("connecting to {cluster} as the application user"))?;
        let seed = format!(
            "SET SESSION max_recursive_iterations = {}; \
             DROP TABLE IF EXISTS orders, events; \
             CREATE TABLE orders (id BIGINT NOT NULL PRIMARY KEY, customer INT NOT NULL, \
               amount DECIMAL(12,2) NOT NULL, note VARCHAR(64) NOT NULL, \
               version INT NOT NULL DEFAULT 0) ENGINE=InnoDB; \
             CREATE TABLE events (ref BIGINT NOT NULL, kind VARCHAR(16) NOT NULL, \
               amount DECIMAL(12,2) NOT NULL, note VARCHAR(64) NOT NULL, KEY (ref)) \
               ENGINE=InnoDB; \
             INSERT INTO orders (id, customer, amount, note) \
               WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {SEED_ORDERS}) \
               SELECT n, n % 997, n / 100, CONCAT('seed order ', n) FROM s; \
             INSERT INTO events (ref, kind, amount, note) \
               WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {SEED_EVENTS}) \
               SELECT n, 'seed', n / 10, CONCAT('seed event ', n) FROM s",
            SEED_ORDERS.max(SEED_EVENTS) + 1
        );
        for stmt in seed.split("; ") {
            s.exec_sql(stmt)
                .await
                .with_context(|| format!("creating the load's tables on {cluster}"))?;
        }
        s.close().await;
        let (stop, stop_rx) = watch::channel(false);
        let committed = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run_load(
            provider,
            cluster.to_string(),
            rate,
            stop_rx,
            committed.clone(),
        ));
        Ok(Load {
            stop,
            task,
            committed,
        })
    }

    fn committed(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    async fn stop(self) -> anyhow::Result<LoadTotals> {
        let _ = self.stop.send(true);
        self.task.await.context("the write load's task failed")
    }
}

/// Where the cluster name points now, as the application user over verified TLS.
async fn load_options(provider: &dyn Provider, cluster: &str) -> anyhow::Result<ConnectOptions> {
    let ep = provider
        .resolve(cluster)
        .await
        .with_context(|| format!("resolving {cluster}"))?;
    let creds = provider.credentials().context("reading the lab's users")?;
    Ok(dbshift_ops::connect_options(&creds, &creds.app, &ep)
        .database("app")
        .connect_timeout(Duration::from_secs(2)))
}

/// How a transaction ended.
enum TxEnd {
    Committed,
    /// Certainly not committed.
    Failed(String),
    /// The COMMIT got no answer: it may or may not have happened.
    Indeterminate(String),
}

/// A small xorshift: the load's choices need no quality, only variety.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// The statements of transaction `k`: single-row INSERT, UPDATE and DELETE on both tables,
/// and every tenth a multi-statement transaction touching both.
fn transaction(k: u64, rng: &mut Rng, next_id: &mut u64) -> (Vec<String>, bool) {
    let upto = *next_id;
    let mut id = || {
        *next_id += 1;
        *next_id - 1
    };
    let existing = |rng: &mut Rng, upto: u64| 1 + rng.below(upto - 1);
    let stmts = match k % 10 {
        0 | 3 | 6 => {
            let i = id();
            vec![format!(
                "INSERT INTO orders (id, customer, amount, note) VALUES ({i}, {}, {}.50, 'order {i}')",
                i % 997,
                i % 1000
            )]
        }
        1 | 4 => vec![format!(
            "UPDATE orders SET amount = amount + 1, version = version + 1 WHERE id = {}",
            existing(rng, upto)
        )],
        2 | 5 => vec![format!(
            "DELETE FROM orders WHERE id = {}",
            existing(rng, upto)
        )],
        7 => vec![format!(
            "INSERT INTO events (ref, kind, amount, note) VALUES ({}, 'event', 1.25, 'event {k}')",
            existing(rng, upto)
        )],
        8 => vec![format!(
            "UPDATE events SET amount = amount + 1 WHERE ref = {}",
            existing(rng, upto.min(SEED_EVENTS + 1))
        )],
        _ => {
            let (a, b, c) = (id(), id(), id());
            vec![
                format!(
                    "INSERT INTO orders (id, customer, amount, note) VALUES \
                     ({a}, 1, 10.00, 'batch {k}'), ({b}, 2, 20.00, 'batch {k}'), \
                     ({c}, 3, 30.00, 'batch {k}')"
                ),
                format!(
                    "UPDATE orders SET amount = amount - 1, version = version + 1 WHERE id = {}",
                    existing(rng, upto)
                ),
                format!(
                    "INSERT INTO events (ref, kind, amount, note) VALUES ({a}, 'batch', 60.00, 'batch {k}')"
                ),
                format!(
                    "DELETE FROM events WHERE ref = {} LIMIT 1",
                    existing(rng, upto)
                ),
                format!("DELETE FROM orders WHERE id = {}", existing(rng, upto)),
            ]
        }
    };
    (stmts, k % 10 == 9)
}

/// Server errors on COMMIT that say it did not happen; any other answer (no answer, a killed
/// connection) leaves the outcome unknown.
fn commit_refused(code: Option<u16>) -> bool {
    // 1290 read_only, 1792 read-only transaction, 1205 lock wait timeout, 1213 deadlock.
    matches!(code, Some(1290 | 1792 | 1205 | 1213))
}

/// One statement of the load, bounded; the error as (server code, text).
async fn exec_bounded(conn: &mut Server, sql: &str) -> Result<(), (Option<u16>, String)> {
    match tokio::time::timeout(STATEMENT_TIMEOUT, conn.exec_sql(sql)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err((e.server_code(), e.to_string())),
        Err(_) => Err((None, format!("no answer within {STATEMENT_TIMEOUT:?}"))),
    }
}

async fn run_tx(conn: &mut Server, stmts: &[String]) -> TxEnd {
    if let Err((_, e)) = exec_bounded(conn, "START TRANSACTION").await {
        return TxEnd::Failed(e);
    }
    for s in stmts {
        // Before COMMIT: the transaction is rolled back when the connection is dropped.
        if let Err((_, e)) = exec_bounded(conn, s).await {
            return TxEnd::Failed(e);
        }
    }
    match exec_bounded(conn, "COMMIT").await {
        Ok(()) => TxEnd::Committed,
        Err((code, e)) if commit_refused(code) => TxEnd::Failed(e),
        Err((_, e)) => TxEnd::Indeterminate(e),
    }
}

async fn run_load(
    provider: Arc<dyn Provider>,
    cluster: String,
    rate: f64,
    mut stop: watch::Receiver<bool>,
    committed: Arc<AtomicU64>,
) -> LoadTotals {
    let started = Instant::now();
    let mut totals = LoadTotals {
        rate,
        ..Default::default()
    };
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    // Behind schedule (a stalled commit), the load carries on at its rate, without a burst.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let mut rng = Rng(seed | 1);
    let mut next_id = SEED_ORDERS + 1;
    let mut conn: Option<Server> = None;
    let mut connected_once = false;
    let mut last_commit = Instant::now();
    let mut k: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
        if conn.is_none() {
            let opened = match load_options(provider.as_ref(), &cluster).await {
                Ok(o) => Server::connect(&o).await.map_err(anyhow::Error::from),
                Err(e) => Err(e),
            };
            match opened {
                Ok(s) => {
                    if connected_once {
                        totals.reconnects += 1;
                    }
                    connected_once = true;
                    conn = Some(s);
                }
                Err(e) => {
                    tracing::info!("load: no connection to {cluster}: {e:#}");
                    totals.failed += 1;
                    totals.last_error = Some(format!("{e:#}"));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let (stmts, multi) = transaction(k, &mut rng, &mut next_id);
        k += 1;
        match run_tx(c, &stmts).await {
            TxEnd::Committed => {
                totals.committed += 1;
                if multi {
                    totals.committed_multi_statement += 1;
                }
                committed.fetch_add(1, Ordering::Relaxed);
                totals.max_commit_gap_ms = totals.max_commit_gap_ms.max(since_ms(last_commit));
                last_commit = Instant::now();
            }
            TxEnd::Failed(e) => {
                tracing::info!("load: transaction failed: {e}");
                totals.failed += 1;
                totals.last_error = Some(e);
                conn = None;
            }
            TxEnd::Indeterminate(e) => {
                tracing::warn!("load: COMMIT outcome unknown (not retried): {e}");
                totals.indeterminate += 1;
                totals.last_error = Some(e);
                conn = None;
            }
        }
    }
    if let Some(c) = conn {
        c.close().await;
    }
    totals.duration_ms = since_ms(started);
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_go_next_to_the_lab_dir() {
        assert_eq!(
            reports_root(Path::new(".dbshift/demo")).unwrap(),
            PathBuf::from(".dbshift/demo-reports")
        );
        assert_eq!(
            reports_root(Path::new("/tmp/x/demo/")).unwrap(),
            PathBuf::from("/tmp/x/demo-reports")
        );
        assert!(reports_root(Path::new("/")).is_err());
    }

    #[test]
    fn transactions_cover_every_statement_kind_on_both_tables() {
        let mut rng = Rng(7);
        let mut next_id = SEED_ORDERS + 1;
        let all: Vec<(Vec<String>, bool)> = (0..10)
            .map(|k| transaction(k, &mut rng, &mut next_id))
            .collect();
        let text = all
            .iter()
            .flat_map(|(s, _)| s.iter().cloned())
            .collect::<Vec<_>>()
            .join("\n");
        for needle in [
            "INSERT INTO orders",
            "UPDATE orders",
            "DELETE FROM orders",
            "INSERT INTO events",
            "UPDATE events",
            "DELETE FROM events",
        ] {
            assert!(text.contains(needle), "{needle} in\n{text}");
        }
        assert_eq!(all.iter().filter(|(_, multi)| *multi).count(), 1);
        assert!(all[9].0.len() > 1);
        // Inserted ids are never reused, so an indeterminate insert cannot collide later.
        assert_eq!(next_id, SEED_ORDERS + 1 + 3 + 3);
    }

    #[test]
    fn only_a_refusal_on_commit_counts_as_not_committed() {
        assert!(commit_refused(Some(1290)));
        assert!(!commit_refused(None));
        assert!(!commit_refused(Some(1927)));
    }

    #[test]
    fn a_dir_with_other_files_is_refused_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("mine.txt"), "x").unwrap();
        let err = claim_dir(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("another --lab-dir"), "{err}");
        assert!(tmp.path().join("mine.txt").exists());
        let fresh = tmp.path().join("demo");
        assert_eq!(claim_dir(&fresh).unwrap(), None);
        assert!(fresh.join(MARKER).is_file());
        // A directory the demo made is reused.
        assert_eq!(claim_dir(&fresh).unwrap(), Some(Vec::new()));
    }
}
