//! `dbshift upgrade-check <cluster> --to VERSION`: the pre-checks of a major-version upgrade
//! on the cluster's writer (`dbshift_ops::upgrade_check`); exit 1 when a finding would stop
//! the upgrade, 2 on bad input. Changes nothing.

use clap::Args;
use dbshift_ops::upgrade_check;

use crate::output::print_json;
use crate::provider_cmd::Ctx;
use crate::{Exit, Format, OutputArgs};

#[derive(Args, Debug)]
pub struct UpgradeCheckArgs {
    /// Cluster name, e.g. lab-1.
    pub cluster: String,
    /// The version to upgrade to: MAJOR.MINOR (8.0, 8.4, 11.4), optionally prefixed with
    /// mysql- or mariadb-.
    #[arg(long)]
    pub to: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub async fn run(a: UpgradeCheckArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let provider = ctx.provider().await?;
    if !provider.sql_access() {
        return Err(Exit::new(
            2,
            "upgrade-check reads the writer's catalogue: set the database credentials \
             (DBSHIFT_DB_USER and DBSHIFT_DB_PASSWORD on AWS)",
        )
        .into());
    }
    let report = upgrade_check::check(&*provider, &a.cluster, &a.to)
        .await
        .map_err(|e| {
            let e = dbshift_ops::Error::from(e);
            match crate::refusal(&e) {
                Some(exit) => anyhow::Error::from(exit),
                None => anyhow::Error::from(e),
            }
        })?;
    match a.output.output {
        Format::Json => print_json(&report)?,
        Format::Table => {
            println!(
                "{} ({}): {} -> {}: {} finding(s), {} that stop(s) the upgrade",
                report.cluster,
                report.writer,
                report.from,
                report.to,
                report.findings.len(),
                report.errors
            );
            for f in &report.findings {
                let level = serde_json::to_value(f.level)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_ascii_uppercase))
                    .unwrap_or_default();
                println!("\n{level:<8} {}: {}", f.check, f.objects.join(", "));
                println!("         fix: {}", f.fix);
            }
        }
    }
    if report.errors > 0 {
        return Err(Exit::new(
            1,
            format!(
                "{} finding(s) would stop the upgrade of {} to {}; fix them and run this again",
                report.errors, report.cluster, report.to
            ),
        )
        .into());
    }
    Ok(())
}
