//! The local lab's CAs and the rotation primitives on real servers: what a new lab trusts and
//! presents, the trust bundle reloaded with `FLUSH LOCAL SSL` (no GTID made anywhere), a
//! certificate moved with and without a restart while replication keeps verifying the chain,
//! and an instance stopped and started. One lab, one test: each step builds on the one before.
//! Run with `make test`, or `cargo test -p dbshift-testkit --test ca` when MariaDB is installed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use dbshift_db::server::{ConnectOptions, TlsOptions};
use dbshift_db::Server;
use dbshift_provider::local::ca::{CURRENT_CA, NEXT_CA};
use dbshift_provider::local::Lab;
use dbshift_provider::{CaApply, Error, Fleet, InstanceControl, InstanceStatus};
use dbshift_testkit::{eventually, TestLab};

const PATIENCE: Duration = Duration::from_secs(30);

/// Admin connection options to `id` that trust `ca`'s certificate alone.
fn trusting(lab: &Lab, id: &str, ca: &str) -> ConnectOptions {
    lab.admin_options(id)
        .expect("the instance exists")
        .tls(TlsOptions {
            ca_path: lab.dir().join(format!("tls/{ca}.pem")),
            verify_identity: true,
        })
        .connect_timeout(Duration::from_secs(5))
}

/// Whether a client that trusts only `ca` completes a verified handshake with `id`.
async fn verifies_against(lab: &Lab, id: &str, ca: &str) -> bool {
    match Server::connect(&trusting(lab, id, ca)).await {
        Ok(s) => {
            s.close().await;
            true
        }
        Err(_) => false,
    }
}

/// Assert that `id` presents a chain to `good` and not to `bad`.
async fn assert_presents(lab: &Lab, id: &str, good: &str, bad: &str) {
    assert!(
        verifies_against(lab, id, good).await,
        "{id} must chain to {good}"
    );
    assert!(
        !verifies_against(lab, id, bad).await,
        "{id} must not chain to {bad}"
    );
}

/// The same check by OpenSSL's own client: the handshake chain, verified against one CA file.
fn openssl_verifies(lab: &Lab, id: &str, ca: &str) -> bool {
    let port = lab.state().instance(id).expect("the instance exists").port;
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-starttls", "mysql", "-verify_return_error", "-verify_ip"])
        .arg("127.0.0.1")
        .arg("-CAfile")
        .arg(lab.dir().join(format!("tls/{ca}.pem")))
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs (it is needed to check the handshake chain)");
    let text = String::from_utf8_lossy(&out.stdout);
    out.status.success() && text.contains("Verify return code: 0 (ok)")
}

async fn binlog_states(lab: &Lab) -> Vec<(String, String)> {
    let mut states = Vec::new();
    for rec in &lab.state().instances {
        let mut s = lab
            .connect_admin(&rec.id)
            .await
            .expect("the server answers");
        let state = s
            .query_scalar("SELECT @@gtid_binlog_state")
            .await
            .expect("the binlog state reads")
            .unwrap_or_default();
        s.close().await;
        states.push((rec.id.clone(), state));
    }
    states
}

async fn uptime(lab: &Lab, id: &str) -> u64 {
    let mut s = lab.connect_admin(id).await.expect("the server answers");
    let row = s
        .query_one("SHOW GLOBAL STATUS LIKE 'Uptime'")
        .await
        .expect("Uptime reads");
    s.close().await;
    row[1]
        .1
        .as_deref()
        .and_then(|v| v.parse().ok())
        .expect("Uptime is a number")
}

/// Insert row `n` on the writer and wait until the replica has it, replicating healthily
/// over a verified TLS connection.
async fn replicates(lab: &Lab, writer: &str, replica: &str, n: u32) {
    let mut w = lab.connect_admin(writer).await.expect("the writer answers");
    w.exec_sql(&format!("INSERT INTO app.ca_rows VALUES ({n})"))
        .await
        .unwrap_or_else(|e| panic!("row {n} is written: {e}"));
    w.close().await;
    let mut r = lab
        .connect_admin(replica)
        .await
        .expect("the replica answers");
    eventually!(
        PATIENCE,
        format!("row {n} on {replica}"),
        r.query_scalar(&format!("SELECT id FROM app.ca_rows WHERE id = {n}"))
            .await
            .ok()
            .flatten()
    );
    let st = r.replication_status().await.expect("the status reads");
    assert!(st.healthy(), "{st:?}");
    assert_eq!(st.ssl_verify_server_cert, Some(true));
    r.close().await;
}

