//! Blue/green on real servers: green built (encrypted) from a hot snapshot of a blue replica
//! under writes, its status and guards, a verify, the switch to green and back and to green
//! again through the switchover core, with events moving with the serving side, then the
//! cleanup. Never two writable servers, never a write by a server that was not serving, no
//! acknowledged write lost. Bad requests change nothing. Run with `make test`.

use std::path::PathBuf;
use std::time::Duration;

use dbshift_db::Server;
use dbshift_ops::bluegreen::{self, BlueGreenError, SwitchOptions};
use dbshift_ops::events::LogObserver;
use dbshift_ops::journal::Journal;
use dbshift_ops::switchover::Outcome;
use dbshift_provider::local::Lab;
use dbshift_provider::{BlueGreen, Fleet, GreenSpec, Side};
use dbshift_testkit::{
    admin_at, check_gtid_history, eventually, lab_targets, AckedWriter, InvariantChecker, TestLab,
};

fn spec(source: &str, name: &str) -> GreenSpec {
    GreenSpec {
        source: source.into(),
        name: name.into(),
        replicas: 1,
        encrypt: true,
        engine_binary: None,
    }
}

async fn scalar(s: &mut Server, sql: &str) -> String {
    s.query_scalar(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or_default()
}

/// The status of the event `app.tick` on an instance.
async fn event_status(lab: &Lab, id: &str) -> String {
    let mut s = lab.connect_admin(id).await.unwrap();
    let v = scalar(
        &mut s,
        "SELECT STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA='app' AND EVENT_NAME='tick'",
    )
    .await;
    s.close().await;
    v
}

async fn read_only(lab: &Lab, id: &str) -> bool {
    let mut s = lab.connect_admin(id).await.unwrap();
    let ro = s.read_only().await.unwrap();
    s.close().await;
    ro
}

async fn source_port(lab: &Lab, id: &str) -> Option<u16> {
    let mut s = lab.connect_admin(id).await.unwrap();
    let st = s.replication_status().await.unwrap();
    s.close().await;
    st.healthy().then_some(st.source_port).flatten()
}

async fn switch(lab: &Lab, journal: &Journal, name: &str, to: Side) -> Outcome {
    let d = bluegreen::find(lab, Some(name)).await.unwrap();
    let params = bluegreen::switch_params(lab, &d, to, &SwitchOptions::default())
        .await
        .unwrap();
    bluegreen::switch(lab, journal, params, to, &LogObserver)
        .await
        .unwrap()
        .1
}

fn state_text(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("lab.json")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn green_is_built_verified_switched_to_and_back_and_blue_removed() {
    let tl = TestLab::start(1, 1).await;
    let lab = tl.lab().clone();
    let dir = tl.dir().to_path_buf();

    // Bad requests change nothing.
    let before = state_text(&dir);
    for (s, want) in [
        (spec("lab-9", "g"), "unknown cluster"),
        (spec("lab-1", "bad name!"), "--name"),
        (
            GreenSpec {
                engine_binary: Some(PathBuf::from("/nonexistent/mariadbd")),
                ..spec("lab-1", "g")
            },
            "--engine-binary",
        ),
        (spec("lab-1", "lab-1-2"), "already exists"),
    ] {
        let err = bluegreen::create(&lab, &s).await.unwrap_err();
        assert!(err.to_string().contains(want), "{err}");
    }
    assert!(matches!(
        bluegreen::find(&lab, None).await,
        Err(BlueGreenError::BadInput(_))
    ));
    assert_eq!(
        state_text(&dir),
        before,
        "a refused request changed the lab"
    );

    let watch = InvariantChecker::start_lab(&lab).await.unwrap();
    let writer = AckedWriter::start(&lab, "lab-1", "acked").await;
    eventually!(
        Duration::from_secs(20),
        "the writer to get writes acknowledged",
        (writer.acked() >= 50).then_some(())
    );
    // An event on blue: enabled on its writer, replicated disabled to its replica.
    let mut w = lab.connect_admin("lab-1-1").await.unwrap();
    w.exec_sql(
        "CREATE DEFINER='app'@'127.0.0.1' EVENT app.tick ON SCHEDULE EVERY 1 HOUR STARTS NOW() + INTERVAL 1 HOUR \
         DO DELETE FROM app.acked WHERE id < 0",
    )
    .await
    .unwrap();
    w.close().await;
    assert_eq!(event_status(&lab, "lab-1-1").await, "ENABLED");

    let d = bluegreen::create(&lab, &spec("lab-1", "green"))
        .await
        .unwrap();
    assert_eq!(d.serving, Side::Blue);
    assert_eq!(
        d.snapshot_taken_on, "lab-1-2",
        "a blue replica is backed up"
    );
    assert_eq!(
        (d.blue_writer.as_str(), d.green_writer.as_str()),
        ("lab-1-1", "green-1")
    );
    let lab = Lab::open(&dir).unwrap(); // a handle that knows green's instances
    let blue_port = lab.state().instance("lab-1-1").unwrap().port;
    let green_port = lab.state().instance("green-1").unwrap().port;
    assert_eq!(source_port(&lab, "green-1").await, Some(blue_port));
    assert_eq!(source_port(&lab, "green-2").await, Some(green_port));
    assert!(read_only(&lab, "green-1").await && read_only(&lab, "green-2").await);
    let err = bluegreen::create(&lab, &spec("lab-1", "again"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already the blue side"), "{err}");
    assert_eq!(event_status(&lab, "green-1").await, "SLAVESIDE_DISABLED");

    // Encrypted at rest: the inventory says so, and so does every tablespace.
    let rows = dbshift_ops::inventory::inventory(&lab).await.unwrap();
    for r in rows.iter().filter(|r| r.cluster == "green") {
        assert!(r.encrypted, "{} must show encrypted", r.id);
    }
    let mut g = lab.connect_admin("green-1").await.unwrap();
    eventually!(
        Duration::from_secs(60),
        "every tablespace of green to be encrypted",
        (scalar(
            &mut g,
            "SELECT SUM(ENCRYPTION_SCHEME=0) FROM information_schema.INNODB_TABLESPACES_ENCRYPTION"
        )
        .await
            == "0")
            .then_some(())
    );
    g.close().await;

    // Status: both sides, the standby replicating (caught up after the restore), the guards
    // of the next switch passing.
    let st = eventually!(Duration::from_secs(60), "green to catch up with blue", {
        let st = bluegreen::status(&lab, &d).await.unwrap();
        st.standby_lag_transactions
            .is_some_and(|n| n < 20)
            .then_some(st)
    });
    assert!(st.standby_replicating, "{st:?}");
    assert_eq!(st.blue.instances.len(), 2);
    assert_eq!(st.green.instances.len(), 2);
    assert!(st.guards.as_ref().is_some_and(|g| g.passed()), "{st:?}");

    // Verify under the running writes.
    let report = bluegreen::verify(&lab, &d, &Default::default())
        .await
        .unwrap();
    assert!(report.equal, "{report:?}");
    assert!(report.rows_blue > 0 && report.rows_blue == report.rows_green);

    // Switch to green: blue's name follows, blue's writer replicates from green, blue's
    // replica still from blue's writer.
    let journal = Journal::open(&dir.join("journal.sqlite")).await.unwrap();
    let out = switch(&lab, &journal, "green", Side::Green).await;
    assert!(matches!(out, Outcome::Done(_)), "{out:?}");
    assert_eq!(lab.resolve("lab-1").await.unwrap().port, green_port);
    assert!(!read_only(&lab, "green-1").await);
    assert!(read_only(&lab, "lab-1-1").await);
    assert_eq!(source_port(&lab, "lab-1-1").await, Some(green_port));
    assert_eq!(source_port(&lab, "lab-1-2").await, Some(blue_port));
    assert_eq!(source_port(&lab, "green-2").await, Some(green_port));
    // Events serve with the writer.
    assert_eq!(event_status(&lab, "green-1").await, "ENABLED");
    assert_eq!(event_status(&lab, "lab-1-1").await, "SLAVESIDE_DISABLED");
    let err = bluegreen::switch_params(
        &lab,
        &bluegreen::find(&lab, None).await.unwrap(),
        Side::Green,
        &SwitchOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("already serves"), "{err}");

    // A restart keeps the roles: the serving writer comes back writable, blue's read-only.
    lab.restart("green-1", Duration::from_secs(60))
        .await
        .unwrap();
    lab.restart("lab-1-1", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(!read_only(&lab, "green-1").await);
    assert!(read_only(&lab, "lab-1-1").await);

    // Back to blue over the reverse replication, and to green once more.
    let out = switch(&lab, &journal, "green", Side::Blue).await;
    assert!(matches!(out, Outcome::Done(_)), "{out:?}");
    assert_eq!(lab.resolve("lab-1").await.unwrap().port, blue_port);
    assert_eq!(source_port(&lab, "green-1").await, Some(blue_port));
    let out = switch(&lab, &journal, "green", Side::Green).await;
    assert!(matches!(out, Outcome::Done(_)), "{out:?}");

    let acked = writer.stop_and_audit(&lab).await;
    assert!(acked > 50);
    let report = watch.stop().await;
    report.assert_never_two_writers();
    // Only blue's writer and green's writer ever wrote in blue's domain, on every server.
    let domain = lab.state().clusters[0].gtid_domain_id;
    let ids = vec![
        lab.state().instance("lab-1-1").unwrap().server_id,
        lab.state().instance("green-1").unwrap().server_id,
    ];
    check_gtid_history(&lab_targets(&lab), &[(domain, ids)])
        .await
        .unwrap();
    let a = admin_at(&lab, "lab-1").await;
    assert_eq!(
        a.server_id(),
        lab.state().instance("green-1").unwrap().server_id
    );
    a.close().await;

    // Cleanup removes blue; green takes blue's name.
    let removed = bluegreen::cleanup(
        &lab,
        Some(&journal),
        &bluegreen::find(&lab, None).await.unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(removed, vec!["lab-1-1".to_string(), "lab-1-2".to_string()]);
    let after = Lab::open(&dir).unwrap();
    let clusters = after.list_clusters().await.unwrap();
    assert_eq!(clusters.len(), 1);
    assert_eq!(clusters[0].name, "lab-1");
    assert_eq!(clusters[0].writer, "green-1");
    assert!(after.deployments().await.unwrap().is_empty());
    assert!(!dir.join("lab-1-1").exists());
    assert_eq!(after.resolve("lab-1").await.unwrap().port, green_port);
    journal.close().await;
}
