//! The fault suite's harness: what every fault scenario asserts, in one place, so that a
//! scenario (switchover, blue/green, CA rotation, failover) says only what it breaks and what
//! it expects of dbshift.
//!
//! A [`Scenario`] watches a lab from before the fault to after the recovery: the
//! [`InvariantChecker`] samples `read_only` of every instance every 10 ms, an [`AckedWriter`]
//! inserts through the cluster name; [`Scenario::finish`] then asserts zero two-writer
//! intervals, every acknowledged insert on the writer, and a GTID history with no write by a
//! server that was not allowed to write. [`assert_caught_up_and_equal`] is the checksum
//! invariant (replicas caught up with their source hold the same rows), and
//! [`assert_no_secret`] the secrets one (no password of the lab in a log, journal or report).
//!
//! Nothing here injects a fault or changes a server but the writer's own table: the scenario
//! does that, so that what is asserted stays independent of how it was broken.

use std::path::Path;
use std::time::Duration;

use std::net::SocketAddr;

use dbshift_provider::local::Lab;
use dbshift_provider::{BlueGreen, Certificates, Fleet, InstanceControl, Redirect};
use dbshift_provider::{Cluster, Credentials, Deployment, Endpoint, Instance, ProxyEndpoint};

use crate::invariants::{check_lab_gtid_history, InvariantChecker, InvariantReport};
use crate::writer::AckedWriter;

/// A watched fault scenario; see the module documentation.
pub struct Scenario {
    checker: InvariantChecker,
    writer: AckedWriter,
    table: String,
}

/// What a finished scenario saw.
#[derive(Debug)]
pub struct ScenarioReport {
    /// Inserts acknowledged and found on the writer.
    pub acked: usize,
    pub invariants: InvariantReport,
}

impl Scenario {
    /// Start watching every instance of `lab` (the handle's instances: open the lab again
    /// after adding some), then insert into `app.<table>` through `cluster` until
    /// [`Scenario::finish`]; returns once some inserts were acknowledged, so that the fault
    /// hits a cluster under writes.
    pub async fn start(lab: &Lab, cluster: &str, table: &str) -> Scenario {
        let checker = InvariantChecker::start_lab(lab)
            .await
            .expect("the invariant checker starts");
        let writer = AckedWriter::start(lab, cluster, table).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while writer.acked() < 20 {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer got no insert acknowledged through {cluster} within 30 s"
            );
            crate::poll_pause().await;
        }
        Scenario {
            checker,
            writer,
            table: table.to_string(),
        }
    }

    /// The table the writer inserts into (`app.<table>`).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Inserts acknowledged so far.
    pub fn acked(&self) -> usize {
        self.writer.acked()
    }

    /// Wait until `n` more inserts than now are acknowledged (the cluster takes writes again).
    pub async fn wait_for_writes(&self, n: usize, timeout: Duration) {
        let want = self.writer.acked() + n;
        let deadline = std::time::Instant::now() + timeout;
        while self.writer.acked() < want {
            assert!(
                std::time::Instant::now() < deadline,
                "no {n} more acknowledged inserts within {timeout:?} (at {})",
                self.writer.acked()
            );
            crate::poll_pause().await;
        }
    }

    /// Stop the writer and the checker, and assert the invariants: every acknowledged insert
    /// on the writer the cluster name resolves to now, never two writable instances, and no
    /// (domain, server_id) in any instance's GTID history but `allowed_writers`.
    pub async fn finish(self, lab: &Lab, allowed_writers: &[(u32, Vec<u32>)]) -> ScenarioReport {
        let acked = self.writer.stop_and_audit(lab).await;
        let invariants = self.checker.stop().await;
        invariants.assert_never_two_writers();
        check_lab_gtid_history(lab, allowed_writers)
            .await
            .unwrap_or_else(|e| panic!("GTID history: {e}"));
        ScenarioReport { acked, invariants }
    }
}

