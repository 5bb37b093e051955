//! `--provider local|aws|self-managed` and its flags, and the command context built from them
//! in `main`: one place that opens the provider (or the lab) and the journal a command works
//! on. The local lab stays the default; `aws` connects through the default credential chain,
//! `self-managed` reads a fleet file (`--fleet`); neither ever prints a credential.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use dbshift_ops::journal::Journal;
use dbshift_ops::lock::Locks;
#[cfg(feature = "aws")]
use dbshift_provider::aws::{AwsOptions, AwsProvider};
#[cfg(feature = "local")]
use dbshift_provider::local::Lab;
#[cfg(feature = "self-managed")]
use dbshift_provider::selfmanaged::SelfManaged;
use dbshift_provider::Provider;
use dbshift_state::{EtcdLocks, StateUrl};

use crate::Exit;

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The local lab of real MariaDB servers (--dir).
    Local,
    /// AWS RDS and Aurora through the RDS API (default credential chain).
    Aws,
    /// MySQL and MariaDB servers dbshift did not start, named by a fleet file (--fleet).
    SelfManaged,
}

/// The provider flags, global to every command.
#[derive(Args, Debug, Clone)]
pub struct ProviderArgs {
    /// Where the fleet is: the local lab, AWS (RDS, Aurora MySQL), or self-managed servers
    /// named by a fleet file (--fleet). Config key `provider`.
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
    /// The fleet file of `--provider self-managed`: clusters, seeds, users, TLS, redirect and
    /// commands (docs/self-managed.md). Config key `fleet`.
    #[arg(long, global = true, env = "DBSHIFT_FLEET")]
    pub fleet: Option<PathBuf>,
}

/// What every command works with, built once in `main` from the flags and passed down: the
/// lab directory (also where the journal lives, and the locks unless `--state` puts them in
/// etcd), the provider choice and the state store. No command opens a provider, the lab or
/// the store by itself.
pub struct Ctx {
    pub dir: PathBuf,
    provider: ProviderArgs,
    state: StateUrl,
    /// The cluster locks of this command, opened once: every lock it takes goes through one
    /// handle, so a workflow that calls another shares its locks.
    locks: tokio::sync::OnceCell<Locks>,
}

/// Parse `--state` (exit 2 on a bad value, before anything is opened).
pub fn parse_state(url: Option<&str>) -> anyhow::Result<StateUrl> {
    StateUrl::parse(url.unwrap_or_default()).map_err(|e| {
        Exit::new(
            2,
            format!("--state (or DBSHIFT_STATE, config key `state`): {e}"),
        )
        .into()
    })
}

impl Ctx {
    pub fn new(dir: PathBuf, provider: ProviderArgs, state: StateUrl) -> Ctx {
        Ctx {
            dir,
            provider,
            state,
            locks: tokio::sync::OnceCell::new(),
        }
    }

    /// The cluster locks: files in `locks/` beside the journal, or etcd with `--state
    /// etcd://...` (connected on first use; unreachable: exit 1, nothing changed).
    pub async fn locks(&self) -> anyhow::Result<Locks> {
        let locks = self
            .locks
            .get_or_try_init(|| async {
                match &self.state {
                    StateUrl::Local => Ok(Locks::in_dir(&Journal::locks_dir(
                        &self.dir.join("journal.sqlite"),
                    ))),
                    StateUrl::Etcd(target) => {
                        let store = EtcdLocks::connect(target, dbshift_state::etcd::DEFAULT_TTL)
                            .await
                            .map_err(|e| Exit::new(1, e.to_string()))?;
                        Ok::<Locks, anyhow::Error>(Locks::new(Arc::new(store)))
                    }
                }
            })
            .await?;
        Ok(locks.clone())
    }

    /// Whether the chosen provider is AWS.
    pub fn is_aws(&self) -> bool {
        self.provider.provider == Kind::Aws
    }

    /// Whether the chosen provider is a self-managed fleet (`--fleet`).
    #[cfg(feature = "self-managed")]
    pub fn is_self_managed(&self) -> bool {
        self.provider.provider == Kind::SelfManaged
    }

    /// Whether the chosen provider is the local lab.
    pub fn is_local(&self) -> bool {
        self.provider.provider == Kind::Local
    }

    /// Commands that only make sense on the local lab refuse another provider (exit 2).
    pub fn require_local(&self, command: &str) -> anyhow::Result<()> {
        if self.provider.provider == Kind::SelfManaged {
            return Err(Exit::new(
                2,
                format!(
                    "`dbshift {command}` works on the local lab only; drop --provider \
                     self-managed (or DBSHIFT_PROVIDER). On a self-managed fleet: inventory, \
                     resolve, check, switchover, failover, watch, rejoin, verify, ca-rotate, \
                     proxy --target, reboot, runs, resume (docs/self-managed.md)"
                ),
            )
            .into());
        }
        self.require_sql(command)
    }

