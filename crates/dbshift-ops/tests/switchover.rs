//! The switchover core on real servers: the happy path under writes (there and back), each
//! guard made to fail for real, a long lock during the fence, the new writer stopped or killed
//! during the wait, and `kill -9` of dbshift at step boundaries followed by `resume`. Every
//! scenario ends with exactly one writable server and every acknowledged write on it.
//! Run with `make test`. Each test builds its own lab (a writer and two replicas); the tests
//! run one at a time to keep the machine's load low.

use std::time::{Duration, Instant};

use dbshift_db::Server;
use dbshift_ops::events::{Event, Observer};
use dbshift_ops::journal::{Journal, RunStatus};
use dbshift_ops::switchover::{self, Outcome, SwitchoverRequest};
use dbshift_provider::local::Lab;
use dbshift_testkit::{
    check_lab_gtid_history, eventually, holds, pid_of, signal, writable, AckedWriter,
    InvariantChecker, Relay, RelayedProvider, TestLab,
};
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

fn request(to: &str) -> SwitchoverRequest {
    SwitchoverRequest {
        cluster: "lab-1".into(),
        to: to.into(),
        max_lag_transactions: 100,
        max_lag_seconds: 5,
        timeout: Duration::from_secs(5),
        hooks: Vec::new(),
        allow_statement_binlog: false,
    }
}

async fn journal(t: &TestLab) -> Journal {
    Journal::open(&t.dir().join("journal.sqlite"))
        .await
        .unwrap()
}

async fn admin(lab: &Lab, id: &str) -> Server {
    lab.connect_admin(id).await.unwrap()
}

/// The invariant checker (read_only of every instance every 10 ms) for a scenario.
struct TwoWriterWatch(InvariantChecker);

impl TwoWriterWatch {
    async fn start(lab: &Lab) -> TwoWriterWatch {
        TwoWriterWatch(InvariantChecker::start_lab(lab).await.unwrap())
    }

    /// No instant with two writable servers, and no write in the cluster's domain by a server
    /// that was never its writer (`writers`: the server_ids that legitimately wrote).
    async fn assert_clean(self, lab: &Lab, writers: &[&str]) {
        let report = self.0.stop().await;
        report.assert_never_two_writers();
        let domain = lab.state().clusters[0].gtid_domain_id;
        let ids = writers
            .iter()
            .map(|w| lab.state().instance(w).unwrap().server_id)
            .collect();
        check_lab_gtid_history(lab, &[(domain, ids)]).await.unwrap();
    }
}

/// An observer that runs an action when an event `when` accepts is announced.
struct OnEvent {
    when: fn(&Event) -> bool,
    action: Box<dyn Fn() + Send + Sync>,
}

impl Observer for OnEvent {
    fn event(&self, event: &Event) {
        if (self.when)(event) {
            (self.action)();
        }
    }
}

fn nothing() -> OnEvent {
    OnEvent {
        when: |_| false,
        action: Box::new(|| {}),
    }
}

/// `writer` the only writable server and the one the cluster names, every other replicating
/// from it; retried until so (replicas reconnect a moment after a switch).
async fn assert_topology(lab: &Lab, writer: &str) {
    eventually(
        Duration::from_secs(20),
        &format!("{writer} the sole writer, the others replicating from it"),
        || topology(lab, writer),
    )
    .await;
}

/// What [`assert_topology`] expects, or what was seen instead.
async fn topology(lab: &Lab, writer: &str) -> Result<(), String> {
    let w = writable(lab).await;
    if w != vec![writer.to_string()] {
        return Err(format!("writable: {w:?}"));
    }
    let named = lab.fresh().unwrap().clusters[0].writer.clone();
    if named != writer {
        return Err(format!("the cluster names {named}"));
    }
    let port = lab.state().instance(writer).unwrap().port;
    for rec in &lab.state().instances {
        if rec.id == writer {
            continue;
        }
        let mut s = admin(lab, &rec.id).await;
        let st = s.replication_status().await.unwrap();
        s.close().await;
        if !st.healthy() || st.source_port != Some(port) {
            return Err(format!(
                "{} must replicate from {writer} (port {port}): {st:?}",
                rec.id
            ));
        }
    }
    Ok(())
}

