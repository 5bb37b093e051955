//! `dbshift ca list` and `dbshift ca-rotate` as a user runs them: bad input (exit 2, nothing
//! changed), `--plan -o json` saved and applied with `--plan-file`, `kill -9` mid-rollout
//! (DBSHIFT_CRASH_AT=rollout:#N:end) then the same command finishing without redoing the
//! instances done before the kill, a stale saved plan refused, `dbshift resume <run>`, and
//! every server presenting the target chain (checked with `openssl s_client -CAfile`).
//! Run with `make test`. One lab of two clusters of three servers.

mod common;

use std::path::Path;

use common::{cli, dbshift, json, text, CliLab};
use serde_json::Value;

/// Run a rotation killed by dbshift itself after `after` instances; gives the run it left
/// running.
fn run_crashing(dir: &Path, args: &[&str], after: usize) -> String {
    let at = format!("rollout:#{after}:end");
    cli(dir).crash(args, &at, "ca-rotate")
}

/// Instance ids per CA, from `ca list -o json`.
fn usage(dir: &Path) -> Vec<(String, Vec<String>)> {
    let v = json(&dbshift(dir, &["ca", "list", "-o", "json"]));
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let mut ids: Vec<String> = c["instances"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_str().unwrap().to_string())
                .collect();
            ids.sort();
            (c["id"].as_str().unwrap().to_string(), ids)
        })
        .collect()
}

fn on(dir: &Path, ca: &str) -> usize {
    usage(dir)
        .into_iter()
        .find(|(id, _)| id == ca)
        .map(|(_, ids)| ids.len())
        .unwrap_or(0)
}

/// `openssl s_client -CAfile <ca>` against every instance: the chain verifies.
fn assert_openssl_verifies(dir: &Path, ca: &str) {
    let status = json(&dbshift(dir, &["lab", "status", "-o", "json"]));
    let ca_file = dir.join("tls").join(format!("{ca}.pem"));
    for i in status["instances"].as_array().unwrap() {
        let port = i["endpoint"]["port"].as_u64().unwrap();
        let out = std::process::Command::new("openssl")
            .args(["s_client", "-connect"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-starttls", "mysql", "-verify_return_error", "-CAfile"])
            .arg(&ca_file)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Verify return code: 0 (ok)"),
            "{} does not verify against {ca}:\n{text}{}",
            i["id"],
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn steps(report: &Value) -> Vec<(String, String)> {
    report["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["steps"].as_array().unwrap().clone())
        .map(|s| {
            (
                s["instance"].as_str().unwrap().to_string(),
                s["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn plan_bad_input_crash_and_resume() {
    let lab = CliLab::up(2, 2);
    let dir = lab.dir.as_path();
    let before = usage(dir);
    assert_eq!(on(dir, "lab-ca-2024"), 6, "{before:?}");
    assert_eq!(on(dir, "lab-ca-2026"), 0);

    // Bad input: exit 2, nothing changed.
    for args in [
        vec!["ca-rotate", "--to", "lab-ca-1999", "--yes"],
        vec![
            "ca-rotate",
            "--to",
            "lab-ca-2026",
            "--filter",
            "prod-*",
            "--yes",
        ],
        vec![
            "ca-rotate",
            "--to",
            "lab-ca-2026",
            "--concurrency",
            "0",
            "--yes",
        ],
        vec!["ca-rotate", "--yes"],
    ] {
        let o = dbshift(dir, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
    }
    assert_eq!(usage(dir), before);

    // The plan, exported.
    let o = dbshift(
        dir,
        &[
            "ca-rotate",
            "--to",
            "lab-ca-2026",
            "--concurrency",
            "1",
            "--plan",
            "-o",
            "json",
        ],
    );
    let plan = json(&o);
    let order: Vec<&str> = plan["clusters"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["instance"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["lab-1-2", "lab-1-3", "lab-1-1"], "readers first");
    assert_eq!(plan["to_change"], 6);
    let plan_file = dir.join("plan.json");
    std::fs::write(&plan_file, &o.stdout).unwrap();
    let o = dbshift(dir, &["ca-rotate", "--to", "lab-ca-2026", "--plan"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("estimate"));
    assert_eq!(usage(dir), before, "--plan changes nothing");

    // Applied from the saved plan, killed after two instances.
    let pf = plan_file.to_str().unwrap();
    run_crashing(
        dir,
        &["ca-rotate", "--plan-file", pf, "--yes", "-o", "json"],
        2,
    );
    assert_eq!(on(dir, "lab-ca-2026"), 2, "{:?}", usage(dir));

    // The saved plan no longer matches the fleet.
    let o = dbshift(dir, &["ca-rotate", "--plan-file", pf, "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("fleet changed"), "{}", text(&o));

    // The same command again: the run continues, the two are not redone.
    let o = dbshift(
        dir,
        &[
            "ca-rotate",
            "--to",
            "lab-ca-2026",
            "--concurrency",
            "1",
            "--yes",
            "-o",
            "json",
        ],
    );
    let report = json(&o);
    assert_eq!(report["resumed"], true, "{report:#}");
    assert_eq!(report["outcome"], "done");
    assert_eq!(report["totals"]["changed"], 4, "{report:#}");
    let s = steps(&report);
    for done_before in ["lab-1-2", "lab-1-3"] {
        let (_, outcome) = s.iter().find(|(i, _)| i == done_before).unwrap();
        assert_eq!(outcome, "skipped", "{done_before} was redone: {report:#}");
    }
    let runs = json(&dbshift(dir, &["runs", "-o", "json"]));
    let rotations: Vec<&Value> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "ca-rotate")
        .collect();
    assert_eq!(rotations.len(), 1, "one run, continued: {runs:#}");
    assert_eq!(rotations[0]["status"], "done");
    let run_id = rotations[0]["id"].as_str().unwrap().to_string();
    assert_eq!(on(dir, "lab-ca-2026"), 6);
    assert_openssl_verifies(dir, "lab-ca-2026");

    // A finished run cannot be resumed.
    let o = dbshift(dir, &["resume", &run_id, "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // Back to the old CA in restart mode, killed after one, finished by `dbshift resume`.
    let args = [
        "ca-rotate",
        "--to",
        "lab-ca-2024",
        "--mode",
        "restart",
        "--concurrency",
        "2",
        "--yes",
        "-o",
        "json",
    ];
    let id = run_crashing(dir, &args, 1);
    cli(dir).resume(&id, "killed after one instance");
    assert_eq!(on(dir, "lab-ca-2024"), 6);
    assert_openssl_verifies(dir, "lab-ca-2024");
    let inv = json(&dbshift(dir, &["inventory", "-o", "json"]));
    for r in inv.as_array().unwrap() {
        if r["role"] == "reader" {
            assert_eq!(r["replication"]["io_running"], "Yes", "{r:#}");
            assert_eq!(r["replication"]["sql_running"], true, "{r:#}");
        }
    }
}
