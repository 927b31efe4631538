//! `mitmrs-bench all`: starts the origin, runs the selected metrics against
//! every peer (peers interleaved run by run), prints the markdown table and
//! writes bench/RESULTS.md.
//!
//! A peer that fails to start, or a run that fails, becomes a row saying so;
//! nothing aborts the whole run. All children are killed on exit, Ctrl-C or
//! panic (see [`crate::procs`]).

use crate::defs::{self, MetricDef, Mode};
use crate::metrics::{self, Sample};
use crate::peers::{self, Kind, Peer, PeerSpec};
use crate::procs::{self, ChildGuard};
use crate::report::{self, median_sample, MetricResult, Row};
use anyhow::{anyhow, Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Options of `mitmrs-bench all`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// Short pass: 1 run per peer, short durations.
    #[arg(long)]
    pub quick: bool,
    /// Metrics to run, e.g. M1,M4 (default: all but M4S).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Restrict peers by kind: direct,nginx,mitmdump,hudsucker,mitmrs.
    #[arg(long, value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Runs per peer (default 3, --quick 1).
    #[arg(long)]
    pub runs: Option<usize>,
    /// Seconds per timed run (default 10, --quick 3).
    #[arg(long)]
    pub duration: Option<f64>,
    /// M4S response size, e.g. 4g, 512m (default 4g).
    #[arg(long)]
    pub size: Option<String>,
    /// Connections held in M8 (default 10000, --quick 2000).
    #[arg(long)]
    pub hold: Option<usize>,
    /// mitmrs binary (default target/release/mitmrs).
    #[arg(long)]
    pub mitmrs: Option<PathBuf>,
    /// mitmdump binary (default bench/.venv, /tmp/m, .venv, then PATH).
    #[arg(long)]
    pub mitmdump: Option<PathBuf>,
    /// Results file (default bench/RESULTS.md); "-" to skip.
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Keep the temp work dir (configs, logs).
    #[arg(long)]
    pub keep_work: bool,
}

pub struct Tools {
    pub self_exe: PathBuf,
    pub mitmrs: PathBuf,
    pub mitmdump: Option<PathBuf>,
    pub nginx: Option<PathBuf>,
    pub wrk: Option<PathBuf>,
    pub h2load: Option<PathBuf>,
    pub hudsucker: PathBuf,
}

pub struct OriginInfo {
    pub http: SocketAddr,
    pub tls: SocketAddr,
    pub ca: PathBuf,
}

pub struct Ctx {
    pub root: PathBuf,
    pub work: PathBuf,
    pub quick: bool,
    pub runs: usize,
    pub duration: f64,
    pub hold_n: usize,
    pub nofile: u64,
    pub tools: Tools,
    pub origin: OriginInfo,
    pub peer_filter: Vec<String>,
    /// /proc/loadavg when the run started (others' work skews numbers).
    pub loadavg_start: String,
    counter: AtomicU32,
}

impl Ctx {
    /// A new empty directory under the work dir.
    pub fn fresh_dir(&self, name: &str) -> Result<PathBuf> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let d = self.work.join(format!("{n:03}-{name}"));
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }
}

/// The workspace root (two levels above this crate), or the cwd.
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    match here.parent().and_then(Path::parent) {
        Some(r) if r.join("Cargo.toml").exists() => r.to_path_buf(),
        _ => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn find_tools(root: &Path, args: &RunArgs) -> Result<Tools> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let mitmdump = args.mitmdump.clone().or_else(|| {
        [
            root.join("bench/.venv/bin/mitmdump"),
            PathBuf::from("/tmp/m/bin/mitmdump"),
            root.join(".venv/bin/mitmdump"),
        ]
        .into_iter()
        .find(|p| p.is_file())
        .or_else(|| which("mitmdump"))
    });
    Ok(Tools {
        self_exe: std::env::current_exe()?,
        mitmrs: args
            .mitmrs
            .clone()
            .unwrap_or_else(|| target.join("release/mitmrs")),
        mitmdump,
        nginx: which("nginx"),
        wrk: which("wrk"),
        h2load: which("h2load"),
        hudsucker: root.join("bench/hudsucker-peer/target/release/hudsucker-peer"),
    })
}

/// Parse sizes like 4g, 512m, 100k, 12345.
pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mul) = match s.trim_end_matches(['b', 'i']).chars().last() {
        Some('k') => (&s[..s.find('k').unwrap_or(s.len())], 1u64 << 10),
        Some('m') => (&s[..s.find('m').unwrap_or(s.len())], 1 << 20),
        Some('g') => (&s[..s.find('g').unwrap_or(s.len())], 1 << 30),
        _ => (s.as_str(), 1),
    };
    let n: f64 = num.parse().with_context(|| format!("bad size {s:?}"))?;
    Ok((n * mul as f64) as u64)
}

