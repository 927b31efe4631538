//! The metric table: which peers each metric runs against, how one run is
//! measured, what the primary number is, and the targets (see bench/README.md).

use crate::metrics::{self, with_proc_stats, Sample};
use crate::peers::{Kind, Peer, PeerSpec};
use crate::report::{MetricResult, Target, Unit};
use crate::runner::Ctx;
use anyhow::Result;
use std::time::Duration;

/// How peers are managed for a metric.
pub enum Mode {
    /// Start every peer once, then interleave the runs (A B A B ...).
    Shared,
    /// Start a fresh peer for every run (memory metrics).
    Fresh,
    /// The measurement spawns the peer itself (startup time).
    NoStart,
}

type Measure = Box<dyn Fn(&Ctx, &Peer) -> Result<Sample>>;
type Post = fn(&mut MetricResult, &[MetricResult]);

pub struct MetricDef {
    pub id: &'static str,
    pub key: &'static str,
    pub title: &'static str,
    pub primary: &'static str,
    pub unit: Unit,
    pub targets: Vec<Target>,
    pub peers: Vec<PeerSpec>,
    pub mode: Mode,
    /// Warm up each started peer: Some(tls?) or None.
    pub warmup: Option<bool>,
    pub runs: Option<usize>,
    pub measure: Measure,
    pub post: Option<Post>,
    /// Static remarks per peer (e.g. "streams; has no buffering mode").
    pub note: fn(&PeerSpec) -> Option<&'static str>,
}

fn no_note(_: &PeerSpec) -> Option<&'static str> {
    None
}

fn def(
    id: &'static str,
    key: &'static str,
    title: &'static str,
    primary: &'static str,
    unit: Unit,
) -> MetricDef {
    MetricDef {
        id,
        key,
        title,
        primary,
        unit,
        targets: Vec::new(),
        peers: Vec::new(),
        mode: Mode::Shared,
        warmup: None,
        runs: None,
        measure: Box::new(|_, _| Err(anyhow::anyhow!("not built yet"))),
        post: None,
        note: no_note,
    }
}

fn all_regular() -> Vec<PeerSpec> {
    use Kind::*;
    [Direct, Nginx, Mitmdump, Hudsucker, Mitmrs]
        .map(PeerSpec::new)
        .to_vec()
}

fn intercepting() -> Vec<PeerSpec> {
    use Kind::*;
    [Direct, Mitmdump, Hudsucker, Mitmrs]
        .map(PeerSpec::new)
        .to_vec()
}

fn dur(ctx: &Ctx) -> String {
    format!("{}", ctx.duration)
}

fn bound(ctx: &Ctx) -> Duration {
    Duration::from_secs_f64(ctx.duration + 90.0)
}

fn streaming(kinds: &[Kind]) -> Vec<PeerSpec> {
    kinds
        .iter()
        .map(|&k| {
            PeerSpec::new(k).with(|o| o.stream_large = matches!(k, Kind::Mitmdump | Kind::Mitmrs))
        })
        .collect()
}

fn transfer_note(s: &PeerSpec) -> Option<&'static str> {
    match s.kind {
        Kind::Nginx => Some("proxy_buffering off, proxy_request_buffering off"),
        Kind::Hudsucker => Some("always streams"),
        Kind::Direct => Some("no proxy"),
        _ => None,
    }
}

fn h2_note(s: &PeerSpec) -> Option<&'static str> {
    match s.kind {
        Kind::Direct => Some("h2 over TLS straight to the origin"),
        Kind::Nginx => Some("TLS + h2 to the client, HTTP/1.1 keep-alive to the origin"),
        _ => Some("TLS + h2 to the client, HTTP/1.1 to the origin"),
    }
}

fn tls_note(s: &PeerSpec) -> Option<&'static str> {
    (s.kind == Kind::Direct).then_some("TLS straight to the origin")
}

/// M11's 64 MiB message, as a note on each row.
fn post_websocket(m: &mut MetricResult, _: &[MetricResult]) {
    for row in &mut m.rows {
        if let Ok(s) = &row.outcome {
            let get = |k: &str| s.get(k).copied().unwrap_or(f64::NAN);
            let mut note = if get("big_secs").is_finite() {
                format!(
                    "64 MiB message echoed (first, on the fresh peer) in {:.2} s ({:.0} MB/s each way)",
                    get("big_secs"),
                    get("big_bytes_per_sec") / 1e6,
                )
            } else {
                "the 64 MiB message (first, on the fresh peer) did not come back within the time bound"
                    .to_string()
            };
            if get("hwm_mib").is_finite() {
                note += &format!(
                    ", peak RSS {:.1} MiB (the target); then peak RSS {:.1} MiB during the 32 \
                     connections (their WebSocket history, at most `websocket_history` per flow)",
                    get("hwm_mib"),
                    get("msgs_hwm_mib"),
                );
            }
            row.notes.push(note);
        }
    }
}

