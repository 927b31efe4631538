//! The `save_stream_file` addon (`-w`): every finished flow is appended to a flow
//! file as it ends, as mitmproxy's `Save` addon does.
//!
//! The flow is encoded in the hook, on the worker thread that served it, and the
//! bytes go to one writer thread that owns the file. What may wait for the disk
//! is bounded in bytes (`save_stream_buffer`): when the disk falls behind, the
//! hooks of the next flows wait (backpressure), so memory stays flat however
//! many flows pass. The file is flushed whenever the queue runs empty, so it is
//! complete up to the last finished flow while the proxy runs.
//!
//! Not done (mitmproxy does it): saving, at shutdown, live flows that have not
//! finished; they are owned by their connection tasks, which end without a
//! response or error hook. Flows read with `-r` that lack both are saved in
//! their `request` hook instead.
//!
//! As in mitmproxy, a failed write stops the proxy (exit status 1) with the path
//! and the reason: a recording tool must not let traffic through unrecorded.
//! The path may use strftime codes (`flows-%Y%m%d.mitm`); a new file is opened
//! when the formatted name changes. A leading `+` appends instead of overwriting.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use mitmrs_core::addon::{Addon, Hook, HookResult, HookSet, Loader};
use mitmrs_core::flowfilter::FilterOption;
use mitmrs_core::options::{
    size_option, OptionSpec, OptionType, OptionValue, Options, OptionsError,
};
use mitmrs_core::HttpFlow;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::io::encode_flow;

/// One encoded flow on its way to the disk, holding its share of the budget.
type Job = (Vec<u8>, OwnedSemaphorePermit);

/// The open stream: the writer thread and what feeds it.
struct Stream {
    spec: String,
    buffer: usize,
    tx: mpsc::UnboundedSender<Job>,
    budget: Arc<Semaphore>,
    thread: std::thread::JoinHandle<()>,
}

/// mitmproxy's `Save` addon (streaming part: `save_stream_file`, and
/// `save_stream_filter` to save only matching flows).
pub struct Save {
    stream: Mutex<Option<Arc<Stream>>>,
    filter: FilterOption,
    /// A file is open: only then are the flow hooks listed, so that without `-w`
    /// the addon costs flows nothing.
    active: AtomicBool,
}

impl Default for Save {
    fn default() -> Self {
        Self {
            stream: Mutex::default(),
            filter: FilterOption::new("save_stream_filter"),
            active: AtomicBool::default(),
        }
    }
}

impl Save {
    pub fn new() -> Self {
        Self::default()
    }

    /// The open stream; the lock is held only to clone an Arc.
    fn current(&self) -> Option<Arc<Stream>> {
        self.stream.lock().map_or(None, |s| s.clone())
    }

    async fn save(&self, flow: &HttpFlow) -> HookResult {
        if self.current().is_none() || !self.filter.allows(flow) {
            return Ok(());
        }
        let mut buf = Vec::new();
        encode_flow(flow, &mut buf);
        // If `save_stream_file` changes while this flow waits for room, the old
        // stream is closed: the flow goes to the new one instead of being lost.
        while let Some(stream) = self.current() {
            // A flow larger than the whole budget takes all of it, and goes alone.
            let permits = buf.len().clamp(1, stream.buffer) as u32;
            if let Ok(permit) = stream.budget.clone().acquire_many_owned(permits).await {
                let _ = stream.tx.send((buf, permit));
                break;
            }
        }
        Ok(())
    }

    fn stop(&self) {
        let old = self.stream.lock().ok().and_then(|mut s| s.take());
        if let Some(old) = old {
            close(old);
        }
    }
}

/// Closes the channel and waits for the writer to flush what was queued.
fn close(stream: Arc<Stream>) {
    stream.budget.close();
    match Arc::try_unwrap(stream) {
        Ok(s) => {
            drop(s.tx);
            let _ = s.thread.join();
        }
        // A hook still holds it; the writer ends when that hook drops it.
        Err(s) => drop(s),
    }
}

/// `~/` at the start of a path is the home directory, as in mitmproxy.
pub(crate) fn expand_user(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// `path` through the C library's strftime with local time, as Python's
/// `datetime.today().strftime` does. Paths without `%` are returned as they are.
fn format_path(path: &str) -> String {
    if !path.contains('%') {
        return path.to_string();
    }
    let Ok(fmt) = std::ffi::CString::new(path) else {
        return path.to_string();
    };
    // SAFETY: `time` and `localtime_r` write only to the `tm` we own; `strftime`
    // writes at most `buf.len()` bytes and returns how many it wrote.
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return path.to_string();
        }
        let mut buf = vec![0u8; path.len() * 4 + 256];
        let n = libc::strftime(buf.as_mut_ptr().cast(), buf.len(), fmt.as_ptr(), &tm);
        if n == 0 {
            return path.to_string();
        }
        buf.truncate(n);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// Opens the file a spec names now: parents created, `+` (or `append`) appends.
fn open(spec: &str, append: bool) -> std::io::Result<(PathBuf, File)> {
    let (append, raw) = match spec.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (append, spec),
    };
    let path = expand_user(&format_path(raw));
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .append(append)
        .truncate(!append)
        .open(&path)?;
    Ok((path, file))
}

