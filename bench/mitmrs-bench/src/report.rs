//! Aggregation (median of runs), targets, and the markdown table.
//!
//! Every metric produces one [`Row`] per peer. A row is either the per-key
//! median over its successful runs or the reason it has no number ("failed
//! to start: ...", "not built yet"). The "mitmrs ÷ peer" column is the ratio
//! of mitmrs's primary number to the row's; "vs target" says met/missed and
//! by how much.

use crate::metrics::Sample;
use crate::peers::{Kind, PeerSpec};

/// How to read and print a metric's primary number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Rps,
    ConnPerSec,
    GBps,
    Micros,
    KiBPerConn,
    Millis,
    MiB,
    FlowsPerSec,
    MsgsPerSec,
}

impl Unit {
    pub fn fmt(self, v: f64) -> String {
        match self {
            Unit::Rps => format!("{} req/s", thousands(v)),
            Unit::ConnPerSec => format!("{} conn/s", thousands(v)),
            Unit::GBps => format!("{v:.2} GB/s"),
            Unit::Micros if v.abs() >= 10_000.0 => format!("{:.1} ms", v / 1e3),
            Unit::Micros => format!("{v:.0} µs"),
            Unit::KiBPerConn => format!("{v:.1} KiB/conn"),
            Unit::Millis => format!("{v:.1} ms"),
            Unit::MiB => format!("{v:.1} MiB"),
            Unit::FlowsPerSec => format!("{} flows/s", thousands(v)),
            Unit::MsgsPerSec => format!("{} msgs/s", thousands(v)),
        }
    }
}