/// M12's other numbers, as notes on each row.
fn post_save_flows(m: &mut MetricResult, _: &[MetricResult]) {
    for row in &mut m.rows {
        if let Ok(s) = &row.outcome {
            let get = |k: &str| s.get(k).copied().unwrap_or(f64::NAN);
            row.notes.push(format!(
                "{} flows through the proxy at {} flows/s (RSS {:+.1} MiB from the first 10% to the end, \
                 file {:.0} MiB); then `-nr FILE -w COPY` at {} flows/s (the primary number; median of {} \
                 re-saves of the same file: slowest {}, fastest {})",
                crate::report::thousands(get("flows")),
                crate::report::thousands(get("live_flows_per_sec")),
                get("rss_growth_mib"),
                get("file_mib"),
                crate::report::thousands(get("flows_per_sec")),
                get("resaves"),
                crate::report::thousands(get("resave_slowest")),
                crate::report::thousands(get("resave_fastest")),
            ));
        }
    }
}

/// Added latency against the direct row (M7).
fn post_added_latency(m: &mut MetricResult, _: &[MetricResult]) {
    let direct = m
        .row("direct")
        .and_then(|r| r.outcome.as_ref().ok())
        .cloned();
    let Some(d) = direct else { return };
    for row in &mut m.rows {
        if let Ok(s) = &mut row.outcome {
            for (k, out) in [("p50_us", "added_p50_us"), ("p99_us", "added_p99_us")] {
                if let (Some(v), Some(base)) = (s.get(k).copied(), d.get(k)) {
                    s.insert(out.into(), v - base);
                }
            }
        }
    }
}

/// µs per hook call = CPU/request with the script − CPU/request without (M1).
fn post_hook_cost(m: &mut MetricResult, prev: &[MetricResult]) {
    let m1 = prev.iter().find(|p| p.key == "M1");
    for row in &mut m.rows {
        let plain = row.spec.and_then(|s| {
            let base = PeerSpec::new(s.kind).name();
            m1?.row(&base)?
                .outcome
                .as_ref()
                .ok()?
                .get("cpu_us_per_req")
                .copied()
        });
        match (&mut row.outcome, plain) {
            (Ok(s), Some(p)) => match s.get("cpu_us_per_req").copied() {
                Some(v) if v > p => {
                    s.insert("us_per_hook".into(), v - p);
                }
                Some(v) => row.notes.push(format!(
                    "µs/hook lost in the noise: {v:.1} µs/req with the script, {p:.1} without"
                )),
                None => {}
            },
            (Ok(_), None) => row.notes.push("µs/hook needs M1 in the same run".into()),
            _ => {}
        }
    }
}

fn load_metric(extra: Vec<&'static str>, tls: bool, path: &'static str) -> Measure {
    Box::new(move |ctx, peer| {
        let mut a: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        a.push(format!("--duration={}", dur(ctx)));
        with_proc_stats(peer, || metrics::load(ctx, peer, path, tls, &a, bound(ctx)))
    })
}

fn transfer(upload: bool, size: u64, read_rate: Option<f64>) -> Measure {
    Box::new(move |ctx, peer| {
        let mut a = vec![
            "-c".to_string(),
            "1".into(),
            "-n".into(),
            "1".into(),
            "--timeout=3600".into(),
            "--duration=3600".into(),
        ];
        if upload {
            a.extend(["--method=POST".to_string(), format!("--body-size={size}")]);
        }
        if let Some(r) = read_rate {
            a.push(format!("--read-rate={r}"));
        }
        let path: &str = &if upload {
            "/upload".to_string()
        } else {
            format!("/bytes/{size}")
        };
        let limit = read_rate.map_or(600.0, |r| size as f64 / r * 1.5 + 120.0);
        let mut s = with_proc_stats(peer, || {
            metrics::load(ctx, peer, path, false, &a, Duration::from_secs_f64(limit))
        })?;
        if let Some(b) = s.get("bytes_per_sec").copied() {
            s.insert("gbps".into(), b / 1e9);
        }
        if let Some(h) = s.get("hwm_kib").copied() {
            s.insert("hwm_mib".into(), h / 1024.0);
        }
        Ok(s)
    })
}

