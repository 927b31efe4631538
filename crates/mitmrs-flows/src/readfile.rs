//! Reading a flow file at start-up (`-r`/`rfile`), as mitmproxy's `ReadFile`
//! addon does: each flow goes through the hooks a live flow would have seen
//! (`requestheaders`, `request`, then `responseheaders` and `response` if it has a
//! response, then for a WebSocket flow `websocket_start`, `websocket_message`
//! per message and `websocket_end`, else `error` if it has an error), so the
//! console shows it, scripts see it and `-w` saves it.
//!
//! The file is read on its own thread, at most two batches (256 flows or 4 MiB
//! each) ahead of the hooks, so a file of any length is read in bounded memory.

use std::collections::BTreeSet;
use std::fs::File;

use async_trait::async_trait;
use mitmrs_core::addon::{Addon, HookResult, HookSet, Loader};
use mitmrs_core::flowfilter::{option_filter, Filter};
use mitmrs_core::mode::ReverseTarget;
use mitmrs_core::options::{
    size_option, OptionSpec, OptionType, OptionValue, Options, OptionsError,
};
use mitmrs_core::AddonChain;

use crate::io::{FlowReader, ReadError};

/// Registers mitmproxy's `rfile`, `readfile_filter` and `keepserving` options and
/// mitmrs's `rfile_max_flow_size`. The reading itself is [`load_flows`], which
/// the binary runs once the proxy is up, with `readfile_filter`'s filter.
#[derive(Default)]
pub struct ReadFile;

#[async_trait]
impl Addon for ReadFile {
    fn name(&self) -> &str {
        "readfile"
    }

    fn hooks(&self) -> HookSet {
        HookSet::EMPTY.with(mitmrs_core::Hook::Configure)
    }

    fn hooks_change_only_in_configure(&self) -> bool {
        true
    }

    fn load(&self, loader: &mut Loader<'_>) -> HookResult {
        loader.add_option(OptionSpec::new(
            "rfile",
            OptionType::OptStr,
            OptionValue::None,
            "Read flows from file.",
        ))?;
        loader.add_option(OptionSpec::new(
            "readfile_filter",
            OptionType::OptStr,
            OptionValue::None,
            "Read only matching flows.",
        ))?;
        loader.add_option(OptionSpec::new(
            "keepserving",
            OptionType::Bool,
            OptionValue::Bool(false),
            "Continue serving after client playback, server playback or file read. This option is ignored by \
             interactive tools, which always keep serving.",
        ))?;
        loader.add_option(OptionSpec::new(
            "rfile_max_flow_size",
            OptionType::Str,
            OptionValue::Str("1g".into()),
            "mitmrs-specific (not in mitmproxy): the largest single flow (bodies included) a flow file may hold; \
             a larger record stops the read with an error naming it. Understands k/m/g suffixes.",
        ))?;
        Ok(())
    }

    fn configure(&self, options: &Options, updated: &BTreeSet<String>) -> Result<(), OptionsError> {
        if updated.contains("readfile_filter") {
            option_filter(options, "readfile_filter")?;
        }
        if updated.contains("rfile_max_flow_size") {
            size_option(options, "rfile_max_flow_size")?;
        }
        Ok(())
    }
}

/// The most flows the reader thread hands over at once.
const BATCH_FLOWS: usize = 256;

/// How a read went.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReadSummary {
    /// Flows that went through the hooks.
    pub loaded: usize,
    /// Records that were skipped (each was logged as a warning).
    pub skipped: usize,
}

/// The `rfile_max_flow_size` option in bytes.
pub fn max_flow_size(options: &Options) -> Result<usize, OptionsError> {
    Ok(size_option(options, "rfile_max_flow_size")?
        .map_or(1 << 30, |n| usize::try_from(n).unwrap_or(usize::MAX)))
}

