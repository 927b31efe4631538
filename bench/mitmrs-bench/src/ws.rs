//! Minimal WebSocket echo for the origin (RFC 6455, server side).
//!
//! The handshake is answered through hyper's upgrade mechanism; after that a
//! tiny hand-written frame loop echoes data frames back unmasked, answers
//! pings, and mirrors a close. Large messages are streamed through in 64 KiB
//! pieces (unmasking on the fly), so a 64 MiB message never sits in memory.

use crate::origin::OriginBody;
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const PIECE: usize = 64 * 1024;

/// Answer a WebSocket upgrade request and spawn the echo loop.
pub fn upgrade(req: Request<Incoming>) -> Response<OriginBody> {
    let is_ws = req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = req
        .headers()
        .get("sec-websocket-key")
        .map(|v| v.as_bytes().to_vec());
    let (true, Some(key)) = (is_ws, key) else {
        let mut r = Response::new(Either::Left(Full::new(Bytes::from_static(
            b"websocket upgrade expected\n",
        ))));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    };
    let accept = accept_key(&key);
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let _ = echo(TokioIo::new(upgraded)).await;
        }
    });
    let mut r = Response::new(Either::Left(Full::new(Bytes::new())));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    r
}

/// `base64(sha1(key + GUID))`.
pub fn accept_key(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(GUID.as_bytes());
    base64(&h.finalize())
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn frame_header(fin_opcode: u8, len: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(10);
    h.push(fin_opcode);
    if len < 126 {
        h.push(len as u8);
    } else if len <= u64::from(u16::MAX) {
        h.push(126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(127);
        h.extend_from_slice(&len.to_be_bytes());
    }
    h
}

fn unmask(buf: &mut [u8], mask: Option<[u8; 4]>, offset: u64) {
    if let Some(m) = mask {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= m[((offset + i as u64) % 4) as usize];
        }
    }
}

/// Echo frames until the peer closes or sends garbage.
pub async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> io::Result<()> {
    let mut s = BufReader::with_capacity(PIECE, stream);
    let mut buf = vec![0u8; PIECE];
    loop {
        let mut hdr = [0u8; 2];
        if s.read_exact(&mut hdr).await.is_err() {
            return Ok(()); // peer went away
        }
        let fin_opcode = hdr[0] & 0x8f;
        let opcode = hdr[0] & 0x0f;
        let len = match hdr[1] & 0x7f {
            126 => u64::from(s.read_u16().await?),
            127 => s.read_u64().await?,
            n => u64::from(n),
        };
        let mask = if hdr[1] & 0x80 != 0 {
            let mut m = [0u8; 4];
            s.read_exact(&mut m).await?;
            Some(m)
        } else {
            None
        };
        match opcode {
            0x8..=0xA => {
                if len > 125 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "control frame too long",
                    ));
                }
                let payload = &mut buf[..len as usize];
                s.read_exact(payload).await?;
                unmask(payload, mask, 0);
                let reply = match opcode {
                    0x8 => 0x88,
                    0x9 => 0x8A,
                    _ => continue, // unsolicited pong: ignore
                };
                let mut out = frame_header(reply, len);
                out.extend_from_slice(payload);
                s.get_mut().write_all(&out).await?;
                s.get_mut().flush().await?;
                if opcode == 0x8 {
                    return Ok(());
                }
            }
            0x0..=0x2 => {
                let mut out = frame_header(fin_opcode, len);
                if len <= PIECE as u64 {
                    let payload = &mut buf[..len as usize];
                    s.read_exact(payload).await?;
                    unmask(payload, mask, 0);
                    out.extend_from_slice(payload);
                    s.get_mut().write_all(&out).await?;
                } else {
                    s.get_mut().write_all(&out).await?;
                    let mut done = 0u64;
                    while done < len {
                        let n = (len - done).min(PIECE as u64) as usize;
                        let piece = &mut buf[..n];
                        s.read_exact(piece).await?;
                        unmask(piece, mask, done);
                        s.get_mut().write_all(piece).await?;
                        done += n as u64;
                    }
                }
                s.get_mut().flush().await?;
            }
            _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "bad opcode")),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc6455_accept_example() {
        assert_eq!(
            super::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
