//! `dbshift ca list` and `dbshift ca-rotate`: the CA rotation on the command line, with the
//! plan, progress bars, the report and the exit codes. The work is in
//! `dbshift_ops::ca_rotate` and `dbshift_ops::rollout`; this file must stay wiring.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use dbshift_ops::ca_rotate::{self, CaPlan, CaRotateReport, CaRotateRequest, ExecuteOptions};
use dbshift_ops::rollout::{
    ClusterReport, Control, LogRolloutObserver, Mode, PlannedStep, ProbeSettings, RolloutError,
    RolloutObserver, RunOutcome, StepOutcome, StepReport,
};
use dbshift_provider::Provider;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::{print_json, Table};
use crate::provider_cmd::{confirm, Ctx};
use crate::{Exit, Format, OutputArgs};

#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Every CA: validity, whether every trust point trusts it now, which instances use it.
    List(OutputArgs),
}

#[derive(Args, Debug)]
pub struct CaRotateArgs {
    /// The CA every instance in scope moves to (`dbshift ca list`).
    #[arg(long)]
    pub to: Option<String>,
    /// Scope: a glob on cluster names and instance ids (`lab-1*`), or `tag=value`.
    /// Repeatable: an instance is in scope when it matches one of the globs and every tag.
    #[arg(long = "filter")]
    pub filters: Vec<String>,
    /// Clusters rotated at the same time (inside a cluster always one instance at a time).
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// no-restart (the server loads the new certificate), restart (every instance, the writer
    /// too: write downtime), failover-first (readers restarted, the writer moved to a rotated
    /// reader by a switchover, then restarted). Default: no-restart where the CA allows it,
    /// else failover-first.
    #[arg(long)]
    pub mode: Option<Mode>,
    /// Shortest time per instance (a floor: the health gate decides when the next starts).
    #[arg(long, value_parser = parse_seconds, default_value = "0")]
    pub cooldown: Duration,
    /// Stopped instances are started, rotated and stopped again (default: skipped, reported).
    #[arg(long)]
    pub start_stopped: bool,
    /// Instances that may fail before no new cluster starts (clusters in flight finish).
    #[arg(long, default_value_t = 0)]
    pub max_failures: usize,
    /// A downtime probe per cluster (50 writes/s) for the whole rotation of that cluster.
    #[arg(long)]
    pub probe: bool,
    /// A client's CA bundle (PEM) to check against the target CA before anything changes.
    /// Repeatable.
    #[arg(long = "client-ca")]
    pub client_cas: Vec<PathBuf>,
    /// Longest an instance may take to pass its health gate.
    #[arg(long, default_value = "120s", value_parser = crate::parse_duration)]
    pub gate_timeout: Duration,
    /// Print the plan (with -o json: the exportable plan), change nothing.
    #[arg(long)]
    pub plan: bool,
    /// Apply a plan saved with `--plan -o json`: refused if the fleet changed since.
    #[arg(long, conflicts_with = "plan")]
    pub plan_file: Option<PathBuf>,
    /// Do not ask for confirmation.
    /// After a finished rotation, trust the new CA alone everywhere (kept as it was if an
    /// instance still uses another CA; the report names them).
    #[arg(long)]
    pub drop_old_trust: bool,
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `--cooldown`: `0`, seconds, or a duration with a unit.
fn parse_seconds(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    crate::parse_duration(s)
}

fn rollout_err(e: RolloutError) -> anyhow::Error {
    let e = dbshift_ops::Error::from(e);
    if let Some(exit) = crate::refusal(&e) {
        return exit.into();
    }
    match e {
        dbshift_ops::Error::Rollout(RolloutError::Provider(p)) => anyhow::Error::new(p),
        other => other.into(),
    }
}

pub async fn ca(cmd: CaCommand, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        CaCommand::List(output) => {
            let p = ctx.provider().await?;
            let cas = ca_rotate::list(&*p).await.map_err(rollout_err)?;
            match output.output {
                Format::Json => print_json(&cas)?,
                Format::Table => {
                    let mut t = Table::new(&[
                        "CA",
                        "NOT BEFORE",
                        "NOT AFTER",
                        "TRUSTED",
                        "NO-RESTART",
                        "INSTANCES",
                    ]);
                    for c in &cas {
                        t.row(vec![
                            c.id.clone(),
                            c.not_before.clone(),
                            c.not_after.clone(),
                            if c.trusted { "yes" } else { "no" }.into(),
                            if c.rotation_without_restart {
                                "yes"
                            } else {
                                "no"
                            }
                            .into(),
                            format!("{} {}", c.instances.len(), c.instances.join(",")),
                        ]);
                    }
                    print!("{}", t.render());
                }
            }
        }
    }
    Ok(())
}

