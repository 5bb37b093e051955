//! `bluegreen verify`: are blue (the writer) and green (a replica of it by GTID) the same,
//! table by table, at one point of blue's history?
//!
//! Blue is never stopped: it is read inside `START TRANSACTION WITH CONSISTENT SNAPSHOT`, and
//! the database layer names the point X of blue's history the snapshot shows
//! (`Server::begin_snapshot_at_position`). On MariaDB nothing is locked: the snapshot's binlog
//! coordinates (`binlog_snapshot_file/position`) become a GTID position by
//! `BINLOG_GTID_POS()`. On MySQL, which has no such coordinates, X is `gtid_executed` read
//! under a `FLUSH TABLES WITH READ LOCK` held for three short statements and waited for at
//! most 2 s, as `mysqldump --single-transaction` does. Green's replication is stopped first
//! (so X is at or after green), then run until X (MariaDB: `START SLAVE UNTIL
//! master_gtid_pos=X`; MySQL: `START REPLICA SQL_THREAD UNTIL SQL_AFTER_GTIDS=X`), where it
//! stops by itself; whether a server can do that is the database layer's answer
//! (`can_run_until_position`), never decided here. Green then no longer moves and is read by
//! several connections. Both sides are checksummed chunk by chunk along the primary key at the
//! same time: blue walks the key and hands each chunk's bounds to green (see
//! `dbshift_db::checksum` for the SQL).
//!
//! This module must never skip, alter or inject a replicated event, nor write to either
//! server: the only change it makes is green's replication threads, which it always puts back
//! as it found them (running or stopped), on success, error or timeout alike.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dbshift_db::checksum::{self, Bound, TableShape};
use dbshift_db::dialect::ReplicaThread;
use dbshift_db::status::IoState;
use dbshift_db::{ConnectOptions, ReplicationPosition, Server};
use serde::Serialize;
use tokio::sync::mpsc;

/// How a verify runs.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Rows per chunk of a primary key walk. Smaller narrows a difference to a smaller range;
    /// larger is faster (fewer round trips).
    pub chunk_rows: u64,
    /// How long green may take to reach blue's snapshot position.
    pub until_timeout: Duration,
    /// Connections that checksum green at once (blue always uses one, inside its snapshot).
    pub parallel: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            chunk_rows: 20_000,
            until_timeout: Duration::from_secs(60),
            parallel: 2,
        }
    }
}

/// What a verify found.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    /// Blue's GTID position of the snapshot both sides were read at.
    pub position: String,
    /// No difference in any table.
    pub equal: bool,
    pub tables: Vec<TableReport>,
    pub differences: Vec<ChunkDifference>,
    pub rows_blue: u64,
    pub rows_green: u64,
    pub elapsed_ms: u64,
    /// Rows compared on both sides per second: `(rows_blue + rows_green) / elapsed`.
    pub rows_per_s: f64,
    pub warnings: Vec<String>,
}

/// One table's result.
#[derive(Clone, Debug, Serialize)]
pub struct TableReport {
    pub schema: String,
    pub name: String,
    pub rows_blue: u64,
    pub rows_green: u64,
    pub chunks: u64,
    /// [`METHOD_CHUNKED`] or [`METHOD_WHOLE_TABLE`].
    pub method: String,
    pub equal: bool,
}

/// A part of a table that differs.
#[derive(Clone, Debug, Serialize)]
pub struct ChunkDifference {
    pub schema: String,
    pub table: String,
    /// The chunk's key range, e.g. `id > 20000 AND id <= 40000`, or `whole table`.
    pub range: String,
    /// The key the chunk starts after (exclusive), as text; `None`: from the first row.
    pub lower: Option<String>,
    /// The last key of the chunk (inclusive), as text; `None`: to the last row.
    pub upper: Option<String>,
    pub rows_blue: u64,
    pub rows_green: u64,
    /// Why it differs: `rows differ`, `table exists only on blue`, ...
    pub reason: String,
}

pub const METHOD_CHUNKED: &str = "chunked by primary key";
pub const METHOD_WHOLE_TABLE: &str =
    "whole table: no primary key (slower, a difference cannot be narrowed to a range)";

