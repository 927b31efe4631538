//! mitmproxy's rewrite addons, as mitmdump's `-M`, `-B` and `-H` set them:
//!
//! * [`MapRemote`] (`map_remote`, `[/filter]/url-regex/replacement`): the
//!   request's URL rewritten before it is sent;
//! * [`ModifyBody`] (`modify_body`, `[/filter]/regex/[@]replacement`): a
//!   regex replacement over the request body (at `request`) or the response
//!   body (at `response`), decoded, re-encoded after;
//! * [`ModifyHeaders`] (`modify_headers`, `[/filter]/name/[@]value`): at
//!   `requestheaders` and `responseheaders`, the named fields removed, then
//!   the value added if it is not empty;
//! * [`BlockList`] (`block_list`, `/filter/status`): matching requests are
//!   answered with an empty response of that status by the proxy (444: the
//!   connection is killed without one).
//!
//! The separator is the spec's first character. The filter is mitmproxy's
//! language ([`mitmrs_core::flowfilter`]); subjects and replacements go
//! through Python's `codecs.escape_decode` as in mitmproxy (`\n`, `\x00`),
//! except map_remote's; `@path` reads the replacement from a file each time.
//! Regexes are Python's spelling on the `regex` crate, and replacement
//! templates are Python's `re.sub` templates (`\1`, `\g<name>`). Only live
//! flows are changed (not those read with `-r`), and a body that is
//! streamed is left alone (a warning says so when both options are set).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use mitmrs_core::addon::{Hook, HookSet, Loader};
use mitmrs_core::flowfilter::{python_bytes_regex, python_text_regex, Filter};
use mitmrs_core::options::{OptionSpec, OptionType, OptionValue, Options, OptionsError};
use mitmrs_core::{Addon, Headers, HookResult, HttpFlow};

/// `[/filter]/subject/replacement`, split at the first character.
struct Spec {
    filter: Option<Filter>,
    subject: String,
    replacement: String,
}

fn parse_spec(option: &str) -> Result<Spec, String> {
    let mut chars = option.chars();
    let sep = chars
        .next()
        .ok_or("empty (expected [/flow-filter]/subject/replacement)")?;
    let parts: Vec<&str> = chars.as_str().splitn(3, sep).collect();
    let (filter, subject, replacement) = match parts[..] {
        [subject, replacement] => (None, subject, replacement),
        [filter, subject, replacement] => (
            Some(Filter::parse(filter).map_err(|e| e.to_string())?),
            subject,
            replacement,
        ),
        _ => return Err("Invalid number of parameters (2 or 3 are expected)".into()),
    };
    Ok(Spec {
        filter,
        subject: subject.to_string(),
        replacement: replacement.to_string(),
    })
}

impl Spec {
    fn matches(&self, flow: &HttpFlow) -> bool {
        self.filter.as_ref().is_none_or(|f| f.matches(flow))
    }
}

/// Python's `codecs.escape_decode` (mitmproxy's `escaped_str_to_bytes`):
/// `\n \t \r \a \b \f \v \\ \' \"`, `\xHH`, octal `\O`–`\OOO`, a backslash
/// before a newline joins lines; other escapes stay as written.
pub fn escaped_str_to_bytes(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let Some(&c) = b.get(i + 1) else {
            return Err("Trailing \\ in string".into());
        };
        i += 2;
        match c {
            b'\n' => {}
            b'\\' | b'\'' | b'"' => out.push(c),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                let mut n = 1;
                while n < 3 && i < b.len() && (b'0'..=b'7').contains(&b[i]) {
                    v = v * 8 + u32::from(b[i] - b'0');
                    i += 1;
                    n += 1;
                }
                out.push(v as u8);
            }
            b'x' => {
                let hex = b
                    .get(i..i + 2)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                let Some(h) = hex else {
                    return Err(format!("invalid \\x escape at position {}", i - 2));
                };
                let text = std::str::from_utf8(h).unwrap_or("0");
                out.push(u8::from_str_radix(text, 16).unwrap_or(0));
                i += 2;
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Ok(out)
}

/// A Python bytes pattern given as bytes: ASCII as it is, other bytes as
/// `\xHH` escapes (so the pattern matches those bytes, as Python's would).
/// A backslash before such a byte is dropped: Python reads `\\` + byte as
/// that byte.
fn bytes_pattern(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' && b.get(i + 1).is_some_and(|n| !n.is_ascii()) {
            i += 1;
            continue;
        }
        if c.is_ascii() {
            s.push(c as char);
            if c == b'\\' {
                // The escaped character goes with its backslash.
                if let Some(&n) = b.get(i + 1) {
                    s.push(n as char);
                    i += 1;
                }
            }
        } else {
            s.push_str(&format!("\\x{c:02X}"));
        }
        i += 1;
    }
    s
}

