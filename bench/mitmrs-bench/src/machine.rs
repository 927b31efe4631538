//! The machine description and the bench/RESULTS.md document.

use crate::procs;
use crate::runner::{Ctx, RunArgs};
use std::process::Command;
use std::time::Duration;

fn first_line_of(path: &str, key: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// Version line of a tool (`args` run with a 10 s bound), stdout or stderr.
fn version(bin: &std::path::Path, args: &[&str]) -> String {
    let mut c = Command::new(bin);
    c.args(args);
    match procs::run_bounded("version", &mut c, Duration::from_secs(10)) {
        Ok((_, out, err)) => format!("{out}\n{err}")
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("?")
            .to_string(),
        Err(e) => format!("? ({e})"),
    }
}

fn now_utc() -> String {
    let mut c = Command::new("date");
    c.args(["-u", "+%Y-%m-%d %H:%M UTC"]);
    procs::run_bounded("date", &mut c, Duration::from_secs(5))
        .map(|(_, o, _)| o.trim().to_string())
        .unwrap_or_else(|_| "unknown date".into())
}

/// One line per fact about the machine.
pub fn description() -> Vec<String> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpu = first_line_of("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem = first_line_of("/proc/meminfo", "MemTotal").unwrap_or_default();
    vec![
        format!("Cores: {cores}"),
        format!("CPU: {cpu}"),
        format!("Kernel: Linux {}", kernel.trim()),
        format!("Memory: {mem}"),
    ]
}

pub fn results_doc(ctx: &Ctx, args: &RunArgs, table: &str) -> String {
    let mut cmd = String::from("bench/run");
    if args.quick {
        cmd.push_str(" --quick");
    }
    if !args.only.is_empty() {
        cmd.push_str(&format!(" --only {}", args.only.join(",")));
    }
    if !args.peers.is_empty() {
        cmd.push_str(&format!(" --peers {}", args.peers.join(",")));
    }
    let t = &ctx.tools;
    let tools = [
        format!(
            "wrk: {}",
            t.wrk
                .as_ref()
                .map_or("not installed".into(), |p| version(p, &["-v"]))
        ),
        format!(
            "h2load: {}",
            t.h2load
                .as_ref()
                .map_or("not installed".into(), |p| version(p, &["--version"]))
        ),
        format!(
            "nginx: {}",
            t.nginx
                .as_ref()
                .map_or("not installed".into(), |p| version(p, &["-v"]))
        ),
        format!(
            "mitmdump: {}",
            t.mitmdump
                .as_ref()
                .map_or("not installed".into(), |p| version(p, &["--version"]))
        ),
        format!(
            "hudsucker-peer: {}",
            if t.hudsucker.exists() {
                "hudsucker 0.24 (bench/hudsucker-peer)"
            } else {
                "not built"
            }
        ),
        format!(
            "mitmrs: {}",
            if t.mitmrs.exists() {
                t.mitmrs.display().to_string()
            } else {
                format!("{} missing", t.mitmrs.display())
            }
        ),
    ];
    let mut s = String::from("# mitmrs benchmark results\n\n");
    s.push_str(&format!(
        "Date: {}  \nCommand: `{cmd}`\n\n## Machine\n\n",
        now_utc()
    ));
    for l in description() {
        s.push_str(&format!("- {l}\n"));
    }
    s.push_str(&format!(
        "- Load average (1/5/15 min): {} at the start, {} at the end\n",
        ctx.loadavg_start,
        crate::runner::loadavg()
    ));
    s.push_str("\n## Tools\n\n");
    for l in tools {
        s.push_str(&format!("- {l}\n"));
    }
    s.push_str(&format!(
        "\n## Settings\n\n- runs per peer: {} (median reported), {} s per timed run\n\
         - nginx: worker_processes auto, upstream keepalive 256, proxy_buffering off\n\
         - load client: 1 thread; wrk -t1 -c32; fd limit {}; M8 holds {} connections\n\
         - all traffic on 127.0.0.1; peers interleaved run by run\n\n## Results\n\n",
        ctx.runs, ctx.duration, ctx.nofile, ctx.hold_n
    ));
    s.push_str(table);
    s.push_str("\nSee bench/README.md for what each metric measures.\n");
    s
}
