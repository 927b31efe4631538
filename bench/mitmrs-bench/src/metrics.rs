//! Measurements: one function per kind of load, each returning a [`Sample`]
//! (a map of named numbers) for one peer and one run.
//!
//! Load generators are child processes: wrk for plain HTTP keep-alive
//! (M1, M6), `mitmrs-bench load` for everything else. Around each run the
//! peer's CPU time (utime+stime from /proc/PID/stat) and peak RSS (VmHWM from
//! /proc/PID/status, reset through clear_refs before the run) are read for
//! the peer's whole process tree.

use crate::peers::{self, Kind, Peer, PeerSpec};
use crate::procs::{self, ChildGuard};
use crate::runner::Ctx;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub type Sample = BTreeMap<String, f64>;

/// Run `f` and add the peer's CPU time, CPU per request and peak RSS.
pub fn with_proc_stats(peer: &Peer, f: impl FnOnce() -> Result<Sample>) -> Result<Sample> {
    let pid = peer.pid();
    let cpu0 = pid.map(procs::cpu_secs);
    if let Some(p) = pid {
        procs::reset_hwm(p);
    }
    let mut s = f()?;
    if let (Some(p), Some(c0)) = (pid, cpu0) {
        let cpu = procs::cpu_secs(p) - c0;
        s.insert("cpu_s".into(), cpu);
        s.insert("hwm_kib".into(), procs::hwm_kib(p) as f64);
        if let Some(&n) = s.get("requests") {
            if n > 0.0 {
                s.insert("cpu_us_per_req".into(), cpu * 1e6 / n);
            }
        }
    }
    Ok(s)
}

/// The URL and proxy arguments for a load-client run against `peer`.
fn target_args(ctx: &Ctx, peer: &Peer, path: &str, tls: bool) -> Result<Vec<String>> {
    let mut a = Vec::new();
    if tls {
        a.push(format!("--url=https://{}{path}", ctx.origin.tls));
        if peer.spec.kind == Kind::Direct {
            a.push(format!("--ca={}", ctx.origin.ca.display()));
        } else {
            let ca = peer
                .ca
                .as_ref()
                .ok_or_else(|| anyhow!("{} does not intercept TLS", peer.name()))?;
            a.push(format!("--proxy={}", peer.addr));
            a.push(format!("--ca={}", ca.display()));
        }
    } else if peer.spec.origin_form() {
        a.push(format!("--url=http://{}{path}", peer.addr));
    } else {
        a.push(format!("--url=http://{}{path}", ctx.origin.http));
        a.push(format!("--proxy={}", peer.addr));
    }
    Ok(a)
}

fn parse_result(stdout: &str, stderr: &str) -> Result<Sample> {
    let err_line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ERROR "))
        .map(str::to_string);
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| {
            anyhow!(
                "load client failed: {}",
                err_line
                    .clone()
                    .unwrap_or_else(|| stderr.trim().chars().take(300).collect())
            )
        })?;
    let mut s = Sample::new();
    for kv in line.split_whitespace() {
        if let Some((k, v)) = kv.split_once('=') {
            if let Ok(v) = v.parse::<f64>() {
                s.insert(k.to_string(), v);
            }
        }
    }
    if s.get("requests").copied().unwrap_or(0.0) == 0.0 {
        bail!(
            "no successful request: {}",
            err_line.unwrap_or_else(|| "unknown error".into())
        );
    }
    if let Some(e) = err_line {
        s.insert("error_note".into(), 1.0);
        eprintln!("    note: {e}");
    }
    Ok(s)
}

/// Run `mitmrs-bench load` against `peer` with extra arguments.
pub fn load(
    ctx: &Ctx,
    peer: &Peer,
    path: &str,
    tls: bool,
    extra: &[String],
    bound: Duration,
) -> Result<Sample> {
    let mut cmd = Command::new(&ctx.tools.self_exe);
    cmd.arg("load")
        .args(target_args(ctx, peer, path, tls)?)
        .args(extra);
    let (_, out, err) = procs::run_bounded("load", &mut cmd, bound)?;
    parse_result(&out, &err)
}

