//! Reading and writing flow files: a sequence of tnetstring records, one per flow.
//!
//! [`FlowReader`] holds one record at a time (at most `max_record` bytes), so a
//! file of a million flows is read in the memory of its largest flow. A record
//! that is well-formed but not a flow we can use (a TCP flow, a bad field) is
//! reported and skipped, and so is a record whose length is right but whose
//! contents do not decode; an error in the framing itself (a bad length prefix,
//! a cut-off record) ends the read, since nothing after it can be trusted to
//! start a record.

use std::io::{self, BufRead, Read, Write};

use bytes::Bytes;
use mitmrs_core::HttpFlow;

use crate::compat;
use crate::state::{
    canonical_http_flow, flow_from_state, flow_from_tape, flow_type_version, http_flow_from_tape,
    write_flow, StateError, FLOW_FORMAT_VERSION,
};
use crate::tnetstring::{self, DecodeError, Shallow, Tape};

/// Appends the record of `flow` to `out`.
pub fn encode_flow(flow: &HttpFlow, out: &mut Vec<u8>) {
    write_flow(flow, out);
}

/// Writes flows to a file (mitmproxy's `FlowWriter`).
pub struct FlowWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
}

impl<W: Write> FlowWriter<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            buf: Vec::new(),
        }
    }

    pub fn add(&mut self, flow: &HttpFlow) -> io::Result<()> {
        self.buf.clear();
        encode_flow(flow, &mut self.buf);
        self.out.write_all(&self.buf)
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Why a flow file could not be read (further).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("this looks like a HAR file (it starts with '{{'); mitmrs does not import HAR yet — convert it with `mitmdump -nr FILE.har -w FILE.mitm`")]
    Har,
    #[error("flow {index} (at byte {offset}) is cut off: the file ends inside it")]
    Truncated { index: usize, offset: u64 },
    #[error("flow {index} (at byte {offset}) is not a tnetstring record: {error}")]
    Invalid {
        index: usize,
        offset: u64,
        error: DecodeError,
    },
    #[error("flow {index} (at byte {offset}) is {size} bytes, more than the limit of {limit} (raise it with --set rfile_max_flow_size=...)")]
    TooLarge {
        index: usize,
        offset: u64,
        size: usize,
        limit: usize,
    },
    /// A complete record whose contents are not valid tnetstring; reading goes
    /// on after it.
    #[error("flow {index} (at byte {offset}) was skipped: it is damaged ({error}, counting from the flow's start)")]
    Damaged {
        index: usize,
        offset: u64,
        error: DecodeError,
    },
    /// A well-formed record that is not a usable flow; reading goes on after it.
    #[error("flow {index} (at byte {offset}) was skipped: {error}")]
    Flow {
        index: usize,
        offset: u64,
        error: StateError,
    },
}

impl ReadError {
    /// Reading can go on after this error.
    pub fn is_skip(&self) -> bool {
        matches!(self, ReadError::Flow { .. } | ReadError::Damaged { .. })
    }
}

/// Reads flows from a file (mitmproxy's `FlowReader`), one record at a time.
pub struct FlowReader<R: Read> {
    input: io::BufReader<R>,
    max_record: usize,
    offset: u64,
    index: usize,
    done: bool,
    last_len: usize,
    /// The tape of the last record the general reader read (its node
    /// storage is reused for the next; released when the canonical reader
    /// reads one, so a big record is not held through a run of others).
    tape: Tape,
    /// Records of the usual layout read by the canonical reader (see
    /// `state/canonical.rs`); off only to compare the two readers.
    canonical: bool,
}

impl<R: Read> FlowReader<R> {
    /// `max_record`: the largest record (one flow, bodies included) to accept.
    pub fn new(input: R, max_record: usize) -> Self {
        Self {
            input: io::BufReader::with_capacity(64 * 1024, input),
            max_record,
            offset: 0,
            index: 0,
            done: false,
            last_len: 0,
            tape: Tape::empty(),
            canonical: true,
        }
    }

    /// Every record read by the general reader. For tests and the fuzz
    /// target, which check that this reads every input as the default does.
    #[doc(hidden)]
    pub fn without_canonical_reader(mut self) -> Self {
        self.canonical = false;
        self
    }

    /// What this reader makes of the first `max` records: each flow as its
    /// record written again, each error as its message. For tests and the
    /// fuzz target, which compare readers by it.
    #[doc(hidden)]
    pub fn outcomes(self, max: usize) -> Vec<Result<Vec<u8>, String>> {
        self.take(max)
            .map(|r| {
                r.map(|f| {
                    let mut out = Vec::new();
                    encode_flow(&f, &mut out);
                    out
                })
                .map_err(|e| e.to_string())
            })
            .collect()
    }