/// Every metric, in table order. `m4s_size` is the M4S response size.
pub fn build(ctx: &Ctx, m4s_size: u64) -> Vec<MetricDef> {
    let gib: u64 = 1 << 30;
    let mut v = Vec::new();

    let mut m1 = def(
        "M1",
        "M1",
        "HTTP/1.1 keep-alive small body (wrk -t1 -c32)",
        "rps",
        Unit::Rps,
    );
    m1.peers = all_regular();
    m1.peers.insert(3, PeerSpec::reverse(Kind::Mitmdump));
    m1.peers.push(PeerSpec::reverse(Kind::Mitmrs));
    m1.warmup = Some(false);
    m1.measure = Box::new(|ctx, peer| with_proc_stats(peer, || metrics::wrk(ctx, peer)));
    m1.targets = vec![
        Target::VsPeer {
            peer: "nginx reverse",
            min: 1.0,
        },
        Target::VsPeer {
            peer: "mitmdump",
            min: 80.0,
        },
        Target::VsPeer {
            peer: "hudsucker",
            min: 1.7,
        },
    ];
    v.push(m1);

    let mut m2 = def(
        "M2",
        "M2",
        "HTTPS intercepted, keep-alive in CONNECT (c32)",
        "rps",
        Unit::Rps,
    );
    m2.peers = intercepting();
    m2.warmup = Some(true);
    m2.measure = load_metric(vec!["-c", "32"], true, "/small");
    m2.targets = vec![
        Target::VsMetric {
            metric: "M1",
            min: 0.5,
        },
        Target::VsPeer {
            peer: "mitmdump",
            min: 50.0,
        },
    ];
    m2.note = tls_note;
    v.push(m2);

    let mut m3 = def(
        "M3",
        "M3",
        "new CONNECT + TLS per request (c16)",
        "rps",
        Unit::ConnPerSec,
    );
    m3.peers = intercepting();
    m3.warmup = Some(true);
    m3.measure = load_metric(
        vec!["-c", "16", "--new-conn", "-n", "30000"],
        true,
        "/small",
    );
    m3.targets = vec![Target::VsPeer {
        peer: "mitmdump",
        min: 20.0,
    }];
    m3.note = tls_note;
    v.push(m3);

    use Kind::*;
    for (key, title, upload) in [
        ("M4 down", "1 GiB streamed response", false),
        ("M4 up", "1 GiB streamed upload", true),
    ] {
        let mut m = def("M4", key, title, "gbps", Unit::GBps);
        m.peers = streaming(&[Direct, Nginx, Mitmdump, Hudsucker, Mitmrs]);
        m.mode = Mode::Fresh;
        m.measure = transfer(upload, gib, None);
        m.targets = vec![
            Target::Min {
                key: "gbps",
                min: 2.0,
                unit: Unit::GBps,
            },
            Target::Max {
                key: "hwm_mib",
                max: 32.0,
                unit: Unit::MiB,
            },
        ];
        m.note = transfer_note;
        v.push(m);
    }

    let mut m5 = def("M5", "M5", "100 MiB buffered response", "gbps", Unit::GBps);
    m5.peers = all_regular();
    m5.mode = Mode::Fresh;
    m5.measure = transfer(false, 100 << 20, None);
    m5.targets = vec![
        Target::Min {
            key: "gbps",
            min: 1.0,
            unit: Unit::GBps,
        },
        Target::Max {
            key: "hwm_mib",
            max: 250.0,
            unit: Unit::MiB,
        },
    ];
    m5.note = transfer_note;
    v.push(m5);

    let mut m6 = def("M6", "M6", "M1 with add_header.py (-s)", "rps", Unit::Rps);
    m6.peers = [Mitmdump, Mitmrs]
        .map(|k| PeerSpec::new(k).with(|o| o.script = true))
        .to_vec();
    m6.warmup = Some(false);
    m6.measure = Box::new(|ctx, peer| with_proc_stats(peer, || metrics::wrk(ctx, peer)));
    m6.post = Some(post_hook_cost);
    m6.targets = vec![Target::VsPeer {
        peer: "mitmdump -s",
        min: 20.0,
    }];
    v.push(m6);

    let mut m7 = def(
        "M7",
        "M7",
        "latency at 1,000 req/s (10 conns), p50",
        "p50_us",
        Unit::Micros,
    );
    m7.peers = all_regular();
    m7.warmup = Some(false);
    m7.measure = load_metric(vec!["-c", "10", "--rate", "1000"], false, "/small");
    m7.post = Some(post_added_latency);
    m7.targets = vec![
        Target::Max {
            key: "added_p50_us",
            max: 50.0,
            unit: Unit::Micros,
        },
        Target::Max {
            key: "added_p99_us",
            max: 500.0,
            unit: Unit::Micros,
        },
    ];
    v.push(m7);

    let mut m8 = def(
        "M8",
        "M8",
        "idle keep-alive connections, RSS per connection",
        "kib_per_conn",
        Unit::KiBPerConn,
    );
    m8.peers = [Nginx, Mitmdump, Hudsucker, Mitmrs]
        .map(PeerSpec::new)
        .to_vec();
    m8.mode = Mode::Fresh;
    let n = ctx.hold_n;
    m8.measure = Box::new(move |ctx, peer| metrics::hold(ctx, peer, n));
    m8.targets = vec![Target::Max {
        key: "kib_per_conn",
        max: 10.0,
        unit: Unit::KiBPerConn,
    }];
    v.push(m8);

    let mut m9 = def(
        "M9",
        "M9",
        "start to listening, no scripts",
        "startup_ms",
        Unit::Millis,
    );
    m9.peers = [Nginx, Mitmdump, Hudsucker, Mitmrs]
        .map(PeerSpec::new)
        .to_vec();
    m9.mode = Mode::NoStart;
    m9.measure = Box::new(|ctx, peer| {
        let dir = ctx.fresh_dir(&format!("m9_{}", peer.spec.kind_name()))?;
        metrics::startup(ctx, peer.spec, &dir)?; // warm-up: creates the CA in confdir
        let mut t: Vec<f64> = Vec::new();
        for _ in 0..if ctx.quick { 3 } else { 5 } {
            t.push(metrics::startup(ctx, peer.spec, &dir)?);
        }
        t.sort_by(|a, b| a.total_cmp(b));
        Ok(Sample::from([("startup_ms".to_string(), t[t.len() / 2])]))
    });
    m9.targets = vec![Target::Max {
        key: "startup_ms",
        max: 50.0,
        unit: Unit::Millis,
    }];
    v.push(m9);

    let mut m10 = def(
        "M10",
        "M10",
        "HTTP/2 through a TLS reverse proxy (h2load -c8 -m32)",
        "rps",
        Unit::Rps,
    );
    m10.peers = vec![
        PeerSpec::new(Direct),
        PeerSpec::new(Nginx).with(|o| o.h2 = true),
        PeerSpec::reverse(Mitmdump),
        PeerSpec::reverse(Mitmrs),
    ];
    m10.measure = Box::new(|ctx, peer| with_proc_stats(peer, || metrics::h2load(ctx, peer)));
    m10.targets = vec![Target::VsPeer {
        peer: "nginx reverse",
        min: 1.0,
    }];
    m10.note = h2_note;
    v.push(m10);

    let mut m11 = def(
        "M11",
        "M11",
        "WebSocket echo of 32-byte messages (c32), then one 64 MiB message (mitmrs with stream_websockets)",
        "msgs_per_sec",
        Unit::MsgsPerSec,
    );
    m11.peers = vec![
        PeerSpec::new(Direct),
        PeerSpec::new(Mitmdump),
        PeerSpec::new(Mitmrs).with(|o| o.stream_ws = true),
    ];
    m11.mode = Mode::Fresh;
    m11.measure = Box::new(metrics::websocket);
    m11.post = Some(post_websocket);
    m11.targets = vec![
        Target::VsPeer {
            peer: "mitmdump",
            min: 20.0,
        },
        Target::Max {
            key: "hwm_mib",
            max: 32.0,
            unit: Unit::MiB,
        },
    ];
    v.push(m11);

    let mut m12 = def(
        "M12",
        "M12",
        "flows saved with -w (1 M through the proxy), then the file read and saved again (-nr/-w)",
        "flows_per_sec",
        Unit::FlowsPerSec,
    );
    m12.peers = [Mitmdump, Mitmrs]
        .map(|k| PeerSpec::new(k).with(|o| o.save = true))
        .to_vec();
    m12.mode = Mode::Fresh;
    m12.runs = Some(1);
    m12.warmup = Some(false);
    m12.measure = Box::new(metrics::save_flows);
    m12.post = Some(post_save_flows);
    m12.targets = vec![
        Target::Min {
            key: "flows_per_sec",
            min: 100_000.0,
            unit: Unit::FlowsPerSec,
        },
        Target::Max {
            key: "rss_growth_mib",
            max: 16.0,
            unit: Unit::MiB,
        },
    ];
    v.push(m12);

    let mut m4s = def(
        "M4S",
        "M4S",
        "slow client: streamed response read at 10 MB/s",
        "hwm_mib",
        Unit::MiB,
    );
    m4s.peers = streaming(&[Mitmrs]);
    m4s.mode = Mode::Fresh;
    m4s.runs = Some(1);
    m4s.measure = transfer(false, m4s_size, Some(10e6));
    m4s.targets = vec![Target::Max {
        key: "hwm_mib",
        max: 64.0,
        unit: Unit::MiB,
    }];
    v.push(m4s);
    v
}
