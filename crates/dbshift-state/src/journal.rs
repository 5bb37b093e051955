//! The journal: every workflow run and each of its steps, recorded before and after the step
//! runs, in SQLite (through sqlx). The journal is the intent; the servers are the truth: a
//! resumed run re-checks each step on the servers rather than trusting a line here. It never
//! holds a secret: parameters are the run's options, never a password.

use std::path::Path;
use std::str::FromStr;

use rand::distr::{Alphanumeric, SampleString};
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::Row;

use crate::lock::Locks;

/// Errors of the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Db {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("no run {0:?} in the journal; `dbshift runs` lists them")]
    UnknownRun(String),
    /// The run was journaled against another fleet (a lab purged and built anew in the same
    /// directory): it cannot be resumed.
    #[error(
        "run {run} was started on another fleet ({theirs}) than this one ({mine}): the lab it \
         acted on is gone; it cannot be resumed"
    )]
    OtherFleet {
        run: String,
        theirs: String,
        mine: String,
    },
    /// The run does not say which fleet it acted on (an older dbshift journaled it).
    #[error(
        "run {0} does not say which fleet it acted on (journaled by an older dbshift); it \
         cannot be resumed safely: check `dbshift inventory` and act by hand"
    )]
    FleetUnknown(String),
}

type Result<T> = std::result::Result<T, JournalError>;

/// How a run ended, or that it has not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Done,
    RolledBack,
    NeedsHuman,
    Failed,
}

impl RunStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Done => "done",
            RunStatus::RolledBack => "rolled_back",
            RunStatus::NeedsHuman => "needs_human",
            RunStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> RunStatus {
        match s {
            "done" => RunStatus::Done,
            "rolled_back" => RunStatus::RolledBack,
            "needs_human" => RunStatus::NeedsHuman,
            "failed" => RunStatus::Failed,
            _ => RunStatus::Running,
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step event.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub step: String,
    /// `begin`, `end` or `failed`.
    pub phase: String,
    pub at: String,
    pub detail: serde_json::Value,
}

/// Who started a run: the operator's user, the host, the process and dbshift's version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StartedBy {
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
}

impl StartedBy {
    /// This process.
    pub fn this_process() -> StartedBy {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()
            .filter(|u| !u.is_empty())
            // SAFETY: getuid(2) cannot fail and touches no memory.
            .unwrap_or_else(|| format!("uid {}", unsafe { libc::getuid() }));
        StartedBy {
            user,
            host: crate::lock::hostname(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

impl std::fmt::Display for StartedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{} (pid {}, dbshift {})",
            self.user, self.host, self.pid, self.version
        )
    }
}

/// One run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub kind: String,
    pub target: String,
    pub status: RunStatus,
    pub params: serde_json::Value,
    pub message: Option<String>,
    /// The fleet (lab, AWS account and region) the run acts on: a run can be resumed only
    /// against the fleet it was started on. `None` for runs journaled before fleets were.
    pub fleet: Option<String>,
    /// Who started the run. `None` for runs journaled before this was recorded.
    pub started_by: Option<StartedBy>,
    pub created_at: String,
    pub updated_at: String,
    /// Filled by [`Journal::run`], empty in [`Journal::runs`].
    pub steps: Vec<StepRecord>,
}

impl RunRecord {
    /// Whether `step` has an `end` record.
    pub fn step_done(&self, step: &str) -> bool {
        self.steps
            .iter()
            .any(|s| s.step == step && s.phase == "end")
    }

    /// Whether `step` was begun (it may have finished, failed, or been cut short).
    pub fn step_begun(&self, step: &str) -> bool {
        self.steps.iter().any(|s| s.step == step)
    }

    /// The detail of `step`'s `end` record.
    pub fn step_detail(&self, step: &str) -> Option<&serde_json::Value> {
        self.steps
            .iter()
            .rev()
            .find(|s| s.step == step && s.phase == "end")
            .map(|s| &s.detail)
    }
}

/// A handle on the journal file, and the locks of the command that opened it (beside it, in
/// `locks/`): see [`crate::lock`].
#[derive(Debug, Clone)]
pub struct Journal {
    pool: SqlitePool,
    path: String,
    fleet: Option<String>,
    locks: Locks,
}

/// Now, in UTC, as RFC 3339: the stamps of the journal and of the locks' holders.
pub(crate) fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a UTC date always formats as RFC 3339")
}

