//! The invariant checker on a real lab (one writer, two replicas, shared by this binary): an
//! untouched lab has one writer and a clean GTID history; a replica made writable for a moment
//! shows as two writers (the checker can fail); an errant write on a replica shows in the
//! history check; a broken or refused connection is reconnected and recorded. Tests that
//! change the lab run one at a time and put it back as they found it. Run with `make test`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dbshift_db::mariadb::Gtid;
use dbshift_db::quote_literal;
use dbshift_db::server::ConnectOptions;
use dbshift_provider::local::Lab;
use dbshift_testkit::invariants::{gtid_history_violations, CheckerOptions, HistoryViolation};
use dbshift_testkit::{
    check_gtid_history, check_lab_gtid_history, lab_targets, lab_writers, shared_lab,
    InvariantChecker, Relay,
};
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

/// Bounds on waits that only a badly stuck machine would reach.
const LONG: Duration = Duration::from_secs(60);

/// Retry `cond` every 10 ms until it holds (true) or `timeout` passes (false). Unlike a
/// panicking wait, this lets a test put the lab back before it asserts.
async fn until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if started.elapsed() >= timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn writer_and_replicas(lab: &Lab) -> (String, Vec<String>) {
    let c = &lab.state().clusters[0];
    let replicas = lab
        .state()
        .instances_of(&c.name)
        .filter(|i| i.id != c.writer)
        .map(|i| i.id.clone())
        .collect();
    (c.writer.clone(), replicas)
}

