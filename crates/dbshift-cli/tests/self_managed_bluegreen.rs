//! Blue/green on a self-managed fleet: green is a cluster the operator built, its writer
//! replicating from blue's, named with blue in the fleet file's `[[deployment]]`. A lab of a
//! writer and three replicas is driven only through a fleet file: blue is the writer and one
//! replica, green the second replica (its writer) with the third re-pointed under it.
//! `bluegreen status` shows both sides, `verify` finds them equal, `switchover` makes green
//! serve under acknowledged writes that follow blue's name (0 lost, never two writers),
//! blue's writer then replicates from green's (reverse replication), `rollback` brings blue
//! back, and `cleanup` only detaches green (its writer forgets its source; nothing deleted).
//! Green is first down (its servers stopped): `inventory` shows blue alone, `bluegreen create`
//! without a `provision_green` command is refused with the key to set, then with one (a
//! command that starts green's servers) builds it and waits until it replicates.
//!
//! Run: `cargo test -p dbshift-cli --test self_managed_bluegreen` (needs MariaDB).
#![cfg(feature = "self-managed")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use common::{json, text};
use dbshift_db::dialect::{SourceSpec, SourceStart, SslSpec};
use dbshift_db::server::{ConnectOptions, TlsOptions};
use dbshift_db::Server;
use dbshift_provider::selfmanaged::{FleetFile, SelfManaged};
use dbshift_provider::Provider;
use dbshift_testkit::{Access, AckedWriter, InvariantChecker, TestLab};

const ADMIN_PW_VAR: &str = "DBSHIFT_TEST_ADMIN_PASSWORD";

struct Fixture {
    lab: TestLab,
    /// Blue's writer, blue's replica, green's writer, green's replica.
    ports: [u16; 4],
    dir: tempfile::TempDir,
    fleet: PathBuf,
}

impl Fixture {
    fn id(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i])
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![(
            ADMIN_PW_VAR.to_string(),
            self.lab.lab().state().users.admin.password.clone(),
        )]
    }

    async fn run(&self, args: &[&str]) -> Output {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        common::fleet_run(self.dir.path(), &self.fleet, &env, args).await
    }

    fn options(&self, i: usize) -> ConnectOptions {
        let admin = &self.lab.lab().state().users.admin;
        ConnectOptions::new("127.0.0.1".to_string(), self.ports[i], admin.user.clone())
            .password(admin.password.clone())
            .tls(TlsOptions {
                ca_path: self.lab.lab().ca_bundle(),
                verify_identity: true,
            })
            .connect_timeout(Duration::from_secs(2))
    }

    /// `(read_only, source port)` of server `i`.
    async fn state(&self, i: usize) -> (bool, Option<u16>) {
        let mut s = Server::connect(&self.options(i)).await.unwrap();
        let ro = s.read_only().await.unwrap();
        let st = s.replication_status().await.unwrap();
        s.close().await;
        (ro, st.configured.then_some(st.source_port).flatten())
    }

    /// The provider on the fleet file, discovering again on every call: a client that
    /// follows blue's name.
    fn follower(&self) -> Arc<dyn Provider> {
        let env = self.env();
        let lookup = move |var: &str| env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone());
        let text = std::fs::read_to_string(&self.fleet).unwrap();
        let file = FleetFile::parse(&text, &self.fleet, self.dir.path(), &lookup).unwrap();
        Arc::new(SelfManaged::new(file).with_max_age(Duration::ZERO))
    }
}

