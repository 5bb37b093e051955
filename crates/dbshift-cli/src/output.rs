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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["xyz".into(), "1".into()]);
        assert_eq!(t.render(), "A    LONGER\nxyz  1\n");
    }
}
