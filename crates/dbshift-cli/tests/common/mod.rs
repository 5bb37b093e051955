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

/// A shell `case` on `$1`, a lab server's port, that sets `d` (its directory) and `bin` (its
/// server binary), as an operator's scripts would find a server on their hosts.
pub fn lab_port_case(lab: &dbshift_testkit::TestLab) -> String {
    let st = lab.lab().state();
    let mut cases = String::new();
    for rec in &st.instances {
        let d = lab.lab().paths(&rec.id).dir;
        cases.push_str(&format!(
            "  {}) d={:?}; bin={:?};;\n",
            rec.port,
            d.display().to_string(),
            rec.engine_binary.display().to_string()
        ));
    }
    format!("case \"$1\" in\n{cases}  *) echo \"no lab server on port $1\" >&2; exit 2;;\nesac\n")
}

/// The fleet file's `stop` and `start` commands for the lab, as an operator's would be: two
/// scripts taking a port, one that kills the server by its pid file (`kill -9`, done once the
/// process is gone; nothing to do when it is not running) and one that starts it in the
/// background on its option file, in the replica role (a former writer's crash recovery then
/// drops what no replica acknowledged). Gives their paths.
pub fn lab_commands(lab: &dbshift_testkit::TestLab, dir: &Path) -> (PathBuf, PathBuf) {
    let pick = lab_port_case(lab);
    let stop = dir.join("stop.sh");
    std::fs::write(
        &stop,
        format!(
            "{pick}pid=$(cat \"$d/mysqld.pid\" 2>/dev/null) || exit 0\n\
             kill -9 \"$pid\" 2>/dev/null || exit 0\n\
             n=0; while kill -0 \"$pid\" 2>/dev/null && [ $n -lt 200 ]; do sleep 0.05; n=$((n+1)); done\n"
        ),
    )
    .unwrap();
    let start = dir.join("start.sh");
    std::fs::write(
        &start,
        format!(
            "{pick}user=; [ \"$(id -u)\" = 0 ] && user=--user=root\n\
             rm -f \"$d/mysqld.pid\"\n\
             setsid \"$bin\" --defaults-file=\"$d/my.cnf\" --init-rpl-role=SLAVE $user \\\n\
             </dev/null >>\"$d/error.log\" 2>&1 &\n"
        ),
    )
    .unwrap();
    (stop, start)
}

/// `dbshift --provider self-managed --fleet FLEET ARGS` from `dir` (its own working directory,
/// journal in `dir/state`) with `env` set, to run or to start.
pub fn fleet_command(dir: &Path, fleet: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    let fleet = fleet.display().to_string();
    let mut all = vec!["--provider", "self-managed", "--fleet", fleet.as_str()];
    all.extend_from_slice(args);
    let mut c = command(&dir.join("state"), &all, env);
    c.current_dir(dir);
    c
}

/// [`fleet_command`] run to its end, off the async runtime.
pub async fn fleet_run(dir: &Path, fleet: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = fleet_command(dir, fleet, env, args);
    tokio::task::spawn_blocking(move || c.output().expect("the dbshift binary runs"))
        .await
        .expect("the command's thread ends")
}