/// A piece of a `re.sub` replacement template.
#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Text(Vec<u8>),
    Group(usize),
    Named(String),
}

/// Python's `re.sub` template: `\1`..`\99`, `\g<n>`, `\g<name>`, `\n`-style
/// escapes, octal `\0`/`\OOO`; an unknown escape of an ASCII letter is an
/// error, any other stays as written.
fn parse_template(t: &[u8]) -> Result<Vec<Piece>, String> {
    let mut out: Vec<Piece> = Vec::new();
    let mut text = Vec::new();
    let mut i = 0;
    let flush = |text: &mut Vec<u8>, out: &mut Vec<Piece>| {
        if !text.is_empty() {
            out.push(Piece::Text(std::mem::take(text)));
        }
    };
    while i < t.len() {
        if t[i] != b'\\' {
            text.push(t[i]);
            i += 1;
            continue;
        }
        let Some(&c) = t.get(i + 1) else {
            return Err("bad escape (end of pattern)".into());
        };
        i += 2;
        match c {
            b'g' => {
                let rest = &t[i..];
                let end = rest.iter().position(|&x| x == b'>');
                let (Some(b'<'), Some(end)) = (rest.first(), end) else {
                    return Err("missing < or > in \\g<...>".into());
                };
                let name = String::from_utf8_lossy(&rest[1..end]).into_owned();
                flush(&mut text, &mut out);
                match name.parse::<usize>() {
                    Ok(n) => out.push(Piece::Group(n)),
                    Err(_) if !name.is_empty() => out.push(Piece::Named(name)),
                    Err(_) => return Err("missing group name".into()),
                }
                i += end + 1;
            }
            b'0' => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 && i < t.len() && (b'0'..=b'7').contains(&t[i]) {
                    v = v * 8 + u32::from(t[i] - b'0');
                    i += 1;
                    n += 1;
                }
                text.push(v as u8);
            }
            b'1'..=b'9' => {
                let three_octal = t
                    .get(i..i + 2)
                    .is_some_and(|d| c <= b'7' && d.iter().all(|x| (b'0'..=b'7').contains(x)));
                if three_octal {
                    let v = u32::from(c - b'0') * 64
                        + u32::from(t[i] - b'0') * 8
                        + u32::from(t[i + 1] - b'0');
                    if v > 0o377 {
                        return Err(format!(
                            "octal escape value \\{} outside of range 0-0o377",
                            v
                        ));
                    }
                    text.push(v as u8);
                    i += 2;
                } else {
                    let mut n = usize::from(c - b'0');
                    if let Some(&d) = t.get(i).filter(|d| d.is_ascii_digit()) {
                        n = n * 10 + usize::from(d - b'0');
                        i += 1;
                    }
                    flush(&mut text, &mut out);
                    out.push(Piece::Group(n));
                }
            }
            b'a' => text.push(7),
            b'b' => text.push(8),
            b'f' => text.push(12),
            b'n' => text.push(b'\n'),
            b'r' => text.push(b'\r'),
            b't' => text.push(b'\t'),
            b'v' => text.push(11),
            b'\\' => text.push(b'\\'),
            c if c.is_ascii_alphabetic() => return Err(format!("bad escape \\{}", c as char)),
            c => {
                text.push(b'\\');
                text.push(c);
            }
        }
    }
    flush(&mut text, &mut out);
    Ok(out)
}

