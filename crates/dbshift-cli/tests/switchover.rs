//! `dbshift switchover`, `check`, `runs` and `resume` as a user runs them, including
//! `kill -9` of dbshift at every step boundary (DBSHIFT_CRASH_AT) followed by `resume`: each
//! time exactly one writable server, replication intact. Run with `make test`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn dbshift(dir: &Path, args: &[&str], crash_at: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dbshift"));
    cmd.arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("DBSHIFT_LAB_DIR");
    match crash_at {
        Some(at) => cmd.env("DBSHIFT_CRASH_AT", at),
        None => cmd.env_remove("DBSHIFT_CRASH_AT"),
    };
    cmd.output().expect("the dbshift binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

struct LabGuard(PathBuf);

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = dbshift(&self.0, &["lab", "down", "--purge"], None);
    }
}

/// The one writable instance, asserting there is exactly one and every other replicates.
fn sole_writer(dir: &Path) -> String {
    for _ in 0..100 {
        let inv = json(&dbshift(dir, &["inventory", "-o", "json"], None));
        let rows = inv.as_array().unwrap();
        let writable: Vec<&Value> = rows
            .iter()
            .filter(|r| r["replication"]["read_only"] == false)
            .collect();
        assert_eq!(writable.len(), 1, "exactly one writable server: {inv:#}");
        let w = writable[0]["id"].as_str().unwrap().to_string();
        let healthy = rows.iter().filter(|r| r["id"] != w.as_str()).all(|r| {
            r["replication"]["io_running"] == "Yes" && r["replication"]["sql_running"] == true
        });
        if healthy {
            let writers: Vec<&Value> = rows.iter().filter(|r| r["role"] == "writer").collect();
            assert_eq!(writers.len(), 1);
            assert_eq!(
                writers[0]["id"],
                w.as_str(),
                "the name resolves to the writable one"
            );
            return w;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("replication did not become healthy");
}

#[test]
fn check_switchover_plan_bad_input_and_crash_resume_at_every_step() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    let _guard = LabGuard(dir.clone());
    json(&dbshift(
        &dir,
        &[
            "lab",
            "up",
            "--clusters",
            "1",
            "--replicas",
            "2",
            "-o",
            "json",
        ],
        None,
    ));

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
    let o = dbshift(&dir, &["switchover", "lab-1", "--to", "lab-1-3", "--yes", "--probe", "-o", "json"], None);
    let report = json(&o);
    assert_eq!(report["outcome"], "done", "{report:#}");
    assert_eq!(report["probe"]["lost_writes"], serde_json::json!([]), "{report:#}");
    assert!(report["probe"]["kinds"]["write"]["succeeded"].as_u64().unwrap() > 50, "{report:#}");
    let gap = report["probe"]["max_write_gap_ms"].as_f64().unwrap();
    assert!(gap > 0.0, "{report:#}");
    let report_dir = report["probe"]["report_dir"].as_str().unwrap();
    assert!(Path::new(report_dir).join("timeline.svg").exists());
    assert_eq!(sole_writer(&dir), "lab-1-3");
    let o = dbshift(&dir, &["switchover", "lab-1", "--to", "lab-1-1", "--yes"], None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(sole_writer(&dir), "lab-1-1");

    let steps = [
        "guards",
        "fence",
        "wait",
        "point_of_no_return",
        "redirect",
        "promote",
        "hooks",
        "demote_old_writer",
        "repoint_siblings",
        "verify",
    ];
    let mut expected = "lab-1-1".to_string();
    for step in steps {
        for phase in ["begin", "run", "end"] {
            let to = if expected == "lab-1-1" {
                "lab-1-2"
            } else {
                "lab-1-1"
            };
            let at = format!("{step}:{phase}");
            let o = dbshift(
                &dir,
                &["switchover", "lab-1", "--to", to, "--yes"],
                Some(&at),
            );
            assert_eq!(
                o.status.code(),
                None,
                "{at}: dbshift must have been killed: {}",
                text(&o)
            );
            let runs = json(&dbshift(&dir, &["runs", "-o", "json"], None));
            let run = runs[0]["id"].as_str().unwrap().to_string();
            assert_eq!(runs[0]["status"], "running", "{at}");
            let o = dbshift(&dir, &["resume", &run, "--yes", "-o", "json"], None);
            let outcome = json(&o);
            assert_eq!(outcome["outcome"], "done", "{at}: {outcome:#}");
            expected = to.to_string();
            assert_eq!(sole_writer(&dir), expected, "{at}");
        }
    }
    let runs = json(&dbshift(&dir, &["runs", "-o", "json"], None));
    assert!(runs
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["status"] == "done"));
}
