//! `--provider self-managed` on a chain, and on bad input, through a fleet file only. A lab
//! (a writer, two replicas) is built and its second replica re-pointed at the first, so that
//! the cluster is a chain writer -> intermediate -> leaf (the lab's option files have
//! `log_slave_updates=ON`, so the intermediate passes on what it applies). Then, from another
//! directory, through a fleet file whose only seed is the leaf: `inventory -o json` finds the
//! three servers with their sources, and `inventory` draws the leaf nested under the
//! intermediate. Then bad input, each a clear error with the cluster, the seed, the command
//! and the instance named, a non-zero exit code, and nothing changed: an unknown field in the
//! fleet file, a seed that does not answer (a closed port), a wrong password, a restart
//! command that fails and one that hangs past `timeout_seconds`.
//!
//! Run: `cargo test -p dbshift-cli --test self_managed_topology` (needs MariaDB; `make test`
//! installs it). About 10 s.
#![cfg(feature = "self-managed")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::{json, text};
use dbshift_db::dialect::{SourceSpec, SourceStart, SslSpec};
use dbshift_db::status::IoState;
use dbshift_testkit::{eventually, TestLab};
use serde_json::Value;

/// The variable the fleet file names for the admin password.
const ADMIN_PW_VAR: &str = "DBSHIFT_TEST_ADMIN_PASSWORD";

/// A fleet file in `dir`: cluster `main` seeded with `seed`, the lab's users (the admin
/// password from [`ADMIN_PW_VAR`], the replication one from a file) and CA, `extra` (TOML
/// lines) at the end of the cluster's table and `commands` (TOML lines) in `[commands]`.
fn fleet_file(lab: &TestLab, dir: &Path, seed: &str, extra: &str, commands: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let users = &lab.lab().state().users;
    std::fs::write(
        dir.join("replication.password"),
        format!("{}\n", users.replication.password),
    )
    .unwrap();
    let commands = if commands.is_empty() {
        String::new()
    } else {
        format!("[commands]\n{commands}\n")
    };
    let text = format!(
        "[credentials]\n\
         admin = {{ user = {:?}, password_env = {ADMIN_PW_VAR:?} }}\n\
         replication = {{ user = {:?}, password_file = \"replication.password\" }}\n\
         [tls]\nca_file = {:?}\nverify = \"full\"\n\
         {commands}\
         [[cluster]]\nname = \"main\"\nseeds = [{seed:?}]\nredirect = \"none\"\n{extra}",
        users.admin.user,
        users.replication.user,
        lab.lab().ca_bundle().display().to_string(),
    );
    let path = dir.join("fleet.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `dbshift --provider self-managed --fleet FLEET ARGS` from `dir` (journal in `dir/state`),
/// with the admin password `password`, off the async runtime.
async fn run(dir: &Path, fleet: &Path, password: &str, args: &[&str]) -> Output {
    common::fleet_run(dir, fleet, &[(ADMIN_PW_VAR, password)], args).await
}

/// Id -> (role, source) of every row of `inventory -o json`, and that no row has a problem.
fn sources(rows: &Value) -> Vec<(String, String, Option<String>)> {
    let rows = rows.as_array().unwrap();
    for r in rows {
        assert_eq!(r["problems"], serde_json::json!([]), "{r:#}");
    }
    let mut out: Vec<(String, String, Option<String>)> = rows
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["role"].as_str().unwrap().to_string(),
                r["source"].as_str().map(str::to_string),
            )
        })
        .collect();
    out.sort();
    out
}

/// The last line of a command's stderr: its error.
fn last_line(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    err.trim().lines().last().unwrap_or_default().to_string()
}

