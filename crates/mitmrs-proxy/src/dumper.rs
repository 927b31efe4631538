//! The console dumper: mitmdump's flow output, as a built-in addon on the same hook
//! API users get. It prints each flow at `response` or `error`.
//!
//! Level 1: `127.0.0.1:50968: GET http://host/path` and `     << 200 OK 33b`;
//! level 2 adds headers (and trailers); level 3 adds bodies cut at
//! `content_view_lines_cutoff` lines; level 4 prints bodies whole. Colours only when
//! the output is a terminal. `dumper_filter` (a filter expression) limits
//! which flows are shown.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use mitmrs_core::addon::{Addon, Hook, HookResult, HookSet};
use mitmrs_core::flowfilter::FilterOption;
use mitmrs_core::options::{OptionSpec, OptionType, OptionValue, Options, OptionsError};
use mitmrs_core::{Headers, HttpFlow};

/// mitmproxy's `human.format_address`.
pub fn format_address(a: &SocketAddr) -> String {
    match a {
        SocketAddr::V4(v4) => format!("{}:{}", v4.ip(), v4.port()),
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => format!("{}:{}", v4, v6.port()),
            None => format!("[{}]:{}", v6.ip(), v6.port()),
        },
    }
}

/// mitmproxy's `human.pretty_size`.
pub fn pretty_size(size: usize) -> String {
    if size < 1024 {
        return format!("{size}b");
    }
    let mut s = size as f64;
    for suffix in ["k", "m", "g", "t"] {
        s /= 1024.0;
        if s < 99.95 {
            return format!("{s:.1}{suffix}");
        }
        if s < 1024.0 || suffix == "t" {
            return format!("{s:.0}{suffix}");
        }
    }
    format!("{size}b")
}

use crate::contentview::escape_control as escape;

