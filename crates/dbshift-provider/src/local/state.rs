//! The lab's state file (`lab.json`): what was built, where, and who the writer of each cluster
//! is. Written atomically (temp file + rename) under an exclusive lock, mode 0600 because it
//! holds the lab's passwords. The servers are the truth for everything the file does not own.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::model::{Credential, Deployment, Role, Side};

pub const STATE_FILE: &str = "lab.json";
const LOCK_FILE: &str = "lab.lock";
const FORMAT: u32 = 1;

/// 16 MiB: a dozen servers fit on a laptop; a load test wants more (`--buffer-pool-mb`).
pub fn default_buffer_pool_mb() -> u32 {
    16
}

/// A CA the lab made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaRecord {
    pub id: String,
    /// PEM certificate, relative to the lab dir.
    pub cert: String,
    /// PEM private key, relative to the lab dir.
    pub key: String,
    pub not_before: String,
    pub not_after: String,
}

/// A dbshift proxy in the lab state (`dbshift lab proxy up`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxyRecord {
    pub cluster: String,
    /// 0 for the cluster's first proxy (labs written before several proxies had only that).
    #[serde(default)]
    pub index: u32,
    pub port: u16,
    pub admin_port: u16,
}

/// One lab cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub name: String,
    pub gtid_domain_id: u32,
    /// Instance id of the current writer.
    pub writer: String,
}

/// One lab instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub id: String,
    pub cluster: String,
    pub port: u16,
    pub server_id: u32,
    /// CA that signed its server certificate.
    pub ca: String,
    /// The server binary it runs.
    pub engine_binary: PathBuf,
    /// Data at rest encrypted (set by the provider when it builds an encrypted instance).
    #[serde(default)]
    pub encrypted: bool,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The platform's `read_only` setting (RDS's parameter group), set by
    /// `Lab::set_read_only`. `Some(true)` keeps the instance read-only at every start, even as
    /// its cluster's writer; otherwise only the cluster's writer is made writable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_parameter: Option<bool>,
}

/// The users of the lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabUsers {
    pub admin: Credential,
    pub replication: Credential,
    pub app: Credential,
}

/// Everything in `lab.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub format: u32,
    pub created_at: String,
    /// This lab's identity, made at `lab up`: the journal ties runs to it, so that a run of a
    /// purged lab is never resumed against a new lab built in the same directory. Labs
    /// written before it existed are known by `created_at`.
    #[serde(default)]
    pub lab_id: String,
    /// `mariadbd --version` of the default binary.
    pub engine_version: String,
    pub mariadbd: PathBuf,
    pub replicas_per_cluster: u32,
    /// InnoDB buffer pool of every server, in MiB.
    #[serde(default = "default_buffer_pool_mb")]
    pub buffer_pool_mb: u32,
    pub users: LabUsers,
    pub cas: Vec<CaRecord>,
    /// The CA new server certificates (new and restored instances) are issued from; always
    /// one of `trusted_cas`.
    pub current_ca: String,
    /// The CAs in the trust bundle (`tls/trust.pem`): servers' `ssl_ca`, replication's
    /// `MASTER_SSL_CA`, dbshift's own connections. Labs written before it existed trust only
    /// their `current_ca`, which [`LabState::load`] fills in.
    #[serde(default)]
    pub trusted_cas: Vec<String>,
    pub clusters: Vec<ClusterRecord>,
    pub instances: Vec<InstanceRecord>,
    /// The servers behave like RDS for MariaDB towards dbshift (`lab up --rds-mode`). Labs
    /// written before the mode existed are in the default mode.
    #[serde(default)]
    pub rds_mode: bool,
    /// RDS mode: the lab's own superuser, the control plane's credential. Never handed to
    /// workflows (`Provider::credentials` leaves it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Credential>,
    /// Semi-synchronous replication (`lab up --semi-sync`): `AFTER_SYNC`, every server both a
    /// semi-sync source and replica, falling back to asynchronous after this many ms without
    /// an acknowledgement. `None`: asynchronous replication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semi_sync_timeout_ms: Option<u32>,
    /// dbshift proxies in front of clusters (`dbshift lab proxy up`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxies: Vec<ProxyRecord>,
    /// Blue/green deployments (`dbshift bluegreen create`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployments: Vec<Deployment>,
}

