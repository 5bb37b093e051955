//! `dbshift demo`: the blue/green workflow end to end on a lab of its own, under an
//! application's write load, and what clients saw. It builds a lab of one cluster, starts a
//! load through the cluster name, builds an encrypted green from a hot snapshot, verifies it,
//! switches over and rolls back through the switchover core with the downtime probe running,
//! verifies again, and reports. Everything here is wiring of `dbshift_ops`, the probe, the
//! application load (`dbshift_probe::load`, which stands in for an application) and the lab;
//! `report` prints the result as a table.
//!
//! It must never touch the user's lab (`--dir`), and never delete a directory it did not make:
//! the lab directory carries a marker file, and a directory without it is refused.

mod report;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use dbshift_db::Server;
use dbshift_ops::bluegreen::{self, BlueGreenError, SwitchOptions};
use dbshift_ops::journal::Journal;
use dbshift_ops::switchover::Outcome;
use dbshift_ops::verify::{VerifyOptions, VerifyReport};
use dbshift_probe::load::{Load, LoadTotals, SEED_EVENTS, SEED_ORDERS};
use dbshift_provider::local::{Lab, UpOptions};
use dbshift_provider::{Deployment, Fleet, GreenSpec, Provider, Side};
use serde::Serialize;

use crate::output::print_json;
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
/// How long green's encryption threads may take to encrypt every tablespace.
const ENCRYPTION_TIMEOUT: Duration = Duration::from_secs(120);

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

/// The lag (transactions) under which a side is taken as caught up before a switch.
const CAUGHT_UP_TRANSACTIONS: u64 = 20;
/// How long the demo waits for that before it lets the guards judge anyway.
const CAUGHT_UP_BOUND: Duration = Duration::from_secs(60);

/// Wait until `new` is at most `limit` transactions behind `from`, for at most `bound`; past
/// it (or on any error) the switch goes ahead and its guards decide.
async fn wait_caught_up(lab: &Lab, from: &str, new: &str, limit: u64, bound: Duration) {
    let deadline = Instant::now() + bound;
    let behind = |from: String, new: String| async move {
        let mut old = lab.connect_admin(&from).await.ok()?;
        let mut replica = lab.connect_admin(&new).await.ok()?;
        let target = old.executed_position().await.ok();
        let at = replica.applied_position().await.ok();
        old.close().await;
        replica.close().await;
        at?.behind(&target?)
    };
    loop {
        match behind(from.to_string(), new.to_string()).await {
            Some(n) if n <= limit => return,
            n if Instant::now() >= deadline => {
                tracing::warn!(new, behind = ?n, "not caught up within {bound:?}; the guards decide");
                return;
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
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
    let earlier = claim_dir(&dir).await?;

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
    let teardown = if a.keep {
        Ok(())
    } else {
        demo.take_down().await
    };
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
async fn claim_dir(dir: &Path) -> anyhow::Result<Option<Vec<String>>> {
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
        let stopped = match Lab::down_off_runtime(dir, true).await {
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
        // As an operator would: let the side that takes over catch up first (on a loaded
        // machine a green just built, or blue after a switch, can be seconds behind the
        // demo's load), so that the guards judge a replica at rest, not one still replaying.
        wait_caught_up(lab, &from, &new, CAUGHT_UP_TRANSACTIONS, CAUGHT_UP_BOUND).await;
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
    async fn take_down(&mut self) -> anyhow::Result<()> {
        let t = Instant::now();
        let r = match Lab::down_off_runtime(&self.dir, true).await {
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
            Format::Table => report::print_report(&self.report, a),
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

    #[tokio::test]
    async fn a_dir_with_other_files_is_refused_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("mine.txt"), "x").unwrap();
        let err = claim_dir(tmp.path()).await.unwrap_err();
        assert!(err.to_string().contains("another --lab-dir"), "{err}");
        assert!(tmp.path().join("mine.txt").exists());
        let fresh = tmp.path().join("demo");
        assert_eq!(claim_dir(&fresh).await.unwrap(), None);
        assert!(fresh.join(MARKER).is_file());
        // A directory the demo made is reused.
        assert_eq!(claim_dir(&fresh).await.unwrap(), Some(Vec::new()));
    }
}
