//! `dbshift proxy` (run a switchover proxy in the foreground) and `dbshift lab proxy up|down`
//! (the lab's proxies, one or more per cluster, as its stable client endpoints). The proxy itself is
//! `dbshift_proxy`; see docs/proxy.md.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use dbshift_provider::local::proxy::ProxyOptions;
use dbshift_provider::Fleet;
use dbshift_proxy::{AdminTls, AuthSource, Backend, ClientTls, ProxyConfig};

use crate::output::{print_json, Table};
use crate::provider_cmd::Ctx;
use crate::{Exit, Format, OutputArgs};

/// The environment variable that can hold the admin API's token.
const TOKEN_ENV: &str = "DBSHIFT_PROXY_TOKEN";

#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// A proxy option file written by `dbshift lab proxy up` (cluster, addresses, token file,
    /// TLS files); instead of the flags below.
    #[arg(long, conflicts_with_all = ["listen", "target", "admin", "token_file", "tls_cert", "admin_tls_cert"])]
    pub defaults_file: Option<PathBuf>,
    /// Where clients connect, e.g. 127.0.0.1:3307.
    #[arg(long, required_unless_present = "defaults_file")]
    pub listen: Option<SocketAddr>,
    /// The cluster whose writer the proxy forwards to (lab-1, or a cluster of the
    /// `--provider`: a fleet file's, an AWS cluster or instance).
    #[arg(long, required_unless_present = "defaults_file")]
    pub target: Option<String>,
    /// The admin API, e.g. 127.0.0.1:3308; needs a token. Plain HTTP on a loopback address
    /// only; any address with --admin-tls-cert and --admin-tls-key (HTTPS).
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// HTTPS for the admin API: its certificate (PEM), naming the host or address callers
    /// reach it by; they verify it against its CA (a fleet file's `admin_ca`).
    #[arg(long, requires_all = ["admin", "admin_tls_key"])]
    pub admin_tls_cert: Option<PathBuf>,
    /// HTTPS for the admin API: its key (PEM).
    #[arg(long, requires_all = ["admin", "admin_tls_cert"])]
    pub admin_tls_key: Option<PathBuf>,
    /// A file holding the admin API's bearer token (else DBSHIFT_PROXY_TOKEN).
    #[arg(long, requires = "admin")]
    pub token_file: Option<PathBuf>,
    /// TLS towards clients: the proxy's certificate (PEM).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS towards clients: the proxy's key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Passwords the proxy needs towards the server, one `user = "password"` line (TOML) per
    /// user: for ed25519 and caching_sha2_password accounts, and for clients that log in with
    /// caching_sha2_password. Must be readable by its owner only (chmod 600); never logged.
    /// Without it, mysql_native_password accounts work and the others are refused at login.
    #[arg(long)]
    pub secrets_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum LabProxyCommand {
    /// Start a dbshift proxy in front of each cluster (or the named ones): the clusters'
    /// stable client endpoints. Idempotent.
    Up {
        /// Only these clusters.
        #[arg(long = "cluster")]
        clusters: Vec<String>,
        /// Proxies per cluster (1 to 8), as behind a load balancer: a switchover pauses,
        /// switches and resumes them all, and is refused if one cannot be paused.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
        count: u32,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Stop the lab's proxies.
    Down,
}

fn read_token(path: Option<&Path>) -> anyhow::Result<String> {
    let token = match path {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("reading the admin token from {}", p.display()))?,
        None => std::env::var(TOKEN_ENV).map_err(|_| {
            Exit::new(
                2,
                format!("--admin needs a token: --token-file FILE or {TOKEN_ENV}"),
            )
        })?,
    };
    Ok(token.trim().to_string())
}

