//! Cluster locks in etcd across working directories (issue 20, first slice): the point of
//! `--state etcd://...` is what file locks cannot do, to see a command of another directory
//! or machine. A lab (a writer, two replicas) is driven as a self-managed fleet (a fleet file
//! naming its servers) by two dbshift processes with different `--dir`s, as two operators on
//! two machines would, both with `--state` on a real 3-member etcd cluster.
//!
//! A switchover held in its wait (`DBSHIFT_PAUSE_AT`) holds the cluster's lock in etcd; a
//! second switchover from the other directory is refused at once with the holder (its pid and
//! what it does), journals nothing and changes nothing; the first ends done and its lock is
//! gone from etcd as it exits, so a switchover from the second directory then runs. A run
//! whose lease runs out while it is held after its guards (every etcd member frozen) stops
//! before its fence with exit 3, nothing changed. A bad
//! `--state` is refused (exit 2) and an unreachable etcd too (exit 1), changing nothing.
//!
//! Needs MariaDB and etcd (`scripts/deps.sh`). Run:
//! `cargo test -p dbshift-cli --test etcd_locks`. About 20 s.
#![cfg(feature = "self-managed")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{json, text};
use dbshift_testkit::{EtcdCluster, TestLab};

/// The variable the fleet file names for the admin password.
const ADMIN_PW_VAR: &str = "DBSHIFT_TEST_ADMIN_PASSWORD";

/// How long a switchover may take here.
const SWITCH_LIMIT: Duration = Duration::from_secs(90);

/// A self-managed fleet file naming the lab's servers (cluster `main`, every server a seed).
fn fleet_file(lab: &TestLab, dir: &Path) -> (PathBuf, Vec<String>) {
    let st = lab.lab().state();
    let ids: Vec<String> = st
        .instances
        .iter()
        .map(|i| format!("127.0.0.1:{}", i.port))
        .collect();
    std::fs::write(
        dir.join("replication.password"),
        format!("{}\n", st.users.replication.password),
    )
    .unwrap();
    let seeds = ids
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "[credentials]\n\
         admin = {{ user = {:?}, password_env = {ADMIN_PW_VAR:?} }}\n\
         replication = {{ user = {:?}, password_file = \"replication.password\" }}\n\
         [tls]\nca_file = {:?}\nverify = \"full\"\n\
         [[cluster]]\nname = \"main\"\nseeds = [{seeds}]\nredirect = \"none\"\n",
        st.users.admin.user,
        st.users.replication.user,
        lab.lab().ca_bundle().display().to_string(),
    );
    let path = dir.join("fleet.toml");
    std::fs::write(&path, text).unwrap();
    (path, ids)
}

/// One operator: a working directory of its own, the fleet file, and `--state`.
struct Operator {
    dir: PathBuf,
    fleet: PathBuf,
    state: String,
    password: String,
}

impl Operator {
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Command {
        let mut all = vec![
            "--provider",
            "self-managed",
            "--fleet",
            self.fleet.to_str().unwrap(),
        ];
        if !self.state.is_empty() {
            all.extend(["--state", self.state.as_str()]);
        }
        all.extend_from_slice(args);
        let mut env = env.to_vec();
        env.push((ADMIN_PW_VAR, &self.password));
        let mut c = common::command(&self.dir, &all, &env);
        c.current_dir(&self.dir);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args, &[]).output().expect("dbshift runs")
    }

    fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Child {
        self.command(args, env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dbshift starts")
    }

    /// The writer, by `inventory`.
    fn writer(&self) -> String {
        let rows = json(&self.run(&["inventory", "-o", "json"]));
        let writers: Vec<String> = rows
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["role"] == "writer")
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(writers.len(), 1, "one writer: {rows}");
        writers[0].clone()
    }

    /// The runs of this operator's journal.
    fn runs(&self) -> usize {
        if !self.dir.join("journal.sqlite").exists() {
            return 0;
        }
        json(&self.run(&["runs", "-o", "json"]))
            .as_array()
            .map_or(0, Vec::len)
    }
}

