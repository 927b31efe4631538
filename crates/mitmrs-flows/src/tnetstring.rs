//! tnetstrings, the encoding of mitmproxy's flow files.
//!
//! Each value is `LENGTH:PAYLOAD TAG`: the payload's byte length in decimal, a
//! colon, the payload, and one tag byte naming the type: `,` bytes, `;` text
//! (UTF-8), `#` integer, `^` float, `!` boolean, `~` null, `]` list, `}` dict
//! (alternating keys and values). A flow file is a sequence of top-level dicts.
//!
//! Written by hand: no maintained crate speaks mitmproxy's dialect (the `;` text
//! tag and `^` floats are its extensions), and the format is 200 lines. Decoding
//! is sans-IO over a [`Bytes`] buffer, so byte strings (bodies, header values)
//! are slices of the record, not copies; it never panics on any input (property
//! tests below and the `flowfile` fuzz target in `../fuzz`), and nesting is
//! limited to [`MAX_DEPTH`].

use std::fmt;

use mitmrs_core::pyrepr::PyFloat;
use std::ops::Deref;

use bytes::Bytes;

/// Deepest nesting [`decode`] accepts. A flow is 4 levels deep plus its metadata.
pub const MAX_DEPTH: usize = 64;

/// A decoded tnetstring value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer beyond 64 bits, as its decimal digits (Python ints have no
    /// limit; kept as written so a re-save does not change it).
    BigInt(String),
    Float(f64),
    Bytes(Bytes),
    Str(Text),
    List(Vec<Value>),
    /// Key/value pairs in file order (mitmproxy writes dicts in insertion order).
    Dict(Vec<(Value, Value)>),
}

impl Value {
    pub fn str(s: impl Into<Text>) -> Value {
        Value::Str(s.into())
    }

    /// The type's name as a mitmproxy user knows it, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Bytes(_) => "bytes",
            Value::Str(_) => "str",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
        }
    }

    /// The value of `key` in a dict whose keys are text or bytes (old files used
    /// bytes keys).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items.iter().find(|(k, _)| k.key_is(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    /// This is a dict key equal to `key` (text or bytes).
    pub fn key_is(&self, key: &str) -> bool {
        match self {
            Value::Str(s) => s == key,
            Value::Bytes(b) => b.as_ref() == key.as_bytes(),
            _ => false,
        }
    }
}

/// The text of a [`Value::Str`]: UTF-8 held in [`Bytes`], so a decoded text is
/// a slice of the record (no allocation, no copy) and a static one costs nothing.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Text(Bytes);

impl Text {
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor takes a `str` or checks the bytes are UTF-8.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// `bytes` as text, if they are UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Result<Text, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Text(bytes))
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&'static str> for Text {
    fn from(s: &'static str) -> Text {
        Text(Bytes::from_static(s.as_bytes()))
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(Bytes::from(s))
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a buffer is not a valid tnetstring.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the data ends inside a value (needs {needed} more bytes)")]
    Truncated { needed: usize },
    #[error("byte {offset}: {what}")]
    Invalid { offset: usize, what: String },
}

fn invalid(offset: usize, what: impl Into<String>) -> DecodeError {
    DecodeError::Invalid {
        offset,
        what: what.into(),
    }
}

/// Reads the `LENGTH:` prefix at the start of `buf`: the payload length and the
/// prefix's own length, or `Ok(None)` if `buf` ends inside the prefix.
pub fn parse_prefix(buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut len: usize = 0;
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b'0'..=b'9' if i < 20 => {
                len = len
                    .checked_mul(10)
                    .and_then(|l| l.checked_add(usize::from(b - b'0')))
                    .ok_or_else(|| invalid(0, "the length prefix overflows"))?;
            }
            b':' if i > 0 => return Ok(Some((len, i + 1))),
            _ if i == 0 => {
                return Err(invalid(
                    0,
                    format!("expected a length digit, found {}", show_byte(b)),
                ))
            }
            _ => {
                return Err(invalid(
                    i,
                    format!(
                        "expected a digit or ':' in the length prefix, found {}",
                        show_byte(b)
                    ),
                ))
            }
        }
    }
    Ok(None)
}

/// The common case of [`parse_prefix`] (up to 10 digits and the colon),
/// without its error reporting: `None` means "ask `parse_prefix`".
#[inline]
pub(crate) fn short_prefix(buf: &[u8]) -> Option<(usize, usize)> {
    // Most values of a flow are shorter than 100 bytes.
    if let [d0, c1, c2, ..] = *buf {
        if d0.is_ascii_digit() {
            if c1 == b':' {
                return Some((usize::from(d0 - b'0'), 2));
            }
            if c1.is_ascii_digit() && c2 == b':' {
                return Some((usize::from(d0 - b'0') * 10 + usize::from(c1 - b'0'), 3));
            }
        }
    }
    let mut len = 0usize;
    for (i, &b) in buf.iter().take(11).enumerate() {
        match b {
            b'0'..=b'9' if i < 10 => len = len * 10 + usize::from(b - b'0'),
            b':' if i > 0 => return Some((len, i + 1)),
            _ => return None,
        }
    }
    None
}

fn show_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}

/// Decodes one value from the start of `buf`; returns it and the bytes it used.
pub fn decode(buf: &Bytes) -> Result<(Value, usize), DecodeError> {
    decode_limited(buf, usize::MAX)
}

/// [`decode`], refusing a value made of more than `max_values` values in all
/// (a list of ten million nulls is 30 MB of file but 300 MB of [`Value`]s).
pub fn decode_limited(buf: &Bytes, max_values: usize) -> Result<(Value, usize), DecodeError> {
    let (tape, used) = Tape::decode_prefix(buf.clone(), max_values)?;
    Ok((tape.root().to_value()?, used))
}

/// A value decoded as a flat list of nodes in pre-order, each naming where its
/// payload lies in the buffer, with no tree of [`Value`]s built. Decoding
/// checks the structure (lengths, tags, nesting, the value budget); a scalar's
/// text (UTF-8, digits) is checked when it is read, so the fields nobody reads
/// cost nothing. Building the tape of a 1.9 KB flow record takes about a sixth
/// of the time its [`Value`] tree took (1.8 against 11 µs on this machine).
pub struct Tape {
    buf: Bytes,
    nodes: Vec<Node>,
}

