//! The lab's servers as processes: their option files, starting them and waiting until they
//! answer, restarting and stopping them, and the `read_only` they start with.

use std::time::{Duration, Instant};

use dbshift_db::Server;

use super::process::{self, ServerConfig};
use super::state::{self, InstanceRecord};
use super::{files, Lab, START_TIMEOUT, STOP_GRACE};
use crate::error::{Error, Result};

/// How long after [`Lab::set_read_only`] returns the change reaches the running server, as a
/// dynamic parameter of an RDS parameter group does (some seconds there; shorter here to keep
/// tests quick, long enough that code trusting the call instead of the server fails).
pub const PARAMETER_APPLY_DELAY: Duration = Duration::from_millis(300);

impl Lab {
    pub(super) fn write_cnf(&self, rec: &InstanceRecord) -> Result<()> {
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
        files::write_atomic(&paths.cnf(), cnf.as_bytes(), 0o644)
    }

    /// Start the given instances together and wait until each accepts connections.
    pub(super) async fn start_and_wait(&self, ids: &[String]) -> Result<()> {
        self.start_and_wait_within(ids, START_TIMEOUT).await
    }

    /// [`Lab::start_and_wait`] with another patience.
    pub(super) async fn start_and_wait_within(
        &self,
        ids: &[String],
        timeout: Duration,
    ) -> Result<()> {
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
    pub(super) async fn wait_ready(&self, id: &str, pid: u32, timeout: Duration) -> Result<()> {
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
    pub(super) async fn make_writable(&self, id: &str) -> Result<()> {
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
    pub(super) async fn apply_read_only_at_start(&self, id: &str) -> Result<()> {
        let fresh = self.fresh()?;
        let fenced = fresh.instance(id)?.read_only_parameter == Some(true);
        if fresh.serves_writes(id) && !fenced {
            self.make_writable(id).await?;
        }
        Ok(())
    }

    /// `read_only` on one running server, with the platform's credential.
    pub(super) async fn apply_read_only(&self, id: &str, on: bool) -> Result<()> {
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
    /// each instance has its own. It reaches a running server [`PARAMETER_APPLY_DELAY`] after
    /// the call returns (RDS applies dynamic parameters asynchronously), and is kept in the
    /// state: ON keeps the instance read-only across restarts, as a parameter group does.
    pub async fn set_read_only(&self, id: &str, on: bool) -> Result<()> {
        {
            let _lock = state::LabLock::acquire_async(&self.dir).await?;
            let mut st = self.fresh()?;
            st.instance(id)?;
            if let Some(rec) = st.instances.iter_mut().find(|i| i.id == id) {
                rec.read_only_parameter = Some(on);
            }
            st.save(&self.dir)?;
        }
        if process::running_pid(&self.paths(id)).is_some() {
            // As on RDS, the change reaches the running server some time after the call
            // returns: callers must poll the server, never trust the call.
            tracing::info!(instance = %id, read_only = on, "read_only parameter changed; applying");
            let lab = self.clone();
            let id = id.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(PARAMETER_APPLY_DELAY).await;
                // The latest value wins when changes overlap.
                let latest = lab
                    .fresh()
                    .ok()
                    .and_then(|st| st.instance(&id).ok().and_then(|i| i.read_only_parameter));
                let on = latest.unwrap_or(on);
                match lab.apply_read_only(&id, on).await {
                    Ok(()) => {
                        tracing::info!(instance = %id, read_only = on, "read_only parameter applied")
                    }
                    Err(e) => {
                        tracing::warn!(instance = %id, read_only = on, "read_only parameter not applied: {e}")
                    }
                }
            });
        }
        Ok(())
    }

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
}
