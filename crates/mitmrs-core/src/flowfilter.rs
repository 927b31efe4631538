//! Flow filter expressions: mitmproxy's filter language (`~d example.com & !~c
//! 200`), for the command line's filter argument and the `dumper_filter`,
//! `save_stream_filter` and `readfile_filter` options.
//!
//! The parser is written by hand to accept exactly what mitmproxy 11's
//! pyparsing grammar accepts and to build the same tree, quirks included,
//! because users' saved expressions depend on them:
//!
//! * `!` binds tightest, then `&`, then `|`; expressions written side by side
//!   are and-ed *loosest of all*, and only at the top level: `a b | c` is
//!   `a & (b | c)`, and `(a b)` is an error;
//! * a `~code` must be followed by white space or the end: `~q&~s` and `(~q)`
//!   are errors (write `~q & ~s`, `( ~q )`);
//! * an unquoted regex runs up to white space, a parenthesis, `~` or a quote,
//!   so `a|b` is one regex, not `a | b`;
//! * quoted regexes lose their backslashes (`"\d"` is `d`; write `"\\d"`, or
//!   leave the regex unquoted), and `\t \n \f \r` and `\0` become the
//!   characters (see [`unquote`] for pyparsing's other escapes).
//!
//! Regexes are the `regex` crate's, translated from Python's spelling where
//! the two differ only in spelling ([`pyre`]). They match in linear time on
//! any input — a filter runs over request and response bodies from the
//! network, where Python's backtracking `re` can take exponential time — and
//! so refuse look-around and backreferences, with a message that says so.
//! Bodies are searched decoded (`Content-Encoding`), as mitmproxy's
//! `get_content(strict=False)`: a body that does not decode is searched raw.

mod pyre;

use std::fmt::Write as _;
use std::sync::Arc;

use crate::flow::HttpFlow;
use crate::headers::Headers;
use crate::message::{Request, Response};
use crate::options::{Options, OptionsError};

/// A compiled filter expression.
#[derive(Clone, Debug)]
pub struct Filter {
    pattern: String,
    root: Node,
}

/// Why an expression is not a filter. The text starts as mitmproxy's does
/// (`Invalid filter expression: '~q&~s'`) and goes on with what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(String);

impl Filter {
    /// Compiles `expr`.
    pub fn parse(expr: &str) -> Result<Filter, FilterError> {
        let root = compile(parse_syntax(expr)?, expr)?;
        Ok(Filter {
            pattern: expr.to_string(),
            root,
        })
    }

    /// The expression this filter was compiled from.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether `flow` matches.
    pub fn matches(&self, flow: &HttpFlow) -> bool {
        self.root.matches(flow)
    }

    /// The tree as mitmproxy's `dump()` prints it (class names, one per line,
    /// children indented by tabs): tests compare it with mitmproxy's.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        self.root.dump(0, &mut out);
        out
    }
}

/// A filter option (`dumper_filter`, `save_stream_filter`,
/// `readfile_filter`) as an addon holds it: set in `configure`, asked per
/// flow. Unset or empty: every flow passes.
pub struct FilterOption {
    name: &'static str,
    current: std::sync::RwLock<Option<Arc<Filter>>>,
}

impl FilterOption {
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            current: std::sync::RwLock::new(None),
        }
    }

    /// Compiles the option's new value if it is among `updated`; a bad
    /// expression is refused (the option's error names it and what is wrong)
    /// and the filter in force stays.
    pub fn configure(
        &self,
        options: &Options,
        updated: &std::collections::BTreeSet<String>,
    ) -> Result<(), OptionsError> {
        if !updated.contains(self.name) {
            return Ok(());
        }
        let filter = option_filter(options, self.name)?.map(Arc::new);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = filter;
        Ok(())
    }

    /// The filter in force, if any.
    pub fn get(&self) -> Option<Arc<Filter>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether `flow` passes (always, when no filter is set).
    pub fn allows(&self, flow: &HttpFlow) -> bool {
        self.get().is_none_or(|f| f.matches(flow))
    }
}

