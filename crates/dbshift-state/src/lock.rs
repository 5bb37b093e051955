//! Cluster locks: one run owns a cluster for its whole life (start, resume, rollback), so that
//! two dbshift commands never change one cluster at once. A second command is refused at once,
//! told who holds the lock, and changes nothing.
//!
//! The interface ([`LockStore`], [`LockLease`]) is the one a shared store implements for a
//! team (leases with a fencing token): [`crate::etcd::EtcdLocks`] is that store on etcd.
//! [`FileLocks`] is the local one: an exclusive `flock` on a file per scope beside the journal,
//! released by the kernel when the holder exits, however it exits (`kill -9` included), with
//! the holder written into the file for the refusal.
//!
//! Taking a lock is async (a shared store answers over the network); checking one is not: a
//! lease's state is kept up to date by its store in the background, and [`LockLease::check`]
//! only reads it, so a run may call it before every change without waiting on anything.
//!
//! [`Locks`] is what workflows use: taken through the same handle (one command), a scope that
//! is already held is shared, so a workflow that calls another (CA rotation moving a writer
//! through the switchover core, a failover through it) does not lock itself out.
//!
//! A lock never changes a server, and a lease that is lost (its file deleted under it) makes
//! [`ClusterLock::check`] fail: a run checks it before each change and stops.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use serde::{Deserialize, Serialize};

/// Errors of the locks.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another command holds the scope.
    #[error(
        "{scope} is being changed by another dbshift command: {holder}. Nothing was changed; \
         wait for it to end (`dbshift runs` shows it), then run this again"
    )]
    Held { scope: String, holder: String },
    /// The lease was lost while held (its file removed, the store unreachable).
    #[error("the lock on {scope} was lost ({reason}); this run stops before its next change")]
    Lost { scope: String, reason: String },
    /// The shared store cannot be reached (or has no quorum): nothing was taken.
    #[error(
        "the state store {store} cannot be reached ({reason}); nothing was changed: check that \
         etcd runs and has a leader (`etcdctl endpoint health`), or drop --state to use local \
         locks"
    )]
    Unreachable { store: String, reason: String },
    #[error("lock {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Who holds a lock: written by the holder, shown to whoever is refused.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// What holds it, e.g. `switchover of lab-1 (lab-1-1 -> lab-1-2)`.
    pub what: String,
    /// RFC 3339, UTC.
    pub since: String,
    /// The fencing token: grows with every acquisition of the scope (by one in a file; the
    /// key's create revision in etcd).
    #[serde(default)]
    pub token: u64,
    /// The dbshift version of the holder (empty when written by a dbshift before it was kept).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
}

impl Holder {
    /// This process, holding for `what`.
    pub fn this_process(what: &str) -> Holder {
        Holder {
            pid: std::process::id(),
            host: hostname(),
            what: what.to_string(),
            since: crate::journal::now(),
            token: 0,
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

impl Holder {
    /// Whether the holder may still run: a released lock (pid 0) or a process gone from this
    /// host is not live. A holder on another host is taken as live.
    fn is_live(&self) -> bool {
        if self.pid == 0 {
            return false;
        }
        if self.host != hostname() {
            return true;
        }
        // SAFETY: kill(2) with signal 0 sends nothing; it only checks that the pid exists.
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, 0) };
        rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (pid {} on {}, since {}",
            self.what, self.pid, self.host, self.since
        )?;
        if !self.version.is_empty() {
            write!(f, ", dbshift {}", self.version)?;
        }
        f.write_str(")")
    }
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this machine".into())
}

/// A held lock of a store; dropping it releases the lock.
pub trait LockLease: Send + Sync {
    /// The fencing token of this holding (grows with every acquisition of the scope).
    fn token(&self) -> u64;
    /// Whether the lock is still held; a run calls it before each change.
    fn check(&self) -> Result<(), LockError>;
}

/// Where locks live: local files, or a shared store for a team.
#[async_trait::async_trait]
pub trait LockStore: Send + Sync {
    /// Take `scope` for `holder`, or fail at once with [`LockError::Held`].
    async fn try_acquire(
        &self,
        scope: &str,
        holder: &Holder,
    ) -> Result<Box<dyn LockLease>, LockError>;
}

/// Locks as files under one directory (`<dir>/<scope>.lock`), held by `flock`.
#[derive(Debug, Clone)]
pub struct FileLocks {
    dir: PathBuf,
}

impl FileLocks {
    pub fn new(dir: impl Into<PathBuf>) -> FileLocks {
        FileLocks { dir: dir.into() }
    }

