//! `--provider self-managed` as an operator runs it on servers dbshift did not start: a lab
//! is built (a writer, two replicas), then driven only through a fleet file from another
//! directory that names one replica as its seed. `inventory` finds the three servers and
//! their roles, `check` passes, a switchover there and back runs under an acknowledged writer
//! with the invariant checker watching (never two writers, no acknowledged write lost), and
//! bad input (an unknown cluster, a wrong password, a seed that does not answer, a plaintext
//! password in the file) ends with a clear error and changes nothing. Then, through a fleet
//! file naming every server with `stop`/`start` commands: `verify`, a planned `failover`, the
//! writer killed (`kill -9`), `failover --yes` (refused first without a stop command), no
//! acknowledged write lost (the lab is semi-synchronous), and `rejoin` of the old writer.
//!
//! The same scenario runs again against an external MySQL cluster when `DBSHIFT_TEST_MYSQL`
//! names one (`mysql://USER:PASSWORD@HOST:PORT,HOST:PORT,HOST:PORT`, the writer first; see
//! docs/testing.md); without it that half prints `skipped: DBSHIFT_TEST_MYSQL not set`.
//!
//! Run: `cargo test -p dbshift-cli --test self_managed` (needs MariaDB; `make test` installs
//! it). About 15 s.
#![cfg(feature = "self-managed")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{json, text};
use dbshift_db::server::{ConnectOptions, TlsOptions};
use dbshift_provider::selfmanaged::{FleetFile, SelfManaged};
use dbshift_provider::{Credential, Endpoint, Provider};
use dbshift_testkit::{Access, AckedWriter, InvariantChecker, TestLab};

/// The variable the fleet file names for the admin password.
const ADMIN_PW_VAR: &str = "DBSHIFT_TEST_ADMIN_PASSWORD";

/// A cluster the test drives as if dbshift had not built it.
struct Target {
    /// Writer first, then the replicas.
    endpoints: Vec<Endpoint>,
    admin: Credential,
    replication: Credential,
    /// The application's user, when the fleet has one without SUPER.
    app: Option<Credential>,
    ca: Option<PathBuf>,
    /// What `engine` the inventory reports.
    engine: &'static str,
    /// The fleet file's `stop` and `start` command templates; the unplanned failover and the
    /// rejoin run only with both.
    stop: Option<String>,
    start: Option<String>,
    /// A command template that kills a server at once (`kill -9`), for the writer's failure.
    kill: Option<String>,
    /// Replication acknowledges a commit only once a replica has it (semi-sync): an unplanned
    /// failover must then lose no acknowledged write. Without it a write acknowledged just
    /// before the kill may be lost, and it must then be reported (by the audit, and by
    /// `rejoin` as an errant transaction), never silently dropped.
    lossless: bool,
}

impl Target {
    fn id(&self, i: usize) -> String {
        self.endpoints[i].to_string()
    }

    fn access(&self) -> Access {
        Access {
            admin: self.admin.clone(),
            app: self.app.clone().unwrap_or_else(|| self.admin.clone()),
            ca: self.ca.clone(),
        }
    }

    fn admin_options(&self, ep: &Endpoint) -> ConnectOptions {
        let mut o = ConnectOptions::new(ep.host.clone(), ep.port, self.admin.user.clone())
            .password(self.admin.password.clone())
            .connect_timeout(Duration::from_secs(1));
        if let Some(ca) = &self.ca {
            o = o.tls(TlsOptions {
                ca_path: ca.clone(),
                verify_identity: true,
            });
        }
        o
    }

    /// The fleet file: one cluster `main`, seeded with the first replica only; the admin
    /// password from [`ADMIN_PW_VAR`], the replication one from a file.
    fn fleet_file(&self, dir: &Path, seeds: &[String], extra_admin: &str) -> PathBuf {
        self.fleet_file_with(dir, seeds, extra_admin, "")
    }

