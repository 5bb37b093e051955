//! Never two writers when operators race (issue 15), as two terminals would run dbshift: two
//! switchovers of one cluster started together, twenty times; a second switchover while the
//! first holds the fenced writer in its wait; a run killed after its guards, another
//! switchover, then a stale `resume`; two `watch --auto-failover` of one cluster; blue/green
//! on a cluster that has had switchovers (green knows only each domain's last GTID); a sibling
//! whose `STOP SLAVE` hangs behind a table lock (bounded, reported, resumed); an old writer
//! that took a write after the promotion (not demoted, the write named); the journal
//! purged with its lab, and a run of a purged lab never resumed on a new one.
//!
//! The whole time, an application writer inserts through `lab-1` and the 10 ms sampler reads
//! `read_only` of every server; at the end: never two writable servers, every acknowledged
//! insert on the writer, no write in the cluster's domain by a server that was never its
//! writer, and the rows the same on every server. One lab (a writer and two replicas) for the
//! whole file. Run with `make test`, or `cargo test -p dbshift-cli --test concurrency`.

mod common;

use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{command, dbshift, json, text, CliLab};
use dbshift_provider::local::Lab;
use dbshift_testkit::{allowed_writers, assert_caught_up_and_equal, Scenario};

/// `dbshift --dir DIR ARGS` started, not waited for (a second terminal).
fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Child {
    command(dir, args, env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the dbshift binary starts")
}

/// Wait for a started command, at most `limit`; killed (and the test failed) past it.
fn finish(mut child: Child, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        if child
            .try_wait()
            .expect("the child can be waited for")
            .is_some()
        {
            return child.wait_with_output().expect("its output is read");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().expect("its output is read");
            panic!("{what} still ran after {limit:?}: {}", text(&o));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The writer of lab-1 (by the lab's records) and its two replicas.
fn roles(dir: &Path) -> (String, Vec<String>) {
    let st = json(&dbshift(dir, &["lab", "status", "-o", "json"]));
    let writer = st["clusters"][0]["writer"].as_str().unwrap().to_string();
    let replicas = st["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["cluster"] == "lab-1" && i["id"] != writer.as_str())
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    (writer, replicas)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The newest run: id, kind and status.
fn last_run(dir: &Path) -> (String, String, String) {
    let runs = json(&dbshift(dir, &["runs", "-o", "json"]));
    let r = &runs[0];
    (
        r["id"].as_str().unwrap().to_string(),
        r["kind"].as_str().unwrap().to_string(),
        r["status"].as_str().unwrap().to_string(),
    )
}

/// Wait until a run is journaled as running (the first command holds the cluster).
fn wait_for_running_run(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = dbshift(dir, &["runs", "-o", "json"]);
        if o.status.success() {
            let runs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            if runs
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["status"] == "running"))
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "no run started within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const SWITCH_LIMIT: Duration = Duration::from_secs(90);

#[test]
fn never_two_writers_when_operators_race() {
    let cli = CliLab::up(1, 2);
    let dir = cli.dir.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let lab = Lab::open(&dir).unwrap();
    let sc = rt.block_on(Scenario::start(&lab, "lab-1", "race"));

    // Two switchovers of lab-1, to its two replicas, started together: one runs, the other is
    // refused at once naming the first, and changes nothing. Twenty times.
    for round in 0..20 {
        let (writer, replicas) = roles(&dir);
        let a = spawn(
            &dir,
            &["switchover", "lab-1", "--to", &replicas[0], "--yes"],
            &[],
        );
        let b = spawn(
            &dir,
            &["switchover", "lab-1", "--to", &replicas[1], "--yes"],
            &[],
        );
        let (oa, ob) = (
            finish(a, SWITCH_LIMIT, "switchover A"),
            finish(b, SWITCH_LIMIT, "switchover B"),
        );
        let codes = (oa.status.code(), ob.status.code());
        let (won, lost, target) = match codes {
            (Some(0), Some(1)) => (&oa, &ob, &replicas[0]),
            (Some(1), Some(0)) => (&ob, &oa, &replicas[1]),
            _ => panic!(
                "round {round}: want one done and one refused\nA: {}\nB: {}",
                text(&oa),
                text(&ob)
            ),
        };
        // Refused by the lock, naming the winner; or, had it been so slow that the winner
        // was done before it asked for the lock, refused by its own look at the cluster.
        // Either way nothing changed.
        let why = stderr(lost);
        if why.contains("is being changed by another dbshift command") {
            assert!(
                why.contains("Nothing was changed")
                    && why.contains(&format!("({writer} -> {target})")),
                "round {round}: the refusal names the holder: {}",
                text(lost)
            );
        } else {
            assert!(
                why.contains("is not what this run expects") && why.contains("nothing was changed"),
                "round {round}: {}",
                text(lost)
            );
        }
        assert!(won.status.success());
        assert_eq!(&roles(&dir).0, target, "round {round}");
        rt.block_on(sc.wait_for_writes(10, Duration::from_secs(30)));
    }

    // A switchover held in its wait with the old writer fenced (a slow replica); a second
    // one meanwhile is refused at once, and the first ends done.
    let (writer, replicas) = roles(&dir);
    let a = spawn(
        &dir,
        &["switchover", "lab-1", "--to", &replicas[0], "--yes"],
        &[("DBSHIFT_PAUSE_AT", "switchover:wait:begin:3000")],
    );
    wait_for_running_run(&dir);
    let b = dbshift(
        &dir,
        &["switchover", "lab-1", "--to", &replicas[1], "--yes"],
    );
    assert_eq!(b.status.code(), Some(1), "{}", text(&b));
    assert!(
        stderr(&b).contains(&format!(
            "switchover of lab-1 ({writer} -> {})",
            replicas[0]
        )),
        "{}",
        text(&b)
    );
    let mut a = a;
    assert!(
        a.try_wait().unwrap().is_none(),
        "refused while the first still runs, not after it"
    );
    let oa = finish(a, SWITCH_LIMIT, "the paused switchover");
    assert!(oa.status.success(), "{}", text(&oa));
    assert_eq!(roles(&dir).0, replicas[0]);
    rt.block_on(sc.wait_for_writes(10, Duration::from_secs(30)));

    // A run killed after its guards; another switchover completes; the stale run's resume is
    // refused, changing nothing, and the run is closed.
    let (writer, replicas) = roles(&dir);
    let stale = common::cli(&dir).crash(
        &["switchover", "lab-1", "--to", &replicas[0], "--yes"],
        "switchover:guards:end",
        "switchover",
    );
    let other = dbshift(
        &dir,
        &["switchover", "lab-1", "--to", &replicas[1], "--yes"],
    );
    assert!(other.status.success(), "{}", text(&other));
    let resumed = dbshift(&dir, &["resume", &stale, "--yes"]);
    assert_eq!(resumed.status.code(), Some(1), "{}", text(&resumed));
    assert!(
        stderr(&resumed).contains("nothing was changed")
            && stderr(&resumed).contains(&format!("resolves to {}", replicas[1])),
        "{}",
        text(&resumed)
    );
    assert_eq!(roles(&dir).0, replicas[1], "the other run's writer stays");
    let runs = json(&dbshift(&dir, &["runs", "-o", "json"]));
    let st = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == stale.as_str())
        .unwrap();
    assert_eq!(st["status"], "failed", "{st:#}");
    assert!(writer != replicas[1]);
    rt.block_on(sc.wait_for_writes(10, Duration::from_secs(30)));

    // Two watchers that may fail over one cluster: the second is refused at once.
    let mut w1 = spawn(
        &dir,
        &["watch", "lab-1", "--auto-failover", "--interval", "500ms"],
        &[],
    );
    // The first holds its lock once the lock file names it.
    let lock_file = dir.join("locks").join("watch-lab-1.lock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&lock_file)
        .is_ok_and(|t| t.contains(&format!("\"pid\":{}", w1.id())))
    {
        assert!(Instant::now() < deadline, "the first watcher took no lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = finish(
        spawn(
            &dir,
            &["watch", "lab-1", "--auto-failover", "--interval", "500ms"],
            &[],
        ),
        Duration::from_secs(20),
        "the second watcher",
    );
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    assert!(
        stderr(&second).contains("watch --auto-failover of lab-1"),
        "{}",
        text(&second)
    );
    let _ = w1.kill();
    let _ = w1.wait();

    // A sibling whose SQL thread waits on a table lock: its STOP SLAVE runs past the bound,
    // is cancelled and reported; the writer moves all the same; once the lock is gone,
    // `resume` re-points the sibling and the run ends done.
    let (writer, replicas) = roles(&dir);
    let (target, sibling) = (replicas[0].clone(), replicas[1].clone());
    let mut holder = rt.block_on(async {
        let mut w = lab.connect_admin(&writer).await.unwrap();
        w.exec_sql("CREATE TABLE IF NOT EXISTS app.held (id INT PRIMARY KEY)")
            .await
            .unwrap();
        let pos = w.gtid_binlog_pos().await.unwrap();
        let mut h = lab.connect_admin(&sibling).await.unwrap();
        h.wait_for_gtid(&pos, Duration::from_secs(30))
            .await
            .unwrap();
        h.exec_sql("LOCK TABLES app.held WRITE").await.unwrap();
        w.exec_sql("INSERT INTO app.held VALUES (1)").await.unwrap();
        w.close().await;
        h
    });
    let o = dbshift(
        &dir,
        &[
            "switchover",
            "lab-1",
            "--to",
            &target,
            "--yes",
            "--statement-timeout",
            "3s",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        stderr(&o).contains(&format!("{sibling} was not re-pointed"))
            && stderr(&o).contains("did not finish within 3 s"),
        "{}",
        text(&o)
    );
    assert_eq!(roles(&dir).0, target, "the writer moved");
    let (run, _, status) = last_run(&dir);
    assert_eq!(status, "needs_human");
    rt.block_on(async {
        holder.exec_sql("UNLOCK TABLES").await.unwrap();
        holder.close().await;
    });
    let o = dbshift(&dir, &["resume", &run, "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    rt.block_on(sc.wait_for_writes(10, Duration::from_secs(30)));

    // Blue/green on a cluster that has had many switchovers: green, restored from a
    // snapshot, knows only the last GTID of each domain; the switch and the rollback are done.
    let (writer, _) = roles(&dir);
    let created = dbshift(
        &dir,
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
    );
    let d = json(&created);
    let green_writer = d["green_writer"].as_str().unwrap().to_string();
    rt.block_on(sc.wait_for_writes(20, Duration::from_secs(30)));
    // What this scenario is about is green's history, not its lag: a green just restored can
    // still be catching up on a loaded machine, so the lag bound is out of the way (the wait
    // step still requires the exact position).
    let sw = json(&dbshift(
        &dir,
        &[
            "bluegreen",
            "switchover",
            "--yes",
            "--max-lag",
            "100000",
            "-o",
            "json",
        ],
    ));
    assert_eq!(sw["outcome"], "done", "{sw:#}");
    rt.block_on(sc.wait_for_writes(20, Duration::from_secs(30)));
    let rb = json(&dbshift(
        &dir,
        &[
            "bluegreen",
            "rollback",
            "--yes",
            "--max-lag",
            "100000",
            "-o",
            "json",
        ],
    ));
    assert_eq!(rb["outcome"], "done", "{rb:#}");
    assert_eq!(roles(&dir).0, writer);
    rt.block_on(sc.wait_for_writes(10, Duration::from_secs(30)));

    let lab = Lab::open(&dir).unwrap();
    let mut all = vec!["lab-1-1", "lab-1-2", "lab-1-3"];
    all.push(&green_writer);
    let allowed = allowed_writers(&lab, "lab-1", &all);
    let report = rt.block_on(sc.finish(&lab, &allowed));
    assert!(report.acked > 200, "{}", report.acked);
    let (writer, replicas) = roles(&dir);
    let mut others: Vec<&str> = replicas.iter().map(String::as_str).collect();
    others.push(&green_writer);
    rt.block_on(assert_caught_up_and_equal(
        &lab,
        &writer,
        &others,
        &["app.race"],
        Duration::from_secs(60),
    ));

    // An old writer that took a write after the new one was promoted (the run killed after
    // the promotion, its BACKUP STAGE lease gone with it; a privileged session writes through
    // read_only): `resume` does not demote it, which would bury the write, and names it.
    let (writer, replicas) = roles(&dir);
    let old_id = lab.state().instance(&writer).unwrap().server_id;
    rt.block_on(async {
        let mut w = lab.connect_admin(&writer).await.unwrap();
        w.exec_sql("CREATE TABLE app.ahead (id INT PRIMARY KEY)")
            .await
            .unwrap();
        w.close().await;
    });
    let cut_short = common::cli(&dir).crash(
        &["switchover", "lab-1", "--to", &replicas[0], "--yes"],
        "switchover:hooks:begin",
        "switchover",
    );
    rt.block_on(async {
        let mut old = lab.connect_admin(&writer).await.unwrap();
        assert!(old.read_only().await.unwrap());
        old.exec_sql("INSERT INTO app.ahead VALUES (1)")
            .await
            .unwrap();
        old.close().await;
    });
    let o = dbshift(&dir, &["resume", &cut_short, "--yes"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        stderr(&o).contains(&format!("{writer} has transactions {} lacks", replicas[0]))
            && stderr(&o).contains(&format!("-{old_id}-")),
        "{}",
        text(&o)
    );
    assert_eq!(roles(&dir).0, replicas[0]);
    rt.block_on(async {
        let mut old = lab.connect_admin(&writer).await.unwrap();
        assert!(old.read_only().await.unwrap(), "left read-only");
        assert!(
            !old.replication_status().await.unwrap().configured,
            "not made a replica"
        );
        old.close().await;
    });

    // The journal belongs to its lab (the run above is still open in it).
    let saved = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.join("journal.sqlite"),
        saved.path().join("journal.sqlite"),
    )
    .unwrap();
    let o = dbshift(&dir, &["lab", "down", "--purge"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!dir.join("journal.sqlite").exists());
    assert!(!dir.join("locks").exists());
    json(&dbshift(
        &dir,
        &[
            "lab",
            "up",
            "--clusters",
            "1",
            "--replicas",
            "1",
            "-o",
            "json",
        ],
    ));
    let runs = json(&dbshift(&dir, &["runs", "-o", "json"]));
    assert_eq!(runs, serde_json::json!([]), "a new lab has no runs");
    // Put the old journal back, as if the purge had missed it: its runs are another fleet's.
    std::fs::copy(
        saved.path().join("journal.sqlite"),
        dir.join("journal.sqlite"),
    )
    .unwrap();
    let o = dbshift(&dir, &["resume", &cut_short, "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("another fleet"), "{}", text(&o));
}
