//! HTTP messages: [`Request`] and [`Response`], with mitmproxy's fields.
//!
//! `content` holds the raw (still content-encoded) body, or `None` when the body is
//! missing or was streamed. [`Request::content`]/[`Response::content`] decode it,
//! and the setters re-encode and update `Content-Length` as mitmproxy does.

use std::fmt;

use bytes::Bytes;

use crate::encoding::{self, EncodingError};
use crate::headers::Headers;
use crate::now;

/// The most a decoded body may grow to when an addon reads `.content`.
pub const DEFAULT_DECODE_LIMIT: usize = 1 << 30;

/// Per-message streaming mode (mitmproxy's `message.stream`).
#[derive(Default)]
pub enum StreamMode {
    /// The body is buffered, then `request`/`response` hooks see it.
    #[default]
    Off,
    /// The body is forwarded as it arrives and not stored.
    On,
    /// The body is forwarded as it arrives, each piece passed through a transformer.
    Transform(Box<dyn ChunkTransform>),
}

impl StreamMode {
    pub fn is_streaming(&self) -> bool {
        !matches!(self, StreamMode::Off)
    }
}

impl fmt::Debug for StreamMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StreamMode::Off => "Off",
            StreamMode::On => "On",
            StreamMode::Transform(_) => "Transform(..)",
        })
    }
}

/// A streaming body transformer. It is given each piece of the body as it passes,
/// and returns zero or more pieces to forward in its place. At the end of the body
/// it is called once more with an empty chunk (`end == true`); what it returns then
/// is sent before the body ends. Returning nothing mid-stream does not end the body.
pub trait ChunkTransform: Send + Sync {
    fn transform(&mut self, chunk: Bytes, end: bool) -> Result<Vec<Bytes>, String>;

    /// Whether a call may block or take long (a Python callable, say): the
    /// proxy then runs it on a blocking-pool thread, so that the other
    /// connections on the same runtime thread go on meanwhile. A quick
    /// transformer (the default) runs inline.
    fn may_block(&self) -> bool {
        false
    }
}

impl<F> ChunkTransform for F
where
    F: FnMut(Bytes) -> Vec<Bytes> + Send + Sync,
{
    fn transform(&mut self, chunk: Bytes, _end: bool) -> Result<Vec<Bytes>, String> {
        Ok(self(chunk))
    }
}

/// What both messages share (mitmproxy's `Message`).
macro_rules! message_common {
    ($t:ty) => {
        impl $t {
            /// The body decoded according to `Content-Encoding`; `Ok(None)` if missing.
            pub fn content(&self) -> Result<Option<Bytes>, EncodingError> {
                match (&self.content, self.headers.get("content-encoding")) {
                    (None, _) => Ok(None),
                    (Some(raw), None) => Ok(Some(raw.clone())),
                    (Some(raw), Some(ce)) => {
                        encoding::decode(&ce, raw, DEFAULT_DECODE_LIMIT).map(Some)
                    }
                }
            }

            /// Sets the body from decoded bytes: encodes it per `Content-Encoding`
            /// (dropping the header if the encoding is unknown) and sets
            /// `Content-Length` unless `Transfer-Encoding` is present.
            pub fn set_content(&mut self, value: Option<Bytes>) {
                let Some(value) = value else {
                    self.content = None;
                    return;
                };
                let ce = self.headers.get("content-encoding").map(|c| c.into_owned());
                let raw = match ce {
                    None => value,
                    Some(ce) => match encoding::encode(&ce, &value) {
                        Ok(e) => e,
                        Err(_) => {
                            self.headers.remove("content-encoding");
                            value
                        }
                    },
                };
                if !self.headers.contains("transfer-encoding") {
                    self.headers.set("content-length", raw.len().to_string());
                }
                self.content = Some(raw);
            }

            /// The decoded body as text (UTF-8, lossy); `None` if missing or undecodable.
            pub fn text(&self) -> Option<String> {
                self.content()
                    .ok()
                    .flatten()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            }

            /// Sets the body from text, as UTF-8.
            pub fn set_text(&mut self, text: &str) {
                self.set_content(Some(Bytes::copy_from_slice(text.as_bytes())));
            }

            pub fn is_http10(&self) -> bool {
                self.http_version == "HTTP/1.0"
            }
            pub fn is_http11(&self) -> bool {
                self.http_version == "HTTP/1.1"
            }
            pub fn is_http2(&self) -> bool {
                self.http_version == "HTTP/2.0"
            }
            pub fn is_http3(&self) -> bool {
                self.http_version == "HTTP/3"
            }
        }
    };
}