#[tokio::test]
async fn an_untouched_lab_has_one_writer_and_a_clean_history() {
    let _g = SERIAL.lock().await;
    let lab = shared_lab().await;
    let (writer, replicas) = writer_and_replicas(lab);
    let checker = InvariantChecker::start_lab(lab).await.unwrap();
    assert_eq!(checker.instances().len(), 3);
    assert!(
        checker.wait_for_samples(20, LONG).await,
        "the samplers did not keep sampling"
    );
    let report = checker.stop().await;
    report.assert_never_two_writers();
    assert_eq!(report.writers(), vec![writer.as_str()], "{report}");
    let w = report.instance(&writer).unwrap();
    assert!(
        w.samples >= 20 && w.writable > 0 && w.read_only == 0,
        "{report}"
    );
    for r in &replicas {
        let s = report.instance(r).unwrap();
        assert!(
            s.samples >= 20 && s.writable == 0 && s.read_only > 0,
            "{report}"
        );
        assert!(s.max_sample_gap_ms > 0, "{report}");
    }
    assert_eq!(
        report.samples.len(),
        report.instances.iter().map(|i| i.samples).sum::<usize>()
    );

    // A write by the writer, replicated everywhere: the history the check must accept.
    let mut w = lab.connect_admin(&writer).await.unwrap();
    w.exec_sql("CREATE TABLE IF NOT EXISTS app.invariants_clean (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let pos = w.gtid_binlog_pos().await.unwrap();
    w.close().await;
    for r in &replicas {
        let mut rep = lab.connect_admin(r).await.unwrap();
        rep.wait_for_gtid(&pos, LONG).await.unwrap();
        rep.close().await;
    }
    check_lab_gtid_history(lab, &lab_writers(lab))
        .await
        .unwrap();
    // Nothing is allowed when nobody may write: the writer's own history shows.
    let err = check_lab_gtid_history(lab, &[]).await.unwrap_err();
    let domain = lab.state().clusters[0].gtid_domain_id;
    assert!(err.contains(&format!("domain {domain}")), "{err}");
}

#[tokio::test]
async fn a_replica_made_writable_for_a_moment_shows_as_two_writers() {
    let _g = SERIAL.lock().await;
    let lab = shared_lab().await;
    let (writer, replicas) = writer_and_replicas(lab);
    let replica = replicas[0].clone();
    let mut admin = lab.connect_admin(&replica).await.unwrap();
    assert!(
        admin.read_only().await.unwrap(),
        "the replica must start read-only"
    );

    let checker = InvariantChecker::start_lab(lab).await.unwrap();
    assert!(checker.wait_for_samples(5, LONG).await);
    admin.exec_sql("SET GLOBAL read_only=OFF").await.unwrap();
    let opened = Instant::now();
    // Writable for about 200 ms and until the checker has seen it several times: the window
    // is bounded below by what was observed, not by a sleep that hopes it was.
    let seen = until(LONG, || {
        opened.elapsed() >= Duration::from_millis(200)
            && checker
                .snapshot()
                .instance(&replica)
                .is_some_and(|i| i.writable >= 5)
    })
    .await;
    // Put the lab back before any assertion can fail.
    let restored = admin.exec_sql("SET GLOBAL read_only=ON").await;
    let back = until(LONG, || {
        checker
            .snapshot()
            .samples_of(&replica)
            .last()
            .is_some_and(|s| s.writable == Some(false))
    })
    .await;
    let report = checker.stop().await;
    restored.unwrap();
    assert!(admin.read_only().await.unwrap());
    admin.close().await;
    assert!(seen, "the checker never saw the replica writable: {report}");
    assert!(
        back,
        "the checker never saw the replica read-only again: {report}"
    );

    assert_eq!(report.two_writers.len(), 1, "{report}");
    let tw = &report.two_writers[0];
    let mut both = tw.instances.clone();
    both.sort();
    let mut expected = vec![writer.clone(), replica.clone()];
    expected.sort();
    assert_eq!(both, expected, "{report}");
    assert!(tw.interval.length() > Duration::ZERO, "{report}");
    assert_eq!(
        report.instance(&replica).unwrap().writable_intervals,
        vec![tw.interval],
        "the overlap is exactly the replica's writable spell, the writer being writable throughout"
    );
    let panic = std::panic::catch_unwind(|| report.assert_never_two_writers())
        .expect_err("the assertion must fail on two writers");
    let msg = panic.downcast_ref::<String>().unwrap();
    assert!(
        msg.contains("two writable primaries") && msg.contains(&replica),
        "{msg}"
    );
}

#[tokio::test]
async fn an_errant_write_on_a_replica_is_reported_by_the_history_check() {
    let _g = SERIAL.lock().await;
    let lab = shared_lab().await;
    let (_, replicas) = writer_and_replicas(lab);
    let replica = replicas[1].clone();
    let allowed = lab_writers(lab);
    check_lab_gtid_history(lab, &allowed).await.unwrap();

    let mut admin = lab.connect_admin(&replica).await.unwrap();
    let sid = admin.server_id();
    let state_before = admin
        .variable("gtid_binlog_state")
        .await
        .unwrap()
        .unwrap_or_default();
    admin
        .exec_sql("SET SESSION gtid_domain_id=77")
        .await
        .unwrap();
    admin
        .exec_sql("CREATE TABLE app.errant_in_77 (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let targets = lab_targets(lab);
    let reported = check_gtid_history(&targets, &allowed).await;
    let violations = gtid_history_violations(&targets, &allowed).await;
    let mut with_77 = allowed.clone();
    with_77.push((77, vec![sid]));
    let when_allowed = check_gtid_history(&targets, &with_77).await;

    // Put the replica back as it was: the table gone without a new GTID, and its binlog
    // state without the errant domain (RESET MASTER empties it; then the old state is set
    // again, which MariaDB allows on an empty binlog only).
    admin.exec_sql("SET SESSION sql_log_bin=0").await.unwrap();
    admin.exec_sql("DROP TABLE app.errant_in_77").await.unwrap();
    admin.exec_sql("RESET MASTER").await.unwrap();
    admin
        .exec_sql(&format!(
            "SET GLOBAL gtid_binlog_state={}",
            quote_literal(&state_before)
        ))
        .await
        .unwrap();
    admin.close().await;
    check_lab_gtid_history(lab, &allowed).await.unwrap();
    lab.wait_replicating(&replica, LONG).await.unwrap();

    let err = reported.unwrap_err();
    assert!(
        err.contains(&format!("77-{sid}-1")) && err.contains(&replica),
        "{err}"
    );
    assert_eq!(
        violations.unwrap(),
        vec![HistoryViolation {
            instance: replica.clone(),
            gtid: Gtid::new(77, sid, 1),
            written_by: Some(replica.clone()),
        }]
    );
    when_allowed.unwrap();
}

#[tokio::test]
async fn a_cut_connection_is_replaced_and_a_refused_one_recorded_as_unreachable() {
    let lab = shared_lab().await;
    let (writer, _) = writer_and_replicas(lab);
    let direct = lab.admin_options(&writer).unwrap();
    let upstream: SocketAddr = format!("{}:{}", direct.host, direct.port).parse().unwrap();
    let relay = Relay::start(upstream).await.unwrap();
    let via = ConnectOptions {
        port: relay.addr().port(),
        ..direct
    };
    // A generous bound: on a loaded machine a reconnect must not be mistaken for a timeout.
    let options = CheckerOptions {
        timeout: Duration::from_secs(10),
        ..Default::default()
    };
    let checker = InvariantChecker::start_with(vec![("writer".into(), via)], options)
        .await
        .unwrap();
    assert!(checker.wait_for_samples(3, LONG).await);
    assert_eq!(relay.connections(), 1, "one kept connection per instance");

    // A session ended under the sampler: it reconnects at once, and no sample is lost to it.
    relay.cut_all();
    let before = checker.snapshot().instance("writer").unwrap().samples;
    assert!(checker.wait_for_samples(before + 5, LONG).await);
    let snap = checker.snapshot();
    assert_eq!(snap.instance("writer").unwrap().unreachable, 0, "{snap}");
    assert_eq!(relay.connections(), 1);

    // Unreachable: recorded, and counted as not writable.
    relay.refuse_new(true);
    relay.cut_all();
    let unreachable = until(LONG, || {
        checker
            .snapshot()
            .instance("writer")
            .is_some_and(|i| i.unreachable >= 3)
    })
    .await;
    relay.pass();
    assert!(unreachable, "{}", checker.snapshot());
    let count = checker.snapshot().samples.len();
    let recovered = until(LONG, || {
        let snap = checker.snapshot();
        snap.samples.len() > count
            && snap
                .samples_of("writer")
                .last()
                .is_some_and(|s| s.writable == Some(true))
    })
    .await;
    let report = checker.stop().await;
    assert!(recovered, "{report}");
    let w = report.instance("writer").unwrap();
    assert!(w.unreachable >= 3, "{report}");
    assert_eq!(
        w.writable_intervals.len(),
        2,
        "unreachable splits the writable time: {report}"
    );
    report.assert_never_two_writers();
}

#[tokio::test]
async fn an_instance_that_is_down_is_sampled_as_unreachable() {
    dbshift_testkit::init();
    let lab = shared_lab().await;
    let (writer, _) = writer_and_replicas(lab);
    let nowhere = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let down = ConnectOptions {
        port: nowhere,
        ..lab.admin_options(&writer).unwrap()
    };
    let checker = InvariantChecker::start(vec![("down".into(), down.clone())])
        .await
        .unwrap();
    assert!(checker.wait_for_samples(3, LONG).await);
    let report = checker.stop().await;
    let d = report.instance("down").unwrap();
    assert_eq!(d.unreachable, d.samples, "{report}");
    assert!(report.writers().is_empty());
    // A history that cannot be read is not a clean one.
    let err = check_gtid_history(&[("down".into(), down)], &[])
        .await
        .unwrap_err();
    assert!(
        err.contains("could not be read") && err.contains("down"),
        "{err}"
    );
}
