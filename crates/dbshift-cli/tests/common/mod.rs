//! Helpers shared by the CLI tests: run the `dbshift` binary as a user would, read its output,
//! and take a lab built by the binary down even when a test panics.
// Each test file uses a part of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use dbshift_testkit::cli::{json, text, Dbshift};

/// Run `dbshift --dir DIR ARGS` with `env` set, and none of dbshift's variables inherited.
pub fn dbshift_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    command(dir, args, env)
        .output()
        .expect("the dbshift binary runs")
}

/// `dbshift --dir DIR ARGS` with `env` set and none of dbshift's variables inherited, to run
/// or to start (a second terminal).
pub fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    dbshift_testkit::cli::command(env!("CARGO_BIN_EXE_dbshift").as_ref(), dir, args, env)
}

/// Run `dbshift --dir DIR ARGS`.
pub fn dbshift(dir: &Path, args: &[&str]) -> Output {
    dbshift_env(dir, args, &[])
}

/// This crate's binary pointed at `dir`, for the crash loop (`DBSHIFT_CRASH_AT`, `resume`).
pub fn cli(dir: &Path) -> Dbshift {
    Dbshift::new(env!("CARGO_BIN_EXE_dbshift"), dir)
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