/// The (domain, server_ids) allowed to have written in `cluster`'s domain: the instances
/// `writers`, by id.
pub fn allowed_writers(lab: &Lab, cluster: &str, writers: &[&str]) -> Vec<(u32, Vec<u32>)> {
    let st = lab.state();
    let domain = st
        .clusters
        .iter()
        .find(|c| c.name == cluster)
        .unwrap_or_else(|| panic!("no cluster {cluster} in the lab"))
        .gtid_domain_id;
    let ids = writers
        .iter()
        .map(|w| {
            st.instance(w)
                .unwrap_or_else(|e| panic!("{w}: {e}"))
                .server_id
        })
        .collect();
    vec![(domain, ids)]
}

/// Wait (up to `timeout`) until every one of `replicas` has applied everything `source` has
/// written, then assert that `CHECKSUM TABLE` of each of `tables` (`schema.table`) is the
/// same on all of them. Call it with writes stopped, or on tables nobody writes any more.
pub async fn assert_caught_up_and_equal(
    lab: &Lab,
    source: &str,
    replicas: &[&str],
    tables: &[&str],
    timeout: Duration,
) {
    let mut src = lab
        .connect_admin(source)
        .await
        .unwrap_or_else(|e| panic!("{source}: {e}"));
    let pos = src
        .gtid_binlog_pos()
        .await
        .unwrap_or_else(|e| panic!("{source}: {e}"));
    let want = checksums(&mut src, tables).await;
    src.close().await;
    for r in replicas {
        let mut s = lab
            .connect_admin(r)
            .await
            .unwrap_or_else(|e| panic!("{r}: {e}"));
        if let Err(e) = s.wait_for_gtid(&pos, timeout).await {
            let st = s.replication_status().await;
            panic!("{r} did not catch up with {source} ({pos}): {e}; replication: {st:?}");
        }
        let have = checksums(&mut s, tables).await;
        s.close().await;
        assert_eq!(
            have, want,
            "{r} caught up with {source} at {pos} but its checksums differ"
        );
    }
}

async fn checksums(s: &mut dbshift_db::Server, tables: &[&str]) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for t in tables {
        let rows = s
            .query_rows(&format!("CHECKSUM TABLE {t} EXTENDED"))
            .await
            .unwrap_or_else(|e| panic!("CHECKSUM TABLE {t}: {e}"));
        let sum = rows
            .first()
            .and_then(|r| r.get(1))
            .and_then(|c| c.1.clone());
        out.push((t.to_string(), sum));
    }
    out
}

/// Every password of the lab's users (admin, replication, application).
pub fn lab_secrets(lab: &Lab) -> Vec<String> {
    let u = &lab.state().users;
    [&u.admin, &u.replication, &u.app]
        .iter()
        .map(|c| c.password.clone())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Panic if any of `secrets` appears in `bytes` (what `label` names: a log, a journal, a
/// report). Checked as raw bytes, so a binary file (the SQLite journal) is scanned too.
#[track_caller]
pub fn assert_no_secret(secrets: &[String], label: &str, bytes: &[u8]) {
    for s in secrets {
        assert!(
            !s.is_empty() && !contains(bytes, s.as_bytes()),
            "a password of the lab appears in {label}"
        );
    }
}

/// [`assert_no_secret`] on every file under `dir` (recursively); gives how many were read.
#[track_caller]
pub fn assert_no_secret_in_dir(secrets: &[String], dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                assert_no_secret(secrets, &p.display().to_string(), &bytes);
                n += 1;
            }
        }
    }
    n
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The lab as a provider, except that one instance is reached through a fault relay: what
/// dbshift does over its connections to that instance can be delayed, cut or black-holed
/// (see [`crate::Relay`]) while everyone else (the application, replication, the checker)
/// reaches it directly.
pub struct RelayedProvider {
    lab: Lab,
    instance: String,
    relay: SocketAddr,
    names_too: bool,
}

impl RelayedProvider {
    /// `lab`, with `instance` reached at `relay` (a [`crate::Relay`] in front of its port).
    pub fn new(lab: &Lab, instance: &str, relay: SocketAddr) -> RelayedProvider {
        RelayedProvider {
            lab: lab.clone(),
            instance: instance.to_string(),
            relay,
            names_too: false,
        }
    }

