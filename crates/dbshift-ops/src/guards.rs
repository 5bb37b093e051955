//! The switchover guards (DESIGN.md, switchover step 1): everything that must hold before a
//! writer is moved, checked on the servers themselves. Each guard passes, warns or fails with a
//! reason an operator can act on. Guards only read: they never change a server.

use dbshift_db::status::IoState;
use dbshift_db::{Result as DbResult, Server};
use serde::Serialize;

/// A guard's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        })
    }
}

/// One guard's result.
#[derive(Debug, Clone, Serialize)]
pub struct GuardResult {
    /// Stable name, e.g. `replication_running`.
    pub name: &'static str,
    pub verdict: Verdict,
    pub reason: String,
}

/// Limits the guards apply.
#[derive(Debug, Clone)]
pub struct GuardLimits {
    /// Most transactions the new writer may be behind (GTID distance), in every sample.
    pub max_lag_transactions: u64,
    /// Most `Seconds_Behind_Master` allowed (shown, but the GTID distance decides too).
    pub max_lag_seconds: u64,
    /// Lag samples taken, 100 ms apart: the lag must be small for the whole window.
    pub lag_samples: u32,
    /// Binlog retention below this warns (seconds; 0 on the server means "kept forever").
    pub min_binlog_retention_s: u64,
    /// `binlog_format=STATEMENT` passes with a warning instead of failing
    /// (`--allow-statement-binlog`).
    pub allow_statement_binlog: bool,
}

impl Default for GuardLimits {
    fn default() -> Self {
        GuardLimits {
            max_lag_transactions: 100,
            max_lag_seconds: 5,
            lag_samples: 5,
            min_binlog_retention_s: 86_400,
            allow_statement_binlog: false,
        }
    }
}

/// The guards' report.
#[derive(Debug, Clone, Serialize)]
pub struct GuardReport {
    pub old_writer: String,
    pub new_writer: String,
    pub results: Vec<GuardResult>,
}

impl GuardReport {
    pub fn failed(&self) -> Vec<&GuardResult> {
        self.results
            .iter()
            .filter(|r| r.verdict == Verdict::Fail)
            .collect()
    }

    pub fn passed(&self) -> bool {
        self.failed().is_empty()
    }