/// Checks a template's group references against a regex's groups.
fn check_groups<'a>(
    pieces: &[Piece],
    groups: usize,
    mut names: impl Iterator<Item = Option<&'a str>>,
) -> Result<(), String> {
    let names: Vec<&str> = names.by_ref().flatten().collect();
    for p in pieces {
        match p {
            Piece::Group(n) if *n >= groups => return Err(format!("invalid group reference {n}")),
            Piece::Named(n) if !names.contains(&n.as_str()) => {
                return Err(format!("unknown group name '{n}'"))
            }
            _ => {}
        }
    }
    Ok(())
}

/// `re.sub` over bytes: every match replaced by the template.
fn sub_bytes(re: &regex::bytes::Regex, pieces: &[Piece], hay: &[u8]) -> Vec<u8> {
    re.replace_all(hay, |c: &regex::bytes::Captures<'_>| {
        let mut out = Vec::new();
        for p in pieces {
            match p {
                Piece::Text(t) => out.extend_from_slice(t),
                Piece::Group(n) => {
                    out.extend_from_slice(c.get(*n).map_or(&[][..], |m| m.as_bytes()))
                }
                Piece::Named(n) => {
                    out.extend_from_slice(c.name(n).map_or(&[][..], |m| m.as_bytes()))
                }
            }
        }
        out
    })
    .into_owned()
}

/// `re.sub` over text.
fn sub_text(re: &regex::Regex, pieces: &[Piece], hay: &str) -> String {
    re.replace_all(hay, |c: &regex::Captures<'_>| {
        let mut out = Vec::new();
        for p in pieces {
            match p {
                Piece::Text(t) => out.extend_from_slice(t),
                Piece::Group(n) => {
                    out.extend_from_slice(c.get(*n).map_or("", |m| m.as_str()).as_bytes())
                }
                Piece::Named(n) => {
                    out.extend_from_slice(c.name(n).map_or("", |m| m.as_str()).as_bytes())
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    })
    .into_owned()
}

/// A replacement given inline or as `@path` (read each time it is used).
enum Replacement {
    Inline(Vec<u8>),
    File(std::path::PathBuf),
}

impl Replacement {
    fn parse(raw: &str) -> Result<Replacement, String> {
        match raw.strip_prefix('@') {
            Some(path) => {
                let path = expand_user(path);
                std::fs::read(&path)
                    .map_err(|e| format!("Invalid file path: {} ({e})", path.display()))?;
                Ok(Replacement::File(path))
            }
            None => escaped_str_to_bytes(raw).map(Replacement::Inline),
        }
    }

    fn read(&self) -> Option<Vec<u8>> {
        match self {
            Replacement::Inline(b) => Some(b.clone()),
            Replacement::File(p) => match std::fs::read(p) {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!("Could not read replacement file: {}: {e}", p.display());
                    None
                }
            },
        }
    }
}

fn expand_user(path: &str) -> std::path::PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => std::path::Path::new(&home).join(rest),
        _ => path.into(),
    }
}

