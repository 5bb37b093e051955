//! The probe on real servers: an outage made by rebooting the writer, a lost write made by
//! deleting a probe row behind the probe's back, and bad input that writes nothing.
//! Run with `make test` (or `cargo test -p dbshift-probe`); needs MariaDB installed.
//!
//! `DBSHIFT_PROBE_KEEP_REPORT=DIR` keeps the reboot test's report (chart included) in DIR.
//!
//! The tests share one lab (a writer and one replica) and take turns on it, so a reboot in one
//! test is never seen by another.

use dbshift_testkit::eventually;
use std::sync::Arc;
use std::time::Duration;

use dbshift_probe::{
    Error, Kind, Outcome, Probe, ProbeConfig, ProbeHandle, TargetResolver, UrlTarget,
};
use dbshift_provider::local::Lab;
use dbshift_provider::{Fleet, InstanceControl, Provider};
use dbshift_testkit::{tied, TestLab};
use tokio::sync::{Mutex, MutexGuard, OnceCell};

/// The lab, and a turn on it.
async fn lab() -> (&'static Lab, MutexGuard<'static, ()>) {
    static LAB: OnceCell<TestLab> = OnceCell::const_new();
    static TURN: Mutex<()> = Mutex::const_new(());
    let lab = LAB.get_or_init(|| TestLab::start(1, 1)).await.lab();
    (lab, TURN.lock().await)
}

fn config(dir: &std::path::Path) -> ProbeConfig {
    ProbeConfig {
        rate: 200.0,
        report_dir: Some(dir.to_path_buf()),
        ..ProbeConfig::default()
    }
}

/// Wait until the probe has `n` more acknowledged writes than now.
async fn acked_writes(probe: &ProbeHandle, n: u64) {
    let target = probe.progress().writes_ok + n;
    eventually!(
        Duration::from_secs(20),
        format!("{n} more acknowledged writes"),
        (probe.progress().writes_ok >= target).then_some(())
    );
}

