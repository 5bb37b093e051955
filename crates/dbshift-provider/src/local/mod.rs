//! The local lab: the embedded default provider, made of real `mariadbd` processes.
//!
//! `lab up` builds clusters `lab-1` .. `lab-N`, each a writer and M replicas over GTID
//! replication (one `gtid_domain_id` per cluster) that runs over TLS with the server
//! certificate verified against the lab CA. Everything lives under one directory (default
//! `./.dbshift/lab`) with a state file, so later commands find the lab without flags. The test
//! harness uses this same code. This module must never decide a workflow: it builds, starts,
//! stops and describes, and nothing more.

mod bluegreen;
pub mod ca;
mod process;
pub mod proxy;
pub mod rds;
mod replica;
pub mod snapshot;
pub mod state;
pub mod tls;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dbshift_db::dialect::{SourceSpec, SourceStart, SslSpec};
use dbshift_db::server::{ConnectOptions, TlsOptions};
use dbshift_db::{quote_literal, Server};
use rand::distr::{Alphanumeric, SampleString};
use serde::Serialize;

pub use process::{find_mariadbd, find_program, InstancePaths};
use process::{ServerConfig, INSTALL_HINT};
pub use replica::AddedReplicas;
pub use snapshot::{RestoreOptions, SlaveInfo, Snapshot};
pub use state::{InstanceRecord, LabState, LabUsers};

use crate::error::{Error, IoContext, Result};
use crate::model::{
    CaApply, CertificateAuthority, Cluster, Credential, Credentials, Deployment, Endpoint,
    GreenSpec, Instance, InstanceStatus, Provider, ProxyEndpoint, Role, Side,
};

/// The lab directory used when none is given.
pub const DEFAULT_DIR: &str = ".dbshift/lab";
/// The trust bundle every lab server and client uses (`ssl_ca`, `MASTER_SSL_CA`).
pub const TRUST_BUNDLE: &str = "tls/trust.pem";
const MAX_CLUSTERS: u32 = 50;
const MAX_REPLICAS: u32 = 9;
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(30);

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a UTC date always formats as RFC 3339")
}

/// What `lab up` is asked for.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Clusters to build; `None` keeps an existing lab's shape (1 for a new lab).
    pub clusters: Option<u32>,
    /// Replicas per cluster; `None` keeps an existing lab's shape (2 for a new lab).
    pub replicas: Option<u32>,
    /// The server binary; found on this machine when `None`.
    pub mariadbd: Option<PathBuf>,
    /// First port of a consecutive range; free ports chosen by the kernel when `None`.
    pub base_port: Option<u16>,
    /// Servers die with this process (the test harness); `lab up` leaves them running.
    pub die_with_parent: bool,
    /// Build servers that behave like RDS for MariaDB towards dbshift (see [`rds`]). An
    /// existing lab must be asked for the mode it was built in.
    pub rds_mode: bool,
    /// InnoDB buffer pool per server in MiB (default 16; a load test wants 128 or more).
    pub buffer_pool_mb: Option<u32>,
    /// Semi-synchronous replication (`AFTER_SYNC`) with this fallback timeout; only when the
    /// lab is built (an existing lab keeps how it was built).
    pub semi_sync_timeout: Option<Duration>,
}

/// The semi-sync fallback timeout `lab up --semi-sync` uses.
pub const SEMI_SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// What `lab up` did.
#[derive(Debug, Clone, Serialize)]
pub struct UpReport {
    pub dir: PathBuf,
    /// A new lab was built.
    pub created: bool,
    /// Instances started by this call (new ones, or ones that had died).
    pub started: Vec<String>,
    /// Instances that were already running and were left alone.
    pub already_running: Vec<String>,
    pub elapsed_ms: u128,
}

/// What `lab down` did.
#[derive(Debug, Clone, Serialize)]
pub struct DownReport {
    pub dir: PathBuf,
    pub stopped: Vec<String>,
    pub purged: bool,
}

/// One instance in `lab status`.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceStatusRow {
    pub id: String,
    pub cluster: String,
    pub role: Role,
    pub endpoint: Endpoint,
    pub server_id: u32,
    pub status: InstanceStatus,
    pub pid: Option<u32>,
    pub dir: PathBuf,
    pub ca: String,
}

/// One cluster in `lab status`.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatusRow {
    pub name: String,
    pub writer: String,
    /// Where a client that follows the cluster name connects now.
    pub endpoint: Endpoint,
    pub gtid_domain_id: u32,
    /// The dbshift proxy in front of the cluster, when one runs: the stable client endpoint
    /// (the first one when there are several).
    pub proxy: Option<Endpoint>,
    /// Every running proxy in front of the cluster, first one first.
    pub proxies: Vec<Endpoint>,
}

/// `lab status`: every endpoint and the credentials, for the operator of the lab.
#[derive(Debug, Clone, Serialize)]
pub struct LabStatus {
    pub dir: PathBuf,
    pub engine_version: String,
    /// Servers behave like RDS for MariaDB: the admin user has no SUPER, `mysql.rds_*`
    /// procedures change replication.
    pub rds_mode: bool,
    pub ca_bundle: PathBuf,
    pub users: LabUsers,
    pub clusters: Vec<ClusterStatusRow>,
    pub instances: Vec<InstanceStatusRow>,
}

/// A handle on a lab directory and its state.
#[derive(Debug, Clone)]
pub struct Lab {
    dir: PathBuf,
    state: LabState,
    die_with_parent: bool,
}

fn absolute(dir: &Path) -> Result<PathBuf> {
    if dir.is_absolute() {
        Ok(dir.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .ctx(|| "reading the current directory".into())?
            .join(dir))
    }
}

fn password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 24)
}

