//! Child processes and /proc readings.
//!
//! Every child (origin, peers, load clients, wrk) is spawned through
//! [`ChildGuard`]: it gets its own process group and `PR_SET_PDEATHSIG`, is
//! registered in a signal-safe table, and its whole group is killed when the
//! guard drops (normal exit, early return, panic unwinding). SIGINT/SIGTERM/
//! SIGHUP handlers kill every registered group before exiting.
//!
//! Also: free ports, bounded waits for a port to accept connections, the fd
//! limit, and peak RSS (VmHWM) / RSS / CPU time (utime+stime) of a process
//! tree read from /proc.

use anyhow::{anyhow, Context, Result};
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

const SLOTS: usize = 256;
static GROUPS: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];

fn register(pgid: i32) {
    for slot in &GROUPS {
        if slot
            .compare_exchange(0, pgid, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
    }
}

fn unregister(pgid: i32) {
    for slot in &GROUPS {
        let _ = slot.compare_exchange(pgid, 0, Ordering::SeqCst, Ordering::SeqCst);
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    for slot in &GROUPS {
        let pgid = slot.load(Ordering::SeqCst);
        if pgid > 0 {
            // SAFETY: kill(2) is async-signal-safe.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
    // SAFETY: _exit(2) is async-signal-safe.
    unsafe { libc::_exit(128 + sig) };
}

/// Kill all registered children on SIGINT / SIGTERM / SIGHUP.
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installing a handler that only calls async-signal-safe functions.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// A spawned child whose process group is killed on drop.
pub struct ChildGuard {
    pub name: String,
    child: Child,
    pub log: Option<PathBuf>,
    stopped: bool,
}

impl ChildGuard {
    /// Spawn `cmd` in its own process group. If `log` is given, stdout and
    /// stderr go there (unless the caller already configured them).
    pub fn spawn(name: &str, cmd: &mut Command, log: Option<&Path>) -> Result<Self> {
        if let Some(path) = log {
            let f = std::fs::File::create(path)?;
            cmd.stdout(f.try_clone()?).stderr(f);
        }
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::setpgid(0, 0);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {:?}", cmd.get_program()))?;
        register(child.id() as i32);
        Ok(Self {
            name: name.to_string(),
            child,
            log: log.map(Path::to_path_buf),
            stopped: false,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// `Some(status)` if the child has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Last `n` bytes of the log file (for error messages).
    pub fn log_tail(&self, n: usize) -> String {
        let Some(path) = &self.log else {
            return String::new();
        };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let start = text.len().saturating_sub(n);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].trim().replace('\n', " | ")
    }

    /// SIGTERM the group, wait up to 2 s, then SIGKILL it.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let pgid = self.pid();
        // SAFETY: plain syscalls on our own child's group.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
        unregister(pgid);
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Run a command to completion with a time bound; returns (status, stdout, stderr).
pub fn run_bounded(
    name: &str,
    cmd: &mut Command,
    timeout: Duration,
) -> Result<(ExitStatus, String, String)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut g = ChildGuard::spawn(name, cmd, None)?;
    let mut out = g.child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut err = g.child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = g.exited() {
            break Some(st);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    g.stop();
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    match status {
        Some(st) => Ok((st, stdout, stderr)),
        None => Err(anyhow!("{name} timed out after {}s", timeout.as_secs())),
    }
}

/// Read the first stdout line of a child (spawned with piped stdout) within `timeout`.
pub fn first_line(g: &mut ChildGuard, timeout: Duration) -> Result<String> {
    let out = g
        .child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("stdout not piped"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        let mut line = String::new();
        let res = r.read_line(&mut line).map(|_| line);
        let _ = tx.send(res);
        // Keep draining so the child never blocks on a full pipe.
        let mut sink = Vec::new();
        let _ = r.read_to_end(&mut sink);
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(line)) if !line.is_empty() => Ok(line.trim().to_string()),
        Ok(Ok(_)) => Err(anyhow!("{} closed stdout without output", g.name)),
        Ok(Err(e)) => Err(anyhow!("{}: {e}", g.name)),
        Err(_) => Err(anyhow!(
            "{} printed nothing within {}s",
            g.name,
            timeout.as_secs()
        )),
    }
}

/// An unused TCP port on 127.0.0.1 (bind to :0 and release it).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Poll-connect to `addr` every 2 ms until it accepts, the child exits, or the
/// timeout passes. Returns the time it took.
pub fn wait_listening(g: &mut ChildGuard, addr: SocketAddr, timeout: Duration) -> Result<Duration> {
    let start = Instant::now();
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(start.elapsed());
        }
        if let Some(st) = g.exited() {
            let tail = g.log_tail(400);
            return Err(anyhow!(
                "exited ({st}) before listening{}{tail}",
                if tail.is_empty() { "" } else { ": " }
            ));
        }
        if start.elapsed() > timeout {
            return Err(anyhow!(
                "not listening on {addr} after {}s",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Raise RLIMIT_NOFILE as far as allowed; returns the resulting soft limit.
pub fn raise_nofile_limit() -> u64 {
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on our own process.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur);
        for want in [1u64 << 20, 262_144, 65_536] {
            if want <= cur.rlim_cur {
                break;
            }
            let lim = libc::rlimit {
                rlim_cur: want,
                rlim_max: want.max(cur.rlim_max),
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                return want;
            }
        }
        if cur.rlim_cur < cur.rlim_max {
            let lim = libc::rlimit {
                rlim_cur: cur.rlim_max,
                rlim_max: cur.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                return cur.rlim_max;
            }
        }
    }
    cur.rlim_cur
}

/// `pid` plus all its descendants.
pub fn proc_tree(pid: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if let Some(ppid) = stat_fields(p).and_then(|f| f.get(1).and_then(|s| s.parse().ok())) {
                parents.push((p, ppid));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
        i += 1;
    }
    out
}

/// Fields of /proc/PID/stat after the command name (field 3 onwards, 0-based here).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn status_kib(pid: i32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Sum of VmRSS (KiB) over the tree.
pub fn rss_kib(pid: i32) -> u64 {
    proc_tree(pid)
        .iter()
        .map(|&p| status_kib(p, "VmRSS:"))
        .sum()
}

/// Sum of VmHWM (peak RSS, KiB) over the tree.
pub fn hwm_kib(pid: i32) -> u64 {
    proc_tree(pid)
        .iter()
        .map(|&p| status_kib(p, "VmHWM:"))
        .sum()
}

/// Reset VmHWM to the current RSS (clear_refs 5); best effort.
pub fn reset_hwm(pid: i32) {
    for p in proc_tree(pid) {
        let _ = std::fs::write(format!("/proc/{p}/clear_refs"), "5");
    }
}

/// utime+stime of the tree, in seconds.
pub fn cpu_secs(pid: i32) -> f64 {
    // SAFETY: sysconf is always safe to call.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    proc_tree(pid)
        .iter()
        .filter_map(|&p| {
            let f = stat_fields(p)?;
            // utime and stime are fields 14 and 15 (1-based) = 11, 12 here.
            let u: f64 = f.get(11)?.parse().ok()?;
            let s: f64 = f.get(12)?.parse().ok()?;
            Some(u + s)
        })
        .sum::<f64>()
        / hz
}