fn finish(mut child: Child, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_locks_refuse_a_second_switchover_from_another_directory() {
    let etcd = EtcdCluster::start();
    let lab = TestLab::start(1, 2).await;
    let scratch = tempfile::tempdir().unwrap();
    let (fleet, ids) = fleet_file(&lab, scratch.path());
    let password = lab.lab().state().users.admin.password.clone();
    let state = etcd.url("/cli");
    let operator = |name: &str, state: &str| {
        let dir = scratch.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Operator {
            dir,
            fleet: fleet.clone(),
            state: state.to_string(),
            password: password.clone(),
        }
    };
    let (a, b) = (operator("a", &state), operator("b", &state));
    let lock_key = || {
        etcd.etcdctl(&etcd.endpoints(), &["get", "--prefix", "/cli/locks/"])
            .unwrap()
    };

    let writer = a.writer();
    let replicas: Vec<&String> = ids.iter().filter(|i| **i != writer).collect();

    // A switchover held in its wait (the old writer fenced) for three seconds.
    let first = a.spawn(
        &["switchover", "main", "--to", replicas[0], "--yes"],
        &[("DBSHIFT_PAUSE_AT", "switchover:wait:begin:3000")],
    );
    let pid = first.id();
    let started = Instant::now();
    while !lock_key().contains("switchover of main") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the first switchover never took its lock in etcd"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The other operator, in another directory: refused at once, with the holder.
    let asked = Instant::now();
    let refused = b.run(&["switchover", "main", "--to", replicas[1], "--yes"]);
    let took = asked.elapsed();
    let err = String::from_utf8_lossy(&refused.stderr).to_string();
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    for part in [
        "main is being changed by another dbshift command",
        &format!("switchover of main ({writer} -> {})", replicas[0]),
        &format!("pid {pid}"),
        "Nothing was changed",
    ] {
        assert!(err.contains(part), "{part:?} missing: {}", text(&refused));
    }
    assert!(took < Duration::from_secs(3), "refused after {took:?}");
    let mut first = first;
    assert!(
        first.try_wait().unwrap().is_none(),
        "refused while the first still runs, not after it"
    );
    assert_eq!(b.runs(), 0, "the refused command journaled nothing");

    let done = finish(first, SWITCH_LIMIT, "the first switchover");
    assert!(done.status.success(), "{}", text(&done));
    // Its lock went with it: revoked as the command ended.
    assert_eq!(lock_key(), "", "no lock left in etcd");
    assert_eq!(&b.writer(), replicas[0], "only the first switchover acted");

    // Now the other directory's switchover runs.
    let o = b.run(&["switchover", "main", "--to", &writer, "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(a.writer(), writer);
    assert_eq!(b.runs(), 1);

    // A run that loses its lock: held after its guards while every etcd member is frozen
    // for longer than the lease; it stops before its fence, exit 3 with what to do, nothing
    // changed.
    let paused = a.spawn(
        &["switchover", "main", "--to", replicas[0], "--yes"],
        &[("DBSHIFT_PAUSE_AT", "switchover:guards:end:9000")],
    );
    let since = Instant::now();
    while lock_key().is_empty() {
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "the run took no lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for i in 0..3 {
        etcd.pause(i);
    }
    std::thread::sleep(Duration::from_secs(7));
    for i in 0..3 {
        etcd.resume(i);
    }
    let lost = finish(paused, SWITCH_LIMIT, "the switchover that lost its lock");
    assert_eq!(lost.status.code(), Some(3), "{}", text(&lost));
    let err = String::from_utf8_lossy(&lost.stderr).to_string();
    assert!(
        err.contains("lock on main was lost") && err.contains("dbshift resume"),
        "{}",
        text(&lost)
    );
    assert_eq!(
        a.writer(),
        writer,
        "nothing changed after the lock was lost"
    );
    etcd.wait_healthy(Duration::from_secs(30));

    // A bad --state: exit 2 before anything is opened.
    let bad = operator("bad", "etcd://nowhere");
    let o = bad.run(&["switchover", "main", "--to", replicas[0], "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is not host:port"),
        "{}",
        text(&o)
    );
    // etcd unreachable: exit 1, nothing changed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = operator("gone", &format!("etcd://127.0.0.1:{port}"));
    let o = gone.run(&["switchover", "main", "--to", replicas[0], "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot be reached"),
        "{}",
        text(&o)
    );
    assert_eq!(gone.runs(), 0);
    assert_eq!(a.writer(), writer, "nothing changed");
}
