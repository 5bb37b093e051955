//! Human output: aligned tables. JSON output is serde's, with stable field names.

use dbshift_ops::inventory::InventoryRow;
#[cfg(feature = "local")]
use dbshift_provider::local::LabStatus;
use serde::Serialize;

pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A plain text table: a header row and left-aligned columns.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(c.chars().count());
                }
            }
        }
        let line = |cells: &[String]| {
            cells
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{:<w$}", c, w = widths.get(i).copied().unwrap_or(0)))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        let mut out = line(&self.header);
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        out
    }
}

#[cfg(feature = "local")]
pub fn print_lab_status(s: &LabStatus) {
    let mode = if s.rds_mode { ", RDS mode" } else { "" };
    println!(
        "lab: {}  (MariaDB {}{mode})",
        s.dir.display(),
        s.engine_version
    );
    let mut t = Table::new(&["CLUSTER", "WRITER", "ENDPOINT", "GTID DOMAIN", "PROXY"]);
    for c in &s.clusters {
        t.row(vec![
            c.name.clone(),
            c.writer.clone(),
            c.endpoint.to_string(),
            c.gtid_domain_id.to_string(),
            if c.proxies.is_empty() {
                "-".into()
            } else {
                c.proxies
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ]);
    }
    print!("{}", t.render());
    println!();
    let mut t = Table::new(&[
        "INSTANCE",
        "CLUSTER",
        "ROLE",
        "ENDPOINT",
        "SERVER_ID",
        "STATUS",
        "PID",
        "CA",
    ]);
    for i in &s.instances {
        t.row(vec![
            i.id.clone(),
            i.cluster.clone(),
            i.role.to_string(),
            i.endpoint.to_string(),
            i.server_id.to_string(),
            i.status.to_string(),
            i.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            i.ca.clone(),
        ]);
    }
    print!("{}", t.render());
    println!();
    println!("users (passwords: `dbshift lab status --output json`):");
    if s.rds_mode {
        println!(
            "  admin        {}  (RDS master user: no SUPER, no READ_ONLY ADMIN; mysql.rds_* procedures)",
            s.users.admin.user
        );
    } else {
        println!("  admin        {}", s.users.admin.user);
    }
    println!("  replication  {}", s.users.replication.user);
    println!(
        "  application  {}  (no SUPER, no READ_ONLY ADMIN)",
        s.users.app.user
    );
    println!("CA bundle: {}", s.ca_bundle.display());
}

pub fn print_inventory(rows: &[InventoryRow]) {
    let mut t = Table::new(&[
        "INSTANCE",
        "CLUSTER",
        "ROLE",
        "OBSERVED",
        "READ_ONLY",
        "ENDPOINT",
        "ENGINE",
        "STATUS",
        "CA",
        "ENCRYPTED",
        "SOURCE",
        "IO",
        "SQL",
        "LAG_S",
        "LAG_TRX",
        "LAST_ERROR",
    ]);
    for r in rows {
        let (io, sql, lag_s, lag_trx, err) = match &r.replication {
            Some(h) if h.replicating => (
                h.io_running.clone(),
                if h.sql_running { "Yes" } else { "No" }.to_string(),
                h.lag_seconds
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
                h.lag_transactions
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
                h.last_error.clone().unwrap_or_default(),
            ),
            Some(_) => (
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                String::new(),
            ),
            None => (
                "?".into(),
                "?".into(),
                "-".into(),
                "-".into(),
                r.error.clone().unwrap_or_default(),
            ),
        };
        let (read_only, source) = match &r.replication {
            Some(h) => (
                if h.read_only { "ON" } else { "OFF" }.to_string(),
                h.source_instance
                    .clone()
                    .or_else(|| h.source.clone())
                    .unwrap_or_else(|| "-".into()),
            ),
            None => ("?".into(), "?".into()),
        };
        t.row(vec![
            r.id.clone(),
            r.cluster.clone(),
            r.role.to_string(),
            r.observed_role.to_string(),
            read_only,
            r.endpoint.to_string(),
            r.flavor
                .clone()
                .unwrap_or_else(|| format!("{} {}", r.engine, r.engine_version)),
            r.status.to_string(),
            r.ca.clone(),
            r.encrypted.to_string(),
            source,
            io,
            sql,
            lag_s,
            lag_trx,
            err,
        ]);
    }
    print!("{}", t.render());
    // Under the table, where a reader of the table looks last: the table alone showed a
    // writable reader as healthy as any.
    let problems: Vec<(&str, &str)> = rows
        .iter()
        .flat_map(|r| r.problems.iter().map(|p| (r.id.as_str(), p.as_str())))
        .collect();
    if !problems.is_empty() {
        println!();
        println!("PROBLEMS ({}):", problems.len());
        for (id, p) in problems {
            println!("  {id}: {p}");
        }
    } else if rows.iter().any(|r| r.replication.is_some()) {
        println!();
        println!("problems: none (read_only and replication agree with every role observed)");
    }
}

/// A self-managed cluster's discovered topology as a tree, one line per member, annotated
/// with what the inventory `rows` observed of it: the writer at the root, each replica under
/// its source, then each member that does not lead to the writer as a root of its own with
/// why (a replica of nowhere, a source unknown, a loop). A member that does not answer is
/// marked `UNREACHABLE`.
#[cfg(feature = "self-managed")]
pub fn render_tree(
    cluster: &str,
    t: &dbshift_provider::selfmanaged::discovery::Topology,
    rows: &[InventoryRow],
) -> String {
    let down = t.members.iter().filter(|m| !m.reachable).count();
    let mut out = format!(
        "{cluster}: writer {}, {} server{}{}\n",
        t.writer,
        t.members.len(),
        if t.members.len() == 1 { "" } else { "s" },
        if down > 0 {
            format!(", {down} not answering")
        } else {
            String::new()
        }
    );
    for line in t.tree() {
        let m = line.member;
        let mut cells = vec![m.id.clone()];
        if m.id != m.endpoint.to_string() {
            cells.push(m.endpoint.to_string());
        }
        let writer = m.id == t.writer;
        if !m.reachable {
            cells.push(
                if writer {
                    "writer, UNREACHABLE (does not answer)"
                } else {
                    "UNREACHABLE (does not answer)"
                }
                .to_string(),
            );
        } else {
            cells.push(
                match (writer, &m.source) {
                    (true, _) => "writer",
                    (false, Some(_)) => "replica",
                    (false, None) => "read-only",
                }
                .to_string(),
            );
            cells.push(m.version.clone());
            let row = rows.iter().find(|r| r.cluster == cluster && r.id == m.id);
            if let Some(h) = row
                .and_then(|r| r.replication.as_ref())
                .filter(|h| h.replicating)
            {
                let or_dash = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or("-".into());
                cells.push(format!(
                    "IO {}, SQL {}, lag {} s / {} trx",
                    h.io_running,
                    if h.sql_running { "Yes" } else { "No" },
                    or_dash(h.lag_seconds),
                    or_dash(h.lag_transactions)
                ));
            }
        }
        if line.depth == 0 && !writer {
            cells.push(match (&m.source_id, &m.source) {
                (Some(id), _) => format!("(in a loop: replicates from {id})"),
                (None, Some(ep)) => format!("(replicates from {ep}: no member)"),
                (None, None) if m.reachable => "(replicates from nobody)".to_string(),
                (None, None) => "(source unknown)".to_string(),
            });
        }
        out.push_str(&format!("  {}{}\n", line.prefix, cells.join("  ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["xyz".into(), "1".into()]);
        assert_eq!(t.render(), "A    LONGER\nxyz  1\n");
    }

    #[cfg(feature = "self-managed")]
    #[test]
    fn a_topology_is_drawn_as_a_tree() {
        use dbshift_provider::selfmanaged::discovery::{settle, Member, Walk};
        use dbshift_provider::{Endpoint, Role};
        let ep = |port: u16| Endpoint {
            host: "10.0.0.1".into(),
            port,
        };
        let up = |port: u16, source: Option<u16>| Member {
            id: format!("db{port}"),
            endpoint: ep(port),
            server_id: port.into(),
            engine: "mariadb".into(),
            version: "MariaDB 10.11.14".into(),
            read_only: source.is_some(),
            source: source.map(ep),
            source_id: None,
            source_server_id: source.map(u32::from),
            role: Role::Reader,
            reachable: true,
        };
        let walk = Walk {
            members: vec![up(3, Some(2)), up(2, Some(1)), up(1, None), up(5, Some(4))],
            answered: [1, 2, 3, 5]
                .iter()
                .map(|p| (ep(*p), u32::from(*p)))
                .collect(),
            listed: Vec::new(),
            down: vec![ep(4)],
        };
        let t = settle(walk, &[ep(3)], &|e: &Endpoint| format!("db{}", e.port)).unwrap();
        let text = render_tree("main", &t, &[]);
        assert_eq!(
            text,
            "main: writer db1, 5 servers, 1 not answering\n\
             \x20 db1  10.0.0.1:1  writer  MariaDB 10.11.14\n\
             \x20 └─ db2  10.0.0.1:2  replica  MariaDB 10.11.14\n\
             \x20    └─ db3  10.0.0.1:3  replica  MariaDB 10.11.14\n\
             \x20 db4  10.0.0.1:4  UNREACHABLE (does not answer)  (source unknown)\n\
             \x20 └─ db5  10.0.0.1:5  replica  MariaDB 10.11.14\n"
        );
    }
}
