//! The demo's report as a table: both switches, both verifies, green's encryption and the
//! load, then what failed.

use super::{secs, DemoArgs, DemoReport};
use crate::output::Table;

/// Print the demo's report for a terminal (`--output table`).
pub(super) fn print_report(r: &DemoReport, a: &DemoArgs) {
    println!();
    let mut t = Table::new(&[
        "SWITCH",
        "RUN",
        "OUTCOME",
        "WRITE_GAP_MS",
        "PROBE_MAX_GAP_MS",
        "FAILED",
        "LOST",
        "INDETERMINATE",
        "CHART",
    ]);
    for (name, s) in [("switchover", &r.switchover), ("rollback", &r.rollback)] {
        match s {
            Some(s) => t.row(vec![
                name.into(),
                s.run_id.clone(),
                s.outcome.clone(),
                s.write_gap_ms
                    .map(|g| g.to_string())
                    .unwrap_or_else(|| "-".into()),
                format!("{:.0}", s.max_write_gap_ms),
                format!("{}/{}", s.failed_writes, s.probe_writes),
                s.lost_writes.to_string(),
                s.indeterminate.to_string(),
                s.chart
                    .as_ref()
                    .map(|c| c.display().to_string())
                    .unwrap_or_else(|| "-".into()),
            ]),
            None => t.row(vec![name.into(), "-".into(), "not run".into()]),
        }
    }
    print!("{}", t.render());
    println!();
    let mut t = Table::new(&["VERIFY", "EQUAL", "TABLES", "ROWS", "ROWS/S", "POSITION"]);
    for (name, v) in [
        ("after create", &r.verify),
        ("after rollback", &r.verify_after_rollback),
    ] {
        match v {
            Some(v) => t.row(vec![
                name.into(),
                if v.equal { "yes" } else { "NO" }.into(),
                v.tables.to_string(),
                v.rows_compared.to_string(),
                format!("{:.0}", v.rows_per_s),
                v.position.clone(),
            ]),
            None => t.row(vec![name.into(), "not run".into()]),
        }
    }
    print!("{}", t.render());
    println!();
    if let Some(e) = &r.encryption {
        println!(
            "encryption: {}/{} InnoDB tablespaces of green's writer {} encrypted",
            e.tablespaces_encrypted, e.tablespaces_total, e.instance
        );
    }
    if let Some(l) = &r.load {
        println!(
            "load: {} committed ({} multi-statement), {} failed, {} indeterminate, {} reconnect(s) \
             in {} at {}/s; longest time between commits {} ms",
            l.committed,
            l.committed_multi_statement,
            l.failed,
            l.indeterminate,
            l.reconnects,
            secs(l.duration_ms),
            l.rate,
            l.max_commit_gap_ms
        );
    }
    println!("reports: {}", r.reports_dir.display());
    if a.keep {
        println!(
            "the lab is still running: DBSHIFT_LAB_DIR={} dbshift inventory \
             (dbshift bluegreen status, dbshift runs; `dbshift --dir {} lab down --purge` to end it)",
            r.lab_dir.display(),
            r.lab_dir.display()
        );
    }
    for c in r.checks.iter().filter(|c| !c.ok) {
        println!("FAILED {}: {}", c.name, c.detail);
    }
    if r.ok {
        println!("result: OK (both switches done, no lost write, both verifies equal)");
    }
}