    /// As [`Target::fleet_file`], with `commands` (TOML lines) in a `[commands]` table.
    fn fleet_file_with(
        &self,
        dir: &Path,
        seeds: &[String],
        extra_admin: &str,
        commands: &str,
    ) -> PathBuf {
        let pw = dir.join("replication.password");
        std::fs::write(&pw, format!("{}\n", self.replication.password)).unwrap();
        let tls = match &self.ca {
            Some(ca) => format!(
                "ca_file = {:?}\nverify = \"full\"",
                ca.display().to_string()
            ),
            None => "verify = \"none\"".to_string(),
        };
        let seeds = seeds
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let commands = if commands.is_empty() {
            String::new()
        } else {
            format!("[commands]\n{commands}\ntimeout_seconds = 60\n")
        };
        let text = format!(
            "[credentials]\n\
             admin = {{ user = {:?}, password_env = {ADMIN_PW_VAR:?}{extra_admin} }}\n\
             replication = {{ user = {:?}, password_file = \"replication.password\" }}\n\
             {}\
             [tls]\n{tls}\n\
             {commands}\
             [[cluster]]\nname = \"main\"\nseeds = [{seeds}]\nredirect = \"none\"\n",
            self.admin.user,
            self.replication.user,
            match &self.app {
                Some(app) => format!(
                    "app = {{ user = {:?}, password_env = \"DBSHIFT_TEST_APP_PASSWORD\" }}\n",
                    app.user
                ),
                None => String::new(),
            },
        );
        let path = dir.join("fleet.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn env(&self, admin_password: &str) -> Vec<(String, String)> {
        let mut env = vec![(ADMIN_PW_VAR.to_string(), admin_password.to_string())];
        if let Some(app) = &self.app {
            env.push(("DBSHIFT_TEST_APP_PASSWORD".into(), app.password.clone()));
        }
        env
    }
}

/// `dbshift --provider self-managed --fleet FLEET ARGS`, run from `dir` (its own working
/// directory, journal in `dir/state`), off the async runtime.
async fn run(dir: &Path, fleet: &Path, env: &[(String, String)], args: &[&str]) -> Output {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    common::fleet_run(dir, fleet, &env, args).await
}

/// The in-process provider on the same fleet file, discovering again on every call: the
/// acknowledged writer follows the writer through it as a client of the operator's would.
fn follower(fleet: &Path, env: &[(String, String)]) -> Arc<dyn Provider> {
    let env = env.to_vec();
    let lookup = move |var: &str| {
        env.iter()
            .find(|(k, _)| k == var)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(var).ok())
    };
    let base = fleet.parent().unwrap();
    let text = std::fs::read_to_string(fleet).unwrap();
    let file = FleetFile::parse(&text, fleet, base, &lookup).unwrap();
    Arc::new(SelfManaged::new(file).with_max_age(Duration::ZERO))
}

