//! The local lab: the embedded default provider, made of real `mariadbd` processes.
//!
//! `lab up` builds clusters `lab-1` .. `lab-N`, each a writer and M replicas over GTID
//! replication (one `gtid_domain_id` per cluster) that runs over TLS with the server
//! certificate verified against the lab CA. Everything lives under one directory (default
//! `./.dbshift/lab`) with a state file, so later commands find the lab without flags. The test
//! harness uses this same code. This module must never decide a workflow: it builds, starts,
//! stops and describes, and nothing more.
//!
//! Its files, and who uses whom (no module imports one that imports it back): `files`
//! (atomic writes, the clock) and `blocking` (work off the async runtime) use nothing of the
//! lab; `state` (the state file and its lock) uses them; `process` uses `files`; `tls` uses
//! `state` and `files`; `proxy`, `ca`, `snapshot`, `replica` and `bluegreen` use those. The
//! rest add to [`Lab`] what their names say: `up`, `down`, `status`, `servers`,
//! `replication`, `redirect`, and `provider` (the lab as a [`crate::Provider`]).

mod blocking;
mod bluegreen;
pub mod ca;
mod down;
mod files;
mod process;
mod provider;
pub mod proxy;
pub mod rds;
mod redirect;
mod replica;
mod replication;
mod servers;
pub mod snapshot;
pub mod state;
mod status;
pub mod tls;
mod up;

use std::path::{Path, PathBuf};
use std::time::Duration;

use dbshift_db::server::{ConnectOptions, TlsOptions};
use dbshift_db::Server;
use rand::distr::{Alphanumeric, SampleString};

pub use down::DownReport;
pub use process::{find_mariadbd, find_program, InstancePaths};
pub use replica::AddedReplicas;
pub use snapshot::{RestoreOptions, SlaveInfo, Snapshot};
pub use state::{InstanceRecord, LabState, LabUsers};
pub use status::{ClusterStatusRow, InstanceStatusRow, LabStatus};
pub use up::{UpOptions, UpReport, SEMI_SYNC_TIMEOUT};

use crate::error::{IoContext, Result};
use crate::model::{Credential, Endpoint};

pub use crate::DEFAULT_DIR;
/// The trust bundle every lab server and client uses (`ssl_ca`, `MASTER_SSL_CA`).
pub const TRUST_BUNDLE: &str = "tls/trust.pem";
const MAX_CLUSTERS: u32 = 50;
const MAX_REPLICAS: u32 = 9;
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(30);

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

impl Lab {
    /// Open the lab in `dir`. [`crate::Error::NoLab`] when there is none.
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

    pub fn fresh(&self) -> Result<LabState> {
        LabState::load(&self.dir)
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
}

fn endpoint(port: u16) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        port,
    }
}
