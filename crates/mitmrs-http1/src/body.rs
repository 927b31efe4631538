//! Incremental body decoding (RFC 9112 sections 6 and 7.1).

use bytes::{Bytes, BytesMut};
use mitmrs_core::Headers;

use crate::head::fields_from_ranges;
use crate::{Error, Framing, MAX_CHUNK_LINE, MAX_HEADERS, MAX_TRAILERS};

/// What [`BodyDecoder::decode`] produced.
#[derive(Debug, PartialEq)]
pub enum BodyEvent {
    /// Body bytes, never empty and never more than `max_piece` bytes.
    ///
    /// For a chunked body these are the data of one chunk: a chunk is handed out as
    /// soon as its bytes are there, so a big chunk may come as several `Data`
    /// events, but one event never spans two chunks. For Length and UntilClose
    /// bodies: whatever is available.
    Data(Bytes),
    /// The body ended. `trailers` is `Some` if a chunked body carried trailer
    /// fields, `None` otherwise.
    End { trailers: Option<Headers> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// A Content-Length body with this many bytes left.
    Length {
        remaining: u64,
    },
    /// A body delimited by the connection closing.
    UntilClose,
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Inside a chunk's data.
    ChunkData {
        remaining: u64,
    },
    /// Expecting the CRLF after chunk data.
    ChunkDataEnd,
    /// After the last chunk: trailer fields and the blank line.
    Trailers,
    Done,
}

/// Decodes one message body incrementally from a buffer the caller fills.
///
/// Call [`decode`](Self::decode) whenever bytes arrive, until it returns
/// `Ok(None)` (needs more) or [`BodyEvent::End`]; bytes after the body (a pipelined
/// message) are left in the buffer. When the peer closes the connection, call
/// [`eof`](Self::eof) after draining the buffer with `decode`.
#[derive(Clone, Debug)]
pub struct BodyDecoder {
    framing: Framing,
    state: State,
    max_piece: usize,
    consumed: u64,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing` that hands out at most `max_piece`
    /// bytes per [`BodyEvent::Data`] (0 is taken as 1).
    pub fn new(framing: Framing, max_piece: usize) -> Self {
        let state = match framing {
            Framing::None | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length { remaining: n },
            Framing::Chunked => State::ChunkSize,
            Framing::UntilClose => State::UntilClose,
        };
        BodyDecoder {
            framing,
            state,
            max_piece: max_piece.max(1),
            consumed: 0,
        }
    }

    /// The framing this decoder was made for.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Whether the end of the body has been reached (and returned, or is due).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Body bytes decoded so far (chunk framing not counted).
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// How many body bytes may next be taken straight from the connection,
    /// unframed, instead of through [`decode`](Self::decode): the rest of a
    /// Content-Length body, or `u64::MAX` for a body ended by closing. `None` for
    /// chunked bodies and after the end. Only meaningful once the read buffer is
    /// drained; report what was taken with [`passed_through`](Self::passed_through).
    pub fn passthrough(&self) -> Option<u64> {
        match self.state {
            State::Length { remaining } => Some(remaining),
            State::UntilClose => Some(u64::MAX),
            _ => None,
        }
    }

    /// Records `n` body bytes moved past the decoder (at most what
    /// [`passthrough`](Self::passthrough) allowed).
    pub fn passed_through(&mut self, n: u64) {
        match self.state {
            State::Length { remaining } => {
                debug_assert!(n <= remaining, "passed through more than the body holds");
                let left = remaining.saturating_sub(n);
                self.state = if left == 0 {
                    State::Done
                } else {
                    State::Length { remaining: left }
                };
            }
            State::UntilClose => {}
            _ => {
                debug_assert!(n == 0, "passthrough outside a Length/UntilClose body");
                return;
            }
        }
        self.consumed += n;
    }

    /// Consumes body bytes from the front of `buf` and returns the next event;
    /// `Ok(None)` means more bytes are needed (everything useful was consumed).
    ///
    /// Data is split off `buf` without copying. Chunk extensions are ignored.
    /// Errors: a chunk-size line longer than [`MAX_CHUNK_LINE`], not hex, or
    /// overflowing u64; chunk data not followed by CRLF; a malformed trailer field
    /// or a trailer section larger than [`MAX_TRAILERS`]. After an error the decoder
    /// must not be used again (it keeps returning errors or `None`).
    ///
    /// Once the body has ended, further calls return `End { trailers: None }`
    /// again without touching `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<BodyEvent>, Error> {
        loop {
            match self.state {
                State::Done => return Ok(Some(BodyEvent::End { trailers: None })),
                State::Length { remaining } => {
                    let Some(data) = self.take(buf, remaining) else {
                        return Ok(None);
                    };
                    let left = remaining - data.len() as u64;
                    self.state = if left == 0 {
                        State::Done
                    } else {
                        State::Length { remaining: left }
                    };
                    return Ok(Some(BodyEvent::Data(data)));
                }
                State::UntilClose => {
                    return Ok(self.take(buf, u64::MAX).map(BodyEvent::Data));
                }
                State::ChunkSize => {
                    let Some(size) = parse_chunk_size(buf)? else {
                        return Ok(None);
                    };
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::ChunkData { remaining: size }
                    };
                }
                State::ChunkData { remaining } => {
                    let Some(data) = self.take(buf, remaining) else {
                        return Ok(None);
                    };
                    let left = remaining - data.len() as u64;
                    self.state = if left == 0 {
                        State::ChunkDataEnd
                    } else {
                        State::ChunkData { remaining: left }
                    };
                    return Ok(Some(BodyEvent::Data(data)));
                }
                State::ChunkDataEnd => match &buf[..] {
                    [b'\r', b'\n', ..] => {
                        let _ = buf.split_to(2);
                        self.state = State::ChunkSize;
                    }
                    [] | [b'\r'] => return Ok(None),
                    _ => return Err(Error::MissingChunkTerminator),
                },
                State::Trailers => {
                    let Some(trailers) = parse_trailers(buf)? else {
                        return Ok(None);
                    };
                    self.state = State::Done;
                    return Ok(Some(BodyEvent::End { trailers }));
                }
            }
        }
    }

