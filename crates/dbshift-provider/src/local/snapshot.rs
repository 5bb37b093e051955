//! Hot snapshots of a lab instance and restores of them as a new cluster: the primitive a
//! blue/green environment is built from.
//!
//! A snapshot is `mariadb-backup --backup --slave-info` followed by `--prepare`, run with the
//! platform's credential over the instance's unix socket. Taken on a replica, the backup's
//! `xtrabackup_binlog_info` holds the *replica's own* binlog coordinates; the position of the
//! writer that the replica had applied is in `xtrabackup_slave_info`
//! (`SET GLOBAL gtid_slave_pos = '1-101-42';`), and that is the position a new cluster built
//! from the snapshot continues from. Taken on a writer, the position is the GTID of
//! `xtrabackup_binlog_info`.
//!
//! A restore builds a new cluster `<name>-1 ..` from the prepared copy: fresh server_ids and
//! ports, the source cluster's `gtid_domain_id`, `skip_slave_start=ON`, server certificates
//! from the lab CA, optionally data-at-rest encryption and another server binary. Its writer
//! starts read-only and is pointed nowhere (the caller points it at the source's writer); its
//! replicas replicate from it by GTID over verified TLS.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use dbshift_db::dialect::SourceStart;
use dbshift_db::gtid::mariadb::GtidPos;
use rand::RngCore;
use serde::Serialize;

use super::process::{self, InstancePaths, INSTALL_HINT};
use super::state::{self, ClusterRecord, InstanceRecord, LabState};
use super::{files, tls, Lab, MAX_REPLICAS, STOP_GRACE};
use crate::error::{Error, IoContext, Result};
use crate::model::Credential;

/// The file in which `mariadb-backup --slave-info` records the source's coordinates.
pub const SLAVE_INFO: &str = "xtrabackup_slave_info";
/// The file in which `mariadb-backup` records the backed-up server's own binlog coordinates.
pub const BINLOG_INFO: &str = "xtrabackup_binlog_info";

/// A prepared hot backup of one lab instance.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// The prepared backup (a datadir a server can start on).
    pub dir: PathBuf,
    /// The instance it was taken on.
    pub taken_on: String,
    /// That instance's cluster.
    pub cluster: String,
    /// Whether it was taken on a replica (the position then comes from `xtrabackup_slave_info`).
    pub from_replica: bool,
    /// The cluster writer's GTID position that the backup contains exactly: a server restored
    /// from it continues from here.
    pub source_position: GtidPos,
}

/// How a snapshot is restored.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Data-at-rest encryption (`file_key_management` with a key file made for this cluster).
    pub encrypt: bool,
    /// Another server binary for the new instances (`mariadb-upgrade` is run after start).
    pub engine_binary: Option<PathBuf>,
    /// The snapshot is not needed afterwards: the last instance takes its files by a rename
    /// (same filesystem) instead of a copy, which halves the data written for a writer alone.
    pub consume_snapshot: bool,
}

/// What `xtrabackup_slave_info` records of the source's coordinates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlaveInfo {
    /// `SET GLOBAL gtid_slave_pos = '1-101-3';`: the GTID position applied.
    Gtid(GtidPos),
    /// `CHANGE MASTER TO MASTER_LOG_FILE='binlog.000001', MASTER_LOG_POS=325;`: written when
    /// the replica's `gtid_slave_pos` is empty (no GTID applied yet): the source's binlog
    /// coordinates, which the source turns into a GTID position (`BINLOG_GTID_POS`).
    File { file: String, pos: u64 },
}