#[tokio::test]
async fn a_writer_reboot_shows_as_an_outage_and_loses_nothing() {
    let (lab, _turn) = lab().await;
    let lab = tied(lab);
    let writer = lab.state().clusters[0].writer.clone();
    let tmp = tempfile::tempdir().unwrap();
    let provider: Arc<dyn Provider> = Arc::new(lab.clone());
    let probe = Probe::start(
        config(tmp.path()),
        TargetResolver::provider(provider, "lab-1"),
    )
    .await
    .unwrap();
    acked_writes(&probe, 400).await;
    let before = probe.elapsed_ms();
    probe.mark("reboot writer");
    lab.reboot(&writer, Duration::from_secs(60)).await.unwrap();
    probe.mark("writer back");
    let after = probe.elapsed_ms();
    // The probe must see the writer again by itself (it reconnects, resolving again).
    acked_writes(&probe, 600).await;
    let (summary, attempts) = probe.stop_with_attempts().await.unwrap();

    assert!(
        summary.duration_ms > 4000.0,
        "ran {} ms",
        summary.duration_ms
    );
    let write_outages: Vec<_> = summary
        .outages
        .iter()
        .filter(|o| o.kind == Kind::Write)
        .collect();
    assert!(!write_outages.is_empty(), "{summary:#?}");
    let main = write_outages
        .iter()
        .max_by(|a, b| a.duration_ms.total_cmp(&b.duration_ms))
        .unwrap();
    // The outage lies inside the reboot, give or take one attempt's timeout.
    assert!(
        main.start_ms >= before - 1000.0 && main.end_ms <= after + 1000.0,
        "outage {main:?} outside the reboot {before}..{after}"
    );
    assert!(!main.ongoing);
    assert!(main.duration_ms > 0.0);
    assert!(summary.max_write_gap_ms >= main.duration_ms * 0.5);
    assert_eq!(
        summary.lost_writes,
        Vec::<u64>::new(),
        "{:?}",
        summary.audit
    );
    assert!(summary.audit.error.is_none(), "{:?}", summary.audit);
    let w = &summary.kinds[&Kind::Write];
    assert!(w.failed + w.indeterminate > 0);
    assert_eq!(
        summary.audit.rows_found,
        w.succeeded
            + summary.audit.indeterminate_landed.len() as u64
            + summary.audit.failed_landed.len() as u64
    );
    assert_eq!(summary.events.len(), 2);

    // The report files: every attempt in attempts.jsonl, the summary, the chart.
    let jsonl = std::fs::read_to_string(tmp.path().join("attempts.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), attempts.len());
    assert!(jsonl.contains("\"outcome\":\"failed\"") || jsonl.contains("\"outcome\":\"timeout\""));
    let on_disk: dbshift_probe::Summary =
        serde_json::from_slice(&std::fs::read(tmp.path().join("summary.json")).unwrap()).unwrap();
    // (JSON floats need not round-trip to the last bit; compare what matters.)
    assert_eq!(on_disk.run_id, summary.run_id);
    let (a, b) = (&on_disk.kinds[&Kind::Write], &summary.kinds[&Kind::Write]);
    assert_eq!(
        (a.attempted, a.succeeded, a.failed, a.indeterminate),
        (b.attempted, b.succeeded, b.failed, b.indeterminate)
    );
    assert_eq!(on_disk.outages.len(), summary.outages.len());
    assert_eq!(on_disk.lost_writes, summary.lost_writes);
    let svg = std::fs::read_to_string(tmp.path().join("timeline.svg")).unwrap();
    if let Ok(keep) = std::env::var("DBSHIFT_PROBE_KEEP_REPORT") {
        std::fs::create_dir_all(&keep).unwrap();
        for f in ["attempts.jsonl", "summary.json", "timeline.svg"] {
            std::fs::copy(tmp.path().join(f), std::path::Path::new(&keep).join(f)).unwrap();
        }
    }
    assert!(svg.contains("reboot writer") && svg.contains("write outage"));
    // No password anywhere in the reports.
    let pw = lab.credentials().unwrap().app.password;
    for f in ["attempts.jsonl", "summary.json", "timeline.svg"] {
        let body = std::fs::read_to_string(tmp.path().join(f)).unwrap();
        assert!(!body.contains(&pw), "{f} holds the password");
    }
    // The run's rows were cleaned up after the audit.
    let mut admin = lab.connect_admin(&writer).await.unwrap();
    let left = admin
        .query_scalar(&format!(
            "SELECT COUNT(*) FROM dbshift.probe WHERE run_id='{}'",
            summary.run_id
        ))
        .await
        .unwrap();
    assert_eq!(left.as_deref(), Some("0"));
}

#[tokio::test]
async fn a_row_deleted_behind_the_probe_is_reported_lost() {
    let (lab, _turn) = lab().await;
    let writer = lab.state().clusters[0].writer.clone();
    let tmp = tempfile::tempdir().unwrap();
    let provider: Arc<dyn Provider> = Arc::new(lab.clone());
    let probe = Probe::start(
        config(tmp.path()),
        TargetResolver::provider(provider, writer.clone()),
    )
    .await
    .unwrap();
    acked_writes(&probe, 100).await;
    let mut admin = lab.connect_admin(&writer).await.unwrap();
    let row = format!(
        "FROM dbshift.probe WHERE run_id='{}' AND seq=17",
        probe.run_id()
    );
    let count_sql = format!("SELECT COUNT(*) {row}");
    let before = admin.query_scalar(&count_sql).await.unwrap();
    assert_eq!(before.as_deref(), Some("1"), "seq 17 is on the writer");
    admin.exec_sql(&format!("DELETE {row}")).await.unwrap();
    let after = admin.query_scalar(&count_sql).await.unwrap();
    assert_eq!(after.as_deref(), Some("0"), "seq 17 is gone");
    probe.mark("row 17 deleted");
    acked_writes(&probe, 50).await;
    let (summary, attempts) = probe.stop_with_attempts().await.unwrap();
    // seq 17 was acknowledged, so its absence is a lost write; nothing else is missing.
    assert!(attempts
        .iter()
        .any(|a| a.seq == Some(17) && a.outcome == Outcome::Ok));
    assert_eq!(summary.lost_writes, vec![17], "{:?}", summary.audit);
    assert!(summary.audit.error.is_none());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(json["lost_writes"], serde_json::json!([17]));
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_is_written() {
    let (lab, _turn) = lab().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("report");
    let provider: Arc<dyn Provider> = Arc::new(lab.clone());
    let writer = lab.resolve("lab-1").await.unwrap();
    let app = lab.credentials().unwrap().app;

    let zero = ProbeConfig {
        rate: 0.0,
        ..config(&dir)
    };
    let e = Probe::start(zero, TargetResolver::provider(provider.clone(), "lab-1"))
        .await
        .err()
        .expect("rate 0 is refused");
    assert!(matches!(e, Error::BadInput(_)), "{e}");
    assert!(e.to_string().contains("rate"), "{e}");

    let e = Probe::start(config(&dir), TargetResolver::provider(provider, "lab-9"))
        .await
        .err()
        .expect("an unknown cluster is refused");
    assert!(matches!(e, Error::UnknownTarget { .. }), "{e}");
    assert!(e.to_string().contains("lab-9"), "{e}");

    let url = format!(
        "mysql://{}:not-the-password@127.0.0.1:{}/app",
        app.user, writer.port
    );
    let e = Probe::start(
        config(&dir),
        TargetResolver::url(UrlTarget::parse(&url, None).unwrap()),
    )
    .await
    .err()
    .expect("a wrong password is refused");
    assert!(matches!(e, Error::AccessDenied { .. }), "{e}");
    assert!(!e.to_string().contains("not-the-password"), "{e}");

    // Port 1 on loopback: nothing listens there.
    let url = format!("mysql://{}@127.0.0.1:1", app.user);
    let e = Probe::start(
        config(&dir),
        TargetResolver::url(UrlTarget::parse(&url, Some(app.password.clone())).unwrap()),
    )
    .await
    .err()
    .expect("an unreachable port is refused");
    assert!(matches!(e, Error::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains("127.0.0.1:1"), "{e}");

    // A CA the server's chain does not verify against (a rotation clients do not trust):
    // the TLS handshake fails.
    let bogus_ca = tmp.path().join("other-ca.pem");
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    std::fs::write(&bogus_ca, other.cert.pem()).unwrap();
    let url = format!("mysql://{}@127.0.0.1:{}", app.user, writer.port);
    let e = Probe::start(
        config(&dir),
        TargetResolver::url(UrlTarget::parse(&url, Some(app.password.clone())).unwrap())
            .tls_ca(Some(bogus_ca)),
    )
    .await
    .err()
    .expect("an untrusted server certificate is refused");
    assert!(matches!(e, Error::Untrusted { .. }), "{e}");
    assert!(e.to_string().contains("--tls-ca"), "{e}");
    assert!(e.is_bad_input());

    // A replica: the probe cannot write there, and says what to probe instead.
    let replica = lab
        .state()
        .instances_of("lab-1")
        .find(|i| i.id != lab.state().clusters[0].writer)
        .unwrap()
        .id
        .clone();
    let e = Probe::start(
        config(&dir),
        TargetResolver::provider(Arc::new(lab.clone()), replica),
    )
    .await
    .err()
    .expect("a read-only target is refused");
    assert!(matches!(e, Error::ReadOnly { .. }), "{e}");

    assert!(e.is_bad_input());
    assert!(!dir.exists(), "a refused probe writes no report");
}

#[tokio::test]
async fn a_url_target_probes_without_a_provider() {
    let (lab, _turn) = lab().await;
    let writer = lab.resolve("lab-1").await.unwrap();
    let app = lab.credentials().unwrap().app;
    let url = format!("mysql://{}@127.0.0.1:{}", app.user, writer.port);
    let target = TargetResolver::url(UrlTarget::parse(&url, Some(app.password.clone())).unwrap())
        .tls_ca(Some(lab.ca_bundle()));
    let probe = Probe::start(
        ProbeConfig {
            rate: 100.0,
            ..ProbeConfig::default()
        },
        target,
    )
    .await
    .unwrap();
    acked_writes(&probe, 50).await;
    let s = probe.stop().await.unwrap();
    assert_eq!(s.target, url);
    assert!(s.outages.is_empty(), "{:?}", s.outages);
    assert!(s.kinds[&Kind::Connect].succeeded > 0);
    assert!(s.kinds[&Kind::Read].succeeded > 0);
    assert!(s.lost_writes.is_empty());
}

#[tokio::test]
async fn a_dropped_probe_stops_writing() {
    let (lab, _turn) = lab().await;
    let writer = lab.state().clusters[0].writer.clone();
    let provider: Arc<dyn Provider> = Arc::new(lab.clone());
    let probe = Probe::start(
        ProbeConfig {
            rate: 100.0,
            connect_rate: 0.0,
            ..ProbeConfig::default()
        },
        TargetResolver::provider(provider, "lab-1"),
    )
    .await
    .unwrap();
    acked_writes(&probe, 20).await;
    let count_sql = format!(
        "SELECT COUNT(*) FROM dbshift.probe WHERE run_id='{}'",
        probe.run_id()
    );
    // A workflow's error path drops the handle without stop(): the writes must stop anyway.
    drop(probe);
    let mut admin = lab.connect_admin(&writer).await.unwrap();
    let mut last = String::new();
    let settled = eventually!(
        Duration::from_secs(10),
        "the dropped probe to stop writing",
        {
            let now = admin
                .query_scalar(&count_sql)
                .await
                .unwrap()
                .unwrap_or_default();
            let same = now == last;
            last = now.clone();
            tokio::time::sleep(Duration::from_millis(300)).await;
            same.then_some(now)
        }
    );
    assert!(settled.parse::<u64>().unwrap() >= 20);
    admin
        .exec_sql(&count_sql.replace("SELECT COUNT(*)", "DELETE"))
        .await
        .unwrap();
}
