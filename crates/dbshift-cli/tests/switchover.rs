//! `dbshift switchover`, `check`, `runs` and `resume` as a user runs them, including
//! `kill -9` of dbshift at every step boundary (DBSHIFT_CRASH_AT) followed by `resume`: each
//! time exactly one writable server, replication intact. Run with `make test`.

mod common;

use std::path::Path;
use std::process::Output;

use common::{cli, json, text, CliLab};

/// Run dbshift, killing itself at `crash_at` (`switchover:<step>:<phase>`) when given.
fn dbshift(dir: &Path, args: &[&str], crash_at: Option<&str>) -> Output {
    cli(dir).run(args, crash_at)
}

/// A plain switchover that must succeed, and leave `to` the sole writer.
fn switch_to(dir: &Path, to: &str) {
    let o = dbshift(dir, &["switchover", "lab-1", "--to", to, "--yes"], None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(sole_writer(dir), to);
}

/// The one writable instance, asserting there is exactly one, that the name resolves to it,
/// and every other replicates.
fn sole_writer(dir: &Path) -> String {
    cli(dir).sole_writer()
}

#[test]
fn check_switchover_plan_bad_input_and_crash_resume_at_every_step() {
    let lab_guard = CliLab::up(1, 2);
    let dir = lab_guard.dir.clone();
    let tmp = tempfile::tempdir().unwrap();

    let check = dbshift(&dir, &["check", "lab-1", "-o", "json"], None);
    let reports = json(&check);
    assert_eq!(
        reports.as_array().unwrap().len(),
        2,
        "one report per replica"
    );

    // Bad input: exit 2, nothing changed.
    for args in [
        vec!["switchover", "lab-9", "--to", "lab-1-2", "--yes"],
        vec!["switchover", "lab-1", "--to", "lab-1-1", "--yes"],
        vec!["switchover", "lab-1", "--to", "lab-2-2", "--yes"],
        vec!["resume", "nope", "--yes"],
    ] {
        let o = dbshift(&dir, &args, None);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
    }
    // Without --yes and no terminal: refuses, changes nothing.
    let o = dbshift(&dir, &["switchover", "lab-1", "--to", "lab-1-2"], None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let plan = json(&dbshift(
        &dir,
        &[
            "switchover",
            "lab-1",
            "--to",
            "lab-1-2",
            "--plan",
            "-o",
            "json",
        ],
        None,
    ));
    assert_eq!(plan["steps"].as_array().unwrap().len(), 10);
    assert_eq!(sole_writer(&dir), "lab-1-1");

    // With the probe: what clients saw, and the audit on the new writer.
    let o = dbshift(
        &dir,
        &[
            "switchover",
            "lab-1",
            "--to",
            "lab-1-3",
            "--yes",
            "--probe",
            "-o",
            "json",
        ],
        None,
    );
    let report = json(&o);
    assert_eq!(report["outcome"], "done", "{report:#}");
    assert_eq!(
        report["probe"]["lost_writes"],
        serde_json::json!([]),
        "{report:#}"
    );
    assert!(
        report["probe"]["kinds"]["write"]["succeeded"]
            .as_u64()
            .unwrap()
            > 50,
        "{report:#}"
    );
    let gap = report["probe"]["max_write_gap_ms"].as_f64().unwrap();
    assert!(gap > 0.0, "{report:#}");
    let report_dir = report["probe"]["report_dir"].as_str().unwrap();
    assert!(Path::new(report_dir).join("timeline.svg").exists());
    assert_eq!(sole_writer(&dir), "lab-1-3");
    switch_to(&dir, "lab-1-1");

    // Hooks run after promotion with the old and new endpoints; a failing one ends the run
    // "needs a human" (exit 3) once the writer has moved.
    let out = tmp.path().join("hook.out");
    let hook = format!(
        "echo \"$1 $2 $DBSHIFT_CLUSTER $DBSHIFT_OLD_WRITER $DBSHIFT_NEW_WRITER\" > {}",
        out.display()
    );
    let o = dbshift(
        &dir,
        &[
            "switchover",
            "lab-1",
            "--to",
            "lab-1-2",
            "--yes",
            "--hook",
            &hook,
            "--hook",
            "exit 7",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("hook `exit 7` failed"),
        "{}",
        text(&o)
    );
    let status = json(&dbshift(&dir, &["lab", "status", "-o", "json"], None));
    let port = |id: &str| {
        status["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .unwrap()["endpoint"]["port"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().trim(),
        format!(
            "127.0.0.1:{} 127.0.0.1:{} lab-1 lab-1-1 lab-1-2",
            port("lab-1-1"),
            port("lab-1-2")
        )
    );
    assert_eq!(sole_writer(&dir), "lab-1-2");
    switch_to(&dir, "lab-1-1");

    let steps = dbshift_ops::switchover::STEPS;
    // Two writers at any instant of the 30 crashes and resumes: the checker samples read_only of
    // every server every 10 ms, from its own threads.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lab = dbshift_provider::local::Lab::open(&dir).unwrap();
    let checker = rt
        .block_on(dbshift_testkit::InvariantChecker::start_lab(&lab))
        .unwrap();
    let mut expected = "lab-1-1".to_string();
    for step in steps {
        for phase in ["begin", "run", "end"] {
            let to = if expected == "lab-1-1" {
                "lab-1-2"
            } else {
                "lab-1-1"
            };
            let at = format!("switchover:{step}:{phase}");
            cli(&dir).crash_and_resume(
                &["switchover", "lab-1", "--to", to, "--yes"],
                &at,
                "switchover",
            );
            expected = to.to_string();
            assert_eq!(sole_writer(&dir), expected, "{at}");
        }
    }
    let report = rt.block_on(checker.stop());
    report.assert_never_two_writers();
    let runs = json(&dbshift(&dir, &["runs", "-o", "json"], None));
    // Every run done, but the one whose hook failed.
    let statuses: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "needs_human").count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == "done" || *s == "needs_human"),
        "{statuses:?}"
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
}