impl LabState {
    pub fn new_empty(
        engine_version: String,
        mariadbd: PathBuf,
        replicas_per_cluster: u32,
        users: LabUsers,
    ) -> Self {
        LabState {
            format: FORMAT,
            created_at: super::files::now_rfc3339(),
            lab_id: {
                use rand::Rng;
                format!("{:016x}", rand::rng().random::<u64>())
            },
            engine_version,
            mariadbd,
            replicas_per_cluster,
            buffer_pool_mb: default_buffer_pool_mb(),
            users,
            cas: Vec::new(),
            current_ca: String::new(),
            trusted_cas: Vec::new(),
            clusters: Vec::new(),
            instances: Vec::new(),
            rds_mode: false,
            platform: None,
            semi_sync_timeout_ms: None,
            deployments: Vec::new(),
            proxies: Vec::new(),
        }
    }

    pub fn instance(&self, id: &str) -> Result<&InstanceRecord> {
        self.instances
            .iter()
            .find(|i| i.id == id)
            .ok_or_else(|| Error::Unknown {
                kind: "instance",
                name: id.to_string(),
                known: self.known_names(),
            })
    }

    pub fn cluster(&self, name: &str) -> Option<&ClusterRecord> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// The cluster whose writer `instance` is, if it is one.
    pub fn cluster_of_writer(&self, instance: &str) -> Option<&ClusterRecord> {
        self.clusters.iter().find(|c| c.writer == instance)
    }

    /// The deployment `cluster` is a side of, and which side.
    pub fn deployment_of(&self, cluster: &str) -> Option<(&Deployment, Side)> {
        self.deployments.iter().find_map(|d| {
            if d.blue == cluster {
                Some((d, Side::Blue))
            } else if d.green == cluster {
                Some((d, Side::Green))
            } else {
                None
            }
        })
    }

    /// Whether `instance` is the one that takes writes: the writer of a cluster that is not
    /// the standby side of a blue/green deployment. Only such an instance is made writable
    /// when it starts, so that no restart can ever make a second writer.
    pub fn serves_writes(&self, instance: &str) -> bool {
        self.clusters.iter().any(|c| {
            c.writer == instance
                && !matches!(self.deployment_of(&c.name), Some((d, side)) if d.serving != side)
        })
    }

    pub fn role_of(&self, instance: &InstanceRecord) -> Role {
        match self.cluster(&instance.cluster) {
            Some(c) if c.writer == instance.id => Role::Writer,
            _ => Role::Reader,
        }
    }

    pub fn instances_of<'a>(
        &'a self,
        cluster: &'a str,
    ) -> impl Iterator<Item = &'a InstanceRecord> {
        self.instances.iter().filter(move |i| i.cluster == cluster)
    }

    /// Cluster names and instance ids, for "unknown name" messages.
    pub fn known_names(&self) -> String {
        let mut names: Vec<&str> = self.clusters.iter().map(|c| c.name.as_str()).collect();
        names.extend(self.instances.iter().map(|i| i.id.as_str()));
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    /// What a state written by an older dbshift leaves out: its trust bundle held its one CA.
    fn fill_in_defaults(&mut self) {
        if self.trusted_cas.is_empty() && !self.current_ca.is_empty() {
            self.trusted_cas = vec![self.current_ca.clone()];
        }
    }

    /// A CA of the lab by id; [`Error::Unknown`] if there is none.
    pub fn ca(&self, id: &str) -> Result<&CaRecord> {
        self.cas
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| Error::Unknown {
                kind: "CA",
                name: id.to_string(),
                known: self.known_cas(),
            })
    }

    /// The lab's CA ids, for "unknown CA" messages.
    pub fn known_cas(&self) -> String {
        if self.cas.is_empty() {
            "none".into()
        } else {
            let ids: Vec<&str> = self.cas.iter().map(|c| c.id.as_str()).collect();
            ids.join(", ")
        }
    }

    /// The state file's path in a lab dir.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    /// Read the state of the lab in `dir`. [`Error::NoLab`] if there is none,
    /// [`Error::DamagedState`] if it cannot be parsed.
    pub fn load(dir: &Path) -> Result<LabState> {
        let path = Self::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NoLab(dir.to_path_buf()))
            }
            Err(e) => return Err(e).ctx(|| format!("reading {}", path.display())),
        };
        let damaged = |reason: String| Error::DamagedState {
            path: path.clone(),
            dir: dir.to_path_buf(),
            reason,
        };
        let mut state: LabState =
            serde_json::from_str(&text).map_err(|e| damaged(e.to_string()))?;
        state.fill_in_defaults();
        if state.format != FORMAT {
            return Err(damaged(format!(
                "format {} is not the {FORMAT} this dbshift reads",
                state.format
            )));
        }
        for c in &state.clusters {
            // Blue's name may name green's writer (and green's blue's) while a deployment
            // holds both.
            let other_side = state.deployment_of(&c.name).map(|(d, side)| {
                if side == Side::Blue {
                    d.green.clone()
                } else {
                    d.blue.clone()
                }
            });
            if !state.instances.iter().any(|i| {
                i.id == c.writer && (i.cluster == c.name || Some(&i.cluster) == other_side.as_ref())
            }) {
                return Err(damaged(format!(
                    "cluster {} names writer {} which is not one of its instances",
                    c.name, c.writer
                )));
            }
        }
        Ok(state)
    }

    /// Write atomically: a crash leaves the old file or the new one, never half of one.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = Self::path(dir);
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self).expect("lab state always serializes");
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .ctx(|| format!("writing {}", tmp.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .ctx(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).ctx(|| format!("replacing {}", path.display()))?;
        Ok(())
    }
}

