//! What the application load runs: its two tables and their seed, and the transactions
//! (single-row INSERT, UPDATE and DELETE on both tables, and every tenth a multi-statement one
//! touching both), each statement bounded in time.

use std::time::Duration;

use dbshift_db::Server;

/// Rows the load's tables start with, so that a verify compares more than a handful.
pub const SEED_ORDERS: u64 = 20_000;
pub const SEED_EVENTS: u64 = 2_000;
/// The load's bound on one statement; past it the connection is dropped.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The statements that (re)create and seed `app.orders` (with a primary key) and `app.events`
/// (without one), dropping those of an earlier run.
pub(crate) fn seed_statements() -> Vec<String> {
    let seed = format!(
        "SET SESSION max_recursive_iterations = {}; \
         DROP TABLE IF EXISTS orders, events; \
         CREATE TABLE orders (id BIGINT NOT NULL PRIMARY KEY, customer INT NOT NULL, \
           amount DECIMAL(12,2) NOT NULL, note VARCHAR(64) NOT NULL, \
           version INT NOT NULL DEFAULT 0) ENGINE=InnoDB; \
         CREATE TABLE events (ref BIGINT NOT NULL, kind VARCHAR(16) NOT NULL, \
           amount DECIMAL(12,2) NOT NULL, note VARCHAR(64) NOT NULL, KEY (ref)) \
           ENGINE=InnoDB; \
         INSERT INTO orders (id, customer, amount, note) \
           WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {SEED_ORDERS}) \
           SELECT n, n % 997, n / 100, CONCAT('seed order ', n) FROM s; \
         INSERT INTO events (ref, kind, amount, note) \
           WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {SEED_EVENTS}) \
           SELECT n, 'seed', n / 10, CONCAT('seed event ', n) FROM s",
        SEED_ORDERS.max(SEED_EVENTS) + 1
    );
    seed.split("; ").map(str::to_string).collect()
}

/// How a transaction ended.
pub(crate) enum TxEnd {
    Committed,
    /// Certainly not committed.
    Failed(String),
    /// The COMMIT got no answer: it may or may not have happened.
    Indeterminate(String),
}

/// A small xorshift: the load's choices need no quality, only variety.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// The statements of transaction `k`: single-row INSERT, UPDATE and DELETE on both tables,
/// and every tenth a multi-statement transaction touching both.
pub(crate) fn transaction(k: u64, rng: &mut Rng, next_id: &mut u64) -> (Vec<String>, bool) {
    let upto = *next_id;
    let mut id = || {
        *next_id += 1;
        *next_id - 1
    };
    let existing = |rng: &mut Rng, upto: u64| 1 + rng.below(upto - 1);
    let stmts = match k % 10 {
        0 | 3 | 6 => {
            let i = id();
            vec![format!(
                "INSERT INTO orders (id, customer, amount, note) VALUES ({i}, {}, {}.50, 'order {i}')",
                i % 997,
                i % 1000
            )]
        }
        1 | 4 => vec![format!(
            "UPDATE orders SET amount = amount + 1, version = version + 1 WHERE id = {}",
            existing(rng, upto)
        )],
        2 | 5 => vec![format!(
            "DELETE FROM orders WHERE id = {}",
            existing(rng, upto)
        )],
        7 => vec![format!(
            "INSERT INTO events (ref, kind, amount, note) VALUES ({}, 'event', 1.25, 'event {k}')",
            existing(rng, upto)
        )],
        8 => vec![format!(
            "UPDATE events SET amount = amount + 1 WHERE ref = {}",
            existing(rng, upto.min(SEED_EVENTS + 1))
        )],
        _ => {
            let (a, b, c) = (id(), id(), id());
            vec![
                format!(
                    "INSERT INTO orders (id, customer, amount, note) VALUES \
                     ({a}, 1, 10.00, 'batch {k}'), ({b}, 2, 20.00, 'batch {k}'), \
                     ({c}, 3, 30.00, 'batch {k}')"
                ),
                format!(
                    "UPDATE orders SET amount = amount - 1, version = version + 1 WHERE id = {}",
                    existing(rng, upto)
                ),
                format!(
                    "INSERT INTO events (ref, kind, amount, note) VALUES ({a}, 'batch', 60.00, 'batch {k}')"
                ),
                format!(
                    "DELETE FROM events WHERE ref = {} LIMIT 1",
                    existing(rng, upto)
                ),
                format!("DELETE FROM orders WHERE id = {}", existing(rng, upto)),
            ]
        }
    };
    (stmts, k % 10 == 9)
}

/// Server errors on COMMIT that say it did not happen; any other answer (no answer, a killed
/// connection) leaves the outcome unknown.
pub(crate) fn commit_refused(code: Option<u16>) -> bool {
    // 1290 read_only, 1792 read-only transaction, 1205 lock wait timeout, 1213 deadlock.
    matches!(code, Some(1290 | 1792 | 1205 | 1213))
}

/// One statement of the load, bounded; the error as (server code, text).
async fn exec_bounded(conn: &mut Server, sql: &str) -> Result<(), (Option<u16>, String)> {
    match tokio::time::timeout(STATEMENT_TIMEOUT, conn.exec_sql(sql)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err((e.server_code(), e.to_string())),
        Err(_) => Err((None, format!("no answer within {STATEMENT_TIMEOUT:?}"))),
    }
}

/// Run one transaction; a failure before COMMIT rolls it back when the caller drops the
/// connection.
pub(crate) async fn run_tx(conn: &mut Server, stmts: &[String]) -> TxEnd {
    if let Err((_, e)) = exec_bounded(conn, "START TRANSACTION").await {
        return TxEnd::Failed(e);
    }
    for s in stmts {
        // Before COMMIT: the transaction is rolled back when the connection is dropped.
        if let Err((_, e)) = exec_bounded(conn, s).await {
            return TxEnd::Failed(e);
        }
    }
    match exec_bounded(conn, "COMMIT").await {
        Ok(()) => TxEnd::Committed,
        Err((code, e)) if commit_refused(code) => TxEnd::Failed(e),
        Err((_, e)) => TxEnd::Indeterminate(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_cover_every_statement_kind_on_both_tables() {
        let mut rng = Rng(7);
        let mut next_id = SEED_ORDERS + 1;
        let all: Vec<(Vec<String>, bool)> = (0..10)
            .map(|k| transaction(k, &mut rng, &mut next_id))
            .collect();
        let text = all
            .iter()
            .flat_map(|(s, _)| s.iter().cloned())
            .collect::<Vec<_>>()
            .join("\n");
        for needle in [
            "INSERT INTO orders",
            "UPDATE orders",
            "DELETE FROM orders",
            "INSERT INTO events",
            "UPDATE events",
            "DELETE FROM events",
        ] {
            assert!(text.contains(needle), "{needle} in\n{text}");
        }
        assert_eq!(all.iter().filter(|(_, multi)| *multi).count(), 1);
        assert!(all[9].0.len() > 1);
        // Inserted ids are never reused, so an indeterminate insert cannot collide later.
        assert_eq!(next_id, SEED_ORDERS + 1 + 3 + 3);
    }

    #[test]
    fn only_a_refusal_on_commit_counts_as_not_committed() {
        assert!(commit_refused(Some(1290)));
        assert!(!commit_refused(None));
        assert!(!commit_refused(Some(1927)));
    }
}
