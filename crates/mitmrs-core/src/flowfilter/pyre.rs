//! Python `re` syntax to the `regex` crate's, where the two only spell the
//! same thing differently, so a filter written for mitmproxy means the same
//! here:
//!
//! * a `{` that does not start a repetition is a literal in Python (`{"id"`,
//!   `a{`, `{}`), an error in `regex`: escaped; `{,n}` is `{0,n}`;
//! * `\Z` (end of text) is `regex`'s `\z`; `\0` and `\0NN` (octal) are written
//!   as `\x{..}`;
//! * inside a class, `[`, `&&`, `~~` are literals in Python and set syntax in
//!   `regex`: escaped;
//! * byte patterns (mitmproxy compiles `expr.encode()`): a non-ASCII character
//!   is its UTF-8 bytes, each a byte of its own (`[é]` is a class of two
//!   bytes, as in Python).
//!
//! What `regex` cannot do at all (look-around, backreferences, atomic groups,
//! possessive repetitions) stays as written and fails to compile with
//! `regex`'s own message; [`super::FilterError`] adds why.

/// Rewrites a Python pattern for `regex`; `bytes`: the pattern is a bytes
/// pattern (matched with Unicode off).
pub(super) fn translate(py: &str, bytes: bool) -> String {
    let c: Vec<char> = py.chars().collect();
    let mut out = String::with_capacity(py.len() + 8);
    let mut i = 0;
    // Inside `[...]`: where it started (the first `]` after `[` or `[^` is a literal).
    let mut class_start: Option<usize> = None;
    while i < c.len() {
        let ch = c[i];
        if ch == '\\' {
            let Some(&n) = c.get(i + 1) else {
                out.push('\\');
                break;
            };
            if n == 'Z' && class_start.is_none() {
                out.push_str("\\z");
                i += 2;
                continue;
            }
            if n == '0' {
                // Python: `\0` then up to two more octal digits.
                let mut v = 0u32;
                let mut j = i + 2;
                while j < c.len() && j < i + 4 && ('0'..='7').contains(&c[j]) {
                    v = v * 8 + (c[j] as u32 - '0' as u32);
                    j += 1;
                }
                out.push_str(&format!("\\x{{{v:x}}}"));
                i = j;
                continue;
            }
            push_char(&mut out, '\\', bytes);
            push_char(&mut out, n, bytes);
            i += 2;
            continue;
        }
        match class_start {
            Some(start) => {
                let first = i == start || (i == start + 1 && c[start] == '^');
                match ch {
                    ']' if !first => {
                        class_start = None;
                        out.push(']');
                    }
                    '[' => out.push_str("\\["),
                    '&' | '~' if c.get(i + 1) == Some(&ch) => {
                        out.push('\\');
                        out.push(ch);
                    }
                    _ => push_char(&mut out, ch, bytes),
                }
                i += 1;
            }
            None => match ch {
                '[' => {
                    class_start = Some(i + 1);
                    out.push('[');
                    i += 1;
                }
                '{' => match repetition(&c[i..]) {
                    Some((text, len)) => {
                        out.push_str(&text);
                        i += len;
                    }
                    None => {
                        out.push_str("\\{");
                        i += 1;
                    }
                },
                _ => {
                    push_char(&mut out, ch, bytes);
                    i += 1;
                }
            },
        }
    }
    out
}

/// A non-ASCII character in a byte pattern as its UTF-8 bytes (`\xC3\xA9`).
fn push_char(out: &mut String, ch: char, bytes: bool) {
    if bytes && !ch.is_ascii() {
        let mut buf = [0u8; 4];
        for b in ch.encode_utf8(&mut buf).bytes() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    } else {
        out.push(ch);
    }
}

/// `{m}`, `{m,}`, `{,n}`, `{m,n}` and `{,}` at the start of `c`, as Python
/// reads a repetition: its `regex` form and how many characters it took.
fn repetition(c: &[char]) -> Option<(String, usize)> {
    let mut i = 1;
    let digits = |i: &mut usize| {
        let s = *i;
        while *i < c.len() && c[*i].is_ascii_digit() {
            *i += 1;
        }
        c[s..*i].iter().collect::<String>()
    };
    let lo = digits(&mut i);
    let comma = c.get(i) == Some(&',');
    let hi = if comma {
        i += 1;
        digits(&mut i)
    } else {
        String::new()
    };
    if c.get(i) != Some(&'}') || (lo.is_empty() && !comma) {
        return None;
    }
    let lo = if lo.is_empty() { "0".to_string() } else { lo };
    let text = match comma {
        false => format!("{{{lo}}}"),
        true => format!("{{{lo},{hi}}}"),
    };
    Some((text, i + 1))
}

#[cfg(test)]
mod tests {
    use super::translate;

    #[test]
    fn spellings() {
        for (py, rs) in [
            (r#"{"id""#, r#"\{"id""#),
            ("a{", r"a\{"),
            ("{}", r"\{}"),
            ("x{2}", "x{2}"),
            ("x{,3}", "x{0,3}"),
            ("x{2,}", "x{2,}"),
            ("x{,}", "x{0,}"),
            ("x{1,2", r"x\{1,2"),
            (r"end\Z", r"end\z"),
            (r"\0", r"\x{0}"),
            (r"\012x", r"\x{a}x"),
            ("[{]", "[{]"),
            ("[]a]", "[]a]"),
            ("[^]a]", "[^]a]"),
            ("[a[b]", r"[a\[b]"),
            ("[a&&b]", r"[a\&&b]"),
            (r"\{", r"\{"),
            (r"a\\{", r"a\\\{"),
        ] {
            assert_eq!(translate(py, false), rs, "{py}");
        }
        assert_eq!(translate("é[é]", true), r"\xC3\xA9[\xC3\xA9]");
        assert_eq!(translate("é", false), "é");
    }
}