/// Id -> role from `inventory -o json`.
async fn roles(dir: &Path, fleet: &Path, env: &[(String, String)]) -> Vec<(String, String)> {
    let rows = json(&run(dir, fleet, env, &["inventory", "-o", "json"]).await);
    let mut out: Vec<(String, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["role"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn expected_roles(t: &Target, writer: usize) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = (0..t.endpoints.len())
        .map(|i| {
            let role = if i == writer { "writer" } else { "reader" };
            (t.id(i), role.to_string())
        })
        .collect();
    out.sort();
    out
}

async fn switch(dir: &Path, fleet: &Path, env: &[(String, String)], to: &str) {
    let o = run(
        dir,
        fleet,
        env,
        &["switchover", "main", "--to", to, "--yes"],
    )
    .await;
    assert!(o.status.success(), "switchover to {to}: {}", text(&o));
}

/// The index of the writer in `t.endpoints`, from `inventory`.
async fn writer_index(t: &Target, dir: &Path, fleet: &Path, env: &[(String, String)]) -> usize {
    let rows = roles(dir, fleet, env).await;
    let w: Vec<&String> = rows
        .iter()
        .filter(|(_, r)| r == "writer")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(w.len(), 1, "one writer: {rows:?}");
    (0..t.endpoints.len())
        .find(|&i| &t.id(i) == w[0])
        .expect("the writer is one of the target's servers")
}

/// A command template of the test filled in for server `i` and run by `sh -c`.
fn sh(t: &Target, template: &str, i: usize) {
    let ep = &t.endpoints[i];
    let cmd = template
        .replace("{host}", &ep.host)
        .replace("{port}", &ep.port.to_string())
        .replace("{id}", &t.id(i));
    let o = std::process::Command::new("sh")
        .args(["-c", &cmd])
        .output()
        .unwrap();
    assert!(o.status.success(), "`{cmd}`: {}", text(&o));
}

/// After the switchovers, through a fleet file naming every server as a seed (a dead one
/// included) with the `stop`/`start` commands: `verify` equal, then a row changed on a
/// replica without binlogging found; a planned `failover` under acknowledged writes; then the
/// writer killed (`kill -9`), `failover --yes` fences it with the stop command and promotes,
/// and `rejoin` starts it with the start command and makes it a replica. The writer ends back
/// on the first server.
async fn failovers(t: &Target) {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let env = t.env(&t.admin.password);
    let all: Vec<String> = (0..t.endpoints.len()).map(|i| t.id(i)).collect();
    let commands = match (&t.stop, &t.start) {
        (Some(stop), Some(start)) => format!("stop = {stop:?}\nstart = {start:?}"),
        _ => String::new(),
    };
    let fleet = t.fleet_file_with(dir, &all, "", &commands);

    // verify: equal; then a row changed on a replica with sql_log_bin=0 is a difference.
    let mut w = dbshift_db::Server::connect(&t.admin_options(&t.endpoints[0]))
        .await
        .unwrap();
    w.exec_sql("CREATE TABLE IF NOT EXISTS app.sm_verify (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    w.exec_sql("REPLACE INTO app.sm_verify VALUES (1, 1), (2, 2), (3, 3)")
        .await
        .unwrap();
    w.close().await;
    let reports = json(&run(dir, &fleet, &env, &["verify", "main", "-o", "json"]).await);
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 2, "{reports:#?}");
    assert!(reports.iter().all(|r| r["equal"] == true), "{reports:#?}");
    let mut r = dbshift_db::Server::connect(&t.admin_options(&t.endpoints[2]))
        .await
        .unwrap();
    r.exec_sql("SET SESSION sql_log_bin = 0").await.unwrap();
    r.exec_sql("UPDATE app.sm_verify SET v = 20 WHERE id = 2")
        .await
        .unwrap();
    let o = run(
        dir,
        &fleet,
        &env,
        &["verify", "main", "--replica", &t.id(2), "-o", "json"],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let found: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(found[0]["equal"], false, "{found:#}");
    assert_eq!(
        found[0]["differences"][0]["table"], "sm_verify",
        "{found:#}"
    );
    r.exec_sql("UPDATE app.sm_verify SET v = 2 WHERE id = 2")
        .await
        .unwrap();
    r.close().await;

    // Planned: the writer answers, so the switchover core moves it.
    let targets = (0..t.endpoints.len())
        .map(|i| (t.id(i), t.admin_options(&t.endpoints[i])))
        .collect();
    let checker = InvariantChecker::start(targets).await.unwrap();
    let writer =
        AckedWriter::start_with(t.access(), follower(&fleet, &env), "main", "sm_failover").await;
    writer.wait_for_acked(20, Duration::from_secs(30)).await;
    let o = run(dir, &fleet, &env, &["failover", "main", "--yes"]).await;
    assert!(o.status.success(), "planned failover: {}", text(&o));
    writer.wait_for_acked(20, Duration::from_secs(30)).await;
    let old = writer_index(t, dir, &fleet, &env).await;
    assert_ne!(old, 0, "the planned failover moved the writer");

    let (Some(kill), false) = (&t.kill, commands.is_empty()) else {
        let acked = writer.stop_and_audit_access().await;
        checker.stop().await.assert_never_two_writers();
        eprintln!(
            "planned failover: {acked} acknowledged writes, none lost; skipped: the unplanned \
             failover and rejoin (no stop/start commands: DBSHIFT_TEST_MYSQL_STOP and \
             DBSHIFT_TEST_MYSQL_START)"
        );
        switch(dir, &fleet, &env, &t.id(0)).await;
        return;
    };

    // Unplanned: the writer killed under acknowledged writes.
    sh(t, kill, old);
    // Without a stop command the dead writer cannot be fenced: refused, nothing promoted.
    std::fs::create_dir_all(dir.join("unfenced")).unwrap();
    let unfenced = t.fleet_file(&dir.join("unfenced"), &all, "");
    let o = run(dir, &unfenced, &env, &["failover", "main", "--yes"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no `stop` command"), "{}", text(&o));
    let o = run(
        dir,
        &fleet,
        &env,
        &["failover", "main", "--yes", "-o", "json"],
    )
    .await;
    let done = json(&o);
    assert_eq!(done["mode"], "unplanned", "{done:#}");
    assert_eq!(done["old_writer"], t.id(old).as_str(), "{done:#}");
    let new = done["new_writer"].as_str().unwrap().to_string();
    assert_ne!(new, t.id(old));
    writer.wait_for_acked(20, Duration::from_secs(30)).await;
    let (acked, lost) = writer.stop_and_lost_access().await;
    checker.stop().await.assert_never_two_writers();
    if t.lossless {
        assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    }
    eprintln!(
        "unplanned failover {} -> {new} in {} ms of write gap: {acked} acknowledged writes, {} \
         lost",
        t.id(old),
        done["phases"]["write_gap_ms"],
        lost.len()
    );

    // The old writer started again by the start command, then a replica of the new one.
    let o = run(
        dir,
        &fleet,
        &env,
        &["rejoin", &t.id(old), "--yes", "-o", "json"],
    )
    .await;
    if !lost.is_empty() {
        // Its lost writes are errant transactions: reported, never discarded.
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        eprintln!(
            "rejoin refused for errant transactions, as it must: {}",
            text(&o)
        );
        return;
    }
    let rejoined = json(&o);
    assert_eq!(rejoined["outcome"], "rejoined", "{rejoined:#}");
    assert_eq!(rejoined["started"], true, "{rejoined:#}");
    let now = writer_index(t, dir, &fleet, &env).await;
    assert_eq!(t.id(now), new);
    if now != 0 {
        switch(dir, &fleet, &env, &t.id(0)).await;
    }
    eprintln!(
        "verify, planned and unplanned failover, rejoin: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The whole scenario on one cluster; see the module documentation.
async fn scenario(t: &Target) {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let env = t.env(&t.admin.password);
    let fleet = t.fleet_file(dir, &[t.id(1)], "");

    // Discovery from one replica: its source, then the replicas the source knows.
    assert_eq!(roles(dir, &fleet, &env).await, expected_roles(t, 0));
    let o = run(dir, &fleet, &env, &["resolve", "main"]).await;
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        t.id(0),
        "{}",
        text(&o)
    );
    let reports = json(&run(dir, &fleet, &env, &["check", "main", "-o", "json"]).await);
    assert_eq!(reports.as_array().unwrap().len(), 2, "{reports:#}");

    // There and back under acknowledged writes, the invariant checker on every server.
    let targets = (0..t.endpoints.len())
        .map(|i| (t.id(i), t.admin_options(&t.endpoints[i])))
        .collect();
    let checker = InvariantChecker::start(targets).await.unwrap();
    let writer =
        AckedWriter::start_with(t.access(), follower(&fleet, &env), "main", "sm_acked").await;
    writer.wait_for_acked(20, Duration::from_secs(30)).await;
    switch(dir, &fleet, &env, &t.id(1)).await;
    writer.wait_for_acked(20, Duration::from_secs(30)).await;
    assert_eq!(roles(dir, &fleet, &env).await, expected_roles(t, 1));
    switch(dir, &fleet, &env, &t.id(0)).await;
    writer.wait_for_acked(20, Duration::from_secs(30)).await;
    let acked = writer.stop_and_audit_access().await;
    let report = checker.stop().await;
    report.assert_never_two_writers();
    assert_eq!(roles(dir, &fleet, &env).await, expected_roles(t, 0));
    eprintln!(
        "switchover there and back on {} servers: {acked} acknowledged writes, none lost",
        t.endpoints.len()
    );

    // Bad input: a clear error, nothing changed.
    let o = run(
        dir,
        &fleet,
        &env,
        &["switchover", "nope", "--to", &t.id(1), "--yes"],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("unknown cluster \"nope\""),
        "{}",
        text(&o)
    );
    let o = run(dir, &fleet, &env, &["check", "nope"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    let wrong = "wrong-password-4711";
    let o = run(
        dir,
        &fleet,
        &t.env(wrong),
        &["switchover", "main", "--to", &t.id(1), "--yes"],
    )
    .await;
    // Refused before anything ran: 2 or 1 (the switchover's error wraps the provider's
    // kind), never 3.
    assert!(matches!(o.status.code(), Some(1 | 2)), "{}", text(&o));
    assert!(text(&o).contains("refused the login"), "{}", text(&o));
    assert!(
        !text(&o).contains(wrong),
        "the password was printed: {}",
        text(&o)
    );

    let gone = tempfile::tempdir().unwrap();
    let unreachable = t.fleet_file(gone.path(), &["127.0.0.1:1".to_string()], "");
    let o = run(
        gone.path(),
        &unreachable,
        &env,
        &["switchover", "main", "--to", &t.id(1), "--yes"],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("127.0.0.1:1 does not answer"),
        "{}",
        text(&o)
    );

    let plain = tempfile::tempdir().unwrap();
    let secret = "plain-secret-0815";
    let plaintext = t.fleet_file(
        plain.path(),
        &[t.id(1)],
        &format!(", password = {secret:?}"),
    );
    let o = run(plain.path(), &plaintext, &env, &["inventory"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("password_env"), "{}", text(&o));
    assert!(
        !text(&o).contains(secret),
        "the password was printed: {}",
        text(&o)
    );

    assert_eq!(roles(dir, &fleet, &env).await, expected_roles(t, 0));
    failovers(t).await;
    assert_eq!(roles(dir, &fleet, &env).await, expected_roles(t, 0));
    eprintln!(
        "self-managed scenario: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_driven_only_through_a_fleet_file() {
    // Semi-synchronous: a writer killed under acknowledged writes loses none of them.
    let lab = TestLab::start_semi_sync(1, 2).await;
    let scripts = tempfile::tempdir().unwrap();
    let st = lab.lab().state();
    let cluster = &st.clusters[0];
    let mut ids: Vec<&str> = vec![cluster.writer.as_str()];
    ids.extend(
        st.instances
            .iter()
            .filter(|i| i.id != cluster.writer)
            .map(|i| i.id.as_str()),
    );
    let endpoints = ids
        .iter()
        .map(|id| Endpoint {
            host: "127.0.0.1".into(),
            port: st.instance(id).unwrap().port,
        })
        .collect();
    let (stop, start) = common::lab_commands(&lab, scripts.path());
    let t = Target {
        endpoints,
        admin: st.users.admin.clone(),
        replication: st.users.replication.clone(),
        app: Some(st.users.app.clone()),
        ca: Some(lab.lab().ca_bundle()),
        engine: "mariadb",
        stop: Some(format!("sh {} {{port}}", stop.display())),
        start: Some(format!("sh {} {{port}}", start.display())),
        kill: Some(format!("sh {} {{port}}", stop.display())),
        lossless: true,
    };
    let scratch = tempfile::tempdir().unwrap();
    let fleet = t.fleet_file(scratch.path(), &[t.id(1)], "");
    let p = follower(&fleet, &t.env(&t.admin.password));
    let engines: Vec<String> = p
        .list_instances()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.engine)
        .collect();
    assert!(engines.iter().all(|e| e == t.engine), "{engines:?}");
    scenario(&t).await;
}

/// `mysql://USER:PASSWORD@HOST:PORT,HOST:PORT,...`, the writer first.
fn external(url: &str) -> Target {
    let rest = url
        .strip_prefix("mysql://")
        .expect("DBSHIFT_TEST_MYSQL starts with mysql://");
    let (userinfo, hosts) = rest
        .rsplit_once('@')
        .expect("DBSHIFT_TEST_MYSQL has USER:PASSWORD@");
    let (user, password) = userinfo
        .split_once(':')
        .expect("DBSHIFT_TEST_MYSQL has USER:PASSWORD");
    let endpoints: Vec<Endpoint> = hosts
        .trim_end_matches('/')
        .split(',')
        .map(|h| {
            let (host, port) = h.rsplit_once(':').expect("HOST:PORT");
            Endpoint {
                host: host.to_string(),
                port: port.parse().expect("a port"),
            }
        })
        .collect();
    assert!(
        endpoints.len() >= 3,
        "DBSHIFT_TEST_MYSQL names a writer and two replicas"
    );
    let who = Credential {
        user: user.to_string(),
        password: password.to_string(),
    };
    Target {
        endpoints,
        admin: who.clone(),
        replication: who,
        app: None,
        ca: None,
        engine: "mysql",
        stop: std::env::var("DBSHIFT_TEST_MYSQL_STOP").ok(),
        start: std::env::var("DBSHIFT_TEST_MYSQL_START").ok(),
        kill: std::env::var("DBSHIFT_TEST_MYSQL_KILL")
            .or_else(|_| std::env::var("DBSHIFT_TEST_MYSQL_STOP"))
            .ok(),
        lossless: std::env::var_os("DBSHIFT_TEST_MYSQL_SEMI_SYNC").is_some(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_mysql_cluster_named_by_dbshift_test_mysql() {
    let Ok(url) = std::env::var("DBSHIFT_TEST_MYSQL") else {
        eprintln!("skipped: DBSHIFT_TEST_MYSQL not set");
        return;
    };
    dbshift_testkit::init();
    let t = external(&url);
    // The acknowledged writer's database.
    let mut w = dbshift_db::Server::connect(&t.admin_options(&t.endpoints[0]))
        .await
        .expect("the writer of DBSHIFT_TEST_MYSQL answers");
    w.exec_sql("CREATE DATABASE IF NOT EXISTS app")
        .await
        .unwrap();
    w.close().await;
    scenario(&t).await;
}
