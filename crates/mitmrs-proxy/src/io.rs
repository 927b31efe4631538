//! Buffered connection I/O shared by both sides: a byte stream ([`Stream`]: plain
//! TCP, or anything boxed such as TLS over TCP) with a read buffer, plus [`Rewind`]
//! to replay bytes already read when a stream changes hands (for example the first
//! TLS bytes read while sniffing). Plain TCP stays unboxed so that bodies between
//! two plain sockets can move with `splice(2)` (see [`crate::splice`]).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Any byte stream the proxy can read and write.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

pub type BoxIo = Box<dyn Io>;

/// The stream under a [`Conn`]: a plain TCP socket, or any other stream (TLS,
/// [`Rewind`], ...) boxed.
pub enum Stream {
    Tcp(TcpStream),
    Other(BoxIo),
}

impl Stream {
    /// Boxes any stream.
    pub fn other<T: Io>(io: T) -> Self {
        Stream::Other(Box::new(io))
    }

    /// A stream with nothing to read that swallows writes: the placeholder left
    /// behind when a connection's stream is taken out.
    pub fn empty() -> Self {
        Stream::other(tokio::io::empty())
    }

    /// The TCP socket, if this stream is one (no TLS or replay layer on top).
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Tcp(t) => Some(t),
            Stream::Other(_) => None,
        }
    }
}

impl From<TcpStream> for Stream {
    fn from(t: TcpStream) -> Self {
        Stream::Tcp(t)
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Tcp($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Other($s) => {
                let $s = Pin::new($s);
                $e
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(t) => t.is_write_vectored(),
            Stream::Other(o) => o.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

/// The largest body piece handed to a stream transformer or forwarded as one unit.
pub const READ_CHUNK: usize = 64 * 1024;

/// How much room a body read makes in the buffer: several pieces per syscall.
const BODY_READ: usize = 256 * 1024;

/// How much room a head read makes in the buffer.
const HEAD_READ: usize = 2 * 1024;

/// A stream with a read buffer.
pub struct Conn {
    pub io: Stream,
    pub rbuf: BytesMut,
    /// Idle timeout for a single read (mitmproxy's `tcp_timeout`).
    pub read_timeout: Duration,
    idle: IdleTimer,
}

/// The idle timeout of a connection's reads, kept cheap: one timer per connection
/// that wakes every quarter of the timeout, instead of a timer registered and
/// removed around every read (that was ~7% of the proxy's user-space instructions
/// per small request, callgrind). A read fails once a whole timeout has passed
/// with no read completing, so the limit is kept to within a quarter: a connection
/// goes after between 1 and 1.25 times `tcp_timeout` of silence.
#[derive(Default)]
pub(crate) struct IdleTimer {
    /// Armed on the first read that has to wait.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Reads completed so far, and the count when the timer last fired.
    reads: u64,
    seen: u64,
    /// Quarters in a row without a completed read.
    quiet: u8,
}

impl IdleTimer {
    /// Waits for the next quarter to pass; `true` once a whole timeout has
    /// passed without a completed read.
    async fn expired(&mut self, timeout: Duration) -> bool {
        self.quarter(timeout).await;
        let reads = self.reads;
        self.quiet_since(reads)
    }

    /// Waits for the next quarter of `timeout` to pass.
    pub(crate) async fn quarter(&mut self, timeout: Duration) {
        let quarter = timeout / 4;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(quarter)));
        sleep.as_mut().await;
        sleep.as_mut().reset(tokio::time::Instant::now() + quarter);
    }

    /// Notes the reads completed so far at the end of a quarter; `true` once
    /// four quarters in a row saw none.
    pub(crate) fn quiet_since(&mut self, reads: u64) -> bool {
        if reads == self.seen {
            self.quiet += 1;
        } else {
            self.seen = reads;
            self.quiet = 0;
        }
        self.quiet >= 4
    }
}

impl Conn {
    pub fn new(io: impl Into<Stream>, read_timeout: Duration) -> Self {
        Self {
            io: io.into(),
            rbuf: BytesMut::new(),
            read_timeout,
            idle: IdleTimer::default(),
        }
    }

    /// Frees the read buffer if it holds nothing, so an idle keep-alive connection
    /// costs no buffer memory.
    pub fn release_idle(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 0 {
            self.rbuf = BytesMut::new();
        }
    }

    /// Reads more bytes into `rbuf` (a head-sized read). Returns the number read; 0 means EOF.
    pub async fn fill(&mut self) -> io::Result<usize> {
        self.fill_with(HEAD_READ).await
    }

    /// Reads more body bytes into `rbuf`, up to 256 KiB at a time.
    pub async fn fill_body(&mut self) -> io::Result<usize> {
        self.fill_with(BODY_READ).await
    }

    /// Reads into the room already reserved in `rbuf` (a buffer sized for a whole
    /// body), so that a nearly full buffer is never grown (which would copy it).
    /// Reserves a body read's room only when there is none left.
    pub async fn fill_reserved(&mut self) -> io::Result<usize> {
        if self.rbuf.capacity() == self.rbuf.len() {
            return self.fill_body().await;
        }
        self.read_timed().await
    }

    async fn fill_with(&mut self, room: usize) -> io::Result<usize> {
        if self.rbuf.capacity() - self.rbuf.len() < room / 4 {
            self.rbuf.reserve(room);
        }
        self.read_timed().await
    }

    async fn read_timed(&mut self) -> io::Result<usize> {
        let Conn {
            io,
            rbuf,
            read_timeout,
            idle,
        } = self;
        let read = io.read_buf(rbuf);
        tokio::pin!(read);
        loop {
            tokio::select! {
                biased;
                r = &mut read => {
                    idle.reads += 1;
                    return r;
                }
                expired = idle.expired(*read_timeout) => {
                    if expired {
                        return Err(idle_timeout());
                    }
                }
            }
        }
    }

    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.io.write_all(data).await
    }

    /// Writes several buffers, using vectored writes where the stream supports them.
    pub async fn write_bufs(&mut self, bufs: &mut [Bytes]) -> io::Result<()> {
        let mut idx = 0;
        while idx < bufs.len() {
            if bufs[idx].is_empty() {
                idx += 1;
                continue;
            }
            let slices: Vec<io::IoSlice<'_>> =
                bufs[idx..].iter().map(|b| io::IoSlice::new(b)).collect();
            let mut n = self.io.write_vectored(&slices).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            while n > 0 && idx < bufs.len() {
                let take = n.min(bufs[idx].len());
                bufs[idx].advance(take);
                n -= take;
                if bufs[idx].is_empty() {
                    idx += 1;
                }
            }
        }
        Ok(())
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        self.io.flush().await
    }

    pub async fn shutdown(&mut self) {
        let _ = self.io.shutdown().await;
    }

    /// Takes the stream and whatever was read but not consumed.
    pub fn into_parts(self) -> (Stream, BytesMut) {
        (self.io, self.rbuf)
    }
}

/// The error of a read that waited longer than `tcp_timeout`.
pub(crate) fn idle_timeout() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "connection idle for too long (tcp_timeout)",
    )
}

