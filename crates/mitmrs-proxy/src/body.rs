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
        match src.fill_body().await {
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
pub async fn buffer(
    src: &mut Conn,
    dec: &mut BodyDecoder,
    limit: Option<u64>,
    stream_threshold: Option<u64>,
) -> Result<Buffered, BodyError> {
    if let Framing::Length(n) = dec.framing() {
        if limit.is_some_and(|l| n > l) {
            return Err(BodyError::TooLarge(limit.unwrap_or(0)));
        }
        if stream_threshold.is_none_or(|t| n <= t) && n > 0 && n <= MAX_EXACT {
            return buffer_exact(src, n as usize).await;
        }
    }
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
                return Ok(Buffered::Complete(join(pieces, total), trailers));
            }
            // BodyEvent is non-exhaustive in spirit; nothing else exists today.
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
}

/// A body's pieces as one buffer (`total` bytes): a single piece as it is, more
/// copied once into a buffer of exactly that size.
pub fn join(mut pieces: Vec<Bytes>, total: u64) -> Bytes {
    match pieces.len() {
        0 => Bytes::new(),
        1 => pieces.pop().unwrap_or_default(),
        _ => {
            let mut all = BytesMut::with_capacity(total as usize);
            for p in pieces {
                all.extend_from_slice(&p);
            }
            all.freeze()
        }
    }
}

/// The most memory reserved ahead for a declared Content-Length.
const UPFRONT: usize = 128 << 20;

/// The largest Content-Length body read straight into one buffer of its size.
const MAX_EXACT: u64 = 1 << 32;

/// Reads a body of known length into one buffer of exactly that size: no piece
/// list, no second copy to join them.
async fn buffer_exact(src: &mut Conn, n: usize) -> Result<Buffered, BodyError> {
    // Room for the whole body up front, but never more than UPFRONT on a peer's word
    // alone: past that the buffer grows as bytes actually arrive.
    if src.rbuf.len() < n {
        src.rbuf.reserve((n - src.rbuf.len()).min(UPFRONT));
    }
    // Memory is committed ahead of the data in windows as large as what has
    // arrived so far: a big body faults its pages in a few calls, and a peer that
    // announces a size and sends nothing commits nothing.
    let mut populated = src.rbuf.len();
    while src.rbuf.len() < n {
        if populated <= src.rbuf.len() {
            let want = (n - src.rbuf.len()).min(src.rbuf.len().max(crate::mem::POPULATE_MIN));
            let spare = src.rbuf.spare_capacity_mut();
            let ahead = want.min(spare.len());
            crate::mem::populate(&mut spare[..ahead]);
            populated = src.rbuf.len() + ahead;
        }
        match src.fill_reserved().await {
            Ok(0) => {
                return Err(BodyError::Read(format!(
                    "connection closed after {} of {n} body bytes",
                    src.rbuf.len()
                )))
            }
            Ok(_) => {}
            Err(e) => return Err(BodyError::Read(e.to_string())),
        }
    }
    Ok(Buffered::Complete(src.rbuf.split_to(n).freeze(), None))
}