    /// The next record's bytes, or `None` at the end of the file.
    fn next_record(&mut self) -> Result<Option<Bytes>, ReadError> {
        let (index, offset) = (self.index, self.offset);
        let mut prefix = Vec::with_capacity(12);
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                return if prefix.is_empty() {
                    Ok(None)
                } else {
                    Err(ReadError::Truncated { index, offset })
                };
            }
            if offset == 0
                && prefix.is_empty()
                && (buf.starts_with(b"{") || buf.starts_with(b"\xef\xbb\xbf{"))
            {
                return Err(ReadError::Har);
            }
            let b = buf[0];
            self.input.consume(1);
            prefix.push(b);
            match tnetstring::parse_prefix(&prefix) {
                Ok(None) => continue,
                Ok(Some((len, used))) => {
                    let total = len.checked_add(used + 1).ok_or(ReadError::TooLarge {
                        index,
                        offset,
                        size: usize::MAX,
                        limit: self.max_record,
                    })?;
                    if total > self.max_record {
                        return Err(ReadError::TooLarge {
                            index,
                            offset,
                            size: total,
                            limit: self.max_record,
                        });
                    }
                    // The buffer grows as the data arrives, so a prefix that
                    // claims a gigabyte in a short file costs nothing.
                    let mut rec = Vec::with_capacity(total.min(1 << 20));
                    rec.extend_from_slice(&prefix);
                    (&mut self.input)
                        .take((total - used) as u64)
                        .read_to_end(&mut rec)?;
                    if rec.len() < total {
                        return Err(ReadError::Truncated { index, offset });
                    }
                    self.offset += total as u64;
                    self.last_len = total;
                    return Ok(Some(Bytes::from(rec)));
                }
                Err(error) => {
                    return Err(ReadError::Invalid {
                        index,
                        offset,
                        error,
                    })
                }
            }
        }
    }

    /// The size in bytes of the last record read.
    pub fn last_record_len(&self) -> usize {
        self.last_len
    }

    /// The next flow: `Some(Err(e))` with `e.is_skip()` for a record that was
    /// skipped (call again for the rest), any other error ends the read.
    pub fn next_flow(&mut self) -> Option<Result<HttpFlow, ReadError>> {
        if self.done {
            return None;
        }
        self.index += 1;
        let (index, offset) = (self.index, self.offset);
        let rec = match self.next_record() {
            Ok(Some(r)) => r,
            Ok(None) => {
                self.done = true;
                return None;
            }
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        // A flow's fields average well over 6 bytes of file per value; the
        // budget keeps a record of nulls from becoming 10x its size in memory.
        let budget = rec.len() / 6 + 4096;
        // Nearly every record has the one layout the canonical reader reads
        // in a single pass; anything else goes through the tape.
        if self.canonical {
            if let Some(flow) = canonical_http_flow(&rec, budget) {
                self.tape.release();
                return Some(Ok(flow));
            }
        }
        let tape = &mut self.tape;
        match tape.decode_again(rec, budget) {
            Ok(()) => {}
            Err(error) => {
                return Some(Err(ReadError::Damaged {
                    index,
                    offset,
                    error,
                }));
            }
        };
        Some(read_state(tape).map_err(|error| match error {
            Unusable::Flow(error) => ReadError::Flow {
                index,
                offset,
                error,
            },
            Unusable::Damaged(error) => ReadError::Damaged {
                index,
                offset,
                error,
            },
        }))
    }
}

/// Why a decoded record is not a flow.
enum Unusable {
    Flow(StateError),
    Damaged(DecodeError),
}

/// The flow in a record. A current (format 21) HTTP record is read straight
/// from its tape; others (older formats, other flow types) as a [`Value`] tree,
/// upgraded by [`compat`].
fn read_state(tape: &Tape) -> Result<HttpFlow, Unusable> {
    let root = tape.root();
    if !matches!(root.get(), Ok(Shallow::Dict(_))) {
        let message = match root.get() {
            Ok(v) => format!("expected a dict, found {}", v.type_name()),
            Err(e) => format!("expected a dict, found an unreadable value ({e})"),
        };
        return Err(Unusable::Flow(StateError {
            field: "flow".into(),
            message,
        }));
    }
    let (kind, version) = flow_type_version(root);
    let current = version == Some(FLOW_FORMAT_VERSION);
    match kind.as_deref() {
        Some("http") if current => http_flow_from_tape(root).map_err(Unusable::Flow),
        Some("http") | None => {
            let value = root.to_value().map_err(Unusable::Damaged)?;
            let upgraded = compat::upgrade(value).map_err(Unusable::Flow)?;
            flow_from_state(&upgraded).map_err(Unusable::Flow)
        }
        Some(_) => flow_from_tape(root).map_err(Unusable::Flow),
    }
}

