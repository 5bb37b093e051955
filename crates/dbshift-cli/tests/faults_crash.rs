//! The crash half of the fault matrix, as a user runs dbshift: `kill -9` of dbshift
//! (DBSHIFT_CRASH_AT) at every step boundary of `bluegreen switchover` and of `bluegreen
//! rollback`, each followed by `dbshift resume`; dbshift killed inside the wait step (green's
//! SQL thread stopped so that the wait cannot end), resumed once with green still stuck (rolled
//! back, exit 1) and once after the fix (done). Under an application writer through `lab-1`
//! and the 10 ms `read_only` sampler the whole time; afterwards the GTID history, every
//! acknowledged write, and blue and green checksums once caught up. Every command runs with
//! `-vv`: its output, the journal (the SQLite files) and the probe's report are scanned for
//! the lab's passwords. The plain switchover's crash matrix is in `switchover.rs`, the CA
//! rotation's in `ca_rotate.rs`. Run with `make test` (or `make test-faults`).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{cli, json, text, CliLab, Dbshift};
use dbshift_ops::journal::{Journal, RunStatus};
use dbshift_provider::local::Lab;
use dbshift_testkit::{
    allowed_writers, assert_caught_up_and_equal, assert_no_secret, assert_no_secret_in_dir,
    lab_secrets, Scenario,
};
use serde_json::Value;

/// The one writable instance: exactly one, the serving side's writer, and every other
/// instance replicating (polled with a deadline).
fn sole_writer(cli: &mut Dbshift) -> String {
    cli.sole_writer_where(|cli, _, w| {
        let st = cli.json(&["bluegreen", "status", "-o", "json"]);
        let serving = if st["blue"]["serving"] == true {
            &st["blue"]["writer"]
        } else {
            &st["green"]["writer"]
        };
        assert_eq!(serving, w, "the serving side's writer is the writable one");
    })
}

/// `bluegreen switchover` when blue serves, `bluegreen rollback` when green does.
fn next_switch(writer: &str) -> (&'static str, &'static str) {
    if writer == "lab-1-1" {
        ("switchover", "green-1")
    } else {
        ("rollback", "lab-1-1")
    }
}

async fn sql(lab: &Lab, id: &str, sql: &str) {
    let mut s = lab.connect_admin(id).await.unwrap();
    s.exec_sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{id}: {sql}: {e}"));
    s.close().await;
}

/// Block green's SQL thread without stopping it (the guards would see a stopped one): a row
/// inserted on blue into a table that a session on green holds locked. Gives that session;
/// `UNLOCK TABLES` on it lets green go on.
fn block_green(lab: &Lab, rt: &tokio::runtime::Runtime, id: u32) -> dbshift_db::Server {
    rt.block_on(async {
        sql(
            lab,
            "lab-1-1",
            "CREATE TABLE IF NOT EXISTS app.f_block (id INT PRIMARY KEY)",
        )
        .await;
        assert_caught_up_and_equal(lab, "lab-1-1", &["green-1"], &[], Duration::from_secs(30))
            .await;
        let mut locker = lab.connect_admin("green-1").await.unwrap();
        locker
            .exec_sql("LOCK TABLES app.f_block WRITE")
            .await
            .unwrap();
        sql(
            lab,
            "lab-1-1",
            &format!("INSERT INTO app.f_block VALUES ({id})"),
        )
        .await;
        locker
    })
}

fn unblock_green(rt: &tokio::runtime::Runtime, mut locker: dbshift_db::Server) {
    rt.block_on(async {
        locker.exec_sql("UNLOCK TABLES").await.unwrap();
        locker.close().await;
    });
}

