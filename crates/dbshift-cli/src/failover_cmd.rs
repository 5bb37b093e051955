//! `dbshift failover`, `watch` and `rejoin`: unplanned failover on the command line. Wiring
//! only; the work is in `dbshift_ops::{failover, watch, rejoin}`.

use std::time::Duration;

use clap::Args;
use dbshift_ops::failover::{self, FailoverError, FailoverOutcome, FailoverRequest};
use dbshift_ops::rejoin::{self, RejoinError, RejoinOutcome};
use dbshift_ops::watch::{self, WatchEvent, WatchOptions, WatchSink};

use crate::output::{print_json, Table};
use crate::provider_cmd::{confirm, Ctx};
use crate::switchover_cmd::{observer_for, report_outcome, start_probe, stop_probe};
use crate::{parse_duration, Exit, Format, OutputArgs};

#[derive(Args, Debug)]
pub struct FailoverArgs {
    /// Cluster name, e.g. lab-1.
    pub cluster: String,
    /// The replica to promote (default: the most advanced one). Refused if it is behind
    /// another replica or its replication is broken.
    #[arg(long)]
    pub to: Option<String>,
    /// How long dbshift tries to reach the writer before it counts as dead.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub writer_timeout: Duration,
    /// Bound of the new writer's relay log apply (and of the planned switchover's wait).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Run the downtime probe through the cluster name during the failover. Only when the
    /// writer answers (the probe's preflight writes to it): for a dead writer, start
    /// `dbshift probe --target <cluster>` before the failure to measure what clients saw.
    #[arg(long)]
    pub probe: bool,
    /// Probe attempts per second.
    #[arg(long, default_value_t = 50.0)]
    pub probe_rate: f64,
    /// Print what would happen (planned or unplanned, which replica) and change nothing.
    #[arg(long)]
    pub plan: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Cluster name, e.g. lab-1.
    pub cluster: String,
    /// Fail over when the writer is dead (without it: report only).
    #[arg(long)]
    pub auto_failover: bool,
    /// Time between two looks at the cluster (also the writer's connect bound).
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub interval: Duration,
    /// After a failover, none other for this long (anti-flapping).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub block: Duration,
    /// Looks in a row that must find the writer dead before a failover.
    #[arg(long, default_value_t = 2)]
    pub confirmations: u32,
    /// Make a former writer that comes back a replica of the writer (`dbshift rejoin`),
    /// unless it holds errant transactions (then reported once, left read-only).
    #[arg(long)]
    pub auto_rejoin: bool,
    /// Output: table prints one line per event, json one JSON object per line.
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct RejoinArgs {
    /// The former writer, e.g. lab-1-1.
    pub instance: String,
    /// How long to wait for it to start when it is stopped.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print what would happen and change nothing.
    #[arg(long)]
    pub plan: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

fn failover_error(e: FailoverError) -> anyhow::Error {
    let e = dbshift_ops::Error::from(e);
    if let Some(exit) = crate::refusal(&e) {
        return exit.into();
    }
    match e {
        dbshift_ops::Error::Failover(FailoverError::Refused(m)) => {
            Exit::new(1, format!("refused, nothing changed: {m}")).into()
        }
        other => Exit::new(
            3,
            format!("{other}; the failover may have stopped part way: check `dbshift inventory` and `dbshift runs`"),
        )
        .into(),
    }
}

fn print_candidates(a: &failover::Assessment) {
    println!(
        "writer {}: {}",
        a.writer,
        if a.writer_reachable {
            "answers".to_string()
        } else {
            format!("unreachable ({})", a.writer_error.as_deref().unwrap_or("?"))
        }
    );
    print_candidate_table(&a.replicas);
}

fn print_candidate_table(c: &[failover::Candidate]) {
    let mut t = Table::new(&[
        "REPLICA",
        "IO",
        "GTID_IO_POS",
        "GTID_SLAVE_POS",
        "BACKLOG",
        "FIT",
    ]);
    for c in c {
        t.row(vec![
            c.id.clone(),
            c.io_running
                .map(|s| format!("{s:?}"))
                .unwrap_or_else(|| "-".into()),
            c.gtid_io_pos
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            c.gtid_slave_pos
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            c.relay_backlog.to_string(),
            c.unfit.clone().unwrap_or_else(|| "yes".into()),
        ]);
    }
    print!("{}", t.render());
}

pub async fn failover(args: FailoverArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let lab = ctx.provider().await?;
    let mut req = FailoverRequest::new(&args.cluster);
    req.to = args.to.clone();
    req.writer_timeout = args.writer_timeout;
    req.timeout = args.timeout;
    let plan = failover::plan(&*lab, &req).await.map_err(failover_error)?;
    if args.plan {
        match args.output.output {
            Format::Json => print_json(&plan)?,
            Format::Table => {
                print_candidates(&plan.assessment);
                println!(
                    "{} failover of {}: {} -> {}",
                    plan.mode, args.cluster, plan.assessment.writer, plan.new_writer
                );
                for (i, s) in plan.steps.iter().enumerate() {
                    println!("{:>2}. {s}", i + 1);
                }
            }
        }
        return Ok(());
    }
    confirm(
        &format!(
            "{} failover of {}: promote {} ({} {})?",
            plan.mode,
            args.cluster,
            plan.new_writer,
            plan.assessment.writer,
            if plan.assessment.writer_reachable {
                "answers"
            } else {
                "is unreachable and will be stopped"
            }
        ),
        args.yes,
    )?;
    let journal = ctx.journal(&*lab).await?;
    if args.probe && !plan.assessment.writer_reachable {
        eprintln!(
            "note: no probe: its preflight needs a writer that answers; start `dbshift probe \
             --target {}` before a failure to measure it",
            args.cluster
        );
    }
    let probe = start_probe(
        args.probe && plan.assessment.writer_reachable,
        lab.clone(),
        &ctx.dir,
        &args.cluster,
        &format!("failover-{}", args.cluster),
        args.probe_rate,
        None,
    )
    .await?;
    let observer = observer_for(probe.as_ref());
    let result = failover::run(&*lab, &journal, &req, observer.as_ref()).await;
    let summary = stop_probe(probe).await?;
    journal.close().await;
    let outcome = result.map_err(failover_error)?;
    report(&outcome, summary.as_ref(), args.output.output)
}

/// Print a failover's outcome; the probe's lost writes are listed, never hidden.
pub(crate) fn report(
    outcome: &FailoverOutcome,
    probe: Option<&dbshift_probe::Summary>,
    format: Format,
) -> anyhow::Result<()> {
    if let FailoverOutcome::Planned { outcome, .. } = outcome {
        return report_outcome(outcome, probe, format);
    }
    match format {
        Format::Json => {
            let mut v = serde_json::to_value(outcome)?;
            if let (Some(p), Some(obj)) = (probe, v.as_object_mut()) {
                obj.insert("probe".into(), serde_json::to_value(p)?);
            }
            print_json(&v)?;
        }
        Format::Table => match outcome {
            FailoverOutcome::Unplanned(r) => {
                println!(
                    "failover {}: {} is the writer of {} (was {}, fenced: stopped){}",
                    r.run_id,
                    r.new_writer,
                    r.cluster,
                    r.old_writer,
                    if r.resumed {
                        "; continued the run interrupted part way"
                    } else {
                        ""
                    }
                );
                println!(
                    "detection {} ms, fencing {} ms, promotion {} ms, re-pointing {} ms; writes \
                     impossible for {} ms from the fence",
                    r.phases.detection_ms,
                    r.phases.fencing_ms,
                    r.phases.promotion_ms,
                    r.phases.repointing_ms,
                    r.phases.write_gap_ms
                );
                println!(
                    "promoted at {}; re-pointed: {}",
                    r.promoted_at,
                    r.repointed.join(", ")
                );
                print_candidate_table(&r.candidates);
                for w in &r.warnings {
                    println!("warning: {w}");
                }
            }
            FailoverOutcome::NeedsHuman { reason, .. } => println!("needs a human: {reason}"),
            FailoverOutcome::Planned { .. } => unreachable!("handled above"),
        },
    }
    if let (Some(p), Format::Table) = (probe, format) {
        println!(
            "probe: longest write gap {:.0} ms, {} lost acknowledged write(s){}, {} indeterminate",
            p.max_write_gap_ms,
            p.lost_writes.len(),
            if p.lost_writes.is_empty() {
                String::new()
            } else {
                format!(" (seq {:?})", p.lost_writes)
            },
            p.indeterminate_writes
        );
    }
    if let Some(p) = probe.filter(|p| !p.lost_writes.is_empty()) {
        return Err(Exit::new(
            3,
            format!(
                "acknowledged writes lost in the failover (asynchronous replication: they never \
                 left the old writer, where `dbshift rejoin` reports them as errant): probe seq {:?}",
                p.lost_writes
            ),
        )
        .into());
    }
    match outcome {
        FailoverOutcome::NeedsHuman { reason, .. } => {
            Err(Exit::new(3, format!("needs a human: {reason}")).into())
        }
        FailoverOutcome::Unplanned(r) if !r.warnings.is_empty() => Err(Exit::new(
            3,
            format!(
                "the writer moved to {}, but: {}",
                r.new_writer,
                r.warnings.join("; ")
            ),
        )
        .into()),
        _ => Ok(()),
    }
}

struct PrintSink(Format);

impl WatchSink for PrintSink {
    fn saw(&self, event: &WatchEvent) {
        // UTC time of day, as the journal's stamps.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let (secs, milli) = (now.as_secs() % 86_400, now.subsec_millis());
        let stamp = format!(
            "{:02}:{:02}:{:02}.{milli:03}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
        match self.0 {
            Format::Json => {
                let mut v = serde_json::to_value(event).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("at".into(), stamp.into());
                }
                println!("{v}");
            }
            Format::Table => {
                let text = match event {
                    WatchEvent::Started { cluster, writer } => format!("watching {cluster}: writer {writer}"),
                    WatchEvent::WriterUnreachable { writer, error, replicas_agree } => format!(
                        "writer {writer} unreachable ({error}); replicas {}",
                        if *replicas_agree { "agree: their IO threads lost it" } else { "still see it (or none answers)" }
                    ),
                    WatchEvent::WriterBack { writer } => format!("writer {writer} answers again"),
                    WatchEvent::SemiSyncFellBack { writer } => format!(
                        "semi-sync on {writer} fell back to asynchronous (Rpl_semi_sync_master_status=OFF): a failover now may lose acknowledged writes"
                    ),
                    WatchEvent::SemiSyncBack { writer } => format!("semi-sync on {writer} is active again"),
                    WatchEvent::ReplicaBroken { replica, error } => format!("replica {replica}: {error}"),
                    WatchEvent::FailoverStarted { writer, detection_ms, evidence } => {
                        format!("failing over from {writer} (dead, detected in {detection_ms} ms; {evidence})")
                    }
                    WatchEvent::FailoverDone { outcome } => match outcome.as_ref() {
                        FailoverOutcome::Unplanned(r) => format!(
                            "failover {}: {} -> {}; detection {} ms, fencing {} ms, promotion {} ms, re-pointing {} ms{}",
                            r.run_id, r.old_writer, r.new_writer, r.phases.detection_ms, r.phases.fencing_ms,
                            r.phases.promotion_ms, r.phases.repointing_ms,
                            if r.warnings.is_empty() { String::new() } else { format!("; warnings: {}", r.warnings.join("; ")) }
                        ),
                        FailoverOutcome::NeedsHuman { run_id, reason } => format!("failover {run_id} needs a human: {reason}"),
                        FailoverOutcome::Planned { run_id, outcome } => format!("switchover {run_id}: {:?}", outcome.exit_code()),
                    },
                    WatchEvent::FailoverFailed { error } => format!("failover refused or failed: {error}"),
                    WatchEvent::Rejoined { instance, writer } => format!("{instance} came back: now a replica of {writer}"),
                    WatchEvent::RejoinRefused { instance, reason } => format!("{instance} came back and was not rejoined: {reason}"),
                    WatchEvent::LookFailed { error } => format!("could not look at the cluster: {error}"),
                    WatchEvent::Blocked { writer, remaining_ms } => format!(
                        "writer {writer} dead, but a failover ran recently: blocked for {remaining_ms} ms more"
                    ),
                    WatchEvent::Stopped => "stopped".into(),
                };
                println!("{stamp} {text}");
            }
        }
    }
}

pub async fn watch(args: WatchArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let lab = ctx.provider().await?;
    let journal = ctx.journal(&*lab).await?;
    let mut opts = WatchOptions::new(&args.cluster);
    opts.interval = args.interval;
    opts.block = args.block;
    opts.auto_failover = args.auto_failover;
    opts.confirmations = args.confirmations;
    opts.auto_rejoin = args.auto_rejoin;
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = tx.send(true);
        }
    });
    let sink = PrintSink(args.output.output);
    let done = watch::watch(&*lab, &journal, &opts, &sink, rx)
        .await
        .map_err(failover_error)?;
    journal.close().await;
    if done.iter().any(|o| o.exit_code() != 0) {
        return Err(Exit::new(
            3,
            "a failover did not finish cleanly: see the events above and `dbshift runs`",
        )
        .into());
    }
    Ok(())
}

