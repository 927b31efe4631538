//! Python's text forms that mitmproxy's files and views show, so mitmrs
//! writes the same: `repr` of a float, of bytes and of text, and `str` of a
//! metadata value (what mitmproxy's `~meta` filter searches).

use std::fmt;

use crate::flow::MetaValue;

/// A float as Python's `repr` would write it (so mitmproxy reads back the same
/// number): the shortest round-trip digits, with ".0" on whole numbers.
#[derive(Clone, Copy)]
pub struct PyFloat(pub f64);

impl PyFloat {
    /// The repr, formatted in `buf` (no heap) for the common case: a
    /// timestamp or duration, non-integral, between 1e-4 and 1e16, where
    /// `zmij`'s shortest digits are Python's. About a third of the cost of
    /// `core::fmt` (a flow file has ~10 floats per flow).
    pub fn repr(self, buf: &mut zmij::Buffer) -> std::borrow::Cow<'_, str> {
        let v = self.0;
        // Below 1e16 (< 2^63) the cast truncates exactly: `v.trunc()` without
        // its libm call (baseline x86-64 has no `roundsd`).
        let common = (1e-4..1e16).contains(&v.abs()) && v != (v as i64) as f64;
        if common {
            let s = buf.format_finite(v);
            // The digits after the point (`split_once` searched with memchr).
            let frac = s.len() - 1 - s.bytes().position(|b| b == b'.').unwrap_or(s.len() - 1);
            if !may_be_a_tie(v, frac) {
                return std::borrow::Cow::Borrowed(s);
            }
        }
        std::borrow::Cow::Owned(Slow(v).to_string())
    }
}

impl fmt::Display for PyFloat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repr(&mut zmij::Buffer::new()))
    }
}

/// [`PyFloat`] by `core::fmt`: every case, ties included.
struct Slow(f64);

impl fmt::Display for Slow {
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
            plain(v, f)
        }
    }
}

/// A non-integral float between 1e-4 and 1e16 as Python's repr writes it: the
/// shortest digits that read back as `v`, as Rust's `{}` gives them, except
/// when two such digit strings are equally near `v` (the exact value ends in a
/// 5 just past them): Python takes the one with the even last digit, Rust the
/// one further from zero. Found comparing 20,000 floats re-saved against the
/// file mitmproxy wrote (6 differed, e.g. 101818265492423.12 against .13).
fn plain(v: f64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    // On the stack: this runs for every timestamp of every flow saved.
    let mut buf = StackStr::default();
    let s = buf.format(format_args!("{v}"));
    if s.is_empty() {
        return write!(f, "{v}");
    }
    let frac = s.split_once('.').map_or(0, |(_, d)| d.len());
    if !may_be_a_tie(v, frac) {
        return f.write_str(s);
    }
    // The exact value: `frac` digits, then a 5.
    let exact = format!("{v:.*}", frac + 1);
    let Some(low) = exact.strip_suffix('5') else {
        return f.write_str(s);
    };
    let last = low.as_bytes()[low.len() - 1];
    let even = if (last - b'0').is_multiple_of(2) {
        low.to_string()
    } else if last != b'9' {
        let mut up = low.as_bytes().to_vec();
        let n = up.len();
        up[n - 1] = last + 1;
        String::from_utf8(up).unwrap_or_default()
    } else {
        return f.write_str(s);
    };
    if even.parse::<f64>() == Ok(v) {
        f.write_str(&even)
    } else {
        f.write_str(s)
    }
}

/// Whether two shortest digit strings with `frac` fraction digits can be
/// equally near `v`: `v`'s exact decimal expansion has as many fraction digits
/// as there are factors of 2 in its denominator, and a tie needs exactly one
/// more than the shortest form has.
fn may_be_a_tie(v: f64, frac: usize) -> bool {
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64;
    let mantissa = if exp == 0 {
        bits & ((1 << 52) - 1)
    } else {
        (bits & ((1 << 52) - 1)) | (1 << 52)
    };
    let e2 = if exp == 0 { -1074 } else { exp - 1075 };
    let denominator_twos = -(e2 + i64::from(mantissa.trailing_zeros()));
    mantissa != 0 && denominator_twos == frac as i64 + 1
}

/// A short string formatted into a fixed buffer (a float's shortest form is at
/// most 24 bytes here).
struct StackStr {
    buf: [u8; 64],
    len: usize,
}

impl Default for StackStr {
    fn default() -> Self {
        StackStr {
            buf: [0; 64],
            len: 0,
        }
    }
}

