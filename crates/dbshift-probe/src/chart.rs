//! The timeline chart, hand-written SVG: latency of every attempt over time (log scale) by
//! kind, failures as red crosses and in per-kind lanes under the plot, outages shaded, the
//! workflow's events as labelled vertical lines. No chart library: the picture is small and
//! its layout is ours to keep readable.
//!
//! Dense runs (more points of a kind than the plot has pixels) are drawn per pixel column as a
//! min-max bar with the median as a dot, so a long run at 1000/s stays a small file.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::record::{Attempt, Event, Kind};
use crate::summary::Summary;

const W: f64 = 1200.0;
const H: f64 = 640.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 90.0;
/// Plot bottom; the failure lanes and the axis sit below.
const PLOT_BOTTOM: f64 = 440.0;
const LANE_TOP: f64 = 455.0;
const LANE_H: f64 = 16.0;
/// A white outline under labels, so a label stays legible where it crosses a line or a dot.
const HALO: &str =
    r#"paint-order="stroke" stroke="white" stroke-width="3" stroke-linejoin="round""#;

fn color(kind: Kind) -> &'static str {
    match kind {
        Kind::Write => "#1f5fbf",
        Kind::Read => "#2a9d3a",
        Kind::Connect => "#e08a00",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

struct Scale {
    t_max: f64,
    log_min: f64,
    log_max: f64,
}

impl Scale {
    fn x(&self, t_ms: f64) -> f64 {
        LEFT + (t_ms.clamp(0.0, self.t_max) / self.t_max) * (W - LEFT - RIGHT)
    }
    fn y(&self, ms: f64) -> f64 {
        let l = ms.max(10f64.powf(self.log_min)).log10().min(self.log_max);
        PLOT_BOTTOM - (l - self.log_min) / (self.log_max - self.log_min) * (PLOT_BOTTOM - TOP)
    }
}

/// A "nice" tick step (1, 2 or 5 times a power of ten) for about `target` ticks over `span`.
fn tick_step(span: f64, target: f64) -> f64 {
    let raw = (span / target).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * mag >= raw {
            return m * mag;
        }
    }
    10.0 * mag
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{} s", trim(ms / 1000.0))
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{} ms", trim((ms * 10.0).round() / 10.0))
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The chart of a run.
pub fn render(summary: &Summary, attempts: &[Attempt], events: &[Event]) -> String {
    let t_max = summary
        .duration_ms
        .max(attempts.iter().map(Attempt::end_ms).fold(0.0, f64::max))
        .max(1.0);
    let lat_max = attempts
        .iter()
        .map(|a| a.latency_ms)
        .fold(summary.timeout_ms, f64::max);
    let lat_min = attempts
        .iter()
        .filter(|a| a.latency_ms > 0.0)
        .map(|a| a.latency_ms)
        .fold(f64::INFINITY, f64::min);
    let log_min = if lat_min.is_finite() {
        lat_min.log10().floor().min(-1.0)
    } else {
        -1.0
    };
    let sc = Scale {
        t_max,
        log_min,
        log_max: lat_max.max(1.0).log10().ceil().max(log_min + 1.0),
    };
    let mut s = String::with_capacity(64 * 1024);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);

    // Title: the verdict first.
    let write_outage = summary
        .outages
        .iter()
        .filter(|o| o.kind == Kind::Write)
        .map(|o| o.duration_ms)
        .fold(0.0, f64::max);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="24" font-size="16" font-weight="bold">dbshift probe {}: longest write outage {}, max write gap {}, lost writes {}</text>"#,
        esc(&summary.target),
        fmt_ms(write_outage),
        fmt_ms(summary.max_write_gap_ms),
        summary.lost_writes.len()
    );
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="42" fill="#555">run {} started {}, {} writes/s requested, {:.1} achieved, timeout {}</text>"##,
        esc(&summary.run_id),
        // To the second: the run id carries the rest.
        esc(summary.started_at.get(..19).unwrap_or(&summary.started_at)),
        trim(summary.requested_write_rate),
        summary.achieved_write_rate,
        fmt_ms(summary.timeout_ms)
    );

    // Outages, under everything else.
    for o in &summary.outages {
        let (x0, x1) = (sc.x(o.start_ms), sc.x(o.end_ms));
        let lane = LANE_TOP + lane_index(o.kind) * LANE_H;
        let _ = writeln!(
            s,
            r##"<rect x="{x0:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="#e34a4a" fill-opacity="0.13"/>"##,
            (x1 - x0).max(1.0),
            PLOT_BOTTOM - TOP
        );
        let _ = writeln!(
            s,
            r##"<rect x="{x0:.1}" y="{lane:.1}" width="{:.1}" height="{:.1}" fill="#e34a4a" fill-opacity="0.35"/>"##,
            (x1 - x0).max(1.0),
            LANE_H - 2.0
        );
    }
    // Outage labels, one line per kind so they do not overlap.
    for o in summary.outages.iter().filter(|o| o.duration_ms >= 20.0) {
        let y = TOP + 14.0 + lane_index(o.kind) * 14.0;
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{y:.1}" fill="#b00000" font-size="11" {HALO}>{} outage {}</text>"##,
            sc.x(o.start_ms) + 3.0,
            o.kind,
            fmt_ms(o.duration_ms)
        );
    }

    // Grid and axes.
    let mut d = sc.log_min;
    while d <= sc.log_max + 1e-9 {
        let ms = 10f64.powf(d);
        let y = sc.y(ms);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#333">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            fmt_ms(ms)
        );
        d += 1.0;
    }
    let step = tick_step(t_max, 12.0);
    let mut t = 0.0;
    let axis_y = LANE_TOP + 3.0 * LANE_H + 4.0;
    while t <= t_max + 1e-9 {
        let x = sc.x(t);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{axis_y:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#333">{}</text>"##,
            axis_y + 14.0,
            trim(t / 1000.0)
        );
        t += step;
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{:.1}" height="{:.1}" fill="none" stroke="#888"/>"##,
        W - LEFT - RIGHT,
        PLOT_BOTTOM - TOP
    );
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#333">time since the probe started (s)</text>"##,
        (LEFT + W - RIGHT) / 2.0,
        axis_y + 32.0
    );
    let _ = writeln!(
        s,
        r##"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle" fill="#333">latency (log scale)</text>"##,
        (TOP + PLOT_BOTTOM) / 2.0
    );
    for kind in Kind::ALL {
        let y = LANE_TOP + lane_index(kind) * LANE_H;
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="{}" font-size="11">{} fails</text><line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#eee"/>"##,
            LEFT - 6.0,
            y + 11.0,
            color(kind),
            kind,
            W - RIGHT,
            y + LANE_H - 1.0,
            y + LANE_H - 1.0
        );
    }

    // Successful attempts.
    for kind in Kind::ALL {
        let ok: Vec<&Attempt> = attempts
            .iter()
            .filter(|a| a.kind == kind && a.ok())
            .collect();
        let c = color(kind);
        if ok.len() <= 3000 {
            for a in ok {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="1.8" fill="{c}" fill-opacity="0.7"/>"#,
                    sc.x(a.t_ms),
                    sc.y(a.latency_ms)
                );
            }
        } else {
            let mut cols: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
            for a in ok {
                cols.entry(sc.x(a.t_ms) as i64)
                    .or_default()
                    .push(a.latency_ms);
            }
            for (x, mut v) in cols {
                v.sort_by(f64::total_cmp);
                let (lo, hi, mid) = (v[0], v[v.len() - 1], v[v.len() / 2]);
                let _ = writeln!(
                    s,
                    r#"<line x1="{x}" x2="{x}" y1="{:.1}" y2="{:.1}" stroke="{c}" stroke-opacity="0.45"/><circle cx="{x}" cy="{:.1}" r="1.5" fill="{c}"/>"#,
                    sc.y(lo),
                    sc.y(hi) - 0.5,
                    sc.y(mid)
                );
            }
        }
    }

    // Failures: a red cross at the latency (a timeout sits at the timeout), and a tick in the
    // kind's lane; at most one of each per pixel column and kind.
    let mut seen = std::collections::HashSet::new();
    for a in attempts.iter().filter(|a| !a.ok()) {
        let x = sc.x(a.t_ms);
        let y = sc.y(a.latency_ms);
        if !seen.insert((a.kind, x as i64, y as i64 / 3)) {
            continue;
        }
        let _ = writeln!(
            s,
            r##"<path d="M{:.1} {:.1}l6 6m0 -6l-6 6" stroke="#d00000" stroke-width="1.4"/>"##,
            x - 3.0,
            y - 3.0
        );
        let lane = LANE_TOP + lane_index(a.kind) * LANE_H;
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="#d00000"/>"##,
            lane + 2.0,
            lane + LANE_H - 3.0
        );
    }

    // Workflow events: a dashed line through plot and lanes, the label above the plot, in the
    // first of three rows where it does not run into the previous label. Events too close for
    // any row get a number there, and "number label" is listed after the legend.
    let mut row_end = [f64::NEG_INFINITY; 3];
    let mut notes: Vec<String> = Vec::new();
    // Events that fit no row, gathered while they stand within a few pixels of each other:
    // they share one tag ("2-5") and one dashed line each.
    let mut pending: Vec<(f64, &Event)> = Vec::new();
    let place = |s: &mut String, row_end: &mut [f64; 3], x: f64, text: &str, row: usize| {
        row_end[row] = x + 3.0 + text.chars().count() as f64 * 6.8 + 8.0;
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" fill="#6a2c91" font-size="11" font-weight="bold" {HALO}>{}</text>"##,
            x + 3.0,
            TOP - 30.0 + row as f64 * 10.0,
            esc(text)
        );
    };
    let flush = |s: &mut String,
                 row_end: &mut [f64; 3],
                 notes: &mut Vec<String>,
                 pending: &mut Vec<(f64, &Event)>| {
        if pending.is_empty() {
            return;
        }
        let first = notes.len() + 1;
        for (_, e) in pending.iter() {
            notes.push(format!("{} {}", notes.len() + 1, e.label));
        }
        let last = notes.len();
        let tag = if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        };
        let row = (0..3)
            .min_by(|a, b| row_end[*a].total_cmp(&row_end[*b]))
            .unwrap_or(0);
        // No row is free at its line: the tag goes just after the row's last label.
        let x = pending[0].0.max(row_end[row] - 3.0);
        place(s, row_end, x, &tag, row);
        pending.clear();
    };
    for e in events {
        let x = sc.x(e.t_ms);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{axis_y:.1}" stroke="#6a2c91" stroke-width="1.5" stroke-dasharray="5 3"/>"##,
            TOP - 28.0,
        );
        if pending.first().is_some_and(|(px, _)| x - px > 14.0) {
            flush(&mut s, &mut row_end, &mut notes, &mut pending);
        }
        match (0..3).find(|r| row_end[*r] <= x) {
            Some(r) if pending.is_empty() => place(&mut s, &mut row_end, x, &e.label, r),
            _ => pending.push((x, e)),
        }
    }
    flush(&mut s, &mut row_end, &mut notes, &mut pending);

    // Legend.
    let ly = H - 42.0;
    let mut lx = LEFT;
    for kind in Kind::ALL {
        let _ = write!(
            s,
            r#"<circle cx="{lx}" cy="{:.1}" r="4" fill="{}"/><text x="{:.1}" y="{ly}">{} ok</text>"#,
            ly - 4.0,
            color(kind),
            lx + 8.0,
            kind
        );
        lx += 110.0;
    }
    let _ = writeln!(
        s,
        r##"<path d="M{:.1} {:.1}l8 8m0 -8l-8 8" stroke="#d00000" stroke-width="1.6"/><text x="{:.1}" y="{ly}">failed or timed out</text><rect x="{:.1}" y="{:.1}" width="18" height="12" fill="#e34a4a" fill-opacity="0.35"/><text x="{:.1}" y="{ly}">outage</text><line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#6a2c91" stroke-width="1.5" stroke-dasharray="5 3"/><text x="{:.1}" y="{ly}">workflow event</text>"##,
        lx - 4.0,
        ly - 8.0,
        lx + 10.0,
        lx + 150.0,
        ly - 10.0,
        lx + 172.0,
        lx + 240.0,
        lx + 240.0,
        ly - 12.0,
        ly + 2.0,
        lx + 248.0
    );
    if !notes.is_empty() {
        let _ = writeln!(
            s,
            r##"<text x="{LEFT:.1}" y="{:.1}" fill="#6a2c91" font-size="11" font-weight="bold">events: {}</text>"##,
            ly + 24.0,
            esc(&notes.join(";  "))
        );
    }
    s.push_str("</svg>\n");
    s
}

