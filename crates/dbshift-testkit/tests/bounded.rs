//! Every statement that can wait on a server is bounded, on real MariaDB (issue 15).
//!
//! The scenario that hung switchovers before: on a replica, a client holds `LOCK TABLES ...
//! WRITE` on a table the writer then inserts into, so the replica's SQL thread waits on the
//! table's metadata lock; `STOP SLAVE` then waits for the SQL thread and never returns. Here it
//! must fail with [`Error::StatementTimeout`] once the connection's statement timeout (2 s) ran
//! out, the connection must refuse every later call at once, and once the lock is released
//! replication must start again. The other tests prove that the statement is cancelled on the
//! server (`KILL QUERY`) and that the replication waits keep their own, longer, deadline.
//!
//! These tests stop replication, so they run one at a time on this binary's own lab. Run with
//! `cargo test -p dbshift-testkit --test bounded` (needs `mariadbd`; `make test` installs it).

use std::time::{Duration, Instant};

use dbshift_db::mariadb::GtidPos;
use dbshift_db::status::IoState;
use dbshift_db::{Cancel, Error, Server};
use dbshift_provider::local::Lab;
use dbshift_testkit::{assert_no_secret, eventually, lab_secrets, shared_lab};
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

/// Generous for a loaded 2-core machine: what the tests prove is that a call returns instead of
/// hanging, never how fast.
const SETTLE: Duration = Duration::from_secs(30);

fn writer_and_replica(lab: &Lab) -> (String, String) {
    let c = &lab.state().clusters[0];
    let replica = lab
        .state()
        .instances_of(&c.name)
        .find(|i| i.id != c.writer)
        .map(|i| i.id.clone())
        .expect("the lab has a replica");
    (c.writer.clone(), replica)
}

/// Sessions of `server` other than the caller's whose state says they wait on a table lock.
async fn lock_waiters(server: &mut Server) -> Vec<(String, String)> {
    server
        .query_rows(
            "SELECT USER, STATE FROM information_schema.PROCESSLIST \
             WHERE ID <> CONNECTION_ID() AND STATE LIKE 'Waiting for table%lock'",
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            let col = |i: usize| r.get(i).and_then(|c| c.1.clone()).unwrap_or_default();
            (col(0), col(1))
        })
        .collect()
}

#[tokio::test]
async fn stop_slave_behind_a_table_lock_times_out_and_replication_recovers() {
    let _g = SERIAL.lock().await;
    let lab = shared_lab().await;
    let (w, r) = writer_and_replica(lab);
    let mut writer = lab.connect_admin(&w).await.unwrap();
    writer
        .exec_sql("CREATE TABLE IF NOT EXISTS app.bounded_lock (id INT PRIMARY KEY AUTO_INCREMENT, v INT)")
        .await
        .unwrap();
    writer
        .exec_sql("INSERT INTO app.bounded_lock (v) VALUES (1)")
        .await
        .unwrap();
    let created = writer.gtid_binlog_pos().await.unwrap();
    let mut holder = lab.connect_admin(&r).await.unwrap();
    holder.wait_for_gtid(&created, SETTLE).await.unwrap();

    // The replica's SQL thread blocks on the lock as soon as it applies the next insert.
    holder
        .exec_sql("LOCK TABLES app.bounded_lock WRITE")
        .await
        .unwrap();
    writer
        .exec_sql("INSERT INTO app.bounded_lock (v) VALUES (2)")
        .await
        .unwrap();
    let blocked = writer.gtid_binlog_pos().await.unwrap();
    let mut observer = lab.connect_admin(&r).await.unwrap();
    let waiters = eventually!(SETTLE, "the SQL thread to wait on the table lock", {
        let w = lock_waiters(&mut observer).await;
        (!w.is_empty()).then_some(w)
    });

    let opts = lab
        .admin_options(&r)
        .unwrap()
        .statement_timeout(Duration::from_secs(2));
    let mut stopper = Server::connect(&opts).await.unwrap();
    assert_eq!(stopper.statement_timeout(), Duration::from_secs(2));
    let started = Instant::now();
    let outcome = tokio::time::timeout(SETTLE, stopper.stop_replication()).await;
    let took = started.elapsed();
    let err = outcome
        .unwrap_or_else(|_| panic!("STOP SLAVE behind {waiters:?} was not bounded"))
        .expect_err("STOP SLAVE returned while the SQL thread waited on a lock");
    let Error::StatementTimeout {
        endpoint,
        sql,
        after,
        cancel,
    } = &err
    else {
        panic!("not a statement timeout: {err}");
    };
    assert_eq!(sql, "STOP SLAVE");
    assert_eq!(*after, Duration::from_secs(2));
    assert_eq!(endpoint, &opts.endpoint());
    assert!(
        matches!(cancel, Cancel::Sent { connection_id } if *connection_id == stopper.connection_id()),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("`STOP SLAVE`"), "{text}");
    assert!(text.contains("within 2 s"), "{text}");
    assert!(text.contains(&opts.endpoint()), "{text}");
    assert!(text.contains("SHOW PROCESSLIST"), "{text}");
    assert_no_secret(&lab_secrets(lab), "the timeout message", text.as_bytes());
    assert!(took >= Duration::from_secs(2), "gave up after {took:?}");

    // The connection is given up: later calls fail at once instead of waiting behind it.
    assert!(stopper.is_abandoned());
    let stopper_id = stopper.connection_id();
    let again = Instant::now();
    let err = stopper.query_scalar("SELECT 1").await.unwrap_err();
    assert!(matches!(err, Error::Broken { .. }), "{err}");
    assert!(err.to_string().contains("`STOP SLAVE`"), "{err}");
    assert!(
        again.elapsed() < Duration::from_secs(1),
        "{:?}",
        again.elapsed()
    );
    stopper.close().await;

    // MariaDB marks the STOP SLAVE killed but keeps waiting for the SQL thread; once the lock
    // is released it ends, and so does the abandoned session (it quits by itself). Then START
    // SLAVE works and the blocked insert is applied.
    holder.exec_sql("UNLOCK TABLES").await.unwrap();
    holder.close().await;
    eventually!(SETTLE, "the abandoned STOP SLAVE session to end", {
        observer
            .query_scalar(&format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {stopper_id}"
            ))
            .await
            .unwrap()
            .filter(|n| n == "0")
    });
    assert!(lock_waiters(&mut observer).await.is_empty());
    observer.start_replication().await.unwrap();
    eventually!(SETTLE, "both replication threads to run", {
        let st = observer.replication_status().await.unwrap();
        (st.io_running == IoState::Yes && st.sql_running).then_some(())
    });
    observer.wait_for_gtid(&blocked, SETTLE).await.unwrap();
    writer
        .exec_sql("INSERT INTO app.bounded_lock (v) VALUES (3)")
        .await
        .unwrap();
    let after_restart = writer.gtid_binlog_pos().await.unwrap();
    observer
        .wait_for_gtid(&after_restart, SETTLE)
        .await
        .unwrap();
    assert_eq!(
        observer
            .query_scalar("SELECT COUNT(*) FROM app.bounded_lock")
            .await
            .unwrap()
            .as_deref(),
        Some("3")
    );
    observer.close().await;
    writer.close().await;
}

