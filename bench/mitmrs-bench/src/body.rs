//! Bodies shared by the origin and the load client.
//!
//! [`RepeatBody`] yields `len` bytes in 64 KiB frames sliced from one static
//! buffer, so arbitrarily large bodies (1 GiB downloads, 1 GiB uploads) are
//! generated on the fly without ever being held in memory. Its size hint is
//! exact, so hyper sends a `Content-Length` instead of chunking.

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Size of each generated frame.
pub const CHUNK: usize = 64 * 1024;
static FILL: [u8; CHUNK] = [b'x'; CHUNK];

/// A body of `remaining` bytes of `x`, produced in [`CHUNK`]-sized frames.
#[derive(Debug, Clone)]
pub struct RepeatBody {
    remaining: u64,
}

impl RepeatBody {
    pub fn new(len: u64) -> Self {
        Self { remaining: len }
    }
}

impl Body for RepeatBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(CHUNK as u64) as usize;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&FILL[..n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