fn start_origin(self_exe: &Path, work: &Path) -> Result<(ChildGuard, OriginInfo)> {
    let ca = work.join("origin-ca.pem");
    let mut cmd = Command::new(self_exe);
    cmd.args(["origin", "--port", "0", "--tls-port", "0", "--ca-out"])
        .arg(&ca)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(work.join("origin.log"))?);
    let mut g = ChildGuard::spawn("origin", &mut cmd, None)?;
    let line = procs::first_line(&mut g, Duration::from_secs(20))?;
    let field = |k: &str| -> Result<String> {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(k))
            .map(str::to_string)
            .ok_or_else(|| anyhow!("origin said {line:?}"))
    };
    let info = OriginInfo {
        http: field("http=")?.parse()?,
        tls: field("tls=")?.parse()?,
        ca,
    };
    Ok((g, info))
}

fn short(e: &anyhow::Error) -> String {
    let s = format!("{e:#}").replace('\n', " ");
    if s.chars().count() > 220 {
        format!("{}…", s.chars().take(220).collect::<String>())
    } else {
        s
    }
}

fn start_failure(spec: &PeerSpec, e: &anyhow::Error) -> String {
    let msg = format!("failed to start: {}", short(e));
    let unbuilt = spec.kind == Kind::Mitmrs && (spec.opts.reverse || spec.opts.script);
    if unbuilt {
        format!("not built yet ({msg})")
    } else {
        msg
    }
}

fn start_peer(ctx: &Ctx, def: &MetricDef, spec: PeerSpec) -> Result<Peer, String> {
    let peer = peers::start(ctx, spec).map_err(|e| start_failure(&spec, &e))?;
    if let Some(tls) = def.warmup {
        if let Err(e) = metrics::warmup(ctx, &peer, tls) {
            return Err(format!("warm-up failed: {}", short(&e)));
        }
    }
    Ok(peer)
}

/// Run one measurement, turning errors and panics into a row message.
fn guarded(f: impl FnOnce() -> Result<Sample>) -> Result<Sample, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(|e| short(&e)),
        Err(_) => Err("measurement panicked".into()),
    }
}

fn describe(def: &MetricDef, s: &Sample) -> String {
    s.get(def.primary)
        .map(|v| def.unit.fmt(*v))
        .unwrap_or_else(|| "ok".into())
}

fn run_metric(ctx: &Ctx, def: &MetricDef, prev: &[MetricResult]) -> MetricResult {
    let mut res = MetricResult {
        id: def.id,
        key: def.key,
        title: def.title,
        primary: def.primary,
        unit: def.unit,
        targets: def.targets.clone(),
        rows: Vec::new(),
    };
    let mut specs = def.peers.clone();
    if def.id == "M4S" && !ctx.peer_filter.is_empty() {
        specs = [
            Kind::Direct,
            Kind::Nginx,
            Kind::Mitmdump,
            Kind::Hudsucker,
            Kind::Mitmrs,
        ]
        .map(|k| {
            PeerSpec::new(k).with(|o| o.stream_large = matches!(k, Kind::Mitmdump | Kind::Mitmrs))
        })
        .to_vec();
    }
    specs.retain(|s| {
        ctx.peer_filter.is_empty() || ctx.peer_filter.iter().any(|f| f == s.kind_name())
    });
    let runs = def.runs.unwrap_or(ctx.runs);
    let n = specs.len();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); n];
    let mut errors: Vec<Vec<String>> = vec![Vec::new(); n];
    let mut shared: Vec<Option<Result<Peer, String>>> = (0..n).map(|_| None).collect();
    if let Mode::Shared = def.mode {
        for (i, spec) in specs.iter().enumerate() {
            eprintln!("[{}] starting {}", def.key, spec.name());
            shared[i] = Some(start_peer(ctx, def, *spec));
        }
    }
    for run in 0..runs {
        for (i, spec) in specs.iter().enumerate() {
            let label = format!("[{}] {} run {}/{}", def.key, spec.name(), run + 1, runs);
            let outcome: Result<Sample, String> = match def.mode {
                Mode::Shared => match shared[i].as_mut() {
                    Some(Ok(peer)) => {
                        if peer.alive() {
                            guarded(|| (def.measure)(ctx, peer))
                        } else {
                            Err("peer exited".into())
                        }
                    }
                    Some(Err(e)) => {
                        if run == 0 {
                            eprintln!("{label}: {e}");
                        }
                        continue;
                    }
                    None => continue,
                },
                Mode::Fresh => match start_peer(ctx, def, *spec) {
                    Ok(peer) => guarded(|| (def.measure)(ctx, &peer)),
                    Err(e) => Err(e),
                },
                Mode::NoStart => {
                    let peer = Peer {
                        spec: *spec,
                        guard: None,
                        addr: ([127, 0, 0, 1], 0).into(),
                        ca: None,
                        dir: None,
                    };
                    (def.measure)(ctx, &peer).map_err(|e| {
                        if spec.kind == Kind::Mitmrs {
                            format!("failed to start: {}", short(&e))
                        } else {
                            short(&e)
                        }
                    })
                }
            };
            match outcome {
                Ok(s) => {
                    eprintln!("{label}: {}", describe(def, &s));
                    samples[i].push(s);
                }
                Err(e) => {
                    eprintln!("{label}: {e}");
                    errors[i].push(e);
                }
            }
        }
    }
    for (i, spec) in specs.iter().enumerate() {
        let start_err = match &shared[i] {
            Some(Err(e)) => Some(e.clone()),
            _ => None,
        };
        let mut notes: Vec<String> = (def.note)(spec).map(str::to_string).into_iter().collect();
        let outcome = if let Some(e) = start_err {
            Err(e)
        } else if samples[i].is_empty() {
            Err(errors[i]
                .first()
                .cloned()
                .unwrap_or_else(|| "no run".into()))
        } else {
            if !errors[i].is_empty() {
                notes.push(format!(
                    "{} failed run(s): {}",
                    errors[i].len(),
                    errors[i][0]
                ));
            }
            let med = median_sample(&samples[i]);
            if med.get("errors").copied().unwrap_or(0.0) > 0.0 {
                notes.push(format!("{:.0} request errors", med["errors"]));
            }
            Ok(med)
        };
        res.rows.push(Row {
            peer: spec.name(),
            spec: Some(*spec),
            outcome,
            runs: samples[i].len(),
            notes,
        });
    }
    drop(shared); // stops the peers
    if let Some(post) = def.post {
        post(&mut res, prev);
    }
    res
}