    fn path(&self, scope: &str) -> PathBuf {
        let name: String = scope
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{name}.lock"))
    }
}

struct FileLease {
    scope: String,
    path: PathBuf,
    file: File,
    token: u64,
}

impl Drop for FileLease {
    /// Released: the file keeps the token (the next holder's is one more) and says that
    /// nobody holds it, so that a refusal racing the next holder's write names no one stale.
    fn drop(&mut self) {
        let released = Holder {
            pid: 0,
            host: String::new(),
            what: "released".into(),
            since: String::new(),
            token: self.token,
            version: String::new(),
        };
        let text = serde_json::to_string(&released).expect("a holder always serializes");
        let _ = self
            .file
            .set_len(0)
            .and_then(|_| self.file.seek(SeekFrom::Start(0)))
            .and_then(|_| self.file.write_all(text.as_bytes()));
        // The flock goes with the descriptor, closed right after.
    }
}

impl LockLease for FileLease {
    fn token(&self) -> u64 {
        self.token
    }

    fn check(&self) -> Result<(), LockError> {
        let lost = |reason: String| LockError::Lost {
            scope: self.scope.clone(),
            reason,
        };
        let ours = self
            .file
            .metadata()
            .map_err(|e| lost(format!("reading the lock file: {e}")))?;
        match std::fs::metadata(&self.path) {
            Ok(m) if m.dev() == ours.dev() && m.ino() == ours.ino() => Ok(()),
            Ok(_) => Err(lost(format!("{} was replaced", self.path.display()))),
            Err(e) => Err(lost(format!("{}: {e}", self.path.display()))),
        }
    }
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

#[async_trait::async_trait]
impl LockStore for FileLocks {
    async fn try_acquire(
        &self,
        scope: &str,
        holder: &Holder,
    ) -> Result<Box<dyn LockLease>, LockError> {
        // A local file: opened, locked without waiting and written, all in microseconds; the
        // refusal's short re-read (half a second at most) is the only wait.
        let path = self.path(scope);
        let io = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                // The holder writes itself right after locking: a refusal in between reads
                // what the previous holder left (released, or a process gone), so it is read
                // again until it names a live holder, for half a second at most.
                let mut who = read_holder(&mut file);
                for _ in 0..10 {
                    if who.as_ref().is_some_and(Holder::is_live) {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    who = read_holder(&mut file);
                }
                return Err(LockError::Held {
                    scope: scope.to_string(),
                    holder: who.map_or_else(
                        || format!("a process holding {}", path.display()),
                        |h| h.to_string(),
                    ),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let token = read_holder(&mut file).map_or(0, |h| h.token) + 1;
        let mine = Holder {
            token,
            ..holder.clone()
        };
        let text = serde_json::to_string(&mine).expect("a holder always serializes");
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(text.as_bytes()))
            .and_then(|_| file.flush())
            .map_err(io)?;
        Ok(Box::new(FileLease {
            scope: scope.to_string(),
            path,
            file,
            token,
        }))
    }
}

/// A held cluster lock; the last clone dropped releases it.
#[derive(Clone)]
pub struct ClusterLock {
    scope: String,
    lease: Arc<dyn LockLease>,
}

impl std::fmt::Debug for ClusterLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLock")
            .field("scope", &self.scope)
            .field("token", &self.lease.token())
            .finish()
    }
}

impl ClusterLock {
    pub fn scope(&self) -> &str {
        &self.scope
    }

    pub fn token(&self) -> u64 {
        self.lease.token()
    }