/// The position of the source recorded in `xtrabackup_slave_info`, e.g.
/// `SET GLOBAL gtid_slave_pos = '1-101-3';\nCHANGE MASTER TO master_use_gtid = slave_pos;`,
/// or the source's binlog coordinates when no GTID was applied yet.
pub fn parse_slave_info(text: &str) -> Result<SlaveInfo> {
    const KEY: &str = "gtid_slave_pos";
    for line in text.lines() {
        let line = line.trim();
        let lower = line.to_ascii_lowercase();
        if !lower.starts_with("set global") || !lower.contains(KEY) {
            continue;
        }
        let value = line
            .split_once('=')
            .map(|(_, v)| v.trim().trim_end_matches(';').trim())
            .and_then(|v| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .ok_or_else(|| {
                Error::BadInput(format!(
                    "{SLAVE_INFO}: cannot read the position in {line:?}"
                ))
            })?;
        return value
            .parse::<GtidPos>()
            .map(SlaveInfo::Gtid)
            .map_err(|e| Error::BadInput(format!("{SLAVE_INFO}: {e}")));
    }
    let field = |name: &str| -> Option<String> {
        let lower = text.to_ascii_lowercase();
        let at = lower.find(&name.to_ascii_lowercase())? + name.len();
        let rest = text[at..].trim_start().strip_prefix('=')?.trim_start();
        let end = rest
            .find(|c: char| c == ',' || c == ';' || c.is_whitespace())
            .unwrap_or(rest.len());
        Some(rest[..end].trim_matches('\'').to_string())
    };
    if let (Some(file), Some(pos)) = (field("MASTER_LOG_FILE"), field("MASTER_LOG_POS")) {
        if let Ok(pos) = pos.parse::<u64>() {
            if !file.is_empty() {
                return Ok(SlaveInfo::File { file, pos });
            }
        }
    }
    Err(Error::BadInput(format!(
        "{SLAVE_INFO} holds neither a gtid_slave_pos nor binlog coordinates: {:?}",
        text.trim()
    )))
}

/// The GTID position in `xtrabackup_binlog_info`: `binlog.000001\t894\t1-101-3` (file,
/// offset, GTID position; the position may list several domains, comma-separated).
pub fn parse_binlog_info(text: &str) -> Result<GtidPos> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or_else(|| {
            Error::BadInput(format!("{BINLOG_INFO} is empty: the server has no binlog?"))
        })?;
    let fields: Vec<&str> = line.split('\t').collect();
    match fields.as_slice() {
        [_file, _pos] => Ok(GtidPos::new()),
        [_file, _pos, gtid] => gtid
            .trim()
            .parse::<GtidPos>()
            .map_err(|e| Error::BadInput(format!("{BINLOG_INFO}: {e}"))),
        _ => Err(Error::BadInput(format!(
            "{BINLOG_INFO}: expected `file<TAB>offset<TAB>gtid`, found {line:?}"
        ))),
    }
}

/// `mariadb-backup` (or `mariabackup`) next to the server binary or on the path.
fn find_backup_tool(mariadbd: &Path) -> Result<PathBuf> {
    find_beside(mariadbd, &["mariadb-backup", "mariabackup"])
        .ok_or_else(|| Error::Missing(format!("mariadb-backup was not found; {INSTALL_HINT}")))
}

fn find_beside(mariadbd: &Path, names: &[&str]) -> Option<PathBuf> {
    let dirs: Vec<PathBuf> = mariadbd
        .parent()
        .into_iter()
        .flat_map(|d| [d.to_path_buf(), d.with_file_name("bin")])
        .collect();
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| p.is_file())
        .or_else(|| names.iter().find_map(|n| process::find_program(n)))
}

/// A client option file with the credential and socket (mode 0600, removed on drop), so no
/// password appears on a command line.
struct ClientDefaults(PathBuf);

impl ClientDefaults {
    fn write(path: PathBuf, cred: &Credential, socket: &Path) -> Result<ClientDefaults> {
        let body = format!(
            "user={}\npassword={}\nsocket={}\n",
            cred.user,
            cred.password,
            socket.display()
        );
        let text = format!("[client]\n{body}[mariadb-backup]\n{body}[mariabackup]\n{body}");
        files::write_atomic(&path, text.as_bytes(), 0o600)?;
        Ok(ClientDefaults(path))
    }

    fn arg(&self) -> String {
        format!("--defaults-extra-file={}", self.0.display())
    }
}

