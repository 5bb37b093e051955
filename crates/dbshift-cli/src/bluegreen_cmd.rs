//! `dbshift bluegreen ...`: wiring of `dbshift_ops::bluegreen` (and the switchover core it
//! uses) to the command line.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use dbshift_ops::bluegreen::{self, BlueGreenError, SwitchOptions};
use dbshift_ops::switchover;
use dbshift_provider::{Deployment, GreenSpec, Provider, Side};

use crate::output::{print_json, Table};
use crate::provider_cmd::{confirm, Ctx};
use crate::switchover_cmd::{
    observer_for, print_guards, print_plan, report_outcome, start_probe, stop_probe,
    stopped_part_way, MaxLag,
};
use crate::{Exit, Format, OutputArgs};

#[derive(Subcommand, Debug)]
pub enum BlueGreenCommand {
    /// Build green from a hot snapshot of a blue replica (the writer when there is none): a
    /// writer plus replicas, fresh server_ids, blue's GTID domain, events disabled; green's
    /// writer replicates from blue's writer from the writer's coordinates the backup recorded.
    Create(CreateArgs),
    /// Both sides: positions, lag, health, and the guards of the next switch.
    Status(NameArgs),
    /// Chunked checksums of every user table on both sides at the same GTID position (blue
    /// under a consistent snapshot, green stopped exactly there); exit 1 on a difference.
    Verify(VerifyArgs),
    /// Make green serve, through the switchover core; blue keeps replicating from green.
    Switchover(SwitchArgs),
    /// Make blue serve again: the switchover core backwards over the reverse replication.
    Rollback(SwitchArgs),
    /// Remove the side that does not serve (green takes blue's cluster name if it serves).
    Cleanup(CleanupArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Blue: the cluster to build green from, e.g. lab-1.
    #[arg(long)]
    pub source: String,
    /// The deployment's name, also green's cluster name (default: <source>-green).
    #[arg(long)]
    pub name: Option<String>,
    /// Data-at-rest encryption on green (a key file of its own; tables, redo, binlog, Aria,
    /// temporary files). On AWS: blue's snapshot is copied with the KMS key
    /// DBSHIFT_AWS_KMS_KEY (default alias/aws/rds) and green restored from the copy.
    #[arg(long)]
    pub encrypt: bool,
    /// Another mariadbd binary for green (mariadb-upgrade is run on it).
    #[arg(long)]
    pub engine_binary: Option<PathBuf>,
    /// Green's replicas besides its writer.
    #[arg(long, default_value_t = 1)]
    pub replicas: u32,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct NameArgs {
    /// The deployment (default: the only one).
    pub name: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The deployment (default: the only one).
    pub name: Option<String>,
    /// Rows per chunk.
    #[arg(long, default_value_t = dbshift_ops::verify::VerifyOptions::default().chunk_rows)]
    pub chunk_rows: u64,
    /// Longest the standby side may take to reach blue's snapshot position.
    #[arg(long, default_value = "60s", value_parser = crate::parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct SwitchArgs {
    /// The deployment (default: the only one).
    pub name: Option<String>,
    /// Most lag allowed by the guards: transactions (100) or seconds (5s).
    #[arg(long, default_value = "100", value_parser = crate::switchover_cmd::parse_max_lag)]
    pub max_lag: MaxLag,
    /// Accept binlog_format=STATEMENT (a warning instead of a refusal): statement-based
    /// replication of non-deterministic statements can differ between servers, more so across
    /// versions (an upgrade blue/green). ROW and MIXED need no flag.
    #[arg(long)]
    pub allow_statement_binlog: bool,
    /// Longest the new writer may take to apply the old one's last transaction once writes
    /// are fenced; past it the switch rolls back.
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    pub timeout: Duration,
    /// A command run after promotion with the old and new endpoints as $1 and $2; repeatable.
    #[arg(long = "hook")]
    pub hooks: Vec<String>,
    /// How clients move: `name` (the provider moves blue's name: on AWS the rename swap,
    /// blue renamed away then green to blue's name, minutes plus DNS caches), `proxy` (the
    /// dbshift proxy in front, milliseconds), `none` (the hooks tell clients). Default: proxy
    /// if one is in front of blue's name, else name.
    #[arg(long, value_parser = parse_redirect)]
    pub redirect: Option<switchover::Redirect>,
    /// Run the downtime probe on blue's cluster name through the switch.
    #[arg(long)]
    pub probe: bool,
    /// The probe's writes per second.
    #[arg(long, default_value_t = 200.0, requires = "probe")]
    pub probe_rate: f64,
    /// Where the probe's report goes (default: <lab dir>/reports/<run>).
    #[arg(long, requires = "probe")]
    pub report_dir: Option<PathBuf>,
    /// Print what would be done, change nothing.
    #[arg(long)]
    pub plan: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct CleanupArgs {
    /// The deployment (default: the only one).
    pub name: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

fn parse_redirect(s: &str) -> Result<switchover::Redirect, String> {
    match s {
        "name" | "rename" => Ok(switchover::Redirect::Name),
        "proxy" => Ok(switchover::Redirect::Proxy),
        "none" => Ok(switchover::Redirect::None),
        other => Err(format!("{other:?}: use name (alias rename), proxy or none")),
    }
}

/// Bad input exits 2; a provider's error keeps its own type, so that its exit code is found.
pub(crate) fn bg_err(e: BlueGreenError) -> anyhow::Error {
    let e = dbshift_ops::Error::from(e);
    if let Some(exit) = crate::refusal(&e) {
        return exit.into();
    }
    match e {
        dbshift_ops::Error::BlueGreen(
            BlueGreenError::Provider(p)
            | BlueGreenError::Switchover(switchover::SwitchoverError::Provider(p)),
        ) => p.into(),
        other => other.into(),
    }
}

pub async fn run(cmd: BlueGreenCommand, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        BlueGreenCommand::Create(a) => create(a, ctx).await,
        BlueGreenCommand::Status(a) => status(a, ctx).await,
        BlueGreenCommand::Verify(a) => verify(a, ctx).await,
        BlueGreenCommand::Switchover(a) => switch(a, ctx, Side::Green).await,
        BlueGreenCommand::Rollback(a) => switch(a, ctx, Side::Blue).await,
        BlueGreenCommand::Cleanup(a) => cleanup(a, ctx).await,
    }
}

async fn create(a: CreateArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let lab = ctx.provider().await?;
    let spec = GreenSpec {
        name: a
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-green", a.source)),
        source: a.source.clone(),
        replicas: a.replicas,
        encrypt: a.encrypt,
        engine_binary: a.engine_binary.clone(),
    };
    // Blue must not change under the snapshot (a switchover would move the position green
    // starts from), nor two greens of one name be built at once.
    let _locks = ctx
        .locks()
        .await?
        .acquire_all(
            &[spec.source.clone(), spec.name.clone()],
            &format!("bluegreen create of {} from {}", spec.name, spec.source),
        )
        .await
        .map_err(|e| Exit::new(1, e.to_string()))?;
    let started = Instant::now();
    let d = bluegreen::create(&*lab, &spec)
        .await
        .map_err(bg_err)
        .with_context(|| format!("building green {} from {}", spec.name, spec.source))?;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match a.output.output {
        Format::Json => {
            let mut v = serde_json::to_value(&d)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("elapsed_ms".into(), elapsed_ms.into());
            }
            print_json(&v)?
        }
        Format::Table => {
            println!(
                "green {} built from {} in {:.1} s: snapshot of {}, {}'s writer {} replicates from {} from {:?}",
                d.green,
                d.blue,
                elapsed_ms as f64 / 1000.0,
                d.snapshot_taken_on,
                d.green,
                d.green_writer,
                d.blue_writer,
                d.source_position
            );
            if d.encrypted {
                println!("green is encrypted at rest");
            }
            println!(
                "next: `dbshift bluegreen verify {n}`, then `dbshift bluegreen switchover {n}`",
                n = d.name
            );
        }
    }
    Ok(())
}

async fn deployment(lab: &dyn Provider, name: Option<&str>) -> anyhow::Result<Deployment> {
    bluegreen::find(lab, name).await.map_err(bg_err)
}

async fn status(a: NameArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let lab = ctx.provider().await?;
    let d = deployment(&*lab, a.name.as_deref()).await?;
    let st = bluegreen::status(&*lab, &d)
        .await
        .map_err(bg_err)
        .context("reading the deployment's status")?;
    match a.output.output {
        Format::Json => print_json(&st)?,
        Format::Table => {
            println!(
                "deployment {}: {} serves (clients use {}); blue {} / green {}{}",
                d.name,
                d.serving,
                d.blue,
                d.blue,
                d.green,
                if d.encrypted { ", green encrypted" } else { "" }
            );
            let mut t = Table::new(&[
                "SIDE", "INSTANCE", "ROLE", "STATUS", "RO", "SOURCE", "LAG_TRX", "LAG_S", "GTID",
                "ERROR",
            ]);
            for side in [&st.blue, &st.green] {
                for r in &side.instances {
                    let repl = r.replication.as_ref();
                    t.row(vec![
                        format!("{}{}", side.side, if side.serving { "*" } else { "" }),
                        r.id.clone(),
                        match (r.id == side.writer, side.serving) {
                            (true, true) => "writer".into(),
                            (true, false) => "standby writer".into(),
                            (false, _) => "reader".into(),
                        },
                        r.status.to_string(),
                        repl.map(|h| if h.read_only { "ON" } else { "OFF" })
                            .unwrap_or("-")
                            .into(),
                        repl.and_then(|h| h.source.clone()).unwrap_or("-".into()),
                        repl.and_then(|h| h.lag_transactions)
                            .map(|n| n.to_string())
                            .unwrap_or("-".into()),
                        repl.and_then(|h| h.lag_seconds)
                            .map(|n| n.to_string())
                            .unwrap_or("-".into()),
                        repl.and_then(|h| h.gtid_position.clone())
                            .unwrap_or("-".into()),
                        r.error
                            .clone()
                            .or_else(|| repl.and_then(|h| h.last_error.clone()))
                            .unwrap_or_default(),
                    ]);
                }
            }
            print!("{}", t.render());
            println!(
                "standby {} replicating from {}: {}",
                d.writer(d.serving.other()),
                d.writer(d.serving),
                if st.standby_replicating {
                    format!(
                        "yes, {} transaction(s) behind",
                        st.standby_lag_transactions
                            .map(|n| n.to_string())
                            .unwrap_or("?".into())
                    )
                } else {
                    "NO".into()
                }
            );
            println!("guards of a switch to {} now:", d.serving.other());
            match (&st.guards, &st.guards_error) {
                (Some(g), _) => print_guards(g),
                (None, Some(e)) => println!("  could not run: {e}"),
                _ => {}
            }
        }
    }
    Ok(())
}

async fn verify(a: VerifyArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let lab = ctx.provider().await?;
    let d = deployment(&*lab, a.name.as_deref()).await?;
    let opts = dbshift_ops::verify::VerifyOptions {
        chunk_rows: a.chunk_rows,
        until_timeout: a.timeout,
        ..Default::default()
    };
    if a.chunk_rows == 0 {
        return Err(Exit::new(2, "--chunk-rows must be at least 1").into());
    }
    let report = bluegreen::verify(&*lab, &d, &opts)
        .await
        .map_err(bg_err)
        .with_context(|| format!("verifying {}", d.name))?;
    match a.output.output {
        Format::Json => print_json(&report)?,
        Format::Table => {
            println!(
                "{} at {}: {} (blue {} rows, green {} rows, {:.1} s, {:.0} rows/s)",
                d.name,
                report.position,
                if report.equal { "EQUAL" } else { "DIFFERENT" },
                report.rows_blue,
                report.rows_green,
                report.elapsed_ms as f64 / 1000.0,
                report.rows_per_s
            );
            let mut t = Table::new(&[
                "TABLE",
                "ROWS_BLUE",
                "ROWS_GREEN",
                "CHUNKS",
                "RESULT",
                "METHOD",
            ]);
            for tr in &report.tables {
                t.row(vec![
                    format!("{}.{}", tr.schema, tr.name),
                    tr.rows_blue.to_string(),
                    tr.rows_green.to_string(),
                    tr.chunks.to_string(),
                    if tr.equal { "equal" } else { "DIFFERENT" }.into(),
                    tr.method.clone(),
                ]);
            }
            print!("{}", t.render());
            for diff in &report.differences {
                println!(
                    "difference: {}.{} where {} (blue {} rows, green {} rows)",
                    diff.schema, diff.table, diff.range, diff.rows_blue, diff.rows_green
                );
            }
            for w in &report.warnings {
                println!("warning: {w}");
            }
        }
    }
    if !report.equal {
        return Err(Exit::new(1, format!("{} and its standby differ", d.name)).into());
    }
    Ok(())
}

async fn switch(a: SwitchArgs, ctx: &Ctx, to: Side) -> anyhow::Result<()> {
    let lab = ctx.provider().await?;
    let d = deployment(&*lab, a.name.as_deref()).await?;
    let opts = SwitchOptions {
        max_lag_transactions: a.max_lag.transactions,
        max_lag_seconds: a.max_lag.seconds,
        timeout: a.timeout,
        hooks: a.hooks.clone(),
        redirect: a.redirect,
        allow_statement_binlog: a.allow_statement_binlog,
    };
    let params = bluegreen::switch_params(&*lab, &d, to, &opts)
        .await
        .map_err(bg_err)?;
    let verb = match to {
        Side::Green => "switchover",
        Side::Blue => "rollback",
    };
    if a.plan {
        let header = format!(
            "bluegreen {verb} of {}: {} -> {} (redirect: {})",
            d.name, params.from, params.to, params.redirect
        );
        return print_plan(&switchover::plan(&params), &header, a.output.output);
    }
    if to == Side::Blue && d.engine_binary.is_some() {
        tracing::warn!(
            "green runs another server binary: replication from a newer major version to an \
             older one is not supported by the servers"
        );
    }
    confirm(
        &format!(
            "Make {to} serve in {} ({} -> {})?",
            d.name, params.from, params.to
        ),
        a.yes,
    )?;
    let journal = ctx.journal(&*lab).await?;
    let probe = start_probe(
        a.probe,
        lab.clone(),
        &ctx.dir,
        &d.blue,
        &format!("bluegreen-{verb}-{}", d.name),
        a.probe_rate,
        a.report_dir.clone(),
    )
    .await?;
    let observer = observer_for(probe.as_ref());
    let result = bluegreen::switch(&*lab, &journal, params, to, observer.as_ref()).await;
    let summary = stop_probe(probe).await?;
    let (_run, outcome) = result.map_err(|e| match e {
        BlueGreenError::Switchover(s) => stopped_part_way(s),
        other => bg_err(other),
    })?;
    journal.close().await;
    report_outcome(&outcome, summary.as_ref(), a.output.output)
}

async fn cleanup(a: CleanupArgs, ctx: &Ctx) -> anyhow::Result<()> {
    ctx.require_sql("bluegreen cleanup")?;
    let lab = ctx.provider().await?;
    let d = deployment(&*lab, a.name.as_deref()).await?;
    let standby = d.serving.other();
    let ids: Vec<String> = lab
        .list_instances()
        .await?
        .into_iter()
        .filter(|i| i.cluster == d.cluster(standby))
        .map(|i| i.id)
        .collect();
    let deletes = lab.cleanup_deletes();
    let question = if deletes {
        format!(
            "Stop and delete {standby} ({}: {}), which no longer serves?",
            d.cluster(standby),
            ids.join(", ")
        )
    } else {
        format!(
            "Detach {standby} ({}: {}), which no longer serves? Its writer {} stops \
             replicating from {}; no server is stopped or deleted",
            d.cluster(standby),
            ids.join(", "),
            d.writer(standby),
            d.writer(d.serving)
        )
    };
    confirm(&question, a.yes)?;
    let _locks = ctx
        .locks()
        .await?
        .acquire_all(
            &[d.blue.clone(), d.green.clone()],
            &format!("bluegreen cleanup of {}", d.name),
        )
        .await
        .map_err(|e| Exit::new(1, e.to_string()))?;
    let journal = if ctx.dir.join("journal.sqlite").exists() {
        Some(ctx.journal(&*lab).await?)
    } else {
        None
    };
    let removed = bluegreen::cleanup(&*lab, journal.as_ref(), &d)
        .await
        .map_err(bg_err)?;
    match a.output.output {
        Format::Json => print_json(&serde_json::json!({
            "deployment": d.name,
            "removed_side": standby,
            "removed": removed,
            "detached": !deletes,
            "cluster": d.blue,
        }))?,
        Format::Table if deletes => println!(
            "removed {standby} ({}); {} is served by {}",
            removed.join(", "),
            d.blue,
            d.writer(d.serving)
        ),
        Format::Table => println!(
            "detached {standby} ({}): {} no longer replicates from {}; {} is served by {}. \
             Remove the deployment {} from the fleet file: its sides are separate clusters now",
            d.cluster(standby),
            d.writer(standby),
            d.writer(d.serving),
            d.blue,
            d.writer(d.serving),
            d.name
        ),
    }
    Ok(())
}
