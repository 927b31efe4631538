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
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use mitmrs_core::addon::{Addon, Hook, HookResult, HookSet, Loader};
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

/// mitmproxy's `Save` addon (streaming part: `save_stream_file`).
#[derive(Default)]
pub struct Save {
    stream: Mutex<Option<Arc<Stream>>>,
}

impl Save {
    pub fn new() -> Self {
        Self::default()
    }

    async fn save(&self, flow: &HttpFlow) -> HookResult {
        // The lock is held only to clone an Arc; it is taken once per finished flow.
        let Some(stream) = self.stream.lock().map_or(None, |s| s.clone()) else {
            return Ok(());
        };
        let mut buf = Vec::new();
        encode_flow(flow, &mut buf);
        // A flow larger than the whole budget takes all of it, and goes alone.
        let permits = buf.len().clamp(1, stream.buffer) as u32;
        let Ok(permit) = stream.budget.clone().acquire_many_owned(permits).await else {
            return Ok(()); // the stream was closed meanwhile
        };
        let _ = stream.tx.send((buf, permit));
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

/// Opens the file a spec names now: parents created, `+` appends.
fn open(spec: &str) -> std::io::Result<(PathBuf, File)> {
    let (append, raw) = match spec.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, spec),
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

/// The writer thread: appends records, flushes when the queue runs dry, and
/// moves to a new file when a strftime path changes.
fn writer(spec: String, mut path: PathBuf, file: File, mut rx: mpsc::UnboundedReceiver<Job>) {
    let rotates = spec.contains('%');
    let mut out = BufWriter::with_capacity(256 * 1024, file);
    while let Some((buf, permit)) = rx.blocking_recv() {
        if rotates {
            let want = expand_user(&format_path(spec.trim_start_matches('+')));
            if want != path {
                if let Err(e) = out.flush() {
                    write_failed(&path, e);
                }
                match open(&spec) {
                    Ok((p, f)) => {
                        path = p;
                        out = BufWriter::with_capacity(256 * 1024, f);
                    }
                    Err(e) => write_failed(&want, e),
                }
            }
        }
        if let Err(e) = out.write_all(&buf) {
            write_failed(&path, e);
        }
        drop(permit);
        if rx.is_empty() {
            if let Err(e) = out.flush() {
                write_failed(&path, e);
            }
        }
    }
    if let Err(e) = out.flush() {
        write_failed(&path, e);
    }
}

#[async_trait]
impl Addon for Save {
    fn name(&self) -> &str {
        "save"
    }

    fn hooks(&self) -> HookSet {
        HookSet::of(&[
            Hook::Configure,
            Hook::Request,
            Hook::Response,
            Hook::Error,
            Hook::Done,
        ])
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
            "Filter which flows are written to file. (Filter expressions come with a later mitmrs release; \
             setting this is refused until then.)",
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
        crate::refuse_filter(options, "save_stream_filter", "save all flows")?;
        let buffer = size_option(options, "save_stream_buffer")?
            .unwrap_or(16 << 20)
            .clamp(1, u64::from(u32::MAX)) as usize;
        let spec = options
            .get_str("save_stream_file")
            .filter(|s| !s.is_empty());
        let current = self.stream.lock().ok().and_then(|s| s.clone());
        if let (Some(cur), Some(spec)) = (&current, &spec) {
            if &cur.spec == spec && cur.buffer == buffer {
                return Ok(());
            }
        }
        drop(current);
        self.stop();
        let Some(spec) = spec else { return Ok(()) };
        let (path, file) = open(&spec).map_err(|e| OptionsError::Rejected {
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
        if let Ok(mut s) = self.stream.lock() {
            *s = Some(Arc::new(stream));
        }
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

    async fn response(&self, flow: &mut HttpFlow) -> HookResult {
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
