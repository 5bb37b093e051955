//! The one journaled-step runner every workflow uses: a step is journaled as begun before it
//! acts and as ended (with what it did) or failed after, its time is kept, its observer told,
//! and the crash tests can kill the process at each boundary. A resumed run asks
//! [`RunRecord::step_done`] which steps to skip; a step run again must re-check the servers
//! and do only what is missing (the journal is the intent, the server the truth).
//!
//! Crash points (`DBSHIFT_CRASH_AT=<point>`, a fault-injection switch for the tests; and
//! `DBSHIFT_PAUSE_AT=<point>:<ms>`, which holds the run there) are named
//! `<workflow>:<step>:<phase>` for every workflow: `<workflow>` is [`Workflow::name`],
//! `<step>` the step's name in the journal (or `#<n>`: the n-th step of this process to reach
//! that phase), `<phase>` one of
//! - `begin`: journaled as begun, nothing done;
//! - `run`: done on the servers, not journaled as ended;
//! - `end`: journaled as ended;
//! - a point inside a step that the step names itself (the rollout's `gate`: the change
//!   applied, its health gate not yet passed).
//!
//! The runner must never act on a server itself: it journals, times and reports.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::events::{Event, Observer, Workflow};
use crate::journal::{Journal, JournalError, RunRecord};

/// How many steps of this process reached each phase: the `#<n>` crash points. Shared by the
/// runners of one run (the rollout's clusters run side by side).
#[derive(Debug, Clone, Default)]
pub struct PhaseCounts {
    begun: Arc<AtomicUsize>,
    run: Arc<AtomicUsize>,
    ended: Arc<AtomicUsize>,
}

impl PhaseCounts {
    fn next(&self, phase: &str) -> Option<usize> {
        let c = match phase {
            "begin" => &self.begun,
            "run" => &self.run,
            "end" => &self.ended,
            _ => return None,
        };
        Some(c.fetch_add(1, Ordering::SeqCst) + 1)
    }
}

/// A step journaled as begun: what [`StepRunner::end`] and [`StepRunner::failed`] close.
#[derive(Debug)]
pub struct Begun {
    step: String,
    started: Instant,
}

impl Begun {
    pub fn step(&self) -> &str {
        &self.step
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Runs the steps of one journaled run.
pub struct StepRunner<'a> {
    journal: &'a Journal,
    run: String,
    workflow: Workflow,
    observer: &'a dyn Observer,
    counts: PhaseCounts,
    /// Milliseconds of each step ended, in order.
    step_ms: Vec<(String, u64)>,
}

impl<'a> StepRunner<'a> {
    pub fn new(
        journal: &'a Journal,
        run: &str,
        workflow: Workflow,
        observer: &'a dyn Observer,
    ) -> StepRunner<'a> {
        StepRunner {
            journal,
            run: run.to_string(),
            workflow,
            observer,
            counts: PhaseCounts::default(),
            step_ms: Vec::new(),
        }
    }

