//! The `dbshift` binary as a user runs it: the acceptance of the lab, inventory, resolve,
//! reboot and down, and bad input that exits 2 and changes nothing. Run with `make test`.

mod common;

use std::time::{Duration, Instant};

use common::{dbshift, json, text, LabGuard};
use serde_json::Value;

fn lab_pids(status: &Value) -> Vec<u64> {
    status["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["pid"].as_u64())
        .collect()
}

#[test]
fn lab_of_two_clusters_inventory_reboot_and_down() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    let _guard = LabGuard(dir.clone());

    let up = dbshift(
        &dir,
        &[
            "lab",
            "up",
            "--clusters",
            "2",
            "--replicas",
            "2",
            "--output",
            "json",
        ],
    );
    let report = json(&up);
    assert_eq!(report["created"], true);
    assert_eq!(report["started"].as_array().unwrap().len(), 6);
    eprintln!("lab up took {} ms", report["elapsed_ms"]);

    let status = json(&dbshift(&dir, &["lab", "status", "--output", "json"]));
    assert_eq!(status["instances"].as_array().unwrap().len(), 6);
    assert_eq!(status["clusters"].as_array().unwrap().len(), 2);
    for who in ["admin", "replication", "app"] {
        assert!(status["users"][who]["password"].as_str().unwrap().len() >= 16);
    }
    let pids = lab_pids(&status);
    assert_eq!(pids.len(), 6);

    // Replication may need a moment for the last event; lag must reach 0 everywhere.
    let started = Instant::now();
    let inv = loop {
        let inv = json(&dbshift(&dir, &["inventory", "--output", "json"]));
        let rows = inv.as_array().unwrap();
        let caught_up = rows.iter().all(|r| {
            r["role"] == "writer"
                || (r["replication"]["io_running"] == "Yes"
                    && r["replication"]["sql_running"] == true
                    && r["replication"]["lag_transactions"] == 0
                    && r["replication"]["lag_seconds"] == 0)
        });
        if caught_up || started.elapsed() > Duration::from_secs(20) {
            break inv;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let rows = inv.as_array().unwrap();
    assert_eq!(rows.len(), 6, "{inv:#}");
    assert_eq!(rows.iter().filter(|r| r["role"] == "writer").count(), 2);
    for r in rows {
        assert_eq!(r["status"], "available", "{r:#}");
        assert_eq!(r["engine"], "mariadb");
        assert_eq!(r["encrypted"], false);
        assert!(r["ca"].as_str().unwrap().starts_with("lab-ca-"));
        if r["role"] == "reader" {
            assert_eq!(r["replication"]["io_running"], "Yes", "{r:#}");
            assert_eq!(r["replication"]["sql_running"], true, "{r:#}");
            assert_eq!(r["replication"]["lag_transactions"], 0, "{r:#}");
            assert_eq!(r["replication"]["lag_seconds"], 0, "{r:#}");
            assert!(r["replication"]["last_error"].is_null(), "{r:#}");
        }
    }

    // The cluster name resolves to its writer.
    let ep = json(&dbshift(&dir, &["resolve", "lab-2", "--output", "json"]));
    let writer2 = &status["clusters"][1]["endpoint"];
    assert_eq!(&ep, writer2);

    // Idempotent: a second up starts nothing.
    let again = json(&dbshift(&dir, &["lab", "up", "--output", "json"]));
    assert_eq!(again["created"], false);
    assert_eq!(again["started"].as_array().unwrap().len(), 0);
    assert_eq!(again["already_running"].as_array().unwrap().len(), 6);

    // Reboot: unknown instance is bad input; a known one comes back with a new PID.
    let bad = dbshift(&dir, &["reboot", "lab-1-9"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("unknown instance"),
        "{}",
        text(&bad)
    );
    let rb = dbshift(&dir, &["reboot", "lab-1-2"]);
    assert!(rb.status.success(), "{}", text(&rb));
    let status2 = json(&dbshift(&dir, &["lab", "status", "--output", "json"]));
    let new_pids = lab_pids(&status2);
    assert_eq!(new_pids.len(), 6);
    assert_eq!(pids.iter().filter(|p| !new_pids.contains(p)).count(), 1);

    let down = dbshift(&dir, &["lab", "down"]);
    assert!(down.status.success(), "{}", text(&down));
    for pid in new_pids {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .map(|c| c.contains("mariadbd"))
            .unwrap_or(false);
        assert!(!alive, "mariadbd {pid} survived lab down");
    }
    let inv = json(&dbshift(&dir, &["inventory", "--output", "json"]));
    assert!(inv
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["status"] == "stopped"));
}

#[test]
fn bad_input_exits_2_with_a_clear_message_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();

    let dir = tmp.path().join("zero");
    let o = dbshift(&dir, &["lab", "up", "--clusters", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--clusters must be at least 1"));
    assert!(!dir.exists());

    let dir = tmp.path().join("tinypool");
    let o = dbshift(&dir, &["lab", "up", "--buffer-pool-mb", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--buffer-pool-mb 1"));
    assert!(!dir.exists());

    let dir = tmp.path().join("nobin");
    let o = dbshift(&dir, &["lab", "up", "--mariadbd", "/nonexistent/mariadbd"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("apt-get install -y mariadb-server"));
    assert!(!dir.exists());

    let dir = tmp.path().join("nolab");
    let o = dbshift(&dir, &["inventory"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("dbshift lab up"),
        "{}",
        text(&o)
    );

    let dir = tmp.path().join("damaged");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("lab.json"), "garbage").unwrap();
    let o = dbshift(&dir, &["lab", "status"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("damaged"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("lab.json")).unwrap(),
        "garbage"
    );

    let o = dbshift(&dir, &["reboot", "x", "--timeout", "soon"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tmp.path().join("port");
    let o = dbshift(&dir, &["lab", "up", "--base-port", &port]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already in use"),
        "{}",
        text(&o)
    );
    assert!(!dir.exists());
}