    /// Commands that talk SQL to every server themselves (the switchover core's `check` and
    /// `switchover`): the lab and self-managed fleets, not `--provider aws` (exit 2).
    pub fn require_sql(&self, command: &str) -> anyhow::Result<()> {
        if self.is_aws() {
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
        if self.is_local() && cfg!(not(feature = "local")) {
            return Err(not_built("local"));
        }
        Ok(())
    }

    /// The lab itself, for the lab's own commands (`lab`, `demo`, `replica add`, `bluegreen
    /// cleanup`, `proxy`): refused with `--provider aws`.
    #[cfg(feature = "local")]
    pub fn lab(&self, command: &str) -> anyhow::Result<Lab> {
        self.lab_in(&self.dir, command)
    }

    /// A lab named by something other than `--dir` (a proxy option file names its own).
    #[cfg(feature = "local")]
    pub fn lab_in(&self, dir: &Path, command: &str) -> anyhow::Result<Lab> {
        self.require_local(command)?;
        Lab::open(dir).with_context(|| format!("opening the lab in {}", dir.display()))
    }

    /// The AWS provider with the flags and the `DBSHIFT_*` variables.
    #[cfg(feature = "aws")]
    pub async fn aws(&self) -> anyhow::Result<AwsProvider> {
        let c = &self.provider;
        let mut opts = AwsOptions::from_env().context("reading the AWS settings")?;
        opts.region = c.region.clone();
        opts.profile = c.profile.clone();
        opts.endpoint_url = c.endpoint_url.clone();
        AwsProvider::connect(opts)
            .await
            .context("connecting to AWS")
    }

    /// The provider the command works on.
    pub async fn provider(&self) -> anyhow::Result<Arc<dyn Provider>> {
        match self.provider.provider {
            #[cfg(feature = "local")]
            Kind::Local => {
                let lab = Lab::open(&self.dir)
                    .with_context(|| format!("opening the lab in {}", self.dir.display()))?;
                Ok(Arc::new(lab))
            }
            #[cfg(not(feature = "local"))]
            Kind::Local => Err(not_built("local")),
            #[cfg(feature = "aws")]
            Kind::Aws => Ok(Arc::new(self.aws().await?)),
            #[cfg(not(feature = "aws"))]
            Kind::Aws => Err(not_built("aws")),
            #[cfg(feature = "self-managed")]
            Kind::SelfManaged => Ok(Arc::new(self.self_managed()?)),
            #[cfg(not(feature = "self-managed"))]
            Kind::SelfManaged => Err(not_built("self-managed")),
        }
    }

    /// The self-managed provider of the `--fleet` file; nothing connects until a command asks.
    #[cfg(feature = "self-managed")]
    pub fn self_managed(&self) -> anyhow::Result<SelfManaged> {
        let Some(path) = &self.provider.fleet else {
            return Err(Exit::new(
                2,
                "--provider self-managed needs a fleet file: --fleet FILE (or DBSHIFT_FLEET, or \
                 the config key `fleet`); docs/self-managed.md describes it",
            )
            .into());
        };
        SelfManaged::open(path)
            .with_context(|| format!("reading the fleet file {}", path.display()))
    }

    /// The journal in the lab directory, its runs tied to `provider`'s fleet (a run is
    /// resumed only on the fleet it was started on), with the cluster locks of this command
    /// (see [`Ctx::locks`]). The store is reached first: unreachable, no journal is touched.
    pub async fn journal(&self, provider: &dyn Provider) -> anyhow::Result<Journal> {
        let locks = self.locks().await?;
        Ok(journal_in(&self.dir, provider).await?.with_locks(locks))
    }
}

/// The error for a provider this dbshift was built without (exit 2): it names the cargo
/// feature to build with.
pub fn not_built(feature: &str) -> anyhow::Error {
    Exit::new(
        2,
        format!(
            "this dbshift was built without the `{feature}` provider; build it with \
             `cargo build --release -p dbshift-cli --features {feature}` (the default features \
             hold `local`, `aws` and `self-managed`)"
        ),
    )
    .into()
}

/// A command line whose command this dbshift does not have: the local lab's commands (`lab`,
/// `demo`, `proxy`) in a build without the `local` provider, or no command at all.
#[cfg(not(feature = "local"))]
pub fn not_built_command(args: &[String]) -> anyhow::Error {
    match args.first().map(String::as_str) {
        Some("lab" | "demo" | "proxy") => not_built("local"),
        other => Exit::new(
            2,
            format!(
                "unrecognized command {:?}; see `dbshift --help`",
                other.unwrap_or_default()
            ),
        )
        .into(),
    }
}

/// The journal of the lab in `dir` (the demo's own lab has its own), tied to `provider`'s
/// fleet.
pub async fn journal_in(dir: &Path, provider: &dyn Provider) -> anyhow::Result<Journal> {
    let path = dir.join("journal.sqlite");
    Ok(Journal::open(&path)
        .await
        .with_context(|| format!("opening the journal {}", path.display()))?
        .with_fleet(&provider.fleet_id()))
}

/// Ask before changing anything, unless `yes`; without a terminal, refuse (exit 2).
pub fn confirm(question: &str, yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Exit::new(
            2,
            "no terminal to confirm on: pass --yes to proceed (or --plan to see what would happen)",
        )
        .into());
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Exit::new(1, "not confirmed; nothing changed").into())
    }
}