/// A stream that first yields `prefix`, then reads from `inner`.
pub struct Rewind {
    prefix: Bytes,
    inner: Stream,
}

impl Rewind {
    pub fn new(prefix: Bytes, inner: Stream) -> Self {
        Self { prefix, inner }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Relays bytes both ways until both sides are done (raw tunnels, `Upgrade`).
///
/// Copied, not spliced: a spliced tunnel holds two pipes (four descriptors and
/// 128 KiB of the user's pipe quota, counted when made) for as long as it lives,
/// which thousands of idle WebSocket tunnels would exhaust.
///
/// The tunnel ends with an idle-timeout error once neither side has sent
/// anything for the client connection's `tcp_timeout` (within a quarter of
/// it, as for reads; mitmproxy closes idle connections the same way). Time
/// spent waiting for a side to take what was read is not idle (as for
/// [`Conn`]): a paused download stays open.
pub async fn relay(client: Conn, server: Conn) -> io::Result<(u64, u64)> {
    let timeout = client.read_timeout;
    let (cio, cbuf) = client.into_parts();
    let (sio, sbuf) = server.into_parts();
    let activity = Activity::default();
    let mut c = Watched::new(Rewind::new(cbuf.freeze(), cio), &activity, 1);
    let mut s = Watched::new(Rewind::new(sbuf.freeze(), sio), &activity, 2);
    let copy = tokio::io::copy_bidirectional(&mut c, &mut s);
    tokio::pin!(copy);
    let mut idle = IdleTimer::default();
    loop {
        tokio::select! {
            biased;
            r = &mut copy => return r,
            () = idle.quarter(timeout) => {
                if activity.writes_waiting.load(Ordering::Relaxed) != 0 {
                    idle.quiet = 0;
                } else if idle.quiet_since(activity.reads.load(Ordering::Relaxed)) {
                    return Err(idle_timeout());
                }
            }
        }
    }
}

/// What both sides of a relay have done, for its idle timeout.
#[derive(Default)]
struct Activity {
    /// Reads that returned data, on either side.
    reads: AtomicU64,
    /// One bit per side whose last write is waiting for room.
    writes_waiting: AtomicU8,
}

/// One side of a relay, reporting its reads and waiting writes to [`Activity`].
struct Watched<'a, T> {
    inner: T,
    activity: &'a Activity,
    /// This side's bit in `writes_waiting`.
    bit: u8,
}

impl<'a, T> Watched<'a, T> {
    fn new(inner: T, activity: &'a Activity, bit: u8) -> Self {
        Watched {
            inner,
            activity,
            bit,
        }
    }