/// An HTTP request (mitmproxy's `http.Request`).
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// "http" or "https".
    pub scheme: String,
    /// The authority as given in the request target (absolute or authority form), or "".
    pub authority: String,
    /// The target host: from the request target, or the tunnel's host.
    pub host: String,
    pub port: u16,
    /// Path with query, or "*"; "" for CONNECT.
    pub path: String,
    /// "HTTP/1.0", "HTTP/1.1", "HTTP/2.0".
    pub http_version: String,
    pub headers: Headers,
    /// The raw (content-encoded) body; `None` if missing or streamed.
    pub content: Option<Bytes>,
    pub trailers: Option<Headers>,
    pub timestamp_start: f64,
    pub timestamp_end: Option<f64>,
    pub stream: StreamMode,
}

message_common!(Request);

impl Request {
    /// A request like mitmproxy's `Request.make(method, url, content, headers)`.
    /// `url` must be absolute: `http(s)://host[:port]/path`.
    pub fn make(
        method: &str,
        url: &str,
        content: impl Into<Bytes>,
        headers: Headers,
    ) -> Result<Self, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("invalid URL {url:?}: no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(format!("invalid URL {url:?}: scheme must be http or https")),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = split_authority(authority, default_port)
            .ok_or_else(|| format!("invalid URL {url:?}: bad host or port"))?;
        let mut req = Request {
            method: method.to_string(),
            scheme,
            authority: String::new(),
            host,
            port,
            path: path.to_string(),
            http_version: "HTTP/1.1".into(),
            headers,
            content: None,
            trailers: None,
            timestamp_start: now(),
            timestamp_end: Some(now()),
            stream: StreamMode::Off,
        };
        let content: Bytes = content.into();
        if !content.is_empty() || method != "GET" {
            req.set_content(Some(content));
        } else {
            req.content = Some(content);
        }
        Ok(req)
    }

    fn default_port(&self) -> u16 {
        if self.scheme == "https" {
            443
        } else {
            80
        }
    }

    /// mitmproxy's `url`: built from scheme, host, port and path; "host:port" for CONNECT.
    pub fn url(&self) -> String {
        if self.method.eq_ignore_ascii_case("CONNECT") {
            return crate::connection::format_host_port(&self.host, self.port);
        }
        self.url_with(&self.host, self.port)
    }

    fn url_with(&self, host: &str, port: u16) -> String {
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        if port == self.default_port() {
            format!("{}://{}{}", self.scheme, host, self.path)
        } else {
            format!("{}://{}:{}{}", self.scheme, host, port, self.path)
        }
    }

    /// `host[:port]` as a Host header names this request's destination: the
    /// port only if it is not the scheme's default, IPv6 in brackets.
    pub fn hostport(&self) -> String {
        match (self.port == self.default_port(), self.host.contains(':')) {
            (true, false) => self.host.clone(),
            (true, true) => format!("[{}]", self.host),
            (false, _) => crate::connection::format_host_port(&self.host, self.port),
        }
    }

    /// Points the request at another server, as setting mitmproxy's `scheme`,
    /// `host` and `port` does: a Host header present is rewritten, and so is
    /// the authority if the request has one. (mitmproxy rewrites them when
    /// host and port are set, before the scheme, so its default-port check uses
    /// the old scheme; here it uses the new one.)
    pub fn set_destination(&mut self, scheme: &str, host: &str, port: u16) {
        self.scheme = scheme.to_string();
        self.host = host.to_string();
        self.port = port;
        let value = self.hostport();
        if self.headers.get("host").is_some() {
            self.headers.set("Host", value.clone());
        }
        if !self.authority.is_empty() {
            self.authority = value;
        }
    }

    /// The Host header (HTTP/1) or authority (HTTP/2).
    pub fn host_header(&self) -> Option<String> {
        if (self.is_http2() || self.is_http3()) && !self.authority.is_empty() {
            return Some(self.authority.clone());
        }
        self.headers.get("host").map(|h| h.into_owned())
    }

    /// The host from the Host header if there is one, else [`Request::host`].
    pub fn pretty_host(&self) -> String {
        match self.host_header() {
            Some(h) if !h.is_empty() => split_authority(&h, self.default_port())
                .map(|(h, _)| h)
                .unwrap_or(h),
            _ => self.host.clone(),
        }
    }