fn write_failed(path: &Path, e: std::io::Error) -> ! {
    eprintln!(
        "mitmrs: error while writing flows to {}: {e}; stopping so that no traffic passes unrecorded",
        path.display()
    );
    std::process::exit(1)
}

/// How long the writer waits for more flows once its queue runs dry, before it
/// flushes. Flows that finish close together go out in one write, and the
/// hooks do not wake the writer once per flow; the file is complete up to the
/// last finished flow about this long after it finished.
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);

/// The writer thread: appends records, flushes when the queue stays dry for
/// [`LINGER`], and moves to a new file when a strftime path changes.
fn writer(spec: String, path: PathBuf, file: File, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut w = Writer {
        rotates: spec.contains('%'),
        spec,
        path,
        out: BufWriter::with_capacity(256 * 1024, file),
    };
    while let Some(job) = rx.blocking_recv() {
        w.add(job);
        loop {
            while let Ok(job) = rx.try_recv() {
                w.add(job);
            }
            // Not a wait for an event: a producer does not wake a writer that
            // sleeps here, which is the point.
            std::thread::sleep(LINGER);
            if rx.is_empty() {
                break;
            }
        }
        if let Err(e) = w.out.flush() {
            write_failed(&w.path, e);
        }
    }
    if let Err(e) = w.out.flush() {
        write_failed(&w.path, e);
    }
}

/// The writer thread's file.
struct Writer {
    spec: String,
    rotates: bool,
    path: PathBuf,
    out: BufWriter<File>,
}

impl Writer {
    fn add(&mut self, (buf, permit): Job) {
        if self.rotates {
            let want = expand_user(&format_path(self.spec.trim_start_matches('+')));
            if want != self.path {
                if let Err(e) = self.out.flush() {
                    write_failed(&self.path, e);
                }
                match open(&self.spec, false) {
                    Ok((p, f)) => {
                        self.path = p;
                        self.out = BufWriter::with_capacity(256 * 1024, f);
                    }
                    Err(e) => write_failed(&want, e),
                }
            }
        }
        if let Err(e) = self.out.write_all(&buf) {
            write_failed(&self.path, e);
        }
        drop(permit);
    }
}

#[async_trait]
impl Addon for Save {
    fn name(&self) -> &str {
        "save"
    }

    fn hooks(&self) -> HookSet {
        const IDLE: HookSet = HookSet::of(&[Hook::Configure, Hook::Done]);
        const SAVING: HookSet = HookSet::of(&[
            Hook::Configure,
            Hook::Request,
            Hook::Response,
            Hook::Error,
            Hook::WebsocketEnd,
            Hook::Done,
        ]);
        if self.active.load(Ordering::Relaxed) {
            SAVING
        } else {
            IDLE
        }
    }

    fn hooks_change_only_in_configure(&self) -> bool {
        true
    }

    fn load(&self, loader: &mut Loader<'_>) -> HookResult {
        loader.add_option(OptionSpec::new(
            "save_stream_file",
            OptionType::OptStr,
            OptionValue::None,
            "Stream flows to file as they arrive. Prefix path with + to append. The full path can use python \
             strftime() formating, missing directories are created as needed. A new file is opened every time the \
             formatted string changes.",
        ))?;
        loader.add_option(OptionSpec::new(
            "save_stream_filter",
            OptionType::OptStr,
            OptionValue::None,
            "Filter which flows are written to file.",
        ))?;
        loader.add_option(OptionSpec::new(
            "save_stream_buffer",
            OptionType::Str,
            OptionValue::Str("16m".into()),
            "mitmrs-specific (not in mitmproxy): how many bytes of finished flows may wait for the disk. When \
             the disk falls behind, further flows wait until it catches up. Understands k/m/g suffixes.",
        ))?;
        Ok(())
    }

