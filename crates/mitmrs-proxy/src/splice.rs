//! Zero-copy body forwarding between two plain TCP sockets with `splice(2)`.
//!
//! A streamed body that nobody looks at (no transformer, not stored) and whose
//! bytes go out exactly as they came in (Content-Length or read-until-close on
//! both sides) does not need to pass through user space: the kernel moves the
//! socket's pages into a pipe and from the pipe into the other socket. On
//! loopback that takes the proxy's copies out of a 1 GiB transfer entirely.
//!
//! Written by hand over `libc`: tokio has no splice, and the few crates wrapping
//! it are little used and do not give what this needs: the proxy's idle read
//! timeout and telling read failures (the sender) from write failures (the
//! receiver), which the flow's error message names.
//!
//! Backpressure is the same as the copying path: the pipe is drained into the
//! receiver before anything more is read from the sender, so at most one pipe's
//! worth (kernel memory, not the proxy's) is in flight per direction.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;

/// Pipe capacity asked for a body forward. Pipe memory counts against a per-user
/// quota (`pipe-user-pages-soft`, 64 MiB for non-root) shared with the user's other
/// processes: past it, every new pipe of that user gets two pages. 256 KiB per body
/// leaves room for 256 bodies in flight at once. Raw tunnels, which hold two pipes
/// for as long as they live, keep the kernel's default (64 KiB). If the kernel
/// refuses, the pipe keeps whatever size it has; only speed changes.
const BODY_PIPE: usize = 256 << 10;

/// Bytes moved between two yields to the scheduler: with both sockets ready no
/// call would ever return EAGAIN, and a long body would keep its worker thread
/// from every other connection on it (measured: 80-106 ms stalls).
const YIELD_EVERY: u64 = 1 << 20;

/// Why forwarding stopped early.
#[derive(Debug)]
pub enum SpliceError {
    /// Reading from the sender failed (or stayed idle past the read timeout).
    Read(io::Error),
    /// Writing to the receiver failed.
    Write(io::Error),
}

/// How a forward ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    /// Bytes forwarded.
    pub bytes: u64,
    /// The sender closed its side before `max` bytes were forwarded.
    pub eof: bool,
}

/// A pipe with both ends non-blocking, closed on drop.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    size: usize,
}

impl Pipe {
    /// A pipe, enlarged to `size` if given (and allowed).
    fn new(size: Option<usize>) -> io::Result<Self> {
        let mut fds: [libc::c_int; 2] = [-1, -1];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors that we now own.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        if let Some(size) = size {
            // SAFETY: fcntl on a descriptor we own; failure (quota) leaves the size as is.
            unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, size as libc::c_int) };
        }
        // SAFETY: fcntl on a descriptor we own, reading its capacity.
        let got = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        // The size only bounds how much one call asks for; a wrong guess costs speed.
        let size = usize::try_from(got)
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or(64 * 1024);
        Ok(Pipe { read, write, size })
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: plain syscall on descriptors owned by the caller for the duration of
    // the call; null offsets mean "use and advance the file position" (required
    // for sockets and pipes).
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Forwards up to `max` bytes from `src` to `dst`, stopping early when `src`
/// reaches end of file. `idle` bounds each wait for `src` to become readable.
///
/// Returns `None` if no pipe could be made (out of descriptors): the caller then
/// copies the usual way.
pub async fn forward(
    src: &TcpStream,
    dst: &TcpStream,
    max: u64,
    idle: Duration,
) -> Option<Result<Moved, SpliceError>> {
    let pipe = Pipe::new(Some(BODY_PIPE)).ok()?;
    Some(forward_with(&pipe, src, dst, max, Some(idle)).await)
}

/// Relays two plain TCP connections both ways until both directions have ended,
/// like `tokio::io::copy_bidirectional`: an end of file in one direction shuts
/// down the writing side of the other socket; an error in either direction ends
/// both. `a_first` and `b_first` are bytes already read from `a` and `b` (sent on
/// before anything else). No idle timeout: one direction may rightly stay silent
/// for as long as the other is busy.
///
/// Returns `None` (nothing done) if the pipes could not be made.
pub async fn relay(
    a: &TcpStream,
    b: &TcpStream,
    a_first: &[u8],
    b_first: &[u8],
) -> Option<io::Result<(u64, u64)>> {
    let (pa, pb) = (Pipe::new(None).ok()?, Pipe::new(None).ok()?);
    Some(tokio::try_join!(
        one_way(a, b, a_first, &pa),
        one_way(b, a, b_first, &pb)
    ))
}

/// One direction of [`relay`]: `first`, then everything until end of file, then
/// the write side of `to` is shut down.
async fn one_way(from: &TcpStream, to: &TcpStream, first: &[u8], pipe: &Pipe) -> io::Result<u64> {
    write_all(to, first).await?;
    let moved = forward_with(pipe, from, to, u64::MAX, None)
        .await
        .map_err(|e| match e {
            SpliceError::Read(e) | SpliceError::Write(e) => e,
        })?;
    // SAFETY: shutdown(2) on a descriptor that `to` keeps open for the call. A
    // failure (the peer is already gone) leaves nothing to do.
    unsafe { libc::shutdown(to.as_raw_fd(), libc::SHUT_WR) };
    Ok(first.len() as u64 + moved.bytes)
}

