//! CA rotation on real servers: the plan (readers first, an already-rotated instance and a
//! stopped one skipped), a no-restart rotation of two clusters under the downtime probe (no
//! failed write, every instance presenting the target chain, replication healthy, no errant
//! GTID), a failover-first rotation of one cluster (the writer moved by the switchover core,
//! the old writer restarted on the new CA, the probe's gap reported), and bad inputs that
//! change nothing; an instance failing its health gate stops its cluster and nothing new
//! starts, and the same request finishes after the fix; a health gate reads the cluster from the
//! control plane once and then asks the database. Run with `make test`. One lab for the whole binary (two clusters of three
//! servers); the tests take turns on it.

use std::sync::Arc;
use std::time::Duration;

use dbshift_ops::ca_rotate::{self, CaRotateRequest, ExecuteOptions};
use dbshift_ops::error::StepResult;
use dbshift_ops::journal::Journal;
use dbshift_ops::rollout::{
    Action, Change, Control, LogRolloutObserver, Mode, ProbeSettings, Rollout, RolloutError,
    RunOutcome, StepOutcome,
};
use dbshift_provider::local::Lab;
use dbshift_provider::{CaApply, Fleet, InstanceStatus, Provider};
use dbshift_testkit::{check_lab_gtid_history, tied, Calls, CountingProvider, TestLab};
use tokio::sync::{Mutex, OnceCell};

const OLD: &str = "lab-ca-2024";
const NEW: &str = "lab-ca-2026";

static SERIAL: Mutex<()> = Mutex::const_new(());

async fn lab() -> &'static TestLab {
    static LAB: OnceCell<TestLab> = OnceCell::const_new();
    LAB.get_or_init(|| TestLab::start(2, 2)).await
}

fn request(to: &str) -> CaRotateRequest {
    CaRotateRequest {
        to: to.into(),
        filters: Vec::new(),
        concurrency: 4,
        mode: None,
        cooldown_ms: 0,
        start_stopped: false,
        max_failures: 0,
        client_cas: Vec::new(),
        probe: false,
    }
}

fn provider(t: &TestLab) -> Arc<dyn Provider> {
    Arc::new(tied(t.lab()))
}

async fn journal(t: &TestLab) -> Journal {
    Journal::open(&t.dir().join("journal.sqlite"))
        .await
        .unwrap()
}

fn options(probe: Option<&std::path::Path>) -> ExecuteOptions {
    ExecuteOptions {
        control: Control::new(),
        observer: Arc::new(LogRolloutObserver),
        probe: probe.map(|d| ProbeSettings {
            rate: 50.0,
            report_dir: Some(d.to_path_buf()),
        }),
        gate_timeout: Duration::from_secs(60),
        resume: None,
    }
}

/// The PEM file of one lab CA alone.
fn ca_file(t: &TestLab, ca: &str) -> std::path::PathBuf {
    t.dir().join("tls").join(format!("{ca}.pem"))
}

/// Every running instance presents a chain that verifies against `ca` alone.
async fn assert_presents(t: &TestLab, ca: &str) {
    let p = provider(t);
    let admin = p.credentials().unwrap().admin;
    for i in p.list_instances().await.unwrap() {
        if i.status == InstanceStatus::Available {
            let ok = ca_rotate::presents_chain(&i, &admin, &ca_file(t, ca))
                .await
                .unwrap();
            assert!(ok, "{} does not present a chain of {ca}", i.id);
            assert_eq!(i.ca, ca, "{} is recorded on {}", i.id, i.ca);
        }
    }
}