    fn note_write<R>(&self, r: Poll<R>) -> Poll<R> {
        let waiting = &self.activity.writes_waiting;
        match r {
            Poll::Pending => waiting.fetch_or(self.bit, Ordering::Relaxed),
            Poll::Ready(_) => waiting.fetch_and(!self.bit, Ordering::Relaxed),
        };
        r
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.reads.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note_write(r)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note_write(r)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.note_write(r)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::time::Instant;

    /// A connected pair of loopback sockets.
    pub(crate) async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    const TIMEOUT: Duration = Duration::from_secs(100);

    /// `err` is the idle timeout, after between 1 and 1.25 timeouts of silence.
    fn assert_idle_timeout(err: &io::Error, silence: Duration) {
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(
            silence >= TIMEOUT && silence <= TIMEOUT * 5 / 4,
            "timed out after {silence:?} of silence"
        );
    }

    /// Paused clock: a silent peer times out after between 1 and 1.25 timeouts.
    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_times_out_after_the_timeout() {
        let (_peer, ours) = pair().await;
        let mut conn = Conn::new(ours, TIMEOUT);
        let start = Instant::now();
        let err = conn.fill().await.unwrap_err();
        assert_idle_timeout(&err, start.elapsed());
    }

    /// Reads keep a connection alive however long it lives in all; the timeout
    /// counts from the last completed read.
    #[tokio::test(start_paused = true)]
    async fn activity_keeps_a_connection_alive() {
        let (mut peer, ours) = pair().await;
        let mut conn = Conn::new(ours, TIMEOUT);
        let writer = tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(70)).await;
                peer.write_all(b"x").await.unwrap();
            }
            peer
        });
        let start = Instant::now();
        let mut last = start;
        for _ in 0..10 {
            assert_eq!(conn.fill().await.unwrap(), 1);
            last = Instant::now();
        }
        assert!(
            start.elapsed() >= Duration::from_secs(700),
            "{:?}",
            start.elapsed()
        );
        let _peer = writer.await.unwrap();
        let err = conn.fill().await.unwrap_err();
        assert_idle_timeout(&err, last.elapsed());
    }

    /// A tunnel where nobody sends anything ends after the timeout; traffic in
    /// either direction keeps it open for as long as it flows.
    #[tokio::test(start_paused = true)]
    async fn a_silent_tunnel_ends_after_the_timeout() {
        let (mut client, c) = pair().await;
        let (s, mut server) = pair().await;
        let relay = tokio::spawn(relay(Conn::new(c, TIMEOUT), Conn::new(s, TIMEOUT)));
        // Traffic one way, then the other, every 70 s for 700 s.
        let start = Instant::now();
        let mut last = start;
        let mut byte = [0u8; 1];
        for i in 0..10 {
            tokio::time::sleep(Duration::from_secs(70)).await;
            if i % 2 == 0 {
                client.write_all(b"c").await.unwrap();
                server.read_exact(&mut byte).await.unwrap();
            } else {
                server.write_all(b"s").await.unwrap();
                client.read_exact(&mut byte).await.unwrap();
            }
            last = Instant::now();
        }
        assert!(!relay.is_finished(), "an active tunnel was closed");
        let err = relay.await.unwrap().unwrap_err();
        assert_idle_timeout(&err, last.elapsed());
        // Both ends see the tunnel close.
        assert_eq!(client.read(&mut byte).await.unwrap(), 0);
        assert_eq!(server.read(&mut byte).await.unwrap(), 0);
    }

    /// A receiver that stops reading for longer than the timeout (a paused
    /// download) does not get its tunnel closed: the relay is waiting to
    /// write, not idle. Everything arrives once it reads again.
    #[tokio::test(start_paused = true)]
    async fn a_paused_receiver_keeps_its_tunnel() {
        let (mut client, c) = pair().await;
        let (s, mut server) = pair().await;
        let relay = tokio::spawn(relay(Conn::new(c, TIMEOUT), Conn::new(s, TIMEOUT)));
        const TOTAL: usize = 32 << 20;
        let sender = tokio::spawn(async move {
            let chunk = vec![7u8; 1 << 20];
            for _ in 0..TOTAL / chunk.len() {
                server.write_all(&chunk).await.unwrap();
            }
            server
        });
        // Far more than the socket buffers hold: the relay's write waits.
        tokio::time::sleep(TIMEOUT * 3).await;
        assert!(!relay.is_finished(), "a tunnel waiting to write was closed");
        let mut got = vec![0u8; TOTAL];
        client.read_exact(&mut got).await.unwrap();
        assert!(got.iter().all(|&b| b == 7));
        let _server = sender.await.unwrap();
        // Then silence: closed after the timeout.
        let err = relay.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    /// Time spent not reading (writing, waiting for a hook) is not counted as idle.
    #[tokio::test(start_paused = true)]
    async fn time_between_reads_is_not_idle_time() {
        let (mut peer, ours) = pair().await;
        let mut conn = Conn::new(ours, TIMEOUT);
        peer.write_all(b"a").await.unwrap();
        assert_eq!(conn.fill().await.unwrap(), 1);
        // Busy elsewhere for much longer than the timeout.
        tokio::time::sleep(TIMEOUT * 3).await;
        let writer = tokio::spawn(async move {
            tokio::time::sleep(TIMEOUT / 2).await;
            peer.write_all(b"b").await.unwrap();
            peer
        });
        assert_eq!(
            conn.fill().await.unwrap(),
            1,
            "the read must wait, not time out"
        );
        let _peer = writer.await.unwrap();
    }
}