pub fn thousands(v: f64) -> String {
    if v.abs() < 100.0 {
        return format!("{v:.1}");
    }
    let s = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// A ratio with about three significant digits (0.000153×, 0.73×, 65.6×).
pub fn fmt_ratio(r: f64) -> String {
    let decimals = if r >= 10.0 {
        1
    } else if r >= 0.1 || r <= 0.0 {
        2
    } else {
        (2.0 - r.log10().floor()).min(8.0) as usize
    };
    format!("{r:.decimals$}×")
}

/// A target, checked against the mitmrs row of its metric.
#[derive(Clone, Debug)]
pub enum Target {
    /// mitmrs primary ÷ the named peer's primary ≥ min (shown on that peer's row).
    VsPeer { peer: &'static str, min: f64 },
    /// A value of the mitmrs row ≥ min.
    Min {
        key: &'static str,
        min: f64,
        unit: Unit,
    },
    /// A value of the mitmrs row ≤ max.
    Max {
        key: &'static str,
        max: f64,
        unit: Unit,
    },
    /// mitmrs primary ÷ mitmrs primary of another metric (by key) ≥ min.
    VsMetric { metric: &'static str, min: f64 },
}

#[derive(Clone, Debug)]
pub struct Row {
    pub peer: String,
    pub spec: Option<PeerSpec>,
    pub outcome: Result<Sample, String>,
    pub runs: usize,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct MetricResult {
    pub id: &'static str,
    pub key: &'static str,
    pub title: &'static str,
    pub primary: &'static str,
    pub unit: Unit,
    pub targets: Vec<Target>,
    pub rows: Vec<Row>,
}

impl MetricResult {
    /// The mitmrs row the ratios and targets are about: regular mode's, or the
    /// only mitmrs row of a metric that runs reverse mode alone (M10).
    pub fn subject(&self) -> Option<&Row> {
        let mitmrs = |reverse: bool| {
            self.rows.iter().find(move |r| {
                r.spec
                    .is_some_and(|s| s.kind == Kind::Mitmrs && s.opts.reverse == reverse)
            })
        };
        mitmrs(false).or_else(|| mitmrs(true))
    }
    pub fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.peer == name)
    }
    pub fn primary_of(&self, r: &Row) -> Option<f64> {
        r.outcome
            .as_ref()
            .ok()
            .and_then(|s| s.get(self.primary).copied())
    }
}

/// Per-key median over the runs.
pub fn median_sample(runs: &[Sample]) -> Sample {
    let mut out = Sample::new();
    let keys: std::collections::BTreeSet<&String> = runs.iter().flat_map(|s| s.keys()).collect();
    for k in keys {
        let mut v: Vec<f64> = runs.iter().filter_map(|s| s.get(k).copied()).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        let m = if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        };
        out.insert(k.clone(), m);
    }
    out
}

fn verdict(ok: bool, shown: String, bound: String, miss_pct: f64) -> String {
    if ok {
        format!("met ({shown} vs {bound})")
    } else {
        format!("missed by {miss_pct:.0}% ({shown} vs {bound})")
    }
}

fn check_min(v: f64, min: f64, shown: String, bound: String) -> String {
    verdict(
        v >= min,
        shown,
        format!("≥ {bound}"),
        (1.0 - v / min) * 100.0,
    )
}

fn check_max(v: f64, max: f64, shown: String, bound: String) -> String {
    verdict(
        v <= max,
        shown,
        format!("≤ {bound}"),
        (v / max - 1.0) * 100.0,
    )
}

/// The "vs target" cell for a row.
fn target_cell(m: &MetricResult, row: &Row, all: &[MetricResult]) -> String {
    let subj = m.subject();
    let subj_val = subj.and_then(|r| m.primary_of(r));
    let subj_sample = subj.and_then(|r| r.outcome.as_ref().ok());
    let is_subject = subj.is_some_and(|s| std::ptr::eq(s, row));
    let mut cells = Vec::new();
    for t in &m.targets {
        match t {
            Target::VsPeer { peer, min } if row.peer == *peer => {
                cells.push(match (subj_val, m.primary_of(row)) {
                    (Some(a), Some(b)) if b > 0.0 => {
                        check_min(a / b, *min, fmt_ratio(a / b), format!("{min}×"))
                    }
                    (None, _) => format!("n/a: mitmrs has no result (target ≥ {min}×)"),
                    _ => format!("n/a: no {peer} result (target ≥ {min}×)"),
                });
            }
            Target::Min { key, min, unit } if is_subject => {
                if let Some(v) = subj_sample.and_then(|s| s.get(*key)) {
                    cells.push(check_min(*v, *min, unit.fmt(*v), unit.fmt(*min)));
                }
            }
            Target::Max { key, max, unit } if is_subject => {
                if let Some(v) = subj_sample.and_then(|s| s.get(*key)) {
                    if *v < 0.0 && key.starts_with("added_") {
                        // Below the direct row's own value: direct's tail was
                        // worse in its runs, so this run measured nothing.
                        cells.push(format!(
                            "n/a: {} below direct (noise; target ≤ {})",
                            unit.fmt(-*v),
                            unit.fmt(*max)
                        ));
                    } else {
                        cells.push(check_max(*v, *max, unit.fmt(*v), unit.fmt(*max)));
                    }
                }
            }
            Target::VsMetric { metric, min } if is_subject => {
                let other = all
                    .iter()
                    .find(|o| o.key == *metric)
                    .and_then(|o| o.subject().and_then(|r| o.primary_of(r)));
                cells.push(match (subj_val, other) {
                    (Some(a), Some(b)) if b > 0.0 => check_min(
                        a / b,
                        *min,
                        format!("{} {metric}", fmt_ratio(a / b)),
                        format!("{min}× {metric}"),
                    ),
                    (None, _) => format!("n/a: mitmrs has no result (target ≥ {min}× {metric})"),
                    _ => format!(
                        "n/a: needs mitmrs {metric} in the same run (target ≥ {min}× {metric})"
                    ),
                });
            }
            _ => {}
        }
    }
    if cells.is_empty() && row.spec.is_some_and(|s| s.kind == Kind::Mitmrs) && subj_val.is_none() {
        let has_abs = m
            .targets
            .iter()
            .any(|t| !matches!(t, Target::VsPeer { .. }));
        if has_abs && is_subject {
            return "n/a: mitmrs has no result".into();
        }
    }
    cells.join("; ")
}

fn result_cell(m: &MetricResult, row: &Row) -> String {
    match &row.outcome {
        Err(e) => e.clone(),
        Ok(s) => {
            let mut out = s
                .get(m.primary)
                .map(|v| m.unit.fmt(*v))
                .unwrap_or_else(|| "?".into());
            let extra: Vec<String> = match m.id {
                "M2" | "M3" => s
                    .get("p99_us")
                    .map(|v| format!("p99 {}", Unit::Micros.fmt(*v)))
                    .into_iter()
                    .collect(),
                "M6" => s
                    .get("us_per_hook")
                    .map(|v| format!("{v:.1} µs/hook call"))
                    .into_iter()
                    .collect(),
                "M7" => {
                    let mut e = vec![format!(
                        "p99 {}",
                        s.get("p99_us").map_or("?".into(), |v| Unit::Micros.fmt(*v))
                    )];
                    if let (Some(a), Some(b)) = (s.get("added_p50_us"), s.get("added_p99_us")) {
                        e.push(format!("added p50 {a:+.0} µs, p99 {b:+.0} µs"));
                    }
                    e
                }
                "M8" => s
                    .get("held")
                    .map(|v| format!("{v:.0} conns held"))
                    .into_iter()
                    .collect(),
                "M4S" => s
                    .get("bytes_per_sec")
                    .map(|v| format!("read at {:.1} MB/s", v / 1e6))
                    .into_iter()
                    .collect(),
                _ => Vec::new(),
            };
            if !extra.is_empty() {
                out.push_str(&format!(" ({})", extra.join("; ")));
            }
            out
        }
    }
}

/// Render all metric results as one markdown table.
pub fn table(all: &[MetricResult]) -> String {
    let mut t = String::from(
        "| Metric | Peer | Result | Peak RSS | Peer CPU | mitmrs ÷ peer | vs target | Notes |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for m in all {
        let subj = m.subject().and_then(|r| m.primary_of(r));
        for (i, row) in m.rows.iter().enumerate() {
            let s = row.outcome.as_ref().ok();
            let rss = s
                .and_then(|s| s.get("hwm_kib"))
                .map(|k| Unit::MiB.fmt(k / 1024.0))
                .unwrap_or_default();
            let cpu = s
                .and_then(|s| {
                    let per_req = s.get("requests").is_some_and(|n| *n >= 100.0);
                    match (per_req, s.get("cpu_us_per_req"), s.get("cpu_s")) {
                        (true, Some(v), _) => Some(format!("{v:.1} µs/req")),
                        (_, _, Some(c)) => Some(format!("{c:.2} s")),
                        _ => None,
                    }
                })
                .unwrap_or_default();
            let is_subject = m.subject().is_some_and(|r| std::ptr::eq(r, row));
            let ratio = match (subj, m.primary_of(row)) {
                (Some(a), Some(b)) if b > 0.0 && !is_subject => fmt_ratio(a / b),
                _ => String::new(),
            };
            let mut notes = row.notes.clone();
            if row.runs > 0 {
                notes.insert(
                    0,
                    format!("{} run{}", row.runs, if row.runs == 1 { "" } else { "s" }),
                );
            }
            let label = if i == 0 {
                format!("{} {}", m.key, m.title)
            } else {
                m.key.to_string()
            };
            t.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                label,
                row.peer,
                result_cell(m, row),
                rss,
                cpu,
                ratio,
                target_cell(m, row, all),
                notes.join("; ").replace('|', "/")
            ));
        }
    }
    t
}