    /// Like [`Request::url`] but with the Host header's host and port.
    pub fn pretty_url(&self) -> String {
        if self.method.eq_ignore_ascii_case("CONNECT") {
            return self.authority.clone();
        }
        match self.host_header() {
            Some(h) if !h.is_empty() => match split_authority(&h, self.default_port()) {
                Some((host, port)) => self.url_with(&host, port),
                None => self.url(),
            },
            _ => self.url(),
        }
    }

    /// The path without the query string.
    pub fn path_components(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }
}

/// Splits "host[:port]" (IPv6 in brackets) into host and port.
pub fn split_authority(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_string(), p.parse().ok()?)),
        Some(_) => Some((authority.to_string(), default_port)),
        None => Some((authority.to_string(), default_port)),
    }
}

/// An HTTP response (mitmproxy's `http.Response`).
#[derive(Debug)]
pub struct Response {
    pub http_version: String,
    pub status_code: u16,
    pub reason: String,
    pub headers: Headers,
    /// The raw (content-encoded) body; `None` if missing or streamed.
    pub content: Option<Bytes>,
    pub trailers: Option<Headers>,
    pub timestamp_start: f64,
    pub timestamp_end: Option<f64>,
    pub stream: StreamMode,
}

message_common!(Response);

impl Response {
    /// A response like mitmproxy's `Response.make(status_code, content, headers)`:
    /// HTTP/1.1, the standard reason, and `Content-Length` set.
    pub fn make(status_code: u16, content: impl Into<Bytes>, headers: Headers) -> Self {
        let mut r = Response {
            http_version: "HTTP/1.1".into(),
            status_code,
            reason: crate::status::reason(status_code).to_string(),
            headers,
            content: None,
            trailers: None,
            timestamp_start: now(),
            timestamp_end: Some(now()),
            stream: StreamMode::Off,
        };
        r.set_content(Some(content.into()));
        r
    }

    /// A response whose head has just arrived from a server: no body read yet,
    /// `timestamp_start` now.
    pub fn received(
        http_version: &str,
        status_code: u16,
        reason: String,
        headers: Headers,
    ) -> Self {
        Response {
            http_version: http_version.into(),
            status_code,
            reason,
            headers,
            content: None,
            trailers: None,
            timestamp_start: now(),
            timestamp_end: None,
            stream: StreamMode::Off,
        }
    }

    /// A plain-text error response as the proxy sends it (502, 400, ...).
    pub fn error_page(status_code: u16, message: &str) -> Self {
        let body = format!("{}\n", message);
        Self::make(
            status_code,
            body,
            Headers::from_pairs([
                ("Server", "mitmrs"),
                ("Connection", "close"),
                ("Content-Type", "text/plain; charset=utf-8"),
            ]),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_and_urls() {
        let mut r =
            Request::make("GET", "http://example.com:8080/a?b=1", "", Headers::new()).unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.path.as_str()),
            ("example.com", 8080, "/a?b=1")
        );
        assert_eq!(r.url(), "http://example.com:8080/a?b=1");
        r.headers.set("Host", "other.test");
        assert_eq!(r.pretty_host(), "other.test");
        assert_eq!(r.pretty_url(), "http://other.test/a?b=1");
        let r6 = Request::make("GET", "https://[::1]/", "", Headers::new()).unwrap();
        assert_eq!(r6.url(), "https://[::1]/");
        assert!(Request::make("GET", "ftp://x/", "", Headers::new()).is_err());
    }

    #[test]
    fn set_content_encodes_and_updates_length() {
        let mut r = Response::make(
            200,
            "x",
            Headers::from_pairs([("content-encoding", "gzip")]),
        );
        r.set_content(Some(Bytes::from_static(b"hello world")));
        assert_ne!(r.content.as_deref(), Some(&b"hello world"[..]));
        assert_eq!(r.content().unwrap().as_deref(), Some(&b"hello world"[..]));
        assert_eq!(
            r.headers.get("content-length").unwrap(),
            r.content.as_ref().unwrap().len().to_string()
        );
        let mut c = Response::make(
            200,
            "",
            Headers::from_pairs([("transfer-encoding", "chunked")]),
        );
        c.set_text("abc");
        assert!(!c.headers.contains("content-length"));
    }
}