impl StackStr {
    fn format(&mut self, args: fmt::Arguments<'_>) -> &str {
        use fmt::Write as _;
        self.len = 0;
        if self.write_fmt(args).is_err() {
            self.len = 0;
        }
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for StackStr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Bytes as Python's `repr` writes them (`b'ping'`), for log lines that match
/// mitmproxy's.
pub fn py_bytes_repr(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    let mut s = String::with_capacity(b.len() + 3);
    s.push('b');
    s.push(quote);
    for &c in b {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            c if c as char == quote => {
                s.push('\\');
                s.push(quote);
            }
            0x20..=0x7e => s.push(c as char),
            c => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push(quote);
    s
}

/// Text as Python's `repr` writes it (`'it\'s'` is written `"it's"`).
/// Python escapes the characters `str.isprintable()` rejects; here those are
/// the control characters, the separators other than the space (U+00A0,
/// U+2000–U+200A, U+2028, U+2029, U+202F, U+205F, U+3000, U+1680), the common
/// format characters (U+00AD, U+200B–U+200F, U+2060–U+2064, U+FEFF) and the
/// private-use planes; other unassigned code points are kept as they are.
pub fn py_str_repr(t: &str) -> String {
    let quote = if t.contains('\'') && !t.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut s = String::with_capacity(t.len() + 2);
    s.push(quote);
    for c in t.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if c == quote => {
                s.push('\\');
                s.push(quote);
            }
            c if printable(c) => s.push(c),
            c if (c as u32) < 0x100 => s.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => s.push_str(&format!("\\u{:04x}", c as u32)),
            c => s.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    s.push(quote);
    s
}

fn printable(c: char) -> bool {
    let u = c as u32;
    !(c.is_control()
        || matches!(
            u,
            0xA0 | 0xAD
                | 0x1680
                | 0x2000..=0x200F
                | 0x2028..=0x202F
                | 0x205F..=0x2064
                | 0x3000
                | 0xFEFF
                | 0xE000..=0xF8FF
                | 0xF0000..
        ))
}

/// A metadata value as Python's `str()` writes it: text as it is, everything
/// else (and everything inside lists and dicts) as its `repr`.
pub fn meta_str(v: &MetaValue) -> String {
    match v {
        MetaValue::Str(s) => s.clone(),
        v => meta_repr(v),
    }
}

/// A metadata value as Python's `repr` writes it.
pub fn meta_repr(v: &MetaValue) -> String {
    match v {
        MetaValue::Null => "None".into(),
        MetaValue::Bool(true) => "True".into(),
        MetaValue::Bool(false) => "False".into(),
        MetaValue::Int(i) => i.to_string(),
        MetaValue::BigInt(d) => d.clone(),
        MetaValue::Float(f) => PyFloat(*f).to_string(),
        MetaValue::Str(s) => py_str_repr(s),
        MetaValue::Bytes(b) => py_bytes_repr(b),
        MetaValue::List(items) => {
            let parts: Vec<String> = items.iter().map(meta_repr).collect();
            format!("[{}]", parts.join(", "))
        }
        MetaValue::Dict(d) => {
            let parts: Vec<String> =
                d.0.iter()
                    .map(|(k, v)| format!("{}: {}", meta_repr(k), meta_repr(v)))
                    .collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_repr_is_pythons() {
        assert_eq!(super::py_bytes_repr(b"pingdata"), "b'pingdata'");
        assert_eq!(super::py_bytes_repr(b"it's"), "b\"it's\"");
        assert_eq!(super::py_bytes_repr(b"\x00\n\\'\""), "b'\\x00\\n\\\\\\'\"'");
    }

    #[test]
    fn str_and_meta_forms_are_pythons() {
        use crate::flow::{MetaDict, MetaValue as M};
        assert_eq!(super::py_str_repr("it's"), "\"it's\"");
        assert_eq!(
            super::py_str_repr("a\u{7f}\u{a0}é\u{1F600}\u{200b}'\""),
            "'a\\x7f\\xa0é\u{1F600}\\u200b\\'\"'"
        );
        let d = M::Dict(MetaDict(vec![(
            M::Str("k".into()),
            M::List(vec![
                M::Int(1),
                M::Float(0.5),
                M::Null,
                M::Bool(true),
                M::Bytes("x".into()),
            ]),
        )]));
        assert_eq!(super::meta_str(&d), "{'k': [1, 0.5, None, True, b'x']}");
        assert_eq!(super::meta_str(&M::Str("plain".into())), "plain");
        assert_eq!(super::meta_str(&M::Float(2.0)), "2.0");
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn writes_what_python_writes() {
        for (v, py) in [
            (1795310173.3137245, "1795310173.3137245"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e16, "1e+16"),
            (1e15 + 0.5, "1000000000000000.5"),
            (3.0, "3.0"),
            (-2.5, "-2.5"),
            (0.0, "0.0"),
            (f64::NAN, "nan"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            assert_eq!(PyFloat(v).to_string(), py);
        }
    }

    proptest! {
        #[test]
        fn the_fast_path_agrees_with_core_fmt(bits in any::<u64>()) {
            let v = f64::from_bits(bits);
            prop_assert_eq!(PyFloat(v).to_string(), Slow(v).to_string());
        }

        #[test]
        fn the_common_range_agrees_with_core_fmt(m in 1.0f64..10.0, e in -5i32..17) {
            let v = m * 10f64.powi(e);
            prop_assert_eq!(PyFloat(v).to_string(), Slow(v).to_string());
        }

        #[test]
        fn timestamps_agree_with_core_fmt(secs in 1.0e9f64..2.0e9, digits in 0u32..8) {
            let scale = 10f64.powi(digits as i32);
            let v = (secs * scale).round() / scale;
            prop_assert_eq!(PyFloat(v).to_string(), Slow(v).to_string());
        }
    }
}