/// Parses every entry of the list option `name` with `parse`, naming the
/// entry that fails as mitmproxy does.
fn parse_all<T>(
    options: &Options,
    name: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, OptionsError> {
    options
        .get_seq(name)
        .iter()
        .map(|o| {
            parse(o).map_err(|e| OptionsError::Rejected {
                name: name.into(),
                message: format!("Cannot parse {name} option {o}: {e}"),
            })
        })
        .collect()
}

fn list_option(loader: &mut Loader<'_>, name: &str, help: &str) -> HookResult {
    loader.add_option(OptionSpec::new(
        name,
        OptionType::StrSeq,
        OptionValue::StrSeq(Vec::new()),
        help,
    ))?;
    Ok(())
}

/// What an addon holds: its parsed specs, replaced as a whole on `configure`,
/// and whether there are any (read by `hooks()`, which the chain asks at every
/// dispatch: an atomic load, not a lock).
struct Specs<T> {
    list: RwLock<Arc<Vec<T>>>,
    any: AtomicBool,
}

impl<T> Default for Specs<T> {
    fn default() -> Self {
        Specs {
            list: RwLock::new(Arc::new(Vec::new())),
            any: AtomicBool::new(false),
        }
    }
}

impl<T> Specs<T> {
    fn get(&self) -> Arc<Vec<T>> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, v: Vec<T>) {
        self.any.store(!v.is_empty(), Ordering::Relaxed);
        *self.list.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(v);
    }

    fn is_empty(&self) -> bool {
        !self.any.load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------- map_remote

struct RemoteSpec {
    spec: Spec,
    re: regex::Regex,
    template: Vec<Piece>,
}

/// mitmproxy's `MapRemote`.
#[derive(Default)]
pub struct MapRemote {
    specs: Specs<RemoteSpec>,
}

fn parse_remote(option: &str) -> Result<RemoteSpec, String> {
    let spec = parse_spec(option)?;
    let re = python_text_regex(&spec.subject, 0, false)
        .map_err(|e| format!("Invalid regular expression {:?} ({e})", spec.subject))?;
    let template = parse_template(spec.replacement.as_bytes())?;
    check_groups(&template, re.captures_len(), re.capture_names())?;
    Ok(RemoteSpec { spec, re, template })
}

#[async_trait]
impl Addon for MapRemote {
    fn name(&self) -> &str {
        "mapremote"
    }

    fn hooks(&self) -> HookSet {
        const ACTIVE: HookSet = HookSet::of(&[Hook::Load, Hook::Configure, Hook::Request]);
        ACTIVE.while_on(!self.specs.is_empty())
    }

    fn hooks_change_only_in_configure(&self) -> bool {
        true
    }

    fn load(&self, loader: &mut Loader<'_>) -> HookResult {
        list_option(
            loader,
            "map_remote",
            "Map remote resources to another remote URL using a pattern of the form \
             \"[/flow-filter]/url-regex/replacement\", where the separator can be any character.",
        )
    }

    fn configure(&self, options: &Options, updated: &BTreeSet<String>) -> Result<(), OptionsError> {
        if updated.contains("map_remote") {
            self.specs
                .set(parse_all(options, "map_remote", parse_remote)?);
        }
        Ok(())
    }

    async fn request(&self, flow: &mut HttpFlow) -> HookResult {
        if flow.response.is_some() || flow.error.is_some() || !flow.live {
            return Ok(());
        }
        for s in self.specs.get().iter() {
            if !s.spec.matches(flow) {
                continue;
            }
            let url = flow.request.pretty_url();
            let new = sub_text(&s.re, &s.template, &url);
            if new != url {
                set_url(flow, &new)?;
            }
        }
        Ok(())
    }
}

/// mitmproxy's `request.url = ...`: scheme, host, port and path from the URL;
/// the Host header and authority follow.
fn set_url(flow: &mut HttpFlow, url: &str) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("map_remote: invalid URL {url:?}: no scheme"))?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => {
            return Err(format!(
                "map_remote: invalid URL {url:?}: scheme must be http or https"
            ))
        }
    };
    // As Python's urlparse: the authority ends at `/`, `?` or `#`, user
    // information before `@` is dropped, the host is lower-cased.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let valid = |h: &str| {
        !h.is_empty()
            && h.len() <= 255
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._:".contains(c))
    };
    let (host, port) = mitmrs_core::message::split_authority(authority, default_port)
        .map(|(h, p)| (h.to_ascii_lowercase(), p))
        .filter(|(h, _)| valid(h))
        .ok_or_else(|| format!("map_remote: invalid URL {url:?}: bad host or port"))?;
    flow.request.set_destination(&scheme, &host, port);
    flow.request.path = path;
    Ok(())
}

// --------------------------------------------------------------- modify_body

struct BodySpec {
    spec: Spec,
    re: regex::bytes::Regex,
    replacement: Replacement,
    /// The template of an inline replacement (a file's is parsed when read).
    template: Option<Vec<Piece>>,
}

fn parse_body(option: &str) -> Result<BodySpec, String> {
    let spec = parse_spec(option)?;
    let subject = escaped_str_to_bytes(&spec.subject)?;
    // mitmproxy's re.sub(..., flags=re.DOTALL).
    let re = python_bytes_regex(&bytes_pattern(&subject), b's', false).map_err(|e| {
        format!(
            "Invalid regular expression {} ({e})",
            mitmrs_core::pyrepr::py_bytes_repr(&subject)
        )
    })?;
    let replacement = Replacement::parse(&spec.replacement)?;
    let template = match &replacement {
        Replacement::Inline(b) => {
            let t = parse_template(b)?;
            check_groups(&t, re.captures_len(), re.capture_names())?;
            Some(t)
        }
        Replacement::File(_) => None,
    };
    Ok(BodySpec {
        spec,
        re,
        replacement,
        template,
    })
}