    /// Whether the lock is still held: called before each change.
    pub fn check(&self) -> Result<(), LockError> {
        self.lease.check()
    }
}

/// The locks of one command: a store, and the scopes this command already holds (taken again
/// through this handle, a held scope is shared rather than refused).
#[derive(Clone)]
pub struct Locks {
    store: Arc<dyn LockStore>,
    held: Arc<Mutex<HashMap<String, Weak<dyn LockLease>>>>,
    taking: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Locks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locks").finish_non_exhaustive()
    }
}

impl Locks {
    pub fn new(store: Arc<dyn LockStore>) -> Locks {
        Locks {
            store,
            held: Arc::new(Mutex::new(HashMap::new())),
            taking: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Local file locks under `dir`.
    pub fn in_dir(dir: &Path) -> Locks {
        Locks::new(Arc::new(FileLocks::new(dir)))
    }

    /// Take `scope` (a cluster's name, or `watch:<cluster>`) for `what`, or fail at once with
    /// [`LockError::Held`] naming the holder.
    pub async fn acquire(&self, scope: &str, what: &str) -> Result<ClusterLock, LockError> {
        // One acquisition at a time per command: two tasks of one command taking the same
        // scope share it rather than refuse each other.
        let _one = self.taking.lock().await;
        if let Some(lock) = self.held(scope) {
            return Ok(lock);
        }
        let lease: Arc<dyn LockLease> = Arc::from(
            self.store
                .try_acquire(scope, &Holder::this_process(what))
                .await?,
        );
        self.held
            .lock()
            .expect("the lock table is never poisoned")
            .insert(scope.to_string(), Arc::downgrade(&lease));
        Ok(ClusterLock {
            scope: scope.to_string(),
            lease,
        })
    }

    /// The lock of `scope` this command holds now, if it holds it.
    pub fn held(&self, scope: &str) -> Option<ClusterLock> {
        let held = self.held.lock().expect("the lock table is never poisoned");
        held.get(scope)
            .and_then(Weak::upgrade)
            .map(|lease| ClusterLock {
                scope: scope.to_string(),
                lease,
            })
    }

    /// Take every scope of `scopes` (sorted, each once), or none.
    pub async fn acquire_all(
        &self,
        scopes: &[String],
        what: &str,
    ) -> Result<Vec<ClusterLock>, LockError> {
        let mut sorted: Vec<&String> = scopes.iter().collect();
        sorted.sort();
        sorted.dedup();
        let mut out = Vec::new();
        for s in sorted {
            // On a refusal, the ones taken so far are released as `out` drops.
            out.push(self.acquire(s, what).await?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_handle_is_refused_with_the_holder_and_the_same_handle_shares() {
        let dir = tempfile::tempdir().unwrap();
        let a = Locks::in_dir(dir.path());
        let b = Locks::in_dir(dir.path());
        let held = a.acquire("lab-1", "switchover of lab-1").await.unwrap();
        assert_eq!(held.token(), 1);
        let again = a.acquire("lab-1", "nested switchover").await.unwrap();
        assert_eq!(again.token(), 1, "the same command shares its lock");
        assert_eq!(a.held("lab-1").map(|l| l.token()), Some(1));
        assert!(b.held("lab-1").is_none(), "held by the other handle only");
        let err = b.acquire("lab-1", "another").await.unwrap_err().to_string();
        assert!(err.contains("switchover of lab-1"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("Nothing was changed"), "{err}");
        // Another scope is free.
        b.acquire("lab-2", "other cluster").await.unwrap();
        drop(held);
        assert!(
            b.acquire("lab-1", "x").await.is_err(),
            "a clone still holds it"
        );
        drop(again);
        let next = b.acquire("lab-1", "after").await.unwrap();
        assert_eq!(next.token(), 2, "the token grows with each acquisition");
        next.check().unwrap();
    }

    #[tokio::test]
    async fn a_lease_whose_file_is_removed_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let locks = Locks::in_dir(&dir.path().join("locks"));
        let held = locks.acquire("lab-1", "run").await.unwrap();
        held.check().unwrap();
        std::fs::remove_dir_all(dir.path().join("locks")).unwrap();
        let err = held.check().unwrap_err().to_string();
        assert!(err.contains("lost"), "{err}");
    }

    #[tokio::test]
    async fn acquire_all_takes_none_when_one_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let a = Locks::in_dir(dir.path());
        let b = Locks::in_dir(dir.path());
        let _g = a.acquire("green", "other").await.unwrap();
        assert!(b
            .acquire_all(&["blue".into(), "green".into()], "switch")
            .await
            .is_err());
        // blue was released with the refusal.
        a.acquire("blue", "free").await.unwrap();
    }
}
