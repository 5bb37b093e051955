//! `dbshift bluegreen` as a user runs it: bad input exits 2 and changes nothing; create,
//! status, verify, the plan of a switch, and the cleanup of a green that never served. The
//! whole workflow under load is in `dbshift-ops`'s tests and `dbshift demo`'s. Run with
//! `make test`.

mod common;

use std::process::Stdio;

use common::{dbshift, json, text, CliLab};

fn lab_state(lab: &CliLab) -> String {
    std::fs::read_to_string(lab.dir.join("lab.json")).unwrap()
}

fn code(o: &std::process::Output) -> Option<i32> {
    o.status.code()
}

#[test]
fn bad_requests_exit_2_and_a_green_that_never_served_is_removed() {
    let lab = CliLab::up(1, 1);
    let dir = &lab.dir;
    let before = lab_state(&lab);
    for (args, want) in [
        (vec!["bluegreen", "status"], "bluegreen create --source"),
        (
            vec!["bluegreen", "create", "--source", "lab-9"],
            "unknown cluster",
        ),
        (
            vec![
                "bluegreen",
                "create",
                "--source",
                "lab-1",
                "--engine-binary",
                "/nonexistent",
            ],
            "--engine-binary",
        ),
        (
            vec!["bluegreen", "create", "--source", "lab-1", "--name", "a b"],
            "--name",
        ),
        (
            vec!["bluegreen", "switchover", "nope", "--yes"],
            "unknown deployment",
        ),
    ] {
        let o = dbshift(dir, &args);
        assert_eq!(code(&o), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(want), "{args:?}: {}", text(&o));
    }
    assert_eq!(lab_state(&lab), before, "a refused request changed the lab");

    let d = json(&dbshift(
        dir,
        &[
            "bluegreen",
            "create",
            "--source",
            "lab-1",
            "--replicas",
            "0",
            "-o",
            "json",
        ],
    ));
    assert_eq!(d["name"], "lab-1-green");
    assert_eq!(d["serving"], "blue");
    assert_eq!(d["snapshot_taken_on"], "lab-1-2");

    let st = json(&dbshift(dir, &["bluegreen", "status", "-o", "json"]));
    assert_eq!(st["green"]["instances"].as_array().unwrap().len(), 1);
    assert_eq!(st["blue"]["serving"], true);

    let v = json(&dbshift(dir, &["bluegreen", "verify", "-o", "json"]));
    assert_eq!(v["equal"], true, "{v}");

    // Blue serves: nothing to roll back. No --yes and no terminal: nothing happens.
    let o = dbshift(dir, &["bluegreen", "rollback", "--yes"]);
    assert_eq!(code(&o), Some(2), "{}", text(&o));
    assert!(text(&o).contains("already serves"), "{}", text(&o));
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_dbshift"))
        .args(["--dir", dir.to_str().unwrap(), "bluegreen", "switchover"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&o), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--yes"), "{}", text(&o));
    let plan = dbshift(dir, &["bluegreen", "switchover", "--plan"]);
    assert!(plan.status.success(), "{}", text(&plan));
    assert!(
        text(&plan).contains("lab-1-1 -> lab-1-green-1"),
        "{}",
        text(&plan)
    );
    let st = json(&dbshift(dir, &["bluegreen", "status", "-o", "json"]));
    assert_eq!(
        st["deployment"]["serving"], "blue",
        "a plan changed nothing"
    );

    // Blue still serves: the cleanup removes green.
    let o = json(&dbshift(
        dir,
        &["bluegreen", "cleanup", "--yes", "-o", "json"],
    ));
    assert_eq!(o["removed_side"], "green");
    assert_eq!(o["removed"][0], "lab-1-green-1");
    let inv = json(&dbshift(dir, &["inventory", "-o", "json"]));
    assert_eq!(inv.as_array().unwrap().len(), 2);
    assert!(!dir.join("lab-1-green-1").exists());
    let o = dbshift(dir, &["bluegreen", "status"]);
    assert_eq!(code(&o), Some(2), "{}", text(&o));
}
