//! Issue 10's failover scenarios: `kill -9` of dbshift at every step boundary of an unplanned
//! failover (`DBSHIFT_CRASH_AT=failover:<step>:<begin|run>`), then the same command again. One
//! semi-synchronous 1+2 lab for the whole binary: each round kills the writer (`kill -9`),
//! crashes `dbshift failover` at one point, runs it again (it continues the interrupted run),
//! and rejoins the old writer, so the next round starts from a 1+2 cluster again.
//!
//! Checked throughout: the invariant checker samples `read_only` of every server every 10 ms
//! (never two writable), an acknowledging writer inserts through the cluster name (with
//! semi-sync nothing acknowledged may be lost), and at the end the GTID history shows no write
//! by a server that was not a writer; after each round exactly one writable server, the others
//! replicating from it, and every failover run in the journal ends `done`.
//!
//! Run with `cargo test -p dbshift-cli --test faults_failover` (or `make test`); needs MariaDB.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::{cli, json, text};
use dbshift_testkit::kill_9;
use serde_json::Value;

fn dbshift(dir: &Path, args: &[&str], crash_at: Option<&str>) -> Output {
    cli(dir).run(args, crash_at)
}

/// A semi-sync lab built by the binary, taken down even when the test panics.
struct SemiSyncLab {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl SemiSyncLab {
    fn up() -> SemiSyncLab {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("lab");
        let o = dbshift(
            &dir,
            &[
                "lab",
                "up",
                "--clusters",
                "1",
                "--replicas",
                "2",
                "--semi-sync",
                "-o",
                "json",
            ],
            None,
        );
        let lab = SemiSyncLab { dir, _tmp: tmp };
        json(&o);
        lab
    }
}

impl Drop for SemiSyncLab {
    fn drop(&mut self) {
        let _ = dbshift(&self.dir, &["lab", "down", "--purge"], None);
    }
}

fn status(dir: &Path) -> Value {
    json(&dbshift(dir, &["lab", "status", "-o", "json"], None))
}

fn writer_of(dir: &Path) -> String {
    status(dir)["clusters"][0]["writer"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The one writable instance, asserting there is exactly one, that the cluster name resolves
/// to it, and (once replication settled) that every other replicates.
fn sole_writer(dir: &Path) -> String {
    cli(dir).sole_writer_where(|_, _, w| {
        assert_eq!(writer_of(dir), w, "the name resolves to the writable one");
    })
}

#[test]
fn kill_9_of_dbshift_at_every_failover_step_then_failover_again() {
    let started = Instant::now();
    let lab_guard = SemiSyncLab::up();
    let dir = lab_guard.dir.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lab = dbshift_provider::local::Lab::open(&dir).unwrap();
    let checker = rt
        .block_on(dbshift_testkit::InvariantChecker::start_lab(&lab))
        .unwrap();
    let writer = rt.block_on(dbshift_testkit::AckedWriter::start(
        &lab,
        "lab-1",
        "faults_failover",
    ));

    let mut rounds = 0;
    // Each step journaled as begun (nothing done yet), and done on the servers but not yet
    // journaled as ended; a step's end is the next one's begin, but for the last one.
    let mut points: Vec<String> = dbshift_ops::failover::STEPS
        .iter()
        .flat_map(|step| ["begin", "run"].map(|phase| format!("failover:{step}:{phase}")))
        .collect();
    points.push("failover:verify:end".into());
    for at in &points {
        let before = rt.block_on(async {
            let n = writer.acked() + 20;
            dbshift_testkit::eventually!(
                Duration::from_secs(20),
                "acknowledged writes before the kill",
                (writer.acked() >= n).then_some(())
            );
            writer.acked()
        });
        let old = writer_of(&dir);
        kill_9(&lab, &old);
        let run = cli(&dir).crash(
            &["failover", "lab-1", "--yes", "-o", "json"],
            at,
            "failover",
        );
        if rounds == 0 {
            let o = dbshift(&dir, &["resume", &run, "--yes"], None);
            assert_eq!(o.status.code(), Some(2), "{}", text(&o));
            assert!(text(&o).contains("dbshift failover lab-1"), "{}", text(&o));
        }

        let o = dbshift(&dir, &["failover", "lab-1", "--yes", "-o", "json"], None);
        assert_eq!(o.status.code(), Some(0), "{at}: {}", text(&o));
        let done = json(&o);
        assert_eq!(done["mode"], "unplanned", "{at}: {done:#}");
        assert_eq!(done["resumed"], true, "{at}: {done:#}");
        assert_eq!(done["run_id"], run.as_str(), "{at}: the same run continued");
        assert_eq!(done["old_writer"], old.as_str(), "{at}");
        let new = done["new_writer"].as_str().unwrap().to_string();
        assert_ne!(new, old, "{at}");
        assert_eq!(
            done["repointed"].as_array().unwrap().len(),
            1,
            "{at}: {done:#}"
        );

        let rejoined = json(&dbshift(
            &dir,
            &["rejoin", &old, "--yes", "-o", "json"],
            None,
        ));
        assert_eq!(rejoined["outcome"], "rejoined", "{at}: {rejoined:#}");
        assert_eq!(sole_writer(&dir), new, "{at}");
        let runs = json(&dbshift(&dir, &["runs", "-o", "json"], None));
        let record = runs
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == run.as_str())
            .unwrap();
        assert_eq!(record["status"], "done", "{at}: {record:#}");
        // Writes go on through the name on the new writer.
        rt.block_on(async {
            dbshift_testkit::eventually!(
                Duration::from_secs(20),
                "acknowledged writes on the new writer",
                (writer.acked() >= before + 20).then_some(())
            );
        });
        rounds += 1;
        eprintln!("{at}: {old} -> {new}, {:?} so far", started.elapsed());
    }

    let acked = rt.block_on(writer.stop_and_audit(&lab));
    assert!(acked > 0);

    // Without semi-sync (turned off on the writer) and with the replicas' IO threads stopped,
    // writes acknowledged by the writer reach no replica: an unplanned failover (crashed once,
    // then run again) loses them, and they are found exactly: missing on the new writer,
    // present on the old one, which `rejoin` refuses (exit 3) for its errant transactions.
    let old = writer_of(&dir);
    let lossy = rt.block_on(async {
        let w = dbshift_testkit::AckedWriter::start(&lab, "lab-1", "faults_failover_async").await;
        let n = w.acked() + 20;
        dbshift_testkit::eventually!(
            Duration::from_secs(20),
            "acknowledged writes",
            (w.acked() >= n).then_some(())
        );
        let mut s = lab.connect_admin(&old).await.unwrap();
        s.exec_sql("SET GLOBAL rpl_semi_sync_master_enabled = OFF")
            .await
            .unwrap();
        s.close().await;
        for r in ["lab-1-1", "lab-1-2", "lab-1-3"]
            .into_iter()
            .filter(|r| *r != old)
        {
            let mut s = lab.connect_admin(r).await.unwrap();
            s.exec_sql("STOP SLAVE IO_THREAD").await.unwrap();
            s.close().await;
        }
        let n = w.acked() + 30;
        dbshift_testkit::eventually!(
            Duration::from_secs(20),
            "writes no replica receives",
            (w.acked() >= n).then_some(())
        );
        w
    });
    let truncations = |id: &str| -> Vec<String> {
        std::fs::read_to_string(dir.join(id).join("error.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("truncated binlog"))
            .map(str::to_string)
            .collect()
    };
    let truncated_before = truncations(&old).len();
    kill_9(&lab, &old);
    cli(&dir).crash(
        &["failover", "lab-1", "--yes", "-o", "json"],
        "failover:promote:begin",
        "failover",
    );
    let o = dbshift(&dir, &["failover", "lab-1", "--yes", "-o", "json"], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let done = json(&o);
    assert_eq!(done["resumed"], true, "{done:#}");
    let new = done["new_writer"].as_str().unwrap().to_string();
    let (acked_async, lost) = rt.block_on(lossy.stop_and_lost(&lab));
    assert!(
        !lost.is_empty(),
        "writes acknowledged while no replica received them must be lost"
    );
    let o = dbshift(&dir, &["rejoin", &old, "--yes", "-o", "json"], None);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let errant: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(errant["outcome"], "errant", "{errant:#}");
    assert!(!errant["errant"].as_array().unwrap().is_empty());
    let rows = |id: &str| -> std::collections::BTreeSet<u64> {
        rt.block_on(async {
            let mut s = lab.connect_admin(id).await.unwrap();
            let rows = s
                .query_rows("SELECT id FROM app.faults_failover_async")
                .await
                .unwrap();
            s.close().await;
            rows.iter()
                .filter_map(|r| r[0].1.as_deref().and_then(|v| v.parse().ok()))
                .collect()
        })
    };
    let only_on_old: std::collections::BTreeSet<u64> =
        rows(&old).difference(&rows(&new)).copied().collect();
    let lost: std::collections::BTreeSet<u64> = lost.into_iter().collect();
    // A lost write the old writer does not have either: its crash recovery in the replica
    // role (`--init-rpl-role=SLAVE`, the semi-sync lab's setting for every non-writer) rolled
    // back the last transactions it had binlogged but not committed in InnoDB, acknowledged
    // or not: with semi-sync off they may have been acknowledged. The error log says so.
    let gone: Vec<u64> = lost.difference(&only_on_old).copied().collect();
    if !gone.is_empty() {
        let truncated = truncations(&old).split_off(truncated_before);
        eprintln!("lost and not on {old} either: {gone:?}; its error log: {truncated:?}");
        assert!(
            !truncated.is_empty() && gone.len() <= 2,
            "lost {lost:?}, only on the old writer {only_on_old:?}, truncated: {truncated:?}"
        );
    }
    // The old writer may have committed the one insert in flight at the kill, never
    // acknowledged; every other write only it has was acknowledged and is reported lost.
    assert!(
        only_on_old.difference(&lost).count() <= 1,
        "lost {lost:?}, only on the old writer {only_on_old:?}"
    );
    eprintln!(
        "without semi-sync: {} of {acked_async} acknowledged writes lost, {} of them on {old}, \
         {} truncated by its crash recovery",
        lost.len(),
        lost.len() - gone.len(),
        gone.len()
    );
    rounds += 1;

    let report = rt.block_on(checker.stop());
    report.assert_never_two_writers();
    let runs = json(&dbshift(&dir, &["runs", "-o", "json"], None));
    let failovers: Vec<&Value> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "failover")
        .collect();
    assert_eq!(failovers.len(), rounds, "one run per round: {runs:#}");
    assert!(
        failovers.iter().all(|r| r["status"] == "done"),
        "{failovers:#?}"
    );
    // No server wrote in the cluster's domain but the ones that took turns as writer.
    let domain = lab.state().clusters[0].gtid_domain_id;
    let ids = ["lab-1-1", "lab-1-2", "lab-1-3"]
        .iter()
        .map(|i| lab.state().instance(i).unwrap().server_id)
        .collect();
    rt.block_on(dbshift_testkit::check_lab_gtid_history(
        &lab,
        &[(domain, ids)],
    ))
    .unwrap();
    eprintln!(
        "{rounds} crashed failovers continued, {acked} acknowledged writes kept, {:?}",
        started.elapsed()
    );
}