impl Drop for ClientDefaults {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Run a tool to completion; its output goes to `log`, whose tail is the error message.
fn run_logged(mut cmd: Command, what: &str, instance: &str, log: &Path) -> Result<()> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .ctx(|| format!("opening {}", log.display()))?;
    let err = out
        .try_clone()
        .ctx(|| format!("opening {}", log.display()))?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .status()
        .ctx(|| format!("running {what}"))?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    Err(Error::Process {
        instance: instance.to_string(),
        message: format!(
            "{what} failed ({status}); the end of {}:\n{}",
            log.display(),
            process::tail(&text, 12)
        ),
    })
}

pub(crate) fn random_suffix() -> String {
    format!("{:016x}", rand::rng().next_u64())
}

/// A random 256-bit key in `file_key_management`'s format (`1;<64 hex digits>`).
fn key_file_text() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    format!("1;{hex}\n")
}

/// Option file lines a restored instance adds to the lab's usual ones.
fn restore_cnf_extra(key_file: Option<&Path>) -> String {
    // Replication is started by whoever builds on the restore, never by a restart.
    let mut extra = String::from("skip_slave_start=ON\n");
    if let Some(key) = key_file {
        extra.push_str(&format!(
            "plugin_load_add=file_key_management\n\
             file_key_management_filename={}\n\
             innodb_encrypt_tables=ON\n\
             innodb_encrypt_log=ON\n\
             innodb_encryption_threads=2\n\
             innodb_encrypt_temporary_tables=ON\n\
             encrypt_binlog=ON\n\
             aria_encrypt_tables=ON\n\
             encrypt_tmp_files=ON\n",
            key.display()
        ));
    }
    extra
}

