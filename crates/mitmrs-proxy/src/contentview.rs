//! Body rendering for the console dumper, after mitmproxy's "auto" content view:
//! JSON re-indented as Python prints it ([`crate::jsonview`]), URL-encoded forms
//! as aligned `key: value` pairs, mostly-binary data as a hex dump, everything
//! else as text lines with control characters escaped. (HTML, XML and the other
//! mitmproxy views are not reproduced; they print as text.)

/// Escapes control characters (except tab) as `\xNN`.
pub fn escape_control(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() && c != '\t' {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// mitmproxy's `is_mostly_bin`: over 30% of the first 100 bytes are not text.
pub fn is_mostly_bin(b: &[u8]) -> bool {
    let head = &b[..b.len().min(100)];
    if head.is_empty() {
        return false;
    }
    let bin = head
        .iter()
        .filter(|&&c| c < 9 || (13 < c && c < 32) || c > 126)
        .count();
    bin * 10 > head.len() * 3
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(())
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form_lines(body: &str) -> Vec<String> {
    let pairs: Vec<(String, String)> = body
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect();
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        .min(30);
    pairs
        .into_iter()
        .map(|(k, v)| {
            format!(
                "{:<w$}{}",
                format!("{k}:"),
                escape_control(&v),
                w = width + 2
            )
        })
        .collect()
}

fn hexdump_lines(b: &[u8]) -> Vec<String> {
    b.chunks(16)
        .enumerate()
        .map(|(i, part)| {
            let hex: Vec<String> = part.iter().map(|c| format!("{c:02x}")).collect();
            let text: String = part
                .iter()
                .map(|&c| {
                    if (32..127).contains(&c) {
                        c as char
                    } else {
                        '.'
                    }
                })
                .collect();
            format!("{:010x} {:<47}   {}", i * 16, hex.join(" "), text)
        })
        .collect()
}

/// A request's query as mitmproxy's "Query" view shows it (for requests
/// without a body): aligned `key: value` pairs, decoded.
pub fn query_lines(query: &str) -> Vec<String> {
    form_lines(query)
}

/// The lines of a body as mitmdump would show them (`None`: the content is missing).
pub fn lines(content: Option<&[u8]>, content_type: Option<&str>) -> Vec<String> {
    let Some(b) = content else {
        return vec!["content missing".into()];
    };
    if b.is_empty() {
        return Vec::new();
    }
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    if crate::jsonview::is_json_type(&ct) {
        if let Some(l) = crate::jsonview::lines(b) {
            return l;
        }
    }
    if ct.starts_with("application/x-www-form-urlencoded") {
        if let Ok(s) = std::str::from_utf8(b) {
            return form_lines(s);
        }
    }
    if is_mostly_bin(b) {
        return hexdump_lines(b);
    }
    String::from_utf8_lossy(b)
        .lines()
        .map(|l| escape_control(l.strip_suffix('\r').unwrap_or(l)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views() {
        assert_eq!(
            lines(Some(b"line1\r\nline2\n"), Some("text/plain")),
            vec!["line1", "line2"]
        );
        assert_eq!(
            lines(
                Some(b"a=1&long+key=x%20y"),
                Some("application/x-www-form-urlencoded")
            ),
            vec!["a:        1", "long key: x y"]
        );
        assert_eq!(lines(None, None), vec!["content missing"]);
        assert_eq!(query_lines("a=1&b=x%20y&c"), vec!["a: 1", "b: x y", "c: "]);
        assert_eq!(lines(Some(b""), None), Vec::<String>::new());
        let bin = lines(Some(&[0u8, 1, 2, 255, b'A']), None);
        assert_eq!(
            bin,
            vec![format!("{:010x} {:<47}   {}", 0, "00 01 02 ff 41", "....A")]
        );
        assert_eq!(
            lines(Some(b"hello\x1bworld"), None),
            vec!["hello\\x1bworld"]
        );
        // a truncated escape at the end never panics
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%"), "%");
    }
}