/// Errors of a verify. Green's replication has been put back as found in every case but
/// [`VerifyError::Restore`].
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Db(#[from] dbshift_db::Error),
    #[error(
        "{endpoint} cannot be run until an exact GTID position ({found}); verify needs green \
         to replicate from blue by GTID on a server that can stop there (MariaDB: \
         MASTER_USE_GTID=slave_pos)"
    )]
    NotGtidReplica { endpoint: String, found: String },
    #[error(
        "{endpoint} replicates from server_id {found}, not from blue {blue} (server_id \
         {expected}); verify compares a replica with its direct source only"
    )]
    WrongSource {
        endpoint: String,
        blue: String,
        found: u32,
        expected: u32,
    },
    #[error("blue cannot give its snapshot's position: {0}")]
    NoSnapshotPosition(String),
    #[error(
        "green's position {green} is not behind blue's snapshot position {blue}: the histories \
         diverged (errant or missing transactions); nothing was compared"
    )]
    Diverged { green: String, blue: String },
    #[error(
        "{endpoint}: green did not reach blue's snapshot position {position} within {after:?} \
         (it is at {reached}); raise the timeout or check its replication"
    )]
    UntilTimeout {
        endpoint: String,
        position: String,
        reached: String,
        after: Duration,
    },
    #[error("{endpoint}: replication stopped at {reached} short of {position}: {reason}")]
    UntilStopped {
        endpoint: String,
        position: String,
        reached: String,
        reason: String,
    },
    #[error(
        "{endpoint}: replication could not be put back as it was ({source}); check the \
         replica's status and start its replication by hand. The verify itself: {outcome}"
    )]
    Restore {
        endpoint: String,
        #[source]
        source: dbshift_db::Error,
        outcome: String,
    },
}

/// Compare blue and green at one point of blue's history. See the module documentation.
pub async fn verify(
    blue: &ConnectOptions,
    green: &ConnectOptions,
    opts: &VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    let started = Instant::now();
    let mut blue_conn = Server::connect(blue).await?;
    let mut green_admin = Server::connect(green).await?;
    let endpoint = green_admin.endpoint().to_string();
    // Refused before green's replication is touched.
    blue_conn.check_snapshot_at_position()?;
    let status = green_admin.replication_status().await?;
    let using_gtid = status.using_gtid.clone().unwrap_or_default();
    if !green_admin.can_run_until_position(&status) {
        return Err(VerifyError::NotGtidReplica {
            endpoint,
            found: format!(
                "{}, replication {}, Using_Gtid={}",
                green_admin.flavor(),
                if status.configured {
                    "configured"
                } else {
                    "not configured"
                },
                if using_gtid.is_empty() {
                    "-"
                } else {
                    &using_gtid
                }
            ),
        });
    }
    if let Some(found) = status.source_server_id.filter(|&id| id != 0) {
        if found != blue_conn.server_id() {
            return Err(VerifyError::WrongSource {
                endpoint,
                blue: blue_conn.endpoint().to_string(),
                found,
                expected: blue_conn.server_id(),
            });
        }
    }
    let was_io = status.io_running != IoState::No;
    let was_sql = status.sql_running;

    tracing::info!(endpoint = %endpoint, "stopping green's replication for verify");
    green_admin.stop_replication().await?;
    tracing::info!(endpoint = %endpoint, "green's replication stopped");

    let mut warnings = Vec::new();
    if !(was_io && was_sql) {
        warnings.push(format!(
            "green's replication was not running (IO {}, SQL {}{}): it was advanced to blue's \
             snapshot position and left as it was found",
            if was_io { "running" } else { "stopped" },
            if was_sql { "running" } else { "stopped" },
            match &status.last_sql_error {
                Some((n, e)) => format!(", SQL error {n}: {e}"),
                None => String::new(),
            },
        ));
    }
    let outcome = compare(&mut blue_conn, &mut green_admin, green, opts, &mut warnings).await;
    // Blue's snapshot only read; ending it cannot lose anything.
    let _ = blue_conn.end_snapshot().await;
    blue_conn.close().await;

    let restored = restore_replication(green_admin, green, was_io, was_sql).await;
    let mut report = match (outcome, restored) {
        (Ok(report), Ok(())) => report,
        (Err(e), Ok(())) => return Err(e),
        (outcome, Err(source)) => {
            return Err(VerifyError::Restore {
                endpoint,
                source,
                outcome: match outcome {
                    Ok(r) => format!(
                        "{} at {}",
                        if r.equal { "equal" } else { "different" },
                        r.position
                    ),
                    Err(e) => e.to_string(),
                },
            })
        }
    };
    let elapsed = started.elapsed();
    report.elapsed_ms = elapsed.as_millis() as u64;
    report.rows_per_s =
        (report.rows_blue + report.rows_green) as f64 / elapsed.as_secs_f64().max(1e-6);
    report.warnings = warnings;
    Ok(report)
}