/// Writes all of `data` to a socket shared by reference.
async fn write_all(to: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        to.writable().await?;
        match to.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn forward_with(
    pipe: &Pipe,
    src: &TcpStream,
    dst: &TcpStream,
    max: u64,
    idle: Option<Duration>,
) -> Result<Moved, SpliceError> {
    let (src_fd, dst_fd) = (src.as_raw_fd(), dst.as_raw_fd());
    let mut moved: u64 = 0;
    let mut since_yield: u64 = 0;
    while moved < max {
        if since_yield >= YIELD_EVERY {
            since_yield = 0;
            tokio::task::yield_now().await;
        }
        let want = usize::try_from(max - moved)
            .unwrap_or(usize::MAX)
            .min(pipe.size);
        // The pipe is empty here, so EAGAIN can only mean the socket has nothing.
        let n = loop {
            match src.try_io(Interest::READABLE, || {
                splice(src_fd, pipe.write.as_raw_fd(), want)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let ready = match idle {
                        Some(idle) => tokio::time::timeout(idle, src.readable()).await,
                        None => Ok(src.readable().await),
                    };
                    match ready {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(SpliceError::Read(e)),
                        Err(_) => {
                            return Err(SpliceError::Read(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "connection idle for too long (tcp_timeout)",
                            )))
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SpliceError::Read(e)),
            }
        };
        if n == 0 {
            return Ok(Moved {
                bytes: moved,
                eof: true,
            });
        }
        // Drain the pipe completely before reading more (backpressure).
        let mut left = n;
        while left > 0 {
            match dst.try_io(Interest::WRITABLE, || {
                splice(pipe.read.as_raw_fd(), dst_fd, left)
            }) {
                Ok(0) => return Err(SpliceError::Write(io::ErrorKind::WriteZero.into())),
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    dst.writable().await.map_err(SpliceError::Write)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SpliceError::Write(e)),
            }
        }
        moved += n as u64;
        since_yield += n as u64;
    }
    Ok(Moved {
        bytes: moved,
        eof: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected pair of loopback sockets.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// sender -> [src ... proxy ... dst] -> receiver
    async fn setup() -> (TcpStream, TcpStream, TcpStream, TcpStream) {
        let (sender, src) = pair().await;
        let (dst, receiver) = pair().await;
        (sender, src, dst, receiver)
    }

    const IDLE: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn forwards_exactly_max_and_leaves_the_rest() {
        let (mut sender, src, dst, mut receiver) = setup().await;
        let payload = data(3 << 20);
        let p = payload.clone();
        let send = tokio::spawn(async move {
            sender.write_all(&p).await.unwrap();
            sender
        });
        let max = (2 << 20) + 17;
        let recv = tokio::spawn(async move {
            let mut got = vec![0u8; max as usize];
            receiver.read_exact(&mut got).await.unwrap();
            got
        });
        let moved = forward(&src, &dst, max, IDLE).await.unwrap().unwrap();
        assert_eq!(
            moved,
            Moved {
                bytes: max,
                eof: false
            }
        );
        assert_eq!(recv.await.unwrap(), payload[..max as usize]);
        let _sender = send.await.unwrap();
        // What was not asked for is still in `src`, unread.
        let mut rest = vec![0u8; payload.len() - max as usize];
        (&src).readable().await.unwrap();
        let mut src = src;
        src.read_exact(&mut rest).await.unwrap();
        assert_eq!(rest, payload[max as usize..]);
    }

    #[tokio::test]
    async fn stops_at_end_of_file() {
        let (mut sender, src, dst, mut receiver) = setup().await;
        let payload = data(700_000);
        let p = payload.clone();
        tokio::spawn(async move {
            sender.write_all(&p).await.unwrap();
            sender.shutdown().await.unwrap();
        });
        let recv = tokio::spawn(async move {
            let mut got = Vec::new();
            receiver.read_to_end(&mut got).await.unwrap();
            got
        });
        let moved = forward(&src, &dst, u64::MAX, IDLE).await.unwrap().unwrap();
        assert_eq!(
            moved,
            Moved {
                bytes: payload.len() as u64,
                eof: true
            }
        );
        drop(dst);
        assert_eq!(recv.await.unwrap(), payload);
    }

    #[tokio::test]
    async fn an_idle_sender_times_out_as_a_read_error() {
        let (_sender, src, dst, _receiver) = setup().await;
        let r = forward(&src, &dst, 10, Duration::from_millis(50))
            .await
            .unwrap();
        match r {
            Err(SpliceError::Read(e)) => assert_eq!(e.kind(), io::ErrorKind::TimedOut),
            other => panic!("expected a read timeout, got {other:?}"),
        }
    }

    /// client <-> [a  relay  b] <-> server, both directions at once, with bytes
    /// already read on each side, and a half-close passed on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relay_moves_both_ways_and_passes_half_close_on() {
        let (mut client, a) = pair().await;
        let (b, mut server) = pair().await;
        let up = data(3 << 20);
        let down = data(5 << 20);
        let relay = tokio::spawn(async move {
            relay(&a, &b, b"client-early|", b"server-early|")
                .await
                .expect("pipes")
        });
        let (up2, down2) = (up.clone(), down.clone());
        let server_side = tokio::spawn(async move {
            // Read everything the client sends (until its half-close arrives), and
            // send the download at the same time.
            let (mut r, mut w) = server.split();
            let send = async {
                w.write_all(&down2).await.unwrap();
                w.shutdown().await.unwrap();
            };
            let recv = async {
                let mut got = Vec::new();
                r.read_to_end(&mut got).await.unwrap();
                got
            };
            let ((), got) = tokio::join!(send, recv);
            got
        });
        let (mut r, mut w) = client.split();
        let send = async {
            w.write_all(&up2).await.unwrap();
            w.shutdown().await.unwrap();
        };
        let recv = async {
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            got
        };
        let ((), client_got) = tokio::join!(send, recv);
        let server_got = server_side.await.unwrap();
        assert_eq!(&server_got[..13], b"client-early|");
        assert!(server_got[13..] == up[..], "upload differs");
        assert_eq!(&client_got[..13], b"server-early|");
        assert!(client_got[13..] == down[..], "download differs");
        let (ab, ba) = relay.await.unwrap().unwrap();
        assert_eq!((ab, ba), (13 + up.len() as u64, 13 + down.len() as u64));
    }

    /// A reset on one side ends the relay (the other direction is not left hanging).
    #[tokio::test]
    async fn relay_ends_when_one_side_resets() {
        let (client, a) = pair().await;
        let (b, _server) = pair().await;
        #[allow(deprecated)]
        client.set_linger(Some(Duration::ZERO)).unwrap();
        drop(client);
        let r = relay(&a, &b, b"", b"").await.expect("pipes");
        // Either the reset or the end of file shows; the server side stays open and
        // silent, so only the client's end can have finished the relay.
        match r {
            Err(_) => {}
            Ok((ab, _)) => panic!("relay finished normally after {ab} bytes"),
        }
    }

    /// A long forward shares its thread: a ticker task on the same single-threaded
    /// runtime gets turns throughout. (Turns come from the yield every YIELD_EVERY
    /// bytes and from waits for readiness; on loopback the waits alone often suffice,
    /// so this does not isolate the yield — the review that found the stall measured
    /// 80–106 ms gaps over 4 GiB without it, 7–9 ms with it.)
    #[tokio::test(flavor = "current_thread")]
    async fn a_long_forward_lets_other_tasks_run() {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;
        const TOTAL: usize = 32 << 20;
        // Sender and receiver are OS threads, so only the forward and the ticker
        // share this runtime's one thread.
        let l1 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let l2 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (a1, a2) = (l1.local_addr().unwrap(), l2.local_addr().unwrap());
        let sender = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(a1).unwrap();
            let chunk = vec![7u8; 1 << 20];
            for _ in 0..TOTAL / chunk.len() {
                s.write_all(&chunk).unwrap();
            }
        });
        let receiver = std::thread::spawn(move || {
            let mut r = std::net::TcpStream::connect(a2).unwrap();
            let mut buf = vec![0u8; 1 << 20];
            let mut got = 0;
            while got < TOTAL {
                let n = r.read(&mut buf).unwrap();
                assert!(n > 0);
                got += n;
            }
        });
        let to_tokio = |l: &std::net::TcpListener| {
            let (s, _) = l.accept().unwrap();
            s.set_nonblocking(true).unwrap();
            TcpStream::from_std(s).unwrap()
        };
        let (src, dst) = (to_tokio(&l1), to_tokio(&l2));
        let ticks = Arc::new(AtomicU64::new(0));
        let t = ticks.clone();
        let ticker = tokio::spawn(async move {
            loop {
                t.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        });
        let moved = forward(&src, &dst, TOTAL as u64, IDLE)
            .await
            .unwrap()
            .unwrap();
        let during = ticks.load(Ordering::Relaxed);
        ticker.abort();
        assert_eq!(moved.bytes, TOTAL as u64);
        // One turn per MiB (YIELD_EVERY) is expected; allow for half.
        let mib = TOTAL as u64 >> 20;
        assert!(
            during >= mib / 2,
            "the ticker ran {during} times during {mib} MiB"
        );
        sender.join().unwrap();
        receiver.join().unwrap();
    }

    #[tokio::test]
    async fn a_gone_receiver_is_a_write_error() {
        let (mut sender, src, dst, receiver) = setup().await;
        drop(receiver);
        tokio::spawn(async move {
            let chunk = data(64 * 1024);
            for _ in 0..64 {
                if sender.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        });
        let r = forward(&src, &dst, 4 << 20, IDLE).await.unwrap();
        assert!(matches!(r, Err(SpliceError::Write(_))), "{r:?}");
    }
}