/// A few requests so connections, leaf certs and caches are warm.
pub fn warmup(ctx: &Ctx, peer: &Peer, tls: bool) -> Result<()> {
    let extra = [
        "-n".to_string(),
        "8".into(),
        "-c".into(),
        "2".into(),
        "-d".into(),
        "20".into(),
    ];
    load(ctx, peer, "/small", tls, &extra, Duration::from_secs(40)).map(|_| ())
}

/// wrk -t1 -c32 against the peer; proxies get absolute-form requests.
pub fn wrk(ctx: &Ctx, peer: &Peer) -> Result<Sample> {
    let wrk = ctx
        .tools
        .wrk
        .as_ref()
        .ok_or_else(|| anyhow!("wrk not installed (run bench/setup)"))?;
    let dur = ctx.duration.max(1.0).round() as u64;
    let mut cmd = Command::new(wrk);
    cmd.args(["-t1", "-c32", "--timeout", "10s", "-d"])
        .arg(format!("{dur}s"));
    if peer.spec.origin_form() {
        cmd.arg(format!("http://{}/small", peer.addr));
    } else {
        let script = ctx.work.join("absolute_form.lua");
        std::fs::write(
            &script,
            format!(
                "-- absolute-form requests for a forward proxy\nwrk.path = \"http://{o}/small\"\nwrk.headers[\"Host\"] = \"{o}\"\n",
                o = ctx.origin.http
            ),
        )?;
        cmd.arg("-s")
            .arg(&script)
            .arg(format!("http://{}/", peer.addr));
    }
    let (st, out, err) = procs::run_bounded("wrk", &mut cmd, Duration::from_secs(dur + 30))?;
    if !st.success() {
        bail!("wrk failed: {}", err.trim());
    }
    let mut s = Sample::new();
    for line in out.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            s.insert("rps".into(), v.trim().parse().context("wrk Requests/sec")?);
        } else if l.contains(" requests in ") {
            if let Some(n) = l
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<f64>().ok())
            {
                s.insert("requests".into(), n);
            }
        } else if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            s.insert("errors".into(), v.trim().parse().unwrap_or(0.0));
        } else if let Some(v) = l.strip_prefix("Socket errors:") {
            let n: f64 = v
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<f64>().ok())
                .sum();
            *s.entry("errors".into()).or_insert(0.0) += n;
        }
    }
    if !s.contains_key("rps") || s.get("requests").copied().unwrap_or(0.0) == 0.0 {
        bail!("wrk made no requests: {}", out.trim().replace('\n', " | "));
    }
    Ok(s)
}

/// M8: open `n` keep-alive connections through the peer, one request each,
/// and measure the peer's RSS growth per connection while they are held.
pub fn hold(ctx: &Ctx, peer: &Peer, n: usize) -> Result<Sample> {
    let pid = peer.pid().ok_or_else(|| anyhow!("no process to measure"))?;
    warmup(ctx, peer, false)?;
    std::thread::sleep(Duration::from_millis(300));
    let before = procs::rss_kib(pid);
    let mut cmd = Command::new(&ctx.tools.self_exe);
    cmd.arg("load")
        .args(target_args(ctx, peer, "/small", false)?)
        .args([
            "--hold",
            &n.to_string(),
            "--hold-secs",
            "300",
            "--timeout",
            "120",
            "--threads",
            "1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut g = ChildGuard::spawn("load --hold", &mut cmd, None)?;
    let out = g
        .child_mut()
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut err_note = None;
    let (ok, errs) = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.starts_with("HELD ") => {
                let mut it = l
                    .split_whitespace()
                    .skip(1)
                    .map(|v| v.parse::<f64>().unwrap_or(0.0));
                break (it.next().unwrap_or(0.0), it.next().unwrap_or(0.0));
            }
            Ok(l) => err_note = l.strip_prefix("ERROR ").map(str::to_string).or(err_note),
            Err(_) => bail!("hold client did not finish opening {n} connections in time"),
        }
    };
    std::thread::sleep(Duration::from_millis(500));
    let after = procs::rss_kib(pid);
    let hwm = procs::hwm_kib(pid);
    drop(g.child_mut().stdin.take());
    g.stop();
    if ok == 0.0 {
        bail!("no connection held: {}", err_note.unwrap_or_default());
    }
    if let Some(e) = err_note {
        eprintln!("    note: {errs} connections failed: {e}");
    }
    let mut s = Sample::new();
    s.insert("held".into(), ok);
    s.insert("errors".into(), errs);
    s.insert("kib_per_conn".into(), (after as f64 - before as f64) / ok);
    s.insert("rss_before_kib".into(), before as f64);
    s.insert("hwm_kib".into(), hwm as f64);
    Ok(s)
}

