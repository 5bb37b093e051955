//! Test harness: real `mariadbd` servers in temp dirs, built by the same code as `dbshift lab
//! up`, and never left behind.
//!
//! Servers are started tied to the test process (`PR_SET_PDEATHSIG`), so even a test binary
//! killed with SIGKILL takes them with it; a [`TestLab`] stops them by PID when dropped (also
//! while a panicking test unwinds), and a lab shared by a whole test binary is stopped and
//! deleted when the binary exits. Run the tests with `make test` (it installs MariaDB when
//! missing); they need `mariadbd` and `mariadb-install-db`, and fail loudly without them.
//! [`EtcdCluster`] does the same for a 3-member etcd cluster (the shared state store).

pub mod aws_bluegreen;
pub mod cli;
pub mod counting;
pub mod etcd;
pub mod faults;
pub mod invariants;
pub mod moto;
pub mod outage;
pub mod pinned;
pub mod proxied;
pub mod relay;
pub mod wait;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use dbshift_provider::local::{Lab, UpOptions};
use tokio::sync::OnceCell;

pub use aws_bluegreen::AwsBlueGreen;
pub use counting::{Calls, CountingProvider};
pub use etcd::EtcdCluster;
pub use faults::{
    allowed_writers, assert_caught_up_and_equal, assert_no_secret, assert_no_secret_in_dir,
    lab_secrets, RelayedProvider, Scenario, ScenarioReport,
};
pub use invariants::{
    check_gtid_history, check_lab_gtid_history, lab_targets, lab_writers, InvariantChecker,
    InvariantReport,
};
pub use outage::{kill_9, pid_of, signal, writable, writer_behind_relays, CutOff};
pub use pinned::Pinned;
pub use proxied::ProxiedLab;
pub use relay::{Relay, RelayControl};
pub use wait::{eventually, eventually_blocking, holds};
pub use writer::{admin_at, admin_via, admin_with, Access, AckedWriter};

/// Evaluate `$body` (an expression giving an `Option`, `.await`s allowed) until it is `Some`,
/// and give that value; panic after `$timeout` with `$what`. Tests wait for what they expect
/// this way, never by sleeping and hoping. [`wait::eventually`] does the same and fails with
/// the last value it saw.
#[macro_export]
macro_rules! eventually {
    ($timeout:expr, $what:expr, $body:expr) => {{
        let started = ::std::time::Instant::now();
        loop {
            if let Some(v) = $body {
                break v;
            }
            assert!(
                started.elapsed() < $timeout,
                "timed out waiting for {}",
                $what
            );
            $crate::poll_pause().await;
        }
    }};
}

/// The pause between two polls of [`eventually!`].
pub async fn poll_pause() {
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
}

/// Install the crate-wide rustls crypto provider (ring) once.
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

static CLEANUP: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn cleanup_at_exit() {
    let dirs = match CLEANUP.lock() {
        Ok(mut g) => std::mem::take(&mut *g),
        Err(p) => std::mem::take(&mut *p.into_inner()),
    };
    for dir in dirs {
        let _ = Lab::down(&dir, true);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn register_cleanup(dir: &Path) {
    let mut g = CLEANUP.lock().unwrap_or_else(|p| p.into_inner());
    if g.is_empty() {
        // SAFETY: registering a plain extern "C" function with no arguments.
        unsafe {
            libc::atexit(cleanup_at_exit);
        }
    }
    g.push(dir.to_path_buf());
}

fn unregister_cleanup(dir: &Path) {
    let mut g = CLEANUP.lock().unwrap_or_else(|p| p.into_inner());
    g.retain(|d| d != dir);
}

/// A lab of real servers in a temp dir, taken down (by PID) and deleted on drop.
pub struct TestLab {
    lab: Lab,
    dir: PathBuf,
}

impl TestLab {
    /// Build a lab of `clusters` clusters, each a writer and `replicas` replicas.
    pub async fn start(clusters: u32, replicas: u32) -> TestLab {
        TestLab::start_in_mode(clusters, replicas, false).await
    }

    /// Build an RDS-mode lab (`lab up --rds-mode`): the admin user has no SUPER and changes
    /// replication through the `mysql.rds_*` procedures.
    pub async fn start_rds(clusters: u32, replicas: u32) -> TestLab {
        TestLab::start_in_mode(clusters, replicas, true).await
    }

    /// Build a lab with semi-synchronous replication (`lab up --semi-sync`).
    pub async fn start_semi_sync(clusters: u32, replicas: u32) -> TestLab {
        TestLab::start_with(clusters, replicas, false, true).await
    }

    async fn start_in_mode(clusters: u32, replicas: u32, rds_mode: bool) -> TestLab {
        TestLab::start_with(clusters, replicas, rds_mode, false).await
    }

    async fn start_with(clusters: u32, replicas: u32, rds_mode: bool, semi_sync: bool) -> TestLab {
        init();
        let dir = tempfile::Builder::new()
            .prefix("dbshift-test-")
            .tempdir()
            .expect("a temp dir can be made")
            .keep();
        register_cleanup(&dir);
        let opts = UpOptions {
            clusters: Some(clusters),
            replicas: Some(replicas),
            die_with_parent: true,
            rds_mode,
            semi_sync_timeout: semi_sync.then_some(dbshift_provider::local::SEMI_SYNC_TIMEOUT),
            ..Default::default()
        };
        let (lab, _) = Lab::up(&dir, &opts).await.unwrap_or_else(|e| {
            panic!(
                "the test lab did not start (is MariaDB installed? `make test` installs it): {e}"
            )
        });
        TestLab { lab, dir }
    }

    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let _ = Lab::down(&self.dir, true);
        let _ = std::fs::remove_dir_all(&self.dir);
        unregister_cleanup(&self.dir);
    }
}

/// One lab for a whole test binary (1 cluster, 2 replicas), built by the first test that
/// asks, stopped and deleted when the binary exits. Tests that share it must leave it as they
/// found it (writer, replication) and use their own tables.
pub async fn shared_lab() -> &'static Lab {
    static SHARED: OnceCell<TestLab> = OnceCell::const_new();
    SHARED.get_or_init(|| TestLab::start(1, 2)).await.lab()
}

/// Lab instance handle with servers that die with this process (for tests that restart).
pub fn tied(lab: &Lab) -> Lab {
    let mut l = lab.clone();
    l.set_die_with_parent(true);
    l
}