#[derive(Clone, Copy, Debug)]
struct Node {
    tag: u8,
    /// The payload: `buf[start..end]`; the tag byte is at `end`.
    start: usize,
    end: usize,
    /// The index of the node after this one's subtree (its next sibling).
    next: u32,
}

impl Tape {
    /// Decodes `buf`, which must hold exactly one value.
    pub fn decode(buf: Bytes, max_values: usize) -> Result<Tape, DecodeError> {
        let len = buf.len();
        let (tape, used) = Tape::decode_prefix(buf, max_values)?;
        if used != len {
            return Err(invalid(used, "data after the end of the value"));
        }
        Ok(tape)
    }

    /// A tape with no value, to [`Tape::decode_again`] into (its `root`
    /// must not be read before that succeeds).
    pub(crate) fn empty() -> Tape {
        Tape {
            buf: Bytes::new(),
            nodes: Vec::new(),
        }
    }

    /// Decodes the value at the start of `buf`; returns it and the bytes it used.
    pub fn decode_prefix(buf: Bytes, max_values: usize) -> Result<(Tape, usize), DecodeError> {
        let mut tape = Tape::empty();
        let used = tape.decode_prefix_again(buf, max_values)?;
        Ok((tape, used))
    }

    /// [`Tape::decode`] into this tape, reusing its node storage: a reader
    /// decoding record after record allocates it once, not per record. On an
    /// error the tape is left empty, and its root must not be read.
    pub(crate) fn decode_again(
        &mut self,
        buf: Bytes,
        max_values: usize,
    ) -> Result<(), DecodeError> {
        let len = buf.len();
        let used = self.decode_prefix_again(buf, max_values)?;
        if used != len {
            self.clear();
            return Err(invalid(used, "data after the end of the value"));
        }
        Ok(())
    }

    fn decode_prefix_again(&mut self, buf: Bytes, max_values: usize) -> Result<usize, DecodeError> {
        // A flow record has a value per ~11 bytes; room for that up front (up
        // to 64 Ki nodes) saves the growing. Storage kept from a huge record
        // is given back.
        let guess = (buf.len() / 11).clamp(8, 1 << 16);
        self.nodes.clear();
        if self.nodes.capacity() > 4 * guess.max(1 << 12) {
            self.nodes = Vec::new();
        }
        self.nodes.reserve(guess);
        self.buf = buf;
        let used = self.parse(self.buf.len(), max_values);
        if used.is_err() {
            self.clear();
        }
        used
    }

    fn clear(&mut self) {
        self.buf = Bytes::new();
        self.nodes.clear();
    }

    /// Lets go of the last record (its bytes, and node storage beyond what a
    /// usual record needs), for a reader that will not decode again soon.
    pub(crate) fn release(&mut self) {
        if !self.buf.is_empty() {
            self.clear();
            if self.nodes.capacity() > 1 << 12 {
                self.nodes = Vec::new();
            }
        }
    }

    /// The outermost value.
    pub fn root(&self) -> Item<'_> {
        Item { tape: self, i: 0 }
    }

    /// Decodes the value at the start of the buffer, which must end before
    /// `limit`, with at most `max_values` values; returns the bytes it used.
    /// A loop with a stack of the open lists and dicts, not recursion: a
    /// record has ~170 values, and a call per value (with its `Result` and
    /// error mapping) cost a fifth more. What the loop touches per value is
    /// kept in locals (the innermost open value's end and child count), not
    /// read back from the stack, and short length prefixes are read without
    /// a loop: ~95 → ~75 instructions per value (callgrind).
    fn parse(&mut self, limit: usize, max_values: usize) -> Result<usize, DecodeError> {
        /// A list or dict whose children are being read.
        #[derive(Clone, Copy)]
        struct Open {
            index: usize,
            /// Its payload's end: where its tag byte is.
            end: usize,
            /// Its children so far, saved while a child of it is open.
            children: usize,
        }
        let Tape { buf, nodes } = self;
        let buf: &[u8] = buf;
        let mut open = [Open {
            index: 0,
            end: 0,
            children: 0,
        }; MAX_DEPTH];
        let mut depth = 0usize;
        let mut pos = 0usize;
        // Of the innermost open list or dict (`limit` and unused at depth 0).
        let mut lim = limit;
        let mut children = 0usize;
        let max_nodes = max_values.min(u32::MAX as usize);
        loop {
            let index = nodes.len();
            if index >= max_nodes {
                return Err(if index >= max_values {
                    invalid(
                        pos,
                        "more values than a flow of this size can plausibly hold",
                    )
                } else {
                    invalid(pos, "too many values")
                });
            }
            // A child that claims more than its parent holds is invalid,
            // not truncated.
            let truncated = |needed: usize| {
                if depth == 0 {
                    DecodeError::Truncated { needed }
                } else {
                    invalid(pos, "an element runs past the end of its list or dict")
                }
            };
            let (len, prefix) = match short_prefix(&buf[pos..lim]) {
                Some(p) => p,
                None => match parse_prefix(&buf[pos..lim]) {
                    Ok(Some(p)) => p,
                    Ok(None) => return Err(truncated(1)),
                    Err(DecodeError::Invalid { offset, what }) => {
                        return Err(invalid(offset + pos, what))
                    }
                    Err(e) => return Err(e),
                },
            };
            let body_start = pos + prefix;
            let end = body_start
                .checked_add(len)
                .ok_or_else(|| invalid(pos, "the length prefix overflows"))?;
            if end >= lim {
                return Err(truncated(end + 1 - lim));
            }
            let tag = buf[end];
            children += 1;
            match tag {
                b',' | b';' | b'#' | b'^' | b'!' => {}
                b'~' if len == 0 => {}
                b'~' => return Err(invalid(body_start, "a null has a payload")),
                b']' | b'}' => {
                    if depth >= MAX_DEPTH {
                        return Err(invalid(
                            pos,
                            format!("nested deeper than {MAX_DEPTH} levels"),
                        ));
                    }
                    nodes.push(Node {
                        tag,
                        start: body_start,
                        end,
                        next: 0,
                    });
                    if depth > 0 {
                        open[depth - 1].children = children;
                    }
                    open[depth] = Open {
                        index,
                        end,
                        children: 0,
                    };
                    depth += 1;
                    (pos, lim, children) = (body_start, end, 0);
                }
                other => {
                    return Err(invalid(
                        end,
                        format!("unknown type tag {}", show_byte(other)),
                    ))
                }
            }
            // Pushed here and in the list/dict arm above, after the tag is
            // known good: one push before the `match` measured ~1.2k more
            // instructions per flow record (callgrind).
            if !matches!(tag, b']' | b'}') {
                nodes.push(Node {
                    tag,
                    start: body_start,
                    end,
                    next: index as u32 + 1,
                });
                pos = end + 1;
            }
            // Close the lists and dicts that end here.
            while depth > 0 && pos == lim {
                let o = open[depth - 1];
                let next = nodes.len() as u32;
                let node = &mut nodes[o.index];
                if node.tag == b'}' && !children.is_multiple_of(2) {
                    return Err(invalid(node.start, "a dict has a key without a value"));
                }
                node.next = next;
                depth -= 1;
                pos = o.end + 1;
                (lim, children) = match depth {
                    0 => (limit, 0),
                    d => (open[d - 1].end, open[d - 1].children),
                };
            }
            if depth == 0 {
                return Ok(pos);
            }
        }
    }
}