/// M9: spawn the peer fresh and time until its port accepts a connection.
pub fn startup(ctx: &Ctx, spec: PeerSpec, dir: &std::path::Path) -> Result<f64> {
    let port = procs::free_port()?;
    let mut cmd = peers::command(ctx, spec, port, dir)?;
    cmd.stdin(Stdio::null());
    let t0 = Instant::now();
    let mut g = ChildGuard::spawn(&spec.name(), &mut cmd, Some(&dir.join("startup.log")))?;
    procs::wait_listening(
        &mut g,
        ([127, 0, 0, 1], port).into(),
        Duration::from_secs(30),
    )?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    g.stop();
    Ok(ms)
}

/// M11: 32-byte WebSocket messages echoed on 32 connections for the run
/// time, then one 64 MiB message (one frame) echoed on a fresh connection.
/// The peak RSS covers both.
pub fn websocket(ctx: &Ctx, peer: &Peer) -> Result<Sample> {
    let url = format!("--url=http://{}/ws", ctx.origin.http);
    let proxy = (peer.spec.kind != Kind::Direct).then(|| format!("--proxy={}", peer.addr));
    let dur = ctx.duration.max(1.0);
    let run = |extra: &[String], bound: f64| -> Result<Sample> {
        let mut cmd = Command::new(&ctx.tools.self_exe);
        cmd.arg("wsload").arg(&url).args(proxy.iter()).args(extra);
        let (_, out, err) = procs::run_bounded("wsload", &mut cmd, Duration::from_secs_f64(bound))?;
        parse_result(&out, &err)
    };
    let pid = peer.pid();
    let peak_mib = |p: i32| procs::hwm_kib(p) as f64 / 1024.0;
    let mut big_peak = f64::NAN;
    let mut s = with_proc_stats(peer, || {
        // First the 64 MiB message on the fresh peer, so its peak RSS is what
        // streaming it costs (the "bounded RSS" of the target); then the 32
        // connections, whose peak is their WebSocket history (at most
        // `websocket_history` per flow), reported apart. Bounded: mitmdump
        // needs minutes for the message (wsproto joins and re-frames it in
        // Python); a row that does not finish says so.
        let bound = if ctx.quick { 60.0 } else { 180.0 };
        let big = run(&[format!("--big={}", 64u64 << 20)], bound);
        if let Some(p) = pid {
            big_peak = peak_mib(p);
            procs::reset_hwm(p);
        }
        let mut s = run(
            &["-c".into(), "32".into(), "-d".into(), format!("{dur}")],
            dur + 60.0,
        )?;
        match big {
            Ok(big) => {
                s.insert(
                    "big_secs".into(),
                    big.get("secs").copied().unwrap_or(f64::NAN),
                );
                s.insert(
                    "big_bytes_per_sec".into(),
                    big.get("bytes_per_sec").copied().unwrap_or(f64::NAN),
                );
            }
            Err(_) => {
                s.insert("big_secs".into(), f64::INFINITY);
                s.insert("big_bytes_per_sec".into(), 0.0);
            }
        }
        Ok(s)
    })?;
    if let Some(r) = s.get("rps").copied() {
        s.insert("msgs_per_sec".into(), r);
    }
    // `with_proc_stats` read the peak since the reset: the 32 connections'.
    if let Some(h) = s.get("hwm_kib").copied() {
        s.insert("msgs_hwm_mib".into(), h / 1024.0);
    }
    s.insert("hwm_mib".into(), big_peak);
    Ok(s)
}