/// Start a switch to green (blue serving, green's SQL thread blocked) and kill dbshift with
/// SIGKILL once the journal shows it inside the wait step; gives the run id.
fn kill_inside_the_wait(cli: &mut Dbshift, rt: &tokio::runtime::Runtime) -> String {
    let mut child = cli
        // The guards would refuse a green whose lag grows past their bound while it is
        // blocked; the bound is raised so that the run reaches its wait.
        .command(
            &[
                "bluegreen",
                "switchover",
                "--yes",
                "--timeout",
                "4s",
                "--max-lag",
                "1000000",
            ],
            &[],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let journal = rt
        .block_on(Journal::open(&cli.dir().join("journal.sqlite")))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let run = loop {
        let inside = rt.block_on(async {
            let runs = journal.runs().await.ok()?;
            let r = runs.into_iter().find(|r| r.status == RunStatus::Running)?;
            let r = journal.run(&r.id).await.ok()?;
            (r.step_begun("wait") && !r.step_done("wait")).then_some(r.id)
        });
        if let Some(id) = inside {
            break id;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "dbshift ended before its wait step"
        );
        assert!(
            Instant::now() < deadline,
            "dbshift never reached its wait step"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    child.kill().unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), None, "killed: {}", text(&o));
    cli.keep_printed(&o);
    rt.block_on(journal.close());
    run
}

#[test]
fn kill_9_at_every_step_of_bluegreen_switchover_and_rollback_then_resume() {
    let lab_guard = CliLab::up(1, 1);
    let dir = lab_guard.dir.clone();
    let mut cli = cli(&dir).verbose();
    let o = cli.run(
        &[
            "bluegreen",
            "create",
            "--source",
            "lab-1",
            "--name",
            "green",
            "--replicas",
            "0",
            "-o",
            "json",
        ],
        None,
    );
    json(&o);
    assert_eq!(sole_writer(&mut cli), "lab-1-1");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let lab = Lab::open(&dir).unwrap();
    let secrets = lab_secrets(&lab);
    let sc = rt.block_on(Scenario::start(&lab, "lab-1", "f_crash"));

    // With the probe: its report is scanned for secrets at the end.
    let report = json(&cli.run(
        &["bluegreen", "switchover", "--yes", "--probe", "-o", "json"],
        None,
    ));
    assert_eq!(report["outcome"], "done", "{report:#}");
    assert_eq!(
        report["probe"]["lost_writes"],
        serde_json::json!([]),
        "{report:#}"
    );
    let probe_dir = std::path::PathBuf::from(report["probe"]["report_dir"].as_str().unwrap());
    let o = cli.run(&["bluegreen", "rollback", "--yes", "-o", "json"], None);
    assert_eq!(json(&o)["outcome"], "done");

    let mut writer = sole_writer(&mut cli);
    assert_eq!(writer, "lab-1-1");
    for step in dbshift_ops::switchover::STEPS {
        for phase in ["begin", "run", "end"] {
            // Both directions at every point: the switch to green, then the rollback to blue.
            for _ in 0..2 {
                let (cmd, to) = next_switch(&writer);
                let at = format!("switchover:{step}:{phase}");
                let kind = format!("bluegreen-{cmd}");
                cli.crash_and_resume(&["bluegreen", cmd, "--yes"], &at, &kind);
                writer = sole_writer(&mut cli);
                assert_eq!(writer, to, "{cmd} {at}");
            }
        }
    }

    // Killed inside the wait (green cannot apply: its SQL thread is blocked). Resumed with
    // green still stuck: the wait runs out, blue is put back (exit 1).
    assert_eq!(writer, "lab-1-1");
    let locker = block_green(&lab, &rt, 1);
    let run = kill_inside_the_wait(&mut cli, &rt);
    let o = cli.run(&["resume", &run, "--yes", "-o", "json"], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(out["outcome"], "rolled_back", "{out:#}");
    assert_eq!(cli.last_run(), (run, "rolled_back".to_string()));
    unblock_green(&rt, locker);
    assert_eq!(sole_writer(&mut cli), "lab-1-1");
    // Killed inside the wait again; green unblocked before the resume: done.
    let locker = block_green(&lab, &rt, 2);
    let run = kill_inside_the_wait(&mut cli, &rt);
    unblock_green(&rt, locker);
    let o = cli.run(&["resume", &run, "--yes", "-o", "json"], None);
    assert_eq!(json(&o)["outcome"], "done", "{}", text(&o));
    assert_eq!(sole_writer(&mut cli), "green-1");

    // Every run ended done or rolled back; nothing left running or needing a human.
    let runs = json(&cli.run(&["runs", "-o", "json"], None));
    for r in runs.as_array().unwrap() {
        assert!(
            r["status"] == "done" || r["status"] == "rolled_back",
            "{r:#}"
        );
    }

    let allowed = allowed_writers(&lab, "lab-1", &["lab-1-1", "green-1"]);
    let report = rt.block_on(sc.finish(&lab, &allowed));
    assert!(report.acked > 100, "{}", report.acked);
    rt.block_on(assert_caught_up_and_equal(
        &lab,
        "green-1",
        &["lab-1-1", "lab-1-2"],
        &["app.f_crash", "app.f_block"],
        Duration::from_secs(60),
    ));

    // No password of the lab in anything dbshift printed (at -vv), journaled or reported.
    assert_no_secret(&secrets, "dbshift's output at -vv", cli.printed());
    let mut journal_files = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("journal.sqlite") {
            assert_no_secret(&secrets, &name, &std::fs::read(entry.path()).unwrap());
            journal_files += 1;
        }
    }
    assert!(journal_files >= 1);
    assert!(
        assert_no_secret_in_dir(&secrets, &probe_dir) >= 2,
        "the probe's report files"
    );
}
