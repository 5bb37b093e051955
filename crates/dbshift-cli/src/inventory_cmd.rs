//! `dbshift inventory`: every instance the provider knows joined with what its server says
//! (`dbshift_ops::inventory`), as a table with the problems under it, or as JSON. On a
//! self-managed fleet each cluster's discovered topology comes first, drawn as a tree (the
//! writer at the root, each replica under its source), and discovery's findings (members
//! that do not answer, replicas of nowhere, loops) join the members' problems.

use std::sync::Arc;

use anyhow::Context;
#[cfg(feature = "self-managed")]
use dbshift_ops::inventory::InventoryRow;
use dbshift_provider::Provider;

use crate::output::{self, print_json};
use crate::provider_cmd::Ctx;
use crate::{Format, OutputArgs};

pub async fn run(output: OutputArgs, ctx: &Ctx) -> anyhow::Result<()> {
    #[cfg(feature = "self-managed")]
    let fleet = match ctx.is_self_managed() {
        true => Some(ctx.self_managed()?),
        false => None,
    };
    // The inventory and the trees share one discovery per cluster (a clone shares the cache).
    #[cfg(feature = "self-managed")]
    let provider: Arc<dyn Provider> = match &fleet {
        Some(f) => Arc::new(f.clone()),
        None => ctx.provider().await?,
    };
    #[cfg(not(feature = "self-managed"))]
    let provider: Arc<dyn Provider> = ctx.provider().await?;
    #[allow(unused_mut)]
    let mut rows = dbshift_ops::inventory::inventory(&*provider)
        .await
        .context("reading the inventory")?;
    #[cfg(feature = "self-managed")]
    let trees = match &fleet {
        Some(f) => topologies(f, &mut rows).await?,
        None => Vec::new(),
    };
    match output.output {
        Format::Json => print_json(&rows)?,
        Format::Table => {
            #[cfg(feature = "self-managed")]
            for (cluster, t) in &trees {
                print!("{}", output::render_tree(cluster, t, &rows));
                println!();
            }
            output::print_inventory(&rows);
            if !provider.sql_access() {
                println!(
                    "replication not observed: no database credentials \
                     (DBSHIFT_DB_USER / DBSHIFT_DB_PASSWORD)"
                );
            }
            // The clusters' stable client endpoints (`lab proxy up`).
            #[cfg(feature = "local")]
            if ctx.is_local() {
                for c in ctx.lab("inventory")?.status().clusters {
                    for p in &c.proxies {
                        println!("proxy of {}: {p} (dbshift proxy)", c.name);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Each cluster's topology as discovered for the rows, its findings added to the problems of
/// the rows they are about.
#[cfg(feature = "self-managed")]
async fn topologies(
    fleet: &dbshift_provider::selfmanaged::SelfManaged,
    rows: &mut [InventoryRow],
) -> anyhow::Result<Vec<(String, dbshift_provider::selfmanaged::discovery::Topology)>> {
    let mut out = Vec::new();
    for spec in &fleet.fleet().clusters {
        if fleet.is_pending_green(&spec.name).await {
            continue;
        }
        let t = fleet.topology(&spec.name).await?;
        for f in &t.findings {
            if let Some(r) = rows
                .iter_mut()
                .find(|r| r.cluster == spec.name && r.id == f.member)
            {
                r.problems.push(f.message.clone());
            }
        }
        out.push((spec.name.clone(), t));
    }
    Ok(out)
}