/// mitmproxy's `ModifyBody`.
#[derive(Default)]
pub struct ModifyBody {
    specs: Specs<BodySpec>,
}

impl ModifyBody {
    fn run(&self, flow: &mut HttpFlow) {
        for s in self.specs.get().iter() {
            if !s.spec.matches(flow) {
                continue;
            }
            let template = match &s.template {
                Some(t) => t.clone(),
                None => {
                    let Some(raw) = s.replacement.read() else {
                        continue;
                    };
                    let checked = parse_template(&raw).and_then(|t| {
                        check_groups(&t, s.re.captures_len(), s.re.capture_names()).map(|()| t)
                    });
                    match checked {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::warn!("modify_body: replacement file: {e}");
                            continue;
                        }
                    }
                }
            };
            let (content, set): (_, &mut dyn FnMut(Bytes)) = match flow.response.as_mut() {
                Some(r) => (r.content(), &mut |b| r.set_content(Some(b))),
                None => {
                    let r = &mut flow.request;
                    (r.content(), &mut |b| r.set_content(Some(b)))
                }
            };
            match content {
                Ok(Some(body)) => set(sub_bytes(&s.re, &template, &body).into()),
                // Streamed: nothing held to change.
                Ok(None) => {}
                Err(e) => tracing::warn!("modify_body: cannot decode the body: {e}"),
            }
        }
    }
}

#[async_trait]
impl Addon for ModifyBody {
    fn name(&self) -> &str {
        "modifybody"
    }

    fn hooks(&self) -> HookSet {
        const ACTIVE: HookSet =
            HookSet::of(&[Hook::Load, Hook::Configure, Hook::Request, Hook::Response]);
        ACTIVE.while_on(!self.specs.is_empty())
    }

    fn hooks_change_only_in_configure(&self) -> bool {
        true
    }

    fn load(&self, loader: &mut Loader<'_>) -> HookResult {
        list_option(
            loader,
            "modify_body",
            "Replacement pattern of the form \"[/flow-filter]/regex/[@]replacement\", where the separator \
             can be any character. The @ allows to provide a file path that is used to read the replacement \
             string.",
        )
    }

    fn configure(&self, options: &Options, updated: &BTreeSet<String>) -> Result<(), OptionsError> {
        if updated.contains("modify_body") {
            self.specs
                .set(parse_all(options, "modify_body", parse_body)?);
        }
        let streaming = options
            .get_str("stream_large_bodies")
            .is_some_and(|s| !s.is_empty());
        if !self.specs.is_empty()
            && streaming
            && (updated.contains("modify_body") || updated.contains("stream_large_bodies"))
        {
            tracing::warn!(
                "Both modify_body and stream_large_bodies are active. Streamed bodies will not be modified."
            );
        }
        Ok(())
    }

    async fn request(&self, flow: &mut HttpFlow) -> HookResult {
        if flow.response.is_none() && flow.error.is_none() && flow.live {
            self.run(flow);
        }
        Ok(())
    }

    async fn response(&self, flow: &mut HttpFlow) -> HookResult {
        if flow.error.is_none() && flow.live {
            self.run(flow);
        }
        Ok(())
    }
}

// ------------------------------------------------------------ modify_headers

struct HeaderSpec {
    spec: Spec,
    name: String,
    value: Replacement,
}

fn parse_header(option: &str) -> Result<HeaderSpec, String> {
    let spec = parse_spec(option)?;
    let name = String::from_utf8_lossy(&escaped_str_to_bytes(&spec.subject)?).into_owned();
    let value = Replacement::parse(&spec.replacement)?;
    Ok(HeaderSpec { spec, name, value })
}

/// mitmproxy's `ModifyHeaders`.
#[derive(Default)]
pub struct ModifyHeaders {
    specs: Specs<HeaderSpec>,
}

