//! `dbshift verify <cluster> [--replica ID]`: is a replica the same as its writer, table by
//! table, at one point of the writer's history? Wiring only: the comparison is
//! `dbshift_ops::verify::verify` with the writer as blue and the replica as green, as
//! `bluegreen verify` runs it between two clusters. It never writes to either server; the
//! replica's replication is stopped at the point compared and put back as it was found.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use dbshift_ops::verify::{self, VerifyOptions, VerifyReport};

use crate::output::{print_json, Table};
use crate::provider_cmd::Ctx;
use crate::{parse_duration, Exit, Format, OutputArgs};

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Cluster name, e.g. lab-1.
    pub cluster: String,
    /// The replica to compare with the writer (default: each replica of the writer, one after
    /// the other).
    #[arg(long)]
    pub replica: Option<String>,
    /// Rows per chunk of a primary key walk.
    #[arg(long, default_value_t = VerifyOptions::default().chunk_rows)]
    pub chunk_rows: u64,
    /// How long the replica may take to reach the writer's snapshot position.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub async fn verify(a: VerifyArgs, ctx: &Ctx) -> anyhow::Result<()> {
    if a.chunk_rows == 0 {
        return Err(Exit::new(2, "--chunk-rows must be at least 1").into());
    }
    let provider = ctx.provider().await?;
    if !provider.sql_access() {
        return Err(Exit::new(
            2,
            format!(
                "`dbshift verify` reads both servers over SQL, and the {} provider has no \
                 database credentials (DBSHIFT_DB_USER / DBSHIFT_DB_PASSWORD)",
                provider.name()
            ),
        )
        .into());
    }
    let clusters = provider
        .list_clusters()
        .await
        .context("listing the clusters")?;
    let Some(cluster) = clusters.iter().find(|c| c.name == a.cluster) else {
        return Err(Exit::new(
            2,
            format!(
                "unknown cluster {:?}; known: {}",
                a.cluster,
                clusters
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .into());
    };
    let replicas: Vec<String> = match &a.replica {
        Some(r) if r == &cluster.writer => {
            return Err(Exit::new(
                2,
                format!(
                    "{r} is the writer of {}: name one of its replicas",
                    a.cluster
                ),
            )
            .into())
        }
        Some(r) if !cluster.instances.contains(r) => {
            return Err(Exit::new(
                2,
                format!(
                    "{r} is not a member of {} (members: {})",
                    a.cluster,
                    cluster.instances.join(", ")
                ),
            )
            .into())
        }
        Some(r) => vec![r.clone()],
        None => {
            // The writer's direct replicas: verify compares a replica with its own source,
            // and a leaf of a chain (its `source` tag another replica) is left out.
            let mut direct = Vec::new();
            let writer = provider.describe_instance(&cluster.writer).await?;
            for id in cluster.instances.iter().filter(|i| **i != cluster.writer) {
                let inst = provider.describe_instance(id).await?;
                let source = inst.tags.get("source");
                if source.is_none_or(|s| *s == writer.endpoint.to_string()) {
                    direct.push(id.clone());
                }
            }
            direct
        }
    };
    if replicas.is_empty() {
        return Err(Exit::new(
            2,
            format!("{} has no replica of its writer to compare", a.cluster),
        )
        .into());
    }
    let creds = provider
        .credentials_for(&a.cluster)
        .with_context(|| format!("the database users of {}", a.cluster))?;
    let journal = ctx.journal(&*provider).await?;
    // A switchover or failover must not run while a replica's replication is held.
    let _lock = journal
        .locks()
        .acquire(&a.cluster, &format!("verify of {}", a.cluster))
        .await
        .map_err(|e| Exit::new(1, e.to_string()))?;
    let blue_ep = provider.resolve(&cluster.writer).await?;
    let blue = dbshift_ops::connect_options(&creds, &creds.admin, &blue_ep);
    let opts = VerifyOptions {
        chunk_rows: a.chunk_rows,
        until_timeout: a.timeout,
        ..Default::default()
    };
    let mut reports: Vec<(String, VerifyReport)> = Vec::new();
    for r in &replicas {
        let ep = provider.resolve(r).await?;
        let green = dbshift_ops::connect_options(&creds, &creds.admin, &ep);
        let report = verify::verify(&blue, &green, &opts)
            .await
            .with_context(|| format!("verifying {r} against the writer {}", cluster.writer))?;
        reports.push((r.clone(), report));
    }
    drop(_lock);
    journal.close().await;
    match a.output.output {
        Format::Json => {
            let v: Vec<serde_json::Value> = reports
                .iter()
                .map(|(r, rep)| {
                    let mut v = serde_json::to_value(rep).unwrap_or_default();
                    if let Some(o) = v.as_object_mut() {
                        o.insert("writer".into(), cluster.writer.clone().into());
                        o.insert("replica".into(), r.clone().into());
                    }
                    v
                })
                .collect();
            print_json(&v)?;
        }
        Format::Table => {
            for (r, report) in &reports {
                print_report(&cluster.writer, r, report);
            }
        }
    }
    let different: Vec<&str> = reports
        .iter()
        .filter(|(_, rep)| !rep.equal)
        .map(|(r, _)| r.as_str())
        .collect();
    if !different.is_empty() {
        return Err(Exit::new(
            1,
            format!(
                "{} differ(s) from the writer {}: see the chunks above",
                different.join(", "),
                cluster.writer
            ),
        )
        .into());
    }
    Ok(())
}

fn print_report(writer: &str, replica: &str, report: &VerifyReport) {
    println!(
        "{replica} vs {writer} at {}: {} ({} rows on the writer, {} on the replica, {:.1} s)",
        report.position,
        if report.equal { "EQUAL" } else { "DIFFERENT" },
        report.rows_blue,
        report.rows_green,
        report.elapsed_ms as f64 / 1000.0
    );
    let mut t = Table::new(&["TABLE", "ROWS_WRITER", "ROWS_REPLICA", "RESULT"]);
    for tr in &report.tables {
        t.row(vec![
            format!("{}.{}", tr.schema, tr.name),
            tr.rows_blue.to_string(),
            tr.rows_green.to_string(),
            if tr.equal { "equal" } else { "DIFFERENT" }.to_string(),
        ]);
    }
    print!("{}", t.render());
    for d in &report.differences {
        println!(
            "  {}.{} {}: {} (writer {} rows, replica {} rows)",
            d.schema, d.table, d.range, d.reason, d.rows_blue, d.rows_green
        );
    }
    for w in &report.warnings {
        println!("warning: {w}");
    }
}