fn request(args: &CaRotateArgs) -> anyhow::Result<CaRotateRequest> {
    let to = args.to.clone().ok_or_else(|| {
        Exit::new(
            2,
            "--to <CA> is required (or --plan-file); `dbshift ca list` shows the CAs",
        )
    })?;
    Ok(CaRotateRequest {
        to,
        filters: args.filters.clone(),
        concurrency: args.concurrency,
        mode: args.mode,
        cooldown_ms: args.cooldown.as_millis() as u64,
        start_stopped: args.start_stopped,
        max_failures: args.max_failures,
        client_cas: args.client_cas.clone(),
        probe: args.probe,
    })
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

fn print_plan(p: &CaPlan) {
    let o = &p.plan.options;
    println!(
        "CA rotation to {} (valid {} .. {}), mode {}, {} cluster(s) at a time",
        p.ca.id, p.ca.not_before, p.ca.not_after, o.mode, o.concurrency
    );
    if p.trust.needed {
        println!(
            "1. trust: every server's ssl_ca and replication's MASTER_SSL_CA get {} (FLUSH LOCAL SSL, no restart)",
            p.trust.deploy.join(" + ")
        );
    } else {
        println!(
            "1. trust: {} is trusted already ({})",
            p.ca.id,
            p.trust.trusted_now.join(", ")
        );
    }
    for c in &p.clients {
        println!(
            "   client bundle {}: {}",
            c.file.display(),
            if c.trusts_target {
                format!("trusts {}", p.ca.id)
            } else {
                format!("does NOT trust {}: add it before the rotation", p.ca.id)
            }
        );
    }
    println!("{}", p.health_gate.describe());
    println!("2. clusters (readers one at a time, then the writer):");
    let mut t = Table::new(&[
        "CLUSTER", "#", "INSTANCE", "ROLE", "STATUS", "CA NOW", "ACTION", "EST",
    ]);
    for c in &p.plan.clusters {
        for (i, s) in c.steps.iter().enumerate() {
            t.row(vec![
                if i == 0 {
                    c.cluster.clone()
                } else {
                    String::new()
                },
                (i + 1).to_string(),
                s.instance.clone(),
                s.role.to_string(),
                s.status.to_string(),
                s.before.clone(),
                s.action.label(),
                if s.estimate_ms > 0 {
                    secs(s.estimate_ms)
                } else {
                    "-".into()
                },
            ]);
        }
    }
    print!("{}", t.render());
    for c in &p.plan.clusters {
        for n in &c.notes {
            println!("   note: {n}");
        }
    }
    println!(
        "{} instance(s) to rotate, {} skipped; estimate {} at concurrency {} ({} one after the other)",
        p.plan.to_change,
        p.plan.skipped,
        secs(p.plan.estimate.critical_path_ms),
        o.concurrency,
        secs(p.plan.estimate.serial_ms)
    );
    println!("fleet fingerprint {}", p.plan.fingerprint);
}

/// Progress: an overall bar and a line per active cluster, on a terminal only.
struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    lines: Mutex<std::collections::HashMap<String, ProgressBar>>,
}

impl Bars {
    fn new(total: u64) -> Bars {
        // On stdout: stderr carries the log lines, printed above the bars (see LogPipe).
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let overall = multi.add(ProgressBar::new(total));
        overall.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} instances {msg}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        overall.enable_steady_tick(Duration::from_millis(200));
        Bars {
            multi,
            overall,
            lines: Mutex::new(Default::default()),
        }
    }
}