fn cas(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[tokio::test]
async fn a_ca_rotation_with_and_without_restart_keeps_replication_verified() {
    let t = TestLab::start(1, 1).await;
    let lab = t.lab();
    let writer = lab.state().clusters[0].writer.clone();
    let replica = lab.state().instances[1].id.clone();
    assert_ne!(writer, replica);

    // A new lab: both CAs, certificates from the one that expires soon, only it trusted.
    let all = lab.list_cas().await.unwrap();
    let ids: Vec<&str> = all.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, [CURRENT_CA, NEXT_CA]);
    assert_eq!(all[0].not_after, "2027-08-22T00:00:00Z");
    assert_eq!(all[1].not_before, "2026-01-01T00:00:00Z");
    assert!(all.iter().all(|c| c.rotation_without_restart));
    assert!(all.iter().all(|c| c
        .pem
        .as_deref()
        .is_some_and(|p| p.starts_with("-----BEGIN CERTIFICATE-----"))));
    assert_eq!(lab.trusted_cas().await.unwrap(), [CURRENT_CA]);
    for inst in lab.list_instances().await.unwrap() {
        assert_eq!(inst.ca, CURRENT_CA, "{}", inst.id);
        assert_presents(lab, &inst.id, CURRENT_CA, NEXT_CA).await;
    }
    assert!(openssl_verifies(lab, &writer, CURRENT_CA));
    assert!(!openssl_verifies(lab, &writer, NEXT_CA));

    // Bad input changes nothing: the new CA before the bundle holds it, an empty or unknown
    // bundle, a bundle without the CA the servers present now.
    let bundle = read(&lab.ca_bundle());
    let replica_cert = lab.paths(&replica).tls().join("server.pem");
    let cert_before = read(&replica_cert);
    let err = lab
        .modify_ca(&replica, NEXT_CA, CaApply::NoRestart)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadInput(_)), "{err}");
    assert!(
        err.to_string().contains("deploy the trust bundle first"),
        "{err}"
    );
    let err = lab
        .modify_ca(&replica, "lab-ca-1999", CaApply::Restart)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unknown { .. }), "{err}");
    let err = lab
        .modify_ca("lab-9-9", NEXT_CA, CaApply::Restart)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unknown { .. }), "{err}");
    assert!(matches!(
        lab.deploy_trust(&[]).await,
        Err(Error::BadInput(_))
    ));
    assert!(matches!(
        lab.deploy_trust(&cas(&[CURRENT_CA, "lab-ca-1999"])).await,
        Err(Error::Unknown { .. })
    ));
    assert!(matches!(
        lab.deploy_trust(&cas(&[NEXT_CA])).await,
        Err(Error::BadInput(_))
    ));
    assert_eq!(read(&replica_cert), cert_before);
    assert_eq!(read(&lab.ca_bundle()), bundle);
    assert_eq!(lab.trusted_cas().await.unwrap(), [CURRENT_CA]);
    assert_eq!(
        lab.describe_instance(&replica).await.unwrap().ca,
        CURRENT_CA
    );
    assert_presents(lab, &replica, CURRENT_CA, NEXT_CA).await;

    let mut w = lab.connect_admin(&writer).await.unwrap();
    w.exec_sql("CREATE TABLE app.ca_rows (id INT PRIMARY KEY)")
        .await
        .unwrap();
    w.close().await;
    replicates(lab, &writer, &replica, 1).await;

    // Old and new trusted everywhere, reloaded without a binlog event: no GTID anywhere.
    let states = binlog_states(lab).await;
    let both = cas(&[CURRENT_CA, NEXT_CA]);
    for _ in 0..2 {
        let path = lab.deploy_trust(&both).await.unwrap();
        assert_eq!(path.as_deref(), Some(lab.ca_bundle().as_path()));
    }
    assert_eq!(lab.trusted_cas().await.unwrap(), both);
    let text = String::from_utf8(read(&lab.ca_bundle())).unwrap();
    assert_eq!(text.matches("BEGIN CERTIFICATE").count(), 2);
    assert_eq!(binlog_states(lab).await, states);
    replicates(lab, &writer, &replica, 2).await;

    // The replica moves without a restart: same process, uptime not reset, new chain.
    let pid = lab.pid(&replica).unwrap();
    let up = uptime(lab, &replica).await;
    lab.modify_ca(&replica, NEXT_CA, CaApply::NoRestart)
        .await
        .unwrap();
    assert_eq!(lab.pid(&replica).unwrap(), pid);
    assert!(uptime(lab, &replica).await >= up);
    assert_presents(lab, &replica, NEXT_CA, CURRENT_CA).await;
    assert!(openssl_verifies(lab, &replica, NEXT_CA));
    assert!(!openssl_verifies(lab, &replica, CURRENT_CA));
    assert_eq!(lab.describe_instance(&replica).await.unwrap().ca, NEXT_CA);
    let states = binlog_states(lab).await;

    // The writer moves with a restart; the replica's IO thread, which verifies the source's
    // certificate, reconnects to the new chain and replicates a new write.
    let pid = lab.pid(&writer).unwrap();
    lab.modify_ca(&writer, NEXT_CA, CaApply::Restart)
        .await
        .unwrap();
    assert_ne!(lab.pid(&writer).unwrap(), pid);
    assert_presents(lab, &writer, NEXT_CA, CURRENT_CA).await;
    assert!(openssl_verifies(lab, &writer, NEXT_CA));
    let mut w = lab.connect_admin(&writer).await.unwrap();
    assert!(
        !w.read_only().await.unwrap(),
        "the writer is writable again"
    );
    w.close().await;
    assert_eq!(binlog_states(lab).await, states);
    replicates(lab, &writer, &replica, 3).await;

    // Only the new CA trusted from now on; new certificates come from it.
    lab.deploy_trust(&cas(&[NEXT_CA])).await.unwrap();
    assert_eq!(lab.trusted_cas().await.unwrap(), [NEXT_CA]);
    assert_eq!(lab.fresh().unwrap().current_ca, NEXT_CA);
    replicates(lab, &writer, &replica, 4).await;

    // Stopped and started: back read-only, and replicating over a connection made with the
    // new bundle alone.
    InstanceControl::stop_instance(lab, &replica).await.unwrap();
    let inst = lab.describe_instance(&replica).await.unwrap();
    assert_eq!(inst.status, InstanceStatus::Stopped);
    let err = lab
        .modify_ca(&replica, NEXT_CA, CaApply::NoRestart)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("stopped"), "{err}");
    let mut w = lab.connect_admin(&writer).await.unwrap();
    w.exec_sql("INSERT INTO app.ca_rows VALUES (5)")
        .await
        .unwrap();
    w.close().await;
    InstanceControl::start_instance(lab, &replica, PATIENCE)
        .await
        .unwrap();
    let pid = lab.pid(&replica).unwrap();
    assert!(pid.is_some());
    InstanceControl::start_instance(lab, &replica, PATIENCE)
        .await
        .unwrap();
    assert_eq!(
        lab.pid(&replica).unwrap(),
        pid,
        "starting a running instance is a no-op"
    );
    let mut r = lab.connect_admin(&replica).await.unwrap();
    assert!(
        r.read_only().await.unwrap(),
        "the replica comes back read-only"
    );
    eventually!(
        PATIENCE,
        "row 5, written while the replica was down",
        r.query_scalar("SELECT id FROM app.ca_rows WHERE id = 5")
            .await
            .ok()
            .flatten()
    );
    r.close().await;
    replicates(lab, &writer, &replica, 6).await;
}