/// The filter the option `name` holds: `None` if it is unset or empty, the
/// option's error (naming it, and what is wrong) if it is not a filter.
pub fn option_filter(options: &Options, name: &str) -> Result<Option<Filter>, OptionsError> {
    match options.get_str(name).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(expr) => Filter::parse(&expr)
            .map(Some)
            .map_err(|e| OptionsError::Rejected {
                name: name.into(),
                message: e.to_string(),
            }),
    }
}

/// The filter codes without an argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unary {
    Asset,
    Error,
    Http,
    Marked,
    Replay,
    ReplayClient,
    ReplayServer,
    Request,
    Response,
    Tcp,
    Udp,
    Dns,
    WebSocket,
    All,
}

/// The filter codes that take a regex, and what each searches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RexKind {
    Body,
    BodyRequest,
    BodyResponse,
    ContentType,
    ContentTypeRequest,
    ContentTypeResponse,
    Domain,
    Dst,
    Head,
    HeadRequest,
    HeadResponse,
    Method,
    Src,
    Url,
    Meta,
    Marker,
    Comment,
}

/// Code, kind, mitmproxy's class name (for `dump`).
const UNARY: &[(&str, Unary, &str)] = &[
    ("a", Unary::Asset, "FAsset"),
    ("e", Unary::Error, "FErr"),
    ("http", Unary::Http, "FHTTP"),
    ("marked", Unary::Marked, "FMarked"),
    ("replay", Unary::Replay, "FReplay"),
    ("replayq", Unary::ReplayClient, "FReplayClient"),
    ("replays", Unary::ReplayServer, "FReplayServer"),
    ("q", Unary::Request, "FReq"),
    ("s", Unary::Response, "FResp"),
    ("tcp", Unary::Tcp, "FTCP"),
    ("udp", Unary::Udp, "FUDP"),
    ("dns", Unary::Dns, "FDNS"),
    ("websocket", Unary::WebSocket, "FWebSocket"),
    ("all", Unary::All, "FAll"),
];

/// Code, kind, mitmproxy's class name, and how mitmproxy compiles it.
const REX: &[(&str, RexKind, &str, Flags)] = &[
    ("b", RexKind::Body, "FBod", Flags::of(true, b's')),
    (
        "bq",
        RexKind::BodyRequest,
        "FBodRequest",
        Flags::of(true, b's'),
    ),
    (
        "bs",
        RexKind::BodyResponse,
        "FBodResponse",
        Flags::of(true, b's'),
    ),
    (
        "t",
        RexKind::ContentType,
        "FContentType",
        Flags::of(true, 0),
    ),
    (
        "tq",
        RexKind::ContentTypeRequest,
        "FContentTypeRequest",
        Flags::of(true, 0),
    ),
    (
        "ts",
        RexKind::ContentTypeResponse,
        "FContentTypeResponse",
        Flags::of(true, 0),
    ),
    ("d", RexKind::Domain, "FDomain", Flags::of(false, b'i')),
    ("dst", RexKind::Dst, "FDst", Flags::of(false, 0)),
    ("h", RexKind::Head, "FHead", Flags::of(true, b'm')),
    (
        "hq",
        RexKind::HeadRequest,
        "FHeadRequest",
        Flags::of(true, b'm'),
    ),
    (
        "hs",
        RexKind::HeadResponse,
        "FHeadResponse",
        Flags::of(true, b'm'),
    ),
    ("m", RexKind::Method, "FMethod", Flags::of(true, b'i')),
    ("src", RexKind::Src, "FSrc", Flags::of(false, 0)),
    ("u", RexKind::Url, "FUrl", Flags::of(false, b'i')),
    ("meta", RexKind::Meta, "FMeta", Flags::of(false, b'm')),
    ("marker", RexKind::Marker, "FMarker", Flags::of(false, 0)),
    (
        "comment",
        RexKind::Comment,
        "FComment",
        Flags::of(false, b'm'),
    ),
];

