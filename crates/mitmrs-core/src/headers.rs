//! [`Headers`]: an ordered multi-map of header fields, as on the wire.
//!
//! Semantics follow mitmproxy's `Headers` (a `MultiDict`):
//! - lookups are ASCII case-insensitive;
//! - field names keep their original case, order and duplicates;
//! - [`Headers::get`] joins duplicate values with `", "`;
//! - [`Headers::set`] replaces the value of the first matching field (keeping its
//!   name and position) and removes the others; a new field is appended;
//! - [`Headers::get_all`], [`Headers::add`] and [`Headers::insert`] work on single fields.
//!
//! Names and values are kept as raw bytes ([`Bytes`]), so a field that is not valid
//! UTF-8 round-trips unchanged; the `&str` accessors decode lossily.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;

/// One header field: `(name, value)` exactly as received or set.
pub type Field = (Bytes, Bytes);

/// An ordered multi-map of header fields. See the module docs for its semantics.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<Field>,
}

fn name_eq(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn to_bytes(s: impl AsRef<[u8]>) -> Bytes {
    Bytes::copy_from_slice(s.as_ref())
}

impl Headers {
    pub fn new() -> Self {
        Self { fields: Vec::new() }
    }

    pub fn with_capacity(n: usize) -> Self {
        Self {
            fields: Vec::with_capacity(n),
        }
    }

    /// Builds headers from `(name, value)` pairs, in order.
    pub fn from_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        Self {
            fields: pairs
                .into_iter()
                .map(|(n, v)| (to_bytes(n), to_bytes(v)))
                .collect(),
        }
    }

    /// Builds headers from already-owned fields, without copying.
    pub fn from_fields(fields: Vec<Field>) -> Self {
        Self { fields }
    }

    /// All fields in wire order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Mutable access to the raw field list.
    pub fn fields_mut(&mut self) -> &mut Vec<Field> {
        &mut self.fields
    }

    /// Number of fields (duplicates counted).
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.fields.iter().any(|(n, _)| name_eq(n, name.as_bytes()))
    }

    /// The value of the first field named `name`, as raw bytes.
    pub fn get_first_bytes(&self, name: &str) -> Option<&Bytes> {
        self.fields
            .iter()
            .find(|(n, _)| name_eq(n, name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// All values of `name`, joined with `", "` (mitmproxy's `headers[name]`), decoded lossily.
    pub fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        let mut it = self
            .fields
            .iter()
            .filter(|(n, _)| name_eq(n, name.as_bytes()));
        let (_, first) = it.next()?;
        match it.next() {
            None => Some(String::from_utf8_lossy(first)),
            Some((_, second)) => {
                let mut out = String::from_utf8_lossy(first).into_owned();
                for v in std::iter::once(second).chain(it.map(|(_, v)| v)) {
                    out.push_str(", ");
                    out.push_str(&String::from_utf8_lossy(v));
                }
                Some(Cow::Owned(out))
            }
        }
    }

    /// Every value of `name`, one per field, in order.
    pub fn get_all(&self, name: &str) -> Vec<Cow<'_, str>> {
        self.fields
            .iter()
            .filter(|(n, _)| name_eq(n, name.as_bytes()))
            .map(|(_, v)| String::from_utf8_lossy(v))
            .collect()
    }

    /// Every raw value of `name`, one per field, in order.
    pub fn get_all_bytes<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| name_eq(n, name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// mitmproxy's `headers[name] = value`: see [`Headers::set_all`].
    pub fn set(&mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.set_all(name, [value]);
    }

    /// Replaces the values of `name`: existing fields keep their name and position and
    /// take the new values in order; surplus old fields are removed; surplus new
    /// values are appended under `name`.
    pub fn set_all<V: AsRef<[u8]>>(
        &mut self,
        name: impl AsRef<[u8]>,
        values: impl IntoIterator<Item = V>,
    ) {
        let name = name.as_ref();
        let mut values = values.into_iter().map(to_bytes);
        self.fields.retain_mut(|(n, v)| {
            if !name_eq(n, name) {
                return true;
            }
            match values.next() {
                Some(new) => {
                    *v = new;
                    true
                }
                None => false,
            }
        });
        for v in values {
            self.fields.push((to_bytes(name), v));
        }
    }

    /// Appends a field, keeping existing ones.
    pub fn add(&mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.fields.push((to_bytes(name), to_bytes(value)));
    }

    /// Appends a field without copying.
    pub fn push(&mut self, name: Bytes, value: Bytes) {
        self.fields.push((name, value));
    }

    /// Inserts a field at `index` (clamped to the end).
    pub fn insert(&mut self, index: usize, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let index = index.min(self.fields.len());
        self.fields.insert(index, (to_bytes(name), to_bytes(value)));
    }

    /// Removes every field named `name`; returns how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.fields.len();
        self.fields.retain(|(n, _)| !name_eq(n, name.as_bytes()));
        before - self.fields.len()
    }

    /// Distinct names, in order of first appearance, with original case.
    pub fn keys(&self) -> Vec<Cow<'_, str>> {
        let mut out: Vec<&Bytes> = Vec::new();
        for (n, _) in &self.fields {
            if !out.iter().any(|o| name_eq(o, n)) {
                out.push(n);
            }
        }
        out.into_iter()
            .map(|n| String::from_utf8_lossy(n))
            .collect()
    }

    /// Iterates fields as lossily decoded strings.
    pub fn iter(&self) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
        self.fields
            .iter()
            .map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v)))
    }

    /// True if any comma-separated token of any `name` field equals `token`
    /// (case-insensitive), as used for `Connection` and `Transfer-Encoding`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all_bytes(name).any(|v| {
            v.split(|b| *b == b',')
                .any(|t| trim_ascii(t).eq_ignore_ascii_case(token.as_bytes()))
        })
    }
}

