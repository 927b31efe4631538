//! mitmproxy's "JSON" content view: a JSON body printed as Python's
//! `json.dumps(json.loads(body), indent=4, ensure_ascii=False)` prints it.
//!
//! Written by hand rather than with serde_json, because the output must be
//! Python's, not a faithful copy of the input: integers of any size stay
//! exact, other numbers become Python floats (`1E5` → `100000.0`, `2.50` →
//! `2.5`, `1e400` → `Infinity`), `NaN`/`Infinity` literals are accepted, a
//! repeated key keeps its first place and its last value, and strings are
//! re-escaped the way Python's encoder does. Nesting is limited (Python's
//! parser stops at its recursion limit; so does this, at [`MAX_DEPTH`]).

use mitmrs_core::pyrepr::PyFloat;

/// Deepest nesting accepted; deeper bodies are shown as text.
pub const MAX_DEPTH: usize = 500;

enum Json {
    Lit(&'static str),
    /// A number already in Python's form.
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

/// Is this Content-Type one mitmproxy shows with its JSON view?
pub fn is_json_type(content_type: &str) -> bool {
    let t = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    t == "application/json"
        || t == "application/json-rpc"
        || (t.starts_with("application/") && t.ends_with("+json"))
}

/// The body's lines in the JSON view, or `None` if it is not JSON (then
/// mitmproxy falls back to another view too).
pub fn lines(body: &[u8]) -> Option<Vec<String>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.s.len() {
        return None;
    }
    let mut out = String::with_capacity(body.len() * 2);
    dump(&v, 0, &mut out);
    Some(out.split('\n').map(str::to_string).collect())
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Option<Json> {
        if depth > MAX_DEPTH {
            return None;
        }
        match *self.s.get(self.i)? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => self.string().map(Json::Str),
            b'n' if self.eat("null") => Some(Json::Lit("null")),
            b't' if self.eat("true") => Some(Json::Lit("true")),
            b'f' if self.eat("false") => Some(Json::Lit("false")),
            b'N' if self.eat("NaN") => Some(Json::Lit("NaN")),
            b'I' if self.eat("Infinity") => Some(Json::Lit("Infinity")),
            b'-' if self.eat("-Infinity") => Some(Json::Lit("-Infinity")),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn array(&mut self, depth: usize) -> Option<Json> {
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.eat("]") {
            return Some(Json::Arr(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth + 1)?);
            self.ws();
            if self.eat("]") {
                return Some(Json::Arr(items));
            }
            if !self.eat(",") {
                return None;
            }
        }
    }

    fn object(&mut self, depth: usize) -> Option<Json> {
        self.i += 1;
        let mut pairs: Vec<(String, Json)> = Vec::new();
        let mut index = std::collections::HashMap::new();
        self.ws();
        if self.eat("}") {
            return Some(Json::Obj(pairs));
        }
        loop {
            self.ws();
            if self.s.get(self.i) != Some(&b'"') {
                return None;
            }
            let key = self.string()?;
            self.ws();
            if !self.eat(":") {
                return None;
            }
            self.ws();
            let v = self.value(depth + 1)?;
            // A repeated key keeps its first place and takes the last value.
            match index.get(&key) {
                Some(&at) => pairs[at] = (key, v),
                None => {
                    index.insert(key.clone(), pairs.len());
                    pairs.push((key, v));
                }
            }
            self.ws();
            if self.eat("}") {
                return Some(Json::Obj(pairs));
            }
            if !self.eat(",") {
                return None;
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.s.get(self.i..self.i + 4)?;
        let v = u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()?;
        self.i += 4;
        Some(v)
    }

    fn string(&mut self) -> Option<String> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let start = self.i;
            while let Some(&b) = self.s.get(self.i) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.i += 1;
            }
            // The input is valid UTF-8 and the stop bytes are ASCII.
            out.push_str(std::str::from_utf8(&self.s[start..self.i]).ok()?);
            match *self.s.get(self.i)? {
                b'"' => {
                    self.i += 1;
                    return Some(out);
                }
                b'\\' => {
                    self.i += 1;
                    let e = *self.s.get(self.i)?;
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let mut c = self.hex4()?;
                            if (0xd800..0xdc00).contains(&c) && self.eat("\\u") {
                                let low = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&low) {
                                    return None;
                                }
                                c = 0x10000 + ((c - 0xd800) << 10) + (low - 0xdc00);
                            }
                            // A lone surrogate has no UTF-8 form: shown as text.
                            out.push(char::from_u32(c)?);
                        }
                        _ => return None,
                    }
                }
                // Python's parser refuses raw control characters in strings.
                _ => return None,
            }
        }
    }

    fn number(&mut self) -> Option<Json> {
        let start = self.i;
        self.eat("-");
        let digits = |p: &mut Self| {
            let s = p.i;
            while let Some(b'0'..=b'9') = p.s.get(p.i) {
                p.i += 1;
            }
            p.i - s
        };
        let int_start = self.i;
        let n = digits(self);
        if n == 0 || (n > 1 && self.s[int_start] == b'0') {
            return None;
        }
        let mut float = false;
        if self.s.get(self.i) == Some(&b'.') {
            let dot = self.i;
            self.i += 1;
            if digits(self) == 0 {
                // "1." is not a number for Python's parser: it reads "1" and fails.
                self.i = dot;
                return None;
            }
            float = true;
        }
        if let Some(b'e' | b'E') = self.s.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.s.get(self.i) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return None;
            }
            float = true;
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        if !float {
            let t = text.strip_prefix("-0").filter(|r| r.is_empty());
            return Some(Json::Num(if t.is_some() {
                "0".into()
            } else {
                text.into()
            }));
        }
        let v: f64 = text.parse().ok()?;
        Some(Json::Num(if v.is_infinite() {
            if v > 0.0 { "Infinity" } else { "-Infinity" }.into()
        } else {
            PyFloat(v).to_string()
        }))
    }
}