/// The SQL run once on the template datadir: the lab's users and schemas (and in RDS mode,
/// given the platform's credential, the platform user and the `mysql.rds_*` procedures). Every
/// server of the lab is a copy of it, so all of it exists everywhere without a replicated event.
fn users_sql(users: &LabUsers, rds_platform: Option<&Credential>) -> String {
    // Bootstrap runs with grant tables off; loading them makes CREATE USER work.
    let mut sql = String::from("FLUSH PRIVILEGES;\n");
    let admin = &users.admin;
    if let Some(platform) = rds_platform {
        sql.push_str(&rds::platform_sql(platform));
        // Nobody ever logs in as the definer: its password is not kept anywhere.
        sql.push_str(&rds::procedures_sql(
            &password(),
            &[rds::DEFINER, &platform.user],
        ));
        sql.push_str(&rds::admin_sql(admin));
    } else {
        for host in ["127.0.0.1", "localhost"] {
            sql.push_str(&format!(
                "CREATE USER {u}@'{host}' IDENTIFIED BY {p};\n\
                 GRANT ALL PRIVILEGES ON *.* TO {u}@'{host}' WITH GRANT OPTION;\n",
                u = quote_literal(&admin.user),
                p = quote_literal(&admin.password),
            ));
        }
    }
    sql.push_str(&format!(
        "CREATE USER {u}@'127.0.0.1' IDENTIFIED BY {p};\n\
         GRANT REPLICATION SLAVE ON *.* TO {u}@'127.0.0.1';\n",
        u = quote_literal(&users.replication.user),
        p = quote_literal(&users.replication.password),
    ));
    // The application user gets no global privilege at all: no SUPER, no READ_ONLY ADMIN,
    // so read_only stops it, as it stops real applications.
    sql.push_str(&format!(
        "CREATE DATABASE IF NOT EXISTS app;\n\
         CREATE DATABASE IF NOT EXISTS dbshift;\n\
         CREATE USER {u}@'127.0.0.1' IDENTIFIED BY {p};\n\
         GRANT ALL PRIVILEGES ON app.* TO {u}@'127.0.0.1';\n\
         GRANT ALL PRIVILEGES ON dbshift.* TO {u}@'127.0.0.1';\n",
        u = quote_literal(&users.app.user),
        p = quote_literal(&users.app.password),
    ));
    sql
}