#[tokio::test]
async fn a_query_past_its_bound_is_killed_on_the_server() {
    let _g = SERIAL.lock().await;
    let lab = shared_lab().await;
    let (w, _) = writer_and_replica(lab);
    let opts = lab
        .admin_options(&w)
        .unwrap()
        .statement_timeout(Duration::from_secs(1));
    let mut sleeper = Server::connect(&opts).await.unwrap();
    let id = sleeper.connection_id();
    let err = tokio::time::timeout(SETTLE, sleeper.query_scalar("SELECT SLEEP(600)"))
        .await
        .expect("SELECT SLEEP was not bounded")
        .unwrap_err();
    assert!(
        matches!(&err, Error::StatementTimeout { sql, cancel: Cancel::Sent { .. }, .. } if sql == "SELECT SLEEP(600)"),
        "{err}"
    );
    assert!(err.to_string().contains("within 1 s"), "{err}");

    // KILL QUERY ends the sleep; the abandoned connection then quits by itself.
    let mut observer = Server::connect(&lab.admin_options(&w).unwrap())
        .await
        .unwrap();
    eventually!(SETTLE, "the abandoned session to end", {
        observer
            .query_scalar(&format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {id}"
            ))
            .await
            .unwrap()
            .filter(|n| n == "0")
    });
    observer.close().await;
}

#[tokio::test]
async fn a_replication_wait_keeps_its_own_deadline() {
    let _g = SERIAL.lock().await;
    let lab = shared_lab().await;
    let (w, r) = writer_and_replica(lab);
    let mut writer = lab.connect_admin(&w).await.unwrap();
    let domain = lab.state().clusters[0].gtid_domain_id;
    let pos = writer.gtid_binlog_pos().await.unwrap();
    let seq = pos.get(domain).map(|g| g.seq).unwrap_or(0);
    let future: GtidPos = format!("{domain}-{}-{}", writer.server_id(), seq + 1000)
        .parse()
        .unwrap();
    writer.close().await;

    let mut replica = lab.connect_admin(&r).await.unwrap();
    replica.set_statement_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let err = replica
        .wait_for_gtid(&future, Duration::from_secs(2))
        .await
        .unwrap_err();
    // The wait's own Timeout at its own deadline, not the statement timeout's.
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    assert!(!replica.is_abandoned());
    assert_eq!(
        replica.query_scalar("SELECT 1").await.unwrap().as_deref(),
        Some("1")
    );
    replica.close().await;
}