/// M12: `n` requests through a peer started with `-w` (keep-alive, 32
/// connections), with the RSS read after the first tenth and at the end; then
/// the peer's binary reads the file and saves it again (`-nqr FILE -w COPY`),
/// timed: that is the rate at which flows are written with nothing else going on.
/// mitmdump gets a fiftieth of the flows (it handles ~400/s).
pub fn save_flows(ctx: &Ctx, peer: &Peer) -> Result<Sample> {
    let full: u64 = if ctx.quick { 100_000 } else { 1_000_000 };
    let n = if peer.spec.kind == Kind::Mitmdump {
        full / 50
    } else {
        full
    };
    let pid = peer
        .pid()
        .ok_or_else(|| anyhow!("{} has no process", peer.name()))?;
    let dir = peer
        .dir
        .clone()
        .ok_or_else(|| anyhow!("{} has no directory", peer.name()))?;
    let file = dir.join(peers::FLOWS_FILE);
    let run = |count: u64| -> Result<Sample> {
        let extra = [
            "-c".to_string(),
            "32".into(),
            "-n".into(),
            count.to_string(),
            "--duration=3600".into(),
        ];
        load(
            ctx,
            peer,
            "/small",
            false,
            &extra,
            Duration::from_secs(1800),
        )
    };
    let t0 = Instant::now();
    let first = run(n / 10)?;
    let rss1 = procs::rss_kib(pid) as f64;
    let rest = run(n - n / 10)?;
    let live_secs = t0.elapsed().as_secs_f64();
    let rss2 = procs::rss_kib(pid) as f64;
    let flows = first.get("requests").copied().unwrap_or(0.0)
        + rest.get("requests").copied().unwrap_or(0.0);
    // The file is complete once the queue drains; reading it back counts the flows.
    let copy = dir.join("copy.mitm");
    let bin = match peer.spec.kind {
        Kind::Mitmrs => ctx.tools.mitmrs.clone(),
        Kind::Mitmdump => ctx
            .tools
            .mitmdump
            .clone()
            .ok_or_else(|| anyhow!("mitmdump not installed"))?,
        _ => bail!("{} cannot save flows", peer.name()),
    };
    // The last flows may still be on their way to the disk: wait (at most 10 s)
    // until the file stops growing.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = u64::MAX;
    loop {
        let len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        if len == last || Instant::now() > deadline {
            break;
        }
        last = len;
        std::thread::sleep(Duration::from_millis(100));
    }
    // The file's own write-back to the disk belongs to the live phase: done
    // before the clock starts, so the kernel's flusher threads do not share
    // the 2 cores with the re-save.
    std::fs::File::open(&file)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", file.display()))?;
    // The re-save is timed five times (once with --quick) on the same file;
    // the median counts, as for the other metrics' runs. Five, not three: on
    // this machine one run's re-saves differ by up to 68% (a few seconds
    // each, so a slow moment of the host moves one of three a lot).
    let mut rates = Vec::new();
    let file_len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    for _ in 0..if ctx.quick { 1 } else { 5 } {
        let t1 = Instant::now();
        let mut cmd = Command::new(&bin);
        cmd.arg("-nqr")
            .arg(&file)
            .arg("-w")
            .arg(&copy)
            .arg("--set")
            .arg(format!("confdir={}", dir.display()));
        let (st, _, err) = procs::run_bounded("rewrite", &mut cmd, Duration::from_secs(1800))?;
        let rw_secs = t1.elapsed().as_secs_f64();
        if !st.success() {
            bail!("{} -nr/-w failed: {}", peer.name(), err.trim());
        }
        let copy_len = std::fs::metadata(&copy).map(|m| m.len()).unwrap_or(0);
        let _ = std::fs::remove_file(&copy);
        if copy_len != file_len {
            bail!("the copy has {copy_len} bytes, the file {file_len}: a flow was lost or changed");
        }
        rates.push(flows / rw_secs);
    }
    rates.sort_by(f64::total_cmp);
    let rate = rates[rates.len() / 2];
    let mut s = Sample::new();
    s.insert("flows".into(), flows);
    s.insert("requests".into(), flows);
    s.insert("live_flows_per_sec".into(), flows / live_secs);
    s.insert("flows_per_sec".into(), rate);
    s.insert("resaves".into(), rates.len() as f64);
    s.insert("resave_slowest".into(), rates[0]);
    s.insert("resave_fastest".into(), rates[rates.len() - 1]);
    s.insert("rss_growth_mib".into(), (rss2 - rss1) / 1024.0);
    s.insert("file_mib".into(), file_len as f64 / (1024.0 * 1024.0));
    Ok(s)
}

