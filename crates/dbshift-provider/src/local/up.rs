//! `lab up`: build a new lab (a template datadir with the lab's users, one copy per server,
//! TLS material, replication over TLS) or bring an existing one back to running. It checks the
//! shape asked for against the lab that exists and changes nothing it was not asked to.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dbshift_db::dialect::SourceStart;
use dbshift_db::quote_literal;
use serde::Serialize;

use super::process::{self, INSTALL_HINT};
use super::state::{self, InstanceRecord, LabState, LabUsers};
use super::{absolute, blocking, ca, down, password, rds, tls, Lab, MAX_CLUSTERS, MAX_REPLICAS};
use super::{STOP_GRACE, TRUST_BUNDLE};
use crate::error::{Error, IoContext, Result};
use crate::model::{Credential, Role};

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
            let _lock = state::LabLock::acquire_async(&dir).await?;
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
        let lock = state::LabLock::acquire_async(&dir).await?;
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
                // Off the runtime: stopping waits for the servers to exit.
                let undone = blocking::run("removing the lab that failed to build", move || {
                    for (pid, cnf) in process::servers_under(&dir) {
                        process::stop_pid(pid, &cnf, STOP_GRACE);
                    }
                    drop(lock);
                    if created_dir {
                        let _ = std::fs::remove_dir_all(&dir);
                    } else {
                        down::remove_lab_files(&dir);
                    }
                    Ok(())
                })
                .await;
                if let Err(undo) = undone {
                    tracing::warn!(error = %undo, "removing the lab that failed to build");
                }
                Err(e)
            }
        }
    }

    pub(super) fn check_shape(&self, opts: &UpOptions) -> Result<()> {
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

    /// Everything of a new lab but its running servers: ports, CAs, the template datadir, one
    /// copy of it per server, option files and the state file. Blocks (it runs
    /// `mariadb-install-db` and copies datadirs): [`Lab::create`] runs it off the runtime.
    fn build_files(dir: &Path, opts: &UpOptions) -> Result<Lab> {
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
        Ok(lab)
    }

    /// Build a new lab in `dir` (locked by the caller) and start it.
    pub(super) async fn create(dir: &Path, opts: &UpOptions) -> Result<Lab> {
        let (files_dir, files_opts) = (dir.to_path_buf(), opts.clone());
        let lab = blocking::run("building the lab's files", move || {
            Lab::build_files(&files_dir, &files_opts)
        })
        .await?;

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

    pub(super) async fn ensure_running(&self) -> Result<(Vec<String>, Vec<String>)> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn users() -> LabUsers {
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
    pub(super) fn the_default_admin_holds_every_privilege_and_no_procedure_is_made() {
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
    pub(super) fn the_rds_admin_is_no_superuser_and_the_platform_is() {
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
    pub(super) fn a_lab_asked_for_the_other_mode_is_refused() {
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
    pub(super) fn a_state_from_before_rds_mode_loads_in_the_default_mode() {
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