/// Put green's replication threads back as they were: stopped first, so that an `UNTIL` still
/// pending (after an error or a timeout) cannot survive, then each thread that ran before
/// started again. Retried once on a fresh connection if the first one broke.
async fn restore_replication(
    mut admin: Server,
    green: &ConnectOptions,
    was_io: bool,
    was_sql: bool,
) -> Result<(), dbshift_db::Error> {
    tracing::info!(endpoint = %admin.endpoint(), was_io, was_sql, "restoring green's replication");
    let first = restore_on(&mut admin, was_io, was_sql).await;
    admin.close().await;
    let result = match first {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, "restoring replication failed; retrying on a new connection");
            let mut admin = Server::connect(green).await?;
            let r = restore_on(&mut admin, was_io, was_sql).await;
            admin.close().await;
            r
        }
    };
    if result.is_ok() {
        tracing::info!(endpoint = %green.endpoint(), "green's replication restored");
    }
    result
}

async fn restore_on(admin: &mut Server, was_io: bool, was_sql: bool) -> dbshift_db::Result<()> {
    admin.stop_replication().await?;
    if was_io != was_sql {
        // A thread started alone keeps the UNTIL of verify's run: an IO thread already at
        // that position (MariaDB's does so) stops again at once. `CHANGE MASTER` with the same GTID mode clears
        // it and changes nothing else (the relay log is fetched again from the same position).
        let st = admin.replication_status().await?;
        if st
            .until_condition
            .as_deref()
            .is_some_and(|c| !c.eq_ignore_ascii_case("none"))
        {
            admin.clear_replication_until(&st).await?;
        }
    }
    match (was_io, was_sql) {
        (true, true) => admin.start_replication().await,
        (true, false) => admin.start_replication_thread(ReplicaThread::Io).await,
        (false, true) => admin.start_replication_thread(ReplicaThread::Sql).await,
        (false, false) => Ok(()),
    }
}

/// One chunk's checksum.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Aggregate {
    rows: u64,
    xor: String,
    sum: String,
}

/// A chunk to checksum on green: the same SQL blue ran.
struct Job {
    table: usize,
    chunk: usize,
    sql: String,
}

/// What blue found for one chunk.
struct BlueChunk {
    lower: Option<Bound>,
    upper: Option<Bound>,
    aggregate: Aggregate,
}

enum BlueTable {
    Walked(Vec<BlueChunk>),
    /// Created or altered after the snapshot (error 1412): not comparable at X.
    Changed,
}

/// Green's side of a table, as its workers found it.
#[derive(Default)]
struct GreenResults {
    /// (table, chunk) -> aggregate.
    chunks: BTreeMap<(usize, usize), Aggregate>,
}

/// Steps 2-4 of the module documentation: snapshot, position, UNTIL, checksums, comparison.
async fn compare(
    blue: &mut Server,
    green_admin: &mut Server,
    green: &ConnectOptions,
    opts: &VerifyOptions,
    warnings: &mut Vec<String>,
) -> Result<VerifyReport, VerifyError> {
    let green_start = green_admin.applied_position().await?;

    let position = snapshot_position(blue).await?;
    // Blue's snapshot must hold everything green applied, or the histories diverged.
    if !position.contains(&green_start) {
        return Err(VerifyError::Diverged {
            green: green_start.to_string(),
            blue: position.to_string(),
        });
    }
    tracing::info!(position = %position, green = %green_start, "blue's snapshot taken");

    let blue_shapes = load_shapes(blue).await?;
    for shape in &blue_shapes {
        if shape.has_float_column() {
            warnings.push(format!(
                "{}.{}: FLOAT/DOUBLE columns are compared by their text form",
                shape.schema, shape.name
            ));
        }
    }

    let (tx, rx) = mpsc::channel::<Job>(64);
    let green_results = Mutex::new(GreenResults::default());
    let green_shapes: Mutex<Option<Vec<TableShape>>> = Mutex::new(None);

    let blue_side = walk_blue(blue, &blue_shapes, opts.chunk_rows, tx);
    let green_side = async {
        run_until(green_admin, &position, opts.until_timeout).await?;
        let shapes = load_shapes(green_admin).await?;
        let by_name: BTreeMap<(String, String), TableShape> = shapes
            .iter()
            .map(|s| ((s.schema.clone(), s.name.clone()), s.clone()))
            .collect();
        *green_shapes.lock().expect("not poisoned") = Some(shapes);
        let rx = tokio::sync::Mutex::new(rx);
        let mut workers = Vec::new();
        for _ in 0..opts.parallel.max(1) {
            workers.push(green_worker(
                green,
                &rx,
                &blue_shapes,
                &by_name,
                &green_results,
            ));
        }
        futures::future::try_join_all(workers).await?;
        Ok::<(), VerifyError>(())
    };
    let (blue_tables, ()) = futures::try_join!(blue_side, green_side)?;
    let green_shapes = green_shapes
        .into_inner()
        .expect("not poisoned")
        .unwrap_or_default();
    let green_results = green_results.into_inner().expect("not poisoned");

    Ok(build_report(
        position.to_string(),
        &blue_shapes,
        blue_tables,
        &green_shapes,
        &green_results,
        warnings,
    ))
}