/// A regex's compile settings: bytes or text, and Python's flag.
#[derive(Clone, Copy, Debug)]
struct Flags {
    bytes: bool,
    ignore_case: bool,
    multi_line: bool,
    dot_all: bool,
}

impl Flags {
    /// `bytes`, and Python's one flag: `b'i'` IGNORECASE, `b'm'` MULTILINE,
    /// `b's'` DOTALL, 0 none.
    const fn of(bytes: bool, flag: u8) -> Flags {
        Flags {
            bytes,
            ignore_case: flag == b'i',
            multi_line: flag == b'm',
            dot_all: flag == b's',
        }
    }
}

/// How big a compiled program may grow (`regex`'s default; its lazy DFA keeps
/// its own default cache of 2 MiB per thread that searches).
const REGEX_SIZE: usize = 10 << 20;

/// A Python bytes pattern (`re.compile(b"...")`) as a `regex` one: Unicode off,
/// Python's spelling translated ([`pyre`]). `flag`: Python's one flag, `b'i'`,
/// `b'm'`, `b's'` or 0. `search`: the regex only searches (a bare `$` then
/// also matches before a final newline, as Python's; a substitution keeps
/// `regex`'s `$`, the very end). `Err`: why it cannot be used (Python's
/// reason, or `regex`'s: look-around and backreferences).
pub fn python_bytes_regex(
    pattern: &str,
    flag: u8,
    search: bool,
) -> Result<regex::bytes::Regex, String> {
    bytes_regex(pattern, Flags::of(true, flag), search)
}

/// A Python text pattern as a `regex` one (see [`python_bytes_regex`]).
pub fn python_text_regex(pattern: &str, flag: u8, search: bool) -> Result<regex::Regex, String> {
    text_regex(pattern, Flags::of(false, flag), search)
}

fn bytes_regex(pattern: &str, flags: Flags, search: bool) -> Result<regex::bytes::Regex, String> {
    let end_newline = search && !flags.multi_line;
    regex::bytes::RegexBuilder::new(&pyre::translate(pattern, true, end_newline)?)
        .unicode(false)
        .case_insensitive(flags.ignore_case)
        .multi_line(flags.multi_line)
        .dot_matches_new_line(flags.dot_all)
        .size_limit(REGEX_SIZE)
        .build()
        .map_err(regex_reason)
}

fn text_regex(pattern: &str, flags: Flags, search: bool) -> Result<regex::Regex, String> {
    let end_newline = search && !flags.multi_line;
    regex::RegexBuilder::new(&pyre::translate(pattern, false, end_newline)?)
        .case_insensitive(flags.ignore_case)
        .multi_line(flags.multi_line)
        .dot_matches_new_line(flags.dot_all)
        .size_limit(REGEX_SIZE)
        .build()
        .map_err(regex_reason)
}

/// The last line of `regex`'s message: what is wrong.
fn regex_reason(e: regex::Error) -> String {
    match e {
        regex::Error::Syntax(s) => s
            .lines()
            .last()
            .unwrap_or(&s)
            .trim_start_matches("error: ")
            .to_string(),
        other => other.to_string(),
    }
}

/// A compiled regex: over bytes (Unicode off, as Python's bytes patterns) or
/// over text.
#[derive(Clone, Debug)]
enum Rex {
    Bytes(regex::bytes::Regex),
    Text(regex::Regex),
}

impl Rex {
    /// Compiles a Python pattern; `Err`: why it cannot be used.
    fn compile(expr: &str, flags: Flags) -> Result<Rex, String> {
        if flags.bytes {
            bytes_regex(expr, flags, true).map(Rex::Bytes)
        } else {
            text_regex(expr, flags, true).map(Rex::Text)
        }
    }

