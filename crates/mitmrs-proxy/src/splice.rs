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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;

/// Pipe capacity asked for a body forward. Pipe memory counts against a per-user
/// quota (`pipe-user-pages-soft`, 64 MiB for non-root) shared with the user's other
/// processes, at the size a pipe is given (used or not); past the quota every new
/// pipe of that user gets two pages. So only the first [`LARGE_PIPES`] bodies in
/// flight get 1 MiB pipes (CPU per streamed GiB 0.38–0.51 s against 0.53–0.66 s
/// with 256 KiB); any others keep the kernel's default (64 KiB). If the kernel
/// refuses, the pipe keeps whatever size it has; only speed changes.
const LARGE_PIPE: usize = 1 << 20;

/// At most this many 1 MiB pipes at once (16 MiB of the quota).
const LARGE_PIPES: usize = 16;

/// Large pipes currently open.
static LARGE_OPEN: AtomicUsize = AtomicUsize::new(0);

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
    /// Counted in [`LARGE_OPEN`].
    large: bool,
}

impl Drop for Pipe {
    fn drop(&mut self) {
        if self.large {
            LARGE_OPEN.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Pipe {
    /// A pipe, 1 MiB if fewer than [`LARGE_PIPES`] such pipes are open.
    fn new() -> io::Result<Self> {
        let mut fds: [libc::c_int; 2] = [-1, -1];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors that we now own.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let large = LARGE_OPEN
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < LARGE_PIPES).then_some(n + 1)
            })
            .is_ok();
        // From here on, dropping the pipe returns its large slot.
        let mut pipe = Pipe {
            read,
            write,
            size: 64 * 1024,
            large,
        };
        if large {
            // SAFETY: fcntl on a descriptor we own; failure (quota) leaves the size as is.
            unsafe {
                libc::fcntl(
                    pipe.write.as_raw_fd(),
                    libc::F_SETPIPE_SZ,
                    LARGE_PIPE as libc::c_int,
                )
            };
        }
        // SAFETY: fcntl on a descriptor we own, reading its capacity.
        let got = unsafe { libc::fcntl(pipe.write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        // The size only bounds how much one call asks for; a wrong guess costs speed.
        if let Some(n) = usize::try_from(got).ok().filter(|&n| n > 0) {
            pipe.size = n;
        }
        Ok(pipe)
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
    let pipe = Pipe::new().ok()?;
    Some(forward_with(&pipe, src, dst, max, idle).await)
}

async fn forward_with(
    pipe: &Pipe,
    src: &TcpStream,
    dst: &TcpStream,
    max: u64,
    idle: Duration,
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
                    match tokio::time::timeout(idle, src.readable()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(SpliceError::Read(e)),
                        Err(_) => return Err(SpliceError::Read(crate::io::idle_timeout())),
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
    use crate::io::tests::pair;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
        src.readable().await.unwrap();
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