fn selected(def: &MetricDef, only: &[String]) -> bool {
    if only.is_empty() {
        return def.id != "M4S";
    }
    only.iter()
        .any(|o| o.eq_ignore_ascii_case(def.id) || o.eq_ignore_ascii_case(def.key))
}

pub fn run_all(args: RunArgs) -> Result<()> {
    procs::install_signal_handlers();
    let nofile = procs::raise_nofile_limit();
    let root = workspace_root();
    let tools = find_tools(&root, &args)?;
    remove_stale_work_dirs();
    let work = std::env::temp_dir().join(format!("mitmrs-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let _cleanup = WorkDir {
        path: work.clone(),
        keep: args.keep_work,
    };
    let (origin_guard, origin) =
        start_origin(&tools.self_exe, &work).context("starting the origin")?;
    eprintln!(
        "origin: http={} tls={}; fd limit {nofile}",
        origin.http, origin.tls
    );

    let want_hold = args.hold.unwrap_or(if args.quick { 2000 } else { 10_000 });
    // The proxy needs two fds per held connection (client + upstream).
    let hold_n = want_hold.min((nofile.saturating_sub(512) / 2) as usize);
    let ctx = Ctx {
        root: root.clone(),
        work,
        quick: args.quick,
        runs: args.runs.unwrap_or(if args.quick { 1 } else { 3 }).max(1),
        duration: args.duration.unwrap_or(if args.quick { 3.0 } else { 10.0 }),
        hold_n,
        nofile,
        tools,
        origin,
        peer_filter: args
            .peers
            .iter()
            .map(|p| p.trim().to_ascii_lowercase())
            .collect(),
        loadavg_start: loadavg(),
        counter: AtomicU32::new(0),
    };
    let m4s_size = parse_size(args.size.as_deref().unwrap_or("4g"))?;
    let defs: Vec<MetricDef> = defs::build(&ctx, m4s_size)
        .into_iter()
        .filter(|d| selected(d, &args.only))
        .collect();
    if defs.is_empty() {
        return Err(anyhow!("--only {:?} selects no metric", args.only));
    }
    let mut results: Vec<MetricResult> = Vec::new();
    for def in &defs {
        let r = run_metric(&ctx, def, &results);
        results.push(r);
    }
    let mut table = report::table(&results);
    if hold_n < want_hold && results.iter().any(|r| r.id == "M8") {
        table.push_str(&format!(
            "\nM8 held {hold_n} instead of {want_hold} connections: the fd limit could only be raised to {nofile}.\n"
        ));
    }
    println!("\n{table}");
    drop(origin_guard);
    let out = args
        .results
        .clone()
        .unwrap_or_else(|| root.join("bench/RESULTS.md"));
    if out.as_os_str() != "-" {
        let doc = crate::machine::results_doc(&ctx, &args, &table);
        std::fs::write(&out, doc).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

/// Work dirs of runs that were killed (Ctrl-C cannot clean up from a signal
/// handler): `mitmrs-bench-PID` whose PID is gone.
fn remove_stale_work_dirs() {
    let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("mitmrs-bench-")) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The first three fields of /proc/loadavg.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Removes the temp work dir on drop unless asked to keep it.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("work dir kept: {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