    fn search(&self, hay: &[u8]) -> bool {
        match self {
            Rex::Bytes(r) => r.is_match(hay),
            // Text patterns only ever get text (`search_text`).
            Rex::Text(r) => std::str::from_utf8(hay).is_ok_and(|t| r.is_match(t)),
        }
    }

    fn search_text(&self, hay: &str) -> bool {
        match self {
            Rex::Bytes(r) => r.is_match(hay.as_bytes()),
            Rex::Text(r) => r.is_match(hay),
        }
    }
}

#[derive(Clone, Debug)]
enum Node {
    Unary(Unary),
    Rex {
        kind: RexKind,
        /// The expression as written (unquoted), for `dump`.
        expr: String,
        rex: Rex,
    },
    /// `~c`: the status code; `None` if the digits are beyond any status.
    Code(Option<u32>),
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
}

impl Node {
    fn matches(&self, f: &HttpFlow) -> bool {
        match self {
            Node::Unary(u) => unary(*u, f),
            Node::Rex { kind, rex, .. } => rex_matches(*kind, rex, f),
            Node::Code(c) => f
                .response
                .as_ref()
                .is_some_and(|r| Some(u32::from(r.status_code)) == *c),
            Node::And(items) => items.iter().all(|n| n.matches(f)),
            Node::Or(items) => items.iter().any(|n| n.matches(f)),
            Node::Not(n) => !n.matches(f),
        }
    }

    fn dump(&self, indent: usize, out: &mut String) {
        for _ in 0..indent {
            out.push('\t');
        }
        match self {
            Node::Unary(u) => {
                let name = UNARY.iter().find(|x| x.1 == *u).map_or("", |x| x.2);
                let _ = writeln!(out, "{name}");
            }
            Node::Rex { kind, expr, .. } => {
                let name = REX.iter().find(|x| x.1 == *kind).map_or("", |x| x.2);
                let _ = writeln!(out, "{name}{expr}");
            }
            Node::Code(_) => out.push_str("FCode\n"),
            Node::And(items) | Node::Or(items) => {
                out.push_str(if matches!(self, Node::And(_)) {
                    "FAnd\n"
                } else {
                    "FOr\n"
                });
                for n in items {
                    n.dump(indent + 1, out);
                }
            }
            Node::Not(n) => {
                out.push_str("FNot\n");
                n.dump(indent + 1, out);
            }
        }
    }
}

fn unary(u: Unary, f: &HttpFlow) -> bool {
    match u {
        Unary::Asset => f.response.as_ref().is_some_and(|r| {
            const ASSETS: [&[u8]; 7] = [
                b"text/javascript",
                b"application/x-javascript",
                b"application/javascript",
                b"text/css",
                b"image/",
                b"font/",
                b"application/font",
            ];
            content_types(&r.headers).any(|v| ASSETS.iter().any(|a| contains(v, a)))
        }),
        Unary::Error => f.error.is_some(),
        Unary::Http | Unary::All => true,
        Unary::Marked => !f.marked.is_empty(),
        Unary::Replay => f.is_replay.is_some(),
        Unary::ReplayClient => f.is_replay.as_deref() == Some("request"),
        Unary::ReplayServer => f.is_replay.as_deref() == Some("response"),
        Unary::Request => f.response.is_none(),
        Unary::Response => f.response.is_some(),
        // mitmrs's flows are HTTP flows (WebSocket ones included).
        Unary::Tcp | Unary::Udp | Unary::Dns => false,
        Unary::WebSocket => f.websocket.is_some(),
    }
}

