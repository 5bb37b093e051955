//! `dbshift upgrade-check` on a MariaDB lab: clean first (exit 0), then seeded to trip the
//! MariaDB checks (a variable 11.x removed, set at runtime; a utf8mb3 column): exit 1 with
//! each finding and its objects; bad input (a downgrade, another engine, an unknown cluster)
//! exit 2. The MySQL checks' catalogue queries also run against this server's catalogue
//! (MariaDB has the same `information_schema` tables) with objects seeded to be found: a
//! column named by a word MySQL 8.0 reserves, a ZEROFILL column, a view calling `PASSWORD()`,
//! and MariaDB's own default `sql_mode`, which holds a mode MySQL 8.0 removed.
//!
//! Run: `cargo test -p dbshift-cli --test upgrade_check` (needs MariaDB).

mod common;

use common::{dbshift, text};
use dbshift_db::upgrade;
use dbshift_testkit::TestLab;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_on_a_seeded_lab_and_bad_input_refused() {
    let lab = TestLab::start(1, 1).await;
    let dir = lab.dir().to_path_buf();
    let run = |args: &[&str]| {
        let (dir, args): (std::path::PathBuf, Vec<String>) =
            (dir.clone(), args.iter().map(|s| s.to_string()).collect());
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            dbshift(&dir, &args)
        })
    };
    let clean = run(&["upgrade-check", "lab-1", "--to", "11.4"])
        .await
        .unwrap();
    assert!(clean.status.success(), "{}", text(&clean));
    assert!(text(&clean).contains("0 finding(s)"), "{}", text(&clean));

    for (to, want) in [
        ("10.6", "not newer"),
        ("mysql-8.4", "one engine"),
        ("11.99", "no MariaDB release series"),
    ] {
        let o = run(&["upgrade-check", "lab-1", "--to", to]).await.unwrap();
        assert_eq!(o.status.code(), Some(2), "{to}: {}", text(&o));
        assert!(text(&o).contains(want), "{to}: {}", text(&o));
    }
    let o = run(&["upgrade-check", "nosuch", "--to", "11.4"])
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("lab-1"), "{}", text(&o));

    let writer = lab.lab().state().clusters[0].writer.clone();
    let mut w = lab.lab().connect_admin(&writer).await.unwrap();
    for sql in [
        "SET GLOBAL innodb_change_buffering = 'none'",
        "CREATE TABLE app.legacy (id INT PRIMARY KEY, name VARCHAR(10) CHARACTER SET utf8mb3)",
        "CREATE TABLE app.scores (id INT(8) ZEROFILL PRIMARY KEY, `rank` INT)",
        "CREATE VIEW app.hashed AS SELECT PASSWORD('x') AS h",
    ] {
        w.exec_sql(sql).await.unwrap();
    }
    let o = run(&["upgrade-check", "lab-1", "--to", "11.4", "-o", "json"])
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let finding = |check: &str| {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["check"] == check)
            .cloned()
            .unwrap_or_else(|| panic!("no {check} finding: {report:#}"))
    };
    let removed = finding("removed_system_variables");
    assert_eq!(removed["level"], "error", "{report:#}");
    assert!(
        removed["objects"][0]
            .as_str()
            .unwrap()
            .starts_with("innodb_change_buffering = none"),
        "{report:#}"
    );
    let utf8 = finding("utf8mb3");
    assert_eq!(utf8["level"], "notice");
    assert_eq!(utf8["objects"][0], "column app.legacy.name (utf8mb3)");
    assert_eq!(report["errors"], 1, "{report:#}");

    // The MySQL checks' queries, on this catalogue.
    let first = |rows: Vec<Vec<(String, Option<String>)>>| -> Vec<String> {
        rows.into_iter()
            .filter_map(|r| r.into_iter().next().and_then(|(_, v)| v))
            .collect()
    };
    let words = first(
        w.query_rows(&upgrade::identifiers_named(upgrade::MYSQL_80_RESERVED))
            .await
            .unwrap(),
    );
    assert_eq!(words, ["column app.scores.rank"]);
    let widths = first(
        w.query_rows(&upgrade::zerofill_and_display_width())
            .await
            .unwrap(),
    );
    assert!(
        widths
            .iter()
            .any(|o| o.starts_with("column app.scores.id (int(8) unsigned zerofill")),
        "{widths:?}"
    );
    let calls = first(
        w.query_rows(&upgrade::bodies_calling(
            upgrade::MYSQL_80_REMOVED_FUNCTIONS,
        ))
        .await
        .unwrap(),
    );
    assert_eq!(calls, ["view app.hashed"]);
    for sql in [
        upgrade::long_foreign_key_names(),
        upgrade::non_native_partitioning(),
        upgrade::accounts_with_plugin("sha256_password"),
    ] {
        assert!(
            first(w.query_rows(&sql).await.unwrap()).is_empty(),
            "nothing to find: {sql}"
        );
    }
    // MariaDB's default sql_mode holds NO_AUTO_CREATE_USER, which MySQL 8.0 removed.
    let modes = first(
        w.query_rows(&upgrade::objects_with_sql_modes(
            upgrade::MYSQL_80_REMOVED_SQL_MODES,
        ))
        .await
        .unwrap(),
    );
    assert_eq!(modes.len(), 1, "{modes:?}");
    assert!(
        modes[0].starts_with("global sql_mode ") && modes[0].contains("NO_AUTO_CREATE_USER"),
        "{modes:?}"
    );
    w.exec_sql("SET GLOBAL innodb_change_buffering = DEFAULT")
        .await
        .unwrap();
    w.close().await;
}
