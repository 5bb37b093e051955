//! `--provider local|aws` and its flags: one place that opens the provider a command works on.
//! The local lab stays the default; `aws` connects through the default credential chain and
//! never prints a credential.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use clap::{Args, ValueEnum};
use dbshift_provider::aws::{AwsOptions, AwsProvider};
use dbshift_provider::local::Lab;
use dbshift_provider::Provider;

use crate::Exit;

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The local lab of real MariaDB servers (--dir).
    Local,
    /// AWS RDS and Aurora through the RDS API (default credential chain).
    Aws,
}

/// The provider flags, global to every command.
#[derive(Args, Debug, Clone)]
pub struct ProviderArgs {
    /// Where the fleet is: the local lab, or AWS (RDS, Aurora MySQL). Config key `provider`.
    #[arg(long, global = true, env = "DBSHIFT_PROVIDER", value_enum, default_value_t = Kind::Local)]
    pub provider: Kind,
    /// AWS region (default: AWS_REGION or the profile's).
    #[arg(long, global = true, env = "DBSHIFT_REGION")]
    pub region: Option<String>,
    /// AWS profile of ~/.aws/config (default: AWS_PROFILE or `default`).
    #[arg(long, global = true, env = "DBSHIFT_PROFILE")]
    pub profile: Option<String>,
    /// Another RDS API endpoint, e.g. http://127.0.0.1:5000 for moto.
    #[arg(long, global = true, env = "DBSHIFT_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
}

static CHOICE: OnceLock<ProviderArgs> = OnceLock::new();

/// Record the flags once, after parsing.
pub fn set(args: ProviderArgs) {
    let _ = CHOICE.set(args);
}

fn choice() -> ProviderArgs {
    CHOICE.get().cloned().unwrap_or(ProviderArgs {
        provider: Kind::Local,
        region: None,
        profile: None,
        endpoint_url: None,
    })
}

/// Whether the chosen provider is AWS.
pub fn is_aws() -> bool {
    choice().provider == Kind::Aws
}

/// Commands that only make sense on the local lab refuse `--provider aws` (exit 2).
pub fn require_local(command: &str) -> anyhow::Result<()> {
    if is_aws() {
        return Err(Exit::new(
            2,
            format!(
                "`dbshift {command}` works on the local lab only; drop --provider aws (or \
                 DBSHIFT_PROVIDER=aws). On AWS: inventory, ca list, ca-rotate, bluegreen \
                 create/status/verify/switchover/rollback, runs, resume (docs/aws.md)"
            ),
        )
        .into());
    }
    Ok(())
}

/// The AWS provider with the flags and the `DBSHIFT_*` variables.
pub async fn open_aws() -> anyhow::Result<AwsProvider> {
    let c = choice();
    let mut opts = AwsOptions::from_env().context("reading the AWS settings")?;
    opts.region = c.region;
    opts.profile = c.profile;
    opts.endpoint_url = c.endpoint_url;
    AwsProvider::connect(opts)
        .await
        .context("connecting to AWS")
}

/// The provider the command works on.
pub async fn open_provider(dir: &Path) -> anyhow::Result<Arc<dyn Provider>> {
    match choice().provider {
        Kind::Local => {
            let lab =
                Lab::open(dir).with_context(|| format!("opening the lab in {}", dir.display()))?;
            Ok(Arc::new(lab))
        }
        Kind::Aws => Ok(Arc::new(open_aws().await?)),
    }
}
