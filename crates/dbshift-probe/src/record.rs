//! What the probe records: one [`Attempt`] per write, read or new connection, and the
//! workflow's [`Event`]s. Times are milliseconds since the probe started.

use serde::{Deserialize, Serialize};

/// What an attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `INSERT` of one `(run_id, seq, sent_at)` row on a pooled connection.
    Write,
    /// `SELECT MAX(seq)` of the run on a pooled connection.
    Read,
    /// A new connection (TLS handshake included), `SELECT 1`, close.
    Connect,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Write, Kind::Read, Kind::Connect];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Write => "write",
            Kind::Read => "read",
            Kind::Connect => "connect",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The server acknowledged it.
    Ok,
    /// The server or the network said no.
    Failed,
    /// No answer within the timeout. For a write: indeterminate (it may or may not have been
    /// committed), never counted as lost.
    Timeout,
}

/// One attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub kind: Kind,
    /// The write's sequence number (writes only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub seq: Option<u64>,
    /// When the attempt was due (open-loop schedule), ms since the start. Latency is measured
    /// from here, so time spent waiting for a connection counts, as it does for a client.
    pub t_ms: f64,
    /// From due to answer (or to the timeout).
    pub latency_ms: f64,
    pub outcome: Outcome,
    /// The server's error code, when it sent one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// The `host:port` the attempt went to, when it got that far.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub endpoint: Option<String>,
}

impl Attempt {
    /// When the answer came (or the attempt gave up), ms since the start.
    pub fn end_ms(&self) -> f64 {
        self.t_ms + self.latency_ms
    }

    pub fn ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }
}

/// A workflow step, drawn on the chart as a labelled vertical line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub t_ms: f64,
    pub label: String,
}