fn rex_matches(kind: RexKind, rex: &Rex, f: &HttpFlow) -> bool {
    let req = &f.request;
    let resp = f.response.as_ref();
    let ws = |from_client: Option<bool>| {
        f.websocket.as_ref().is_some_and(|w| {
            w.messages
                .iter()
                .any(|m| from_client.is_none_or(|c| m.from_client == c) && rex.search(&m.content))
        })
    };
    match kind {
        RexKind::Body => {
            request_body(rex, req) || resp.is_some_and(|r| response_body(rex, r)) || ws(None)
        }
        RexKind::BodyRequest => request_body(rex, req) || ws(Some(true)),
        RexKind::BodyResponse => resp.is_some_and(|r| response_body(rex, r)) || ws(Some(false)),
        RexKind::ContentType => {
            content_type(rex, &req.headers) || resp.is_some_and(|r| content_type(rex, &r.headers))
        }
        RexKind::ContentTypeRequest => content_type(rex, &req.headers),
        RexKind::ContentTypeResponse => resp.is_some_and(|r| content_type(rex, &r.headers)),
        RexKind::Head => {
            rex.search(&header_block(&req.headers))
                || resp.is_some_and(|r| rex.search(&header_block(&r.headers)))
        }
        RexKind::HeadRequest => rex.search(&header_block(&req.headers)),
        RexKind::HeadResponse => resp.is_some_and(|r| rex.search(&header_block(&r.headers))),
        RexKind::Method => rex.search(req.method.as_bytes()),
        RexKind::Domain => rex.search_text(&req.host) || rex.search_text(&req.pretty_host()),
        RexKind::Url => rex.search_text(&req.pretty_url()),
        RexKind::Src => {
            let p = f.client_conn.peername;
            rex.search_text(&format!("{}:{}", p.ip(), p.port()))
        }
        RexKind::Dst => f
            .server_conn
            .address
            .as_ref()
            .is_some_and(|(h, p)| rex.search_text(&format!("{h}:{p}"))),
        RexKind::Meta => {
            let lines: Vec<String> = f
                .metadata
                .0
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}: {}",
                        crate::pyrepr::meta_str(k),
                        crate::pyrepr::meta_str(v)
                    )
                })
                .collect();
            rex.search_text(&lines.join("\n"))
        }
        RexKind::Marker => rex.search_text(&f.marked),
        RexKind::Comment => rex.search_text(&f.comment),
    }
}

/// The body as mitmproxy's `get_content(strict=False)` gives it: decoded, or
/// raw if it does not decode; `None` if there is none (streamed, not stored).
fn body(
    decoded: Result<Option<bytes::Bytes>, crate::encoding::EncodingError>,
    raw: &Option<bytes::Bytes>,
) -> Option<bytes::Bytes> {
    decoded.unwrap_or_else(|_| raw.clone())
}

fn request_body(rex: &Rex, r: &Request) -> bool {
    body(r.content(), &r.content).is_some_and(|b| rex.search(&b))
}

fn response_body(rex: &Rex, r: &Response) -> bool {
    body(r.content(), &r.content).is_some_and(|b| rex.search(&b))
}

/// The values of the `content-type` fields.
fn content_types(h: &Headers) -> impl Iterator<Item = &[u8]> {
    h.fields()
        .iter()
        .filter(|f| f.0.eq_ignore_ascii_case(b"content-type"))
        .map(|f| &f.1[..])
}

fn content_type(rex: &Rex, h: &Headers) -> bool {
    content_types(h).any(|v| rex.search(v))
}