/// Runs a message's transformer (if any) on one piece: inline, or on a
/// blocking-pool thread if it may block (a runtime thread serves many
/// connections, and mitmproxy's way of calling `.stream` callables on its event
/// loop stalls them all). Without a transformer the piece comes back as is.
pub async fn transform(
    stream: &mut StreamMode,
    data: Bytes,
    end: bool,
) -> Result<Vec<Bytes>, BodyError> {
    let StreamMode::Transform(t) = stream else {
        return Ok(vec![data]);
    };
    if !t.may_block() {
        return t.transform(data, end).map_err(BodyError::Transform);
    }
    let StreamMode::Transform(mut t) = std::mem::replace(stream, StreamMode::On) else {
        unreachable!("matched above");
    };
    let (t, out) = tokio::task::spawn_blocking(move || {
        let out = t.transform(data, end);
        (t, out)
    })
    .await
    .map_err(|_| BodyError::Transform("the stream transformer panicked".into()))?;
    *stream = StreamMode::Transform(t);
    out.map_err(BodyError::Transform)
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
    pub fn new(
        dst: &'a mut Conn,
        framing: OutFraming,
        stream: &'a mut StreamMode,
        store: bool,
    ) -> Self {
        Self {
            dst,
            framing,
            stream,
            store: store.then(BytesMut::new),
            scratch: BytesMut::new(),
        }
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
                self.scratch
                    .extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                let head = self.scratch.split().freeze();
                self.dst
                    .write_bufs(&mut [head, piece, Bytes::from_static(b"\r\n")])
                    .await
            }
            OutFraming::Length | OutFraming::Close => self.dst.write_all(&piece).await,
        };
        res.map_err(|e| BodyError::Write(e.to_string()))
    }

    async fn transform(&mut self, data: Bytes, end: bool) -> Result<Vec<Bytes>, BodyError> {
        transform(self.stream, data, end).await
    }

    /// Sends one piece as received (through the transformer, if set).
    pub async fn piece(&mut self, data: Bytes) -> Result<(), BodyError> {
        match self.stream {
            StreamMode::Transform(_) => {
                for p in self.transform(data, false).await? {
                    self.emit(p).await?;
                }
                Ok(())
            }
            _ => self.emit(data).await,
        }
    }

    /// Sends several pieces; without a transformer in one vectored write. Empties `batch`.
    pub async fn pieces(&mut self, batch: &mut Vec<Bytes>) -> Result<(), BodyError> {
        if matches!(self.stream, StreamMode::Transform(_)) || batch.len() == 1 {
            for p in batch.drain(..) {
                self.piece(p).await?;
            }
            return Ok(());
        }
        if let Some(s) = self.store.as_mut() {
            for p in batch.iter() {
                s.extend_from_slice(p);
            }
        }
        let mut bufs: Vec<Bytes> = match self.framing {
            OutFraming::Chunked => {
                let mut v = Vec::with_capacity(batch.len() * 3);
                for p in batch.drain(..).filter(|p| !p.is_empty()) {
                    v.push(Bytes::from(format!("{:x}\r\n", p.len())));
                    v.push(p);
                    v.push(Bytes::from_static(b"\r\n"));
                }
                v
            }
            OutFraming::Length | OutFraming::Close => std::mem::take(batch),
        };
        self.dst
            .write_bufs(&mut bufs)
            .await
            .map_err(|e| BodyError::Write(e.to_string()))
    }

    /// Whether body bytes may go to the receiver exactly as read, unseen: no
    /// transformer, no stored copy, no re-framing.
    fn passthrough_ok(&self) -> bool {
        self.store.is_none()
            && !matches!(self.stream, StreamMode::Transform(_))
            && matches!(self.framing, OutFraming::Length | OutFraming::Close)
    }

    /// Ends the body: the transformer's final call, then the last chunk and trailers.
    pub async fn finish(&mut self, trailers: Option<&Headers>) -> Result<(), BodyError> {
        if let StreamMode::Transform(_) = self.stream {
            for p in self.transform(Bytes::new(), true).await? {
                self.emit(p).await?;
            }
        }
        if self.framing == OutFraming::Chunked {
            let mut out = BytesMut::new();
            encode_last_chunk(trailers, &mut out);
            self.dst
                .write_all(&out)
                .await
                .map_err(|e| BodyError::Write(e.to_string()))?;
        }
        self.dst
            .flush()
            .await
            .map_err(|e| BodyError::Write(e.to_string()))
    }
}