/// One value in a [`Tape`].
#[derive(Clone, Copy)]
pub struct Item<'t> {
    tape: &'t Tape,
    i: u32,
}

/// The forms of an unset field, for [`Item::skip_plain_fields`].
#[derive(Clone, Copy, Debug)]
pub enum Plain {
    Null,
    EmptyList,
    False,
}

/// A value of a [`Tape`] with its scalar read; lists and dicts stay items.
#[derive(Clone, Copy, Debug)]
pub enum Shallow<'t> {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer beyond 64 bits, as its decimal digits.
    BigInt(&'t str),
    Float(f64),
    Bytes(&'t [u8]),
    Str(&'t str),
    List(Item<'t>),
    Dict(Item<'t>),
}

impl Shallow<'_> {
    /// The type's name as a mitmproxy user knows it, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Shallow::Null => "None",
            Shallow::Bool(_) => "bool",
            Shallow::Int(_) | Shallow::BigInt(_) => "int",
            Shallow::Float(_) => "float",
            Shallow::Bytes(_) => "bytes",
            Shallow::Str(_) => "str",
            Shallow::List(_) => "list",
            Shallow::Dict(_) => "dict",
        }
    }
}

impl fmt::Debug for Item<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Item({})", self.i)
    }
}

impl<'t> Item<'t> {
    fn node(&self) -> Node {
        self.tape.nodes[self.i as usize]
    }