impl RolloutObserver for Bars {
    fn cluster_started(&self, cluster: &str, _steps: usize) {
        let line = self.multi.add(ProgressBar::new_spinner());
        line.set_style(
            ProgressStyle::with_template("  {spinner} {prefix:<12} {msg}")
                .expect("a valid template"),
        );
        line.set_prefix(cluster.to_string());
        line.enable_steady_tick(Duration::from_millis(120));
        if let Ok(mut l) = self.lines.lock() {
            l.insert(cluster.to_string(), line);
        }
    }
    fn step_started(&self, cluster: &str, step: &PlannedStep) {
        if let Some(line) = self.lines.lock().ok().and_then(|l| l.get(cluster).cloned()) {
            line.set_message(format!("{}: {}", step.instance, step.action.label()));
        }
    }
    fn step_finished(&self, _cluster: &str, step: &StepReport) {
        if !step.action.starts_with("switchover") {
            self.overall.inc(1);
        }
        if let StepOutcome::Failed { error } = &step.outcome {
            self.multi
                .println(format!("FAILED {}: {error}", step.instance))
                .ok();
        }
    }
    fn cluster_finished(&self, cluster: &ClusterReport) {
        if let Some(line) = self
            .lines
            .lock()
            .ok()
            .and_then(|mut l| l.remove(&cluster.cluster))
        {
            line.finish_and_clear();
            self.multi.remove(&line);
        }
    }
}