impl Lab {
    /// Open the lab in `dir`. [`Error::NoLab`] when there is none.
    pub fn open(dir: &Path) -> Result<Lab> {
        let dir = absolute(dir)?;
        let state = LabState::load(&dir)?;
        Ok(Lab {
            dir,
            state,
            die_with_parent: false,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn state(&self) -> &LabState {
        &self.state
    }

    /// Re-read the state file (another command may have moved a writer).
    pub fn reload(&mut self) -> Result<()> {
        self.state = LabState::load(&self.dir)?;
        Ok(())
    }

    pub fn paths(&self, id: &str) -> InstancePaths {
        InstancePaths::new(self.dir.join(id))
    }

    pub fn ca_bundle(&self) -> PathBuf {
        self.dir.join(TRUST_BUNDLE)
    }

    /// Connection options for an instance as dbshift's admin user, over TLS verified against
    /// the lab's trust bundle.
    pub fn admin_options(&self, id: &str) -> Result<ConnectOptions> {
        let rec = self.state.instance(id)?;
        Ok(self.options_for(rec.port, &self.state.users.admin))
    }

    /// Connection options for an endpoint as the application user.
    pub fn app_options(&self, id: &str) -> Result<ConnectOptions> {
        let rec = self.state.instance(id)?;
        Ok(self.options_for(rec.port, &self.state.users.app))
    }

    fn options_for(&self, port: u16, cred: &Credential) -> ConnectOptions {
        ConnectOptions::new("127.0.0.1", port, cred.user.clone())
            .password(cred.password.clone())
            .tls(TlsOptions {
                ca_path: self.ca_bundle(),
                verify_identity: true,
            })
    }

    /// Connect to an instance as dbshift's admin user.
    pub async fn connect_admin(&self, id: &str) -> Result<Server> {
        Ok(Server::connect(&self.admin_options(id)?).await?)
    }

    /// Whether the lab's servers behave like RDS towards dbshift.
    pub fn rds_mode(&self) -> bool {
        self.state.rds_mode
    }

    /// Connect as the platform: the lab's own superuser in RDS mode, the admin user (which
    /// holds every privilege there) otherwise. For what a control plane does, never for
    /// workflows.
    async fn connect_platform(&self, id: &str) -> Result<Server> {
        let rec = self.state.instance(id)?;
        let cred = self
            .state
            .platform
            .as_ref()
            .unwrap_or(&self.state.users.admin);
        Ok(Server::connect(&self.options_for(rec.port, cred)).await?)
    }

    /// Build a new lab or bring an existing one back to running. Idempotent: on a running lab
    /// it changes nothing; an instance that died is restarted.
    pub async fn up(dir: &Path, opts: &UpOptions) -> Result<(Lab, UpReport)> {
        let started_at = Instant::now();
        let dir = absolute(dir)?;
        if let Some(0) = opts.clusters {
            return Err(Error::BadInput(
                "--clusters must be at least 1: a lab needs a cluster to run".into(),
            ));
        }
        if let Some(n) = opts.clusters.filter(|n| *n > MAX_CLUSTERS) {
            return Err(Error::BadInput(format!(
                "--clusters {n} is more than this lab supports ({MAX_CLUSTERS})"
            )));
        }
        if let Some(n) = opts.replicas.filter(|n| *n > MAX_REPLICAS) {
            return Err(Error::BadInput(format!(
                "--replicas {n} is more than this lab supports ({MAX_REPLICAS})"
            )));
        }
        if let Some(mb) = opts.buffer_pool_mb.filter(|mb| !(8..=65_536).contains(mb)) {
            return Err(Error::BadInput(format!(
                "--buffer-pool-mb {mb} is outside 8..65536"
            )));
        }
        if LabState::path(&dir).exists() {
            let _lock = state::LabLock::acquire(&dir)?;
            let mut lab = Lab::open(&dir)?;
            lab.die_with_parent = opts.die_with_parent;
            lab.check_shape(opts)?;
            let (started, already_running) = lab.ensure_running().await?;
            let report = UpReport {
                dir: dir.clone(),
                created: false,
                started,
                already_running,
                elapsed_ms: started_at.elapsed().as_millis(),
            };
            return Ok((lab, report));
        }
        let created_dir = !dir.exists();
        std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        let lock = state::LabLock::acquire(&dir)?;
        match Lab::create(&dir, opts).await {
            Ok(lab) => {
                drop(lock);
                let started = lab.state.instances.iter().map(|i| i.id.clone()).collect();
                let report = UpReport {
                    dir,
                    created: true,
                    started,
                    already_running: Vec::new(),
                    elapsed_ms: started_at.elapsed().as_millis(),
                };
                Ok((lab, report))
            }
            Err(e) => {
                // A lab that failed to build is taken down whole: nothing half-made remains.
                for (pid, cnf) in process::servers_under(&dir) {
                    process::stop_pid(pid, &cnf, STOP_GRACE);
                }
                drop(lock);
                if created_dir {
                    let _ = std::fs::remove_dir_all(&dir);
                } else {
                    remove_lab_files(&dir);
                }
                Err(e)
            }
        }
    }

    fn check_shape(&self, opts: &UpOptions) -> Result<()> {
        let have_clusters = self.state.clusters.len() as u32;
        let have_replicas = self.state.replicas_per_cluster;
        let clusters_differ = opts.clusters.is_some_and(|n| n != have_clusters);
        let replicas_differ = opts.replicas.is_some_and(|n| n != have_replicas);
        if let Some(mb) = opts
            .buffer_pool_mb
            .filter(|mb| *mb != self.state.buffer_pool_mb)
        {
            return Err(Error::BadInput(format!(
                "the lab in {} was built with a {} MiB buffer pool, not {mb}; omit                  --buffer-pool-mb to keep it, or `dbshift lab down --purge` first",
                self.dir.display(),
                self.state.buffer_pool_mb
            )));
        }
        if opts.rds_mode != self.state.rds_mode {
            let (have, asked) = if self.state.rds_mode {
                ("an RDS-mode lab", "without --rds-mode")
            } else {
                ("a lab in the default mode", "with --rds-mode")
            };
            let keep = if self.state.rds_mode {
                "`dbshift lab up --rds-mode`"
            } else {
                "`dbshift lab up` without --rds-mode"
            };
            return Err(Error::BadInput(format!(
                "the lab in {} is {have}, and `lab up` was asked {asked}; run {keep} to keep \
                 it, or `dbshift lab down --purge` first to build the other mode",
                self.dir.display()
            )));
        }
        if opts.semi_sync_timeout.is_some() && self.state.semi_sync_timeout_ms.is_none() {
            return Err(Error::BadInput(format!(
                "the lab in {} was built with asynchronous replication; `dbshift lab down \
                 --purge` first to build it with --semi-sync",
                self.dir.display()
            )));
        }
        if clusters_differ || replicas_differ {
            return Err(Error::BadInput(format!(
                "the lab in {} already has {have_clusters} cluster(s) with {have_replicas} \
                 replica(s) each; run `dbshift lab up` without --clusters/--replicas to keep it, \
                 or `dbshift lab down --purge` first to build another shape",
                self.dir.display()
            )));
        }
        Ok(())
    }

    async fn create(dir: &Path, opts: &UpOptions) -> Result<Lab> {
        let clusters = opts.clusters.unwrap_or(1);
        let replicas = opts.replicas.unwrap_or(2);
        let mariadbd = process::find_mariadbd(opts.mariadbd.as_deref())?;
        let engine_version = process::engine_version(&mariadbd)?;
        let per_cluster = 1 + replicas as usize;
        let total = clusters as usize * per_cluster;

        // A unix socket path is at most 107 bytes; say so before anything is built.
        let longest = dir
            .join(format!("lab-{clusters}-{per_cluster}"))
            .join("mysqld.sock");
        if longest.as_os_str().len() > 100 {
            return Err(Error::BadInput(format!(
                "the lab dir {} is too deep for the servers' unix sockets (over 100 bytes); \
                 choose a shorter --dir",
                dir.display()
            )));
        }
        let ports = match opts.base_port {
            Some(base) => {
                let ports: Vec<u16> = (0..total)
                    .map(|i| base.checked_add(i as u16))
                    .collect::<Option<_>>()
                    .ok_or_else(|| {
                        Error::BadInput(format!("--base-port {base} leaves too few ports"))
                    })?;
                if let Some(p) = ports.iter().find(|p| process::port_in_use(**p)) {
                    return Err(Error::BadInput(format!(
                        "port {p} on 127.0.0.1 is already in use; choose another --base-port \
                         (or omit it to let dbshift pick free ports)"
                    )));
                }
                ports
            }
            None => process::free_ports(total)?,
        };

        let users = LabUsers {
            admin: Credential {
                user: "dbshift_admin".into(),
                password: password(),
            },
            replication: Credential {
                user: "dbshift_repl".into(),
                password: password(),
            },
            app: Credential {
                user: "app".into(),
                password: password(),
            },
        };
        let mut state = LabState::new_empty(engine_version, mariadbd.clone(), replicas, users);
        if let Some(mb) = opts.buffer_pool_mb {
            state.buffer_pool_mb = mb;
        }
        if let Some(t) = opts.semi_sync_timeout {
            state.semi_sync_timeout_ms = Some(t.as_millis().clamp(1, u32::MAX as u128) as u32);
        }
        if opts.rds_mode {
            state.rds_mode = true;
            state.platform = Some(Credential {
                user: rds::PLATFORM_USER.into(),
                password: password(),
            });
        }

        // Servers start on the CA that expires soon, the only one trusted at first; the
        // other is there to rotate to.
        state.cas = ca::create_lab_cas(dir)?;
        let ca = state.ca(ca::CURRENT_CA)?.clone();
        tls::write_bundle(dir, &[&ca], &dir.join(TRUST_BUNDLE))?;
        state.current_ca = ca.id.clone();
        state.trusted_cas = vec![ca.id.clone()];

        let template = dir.join("template");
        tracing::info!(dir = %dir.display(), "initializing the template datadir");
        process::install_template(
            &mariadbd,
            &template,
            &users_sql(&state.users, state.platform.as_ref()),
        )?;

        let mut port_iter = ports.into_iter();
        for c in 1..=clusters {
            let name = format!("lab-{c}");
            for i in 1..=per_cluster {
                let id = format!("{name}-{i}");
                let port = port_iter.next().expect("one port was chosen per instance");
                state.instances.push(InstanceRecord {
                    id,
                    cluster: name.clone(),
                    port,
                    server_id: c * 100 + i as u32,
                    ca: ca.id.clone(),
                    engine_binary: mariadbd.clone(),
                    encrypted: false,
                    tags: Default::default(),
                    read_only_parameter: None,
                });
            }
            state.clusters.push(state::ClusterRecord {
                name: name.clone(),
                gtid_domain_id: c,
                writer: format!("{name}-1"),
            });
        }
        let lab = Lab {
            dir: dir.to_path_buf(),
            state,
            die_with_parent: opts.die_with_parent,
        };
        for rec in &lab.state.instances {
            let paths = lab.paths(&rec.id);
            process::copy_tree(&template.join("data"), &paths.data())?;
            std::fs::create_dir_all(paths.tmp())
                .ctx(|| format!("creating {}", paths.tmp().display()))?;
            tls::issue_server_cert(dir, &ca, &rec.id, &paths.tls())?;
            lab.write_cnf(rec)?;
        }
        let _ = std::fs::remove_dir_all(&template);
        // Saved before any server starts, so that `lab down` finds them whatever happens next.
        lab.state.save(dir)?;

        let ids: Vec<String> = lab.state.instances.iter().map(|i| i.id.clone()).collect();
        lab.start_and_wait(&ids).await?;
        for cluster in &lab.state.clusters {
            lab.make_writable(&cluster.writer).await?;
        }
        for cluster in &lab.state.clusters {
            for rec in lab.state.instances_of(&cluster.name) {
                if rec.id != cluster.writer {
                    lab.attach_replica(&rec.id, &cluster.writer, SourceStart::Gtid)
                        .await?;
                }
            }
        }
        for rec in &lab.state.instances {
            if lab.state.role_of(rec) == Role::Reader {
                lab.wait_replicating(&rec.id, Duration::from_secs(30))
                    .await?;
            }
        }
        Ok(lab)
    }

    fn write_cnf(&self, rec: &InstanceRecord) -> Result<()> {
        let domain = self
            .state
            .cluster(&rec.cluster)
            .map(|c| c.gtid_domain_id)
            .unwrap_or(0);
        self.write_cnf_with(rec, domain, "")
    }

    /// The option file of `rec` in GTID domain `domain`, with `extra` lines appended (a
    /// restore's encryption and `skip_slave_start`).
    pub(crate) fn write_cnf_with(
        &self,
        rec: &InstanceRecord,
        domain: u32,
        extra: &str,
    ) -> Result<()> {
        let paths = self.paths(&rec.id);
        let mut cnf = process::render_cnf(&ServerConfig {
            dir: &paths.dir,
            port: rec.port,
            server_id: rec.server_id,
            gtid_domain_id: domain,
            // Every server starts read-only; only the instance the state names as its
            // cluster's writer is made writable, after start. A writer that was demoted by a
            // switchover can then never come back writable from its option file.
            read_only: true,
            ssl_ca: &self.ca_bundle(),
            buffer_pool_mb: self.state.buffer_pool_mb,
        });
        if let Some(timeout) = self.state.semi_sync_timeout_ms {
            // Every server can be a semi-sync source (after a promotion) and replica. A commit
            // waits, after its binlog write and before the engine commit (AFTER_SYNC), for a
            // replica to have it; without one within the timeout it goes on asynchronously
            // (Rpl_semi_sync_master_status=OFF), which `dbshift watch` reports.
            // The source side is switched on for the writer only (when it is made writable,
            // and by a promotion): a replica that is a semi-sync source too would hold each
            // applied transaction for an acknowledgement no one sends, until the timeout.
            cnf.push_str(&format!(
                "rpl_semi_sync_master_enabled=OFF\n\
                 rpl_semi_sync_slave_enabled=ON\n\
                 rpl_semi_sync_master_wait_point=AFTER_SYNC\n\
                 rpl_semi_sync_master_timeout={timeout}\n"
            ));
        }
        cnf.push_str(extra);
        tls::write_atomic(&paths.cnf(), cnf.as_bytes(), 0o644)
    }

    /// Start the given instances together and wait until each accepts connections.
    async fn start_and_wait(&self, ids: &[String]) -> Result<()> {
        self.start_and_wait_within(ids, START_TIMEOUT).await
    }

    /// [`Lab::start_and_wait`] with another patience.
    async fn start_and_wait_within(&self, ids: &[String], timeout: Duration) -> Result<()> {
        let mut spawned = Vec::new();
        for id in ids {
            let rec = self.state.instance(id)?;
            let paths = self.paths(id);
            if process::port_held_async(rec.port, Duration::from_secs(5)).await {
                return Err(Error::Process {
                    instance: id.clone(),
                    message: format!(
                        "port {} on 127.0.0.1 is in use by another process; stop that process, \
                         or rebuild the lab with `dbshift lab down --purge` and `dbshift lab up`",
                        rec.port
                    ),
                });
            }
            tracing::info!(instance = %id, port = rec.port, "starting mariadbd");
            // With semi-sync, a server that is not the writer starts in the replica role: its
            // crash recovery then truncates binlogged transactions no replica acknowledged (a
            // former writer killed mid-commit), instead of committing them as errant ones.
            let mut args = Vec::new();
            if self.state.semi_sync_timeout_ms.is_some() && !self.fresh()?.serves_writes(id) {
                args.push("--init-rpl-role=SLAVE");
            }
            let pid =
                process::spawn_server(&rec.engine_binary, &paths, self.die_with_parent, &args)?;
            spawned.push((id.clone(), pid));
        }
        let waits = spawned
            .iter()
            .map(|(id, pid)| self.wait_ready(id, *pid, timeout));
        for r in futures::future::join_all(waits).await {
            r?;
        }
        Ok(())
    }

    /// Wait until a just-started server accepts an admin connection; fail early if it exits.
    async fn wait_ready(&self, id: &str, pid: u32, timeout: Duration) -> Result<()> {
        let paths = self.paths(id);
        let opts = self
            .admin_options(id)?
            .connect_timeout(Duration::from_secs(2));
        let started = Instant::now();
        loop {
            // Our own child: alive is enough (its command line may still be ours for an
            // instant after spawn returns).
            if !process::pid_alive(pid) {
                return Err(Error::Process {
                    instance: id.to_string(),
                    message: format!(
                        "mariadbd exited during start-up; the end of {}:\n{}",
                        paths.error_log().display(),
                        process::log_tail(&paths, 12)
                    ),
                });
            }
            match Server::connect(&opts).await {
                Ok(s) => {
                    s.close().await;
                    tracing::info!(instance = %id, elapsed = ?started.elapsed(), "accepting connections");
                    return Ok(());
                }
                Err(e) if started.elapsed() > timeout => {
                    return Err(Error::Process {
                        instance: id.to_string(),
                        message: format!("not accepting connections after {timeout:?}: {e}"),
                    })
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Make `replica` replicate from `source` by GTID (from `start`), over TLS with the
    /// certificate verified.
    pub(crate) async fn attach_replica(
        &self,
        replica: &str,
        source: &str,
        start: SourceStart,
    ) -> Result<()> {
        let src = self.state.instance(source)?;
        let spec = SourceSpec {
            host: "127.0.0.1".into(),
            port: src.port,
            user: self.state.users.replication.user.clone(),
            password: self.state.users.replication.password.clone(),
            start,
            ssl: Some(SslSpec {
                ca_path: Some(self.ca_bundle().display().to_string()),
                verify_server_cert: true,
            }),
            connect_retry_s: Some(1),
            heartbeat_period_ms: Some(dbshift_db::dialect::HEARTBEAT_PERIOD_MS),
        };
        // The platform builds replication, as RDS's control plane does: in RDS mode the admin
        // user could only use the procedures, which cannot verify the source's certificate.
        let mut server = self.connect_platform(replica).await?;
        server.point_replica_at(&spec).await?;
        server.close().await;
        Ok(())
    }

    /// Wait until an instance's IO and SQL threads both run, or report the replication error.
    pub async fn wait_replicating(&self, id: &str, timeout: Duration) -> Result<()> {
        let mut server = self.connect_platform(id).await?;
        let started = Instant::now();
        loop {
            let st = server.replication_status().await?;
            if st.healthy() {
                server.close().await;
                return Ok(());
            }
            if started.elapsed() > timeout {
                server.close().await;
                let why = st
                    .last_io_error
                    .or(st.last_sql_error)
                    .map(|(code, msg)| format!("error {code}: {msg}"))
                    .unwrap_or_else(|| {
                        format!(
                            "IO thread {:?}, SQL thread running: {}",
                            st.io_running, st.sql_running
                        )
                    });
                return Err(Error::Process {
                    instance: id.to_string(),
                    message: format!("replication did not start within {timeout:?}: {why}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Start every instance that is not running; returns (started, already running).
    async fn ensure_running(&self) -> Result<(Vec<String>, Vec<String>)> {
        let mut dead = Vec::new();
        let mut alive = Vec::new();
        for rec in &self.state.instances {
            if process::running_pid(&self.paths(&rec.id)).is_some() {
                alive.push(rec.id.clone());
            } else {
                dead.push(rec.id.clone());
            }
        }
        if !dead.is_empty() {
            let mariadbd = &self.state.mariadbd;
            if !mariadbd.is_file() {
                return Err(Error::Missing(format!(
                    "the lab's server binary {} is gone; {INSTALL_HINT}",
                    mariadbd.display()
                )));
            }
            self.start_and_wait(&dead).await?;
            for id in &dead {
                self.apply_read_only_at_start(id).await?;
            }
        }
        Ok((dead, alive))
    }

    /// Stop the lab's servers by PID; with `purge`, delete the lab directory too. Works on a
    /// lab whose state file is damaged: the servers are found by their command lines.
    pub fn down(dir: &Path, purge: bool) -> Result<DownReport> {
        let dir = absolute(dir)?;
        let has_state = LabState::path(&dir).exists();
        let has_lock = dir.join("lab.lock").exists();
        if !has_state && !has_lock {
            // No lab files, but perhaps servers of a lab whose dir was deleted by hand.
            let orphans = process::servers_under(&dir);
            if orphans.is_empty() {
                return Err(Error::NoLab(dir));
            }
            let mut stopped = Vec::new();
            for (pid, cnf) in orphans {
                tracing::info!(pid, cnf = %cnf.display(), "stopping a server of a deleted lab");
                if process::stop_pid(pid, &cnf, STOP_GRACE) {
                    stopped.push(instance_name(&cnf, pid));
                }
            }
            return Ok(DownReport {
                dir,
                stopped,
                purged: purge,
            });
        }
        let _lock = state::LabLock::acquire(&dir)?;
        let mut stopped = Vec::new();
        if let Ok(state) = LabState::load(&dir) {
            for rec in &state.instances {
                let paths = InstancePaths::new(dir.join(&rec.id));
                if let Some(pid) = process::running_pid(&paths) {
                    tracing::info!(instance = %rec.id, pid, "stopping mariadbd");
                    if process::stop_pid(pid, &paths.cnf(), STOP_GRACE) {
                        stopped.push(rec.id.clone());
                    }
                }
            }
        }
        // Whatever the state file says, no server of this lab may survive.
        for (pid, cnf) in process::servers_under(&dir) {
            let id = instance_name(&cnf, pid);
            tracing::info!(instance = %id, pid, "stopping mariadbd");
            if process::stop_pid(pid, &cnf, STOP_GRACE) {
                stopped.push(id);
            }
        }
        if purge {
            remove_lab_files(&dir);
            // Only an empty directory is removed: a --dir pointing at the user's own files
            // loses nothing but what the lab made.
            let _ = std::fs::remove_dir(&dir);
        }
        Ok(DownReport {
            dir,
            stopped,
            purged: purge,
        })
    }

    /// Every endpoint and credential of the lab, and whether each server runs.
    pub fn status(&self) -> LabStatus {
        let st = self.fresh().unwrap_or_else(|_| self.state.clone());
        let instances = st
            .instances
            .iter()
            .map(|rec| {
                let paths = self.paths(&rec.id);
                let pid = process::running_pid(&paths);
                InstanceStatusRow {
                    id: rec.id.clone(),
                    cluster: rec.cluster.clone(),
                    role: st.role_of(rec),
                    endpoint: endpoint(rec.port),
                    server_id: rec.server_id,
                    status: if pid.is_some() {
                        InstanceStatus::Available
                    } else {
                        InstanceStatus::Stopped
                    },
                    pid,
                    dir: paths.dir,
                    ca: rec.ca.clone(),
                }
            })
            .collect();
        let proxies_of = |cluster: &str| -> Vec<Endpoint> {
            self.running_proxies(cluster)
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.listen)
                .collect()
        };
        let clusters = st
            .clusters
            .iter()
            .map(|c| ClusterStatusRow {
                name: c.name.clone(),
                writer: c.writer.clone(),
                endpoint: st
                    .instance(&c.writer)
                    .map(|w| endpoint(w.port))
                    .unwrap_or_else(|_| endpoint(0)),
                gtid_domain_id: c.gtid_domain_id,
                proxy: proxies_of(&c.name).first().cloned(),
                proxies: proxies_of(&c.name),
            })
            .collect();
        LabStatus {
            dir: self.dir.clone(),
            engine_version: st.engine_version.clone(),
            rds_mode: st.rds_mode,
            ca_bundle: self.ca_bundle(),
            users: st.users.clone(),
            clusters,
            instances,
        }
    }

    /// Restart one instance's server (SIGTERM, start, wait until it accepts connections).
    pub async fn restart(&self, id: &str, timeout: Duration) -> Result<()> {
        self.state.instance(id)?;
        let paths = self.paths(id);
        if let Some(pid) = process::running_pid(&paths) {
            tracing::info!(instance = %id, pid, "stopping mariadbd");
            process::stop_pid_async(pid, &paths.cnf(), STOP_GRACE).await;
        }
        self.start_instance(id, timeout).await
    }

    /// Start a stopped instance as `lab up` starts one that died: spawn it, wait until it
    /// accepts connections, make it writable only if it is the serving writer. Nothing
    /// happens to one that runs.
    pub async fn start_instance(&self, id: &str, timeout: Duration) -> Result<()> {
        self.state.instance(id)?;
        if let Some(pid) = process::running_pid(&self.paths(id)) {
            tracing::debug!(instance = %id, pid, "already running");
            return Ok(());
        }
        self.start_and_wait_within(&[id.to_string()], timeout)
            .await?;
        self.apply_read_only_at_start(id).await
    }

    /// `read_only=OFF` on an instance the state names as a writer (and, with semi-sync, it
    /// becomes the semi-sync source).
    async fn make_writable(&self, id: &str) -> Result<()> {
        if self.state.semi_sync_timeout_ms.is_some() {
            let mut server = self.connect_platform(id).await?;
            server
                .exec_sql("SET GLOBAL rpl_semi_sync_master_enabled=ON")
                .await?;
            server.close().await;
        }
        self.apply_read_only(id, false).await
    }

    /// A server starts read-only (its option file says so); make it writable if the state
    /// names it its cluster's writer (of the serving side, in a blue/green deployment) and the platform's `read_only` parameter
    /// ([`Lab::set_read_only`]) does not hold it fenced, which a parameter group does across
    /// reboots. A parameter set OFF never makes any other instance writable at start: only the
    /// state's writer can be, so a restart can never produce a second writer.
    async fn apply_read_only_at_start(&self, id: &str) -> Result<()> {
        let fresh = self.fresh()?;
        let fenced = fresh.instance(id)?.read_only_parameter == Some(true);
        if fresh.serves_writes(id) && !fenced {
            self.make_writable(id).await?;
        }
        Ok(())
    }

    /// `read_only` on one running server, with the platform's credential.
    async fn apply_read_only(&self, id: &str, on: bool) -> Result<()> {
        let mut server = self.connect_platform(id).await?;
        if on {
            server.set_read_only().await?;
        } else {
            server.set_writable().await?;
        }
        server.close().await;
        Ok(())
    }

    /// The platform's `read_only` switch for one instance: on RDS, a change of the DB
    /// parameter group, which dbshift's SQL cannot make there.
    ///
    /// On AWS a parameter group is shared: the change reaches *every* instance that uses the
    /// group (a writer must have a group of its own before it is fenced this way). In the lab
    /// each instance has its own. It is applied now if the server runs, and kept in the state:
    /// ON keeps the instance read-only across restarts, as a parameter group does.
    pub async fn set_read_only(&self, id: &str, on: bool) -> Result<()> {
        {
            let _lock = state::LabLock::acquire(&self.dir)?;
            let mut st = self.fresh()?;
            st.instance(id)?;
            if let Some(rec) = st.instances.iter_mut().find(|i| i.id == id) {
                rec.read_only_parameter = Some(on);
            }
            st.save(&self.dir)?;
        }
        if process::running_pid(&self.paths(id)).is_some() {
            tracing::info!(instance = %id, read_only = on, "setting the read_only parameter");
            self.apply_read_only(id, on).await?;
            tracing::info!(instance = %id, read_only = on, "read_only parameter applied");
        }
        Ok(())
    }

    /// The state as the file says now: another dbshift process may have moved a writer.
    pub fn fresh(&self) -> Result<LabState> {
        LabState::load(&self.dir)
    }

    /// Make `cluster`'s name resolve to `instance` from now on (the redirect step of a
    /// switchover). `instance` is one of the cluster's own, or, when the cluster is blue in a
    /// blue/green deployment, green's writer: the deployment then records that green serves
    /// (and blue serves again when the name comes back to one of blue's). Changes no server.
    pub fn set_writer(&self, cluster: &str, instance: &str) -> Result<()> {
        let _lock = state::LabLock::acquire(&self.dir)?;
        let mut st = self.fresh()?;
        let rec = st.instance(instance)?.clone();
        if st.cluster(cluster).is_none() {
            return Err(Error::Unknown {
                kind: "cluster",
                name: cluster.to_string(),
                known: st.known_names(),
            });
        }
        let deployment = st
            .deployments
            .iter()
            .position(|d| d.blue == cluster || d.green == cluster);
        let serving = if rec.cluster == cluster {
            deployment.map(|i| {
                let d = &st.deployments[i];
                if d.blue == cluster {
                    Side::Blue
                } else {
                    Side::Green
                }
            })
        } else {
            match deployment.map(|i| &st.deployments[i]) {
                Some(d) if d.blue == cluster && d.green == rec.cluster => Some(Side::Green),
                Some(d) if d.green == cluster && d.blue == rec.cluster => Some(Side::Blue),
                _ => {
                    return Err(Error::BadInput(format!(
                        "{instance} is in cluster {}, not {cluster}",
                        rec.cluster
                    )))
                }
            }
        };
        let mut changed = false;
        if let Some((i, side)) = deployment.zip(serving) {
            let d = &mut st.deployments[i];
            if d.serving != side {
                tracing::info!(deployment = %d.name, serving = %side, "the serving side changes");
                d.serving = side;
                changed = true;
            }
            // A planned switchover inside one side moves that side's writer.
            let writer = match side {
                Side::Blue => &mut d.blue_writer,
                Side::Green => &mut d.green_writer,
            };
            if *writer != instance {
                *writer = instance.to_string();
                changed = true;
            }
        }
        let c = st
            .clusters
            .iter_mut()
            .find(|c| c.name == cluster)
            .expect("checked above");
        if c.writer != instance {
            tracing::info!(cluster, from = %c.writer, to = instance, "redirecting the cluster name");
            c.writer = instance.to_string();
            changed = true;
        }
        if changed {
            st.save(&self.dir)?;
        }
        Ok(())
    }

    /// Stop one instance's server by PID (it stays stopped until `lab up`, `start_instance`
    /// or a reboot). Whether it was running.
    pub fn stop_instance(&self, id: &str) -> Result<bool> {
        self.state.instance(id)?;
        let paths = self.paths(id);
        Ok(match process::running_pid(&paths) {
            Some(pid) => {
                tracing::info!(instance = %id, pid, "stopping mariadbd");
                let stopped = process::stop_pid(pid, &paths.cnf(), STOP_GRACE);
                tracing::info!(instance = %id, pid, "mariadbd stopped");
                stopped
            }
            None => false,
        })
    }

    /// The PID of an instance's running server.
    pub fn pid(&self, id: &str) -> Result<Option<u32>> {
        self.state.instance(id)?;
        Ok(process::running_pid(&self.paths(id)))
    }

    /// Make servers started through this handle die with the current process (test harness).
    pub fn set_die_with_parent(&mut self, on: bool) {
        self.die_with_parent = on;
    }

    /// The server version an instance runs (its binary may differ from the lab's).
    fn engine_version_of(&self, rec: &InstanceRecord) -> String {
        if rec.engine_binary == self.state.mariadbd {
            self.state.engine_version.clone()
        } else {
            process::engine_version(&rec.engine_binary).unwrap_or_else(|_| "unknown".into())
        }
    }

    fn describe(&self, st: &LabState, rec: &InstanceRecord) -> Instance {
        let running = process::running_pid(&self.paths(&rec.id)).is_some();
        Instance {
            id: rec.id.clone(),
            cluster: rec.cluster.clone(),
            role: st.role_of(rec),
            endpoint: endpoint(rec.port),
            engine: "mariadb".into(),
            engine_version: self.engine_version_of(rec),
            status: if running {
                InstanceStatus::Available
            } else {
                InstanceStatus::Stopped
            },
            ca: rec.ca.clone(),
            encrypted: rec.encrypted,
            tags: rec.tags.clone(),
        }
    }
}

/// The instance id of a server from its option file's directory (its PID when unnamed).
fn instance_name(cnf: &Path, pid: u32) -> String {
    cnf.parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| pid.to_string())
}

/// Remove what a lab made in `dir` (instances, TLS material, state), nothing else.
fn remove_lab_files(dir: &Path) {
    if let Ok(state) = LabState::load(dir) {
        for rec in &state.instances {
            let _ = std::fs::remove_dir_all(dir.join(&rec.id));
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // Instance dirs are named `lab-<c>-<i>` and hold a my.cnf.
            let is_instance = name.starts_with("lab-") && e.path().join("my.cnf").exists();
            // Credential files of a snapshot or upgrade cut short (they hold a password).
            let leftover_secret = (name.starts_with(".backup-") || name.starts_with(".upgrade-"))
                && name.ends_with(".cnf");
            if leftover_secret {
                let _ = std::fs::remove_file(e.path());
                continue;
            }
            let is_proxy = name.starts_with("proxy-") && e.path().join("proxy.cnf").exists();
            // The journal and the cluster locks belong to this lab: a lab built anew here must
            // not find runs it could resume against servers they never ran on.
            if is_instance
                || is_proxy
                || name == "tls"
                || name == "template"
                || name == "snapshots"
                || name == "locks"
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    for f in [
        state::STATE_FILE,
        "lab.json.tmp",
        "lab.lock",
        "journal.sqlite",
        "journal.sqlite-wal",
        "journal.sqlite-shm",
    ] {
        let _ = std::fs::remove_file(dir.join(f));
    }
}

fn endpoint(port: u16) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        port,
    }
}

#[async_trait::async_trait]
impl Provider for Lab {
    fn name(&self) -> &'static str {
        "local"
    }

    /// The lab's CAs are its own: their certificates are always there.
    fn gives_ca_certificates(&self) -> bool {
        true
    }

    fn fleet_id(&self) -> String {
        let st = self.fresh().unwrap_or_else(|_| self.state.clone());
        if st.lab_id.is_empty() {
            format!("lab created {}", st.created_at)
        } else {
            format!("lab {}", st.lab_id)
        }
    }

    async fn list_clusters(&self) -> Result<Vec<Cluster>> {
        let st = self.fresh()?;
        Ok(st
            .clusters
            .iter()
            .map(|c| Cluster {
                name: c.name.clone(),
                writer: c.writer.clone(),
                instances: st.instances_of(&c.name).map(|i| i.id.clone()).collect(),
                gtid_domain_id: Some(c.gtid_domain_id),
            })
            .collect())
    }

    async fn list_instances(&self) -> Result<Vec<Instance>> {
        let st = self.fresh()?;
        Ok(st.instances.iter().map(|r| self.describe(&st, r)).collect())
    }

    async fn describe_instance(&self, id: &str) -> Result<Instance> {
        let st = self.fresh()?;
        Ok(self.describe(&st, st.instance(id)?))
    }

    async fn resolve(&self, name: &str) -> Result<Endpoint> {
        let st = self.fresh()?;
        if let Some(c) = st.cluster(name) {
            return Ok(endpoint(st.instance(&c.writer)?.port));
        }
        Ok(endpoint(st.instance(name)?.port))
    }

    async fn set_writer(&self, cluster: &str, instance: &str) -> Result<()> {
        Lab::set_writer(self, cluster, instance)
    }

    async fn reboot(&self, id: &str, timeout: Duration) -> Result<()> {
        self.restart(id, timeout).await
    }

    async fn set_read_only(&self, instance: &str, on: bool) -> Result<()> {
        Lab::set_read_only(self, instance, on).await
    }

    /// The platform's own credential (RDS mode) is never among them.
    fn credentials(&self) -> Result<Credentials> {
        Ok(Credentials {
            admin: self.state.users.admin.clone(),
            replication: self.state.users.replication.clone(),
            app: self.state.users.app.clone(),
            ca_bundle: Some(self.ca_bundle()),
        })
    }

    async fn list_cas(&self) -> Result<Vec<CertificateAuthority>> {
        Lab::list_cas(self).await
    }

    async fn trusted_cas(&self) -> Result<Vec<String>> {
        Lab::trusted_cas(self).await
    }

    async fn deploy_trust(&self, cas: &[String]) -> Result<Option<PathBuf>> {
        Lab::deploy_trust(self, cas).await
    }

    async fn modify_ca(&self, instance: &str, ca: &str, apply: CaApply) -> Result<()> {
        Lab::modify_ca(self, instance, ca, apply).await
    }

    async fn start_instance(&self, instance: &str, timeout: Duration) -> Result<()> {
        Lab::start_instance(self, instance, timeout).await
    }

    /// Stopping waits for the process to exit (up to its grace period): off the runtime.
    async fn stop_instance(&self, instance: &str) -> Result<()> {
        let lab = self.clone();
        let id = instance.to_string();
        tokio::task::spawn_blocking(move || lab.stop_instance(&id))
            .await
            .map_err(|e| Error::Process {
                instance: instance.to_string(),
                message: format!("stopping it failed: {e}"),
            })?
            .map(|_| ())
    }

    async fn proxies_of(&self, cluster: &str) -> Result<Vec<ProxyEndpoint>> {
        self.running_proxies(cluster)
    }

    async fn deployments(&self) -> Result<Vec<Deployment>> {
        Ok(self.fresh()?.deployments)
    }

    async fn create_green(&self, spec: &GreenSpec) -> Result<Deployment> {
        Lab::create_green(self, spec).await
    }

    /// Stopping its servers waits for them to exit: off the runtime.
    async fn remove_standby(&self, deployment: &str) -> Result<Vec<String>> {
        let lab = self.clone();
        let name = deployment.to_string();
        tokio::task::spawn_blocking(move || lab.remove_standby(&name))
            .await
            .map_err(|e| Error::Process {
                instance: deployment.to_string(),
                message: format!("removing the standby failed: {e}"),
            })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> LabUsers {
        let cred = |user: &str| Credential {
            user: user.into(),
            password: "pw".into(),
        };
        LabUsers {
            admin: cred("dbshift_admin"),
            replication: cred("dbshift_repl"),
            app: cred("app"),
        }
    }

    #[test]
    fn the_default_admin_holds_every_privilege_and_no_procedure_is_made() {
        let sql = users_sql(&users(), None);
        assert_eq!(
            sql.matches("GRANT ALL PRIVILEGES ON *.* TO 'dbshift_admin'@")
                .count(),
            2
        );
        assert!(!sql.contains("rds_"), "{sql}");
        assert!(!sql.contains(rds::PLATFORM_USER), "{sql}");
    }

    #[test]
    fn the_rds_admin_is_no_superuser_and_the_platform_is() {
        let platform = Credential {
            user: rds::PLATFORM_USER.into(),
            password: "platform-pw".into(),
        };
        let sql = users_sql(&users(), Some(&platform));
        assert!(!sql.contains("GRANT ALL PRIVILEGES ON *.* TO 'dbshift_admin'"));
        assert_eq!(
            sql.matches("GRANT ALL PRIVILEGES ON *.* TO 'dbshift_platform'@")
                .count(),
            2
        );
        // The procedures exist before EXECUTE on them is granted.
        let created = sql
            .find("PROCEDURE mysql.rds_kill(")
            .expect("rds_kill is made");
        let granted = sql
            .find("EXECUTE ON PROCEDURE mysql.rds_kill TO")
            .expect("rds_kill is granted");
        assert!(created < granted);
    }

    #[test]
    fn a_lab_asked_for_the_other_mode_is_refused() {
        for built_rds in [false, true] {
            let mut state =
                LabState::new_empty("10.11".into(), "/usr/sbin/mariadbd".into(), 2, users());
            state.rds_mode = built_rds;
            let lab = Lab {
                dir: PathBuf::from("/nonexistent/lab"),
                state,
                die_with_parent: false,
            };
            let same = UpOptions {
                rds_mode: built_rds,
                ..Default::default()
            };
            assert!(lab.check_shape(&same).is_ok());
            let other = UpOptions {
                rds_mode: !built_rds,
                ..Default::default()
            };
            let err = lab.check_shape(&other).unwrap_err();
            assert!(matches!(err, Error::BadInput(_)), "{err}");
            assert!(err.to_string().contains("--rds-mode"), "{err}");
            assert!(err.to_string().contains("lab down --purge"), "{err}");
        }
    }

    #[test]
    fn a_state_from_before_rds_mode_loads_in_the_default_mode() {
        let mut st = LabState::new_empty("10.11".into(), "/usr/sbin/mariadbd".into(), 2, users());
        let mut json: serde_json::Value = serde_json::to_value(&st).expect("the state serializes");
        let obj = json.as_object_mut().expect("the state is an object");
        assert!(obj.remove("rds_mode").is_some());
        assert!(!obj.contains_key("platform"));
        let back: LabState = serde_json::from_value(json).expect("an old state loads");
        assert!(!back.rds_mode);
        assert!(back.platform.is_none());
        st.rds_mode = true;
        let text = serde_json::to_string(&st).expect("the state serializes");
        assert!(text.contains("\"rds_mode\":true"), "{text}");
    }
}