/// An exclusive lock on a lab dir, held while the lab is changed; released on drop.
pub struct LabLock {
    _file: File,
}

impl LabLock {
    /// Wait for the lock. Two `dbshift lab` commands on one lab run one after the other.
    pub fn acquire(dir: &Path) -> Result<LabLock> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a descriptor we own; the lock is released when the file closes.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .ctx(|| format!("locking {}", path.display()));
        }
        Ok(LabLock { _file: file })
    }

    /// [`LabLock::acquire`] off the async runtime: another dbshift process may hold the lock
    /// for as long as its command takes (a whole `lab up`).
    pub async fn acquire_async(dir: &Path) -> Result<LabLock> {
        let dir = dir.to_path_buf();
        super::blocking::run("waiting for the lab lock", move || LabLock::acquire(&dir)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_json(trusted: Option<&[&str]>) -> String {
        let cred = |user: &str| Credential {
            user: user.into(),
            password: "pw".into(),
        };
        let users = LabUsers {
            admin: cred("dbshift_admin"),
            replication: cred("dbshift_repl"),
            app: cred("app"),
        };
        let mut st = LabState::new_empty("10.11.19".into(), "/usr/sbin/mariadbd".into(), 1, users);
        st.current_ca = "lab-ca-2025".into();
        let mut json = serde_json::to_value(&st).expect("the state serializes");
        let obj = json.as_object_mut().expect("the state is an object");
        match trusted {
            Some(ids) => {
                obj.insert("trusted_cas".into(), serde_json::json!(ids));
            }
            None => {
                obj.remove("trusted_cas");
            }
        }
        json.to_string()
    }

    #[test]
    fn a_lab_from_before_the_trust_list_trusts_its_current_ca() {
        let dir = std::env::temp_dir().join(format!("dbshift-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir can be made");
        std::fs::write(LabState::path(&dir), state_json(None)).expect("the state is written");
        let st = LabState::load(&dir);
        std::fs::write(
            LabState::path(&dir),
            state_json(Some(&["lab-ca-2025", "lab-ca-2026"])),
        )
        .expect("the state is written");
        let newer = LabState::load(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(st.expect("an old state loads").trusted_cas, ["lab-ca-2025"]);
        // A list that is there is kept as written.
        assert_eq!(
            newer.expect("a new state loads").trusted_cas,
            ["lab-ca-2025", "lab-ca-2026"]
        );
    }

    #[test]
    fn an_unknown_ca_is_named_with_the_known_ones() {
        let st: LabState = serde_json::from_str(&state_json(None)).expect("the state parses");
        let err = st.ca("lab-ca-1999").unwrap_err().to_string();
        assert!(
            err.contains("lab-ca-1999") && err.contains("known: none"),
            "{err}"
        );
    }
}
