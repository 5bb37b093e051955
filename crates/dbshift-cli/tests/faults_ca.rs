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

use std::time::Duration;

use common::{cli, json, text, CliLab, Dbshift};
use dbshift_provider::local::Lab;
use dbshift_testkit::{
    allowed_writers, assert_caught_up_and_equal, assert_no_secret, lab_secrets, Scenario,
};

const OLD: &str = "lab-ca-2024";
const NEW: &str = "lab-ca-2026";

/// The CA of every instance, from `ca list`.
fn cas(cli: &mut Dbshift) -> Vec<(String, String)> {
    let v = cli.json(&["ca", "list", "-o", "json"]);
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

/// Rotate every instance to `to` in `mode`, killed at `at`; then `resume` must finish it.
fn crash_and_resume(cli: &mut Dbshift, to: &str, mode: &str, at: &str) {
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
    cli.crash_and_resume(&args, at, "ca-rotate");
    let now = cas(cli);
    assert!(
        now.iter().all(|(_, ca)| ca == to),
        "{at}: every instance on {to}: {now:?}"
    );
    cli.sole_writer();
}

#[test]
fn kill_9_at_every_step_of_a_ca_rotation_then_resume() {
    let lab_guard = CliLab::up(1, 1);
    let dir = lab_guard.dir.clone();
    let mut cli = cli(&dir).verbose();
    assert_eq!(cli.sole_writer(), "lab-1-1");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lab = Lab::open(&dir).unwrap();
    let secrets = lab_secrets(&lab);
    let sc = rt.block_on(Scenario::start(&lab, "lab-1", "f_ca_crash"));

    // The trust bundle: killed once it is journaled as begun, and once it is deployed but not
    // journaled as such. Between the two, back to the old CA alone.
    crash_and_resume(&mut cli, NEW, "no-restart", "ca-rotate:trust:begin");
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
    crash_and_resume(&mut cli, NEW, "no-restart", "ca-rotate:trust:run");

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
        crash_and_resume(&mut cli, to, "no-restart", at);
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
        crash_and_resume(&mut cli, to, "failover-first", at);
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

    assert_no_secret(&secrets, "dbshift's output at -vv", cli.printed());
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("journal.sqlite") {
            assert_no_secret(&secrets, &name, &std::fs::read(entry.path()).unwrap());
        }
    }
}
