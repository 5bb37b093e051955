//! `dbshift inventory` reads what each server says it is (`@@read_only`, replication), not
//! only the role the lab's records give it: a lab built by the binary, a replica made writable
//! and then the writer made read-only by hand (the `mariadb` client, as an operator would),
//! each flagged in the JSON and under the table while the command still exits 0.
//! Run with `make test` or `cargo test -p dbshift-cli --test inventory`; needs MariaDB
//! installed (`mariadbd` and the `mariadb` client).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{dbshift, json, text, CliLab};
use serde_json::Value;

/// How the test reaches a server as dbshift's admin: the `mariadb` client over TLS.
struct Admin {
    user: String,
    password: String,
    ca: String,
}

impl Admin {
    fn of_lab(dir: &Path) -> Admin {
        let st = json(&dbshift(dir, &["lab", "status", "-o", "json"]));
        let s = |v: &Value| v.as_str().expect("a string in lab status").to_string();
        Admin {
            user: s(&st["users"]["admin"]["user"]),
            password: s(&st["users"]["admin"]["password"]),
            ca: s(&st["ca_bundle"]),
        }
    }

    /// Run one statement on the instance `row` of the inventory describes.
    fn run(&self, row: &Value, sql: &str) {
        let o = Command::new("mariadb")
            .arg("--host")
            .arg(row["endpoint"]["host"].as_str().unwrap())
            .arg("--port")
            .arg(row["endpoint"]["port"].to_string())
            .arg("--user")
            .arg(&self.user)
            .arg(format!("--ssl-ca={}", self.ca))
            .arg("--batch")
            .arg("-e")
            .arg(sql)
            // The password through the environment, never on a command line others can read.
            .env("MYSQL_PWD", &self.password)
            .output()
            .expect("the mariadb client runs");
        assert!(
            o.status.success(),
            "{sql} on {}: {}",
            row["id"],
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

fn inventory(dir: &Path) -> Vec<Value> {
    json(&dbshift(dir, &["inventory", "-o", "json"]))
        .as_array()
        .expect("the inventory is a JSON array")
        .clone()
}

fn problems(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .flat_map(|r| r["problems"].as_array().unwrap().clone())
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

/// The inventory once it reports no problem: replicas of a fresh lab may still be connecting.
fn healthy_inventory(dir: &Path) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let rows = inventory(dir);
        if problems(&rows).is_empty() {
            return rows;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the inventory still reports problems after 30 s: {rows:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn row<'a>(rows: &'a [Value], id: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in the inventory: {rows:#?}"))
}

/// The table's stdout; the command must exit 0 even when it reports problems.
fn table(dir: &Path) -> String {
    let o = dbshift(dir, &["inventory"]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn inventory_flags_a_writable_reader_and_a_read_only_writer() {
    let lab = CliLab::up(1, 2);
    let dir = lab.dir.clone();
    let admin = Admin::of_lab(&dir);

    // Healthy: one writable writer, two read-only replicas of it.
    let rows = healthy_inventory(&dir);
    assert_eq!(rows.len(), 3, "{rows:#?}");
    let writer = rows
        .iter()
        .find(|r| r["role"] == "writer")
        .expect("the lab has a writer")
        .clone();
    let writer_id = writer["id"].as_str().unwrap().to_string();
    assert_eq!(writer["observed_role"], "writer", "{writer:#}");
    assert_eq!(writer["replication"]["read_only"], false, "{writer:#}");
    let readers: Vec<Value> = rows
        .iter()
        .filter(|r| r["role"] == "reader")
        .cloned()
        .collect();
    assert_eq!(readers.len(), 2, "{rows:#?}");
    for r in &readers {
        assert_eq!(r["observed_role"], "replica", "{r:#}");
        assert_eq!(r["replication"]["read_only"], true, "{r:#}");
        assert_eq!(
            r["replication"]["source_instance"],
            writer_id.as_str(),
            "{r:#}"
        );
    }
    let t = table(&dir);
    assert!(t.contains("READ_ONLY") && t.contains("OBSERVED"), "{t}");
    assert!(t.contains("problems: none"), "{t}");
    assert!(!t.contains("PROBLEMS"), "{t}");

    // A replica made writable: two writers in lab-1, whatever the lab's records say.
    let reader = &readers[0];
    let reader_id = reader["id"].as_str().unwrap().to_string();
    admin.run(reader, "SET GLOBAL read_only = OFF");
    let rows = inventory(&dir);
    let r = row(&rows, &reader_id);
    assert_eq!(r["role"], "reader", "the provider's role is kept: {r:#}");
    assert_eq!(r["observed_role"], "writable_replica", "{r:#}");
    assert_eq!(r["replication"]["read_only"], false, "{r:#}");
    let expected = format!(
        "writable reader: {reader_id} accepts writes although lab-1's writer is {writer_id}: \
         two writers"
    );
    assert!(
        r["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == expected.as_str()),
        "{r:#}"
    );
    let w = row(&rows, &writer_id);
    assert!(
        w["problems"].as_array().unwrap().iter().any(|p| p
            .as_str()
            .unwrap()
            .starts_with("2 writable servers behind lab-1")),
        "{w:#}"
    );
    let t = table(&dir);
    assert!(t.contains("PROBLEMS (2):"), "{t}");
    assert!(t.contains(&format!("{reader_id}: {expected}")), "{t}");
    assert!(t.contains("writable_replica"), "{t}");

    admin.run(reader, "SET GLOBAL read_only = ON");
    healthy_inventory(&dir);

    // The writer made read-only: clients of lab-1 cannot write.
    admin.run(&writer, "SET GLOBAL read_only = ON");
    let rows = inventory(&dir);
    let w = row(&rows, &writer_id);
    assert_eq!(w["role"], "writer", "{w:#}");
    assert_eq!(w["observed_role"], "read_only_standalone", "{w:#}");
    assert_eq!(w["replication"]["read_only"], true, "{w:#}");
    assert_eq!(
        w["problems"],
        serde_json::json!(["read-only writer: clients of lab-1 cannot write"]),
        "{w:#}"
    );
    assert_eq!(problems(&rows).len(), 1, "{rows:#?}");
    let t = table(&dir);
    assert!(t.contains("PROBLEMS (1):"), "{t}");
    assert!(
        t.contains(&format!(
            "{writer_id}: read-only writer: clients of lab-1 cannot write"
        )),
        "{t}"
    );

    admin.run(&writer, "SET GLOBAL read_only = OFF");
    let rows = healthy_inventory(&dir);
    assert_eq!(row(&rows, &writer_id)["observed_role"], "writer");
}