impl ModifyHeaders {
    fn run(&self, flow: &mut HttpFlow, response: bool) {
        let specs = self.specs.get();
        // Every filter sees the flow as it was before any change.
        let matched: Vec<&HeaderSpec> = specs.iter().filter(|s| s.spec.matches(flow)).collect();
        let headers: &mut Headers = match (response, flow.response.as_mut()) {
            (true, Some(r)) => &mut r.headers,
            (true, None) => return,
            (false, _) => &mut flow.request.headers,
        };
        for s in &matched {
            headers.remove(&s.name);
        }
        for s in &matched {
            if let Some(v) = s.value.read().filter(|v| !v.is_empty()) {
                headers.add(s.name.as_bytes(), v);
            }
        }
    }
}

#[async_trait]
impl Addon for ModifyHeaders {
    fn name(&self) -> &str {
        "modifyheaders"
    }

    fn hooks(&self) -> HookSet {
        const ACTIVE: HookSet = HookSet::of(&[
            Hook::Load,
            Hook::Configure,
            Hook::RequestHeaders,
            Hook::ResponseHeaders,
        ]);
        ACTIVE.while_on(!self.specs.is_empty())
    }

    fn hooks_change_only_in_configure(&self) -> bool {
        true
    }

    fn load(&self, loader: &mut Loader<'_>) -> HookResult {
        list_option(
            loader,
            "modify_headers",
            "Header modify pattern of the form \"[/flow-filter]/header-name/[@]header-value\", where the \
             separator can be any character. The @ allows to provide a file path that is used to read the \
             header value string. An empty header-value removes existing header-name headers.",
        )
    }

    fn configure(&self, options: &Options, updated: &BTreeSet<String>) -> Result<(), OptionsError> {
        if updated.contains("modify_headers") {
            self.specs
                .set(parse_all(options, "modify_headers", parse_header)?);
        }
        Ok(())
    }

    async fn requestheaders(&self, flow: &mut HttpFlow) -> HookResult {
        if flow.response.is_none() && flow.error.is_none() && flow.live {
            self.run(flow, false);
        }
        Ok(())
    }