    #[inline]
    fn payload(&self) -> &'t [u8] {
        let n = self.node();
        &self.tape.buf[n.start..n.end]
    }

    /// The payload as a slice of the buffer (no copy).
    #[inline]
    pub fn bytes(&self) -> Bytes {
        let n = self.node();
        self.tape.buf.slice(n.start..n.end)
    }

    /// The value, its scalar read (and checked) now.
    #[inline]
    pub fn get(&self) -> Result<Shallow<'t>, DecodeError> {
        let n = self.node();
        let payload = self.payload();
        let bad = |what: &str| invalid(n.start, what.to_string());
        Ok(match n.tag {
            b',' => Shallow::Bytes(payload),
            b';' => Shallow::Str(match ascii(payload) {
                Some(s) => s,
                None => std::str::from_utf8(payload)
                    .map_err(|_| bad("a text value (';') is not valid UTF-8"))?,
            }),
            b'#' => {
                let s = match ascii(payload) {
                    Some(s) => s,
                    None => {
                        std::str::from_utf8(payload).map_err(|_| bad("an integer is not ASCII"))?
                    }
                };
                match s.parse() {
                    Ok(i) => Shallow::Int(i),
                    Err(_) if is_big_int(s) => Shallow::BigInt(s),
                    Err(_) => return Err(bad(&format!("{s:?} is not an integer"))),
                }
            }
            b'^' => {
                if let Some(x) = fast_float(payload) {
                    return Ok(Shallow::Float(x));
                }
                let s = match ascii(payload) {
                    Some(s) => s,
                    None => {
                        std::str::from_utf8(payload).map_err(|_| bad("a float is not ASCII"))?
                    }
                };
                Shallow::Float(
                    s.parse()
                        .map_err(|_| bad(&format!("{s:?} is not a float")))?,
                )
            }
            b'!' => match payload {
                b"true" => Shallow::Bool(true),
                b"false" => Shallow::Bool(false),
                _ => return Err(bad("a boolean is neither 'true' nor 'false'")),
            },
            b']' => Shallow::List(*self),
            b'}' => Shallow::Dict(*self),
            _ => Shallow::Null,
        })
    }

    /// How many values a list or dict holds, nested ones included (0 for a
    /// scalar): a bound for sizing what is read from it.
    pub fn descendants(&self) -> usize {
        (self.node().next - self.i).saturating_sub(1) as usize
    }

    /// The payload of a bytes value, or of a text value that is valid
    /// UTF-8, as a slice of the buffer; `None` for anything else. What
    /// [`Item::get`] then [`Item::bytes`] give, with the node read once.
    #[inline]
    pub fn bytes_or_text(&self) -> Option<Bytes> {
        let n = self.node();
        let ok = match n.tag {
            b',' => true,
            b';' => {
                let p = &self.tape.buf[n.start..n.end];
                p.is_ascii() || std::str::from_utf8(p).is_ok()
            }
            _ => false,
        };
        ok.then(|| self.tape.buf.slice(n.start..n.end))
    }

    /// The payload of a bytes or text value, its UTF-8 not checked (for a
    /// caller that accepts only ASCII); `None` for anything else.
    #[inline]
    pub fn bytes_or_text_unchecked(&self) -> Option<&'t [u8]> {
        let n = self.node();
        matches!(n.tag, b',' | b';').then(|| &self.tape.buf[n.start..n.end])
    }

    /// The two items of a list of exactly two scalars (a header's
    /// `[name, value]`), found without iterating.
    #[inline]
    pub fn scalar_pair(&self) -> Option<(Item<'t>, Item<'t>)> {
        let i = self.i as usize;
        let nodes = &self.tape.nodes;
        let (list, first) = (nodes.get(i)?, nodes.get(i + 1)?);
        (list.tag == b']' && list.next as usize == i + 3 && first.next as usize == i + 2).then(
            || {
                (
                    Item {
                        tape: self.tape,
                        i: self.i + 1,
                    },
                    Item {
                        tape: self.tape,
                        i: self.i + 2,
                    },
                )
            },
        )
    }

    /// The items of a list, or the keys and values of a dict, alternating;
    /// nothing for a scalar.
    pub fn children(&self) -> impl Iterator<Item = Item<'t>> + 't {
        let n = self.node();
        let tape = self.tape;
        let mut i = match n.tag {
            b']' | b'}' => self.i + 1,
            _ => n.next,
        };
        std::iter::from_fn(move || {
            (i < n.next).then(|| {
                let item = Item { tape, i };
                i = tape.nodes[i as usize].next;
                item
            })
        })
    }

    /// The value of `key` in a dict whose keys are text or bytes (old files
    /// used bytes keys); compared as bytes, nothing decoded.
    pub fn field(&self, key: &str) -> Option<Item<'t>> {
        self.field_from(key, &mut 0)
    }

    /// [`Item::field`], searching from the pair after the one found last
    /// (`hint`, updated) round to it: fields read in file order are found at
    /// once instead of by a scan from the start each time.
    #[inline]
    pub fn field_from(&self, key: &str, hint: &mut u32) -> Option<Item<'t>> {
        let dict = self.tape.nodes[self.i as usize];
        if dict.tag != b'}' {
            return None;
        }
        let (first, end) = (self.i + 1, dict.next);
        let start = if (first..end).contains(hint) {
            *hint
        } else {
            first
        };
        // Most lookups are of the pair at the hint (fields read in file order).
        let nodes = &self.tape.nodes;
        if let Some(k) = nodes.get(start as usize) {
            let v = k.next;
            if k.end - k.start == key.len()
                && matches!(k.tag, b';' | b',')
                && same_key(&self.tape.buf[k.start..k.end], key.as_bytes())
                && v < end
            {
                *hint = nodes.get(v as usize).map_or(end, |n| n.next);
                return Some(Item {
                    tape: self.tape,
                    i: v,
                });
            }
        }
        let found = self
            .scan(key.as_bytes(), start, end)
            .or_else(|| self.scan(key.as_bytes(), first, start));
        let (next, value) = found?;
        *hint = next;
        Some(Item {
            tape: self.tape,
            i: value,
        })
    }

    /// If the pairs of this dict from `*hint` on have exactly `fields`'
    /// keys, in that order, each with a value of the given [`Plain`] form:
    /// moves `hint` past them and returns true. Otherwise returns false and
    /// leaves `hint` as it was. A dict's run of unset fields (a plain
    /// connection's TLS block) is checked in a few instructions per field.
    pub fn skip_plain_fields(&self, fields: &[(&str, Plain)], hint: &mut u32) -> bool {
        let nodes = &self.tape.nodes;
        let Some(dict) = nodes.get(self.i as usize) else {
            return false;
        };
        // The hint must name one of this dict's pairs.
        if dict.tag != b'}' || *hint <= self.i {
            return false;
        }
        let mut i = *hint as usize;
        for (key, form) in fields {
            let (Some(k), Some(v)) = (nodes.get(i), nodes.get(i + 1)) else {
                return false;
            };
            let plain = match form {
                Plain::Null => v.tag == b'~',
                Plain::EmptyList => v.tag == b']' && v.start == v.end,
                Plain::False => v.tag == b'!' && &self.tape.buf[v.start..v.end] == b"false",
            };
            // A key is one node, and so is each plain value.
            if i + 1 >= dict.next as usize
                || !plain
                || k.next as usize != i + 1
                || v.next as usize != i + 2
                || !matches!(k.tag, b';' | b',')
                || !same_key(&self.tape.buf[k.start..k.end], key.as_bytes())
            {
                return false;
            }
            i += 2;
        }
        *hint = i as u32;
        true
    }

    /// Looks for `key` among the pairs whose keys lie at node indices
    /// `from..to`; returns the index after the pair and the value's index.
    fn scan(&self, key: &[u8], from: u32, to: u32) -> Option<(u32, u32)> {
        let (nodes, buf) = (&self.tape.nodes, &self.tape.buf);
        let mut i = from as usize;
        while i < to as usize {
            let k = nodes[i];
            let v = k.next as usize;
            let next = nodes.get(v).map_or(u32::MAX, |n| n.next);
            if k.end - k.start == key.len()
                && matches!(k.tag, b';' | b',')
                && same_key(&buf[k.start..k.end], key)
            {
                return Some((next, v as u32));
            }
            i = next as usize;
        }
        None
    }

    /// The whole value as a [`Value`] tree.
    pub fn to_value(&self) -> Result<Value, DecodeError> {
        Ok(match self.get()? {
            Shallow::Null => Value::Null,
            Shallow::Bool(b) => Value::Bool(b),
            Shallow::Int(i) => Value::Int(i),
            Shallow::BigInt(s) => Value::BigInt(s.to_owned()),
            Shallow::Float(x) => Value::Float(x),
            Shallow::Bytes(_) => Value::Bytes(self.bytes()),
            // Checked by `get` above.
            Shallow::Str(_) => Value::Str(Text(self.bytes())),
            Shallow::List(_) => Value::List(
                self.children()
                    .map(|c| c.to_value())
                    .collect::<Result<_, _>>()?,
            ),
            Shallow::Dict(_) => {
                let mut pairs = Vec::new();
                let mut it = self.children();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k.to_value()?, v.to_value()?));
                }
                Value::Dict(pairs)
            }
        })
    }
}