fn lane_index(kind: Kind) -> f64 {
    match kind {
        Kind::Write => 0.0,
        Kind::Read => 1.0,
        Kind::Connect => 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Outcome;
    use crate::summary::{Audit, RunInfo, Summary};

    fn run(n: u64) -> (Summary, Vec<Attempt>, Vec<Event>) {
        let attempts: Vec<Attempt> = (0..n)
            .map(|k| Attempt {
                kind: if k % 3 == 0 { Kind::Read } else { Kind::Write },
                seq: Some(k),
                t_ms: k as f64 * 10_000.0 / n as f64,
                latency_ms: 0.5 + (k % 7) as f64,
                outcome: if (n / 2..n / 2 + n / 10).contains(&k) {
                    Outcome::Timeout
                } else {
                    Outcome::Ok
                },
                code: None,
                error: None,
                endpoint: None,
            })
            .collect();
        let events = vec![
            Event {
                t_ms: 4000.0,
                label: "fence <old> & go".into(),
            },
            Event {
                t_ms: 6000.0,
                label: "promote".into(),
            },
        ];
        let info = RunInfo {
            run_id: "r1".into(),
            target: "lab-1".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            duration_ms: 10_000.0,
            requested_write_rate: 100.0,
            timeout_ms: 1000.0,
            report_dir: None,
        };
        let s = Summary::build(info, &attempts, events.clone(), Audit::default());
        (s, attempts, events)
    }

    #[test]
    fn the_chart_has_points_failures_outages_events_and_a_legend() {
        let (s, a, e) = run(300);
        let svg = render(&s, &a, &e);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.matches("<circle").count() > 200, "one dot per success");
        assert!(svg.contains("stroke=\"#d00000\""), "failures are marked");
        assert!(svg.contains("fill-opacity=\"0.13\""), "outages are shaded");
        assert!(svg.contains("write outage"));
        assert!(
            svg.contains("fence &lt;old&gt; &amp; go"),
            "labels are escaped"
        );
        assert!(svg.contains("promote"));
        assert!(svg.contains("time since the probe started (s)"));
        assert!(svg.contains("latency (log scale)"));
        assert!(svg.contains("workflow event"));
        // Balanced: every element opened is closed (the SVG parses).
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    }

    #[test]
    fn dense_runs_stay_small() {
        let (s, a, e) = run(120_000);
        let svg = render(&s, &a, &e);
        assert!(svg.len() < 1_000_000, "{} bytes", svg.len());
        assert!(svg.contains("<line"));
    }

    #[test]
    fn ticks_are_nice() {
        assert_eq!(tick_step(10_000.0, 12.0), 1000.0);
        assert_eq!(tick_step(60_000.0, 12.0), 5000.0);
        assert_eq!(tick_step(3_000.0, 12.0), 500.0);
        assert_eq!(fmt_ms(2000.0), "2 s");
        assert_eq!(fmt_ms(0.1), "0.1 ms");
        assert_eq!(fmt_ms(208.545), "209 ms");
        assert_eq!(fmt_ms(2.049_5), "2 ms");
        assert_eq!(fmt_ms(2049.5), "2.05 s");
    }
}
