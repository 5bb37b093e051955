//! `lab down`: stop the lab's servers and proxies by PID, and with `--purge` remove what the
//! lab made, whatever state the lab is in (a damaged state file, a directory deleted by hand).
//! It removes nothing the lab did not make.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::process::{self, InstancePaths};
use super::state::{self, LabState};
use super::{absolute, Lab, STOP_GRACE};
use crate::error::{Error, Result};

/// What `lab down` did.
#[derive(Debug, Clone, Serialize)]
pub struct DownReport {
    pub dir: PathBuf,
    pub stopped: Vec<String>,
    pub purged: bool,
}

impl Lab {
    /// [`Lab::down`] off the async runtime (it waits for processes to exit): what async callers
    /// use.
    pub async fn down_off_runtime(dir: &Path, purge: bool) -> Result<DownReport> {
        let dir = dir.to_path_buf();
        super::blocking::run("lab down", move || Lab::down(&dir, purge)).await
    }

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
}

/// The instance id of a server from its option file's directory (its PID when unnamed).
fn instance_name(cnf: &Path, pid: u32) -> String {
    cnf.parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| pid.to_string())
}

/// Remove what a lab made in `dir` (instances, TLS material, state), nothing else.
pub(super) fn remove_lab_files(dir: &Path) {
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
