//! Moving a body from one side to the other: buffering it (with the size limits)
//! or streaming it piece by piece through an optional transformer, re-framed for
//! the receiving side. Reading and writing alternate in one task, so a slow
//! receiver slows the reading from the sender (backpressure) and at most one piece
//! (≤ 64 KiB) plus the read buffer is held per direction.

use bytes::{Bytes, BytesMut};
use mitmrs_core::{Headers, StreamMode};
use mitmrs_http1::{encode_chunk, encode_last_chunk, BodyDecoder, BodyEvent, Framing};

use crate::io::Conn;

/// Which side a body failure came from.
#[derive(Debug)]
pub enum BodyError {
    /// Reading from the sender failed or it sent malformed framing.
    Read(String),
    /// Writing to the receiver failed.
    Write(String),
    /// The body exceeded `body_size_limit`.
    TooLarge(u64),
    /// The stream transformer failed.
    Transform(String),
}

/// How the body is framed towards the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutFraming {
    /// Raw bytes; the length was announced in Content-Length.
    Length,
    /// Chunked transfer coding (trailers possible).
    Chunked,
    /// Raw bytes, ended by closing the connection.
    Close,
}

/// Reads the next body event, filling `src` as needed.
pub async fn next_event(src: &mut Conn, dec: &mut BodyDecoder) -> Result<BodyEvent, BodyError> {
    loop {
        match dec.decode(&mut src.rbuf) {
            Ok(Some(ev)) => return Ok(ev),
            Ok(None) => {}
            Err(e) => return Err(BodyError::Read(e.to_string())),
        }
        match src.fill().await {
            Ok(0) => return dec.eof().map_err(|e| BodyError::Read(e.to_string())),
            Ok(_) => {}
            Err(e) => return Err(BodyError::Read(e.to_string())),
        }
    }
}

/// The outcome of [`buffer`].
pub enum Buffered {
    /// The whole body, and its trailers.
    Complete(Bytes, Option<Headers>),
    /// The body passed the streaming threshold: the pieces read so far, to be sent
    /// first, and the rest is to be streamed.
    Overflow(Vec<Bytes>),
}