/// The fields as mitmproxy's `bytes(headers)`: `name: value\r\n` each.
fn header_block(h: &Headers) -> Vec<u8> {
    let mut out = Vec::new();
    for f in h.fields() {
        out.extend_from_slice(&f.0);
        out.extend_from_slice(b": ");
        out.extend_from_slice(&f.1);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// What mitmproxy's grammar makes of an expression, before its regexes are
/// compiled: [`Filter::parse`] compiles them with the `regex` crate, the
/// Python bridge with Python's `re` (so scripts' `flowfilter.parse` is
/// mitmproxy's to the regex).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Syntax {
    And(Vec<Syntax>),
    Or(Vec<Syntax>),
    Not(Box<Syntax>),
    /// A code without an argument: `q` for `~q`.
    Unary(&'static str),
    /// A code and its regex (unquoted); a bare regex is `u`.
    Rex(&'static str, String),
    /// `~c` and its digits.
    Code(String),
}

/// Parses `expr` as mitmproxy's grammar does, without compiling its regexes.
pub fn parse_syntax(expr: &str) -> Result<Syntax, FilterError> {
    if expr.is_empty() {
        return Err(FilterError("Empty filter expression".into()));
    }
    // pyparsing parses `expandtabs()` of the text (a tab in a quoted regex is
    // spaces up to the next multiple of 8).
    let expanded = expand_tabs(expr);
    Parser {
        s: &expanded,
        b: expanded.as_bytes(),
        orig: expr,
        depth: 0,
        furthest: 0,
    }
    .top()
}

/// Python's `str.expandtabs()`: a tab becomes spaces up to the next column
/// that is a multiple of 8; columns count characters and restart after `\n`
/// or `\r`.
fn expand_tabs(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('\t') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    let mut col = 0;
    for c in s.chars() {
        match c {
            '\t' => {
                let n = 8 - col % 8;
                out.extend(std::iter::repeat_n(' ', n));
                col += n;
            }
            '\n' | '\r' => {
                out.push(c);
                col = 0;
            }
            c => {
                out.push(c);
                col += 1;
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The filter for a parsed expression (`whole`: its text, for messages).
fn compile(s: Syntax, whole: &str) -> Result<Node, FilterError> {
    let all = |v: Vec<Syntax>| -> Result<Vec<Node>, FilterError> {
        v.into_iter().map(|x| compile(x, whole)).collect()
    };
    Ok(match s {
        Syntax::And(v) => Node::And(all(v)?),
        Syntax::Or(v) => Node::Or(all(v)?),
        Syntax::Not(x) => Node::Not(Box::new(compile(*x, whole)?)),
        Syntax::Unary(code) => Node::Unary(
            UNARY
                .iter()
                .find(|x| x.0 == code)
                .map_or(Unary::All, |x| x.1),
        ),
        Syntax::Code(digits) => Node::Code(digits.parse().ok()),
        Syntax::Rex(code, expr) => {
            let Some(&(_, kind, _, flags)) = REX.iter().find(|x| x.0 == code) else {
                return Err(FilterError(format!("unknown filter code ~{code}")));
            };
            match Rex::compile(&expr, flags) {
                Ok(rex) => Node::Rex { kind, expr, rex },
                Err(why) => {
                    return Err(FilterError(format!(
                        "Invalid filter expression: {}: the regular expression {} cannot be used: {why} \
                         (mitmrs matches in linear time: no look-around, backreferences or atomic groups)",
                        crate::pyrepr::py_str_repr(whole),
                        crate::pyrepr::py_str_repr(&expr),
                    )))
                }
            }
        }
    })
}

/// How deep `!` and parentheses may nest.
const MAX_DEPTH: usize = 100;

/// A parse step: `Ok(None)` when the rule does not match here (the caller
/// tries what else the grammar allows), `Err` when the expression cannot be a
/// filter at all (nesting too deep).
type Step<T> = Result<Option<(T, usize)>, FilterError>;

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    /// The expression as given (`s` has its tabs expanded), for messages.
    orig: &'a str,
    depth: usize,
    /// The furthest position a token was looked for, for the message.
    furthest: usize,
}

impl Parser<'_> {
    fn ws(&mut self, mut p: usize) -> usize {
        while p < self.b.len() && matches!(self.b[p], b' ' | b'\t' | b'\n' | b'\r') {
            p += 1;
        }
        self.furthest = self.furthest.max(p);
        p
    }

    /// Expressions side by side, and-ed; then only white space.
    fn top(&mut self) -> Result<Syntax, FilterError> {
        let mut items = Vec::new();
        let mut p = 0;
        while let Some((n, q)) = self.or_expr(p)? {
            items.push(n);
            p = q;
        }
        let end = self.ws(p);
        if items.is_empty() || end != self.b.len() {
            return Err(self.syntax_error());
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Syntax::And(items)
        })
    }

    fn or_expr(&mut self, p: usize) -> Step<Syntax> {
        self.binary(p, b'|', Self::and_expr, Syntax::Or)
    }

    fn and_expr(&mut self, p: usize) -> Step<Syntax> {
        self.binary(p, b'&', Self::not_expr, Syntax::And)
    }

    /// `operand (op operand)*`, a list node if there is more than one.
    fn binary(
        &mut self,
        p: usize,
        op: u8,
        operand: fn(&mut Self, usize) -> Step<Syntax>,
        list: fn(Vec<Syntax>) -> Syntax,
    ) -> Step<Syntax> {
        let Some((first, mut q)) = operand(self, p)? else {
            return Ok(None);
        };
        let mut items = vec![first];
        loop {
            let r = self.ws(q);
            if self.b.get(r) != Some(&op) {
                break;
            }
            match operand(self, r + 1)? {
                Some((n, next)) => {
                    items.push(n);
                    q = next;
                }
                None => break,
            }
        }
        Ok(Some(if items.len() == 1 {
            (items.remove(0), q)
        } else {
            (list(items), q)
        }))
    }

    fn not_expr(&mut self, p: usize) -> Step<Syntax> {
        let r = self.ws(p);
        if self.b.get(r) == Some(&b'!') {
            self.enter()?;
            let inner = self.not_expr(r + 1)?;
            self.depth -= 1;
            if let Some((n, q)) = inner {
                return Ok(Some((Syntax::Not(Box::new(n)), q)));
            }
        }
        self.operand(p)
    }

    /// An atom, or `( expression )`.
    fn operand(&mut self, p: usize) -> Step<Syntax> {
        if let Some(x) = self.atom(p)? {
            return Ok(Some(x));
        }
        let r = self.ws(p);
        if self.b.get(r) != Some(&b'(') {
            return Ok(None);
        }
        self.enter()?;
        let inner = self.or_expr(r + 1)?;
        self.depth -= 1;
        if let Some((n, q)) = inner {
            let q = self.ws(q);
            if self.b.get(q) == Some(&b')') {
                return Ok(Some((n, q + 1)));
            }
        }
        Ok(None)
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FilterError(format!(
                "Invalid filter expression: {}: nested more than {MAX_DEPTH} levels deep",
                crate::pyrepr::py_str_repr(self.orig)
            )));
        }
        Ok(())
    }

    /// `~code`, `~code regex`, `~c digits` or a bare regex (a URL filter).
    fn atom(&mut self, p: usize) -> Step<Syntax> {
        let r = self.ws(p);
        if r >= self.b.len() {
            return Ok(None);
        }
        if self.b[r] != b'~' {
            return Ok(self.regex(r).map(|(expr, q)| (Syntax::Rex("u", expr), q)));
        }
        // pyparsing's `Literal("~code") + WordEnd()`: the code must be followed
        // by something that is not printable ASCII (white space, the end).
        let end = r
            + 1
            + self.b[r + 1..]
                .iter()
                .position(|c| !(0x21..=0x7e).contains(c))
                .unwrap_or(self.b.len() - r - 1);
        let word = &self.s[r + 1..end];
        if let Some(u) = UNARY.iter().find(|x| x.0 == word) {
            return Ok(Some((Syntax::Unary(u.0), end)));
        }
        if let Some(x) = REX.iter().find(|x| x.0 == word) {
            return Ok(self.regex(end).map(|(expr, q)| (Syntax::Rex(x.0, expr), q)));
        }
        if word == "c" {
            let d = self.ws(end);
            let n = self.b[d..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if n > 0 {
                return Ok(Some((Syntax::Code(self.s[d..d + n].to_string()), d + n)));
            }
        }
        Ok(None)
    }

    /// A regex argument: unquoted up to white space, `(`, `)`, `~` or a quote;
    /// or in double or single quotes, unquoted as pyparsing does.
    fn regex(&mut self, p: usize) -> Option<(String, usize)> {
        let r = self.ws(p);
        let q = *self.b.get(r)?;
        if q == b'"' || q == b'\'' {
            return self.quoted(r, q);
        }
        let n = self.s[r..]
            .find(|c: char| "()~'\" \t\n\r".contains(c))
            .unwrap_or(self.s.len() - r);
        (n > 0).then(|| (self.s[r..r + n].to_string(), r + n))
    }

    /// pyparsing's `QuotedString(q, esc_char="\\")` at `r`.
    fn quoted(&self, r: usize, q: u8) -> Option<(String, usize)> {
        let mut i = r + 1;
        loop {
            match *self.b.get(i)? {
                c if c == q => break,
                b'\n' | b'\r' => return None,
                // An escape takes the next character, except a newline.
                b'\\' => match self.s[i + 1..].chars().next()? {
                    '\n' => return None,
                    c => i += 1 + c.len_utf8(),
                },
                _ => i += 1,
            }
        }
        Some((unquote(&self.s[r + 1..i]), i + 1))
    }

    fn syntax_error(&self) -> FilterError {
        let at = self.furthest.min(self.s.len());
        let rest: String = self.s[at..].chars().take(24).collect();
        let hint = "; a ~code needs white space after it (`~q & ~s`, `( ~q )`), a regex with white space, \
                    parentheses, `~` or quotes in it needs quotes (`~u \"a (b)\"`), and `& |` after a bare \
                    regex need white space before them";
        let near = if rest.is_empty() {
            "at the end".to_string()
        } else {
            format!("near {}", crate::pyrepr::py_str_repr(&rest))
        };
        FilterError(format!(
            "Invalid filter expression: {} ({near}{hint})",
            crate::pyrepr::py_str_repr(self.orig)
        ))
    }
}

/// A quoted string's inside as pyparsing 3.2 unquotes it: `\t \n \f \r`
/// become the character, `\0` a NUL, any other escaped character stands for
/// itself. pyparsing means to turn `\NNN`, `\xNN` and `\uNNNN` into
/// characters too, but its pattern is an f-string where `{3}` is the digit 3:
/// what it does is `\x` + hex digit + `2` and `\u` + hex digit + `4` to the
/// character with those two hex digits (`\x42` is `B`, `\x41` stays `x41`),
/// and octal digit + `3` to those two characters (`\13` is `13`). Done the
/// same here, so a quoted expression means what it means in mitmproxy.
fn unquote(inner: &str) -> String {
    let c: Vec<char> = inner.chars().collect();
    let mut out = String::with_capacity(inner.len());
    let mut i = 0;
    while i < c.len() {
        if c[i] != '\\' || i + 1 >= c.len() {
            out.push(c[i]);
            i += 1;
            continue;
        }
        let n = c[i + 1];
        let d2 = c.get(i + 2).copied();
        let d3 = c.get(i + 3).copied();
        let hex_then = |last: char| d2.filter(|d| d.is_ascii_hexdigit() && d3 == Some(last));
        match n {
            't' => out.push('\t'),
            'n' => out.push('\n'),
            'f' => out.push('\u{c}'),
            'r' => out.push('\r'),
            '0'..='7' if d2 == Some('3') => {
                out.push(n);
                out.push('3');
                i += 3;
                continue;
            }
            '0' => out.push('\0'),
            'x' | 'u' if hex_then(if n == 'x' { '2' } else { '4' }).is_some() => {
                let hi = d2.and_then(|d| d.to_digit(16)).unwrap_or(0);
                let lo = if n == 'x' { 2 } else { 4 };
                // Below 0x100: always a character.
                out.push(char::from_u32(hi * 16 + lo).unwrap_or('\u{fffd}'));
                i += 4;
                continue;
            }
            other => out.push(other),
        }
        i += 2;
    }
    out
}

#[cfg(test)]
mod tests;
