//! `dbshift probe` as a user runs it: a short probe of a lab built by the binary, its JSON
//! summary and report files, and bad input that exits 2 and writes nothing.
//! Run with `make test`; needs MariaDB installed.

mod common;

use common::{dbshift_env as dbshift, json, text, CliLab};

use serde_json::Value;

/// One lab at a time (each test builds its own): the machine runs few servers at once.
static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_lab() -> std::sync::MutexGuard<'static, ()> {
    ONE_LAB.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn probe_a_lab_cluster_then_refuse_bad_input() {
    let _one = one_lab();
    let lab = CliLab::up(1, 1);
    let dir = lab.dir.clone();
    let tmp = tempfile::tempdir().unwrap();
    let status = json(&dbshift(&dir, &["lab", "status", "--output", "json"], &[]));
    let password = status["users"]["app"]["password"]
        .as_str()
        .unwrap()
        .to_string();
    let port = json(&dbshift(
        &dir,
        &["resolve", "lab-1", "--output", "json"],
        &[],
    ))["port"]
        .as_u64()
        .unwrap();

    let report = tmp.path().join("report");
    let report_s = report.to_str().unwrap();
    let s = json(&dbshift(
        &dir,
        &[
            "probe",
            "--target",
            "lab-1",
            "--duration",
            "3s",
            "--output",
            "json",
            "--report-dir",
            report_s,
        ],
        &[],
    ));
    assert_eq!(s["target"], "lab-1");
    assert!(s["run_id"].as_str().unwrap().len() > 10);
    let d = s["duration_ms"].as_f64().unwrap();
    assert!((2900.0..5000.0).contains(&d), "duration {d}");
    for kind in ["write", "read", "connect"] {
        let k = &s["kinds"][kind];
        assert!(k["attempted"].as_u64().unwrap() > 0, "{kind}: {k}");
        assert!(k["succeeded"].as_u64().unwrap() > 0, "{kind}: {k}");
        for f in ["failed", "indeterminate"] {
            assert!(k[f].is_u64(), "{kind}.{f}");
        }
        for f in ["p50_ms", "p99_ms", "max_ms"] {
            assert!(k["latency_ms"][f].as_f64().unwrap() > 0.0, "{kind}.{f}");
        }
    }
    // 200 writes/s for 3 s.
    let attempted = s["kinds"]["write"]["attempted"].as_u64().unwrap();
    assert!((590..=610).contains(&attempted), "{attempted} writes");
    assert!(s["outages"].is_array());
    assert!(s["max_write_gap_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(s["lost_writes"], serde_json::json!([]));
    assert!(s["indeterminate_writes"].is_u64());
    assert!(s["achieved_write_rate"].as_f64().unwrap() > 0.0);
    assert!(s["audit"]["error"].is_null());
    for f in ["attempts.jsonl", "summary.json", "timeline.svg"] {
        let body = std::fs::read_to_string(report.join(f)).unwrap();
        assert!(!body.contains(&password), "{f} holds the password");
    }

    // The same through a URL, the password from the environment, in the table format.
    let url = format!("mysql://app@127.0.0.1:{port}");
    let o = dbshift(
        &dir,
        &[
            "probe",
            "--target",
            &url,
            "--duration",
            "1s",
            "--report-dir",
            tmp.path().join("r2").to_str().unwrap(),
        ],
        &[("DBSHIFT_PROBE_PASSWORD", &password)],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("lost writes: 0"), "{out}");
    assert!(out.contains("max write gap"), "{out}");
    assert!(!out.contains(&password));

    // Bad input: exit 2, a message saying what to do, no report.
    let none = tmp.path().join("none");
    let none_s = none.to_str().unwrap();
    let wrong_pw = format!("mysql://app:wrong@127.0.0.1:{port}");
    let plain = format!("mysql://app:{password}@127.0.0.1:{port}");
    let other_ca = tmp.path().join("other-ca.pem");
    std::fs::write(&other_ca, "not a certificate\n").unwrap();
    let other_ca = other_ca.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--target", "lab-1", "--rate", "0"], "rate"),
        (vec!["--target", "lab-1", "--rate", "-5"], "rate"),
        (vec!["--target", "lab-1", "--rate", "NaN"], "rate"),
        (vec!["--target", "lab-7"], "lab-7"),
        (vec!["--target", &wrong_pw], "password"),
        (vec!["--target", "mysql://app@127.0.0.1:1"], "127.0.0.1:1"),
        (vec!["--target", "mysql://app@127.0.0.1"], "port"),
        (vec!["--target", "lab-1-2"], "read-only"),
        (vec!["--target", &plain, "--tls-ca", other_ca], "--tls-ca"),
    ];
    for (args, says) in cases {
        let mut all = vec!["probe", "--duration", "1s", "--report-dir", none_s];
        all.extend(args.iter().copied());
        let o = dbshift(&dir, &all, &[]);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(says),
            "{args:?} should mention {says:?}: {err}"
        );
        assert!(!err.contains("wrong@"), "the password is not echoed: {err}");
        assert!(
            !err.contains(&password),
            "the password is not echoed: {err}"
        );
        assert!(!none.exists(), "{args:?} wrote a report");
    }
}