#[tokio::test]
async fn switchover_there_and_back_under_writes_loses_nothing() {
    let _g = SERIAL.lock().await;
    let t = TestLab::start(1, 2).await;
    let lab = t.lab();
    let j = journal(&t).await;
    let watch = TwoWriterWatch::start(lab).await;
    let writer = AckedWriter::start(lab, "lab-1", "acked").await;
    writer.wait_for_acked(10, Duration::from_secs(20)).await;

    let params = switchover::prepare(lab, &request("lab-1-2")).await.unwrap();
    assert_eq!(params.from, "lab-1-1");
    assert_eq!(params.siblings, vec!["lab-1-3".to_string()]);
    let (run, outcome) = switchover::run(lab, &j, params, &nothing()).await.unwrap();
    let Outcome::Done(report) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(report.new_writer, "lab-1-2");
    assert!(report.write_gap_ms.is_some());
    assert_eq!(j.run(&run).await.unwrap().status, RunStatus::Done);
    assert_topology(lab, "lab-1-2").await;

    // And back: the old writer, now a replica, becomes the writer again.
    let params = switchover::prepare(lab, &request("lab-1-1")).await.unwrap();
    let (_, outcome) = switchover::run(lab, &j, params, &nothing()).await.unwrap();
    assert!(matches!(outcome, Outcome::Done(_)), "{outcome:?}");
    writer.wait_for_acked(10, Duration::from_secs(20)).await;
    let acked = writer.stop_and_audit(lab).await;
    assert!(
        acked > 20,
        "the writer made progress ({acked} acknowledged)"
    );
    watch.assert_clean(lab, &["lab-1-1", "lab-1-2"]).await;
    assert_topology(lab, "lab-1-1").await;
}

/// Run a switchover to lab-1-2 that must be refused by `guard`, and check nothing changed.
async fn assert_refused(t: &TestLab, guard: &str) {
    let lab = t.lab();
    let j = journal(t).await;
    let params = switchover::prepare(lab, &request("lab-1-2")).await.unwrap();
    let (run, outcome) = switchover::run(lab, &j, params, &nothing()).await.unwrap();
    let Outcome::Refused(report) = &outcome else {
        panic!("expected a refusal by {guard}: {outcome:?}")
    };
    assert!(
        report.failed().iter().any(|g| g.name == guard),
        "{guard} must fail: {report:?}"
    );
    assert_eq!(outcome.exit_code(), 1);
    assert_eq!(j.run(&run).await.unwrap().status, RunStatus::Failed);
    assert_eq!(writable(lab).await, vec!["lab-1-1".to_string()]);
    assert_eq!(lab.fresh().unwrap().clusters[0].writer, "lab-1-1");
}

