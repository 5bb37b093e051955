//! The fault matrix on real servers, for the faults that need a hand inside the run (an
//! observer that breaks something at an exact step): blue/green with green's writer hung by
//! SIGSTOP or killed during the wait, green's SQL thread stopped before the guards and during
//! the wait, blue's writer killed right after the fence, the old writer killed right after the
//! promotion, a duplicate-key error on the standby, dbshift's connection to the serving writer
//! cut or black-holed right after the fence (the testkit's fault relay), the serving writer's
//! binlog purged before the standby read it; and a CA rotation with a replica that never comes
//! back from its restart.
//!
//! Every scenario runs under [`Scenario`]: `read_only` of every instance sampled every 10 ms
//! (zero two-writer intervals), an application writer through `lab-1` whose every acknowledged
//! insert must be on the writer at the end, the GTID history checked for writes by servers not
//! allowed to write, and checksums compared wherever replication reports caught up. The table
//! of faults and outcomes is docs/faults.md. Run with `make test` (or `make test-faults`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dbshift_ops::bluegreen::{self, SwitchOptions};
use dbshift_ops::ca_rotate::{self, CaRotateRequest, ExecuteOptions};
use dbshift_ops::events::{Event, Observer};
use dbshift_ops::journal::{Journal, RunStatus};
use dbshift_ops::rollout::{Control, Mode, PlannedStep, RolloutObserver, RunOutcome, StepOutcome};
use dbshift_ops::switchover::Outcome;
use dbshift_provider::local::Lab;
use dbshift_provider::{Deployment, GreenSpec, Provider, Side};
use dbshift_testkit::{
    allowed_writers, assert_caught_up_and_equal, eventually, pid_of, signal, tied, writable, Relay,
    RelayedProvider, Scenario, TestLab,
};
use tokio::sync::Mutex as AsyncMutex;

/// The tests of this binary take turns: each runs a lab of its own.
static SERIAL: AsyncMutex<()> = AsyncMutex::const_new(());

