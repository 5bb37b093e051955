//! `dbshift demo` as a newcomer runs it: one full demo on a lab of its own (blue/green under a
//! write load, an encrypted green, two verifies, a switchover and a rollback with the probe),
//! its JSON report, its charts, and nothing left running or on disk but the reports; and the
//! refusal of a --lab-dir that holds someone else's files.
//! Run with `make test` (or `cargo test -p dbshift-cli --test demo`); needs MariaDB installed.

mod common;

use std::path::Path;

use common::{dbshift, json, text};

/// PIDs of the servers whose `--defaults-file` lies under `dir`.
fn servers_under(dir: &Path) -> Vec<u32> {
    let prefix = format!("--defaults-file={}/", dir.display());
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if cmdline
            .split(|b| *b == 0)
            .any(|a| String::from_utf8_lossy(a).starts_with(&prefix))
        {
            pids.push(pid);
        }
    }
    pids
}

/// Takes the demo's lab down if the demo itself could not (a panic, a crash).
struct DemoGuard(std::path::PathBuf);

impl Drop for DemoGuard {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = dbshift(&self.0, &["lab", "down", "--purge"]);
        }
    }
}

#[test]
fn the_demo_switches_over_and_back_under_load_and_leaves_only_its_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let demo_dir = tmp.path().join("demo");
    let _guard = DemoGuard(demo_dir.clone());
    // The user's lab (--dir) must not be touched: it does not exist and must not appear.
    let user_lab = tmp.path().join("lab");
    let o = dbshift(
        &user_lab,
        &[
            "demo",
            "--lab-dir",
            demo_dir.to_str().unwrap(),
            "--output",
            "json",
        ],
    );
    let r = json(&o);
    assert_eq!(r["ok"], true, "{r:#}");

    for name in ["switchover", "rollback"] {
        let s = &r[name];
        assert_eq!(s["outcome"], "done", "{name}: {s:#}");
        assert_eq!(s["lost_writes"], 0, "{name}: {s:#}");
        assert!(s["run_id"].as_str().is_some_and(|id| !id.is_empty()));
        assert!(s["write_gap_ms"].as_u64().is_some(), "{name}: {s:#}");
        assert!(s["max_write_gap_ms"].as_f64().is_some(), "{name}: {s:#}");
        assert!(s["probe_writes"].as_u64().unwrap() > 0, "{name}: {s:#}");
        let chart = Path::new(s["chart"].as_str().expect("a chart path"));
        assert!(chart.ends_with("timeline.svg"), "{}", chart.display());
        assert!(chart.is_file(), "{} exists", chart.display());
        assert!(
            !chart.starts_with(&demo_dir),
            "the chart survives the lab: {}",
            chart.display()
        );
    }
    assert_eq!(r["switchover"]["to"], r["rollback"]["from"]);
    assert_eq!(r["switchover"]["from"], r["rollback"]["to"]);

    for name in ["verify", "verify_after_rollback"] {
        let v = &r[name];
        assert_eq!(v["equal"], true, "{name}: {v:#}");
        assert!(v["rows_compared"].as_u64().unwrap() > 0, "{name}: {v:#}");
        assert!(v["rows_per_s"].as_f64().unwrap() > 0.0, "{name}: {v:#}");
        assert!(v["position"].as_str().is_some_and(|p| !p.is_empty()));
    }

    let e = &r["encryption"];
    let total = e["tablespaces_total"].as_u64().unwrap();
    assert!(total > 0, "{e:#}");
    assert_eq!(e["tablespaces_encrypted"].as_u64().unwrap(), total, "{e:#}");
    assert_eq!(e["all_encrypted"], true);

    let load = &r["load"];
    assert!(load["committed"].as_u64().unwrap() > 0, "{load:#}");
    assert!(load["committed_multi_statement"].as_u64().unwrap() > 0);
    for k in ["failed", "indeterminate"] {
        assert!(load[k].as_u64().is_some(), "{k}: {load:#}");
    }

    assert_eq!(r["lab_kept"], false);
    assert!(!demo_dir.exists(), "the demo lab is deleted: {}", text(&o));
    assert!(!user_lab.exists(), "the --dir lab is never made");
    assert!(
        servers_under(&demo_dir).is_empty(),
        "no server of the demo is left running"
    );
    assert!(tmp.path().join("demo-reports").is_dir());
}

#[test]
fn a_lab_dir_holding_other_files_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let theirs = tmp.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::write(theirs.join("notes.txt"), "mine").unwrap();
    let o = dbshift(
        &tmp.path().join("lab"),
        &["demo", "--lab-dir", theirs.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("another --lab-dir"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(theirs.join("notes.txt")).unwrap(),
        "mine"
    );
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 1);
    assert!(!tmp.path().join("theirs-reports").exists());
}