fn escape_bytes(b: &[u8]) -> String {
    let mut out = String::new();
    for chunk in b.utf8_chunks() {
        out.push_str(&escape(chunk.valid()));
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

pub struct Dumper {
    out: Mutex<Box<dyn Write + Send>>,
    color: bool,
    detail: AtomicI64,
    cutoff: AtomicI64,
    showhost: std::sync::atomic::AtomicBool,
    /// `dumper_filter`: only matching flows are shown.
    filter: FilterOption,
}

impl Dumper {
    /// A dumper writing to stdout, coloured if stdout is a terminal.
    pub fn stdout() -> Self {
        Self::new(Box::new(std::io::stdout()), std::io::stdout().is_terminal())
    }

    pub fn new(out: Box<dyn Write + Send>, color: bool) -> Self {
        Self {
            out: Mutex::new(out),
            color,
            detail: AtomicI64::new(1),
            cutoff: AtomicI64::new(512),
            showhost: Default::default(),
            filter: FilterOption::new("dumper_filter"),
        }
    }

    fn style(&self, text: &str, code: &str) -> String {
        if self.color && !code.is_empty() {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn headers(&self, lines: &mut Vec<String>, h: &Headers) {
        for (k, v) in h.fields() {
            lines.push(format!(
                "    {}: {}",
                self.style(&escape_bytes(k), "34"),
                escape_bytes(v)
            ));
        }
    }

    /// mitmdump's `_echo_message`: a blank line, the body's view (cut at
    /// `content_view_lines_cutoff` at level 3), and a blank line after it. A
    /// request without a body shows its query instead (mitmproxy's "Query" view).
    fn body(
        &self,
        lines: &mut Vec<String>,
        content: Option<bytes::Bytes>,
        headers: &Headers,
        query: Option<&str>,
        detail: i64,
    ) {
        let ct = headers.get("content-type");
        let all = match (content.as_deref(), query) {
            (Some(b), Some(q)) if b.is_empty() && !q.is_empty() => {
                crate::contentview::query_lines(q)
            }
            (c, _) => crate::contentview::lines(c, ct.as_deref()),
        };
        let cutoff = self.cutoff.load(Ordering::Relaxed).max(0) as usize;
        let shown = if detail == 3 {
            all.len().min(cutoff)
        } else {
            all.len()
        };
        if shown > 0 {
            lines.push(String::new());
            for l in &all[..shown] {
                lines.push(format!("    {l}"));
            }
        }
        if shown < all.len() {
            lines.push(self.style("    (cut off)", "2"));
        }
        lines.push(String::new());
    }

    /// What follows a request or response line (mitmdump's `echo_flow`): headers
    /// from level 2, the body from level 3, then the trailers.
    fn details(
        &self,
        lines: &mut Vec<String>,
        headers: &Headers,
        content: impl FnOnce() -> Option<bytes::Bytes>,
        trailers: Option<&Headers>,
        query: Option<&str>,
        detail: i64,
    ) {
        if detail >= 2 {
            self.headers(lines, headers);
        }
        if detail >= 3 {
            self.body(lines, content(), headers, query, detail);
        }
        if detail >= 2 {
            if let Some(t) = trailers.filter(|t| !t.is_empty()) {
                lines.push(self.style("    --- HTTP Trailers", "35"));
                self.headers(lines, t);
            }
        }
    }

    /// Renders a flow as mitmdump would at the current detail level.
    pub fn render(&self, f: &HttpFlow) -> Vec<String> {
        let detail = self.detail.load(Ordering::Relaxed);
        let mut lines = Vec::new();
        let client = format_address(&f.client_conn.peername);
        let method_code = match f.request.method.as_str() {
            "GET" => "1;32",
            "DELETE" => "1;31",
            _ => "1;35",
        };
        let mut url = if self.showhost.load(Ordering::Relaxed) {
            f.request.pretty_url()
        } else {
            f.request.url()
        };
        if detail == 1 {
            // As mitmdump: long URLs are cut to the terminal's width.
            let limit = terminal_width().saturating_sub(25).max(50);
            if let Some((at, _)) = url.char_indices().nth(limit) {
                url.truncate(at);
                url.push('…');
            }
        }
        let resp_version = f
            .response
            .as_ref()
            .map(|r| r.http_version.as_str())
            .unwrap_or("HTTP/1.1");
        let req_version = if !(f.request.is_http10() || f.request.is_http11())
            || f.request.http_version != resp_version
        {
            format!(" {}", f.request.http_version)
        } else {
            String::new()
        };
        let client_str = match f.is_replay.as_deref() {
            Some("request") => self.style("[replay]", "1;33"),
            _ => client.clone(),
        };
        lines.push(format!(
            "{}: {} {}{}",
            client_str,
            self.style(&escape(&f.request.method), method_code),
            self.style(&escape(&url), "1"),
            req_version
        ));
        let req = &f.request;
        let content = || message_content(req.content(), &req.content);
        let query = req.path.split_once('?').map(|(_, q)| q);
        self.details(
            &mut lines,
            &req.headers,
            content,
            req.trailers.as_ref(),
            query,
            detail,
        );
        if let Some(r) = &f.response {
            let code_color = match r.status_code {
                200..=299 => "1;32",
                300..=399 => "1;35",
                400..=599 => "1;31",
                _ => "1",
            };
            let size = match &r.content {
                None => "(content missing)".to_string(),
                Some(c) => pretty_size(c.len()),
            };
            let version =
                if !(r.is_http10() || r.is_http11()) || f.request.http_version != r.http_version {
                    format!("{} ", r.http_version)
                } else {
                    String::new()
                };
            let (replay, replay_len) = match f.is_replay.as_deref() {
                Some("response") => (self.style("[replay]", "1;33"), 8),
                _ => (String::new(), 0),
            };
            let mut arrows = self.style(" <<", "1");
            if detail == 1 {
                let pad = client.len().saturating_sub(2 + version.len() + replay_len);
                arrows = format!("{}{}", " ".repeat(pad), arrows);
            }
            // As mitmdump: HTTP/2 and HTTP/3 carry no reason phrase, so the standard one is shown.
            let reason = if r.is_http2() || r.is_http3() {
                mitmrs_core::status::reason(r.status_code)
            } else {
                &r.reason
            };
            lines.push(format!(
                "{replay}{arrows} {version}{} {} {}",
                self.style(&r.status_code.to_string(), code_color),
                self.style(&escape(reason), code_color),
                self.style(&size, "1")
            ));
            let content = || message_content(r.content(), &r.content);
            self.details(
                &mut lines,
                &r.headers,
                content,
                r.trailers.as_ref(),
                None,
                detail,
            );
        }
        if let Some(e) = &f.error {
            lines.push(self.style(&format!(" << {}", escape(&e.msg)), "1;31"));
        }
        lines
    }

    fn echo(&self, f: &HttpFlow) {
        if self.detail.load(Ordering::Relaxed) <= 0 {
            return;
        }
        self.write_lines(&self.render(f));
    }

    /// The server's `host:port`, as mitmdump names it in its WebSocket lines.
    fn server_address(f: &HttpFlow) -> String {
        match &f.server_conn.address {
            Some((h, p)) => mitmrs_core::connection::format_host_port(h, *p),
            None => format_address(&f.client_conn.sockname),
        }
    }

    /// mitmdump's line for a WebSocket message (and its content from level 3).
    pub fn websocket_message_lines(
        &self,
        f: &HttpFlow,
        m: &mitmrs_core::WebSocketMessage,
    ) -> Vec<String> {
        let detail = self.detail.load(Ordering::Relaxed);
        let d = if m.from_client { "->" } else { "<-" };
        let kind = if m.is_text() { "text" } else { "binary" };
        let mut lines = vec![format!(
            "{} {d} WebSocket {kind} message {d} {}{}",
            format_address(&f.client_conn.peername),
            Self::server_address(f),
            f.request.path
        )];
        if detail >= 3 {
            self.body(
                &mut lines,
                Some(m.content.clone()),
                &Headers::new(),
                None,
                detail,
            );
        }
        lines
    }

    /// mitmdump's line for the end of a WebSocket connection.
    pub fn websocket_end_line(&self, f: &HttpFlow) -> Option<String> {
        let ws = f.websocket.as_ref()?;
        let code = ws.close_code?;
        let reason = ws.close_reason.as_deref();
        Some(if matches!(code, 1000 | 1001 | 1005) {
            let by = if ws.closed_by_client == Some(true) {
                "client"
            } else {
                "server"
            };
            format!(
                "WebSocket connection closed by {by}: {code} {}",
                reason.unwrap_or("None")
            )
        } else {
            let name = match code {
                1002 => "PROTOCOL_ERROR".to_string(),
                1003 => "UNSUPPORTED_DATA".into(),
                1006 => "ABNORMAL_CLOSURE".into(),
                1007 => "INVALID_FRAME_PAYLOAD_DATA".into(),
                1008 => "POLICY_VIOLATION".into(),
                1009 => "MESSAGE_TOO_BIG".into(),
                1010 => "MANDATORY_EXT".into(),
                1011 => "INTERNAL_ERROR".into(),
                1012 => "SERVICE_RESTART".into(),
                1013 => "TRY_AGAIN_LATER".into(),
                1015 => "TLS_HANDSHAKE_FAILED".into(),
                c => format!("UNKNOWN_ERROR={c}"),
            };
            let reason = match reason {
                Some(r) if !r.is_empty() => format!(" (reason: {r})"),
                _ => String::new(),
            };
            let server = Self::server_address(f);
            self.style(
                &format!(
                    "Error in WebSocket connection to {server}: WebSocket Error: {name}{reason}"
                ),
                "31",
            )
        })
    }

    fn write_lines(&self, lines: &[String]) {
        if self.detail.load(Ordering::Relaxed) <= 0 {
            return;
        }
        let text = lines.join("\n");
        let mut out = match self.out.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

/// The terminal's width as Python's `shutil.get_terminal_size` finds it:
/// `COLUMNS`, else the size of the terminal on stdout, else 80.
fn terminal_width() -> usize {
    if let Some(c) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|c| *c > 0)
    {
        return c;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: TIOCGWINSZ writes a `winsize` into the struct we own.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
        if r == 0 && ws.ws_col > 0 {
            return usize::from(ws.ws_col);
        }
    }
    80
}

/// The decoded body, or the raw one if it cannot be decoded (mitmproxy's
/// `get_content(strict=False)`).
fn message_content(
    decoded: Result<Option<bytes::Bytes>, mitmrs_core::encoding::EncodingError>,
    raw: &Option<bytes::Bytes>,
) -> Option<bytes::Bytes> {
    decoded.unwrap_or_else(|_| raw.clone())
}

#[async_trait]
impl Addon for Dumper {
    fn name(&self) -> &str {
        "dumper"
    }

    fn hooks(&self) -> HookSet {
        // At flow_detail 0 (`-q`) the dumper costs nothing per flow.
        const SHOWING: HookSet = HookSet::of(&[
            Hook::Configure,
            Hook::Response,
            Hook::Error,
            Hook::WebsocketMessage,
            Hook::WebsocketEnd,
        ]);
        if self.detail.load(Ordering::Relaxed) <= 0 {
            HookSet::EMPTY.with(Hook::Configure)
        } else {
            SHOWING
        }
    }

    fn hooks_change_only_in_configure(&self) -> bool {
        true
    }

    fn load(&self, loader: &mut mitmrs_core::addon::Loader<'_>) -> HookResult {
        loader.add_option(OptionSpec::new(
            "dumper_filter",
            OptionType::OptStr,
            OptionValue::None,
            "Limit which flows are dumped.",
        ))?;
        Ok(())
    }

    fn configure(&self, options: &Options, updated: &BTreeSet<String>) -> Result<(), OptionsError> {
        self.filter.configure(options, updated)?;
        self.detail.store(
            options.get_int("flow_detail").unwrap_or(1),
            Ordering::Relaxed,
        );
        self.cutoff.store(
            options.get_int("content_view_lines_cutoff").unwrap_or(512),
            Ordering::Relaxed,
        );
        self.showhost
            .store(options.get_bool("showhost"), Ordering::Relaxed);
        Ok(())
    }

    async fn response(&self, flow: &mut HttpFlow) -> HookResult {
        if self.filter.allows(flow) {
            self.echo(flow);
        }
        Ok(())
    }

    async fn error(&self, flow: &mut HttpFlow) -> HookResult {
        if self.filter.allows(flow) {
            self.echo(flow);
        }
        Ok(())
    }

    async fn websocket_message(&self, flow: &mut HttpFlow) -> HookResult {
        if !self.filter.allows(flow) {
            return Ok(());
        }
        if let Some(m) = flow.websocket.as_ref().and_then(|w| w.messages.back()) {
            let lines = self.websocket_message_lines(flow, m);
            self.write_lines(&lines);
        }
        Ok(())
    }

    async fn websocket_end(&self, flow: &mut HttpFlow) -> HookResult {
        if !self.filter.allows(flow) {
            return Ok(());
        }
        if let Some(line) = self.websocket_end_line(flow) {
            self.write_lines(&[line]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_mitmproxy() {
        for (n, s) in [
            (0, "0b"),
            (33, "33b"),
            (1023, "1023b"),
            (1024, "1.0k"),
            (1536, "1.5k"),
            (102_400, "100k"),
            (3 * 1024 * 1024, "3.0m"),
        ] {
            assert_eq!(pretty_size(n), s, "{n}");
        }
    }

    #[test]
    fn addresses_like_mitmproxy() {
        assert_eq!(
            format_address(&"127.0.0.1:5".parse().unwrap()),
            "127.0.0.1:5"
        );
        assert_eq!(format_address(&"[::1]:5".parse().unwrap()), "[::1]:5");
        assert_eq!(
            format_address(&"[::ffff:1.2.3.4]:5".parse().unwrap()),
            "1.2.3.4:5"
        );
    }
}