/// M10: h2load over TLS with many streams per connection: `-c 8 -m 32` (256
/// requests in flight), one client thread, for the run time after a second of
/// warm-up. Direct goes to the origin's TLS port (h2 there too).
pub fn h2load(ctx: &Ctx, peer: &Peer) -> Result<Sample> {
    let bin = ctx
        .tools
        .h2load
        .as_ref()
        .ok_or_else(|| anyhow!("h2load not installed (run bench/setup)"))?;
    let dur = ctx.duration.max(1.0).round() as u64;
    let addr = if peer.spec.kind == Kind::Direct {
        ctx.origin.tls
    } else {
        peer.addr
    };
    let mut cmd = Command::new(bin);
    cmd.args(["-t1", "-c8", "-m32", "--warm-up-time=1", "-D"])
        .arg(dur.to_string())
        .arg(format!("https://{addr}/small"));
    let (st, out, err) = procs::run_bounded("h2load", &mut cmd, Duration::from_secs(dur + 60))?;
    if !st.success() {
        bail!("h2load failed: {} {}", err.trim(), out.trim());
    }
    let mut s = Sample::new();
    for line in out.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("finished in ") {
            // "finished in 10.00s, 52345.60 req/s, 9.33MB/s"
            if let Some(rps) = rest
                .split(", ")
                .find_map(|p| p.strip_suffix(" req/s")?.trim().parse::<f64>().ok())
            {
                s.insert("rps".into(), rps);
            }
        } else if let Some(rest) = l.strip_prefix("requests: ") {
            // "requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout"
            for part in rest.split(", ") {
                let mut it = part.split_whitespace();
                if let (Some(n), Some(what)) = (it.next(), it.next()) {
                    let n: f64 = n.parse().unwrap_or(0.0);
                    match what {
                        "succeeded" => {
                            s.insert("requests".into(), n);
                        }
                        "failed" | "errored" | "timeout" => {
                            *s.entry("errors".into()).or_insert(0.0) += n;
                        }
                        _ => {}
                    }
                }
            }
        } else if let Some(p) = l.strip_prefix("TLS Protocol:") {
            if !out.contains("Application protocol: h2") {
                bail!("h2load did not negotiate h2 ({})", p.trim());
            }
        }
    }
    if !s.contains_key("rps") || s.get("requests").copied().unwrap_or(0.0) == 0.0 {
        bail!(
            "h2load made no successful requests: {}",
            out.trim().replace('\n', " | ")
        );
    }
    Ok(s)
}
