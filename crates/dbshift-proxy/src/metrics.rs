//! Counters of the proxy in Prometheus text format. Lock-free on the hot path.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds (seconds) of the held-time histogram.
const HELD_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
pub struct Metrics {
    pub connections_current: AtomicU64,
    pub connections_total: AtomicU64,
    pub commands_total: AtomicU64,
    pub errors_sent_total: AtomicU64,
    pub auth_failures_total: AtomicU64,
    pub auth_lookups_total: AtomicU64,
    pub backend_connect_failures_total: AtomicU64,
    pub sessions_ended_total: AtomicU64,
    pub sessions_moved_total: AtomicU64,
    pub switches_total: AtomicU64,
    pub pauses_total: AtomicU64,
    pub user_variables_lost_total: AtomicU64,
    held_buckets: [AtomicU64; HELD_BUCKETS.len()],
    held_count: AtomicU64,
    held_micros: AtomicU64,
}

impl Metrics {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    pub fn held(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in HELD_BUCKETS.iter().enumerate() {
            if s <= *b {
                self.held_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.held_count.fetch_add(1, Relaxed);
        self.held_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }

    pub fn render(&self, paused: bool, sessions_held: usize) -> String {
        let mut out = String::with_capacity(2048);
        let mut counter = |name: &str, help: &str, kind: &str, v: u64| {
            let _ = writeln!(out, "# HELP dbshift_proxy_{name} {help}");
            let _ = writeln!(out, "# TYPE dbshift_proxy_{name} {kind}");
            let _ = writeln!(out, "dbshift_proxy_{name} {v}");
        };
        counter(
            "connections_current",
            "Client connections open now.",
            "gauge",
            self.connections_current.load(Relaxed),
        );
        counter(
            "connections_total",
            "Client connections accepted.",
            "counter",
            self.connections_total.load(Relaxed),
        );
        counter(
            "commands_total",
            "Client commands forwarded.",
            "counter",
            self.commands_total.load(Relaxed),
        );
        counter(
            "errors_sent_total",
            "ERR packets the proxy itself sent to clients.",
            "counter",
            self.errors_sent_total.load(Relaxed),
        );
        counter(
            "auth_failures_total",
            "Client logins refused (wrong password, unknown user, unsupported plugin).",
            "counter",
            self.auth_failures_total.load(Relaxed),
        );
        counter(
            "auth_lookups_total",
            "Stored password hashes read from the backend (logins within the cache's life reuse them).",
            "counter",
            self.auth_lookups_total.load(Relaxed),
        );
        counter(
            "backend_connect_failures_total",
            "Backend connections that could not be opened.",
            "counter",
            self.backend_connect_failures_total.load(Relaxed),
        );
        counter(
            "sessions_ended_total",
            "Client sessions the proxy ended (open transaction past the bound, state that cannot move, re-attach failure).",
            "counter",
            self.sessions_ended_total.load(Relaxed),
        );
        counter(
            "sessions_moved_total",
            "Client sessions re-attached to a new backend.",
            "counter",
            self.sessions_moved_total.load(Relaxed),
        );
        counter(
            "switches_total",
            "Backend switches.",
            "counter",
            self.switches_total.load(Relaxed),
        );
        counter(
            "pauses_total",
            "Pauses.",
            "counter",
            self.pauses_total.load(Relaxed),
        );
        counter(
            "user_variables_lost_total",
            "Sessions whose user variables could not be read for a switch.",
            "counter",
            self.user_variables_lost_total.load(Relaxed),
        );
        counter(
            "paused",
            "1 while the proxy is paused.",
            "gauge",
            u64::from(paused),
        );
        counter(
            "sessions_held",
            "Client sessions and connections held now.",
            "gauge",
            sessions_held as u64,
        );
        let _ = writeln!(
            out,
            "# HELP dbshift_proxy_held_seconds Time client commands and connections were held."
        );
        let _ = writeln!(out, "# TYPE dbshift_proxy_held_seconds histogram");
        for (i, b) in HELD_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "dbshift_proxy_held_seconds_bucket{{le=\"{b}\"}} {}",
                self.held_buckets[i].load(Relaxed)
            );
        }
        let count = self.held_count.load(Relaxed);
        let _ = writeln!(
            out,
            "dbshift_proxy_held_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "dbshift_proxy_held_seconds_sum {}",
            self.held_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "dbshift_proxy_held_seconds_count {count}");
        out
    }
}