/// Streams the rest of a body from `src` to `w`, after `prefix` pieces. Returns the
/// trailers. `limit` is `body_size_limit`, counted over the whole body. The pieces
/// already decodable from one read (up to 256 KiB) go out in one vectored write.
pub async fn stream(
    src: &mut Conn,
    dec: &mut BodyDecoder,
    prefix: Vec<Bytes>,
    w: &mut BodyWriter<'_>,
    limit: Option<u64>,
) -> Result<Option<Headers>, BodyError> {
    let mut total: u64 = 0;
    let check = |total: u64| match limit {
        Some(l) if total > l => Err(BodyError::TooLarge(l)),
        _ => Ok(()),
    };
    for p in prefix {
        total += p.len() as u64;
        check(total)?;
        w.piece(p).await?;
    }
    let mut batch: Vec<Bytes> = Vec::with_capacity(8);
    loop {
        // Take everything decodable without I/O.
        let mut end = None;
        let mut more = false;
        loop {
            if batch.len() == 8 {
                more = true;
                break;
            }
            match dec.decode(&mut src.rbuf) {
                Ok(Some(BodyEvent::Data(b))) => {
                    total += b.len() as u64;
                    check(total)?;
                    batch.push(b);
                }
                Ok(Some(BodyEvent::End { trailers })) => {
                    end = Some(trailers);
                    break;
                }
                Ok(None) => break,
                Err(e) => return Err(BodyError::Read(e.to_string())),
                #[allow(unreachable_patterns)]
                Ok(Some(_)) => {}
            }
        }
        if !batch.is_empty() {
            w.pieces(&mut batch).await?;
        }
        if let Some(trailers) = end {
            w.finish(trailers.as_ref()).await?;
            return Ok(trailers);
        }
        if more || dec.is_done() {
            continue;
        }
        // More bytes: moved kernel-side where possible (an end of file found there
        // reads as 0 below), else read into the buffer.
        #[cfg(target_os = "linux")]
        let spliced = match try_splice(src, dec, w, limit, total).await {
            Some(moved) => {
                let moved = moved?;
                total += moved.bytes;
                dec.passed_through(moved.bytes);
                check(total)?;
                if !moved.eof {
                    continue;
                }
                Some(0)
            }
            None => None,
        };
        #[cfg(not(target_os = "linux"))]
        let spliced: Option<usize> = None;
        let read = match spliced {
            Some(n) => Ok(n),
            None => src.fill_body().await,
        };
        match read {
            Ok(0) => match dec.eof() {
                Ok(BodyEvent::End { trailers }) => {
                    w.finish(trailers.as_ref()).await?;
                    return Ok(trailers);
                }
                Ok(BodyEvent::Data(b)) => {
                    total += b.len() as u64;
                    check(total)?;
                    w.piece(b).await?;
                }
                Err(e) => return Err(BodyError::Read(e.to_string())),
                #[allow(unreachable_patterns)]
                Ok(_) => {}
            },
            Ok(_) => {}
            Err(e) => return Err(BodyError::Read(e.to_string())),
        }
    }
}

/// Moves the rest of the body kernel-side with `splice(2)` when both sides are
/// plain TCP, nothing is buffered, and the bytes go out unchanged
/// ([`BodyWriter::passthrough_ok`]). `None`: not applicable, copy as usual.
/// Never more than `limit` allows is moved.
#[cfg(target_os = "linux")]
async fn try_splice(
    src: &mut Conn,
    dec: &BodyDecoder,
    w: &mut BodyWriter<'_>,
    limit: Option<u64>,
    total: u64,
) -> Option<Result<crate::splice::Moved, BodyError>> {
    let left = dec.passthrough()?;
    if !src.rbuf.is_empty() || !w.passthrough_ok() {
        return None;
    }
    // Never past the limit: when nothing more is allowed, the copy path reads the
    // next byte and fails without forwarding it, as for any body.
    let max = limit.map_or(left, |l| left.min(l.saturating_sub(total)));
    if max == 0 {
        return None;
    }
    let (from, to) = (src.io.tcp()?, w.dst.io.tcp()?);
    let res = crate::splice::forward(from, to, max, src.read_timeout).await?;
    Some(res.map_err(|e| match e {
        crate::splice::SpliceError::Read(e) => BodyError::Read(e.to_string()),
        crate::splice::SpliceError::Write(e) => BodyError::Write(e.to_string()),
    }))
}

/// Bodies up to this size are copied behind the head and sent in one write.
const COALESCE: usize = 16 * 1024;

/// Writes a head and, if given, a complete buffered body in the given framing,
/// then flushes. Small bodies go out with the head in one write; large ones in one
/// vectored write without copying.
pub async fn write_message(
    dst: &mut Conn,
    mut head: BytesMut,
    framing: OutFraming,
    body: Option<&Bytes>,
    trailers: Option<&Headers>,
) -> Result<(), BodyError> {
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
            dst.write_bufs(&mut [head.freeze(), b.clone(), tail.freeze()])
                .await
        }
        (Some(b), _) if b.len() <= COALESCE => {
            head.extend_from_slice(b);
            dst.write_all(&head).await
        }
        (Some(b), _) => dst.write_bufs(&mut [head.freeze(), b.clone()]).await,
    };
    res.map_err(|e| BodyError::Write(e.to_string()))?;
    dst.flush()
        .await
        .map_err(|e| BodyError::Write(e.to_string()))
}

/// Whether a framing from the codec counts as "length known".
pub fn known_length(f: Framing) -> Option<u64> {
    match f {
        Framing::Length(n) => Some(n),
        Framing::None => Some(0),
        _ => None,
    }
}