fn rejoin_error(e: RejoinError) -> anyhow::Error {
    let e = dbshift_ops::Error::from(e);
    if let Some(exit) = crate::refusal(&e) {
        return exit.into();
    }
    match e {
        dbshift_ops::Error::Rejoin(RejoinError::Provider(p)) => {
            anyhow::Error::from(p).context("rejoin")
        }
        other => Exit::new(
            3,
            format!("{other}; check the instance with `dbshift inventory`"),
        )
        .into(),
    }
}

pub async fn rejoin(args: RejoinArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let lab = ctx.provider().await?;
    let inst = lab.describe_instance(&args.instance).await?;
    if args.plan {
        println!(
            "rejoin {} ({}): start it if stopped (read-only), compare its gtid_binlog_state with \
             its cluster's writer; contained: replica of the writer (MASTER_DEMOTE_TO_SLAVE=1), \
             events disabled; errant transactions: reported, left read-only and not replicating",
            args.instance, inst.status
        );
        return Ok(());
    }
    confirm(
        &format!("Make {} a replica of its cluster's writer?", args.instance),
        args.yes,
    )?;
    let journal = ctx.journal(&*lab).await?;
    let outcome = rejoin::rejoin(&*lab, &journal, &args.instance, args.timeout)
        .await
        .map_err(rejoin_error)?;
    journal.close().await;
    match args.output.output {
        Format::Json => print_json(&outcome)?,
        Format::Table => match &outcome {
            RejoinOutcome::Rejoined {
                instance,
                writer,
                started,
                already,
                ..
            } => println!(
                "{instance} {} a replica of {writer}{}",
                if *already { "was already" } else { "is now" },
                if *started {
                    " (started read-only first)"
                } else {
                    ""
                }
            ),
            RejoinOutcome::Errant {
                instance,
                writer,
                errant,
                instance_binlog_state,
                writer_binlog_state,
                ..
            } => {
                println!(
                    "{instance} holds transactions {writer} never had: {}\n  {instance} gtid_binlog_state {instance_binlog_state}\n  {writer} gtid_binlog_state {writer_binlog_state}",
                    errant.join(", ")
                );
            }
        },
    }
    if let RejoinOutcome::Errant {
        instance, errant, ..
    } = &outcome
    {
        return Err(Exit::new(
            3,
            format!(
                "{instance} was not rejoined: errant transactions {} (left read-only, not replicating). \
                 Replay them on the writer or rebuild {instance}",
                errant.join(", ")
            ),
        )
        .into());
    }
    Ok(())
}