/// Reads the flow file at `path` and runs each flow through `chain`'s hooks.
/// Records that are not usable flows are logged and skipped; an error that ends
/// the read (a missing file, a cut-off or corrupt file) is returned, naming the
/// file, after the flows before it have been loaded.
///
/// `reverse`: in reverse mode, each request is pointed at the reverse target
/// first (as mitmproxy's `load_flow` does, so saved flows replay against it).
/// `filter` (`readfile_filter`): only matching flows go through the hooks
/// (and count as loaded); the others are passed over silently, as in mitmproxy.
pub async fn load_flows(
    path: &str,
    chain: &AddonChain,
    max_record: usize,
    reverse: Option<&ReverseTarget>,
    filter: Option<&Filter>,
) -> Result<ReadSummary, String> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Result<_, ReadError>>>(2);
    let file_path = crate::save::expand_user(path);
    std::thread::Builder::new()
        .name("mitmrs-readfile".into())
        .spawn(move || {
            // "-" is standard input, as in mitmproxy (`cat flows | mitmrs -nr -`).
            let file: Box<dyn std::io::Read> = if file_path.as_os_str() == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                match File::open(&file_path) {
                    Ok(f) => Box::new(f),
                    Err(e) => {
                        let _ = tx.blocking_send(vec![Err(ReadError::Io(e))]);
                        return;
                    }
                }
            };
            // Flows go over in batches (up to 256 flows or 4 MiB), so the two
            // threads wake each other once per batch, not once per flow.
            let new_batch = || Vec::with_capacity(BATCH_FLOWS);
            let mut batch = new_batch();
            let mut bytes = 0;
            let mut reader = FlowReader::new(file, max_record);
            loop {
                let item = reader.next();
                let end = item.is_none();
                if let Some(item) = item {
                    bytes += item.as_ref().map_or(0, |_| reader.last_record_len());
                    batch.push(item);
                }
                if (end || batch.len() >= BATCH_FLOWS || bytes >= 4 << 20) && !batch.is_empty() {
                    bytes = 0;
                    let full = if end {
                        std::mem::take(&mut batch)
                    } else {
                        std::mem::replace(&mut batch, new_batch())
                    };
                    if tx.blocking_send(full).is_err() {
                        return;
                    }
                }
                if end {
                    return;
                }
            }
        })
        .map_err(|e| format!("cannot start the reader thread: {e}"))?;
    let mut summary = ReadSummary::default();
    while let Some(batch) = rx.recv().await {
        for item in batch {
            match item {
                Ok(mut flow) => {
                    if filter.is_some_and(|f| !f.matches(&flow)) {
                        continue;
                    }
                    if let Some(t) = reverse {
                        flow.request.set_destination(t.scheme(), &t.host, t.port);
                    }
                    chain.requestheaders(&mut flow).await;
                    chain.request(&mut flow).await;
                    if flow.response.is_some() {
                        chain.responseheaders(&mut flow).await;
                        chain.response(&mut flow).await;
                    }
                    if let Some(ws) = flow.websocket.as_mut() {
                        // As mitmproxy: the messages are handed over one by one,
                        // the list growing as they go.
                        let queue = std::mem::take(&mut ws.messages);
                        chain.websocket_start(&mut flow).await;
                        for m in queue {
                            if let Some(ws) = flow.websocket.as_mut() {
                                ws.push(m, usize::MAX);
                            }
                            chain.websocket_message(&mut flow).await;
                        }
                        chain.websocket_end(&mut flow).await;
                    } else if flow.error.is_some() {
                        chain.error(&mut flow).await;
                    }
                    summary.loaded += 1;
                }
                Err(e) if e.is_skip() => {
                    tracing::warn!("{path}: {e}");
                    summary.skipped += 1;
                }
                Err(ReadError::Io(e)) if summary.loaded == 0 => {
                    return Err(format!("cannot read flows from {path}: {e}"));
                }
                Err(e) => {
                    let loaded = match summary.loaded {
                        0 => String::new(),
                        1 => " (the flow before it was loaded)".to_string(),
                        n => format!(" (the {n} flows before it were loaded)"),
                    };
                    return Err(format!("{path}: {e}{loaded}"));
                }
            }
        }
    }
    Ok(summary)
}