/// A port on 127.0.0.1 nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_found_from_its_leaf_and_bad_input_refused() {
    let started = Instant::now();
    let lab = TestLab::start(1, 2).await;
    let st = lab.lab().state();
    let writer_rec = st.instance(&st.clusters[0].writer).unwrap();
    let mut replicas: Vec<_> = st
        .instances
        .iter()
        .filter(|i| i.id != writer_rec.id)
        .collect();
    replicas.sort_by(|a, b| a.id.cmp(&b.id));
    let (inter_rec, leaf_rec) = (replicas[0], replicas[1]);
    // Without [[cluster.instance]] names, a server's id is its endpoint.
    let id = |port: u16| format!("127.0.0.1:{port}");
    let (writer, inter, leaf) = (id(writer_rec.port), id(inter_rec.port), id(leaf_rec.port));
    let password = st.users.admin.password.clone();

    // The chain: the leaf re-pointed at the intermediate, where it left off (GTID).
    let mut leaf_db = lab.lab().connect_admin(&leaf_rec.id).await.unwrap();
    leaf_db
        .point_replica_at(&SourceSpec {
            host: "127.0.0.1".into(),
            port: inter_rec.port,
            user: st.users.replication.user.clone(),
            password: st.users.replication.password.clone(),
            start: SourceStart::Gtid,
            ssl: Some(SslSpec {
                ca_path: Some(lab.lab().ca_bundle().display().to_string()),
                verify_server_cert: true,
            }),
            connect_retry_s: Some(1),
            heartbeat_period_ms: None,
        })
        .await
        .unwrap();
    let mut w = lab.lab().connect_admin(&writer_rec.id).await.unwrap();
    w.exec_sql("CREATE TABLE app.chain (id INT PRIMARY KEY)")
        .await
        .unwrap();
    w.exec_sql("INSERT INTO app.chain VALUES (1)")
        .await
        .unwrap();
    w.close().await;
    eventually!(
        Duration::from_secs(30),
        "the writer's row on the leaf through the intermediate",
        {
            let s = leaf_db.replication_status().await.unwrap();
            // An error until the table has arrived.
            let rows = leaf_db
                .query_scalar("SELECT COUNT(*) FROM app.chain")
                .await
                .ok()
                .flatten();
            let arrived = rows.as_deref() == Some("1");
            (s.io_running == IoState::Yes && s.source_port == Some(inter_rec.port) && arrived)
                .then_some(())
        }
    );

    // Driven from elsewhere, seeded with the leaf alone.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fleet = fleet_file(&lab, dir, &leaf, "", "");
    let found = sources(&json(
        &run(dir, &fleet, &password, &["inventory", "-o", "json"]).await,
    ));
    let mut expected = vec![
        (writer.clone(), "writer".to_string(), None),
        (inter.clone(), "reader".to_string(), Some(writer.clone())),
        (leaf.clone(), "reader".to_string(), Some(inter.clone())),
    ];
    expected.sort();
    assert_eq!(found, expected);

    let o = run(dir, &fleet, &password, &["inventory"]).await;
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    eprintln!("{out}");
    let tree = [
        format!("main: writer {writer}, 3 servers"),
        format!("  {writer}  writer  MariaDB"),
        format!("  └─ {inter}  replica  MariaDB"),
        format!("     └─ {leaf}  replica  MariaDB"),
    ];
    let lines: Vec<&str> = out.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with(&tree[0]))
        .unwrap_or_else(|| panic!("no tree: {}", text(&o)));
    for (i, want) in tree.iter().enumerate() {
        assert!(
            lines
                .get(at + i)
                .is_some_and(|l| l.starts_with(want.as_str())),
            "line {i} of the tree is not {want:?}: {}",
            text(&o)
        );
    }
    assert!(lines[at + 3].contains("IO Yes, SQL Yes"), "{}", text(&o));
    // The table follows, with no problem: the leaf replicates from its recorded source.
    assert!(
        out.contains("INSTANCE") && out.contains("problems: none"),
        "{}",
        text(&o)
    );
    eprintln!(
        "chain found from its leaf and drawn: {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Bad input: a clear error, a non-zero exit, nothing changed.
    let unknown = fleet_file(&lab, &dir.join("unknown"), &leaf, "colour = \"blue\"\n", "");
    let o = run(dir, &unknown, &password, &["inventory"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let e = text(&o);
    eprintln!("refused: {}", last_line(&o));
    assert!(
        e.contains(&unknown.display().to_string())
            && e.contains("(in cluster \"main\"): unknown field `colour`"),
        "{e}"
    );

    let closed = format!("127.0.0.1:{}", closed_port());
    let silent = fleet_file(&lab, &dir.join("silent"), &closed, "", "");
    let o = run(dir, &silent, &password, &["inventory"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let e = text(&o);
    eprintln!("refused: {}", last_line(&o));
    assert!(
        e.contains(&format!(
            "cluster main: no server answers: {closed} does not answer"
        )),
        "{e}"
    );

    let wrong = "wrong-password-4711";
    let o = run(dir, &fleet, wrong, &["inventory"]).await;
    assert!(matches!(o.status.code(), Some(1 | 2)), "{}", text(&o));
    let e = text(&o);
    eprintln!("refused: {}", last_line(&o));
    assert!(
        e.contains(&format!("cluster main: {leaf} refused the login of")),
        "{e}"
    );
    assert!(!e.contains(wrong), "the password was printed: {e}");

    let failing = fleet_file(
        &lab,
        &dir.join("failing"),
        &leaf,
        "",
        "restart = \"echo no-such-service {id} >&2; exit 3\"\ntimeout_seconds = 10",
    );
    let o = run(dir, &failing, &password, &["reboot", &leaf]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let e = text(&o);
    eprintln!("refused: {}", last_line(&o));
    assert!(
        e.contains(&format!(
            "{leaf} of cluster main: the restart command `echo no-such-service"
        )) && e.contains("exit status: 3")
            && e.contains(&format!("no-such-service {leaf}")),
        "{e}"
    );

    let hanging = fleet_file(
        &lab,
        &dir.join("hanging"),
        &leaf,
        "",
        "restart = \"sleep 30\"\ntimeout_seconds = 1",
    );
    let asked = Instant::now();
    let o = run(dir, &hanging, &password, &["reboot", &leaf]).await;
    let took = asked.elapsed();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let e = text(&o);
    eprintln!("refused: {}", last_line(&o));
    assert!(
        e.contains(&format!(
            "{leaf} of cluster main: the restart command `sleep 30` ran past its timeout of 1s \
             and was killed"
        )),
        "{e}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}: {e}");

    // Nothing changed: the leaf never restarted (this session outlived every command), and the
    // topology is the one found before.
    assert_eq!(
        leaf_db.query_scalar("SELECT 1").await.unwrap().as_deref(),
        Some("1")
    );
    leaf_db.close().await;
    let again = sources(&json(
        &run(dir, &fleet, &password, &["inventory", "-o", "json"]).await,
    ));
    assert_eq!(again, expected);
    eprintln!(
        "self-managed chain and bad input: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