/// Trims ASCII spaces and tabs from both ends.
pub fn trim_ascii(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if *first == b' ' || *first == b'\t' {
            b = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if *last == b' ' || *last == b'\t' {
            b = rest;
        } else {
            break;
        }
    }
    b
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h() -> Headers {
        Headers::from_pairs([
            ("Host", "a"),
            ("X-Dup", "1"),
            ("content-type", "text/html"),
            ("x-dup", "2"),
        ])
    }

    #[test]
    fn lookup_is_case_insensitive_and_joins_duplicates() {
        let h = h();
        assert_eq!(h.get("HOST").as_deref(), Some("a"));
        assert_eq!(h.get("x-DUP").as_deref(), Some("1, 2"));
        assert_eq!(h.get_all("X-Dup"), vec!["1", "2"]);
        assert_eq!(h.get("missing"), None);
    }

    #[test]
    fn set_replaces_first_keeps_case_and_position_removes_rest() {
        let mut h = h();
        h.set("X-DUP", "3");
        assert_eq!(h.fields()[1], (Bytes::from("X-Dup"), Bytes::from("3")));
        assert_eq!(h.len(), 3);
        h.set("New", "v");
        assert_eq!(
            h.fields().last().map(|f| f.0.clone()),
            Some(Bytes::from("New"))
        );
    }

    #[test]
    fn set_all_add_insert_remove() {
        let mut h = h();
        h.set_all("x-dup", ["a", "b", "c"]);
        assert_eq!(h.get_all("X-Dup"), vec!["a", "b", "c"]);
        assert_eq!(h.fields()[1].0, Bytes::from("X-Dup"));
        assert_eq!(h.fields()[3].0, Bytes::from("x-dup"));
        assert_eq!(h.fields()[4].0, Bytes::from("x-dup"));
        h.add("Host", "b");
        assert_eq!(h.get_all("host"), vec!["a", "b"]);
        h.insert(0, "First", "1");
        assert_eq!(h.fields()[0].0, Bytes::from("First"));
        h.insert(100, "Last", "1");
        assert_eq!(
            h.fields().last().map(|f| f.0.clone()),
            Some(Bytes::from("Last"))
        );
        assert_eq!(h.remove("X-DUP"), 3);
        assert!(!h.contains("x-dup"));
    }

    #[test]
    fn tokens() {
        let h = Headers::from_pairs([("Connection", "keep-alive, Upgrade"), ("TE", "trailers")]);
        assert!(h.has_token("connection", "upgrade"));
        assert!(!h.has_token("connection", "close"));
    }

    #[test]
    fn keys_keep_first_case() {
        assert_eq!(h().keys(), vec!["Host", "X-Dup", "content-type"]);
    }
}
