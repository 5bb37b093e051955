//! `dbshift failover`, `watch`, `rejoin` and `replica add` as a user runs them: plans, bad
//! input (exit 2), an unplanned failover after `kill -9` of the writer, the old writer rejoined,
//! the watcher stopped by Ctrl-C, a replica added. Run with `make test`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{dbshift, json, text, CliLab};
use dbshift_provider::local::Lab;
use dbshift_testkit::{eventually_blocking, holds, kill_9};

#[test]
fn failover_rejoin_watch_and_replica_add_from_the_command_line() {
    let lab = CliLab::up(1, 2);
    let dir = &lab.dir;

    for args in [
        &["failover", "lab-9", "--plan"][..],
        &["failover", "lab-1", "--to", "lab-1-9", "--plan"],
        &["failover", "lab-1", "--to", "lab-1-1", "--plan"],
        // No terminal to confirm on, and no --yes.
        &["failover", "lab-1"],
        &["rejoin", "lab-1-1", "--yes"],
    ] {
        let o = dbshift(dir, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
    }
    let plan = json(&dbshift(
        dir,
        &["failover", "lab-1", "--plan", "-o", "json"],
    ));
    assert_eq!(plan["mode"], "planned", "{plan:#}");

    kill_9(&Lab::open(dir).unwrap(), "lab-1-1");
    let plan = eventually_blocking(Duration::from_secs(20), "an unplanned failover", || {
        let plan = json(&dbshift(
            dir,
            &["failover", "lab-1", "--plan", "-o", "json"],
        ));
        holds(plan["mode"] == "unplanned", plan.clone()).map(|()| plan)
    });
    assert_eq!(plan["new_writer"], "lab-1-2");
    let done = json(&dbshift(dir, &["failover", "lab-1", "--yes", "-o", "json"]));
    assert_eq!(done["mode"], "unplanned", "{done:#}");
    assert_eq!(done["new_writer"], "lab-1-2");
    assert_eq!(done["repointed"][0], "lab-1-3");
    for phase in [
        "detection_ms",
        "fencing_ms",
        "promotion_ms",
        "repointing_ms",
    ] {
        assert!(done["phases"][phase].is_u64(), "{phase}: {done:#}");
    }
    let o = dbshift(dir, &["resolve", "lab-1"]);
    let port = port_of(dir, "lab-1-2");
    assert!(text(&o).contains(&format!(":{port}")), "{}", text(&o));

    let o = dbshift(dir, &["rejoin", "lab-1-2", "--yes"]);
    assert_eq!(o.status.code(), Some(2), "the writer: {}", text(&o));
    let rejoined = json(&dbshift(dir, &["rejoin", "lab-1-1", "--yes", "-o", "json"]));
    assert_eq!(rejoined["outcome"], "rejoined", "{rejoined:#}");
    assert_eq!(rejoined["started"], true);

    // The watcher: a line per event, stopped cleanly by Ctrl-C (SIGINT).
    let mut child = Command::new(env!("CARGO_BIN_EXE_dbshift"))
        .arg("--dir")
        .arg(dir)
        .args(["watch", "lab-1", "--interval", "200ms", "-o", "json"])
        .env_remove("DBSHIFT_OUTPUT")
        .env_remove("DBSHIFT_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its lines as they come, so that Ctrl-C goes once it has started, not after a guess.
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let first = lines
        .recv_timeout(Duration::from_secs(20))
        .expect("the watcher printed its first event within 20 s");
    // SAFETY: kill(2) on the child this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let o = child.wait_with_output().unwrap();
    reader.join().unwrap();
    let printed: Vec<String> = std::iter::once(first).chain(lines.iter()).collect();
    assert!(o.status.success(), "{}\n{printed:#?}", text(&o));
    let events: Vec<serde_json::Value> = printed
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.first().unwrap()["event"], "started", "{events:?}");
    assert_eq!(events.first().unwrap()["writer"], "lab-1-2");
    assert_eq!(events.last().unwrap()["event"], "stopped", "{events:?}");

    let added = json(&dbshift(
        dir,
        &[
            "replica", "add", "lab-1", "--count", "1", "--yes", "-o", "json",
        ],
    ));
    assert_eq!(added["instances"][0], "lab-1-4", "{added:#}");
    let inv = json(&dbshift(dir, &["inventory", "-o", "json"]));
    let new = inv
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "lab-1-4")
        .unwrap_or_else(|| panic!("{inv:#}"));
    assert_eq!(new["replication"]["io_running"], "Yes", "{new:#}");
    let o = dbshift(dir, &["replica", "add", "lab-9", "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

fn port_of(dir: &std::path::Path, id: &str) -> u64 {
    let s = json(&dbshift(dir, &["lab", "status", "-o", "json"]));
    s["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .and_then(|i| i["endpoint"]["port"].as_u64())
        .unwrap()
}