    /// Also resolve a cluster name whose writer is the relayed instance to the relay, so that
    /// clients connecting by name (an application, the probe) go through it as well.
    pub fn resolving_names(mut self) -> RelayedProvider {
        self.names_too = true;
        self
    }

    fn patch(&self, mut i: Instance) -> Instance {
        if i.id == self.instance {
            i.endpoint.host = self.relay.ip().to_string();
            i.endpoint.port = self.relay.port();
        }
        i
    }
}

#[async_trait::async_trait]
impl Fleet for RelayedProvider {
    fn name(&self) -> &'static str {
        "local-relayed"
    }

    async fn list_clusters(&self) -> dbshift_provider::Result<Vec<Cluster>> {
        self.lab.list_clusters().await
    }

    async fn list_instances(&self) -> dbshift_provider::Result<Vec<Instance>> {
        Ok(self
            .lab
            .list_instances()
            .await?
            .into_iter()
            .map(|i| self.patch(i))
            .collect())
    }

    async fn describe_instance(&self, id: &str) -> dbshift_provider::Result<Instance> {
        Ok(self.patch(self.lab.describe_instance(id).await?))
    }

    async fn resolve(&self, name: &str) -> dbshift_provider::Result<Endpoint> {
        if self.names_too {
            let writer = self
                .lab
                .fresh()?
                .cluster(name)
                .map(|c| c.writer.clone())
                .unwrap_or_else(|| name.to_string());
            if writer == self.instance {
                return Ok(Endpoint {
                    host: self.relay.ip().to_string(),
                    port: self.relay.port(),
                });
            }
        }
        self.lab.resolve(name).await
    }

    fn credentials(&self) -> dbshift_provider::Result<Credentials> {
        self.lab.credentials()
    }
    async fn proxies_of(&self, cluster: &str) -> dbshift_provider::Result<Vec<ProxyEndpoint>> {
        Fleet::proxies_of(&self.lab, cluster).await
    }
}

#[async_trait::async_trait]
impl Redirect for RelayedProvider {
    async fn set_writer(&self, cluster: &str, instance: &str) -> dbshift_provider::Result<()> {
        Redirect::set_writer(&self.lab, cluster, instance).await
    }
}

#[async_trait::async_trait]
impl InstanceControl for RelayedProvider {
    async fn reboot(&self, id: &str, timeout: Duration) -> dbshift_provider::Result<()> {
        self.lab.reboot(id, timeout).await
    }

    async fn set_read_only(&self, instance: &str, on: bool) -> dbshift_provider::Result<()> {
        InstanceControl::set_read_only(&self.lab, instance, on).await
    }

    async fn start_instance(
        &self,
        instance: &str,
        timeout: Duration,
    ) -> dbshift_provider::Result<()> {
        InstanceControl::start_instance(&self.lab, instance, timeout).await
    }

    async fn stop_instance(&self, instance: &str) -> dbshift_provider::Result<()> {
        InstanceControl::stop_instance(&self.lab, instance).await
    }
}

impl Certificates for RelayedProvider {}

#[async_trait::async_trait]
impl BlueGreen for RelayedProvider {
    async fn deployments(&self) -> dbshift_provider::Result<Vec<Deployment>> {
        BlueGreen::deployments(&self.lab).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_found_in_text_and_binary() {
        let secrets = vec!["s3cr3t-pw".to_string()];
        assert_no_secret(&secrets, "clean", b"nothing to see \x00\x01 here");
        let hit = std::panic::catch_unwind(|| {
            assert_no_secret(&secrets, "dirty", b"\x00\x02password=s3cr3t-pw;")
        });
        assert!(hit.is_err());
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a.txt"), "fine").unwrap();
        std::fs::write(dir.path().join("sub/b.bin"), b"\x01s3cr3t-pw").unwrap();
        let hit = std::panic::catch_unwind(|| assert_no_secret_in_dir(&secrets, dir.path()));
        assert!(hit.is_err(), "the file in the subdirectory is scanned");
        std::fs::remove_file(dir.path().join("sub/b.bin")).unwrap();
        assert_eq!(assert_no_secret_in_dir(&secrets, dir.path()), 1);
    }
}
