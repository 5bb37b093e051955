//! Unplanned failover on real servers: `kill -9` of the writer of a 1+2 lab under the probe's
//! load with `watch --auto-failover` running (in process), with semi-sync (nothing acknowledged
//! lost, the old writer rejoins) and without (the gap and exactly the lost writes reported);
//! an errant transaction on the old writer reported and not rejoined; refusals. Every scenario
//! is sampled by the invariant checker: never two writable servers.
//!
//! Run with `make test` or `cargo test -p dbshift-ops --test failover`; needs MariaDB. Each
//! test builds its own lab; they run one at a time to keep the machine's load low.

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use dbshift_db::Server;
use dbshift_ops::failover::{self, FailoverError, FailoverOutcome, FailoverRequest};
use dbshift_ops::journal::Journal;
use dbshift_ops::rejoin::{self, RejoinOutcome};
use dbshift_ops::switchover::{LogObserver, Outcome};
use dbshift_ops::watch::{self, WatchEvent, WatchOptions, WatchSink};
use dbshift_probe::{Probe, ProbeConfig, ProbeHandle, TargetResolver};
use dbshift_provider::local::Lab;
use dbshift_provider::{BlueGreen, Certificates, Fleet, InstanceControl, Provider, Redirect};
use dbshift_testkit::{check_lab_gtid_history, eventually, tied, InvariantChecker, TestLab};
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

async fn journal(t: &TestLab) -> Journal {
    Journal::open(&t.dir().join("journal.sqlite"))
        .await
        .unwrap()
}

async fn admin(lab: &Lab, id: &str) -> Server {
    lab.connect_admin(id).await.unwrap()
}

fn kill_9(lab: &Lab, id: &str) {
    let pid = lab.pid(id).unwrap().expect("the writer runs");
    // SAFETY: kill(2) on the PID of a server this test started.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
}

async fn start_probe(lab: &Lab, dir: &std::path::Path) -> ProbeHandle {
    let provider: Arc<dyn Provider> = Arc::new(lab.clone());
    let config = ProbeConfig {
        rate: 100.0,
        report_dir: Some(dir.to_path_buf()),
        // The rows stay, so a test can compare the old writer's with the new one's.
        keep_rows: true,
        ..ProbeConfig::default()
    };
    let probe = Probe::start(config, TargetResolver::provider(provider, "lab-1"))
        .await
        .unwrap();
    let target = probe.progress().writes_ok + 50;
    eventually!(
        Duration::from_secs(20),
        "50 acknowledged probe writes",
        (probe.progress().writes_ok >= target).then_some(())
    );
    probe
}

/// Collects what the watcher saw.
#[derive(Default, Clone)]
struct Collect(Arc<StdMutex<Vec<WatchEvent>>>);

