//! `watch --auto-failover --auto-rejoin` on a self-managed fleet: a semi-synchronous lab (a
//! writer, two replicas) driven only through a fleet file naming every server, with `stop`
//! and `start` commands. Under acknowledged writes that follow the cluster (0 lost, never two
//! writers), the writer is killed (`kill -9`); the watcher fences it with the stop command
//! and promotes a replica; once the old writer is started again (as the host's service
//! manager would), `--auto-rejoin` makes it a replica of the new one.
//!
//! Run: `cargo test -p dbshift-cli --test self_managed_watch` (needs MariaDB).
#![cfg(feature = "self-managed")]

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::json;

use dbshift_db::server::{ConnectOptions, TlsOptions};
use dbshift_db::Server;
use dbshift_provider::selfmanaged::{FleetFile, SelfManaged};
use dbshift_provider::Provider;
use dbshift_testkit::{Access, AckedWriter, InvariantChecker, TestLab};

const ADMIN_PW_VAR: &str = "DBSHIFT_TEST_ADMIN_PASSWORD";

/// The watcher, killed when the test ends however it ends.
struct Watcher(Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cmd(dir: &Path, fleet: &Path, pw: &str, args: &[&str]) -> std::process::Command {
    common::fleet_command(dir, fleet, &[(ADMIN_PW_VAR, pw)], args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_fails_over_a_killed_writer_and_rejoins_it() {
    let lab = TestLab::start_semi_sync(1, 2).await;
    let st = lab.lab().state().clone();
    let writer = st.clusters[0].writer.clone();
    let ports: Vec<u16> = {
        let mut v = vec![st.instance(&writer).unwrap().port];
        v.extend(
            st.instances
                .iter()
                .filter(|i| i.id != writer)
                .map(|i| i.port),
        );
        v
    };
    let ids: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let scripts = tempfile::tempdir().unwrap();
    let (stop, start) = common::lab_commands(&lab, scripts.path());
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    std::fs::write(
        dir.join("replication.password"),
        format!("{}\n", st.users.replication.password),
    )
    .unwrap();
    let fleet = dir.join("fleet.toml");
    let seeds = ids
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        &fleet,
        format!(
            "[credentials]\n\
             admin = {{ user = {:?}, password_env = {ADMIN_PW_VAR:?} }}\n\
             replication = {{ user = {:?}, password_file = \"replication.password\" }}\n\
             [tls]\nca_file = {:?}\n\
             [commands]\nstop = \"sh {} {{port}}\"\nstart = \"sh {} {{port}}\"\ntimeout_seconds = 60\n\
             [[cluster]]\nname = \"main\"\nseeds = [{seeds}]\n",
            st.users.admin.user,
            st.users.replication.user,
            lab.lab().ca_bundle().display().to_string(),
            stop.display(),
            start.display(),
        ),
    )
    .unwrap();
    let pw = st.users.admin.password.clone();
    let ca = lab.lab().ca_bundle();
    let options = |p: u16| {
        ConnectOptions::new("127.0.0.1".to_string(), p, st.users.admin.user.clone())
            .password(pw.clone())
            .tls(TlsOptions {
                ca_path: ca.clone(),
                verify_identity: true,
            })
            .connect_timeout(Duration::from_secs(1))
    };

    let follower: Arc<dyn Provider> = {
        let pw = pw.clone();
        let lookup = move |var: &str| (var == ADMIN_PW_VAR).then(|| pw.clone());
        let text = std::fs::read_to_string(&fleet).unwrap();
        let file = FleetFile::parse(&text, &fleet, dir, &lookup).unwrap();
        Arc::new(SelfManaged::new(file).with_max_age(Duration::ZERO))
    };
    let checker = InvariantChecker::start(
        ids.iter()
            .zip(&ports)
            .map(|(id, p)| (id.clone(), options(*p)))
            .collect(),
    )
    .await
    .unwrap();
    let access = Access {
        admin: st.users.admin.clone(),
        app: st.users.app.clone(),
        ca: Some(ca.clone()),
    };
    let writes = AckedWriter::start_with(access, follower, "main", "sm_watch").await;
    writes.wait_for_acked(20, Duration::from_secs(30)).await;

    let _watcher = Watcher(
        cmd(
            dir,
            &fleet,
            &pw,
            &[
                "watch",
                "main",
                "--auto-failover",
                "--auto-rejoin",
                "--interval",
                "300ms",
            ],
        )
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("watch.out")).unwrap())
        .stderr(std::fs::File::create(dir.join("watch.err")).unwrap())
        .spawn()
        .unwrap(),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed = std::process::Command::new("sh")
        .arg(&stop)
        .arg(ports[0].to_string())
        .status()
        .unwrap();
    assert!(killed.success());

    // A new writer takes the writes, and the old one comes back as its replica.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last;
    let mut started_again = false;
    let (new_writer, rejoined) = loop {
        let o = tokio::task::spawn_blocking({
            let mut c = cmd(dir, &fleet, &pw, &["inventory", "-o", "json"]);
            move || c.output().unwrap()
        })
        .await
        .unwrap();
        last = common::text(&o);
        if o.status.success() {
            let rows = json(&o);
            let rows = rows.as_array().unwrap();
            let writer = rows
                .iter()
                .find(|r| r["role"] == "writer")
                .and_then(|r| r["id"].as_str())
                .map(str::to_string);
            let old_back = rows.iter().any(|r| {
                r["id"] == ids[0].as_str() && r["status"] == "available" && r["role"] == "reader"
            });
            if let Some(w) = writer.filter(|w| *w != ids[0]) {
                if old_back {
                    break (w, true);
                }
                // The host's service manager brings the old writer back up (in the replica
                // role, as a former writer starts); the watcher then rejoins it.
                if !started_again {
                    let up = std::process::Command::new("sh")
                        .arg(&start)
                        .arg(ports[0].to_string())
                        .status()
                        .unwrap();
                    assert!(up.success());
                    started_again = true;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no failover and rejoin within 90 s; the watcher said:\n{}\n{}\nthe last inventory: {last}",
            std::fs::read_to_string(dir.join("watch.out")).unwrap_or_default(),
            std::fs::read_to_string(dir.join("watch.err")).unwrap_or_default(),
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(rejoined);
    writes.wait_for_acked(20, Duration::from_secs(30)).await;
    let acked = writes.stop_and_audit_access().await;
    checker.stop().await.assert_never_two_writers();
    assert!(acked >= 40, "{acked} writes acknowledged");
    // The old writer replicates from the new one.
    let mut old = Server::connect(&options(ports[0])).await.unwrap();
    let status = old.replication_status().await.unwrap();
    old.close().await;
    assert_eq!(
        status.source_port.map(|p| format!("127.0.0.1:{p}")),
        Some(new_writer.clone()),
        "the old writer rejoined under {new_writer}"
    );
}
