//! `dbshift check`, `switchover`, `runs` and `resume`: the switchover core on the command line.
//! Everything here is wiring; the work is in `dbshift_ops::switchover`.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use dbshift_ops::events::{Event, LogObserver, Observer};
use dbshift_ops::guards::{GuardReport, Verdict};
use dbshift_ops::journal::Journal;
use dbshift_ops::switchover::{self, Outcome, SwitchoverRequest};

use crate::output::{print_json, Table};
use crate::provider_cmd::{confirm, Ctx};
use crate::{Exit, Format, OutputArgs};

/// `--max-lag`: a number of transactions (`100`), or seconds behind with a unit (`5s`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MaxLag {
    pub transactions: u64,
    pub seconds: u64,
}

pub(crate) fn parse_max_lag(s: &str) -> Result<MaxLag, String> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(MaxLag {
            transactions: n,
            seconds: 5,
        });
    }
    let d = crate::parse_duration(s)?;
    Ok(MaxLag {
        transactions: 100,
        seconds: d.as_secs().max(1),
    })
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Cluster name, e.g. lab-1.
    pub cluster: String,
    /// The replica that would become the writer (default: every replica of the cluster).
    #[arg(long)]
    pub to: Option<String>,
    /// Most lag allowed: transactions (100) or seconds (5s).
    #[arg(long, default_value = "100", value_parser = parse_max_lag)]
    pub max_lag: MaxLag,
    /// Accept binlog_format=STATEMENT (a warning instead of a refusal): statement-based
    /// replication of non-deterministic statements can differ between servers, more so across
    /// versions (an upgrade blue/green). ROW and MIXED need no flag.
    #[arg(long)]
    pub allow_statement_binlog: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct SwitchoverArgs {
    /// Cluster name, e.g. lab-1.
    pub cluster: String,
    /// The replica that becomes the writer.
    #[arg(long)]
    pub to: String,
    /// Most lag allowed by the guards: transactions (100) or seconds (5s).
    #[arg(long, default_value = "100", value_parser = parse_max_lag)]
    pub max_lag: MaxLag,
    /// Accept binlog_format=STATEMENT (a warning instead of a refusal): statement-based
    /// replication of non-deterministic statements can differ between servers, more so across
    /// versions (an upgrade blue/green). ROW and MIXED need no flag.
    #[arg(long)]
    pub allow_statement_binlog: bool,
    /// Longest the new writer may take to apply the old one's last transaction, once writes
    /// are fenced; past it the switchover rolls back.
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    pub timeout: Duration,
    /// Bound of every statement on a server (STOP SLAVE, CHANGE MASTER, KILL...): one that
    /// waits longer (a replica whose SQL thread waits on a lock) is cancelled and reported.
    #[arg(long, default_value = "30s", value_parser = crate::parse_duration)]
    pub statement_timeout: Duration,
    /// A command run after promotion with the old and new endpoints as $1 and $2 (and
    /// DBSHIFT_CLUSTER, DBSHIFT_OLD_ENDPOINT, DBSHIFT_NEW_ENDPOINT); repeatable.
    #[arg(long = "hook")]
    pub hooks: Vec<String>,
    /// Run the downtime probe on the cluster name through the switchover and report what
    /// clients saw (outages, longest write gap, lost-write audit, chart).
    #[arg(long)]
    pub probe: bool,
    /// The probe's writes per second.
    #[arg(long, default_value_t = 200.0, requires = "probe")]
    pub probe_rate: f64,
    /// Where the probe's report goes (default: <lab dir>/reports/<run>).
    #[arg(long, requires = "probe")]
    pub report_dir: Option<std::path::PathBuf>,
    /// Print what would be done, change nothing.
    #[arg(long)]
    pub plan: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Forwards the switchover's step events to the probe's chart, and to the log.
struct ProbeObserver(dbshift_probe::Marker);

impl Observer for ProbeObserver {
    fn event(&self, event: &Event) {
        tracing::info!("{event}");
        // Step starts and the promotion: enough to read the chart, not so many it clutters.
        match event {
            Event::Promoted { .. } => self.0.mark("promoted"),
            Event::StepStarted { step, .. } => self.0.mark(step.as_str()),
            Event::RollbackStarted => self.0.mark("rollback"),
            Event::RenameStarted { from, instance, to } => {
                self.0.mark(format!("rename {from} ({instance}) to {to}"))
            }
            _ => {}
        }
    }
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// The run id, as `dbshift runs` lists it.
    pub run: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The `--plan` of a switch: its steps under `header`, or the plan as JSON.
pub(crate) fn print_plan(
    plan: &switchover::Plan,
    header: &str,
    format: Format,
) -> anyhow::Result<()> {
    match format {
        Format::Json => print_json(plan)?,
        Format::Table => {
            println!("{header}");
            for (i, s) in plan.steps.iter().enumerate() {
                println!("{:>2}. {s}", i + 1);
            }
        }
    }
    Ok(())
}

/// With `enabled` (`--probe`), start the downtime probe on `target` (a cluster name, followed
/// through redirects), its report in `report_dir` or `<lab dir>/reports/<label>-<time>`; half
/// a second of baseline is taken before it returns, so the chart shows normal latency first.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn start_probe(
    enabled: bool,
    provider: std::sync::Arc<dyn dbshift_provider::Provider>,
    dir: &Path,
    target: &str,
    label: &str,
    rate: f64,
    report_dir: Option<std::path::PathBuf>,
) -> anyhow::Result<Option<dbshift_probe::ProbeHandle>> {
    if !enabled {
        return Ok(None);
    }
    let report_dir = report_dir.unwrap_or_else(|| {
        dir.join("reports").join(format!(
            "{label}-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        ))
    });
    let config = dbshift_probe::ProbeConfig {
        rate,
        report_dir: Some(report_dir),
        ..Default::default()
    };
    let target = dbshift_probe::TargetResolver::provider(provider, target.to_string());
    let handle = dbshift_probe::Probe::start(config, target)
        .await
        .context("starting the probe")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(Some(handle))
}

/// The observer of a run: the probe's chart marks when there is a probe, the log otherwise.
pub(crate) fn observer_for(probe: Option<&dbshift_probe::ProbeHandle>) -> Box<dyn Observer> {
    match probe {
        Some(h) => Box::new(ProbeObserver(h.marker())),
        None => Box::new(LogObserver),
    }
}

/// Stop the probe half a second after the run (so the chart shows latency settle), with its
/// audit.
pub(crate) async fn stop_probe(
    probe: Option<dbshift_probe::ProbeHandle>,
) -> anyhow::Result<Option<dbshift_probe::Summary>> {
    match probe {
        Some(h) => {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok(Some(h.stop().await.context("stopping the probe")?))
        }
        None => Ok(None),
    }
}

pub(crate) fn print_guards(report: &GuardReport) {
    println!("{} -> {}", report.old_writer, report.new_writer);
    let mut t = Table::new(&["GUARD", "VERDICT", "REASON"]);
    for r in &report.results {
        t.row(vec![
            r.name.to_string(),
            r.verdict.to_string(),
            r.reason.clone(),
        ]);
    }
    print!("{}", t.render());
}

pub async fn check(args: CheckArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let lab = ctx.provider().await?;
    let targets: Vec<String> = match &args.to {
        Some(t) => vec![t.clone()],
        None => {
            let clusters = lab.list_clusters().await?;
            let c = clusters
                .iter()
                .find(|c| c.name == args.cluster)
                .ok_or_else(|| {
                    Exit::new(
                        2,
                        format!(
                            "unknown cluster {:?}; known: {}",
                            args.cluster,
                            clusters
                                .iter()
                                .map(|c| c.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
            c.instances
                .iter()
                .filter(|i| **i != c.writer)
                .cloned()
                .collect()
        }
    };
    let mut reports = Vec::new();
    for to in targets {
        let req = SwitchoverRequest {
            cluster: args.cluster.clone(),
            to,
            max_lag_transactions: args.max_lag.transactions,
            max_lag_seconds: args.max_lag.seconds,
            timeout: Duration::from_secs(10),
            hooks: Vec::new(),
            allow_statement_binlog: args.allow_statement_binlog,
        };
        let params = switchover::prepare(&*lab, &req).await.map_err(bad_input)?;
        reports.push(switchover::check(&*lab, &params).await?);
    }
    match args.output.output {
        Format::Json => print_json(&reports)?,
        Format::Table => {
            for r in &reports {
                print_guards(r);
                println!();
            }
        }
    }
    if reports
        .iter()
        .any(|r| r.results.iter().any(|g| g.verdict == Verdict::Fail))
    {
        return Err(Exit::new(1, "a guard failed: a switchover would be refused").into());
    }
    Ok(())
}

/// An error once a run has started (the journal unwritable, the control plane gone): the
/// servers may be part way through, so it is "needs a human" (3), never a plain failure.
/// Another command holding the cluster is a refusal before anything ran (1).
pub(crate) fn stopped_part_way(e: impl Into<dbshift_ops::Error>) -> anyhow::Error {
    let e = e.into();
    if let Some(exit) = crate::refusal(&e) {
        return exit.into();
    }
    Exit::new(
        3,
        format!(
            "{e}; the switchover may have stopped part way: check `dbshift inventory` and \
             `dbshift runs`, then `dbshift resume <run>`"
        ),
    )
    .into()
}

pub(crate) fn bad_input(e: switchover::SwitchoverError) -> anyhow::Error {
    let e = dbshift_ops::Error::from(e);
    match crate::refusal(&e) {
        Some(exit) => exit.into(),
        None => e.into(),
    }
}

pub(crate) fn report_outcome(
    outcome: &Outcome,
    probe: Option<&dbshift_probe::Summary>,
    format: Format,
) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            let mut v = serde_json::to_value(outcome)?;
            if let (Some(p), Some(obj)) = (probe, v.as_object_mut()) {
                obj.insert("probe".into(), serde_json::to_value(p)?);
            }
            print_json(&v)?
        }
        Format::Table => match outcome {
            Outcome::Done(r) => {
                println!(
                    "switchover {}: {} is the writer of {} (was {})",
                    r.run_id, r.new_writer, r.cluster, r.old_writer
                );
                if let Some(gap) = r.write_gap_ms {
                    println!("writes paused for {gap} ms (fence to promotion)");
                }
                if let Some(p) = &r.final_position {
                    println!("last transaction of the old writer: {p}");
                }
                let mut t = Table::new(&["STEP", "MS"]);
                for (s, ms) in &r.step_ms {
                    t.row(vec![s.clone(), ms.to_string()]);
                }
                print!("{}", t.render());
            }
            Outcome::Refused(report) => {
                print_guards(report);
            }
            Outcome::RolledBack { reason } => println!("{reason}"),
            Outcome::ClusterChanged { reason, .. } => println!("stopped: {reason}"),
            Outcome::NeedsHuman { reason } => println!("needs a human: {reason}"),
        },
    }
    if let (Some(p), Format::Table) = (probe, format) {
        println!(
            "probe: longest write gap {:.0} ms, {} outage(s), {} lost write(s), {} indeterminate; report in {}",
            p.max_write_gap_ms,
            p.outages.len(),
            p.lost_writes.len(),
            p.indeterminate_writes,
            p.report_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "-".into())
        );
        for o in &p.outages {
            println!("  {:?} outage: {:.0} ms", o.kind, o.duration_ms);
        }
    }
    if let Some(p) = probe.filter(|p| !p.lost_writes.is_empty()) {
        return Err(Exit::new(
            3,
            format!(
                "the probe's audit found acknowledged writes missing on the new writer: seq {:?}",
                p.lost_writes
            ),
        )
        .into());
    }
    match outcome {
        Outcome::Done(_) => Ok(()),
        Outcome::Refused(r) => {
            Err(Exit::new(1, format!("refused, nothing changed: {}", r.failure_text())).into())
        }
        // The reason says what was put back, or that nothing had been changed.
        Outcome::RolledBack { reason } => Err(Exit::new(1, reason.clone()).into()),
        Outcome::ClusterChanged { reason, changed } => {
            Err(Exit::new(if *changed { 3 } else { 1 }, format!("stopped: {reason}")).into())
        }
        Outcome::NeedsHuman { reason } => {
            Err(Exit::new(3, format!("needs a human: {reason}")).into())
        }
    }
}

pub async fn switchover(args: SwitchoverArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let lab = ctx.provider().await?;
    let req = SwitchoverRequest {
        cluster: args.cluster.clone(),
        to: args.to.clone(),
        max_lag_transactions: args.max_lag.transactions,
        max_lag_seconds: args.max_lag.seconds,
        timeout: args.timeout,
        hooks: args.hooks.clone(),
        allow_statement_binlog: args.allow_statement_binlog,
    };
    let mut params = switchover::prepare(&*lab, &req).await.map_err(bad_input)?;
    if args.statement_timeout.is_zero() {
        return Err(Exit::new(2, "--statement-timeout must be more than zero").into());
    }
    params.statement_timeout_ms = args.statement_timeout.as_millis() as u64;
    let plan = switchover::plan(&params);
    if args.plan {
        let header = format!(
            "switchover of {}: {} -> {}",
            params.cluster, params.from, params.to
        );
        return print_plan(&plan, &header, args.output.output);
    }
    confirm(
        &format!(
            "Move the writer of {} from {} to {}?",
            params.cluster, params.from, params.to
        ),
        args.yes,
    )?;
    let journal = ctx.journal(&*lab).await?;
    let probe = start_probe(
        args.probe,
        lab.clone(),
        &ctx.dir,
        &params.cluster,
        &format!("switchover-{}", params.cluster),
        args.probe_rate,
        args.report_dir.clone(),
    )
    .await?;
    let observer = observer_for(probe.as_ref());
    let result = switchover::run(&*lab, &journal, params, observer.as_ref()).await;
    let summary = stop_probe(probe).await?;
    let (_run, outcome) = result.map_err(stopped_part_way)?;
    journal.close().await;
    report_outcome(&outcome, summary.as_ref(), args.output.output)
}

pub async fn runs(output: OutputArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let dir = &ctx.dir;
    if !dir.join("journal.sqlite").exists() {
        match output.output {
            Format::Json => println!("[]"),
            Format::Table => println!("no runs yet"),
        }
        return Ok(());
    }
    // Read only: `runs` must work on a full disk, when it is needed most.
    let path = dir.join("journal.sqlite");
    let journal = Journal::open_read_only(&path)
        .await
        .with_context(|| format!("reading the journal {}", path.display()))?;
    let runs = journal.runs().await?;
    match output.output {
        Format::Json => print_json(&runs)?,
        Format::Table => {
            let mut t = Table::new(&[
                "RUN", "KIND", "TARGET", "STATUS", "STARTED", "BY", "MESSAGE",
            ]);
            for r in &runs {
                t.row(vec![
                    r.id.clone(),
                    r.kind.clone(),
                    r.target.clone(),
                    r.status.to_string(),
                    r.created_at.clone(),
                    r.started_by
                        .as_ref()
                        .map(|b| format!("{}@{}", b.user, b.host))
                        .unwrap_or_else(|| "-".into()),
                    r.message.clone().unwrap_or_default(),
                ]);
            }
            print!("{}", t.render());
        }
    }
    journal.close().await;
    Ok(())
}

pub async fn resume(args: ResumeArgs, ctx: &Ctx) -> anyhow::Result<()> {
    if !ctx.dir.join("journal.sqlite").exists() {
        return Err(Exit::new(
            2,
            format!("no run {:?}: the lab has no journal yet", args.run),
        )
        .into());
    }
    // The provider of the run's fleet (`--provider aws` for a run on AWS); a lab that is gone
    // (its state deleted) fails here: its runs cannot be resumed.
    let provider = ctx
        .provider()
        .await
        .context("opening the fleet the run acted on")?;
    let journal = ctx.journal(&*provider).await?;
    let record = match journal.run(&args.run).await {
        Ok(r) => r,
        Err(e) => return Err(Exit::new(2, e.to_string()).into()),
    };
    if record.kind == dbshift_ops::ca_rotate::RUN_KIND {
        journal.close().await;
        return crate::ca_cmd::resume(&args.run, ctx, args.yes, args.output.output).await;
    }
    if record.kind == dbshift_ops::failover::RUN_KIND {
        journal.close().await;
        return Err(Exit::new(
            2,
            format!(
                "{} is an unplanned failover: run `dbshift failover {} --yes` again; it \
                 continues this run if it was interrupted",
                record.id, record.target
            ),
        )
        .into());
    }
    confirm(
        &format!(
            "Resume {} ({} of {})?",
            record.id, record.kind, record.target
        ),
        args.yes,
    )?;
    let outcome = switchover::resume(&*provider, &journal, &args.run, &LogObserver)
        .await
        .map_err(stopped_part_way)?;
    journal.close().await;
    report_outcome(&outcome, None, args.output.output)
}
