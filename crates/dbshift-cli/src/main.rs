//! The `dbshift` command: argument parsing, output formats and exit codes. The work itself
//! lives in the library crates; this file only wires them to a terminal.
//!
//! Exit codes: 0 done, 1 failed (nothing changed or rolled back), 2 bad input, 3 needs a human.

mod bluegreen_cmd;
mod ca_cmd;
mod config;
#[cfg(feature = "local")]
mod demo_cmd;
mod failover_cmd;
mod inventory_cmd;
mod output;
mod probe_cmd;
mod provider_cmd;
#[cfg(feature = "local")]
mod proxy_cmd;
mod switchover_cmd;
mod upgrade_cmd;
mod verify_cmd;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
#[cfg(feature = "local")]
use dbshift_provider::local::{Lab, UpOptions};

use output::print_json;

/// dbshift: fleet maintenance, blue/green, switchover and failover for MySQL-family servers,
/// with measured downtime and no lost writes.
#[derive(Parser, Debug)]
#[command(name = "dbshift", version, about, long_about = None)]
struct Cli {
    /// More log output (-v info, -vv debug). Logs go to stderr.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// The local lab's directory.
    #[arg(long, global = true, env = "DBSHIFT_LAB_DIR", default_value = dbshift_provider::DEFAULT_DIR)]
    dir: PathBuf,
    /// Where the cluster locks live: `local` (the default: files in the working directory's
    /// locks/, seen by commands on this machine and this --dir only) or
    /// etcd://host:port[,host:port...][/prefix] (lease-backed locks in etcd, seen by every
    /// dbshift that reaches it, from any directory or machine). The journal of runs stays the
    /// SQLite file in --dir either way, for now. Config key `state`; docs/state.md.
    #[arg(long, global = true, env = "DBSHIFT_STATE", value_name = "URL")]
    state: Option<String>,
    /// A configuration file (keys: dir, output, log, provider, region, profile, fleet, state); flags and
    /// DBSHIFT_* variables win over it. Default: ./dbshift.toml, then
    /// ~/.config/dbshift/config.toml, when they exist.
    #[arg(long, global = true, env = "DBSHIFT_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    provider: provider_cmd::ProviderArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The local lab: real MariaDB servers on 127.0.0.1, the embedded default provider.
    #[cfg(feature = "local")]
    #[command(subcommand)]
    Lab(LabCommand),
    /// Every instance: role, endpoint, engine, status, CA, encryption, replication health; on a
    /// self-managed fleet each cluster's discovered topology as a tree first.
    Inventory(OutputArgs),
    /// Restart an instance's server (the provider's reboot) and wait until it answers again.
    Reboot {
        /// Instance id, e.g. lab-1-2.
        instance: String,
        /// How long to wait for the server to accept connections again (e.g. 60s, 2m).
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Print the endpoint a cluster name (its current writer) or an instance id resolves to.
    Resolve {
        /// Cluster name (lab-1) or instance id (lab-1-2).
        name: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Measure the downtime clients see: writes, reads and new connections, outages, the
    /// longest write gap, latency, and the lost-write audit; a report with a timeline chart.
    Probe(probe_cmd::ProbeArgs),
    /// Run the switchover guards on a cluster, changing nothing; exit 1 if one fails.
    Check(switchover_cmd::CheckArgs),
    /// Move a cluster's writer to one of its replicas: guards, fence, exact GTID wait, point of
    /// no return, promotion, redirect; automatic rollback before the point of no return.
    Switchover(switchover_cmd::SwitchoverArgs),
    /// Give a cluster a new writer: the switchover when its writer answers; when it is dead,
    /// fence it first (stopped by the provider, proxy paused), promote the most advanced
    /// replica (Gtid_IO_Pos, then gtid_slave_pos), re-point the others by GTID. Run again
    /// after dbshift was killed part way, it continues the interrupted run.
    Failover(failover_cmd::FailoverArgs),
    /// Watch a cluster: a dead writer (unreachable, and the replicas agree: their IO threads
    /// lost it, or they heard no event or heartbeat from it for 3 heartbeat periods), semi-sync
    /// falling back to async, broken replicas; --auto-failover fails over. Ctrl-C stops.
    Watch(failover_cmd::WatchArgs),
    /// Make a former writer a replica of its cluster's new writer, unless it holds errant
    /// transactions (then reported, and it is left read-only).
    Rejoin(failover_cmd::RejoinArgs),
    /// Compare a cluster's replicas (or one, --replica) with its writer, table by table at one
    /// point of the writer's history, changing neither; exit 1 on a difference.
    Verify(verify_cmd::VerifyArgs),
    /// Pre-checks of a major-version upgrade on a cluster's writer (reserved words, removed
    /// variables, functions and SQL modes, authentication plugins, ...); exit 1 on a finding
    /// that would stop it. Changes nothing.
    UpgradeCheck(upgrade_cmd::UpgradeCheckArgs),
    /// Replicas of a cluster: `replica add` builds new ones from a hot snapshot.
    #[command(subcommand)]
    Replica(failover_cmd::ReplicaCommand),
    /// The journal's runs (switchovers), newest first.
    Runs(OutputArgs),
    /// Continue a run that was cut short (dbshift killed); the servers are re-checked.
    Resume(switchover_cmd::ResumeArgs),
    /// Blue/green: build green from a hot snapshot (encrypted, another server binary), keep
    /// it replicating from the exact position, verify, switch over and roll back through the
    /// switchover core, remove the side that no longer serves.
    #[command(subcommand)]
    Bluegreen(bluegreen_cmd::BlueGreenCommand),
    /// A MySQL-protocol proxy in front of a cluster's writer that holds clients through a
    /// switchover: they see added latency, no error. Runs until SIGTERM or Ctrl-C.
    #[cfg(feature = "local")]
    Proxy(proxy_cmd::ProxyArgs),
    /// The blue/green workflow end to end on a lab of its own, under a write load: build an
    /// encrypted green from a hot snapshot, verify it, switch over and roll back with the
    /// downtime probe running, verify again, and report what clients saw (write gaps, failed
    /// and lost writes, charts). The lab is deleted at the end unless --keep.
    #[cfg(feature = "local")]
    Demo(demo_cmd::DemoArgs),
    /// A command of the local lab (`lab`, `demo`, `proxy`) in a dbshift built without it.
    #[cfg(not(feature = "local"))]
    #[command(external_subcommand)]
    NotBuilt(Vec<String>),
    /// The CAs server certificates can be issued from: validity, trust, which instances use
    /// each.
    #[command(subcommand)]
    Ca(ca_cmd::CaCommand),
    /// Rotate the fleet's server certificates to another CA: a plan first (--plan), the trust
    /// bundle deployed before any certificate changes, clusters K at a time, readers before
    /// the writer, a health gate after each instance, resumable (run the same command again).
    CaRotate(ca_cmd::CaRotateArgs),
}

/// An error that carries its own exit code (1 refused or rolled back, 2 bad input, 3 needs a
/// human), for outcomes that are not plain failures.
#[derive(Debug)]
pub(crate) struct Exit {
    code: u8,
    message: String,
}

impl Exit {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Exit {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

#[cfg(feature = "local")]
#[derive(Subcommand, Debug)]
enum LabCommand {
    /// Build the lab, or start what is not running in an existing one. Idempotent.
    Up {
        /// Clusters to build, named lab-1 .. lab-N (default 1 for a new lab).
        #[arg(long)]
        clusters: Option<u32>,
        /// Replicas per cluster (default 2 for a new lab).
        #[arg(long)]
        replicas: Option<u32>,
        /// The mariadbd binary (default: found on PATH or in /usr/sbin).
        #[arg(long)]
        mariadbd: Option<PathBuf>,
        /// First port of a consecutive range (default: free ports chosen by the system).
        #[arg(long)]
        base_port: Option<u16>,
        /// Servers that behave like RDS for MariaDB: dbshift's admin user has no SUPER and no
        /// READ_ONLY ADMIN and changes replication through mysql.rds_* procedures. An existing
        /// lab must be asked for the mode it was built in.
        #[arg(long)]
        rds_mode: bool,
        /// InnoDB buffer pool per server, in MiB (default 16: small; a load test wants 128).
        #[arg(long)]
        buffer_pool_mb: Option<u32>,
        /// Semi-synchronous replication (AFTER_SYNC, every server a semi-sync source and
        /// replica, 5 s fallback to async): an unplanned failover loses no acknowledged write.
        /// Only when the lab is built.
        #[arg(long)]
        semi_sync: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Every endpoint, process and credential of the lab.
    Status(OutputArgs),
    /// The lab's dbshift proxies: one or more per cluster, their stable client endpoints.
    #[command(subcommand)]
    Proxy(proxy_cmd::LabProxyCommand),
    /// Stop every server of the lab by PID; --purge also deletes the lab's files.
    Down {
        /// Delete the lab directory's contents made by the lab (data, certificates, state).
        #[arg(long)]
        purge: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Args, Debug, Clone, Copy)]
pub(crate) struct OutputArgs {
    /// Output format.
    #[arg(long, short = 'o', value_enum, env = "DBSHIFT_OUTPUT", default_value_t = Format::Table)]
    pub(crate) output: Format,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Table,
    Json,
}

/// `500ms`, `10s`, `2m`, `1h`, or a plain number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 500ms, 10s, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {s:?} (use ms, s, m or h)"
            ))
        }
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("{s:?} must be more than zero"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The refusals every workflow shares, whatever its own error type: bad input (2) and another
/// command holding the cluster (1), both with nothing changed. `None` for anything else, which
/// each command maps as its workflow requires.
pub(crate) fn refusal(e: &dbshift_ops::Error) -> Option<Exit> {
    if let Some(m) = e.bad_input() {
        return Some(Exit::new(2, m));
    }
    if let Some(l) = e.lock_lost() {
        return Some(Exit::new(
            3,
            format!(
                "{l}. Nothing was changed after the lock was lost, but the run is unfinished: \
                 see where it stopped with `dbshift runs`, check the cluster with `dbshift \
                 inventory`, and continue it with `dbshift resume RUN` once the store answers"
            ),
        ));
    }
    e.lock_held().map(|l| Exit::new(1, l.to_string()))
}

/// Exit code 2 for errors that are the user's input; 1 otherwise.
fn exit_code_for(err: &anyhow::Error) -> u8 {
    use dbshift_provider::Error as P;
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<Exit>() {
            return e.code;
        }
        if let Some(p) = cause.downcast_ref::<dbshift_probe::Error>() {
            return if p.is_bad_input() { 2 } else { 1 };
        }
        if let Some(p) = cause.downcast_ref::<P>() {
            return match p {
                P::BadInput(_)
                | P::Unknown { .. }
                | P::NoLab(_)
                | P::DamagedState { .. }
                | P::Missing(_)
                | P::Unsupported(_) => 2,
                P::NeedsHuman(_) => 3,
                _ => 1,
            };
        }
    }
    1
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("DBSHIFT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    // Like every Unix tool: `dbshift ... | head` ends quietly instead of panicking on a
    // closed pipe.
    // SAFETY: setting a signal disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // The configuration file fills the DBSHIFT_* variables that are not set, before the flags
    // are parsed: flags, then the environment, then the file.
    let args: Vec<String> = std::env::args().collect();
    let config_file = config::locate(&args);
    if let Some(path) = &config_file {
        match config::read(path) {
            Ok(vars) => config::apply(&vars),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    if let Some(path) = cli.config.as_ref().or(config_file.as_ref()) {
        tracing::info!(file = %path.display(), "configuration file read");
    }
    // One crypto provider for rustls across the tree: ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(exit_code_for(&err))
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let state = provider_cmd::parse_state(cli.state.as_deref())?;
    let ctx = &provider_cmd::Ctx::new(cli.dir.clone(), cli.provider.clone(), state);
    match &cli.command {
        #[cfg(feature = "local")]
        Command::Lab(_) => ctx.require_local("lab")?,
        #[cfg(feature = "local")]
        Command::Demo(_) => ctx.require_local("demo")?,
        // A lab proxy option file needs the lab; `--target` takes any provider's cluster.
        #[cfg(feature = "local")]
        Command::Proxy(a) if a.defaults_file.is_some() => ctx.require_local("proxy")?,
        Command::Probe(_) => ctx.require_local("probe")?,
        Command::Check(_) => ctx.require_sql("check")?,
        Command::Switchover(_) => ctx.require_sql("switchover")?,
        _ => {}
    }
    match cli.command {
        #[cfg(feature = "local")]
        Command::Lab(LabCommand::Up {
            clusters,
            replicas,
            mariadbd,
            base_port,
            rds_mode,
            buffer_pool_mb,
            semi_sync,
            output,
        }) => {
            let opts = UpOptions {
                clusters,
                replicas,
                mariadbd,
                base_port,
                die_with_parent: false,
                rds_mode,
                buffer_pool_mb,
                semi_sync_timeout: semi_sync.then_some(dbshift_provider::local::SEMI_SYNC_TIMEOUT),
            };
            let (lab, report) = Lab::up(&cli.dir, &opts)
                .await
                .with_context(|| format!("bringing up the lab in {}", cli.dir.display()))?;
            match output.output {
                Format::Json => print_json(&report)?,
                Format::Table => {
                    let verb = if report.created { "built" } else { "checked" };
                    println!(
                        "lab {verb} in {} ({:.1} s): {} started, {} already running",
                        report.dir.display(),
                        report.elapsed_ms as f64 / 1000.0,
                        report.started.len(),
                        report.already_running.len()
                    );
                    output::print_lab_status(&lab.status());
                }
            }
        }
        #[cfg(feature = "local")]
        Command::Lab(LabCommand::Status(output)) => {
            let lab = ctx.lab("lab status")?;
            let status = lab.status();
            match output.output {
                Format::Json => print_json(&status)?,
                Format::Table => output::print_lab_status(&status),
            }
        }
        #[cfg(feature = "local")]
        Command::Lab(LabCommand::Down { purge, output }) => {
            let report = Lab::down_off_runtime(&cli.dir, purge)
                .await
                .with_context(|| format!("taking down the lab in {}", cli.dir.display()))?;
            match output.output {
                Format::Json => print_json(&report)?,
                Format::Table => println!(
                    "stopped {} server(s){}",
                    report.stopped.len(),
                    if report.purged {
                        "; lab files deleted"
                    } else {
                        ""
                    }
                ),
            }
        }
        Command::Inventory(output) => inventory_cmd::run(output, ctx).await?,
        Command::Reboot { instance, timeout } => {
            let lab = ctx.provider().await?;
            // Resolve first: an unknown instance is bad input and nothing is touched.
            lab.describe_instance(&instance).await?;
            let started = std::time::Instant::now();
            lab.reboot(&instance, timeout)
                .await
                .with_context(|| format!("rebooting {instance}"))?;
            println!(
                "{instance} rebooted; accepting connections after {:.2} s",
                started.elapsed().as_secs_f64()
            );
        }
        Command::Resolve { name, output } => {
            let lab = ctx.provider().await?;
            let ep = lab.resolve(&name).await?;
            match output.output {
                Format::Json => print_json(&ep)?,
                Format::Table => println!("{ep}"),
            }
        }
        Command::Probe(args) => probe_cmd::run(args, ctx).await?,
        Command::Check(args) => switchover_cmd::check(args, ctx).await?,
        Command::Switchover(args) => switchover_cmd::switchover(args, ctx).await?,
        Command::Failover(args) => failover_cmd::failover(args, ctx).await?,
        Command::Watch(args) => failover_cmd::watch(args, ctx).await?,
        Command::Rejoin(args) => failover_cmd::rejoin(args, ctx).await?,
        Command::Verify(args) => verify_cmd::verify(args, ctx).await?,
        Command::UpgradeCheck(args) => upgrade_cmd::run(args, ctx).await?,
        Command::Replica(cmd) => failover_cmd::replica(cmd, ctx).await?,
        Command::Runs(output) => switchover_cmd::runs(output, ctx).await?,
        Command::Resume(args) => switchover_cmd::resume(args, ctx).await?,
        Command::Bluegreen(cmd) => bluegreen_cmd::run(cmd, ctx).await?,
        #[cfg(feature = "local")]
        Command::Proxy(args) => proxy_cmd::run(args, ctx).await?,
        #[cfg(feature = "local")]
        Command::Lab(LabCommand::Proxy(cmd)) => proxy_cmd::lab_proxy(cmd, ctx).await?,
        #[cfg(feature = "local")]
        Command::Demo(args) => demo_cmd::run(args).await?,
        #[cfg(not(feature = "local"))]
        Command::NotBuilt(args) => return Err(provider_cmd::not_built_command(&args)),
        Command::Ca(cmd) => ca_cmd::ca(cmd, ctx).await?,
        Command::CaRotate(args) => ca_cmd::rotate(args, ctx).await?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
