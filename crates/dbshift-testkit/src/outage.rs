//! Servers taken away the ways a failover or a switchover meets them: killed (`kill -9`), hung
//! (`SIGSTOP`, then `SIGCONT`), or cut off behind fault-injecting relays; and what a scenario
//! reads afterwards (which servers are writable). One copy of each set-up for every test that
//! breaks a lab's server.
//!
//! Only the lab's own servers are signalled, by the PID the lab recorded; nothing here
//! restarts a server or repairs replication: the scenario under test does that.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dbshift_provider::local::Lab;
use dbshift_provider::Fleet;

use crate::faults::RelayedProvider;
use crate::relay::Relay;

/// The PID of a running lab server; panics when it does not run.
pub fn pid_of(lab: &Lab, id: &str) -> u32 {
    lab.pid(id)
        .unwrap_or_else(|e| panic!("{id}: {e}"))
        .unwrap_or_else(|| panic!("{id} runs"))
}

/// Send `sig` (SIGSTOP, SIGCONT, SIGKILL) to a server process this test's lab started.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on the PID of a server this test's lab started.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// `kill -9` of a lab server: no shutdown, no last word to its replicas or clients.
pub fn kill_9(lab: &Lab, id: &str) {
    signal(pid_of(lab, id), libc::SIGKILL);
}

/// The instances whose `read_only` is off, of those that answer.
pub async fn writable(lab: &Lab) -> Vec<String> {
    let mut out = Vec::new();
    for rec in &lab.state().instances {
        if let Ok(mut s) = lab.connect_admin(&rec.id).await {
            let ro = s
                .read_only()
                .await
                .unwrap_or_else(|e| panic!("{}: read_only: {e}", rec.id));
            if !ro {
                out.push(rec.id.clone());
            }
            s.close().await;
        }
    }
    out
}

/// A writer cut off by relays: see [`writer_behind_relays`].
pub struct CutOff {
    /// Everything that asks the provider (dbshift, clients by the cluster name) reaches the
    /// writer through this relay.
    pub clients: Relay,
    /// The replicas' IO threads reach the writer through this one.
    pub replication: Relay,
    /// The lab as a provider, with the writer (and names it writes for) at `clients`.
    pub provider: Arc<RelayedProvider>,
}

/// Put `writer` behind two relays: one for everything that asks the provider (the returned
/// provider names the relay as the writer's address, and resolves the writer's cluster name
/// to it), one for `replicas`' IO threads, re-pointed to it with the heartbeat period dbshift
/// sets (0.5 s). Returns once every replica replicates through the relay.
pub async fn writer_behind_relays(lab: &Lab, writer: &str, replicas: &[&str]) -> CutOff {
    let direct = lab
        .describe_instance(writer)
        .await
        .unwrap_or_else(|e| panic!("{writer}: {e}"))
        .endpoint;
    let upstream: SocketAddr = format!("{}:{}", direct.host, direct.port)
        .parse()
        .expect("the lab's endpoints are IP addresses");
    let clients = Relay::start(upstream).await.expect("a relay starts");
    let replication = Relay::start(upstream).await.expect("a relay starts");
    for r in replicas {
        let mut s = lab
            .connect_admin(r)
            .await
            .unwrap_or_else(|e| panic!("{r}: {e}"));
        s.exec_sql(&format!(
            "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, \
             MASTER_HEARTBEAT_PERIOD=0.5; START SLAVE",
            replication.addr().port()
        ))
        .await
        .unwrap_or_else(|e| panic!("{r}: re-pointing at the relay: {e}"));
        s.close().await;
    }
    crate::wait::eventually(
        Duration::from_secs(20),
        "the replicas replicate through the relay",
        || async {
            crate::wait::holds(
                replication.connections() == replicas.len(),
                replication.connections(),
            )
        },
    )
    .await;
    for r in replicas {
        crate::wait::eventually(
            Duration::from_secs(20),
            &format!("{r}: healthy replication"),
            || async {
                let mut s = lab
                    .connect_admin(r)
                    .await
                    .unwrap_or_else(|e| panic!("{r}: {e}"));
                let st = s.replication_status().await;
                s.close().await;
                let st = st.unwrap_or_else(|e| panic!("{r}: {e}"));
                crate::wait::holds(st.healthy() && st.source_server_id.is_some(), st)
            },
        )
        .await;
    }
    let provider = Arc::new(RelayedProvider::new(lab, writer, clients.addr()).resolving_names());
    CutOff {
        clients,
        replication,
        provider,
    }
}