#[derive(clap::Subcommand, Debug)]
pub enum ReplicaCommand {
    /// Add replicas to a cluster from a hot snapshot of one of its healthy replicas (or its
    /// writer), each replicating from the writer from exactly the snapshot's position.
    Add {
        /// Cluster name, e.g. lab-1.
        cluster: String,
        /// How many replicas to add.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Print what would happen and change nothing.
        #[arg(long)]
        plan: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// `replica add` builds servers of the local lab: a build without it says which feature to
/// build with.
#[cfg(not(feature = "local"))]
pub async fn replica(_cmd: ReplicaCommand, ctx: &Ctx) -> anyhow::Result<()> {
    ctx.require_local("replica add")
}

#[cfg(feature = "local")]
pub async fn replica(cmd: ReplicaCommand, ctx: &Ctx) -> anyhow::Result<()> {
    use anyhow::Context;
    let ReplicaCommand::Add {
        cluster,
        count,
        plan,
        yes,
        output,
    } = cmd;
    let lab = ctx.lab("replica add")?;
    let writer = lab
        .fresh()?
        .cluster(&cluster)
        .map(|c| c.writer.clone())
        .ok_or_else(|| {
            Exit::new(
                2,
                format!(
                    "unknown cluster {cluster:?}; known: {}",
                    lab.state().known_names()
                ),
            )
        })?;
    if plan {
        println!(
            "add {count} replica(s) to {cluster}: hot snapshot (mariadb-backup --slave-info) of a \
             healthy replica (else {writer}), copied to new instances with fresh server_ids and \
             ports, each replicating from {writer} by GTID from the snapshot's exact position"
        );
        return Ok(());
    }
    confirm(&format!("Add {count} replica(s) to {cluster}?"), yes)?;
    let started = std::time::Instant::now();
    let added = lab
        .add_replicas(&cluster, count)
        .await
        .with_context(|| format!("adding replicas to {cluster}"))?;
    match output.output {
        Format::Json => print_json(&added)?,
        Format::Table => println!(
            "{} added to {} in {:.1} s: snapshot of {}, replicating from {writer} from {}",
            added.instances.join(", "),
            added.cluster,
            started.elapsed().as_secs_f64(),
            added.snapshot_of,
            added.position
        ),
    }
    Ok(())
}
