//! The crash half of the fault matrix for CA rotation, as a user runs dbshift: `kill -9`
//! (DBSHIFT_CRASH_AT) while the trust bundle is deployed, at the start of each instance's
//! action, inside its health gate (the rollout's wait), after it, and at the boundaries of
//! the switchover core inside a failover-first rotation; each time `dbshift resume <run>`
//! finishes the rotation. Under an application writer through `lab-1` and the 10 ms
//! `read_only` sampler the whole time; afterwards the GTID history, every acknowledged write,
//! equal checksums, and no password in dbshift's output at `-vv` or in the journal. The
//! crash after N instances of a larger fleet is in `ca_rotate.rs`. Run with `make test` (or
//! `make test-faults`).

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{dbshift_env, json, text, CliLab};
use dbshift_provider::local::Lab;
use dbshift_testkit::{
    allowed_writers, assert_caught_up_and_equal, assert_no_secret, lab_secrets, Scenario,
};
use serde_json::Value;

const OLD: &str = "lab-ca-2024";
const NEW: &str = "lab-ca-2026";

struct Cli<'a> {
    dir: &'a Path,
    printed: Vec<u8>,
}

impl Cli<'_> {
    fn run(&mut self, args: &[&str], crash_at: Option<&str>) -> Output {
        let mut all = vec!["-vv"];
        all.extend_from_slice(args);
        let env: Vec<(&str, &str)> = crash_at
            .map(|at| ("DBSHIFT_CRASH_AT", at))
            .into_iter()
            .collect();
        let o = dbshift_env(self.dir, &all, &env);
        self.printed.extend_from_slice(&o.stdout);
        self.printed.extend_from_slice(&o.stderr);
        o
    }

    /// The CA of every instance, from `ca list`.
    fn cas(&mut self) -> Vec<(String, String)> {
        let v = json(&self.run(&["ca", "list", "-o", "json"], None));
        let mut out: Vec<(String, String)> = v
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| {
                let ca = c["id"].as_str().unwrap().to_string();
                c["instances"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(move |i| (i.as_str().unwrap().to_string(), ca.clone()))
            })
            .collect();
        out.sort();
        out
    }

    /// Exactly one writable instance, the one the cluster name resolves to, and every other
    /// one replicating (polled with a deadline); gives its id.
    fn sole_writer(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let inv = json(&self.run(&["inventory", "-o", "json"], None));
            let rows = inv.as_array().unwrap();
            let writable: Vec<&Value> = rows
                .iter()
                .filter(|r| r["replication"]["read_only"] == false)
                .collect();
            assert_eq!(writable.len(), 1, "exactly one writable server: {inv:#}");
            let w = writable[0]["id"].as_str().unwrap().to_string();
            let named: Vec<&Value> = rows.iter().filter(|r| r["role"] == "writer").collect();
            let healthy = rows.iter().filter(|r| r["id"] != w.as_str()).all(|r| {
                r["replication"]["io_running"] == "Yes" && r["replication"]["sql_running"] == true
            });
            if healthy && named.len() == 1 && named[0]["id"] == w.as_str() {
                return w;
            }
            assert!(
                Instant::now() < deadline,
                "replication did not become healthy: {inv:#}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Rotate every instance to `to` in `mode`, killed at `at`; then `resume` must finish it.
    fn crash_and_resume(&mut self, to: &str, mode: &str, at: &str) {
        let args = [
            "ca-rotate",
            "--to",
            to,
            "--mode",
            mode,
            "--yes",
            "-o",
            "json",
        ];
        let o = self.run(&args, Some(at));
        assert_eq!(
            o.status.code(),
            None,
            "{at}: dbshift must have been killed: {}",
            text(&o)
        );
        let runs = json(&self.run(&["runs", "-o", "json"], None));
        let run = runs
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == "ca-rotate" && r["status"] == "running")
            .unwrap_or_else(|| panic!("{at}: an unfinished rotation: {runs:#}"))["id"]
            .as_str()
            .unwrap()
            .to_string();
        let o = self.run(&["resume", &run, "--yes", "-o", "json"], None);
        let report = json(&o);
        assert_eq!(report["outcome"], "done", "{at}: {report:#}");
        assert!(
            self.cas().iter().all(|(_, ca)| ca == to),
            "{at}: every instance on {to}: {:?}",
            self.cas()
        );
        self.sole_writer();
    }
}

#[test]
fn kill_9_at_every_step_of_a_ca_rotation_then_resume() {
    let lab_guard = CliLab::up(1, 1);
    let dir = lab_guard.dir.clone();
    let mut cli = Cli {
        dir: &dir,
        printed: Vec::new(),
    };
    assert_eq!(cli.sole_writer(), "lab-1-1");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lab = Lab::open(&dir).unwrap();
    let secrets = lab_secrets(&lab);
    let sc = rt.block_on(Scenario::start(&lab, "lab-1", "f_ca_crash"));

    // The trust bundle: killed once it is journaled as begun, and once it is deployed but not
    // journaled as such. Between the two, back to the old CA alone.
    cli.crash_and_resume(NEW, "no-restart", "ca-rotate:trust:begin");
    let o = cli.run(
        &[
            "ca-rotate",
            "--to",
            OLD,
            "--mode",
            "no-restart",
            "--drop-old-trust",
            "--yes",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    cli.crash_and_resume(NEW, "no-restart", "ca-rotate:trust:run");

    // Each instance's action (readers first): begun, inside the health gate, ended.
    let mut to = OLD;
    for at in [
        "rollout:lab-1-2:no-restart:begin",
        "rollout:lab-1-2:no-restart:gate",
        "rollout:#1:end",
        "rollout:lab-1-1:no-restart:begin",
        "rollout:lab-1-1:no-restart:gate",
        "rollout:#2:end",
    ] {
        cli.crash_and_resume(to, "no-restart", at);
        to = if to == OLD { NEW } else { OLD };
    }

    // Failover-first: the writer moves through the switchover core inside the rotation; killed
    // at the core's boundaries around the point of no return and inside its wait.
    for at in [
        "switchover:fence:run",
        "switchover:wait:begin",
        "switchover:wait:run",
        "switchover:point_of_no_return:run",
        "switchover:promote:end",
        "switchover:demote_old_writer:begin",
    ] {
        let before = cli.sole_writer();
        cli.crash_and_resume(to, "failover-first", at);
        assert_ne!(cli.sole_writer(), before, "{at}: the writer moved");
        to = if to == OLD { NEW } else { OLD };
    }

    let runs = json(&cli.run(&["runs", "-o", "json"], None));
    for r in runs.as_array().unwrap() {
        assert_eq!(r["status"], "done", "{r:#}");
    }
    let writer = cli.sole_writer();
    let other = if writer == "lab-1-1" {
        "lab-1-2"
    } else {
        "lab-1-1"
    };
    let allowed = allowed_writers(&lab, "lab-1", &["lab-1-1", "lab-1-2"]);
    let report = rt.block_on(sc.finish(&lab, &allowed));
    assert!(report.acked > 100, "{}", report.acked);
    rt.block_on(assert_caught_up_and_equal(
        &lab,
        &writer,
        &[other],
        &["app.f_ca_crash"],
        Duration::from_secs(60),
    ));

    assert_no_secret(&secrets, "dbshift's output at -vv", &cli.printed);
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("journal.sqlite") {
            assert_no_secret(&secrets, &name, &std::fs::read(entry.path()).unwrap());
        }
    }
}