impl WatchSink for Collect {
    fn saw(&self, event: &WatchEvent) {
        eprintln!("watch: {}", serde_json::to_string(event).unwrap());
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Collect {
    fn events(&self) -> Vec<WatchEvent> {
        self.0.lock().unwrap().clone()
    }
}

/// The source server_id a replica's IO thread names, once connected.
async fn source_of(lab: &Lab, id: &str) -> Option<u32> {
    let mut s = admin(lab, id).await;
    let st = s.replication_status().await.unwrap();
    s.close().await;
    st.healthy().then_some(st.source_server_id).flatten()
}

/// Kill -9 the writer under the probe with the watcher failing over; gives the failover's
/// report, the probe's summary, and the lab's tied handle. With `cut_replication_first`, the
/// replicas' IO threads are stopped a moment before the kill, so that acknowledged writes
/// reach no replica (asynchronous replication loses them).
async fn kill_writer_under_watch(
    t: &TestLab,
    cut_replication_first: bool,
) -> (failover::FailoverReport, dbshift_probe::Summary, Lab) {
    let lab = tied(t.lab());
    let j = journal(t).await;
    let invariants = InvariantChecker::start_lab(&lab).await.unwrap();
    let probe_dir = t.dir().join("probe");
    let probe = start_probe(&lab, &probe_dir).await;

    let mut opts = WatchOptions::new("lab-1");
    opts.interval = Duration::from_millis(200);
    opts.auto_failover = true;
    opts.block = Duration::from_secs(600);
    let sink = Collect::default();
    let (stop, rx) = tokio::sync::watch::channel(false);
    // The watcher runs in this task, next to the scenario that kills the writer and then
    // stops it.
    let watcher = watch::watch(&lab, &j, &opts, &sink, rx);
    let scenario = async {
        eventually!(
            Duration::from_secs(10),
            "the watcher started",
            sink.events()
                .iter()
                .any(|e| matches!(e, WatchEvent::Started { .. }))
                .then_some(())
        );
        if cut_replication_first {
            for r in ["lab-1-2", "lab-1-3"] {
                let mut s = admin(&lab, r).await;
                s.exec_sql("STOP SLAVE IO_THREAD").await.unwrap();
                s.close().await;
            }
            let more = probe.progress().writes_ok + 30;
            eventually!(
                Duration::from_secs(20),
                "writes no replica receives",
                (probe.progress().writes_ok >= more).then_some(())
            );
        }
        kill_9(&lab, "lab-1-1");
        eventually!(
            Duration::from_secs(30),
            "the watcher failed over",
            sink.events()
                .iter()
                .any(|e| matches!(
                    e,
                    WatchEvent::FailoverDone { .. } | WatchEvent::FailoverFailed { .. }
                ))
                .then_some(())
        );
        // More dead looks at the same (stopped) old writer must not fail over again.
        tokio::time::sleep(Duration::from_millis(600)).await;
        stop.send(true).unwrap();
    };
    let (done, ()) = tokio::join!(watcher, scenario);
    let done = done.unwrap();
    assert_eq!(done.len(), 1, "exactly one failover: {:?}", sink.events());
    let FailoverOutcome::Unplanned(report) = done[0].clone() else {
        panic!("not an unplanned failover: {:?}", done[0]);
    };
    let more = probe.progress().writes_ok + 50;
    eventually!(
        Duration::from_secs(20),
        "probe writes on the new writer",
        (probe.progress().writes_ok >= more).then_some(())
    );
    let summary = probe.stop().await.unwrap();
    let inv = invariants.stop().await;
    inv.assert_never_two_writers();
    (report, summary, lab)
}

#[tokio::test]
async fn kill_9_with_semi_sync_loses_nothing_and_the_old_writer_rejoins() {
    let _serial = SERIAL.lock().await;
    let t = TestLab::start_semi_sync(1, 2).await;
    let mut w = admin(t.lab(), "lab-1-1").await;
    let status = w
        .query_rows("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_status'")
        .await
        .unwrap();
    assert_eq!(
        status[0][1].1.as_deref(),
        Some("ON"),
        "semi-sync is not active"
    );
    w.close().await;
    let (report, summary, lab) = kill_writer_under_watch(&t, false).await;
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    eprintln!(
        "probe: longest write gap {:.0} ms, lost {:?}",
        summary.max_write_gap_ms, summary.lost_writes
    );
    assert_eq!(report.old_writer, "lab-1-1");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let new = report.new_writer.clone();
    let other = if new == "lab-1-2" {
        "lab-1-3"
    } else {
        "lab-1-2"
    };
    assert_eq!(report.repointed, vec![other.to_string()]);
    assert_eq!(lab.fresh().unwrap().clusters[0].writer, new);
    let new_id = lab.state().instance(&new).unwrap().server_id;
    assert_eq!(source_of(&lab, other).await, Some(new_id));
    assert!(summary.max_write_gap_ms > 0.0);
    assert!(
        summary.lost_writes.is_empty(),
        "semi-sync lost acknowledged writes: {:?}",
        summary.lost_writes
    );

    // The old writer comes back (crash recovery in the replica role) and rejoins.
    let j = journal(&t).await;
    let out = rejoin::rejoin(&lab, &j, "lab-1-1", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        matches!(&out, RejoinOutcome::Rejoined { started: true, .. }),
        "{out:?}"
    );
    assert_eq!(source_of(&lab, "lab-1-1").await, Some(new_id));
    let mut old = admin(&lab, "lab-1-1").await;
    assert!(old.read_only().await.unwrap());
    old.close().await;
    let domain = lab.state().clusters[0].gtid_domain_id;
    let ids = vec![101, lab.state().instance(&new).unwrap().server_id];
    check_lab_gtid_history(&lab, &[(domain, ids)])
        .await
        .unwrap();
}

#[tokio::test]
async fn kill_9_without_semi_sync_reports_the_gap_and_exactly_the_lost_writes() {
    let _serial = SERIAL.lock().await;
    let t = TestLab::start(1, 2).await;
    let (report, summary, lab) = kill_writer_under_watch(&t, true).await;
    eprintln!(
        "phases {:?}; probe: longest write gap {:.0} ms, lost {:?}",
        report.phases, summary.max_write_gap_ms, summary.lost_writes
    );
    assert!(report.phases.write_gap_ms > 0);
    assert!(summary.max_write_gap_ms > 0.0);
    assert!(
        !summary.lost_writes.is_empty(),
        "writes acknowledged while no replica received them must be reported lost"
    );
    // The old writer comes back: its extra transactions are errant, it is not rejoined.
    let j = journal(&t).await;
    let out = rejoin::rejoin(&lab, &j, "lab-1-1", Duration::from_secs(60))
        .await
        .unwrap();
    let RejoinOutcome::Errant { errant, .. } = &out else {
        panic!("writes were lost but the old writer rejoined: {out:?}");
    };
    assert!(!errant.is_empty());
    // Exactly: every write the probe calls lost is on the old writer and not on the new one.
    let seqs = |rows: Vec<Vec<(String, Option<String>)>>| -> std::collections::BTreeSet<u64> {
        rows.iter()
            .filter_map(|r| r[0].1.as_deref().and_then(|v| v.parse().ok()))
            .collect()
    };
    let sql = format!(
        "SELECT seq FROM {} WHERE run_id='{}'",
        dbshift_probe::PROBE_TABLE,
        summary.run_id
    );
    let mut old = admin(&lab, "lab-1-1").await;
    assert!(
        old.read_only().await.unwrap(),
        "the old writer came back writable"
    );
    assert!(!old.replication_status().await.unwrap().configured);
    let on_old = seqs(old.query_rows(&sql).await.unwrap());
    old.close().await;
    let mut new = admin(&lab, &report.new_writer).await;
    let on_new = seqs(new.query_rows(&sql).await.unwrap());
    new.close().await;
    for seq in &summary.lost_writes {
        assert!(
            on_old.contains(seq),
            "lost write {seq} is not on the old writer"
        );
        assert!(
            !on_new.contains(seq),
            "lost write {seq} is on the new writer"
        );
    }
}

#[tokio::test]
async fn an_errant_transaction_on_the_old_writer_is_reported_and_not_rejoined() {
    let _serial = SERIAL.lock().await;
    let t = TestLab::start(1, 2).await;
    let lab = tied(t.lab());
    let j = journal(&t).await;
    let invariants = InvariantChecker::start_lab(&lab).await.unwrap();
    let mut w = admin(&lab, "lab-1-1").await;
    w.exec_sql("CREATE TABLE app.errant (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let pos = w.gtid_binlog_pos().await.unwrap();
    for r in ["lab-1-2", "lab-1-3"] {
        let mut s = admin(&lab, r).await;
        s.wait_for_gtid(&pos, Duration::from_secs(10))
            .await
            .unwrap();
        s.stop_replication().await.unwrap();
        s.close().await;
    }
    // Acknowledged by the writer, received by no replica.
    w.exec_sql("INSERT INTO app.errant VALUES (1)")
        .await
        .unwrap();
    let errant_pos = w.gtid_binlog_pos().await.unwrap();
    w.close().await;
    kill_9(&lab, "lab-1-1");
    for r in ["lab-1-2", "lab-1-3"] {
        let mut s = admin(&lab, r).await;
        s.start_replication().await.unwrap();
        s.close().await;
    }
    let mut req = FailoverRequest::new("lab-1");
    req.to = Some("lab-1-3".into());
    let out = failover::run(&lab, &j, &req, &LogObserver).await.unwrap();
    let FailoverOutcome::Unplanned(report) = out else {
        panic!("{out:?}");
    };
    assert_eq!(
        report.new_writer, "lab-1-3",
        "equal replicas: --to wins the tie"
    );
    let out = rejoin::rejoin(&lab, &j, "lab-1-1", Duration::from_secs(60))
        .await
        .unwrap();
    let RejoinOutcome::Errant { errant, .. } = &out else {
        panic!("rejoined despite an errant transaction: {out:?}");
    };
    let gtid = errant_pos.iter().next().unwrap().to_string();
    assert_eq!(errant, &vec![gtid]);
    assert_eq!(out.exit_code(), 3);
    let mut old = admin(&lab, "lab-1-1").await;
    assert!(old.read_only().await.unwrap());
    assert!(!old.replication_status().await.unwrap().configured);
    // The transaction is still there for a human to see.
    let n = old
        .query_scalar("SELECT COUNT(*) FROM app.errant")
        .await
        .unwrap();
    assert_eq!(n.as_deref(), Some("1"));
    old.close().await;
    invariants.stop().await.assert_never_two_writers();
}

#[tokio::test]
async fn refusals_change_nothing_and_a_healthy_writer_gets_the_switchover() {
    let _serial = SERIAL.lock().await;
    let t = TestLab::start(1, 2).await;
    let lab = tied(t.lab());
    let j = journal(&t).await;

    // Healthy writer: the switchover core, to the most advanced replica.
    let out = failover::run(&lab, &j, &FailoverRequest::new("lab-1"), &LogObserver)
        .await
        .unwrap();
    let FailoverOutcome::Planned { outcome, .. } = &out else {
        panic!("{out:?}");
    };
    assert!(matches!(outcome, Outcome::Done(_)), "{outcome:?}");
    let writer = lab.fresh().unwrap().clusters[0].writer.clone();
    assert_ne!(writer, "lab-1-1");
    let others: Vec<String> = ["lab-1-1", "lab-1-2", "lab-1-3"]
        .iter()
        .filter(|i| **i != writer)
        .map(|i| i.to_string())
        .collect();

    // One replica lags: its replication is stopped while the writer takes writes.
    let (lagging, ahead) = (&others[0], &others[1]);
    let mut s = admin(&lab, lagging).await;
    s.stop_replication().await.unwrap();
    s.close().await;
    let mut w = admin(&lab, &writer).await;
    w.exec_sql("CREATE TABLE app.lag (id INT PRIMARY KEY)")
        .await
        .unwrap();
    w.exec_sql("INSERT INTO app.lag VALUES (1),(2)")
        .await
        .unwrap();
    let pos = w.gtid_binlog_pos().await.unwrap();
    w.close().await;
    let mut s = admin(&lab, ahead).await;
    s.wait_for_gtid(&pos, Duration::from_secs(10))
        .await
        .unwrap();
    s.close().await;
    kill_9(&lab, &writer);
    let mut s = admin(&lab, lagging).await;
    s.start_replication().await.unwrap();
    s.close().await;

    let refused = |r: Result<FailoverOutcome, FailoverError>| match r {
        Err(e) => e,
        Ok(o) => panic!("not refused: {o:?}"),
    };
    let mut req = FailoverRequest::new("lab-1");
    req.to = Some(lagging.clone());
    let e = refused(failover::run(&lab, &j, &req, &LogObserver).await);
    assert!(
        matches!(&e, FailoverError::BadInput(m) if m.contains("behind") && m.contains(ahead.as_str())),
        "{e}"
    );
    req.to = Some("lab-9-9".into());
    let e = refused(failover::run(&lab, &j, &req, &LogObserver).await);
    assert!(matches!(&e, FailoverError::BadInput(_)), "{e}");
    // Nothing changed: the name still points at the dead writer, no replica is writable.
    assert_eq!(lab.fresh().unwrap().clusters[0].writer, writer);
    for r in &others {
        let mut s = admin(&lab, r).await;
        assert!(s.read_only().await.unwrap(), "{r} became writable");
        s.close().await;
    }

    // No healthy replica: both stopped.
    for r in &others {
        lab.stop_instance(r).unwrap();
    }
    let e = refused(failover::run(&lab, &j, &FailoverRequest::new("lab-1"), &LogObserver).await);
    assert!(
        matches!(&e, FailoverError::Refused(m) if m.contains("no healthy replica")),
        "{e}"
    );
    assert_eq!(lab.fresh().unwrap().clusters[0].writer, writer);
}

#[tokio::test]
async fn replica_add_under_writes_starts_at_the_exact_position() {
    let _serial = SERIAL.lock().await;
    let t = TestLab::start(1, 1).await;
    let mut lab = tied(t.lab());
    let writer = dbshift_testkit::AckedWriter::start(&lab, "lab-1", "grow").await;
    eventually!(
        Duration::from_secs(20),
        "acknowledged writes",
        (writer.acked() >= 50).then_some(())
    );
    let added = lab.add_replicas("lab-1", 1).await.unwrap();
    assert_eq!(added.instances, vec!["lab-1-3".to_string()]);
    assert_eq!(added.snapshot_of, "lab-1-2", "taken on the healthy replica");
    lab.reload().unwrap();
    let acked = writer.stop_and_audit(&lab).await;
    assert!(acked >= 50);
    // Every row of the writer, none twice, and replication healthy: an off-by-one start
    // would have failed on a duplicate key or left a row out.
    let mut w = admin(&lab, "lab-1-1").await;
    let pos = w.gtid_binlog_pos().await.unwrap();
    let want = w
        .query_rows("SELECT COUNT(*), SUM(id) FROM app.grow")
        .await
        .unwrap();
    w.close().await;
    let mut r = admin(&lab, "lab-1-3").await;
    r.wait_for_gtid(&pos, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(r.replication_status().await.unwrap().healthy());
    assert!(r.read_only().await.unwrap());
    let rows = r
        .query_rows("SELECT COUNT(*), SUM(id) FROM app.grow")
        .await
        .unwrap();
    assert_eq!(rows, want);
    let server_ids: std::collections::BTreeSet<u32> = lab
        .fresh()
        .unwrap()
        .instances
        .iter()
        .map(|i| i.server_id)
        .collect();
    assert_eq!(server_ids.len(), 3, "fresh server_ids");
    r.close().await;
}

#[tokio::test]
async fn a_second_dead_writer_within_the_block_is_reported_not_failed_over() {
    let _serial = SERIAL.lock().await;
    let t = TestLab::start(1, 2).await;
    let lab = tied(t.lab());
    let j = journal(&t).await;
    let invariants = InvariantChecker::start_lab(&lab).await.unwrap();
    let mut opts = WatchOptions::new("lab-1");
    opts.interval = Duration::from_millis(200);
    opts.auto_failover = true;
    opts.block = Duration::from_secs(600);
    let sink = Collect::default();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let watcher = watch::watch(&lab, &j, &opts, &sink, rx);
    let has = |f: fn(&WatchEvent) -> bool| sink.events().iter().any(f);
    let scenario = async {
        eventually!(
            Duration::from_secs(10),
            "the watcher started",
            has(|e| matches!(e, WatchEvent::Started { .. })).then_some(())
        );
        kill_9(&lab, "lab-1-1");
        eventually!(
            Duration::from_secs(30),
            "the first failover",
            has(|e| matches!(e, WatchEvent::FailoverDone { .. })).then_some(())
        );
        let second = lab.fresh().unwrap().clusters[0].writer.clone();
        kill_9(&lab, &second);
        eventually!(
            Duration::from_secs(30),
            "the second dead writer blocked",
            has(|e| matches!(e, WatchEvent::Blocked { .. })).then_some(())
        );
        stop.send(true).unwrap();
        second
    };
    let (done, second) = tokio::join!(watcher, scenario);
    let done = done.unwrap();
    assert_eq!(done.len(), 1, "{:?}", sink.events());
    assert_eq!(
        lab.fresh().unwrap().clusters[0].writer,
        second,
        "no second failover"
    );
    invariants.stop().await.assert_never_two_writers();
}

#[tokio::test]
async fn watch_reports_semi_sync_falling_back_to_async_and_back() {
    let _serial = SERIAL.lock().await;
    let t = TestLab::start_semi_sync(1, 2).await;
    let lab = tied(t.lab());
    let j = journal(&t).await;
    let mut opts = WatchOptions::new("lab-1");
    opts.interval = Duration::from_millis(200);
    let sink = Collect::default();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let watcher = watch::watch(&lab, &j, &opts, &sink, rx);
    let has = |f: fn(&WatchEvent) -> bool| sink.events().iter().any(f);
    let scenario = async {
        eventually!(
            Duration::from_secs(10),
            "the watcher started",
            has(|e| matches!(e, WatchEvent::Started { .. })).then_some(())
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !has(|e| matches!(e, WatchEvent::SemiSyncFellBack { .. })),
            "semi-sync is active at first"
        );
        for r in ["lab-1-2", "lab-1-3"] {
            let mut s = admin(&lab, r).await;
            s.exec_sql("STOP SLAVE IO_THREAD").await.unwrap();
            s.close().await;
        }
        // No replica to acknowledge: the commit waits for the timeout, then goes on
        // asynchronously, silently.
        let mut w = admin(&lab, "lab-1-1").await;
        w.exec_sql("CREATE TABLE app.nobody_acks (id INT PRIMARY KEY)")
            .await
            .unwrap();
        w.close().await;
        eventually!(
            Duration::from_secs(10),
            "the fallback reported",
            has(|e| matches!(e, WatchEvent::SemiSyncFellBack { .. })).then_some(())
        );
        for r in ["lab-1-2", "lab-1-3"] {
            let mut s = admin(&lab, r).await;
            s.start_replication().await.unwrap();
            s.close().await;
        }
        let mut w = admin(&lab, "lab-1-1").await;
        w.exec_sql("INSERT INTO app.nobody_acks VALUES (1)")
            .await
            .unwrap();
        w.close().await;
        eventually!(
            Duration::from_secs(20),
            "semi-sync back",
            has(|e| matches!(e, WatchEvent::SemiSyncBack { .. })).then_some(())
        );
        stop.send(true).unwrap();
    };
    let (done, ()) = tokio::join!(watcher, scenario);
    assert!(done.unwrap().is_empty(), "no failover");
}

#[tokio::test]
async fn watch_rejoins_an_old_writer_that_comes_back() {
    let _serial = SERIAL.lock().await;
    let t = TestLab::start(1, 2).await;
    let lab = tied(t.lab());
    let j = journal(&t).await;
    let invariants = InvariantChecker::start_lab(&lab).await.unwrap();
    let mut opts = WatchOptions::new("lab-1");
    opts.interval = Duration::from_millis(200);
    opts.auto_failover = true;
    opts.auto_rejoin = true;
    let sink = Collect::default();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let watcher = watch::watch(&lab, &j, &opts, &sink, rx);
    let has = |f: fn(&WatchEvent) -> bool| sink.events().iter().any(f);
    let scenario = async {
        eventually!(
            Duration::from_secs(10),
            "the watcher started",
            has(|e| matches!(e, WatchEvent::Started { .. })).then_some(())
        );
        kill_9(&lab, "lab-1-1");
        eventually!(
            Duration::from_secs(30),
            "the failover",
            has(|e| matches!(e, WatchEvent::FailoverDone { .. })).then_some(())
        );
        // The old writer comes back (the lab starts a non-writer read-only).
        lab.start_instance("lab-1-1", Duration::from_secs(60))
            .await
            .unwrap();
        eventually!(
            Duration::from_secs(30),
            "the old writer rejoined",
            has(|e| matches!(
                e,
                WatchEvent::Rejoined { .. } | WatchEvent::RejoinRefused { .. }
            ))
            .then_some(())
        );
        stop.send(true).unwrap();
    };
    let (done, ()) = tokio::join!(watcher, scenario);
    assert_eq!(done.unwrap().len(), 1);
    assert!(
        has(|e| matches!(e, WatchEvent::Rejoined { instance, .. } if instance == "lab-1-1")),
        "{:?}",
        sink.events()
    );
    let new_id = {
        let w = lab.fresh().unwrap().clusters[0].writer.clone();
        lab.state().instance(&w).unwrap().server_id
    };
    assert_eq!(source_of(&lab, "lab-1-1").await, Some(new_id));
    invariants.stop().await.assert_never_two_writers();
}

/// The lab, with one instance reached at another address (a relay in front of it) by
/// everything that asks the provider: dbshift, the probe through the cluster name.
struct Relayed {
    lab: Lab,
    id: String,
    via: dbshift_provider::Endpoint,
}

impl Relayed {
    fn map(&self, mut i: dbshift_provider::Instance) -> dbshift_provider::Instance {
        if i.id == self.id {
            i.endpoint = self.via.clone();
        }
        i
    }
}

#[async_trait::async_trait]
impl Fleet for Relayed {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn list_clusters(&self) -> dbshift_provider::Result<Vec<dbshift_provider::Cluster>> {
        self.lab.list_clusters().await
    }

    async fn list_instances(&self) -> dbshift_provider::Result<Vec<dbshift_provider::Instance>> {
        let all = self.lab.list_instances().await?;
        Ok(all.into_iter().map(|i| self.map(i)).collect())
    }

    async fn describe_instance(
        &self,
        id: &str,
    ) -> dbshift_provider::Result<dbshift_provider::Instance> {
        Ok(self.map(self.lab.describe_instance(id).await?))
    }

    async fn resolve(&self, name: &str) -> dbshift_provider::Result<dbshift_provider::Endpoint> {
        let writer = self
            .lab
            .fresh()?
            .cluster(name)
            .map(|c| c.writer.clone())
            .unwrap_or_else(|| name.to_string());
        if writer == self.id {
            return Ok(self.via.clone());
        }
        Fleet::resolve(&self.lab, name).await
    }

    fn credentials(&self) -> dbshift_provider::Result<dbshift_provider::Credentials> {
        self.lab.credentials()
    }
}

#[async_trait::async_trait]
impl Redirect for Relayed {
    async fn set_writer(&self, cluster: &str, instance: &str) -> dbshift_provider::Result<()> {
        Redirect::set_writer(&self.lab, cluster, instance).await
    }
}

#[async_trait::async_trait]
impl InstanceControl for Relayed {
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

impl Certificates for Relayed {}

impl BlueGreen for Relayed {}

/// lab-1-1 (the writer) behind two relays: one for everything that asks the provider
/// (dbshift, clients: the returned provider names the relay as its address), one for the
/// replicas' IO threads (re-pointed to it, heartbeat period as dbshift sets it).
async fn writer_behind_relays(
    lab: &Lab,
) -> (dbshift_testkit::Relay, dbshift_testkit::Relay, Arc<Relayed>) {
    let direct = lab.describe_instance("lab-1-1").await.unwrap().endpoint;
    let upstream: std::net::SocketAddr =
        format!("{}:{}", direct.host, direct.port).parse().unwrap();
    let clients = dbshift_testkit::Relay::start(upstream).await.unwrap();
    let replication = dbshift_testkit::Relay::start(upstream).await.unwrap();
    for r in ["lab-1-2", "lab-1-3"] {
        let mut s = admin(lab, r).await;
        s.exec_sql(&format!(
            "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, \
             MASTER_HEARTBEAT_PERIOD=0.5; START SLAVE",
            replication.addr().port()
        ))
        .await
        .unwrap();
        s.close().await;
    }
    eventually!(
        Duration::from_secs(20),
        "the replicas replicate through the relay",
        (replication.connections() == 2).then_some(())
    );
    for r in ["lab-1-2", "lab-1-3"] {
        eventually!(
            Duration::from_secs(20),
            "healthy replication",
            source_of(lab, r).await
        );
    }
    let cut = Arc::new(Relayed {
        lab: lab.clone(),
        id: "lab-1-1".into(),
        via: dbshift_provider::Endpoint {
            host: clients.addr().ip().to_string(),
            port: clients.addr().port(),
        },
    });
    (clients, replication, cut)
}

/// Issue 9: a writer alive and writable but cut off from dbshift, its clients and its
/// replicas (all reach it through fault-injecting relays, switched to a black hole at once).
/// The watcher sees it unreachable and the replicas hearing nothing (no event, no heartbeat)
/// for three heartbeat periods, well before their IO threads give up; it fences the writer by
/// a provider stop, promotes and re-points. Never two writable servers; with semi-sync no
/// acknowledged write lost.
#[tokio::test]
async fn a_writer_cut_off_by_the_relay_is_detected_by_heartbeats_fenced_and_replaced() {
    let _serial = SERIAL.lock().await;
    let t = TestLab::start_semi_sync(1, 2).await;
    let lab = tied(t.lab());
    let j = journal(&t).await;
    let (clients, replication, cut) = writer_behind_relays(&lab).await;
    let invariants = InvariantChecker::start_lab(&lab).await.unwrap();
    let provider: Arc<dyn Provider> = cut.clone();
    let probe = Probe::start(
        ProbeConfig {
            rate: 100.0,
            report_dir: Some(t.dir().join("probe")),
            ..ProbeConfig::default()
        },
        TargetResolver::provider(provider, "lab-1"),
    )
    .await
    .unwrap();
    let target = probe.progress().writes_ok + 50;
    eventually!(
        Duration::from_secs(20),
        "probe writes through the relay",
        (probe.progress().writes_ok >= target).then_some(())
    );

    let mut opts = WatchOptions::new("lab-1");
    opts.interval = Duration::from_millis(200);
    opts.auto_failover = true;
    let sink = Collect::default();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let watcher = watch::watch(&*cut, &j, &opts, &sink, rx);
    let scenario = async {
        eventually!(
            Duration::from_secs(10),
            "the watcher started",
            sink.events()
                .iter()
                .any(|e| matches!(e, WatchEvent::Started { .. }))
                .then_some(())
        );
        // An idle look or two first: a healthy writer must not be taken for a silent one.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            !sink
                .events()
                .iter()
                .any(|e| matches!(e, WatchEvent::WriterUnreachable { .. })),
            "{:?}",
            sink.events()
        );
        clients.set_drop(true);
        replication.set_drop(true);
        eventually!(
            Duration::from_secs(30),
            "the watcher failed over",
            sink.events()
                .iter()
                .any(|e| matches!(
                    e,
                    WatchEvent::FailoverDone { .. } | WatchEvent::FailoverFailed { .. }
                ))
                .then_some(())
        );
        stop.send(true).unwrap();
    };
    let (done, ()) = tokio::join!(watcher, scenario);
    let done = done.unwrap();
    assert_eq!(done.len(), 1, "exactly one failover: {:?}", sink.events());
    let FailoverOutcome::Unplanned(report) = done[0].clone() else {
        panic!("not an unplanned failover: {:?}", done[0]);
    };
    let more = probe.progress().writes_ok + 50;
    eventually!(
        Duration::from_secs(20),
        "probe writes on the new writer",
        (probe.progress().writes_ok >= more).then_some(())
    );
    let summary = probe.stop().await.unwrap();
    let evidence = sink
        .events()
        .iter()
        .find_map(|e| match e {
            WatchEvent::FailoverStarted { evidence, .. } => Some(evidence.clone()),
            _ => None,
        })
        .unwrap();
    eprintln!(
        "cut writer: phases {:?}; evidence: {evidence}; probe: longest write gap {:.0} ms, lost {:?}",
        report.phases, summary.max_write_gap_ms, summary.lost_writes
    );
    assert_eq!(report.old_writer, "lab-1-1");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    // The heartbeats told, not the IO threads (they give up only after slave_net_timeout; the
    // speed itself is measured by bench/cases/failover_gap_cut.sh).
    assert!(
        evidence.contains("no event or heartbeat") && !evidence.contains("IO thread"),
        "{evidence}"
    );
    // Fenced by the provider: the old writer's process is gone, though it was never down.
    assert_eq!(lab.pid("lab-1-1").unwrap(), None);
    assert!(
        summary.lost_writes.is_empty(),
        "semi-sync lost acknowledged writes: {:?}",
        summary.lost_writes
    );
    // Back (read-only): stopped cleanly while commits waited for an acknowledgement that could
    // not come, it may hold some that no replica has; unacknowledged, they are errant.
    let out = rejoin::rejoin(&lab, &j, "lab-1-1", Duration::from_secs(60))
        .await
        .unwrap();
    eprintln!("old writer back: {out:?}");
    invariants.stop().await.assert_never_two_writers();
    let domain = lab.state().clusters[0].gtid_domain_id;
    let ids = vec![
        101,
        lab.state().instance(&report.new_writer).unwrap().server_id,
    ];
    check_lab_gtid_history(&lab, &[(domain, ids)])
        .await
        .unwrap();
}

/// No misfire: dbshift alone cut off from an idle, healthy writer (its replicas still hear
/// its heartbeats) is reported, never failed over; the replicas alone cut off (dbshift still
/// reaches it) is no dead writer either.
#[tokio::test]
async fn a_writer_cut_off_from_dbshift_alone_or_from_its_replicas_alone_is_not_failed_over() {
    let _serial = SERIAL.lock().await;
    let t = TestLab::start(1, 2).await;
    let lab = tied(t.lab());
    let j = journal(&t).await;
    let (clients, replication, cut) = writer_behind_relays(&lab).await;
    let invariants = InvariantChecker::start_lab(&lab).await.unwrap();
    let mut opts = WatchOptions::new("lab-1");
    opts.interval = Duration::from_millis(200);
    opts.auto_failover = true;
    let sink = Collect::default();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let watcher = watch::watch(&*cut, &j, &opts, &sink, rx);
    let scenario = async {
        eventually!(
            Duration::from_secs(10),
            "the watcher started",
            sink.events()
                .iter()
                .any(|e| matches!(e, WatchEvent::Started { .. }))
                .then_some(())
        );
        // dbshift cut off, the writer idle: only heartbeats reach the replicas, for longer
        // than the silence rule (1.5 s) and slave_net_timeout (4 s).
        clients.set_drop(true);
        tokio::time::sleep(Duration::from_secs(5)).await;
        clients.pass();
        clients.cut_all();
        eventually!(
            Duration::from_secs(10),
            "the writer answers again",
            sink.events()
                .iter()
                .any(|e| matches!(e, WatchEvent::WriterBack { .. }))
                .then_some(())
        );
        // The replicas cut off, dbshift not.
        replication.set_drop(true);
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.send(true).unwrap();
    };
    let (done, ()) = tokio::join!(watcher, scenario);
    let events = sink.events();
    assert!(done.unwrap().is_empty(), "{events:?}");
    assert!(
        events.iter().any(|e| matches!(
            e,
            WatchEvent::WriterUnreachable {
                replicas_agree: false,
                ..
            }
        )),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, WatchEvent::FailoverStarted { .. })),
        "{events:?}"
    );
    assert_eq!(lab.fresh().unwrap().clusters[0].writer, "lab-1-1");
    assert!(
        lab.pid("lab-1-1").unwrap().is_some(),
        "the writer was not stopped"
    );
    replication.pass();
    invariants.stop().await.assert_never_two_writers();
}

/// Issue 15: an unplanned failover cut short after its fence and its choice (as a killed
/// process leaves it) is not continued once the cluster moved on without it (a human made
/// another replica the writer): continuing would promote a second writer. The run is closed
/// and the new failover starts from the cluster as it is, which its own checks refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_failover_is_not_continued_once_the_cluster_moved_on() {
    let _serial = SERIAL.lock().await;
    let t = TestLab::start(1, 2).await;
    let lab = t.lab();
    let j = journal(&t).await;
    let run = j
        .create_run(
            "failover",
            "lab-1",
            &serde_json::json!({
                "cluster": "lab-1", "old_writer": "lab-1-1", "to": null, "timeout_ms": 30000
            }),
        )
        .await
        .unwrap();
    for step in ["detect", "fence"] {
        j.begin(&run, step).await.unwrap();
        j.end(&run, step, serde_json::json!({})).await.unwrap();
    }
    j.begin(&run, "choose").await.unwrap();
    j.end(
        &run,
        "choose",
        serde_json::json!({ "new_writer": "lab-1-2" }),
    )
    .await
    .unwrap();
    // Meanwhile, by hand: lab-1-1 read-only, lab-1-3 made the writer.
    let mut old = admin(lab, "lab-1-1").await;
    old.exec_sql("SET GLOBAL read_only=ON").await.unwrap();
    old.close().await;
    let mut other = admin(lab, "lab-1-3").await;
    other.exec_sql("STOP SLAVE").await.unwrap();
    other.exec_sql("RESET SLAVE ALL").await.unwrap();
    other.exec_sql("SET GLOBAL read_only=OFF").await.unwrap();
    other.close().await;
    let checker = InvariantChecker::start_lab(lab).await.unwrap();

    let out = failover::run(lab, &j, &FailoverRequest::new("lab-1"), &LogObserver).await;
    let closed = j.run(&run).await.unwrap();
    assert_eq!(closed.status, dbshift_ops::journal::RunStatus::Failed);
    let msg = closed.message.unwrap_or_default();
    assert!(msg.contains("lab-1-3 writable"), "{msg}");
    assert!(
        !matches!(
            out,
            Ok(FailoverOutcome::Planned {
                outcome: Outcome::Done(_),
                ..
            })
        ),
        "nothing may be promoted: {out:?}"
    );
    let mut writable = Vec::new();
    for id in ["lab-1-1", "lab-1-2", "lab-1-3"] {
        let mut s = admin(lab, id).await;
        if !s.read_only().await.unwrap() {
            writable.push(id);
        }
        s.close().await;
    }
    assert_eq!(writable, ["lab-1-3"], "the human's writer alone");
    checker.stop().await.assert_never_two_writers();
}

/// Deletes a directory when a step starts (the lock store lost under a running failover).
struct LoseLocksOn {
    label: &'static str,
    dir: std::path::PathBuf,
}

impl dbshift_ops::switchover::Observer for LoseLocksOn {
    fn event(&self, label: &str) {
        if label == self.label {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A failover whose cluster lock is lost while it runs (its lock file removed) stops before
/// its next step: the dead writer fenced, nothing promoted, no writer at all rather than a
/// possibly second one; the error says the lock was lost.
#[tokio::test]
async fn a_failover_that_loses_its_lock_stops_before_its_next_change() {
    let _serial = SERIAL.lock().await;
    let t = TestLab::start(1, 2).await;
    let lab = tied(t.lab());
    let j = journal(&t).await;
    kill_9(&lab, "lab-1-1");
    let lose = LoseLocksOn {
        label: "choose: done",
        dir: t.dir().join("locks"),
    };
    let out = failover::run(&lab, &j, &FailoverRequest::new("lab-1"), &lose).await;
    let Err(FailoverError::Lock(e)) = &out else {
        panic!("the failover must stop on its lost lock: {out:?}");
    };
    assert!(e.to_string().contains("was lost"), "{e}");
    for r in ["lab-1-2", "lab-1-3"] {
        let mut s = admin(&lab, r).await;
        assert!(s.read_only().await.unwrap(), "{r} was not promoted");
        s.close().await;
    }
}