#[tokio::test]
async fn guards_refuse_and_change_nothing() {
    let _g = SERIAL.lock().await;
    let t = TestLab::start(1, 2).await;
    let lab = t.lab();
    let mut w = admin(lab, "lab-1-1").await;
    let mut r = admin(lab, "lab-1-2").await;
    w.exec_sql("CREATE TABLE app.g (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let pos = w.gtid_binlog_pos().await.unwrap();
    r.wait_for_gtid(&pos, Duration::from_secs(10))
        .await
        .unwrap();

    // Lag: the SQL thread stopped while the writer goes on.
    r.exec_sql("STOP SLAVE SQL_THREAD").await.unwrap();
    for i in 0..150 {
        w.exec_sql(&format!("INSERT INTO app.g VALUES ({i})"))
            .await
            .unwrap();
    }
    assert_refused(&t, "lag").await;
    r.exec_sql("START SLAVE SQL_THREAD").await.unwrap();
    let pos = w.gtid_binlog_pos().await.unwrap();
    r.wait_for_gtid(&pos, Duration::from_secs(10))
        .await
        .unwrap();

    // An errant transaction on the replica (in its own domain, so replication goes on).
    r.exec_sql("SET SESSION gtid_domain_id=9").await.unwrap();
    r.exec_sql("CREATE TABLE app.errant (id INT PRIMARY KEY)")
        .await
        .unwrap();
    assert_refused(&t, "no_errant_transactions").await;

    // A duplicate-key error stops the replica's SQL thread.
    let t2 = TestLab::start(1, 1).await;
    let lab2 = t2.lab();
    let mut w2 = admin(lab2, "lab-1-1").await;
    let mut r2 = admin(lab2, "lab-1-2").await;
    w2.exec_sql("CREATE TABLE app.d (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let pos = w2.gtid_binlog_pos().await.unwrap();
    r2.wait_for_gtid(&pos, Duration::from_secs(10))
        .await
        .unwrap();
    r2.exec_sql("SET SESSION sql_log_bin=0").await.unwrap();
    r2.exec_sql("INSERT INTO app.d VALUES (1)").await.unwrap();
    w2.exec_sql("INSERT INTO app.d VALUES (1)").await.unwrap();
    let started = Instant::now();
    loop {
        let st = r2.replication_status().await.unwrap();
        if st.last_sql_error.is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no duplicate-key error: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_refused(&t2, "replication_running").await;
    drop(t2);

    // A routine with a privileged definer can write through read_only.
    w.exec_sql(
        "CREATE DEFINER='dbshift_admin'@'127.0.0.1' PROCEDURE app.sneaky() \
         SQL SECURITY DEFINER INSERT INTO app.g VALUES (999)",
    )
    .await
    .unwrap();
    assert_refused(&t, "no_privileged_definers").await;
    w.exec_sql("DROP PROCEDURE app.sneaky").await.unwrap();

    // An open XA transaction on the old writer.
    let mut xa = admin(lab, "lab-1-1").await;
    xa.exec_sql("XA START 'x1'").await.unwrap();
    xa.exec_sql("INSERT INTO app.g VALUES (1000)")
        .await
        .unwrap();
    xa.exec_sql("XA END 'x1'").await.unwrap();
    xa.exec_sql("XA PREPARE 'x1'").await.unwrap();
    assert_refused(&t, "no_prepared_xa").await;
    xa.exec_sql("XA ROLLBACK 'x1'").await.unwrap();

    // A replication filter.
    r.exec_sql("STOP SLAVE").await.unwrap();
    r.exec_sql("SET GLOBAL replicate_do_db='app'")
        .await
        .unwrap();
    r.exec_sql("START SLAVE").await.unwrap();
    assert_refused(&t, "no_replication_filters").await;
    w.close().await;
    r.close().await;
}

#[tokio::test]
async fn a_lock_or_long_write_through_the_fence_rolls_back_within_its_bound() {
    let _g = SERIAL.lock().await;
    let t = TestLab::start(1, 2).await;
    let lab = t.lab();
    let mut w = admin(lab, "lab-1-1").await;
    w.exec_sql("CREATE TABLE app.locked (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let pos = w.gtid_binlog_pos().await.unwrap();
    for r in ["lab-1-2", "lab-1-3"] {
        let mut s = admin(lab, r).await;
        s.wait_for_gtid(&pos, Duration::from_secs(10))
            .await
            .unwrap();
        s.close().await;
    }
    // An application session holding a table lock: read_only cannot be set past it.
    let mut app = Server::connect(&lab.app_options("lab-1-1").unwrap())
        .await
        .unwrap();
    app.exec_sql("LOCK TABLES app.locked WRITE").await.unwrap();
    let j = journal(&t).await;
    let params = switchover::prepare(lab, &request("lab-1-2")).await.unwrap();
    let started = Instant::now();
    let (run, outcome) = switchover::run(lab, &j, params, &nothing()).await.unwrap();
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the fence must give up within its bound"
    );
    assert_eq!(j.run(&run).await.unwrap().status, RunStatus::RolledBack);
    app.exec_sql("UNLOCK TABLES").await.unwrap();
    app.exec_sql("INSERT INTO app.locked VALUES (1)")
        .await
        .unwrap();
    assert_topology(lab, "lab-1-1").await;

    // A long write statement in flight: the same bound, and the statement itself succeeds
    // once the fence has let go (it was acknowledged, so it must be on the writer).
    let mut slow = Server::connect(&lab.app_options("lab-1-1").unwrap())
        .await
        .unwrap();
    let long = tokio::spawn(async move {
        let r = slow
            .exec_sql("INSERT INTO app.locked SELECT 2 FROM DUAL WHERE SLEEP(6) = 0")
            .await;
        slow.close().await;
        r
    });
    // The fence must meet the statement running on the server.
    eventually(
        Duration::from_secs(10),
        "the long write running",
        || async {
            let mut s = admin(lab, "lab-1-1").await;
            let n = s
                .query_scalar(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                 WHERE INFO LIKE 'INSERT INTO app.locked SELECT 2 %'",
                )
                .await
                .unwrap();
            s.close().await;
            holds(n.as_deref() == Some("1"), n)
        },
    )
    .await;
    let params = switchover::prepare(lab, &request("lab-1-2")).await.unwrap();
    let started = Instant::now();
    let (_, outcome) = switchover::run(lab, &j, params, &nothing()).await.unwrap();
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    long.await
        .unwrap()
        .expect("the long write completes once the fence gave up");
    assert_eq!(
        w.query_scalar("SELECT COUNT(*) FROM app.locked WHERE id = 2")
            .await
            .unwrap()
            .as_deref(),
        Some("1")
    );
    assert_topology(lab, "lab-1-1").await;

    // An open transaction when the fence comes: its COMMIT is refused (never acknowledged),
    // the switchover goes through, and the row is nowhere.
    app.exec_sql("BEGIN").await.unwrap();
    app.exec_sql("INSERT INTO app.locked VALUES (3)")
        .await
        .unwrap();
    let params = switchover::prepare(lab, &request("lab-1-2")).await.unwrap();
    let (_, outcome) = switchover::run(lab, &j, params, &nothing()).await.unwrap();
    assert!(matches!(outcome, Outcome::Done(_)), "{outcome:?}");
    assert!(
        app.exec_sql("COMMIT").await.is_err(),
        "a commit after the fence must fail"
    );
    let mut new = admin(lab, "lab-1-2").await;
    assert_eq!(
        new.query_scalar("SELECT COUNT(*) FROM app.locked WHERE id = 3")
            .await
            .unwrap()
            .as_deref(),
        Some("0")
    );
    new.close().await;
    assert_topology(lab, "lab-1-2").await;
    app.close().await;
    w.close().await;
}

#[tokio::test]
async fn new_writer_stopped_or_killed_during_the_wait_rolls_back() {
    let _g = SERIAL.lock().await;
    let t = TestLab::start(1, 2).await;
    let lab = t.lab();
    let j = journal(&t).await;
    let watch = TwoWriterWatch::start(lab).await;

    // SIGSTOP: the wait runs out, the old writer is put back.
    let pid = pid_of(lab, "lab-1-2");
    let stop = OnEvent {
        when: |e| e.started() == Some("wait"),
        action: Box::new(move || signal(pid, libc::SIGSTOP)),
    };
    let mut req = request("lab-1-2");
    req.timeout = Duration::from_secs(2);
    let params = switchover::prepare(lab, &req).await.unwrap();
    let (_, outcome) = switchover::run(lab, &j, params, &stop).await.unwrap();
    signal(pid, libc::SIGCONT);
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome:?}");
    assert_eq!(writable(lab).await, vec!["lab-1-1".to_string()]);

    // SIGKILL: the same, and the lab brings the replica back.
    let pid = pid_of(lab, "lab-1-2");
    let kill = OnEvent {
        when: |e| e.started() == Some("wait"),
        action: Box::new(move || signal(pid, libc::SIGKILL)),
    };
    let params = switchover::prepare(lab, &req).await.unwrap();
    let (_, outcome) = switchover::run(lab, &j, params, &kill).await.unwrap();
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome:?}");
    let (_, _) = Lab::up(
        t.dir(),
        &dbshift_provider::local::UpOptions {
            die_with_parent: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    lab.wait_replicating("lab-1-2", Duration::from_secs(20))
        .await
        .unwrap();
    watch.assert_clean(lab, &["lab-1-1"]).await;
    assert_topology(lab, "lab-1-1").await;
}

#[tokio::test]
async fn losing_the_old_writer_right_after_the_fence_needs_a_human_then_resumes() {
    let _g = SERIAL.lock().await;
    let t = TestLab::start(1, 2).await;
    let lab = t.lab();
    let j = journal(&t).await;
    let old_port = lab.state().instance("lab-1-1").unwrap().port;
    let relay = Relay::start(([127, 0, 0, 1], old_port).into())
        .await
        .unwrap();
    let control = relay.control();
    let provider = RelayedProvider::new(lab, "lab-1-1", relay.addr());
    let watch = TwoWriterWatch::start(lab).await;
    let writer = AckedWriter::start(lab, "lab-1", "acked").await;
    writer.wait_for_acked(10, Duration::from_secs(20)).await;

    // Right after the fence, dbshift loses the old writer: its connections cut, new ones refused.
    let cut = OnEvent {
        when: |e| e.ended() == Some("fence"),
        action: {
            let c = control.clone();
            Box::new(move || {
                c.refuse_new(true);
                c.cut_all();
            })
        },
    };
    let params = switchover::prepare(&provider, &request("lab-1-2"))
        .await
        .unwrap();
    let (run, outcome) = switchover::run(&provider, &j, params, &cut).await.unwrap();
    let Outcome::NeedsHuman { reason } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        reason.contains("fenced") && reason.contains("nothing was promoted"),
        "{reason}"
    );
    assert_eq!(outcome.exit_code(), 3);
    // Fenced and nothing promoted: no writer at all, never two.
    assert!(writable(lab).await.is_empty());
    assert_eq!(lab.fresh().unwrap().clusters[0].writer, "lab-1-1");

    // The network heals; resume finishes the switchover.
    control.pass();
    let outcome = switchover::resume(&provider, &j, &run, &nothing())
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Done(_)), "{outcome:?}");
    assert_eq!(j.run(&run).await.unwrap().status, RunStatus::Done);
    writer.wait_for_acked(10, Duration::from_secs(20)).await;
    writer.stop_and_audit(lab).await;
    watch.assert_clean(lab, &["lab-1-1", "lab-1-2"]).await;
    assert_topology(lab, "lab-1-2").await;
}