/// `a == b` for two slices of the same length, compared 8 bytes at a time
/// (the last word overlapping): for a flow's short keys this is a few
/// instructions where `==` calls `memcmp`.
#[inline]
fn same_key(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        if n < 4 {
            return a.iter().zip(b).all(|(x, y)| x == y);
        }
        let half = |s: &[u8], i: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&s[i..i + 4]);
            u32::from_ne_bytes(w)
        };
        return half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4);
    }
    let word = |s: &[u8], i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[i..i + 8]);
        u64::from_ne_bytes(w)
    };
    let mut i = 0;
    while i + 8 < n {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

/// `b` read as a float when it is `[-]DIGITS.DIGITS` with at most 19 digits
/// and a magnitude from 1 to 2^53 (a flow's timestamps, bar an unset 0.0):
/// the quotient of the digits and a power of ten, kept only when an exact
/// integer comparison proves it is the correctly rounded value; otherwise
/// (and for any other form) `None`, and `str::parse` decides. ~290
/// instructions per timestamp where the UTF-8 check and `str::parse` took
/// ~480.
pub(crate) fn fast_float(b: &[u8]) -> Option<f64> {
    let (neg, b) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    // At least a digit on each side of the dot; at most 19 digits (then
    // they fit a u64; 20 digits without a dot wrap, and are refused below).
    if !(3..=20).contains(&b.len()) {
        return None;
    }
    let (mut m, mut dot) = (0u64, usize::MAX);
    for (i, &c) in b.iter().enumerate() {
        let d = c.wrapping_sub(b'0');
        if d < 10 {
            m = m.wrapping_mul(10).wrapping_add(u64::from(d));
        } else if c == b'.' && dot == usize::MAX {
            dot = i;
        } else {
            return None;
        }
    }
    if dot == 0 || dot >= b.len() - 1 {
        return None;
    }
    let k = b.len() - 1 - dot;
    // 10^k for k ≤ 19 fits a u64 and is exact as an f64 (up to 10^22 is).
    const POW10: [u64; 20] = {
        let mut t = [1u64; 20];
        let mut i = 1;
        while i < 20 {
            t[i] = t[i - 1] * 10;
            i += 1;
        }
        t
    };
    let p = POW10[k];
    let x = m as f64 / p as f64;
    if !(1.0..9_007_199_254_740_992.0).contains(&x) {
        return None;
    }
    // x = a * 2^e with 2^52 <= a < 2^53 and -52 <= e <= 0. x is the correctly
    // rounded m / p when |m / p - a * 2^e| is below half a unit (2^e / 2),
    // that is, multiplying by p * 2^-e: 2 * |m * 2^-e - a * p| < p. At the
    // bottom of a binade (a = 2^52) the unit below is half as large: left to
    // `str::parse`, as is an exact tie.
    // The quotient of the rounded m is at most a unit or two away: its
    // neighbours are tried too.
    let bits = x.to_bits();
    let shift = 1075 - ((bits >> 52) & 0x7ff) as u32;
    let scaled = u128::from(m) << shift;
    let a0 = (bits & ((1 << 52) - 1)) | (1 << 52);
    for a in [a0, a0 - 1, a0 + 1, a0 - 2, a0 + 2] {
        let nearest = u128::from(a) * u128::from(p);
        if 2 * scaled.abs_diff(nearest) < u128::from(p) {
            // Same binade only (a = 2^52 is its bottom, see above).
            if a <= 1 << 52 || a >= 1 << 53 {
                return None;
            }
            let x = f64::from_bits(bits - a0 + a);
            return Some(if neg { -x } else { x });
        }
    }
    None
}

/// `b` as text if it is all ASCII (numbers, most names and ids): checked a
/// word at a time, where `str::from_utf8` costs ~80 instructions for a short
/// value; anything else goes through `from_utf8` as before.
#[inline]
pub(crate) fn ascii(b: &[u8]) -> Option<&str> {
    // SAFETY: ASCII is valid UTF-8.
    b.is_ascii()
        .then(|| unsafe { std::str::from_utf8_unchecked(b) })
}

/// Python's `int()` would read `s` (an optional sign, then digits).
fn is_big_int(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Appends the encoding of `v` to `out`.
pub fn encode(v: &Value, out: &mut Vec<u8>) {
    Writer::new(out).value(v);
}

/// The encoding of `v` as a new buffer.
pub fn to_vec(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode(v, &mut out);
    out
}

/// Writes tnetstrings front to back, straight from the caller's data (no
/// [`Value`] tree in between). A container's length prefix goes in front of
/// its payload when the container ends: the payload moves right by the
/// prefix's few bytes, once per level of nesting (a flow is 4 levels deep).
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

/// The digits [`Writer::list`] and [`Writer::dict`] leave room for: a flow's
/// dicts are 100–999 bytes long.
const GUESS: usize = 3;

/// The decimal digits of `n`.
#[inline]
fn digits(n: usize) -> usize {
    match n {
        0..=9 => 1,
        10..=99 => 2,
        _ => n.ilog10() as usize + 1,
    }
}

/// A dict key's whole tnetstring text (`7:content;`), built at compile time:
/// `w.key(key!("content"))` writes it with one fixed-size copy where
/// `w.str("content")` formats a prefix and calls `memcpy` (a flow has ~70
/// keys; ~65 → ~10 instructions each, callgrind).
macro_rules! key {
    ($k:literal) => {{
        const K: &[u8] = &$crate::tnetstring::key_text::<{ $crate::tnetstring::key_len($k) }>($k);
        K
    }};
}
pub(crate) use key;

/// The length of [`key!`]'s text for `k`: prefix, colon, `k`, tag.
pub(crate) const fn key_len(k: &str) -> usize {
    assert!(k.len() < 100, "a key! key is shorter than 100 bytes");
    k.len() + if k.len() >= 10 { 4 } else { 3 }
}

/// [`key!`]'s text for `k`, `N` being [`key_len`]`(k)`.
pub(crate) const fn key_text<const N: usize>(k: &str) -> [u8; N] {
    let k = k.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    if k.len() >= 10 {
        out[0] = b'0' + (k.len() / 10) as u8;
        i = 1;
    }
    out[i] = b'0' + (k.len() % 10) as u8;
    out[i + 1] = b':';
    let mut j = 0;
    while j < k.len() {
        out[i + 2 + j] = k[j];
        j += 1;
    }
    out[N - 1] = b';';
    out
}

impl<'a> Writer<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Writer { out }
    }

    #[inline]
    fn leaf(&mut self, payload: &[u8], tag: u8) {
        let n = payload.len();
        if n < 100 {
            // Room for all of it (a longer one's prefix makes room itself).
            self.out.reserve(n + 4);
        }
        self.prefix(n);
        self.out.extend_from_slice(payload);
        self.out.push(tag);
    }

    /// A key made by [`key!`].
    #[inline]
    pub fn key(&mut self, text: &[u8]) {
        self.out.extend_from_slice(text);
    }

    pub fn null(&mut self) {
        self.out.extend_from_slice(b"0:~");
    }

    pub fn bool(&mut self, b: bool) {
        self.out
            .extend_from_slice(if b { b"4:true!" } else { b"5:false!" });
    }

    pub fn int(&mut self, i: i64) {
        self.leaf(itoa::Buffer::new().format(i).as_bytes(), b'#');
    }

    /// An integer beyond 64 bits, as its decimal digits.
    pub fn big_int(&mut self, digits: &str) {
        self.leaf(digits.as_bytes(), b'#');
    }

    pub fn float(&mut self, x: f64) {
        self.leaf(PyFloat(x).repr(&mut zmij::Buffer::new()).as_bytes(), b'^');
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.leaf(b, b',');
    }

    pub fn str(&mut self, s: &str) {
        self.leaf(s.as_bytes(), b';');
    }

    /// `None` as null, `Some(v)` as `f` writes it.
    pub fn opt<T>(&mut self, v: Option<T>, f: impl FnOnce(&mut Self, T)) {
        match v {
            Some(v) => f(self, v),
            None => self.null(),
        }
    }

    /// A list of scalars, each a payload and its tag (a header's
    /// `[name, value]`, an address's `[host, port]`): its length is known
    /// before it is written, so nothing is moved to put the prefix in front.
    pub fn scalar_list(&mut self, items: &[(&[u8], u8)]) {
        let leaf_len = |n: usize| n + 2 + digits(n);
        let len: usize = items.iter().map(|(p, _)| leaf_len(p.len())).sum();
        self.out.reserve(len + digits(len) + 2);
        self.prefix(len);
        for &(payload, tag) in items {
            self.leaf(payload, tag);
        }
        self.out.push(b']');
    }

    /// `n` and the colon.
    #[inline]
    fn prefix(&mut self, n: usize) {
        let out = &mut *self.out;
        if n < 100 {
            // Most values: one or two digits, without itoa.
            if n >= 10 {
                out.push(b'0' + (n / 10) as u8);
            }
            out.push(b'0' + (n % 10) as u8);
            out.push(b':');
        } else {
            self.long_prefix(n);
        }
    }

    /// [`Writer::prefix`] for 100 and more (a body, a long header).
    #[inline(never)]
    fn long_prefix(&mut self, n: usize) {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(n).as_bytes();
        self.out.reserve(digits.len() + n + 2);
        self.out.extend_from_slice(digits);
        self.out.push(b':');
    }

    /// A list whose items `f` writes.
    pub fn list(&mut self, f: impl FnOnce(&mut Self)) {
        self.container(GUESS, b']', f);
    }

    /// A dict whose keys and values `f` writes, alternating.
    pub fn dict(&mut self, f: impl FnOnce(&mut Self)) {
        self.container(GUESS, b'}', f);
    }

    /// [`Writer::dict`] for one of about `size` bytes (a whole record).
    pub fn dict_of_size(&mut self, size: usize, f: impl FnOnce(&mut Self)) {
        self.container(digits(size), b'}', f);
    }

    /// A list or dict: room for a length prefix of `guess` digits is left
    /// before `f` writes the payload, which is moved only if its length has
    /// another number of digits. Writing the payload first and moving all of
    /// it behind its prefix copied a flow's record ~3 times over.
    fn container(&mut self, guess: usize, tag: u8, f: impl FnOnce(&mut Self)) {
        let start = self.out.len();
        self.out.reserve(guess + 2);
        for _ in 0..=guess {
            self.out.push(b':');
        }
        f(self);
        let out = &mut *self.out;
        let body = start + guess + 1;
        let len = out.len() - body;
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(len).as_bytes();
        let n = digits.len();
        if n > guess {
            out.reserve(n - guess + 1);
            for _ in guess..n {
                out.push(0);
            }
            out.copy_within(body..body + len, start + n + 1);
        } else if n < guess {
            out.copy_within(body..body + len, start + n + 1);
            out.truncate(start + n + 1 + len);
        }
        out[start..start + n].copy_from_slice(digits);
        out[start + n] = b':';
        out.push(tag);
    }

    /// Any decoded or built value.
    pub fn value(&mut self, v: &Value) {
        match v {
            Value::Null => self.null(),
            Value::Bool(b) => self.bool(*b),
            Value::Int(i) => self.int(*i),
            Value::BigInt(s) => self.big_int(s),
            Value::Float(x) => self.float(*x),
            Value::Bytes(b) => self.bytes(b),
            Value::Str(s) => self.str(s),
            Value::List(items) => self.list(|w| items.iter().for_each(|i| w.value(i))),
            Value::Dict(pairs) => self.dict(|w| {
                for (k, v) in pairs {
                    w.value(k);
                    w.value(v);
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(v: &Value) -> Value {
        let enc = Bytes::from(to_vec(v));
        let (d, used) = decode(&enc).unwrap();
        assert_eq!(used, enc.len());
        d
    }

    #[test]
    fn encodes_as_mitmproxy_does() {
        // The same dict as Python's `{'a': b'xy', 'n': None, 't': True, 'i': -12,
        // 'f': 1795287880.3287897, 'w': 3.0, 'l': ['é']}`, which mitmproxy's
        // tnetstring writes last key first.
        let v = Value::Dict(vec![
            (Value::str("l"), Value::List(vec![Value::str("é")])),
            (Value::str("w"), Value::Float(3.0)),
            (Value::str("f"), Value::Float(1795287880.3287897)),
            (Value::str("i"), Value::Int(-12)),
            (Value::str("t"), Value::Bool(true)),
            (Value::str("n"), Value::Null),
            (Value::str("a"), Value::Bytes(Bytes::from_static(b"xy"))),
        ]);
        let enc = to_vec(&v);
        assert_eq!(
            std::str::from_utf8(&enc).unwrap(),
            "85:1:l;5:2:é;]1:w;3:3.0^1:f;18:1795287880.3287897^1:i;3:-12#1:t;4:true!1:n;0:~1:a;2:xy,}"
        );
        // Python's float repr: `[1e16, 1e-5, 1.5e300, -0.0, 0.0001]`.
        let floats = [1e16, 1e-5, 1.5e300, -0.0, 0.0001]
            .map(Value::Float)
            .to_vec();
        assert_eq!(
            std::str::from_utf8(&to_vec(&Value::List(floats))).unwrap(),
            "43:5:1e+16^5:1e-05^8:1.5e+300^4:-0.0^6:0.0001^]"
        );
        assert_eq!(roundtrip(&v), v);
    }

    #[test]
    fn containers_get_their_prefix_whatever_their_length() {
        // Payloads of 3 to 12,349 bytes (1 to 5 digits' length), around
        // the guessed 3 digits; empty ones below.
        for n in [0, 1, 9, 10, 99, 100, 999, 1000, 12_345] {
            let mut out = b"x".to_vec();
            Writer::new(&mut out).list(|w| w.bytes(&vec![b'a'; n.max(3) - 3]));
            let inner = n.max(3);
            let item = format!("{}:{},", inner - 3, "a".repeat(inner - 3));
            let expected = format!("x{}:{item}]", item.len());
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{n}");
        }
        let mut out = Vec::new();
        Writer::new(&mut out).dict_of_size(5, |w| w.str("k"));
        Writer::new(&mut out).list(|_| {});
        Writer::new(&mut out).dict_of_size(123_456, |_| {});
        assert_eq!(out, b"4:1:k;}0:]0:}");
    }

    #[test]
    fn key_texts_are_what_str_writes() {
        let written = |k: &str| {
            let mut out = Vec::new();
            Writer::new(&mut out).str(k);
            out
        };
        assert_eq!(key!("id"), written("id"));
        assert_eq!(key!("timestamp_tls_setup"), written("timestamp_tls_setup"));
        assert_eq!(key!("123456789"), written("123456789"));
        assert_eq!(key!("1234567890"), written("1234567890"));
    }

    #[test]
    fn reads_bytes_as_slices_of_the_record() {
        let buf = Bytes::from_static(b"5:hello,");
        let (v, _) = decode(&buf).unwrap();
        let Value::Bytes(b) = v else { panic!() };
        assert_eq!(b.as_ptr(), buf[2..].as_ptr());
    }

    #[test]
    fn reads_text_as_slices_of_the_record() {
        let buf = Bytes::from_static("6:héllo;".as_bytes());
        let (v, _) = decode(&buf).unwrap();
        let Value::Str(t) = v else { panic!() };
        assert_eq!(&*t, "héllo");
        assert_eq!(t.as_ptr(), buf[2..].as_ptr());
        assert!(decode(&Bytes::from_static(b"1:\xff;")).is_err());
    }

    #[test]
    fn errors_name_the_problem() {
        let d = |s: &'static [u8]| decode(&Bytes::from_static(s)).unwrap_err().to_string();
        assert_eq!(
            d(b"5:abc"),
            "the data ends inside a value (needs 3 more bytes)"
        );
        assert_eq!(d(b"x:"), "byte 0: expected a length digit, found 'x'");
        assert_eq!(d(b"3:abcX"), "byte 5: unknown type tag 'X'");
        assert_eq!(d(b"3:1a2#"), "byte 2: \"1a2\" is not an integer");
        assert_eq!(
            d(b"4:9:a,}"),
            "byte 2: an element runs past the end of its list or dict"
        );
        assert_eq!(d(b"4:1:a;}"), "byte 2: a dict has a key without a value");
        let deep = "0:]".to_string();
        let mut s = deep;
        for _ in 0..MAX_DEPTH {
            s = format!("{}:{}]", s.len(), s);
        }
        let e = decode(&Bytes::from(s)).unwrap_err().to_string();
        assert!(e.ends_with("nested deeper than 64 levels"), "{e}");
    }

    #[test]
    fn keeps_integers_beyond_64_bits() {
        let enc = Bytes::from_static(b"30:123456789012345678901234567890#");
        let (v, _) = decode(&enc).unwrap();
        assert_eq!(v, Value::BigInt("123456789012345678901234567890".into()));
        assert_eq!(to_vec(&v), enc.as_ref());
    }

    #[test]
    fn floats_tie_to_even_as_python_repr() {
        // Python's repr of these; Rust's `{}` ends them in 3.
        for (v, py) in [
            (101818265492423.12, "101818265492423.12"),
            (846997485877374.2, "846997485877374.2"),
            (1770188058884493.2, "1770188058884493.2"),
            (0.5, "0.5"),
            (1795295291.7888327, "1795295291.7888327"),
            (-683478891563532.2, "-683478891563532.2"),
        ] {
            assert_eq!(PyFloat(v).to_string(), py);
            assert_eq!(py.parse::<f64>(), Ok(v));
        }
    }

    #[test]
    fn value_budget_bounds_memory() {
        let nulls = "0:~".repeat(100);
        let list = Bytes::from(format!("{}:{}]", nulls.len(), nulls));
        assert!(decode_limited(&list, 101).is_ok());
        let e = decode_limited(&list, 100).unwrap_err().to_string();
        assert!(e.contains("more values than"), "{e}");
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            "-?[1-9][0-9]{19,40}".prop_map(Value::BigInt),
            any::<f64>()
                .prop_filter("nan != nan", |f| !f.is_nan())
                .prop_map(Value::Float),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(|b| Value::Bytes(b.into())),
            ".{0,10}".prop_map(Value::str),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
                proptest::collection::vec((".{0,5}".prop_map(Value::str), inner), 0..6)
                    .prop_map(Value::Dict),
            ]
        })
    }

    #[test]
    fn fast_float_reads_timestamps() {
        // The common case takes the fast path and agrees with `str::parse`.
        let mut fast = 0;
        for i in 0..100_000u64 {
            let t = 1_795_287_880.0 + (i as f64) * 0.000_123_457;
            let s = PyFloat(t).repr(&mut zmij::Buffer::new()).to_string();
            if let Some(x) = fast_float(s.as_bytes()) {
                fast += 1;
                assert_eq!(x.to_bits(), s.parse::<f64>().unwrap().to_bits(), "{s}");
            }
        }
        assert!(
            fast > 99_000,
            "only {fast} of 100,000 timestamps took the fast path"
        );
        for s in [
            "1.0",
            "-2.5",
            "9007199254740991.0",
            "0.5",
            "1e5",
            "1.",
            ".5",
            "12345678901234567890.1",
        ] {
            if let Some(x) = fast_float(s.as_bytes()) {
                assert_eq!(x.to_bits(), s.parse::<f64>().unwrap().to_bits(), "{s}");
            }
        }
    }

    proptest! {
        // Cheap cases: many of them.
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn scalar_list_is_what_list_writes(
            items in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..150), prop::sample::select(b",;#^!".to_vec())),
                0..6,
            ),
        ) {
            let items: Vec<(&[u8], u8)> = items.iter().map(|(p, t)| (&p[..], *t)).collect();
            let (mut fast, mut slow) = (vec![b'x'], vec![b'x']);
            Writer::new(&mut fast).scalar_list(&items);
            Writer::new(&mut slow).list(|w| items.iter().for_each(|&(p, t)| w.leaf(p, t)));
            prop_assert_eq!(fast, slow);
        }

        #[test]
        fn fast_float_agrees_with_parse(int in 0u64..10_000_000_000, frac in any::<u64>(), digits in 1usize..19, neg in any::<bool>()) {
            let frac = format!("{:019}", frac % 10_000_000_000_000_000_000);
            let s = format!("{}{int}.{}", if neg { "-" } else { "" }, &frac[..digits]);
            if let Some(x) = fast_float(s.as_bytes()) {
                prop_assert_eq!(x.to_bits(), s.parse::<f64>().unwrap().to_bits(), "{}", s);
            }
        }

        #[test]
        fn fast_float_agrees_on_any_digits(b in proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'-'), Just(b'0'), Just(b'9'), b'0'..=b'9'], 0..24)) {
            if let Some(x) = fast_float(&b) {
                let s = std::str::from_utf8(&b).unwrap();
                prop_assert_eq!(Some(x.to_bits()), s.parse::<f64>().ok().map(f64::to_bits), "{}", s);
            }
        }

    }

    proptest! {
        #[test]
        fn bytes_or_text_is_get_then_bytes(payload in proptest::collection::vec(prop_oneof![any::<u8>(), b'a'..=b'z'], 0..12), tag in prop_oneof![Just(b','), Just(b';'), Just(b'#'), Just(b'^'), Just(b'!'), Just(b'~')]) {
            let mut enc = format!("{}:", payload.len()).into_bytes();
            enc.extend_from_slice(&payload);
            enc.push(tag);
            if let Ok(tape) = Tape::decode(Bytes::from(enc), usize::MAX) {
                let item = tape.root();
                let expected = match item.get() {
                    Ok(Shallow::Bytes(_) | Shallow::Str(_)) => Some(item.bytes()),
                    _ => None,
                };
                prop_assert_eq!(item.bytes_or_text(), expected);
            }
        }

        #[test]
        fn same_key_is_slice_equality(a in proptest::collection::vec(0u8..3, 0..40), flip in any::<usize>()) {
            let mut b = a.clone();
            prop_assert!(same_key(&a, &b));
            if !b.is_empty() {
                let i = flip % b.len();
                b[i] ^= 1 + (flip % 255) as u8;
                prop_assert_eq!(same_key(&a, &b), a == b);
            }
            prop_assert_eq!(same_key(&a, &b[..b.len() / 2]), a.len() == b.len() / 2 && a[..] == b[..b.len() / 2]);
        }

        #[test]
        fn any_value_roundtrips(v in value()) {
            prop_assert_eq!(roundtrip(&v), v);
        }

        #[test]
        fn the_short_prefix_agrees_with_the_full_one(data in proptest::collection::vec(any::<u8>(), 0..16), n in any::<u64>()) {
            if let Some(p) = short_prefix(&data) {
                prop_assert_eq!(parse_prefix(&data), Ok(Some(p)));
            }
            let enc = format!("{n}:rest");
            prop_assert_eq!(short_prefix(enc.as_bytes()), parse_prefix(enc.as_bytes()).ok().flatten().filter(|_| n < 10_000_000_000));
        }

        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let buf = Bytes::from(data);
            if let Ok((_, used)) = decode(&buf) {
                prop_assert!(used <= buf.len());
            }
        }

        #[test]
        fn mutated_encodings_never_panic(v in value(), at in any::<usize>(), byte in any::<u8>()) {
            let mut enc = to_vec(&v);
            if !enc.is_empty() {
                let i = at % enc.len();
                enc[i] = byte;
            }
            let _ = decode(&Bytes::from(enc));
        }
    }
}