fn indent(level: usize, out: &mut String) {
    out.push('\n');
    for _ in 0..level {
        out.push_str("    ");
    }
}

/// A string as Python's encoder writes it with `ensure_ascii=False`.
fn string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn dump(v: &Json, level: usize, out: &mut String) {
    match v {
        Json::Lit(l) => out.push_str(l),
        Json::Num(n) => out.push_str(n),
        Json::Str(s) => string(s, out),
        Json::Arr(items) if items.is_empty() => out.push_str("[]"),
        Json::Obj(pairs) if pairs.is_empty() => out.push_str("{}"),
        Json::Arr(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                indent(level + 1, out);
                dump(item, level + 1, out);
            }
            indent(level, out);
            out.push(']');
        }
        Json::Obj(pairs) => {
            out.push('{');
            for (n, (k, item)) in pairs.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                indent(level + 1, out);
                string(k, out);
                out.push_str(": ");
                dump(item, level + 1, out);
            }
            indent(level, out);
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn show(s: &str) -> Option<String> {
        lines(s.as_bytes()).map(|l| l.join("\n"))
    }

    #[test]
    fn prints_as_python_json_dumps() {
        assert_eq!(
            show(
                r#"{"a": [1, 2.50, {"b": null}], "e": {}, "l": [], "s": "x\u00e9\ny\"", "a": true}"#
            )
            .unwrap(),
            "{\n    \"a\": true,\n    \"e\": {},\n    \"l\": [],\n    \"s\": \"xé\\ny\\\"\"\n}"
        );
        assert_eq!(show("1E5").unwrap(), "100000.0");
        assert_eq!(show("-0").unwrap(), "0");
        assert_eq!(show("1e400").unwrap(), "Infinity");
        assert_eq!(
            show("123456789012345678901234567890").unwrap(),
            "123456789012345678901234567890"
        );
        assert_eq!(show(r#""\ud83d\ude00\u0001""#).unwrap(), "\"😀\\u0001\"");
        assert_eq!(
            show("[NaN, -Infinity]").unwrap(),
            "[\n    NaN,\n    -Infinity\n]"
        );
        for bad in [
            "",
            "{",
            "[1,]",
            "01",
            "1.",
            "\"a\nb\"",
            "{\"a\" 1}",
            "[1] x",
            "\"\\ud800\"",
        ] {
            assert_eq!(show(bad), None, "{bad:?}");
        }
        assert!(is_json_type("application/json; charset=utf-8"));
        assert!(is_json_type("Application/Problem+JSON"));
        assert!(!is_json_type("text/json"));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = "[".repeat(100_000);
        assert_eq!(lines(deep.as_bytes()), None);
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = lines(&data);
        }

        #[test]
        fn never_panics_on_json_like_text(s in "[\\[\\]{}\",:0-9eE.+\\-a-z\\\\ ]{0,40}") {
            let _ = lines(s.as_bytes());
        }
    }
}
