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
//! tests below and `fuzz/`), and nesting is limited to [`MAX_DEPTH`].

use std::borrow::Cow;
use std::fmt;

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
    Str(Cow<'static, str>),
    List(Vec<Value>),
    /// Key/value pairs in file order (mitmproxy writes dicts in insertion order).
    Dict(Vec<(Value, Value)>),
}

impl Value {
    pub fn str(s: impl Into<Cow<'static, str>>) -> Value {
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
    let mut budget = max_values;
    decode_at(buf, 0, 0, &mut budget)
}

fn decode_at(
    buf: &Bytes,
    start: usize,
    depth: usize,
    budget: &mut usize,
) -> Result<(Value, usize), DecodeError> {
    if *budget == 0 {
        return Err(invalid(
            start,
            "more values than a flow of this size can plausibly hold",
        ));
    }
    *budget -= 1;
    let shift = |e: DecodeError| match e {
        DecodeError::Invalid { offset, what } => DecodeError::Invalid {
            offset: offset + start,
            what,
        },
        t => t,
    };
    let rest = &buf[start..];
    let (len, prefix) = match parse_prefix(rest).map_err(shift)? {
        Some(p) => p,
        None => return Err(DecodeError::Truncated { needed: 1 }),
    };
    let body_start = start + prefix;
    let end = body_start
        .checked_add(len)
        .ok_or_else(|| invalid(start, "the length prefix overflows"))?;
    if end >= buf.len() {
        return Err(DecodeError::Truncated {
            needed: end + 1 - buf.len(),
        });
    }
    let payload = &buf[body_start..end];
    let tag = buf[end];
    let bad = |what: &str| invalid(body_start, what.to_string());
    let value = match tag {
        b',' => Value::Bytes(buf.slice(body_start..end)),
        b';' => Value::Str(Cow::Owned(
            std::str::from_utf8(payload)
                .map_err(|_| bad("a text value (';') is not valid UTF-8"))?
                .to_owned(),
        )),
        b'#' => {
            let s = std::str::from_utf8(payload).map_err(|_| bad("an integer is not ASCII"))?;
            match s.parse() {
                Ok(i) => Value::Int(i),
                Err(_) if is_big_int(s) => Value::BigInt(s.to_owned()),
                Err(_) => return Err(bad(&format!("{s:?} is not an integer"))),
            }
        }
        b'^' => {
            let s = std::str::from_utf8(payload).map_err(|_| bad("a float is not ASCII"))?;
            Value::Float(
                s.parse()
                    .map_err(|_| bad(&format!("{s:?} is not a float")))?,
            )
        }
        b'!' => match payload {
            b"true" => Value::Bool(true),
            b"false" => Value::Bool(false),
            _ => return Err(bad("a boolean is neither 'true' nor 'false'")),
        },
        b'~' => {
            if len != 0 {
                return Err(bad("a null has a payload"));
            }
            Value::Null
        }
        b']' | b'}' => {
            if depth >= MAX_DEPTH {
                return Err(invalid(
                    start,
                    format!("nested deeper than {MAX_DEPTH} levels"),
                ));
            }
            // Children are decoded from the payload only, so a child that claims
            // more than its parent holds is caught as invalid, not truncated.
            let inner = buf.slice(..end);
            let mut items = Vec::new();
            let mut pos = body_start;
            while pos < end {
                let (v, used) = decode_at(&inner, pos, depth + 1, budget).map_err(|e| match e {
                    DecodeError::Truncated { .. } => {
                        invalid(pos, "an element runs past the end of its list or dict")
                    }
                    e => e,
                })?;
                items.push(v);
                pos += used;
            }
            if tag == b']' {
                Value::List(items)
            } else {
                if items.len() % 2 != 0 {
                    return Err(bad("a dict has a key without a value"));
                }
                let mut pairs = Vec::with_capacity(items.len() / 2);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                Value::Dict(pairs)
            }
        }
        other => {
            return Err(invalid(
                end,
                format!("unknown type tag {}", show_byte(other)),
            ))
        }
    };
    Ok((value, end + 1 - start))
}

/// Python's `int()` would read `s` (an optional sign, then digits).
fn is_big_int(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Appends the encoding of `v` to `out`.
///
/// Two passes: the payload length of every node, in pre-order, then the bytes.
/// (Asking each container for its length as it was written recomputed every
/// subtree once per level, a tenth of `-r -w`'s time.)
pub fn encode(v: &Value, out: &mut Vec<u8>) {
    let mut lens = Vec::with_capacity(64);
    let total = measure(v, &mut lens);
    out.reserve(total);
    let mut it = lens.iter();
    write(v, out, &mut it);
}

/// The encoding of `v` as a new buffer.
pub fn to_vec(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode(v, &mut out);
    out
}

fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// A float as Python's `repr` would write it (so mitmproxy reads back the same
/// number): the shortest round-trip digits, with ".0" on whole numbers.
struct PyFloat(f64);

impl fmt::Display for PyFloat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v.is_nan() {
            f.write_str("nan")
        } else if v.is_infinite() {
            f.write_str(if v > 0.0 { "inf" } else { "-inf" })
        } else if v != 0.0 && (v.abs() < 1e-4 || v.abs() >= 1e16) {
            // Python writes the exponent with a sign and two digits or more: 1e+16, 1e-05.
            let e = format!("{v:e}");
            let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            write!(f, "{mantissa}e{sign}{digits:0>2}")
        } else if v == v.trunc() {
            write!(f, "{v:.1}")
        } else {
            write!(f, "{v}")
        }
    }
}