/// Buffers a body. Past `stream_threshold` it stops and hands back what it read;
/// past `limit` it fails with [`BodyError::TooLarge`].
pub async fn buffer(src: &mut Conn, dec: &mut BodyDecoder, limit: Option<u64>, stream_threshold: Option<u64>) -> Result<Buffered, BodyError> {
    let mut pieces: Vec<Bytes> = Vec::new();
    let mut total: u64 = 0;
    loop {
        match next_event(src, dec).await? {
            BodyEvent::Data(b) => {
                total += b.len() as u64;
                if let Some(l) = limit {
                    if total > l {
                        return Err(BodyError::TooLarge(l));
                    }
                }
                pieces.push(b);
                if let Some(t) = stream_threshold {
                    if total > t {
                        return Ok(Buffered::Overflow(pieces));
                    }
                }
            }
            BodyEvent::End { trailers } => {
                let body = match pieces.len() {
                    0 => Bytes::new(),
                    1 => pieces.pop().unwrap_or_default(),
                    _ => {
                        let mut all = BytesMut::with_capacity(total as usize);
                        for p in pieces {
                            all.extend_from_slice(&p);
                        }
                        all.freeze()
                    }
                };
                return Ok(Buffered::Complete(body, trailers));
            }
            // BodyEvent is non-exhaustive in spirit; nothing else exists today.
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
}

/// Writes body pieces in the receiver's framing, via the transformer if any.
pub struct BodyWriter<'a> {
    pub dst: &'a mut Conn,
    pub framing: OutFraming,
    pub stream: &'a mut StreamMode,
    /// Keeps a copy of what passed (`store_streamed_bodies`).
    pub store: Option<BytesMut>,
    scratch: BytesMut,
}

impl<'a> BodyWriter<'a> {
    pub fn new(dst: &'a mut Conn, framing: OutFraming, stream: &'a mut StreamMode, store: bool) -> Self {
        Self { dst, framing, stream, store: store.then(BytesMut::new), scratch: BytesMut::new() }
    }

    async fn emit(&mut self, piece: Bytes) -> Result<(), BodyError> {
        if piece.is_empty() {
            // An empty piece must never reach the wire as a chunk: it would end the body.
            return Ok(());
        }
        if let Some(s) = self.store.as_mut() {
            s.extend_from_slice(&piece);
        }
        let res = match self.framing {
            OutFraming::Chunked => {
                self.scratch.clear();
                self.scratch.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                let head = self.scratch.split().freeze();
                self.dst.write_bufs(&mut [head, piece, Bytes::from_static(b"\r\n")]).await
            }
            OutFraming::Length | OutFraming::Close => self.dst.write_all(&piece).await,
        };
        res.map_err(|e| BodyError::Write(e.to_string()))
    }

    /// Sends one piece as received (through the transformer, if set).
    pub async fn piece(&mut self, data: Bytes) -> Result<(), BodyError> {
        match self.stream {
            StreamMode::Transform(t) => {
                let out = t.transform(data, false).map_err(BodyError::Transform)?;
                for p in out {
                    self.emit(p).await?;
                }
                Ok(())
            }
            _ => self.emit(data).await,
        }
    }

    /// Ends the body: the transformer's final call, then the last chunk and trailers.
    pub async fn finish(&mut self, trailers: Option<&Headers>) -> Result<(), BodyError> {
        if let StreamMode::Transform(t) = self.stream {
            let out = t.transform(Bytes::new(), true).map_err(BodyError::Transform)?;
            for p in out {
                self.emit(p).await?;
            }
        }
        if self.framing == OutFraming::Chunked {
            let mut out = BytesMut::new();
            encode_last_chunk(trailers, &mut out);
            self.dst.write_all(&out).await.map_err(|e| BodyError::Write(e.to_string()))?;
        }
        self.dst.flush().await.map_err(|e| BodyError::Write(e.to_string()))
    }
}

/// Streams the rest of a body from `src` to `w`, after `prefix` pieces. Returns the
/// trailers. `limit` is `body_size_limit`, counted over the whole body.
pub async fn stream(src: &mut Conn, dec: &mut BodyDecoder, prefix: Vec<Bytes>, w: &mut BodyWriter<'_>, limit: Option<u64>) -> Result<Option<Headers>, BodyError> {
    let mut total: u64 = 0;
    for p in prefix {
        total += p.len() as u64;
        w.piece(p).await?;
    }
    loop {
        match next_event(src, dec).await? {
            BodyEvent::Data(b) => {
                total += b.len() as u64;
                if let Some(l) = limit {
                    if total > l {
                        return Err(BodyError::TooLarge(l));
                    }
                }
                w.piece(b).await?;
            }
            BodyEvent::End { trailers } => {
                w.finish(trailers.as_ref()).await?;
                return Ok(trailers);
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
}

/// Bodies up to this size are copied behind the head and sent in one write.
const COALESCE: usize = 16 * 1024;

/// Writes a head and, if given, a complete buffered body in the given framing,
/// then flushes. Small bodies go out with the head in one write; large ones in one
/// vectored write without copying.
pub async fn write_message(dst: &mut Conn, mut head: BytesMut, framing: OutFraming, body: Option<&Bytes>, trailers: Option<&Headers>) -> Result<(), BodyError> {
    let res = match (body, framing) {
        (None, _) => dst.write_all(&head).await,
        (Some(b), OutFraming::Chunked) if b.len() <= COALESCE => {
            encode_chunk(b, &mut head);
            encode_last_chunk(trailers, &mut head);
            dst.write_all(&head).await
        }
        (Some(b), OutFraming::Chunked) => {
            head.extend_from_slice(format!("{:x}\r\n", b.len()).as_bytes());
            let mut tail = BytesMut::from(&b"\r\n"[..]);
            encode_last_chunk(trailers, &mut tail);
            dst.write_bufs(&mut [head.freeze(), b.clone(), tail.freeze()]).await
        }
        (Some(b), _) if b.len() <= COALESCE => {
            head.extend_from_slice(b);
            dst.write_all(&head).await
        }
        (Some(b), _) => dst.write_bufs(&mut [head.freeze(), b.clone()]).await,
    };
    res.map_err(|e| BodyError::Write(e.to_string()))?;
    dst.flush().await.map_err(|e| BodyError::Write(e.to_string()))
}

/// Whether a framing from the codec counts as "length known".
pub fn known_length(f: Framing) -> Option<u64> {
    match f {
        Framing::Length(n) => Some(n),
        Framing::None => Some(0),
        _ => None,
    }
}