    /// Count the `#<n>` crash points with `counts` (shared with the run's other runners).
    pub fn counting(mut self, counts: PhaseCounts) -> StepRunner<'a> {
        self.counts = counts;
        self
    }

    pub fn run_id(&self) -> &str {
        &self.run
    }

    /// Milliseconds of each step ended so far, in order.
    pub fn step_ms(&self) -> &[(String, u64)] {
        &self.step_ms
    }

    /// Journal `step` as begun; the observer is told before the journal is written.
    pub async fn begin(&mut self, step: &str) -> Result<Begun, JournalError> {
        let told = Event::StepStarted {
            workflow: self.workflow,
            step: step.to_string(),
        };
        self.begin_telling(step, Some(told)).await
    }

    /// [`Self::begin`], telling the observer `told` instead of the step's start (a step that
    /// is one part of a larger one: a rename of the redirect).
    pub async fn begin_telling(
        &mut self,
        step: &str,
        told: Option<Event>,
    ) -> Result<Begun, JournalError> {
        if let Some(e) = told {
            self.observer.event(&e);
        }
        self.journal.begin(&self.run, step).await?;
        self.point(step, "begin").await;
        Ok(Begun {
            step: step.to_string(),
            started: Instant::now(),
        })
    }

    /// Journal the step as ended with what it did.
    pub async fn end(
        &mut self,
        begun: Begun,
        detail: serde_json::Value,
    ) -> Result<(), JournalError> {
        let told = Event::StepEnded {
            workflow: self.workflow,
            step: begun.step.clone(),
            took: begun.started.elapsed(),
        };
        self.end_telling(begun, detail, Some(told)).await
    }

    /// [`Self::end`], telling the observer `told` instead of the step's end.
    pub async fn end_telling(
        &mut self,
        begun: Begun,
        detail: serde_json::Value,
        told: Option<Event>,
    ) -> Result<(), JournalError> {
        self.point(&begun.step, "run").await;
        self.journal.end(&self.run, &begun.step, detail).await?;
        self.point(&begun.step, "end").await;
        self.step_ms
            .push((begun.step, crate::ms(begun.started.elapsed())));
        if let Some(e) = told {
            self.observer.event(&e);
        }
        Ok(())
    }

    /// Journal the step as failed with `error`.
    pub async fn failed(
        &mut self,
        begun: Begun,
        error: &impl std::fmt::Display,
    ) -> Result<(), JournalError> {
        let error = error.to_string();
        self.journal.failed(&self.run, &begun.step, &error).await?;
        self.observer.event(&Event::StepFailed {
            workflow: self.workflow,
            step: begun.step,
            error,
        });
        Ok(())
    }

    /// Journal a step begun and ended at once: a record of something decided (a plan), no
    /// action; the observer is not told.
    pub async fn record(
        &mut self,
        step: &str,
        detail: serde_json::Value,
    ) -> Result<(), JournalError> {
        let begun = self.begin_telling(step, None).await?;
        self.end_telling(begun, detail, None).await
    }

    /// A crash or pause point of a step: `<workflow>:<step>:<phase>`, and `<workflow>:#<n>:
    /// <phase>` for the n-th step of this process to reach `phase`.
    pub async fn point(&self, step: &str, phase: &str) {
        let named = format!("{}:{step}:{phase}", self.workflow);
        crash_if(&named);
        pause_if(&named).await;
        if let Some(n) = self.counts.next(phase) {
            let counted = format!("{}:#{n}:{phase}", self.workflow);
            crash_if(&counted);
            pause_if(&counted).await;
        }
    }

    /// Tell the observer `event`.
    pub fn tell(&self, event: Event) {
        self.observer.event(&event);
    }

    pub fn observer(&self) -> &'a dyn Observer {
        self.observer
    }
}

/// Whether a resumed run skips `step`: journaled as ended, and not a step that re-checks the
/// servers on every resume.
pub fn skip_on_resume(record: Option<&RunRecord>, step: &str, rechecked: &[&str]) -> bool {
    record.is_some_and(|r| r.step_done(step)) && !rechecked.contains(&step)
}

/// When `DBSHIFT_CRASH_AT` equals `point`, the process kills itself with SIGKILL at once,
/// exactly as a `kill -9` would. Unset in normal use.
fn crash_if(point: &str) {
    if std::env::var("DBSHIFT_CRASH_AT").is_ok_and(|at| at == point) {
        tracing::warn!("DBSHIFT_CRASH_AT={point}: killing this process");
        // SAFETY: kill(2) on our own PID; SIGKILL ends the process at once, as kill -9.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// When `DBSHIFT_PAUSE_AT` is `<point>:<ms>`, the run sleeps that long there, as a slow server
/// or a stalled network would hold it, so that a test can act meanwhile (start a second run,
/// change the cluster by hand). Unset in normal use.
async fn pause_if(point: &str) {
    let Ok(at) = std::env::var("DBSHIFT_PAUSE_AT") else {
        return;
    };
    let Some((p, ms)) = at.rsplit_once(':') else {
        return;
    };
    if p == point {
        if let Ok(ms) = ms.parse::<u64>() {
            tracing::warn!("DBSHIFT_PAUSE_AT={at}: pausing {ms} ms");
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
    }
}
