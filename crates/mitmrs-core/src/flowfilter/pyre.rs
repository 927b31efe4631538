//! Python `re` syntax to the `regex` crate's, where the two only spell the
//! same thing differently, so a filter written for mitmproxy means the same
//! here:
//!
//! * a `{` that does not start a repetition is a literal in Python (`{"id"`,
//!   `a{`, `{}`), an error in `regex`: escaped; `{,n}` is `{0,n}`;
//! * `\Z` (end of text) is `regex`'s `\z`; `\0` and `\0NN` (octal) are written
//!   as `\x{..}`; `\<` and `\>` are the characters (word boundaries in `regex`);
//!   a backslash before a non-ASCII character is dropped (Python: the character);
//! * with `end_newline` (a search, not a substitution), a bare `$` is Python's:
//!   the end, or before a newline that ends the text (`regex`: only the end);
//! * inside a class, `[`, `&&`, `--`, `~~` are literals or ranges in Python
//!   and set syntax in `regex`: escaped;
//! * byte patterns (mitmproxy compiles `expr.encode()`): a non-ASCII character
//!   is its UTF-8 bytes, each a byte of its own (`[é]` is a class of two
//!   bytes, as in Python).
//!
//! Python refuses a repetition of nothing (`*a`, `^*`, `(|+)`) and a
//! repetition of a repetition (`a**`, `a{2}{3}`), which `regex` takes: refused
//! here too. Python 3.11's possessive repetitions (`a*+`) are refused, since
//! `regex` would read them as nested ones and match differently.
//!
//! What `regex` cannot do at all (look-around, backreferences, atomic groups)
//! stays as written and fails to compile with `regex`'s own message;
//! [`super::FilterError`] adds why.

/// What came last, for Python's checks of repetitions.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Last {
    /// The start, `(` or `|`: nothing to repeat.
    Nothing,
    /// `^`, `$`, `\A`, `\Z`, `\b`, `\B`: nothing to repeat either.
    Assertion,
    /// Something a repetition applies to.
    Item,
    /// A repetition (`?` after it makes it lazy).
    Repeat,
    /// A lazy repetition.
    Lazy,
}

/// Rewrites a Python pattern for `regex`; `bytes`: the pattern is a bytes
/// pattern (matched with Unicode off); `end_newline`: `$` may match before a
/// final newline, as Python's does without MULTILINE (only for searches: a
/// substitution would replace the newline too). `Err`: Python's reason to
/// refuse it.
pub(super) fn translate(py: &str, bytes: bool, end_newline: bool) -> Result<String, String> {
    let c: Vec<char> = py.chars().collect();
    let mut out = String::with_capacity(py.len() + 8);
    let mut i = 0;
    // Inside `[...]`: where it started (the first `]` after `[` or `[^` is a literal).
    let mut class_start: Option<usize> = None;
    let mut last = Last::Nothing;
    let repeat = |last: Last, ch: char, at: usize| -> Result<Last, String> {
        match (last, ch) {
            (Last::Item, _) => Ok(Last::Repeat),
            (Last::Repeat, '?') => Ok(Last::Lazy),
            (Last::Repeat, '+') => Err(format!(
                "possessive repetition at position {at} (not supported; drop the second `+`)"
            )),
            (Last::Repeat | Last::Lazy, _) => Err(format!("multiple repeat at position {at}")),
            (Last::Nothing | Last::Assertion, _) => {
                Err(format!("nothing to repeat at position {at}"))
            }
        }
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '\\' {
            let Some(&n) = c.get(i + 1) else {
                out.push('\\');
                break;
            };
            if class_start.is_none() {
                last = if "AZbB".contains(n) {
                    Last::Assertion
                } else {
                    Last::Item
                };
            }
            if bytes && "uUN".contains(n) {
                // Python's bytes patterns have no character escapes of these kinds.
                return Err(format!(
                    "bad escape \\{n} at position {i} (a bytes pattern: use \\xNN)"
                ));
            }
            if n == 'Z' && class_start.is_none() {
                out.push_str("\\z");
                i += 2;
                continue;
            }
            if n == '<' || n == '>' || !n.is_ascii() {
                push_char(&mut out, n, bytes);
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
                        last = Last::Item;
                        out.push(']');
                    }
                    '[' => out.push_str("\\["),
                    '&' | '~' | '-' if c.get(i + 1) == Some(&ch) => {
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
                    last = Last::Item;
                    out.push('[');
                    i += 1;
                }
                '{' => match repetition(&c[i..]) {
                    Some((text, len)) => {
                        last = repeat(last, '{', i)?;
                        out.push_str(&text);
                        i += len;
                    }
                    None => {
                        last = Last::Item;
                        out.push_str("\\{");
                        i += 1;
                    }
                },
                '*' | '+' | '?' => {
                    last = repeat(last, ch, i)?;
                    out.push(ch);
                    i += 1;
                }
                '$' if end_newline => {
                    last = Last::Assertion;
                    out.push_str("(?:\\n?\\z)");
                    i += 1;
                }
                '(' if c.get(i + 1) == Some(&'?') => {
                    // A group's `(?` prefix: the `?` repeats nothing. A flag
                    // group (`(?i)`) as a whole is nothing to repeat.
                    let flags = c[i + 2..]
                        .iter()
                        .take_while(|f| "aiLmsux-".contains(**f))
                        .count();
                    let end = i + 2 + flags;
                    if flags > 0 && c.get(end) == Some(&')') {
                        out.extend(&c[i..=end]);
                        i = end + 1;
                    } else {
                        out.push_str("(?");
                        i += 2;
                    }
                    last = Last::Nothing;
                }
                _ => {
                    last = match ch {
                        '(' | '|' => Last::Nothing,
                        '^' | '$' => Last::Assertion,
                        _ => Last::Item,
                    };
                    push_char(&mut out, ch, bytes);
                    i += 1;
                }
            },
        }
    }
    Ok(out)
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
            assert_eq!(translate(py, false, false).as_deref(), Ok(rs), "{py}");
        }
        assert_eq!(
            translate("é[é]", true, false).as_deref(),
            Ok(r"\xC3\xA9[\xC3\xA9]")
        );
        assert_eq!(translate("é", false, false).as_deref(), Ok("é"));
    }

    #[test]
    fn repetitions_python_refuses() {
        for py in [
            "*a", "^*", "$+", "(|+)", r"\Z{2}", "a**", "a{2}{2}", "a*?*", "a*+", "(?i)?",
        ] {
            assert!(translate(py, false, false).is_err(), "{py}");
        }
        for py in ["a*?", "(a)*", "[*]", r"\**", "a{", "(?:a)+", "a|b+"] {
            assert!(translate(py, false, false).is_ok(), "{py}");
        }
        assert!(translate(r"\u00e9", true, false).is_err());
        assert_eq!(translate(r"\<b\>", false, false).as_deref(), Ok("<b>"));
        assert_eq!(translate(r"\é", true, false).as_deref(), Ok(r"\xC3\xA9"));
        assert_eq!(
            translate("[0-9--4]", false, false).as_deref(),
            Ok(r"[0-9\--4]")
        );
        assert_eq!(
            translate("a$|[$]", false, true).as_deref(),
            Ok(r"a(?:\n?\z)|[$]")
        );
        assert_eq!(translate("a$", false, false).as_deref(), Ok("a$"));
        assert!(translate(r"\u00e9", false, false).is_ok());
    }
}
