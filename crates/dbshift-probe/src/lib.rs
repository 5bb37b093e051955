//! dbshift-probe: what clients saw during an operation, measured.
//!
//! A probe writes `(run_id, seq, sent_at)` rows to `dbshift.probe` on an open-loop schedule,
//! reads them back, and opens new connections, recording every attempt. When stopped it reads
//! every seq of its run back from wherever the target then points (the audit: an acknowledged
//! write missing there is *lost*), and summarises: outages, the longest gap between
//! acknowledged writes, latency percentiles. Workflows start one in-process:
//!
//! ```no_run
//! # async fn f(provider: std::sync::Arc<dyn dbshift_provider::Provider>) -> dbshift_probe::Result<()> {
//! use dbshift_probe::{Probe, ProbeConfig, TargetResolver};
//! let probe = Probe::start(ProbeConfig::default(), TargetResolver::provider(provider, "lab-1")).await?;
//! probe.mark("fence");
//! // ... the switchover ...
//! let summary = probe.stop().await?;
//! assert!(summary.lost_writes.is_empty());
//! # Ok(()) }
//! ```
//!
//! [`load`] is the other kind of client: an application load of mixed transactions (what
//! `dbshift demo` runs through its switchovers), counted by outcome.
//!
//! The probe must never write anything but its own rows (the load, its own tables), and never
//! record a password.

pub mod chart;
pub mod error;
pub mod load;
pub mod probe;
pub mod record;
pub mod summary;
pub mod target;

pub use error::{Error, Result};
pub use load::{Load, LoadError, LoadTotals};
pub use probe::{Marker, Probe, ProbeConfig, ProbeHandle, Progress, PROBE_TABLE};
pub use record::{Attempt, Event, Kind, Outcome};
pub use summary::{Audit, Gap, KindSummary, Latency, Outage, Summary};
pub use target::{TargetResolver, UrlTarget, PASSWORD_ENV};
