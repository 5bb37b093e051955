//! A client that inserts rows as the application user through a cluster name, following the
//! name on every reconnect (a switchover moves it), and remembers which inserts were
//! acknowledged; at the end every acknowledged insert must be on the writer the name resolves to.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dbshift_db::server::{ConnectOptions, TlsOptions};
use dbshift_db::Server;
use dbshift_provider::local::Lab;
use dbshift_provider::{Credential, Provider};

/// Who the writer and its audit connect as, and how: the lab's users over its TLS, or those
/// of a fleet dbshift did not build (an external MySQL cluster).
#[derive(Clone)]
pub struct Access {
    /// Creates the table and reads it back for the audit.
    pub admin: Credential,
    /// Inserts (no SUPER on the lab: `read_only` stops it).
    pub app: Credential,
    /// TLS verified against this CA; `None`: no TLS.
    pub ca: Option<PathBuf>,
}

impl Access {
    /// The lab's admin and application users over its TLS.
    pub fn of_lab(lab: &Lab) -> Access {
        let users = &lab.state().users;
        Access {
            admin: users.admin.clone(),
            app: users.app.clone(),
            ca: Some(lab.ca_bundle()),
        }
    }

    fn options(&self, who: &Credential, host: &str, port: u16) -> ConnectOptions {
        let mut o = ConnectOptions::new(host, port, who.user.clone())
            .password(who.password.clone())
            .connect_timeout(Duration::from_secs(1));
        if let Some(ca) = &self.ca {
            o = o.tls(TlsOptions {
                ca_path: ca.clone(),
                verify_identity: true,
            });
        }
        o
    }
}

/// The inserting client; see the module documentation.
pub struct AckedWriter {
    access: Access,
    /// Who says where the name points (the lab, or another provider naming the lab's
    /// servers, such as the aws provider on moto mapped onto them).
    resolver: Arc<dyn Provider>,
    cluster: String,
    table: String,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeSet<u64>>>,
    task: tokio::task::JoinHandle<()>,
}

/// An admin connection to what `name` (a cluster or an instance) resolves to now.
pub async fn admin_at(lab: &Lab, name: &str) -> Server {
    admin_via(lab, lab, name).await
}

/// An admin connection to the lab server `resolver` resolves `name` to now.
pub async fn admin_via(lab: &Lab, resolver: &dyn Provider, name: &str) -> Server {
    admin_with(&Access::of_lab(lab), resolver, name).await
}

/// An admin connection, as `access` says, to the server `resolver` resolves `name` to now.
pub async fn admin_with(access: &Access, resolver: &dyn Provider, name: &str) -> Server {
    let ep = resolver.resolve(name).await.expect("the name resolves");
    Server::connect(&access.options(&access.admin, &ep.host, ep.port))
        .await
        .unwrap_or_else(|e| panic!("connecting to {name} ({ep}): {e}"))
}

impl AckedWriter {
    /// Create `app.<table>` on what `cluster` resolves to, then insert into it until stopped.
    pub async fn start(lab: &Lab, cluster: &str, table: &str) -> AckedWriter {
        AckedWriter::start_via(lab, Arc::new(lab.clone()), cluster, table).await
    }

    /// [`AckedWriter::start`], following `cluster` as `resolver` resolves it.
    pub async fn start_via(
        lab: &Lab,
        resolver: Arc<dyn Provider>,
        cluster: &str,
        table: &str,
    ) -> AckedWriter {
        AckedWriter::start_with(Access::of_lab(lab), resolver, cluster, table).await
    }

    /// [`AckedWriter::start_via`] on any fleet: `access` says who connects and how (the
    /// database `app` must exist).
    pub async fn start_with(
        access: Access,
        resolver: Arc<dyn Provider>,
        cluster: &str,
        table: &str,
    ) -> AckedWriter {
        let mut a = admin_with(&access, &*resolver, cluster).await;
        a.exec_sql(&format!(
            "CREATE TABLE IF NOT EXISTS app.{table} (id BIGINT PRIMARY KEY)"
        ))
        .await
        .expect("the writer's table is made");
        a.close().await;
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(BTreeSet::new()));
        let (access2, name, tbl) = (access.clone(), cluster.to_string(), table.to_string());
        let resolver2 = resolver.clone();
        let (stop2, acked2) = (stop.clone(), acked.clone());
        let task = tokio::spawn(async move {
            let app = access2.app.clone();
            let mut id = 0u64;
            let mut conn: Option<Server> = None;
            while !stop2.load(Ordering::Relaxed) {
                if conn.is_none() {
                    let Ok(ep) = resolver2.resolve(&name).await else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    conn = Server::connect(&access2.options(&app, &ep.host, ep.port))
                        .await
                        .ok();
                    if conn.is_none() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                }
                id += 1;
                let c = conn.as_mut().expect("connected above");
                let r = tokio::time::timeout(
                    Duration::from_secs(2),
                    c.exec_sql(&format!("INSERT INTO app.{tbl} VALUES ({id})")),
                )
                .await;
                match r {
                    Ok(Ok(())) => {
                        acked2.lock().unwrap().insert(id);
                    }
                    _ => {
                        // 1290 (read-only) or a cut connection: reconnect, following the name.
                        conn = None;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        AckedWriter {
            access,
            resolver,
            cluster: cluster.to_string(),
            table: table.to_string(),
            stop,
            acked,
            task,
        }
    }

    /// How many inserts were acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Wait until `n` more inserts than now are acknowledged (writes flow through the name);
    /// fails after `timeout` with the count reached.
    pub async fn wait_for_acked(&self, n: usize, timeout: Duration) {
        let target = self.acked() + n;
        crate::wait::eventually(
            timeout,
            &format!("{n} more acknowledged inserts into app.{}", self.table),
            || async { crate::wait::holds(self.acked() >= target, self.acked()) },
        )
        .await;
    }

    /// Stop, then check every acknowledged insert is on the writer the cluster name resolves
    /// to now; gives how many there were.
    pub async fn stop_and_audit(self, _lab: &Lab) -> usize {
        self.stop_and_audit_access().await
    }

    /// [`AckedWriter::stop_and_audit`] with the access the writer was started with.
    pub async fn stop_and_audit_access(self) -> usize {
        let (acked, lost) = self.stop_and_lost_access().await;
        assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
        acked
    }

    /// Stop; gives how many inserts were acknowledged and which of them are missing on the
    /// writer the cluster name resolves to now (for scenarios where a loss is expected and
    /// must be reported exactly).
    pub async fn stop_and_lost(self, _lab: &Lab) -> (usize, Vec<u64>) {
        self.stop_and_lost_access().await
    }

    /// [`AckedWriter::stop_and_lost`] with the access the writer was started with.
    pub async fn stop_and_lost_access(self) -> (usize, Vec<u64>) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        let acked = self.acked.lock().unwrap().clone();
        let mut w = admin_with(&self.access, &*self.resolver, &self.cluster).await;
        let rows = w
            .query_rows(&format!("SELECT id FROM app.{}", self.table))
            .await
            .unwrap();
        let have: BTreeSet<u64> = rows
            .iter()
            .filter_map(|r| r[0].1.as_deref().and_then(|v| v.parse().ok()))
            .collect();
        let lost: Vec<u64> = acked.difference(&have).copied().collect();
        w.close().await;
        (acked.len(), lost)
    }
}