/// Counts the bytes `Display` writes, without allocating.
struct Count(usize);

impl fmt::Write for Count {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

fn display_len(v: impl fmt::Display) -> usize {
    use fmt::Write as _;
    let mut c = Count(0);
    let _ = write!(c, "{v}");
    c.0
}

/// Pushes the payload length of `v` and of every node below it (pre-order) onto
/// `lens`; returns the length of `v`'s whole encoding.
fn measure(v: &Value, lens: &mut Vec<usize>) -> usize {
    let at = lens.len();
    lens.push(0);
    let n = match v {
        Value::Null => 0,
        Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Int(i) => display_len(i),
        Value::BigInt(s) => s.len(),
        Value::Float(x) => display_len(PyFloat(*x)),
        Value::Bytes(b) => b.len(),
        Value::Str(s) => s.len(),
        Value::List(items) => items.iter().map(|i| measure(i, lens)).sum(),
        Value::Dict(pairs) => pairs
            .iter()
            .map(|(k, v)| measure(k, lens) + measure(v, lens))
            .sum(),
    };
    lens[at] = n;
    digits(n) + 1 + n + 1
}

/// The length of `v`'s encoding.
pub fn encoded_len(v: &Value) -> usize {
    measure(v, &mut Vec::new())
}

fn write(v: &Value, out: &mut Vec<u8>, lens: &mut std::slice::Iter<'_, usize>) {
    use std::io::Write as _;
    let n = lens.next().copied().unwrap_or(0);
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{n}:");
    match v {
        Value::Null => out.push(b'~'),
        Value::Bool(b) => {
            out.extend_from_slice(if *b { b"true" } else { b"false" });
            out.push(b'!');
        }
        Value::Int(i) => {
            let _ = write!(out, "{i}#");
        }
        Value::BigInt(s) => {
            out.extend_from_slice(s.as_bytes());
            out.push(b'#');
        }
        Value::Float(x) => {
            let _ = write!(out, "{}^", PyFloat(*x));
        }
        Value::Bytes(b) => {
            out.extend_from_slice(b);
            out.push(b',');
        }
        Value::Str(s) => {
            out.extend_from_slice(s.as_bytes());
            out.push(b';');
        }
        Value::List(items) => {
            for i in items {
                write(i, out, lens);
            }
            out.push(b']');
        }
        Value::Dict(pairs) => {
            for (k, v) in pairs {
                write(k, out, lens);
                write(v, out, lens);
            }
            out.push(b'}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(v: &Value) -> Value {
        let enc = Bytes::from(to_vec(v));
        assert_eq!(enc.len(), encoded_len(v));
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
    fn reads_bytes_as_slices_of_the_record() {
        let buf = Bytes::from_static(b"5:hello,");
        let (v, _) = decode(&buf).unwrap();
        let Value::Bytes(b) = v else { panic!() };
        assert_eq!(b.as_ptr(), buf[2..].as_ptr());
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

    proptest! {
        #[test]
        fn any_value_roundtrips(v in value()) {
            prop_assert_eq!(roundtrip(&v), v);
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