/// Run a proxy until SIGTERM or Ctrl-C.
pub async fn run(args: ProxyArgs, ctx: &Ctx) -> anyhow::Result<()> {
    // A client that goes away mid-write must cost its session, not the proxy: `main` gives
    // SIGPIPE its default action (for `dbshift ... | head`), which would end the process.
    // SAFETY: setting a signal disposition; no handler runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let (lab_dir, cluster, listen, admin, token_file, tls) = match &args.defaults_file {
        // A proxy option file is the lab's (`dbshift lab proxy up`).
        Some(f) => {
            let o = ProxyOptions::read(f).map_err(|e| Exit::new(2, e.to_string()))?;
            let parse = |what: &str, v: &str| -> anyhow::Result<SocketAddr> {
                v.parse()
                    .map_err(|e| Exit::new(2, format!("{}: {what} {v:?}: {e}", f.display())).into())
            };
            (
                Some(o.lab_dir.clone()),
                o.cluster.clone(),
                parse("listen", &o.listen)?,
                Some(parse("admin", &o.admin)?),
                Some(o.token_file.clone()),
                Some(ClientTls {
                    cert: o.tls_cert.clone(),
                    key: o.tls_key.clone(),
                }),
            )
        }
        None => (
            None,
            args.target.clone().expect("clap requires it"),
            args.listen.expect("clap requires it"),
            args.admin,
            args.token_file.clone(),
            args.tls_cert
                .clone()
                .zip(args.tls_key.clone())
                .map(|(cert, key)| ClientTls { cert, key }),
        ),
    };
    // The lab's proxies keep plain HTTP on loopback.
    let admin_tls = match &args.defaults_file {
        Some(_) => None,
        None => args
            .admin_tls_cert
            .clone()
            .zip(args.admin_tls_key.clone())
            .map(|(cert, key)| AdminTls { cert, key }),
    };
    // Bad input is refused before anything starts.
    if let Some(a) = admin {
        dbshift_proxy::admin::check_admin_listen(a, admin_tls.is_some())
            .map_err(|e| Exit::new(2, format!("--admin {a}: {e}")))?;
    }
    let token = match admin {
        Some(_) => Some(read_token(token_file.as_deref())?),
        None => None,
    };
    if let Some(t) = &token {
        dbshift_proxy::admin::check_admin_token(t).map_err(|e| Exit::new(2, e.to_string()))?;
    }
    if let Some(t) = &admin_tls {
        dbshift_proxy::backend::server_tls_config(&t.cert, &t.key).map_err(|e| {
            Exit::new(
                2,
                format!(
                    "--admin-tls-cert {} --admin-tls-key {}: {e} (PEM files: the admin API's \
                     certificate chain and its private key)",
                    t.cert.display(),
                    t.key.display()
                ),
            )
        })?;
    }
    // The backend and the users: the lab's own for a lab proxy option file, else the
    // provider's (the lab of --dir, a fleet file's cluster, AWS).
    let (backend, admin_user, backend_tls) = match &lab_dir {
        Some(dir) => {
            let lab = ctx.lab_in(dir, "proxy")?;
            let backend = lab.resolve(&cluster).await?;
            (
                backend,
                lab.state().users.admin.clone(),
                Some(lab.ca_bundle()),
            )
        }
        None => {
            let p = ctx.provider().await?;
            let backend = p.resolve(&cluster).await.map_err(|e| {
                Exit::new(2, format!("--target {cluster}: {e}; nothing was started"))
            })?;
            let creds = p
                .credentials_for(&cluster)
                .with_context(|| format!("the {} provider's database users", p.name()))?;
            (backend, creds.admin, creds.ca_bundle)
        }
    };
    let mut cfg = ProxyConfig::new(
        listen,
        Backend::new(backend.host.clone(), backend.port),
        AuthSource::Admin {
            user: admin_user.user,
            password: admin_user.password,
        },
    );
    cfg.backend_tls = backend_tls;
    cfg.client_tls = tls;
    cfg.secrets_file = args.secrets_file.clone();
    let handle = dbshift_proxy::start(cfg)
        .await
        .with_context(|| format!("starting the proxy of {cluster} on {listen}"))?;
    let admin_server = match (admin, token, &admin_tls) {
        (Some(addr), Some(token), Some(tls)) => Some(
            dbshift_proxy::serve_admin_tls(handle.clone(), addr, token, tls)
                .await
                .with_context(|| format!("starting the admin API on {addr} (TLS)"))?,
        ),
        (Some(addr), Some(token), None) => Some(
            dbshift_proxy::serve_admin(handle.clone(), addr, token)
                .await
                .with_context(|| format!("starting the admin API on {addr}"))?,
        ),
        _ => None,
    };
    eprintln!(
        "dbshift proxy for {cluster}: clients on {}, backend {backend}{}",
        handle.local_addr(),
        admin_server
            .as_ref()
            .map(|a| format!(
                ", admin API on {}://{}",
                if a.is_tls() { "https" } else { "http" },
                a.local_addr()
            ))
            .unwrap_or_default()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    handle.shutdown().await;
    Ok(())
}

pub async fn lab_proxy(cmd: LabProxyCommand, ctx: &Ctx) -> anyhow::Result<()> {
    let lab = ctx.lab("lab proxy")?;
    match cmd {
        LabProxyCommand::Up {
            clusters,
            count,
            output,
        } => {
            let all: Vec<String> = lab
                .list_clusters()
                .await?
                .into_iter()
                .map(|c| c.name)
                .collect();
            let wanted = if clusters.is_empty() { all } else { clusters };
            let exe = std::env::current_exe().context("finding the dbshift binary")?;
            let mut started = Vec::new();
            for c in &wanted {
                let proxies = lab
                    .start_proxies_off_runtime(c, count, &exe)
                    .await
                    .with_context(|| format!("starting the proxies of {c}"))?;
                for p in proxies {
                    started.push(serde_json::json!({
                        "cluster": p.cluster, "listen": p.listen, "admin": p.admin,
                    }));
                }
            }
            match output.output {
                Format::Json => print_json(&started)?,
                Format::Table => {
                    let mut t = Table::new(&["CLUSTER", "PROXY", "ADMIN"]);
                    for s in &started {
                        t.row(vec![
                            s["cluster"].as_str().unwrap_or_default().into(),
                            format!(
                                "{}:{}",
                                s["listen"]["host"].as_str().unwrap_or_default(),
                                s["listen"]["port"]
                            ),
                            format!(
                                "{}:{}",
                                s["admin"]["host"].as_str().unwrap_or_default(),
                                s["admin"]["port"]
                            ),
                        ]);
                    }
                    print!("{}", t.render());
                    println!(
                        "clients connect to the proxy (TLS against {}); a switchover holds them there",
                        lab.ca_bundle().display()
                    );
                }
            }
        }
        LabProxyCommand::Down => {
            let mut n = 0;
            for c in lab.list_clusters().await? {
                n += lab
                    .stop_proxies_off_runtime(&c.name)
                    .await
                    .with_context(|| format!("stopping the proxies of {}", c.name))?;
            }
            println!("stopped {n} proxy(ies)");
        }
    }
    Ok(())
}