/// Every replica replicates and no server wrote in a domain but the cluster's writers.
async fn assert_replication_clean(lab: &Lab, writers: &[(&str, &[&str])]) {
    let p: &dyn Provider = lab;
    for i in p.list_instances().await.unwrap() {
        if i.status != InstanceStatus::Available {
            continue;
        }
        let mut s = lab.connect_admin(&i.id).await.unwrap();
        let st = s.replication_status().await.unwrap();
        let clusters = p.list_clusters().await.unwrap();
        let writer = &clusters
            .iter()
            .find(|c| c.name == i.cluster)
            .unwrap()
            .writer;
        if *writer != i.id {
            let mut ok = st.healthy();
            for _ in 0..100 {
                if ok {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                ok = s.replication_status().await.unwrap().healthy();
            }
            assert!(ok, "{}'s replication is not healthy: {st:?}", i.id);
        }
        s.close().await;
    }
    let st = lab.fresh().unwrap();
    let domains: Vec<(u32, Vec<u32>)> = writers
        .iter()
        .map(|(c, ws)| {
            let domain = st.cluster(c).unwrap().gtid_domain_id;
            let ids = ws
                .iter()
                .map(|w| st.instance(w).unwrap().server_id)
                .collect();
            (domain, ids)
        })
        .collect();
    check_lab_gtid_history(lab, &domains).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_inputs_change_nothing() {
    let _g = SERIAL.lock().await;
    let t = lab().await;
    let p = provider(t);
    let before = ca_rotate::prepare(&*p, &request(OLD)).await.unwrap();
    let cases: Vec<(CaRotateRequest, &str)> = vec![
        (request("lab-ca-1999"), "unknown CA"),
        (
            CaRotateRequest {
                filters: vec!["prod-*".into()],
                ..request(NEW)
            },
            "matches no instance",
        ),
        (
            CaRotateRequest {
                filters: vec!["team=none".into()],
                ..request(NEW)
            },
            "matches no instance",
        ),
        (
            CaRotateRequest {
                concurrency: 0,
                ..request(NEW)
            },
            "at least 1",
        ),
        (
            CaRotateRequest {
                client_cas: vec!["/nonexistent/ca.pem".into()],
                ..request(NEW)
            },
            "--client-ca",
        ),
    ];
    for (req, want) in cases {
        match ca_rotate::prepare(&*p, &req).await {
            Err(RolloutError::BadInput(m)) => assert!(m.contains(want), "{m} (wanted {want})"),
            other => panic!("{req:?} was not refused: {other:?}"),
        }
    }
    let after = ca_rotate::prepare(&*p, &request(OLD)).await.unwrap();
    assert_eq!(before.plan.fingerprint, after.plan.fingerprint);
    assert_eq!(before.trust.trusted_now, after.trust.trusted_now);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plan_no_restart_with_the_probe_then_failover_first() {
    let _g = SERIAL.lock().await;
    let t = lab().await;
    let p = provider(t);
    let j = journal(t).await;

    // One instance rotated by hand (trust first), one stopped.
    p.deploy_trust(&[OLD.to_string(), NEW.to_string()])
        .await
        .unwrap();
    p.modify_ca("lab-1-3", NEW, CaApply::NoRestart)
        .await
        .unwrap();
    p.stop_instance("lab-2-3").await.unwrap();

    // The plan: readers first, one at a time, then the writer; skipped instances say why.
    let plan = ca_rotate::prepare(&*p, &request(NEW)).await.unwrap();
    assert_eq!(
        plan.plan.options.mode,
        Mode::NoRestart,
        "the lab's CA allows it"
    );
    let steps = |c: usize| -> Vec<(String, Action)> {
        plan.plan.clusters[c]
            .steps
            .iter()
            .map(|s| (s.instance.clone(), s.action.clone()))
            .collect()
    };
    let l1 = steps(0);
    assert_eq!(l1[0], ("lab-1-2".into(), Action::NoRestart));
    assert!(
        matches!(&l1[1], (i, Action::Skip { reason }) if i == "lab-1-3" && reason.contains("already"))
    );
    assert_eq!(l1[2], ("lab-1-1".into(), Action::NoRestart));
    let l2 = steps(1);
    assert_eq!(l2[0], ("lab-2-2".into(), Action::NoRestart));
    assert!(
        matches!(&l2[1], (i, Action::Skip { reason }) if i == "lab-2-3" && reason.contains("stopped"))
    );
    assert_eq!(l2[2], ("lab-2-1".into(), Action::NoRestart));
    assert_eq!(plan.plan.to_change, 4);
    assert!(!plan.trust.needed, "trusted already");

    // With --start-stopped the stopped one is started, rotated, stopped again.
    let req = CaRotateRequest {
        start_stopped: true,
        ..request(NEW)
    };
    let plan = ca_rotate::prepare(&*p, &req).await.unwrap();
    assert_eq!(
        plan.plan.clusters[1].steps[1].action,
        Action::StartChangeStop { restart: false }
    );
    let reports = tempfile::tempdir().unwrap();
    let report = ca_rotate::execute(p.clone(), &j, &plan, options(Some(reports.path())))
        .await
        .unwrap();
    let r = &report.rollout;
    assert_eq!(r.outcome, RunOutcome::Done, "{r:#?}");
    assert_eq!(r.totals.changed, 5, "{r:#?}");
    for c in &r.clusters {
        let probe = c.probe.as_ref().expect("a probe per cluster");
        assert_eq!(probe.failed_writes, 0, "{}: {probe:?}", c.cluster);
        assert_eq!(probe.lost_writes, 0, "{}: {probe:?}", c.cluster);
        assert!(probe.writes_attempted > 0);
    }
    assert_eq!(
        p.describe_instance("lab-2-3").await.unwrap().status,
        InstanceStatus::Stopped,
        "stopped again"
    );
    p.start_instance("lab-2-3", Duration::from_secs(60))
        .await
        .unwrap();
    assert_presents(t, NEW).await;
    assert_replication_clean(t.lab(), &[("lab-1", &["lab-1-1"]), ("lab-2", &["lab-2-1"])]).await;

    // The same command again: nothing left to do, nothing redone.
    let again = ca_rotate::prepare(&*p, &request(NEW)).await.unwrap();
    assert_eq!(again.plan.to_change, 0);

    // Failover-first back to the old CA on lab-1 only, under the probe.
    let req = CaRotateRequest {
        filters: vec!["lab-1".into()],
        mode: Some(Mode::FailoverFirst),
        probe: true,
        ..request(OLD)
    };
    let plan = ca_rotate::prepare(&*p, &req).await.unwrap();
    let acts: Vec<Action> = plan.plan.clusters[0]
        .steps
        .iter()
        .map(|s| s.action.clone())
        .collect();
    assert_eq!(
        acts,
        vec![
            Action::Restart,
            Action::Restart,
            Action::Switchover {
                to: "lab-1-2".into()
            },
            Action::Restart
        ]
    );
    assert_eq!(plan.plan.clusters.len(), 1, "lab-2 is out of scope");
    let report = ca_rotate::execute(p.clone(), &j, &plan, options(Some(reports.path())))
        .await
        .unwrap();
    let r = &report.rollout;
    assert_eq!(r.outcome, RunOutcome::Done, "{r:#?}");
    assert_eq!(r.totals.switchovers, 1);
    let sw = &r.clusters[0].steps[2];
    assert_eq!(sw.outcome, StepOutcome::Done);
    assert!(sw.write_gap_ms.is_some());
    let probe = r.clusters[0].probe.as_ref().unwrap();
    assert_eq!(probe.lost_writes, 0, "{probe:?}");
    assert!(probe.max_write_gap_ms > 0.0, "{probe:?}");
    // The writer moved through the core: its own run is in the journal.
    let runs = j.runs().await.unwrap();
    assert!(runs
        .iter()
        .any(|r| r.kind == "switchover" && r.target == "lab-1" && r.status.as_str() == "done"));
    let clusters = p.list_clusters().await.unwrap();
    assert_eq!(clusters[0].writer, "lab-1-2");
    let old = p.describe_instance("lab-1-1").await.unwrap();
    assert_eq!(old.ca, OLD);
    let admin = p.credentials().unwrap().admin;
    assert!(ca_rotate::presents_chain(&old, &admin, &ca_file(t, OLD))
        .await
        .unwrap());
    // lab-2 untouched.
    assert_eq!(p.describe_instance("lab-2-1").await.unwrap().ca, NEW);
    assert_replication_clean(
        t.lab(),
        &[("lab-1", &["lab-1-1", "lab-1-2"]), ("lab-2", &["lab-2-1"])],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_that_fails_its_gate_stops_its_cluster_and_nothing_new_starts() {
    let _g = SERIAL.lock().await;
    let t = lab().await;
    let p = provider(t);
    let j = journal(t).await;

    // Every instance on the old CA, whatever the other tests left.
    p.deploy_trust(&[OLD.to_string(), NEW.to_string()])
        .await
        .unwrap();
    for i in p.list_instances().await.unwrap() {
        if i.status == InstanceStatus::Stopped {
            p.start_instance(&i.id, Duration::from_secs(60))
                .await
                .unwrap();
        }
        if i.ca != OLD {
            p.modify_ca(&i.id, OLD, CaApply::NoRestart).await.unwrap();
        }
    }
    // The first reader of the first cluster will not pass its gate: its SQL thread is stopped.
    let clusters = p.list_clusters().await.unwrap();
    let first = &clusters[0];
    let broken = first
        .instances
        .iter()
        .find(|i| **i != first.writer)
        .unwrap()
        .clone();
    let mut s = t.lab().connect_admin(&broken).await.unwrap();
    s.exec_sql("STOP SLAVE SQL_THREAD").await.unwrap();

    let req = CaRotateRequest {
        concurrency: 1,
        ..request(NEW)
    };
    let plan = ca_rotate::prepare(&*p, &req).await.unwrap();
    let mut opts = options(None);
    opts.gate_timeout = Duration::from_secs(3);
    let report = ca_rotate::execute(p.clone(), &j, &plan, opts)
        .await
        .unwrap();
    let r = &report.rollout;
    assert_eq!(r.outcome, RunOutcome::Failed, "{r:#?}");
    assert_eq!(r.outcome.exit_code(), 1);
    let c1 = &r.clusters[0];
    let failed: Vec<&str> = c1
        .steps
        .iter()
        .filter(|s| matches!(s.outcome, StepOutcome::Failed { .. }))
        .map(|s| s.instance.as_str())
        .collect();
    assert_eq!(failed, vec![broken.as_str()], "{c1:#?}");
    // Its writer was not touched; the other cluster never started.
    assert_eq!(p.describe_instance(&first.writer).await.unwrap().ca, OLD);
    for i in &clusters[1].instances {
        assert_eq!(p.describe_instance(i).await.unwrap().ca, OLD, "{i}");
    }
    assert!(
        r.clusters[1]
            .steps
            .iter()
            .all(|s| matches!(s.outcome, StepOutcome::NotRun)),
        "{:#?}",
        r.clusters[1]
    );

    // The old CA cannot be dropped while instances still use it: nothing changes.
    let kept = ca_rotate::finalize_trust(&*p, NEW).await.unwrap();
    assert!(!kept.still_on_other_cas.is_empty(), "{kept:?}");
    assert_eq!(p.trusted_cas().await.unwrap().len(), 2);

    // Fixed, the same request finishes the job without redoing the broken reader's change.
    s.exec_sql("START SLAVE SQL_THREAD").await.unwrap();
    s.close().await;
    let plan = ca_rotate::prepare(&*p, &req).await.unwrap();
    let report = ca_rotate::execute(p.clone(), &j, &plan, options(None))
        .await
        .unwrap();
    assert_eq!(
        report.rollout.outcome,
        RunOutcome::Done,
        "{:#?}",
        report.rollout
    );
    assert_presents(t, NEW).await;
    // Now the old CA can go: every trust point trusts the new one alone, replication holds.
    let fin = ca_rotate::finalize_trust(&*p, NEW).await.unwrap();
    assert!(fin.still_on_other_cas.is_empty(), "{fin:?}");
    assert_eq!(p.trusted_cas().await.unwrap(), vec![NEW.to_string()]);
    assert_replication_healthy(t.lab()).await;
    // Leave the lab as the other tests expect it: every instance on the old CA.
    p.deploy_trust(&[OLD.to_string(), NEW.to_string()])
        .await
        .unwrap();
    for i in p.list_instances().await.unwrap() {
        p.modify_ca(&i.id, OLD, CaApply::NoRestart).await.unwrap();
    }
}

/// Every replica's threads run (after a trust change, replication reconnects verifying the
/// source's certificate against the new bundle).
async fn assert_replication_healthy(lab: &Lab) {
    let lab = Lab::open(lab.dir()).unwrap();
    for rec in &lab.state().instances {
        let mut s = lab.connect_admin(&rec.id).await.unwrap();
        let st = s.replication_status().await.unwrap();
        s.close().await;
        if st.configured {
            assert!(st.healthy(), "{}: {st:?}", rec.id);
        }
    }
}

/// A change that is always in effect: the gate alone is under test.
struct InEffect;

#[async_trait::async_trait]
impl Change for InEffect {
    async fn in_effect(&self, _: &dbshift_provider::Instance) -> StepResult<bool> {
        Ok(true)
    }
    async fn apply(&self, _: &dbshift_provider::Instance, _: bool) -> StepResult<()> {
        Ok(())
    }
    async fn value(&self, _: &str) -> String {
        String::new()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gate_reads_the_cluster_once_then_asks_the_database() {
    let _g = SERIAL.lock().await;
    let t = lab().await;
    let counting = Arc::new(CountingProvider::new(&tied(t.lab())));
    let rollout = Rollout {
        provider: counting.clone(),
        journal: journal(t).await,
        change: Arc::new(InEffect),
        observer: Arc::new(LogRolloutObserver),
        control: Control::new(),
        probe: None,
        gate_timeout: Duration::from_secs(30),
    };
    let cluster = counting.list_clusters().await.unwrap().remove(0);
    // Every instance of the cluster running, whatever the other tests left.
    let p = provider(t);
    for i in &cluster.instances {
        if p.describe_instance(i).await.unwrap().status == InstanceStatus::Stopped {
            p.start_instance(i, Duration::from_secs(60)).await.unwrap();
        }
    }
    let reader = cluster
        .instances
        .iter()
        .find(|i| **i != cluster.writer)
        .unwrap()
        .clone();
    let replicas = cluster.instances.len() - 1;
    counting.take();

    // A reader: itself (control plane), the cluster once, its writer's endpoint once.
    rollout.gate(&cluster.name, &reader).await.unwrap();
    let once = Calls {
        list_clusters: 1,
        list_instances: 0,
        describe_instance: 2,
    };
    assert_eq!(counting.take(), once);

    // A reader whose replication is stopped for a while: the database is polled until it
    // runs again, the control plane is not asked once more.
    let mut s = t.lab().connect_admin(&reader).await.unwrap();
    s.stop_replication().await.unwrap();
    let restart = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        s.start_replication().await.unwrap();
        s.close().await;
    });
    rollout.gate(&cluster.name, &reader).await.unwrap();
    restart.await.unwrap();
    assert_eq!(counting.take(), once);

    // The writer: itself, the cluster once, each of its replicas once.
    rollout.gate(&cluster.name, &cluster.writer).await.unwrap();
    assert_eq!(
        counting.take(),
        Calls {
            list_clusters: 1,
            list_instances: 0,
            describe_instance: 1 + replicas,
        }
    );
}