/// The fleet file; `green_commands` (TOML lines) go under the green cluster's commands.
fn fleet_file(lab: &TestLab, dir: &Path, ports: &[u16; 4], green_commands: &str) -> PathBuf {
    let st = lab.lab().state();
    std::fs::write(
        dir.join("replication.password"),
        format!("{}\n", st.users.replication.password),
    )
    .unwrap();
    let path = dir.join("fleet.toml");
    std::fs::write(
        &path,
        format!(
            "[credentials]\n\
             admin = {{ user = {:?}, password_env = {ADMIN_PW_VAR:?} }}\n\
             replication = {{ user = {:?}, password_file = \"replication.password\" }}\n\
             [tls]\nca_file = {:?}\n\
             [[cluster]]\nname = \"orders\"\nseeds = [\"127.0.0.1:{}\"]\n\
             [[cluster]]\nname = \"orders-green\"\nseeds = [\"127.0.0.1:{}\"]\n\
             [cluster.commands]\n{green_commands}\ntimeout_seconds = 60\n\
             [[deployment]]\nname = \"orders-upgrade\"\nblue = \"orders\"\ngreen = \"orders-green\"\n",
            st.users.admin.user,
            st.users.replication.user,
            lab.lab().ca_bundle().display().to_string(),
            ports[0],
            ports[2],
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_green_cluster_switched_to_rolled_back_and_detached() {
    let lab = TestLab::start(1, 3).await;
    let st = lab.lab().state().clone();
    let writer = st.clusters[0].writer.clone();
    let mut replicas: Vec<_> = st.instances.iter().filter(|i| i.id != writer).collect();
    replicas.sort_by(|a, b| a.id.cmp(&b.id));
    let ports = [
        st.instance(&writer).unwrap().port,
        replicas[0].port,
        replicas[1].port,
        replicas[2].port,
    ];
    // Green: the third server's replica re-pointed under it, where it left off (GTID).
    let mut leaf = lab.lab().connect_admin(&replicas[2].id).await.unwrap();
    leaf.point_replica_at(&SourceSpec {
        host: "127.0.0.1".into(),
        port: ports[2],
        user: st.users.replication.user.clone(),
        password: st.users.replication.password.clone(),
        start: SourceStart::Gtid,
        ssl: Some(SslSpec {
            ca_path: Some(lab.lab().ca_bundle().display().to_string()),
            verify_server_cert: true,
        }),
        connect_retry_s: Some(1),
        heartbeat_period_ms: None,
    })
    .await
    .unwrap();
    leaf.close().await;
    // Green does not exist yet: its two servers are down until `provision_green` (here: the
    // start script of each, as an operator's tooling would build and start them, already
    // replicating from blue's writer) brings them up.
    let scripts = tempfile::tempdir().unwrap();
    let (stop, start) = common::lab_commands(&lab, scripts.path());
    for p in [ports[3], ports[2]] {
        let o = std::process::Command::new("sh")
            .arg(&stop)
            .arg(p.to_string())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }
    let dir = tempfile::tempdir().unwrap();
    let fleet = fleet_file(&lab, dir.path(), &ports, "");
    let provision = format!(
        "provision_green = \"sh {s} {} && sh {s} {}\"",
        ports[2],
        ports[3],
        s = start.display()
    );
    let f = Fixture {
        lab,
        ports,
        dir,
        fleet,
    };

    // Blue alone while green is not built; no provisioning command: refused with the key.
    let rows = json(&f.run(&["inventory", "-o", "json"]).await);
    assert_eq!(rows.as_array().unwrap().len(), 2, "blue only: {rows:#}");
    let o = f.run(&["bluegreen", "create", "--source", "orders"]).await;
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("provision_green"), "{}", text(&o));
    let o = f
        .run(&["bluegreen", "create", "--source", "orders", "--encrypt"])
        .await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    fleet_file(&f.lab, f.dir.path(), &ports, &provision);
    let o = f
        .run(&["bluegreen", "create", "--source", "orders", "-o", "json"])
        .await;
    let d = json(&o);
    assert_eq!(d["green_writer"], f.id(2), "{d:#}");
    assert_eq!(d["serving"], "blue", "{d:#}");
    // Again: it exists, nothing is run.
    let again = json(
        &f.run(&["bluegreen", "create", "--source", "orders", "-o", "json"])
            .await,
    );
    assert_eq!(again["green_writer"], f.id(2));

    let status = json(
        &f.run(&["bluegreen", "status", "orders-upgrade", "-o", "json"])
            .await,
    );
    let d = &status["deployment"];
    assert_eq!(d["serving"], "blue", "{status:#}");
    assert_eq!(d["blue_writer"], f.id(0), "{status:#}");
    assert_eq!(d["green_writer"], f.id(2), "{status:#}");
    assert_eq!(status["standby_replicating"], true, "{status:#}");
    let o = f.run(&["bluegreen", "verify", "orders-upgrade"]).await;
    assert!(o.status.success(), "verify: {}", text(&o));

    // The switch under acknowledged writes that follow blue's name.
    let checker = InvariantChecker::start((0..4).map(|i| (f.id(i), f.options(i))).collect())
        .await
        .unwrap();
    let access = Access {
        admin: st.users.admin.clone(),
        app: st.users.app.clone(),
        ca: Some(f.lab.lab().ca_bundle()),
    };
    let writes = AckedWriter::start_with(access, f.follower(), "orders", "sm_bluegreen").await;
    writes.wait_for_acked(20, Duration::from_secs(30)).await;
    let o = f
        .run(&["bluegreen", "switchover", "orders-upgrade", "--yes"])
        .await;
    assert!(o.status.success(), "switchover: {}", text(&o));
    writes.wait_for_acked(20, Duration::from_secs(30)).await;
    assert_eq!(f.state(2).await, (false, None), "green's writer serves");
    assert_eq!(
        f.state(0).await,
        (true, Some(ports[2])),
        "blue's writer replicates from green"
    );
    assert_eq!(
        f.state(1).await,
        (true, Some(ports[0])),
        "blue keeps its chain"
    );
    assert_eq!(f.state(3).await, (true, Some(ports[2])));
    let status = json(
        &f.run(&["bluegreen", "status", "orders-upgrade", "-o", "json"])
            .await,
    );
    assert_eq!(status["deployment"]["serving"], "green", "{status:#}");

    let o = f
        .run(&["bluegreen", "rollback", "orders-upgrade", "--yes"])
        .await;
    assert!(o.status.success(), "rollback: {}", text(&o));
    writes.wait_for_acked(20, Duration::from_secs(30)).await;
    let acked = writes.stop_and_audit_access().await;
    let report = checker.stop().await;
    report.assert_never_two_writers();
    assert!(acked >= 60, "{acked} writes acknowledged");
    assert_eq!(f.state(0).await, (false, None), "blue serves again");
    assert_eq!(f.state(2).await, (true, Some(ports[0])));

    // Cleanup detaches green: its writer forgets blue, nothing is stopped.
    let o = f
        .run(&["bluegreen", "cleanup", "orders-upgrade", "--yes"])
        .await;
    assert!(o.status.success(), "cleanup: {}", text(&o));
    assert_eq!(
        f.state(2).await,
        (true, None),
        "green detached, still read-only"
    );
    assert_eq!(f.state(3).await.1, Some(ports[2]), "green's replica kept");
    assert_eq!(f.state(0).await, (false, None));
    let o = f.run(&["inventory"]).await;
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("remove its [[deployment]]"),
        "says what to do: {}",
        text(&o)
    );
}