/// A cluster name follows its writer: probe lab-1 while `dbshift switchover` moves the writer;
/// the writes go to both servers, nothing is lost, and the audit reads the new writer.
#[test]
fn the_probe_follows_the_writer_through_a_switchover() {
    let _one = one_lab();
    let lab = CliLab::up(1, 1);
    let dir = lab.dir.clone();
    let tmp = tempfile::tempdir().unwrap();
    let old = json(&dbshift(
        &dir,
        &["resolve", "lab-1", "--output", "json"],
        &[],
    ));
    let report = tmp.path().join("report");
    let switch = {
        let (dir, attempts) = (dir.clone(), report.join("attempts.jsonl"));
        std::thread::spawn(move || {
            // Switch once the probe is writing (its attempts file has lines), not after a guess.
            let started = std::time::Instant::now();
            while std::fs::read_to_string(&attempts)
                .map(|s| s.lines().count() < 50)
                .unwrap_or(true)
            {
                assert!(started.elapsed().as_secs() < 30, "the probe never started");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            dbshift(
                &dir,
                &["switchover", "lab-1", "--to", "lab-1-2", "--yes"],
                &[],
            )
        })
    };
    let s = json(&dbshift(
        &dir,
        &[
            "probe",
            "--target",
            "lab-1",
            "--duration",
            "6s",
            "--output",
            "json",
            "--report-dir",
            report.to_str().unwrap(),
        ],
        &[],
    ));
    let sw = switch.join().unwrap();
    assert!(sw.status.success(), "switchover: {}", text(&sw));
    let new = json(&dbshift(
        &dir,
        &["resolve", "lab-1", "--output", "json"],
        &[],
    ));
    assert_ne!(old, new, "the writer moved");
    let new_ep = format!("{}:{}", new["host"].as_str().unwrap(), new["port"]);
    let old_ep = format!("{}:{}", old["host"].as_str().unwrap(), old["port"]);
    assert_eq!(s["lost_writes"], serde_json::json!([]), "{s}");
    assert_eq!(s["audit"]["endpoint"], new_ep.as_str(), "{s}");
    // Acknowledged writes on the old writer, then on the new one.
    let attempts = std::fs::read_to_string(report.join("attempts.jsonl")).unwrap();
    let ok_on = |ep: &str| {
        attempts
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|a| a["kind"] == "write" && a["outcome"] == "ok" && a["endpoint"] == ep)
            .count()
    };
    assert!(
        ok_on(&old_ep) > 0 && ok_on(&new_ep) > 0,
        "{old_ep} then {new_ep}"
    );
}