    /// The failed guards, one per line, for a message.
    pub fn failure_text(&self) -> String {
        self.failed()
            .iter()
            .map(|r| format!("{}: {}", r.name, r.reason))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

struct Collector(Vec<GuardResult>);

impl Collector {
    fn push(&mut self, name: &'static str, verdict: Verdict, reason: impl Into<String>) {
        self.0.push(GuardResult {
            name,
            verdict,
            reason: reason.into(),
        });
    }
    fn check(
        &mut self,
        name: &'static str,
        ok: bool,
        pass: impl Into<String>,
        fail: impl Into<String>,
    ) {
        if ok {
            self.push(name, Verdict::Pass, pass);
        } else {
            self.push(name, Verdict::Fail, fail);
        }
    }
}

/// Run every guard for moving the writer from `old` to `new` (which must replicate from
/// `old`, listening on `old_port`).
pub async fn run_guards(
    old: &mut Server,
    new: &mut Server,
    old_id: &str,
    new_id: &str,
    old_port: u16,
    limits: &GuardLimits,
) -> DbResult<GuardReport> {
    let mut c = Collector(Vec::new());

    // Replication from the old writer, running, without error.
    let st = new.replication_status().await?;
    // The source by its server_id when the IO thread has seen it (an address can be a proxy,
    // a relay or a DNS name), else by port.
    let from_old = st.configured
        && match st.source_server_id {
            Some(id) => id == old.server_id(),
            None => st.source_port == Some(old_port),
        };
    let running = st.io_running == IoState::Yes && st.sql_running;
    let error = st
        .last_io_error
        .clone()
        .or(st.last_sql_error.clone())
        .map(|(code, msg)| format!("error {code}: {msg}"));
    c.check(
        "replication_running",
        from_old && running && error.is_none(),
        format!("{new_id} replicates from {old_id}, both threads running"),
        if !st.configured {
            format!("{new_id} is not a replica")
        } else if !from_old {
            format!(
                "{new_id} replicates from {}:{}, not from {old_id}",
                st.source_host.clone().unwrap_or_default(),
                st.source_port.unwrap_or(0)
            )
        } else if let Some(e) = &error {
            format!("{new_id}: replication error ({e}); fix it before a switchover")
        } else {
            format!(
                "{new_id}: IO thread {:?}, SQL thread running: {}; start replication first",
                st.io_running, st.sql_running
            )
        },
    );

    // Lag, by GTID distance, small over the whole window.
    {
        let mut worst = 0u64;
        let mut worst_s = 0u64;
        for i in 0..limits.lag_samples.max(1) {
            let old_pos = old.executed_position().await?;
            let new_pos = new.applied_position().await?;
            // Positions of two server families cannot be compared: as far behind as can be.
            worst = worst.max(new_pos.behind(&old_pos).unwrap_or(u64::MAX));
            worst_s = worst_s.max(
                new.replication_status()
                    .await?
                    .seconds_behind
                    .unwrap_or(u64::MAX),
            );
            if i + 1 < limits.lag_samples {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        // Seconds_Behind_Master is never trusted alone: on an idle source it can show the age
        // of the last event long after the replica applied everything. With no transaction
        // missing in any sample, the replica is caught up whatever it says.
        let seconds_ok = worst_s <= limits.max_lag_seconds || worst == 0;
        c.check(
            "lag",
            worst <= limits.max_lag_transactions && seconds_ok,
            if worst_s > limits.max_lag_seconds {
                format!(
                    "0 transactions behind in every sample (Seconds_Behind_Master said {} s: stale)",
                    if worst_s == u64::MAX { "NULL".to_string() } else { worst_s.to_string() }
                )
            } else {
                format!("at most {worst} transaction(s) and {worst_s} s behind over the window")
            },
            format!(
                "{new_id} was up to {worst} transaction(s) behind (limit {}) and {} s (limit {}); \
                 let it catch up or raise --max-lag",
                limits.max_lag_transactions,
                if worst_s == u64::MAX {
                    "unknown".to_string()
                } else {
                    worst_s.to_string()
                },
                limits.max_lag_seconds
            ),
        );
    }

    {
        let fence = new.read_only_state().await?;
        let (verdict, reason) = read_only_verdict(new_id, fence.read_only, fence.super_read_only);
        c.push("new_writer_read_only", verdict, reason);
    }

    // Errant transactions: in the history (what the server ever binlogged: MariaDB's
    // gtid_binlog_state, MySQL's gtid_executed), never in a position that the replica's own
    // statements move (MariaDB's gtid_current_pos).
    {
        // The replica first: whatever it had then, the source had too, however many writes
        // the source took meanwhile; in the other order those writes would look errant.
        let new_history = new.history().await?;
        let old_history = old.history().await?;
        // By entry, or by domain position where the old writer was restored from a backup (a
        // green being rolled back from) and knows only each domain's last GTID.
        let errant = new_history.missing_from(new.server_id(), &old_history);
        c.check(
            "no_errant_transactions",
            errant.is_empty(),
            format!("{new_id} has no transaction {old_id} lacks"),
            format!(
                "{new_id} has transactions {old_id} never had: {errant}; they would be lost or \
                 replicated back; inspect them first"
            ),
        );
    }

    c.check(
        "binlog_on",
        new.variable_bool("log_bin").await?,
        format!("{new_id} writes a binary log"),
        format!("{new_id} has no binary log (log_bin): the old writer could not replicate from it"),
    );
    {
        // MySQL 8.0.26 renamed log_slave_updates to log_replica_updates (and 8.4 dropped the
        // old name); MariaDB keeps the old one. The database layer reads whichever it has.
        let name = "log_slave_updates/log_replica_updates";
        c.check(
            "log_slave_updates",
            new.logs_replica_updates().await?,
            format!("{new_id} logs replicated transactions ({name}=ON)"),
            format!(
                "{new_id} has {name}=OFF: its binlog lacks the history the other replicas \
                 need after the switch"
            ),
        );
    }
    for (who, server) in [(old_id, &mut *old), (new_id, &mut *new)] {
        let fmt = server.binlog_format().await?.to_string();
        let (verdict, reason) = binlog_format_verdict(who, &fmt, limits.allow_statement_binlog);
        c.push("binlog_format", verdict, reason);
    }
    // MySQL only: its GTIDs can be off, or on without the consistency that makes every
    // transaction loggable with one; positions by GTID (the wait, the re-pointing) need
    // both. A server without gtid_mode (MariaDB: GTIDs always on) has nothing to check.
    for (who, server) in [(old_id, &mut *old), (new_id, &mut *new)] {
        if let Some(mode) = server.gtid_mode().await? {
            let enforce = server
                .enforce_gtid_consistency()
                .await?
                .map(|e| e.to_string())
                .unwrap_or_default();
            let (verdict, reason) = gtid_mode_verdict(who, &mode.to_string(), &enforce);
            c.push("gtid_mode_on", verdict, reason);
        }
    }

    c.check(
        "no_replication_filters",
        st.replicate_filters.is_empty(),
        format!("{new_id} replicates everything"),
        format!(
            "{new_id} filters replication ({}): it does not hold all of {old_id}'s data",
            st.replicate_filters.join(", ")
        ),
    );

    for (who, server) in [(old_id, &mut *old), (new_id, &mut *new)] {
        let xa = server.prepared_xa_transactions().await?;
        c.check(
            "no_prepared_xa",
            xa == 0,
            format!("{who}: no prepared XA transaction"),
            format!(
                "{who}: {xa} prepared XA transaction(s) (XA RECOVER); commit or roll them back first"
            ),
        );
    }

    let osc = old.online_schema_change_leftovers().await?;
    c.check(
        "no_online_schema_change",
        osc.is_empty(),
        "no gh-ost or pt-online-schema-change at work",
        format!(
            "an online schema change seems to be running ({}); let it finish or remove its leftovers",
            osc.join(", ")
        ),
    );

    // Routines and events that run as a definer who can write through read_only (none can
    // through MySQL's super_read_only).
    let stops_all = old.dialect().fence_stops_privileged_users();
    let privileged = if stops_all {
        Vec::new()
    } else {
        old.privileged_definers().await?
    };
    c.check(
        "no_privileged_definers",
        privileged.is_empty(),
        if stops_all {
            "the fence sets super_read_only, which stops every definer"
        } else {
            "no routine or event runs as a user that can write through read_only"
        },
        format!(
            "{} can write through read_only during the fence; give them a definer without \
             SUPER/READ_ONLY ADMIN, or SQL SECURITY INVOKER",
            privileged.join(", ")
        ),
    );

    // Binlog retention on the old writer: reverse replication and rollback read from it.
    let retention_s = match old.variable("binlog_expire_logs_seconds").await? {
        Some(v) if v != "0" => v.parse::<u64>().unwrap_or(0),
        _ => {
            let days: f64 = old
                .variable("expire_logs_days")
                .await?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            (days * 86_400.0) as u64
        }
    };
    if retention_s == 0 || retention_s >= limits.min_binlog_retention_s {
        c.push(
            "binlog_retention",
            Verdict::Pass,
            if retention_s == 0 {
                "binary logs are kept until purged by hand".to_string()
            } else {
                format!("binary logs are kept {} h", retention_s / 3600)
            },
        );
    } else {
        c.push(
            "binlog_retention",
            Verdict::Warn,
            format!(
                "binary logs are kept only {} s: a replica that falls behind longer cannot catch up",
                retention_s
            ),
        );
    }

    let no_pk = old.tables_without_primary_key(20).await?;
    if no_pk.is_empty() {
        c.push(
            "primary_keys",
            Verdict::Pass,
            "every table has a primary key",
        );
    } else {
        c.push(
            "primary_keys",
            Verdict::Warn,
            format!(
                "tables without a primary key replicate slowly in ROW format: {}",
                no_pk.join(", ")
            ),
        );
    }

    for (who, server) in [(old_id, &mut *old), (new_id, &mut *new)] {
        let sync = server.sync_binlog().await?;
        if sync == 1 {
            c.push(
                "sync_binlog",
                Verdict::Pass,
                format!("{who}: sync_binlog=1"),
            );
        } else {
            c.push(
                "sync_binlog",
                Verdict::Warn,
                format!("{who}: sync_binlog={sync}: a crash can lose transactions from the binlog"),
            );
        }
    }

    Ok(GuardReport {
        old_writer: old_id.to_string(),
        new_writer: new_id.to_string(),
        results: c.0,
    })
}

/// A boolean variable's text is on (`ON`, `1`; any case).
fn is_on(value: &str) -> bool {
    value.eq_ignore_ascii_case("ON") || value == "1"
}

/// The new writer must not take writes before its promotion. `read_only` is the fence for a
/// replica on every flavor: MySQL's `super_read_only` (when the server has it) turns
/// `read_only` on with it and only adds users holding SUPER, whom the switchover's fence
/// handles; so `read_only` decides and `super_read_only` is only reported.
pub fn read_only_verdict(
    id: &str,
    read_only: bool,
    super_read_only: Option<bool>,
) -> (Verdict, String) {
    match (read_only, super_read_only) {
        (true, Some(true)) => (
            Verdict::Pass,
            format!("{id} is read-only until promoted (super_read_only=ON)"),
        ),
        (true, _) => (Verdict::Pass, format!("{id} is read-only until promoted")),
        (false, Some(_)) => (
            Verdict::Fail,
            format!(
                "{id} is writable already: a replica must be read-only (turn read_only or \
                 super_read_only on)"
            ),
        ),
        (false, None) => (
            Verdict::Fail,
            format!("{id} is writable already: a replica must be read-only (turn read_only on)"),
        ),
    }
}

/// `binlog_format`: ROW and MIXED pass (MIXED logs as rows every statement that is unsafe as a
/// statement; AWS's Aurora upgrade runbook recommends it); STATEMENT fails unless the operator
/// accepted it, and then warns.
pub fn binlog_format_verdict(who: &str, format: &str, allow_statement: bool) -> (Verdict, String) {
    let upper = format.to_ascii_uppercase();
    match upper.as_str() {
        "ROW" | "MIXED" => (Verdict::Pass, format!("{who}: binlog_format={upper}")),
        "STATEMENT" if allow_statement => (
            Verdict::Warn,
            format!(
                "{who}: binlog_format=STATEMENT (allowed by --allow-statement-binlog): a \
                 non-deterministic statement (UUID(), NOW(), LIMIT without ORDER BY, ...) can \
                 change other rows on a replica than on its source, more so across versions \
                 (an upgrade blue/green); ROW or MIXED avoids it"
            ),
        ),
        "STATEMENT" => (
            Verdict::Fail,
            format!(
                "{who}: binlog_format=STATEMENT: statement-based replication of \
                 non-deterministic statements can differ between servers, more so across \
                 versions (an upgrade blue/green); set it to ROW or MIXED, or pass \
                 --allow-statement-binlog to accept the risk"
            ),
        ),
        _ => (
            Verdict::Fail,
            format!("{who}: binlog_format={format}; set it to ROW or MIXED"),
        ),
    }
}

/// MySQL's `gtid_mode` and `enforce_gtid_consistency` must both be ON: the switchover waits,
/// compares and re-points by GTID. Never changed by dbshift: the fix is the operator's.
pub fn gtid_mode_verdict(who: &str, gtid_mode: &str, enforce: &str) -> (Verdict, String) {
    if is_on(gtid_mode) && is_on(enforce) {
        return (
            Verdict::Pass,
            format!("{who}: gtid_mode=ON, enforce_gtid_consistency=ON"),
        );
    }
    (
        Verdict::Fail,
        format!(
            "{who}: gtid_mode={gtid_mode}, enforce_gtid_consistency={enforce}: a switchover \
             needs GTIDs (both ON); nothing was changed. To turn them on: \
             SET PERSIST enforce_gtid_consistency=ON, then step gtid_mode OFF -> \
             OFF_PERMISSIVE -> ON_PERMISSIVE -> ON (SET PERSIST gtid_mode=<next> on every \
             server of the cluster at each step, waiting for ONGOING_ANONYMOUS_TRANSACTION_COUNT \
             to reach 0 before ON); on RDS or Aurora, in the DB parameter group"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_and_mixed_pass_in_any_case() {
        for f in ["ROW", "MIXED", "row", "Mixed"] {
            for allow in [false, true] {
                let (v, reason) = binlog_format_verdict("db-1", f, allow);
                assert_eq!(v, Verdict::Pass, "{f}");
                assert!(reason.contains(&f.to_ascii_uppercase()), "{reason}");
            }
        }
    }

    #[test]
    fn statement_is_refused_unless_allowed_then_warns_with_the_risk() {
        let (v, reason) = binlog_format_verdict("db-1", "STATEMENT", false);
        assert_eq!(v, Verdict::Fail);
        assert!(reason.contains("--allow-statement-binlog"), "{reason}");
        assert!(reason.contains("ROW or MIXED"), "{reason}");
        let (v, reason) = binlog_format_verdict("db-1", "STATEMENT", true);
        assert_eq!(v, Verdict::Warn);
        assert!(reason.contains("non-deterministic"), "{reason}");
        assert!(reason.contains("across versions"), "{reason}");
    }

    #[test]
    fn an_unknown_or_empty_format_fails() {
        for f in ["", "FOO"] {
            assert_eq!(binlog_format_verdict("db-1", f, true).0, Verdict::Fail);
        }
    }

    #[test]
    fn gtid_mode_needs_both_on() {
        assert_eq!(gtid_mode_verdict("db-1", "ON", "ON").0, Verdict::Pass);
        for (mode, enforce) in [
            ("OFF", "OFF"),
            ("ON_PERMISSIVE", "ON"),
            ("OFF_PERMISSIVE", "ON"),
            ("ON", "WARN"),
            ("ON", "OFF"),
        ] {
            let (v, reason) = gtid_mode_verdict("db-1", mode, enforce);
            assert_eq!(v, Verdict::Fail, "{mode} {enforce}");
            assert!(reason.contains(&format!("gtid_mode={mode}")), "{reason}");
            assert!(
                reason.contains("PERSIST enforce_gtid_consistency=ON"),
                "{reason}"
            );
            assert!(
                reason.contains("OFF -> OFF_PERMISSIVE -> ON_PERMISSIVE -> ON"),
                "{reason}"
            );
            assert!(reason.contains("DB parameter group"), "{reason}");
            assert!(reason.contains("nothing was changed"), "{reason}");
        }
    }

    #[test]
    fn a_replica_with_read_only_on_is_fenced_whatever_super_read_only_says() {
        for sro in [None, Some(false), Some(true)] {
            assert_eq!(read_only_verdict("db-2", true, sro).0, Verdict::Pass);
            assert_eq!(read_only_verdict("db-2", false, sro).0, Verdict::Fail);
        }
        assert!(read_only_verdict("db-2", true, Some(true))
            .1
            .contains("super_read_only=ON"));
        assert!(read_only_verdict("db-2", false, Some(false))
            .1
            .contains("super_read_only"));
        assert!(!read_only_verdict("db-2", false, None)
            .1
            .contains("super_read_only"));
    }

    #[test]
    fn on_is_on_or_one() {
        assert!(is_on("ON") && is_on("on") && is_on("1"));
        assert!(!is_on("OFF") && !is_on("0") && !is_on("") && !is_on("WARN"));
    }
}
