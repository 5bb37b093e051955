//! Helpers shared by the CLI tests: run the `dbshift` binary as a user would, read its output,
//! and take a lab built by the binary down even when a test panics.
// Each test file uses a part of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Run `dbshift --dir DIR ARGS` with `env` set, and none of dbshift's variables inherited.
pub fn dbshift_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    command(dir, args, env)
        .output()
        .expect("the dbshift binary runs")
}

/// `dbshift --dir DIR ARGS` with `env` set and none of dbshift's variables inherited, to run
/// or to start (a second terminal).
pub fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dbshift"));
    c.arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("DBSHIFT_LAB_DIR")
        .env_remove("DBSHIFT_OUTPUT")
        .env_remove("DBSHIFT_CONFIG")
        .env_remove("DBSHIFT_PROBE_PASSWORD")
        .env_remove("DBSHIFT_CRASH_AT")
        .env_remove("DBSHIFT_PAUSE_AT");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Run `dbshift --dir DIR ARGS`.
pub fn dbshift(dir: &Path, args: &[&str]) -> Output {
    dbshift_env(dir, args, &[])
}

/// Exit code, stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The JSON a successful command printed.
pub fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// Takes the lab down even when the test panics: the CLI's servers are not tied to the test.
pub struct LabGuard(pub PathBuf);

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = dbshift(&self.0, &["lab", "down", "--purge"]);
    }
}

/// A lab built by the binary in a temp dir (`lab up --clusters C --replicas R`), taken down
/// and deleted when dropped, even when the test panics.
pub struct CliLab {
    pub dir: PathBuf,
    // Dropped after `drop` below has taken the lab down.
    _tmp: tempfile::TempDir,
}

impl CliLab {
    pub fn up(clusters: u32, replicas: u32) -> CliLab {
        let tmp = tempfile::tempdir().expect("a temp dir can be made");
        let dir = tmp.path().join("lab");
        let (c, r) = (clusters.to_string(), replicas.to_string());
        let o = dbshift(
            &dir,
            &[
                "lab",
                "up",
                "--clusters",
                &c,
                "--replicas",
                &r,
                "-o",
                "json",
            ],
        );
        let lab = CliLab { dir, _tmp: tmp };
        json(&o);
        lab
    }
}

impl Drop for CliLab {
    fn drop(&mut self) {
        let _ = dbshift(&self.dir, &["lab", "down", "--purge"]);
    }
}
