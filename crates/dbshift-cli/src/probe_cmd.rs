//! `dbshift probe`: the downtime probe from a terminal. The work is `dbshift-probe`'s; this
//! file turns flags into a [`ProbeConfig`], runs until `--duration` or Ctrl-C, and prints.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use dbshift_probe::{Kind, Probe, ProbeConfig, Summary, TargetResolver, PASSWORD_ENV};
use dbshift_provider::Provider;

use crate::output::{print_json, Table};
use crate::{parse_duration, Format, OutputArgs};

/// Measure what clients see: writes, reads and new connections on an open-loop schedule,
/// outages, the longest write gap, latency, and the lost-write audit at the end.
#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// A cluster name (follows its current writer), an instance id, or
    /// mysql://user[:password]@host:port[/db] (password also from DBSHIFT_PROBE_PASSWORD).
    #[arg(long)]
    target: String,
    /// Writes per second.
    #[arg(long, default_value_t = 200.0, allow_hyphen_values = true)]
    rate: f64,
    /// How long to run (e.g. 60s, 5m); without it the probe runs until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Bound of each attempt, from when it was due; a write that times out is indeterminate.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    timeout: Duration,
    /// Verify the server's TLS chain against this CA (PEM) on every connection.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Where attempts.jsonl, summary.json and timeline.svg go
    /// (default: .dbshift/probe/<UTC time>).
    #[arg(long)]
    report_dir: Option<PathBuf>,
    /// New connections per second (0: off).
    #[arg(long, default_value_t = 20.0)]
    connect_rate: f64,
    /// Connections the writes share (several in flight).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Keep this run's rows in dbshift.probe after the audit.
    #[arg(long)]
    keep_rows: bool,
    #[command(flatten)]
    output: OutputArgs,
}

/// The probe found acknowledged writes missing, or could not audit: exit 1 after the report.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuditFailed(String);

pub async fn run(args: ProbeArgs, ctx: &crate::provider_cmd::Ctx) -> anyhow::Result<()> {
    let provider: Option<Arc<dyn Provider>> = if args.target.starts_with("mysql://") {
        None
    } else {
        Some(ctx.provider().await?)
    };
    let target =
        TargetResolver::from_arg(&args.target, provider, std::env::var(PASSWORD_ENV).ok())?
            .tls_ca(args.tls_ca.clone());
    let report_dir = args.report_dir.clone().unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        PathBuf::from(".dbshift/probe").join(format!("{secs}"))
    });
    let config = ProbeConfig {
        rate: args.rate,
        connect_rate: args.connect_rate,
        timeout: args.timeout,
        write_connections: args.connections,
        report_dir: Some(report_dir),
        keep_rows: args.keep_rows,
        ..ProbeConfig::default()
    };
    let handle = Probe::start(config, target).await?;

    let spinner =
        (args.output.output == Format::Table && std::io::stderr().is_terminal()).then(|| {
            let s = indicatif::ProgressBar::new_spinner();
            s.enable_steady_tick(Duration::from_millis(120));
            s
        });
    let until = async {
        match args.duration {
            Some(d) => {
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::pin!(until);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = &mut until => break,
            _ = tick.tick() => {
                if let Some(s) = &spinner {
                    let p = handle.progress();
                    s.set_message(format!(
                        "probing {} for {:.0} s: writes {} ok / {} not, reads {} / {}, connects {} / {}{}",
                        args.target, handle.elapsed_ms() / 1000.0,
                        p.writes_ok, p.writes_not_ok, p.reads_ok, p.reads_not_ok,
                        p.connects_ok, p.connects_not_ok,
                        if args.duration.is_none() { " (Ctrl-C to stop)" } else { "" }
                    ));
                }
            }
        }
    }
    if let Some(s) = &spinner {
        s.set_message("stopping: waiting for attempts in flight, then the audit");
    }
    let summary = handle.stop().await?;
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    match args.output.output {
        Format::Json => print_json(&summary)?,
        Format::Table => print_table(&summary),
    }
    if let Some(e) = &summary.audit.error {
        return Err(AuditFailed(format!("the audit could not run: {e}")).into());
    }
    if !summary.lost_writes.is_empty() {
        return Err(AuditFailed(format!(
            "{} acknowledged write(s) lost: seq {:?}",
            summary.lost_writes.len(),
            summary.lost_writes
        ))
        .into());
    }
    Ok(())
}

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else {
        format!("{v:.1} ms")
    }
}

fn print_table(s: &Summary) {
    println!(
        "probe of {} (run {}): {:.1} s, {} writes/s requested, {:.1} achieved ({:.1}%)",
        s.target,
        s.run_id,
        s.duration_ms / 1000.0,
        s.requested_write_rate,
        s.achieved_write_rate,
        s.write_rate_ratio * 100.0
    );
    let mut t = Table::new(&[
        "kind",
        "attempted",
        "ok",
        "failed",
        "timeout",
        "p50",
        "p99",
        "max",
    ]);
    for kind in Kind::ALL {
        if let Some(k) = s.kinds.get(&kind) {
            let lat = |f: fn(&dbshift_probe::Latency) -> f64| {
                k.latency_ms
                    .as_ref()
                    .map(|l| ms(f(l)))
                    .unwrap_or_else(|| "-".into())
            };
            t.row(vec![
                kind.to_string(),
                k.attempted.to_string(),
                k.succeeded.to_string(),
                k.failed.to_string(),
                k.indeterminate.to_string(),
                lat(|l| l.p50_ms),
                lat(|l| l.p99_ms),
                lat(|l| l.max_ms),
            ]);
        }
    }
    print!("{}", t.render());
    if s.outages.is_empty() {
        println!("outages: none");
    } else {
        println!("outages:");
        for o in &s.outages {
            println!(
                "  {:<8} {:>10}  from {:.3} s to {:.3} s, {} attempt(s) failed{}",
                o.kind.to_string(),
                ms(o.duration_ms),
                o.start_ms / 1000.0,
                o.end_ms / 1000.0,
                o.attempts,
                if o.ongoing {
                    " (still down at the end)"
                } else {
                    ""
                }
            );
        }
    }
    println!("max write gap: {}", ms(s.max_write_gap_ms));
    match &s.audit.error {
        Some(e) => println!("audit: NOT DONE: {e}"),
        None => println!(
            "lost writes: {}{}; indeterminate writes: {} ({} landed); audited on {}",
            s.lost_writes.len(),
            if s.lost_writes.is_empty() {
                String::new()
            } else {
                format!(" (seq {:?})", s.lost_writes)
            },
            s.indeterminate_writes,
            s.audit.indeterminate_landed.len(),
            s.audit.endpoint.as_deref().unwrap_or("?")
        ),
    }
    if let Some(d) = &s.report_dir {
        println!(
            "report: {}/{{summary.json,attempts.jsonl,timeline.svg}}",
            d.display()
        );
    }
}