/// Runs an action once, when the switchover core reports an event `when` accepts (a step
/// started or ended): the fault is injected at an exact point of the run.
struct OnEvent {
    when: fn(&Event) -> bool,
    action: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

fn on(when: fn(&Event) -> bool, action: impl FnOnce() + Send + 'static) -> OnEvent {
    OnEvent {
        when,
        action: Mutex::new(Some(Box::new(action))),
    }
}

impl Observer for OnEvent {
    fn event(&self, event: &Event) {
        if (self.when)(event) {
            if let Some(f) = self.action.lock().unwrap().take() {
                f();
            }
        }
    }
}

/// Run SQL on an instance from synchronous code inside the test's (multi-thread) runtime:
/// the observer's callback is synchronous.
fn sql_now(lab: &Lab, id: &str, sql: &'static str) {
    let (lab, id) = (lab.clone(), id.to_string());
    tokio::task::block_in_place(move || {
        tokio::runtime::Handle::current().block_on(async move {
            let mut s = lab.connect_admin(&id).await.unwrap();
            s.exec_sql(sql).await.unwrap();
            s.close().await;
        })
    });
}

async fn sql(lab: &Lab, id: &str, sql: &str) {
    let mut s = lab.connect_admin(id).await.unwrap();
    s.exec_sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{id}: {sql}: {e}"));
    s.close().await;
}

async fn deployment(lab: &Lab) -> Deployment {
    bluegreen::find(lab, None).await.unwrap()
}

/// (serving writer, standby writer, the side that does not serve).
async fn sides(lab: &Lab) -> (String, String, Side) {
    let d = deployment(lab).await;
    let standby = d.serving.other();
    (
        d.writer(d.serving).to_string(),
        d.writer(standby).to_string(),
        standby,
    )
}

async fn switch(
    lab: &Lab,
    j: &Journal,
    timeout: Duration,
    obs: &dyn Observer,
) -> (String, Outcome) {
    let d = deployment(lab).await;
    let opts = SwitchOptions {
        timeout,
        ..SwitchOptions::default()
    };
    let to = d.serving.other();
    let params = bluegreen::switch_params(lab, &d, to, &opts).await.unwrap();
    bluegreen::switch(lab, j, params, to, obs).await.unwrap()
}

async fn status_of(j: &Journal, run: &str) -> RunStatus {
    j.run(run).await.unwrap().status
}

/// The last (SQL, IO) error numbers of a replica.
async fn replication_errors(lab: &Lab, id: &str) -> (Option<u32>, Option<u32>) {
    let mut s = lab.connect_admin(id).await.unwrap();
    let st = s.replication_status().await.unwrap();
    s.close().await;
    (
        st.last_sql_error.map(|(code, _)| code),
        st.last_io_error.map(|(code, _)| code),
    )
}

/// Every instance but the serving writer: they all replicate, directly or not, from it.
fn all_but(lab: &Lab, serving: &str) -> Vec<String> {
    lab.state()
        .instances
        .iter()
        .map(|i| i.id.clone())
        .filter(|i| i != serving)
        .collect()
}

async fn assert_all_equal(lab: &Lab, tables: &[String]) {
    let (serving, _, _) = sides(lab).await;
    let replicas = all_but(lab, &serving);
    let replicas: Vec<&str> = replicas.iter().map(|s| s.as_str()).collect();
    let tables: Vec<&str> = tables.iter().map(|s| s.as_str()).collect();
    assert_caught_up_and_equal(lab, &serving, &replicas, &tables, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bluegreen_survives_server_and_replication_faults() {
    let _g = SERIAL.lock().await;
    let t = TestLab::start(1, 1).await;
    let dir = t.dir().to_path_buf();
    bluegreen::create(
        t.lab(),
        &GreenSpec {
            source: "lab-1".into(),
            name: "green".into(),
            replicas: 0,
            encrypt: false,
            engine_binary: None,
        },
    )
    .await
    .unwrap();
    // A handle that knows green's instance, whose restarts die with this test.
    let lab = tied(&Lab::open(&dir).unwrap());
    let j = Journal::open(&dir.join("journal.sqlite")).await.unwrap();
    lab.wait_replicating("green-1", Duration::from_secs(30))
        .await
        .unwrap();
    let allowed = allowed_writers(&lab, "lab-1", &["lab-1-1", "green-1"]);
    let mut tables: Vec<String> = Vec::new();

    // 1. Green's writer hung (SIGSTOP) during the wait: the wait runs out, blue is put back.
    let (serving, standby, _) = sides(&lab).await;
    let sc = Scenario::start(&lab, "lab-1", "f_hung").await;
    let p = pid_of(&lab, &standby);
    let (run, out) = switch(
        &lab,
        &j,
        Duration::from_secs(2),
        &on(
            |e| e.started() == Some("wait"),
            move || signal(p, libc::SIGSTOP),
        ),
    )
    .await;
    signal(p, libc::SIGCONT);
    let Outcome::RolledBack { reason } = &out else {
        panic!("{out:?}")
    };
    assert!(reason.contains(&standby), "{reason}");
    assert_eq!(out.exit_code(), 1);
    assert_eq!(status_of(&j, &run).await, RunStatus::RolledBack);
    assert_eq!(writable(&lab).await, vec![serving.clone()]);
    sc.wait_for_writes(20, Duration::from_secs(30)).await;
    sc.finish(&lab, &allowed).await;
    tables.push("app.f_hung".into());
    assert_all_equal(&lab, &tables).await;

    // 2. Green's writer killed during the wait: rolled back; it comes back read-only and, as
    // restored green's writer does (skip_slave_start), replicating only once told to.
    let sc = Scenario::start(&lab, "lab-1", "f_killed").await;
    let p = pid_of(&lab, &standby);
    let (run, out) = switch(
        &lab,
        &j,
        Duration::from_secs(5),
        &on(
            |e| e.started() == Some("wait"),
            move || signal(p, libc::SIGKILL),
        ),
    )
    .await;
    assert!(matches!(out, Outcome::RolledBack { .. }), "{out:?}");
    assert_eq!(status_of(&j, &run).await, RunStatus::RolledBack);
    assert_eq!(writable(&lab).await, vec![serving.clone()]);
    lab.start_instance(&standby, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(writable(&lab).await, vec![serving.clone()]);
    // Until it replicates, the next switch is refused by its guards: nothing changes.
    let (run, out) = switch(&lab, &j, Duration::from_secs(5), &on(|_| false, || {})).await;
    assert!(matches!(out, Outcome::Refused(_)), "{out:?}");
    assert_eq!(status_of(&j, &run).await, RunStatus::Failed);
    sql(&lab, &standby, "START SLAVE").await;
    lab.wait_replicating(&standby, Duration::from_secs(30))
        .await
        .unwrap();
    sc.finish(&lab, &allowed).await;
    tables.push("app.f_killed".into());
    assert_all_equal(&lab, &tables).await;

    // 3. Green's SQL thread stopped: before the switch, the guards refuse; stopped right after
    // the fence, the wait runs out and blue is put back. Nothing lost either way.
    let sc = Scenario::start(&lab, "lab-1", "f_sql_stopped").await;
    sql(&lab, &standby, "STOP SLAVE SQL_THREAD").await;
    sc.wait_for_writes(10, Duration::from_secs(30)).await;
    let (run, out) = switch(&lab, &j, Duration::from_secs(5), &on(|_| false, || {})).await;
    let Outcome::Refused(report) = &out else {
        panic!("{out:?}")
    };
    assert!(!report.passed());
    assert_eq!(out.exit_code(), 1);
    assert_eq!(status_of(&j, &run).await, RunStatus::Failed);
    sql(&lab, &standby, "START SLAVE SQL_THREAD").await;
    sql(
        &lab,
        &serving,
        "CREATE TABLE app.f_marker (id INT AUTO_INCREMENT PRIMARY KEY)",
    )
    .await;
    // Once the guards passed: green stops applying, and blue writes one more transaction
    // before its fence, which green must apply in the wait and cannot.
    let (l2, st, sv) = (lab.clone(), standby.clone(), serving.clone());
    let (run, out) = switch(
        &lab,
        &j,
        Duration::from_secs(2),
        &on(
            |e| e.ended() == Some("guards"),
            move || {
                sql_now(&l2, &st, "STOP SLAVE SQL_THREAD");
                sql_now(&l2, &sv, "INSERT INTO app.f_marker VALUES (NULL)");
            },
        ),
    )
    .await;
    assert!(matches!(out, Outcome::RolledBack { .. }), "{out:?}");
    assert_eq!(status_of(&j, &run).await, RunStatus::RolledBack);
    assert_eq!(writable(&lab).await, vec![serving.clone()]);
    sql(&lab, &standby, "START SLAVE SQL_THREAD").await;
    sc.wait_for_writes(10, Duration::from_secs(30)).await;
    sc.finish(&lab, &allowed).await;
    tables.extend(["app.f_sql_stopped".into(), "app.f_marker".into()]);
    assert_all_equal(&lab, &tables).await;

    // 4. Blue's writer killed right after the fence: it cannot be put back, nothing was
    // promoted: needs a human (exit 3). Restarted, it serves again; `resume` finishes the
    // switch to green with every acknowledged write on green.
    let sc = Scenario::start(&lab, "lab-1", "f_blue_killed").await;
    let p = pid_of(&lab, &serving);
    let (run, out) = switch(
        &lab,
        &j,
        Duration::from_secs(5),
        &on(
            |e| e.ended() == Some("fence"),
            move || signal(p, libc::SIGKILL),
        ),
    )
    .await;
    let Outcome::NeedsHuman { reason } = &out else {
        panic!("{out:?}")
    };
    assert!(
        reason.contains("nothing was promoted") && reason.contains("dbshift resume"),
        "{reason}"
    );
    assert_eq!(out.exit_code(), 3);
    assert_eq!(status_of(&j, &run).await, RunStatus::NeedsHuman);
    assert!(writable(&lab).await.is_empty(), "fenced or down: no writer");
    lab.start_instance(&serving, Duration::from_secs(60))
        .await
        .unwrap();
    sc.wait_for_writes(10, Duration::from_secs(30)).await;
    lab.wait_replicating(&standby, Duration::from_secs(30))
        .await
        .unwrap();
    let out = dbshift_ops::switchover::resume(&lab, &j, &run, &on(|_| false, || {}))
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Done(_)), "{out:?}");
    assert_eq!(status_of(&j, &run).await, RunStatus::Done);
    assert_eq!(writable(&lab).await, vec![standby.clone()]);
    sc.wait_for_writes(10, Duration::from_secs(30)).await;
    sc.finish(&lab, &allowed).await;
    tables.push("app.f_blue_killed".into());
    assert_all_equal(&lab, &tables).await;
    // Green serves from here on; blue's writer is the standby.
    let (serving, standby, _) = sides(&lab).await;
    assert_eq!((serving.as_str(), standby.as_str()), ("green-1", "lab-1-1"));

    // 5. A duplicate-key error on the standby (a row written there behind replication's
    // back): the guards refuse, verify stops with an error instead of hanging; after the row
    // is removed replication goes on and both sides hold the same rows.
    let sc = Scenario::start(&lab, "lab-1", "f_dup").await;
    sql(
        &lab,
        &serving,
        "CREATE TABLE app.f_dupkey (id INT PRIMARY KEY)",
    )
    .await;
    let mut sby = lab.connect_admin(&standby).await.unwrap();
    eventually!(Duration::from_secs(30), "the table on the standby", {
        sby.query_scalar("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='app' AND TABLE_NAME='f_dupkey'")
            .await
            .unwrap()
            .filter(|n| n == "1")
    });
    sby.exec_sql("SET SESSION sql_log_bin=0").await.unwrap();
    sby.exec_sql("INSERT INTO app.f_dupkey VALUES (1)")
        .await
        .unwrap();
    sql(&lab, &serving, "INSERT INTO app.f_dupkey VALUES (1)").await;
    eventually!(
        Duration::from_secs(30),
        "the duplicate-key error on the standby",
        (replication_errors(&lab, &standby).await.0 == Some(1062)).then_some(())
    );
    let (run, out) = switch(&lab, &j, Duration::from_secs(5), &on(|_| false, || {})).await;
    assert!(matches!(out, Outcome::Refused(_)), "{out:?}");
    assert_eq!(status_of(&j, &run).await, RunStatus::Failed);
    assert_eq!(writable(&lab).await, vec![serving.clone()]);
    let st = bluegreen::status(&lab, &deployment(&lab).await)
        .await
        .unwrap();
    assert!(!st.standby_replicating, "{st:?}");
    let v = bluegreen::verify(
        &lab,
        &deployment(&lab).await,
        &dbshift_ops::verify::VerifyOptions {
            until_timeout: Duration::from_secs(3),
            ..Default::default()
        },
    )
    .await;
    assert!(
        v.as_ref().map_or(true, |r| !r.equal),
        "verify of a broken standby must not say equal: {v:?}"
    );
    // Verify left the standby's threads as it found them: the IO thread running (its UNTIL
    // cleared), the SQL thread stopped.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let st = sby.replication_status().await.unwrap();
        assert!(!st.sql_running, "{st:?}");
        if st.io_running == dbshift_db::status::IoState::Yes {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "verify left the standby's IO thread stopped: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sby.exec_sql("DELETE FROM app.f_dupkey WHERE id = 1")
        .await
        .unwrap();
    sby.exec_sql("SET SESSION sql_log_bin=1").await.unwrap();
    // As an operator would after the fix: the SQL thread started again.
    sby.exec_sql("START SLAVE SQL_THREAD").await.unwrap();
    if let Err(e) = lab
        .wait_replicating(&standby, Duration::from_secs(30))
        .await
    {
        let raw = sby.query_rows("SHOW SLAVE STATUS").await.unwrap();
        panic!("{e}: {raw:?}");
    }
    sby.close().await;
    sc.finish(&lab, &allowed).await;
    tables.extend(["app.f_dup".into(), "app.f_dupkey".into()]);
    assert_all_equal(&lab, &tables).await;

    // 6. dbshift loses its connection to the serving writer right after the fence, through
    // the fault relay between dbshift and that server: connections cut and new ones refused,
    // then a black hole (connections hang). Putting the writer back cannot be done: needs a
    // human, no writer at all meanwhile; the network heals and `resume` finishes the switch.
    for fault in ["cut", "black hole"] {
        let (serving, standby, _) = sides(&lab).await;
        let sc =
            Scenario::start(&lab, "lab-1", &format!("f_net_{}", fault.replace(' ', "_"))).await;
        let port = lab.state().instance(&serving).unwrap().port;
        let relay = Relay::start(([127, 0, 0, 1], port).into()).await.unwrap();
        let control = relay.control();
        let provider = RelayedProvider::new(&lab, &serving, relay.addr());
        let d = deployment(&lab).await;
        let to = d.serving.other();
        let opts = SwitchOptions {
            timeout: Duration::from_secs(5),
            ..SwitchOptions::default()
        };
        let params = bluegreen::switch_params(&lab, &d, to, &opts).await.unwrap();
        let c = control.clone();
        let black_hole = fault == "black hole";
        let obs = on(
            |e| e.ended() == Some("fence"),
            move || {
                if black_hole {
                    c.set_drop(true);
                } else {
                    c.refuse_new(true);
                    c.cut_all();
                }
            },
        );
        let Ok(ended) = tokio::time::timeout(
            Duration::from_secs(120),
            bluegreen::switch(&provider, &j, params, to, &obs),
        )
        .await
        else {
            panic!("{fault}: the switch did not end within 120 s")
        };
        let (run, out) = ended.unwrap();
        let Outcome::NeedsHuman { reason } = &out else {
            panic!("{fault}: {out:?}")
        };
        assert!(reason.contains("nothing was promoted"), "{fault}: {reason}");
        assert_eq!(out.exit_code(), 3);
        assert_eq!(status_of(&j, &run).await, RunStatus::NeedsHuman);
        assert!(
            writable(&lab).await.is_empty(),
            "{fault}: fenced, nothing promoted"
        );
        control.pass();
        let out = dbshift_ops::switchover::resume(&provider, &j, &run, &on(|_| false, || {}))
            .await
            .unwrap();
        assert!(matches!(out, Outcome::Done(_)), "{fault}: {out:?}");
        assert_eq!(status_of(&j, &run).await, RunStatus::Done);
        assert_eq!(writable(&lab).await, vec![standby.clone()]);
        sc.wait_for_writes(10, Duration::from_secs(30)).await;
        sc.finish(&lab, &allowed).await;
        tables.push(format!("app.f_net_{}", fault.replace(' ', "_")));
        assert_all_equal(&lab, &tables).await;
        relay.stop();
    }

    // 7. The old writer killed right after the new one was promoted (past the point of no
    // return): the switch goes on, the old writer cannot be demoted: needs a human (exit 3)
    // with one writer, the new one. Restarted, the old writer comes back read-only (its side
    // no longer serves); `resume` makes it a replica of the new writer.
    let (serving, standby, _) = sides(&lab).await;
    let sc = Scenario::start(&lab, "lab-1", "f_old_killed").await;
    let p = pid_of(&lab, &serving);
    let (run, out) = switch(
        &lab,
        &j,
        Duration::from_secs(5),
        &on(
            |e| e.ended() == Some("promote"),
            move || signal(p, libc::SIGKILL),
        ),
    )
    .await;
    let Outcome::NeedsHuman { reason } = &out else {
        panic!("{out:?}")
    };
    assert!(
        reason.contains(&serving) && reason.contains("dbshift resume"),
        "{reason}"
    );
    assert_eq!(out.exit_code(), 3);
    assert_eq!(status_of(&j, &run).await, RunStatus::NeedsHuman);
    assert_eq!(writable(&lab).await, vec![standby.clone()]);
    sc.wait_for_writes(10, Duration::from_secs(30)).await;
    lab.start_instance(&serving, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(writable(&lab).await, vec![standby.clone()]);
    let out = dbshift_ops::switchover::resume(&lab, &j, &run, &on(|_| false, || {}))
        .await
        .unwrap();
    assert!(matches!(out, Outcome::Done(_)), "{out:?}");
    assert_eq!(status_of(&j, &run).await, RunStatus::Done);
    lab.wait_replicating(&serving, Duration::from_secs(30))
        .await
        .unwrap();
    sc.finish(&lab, &allowed).await;
    tables.push("app.f_old_killed".into());
    assert_all_equal(&lab, &tables).await;
    let (serving, standby, _) = sides(&lab).await;

    // 8. The serving writer's binlog purged before the standby read it: the standby's IO
    // thread stops with error 1236; the guards refuse and verify fails, nothing changes and
    // no acknowledged write is lost on the serving side. (Green must then be rebuilt.)
    let sc = Scenario::start(&lab, "lab-1", "f_purged").await;
    sql(&lab, &standby, "STOP SLAVE IO_THREAD").await;
    sc.wait_for_writes(20, Duration::from_secs(30)).await;
    let mut w = lab.connect_admin(&serving).await.unwrap();
    w.exec_sql("FLUSH BINARY LOGS").await.unwrap();
    let file = w
        .query_rows("SHOW MASTER STATUS")
        .await
        .unwrap()
        .first()
        .and_then(|r| r[0].1.clone())
        .unwrap();
    // A log another replica's dump thread still reads is kept by PURGE: again until gone.
    eventually!(Duration::from_secs(30), "the older binlogs purged", {
        w.exec_sql(&format!("PURGE BINARY LOGS TO '{file}'"))
            .await
            .unwrap();
        let logs = w.query_rows("SHOW BINARY LOGS").await.unwrap();
        (logs.len() == 1).then_some(())
    });
    w.close().await;
    sql(&lab, &standby, "START SLAVE IO_THREAD").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while replication_errors(&lab, &standby).await.1 != Some(1236) {
        if std::time::Instant::now() > deadline {
            let mut s = lab.connect_admin(&standby).await.unwrap();
            let st = s.replication_status().await.unwrap();
            let mut w = lab.connect_admin(&serving).await.unwrap();
            let logs = w.query_rows("SHOW BINARY LOGS").await.unwrap();
            panic!("no error 1236 on {standby}: {st:?}; {serving}'s binlogs: {logs:?}");
        }
        dbshift_testkit::poll_pause().await;
    }
    let (run, out) = switch(&lab, &j, Duration::from_secs(5), &on(|_| false, || {})).await;
    assert!(matches!(out, Outcome::Refused(_)), "{out:?}");
    assert_eq!(status_of(&j, &run).await, RunStatus::Failed);
    let v = bluegreen::verify(
        &lab,
        &deployment(&lab).await,
        &dbshift_ops::verify::VerifyOptions {
            until_timeout: Duration::from_secs(3),
            ..Default::default()
        },
    )
    .await;
    assert!(
        v.as_ref().map_or(true, |r| !r.equal),
        "verify of a standby that lost its source's binlog must not say equal: {v:?}"
    );
    assert_eq!(writable(&lab).await, vec![serving.clone()]);
    let report = sc.finish(&lab, &allowed).await;
    assert!(report.acked > 20);
    j.close().await;
}

/// Breaks an instance's option file when the rollout starts its step: its restart fails and
/// it never comes back until the file is restored.
struct BreakOnStep {
    instance: String,
    cnf: std::path::PathBuf,
}

impl RolloutObserver for BreakOnStep {
    fn step_started(&self, _cluster: &str, step: &PlannedStep) {
        if step.instance == self.instance {
            let mut text = std::fs::read_to_string(&self.cnf).unwrap();
            text.push_str("\n[mariadbd]\ndbshift_fault_no_such_option=1\n");
            std::fs::write(&self.cnf, text).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_rotation_with_a_replica_that_never_comes_back() {
    let _g = SERIAL.lock().await;
    let t = TestLab::start(1, 2).await;
    let lab = tied(t.lab());
    let p: Arc<dyn Provider> = Arc::new(lab.clone());
    let j = Journal::open(&t.dir().join("journal.sqlite"))
        .await
        .unwrap();
    let allowed = allowed_writers(&lab, "lab-1", &["lab-1-1"]);
    let broken = "lab-1-2";
    let cnf = lab.paths(broken).cnf();
    let good_cnf = std::fs::read_to_string(&cnf).unwrap();
    let from = p.describe_instance("lab-1-1").await.unwrap().ca;
    let to = if from == "lab-ca-2026" {
        "lab-ca-2024"
    } else {
        "lab-ca-2026"
    };

    let sc = Scenario::start(&lab, "lab-1", "f_ca").await;
    let req = CaRotateRequest {
        to: to.into(),
        filters: Vec::new(),
        concurrency: 1,
        mode: Some(Mode::Restart),
        cooldown_ms: 0,
        start_stopped: false,
        max_failures: 0,
        client_cas: Vec::new(),
        probe: false,
    };
    let options = |observer: Arc<dyn RolloutObserver>| ExecuteOptions {
        control: Control::new(),
        observer,
        probe: None,
        gate_timeout: Duration::from_secs(20),
        resume: None,
    };
    let plan = ca_rotate::prepare(&*p, &req).await.unwrap();
    let report = ca_rotate::execute(
        p.clone(),
        &j,
        &plan,
        options(Arc::new(BreakOnStep {
            instance: broken.into(),
            cnf: cnf.clone(),
        })),
    )
    .await
    .unwrap();
    let r = &report.rollout;
    assert_eq!(r.outcome, RunOutcome::Failed, "{r:#?}");
    assert_eq!(r.outcome.exit_code(), 1);
    let failed: Vec<(&str, &str)> = r.clusters[0]
        .steps
        .iter()
        .filter_map(|s| match &s.outcome {
            StepOutcome::Failed { error } => Some((s.instance.as_str(), error.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{r:#?}");
    assert_eq!(failed[0].0, broken);
    assert!(failed[0].1.contains(broken), "{}", failed[0].1);
    // The cluster stopped at it: the writer was not touched and serves on.
    assert_eq!(p.describe_instance("lab-1-1").await.unwrap().ca, from);
    assert_eq!(writable(&lab).await, vec!["lab-1-1".to_string()]);
    sc.wait_for_writes(20, Duration::from_secs(30)).await;
    assert!(lab.pid(broken).unwrap().is_none(), "{broken} stays down");

    // Repaired and started, the same request finishes the rotation.
    std::fs::write(&cnf, good_cnf).unwrap();
    lab.start_instance(broken, Duration::from_secs(60))
        .await
        .unwrap();
    lab.wait_replicating(broken, Duration::from_secs(30))
        .await
        .unwrap();
    let plan = ca_rotate::prepare(&*p, &req).await.unwrap();
    let report = ca_rotate::execute(
        p.clone(),
        &j,
        &plan,
        options(Arc::new(dbshift_ops::rollout::LogRolloutObserver)),
    )
    .await
    .unwrap();
    assert_eq!(
        report.rollout.outcome,
        RunOutcome::Done,
        "{:#?}",
        report.rollout
    );
    for i in ["lab-1-1", "lab-1-2", "lab-1-3"] {
        assert_eq!(p.describe_instance(i).await.unwrap().ca, to, "{i}");
    }
    sc.wait_for_writes(10, Duration::from_secs(30)).await;
    sc.finish(&lab, &allowed).await;
    assert_caught_up_and_equal(
        &lab,
        "lab-1-1",
        &["lab-1-2", "lab-1-3"],
        &["app.f_ca"],
        Duration::from_secs(60),
    )
    .await;
    j.close().await;
}
