//! `dbshift --provider aws` as a user runs it, against a real `moto_server` behind the
//! testkit's shim (DescribeCertificates, DescribeDBEngineVersions, `modifying` transitions):
//! inventory of the 50-instance fleet, `ca-rotate --plan` and `--yes` (the CA changed in moto
//! afterwards), Aurora's failover-first through FailoverDBCluster, `bluegreen create
//! --encrypt` building snapshot, encrypted copy and restore then stopping with exit 3, the
//! lab-only commands refusing aws (exit 2), and a blue/green switchover (killed between its
//! two renames, finished by `resume`) and rollback with moto's instances mapped onto
//! RDS-mode lab servers. Run: `cargo test -p dbshift-cli --test aws`;
//! needs `moto_server` (`scripts/deps.sh`).

use std::path::Path;
use std::process::{Command, Output};

use dbshift_testkit::moto::{self, Fleet, Moto};
use serde_json::Value;

fn dbshift(dir: &Path, url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dbshift"))
        .current_dir(dir)
        .args(["--provider", "aws", "--endpoint-url", url])
        .args(args)
        .env_remove("DBSHIFT_LAB_DIR")
        .env_remove("DBSHIFT_OUTPUT")
        .env_remove("DBSHIFT_CONFIG")
        .env_remove("DBSHIFT_DB_USER")
        .env_remove("DBSHIFT_DB_PASSWORD")
        .env_remove("DBSHIFT_AWS_CERTIFICATES")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("DBSHIFT_AWS_POLL_MS", "50")
        .env("DBSHIFT_AWS_WAIT_TIMEOUT_S", "60")
        .output()
        .expect("the dbshift binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

async fn fleet() -> (Moto, tempfile::TempDir) {
    let m = Moto::start(moto::default_shim()).await;
    Fleet::seed(&m.moto_url()).await;
    (m, tempfile::tempdir().unwrap())
}

/// CA per instance, as moto itself records it.
async fn cas_in_moto(m: &Moto) -> Vec<(String, String)> {
    let c = moto::sdk_client(&m.moto_url()).await;
    let out = c.describe_db_instances().send().await.unwrap();
    out.db_instances()
        .iter()
        .map(|d| {
            (
                d.db_instance_identifier().unwrap().to_string(),
                d.ca_certificate_identifier()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_and_ca_rotation_on_the_moto_fleet() {
    let (m, dir) = fleet().await;
    let url = m.url();
    // A PostgreSQL instance in the same account, in the rotation's filter: never dbshift's.
    moto::sdk_client(&m.moto_url())
        .await
        .create_db_instance()
        .db_instance_identifier("pg-1")
        .engine("postgres")
        .engine_version("16.3")
        .db_instance_class("db.t3.medium")
        .allocated_storage(20)
        .master_username("admin")
        .master_user_password("not-a-secret-1")
        .ca_certificate_identifier("rds-ca-2019")
        .tags(
            aws_sdk_rds::types::Tag::builder()
                .key("env")
                .value("prod")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let rows = json(&dbshift(dir.path(), &url, &["inventory", "-o", "json"]));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 50);
    assert!(rows.iter().all(|r| r["ca"] == "rds-ca-2019"));
    let table = dbshift(dir.path(), &url, &["inventory"]);
    let out = String::from_utf8_lossy(&table.stdout);
    assert!(out.contains("aurora-10-4"), "{}", text(&table));
    assert!(out.contains("no database credentials"), "{}", text(&table));

    let cas = json(&dbshift(dir.path(), &url, &["ca", "list", "-o", "json"]));
    let g1 = cas
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "rds-ca-rsa2048-g1")
        .unwrap()
        .clone();
    assert_eq!(g1["rotation_without_restart"], true);

    let plan = json(&dbshift(
        dir.path(),
        &url,
        &[
            "ca-rotate",
            "--to",
            "rds-ca-rsa2048-g1",
            "--plan",
            "-o",
            "json",
        ],
    ));
    assert_eq!(plan["to_change"], 50, "{plan:#}");
    assert_eq!(plan["health_gate"], "control-plane");
    assert_eq!(plan["options"]["mode"], "no-restart");
    // The plan changed nothing.
    assert!(cas_in_moto(&m)
        .await
        .iter()
        .all(|(_, ca)| ca == "rds-ca-2019"));

    let modifies_before = m.calls("ModifyDBInstance");
    let out = dbshift(
        dir.path(),
        &url,
        &[
            "ca-rotate",
            "--to",
            "rds-ca-rsa2048-g1",
            "--yes",
            "--filter",
            "env=prod",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("control plane only"), "{s}");
    let after = cas_in_moto(&m).await;
    let prod: Vec<_> = after
        .iter()
        .filter(|(id, _)| {
            [
                "aurora-01",
                "aurora-03",
                "aurora-05",
                "aurora-07",
                "aurora-09",
            ]
            .iter()
            .any(|c| id.starts_with(c))
                || ["mysql-01", "mysql-03", "mysql-05", "mariadb-01"].contains(&id.as_str())
        })
        .collect();
    assert_eq!(prod.len(), 24);
    assert!(
        prod.iter().all(|(_, ca)| ca == "rds-ca-rsa2048-g1"),
        "{after:?}"
    );
    assert_eq!(
        after
            .iter()
            .filter(|(_, ca)| ca == "rds-ca-rsa2048-g1")
            .count(),
        24,
        "only the filter's instances changed: {after:?}"
    );
    assert_eq!(m.calls("ModifyDBInstance") - modifies_before, 24);
    assert!(
        after.contains(&("pg-1".to_string(), "rds-ca-2019".to_string())),
        "the PostgreSQL instance is left alone: {after:?}"
    );

    // The same command again: everything in scope is done, nothing is modified.
    let before = m.calls("ModifyDBInstance");
    let again = json(&dbshift(
        dir.path(),
        &url,
        &[
            "ca-rotate",
            "--to",
            "rds-ca-rsa2048-g1",
            "--yes",
            "--filter",
            "env=prod",
            "-o",
            "json",
        ],
    ));
    assert_eq!(again["totals"]["changed"], 0, "{again:#}");
    assert_eq!(m.calls("ModifyDBInstance"), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aurora_writer_moves_by_failover_before_its_turn() {
    let (m, dir) = fleet().await;
    let url = m.url();
    let out = dbshift(
        dir.path(),
        &url,
        &[
            "ca-rotate",
            "--to",
            "rds-ca-rsa4096-g1",
            "--mode",
            "failover-first",
            "--filter",
            "aurora-02*",
            "--yes",
            "-o",
            "json",
        ],
    );
    let r = json(&out);
    assert_eq!(r["outcome"], "done", "{r:#}");
    assert_eq!(m.calls("FailoverDBCluster"), 1);
    let steps = r["clusters"][0]["steps"].as_array().unwrap();
    assert!(
        steps.iter().any(|s| s["action"]
            .as_str()
            .unwrap()
            .starts_with("switchover to aurora-02-")),
        "{r:#}"
    );
    let c = moto::sdk_client(&m.moto_url())
        .await
        .describe_db_clusters()
        .db_cluster_identifier("aurora-02")
        .send()
        .await
        .unwrap();
    let writer = c.db_clusters()[0]
        .db_cluster_members()
        .iter()
        .find(|x| x.is_cluster_writer() == Some(true))
        .unwrap()
        .db_instance_identifier()
        .unwrap()
        .to_string();
    assert_ne!(
        writer, "aurora-02-1",
        "the writer moved to a rotated reader"
    );
    let cas = cas_in_moto(&m).await;
    assert!(cas
        .iter()
        .filter(|(id, _)| id.starts_with("aurora-02-"))
        .all(|(_, ca)| ca == "rds-ca-rsa4096-g1"));

    // A standalone writer with read replicas has no platform failover: without database
    // credentials its switchover cannot run, so the plan is refused before anything changes.
    let before = cas_in_moto(&m).await;
    let out = dbshift(
        dir.path(),
        &url,
        &[
            "ca-rotate",
            "--to",
            "rds-ca-rsa4096-g1",
            "--mode",
            "failover-first",
            "--filter",
            "mysql-01*",
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains("mysql-01")
            && msg.contains("DBSHIFT_DB_USER")
            && msg.contains("--mode restart"),
        "{msg}"
    );
    assert_eq!(cas_in_moto(&m).await, before, "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_bluegreen_builds_then_stops_for_a_human_and_lab_commands_refuse_aws() {
    let (m, dir) = fleet().await;
    let url = m.url();
    let out = dbshift(
        dir.path(),
        &url,
        &["bluegreen", "create", "--source", "mysql-06", "--encrypt"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("snapshot mysql-06-green-snap-"), "{err}");
    assert!(err.contains("encrypted copy"), "{err}");
    assert!(err.contains("green mysql-06-green"), "{err}");
    assert!(err.contains("delete-db-instance"), "{err}");
    let c = moto::sdk_client(&m.moto_url()).await;
    let g = c
        .describe_db_instances()
        .db_instance_identifier("mysql-06-green")
        .send()
        .await
        .unwrap();
    assert_eq!(g.db_instances()[0].storage_encrypted(), Some(true));

    for args in [
        &["lab", "up"][..],
        &["demo"][..],
        &["lab", "status"][..],
        &["bluegreen", "cleanup", "x"][..],
        &["switchover", "mysql-06", "--to", "x"][..],
    ] {
        let out = dbshift(dir.path(), &url, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("local lab only"));
    }
    // A blue/green switch works on AWS; an unknown deployment is bad input naming the known.
    let out = dbshift(dir.path(), &url, &["bluegreen", "switchover", "x", "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown deployment") && err.contains("mysql-06-green"),
        "{err}"
    );
    // Not found is bad input (exit 2) naming the instance.
    let out = dbshift(dir.path(), &url, &["reboot", "no-such-db"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-db"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bluegreen_switchover_resumed_mid_swap_and_rollback_on_moto_mapped_onto_lab_servers() {
    let f = dbshift_testkit::AwsBlueGreen::start().await;
    let m = &f.moto;
    let dir = tempfile::tempdir().unwrap();
    let users = f.lab().state().users.clone();
    let sql_half = f.cli_env().await;
    let url = m.url();
    let run = |args: &[&str], crash_at: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dbshift"));
        c.current_dir(dir.path())
            .args(["--provider", "aws", "--endpoint-url", &url])
            .args(args)
            .env_remove("DBSHIFT_LAB_DIR")
            .env_remove("DBSHIFT_OUTPUT")
            .env_remove("DBSHIFT_CONFIG")
            .env_remove("DBSHIFT_AWS_CERTIFICATES")
            .env_remove("DBSHIFT_CRASH_AT")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("DBSHIFT_AWS_POLL_MS", "50")
            .env("DBSHIFT_AWS_WAIT_TIMEOUT_S", "60")
            .envs(sql_half.iter().cloned());
        if let Some(at) = crash_at {
            c.env("DBSHIFT_CRASH_AT", at);
        }
        let o = c.output().expect("the dbshift binary runs");
        let all = text(&o);
        assert!(
            !all.contains(&users.admin.password) && !all.contains(&users.replication.password),
            "a password was printed: {all}"
        );
        o
    };

    let o = run(
        &[
            "bluegreen",
            "create",
            "--source",
            "orders",
            "--name",
            "orders-green",
            "--encrypt",
            "-o",
            "json",
        ],
        None,
    );
    let d = json(&o);
    assert_eq!(d["green_writer"], "orders-green", "{d:#}");
    let st = json(&run(
        &["bluegreen", "status", "orders-green", "-o", "json"],
        None,
    ));
    assert_eq!(st["deployment"]["serving"], "blue", "{st:#}");
    assert_eq!(st["standby_replicating"], true, "{st:#}");

    // Bad input: exit 2, nothing changed.
    let o = run(&["bluegreen", "switchover", "nope", "--yes"], None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = run(&["bluegreen", "rollback", "orders-green", "--yes"], None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = run(
        &[
            "bluegreen",
            "switchover",
            "orders-green",
            "--redirect",
            "proxy",
            "--yes",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(f.holder_of("orders").await.as_deref(), Some("orders"));
    assert!(!f.read_only("lab-1-1").await);

    let o = run(&["bluegreen", "switchover", "orders-green", "--plan"], None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("renamed away"),
        "{}",
        text(&o)
    );

    // Killed between the two renames: blue is renamed away, green not yet at blue's name.
    let o = run(
        &["bluegreen", "switchover", "orders-green", "--yes"],
        Some("switchover:redirect_rename_0:end"),
    );
    assert_eq!(o.status.code(), None, "killed: {}", text(&o));
    assert_eq!(
        f.holder_of("orders").await,
        None,
        "the name is free mid-swap"
    );
    assert!(f.read_only("lab-1-1").await && f.read_only("lab-1-2").await);
    let runs = json(&run(&["runs", "-o", "json"], None));
    let id = runs[0]["id"].as_str().unwrap().to_string();
    assert_eq!(runs[0]["kind"], "bluegreen-switchover");
    assert_eq!(runs[0]["status"], "running");
    // A new process finishes the swap from the journaled plan.
    let o = run(&["resume", &id, "--yes", "-o", "json"], None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(f.holder_of("orders").await.as_deref(), Some("orders-green"));
    assert!(f.read_only("lab-1-1").await);
    assert!(!f.read_only("lab-1-2").await);
    let st = json(&run(
        &["bluegreen", "status", "orders-green", "-o", "json"],
        None,
    ));
    assert_eq!(st["deployment"]["serving"], "green", "{st:#}");

    let o = run(&["bluegreen", "rollback", "orders-green", "--yes"], None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(f.holder_of("orders").await.as_deref(), Some("orders"));
    assert!(!f.read_only("lab-1-1").await);
    assert!(f.read_only("lab-1-2").await);
}