/// How long blue's snapshot may wait for its lock where it takes one (MySQL holds `FLUSH
/// TABLES WITH READ LOCK` for three short statements; MariaDB locks nothing): a long write in
/// flight makes the verify fail rather than stall blue's clients behind the lock.
const SNAPSHOT_LOCK_WAIT: Duration = Duration::from_secs(2);

/// Open blue's consistent snapshot and give the replication position it shows (MariaDB: the
/// GTID position at the snapshot's binlog coordinates; MySQL: `gtid_executed` under a brief
/// global read lock).
async fn snapshot_position(blue: &mut Server) -> Result<ReplicationPosition, VerifyError> {
    blue.begin_snapshot_at_position(SNAPSHOT_LOCK_WAIT)
        .await
        .map_err(|e| match e {
            dbshift_db::Error::State { message, .. } => VerifyError::NoSnapshotPosition(message),
            dbshift_db::Error::Parse { input, .. } => {
                VerifyError::NoSnapshotPosition(format!("position {input:?}"))
            }
            e => VerifyError::Db(e),
        })
}

/// Run green's replication until exactly `position` and wait until it stopped there.
async fn run_until(
    green: &mut Server,
    position: &ReplicationPosition,
    timeout: Duration,
) -> Result<(), VerifyError> {
    let endpoint = green.endpoint().to_string();
    let at = green.applied_position().await?;
    if at.is_at(position) {
        // Nothing to apply; an UNTIL already reached would start the threads for nothing.
        return Ok(());
    }
    tracing::info!(endpoint = %endpoint, position = %position, "running green's replication until blue's snapshot");
    green.run_replication_until(position).await?;
    let started = Instant::now();
    loop {
        let status = green.replication_status().await?;
        let at = green.applied_position().await?;
        if !status.sql_running {
            if at.is_at(position) {
                tracing::info!(endpoint = %endpoint, position = %position, elapsed = ?started.elapsed(), "green stopped at blue's snapshot");
                return Ok(());
            }
            let reason = match (&status.last_sql_error, &status.last_io_error) {
                (Some((n, e)), _) => format!("SQL thread error {n}: {e}"),
                (None, Some((n, e))) => format!("IO thread error {n}: {e}"),
                (None, None) => "the SQL thread stopped".into(),
            };
            // A stop with no error can race the first status read right after the start.
            if status.last_sql_error.is_some()
                || status.last_io_error.is_some()
                || started.elapsed() > Duration::from_secs(2)
            {
                return Err(VerifyError::UntilStopped {
                    endpoint,
                    position: position.to_string(),
                    reached: at.to_string(),
                    reason,
                });
            }
        }
        if started.elapsed() > timeout {
            return Err(VerifyError::UntilTimeout {
                endpoint,
                position: position.to_string(),
                reached: at.to_string(),
                after: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether `at` holds exactly the GTIDs of `position` in each of its domains.
/// Every user base table's shape.
async fn load_shapes(server: &mut Server) -> Result<Vec<TableShape>, VerifyError> {
    let tables: BTreeSet<(String, String)> = server
        .query_rows(&checksum::user_tables_sql())
        .await?
        .into_iter()
        .filter_map(|r| {
            let mut it = r.into_iter().map(|c| c.1);
            Some((it.next()??, it.next()??))
        })
        .collect();
    let columns = server.query_rows(&checksum::user_columns_sql()).await?;
    Ok(checksum::shapes_from_rows(&columns)
        .into_iter()
        .filter(|s| tables.contains(&(s.schema.clone(), s.name.clone())))
        .collect())
}

fn parse_aggregate(row: Option<Vec<(String, Option<String>)>>) -> Aggregate {
    let row = row.unwrap_or_default();
    let text = |i: usize| {
        row.get(i)
            .and_then(|c| c.1.clone())
            .unwrap_or_else(|| "0".into())
    };
    Aggregate {
        rows: text(0).parse().unwrap_or(0),
        xor: text(1),
        sum: text(2),
    }
}

/// Blue's side: walk every table inside the snapshot, chunk by chunk, handing each chunk to
/// green before checksumming it here, so that both sides work at once.
async fn walk_blue(
    blue: &mut Server,
    shapes: &[TableShape],
    chunk_rows: u64,
    tx: mpsc::Sender<Job>,
) -> Result<Vec<BlueTable>, VerifyError> {
    let mut out = Vec::with_capacity(shapes.len());
    for (t, shape) in shapes.iter().enumerate() {
        match walk_table(blue, t, shape, chunk_rows, &tx).await {
            Ok(chunks) => out.push(BlueTable::Walked(chunks)),
            // 1412: the table's definition changed after the snapshot began.
            Err(VerifyError::Db(e)) if e.server_code() == Some(1412) => {
                out.push(BlueTable::Changed)
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

async fn walk_table(
    blue: &mut Server,
    t: usize,
    shape: &TableShape,
    chunk_rows: u64,
    tx: &mpsc::Sender<Job>,
) -> Result<Vec<BlueChunk>, VerifyError> {
    let mut chunks = Vec::new();
    let mut lower: Option<Bound> = None;
    loop {
        let upper = if shape.has_primary_key() {
            let row = blue
                .query_rows(&shape.next_bound_sql(lower.as_ref(), chunk_rows))
                .await?
                .into_iter()
                .next();
            row.map(|r| shape.bound_from_row(&r)).transpose()?
        } else {
            None
        };
        let sql = shape.chunk_sql(lower.as_ref(), upper.as_ref());
        let chunk = chunks.len();
        // A closed channel means green's side failed; its error is the one reported.
        let _ = tx
            .send(Job {
                table: t,
                chunk,
                sql: sql.clone(),
            })
            .await;
        let aggregate = parse_aggregate(blue.query_rows(&sql).await?.into_iter().next());
        let last = upper.is_none();
        chunks.push(BlueChunk {
            lower: lower.take(),
            upper: upper.clone(),
            aggregate,
        });
        if last {
            return Ok(chunks);
        }
        lower = upper;
    }
}

/// One green connection: checksum the chunks blue hands over, for tables whose shape on green
/// is the same as on blue (the others are reported as differences without reading them).
async fn green_worker(
    green: &ConnectOptions,
    rx: &tokio::sync::Mutex<mpsc::Receiver<Job>>,
    blue_shapes: &[TableShape],
    green_shapes: &BTreeMap<(String, String), TableShape>,
    results: &Mutex<GreenResults>,
) -> Result<(), VerifyError> {
    let mut conn = Server::connect(green).await?;
    loop {
        let job = rx.lock().await.recv().await;
        let Some(job) = job else { break };
        let blue_shape = &blue_shapes[job.table];
        let same = green_shapes
            .get(&(blue_shape.schema.clone(), blue_shape.name.clone()))
            .is_some_and(|g| same_shape(blue_shape, g));
        if !same {
            continue;
        }
        let aggregate = parse_aggregate(conn.query_rows(&job.sql).await?.into_iter().next());
        results
            .lock()
            .expect("not poisoned")
            .chunks
            .insert((job.table, job.chunk), aggregate);
    }
    conn.close().await;
    Ok(())
}

/// Same columns (name, type, nullability, stored or not) in the same order and the same
/// primary key: the one SQL text means the same on both sides.
fn same_shape(a: &TableShape, b: &TableShape) -> bool {
    a.primary_key == b.primary_key
        && a.columns.len() == b.columns.len()
        && a.columns.iter().zip(&b.columns).all(|(x, y)| {
            x.name == y.name
                && x.column_type.eq_ignore_ascii_case(&y.column_type)
                && x.nullable == y.nullable
                && x.virtual_generated == y.virtual_generated
        })
}

fn build_report(
    position: String,
    blue_shapes: &[TableShape],
    blue_tables: Vec<BlueTable>,
    green_shapes: &[TableShape],
    green: &GreenResults,
    warnings: &mut Vec<String>,
) -> VerifyReport {
    let mut tables = Vec::new();
    let mut differences = Vec::new();
    let green_by_name: BTreeMap<(&str, &str), &TableShape> = green_shapes
        .iter()
        .map(|s| ((s.schema.as_str(), s.name.as_str()), s))
        .collect();
    let mut seen: BTreeSet<(&str, &str)> = BTreeSet::new();
    let whole = |schema: &str, table: &str, rows_blue, rows_green, reason: &str| ChunkDifference {
        schema: schema.into(),
        table: table.into(),
        range: "whole table".into(),
        lower: None,
        upper: None,
        rows_blue,
        rows_green,
        reason: reason.into(),
    };
    for (t, (shape, walked)) in blue_shapes.iter().zip(blue_tables).enumerate() {
        let key = (shape.schema.as_str(), shape.name.as_str());
        seen.insert(key);
        let method = if shape.has_primary_key() {
            METHOD_CHUNKED
        } else {
            METHOD_WHOLE_TABLE
        };
        let chunks = match walked {
            BlueTable::Walked(chunks) => chunks,
            BlueTable::Changed => {
                warnings.push(format!(
                    "{}.{}: created or altered on blue after the snapshot began; not compared",
                    shape.schema, shape.name
                ));
                continue;
            }
        };
        let rows_blue: u64 = chunks.iter().map(|c| c.aggregate.rows).sum();
        let mut report = TableReport {
            schema: shape.schema.clone(),
            name: shape.name.clone(),
            rows_blue,
            rows_green: 0,
            chunks: chunks.len() as u64,
            method: method.into(),
            equal: true,
        };
        let reason = match green_by_name.get(&key) {
            None => Some("table exists only on blue"),
            Some(g) if !same_shape(shape, g) => Some("columns or primary key differ"),
            Some(_) => None,
        };
        if let Some(reason) = reason {
            report.equal = false;
            differences.push(whole(&shape.schema, &shape.name, rows_blue, 0, reason));
            tables.push(report);
            continue;
        }
        for (c, chunk) in chunks.iter().enumerate() {
            let theirs = green.chunks.get(&(t, c));
            let rows_green = theirs.map_or(0, |a| a.rows);
            report.rows_green += rows_green;
            if theirs != Some(&chunk.aggregate) {
                report.equal = false;
                differences.push(ChunkDifference {
                    schema: shape.schema.clone(),
                    table: shape.name.clone(),
                    range: if shape.has_primary_key() {
                        shape.describe_range(chunk.lower.as_ref(), chunk.upper.as_ref())
                    } else {
                        "whole table".into()
                    },
                    lower: chunk.lower.as_ref().map(display_bound),
                    upper: chunk.upper.as_ref().map(display_bound),
                    rows_blue: chunk.aggregate.rows,
                    rows_green,
                    reason: if theirs.is_none() {
                        "not read on green".into()
                    } else {
                        "rows differ".into()
                    },
                });
            }
        }
        tables.push(report);
    }
    for g in green_shapes {
        if seen.contains(&(g.schema.as_str(), g.name.as_str())) {
            continue;
        }
        let changed_on_blue = warnings
            .iter()
            .any(|w| w.starts_with(&format!("{}.{}: created or altered", g.schema, g.name)));
        if changed_on_blue {
            continue;
        }
        tables.push(TableReport {
            schema: g.schema.clone(),
            name: g.name.clone(),
            rows_blue: 0,
            rows_green: 0,
            chunks: 0,
            method: if g.has_primary_key() {
                METHOD_CHUNKED
            } else {
                METHOD_WHOLE_TABLE
            }
            .into(),
            equal: false,
        });
        differences.push(whole(
            &g.schema,
            &g.name,
            0,
            0,
            "table exists only on green",
        ));
    }
    let rows_blue = tables.iter().map(|t| t.rows_blue).sum();
    let rows_green = tables.iter().map(|t| t.rows_green).sum();
    VerifyReport {
        position,
        equal: differences.is_empty(),
        tables,
        differences,
        rows_blue,
        rows_green,
        elapsed_ms: 0,
        rows_per_s: 0.0,
        warnings: Vec::new(),
    }
}

fn display_bound(b: &Bound) -> String {
    if b.display.len() == 1 {
        b.display[0].clone()
    } else {
        format!("({})", b.display.join(", "))
    }
}
