//! `verify` on real servers: one lab (a writer and one replica), several scenarios in order.
//!
//! - equal while INSERT/UPDATE/DELETE run on the writer, with tables that have a composite key,
//!   no key, NULLs, BLOBs, JSON and mixed collations; the replica replicates again afterwards;
//! - rows changed on the replica only (without binlog, so no errant GTID), a table on one side
//!   only: each reported where it is, a changed row inside the reported range;
//! - replication stopped before verify is left stopped, at blue's snapshot position.
//!
//! Run with `cargo test -p dbshift-ops --test verify` (needs MariaDB; `make test` installs it).
//! Speed is measured by `bench/cases/verify_rows.sh` against pt-table-checksum.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dbshift_db::{ConnectOptions, Server};
use dbshift_ops::verify::{self, VerifyOptions, VerifyReport, METHOD_CHUNKED, METHOD_WHOLE_TABLE};
use dbshift_provider::local::Lab;
use dbshift_testkit::TestLab;

const WRITER: &str = "lab-1-1";
const REPLICA: &str = "lab-1-2";

fn opts(chunk_rows: u64) -> VerifyOptions {
    VerifyOptions {
        chunk_rows,
        until_timeout: Duration::from_secs(20),
        parallel: 2,
    }
}

async fn connect(o: &ConnectOptions) -> Server {
    Server::connect(o).await.unwrap()
}

async fn exec(s: &mut Server, sqls: &[&str]) {
    for sql in sqls {
        s.exec_sql(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// Wait until the replica has applied everything the writer has now.
async fn caught_up(writer: &mut Server, replica: &mut Server) {
    let pos = writer.gtid_binlog_pos().await.unwrap();
    replica
        .wait_for_gtid(&pos, Duration::from_secs(20))
        .await
        .unwrap();
}

/// Writes on the writer until stopped: inserts, updates and deletes on `vt.load` only.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(writer: ConnectOptions) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let (stop2, done2) = (stop.clone(), done.clone());
        let task = tokio::spawn(async move {
            let mut s = connect(&writer).await;
            let mut i = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                i += 1;
                let sql = match i % 3 {
                    0 => format!("INSERT INTO vt.load (v, note) VALUES ({i}, 'n{i}')"),
                    1 => format!(
                        "UPDATE vt.load SET v = v + 1, note = NULL WHERE id = {}",
                        i % 97 + 1
                    ),
                    _ => format!("DELETE FROM vt.load WHERE id = {}", i / 2),
                };
                s.exec_sql(&sql).await.unwrap();
                done2.fetch_add(1, Ordering::Relaxed);
            }
            s.close().await;
        });
        Load { stop, done, task }
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        self.done.load(Ordering::Relaxed)
    }
}

async fn setup(writer: &mut Server) {
    exec(
        writer,
        &[
            "CREATE DATABASE vt",
            "CREATE TABLE vt.load (id INT AUTO_INCREMENT PRIMARY KEY, v INT, note VARCHAR(20))",
            "INSERT INTO vt.load (v, note) SELECT seq, CONCAT('n', seq) FROM vt.seq_1_to_300",
            // Composite key with a string part; NULLs, a BLOB with every byte, a float, JSON.
            "CREATE TABLE vt.composite (a INT NOT NULL, b VARCHAR(10) CHARACTER SET utf8mb4 \
             NOT NULL, c BLOB NULL, d DOUBLE NULL, j JSON NULL, PRIMARY KEY (a, b))",
            "INSERT INTO vt.composite SELECT seq % 7, CONCAT('k', seq), \
             IF(seq % 3 = 0, NULL, UNHEX(CONCAT('00FF', HEX(seq), '5C27'))), \
             IF(seq % 4 = 0, NULL, seq / 3), \
             IF(seq % 5 = 0, NULL, JSON_OBJECT('n', seq, 's', 'x\"y')) FROM vt.seq_1_to_120",
            // No key, duplicate rows (XOR alone cannot tell A,B,B from A,C,C), NULLs.
            "CREATE TABLE vt.nopk (x INT NULL, y TEXT NULL)",
            "INSERT INTO vt.nopk VALUES (1, 'A'), (2, 'B'), (2, 'B'), (NULL, 'N'), (3, NULL)",
            // Two collations in one row: the row text must not fail with a collation mix.
            "CREATE TABLE vt.mixed (id BIGINT UNSIGNED PRIMARY KEY, \
             p VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin, \
             q VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci, \
             r VARCHAR(20) CHARACTER SET latin1)",
            "INSERT INTO vt.mixed VALUES (1, 'a', 'A', 'é'), (18446744073709551615, 'ü', NULL, '')",
            // A string key with quotes and backslashes in it.
            "CREATE TABLE vt.strkey (k VARCHAR(20) PRIMARY KEY, v INT)",
            "INSERT INTO vt.strkey VALUES ('a''b', 1), ('c\\\\d', 2), ('', 3), ('zz', 4), ('é', 5)",
            "CREATE TABLE vt.quiet (id INT PRIMARY KEY, v INT NOT NULL)",
            "INSERT INTO vt.quiet SELECT seq, seq * 10 FROM vt.seq_1_to_100",
            "CREATE TABLE vt.only_blue (id INT PRIMARY KEY)",
            "CREATE TABLE vt.`odd``name` (`we``ird` INT PRIMARY KEY)",
            "INSERT INTO vt.`odd``name` VALUES (1), (2)",
        ],
    )
    .await;
}