impl<R: Read> Iterator for FlowReader<R> {
    type Item = Result<HttpFlow, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_flow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mitmrs_core::{Client, Headers, Request, Server};
    use std::sync::Arc;

    fn flow(path: &str) -> HttpFlow {
        HttpFlow::new(
            Arc::new(Client::new(
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            )),
            Arc::new(Server::new(None)),
            Request::make("GET", &format!("http://h{path}"), "", Headers::new()).unwrap(),
        )
    }

    fn file(paths: &[&str]) -> Vec<u8> {
        let mut w = FlowWriter::new(Vec::new());
        for p in paths {
            w.add(&flow(p)).unwrap();
        }
        w.into_inner()
    }

    #[test]
    fn reads_what_it_wrote() {
        let data = file(&["/a", "/b", "/c"]);
        let paths: Vec<String> = FlowReader::new(&data[..], 1 << 20)
            .map(|f| f.unwrap().request.path)
            .collect();
        assert_eq!(paths, ["/a", "/b", "/c"]);
        assert_eq!(FlowReader::new(&b""[..], 10).count(), 0);
    }

    #[test]
    fn a_cut_off_file_keeps_the_flows_before_the_cut() {
        let data = file(&["/a", "/b"]);
        let cut = &data[..data.len() - 10];
        let got: Vec<_> = FlowReader::new(cut, 1 << 20).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().unwrap().request.path, "/a");
        let e = got[1].as_ref().unwrap_err().to_string();
        assert!(e.starts_with("flow 2 (at byte "), "{e}");
        assert!(e.ends_with("is cut off: the file ends inside it"), "{e}");
    }

    #[test]
    fn a_bad_record_is_skipped_and_reading_goes_on() {
        let mut data = file(&["/a"]);
        data.extend_from_slice(b"20:4:type;3:tcp;1:x;0:~}");
        data.extend_from_slice(&file(&["/c"]));
        let got: Vec<_> = FlowReader::new(&data[..], 1 << 20).collect();
        assert_eq!(got.len(), 3);
        let e = got[1].as_ref().unwrap_err();
        assert!(e.is_skip());
        assert!(
            e.to_string().contains("tcp flows are not supported yet"),
            "{e}"
        );
        assert_eq!(got[2].as_ref().unwrap().request.path, "/c");
    }

    #[test]
    fn a_damaged_record_is_skipped_and_reading_goes_on() {
        let mut data = file(&["/a"]);
        data.extend_from_slice(b"4:1:x;}");
        data.extend_from_slice(&file(&["/c"]));
        let got: Vec<_> = FlowReader::new(&data[..], 1 << 20).collect();
        assert_eq!(got.len(), 3);
        let e = got[1].as_ref().unwrap_err();
        assert!(e.is_skip());
        assert!(e.to_string().starts_with("flow 2 (at byte "), "{e}");
        assert!(e.to_string().contains("was skipped: it is damaged"), "{e}");
        assert_eq!(got[2].as_ref().unwrap().request.path, "/c");
    }

    #[test]
    fn a_huge_length_in_a_short_file_is_cut_off_not_allocated() {
        let e = FlowReader::new(&b"999999999:abc"[..], usize::MAX)
            .next()
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(
                e,
                ReadError::Truncated {
                    index: 1,
                    offset: 0
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn limits_and_garbage_are_named() {
        let data = file(&["/a"]);
        let e = FlowReader::new(&data[..], 100)
            .next()
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("more than the limit of 100 (raise it with --set rfile_max_flow_size=...)"),
            "{e}"
        );
        let e = FlowReader::new(&b"hello"[..], 100)
            .next()
            .unwrap()
            .unwrap_err()
            .to_string();
        assert_eq!(e, "flow 1 (at byte 0) is not a tnetstring record: byte 0: expected a length digit, found 'h'");
        let e = FlowReader::new(&b"{\"log\": {}}"[..], 100)
            .next()
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("this looks like a HAR file"), "{e}");
    }
}