/// While the bars are drawn, the log (stderr) goes through a pipe and is printed above them.
struct LogPipe {
    saved: libc::c_int,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl LogPipe {
    fn start(multi: MultiProgress) -> Option<LogPipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe(2) and dup/dup2(2) on descriptors this process owns.
        unsafe {
            if libc::pipe(fds.as_mut_ptr()) != 0 {
                return None;
            }
            let saved = libc::dup(2);
            if saved < 0 || libc::dup2(fds[1], 2) < 0 {
                libc::close(fds[0]);
                libc::close(fds[1]);
                return None;
            }
            libc::close(fds[1]);
            let read_fd = fds[0];
            let reader = std::thread::spawn(move || {
                use std::io::BufRead;
                use std::os::fd::FromRawFd;
                // SAFETY: the read end is ours alone from here on.
                let file = std::fs::File::from_raw_fd(read_fd);
                for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
                    let _ = multi.println(line);
                }
            });
            Some(LogPipe {
                saved,
                reader: Some(reader),
            })
        }
    }

    fn stop(mut self) {
        // SAFETY: restores the saved descriptor; the pipe's last write end closes with it.
        unsafe {
            libc::dup2(self.saved, 2);
            libc::close(self.saved);
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

fn print_report(r: &CaRotateReport) {
    let ro = &r.rollout;
    let outcome = match ro.outcome {
        RunOutcome::Done => "done".to_string(),
        RunOutcome::Failed => format!("FAILED: {}", ro.message),
        RunOutcome::Paused => ro.message.clone(),
        RunOutcome::NeedsHuman => format!("NEEDS A HUMAN: {}", ro.message),
    };
    println!("CA rotation {} to {}: {outcome}", ro.run_id, ro.target);
    println!("{}", r.health_gate.describe());
    if let Some(t) = &r.trust_deployed {
        println!("trust deployed first: {}", t.join(" + "));
    }
    for c in &r.clients_not_trusting {
        println!(
            "warning: client bundle {} does not trust {}",
            c.display(),
            ro.target
        );
    }
    let mut t = Table::new(&[
        "CLUSTER",
        "INSTANCE",
        "ACTION",
        "CA BEFORE",
        "CA AFTER",
        "MS",
        "OUTCOME",
    ]);
    for c in &ro.clusters {
        for s in &c.steps {
            t.row(vec![
                c.cluster.clone(),
                s.instance.clone(),
                s.action.clone(),
                s.before.clone(),
                s.after.clone().unwrap_or_else(|| "-".into()),
                s.duration_ms.to_string(),
                match &s.outcome {
                    StepOutcome::Done => match s.write_gap_ms {
                        Some(g) => format!("done (write gap {g} ms)"),
                        None => "done".into(),
                    },
                    StepOutcome::AlreadyDone => "already done".into(),
                    StepOutcome::Skipped { reason } => format!("skipped: {reason}"),
                    StepOutcome::Failed { error } => format!("FAILED: {error}"),
                    StepOutcome::NotRun => "not run".into(),
                    StepOutcome::NeedsHuman { reason } => format!("NEEDS A HUMAN: {reason}"),
                },
            ]);
        }
    }
    print!("{}", t.render());
    let mut t = Table::new(&[
        "CLUSTER",
        "STATUS",
        "DURATION",
        "MAX WRITE GAP",
        "FAILED WRITES",
        "LOST",
        "PROBE",
    ]);
    for c in &ro.clusters {
        let (gap, failed, lost, dir) = match &c.probe {
            Some(p) => (
                format!("{:.0} ms", p.max_write_gap_ms),
                p.failed_writes.to_string(),
                p.lost_writes.to_string(),
                p.error
                    .clone()
                    .or_else(|| p.report_dir.clone())
                    .unwrap_or_default(),
            ),
            None => ("-".into(), "-".into(), "-".into(), String::new()),
        };
        t.row(vec![
            c.cluster.clone(),
            format!("{:?}", c.status).to_lowercase(),
            secs(c.duration_ms),
            gap,
            failed,
            lost,
            dir,
        ]);
    }
    print!("{}", t.render());
    let tt = &ro.totals;
    println!(
        "{} rotated, {} already done, {} skipped, {} failed, {} not run, {} switchover(s); {} (estimate {}){}",
        tt.changed,
        tt.already_done,
        tt.skipped,
        tt.failed,
        tt.not_run,
        tt.switchovers,
        secs(tt.duration_ms),
        secs(tt.estimate_ms),
        if r.resumed { "; resumed run" } else { "" }
    );
}

pub async fn rotate(args: CaRotateArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let p = ctx.provider().await?;
    let (req, saved) = match &args.plan_file {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| Exit::new(2, format!("--plan-file {}: {e}", f.display())))?;
            let saved: CaPlan = serde_json::from_str(&text).map_err(|e| {
                Exit::new(
                    2,
                    format!("--plan-file {}: not a saved plan ({e})", f.display()),
                )
            })?;
            if let Some(to) = &args.to {
                if *to != saved.request.to {
                    return Err(Exit::new(
                        2,
                        format!(
                            "--to {to} differs from the saved plan's {}",
                            saved.request.to
                        ),
                    )
                    .into());
                }
            }
            (saved.request.clone(), Some(saved))
        }
        None => (request(&args)?, None),
    };
    let plan = ca_rotate::prepare(&*p, &req).await.map_err(rollout_err)?;
    if let Some(saved) = &saved {
        if saved.plan.fingerprint != plan.plan.fingerprint {
            return Err(Exit::new(
                2,
                format!(
                    "the fleet changed since the plan was made (fingerprint {} then, {} now): \
                     nothing done; make a new plan with --plan",
                    saved.plan.fingerprint, plan.plan.fingerprint
                ),
            )
            .into());
        }
    }
    if args.plan {
        match args.output.output {
            Format::Json => print_json(&plan)?,
            Format::Table => print_plan(&plan),
        }
        return Ok(());
    }
    let journal = ctx.journal(&*p).await?;
    let unfinished = ca_rotate::find_unfinished(&journal, &req)
        .await
        .map_err(rollout_err)?;
    match &unfinished {
        Some(run) => eprintln!(
            "continuing the unfinished run {} (started {}); instances are re-checked on the servers",
            run.id, run.created_at
        ),
        None => {
            if args.output.output == Format::Table {
                print_plan(&plan);
            }
            confirm(
                &format!(
                    "Rotate {} instance(s) to {}?",
                    plan.plan.to_change, plan.ca.id
                ),
                args.yes,
            )?;
        }
    }
    run_plan(
        p,
        &ctx.dir,
        &journal,
        &plan,
        unfinished.map(|r| r.id),
        req.probe,
        args.gate_timeout,
        args.output.output,
        args.drop_old_trust,
    )
    .await
}