fn table<'a>(r: &'a VerifyReport, name: &str) -> &'a verify::TableReport {
    r.tables
        .iter()
        .find(|t| t.schema == "vt" && t.name == name)
        .unwrap_or_else(|| panic!("vt.{name} in {r:#?}"))
}

#[tokio::test]
async fn verify_on_a_real_writer_and_replica() {
    let t = TestLab::start(1, 1).await;
    let lab: &Lab = t.lab();
    let blue = lab.admin_options(WRITER).unwrap();
    let green = lab.admin_options(REPLICA).unwrap();
    let mut writer = connect(&blue).await;
    let mut replica = connect(&green).await;
    setup(&mut writer).await;
    caught_up(&mut writer, &mut replica).await;

    // 1. Equal under a concurrent write load; the replica replicates again afterwards.
    let load = Load::start(blue.clone());
    dbshift_testkit::eventually(Duration::from_secs(20), "the load writing", || async {
        let done = load.done.load(Ordering::Relaxed);
        dbshift_testkit::holds(done >= 30, done)
    })
    .await;
    let report = verify::verify(&blue, &green, &opts(7)).await.unwrap();
    // The IO thread reconnects ("Connecting") for a moment after START SLAVE.
    let status = dbshift_testkit::eventually!(Duration::from_secs(10), "replication running", {
        let s = replica.replication_status().await.unwrap();
        s.healthy().then_some(s)
    });
    let writes = load.stop().await;
    assert!(writes > 50, "the load ran ({writes} statements)");
    assert!(report.equal, "{report:#?}");
    assert!(report.differences.is_empty());
    assert!(status.healthy(), "replication runs again: {status:?}");
    assert_eq!(report.rows_blue, report.rows_green);
    assert!(report.rows_per_s > 0.0);
    assert_eq!(table(&report, "composite").method, METHOD_CHUNKED);
    assert!(table(&report, "composite").chunks > 10, "{report:#?}");
    assert_eq!(table(&report, "composite").rows_blue, 120);
    assert_eq!(table(&report, "nopk").method, METHOD_WHOLE_TABLE);
    assert_eq!(table(&report, "nopk").chunks, 1);
    assert_eq!(table(&report, "strkey").rows_green, 5);
    assert_eq!(table(&report, "odd`name").rows_green, 2);
    assert!(report.tables.iter().all(|t| t.schema != "mysql"));
    // The snapshot's position is one the replica went through: it is behind the writer now.
    let snap: dbshift_db::mariadb::GtidPos = report.position.parse().unwrap();
    caught_up(&mut writer, &mut replica).await;
    let now = replica.gtid_slave_pos().await.unwrap();
    assert!(snap.reached_by(&now), "{snap} then {now}");
    assert!(
        replica.replication_status().await.unwrap().healthy(),
        "still replicating after catching up"
    );

    // 2. Differences made on the replica alone, none binlogged (no errant GTID) and none on rows
    // that replication touches afterwards.
    exec(
        &mut replica,
        &[
            "SET SESSION sql_log_bin=0",
            "UPDATE vt.quiet SET v = v + 1 WHERE id = 57",
            "UPDATE vt.composite SET b = 'k10x' WHERE a = 3 AND b = 'k10'",
            "UPDATE vt.nopk SET y = 'C' WHERE y = 'B'",
            "CREATE TABLE vt.only_green (id INT PRIMARY KEY)",
            "DROP TABLE vt.only_blue",
            "SET SESSION sql_log_bin=1",
        ],
    )
    .await;
    let before = replica.gtid_binlog_state().await.unwrap();
    let report = verify::verify(&blue, &green, &opts(10)).await.unwrap();
    assert!(!report.equal);
    let mut found: Vec<(String, String)> = report
        .differences
        .iter()
        .map(|d| (d.table.clone(), d.reason.clone()))
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            ("composite".to_string(), "rows differ".to_string()),
            ("nopk".to_string(), "rows differ".to_string()),
            (
                "only_blue".to_string(),
                "table exists only on blue".to_string()
            ),
            (
                "only_green".to_string(),
                "table exists only on green".to_string()
            ),
            ("quiet".to_string(), "rows differ".to_string()),
        ],
        "{report:#?}"
    );
    let quiet = report
        .differences
        .iter()
        .find(|d| d.table == "quiet")
        .unwrap();
    let lower: i64 = quiet
        .lower
        .as_deref()
        .map_or(i64::MIN, |v| v.parse().unwrap());
    let upper: i64 = quiet
        .upper
        .as_deref()
        .map_or(i64::MAX, |v| v.parse().unwrap());
    assert!(lower < 57 && 57 <= upper, "{quiet:?}");
    assert_eq!((quiet.rows_blue, quiet.rows_green), (10, 10));
    assert_eq!(quiet.range, format!("id > {lower} AND id <= {upper}"));
    let composite = report
        .differences
        .iter()
        .find(|d| d.table == "composite")
        .unwrap();
    assert_eq!(composite.rows_blue, composite.rows_green, "{composite:?}");
    // The changed key (3, 'k10') lies in the reported range, in key order.
    let key = |v: &Option<String>| {
        v.as_deref().map(|t| {
            let (a, b) = t.trim_matches(['(', ')']).split_once(", ").unwrap();
            (a.parse::<i64>().unwrap(), b.trim_matches('\'').to_string())
        })
    };
    let changed = (3i64, "k10".to_string());
    assert!(
        key(&composite.lower).is_none_or(|l| l < changed)
            && key(&composite.upper).is_none_or(|u| changed <= u),
        "{composite:?}"
    );
    assert!(composite.range.starts_with("(a, b) "), "{composite:?}");
    assert!(!table(&report, "quiet").equal);
    assert!(table(&report, "load").equal);
    let nopk = table(&report, "nopk");
    assert_eq!((nopk.rows_blue, nopk.rows_green), (5, 5));
    assert_eq!(
        replica.gtid_binlog_state().await.unwrap(),
        before,
        "verify wrote nothing to the replica's binlog"
    );
    exec(&mut writer, &["INSERT INTO vt.load (v) VALUES (-1)"]).await;
    caught_up(&mut writer, &mut replica).await;
    assert!(replica.replication_status().await.unwrap().healthy());

    // Put the replica back as the writer has it.
    exec(
        &mut replica,
        &[
            "SET SESSION sql_log_bin=0",
            "UPDATE vt.quiet SET v = v - 1 WHERE id = 57",
            "UPDATE vt.composite SET b = 'k10' WHERE a = 3 AND b = 'k10x'",
            "UPDATE vt.nopk SET y = 'B' WHERE y = 'C'",
            "DROP TABLE vt.only_green",
            "CREATE TABLE vt.only_blue (id INT PRIMARY KEY)",
            "SET SESSION sql_log_bin=1",
        ],
    )
    .await;

    // 3. Replication stopped before verify: advanced to the snapshot, then left stopped.
    replica.stop_replication().await.unwrap();
    exec(
        &mut writer,
        &["INSERT INTO vt.load (v) SELECT seq FROM vt.seq_1_to_50"],
    )
    .await;
    let report = verify::verify(&blue, &green, &opts(20_000)).await.unwrap();
    assert!(report.equal, "{report:#?}");
    assert!(
        report.warnings.iter().any(|w| w.contains("not running")),
        "{:?}",
        report.warnings
    );
    let status = replica.replication_status().await.unwrap();
    assert!(
        status.io_running == dbshift_db::status::IoState::No && !status.sql_running,
        "left stopped: {status:?}"
    );
    assert_eq!(
        replica.gtid_slave_pos().await.unwrap().to_string(),
        report.position,
        "stopped exactly at blue's snapshot"
    );
    assert_eq!(
        report.position,
        writer.gtid_binlog_pos().await.unwrap().to_string()
    );
    replica.start_replication().await.unwrap();
    caught_up(&mut writer, &mut replica).await;

    // 4. Green already at blue's position (no write since): nothing to apply, still equal.
    let report = verify::verify(&blue, &green, &opts(20_000)).await.unwrap();
    assert!(report.equal, "{report:#?}");
    dbshift_testkit::eventually!(Duration::from_secs(10), "replication running", {
        replica
            .replication_status()
            .await
            .unwrap()
            .healthy()
            .then_some(())
    });

    writer.close().await;
    replica.close().await;
}
