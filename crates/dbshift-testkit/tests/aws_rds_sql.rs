//! The SQL half of an AWS blue/green, run for real on an RDS-mode lab (`lab up --rds-mode`:
//! dbshift's user has no SUPER and changes replication through the `mysql.rds_*` procedures):
//! binlog retention on blue (`mysql.rds_set_configuration`), green's resume position read from
//! green itself (MariaDB: its GTID position), `mysql.rds_set_external_master_gtid` and
//! `mysql.rds_start_replication` on green, then blue's writes arriving on green. Blue is
//! `lab-1-1`, green `lab-2-1` (a writer of its own cluster, as a restored instance is).
//! Run: `cargo test -p dbshift-testkit --test aws_rds_sql`.

use std::time::Duration;

use dbshift_provider::aws::start_green_replication;
use dbshift_provider::Fleet;
use dbshift_testkit::{eventually, TestLab};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn green_replicates_from_blue_through_the_rds_procedures() {
    let t = TestLab::start_rds(2, 0).await;
    let lab = t.lab();
    let creds = lab.credentials().unwrap();
    let blue = lab.resolve("lab-1-1").await.unwrap();
    let green = lab.resolve("lab-2-1").await.unwrap();
    let mut g = lab.connect_admin("lab-2-1").await.unwrap();
    assert!(
        !g.has_privilege("SUPER").await.unwrap(),
        "RDS mode: no SUPER"
    );
    let green_pos_before = g.gtid_binlog_pos().await.unwrap();
    g.close().await;

    let started_from = start_green_replication(&creds, &blue, &green, None, 24)
        .await
        .unwrap();
    assert_eq!(started_from, green_pos_before.to_string());

    // Retention on blue through the procedure.
    let mut b = lab.connect_admin("lab-1-1").await.unwrap();
    let row = b
        .query_one("CALL mysql.rds_show_configuration")
        .await
        .unwrap();
    let value = row
        .iter()
        .find(|(c, _)| c == "value")
        .and_then(|(_, v)| v.clone());
    assert_eq!(value.as_deref(), Some("24"), "{row:?}");
    b.exec_sql("CREATE TABLE app.bg_rows (id INT PRIMARY KEY)")
        .await
        .unwrap();
    b.exec_sql("INSERT INTO app.bg_rows VALUES (1), (2), (3)")
        .await
        .unwrap();
    b.close().await;

    let mut g = lab.connect_admin("lab-2-1").await.unwrap();
    let n = eventually!(Duration::from_secs(30), "blue's rows on green", {
        g.query_scalar("SELECT COUNT(*) FROM app.bg_rows")
            .await
            .ok()
            .flatten()
            .filter(|n| n == "3")
    });
    assert_eq!(n, "3");
    let st = g.replication_status().await.unwrap();
    assert!(st.healthy(), "{st:?}");
    assert_eq!(st.source_port, Some(blue.port));
    g.close().await;
}