    /// The peer closed the connection (and `buf` was drained with `decode`).
    ///
    /// UntilClose bodies end here: `Ok(End { trailers: None })`. A body that has
    /// already ended also gives `End { trailers: None }`. A Length or Chunked body
    /// that is not complete is [`Error::UnexpectedEof`].
    pub fn eof(&mut self) -> Result<BodyEvent, Error> {
        match self.state {
            State::Done | State::UntilClose => {
                self.state = State::Done;
                Ok(BodyEvent::End { trailers: None })
            }
            _ => Err(Error::UnexpectedEof {
                expected: self.framing,
                received: self.consumed,
            }),
        }
    }

    /// Splits off up to `limit` (and `max_piece`) bytes; None if `buf` is empty.
    fn take(&mut self, buf: &mut BytesMut, limit: u64) -> Option<Bytes> {
        let n = usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .min(self.max_piece)
            .min(buf.len());
        if n == 0 {
            return None;
        }
        self.consumed += n as u64;
        Some(buf.split_to(n).freeze())
    }
}

/// Parses `chunk-size [chunk-ext] CRLF` at the front of `buf` and consumes it.
fn parse_chunk_size(buf: &mut BytesMut) -> Result<Option<u64>, Error> {
    let window = &buf[..buf.len().min(MAX_CHUNK_LINE)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() >= MAX_CHUNK_LINE {
            return Err(Error::ChunkLineTooLong {
                limit: MAX_CHUNK_LINE,
            });
        }
        return Ok(None);
    };
    let full = &window[..=lf];
    let Some(line) = full.strip_suffix(b"\r\n") else {
        return Err(invalid_chunk_line(full));
    };
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let (hex, rest) = line.split_at(digits);
    if hex.is_empty() {
        return Err(invalid_chunk_line(full));
    }
    // chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
    // Extensions are ignored, but must not hide control characters (bare CR).
    let ws = rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    let rest = &rest[ws..];
    let ext_ok = rest.is_empty()
        || (rest[0] == b';' && rest.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f)));
    if !ext_ok {
        return Err(invalid_chunk_line(full));
    }
    let size = hex.iter().try_fold(0u64, |acc, &b| {
        let d = (b as char).to_digit(16)?;
        acc.checked_mul(16)?.checked_add(u64::from(d))
    });
    let Some(size) = size else {
        return Err(invalid_chunk_line(full));
    };
    let _ = buf.split_to(lf + 1);
    Ok(Some(size))
}

fn invalid_chunk_line(line: &[u8]) -> Error {
    Error::InvalidChunkSize {
        line: String::from_utf8_lossy(line).into_owned(),
    }
}

/// Parses the trailer section (fields and the final blank line) at the front of
/// `buf` and consumes it. `Some(None)`: complete, no trailer fields.
fn parse_trailers(buf: &mut BytesMut) -> Result<Option<Option<Headers>>, Error> {
    match &buf[..] {
        [b'\r', b'\n', ..] => {
            let _ = buf.split_to(2);
            return Ok(Some(None));
        }
        [] | [b'\r'] => return Ok(None),
        _ => {}
    }
    let window = &buf[..buf.len().min(MAX_TRAILERS)];
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(window, &mut slots) {
        Ok(httparse::Status::Complete((len, fields))) => {
            let base = window.as_ptr() as usize;
            let offset = |s: &[u8]| {
                let start = s.as_ptr() as usize - base;
                start..start + s.len()
            };
            let ranges: Vec<_> = fields
                .iter()
                .map(|h| (offset(h.name.as_bytes()), offset(h.value)))
                .collect();
            let section = buf.split_to(len).freeze();
            if ranges.is_empty() {
                return Ok(Some(None));
            }
            Ok(Some(Some(fields_from_ranges(&section, ranges))))
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_TRAILERS => {
            Err(Error::TrailersTooLarge {
                limit: MAX_TRAILERS,
            })
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(Error::TooManyHeaders { limit: MAX_HEADERS }),
        Err(_) => Err(Error::InvalidHeader),
    }
}