#[tokio::test]
async fn rds_mode_switchover_without_super_there_and_back() {
    let _g = SERIAL.lock().await;
    let t = TestLab::start_rds(1, 2).await;
    let lab = t.lab();
    let j = journal(&t).await;
    // dbshift's user really has no SUPER here: the RDS path is the one under test.
    let a = admin(lab, "lab-1-1").await;
    assert!(a.flavor().needs_rds_procedures(), "{}", a.flavor());
    a.close().await;
    let watch = TwoWriterWatch::start(lab).await;
    let writer = AckedWriter::start(lab, "lab-1", "acked").await;
    writer.wait_for_acked(10, Duration::from_secs(20)).await;

    for to in ["lab-1-2", "lab-1-1"] {
        let params = switchover::prepare(lab, &request(to)).await.unwrap();
        let (run, outcome) = switchover::run(lab, &j, params, &nothing()).await.unwrap();
        assert!(matches!(outcome, Outcome::Done(_)), "to {to}: {outcome:?}");
        assert_eq!(j.run(&run).await.unwrap().status, RunStatus::Done);
        assert_topology(lab, to).await;
    }
    writer.stop_and_audit(lab).await;
    watch.assert_clean(lab, &["lab-1-1", "lab-1-2"]).await;
}

/// Issue 15, cases 1 and 3 without a second dbshift: the cluster changes under a run that has
/// fenced its old writer (a human promotes another replica by hand during the wait). The run
/// looks at the cluster before the point of no return, stops, promotes nothing and does not
/// make the old writer writable again: one writer, the human's.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_changed_under_the_run_stops_it_before_the_point_of_no_return() {
    let _g = SERIAL.lock().await;
    let t = TestLab::start(1, 2).await;
    let lab = t.lab();
    let j = journal(&t).await;
    let watch = TwoWriterWatch::start(lab).await;
    let by_hand = lab.clone();
    let on_wait = OnEvent {
        when: |e| e.started() == Some("wait"),
        action: Box::new(move || {
            let lab = by_hand.clone();
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async move {
                    let mut s = lab.connect_admin("lab-1-3").await.unwrap();
                    s.exec_sql("STOP SLAVE").await.unwrap();
                    s.exec_sql("SET GLOBAL read_only=OFF").await.unwrap();
                    s.close().await;
                })
            })
        }),
    };
    let params = switchover::prepare(lab, &request("lab-1-2")).await.unwrap();
    let (run, outcome) = switchover::run(lab, &j, params, &on_wait).await.unwrap();
    let Outcome::ClusterChanged { reason, changed } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(*changed);
    assert!(
        reason.contains("before the point of no return") && reason.contains("lab-1-3 writable"),
        "{reason}"
    );
    assert_eq!(outcome.exit_code(), 3);
    assert_eq!(j.run(&run).await.unwrap().status, RunStatus::NeedsHuman);
    assert_eq!(writable(lab).await, vec!["lab-1-3".to_string()]);
    // lab-1-2 was not promoted: still a replica of lab-1-1.
    let mut new = admin(lab, "lab-1-2").await;
    assert!(new.replication_status().await.unwrap().configured);
    new.close().await;
    assert_eq!(lab.fresh().unwrap().clusters[0].writer, "lab-1-1");
    let report = watch.0.stop().await;
    report.assert_never_two_writers();
}
