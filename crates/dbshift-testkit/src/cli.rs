//! The `dbshift` binary as a user runs it, and the crash loop every workflow's tests run with
//! it: a command killed by dbshift itself at a named crash point (`DBSHIFT_CRASH_AT`, SIGKILL),
//! the run it leaves `running` in the journal, then `dbshift resume` finishing it; and after
//! each, exactly one writable server with the others replicating.
//!
//! The binary's path comes from the test (`env!("CARGO_BIN_EXE_dbshift")` exists only in the
//! CLI crate's tests), and so do the crash point names: the testkit passes them through as
//! strings and knows no workflow. Nothing here changes a server but through the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::wait::eventually_blocking;

/// dbshift's variables that a test never inherits from its environment.
const SCRUBBED: &[&str] = &[
    "DBSHIFT_LAB_DIR",
    "DBSHIFT_OUTPUT",
    "DBSHIFT_CONFIG",
    "DBSHIFT_PROBE_PASSWORD",
    "DBSHIFT_CRASH_AT",
    "DBSHIFT_PAUSE_AT",
    "DBSHIFT_PROVIDER",
    "DBSHIFT_FLEET",
    "DBSHIFT_STATE",
];

/// How long [`Dbshift::sole_writer`] waits for replication to settle.
const SETTLE: Duration = Duration::from_secs(60);

/// `BIN --dir DIR ARGS` with `env` set and none of dbshift's variables inherited, to run or to
/// start (a second terminal).
pub fn command(bin: &Path, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(bin);
    c.arg("--dir").arg(dir).args(args);
    for var in SCRUBBED {
        c.env_remove(var);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
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

/// The binary pointed at one lab directory; see the module documentation.
pub struct Dbshift {
    bin: PathBuf,
    dir: PathBuf,
    verbose: bool,
    printed: Vec<u8>,
}

impl Dbshift {
    /// `bin --dir dir ...`.
    pub fn new(bin: impl Into<PathBuf>, dir: &Path) -> Dbshift {
        Dbshift {
            bin: bin.into(),
            dir: dir.to_path_buf(),
            verbose: false,
            printed: Vec::new(),
        }
    }

    /// Every command with `-vv`, and everything printed kept for a scan of secrets
    /// ([`Self::printed`]).
    pub fn verbose(mut self) -> Dbshift {
        self.verbose = true;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Everything the commands printed, when [`Self::verbose`].
    pub fn printed(&self) -> &[u8] {
        &self.printed
    }

    /// Keep what a command run outside [`Self::run`] printed (a child the test killed itself).
    pub fn keep_printed(&mut self, o: &Output) {
        if self.verbose {
            self.printed.extend_from_slice(&o.stdout);
            self.printed.extend_from_slice(&o.stderr);
        }
    }

    /// The command [`Self::run`] runs, with `env` set, to start it as a child.
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut all = Vec::with_capacity(args.len() + 1);
        if self.verbose {
            all.push("-vv");
        }
        all.extend_from_slice(args);
        command(&self.bin, &self.dir, &all, env)
    }

    /// Run `args`, killed by dbshift itself at `crash_at` (`DBSHIFT_CRASH_AT`) when given.
    pub fn run(&mut self, args: &[&str], crash_at: Option<&str>) -> Output {
        let env: Vec<(&str, &str)> = crash_at
            .map(|at| ("DBSHIFT_CRASH_AT", at))
            .into_iter()
            .collect();
        let o = self
            .command(args, &env)
            .output()
            .expect("the dbshift binary runs");
        self.keep_printed(&o);
        o
    }

    /// The JSON of a command that must succeed.
    pub fn json(&mut self, args: &[&str]) -> Value {
        json(&self.run(args, None))
    }

    /// `dbshift runs -o json`, newest first.
    pub fn runs(&mut self) -> Vec<Value> {
        match self.json(&["runs", "-o", "json"]) {
            Value::Array(runs) => runs,
            other => panic!("`runs` gave no list: {other:#}"),
        }
    }

    /// The newest run's id and status.
    pub fn last_run(&mut self) -> (String, String) {
        let runs = self.runs();
        let r = runs.first().expect("a run in the journal");
        (
            r["id"].as_str().expect("a run id").to_string(),
            r["status"].as_str().expect("a run status").to_string(),
        )
    }

    /// Run `args` with `DBSHIFT_CRASH_AT=at`: dbshift must have been killed there (no exit
    /// code), and the newest run of `kind` left `running`; gives that run's id.
    pub fn crash(&mut self, args: &[&str], at: &str, kind: &str) -> String {
        let o = self.run(args, Some(at));
        assert_eq!(
            o.status.code(),
            None,
            "{at}: dbshift must have been killed: {}",
            text(&o)
        );
        let runs = self.runs();
        let run = runs
            .iter()
            .find(|r| r["kind"] == kind)
            .unwrap_or_else(|| panic!("{at}: no {kind} run: {runs:#?}"));
        assert_eq!(run["status"], "running", "{at}: {runs:#?}");
        run["id"].as_str().expect("a run id").to_string()
    }

    /// `dbshift resume RUN --yes -o json`: must exit 0 with the outcome `done`; gives the
    /// report.
    pub fn resume(&mut self, run: &str, at: &str) -> Value {
        let o = self.run(&["resume", run, "--yes", "-o", "json"], None);
        assert_eq!(o.status.code(), Some(0), "{at}: {}", text(&o));
        let report = json(&o);
        assert_eq!(report["outcome"], "done", "{at}: {report:#}");
        report
    }

    /// [`Self::crash`] at `at`, then [`Self::resume`] of the run it left; gives the report.
    pub fn crash_and_resume(&mut self, args: &[&str], at: &str, kind: &str) -> Value {
        let run = self.crash(args, at, kind);
        self.resume(&run, at)
    }

    /// The one writable server, once every other replicates from it: at every look exactly
    /// one server is writable, and once replication settled exactly one `writer` row of the
    /// inventory names it (the cluster name resolves to it).
    pub fn sole_writer(&mut self) -> String {
        self.sole_writer_where(|_, inv, w| {
            let writers: Vec<&Value> = inv.iter().filter(|r| r["role"] == "writer").collect();
            assert_eq!(writers.len(), 1, "one writer by name: {inv:#?}");
            assert_eq!(
                writers[0]["id"], w,
                "the name resolves to the writable one: {inv:#?}"
            );
        })
    }

    /// [`Self::sole_writer`] with the test's own check that the name resolves to the writable
    /// server (`names(self, inventory, writable)`, asserting), for labs whose inventory has
    /// more than one writer row (a blue/green deployment).
    pub fn sole_writer_where(
        &mut self,
        mut names: impl FnMut(&mut Dbshift, &[Value], &str),
    ) -> String {
        let (inv, w) = eventually_blocking(SETTLE, "every other server replicating", || {
            let inv = match self.json(&["inventory", "-o", "json"]) {
                Value::Array(rows) => rows,
                other => panic!("`inventory` gave no list: {other:#}"),
            };
            let writable: Vec<&Value> = inv
                .iter()
                .filter(|r| r["replication"]["read_only"] == false)
                .collect();
            assert_eq!(writable.len(), 1, "exactly one writable server: {inv:#?}");
            let w = writable[0]["id"].as_str().expect("an id").to_string();
            let healthy = inv.iter().filter(|r| r["id"] != w.as_str()).all(|r| {
                r["replication"]["io_running"] == "Yes" && r["replication"]["sql_running"] == true
            });
            if healthy {
                Ok((inv, w))
            } else {
                Err(inv)
            }
        });
        names(self, &inv, &w);
        w
    }
}