impl Journal {
    /// Open (creating if needed) the journal at `path`.
    pub async fn open(path: &Path) -> Result<Journal> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        // Two commands opening a new journal at once (two terminals) can find it locked while
        // the other one creates it (WAL set-up, the tables): tried again, briefly.
        let mut attempt = 0;
        loop {
            let opened = async {
                let j = Self::connect(path, |o| {
                    o.create_if_missing(true)
                        .journal_mode(SqliteJournalMode::Wal)
                        // Every record is on disk before the step it announces runs.
                        .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
                })
                .await?;
                j.migrate().await?;
                Ok::<_, JournalError>(j)
            }
            .await;
            match opened {
                Err(e) if attempt < 20 && e.to_string().contains("database is locked") => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// Open an existing journal only to read it: no file is created or written, so that
    /// `dbshift runs` works on a full disk. Where SQLite cannot even make its shared-memory
    /// file (a full disk), the journal is read without locking (`immutable`): a run writing at
    /// that very moment may not show its last steps.
    pub async fn open_read_only(path: &Path) -> Result<Journal> {
        match Self::open_read_only_with(path, false).await {
            Ok(j) => Ok(j),
            Err(e) => {
                tracing::warn!("reading the journal without locking ({e})");
                Self::open_read_only_with(path, true).await
            }
        }
    }

    async fn open_read_only_with(path: &Path, immutable: bool) -> Result<Journal> {
        let j = Self::connect(path, |o| o.read_only(true).immutable(immutable)).await?;
        // The first read is where a missing shared-memory file shows.
        sqlx::query("SELECT COUNT(*) FROM runs")
            .fetch_one(&j.pool)
            .await
            .map_err(j.err())?;
        Ok(j)
    }

    /// A one-connection pool on `path` with the options `configure` sets.
    async fn connect(
        path: &Path,
        configure: impl FnOnce(SqliteConnectOptions) -> SqliteConnectOptions,
    ) -> Result<Journal> {
        let p = path.display().to_string();
        let err = |source| JournalError::Db {
            path: p.clone(),
            source,
        };
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(err)?
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(configure(opts))
            .await
            .map_err(err)?;
        Ok(Journal {
            pool,
            path: p,
            fleet: None,
            locks: Locks::in_dir(&Self::locks_dir(path)),
        })
    }

    /// Where the locks of the journal at `path` live (`locks/` beside it): the one place
    /// that says so, for commands that lock without a journal.
    pub fn locks_dir(path: &Path) -> std::path::PathBuf {
        path.parent().unwrap_or(Path::new(".")).join("locks")
    }

    /// Take the cluster locks of this command from `locks` (a shared store's) instead of the
    /// file locks beside the journal.
    pub fn with_locks(mut self, locks: Locks) -> Journal {
        self.locks = locks;
        self
    }

    /// Tie the runs this handle creates to `fleet` (the provider's identity of the fleet).
    pub fn with_fleet(mut self, fleet: &str) -> Journal {
        self.fleet = Some(fleet.to_string());
        self
    }

    /// The locks of the command holding this handle.
    pub fn locks(&self) -> &Locks {
        &self.locks
    }

    /// Whether `run` may be resumed by this handle: a run of another fleet (a lab purged and
    /// built anew in the same directory) may not: [`JournalError::OtherFleet`], or
    /// [`JournalError::FleetUnknown`] for a run that does not say.
    pub fn check_same_fleet(&self, run: &RunRecord) -> Result<()> {
        match (&run.fleet, &self.fleet) {
            (Some(theirs), Some(mine)) if theirs != mine => Err(JournalError::OtherFleet {
                run: run.id.clone(),
                theirs: theirs.clone(),
                mine: mine.clone(),
            }),
            (None, Some(_)) => Err(JournalError::FleetUnknown(run.id.clone())),
            _ => Ok(()),
        }
    }

    fn err(&self) -> impl Fn(sqlx::Error) -> JournalError + '_ {
        move |source| JournalError::Db {
            path: self.path.clone(),
            source,
        }
    }

    async fn migrate(&self) -> Result<()> {
        for sql in [
            "CREATE TABLE IF NOT EXISTS runs (
                id TEXT PRIMARY KEY, kind TEXT NOT NULL, target TEXT NOT NULL,
                status TEXT NOT NULL, params TEXT NOT NULL, message TEXT,
                created_at TEXT NOT NULL, updated_at TEXT NOT NULL, fleet TEXT,
                started_by TEXT)",
            "CREATE TABLE IF NOT EXISTS steps (
                run_id TEXT NOT NULL REFERENCES runs(id), seq INTEGER NOT NULL,
                step TEXT NOT NULL, phase TEXT NOT NULL, at TEXT NOT NULL, detail TEXT NOT NULL,
                PRIMARY KEY (run_id, seq))",
        ] {
            sqlx::query(sql)
                .execute(&self.pool)
                .await
                .map_err(self.err())?;
        }
        // Columns a journal of an older dbshift lacks. Two commands opening it at once both
        // add one: the second finds it there, which is what it wanted.
        for column in ["fleet", "started_by"] {
            let has = sqlx::query("SELECT 1 FROM pragma_table_info('runs') WHERE name = ?")
                .bind(column)
                .fetch_optional(&self.pool)
                .await
                .map_err(self.err())?
                .is_some();
            if has {
                continue;
            }
            if let Err(e) = sqlx::query(&format!("ALTER TABLE runs ADD COLUMN {column} TEXT"))
                .execute(&self.pool)
                .await
            {
                if !e.to_string().contains("duplicate column") {
                    return Err(self.err()(e));
                }
            }
        }
        Ok(())
    }

    /// Record a new run; returns its id (`<kind>-<date>-<random>`).
    pub async fn create_run(
        &self,
        kind: &str,
        target: &str,
        params: &serde_json::Value,
    ) -> Result<String> {
        let stamp = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year][month][day]-[hour][minute][second]"
            ))
            .expect("a UTC date always formats");
        let suffix = Alphanumeric
            .sample_string(&mut rand::rng(), 4)
            .to_lowercase();
        let id = format!("{kind}-{stamp}-{suffix}");
        let t = now();
        sqlx::query(
            "INSERT INTO runs (id, kind, target, status, params, message, fleet, started_by, created_at, updated_at)
             VALUES (?, ?, ?, 'running', ?, NULL, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(kind)
        .bind(target)
        .bind(params.to_string())
        .bind(&self.fleet)
        .bind(serde_json::to_string(&StartedBy::this_process()).expect("it serializes"))
        .bind(&t)
        .bind(&t)
        .execute(&self.pool)
        .await
        .map_err(self.err())?;
        Ok(id)
    }

    async fn record(
        &self,
        run: &str,
        step: &str,
        phase: &str,
        detail: &serde_json::Value,
    ) -> Result<()> {
        let t = now();
        sqlx::query(
            "INSERT INTO steps (run_id, seq, step, phase, at, detail)
             VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM steps WHERE run_id = ?), ?, ?, ?, ?)",
        )
        .bind(run)
        .bind(run)
        .bind(step)
        .bind(phase)
        .bind(&t)
        .bind(detail.to_string())
        .execute(&self.pool)
        .await
        .map_err(self.err())?;
        sqlx::query("UPDATE runs SET updated_at = ? WHERE id = ?")
            .bind(&t)
            .bind(run)
            .execute(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(())
    }

    /// Before a step runs.
    pub async fn begin(&self, run: &str, step: &str) -> Result<()> {
        self.record(run, step, "begin", &serde_json::Value::Null)
            .await
    }

    /// After a step ran, with what it found or did.
    pub async fn end(&self, run: &str, step: &str, detail: serde_json::Value) -> Result<()> {
        self.record(run, step, "end", &detail).await
    }

    /// A step failed.
    pub async fn failed(&self, run: &str, step: &str, error: &str) -> Result<()> {
        self.record(run, step, "failed", &serde_json::json!({ "error": error }))
            .await
    }

    /// The run ended (or is running again, on resume).
    pub async fn set_status(
        &self,
        run: &str,
        status: RunStatus,
        message: Option<&str>,
    ) -> Result<()> {
        sqlx::query("UPDATE runs SET status = ?, message = ?, updated_at = ? WHERE id = ?")
            .bind(status.as_str())
            .bind(message)
            .bind(now())
            .bind(run)
            .execute(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(())
    }

    fn run_from_row(row: &sqlx::sqlite::SqliteRow) -> RunRecord {
        let params: String = row.get("params");
        RunRecord {
            id: row.get("id"),
            kind: row.get("kind"),
            target: row.get("target"),
            status: RunStatus::parse(row.get::<String, _>("status").as_str()),
            params: serde_json::from_str(&params).unwrap_or(serde_json::Value::Null),
            message: row.get("message"),
            fleet: row.try_get("fleet").ok().flatten(),
            started_by: row
                .try_get::<Option<String>, _>("started_by")
                .ok()
                .flatten()
                .and_then(|t| serde_json::from_str(&t).ok()),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
            steps: Vec::new(),
        }
    }

    /// Every run, newest first, without steps.
    pub async fn runs(&self) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query("SELECT * FROM runs ORDER BY created_at DESC, id DESC")
            .fetch_all(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(rows.iter().map(Self::run_from_row).collect())
    }

    /// One run with its steps.
    pub async fn run(&self, id: &str) -> Result<RunRecord> {
        let row = sqlx::query("SELECT * FROM runs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err())?
            .ok_or_else(|| JournalError::UnknownRun(id.to_string()))?;
        let mut run = Self::run_from_row(&row);
        let steps =
            sqlx::query("SELECT step, phase, at, detail FROM steps WHERE run_id = ? ORDER BY seq")
                .bind(id)
                .fetch_all(&self.pool)
                .await
                .map_err(self.err())?;
        run.steps = steps
            .iter()
            .map(|r| {
                let detail: String = r.get("detail");
                StepRecord {
                    step: r.get("step"),
                    phase: r.get("phase"),
                    at: r.get("at"),
                    detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                }
            })
            .collect();
        Ok(run)
    }

    /// Close the pool (flushes the WAL).
    pub async fn close(self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_and_steps_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.sqlite")).await.unwrap();
        let id = j
            .create_run("switchover", "lab-1", &serde_json::json!({"to": "lab-1-2"}))
            .await
            .unwrap();
        assert!(id.starts_with("switchover-"));
        j.begin(&id, "guards").await.unwrap();
        j.end(&id, "guards", serde_json::json!({"ok": true}))
            .await
            .unwrap();
        j.begin(&id, "fence").await.unwrap();
        let run = j.run(&id).await.unwrap();
        assert_eq!(run.status, RunStatus::Running);
        assert!(run.step_done("guards"));
        assert!(run.step_begun("fence"));
        assert!(!run.step_done("fence"));
        assert_eq!(
            run.step_detail("guards"),
            Some(&serde_json::json!({"ok": true}))
        );
        j.set_status(&id, RunStatus::Done, Some("ok"))
            .await
            .unwrap();
        let runs = j.runs().await.unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].status, RunStatus::Done);
        let by = runs[0]
            .started_by
            .clone()
            .expect("who started it is recorded");
        assert_eq!(by.pid, std::process::id());
        assert_eq!(by.version, env!("CARGO_PKG_VERSION"));
        assert!(!by.user.is_empty() && !by.host.is_empty(), "{by:?}");
        assert!(matches!(
            j.run("nope").await,
            Err(JournalError::UnknownRun(_))
        ));
        j.close().await;
        // Reopening keeps everything.
        let j = Journal::open(&dir.path().join("j.sqlite")).await.unwrap();
        assert_eq!(j.run(&id).await.unwrap().steps.len(), 3);
    }

    #[tokio::test]
    async fn a_run_of_another_fleet_or_of_none_is_not_the_same_fleet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        let old = Journal::open(&path).await.unwrap();
        let unsaid = old
            .create_run("switchover", "lab-1", &serde_json::json!({}))
            .await
            .unwrap();
        let theirs = old.with_fleet("lab-a");
        let said = theirs
            .create_run("switchover", "lab-1", &serde_json::json!({}))
            .await
            .unwrap();
        let said = theirs.run(&said).await.unwrap();
        assert!(theirs.check_same_fleet(&said).is_ok());
        let mine = Journal::open(&path).await.unwrap().with_fleet("lab-b");
        let e = mine.check_same_fleet(&said).unwrap_err();
        assert!(
            matches!(&e, JournalError::OtherFleet { theirs, mine, .. } if theirs == "lab-a" && mine == "lab-b"),
            "{e:?}"
        );
        assert!(e.to_string().contains("another fleet (lab-a)"), "{e}");
        let unsaid = mine.run(&unsaid).await.unwrap();
        let e = mine.check_same_fleet(&unsaid).unwrap_err();
        assert!(matches!(e, JournalError::FleetUnknown(_)), "{e:?}");
        assert!(e.to_string().contains("older dbshift"), "{e}");
    }

    /// `dbshift runs` on a full disk: the journal opened read-only lists its runs. The full
    /// disk is a 512 KiB tmpfs filled to the last byte (root only: where mounting is not
    /// allowed the test says so and checks the read-only open on an ordinary disk).
    #[tokio::test]
    async fn runs_are_readable_on_a_full_disk() {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("cannot mount a tmpfs here (not root?): the disk is not filled");
        }
        let path = dir.path().join("journal.sqlite");
        let j = Journal::open(&path).await.unwrap();
        let id = j
            .create_run("switchover", "lab-1", &serde_json::json!({}))
            .await
            .unwrap();
        j.close().await;
        if mounted {
            // Fill the disk.
            let mut f = std::fs::File::create(dir.path().join("fill")).unwrap();
            let block = vec![0u8; 4096];
            while std::io::Write::write_all(&mut f, &block).is_ok() {}
            let _ = f.sync_all();
        }
        let r = Journal::open_read_only(&path).await.unwrap();
        let runs = r.runs().await.unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].id, id);
        r.close().await;
        if mounted {
            let _ = std::process::Command::new("umount")
                .arg(dir.path())
                .status();
        }
    }
}