    fn configure(&self, options: &Options, updated: &BTreeSet<String>) -> Result<(), OptionsError> {
        let relevant = [
            "save_stream_file",
            "save_stream_filter",
            "save_stream_buffer",
        ];
        if !relevant.iter().any(|k| updated.contains(*k)) {
            return Ok(());
        }
        self.filter.configure(options, updated)?;
        let buffer = size_option(options, "save_stream_buffer")?
            .unwrap_or(16 << 20)
            .clamp(1, u64::from(u32::MAX)) as usize;
        let spec = options
            .get_str("save_stream_file")
            .filter(|s| !s.is_empty());
        // Held until the new stream is in place, so a flow whose old stream
        // closes under it finds the new one (see `save`).
        let mut slot = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        let same_file = match (slot.as_ref(), &spec) {
            (Some(cur), Some(spec)) if &cur.spec == spec => {
                if cur.buffer == buffer {
                    return Ok(());
                }
                true
            }
            _ => false,
        };
        if let Some(old) = slot.take() {
            close(old);
        }
        let Some(spec) = spec else {
            self.active.store(false, Ordering::Relaxed);
            return Ok(());
        };
        // Only the buffer changed: go on appending to the same file.
        let (path, file) = open(&spec, same_file).map_err(|e| OptionsError::Rejected {
            name: "save_stream_file".into(),
            message: format!(
                "cannot open {} for writing: {e}",
                spec.trim_start_matches('+')
            ),
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let thread_spec = spec.clone();
        let thread = std::thread::Builder::new()
            .name("mitmrs-save".into())
            .spawn(move || writer(thread_spec, path, file, rx))
            .map_err(|e| OptionsError::Rejected {
                name: "save_stream_file".into(),
                message: format!("cannot start the writer thread: {e}"),
            })?;
        let stream = Stream {
            spec,
            buffer,
            tx,
            budget: Arc::new(Semaphore::new(buffer)),
            thread,
        };
        *slot = Some(Arc::new(stream));
        self.active.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// A flow read from a file (`-r`) that has neither a response nor an error will
    /// see no other hook; it is saved now. (mitmproxy saves it when it shuts down.)
    async fn request(&self, flow: &mut HttpFlow) -> HookResult {
        if !flow.live && flow.response.is_none() && flow.error.is_none() {
            self.save(flow).await?;
        }
        Ok(())
    }

    /// A WebSocket flow is saved when it ends, with its messages.
    async fn response(&self, flow: &mut HttpFlow) -> HookResult {
        if flow.websocket.is_some() {
            return Ok(());
        }
        self.save(flow).await
    }

    async fn websocket_end(&self, flow: &mut HttpFlow) -> HookResult {
        self.save(flow).await
    }

    async fn error(&self, flow: &mut HttpFlow) -> HookResult {
        self.save(flow).await
    }

    async fn done(&self) -> HookResult {
        self.stop();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mitmrs_core::{AddonChain, Client, Headers, Request, Server};

    fn flow() -> HttpFlow {
        HttpFlow::new(
            Arc::new(Client::new(
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            )),
            Arc::new(Server::new(None)),
            Request::make("GET", "http://h/", "", Headers::new()).unwrap(),
        )
    }

    fn count(path: &Path) -> usize {
        let data = std::fs::read(path).unwrap();
        let mut n = 0;
        for f in crate::FlowReader::new(&data[..], 1 << 20) {
            f.unwrap();
            n += 1;
        }
        n
    }

    /// Flows waiting for room when `save_stream_file` changes go to the new
    /// file; none is lost.
    #[test]
    fn switching_files_at_runtime_loses_no_waiting_flow() {
        let dir = std::env::temp_dir().join(format!("mitmrs-save-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.mitm"), dir.join("b.mitm"));
        let options = Options::new();
        let save = Arc::new(Save::new());
        let mut chain = AddonChain::new();
        chain.add(save.clone(), &options).unwrap();
        let set = |k: &str, v: &str| {
            options.parse_set(&format!("{k}={v}"), false).unwrap();
            chain
                .configure(&options, &BTreeSet::from([k.to_string()]))
                .unwrap();
        };
        // A one-byte budget: every flow but one waits for the disk.
        set("save_stream_buffer", "1");
        set("save_stream_file", a.to_str().unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let save = save.clone();
                rt.spawn(async move { save.save(&flow()).await })
            })
            .collect();
        set("save_stream_file", b.to_str().unwrap());
        for t in tasks {
            rt.block_on(t).unwrap().unwrap();
        }
        rt.block_on(chain.done());
        assert_eq!(count(&a) + count(&b), 40);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn strftime_paths_are_formatted_and_plain_ones_kept() {
        assert_eq!(format_path("/tmp/flows.mitm"), "/tmp/flows.mitm");
        let y = format_path("/tmp/%Y/x");
        assert!(
            y.starts_with("/tmp/2") && y.ends_with("/x") && y.len() == "/tmp/2026/x".len(),
            "{y}"
        );
        assert_eq!(format_path("100%%"), "100%");
    }
}