    async fn responseheaders(&self, flow: &mut HttpFlow) -> HookResult {
        if flow.error.is_none() && flow.live {
            self.run(flow, true);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- block_list

struct BlockSpec {
    filter: Filter,
    status: u16,
}

/// `/filter/status`. As mitmproxy, the spec is lower-cased first (the filter
/// too). mitmproxy accepts only the statuses its own table names (not 429, say);
/// here any status with a standard reason phrase, and 444.
fn parse_block(option: &str) -> Result<BlockSpec, String> {
    let mut chars = option.chars();
    let sep = chars
        .next()
        .ok_or("empty (expected /flow-filter/status-code)")?;
    let rest = chars.as_str().to_lowercase();
    let parts: Vec<&str> = rest.splitn(3, sep).collect();
    let [filter, status] = parts[..] else {
        return Err("Invalid number of parameters (2 are expected)".into());
    };
    let code = status
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|c| *c == NO_RESPONSE || !mitmrs_core::status::reason(*c).is_empty())
        .ok_or_else(|| format!("Invalid HTTP status code: {status}"))?;
    let filter = Filter::parse(filter).map_err(|e| e.to_string())?;
    Ok(BlockSpec {
        filter,
        status: code,
    })
}

/// nginx's and mitmproxy's "close without a response".
const NO_RESPONSE: u16 = 444;

/// mitmproxy's `BlockList`.
#[derive(Default)]
pub struct BlockList {
    specs: Specs<BlockSpec>,
}

#[async_trait]
impl Addon for BlockList {
    fn name(&self) -> &str {
        "blocklist"
    }

    fn hooks(&self) -> HookSet {
        const ACTIVE: HookSet = HookSet::of(&[Hook::Load, Hook::Configure, Hook::Request]);
        ACTIVE.while_on(!self.specs.is_empty())
    }

    fn hooks_change_only_in_configure(&self) -> bool {
        true
    }

    fn load(&self, loader: &mut Loader<'_>) -> HookResult {
        list_option(
            loader,
            "block_list",
            "Block matching requests and return an empty response with the specified HTTP status. Option \
             syntax is \"/flow-filter/status-code\", where flow-filter describes which requests this rule \
             should be applied to and status-code is the HTTP status code to return for blocked requests. The \
             separator (\"/\" in the example) can be any character. Setting a non-standard status code of 444 \
             will close the connection without sending a response.",
        )
    }

    fn configure(&self, options: &Options, updated: &BTreeSet<String>) -> Result<(), OptionsError> {
        if updated.contains("block_list") {
            self.specs
                .set(parse_all(options, "block_list", parse_block)?);
        }
        Ok(())
    }

    async fn request(&self, flow: &mut HttpFlow) -> HookResult {
        if flow.response.is_some() || flow.error.is_some() || !flow.live {
            return Ok(());
        }
        for s in self.specs.get().iter() {
            if s.filter.matches(flow) {
                flow.metadata
                    .insert("blocklisted", mitmrs_core::flow::MetaValue::Bool(true));
                if s.status == NO_RESPONSE {
                    flow.kill();
                } else {
                    flow.response = Some(mitmrs_core::Response::make(
                        s.status,
                        Bytes::new(),
                        Headers::from_pairs([("Server", "mitmrs")]),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_patterns_as_python() {
        assert_eq!(bytes_pattern(b"a\\.b\xff"), r"a\.b\xFF");
        assert_eq!(bytes_pattern("\\é".as_bytes()), r"\xC3\xA9");
        assert_eq!(bytes_pattern(br"\\"), r"\\");
    }

    #[test]
    fn urls_as_python_reads_them() {
        use mitmrs_core::{Client, Request, Server};
        let mut f = HttpFlow::new(
            Arc::new(Client::new(
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            )),
            Arc::new(Server::new(None)),
            Request::make("GET", "http://a/", "", Headers::new()).unwrap(),
        );
        set_url(&mut f, "https://user:pw@EXAMPLE.com:8443?q=1").unwrap();
        let r = &f.request;
        assert_eq!(
            (r.scheme.as_str(), r.host.as_str(), r.port, r.path.as_str()),
            ("https", "example.com", 8443, "/?q=1")
        );
        assert!(set_url(&mut f, "http://bad host/").is_err());
        assert!(set_url(&mut f, "ftp://h/").is_err());
    }

    #[test]
    fn block_specs() {
        let b = parse_block("/~D EXAMPLE.COM/404").unwrap();
        assert_eq!((b.filter.pattern(), b.status), ("~d example.com", 404));
        assert_eq!(parse_block("|~q| 444 ").unwrap().status, 444);
        assert!(parse_block("/~q/999").is_err());
        assert!(parse_block("/~q/x").is_err());
        assert!(parse_block("/~q").is_err());
        assert!(parse_block("/~q/404/x").is_err());
        // Only what follows the separator is lower-cased.
        assert!(parse_block("X~qX404").is_err());
    }

    #[test]
    fn escapes_as_python() {
        assert_eq!(
            escaped_str_to_bytes(r"a\nb\x41\101\\\q\0").unwrap(),
            b"a\nbAA\\\\q\0"
        );
        assert!(escaped_str_to_bytes(r"\x4").is_err());
        assert!(escaped_str_to_bytes("x\\").is_err());
    }

    #[test]
    fn specs_split_at_the_first_character() {
        let s = parse_spec("|~q|a|b|c").unwrap();
        assert!(s.filter.is_some());
        assert_eq!((s.subject.as_str(), s.replacement.as_str()), ("a", "b|c"));
        let s = parse_spec(":x:y").unwrap();
        assert!(s.filter.is_none());
        assert!(parse_spec("/only").is_err());
        assert!(parse_spec("").is_err());
        assert!(parse_spec("/~q&~s/a/b").is_err());
    }

    #[test]
    fn templates_as_python() {
        let re = python_bytes_regex(r"(?P<k>\w+)=(\d+)", b's', false).unwrap();
        let t = parse_template(br"\2:\g<k>:\g<1>\n\\").unwrap();
        assert_eq!(sub_bytes(&re, &t, b"a=1 b=2"), b"1:a:a\n\\ 2:b:b\n\\");
        assert!(parse_template(br"\q").is_err());
        let t = parse_template(br"\3").unwrap();
        assert!(check_groups(&t, re.captures_len(), re.capture_names()).is_err());
    }
}
