//! What a workflow tells its observer while it runs: typed events (a step started or ended,
//! the old writer fenced, the proxy paused, the new writer promoted...), so that a progress
//! reporter or a test acts on *what happened*, never on the wording of a log line. The
//! `Display` of an event is that log line.
//!
//! An observer must never block nor fail the run: it is told, it does not answer.

use std::time::Duration;

/// The workflow a step belongs to: the first part of its crash point
/// (`<workflow>:<step>:<phase>`, see [`crate::runner`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workflow {
    /// The switchover core (a planned failover and a blue/green switch are switchovers too).
    Switchover,
    /// An unplanned failover.
    Failover,
    /// Bringing a former writer back as a replica.
    Rejoin,
    /// The fleet rollout's instance actions.
    Rollout,
    /// The CA rotation's own steps (the trust bundle); its instances are rollout steps.
    CaRotate,
}

impl Workflow {
    pub fn name(&self) -> &'static str {
        match self {
            Workflow::Switchover => "switchover",
            Workflow::Failover => "failover",
            Workflow::Rejoin => "rejoin",
            Workflow::Rollout => "rollout",
            Workflow::CaRotate => "ca-rotate",
        }
    }
}

impl std::fmt::Display for Workflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Something that happened in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A step was journaled as begun and starts now.
    StepStarted {
        workflow: Workflow,
        step: String,
    },
    /// A step was journaled as ended.
    StepEnded {
        workflow: Workflow,
        step: String,
        took: Duration,
    },
    /// A step failed (journaled so); `error` says why.
    StepFailed {
        workflow: Workflow,
        step: String,
        error: String,
    },
    /// The proxies in front of the cluster hold their clients.
    ProxyPaused,
    /// The proxies let their clients go on.
    ProxyResumed,
    /// The old writer takes no more writes (`writer`: its id).
    Fenced {
        writer: String,
    },
    /// The new writer accepts writes.
    Promoted {
        writer: String,
    },
    /// A switchover puts its old writer back.
    RollbackStarted,
    RollbackEnded,
    /// One of the provider's renames of a redirect (AWS's identifier swap).
    RenameStarted {
        from: String,
        instance: String,
        to: String,
    },
    RenameEnded {
        from: String,
        to: String,
    },
}

impl Event {
    /// The step this event starts, if it starts one.
    pub fn started(&self) -> Option<&str> {
        match self {
            Event::StepStarted { step, .. } => Some(step),
            _ => None,
        }
    }

    /// The step this event ends (successfully), if it ends one.
    pub fn ended(&self) -> Option<&str> {
        match self {
            Event::StepEnded { step, .. } => Some(step),
            _ => None,
        }
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::StepStarted { step, .. } => write!(f, "{step}: start"),
            Event::StepEnded { step, .. } => write!(f, "{step}: done"),
            Event::StepFailed { step, error, .. } => write!(f, "{step}: failed: {error}"),
            Event::ProxyPaused => f.write_str("proxy paused"),
            Event::ProxyResumed => f.write_str("proxy resumed"),
            Event::Fenced { writer } => write!(f, "fenced: {writer} takes no writes"),
            Event::Promoted { .. } => f.write_str("promoted: new writer accepts writes"),
            Event::RollbackStarted => f.write_str("rollback: start"),
            Event::RollbackEnded => f.write_str("rollback: done"),
            Event::RenameStarted { from, instance, to } => {
                write!(f, "rename {from} ({instance}) to {to}: start")
            }
            Event::RenameEnded { from, to } => write!(f, "rename {from} to {to}: done"),
        }
    }
}

/// Told about each event of a run as it happens (the probe marks its chart with these).
pub trait Observer: Send + Sync {
    fn event(&self, event: &Event);
}

/// An observer that logs only.
pub struct LogObserver;

impl Observer for LogObserver {
    fn event(&self, event: &Event) {
        tracing::info!("{event}");
    }
}

/// An observer that ignores everything (a workflow whose caller reports by other means).
pub struct Silent;

impl Observer for Silent {
    fn event(&self, _: &Event) {}
}