/// `dbshift resume <run>` for a CA rotation.
pub async fn resume(run: &str, ctx: &Ctx, yes: bool, format: Format) -> anyhow::Result<()> {
    let p = ctx.provider().await?;
    let journal = ctx.journal(&*p).await?;
    let record = journal
        .run(run)
        .await
        .map_err(|e| Exit::new(2, e.to_string()))?;
    journal
        .check_same_fleet(&record)
        .map_err(|e| Exit::new(2, e.to_string()))?;
    let req = ca_rotate::request_of(&record).map_err(rollout_err)?;
    if record.status != dbshift_ops::journal::RunStatus::Running {
        return Err(Exit::new(
            2,
            format!(
                "run {run} already ended ({}); nothing to resume",
                record.status
            ),
        )
        .into());
    }
    confirm(&format!("Resume {run} (CA rotation to {})?", req.to), yes)?;
    let plan = ca_rotate::prepare(&*p, &req).await.map_err(rollout_err)?;
    let probe = req.probe;
    run_plan(
        p,
        &ctx.dir,
        &journal,
        &plan,
        Some(run.to_string()),
        probe,
        Duration::from_secs(120),
        format,
        false,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn run_plan(
    p: Arc<dyn Provider>,
    dir: &Path,
    journal: &dbshift_ops::journal::Journal,
    plan: &CaPlan,
    resume: Option<String>,
    probe: bool,
    gate_timeout: Duration,
    format: Format,
    drop_old_trust: bool,
) -> anyhow::Result<()> {
    let control = Control::new();
    let ctrl_c = {
        let control = control.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                control.pause();
                eprintln!(
                    "\npausing: the instances in flight finish, nothing new starts (Ctrl-C again to quit now)"
                );
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(1);
                }
            }
        })
    };
    let bars_wanted = format == Format::Table
        && std::io::stdout().is_terminal()
        && std::io::stderr().is_terminal();
    let bars = bars_wanted.then(|| Arc::new(Bars::new(plan.plan.to_change as u64)));
    let pipe = bars.as_ref().and_then(|b| LogPipe::start(b.multi.clone()));
    let observer: Arc<dyn RolloutObserver> = match &bars {
        Some(b) => b.clone(),
        None => Arc::new(LogRolloutObserver),
    };
    let report_dir = dir.join("reports").join(format!(
        "ca-rotate-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    ));
    let opts = ExecuteOptions {
        control,
        observer,
        probe: probe.then_some(ProbeSettings {
            rate: 50.0,
            report_dir: Some(report_dir),
        }),
        gate_timeout,
        resume,
    };
    let result = ca_rotate::execute(p.clone(), journal, plan, opts).await;
    if let Some(b) = &bars {
        b.overall.finish_and_clear();
        let _ = b.multi.clear();
    }
    if let Some(pipe) = pipe {
        pipe.stop();
    }
    ctrl_c.abort();
    let report = result.map_err(|e| {
        let e = dbshift_ops::Error::from(e);
        match crate::refusal(&e) {
            Some(exit) => anyhow::Error::from(exit),
            None => Exit::new(
                3,
                format!(
                    "{e}; the rotation may have stopped part way: check `dbshift ca list` and \
                     `dbshift runs`, then run the same command again"
                ),
            )
            .into(),
        }
    })?;
    let mut report = report;
    if drop_old_trust && report.rollout.outcome == RunOutcome::Done {
        report.trust_final = Some(
            ca_rotate::finalize_trust(&*p, &plan.ca.id)
                .await
                .map_err(rollout_err)
                .context("trusting the new CA alone")?,
        );
    }
    match format {
        Format::Json => print_json(&report)?,
        Format::Table => {
            print_report(&report);
            if let Some(t) = &report.trust_final {
                if t.still_on_other_cas.is_empty() {
                    println!(
                        "trust: every trust point now trusts {} alone",
                        t.trusted.join(", ")
                    );
                } else {
                    println!(
                        "trust: kept {} (instances still on another CA: {})",
                        t.trusted.join(" + "),
                        t.still_on_other_cas.join(", ")
                    );
                }
            }
        }
    }
    let ro = &report.rollout;
    match ro.outcome {
        RunOutcome::Done => Ok(()),
        RunOutcome::Paused => Err(Exit::new(1, ro.message.clone()).into()),
        RunOutcome::Failed => Err(Exit::new(1, ro.message.clone()).into()),
        RunOutcome::NeedsHuman => {
            Err(Exit::new(3, format!("needs a human: {}", ro.message)).into())
        }
    }
}