impl Lab {
    /// Take a prepared hot backup of `instance` into `dest` (which must not exist or be
    /// empty). Nothing is changed on the server; `dest` is removed again on failure.
    pub async fn snapshot(&self, instance: &str, dest: &Path) -> Result<Snapshot> {
        let st = self.fresh()?;
        let rec = st.instance(instance)?.clone();
        let paths = self.paths(instance);
        if process::running_pid(&paths).is_none() {
            return Err(Error::Process {
                instance: instance.to_string(),
                message: "is not running; start it (`dbshift lab up`) before a snapshot".into(),
            });
        }
        let tool = find_backup_tool(&rec.engine_binary)?;
        let dest = super::absolute(dest)?;
        if dest.exists() {
            let empty = std::fs::read_dir(&dest)
                .ctx(|| format!("reading {}", dest.display()))?
                .next()
                .is_none();
            if !empty {
                return Err(Error::BadInput(format!(
                    "the snapshot directory {} exists and is not empty; choose a new one",
                    dest.display()
                )));
            }
        }
        let from_replica = st.cluster_of_writer(instance).is_none();
        let result = self
            .take_backup(&tool, &st, &rec, &paths, &dest, from_replica)
            .await;
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&dest);
        }
        result
    }

    async fn take_backup(
        &self,
        tool: &Path,
        st: &LabState,
        rec: &InstanceRecord,
        paths: &InstancePaths,
        dest: &Path,
        from_replica: bool,
    ) -> Result<Snapshot> {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;
        }
        let cred = st.platform.as_ref().unwrap_or(&st.users.admin);
        let defaults = ClientDefaults::write(
            self.dir
                .join(format!(".backup-{}-{}.cnf", rec.id, random_suffix())),
            cred,
            &paths.socket(),
        )?;
        let log = dest.with_file_name(format!(
            "{}.log",
            dest.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "snapshot".into())
        ));
        tracing::info!(instance = %rec.id, dest = %dest.display(), "mariadb-backup --backup");
        let mut backup = Command::new(tool);
        backup
            .arg(defaults.arg())
            .arg("--backup")
            .arg("--slave-info")
            .arg(format!("--socket={}", paths.socket().display()))
            .arg(format!("--target-dir={}", dest.display()));
        let id = rec.id.clone();
        let log2 = log.clone();
        tokio::task::spawn_blocking(move || {
            run_logged(backup, "mariadb-backup --backup", &id, &log2)
        })
        .await
        .map_err(|e| Error::Process {
            instance: rec.id.clone(),
            message: format!("the backup task failed: {e}"),
        })??;
        drop(defaults);
        tracing::info!(instance = %rec.id, "mariadb-backup --prepare");
        let mut prepare = Command::new(tool);
        prepare
            .arg("--prepare")
            .arg(format!("--target-dir={}", dest.display()));
        let id = rec.id.clone();
        let log2 = log.clone();
        tokio::task::spawn_blocking(move || {
            run_logged(prepare, "mariadb-backup --prepare", &id, &log2)
        })
        .await
        .map_err(|e| Error::Process {
            instance: rec.id.clone(),
            message: format!("the prepare task failed: {e}"),
        })??;
        let source_position = if from_replica {
            let text = std::fs::read_to_string(dest.join(SLAVE_INFO)).ctx(|| {
                format!(
                    "reading {} (a backup of a replica must have it)",
                    dest.join(SLAVE_INFO).display()
                )
            })?;
            match parse_slave_info(&text)? {
                SlaveInfo::Gtid(pos) => pos,
                SlaveInfo::File { file, pos } => self.source_gtid_at(&rec.id, &file, pos).await?,
            }
        } else {
            let text = std::fs::read_to_string(dest.join(BINLOG_INFO))
                .ctx(|| format!("reading {}", dest.join(BINLOG_INFO).display()))?;
            parse_binlog_info(&text)?
        };
        let _ = std::fs::remove_file(&log);
        tracing::info!(instance = %rec.id, position = %source_position, "snapshot prepared");
        Ok(Snapshot {
            dir: dest.to_path_buf(),
            taken_on: rec.id.clone(),
            cluster: rec.cluster.clone(),
            from_replica,
            source_position,
        })
    }

    /// The GTID position at `file:pos` of the binlog of the server `replica` replicates from.
    async fn source_gtid_at(&self, replica: &str, file: &str, pos: u64) -> Result<GtidPos> {
        let mut r = self.connect_platform(replica).await?;
        let status = r.replication_status().await;
        r.close().await;
        let port = status?.source_port.ok_or_else(|| Error::Process {
            instance: replica.to_string(),
            message: "is no longer a replica; its source's position cannot be read".into(),
        })?;
        let st = self.fresh()?;
        let source = st
            .instances
            .iter()
            .find(|i| i.port == port)
            .ok_or_else(|| Error::Process {
                instance: replica.to_string(),
                message: format!("replicates from port {port}, which is no instance of the lab"),
            })?
            .id
            .clone();
        let mut s = self.connect_platform(&source).await?;
        let gtid = s
            .query_scalar(&format!(
                "SELECT BINLOG_GTID_POS({}, {pos})",
                dbshift_db::quote_literal(file)
            ))
            .await;
        s.close().await;
        let gtid = gtid?.ok_or_else(|| Error::Process {
            instance: source.clone(),
            message: format!("has no binlog position {file}:{pos} any more (purged?)"),
        })?;
        gtid.parse::<GtidPos>()
            .map_err(|e| Error::BadInput(format!("BINLOG_GTID_POS on {source}: {e}")))
    }

    /// Restore `snapshot` as a new cluster `name`: a writer `<name>-1` and `replicas`
    /// replicas, all started read-only. The writer replicates from nowhere; the caller points
    /// it at the source cluster's writer from `snapshot.source_position`. The replicas
    /// replicate from the new writer by GTID over verified TLS. On failure, what was built is
    /// stopped and removed, and the state is as before.
    /// Lay a snapshot's files down as `id`'s datadir (moved when `take` and a rename works,
    /// else copied), with its tmpdir and a server certificate issued by `ca`.
    pub(super) async fn lay_down(
        &self,
        id: &str,
        from: &Path,
        take: bool,
        ca: &state::CaRecord,
    ) -> Result<()> {
        let paths = self.paths(id);
        let to = paths.data();
        if take && std::fs::rename(from, &to).is_ok() {
            tracing::debug!(instance = %id, "took the snapshot's files by rename");
        } else {
            let from = from.to_path_buf();
            tokio::task::spawn_blocking(move || process::copy_tree(&from, &to))
                .await
                .map_err(|e| Error::Process {
                    instance: id.to_string(),
                    message: format!("copying the snapshot failed: {e}"),
                })??;
        }
        std::fs::create_dir_all(paths.tmp())
            .ctx(|| format!("creating {}", paths.tmp().display()))?;
        tls::issue_server_cert(&self.dir, ca, id, &paths.tls())
    }

    pub async fn restore_cluster(
        &self,
        snapshot: &Snapshot,
        name: &str,
        replicas: u32,
        opts: RestoreOptions,
    ) -> Result<()> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::BadInput(format!(
                "cluster name {name:?}: use letters, digits, '-' and '_'"
            )));
        }
        if replicas > MAX_REPLICAS {
            return Err(Error::BadInput(format!(
                "{replicas} replicas is more than this lab supports ({MAX_REPLICAS})"
            )));
        }
        let checkpoints = std::fs::read_to_string(snapshot.dir.join("xtrabackup_checkpoints"))
            .unwrap_or_default();
        // MariaDB's mariadb-backup writes `backup_type = log-applied` once prepared.
        if !checkpoints
            .lines()
            .any(|l| l.starts_with("backup_type") && l.contains("log-applied"))
        {
            return Err(Error::BadInput(format!(
                "{} is not a prepared backup (xtrabackup_checkpoints does not say log-applied)",
                snapshot.dir.display()
            )));
        }
        let engine = match &opts.engine_binary {
            Some(p) => process::find_mariadbd(Some(p))?,
            None => self.fresh()?.mariadbd.clone(),
        };
        let upgrade_tool = if opts.engine_binary.is_some() {
            Some(
                find_beside(&engine, &["mariadb-upgrade", "mysql_upgrade"]).ok_or_else(|| {
                    Error::Missing(format!("mariadb-upgrade was not found; {INSTALL_HINT}"))
                })?,
            )
        } else {
            None
        };
        let ids: Vec<String> = (1..=1 + replicas).map(|i| format!("{name}-{i}")).collect();
        let ports = process::free_ports(ids.len())?;

        // Reserve the names, ports and server_ids in the state under the lock, before any
        // file is made, so `lab down` finds whatever comes next.
        let new_state = {
            let _lock = state::LabLock::acquire_async(&self.dir).await?;
            let mut st = self.fresh()?;
            let Some(source) = st.cluster(&snapshot.cluster).cloned() else {
                return Err(Error::Unknown {
                    kind: "cluster",
                    name: snapshot.cluster.clone(),
                    known: st.known_names(),
                });
            };
            let taken: BTreeSet<&str> = st
                .clusters
                .iter()
                .map(|c| c.name.as_str())
                .chain(st.instances.iter().map(|i| i.id.as_str()))
                .collect();
            if let Some(clash) = std::iter::once(name)
                .chain(ids.iter().map(String::as_str))
                .find(|n| taken.contains(n))
            {
                return Err(Error::BadInput(format!(
                    "{clash:?} already exists in the lab; choose another name"
                )));
            }
            let longest = self.paths(&ids[ids.len() - 1]).socket();
            if longest.as_os_str().len() > 100 {
                return Err(Error::BadInput(format!(
                    "{} is too long for a unix socket; choose a shorter name",
                    longest.display()
                )));
            }
            // Fresh server_ids: the next free hundred after every id in use.
            let base =
                (st.instances.iter().map(|i| i.server_id).max().unwrap_or(0) / 100 + 1) * 100;
            for (i, (id, port)) in ids.iter().zip(&ports).enumerate() {
                st.instances.push(InstanceRecord {
                    id: id.clone(),
                    cluster: name.to_string(),
                    port: *port,
                    server_id: base + 1 + i as u32,
                    ca: st.current_ca.clone(),
                    engine_binary: engine.clone(),
                    encrypted: opts.encrypt,
                    tags: Default::default(),
                    // The writer stays read-only across restarts until a switchover makes it
                    // serve: two writable primaries must never exist.
                    read_only_parameter: (i == 0).then_some(true),
                });
            }
            st.clusters.push(ClusterRecord {
                name: name.to_string(),
                gtid_domain_id: source.gtid_domain_id,
                writer: ids[0].clone(),
            });
            st.save(&self.dir)?;
            st
        };
        let lab = Lab {
            dir: self.dir.clone(),
            state: new_state,
            die_with_parent: self.die_with_parent,
        };
        let built = lab
            .build_restored(snapshot, name, &ids, &opts, upgrade_tool.as_deref())
            .await;
        if let Err(e) = built {
            tracing::warn!(cluster = name, error = %e, "restore failed; removing what it built");
            lab.remove_restored(name, &ids).await;
            return Err(e);
        }
        Ok(())
    }

    async fn build_restored(
        &self,
        snapshot: &Snapshot,
        name: &str,
        ids: &[String],
        opts: &RestoreOptions,
        upgrade_tool: Option<&Path>,
    ) -> Result<()> {
        let key_file = if opts.encrypt {
            let path = self.dir.join("tls").join(format!("{name}-encryption.key"));
            files::write_atomic(&path, key_file_text().as_bytes(), 0o600)?;
            Some(path)
        } else {
            None
        };
        let ca = self
            .state
            .cas
            .iter()
            .find(|c| c.id == self.state.current_ca)
            .cloned()
            .ok_or_else(|| Error::Tls(format!("the lab CA {} is gone", self.state.current_ca)))?;
        let domain = self
            .state
            .cluster(name)
            .map(|c| c.gtid_domain_id)
            .unwrap_or(0);
        for (n, id) in ids.iter().enumerate() {
            let rec = self.state.instance(id)?;
            let last = n + 1 == ids.len();
            self.lay_down(id, &snapshot.dir, last && opts.consume_snapshot, &ca)
                .await?;
            self.write_cnf_with(rec, domain, &restore_cnf_extra(key_file.as_deref()))?;
        }
        self.start_and_wait(ids).await?;
        if let Some(tool) = upgrade_tool {
            for id in ids {
                self.run_upgrade(tool, id).await?;
            }
        }
        let writer = &ids[0];
        for id in &ids[1..] {
            self.attach_replica(
                id,
                writer,
                SourceStart::GtidAt(snapshot.source_position.clone()),
            )
            .await?;
        }
        for id in &ids[1..] {
            self.wait_replicating(id, Duration::from_secs(30)).await?;
        }
        tracing::info!(cluster = name, position = %snapshot.source_position, "restored");
        Ok(())
    }

    /// `mariadb-upgrade` against one running instance (not binlogged: its default).
    async fn run_upgrade(&self, tool: &Path, id: &str) -> Result<()> {
        let paths = self.paths(id);
        let cred = self
            .state
            .platform
            .as_ref()
            .unwrap_or(&self.state.users.admin);
        let defaults = ClientDefaults::write(
            self.dir
                .join(format!(".upgrade-{id}-{}.cnf", random_suffix())),
            cred,
            &paths.socket(),
        )?;
        let mut cmd = Command::new(tool);
        cmd.arg(defaults.arg())
            .arg(format!("--socket={}", paths.socket().display()))
            .arg("--force");
        let log = paths.dir.join("upgrade.log");
        let id2 = id.to_string();
        tracing::info!(instance = %id, "mariadb-upgrade");
        tokio::task::spawn_blocking(move || run_logged(cmd, "mariadb-upgrade", &id2, &log))
            .await
            .map_err(|e| Error::Process {
                instance: id.to_string(),
                message: format!("the upgrade task failed: {e}"),
            })??;
        drop(defaults);
        Ok(())
    }

    /// Undo a failed restore: stop its servers, delete their files, drop them from the state.
    /// Off the runtime: stopping waits for the servers to exit.
    pub(crate) async fn remove_restored(&self, name: &str, ids: &[String]) {
        let (lab, name, ids) = (self.clone(), name.to_string(), ids.to_vec());
        let undone = super::blocking::run("removing a failed restore", move || {
            for id in &ids {
                let paths = lab.paths(id);
                if let Some(pid) = process::running_pid(&paths) {
                    process::stop_pid(pid, &paths.cnf(), STOP_GRACE);
                }
                let _ = std::fs::remove_dir_all(&paths.dir);
            }
            let _ =
                std::fs::remove_file(lab.dir.join("tls").join(format!("{name}-encryption.key")));
            if let Ok(_lock) = state::LabLock::acquire(&lab.dir) {
                if let Ok(mut st) = lab.fresh() {
                    st.instances.retain(|i| !ids.contains(&i.id));
                    st.clusters.retain(|c| c.name != name);
                    let _ = st.save(&lab.dir);
                }
            }
            Ok(())
        })
        .await;
        if let Err(e) = undone {
            tracing::warn!(error = %e, "removing what a failed restore built");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written by mariadb-backup 10.11.19 on a replica of a GTID-replicating lab cluster.
    const SLAVE_INFO_10_11: &str =
        "SET GLOBAL gtid_slave_pos = '1-101-3';\nCHANGE MASTER TO master_use_gtid = slave_pos;\n";
    const BINLOG_INFO_10_11: &str = "binlog.000001\t894\t1-101-3\n";

    #[test]
    fn the_slave_info_of_mariadb_10_11_gives_the_writers_position() {
        let gtid = |info: SlaveInfo| match info {
            SlaveInfo::Gtid(p) => p.to_string(),
            other => panic!("not a GTID position: {other:?}"),
        };
        assert_eq!(
            gtid(parse_slave_info(SLAVE_INFO_10_11).expect("parses")),
            "1-101-3"
        );
        let two = parse_slave_info(
            "SET GLOBAL gtid_slave_pos = '0-1-5,1-101-42';\nCHANGE MASTER TO master_use_gtid = slave_pos;\n",
        )
        .expect("parses");
        assert_eq!(gtid(two), "0-1-5,1-101-42");
        let empty = parse_slave_info("SET GLOBAL gtid_slave_pos = '';\n").expect("parses");
        assert_eq!(gtid(empty), "");
    }

    #[test]
    fn a_slave_info_without_a_gtid_gives_the_sources_coordinates() {
        // Written by mariadb-backup 10.11 on a replica that had applied no GTID yet.
        let info = parse_slave_info(
            "CHANGE MASTER TO MASTER_LOG_FILE='binlog.000001', MASTER_LOG_POS=325;\n",
        )
        .expect("parses");
        assert_eq!(
            info,
            SlaveInfo::File {
                file: "binlog.000001".into(),
                pos: 325
            }
        );
        assert!(parse_slave_info("SET GLOBAL gtid_slave_pos = 'x-y';").is_err());
        let err = parse_slave_info("CHANGE MASTER TO MASTER_USE_GTID=slave_pos;").unwrap_err();
        assert!(err.to_string().contains("neither"), "{err}");
    }

    #[test]
    fn the_binlog_info_gives_the_servers_own_position() {
        let pos = parse_binlog_info(BINLOG_INFO_10_11).expect("parses");
        assert_eq!(pos.to_string(), "1-101-3");
        assert!(parse_binlog_info("binlog.000001\t330\n")
            .expect("parses")
            .is_empty());
        assert!(parse_binlog_info("").is_err());
        assert!(parse_binlog_info("binlog.000001 894 1-101-3").is_err());
    }

    #[test]
    fn an_encrypted_restore_sets_every_encryption_option() {
        let extra = restore_cnf_extra(Some(Path::new("/lab/tls/green-encryption.key")));
        for line in [
            "skip_slave_start=ON",
            "plugin_load_add=file_key_management",
            "file_key_management_filename=/lab/tls/green-encryption.key",
            "innodb_encrypt_tables=ON",
            "innodb_encrypt_log=ON",
            "innodb_encryption_threads=2",
            "innodb_encrypt_temporary_tables=ON",
            "encrypt_binlog=ON",
            "aria_encrypt_tables=ON",
            "encrypt_tmp_files=ON",
        ] {
            assert!(
                extra.lines().any(|l| l == line),
                "{line} missing in {extra}"
            );
        }
        assert_eq!(restore_cnf_extra(None), "skip_slave_start=ON\n");
        let key = key_file_text();
        let hex = key.trim().strip_prefix("1;").expect("key id 1");
        assert_eq!(hex.len(), 64);
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
