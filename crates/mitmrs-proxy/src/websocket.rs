//! WebSocket flows: after a 101 upgrade, the frames between client and server,
//! as mitmproxy's `WebsocketLayer`.
//!
//! One task serves both directions: it reads whichever side has data, parses
//! frames with [`mitmrs_http1::websocket::FrameReader`], and writes to the
//! other side before reading on, so a slow reader holds back the sender
//! (backpressure) and hooks see the flow one message at a time.
//!
//! - By default each message is joined from its frames (up to
//!   `websocket_max_message_size`), appended to `flow.websocket.messages`
//!   (whose content is bounded by `websocket_history`), given to
//!   `websocket_message`, and sent on as changed, in its original frame sizes
//!   if its length did not change, else as one frame. Dropped messages are
//!   kept in the history but not sent.
//! - With `stream_websockets`, frames are passed on piece by piece as they
//!   arrive and `websocket_message` runs after each message has passed, with
//!   empty content.
//! - Pings and pongs are passed on and logged, as mitmproxy does.
//! - A close frame is passed on and echoed to its sender, and the connection
//!   ends; so does a peer's protocol error (closed towards both peers with
//!   wsproto's code and reason) and a peer that disconnects (1006; the other
//!   peer gets 1000). Then `websocket_end` runs. Like mitmproxy, no `error`
//!   hook runs for a WebSocket flow.
//!
//! Frames towards the server are masked with a fresh key each; towards the
//! client they are not, as RFC 6455 requires.

use bytes::{Bytes, BytesMut};
use mitmrs_core::flow::{MessageType, WebSocketMessage};
use mitmrs_core::{now, HttpFlow};
use mitmrs_http1::websocket::{
    apply_mask, close_payload, encode_header, parse_close, FrameHeader, FrameReader, Item,
    ProtocolError, CLOSE_ABNORMAL, CLOSE_INVALID_DATA, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG,
    OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_TEXT,
};
use tracing::info;

use crate::config::ProxyConfig;
use crate::ctx::ProxyCtx;
use crate::io::{Conn, IdleTimer, Stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes read from a side at a time.
const READ: usize = 64 * 1024;

/// Is this 101 response the start of a WebSocket, as mitmproxy decides it:
/// `Upgrade: websocket` in the response, version 13 in the request, and the
/// `websocket` option on.
pub fn is_websocket(flow: &HttpFlow, cfg: &ProxyConfig) -> bool {
    let Some(resp) = &flow.response else {
        return false;
    };
    cfg.websocket
        && resp.status_code == 101
        && resp
            .headers
            .get("upgrade")
            .is_some_and(|u| u.trim().eq_ignore_ascii_case("websocket"))
        && flow
            .request
            .headers
            .get("sec-websocket-version")
            .is_some_and(|v| v.trim() == "13")
}

/// One direction's reading state.
struct Side {
    reader: FrameReader,
    from_client: bool,
    /// The frame being read.
    frame: Option<FrameHeader>,
    /// Payload bytes of the current frame read so far.
    frame_read: u64,
    /// The data message being read: its opcode, pieces and frame sizes.
    message: Option<u8>,
    pieces: Vec<Bytes>,
    message_len: u64,
    frame_lens: Vec<u64>,
    /// A control frame's payload (at most 125 bytes).
    control: Vec<u8>,
    /// Streaming: the mask of the frame being passed on to the server.
    out_mask: Option<([u8; 4], usize)>,
}

impl Side {
    fn new(from_client: bool) -> Self {
        Self {
            reader: FrameReader::new(from_client),
            from_client,
            frame: None,
            frame_read: 0,
            message: None,
            pieces: Vec::new(),
            message_len: 0,
            frame_lens: Vec::new(),
            control: Vec::new(),
            out_mask: None,
        }
    }

    fn name(&self) -> &'static str {
        if self.from_client {
            "client"
        } else {
            "server"
        }
    }
}

/// How the connection ended.
struct Closed {
    by_client: Option<bool>,
    code: u16,
    reason: Option<String>,
}

/// What the relay loop waited for.
enum Event {
    Read(usize, std::io::Result<usize>),
    Wrote(usize, std::io::Result<usize>),
    Inject(mitmrs_core::inject::Injected),
    Tick,
}

/// Bytes that may wait to be written to a side before the other side is no
/// longer read.
const PENDING: usize = 1 << 20;

/// Frames waiting to be written to one side.
#[derive(Default)]
struct Out {
    bufs: std::collections::VecDeque<Bytes>,
}

impl Out {
    fn pending(&self) -> usize {
        self.bufs.iter().map(Bytes::len).sum()
    }

    /// The first buffers, for one vectored write.
    fn slices(&self) -> Vec<std::io::IoSlice<'_>> {
        self.bufs
            .iter()
            .take(64)
            .map(|b| std::io::IoSlice::new(b))
            .collect()
    }

    /// Drops the first `n` bytes (written).
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.bufs.front_mut() else {
                return;
            };
            if front.len() <= n {
                n -= front.len();
                self.bufs.pop_front();
            } else {
                let _ = front.split_to(n);
                n = 0;
            }
        }
    }

    /// Queues one frame; `to_server` frames are masked with a fresh key.
    fn frame(&mut self, fin: bool, opcode: u8, payload: &Bytes, to_server: bool) {
        let mask = to_server.then(fastrand_key);
        let mut head = Vec::with_capacity(14);
        encode_header(
            &FrameHeader {
                fin,
                opcode,
                mask,
                len: payload.len() as u64,
            },
            &mut head,
        );
        self.bufs.push_back(Bytes::from(head));
        match mask {
            Some(k) => {
                let mut p = BytesMut::from(&payload[..]);
                apply_mask(&mut p, k, 0);
                self.bufs.push_back(p.freeze());
            }
            None => self.bufs.push_back(payload.clone()),
        }
    }
}

fn fastrand_key() -> [u8; 4] {
    fastrand::u32(..).to_ne_bytes()
}

/// The relay between `client` and `server` for `flow`, from `websocket_start`
/// to `websocket_end`.
pub async fn relay(
    ctx: &ProxyCtx,
    cfg: &ProxyConfig,
    flow: &mut HttpFlow,
    client: &mut Conn,
    server: &mut Conn,
) {
    // Addons may inject messages (`inject.websocket`) from websocket_start
    // on; they are sent once the relay runs.
    let mut injections = mitmrs_core::inject::register(&flow.id);
    ctx.chain.websocket_start(flow).await;
    let peer = flow.client_conn.peername;
    let mut sides = [Side::new(true), Side::new(false)];
    let mut outs = [Out::default(), Out::default()];
    let mut idle = IdleTimer::default();
    let mut reads = 0u64;
    let timeout = client.read_timeout;
    // Each side's stream is split so that writing to a side never stops
    // reading from it: an echoing peer that is sent a large message writes
    // back while it reads, and must be read meanwhile or both would wait.
    let (mut cr, mut cw) = tokio::io::split(std::mem::replace(&mut client.io, Stream::empty()));
    let (mut sr, mut sw) = tokio::io::split(std::mem::replace(&mut server.io, Stream::empty()));
    let mut bufs = [
        std::mem::take(&mut client.rbuf),
        std::mem::take(&mut server.rbuf),
    ];
    let closed = 'relay: loop {
        // Everything buffered on both sides first.
        for i in 0..2 {
            let (side, other_out, own_out) = split(&mut sides, &mut outs, i);
            loop {
                let item = match side.reader.next(&mut bufs[i]) {
                    Ok(Some(item)) => item,
                    Ok(None) => break,
                    Err(e) => {
                        let from_client = side.from_client;
                        break 'relay protocol_error(from_client, e, &mut outs);
                    }
                };
                match handle(ctx, cfg, flow, side, item, other_out, own_out).await {
                    Ok(None) => {}
                    Ok(Some(c)) => break 'relay c,
                    Err(e) => {
                        let from_client = side.from_client;
                        break 'relay protocol_error(from_client, e, &mut outs);
                    }
                }
            }
        }
        for b in bufs.iter_mut() {
            if b.capacity() - b.len() < READ / 4 {
                b.reserve(READ);
            }
        }
        // A side is read only while what it sent has mostly been written on
        // (backpressure: at most PENDING bytes wait per direction).
        let (p0, p1) = (outs[0].pending(), outs[1].pending());
        // An injected message goes between whole messages: with
        // stream_websockets, not while a message is being passed on.
        let injectable = (p0 < PENDING && p1 < PENDING)
            && !(cfg.stream_websockets && sides.iter().any(|s| s.message.is_some()));
        let [b0, b1] = &mut bufs;
        let [o0, o1] = &outs;
        let (w0, w1) = (o0.slices(), o1.slices());
        let event = tokio::select! {
            biased;
            r = cw.write_vectored(&w0), if p0 > 0 => Event::Wrote(0, r),
            r = sw.write_vectored(&w1), if p1 > 0 => Event::Wrote(1, r),
            r = cr.read_buf(b0), if p1 < PENDING => Event::Read(0, r),
            r = sr.read_buf(b1), if p0 < PENDING => Event::Read(1, r),
            Some(m) = injections.rx.recv(), if injectable => Event::Inject(m),
            () = idle.quarter(timeout) => Event::Tick,
        };
        drop((w0, w1));
        match event {
            Event::Tick => {
                if idle.quiet_since(reads) {
                    info!(client = %peer, "WebSocket idle for longer than tcp_timeout; closing it");
                    break 'relay Closed {
                        by_client: None,
                        code: CLOSE_ABNORMAL,
                        reason: None,
                    };
                }
            }
            Event::Wrote(i, Ok(n)) if n > 0 => {
                reads += 1;
                outs[i].advance(n);
            }
            Event::Wrote(i, r) => {
                if let Err(e) = r {
                    info!(client = %peer, "WebSocket: cannot write to the {}: {e}", sides[i].name());
                }
                break 'relay Closed {
                    by_client: Some(i == 1),
                    code: CLOSE_ABNORMAL,
                    reason: None,
                };
            }
            Event::Read(_, Ok(n)) if n > 0 => reads += 1,
            Event::Inject(m) => inject(ctx, cfg, flow, m, &mut outs).await,
            Event::Read(i, _) => {
                // The peer went away without a close frame (1006); the other
                // peer is told 1000 (1006 must not be sent).
                let other = 1 - i;
                outs[other].frame(
                    true,
                    OP_CLOSE,
                    &Bytes::from(close_payload(CLOSE_ABNORMAL, "")),
                    other == 1,
                );
                break 'relay Closed {
                    by_client: Some(i == 0),
                    code: CLOSE_ABNORMAL,
                    reason: None,
                };
            }
        }
    };
    // Last frames (close), then both connections end.
    for (i, out) in outs.iter_mut().enumerate() {
        let w: &mut (dyn tokio::io::AsyncWrite + Unpin + Send) =
            if i == 0 { &mut cw } else { &mut sw };
        for b in out.bufs.drain(..) {
            if w.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    }
    let ws = flow.websocket.get_or_insert_with(Default::default);
    ws.closed_by_client = closed.by_client;
    ws.close_code = Some(closed.code);
    ws.close_reason = closed.reason;
    ws.timestamp_end = Some(now());
    ctx.chain.websocket_end(flow).await;
    flow.live = false;
}

/// Side `i`, and the outputs towards the other side and back to side `i`.
fn split<'a>(
    sides: &'a mut [Side; 2],
    outs: &'a mut [Out; 2],
    i: usize,
) -> (&'a mut Side, &'a mut Out, &'a mut Out) {
    let [o0, o1] = outs;
    let side = &mut sides[i];
    if i == 0 {
        (side, o1, o0)
    } else {
        (side, o0, o1)
    }
}

/// A peer's protocol error: both peers get a close frame with its code and
/// reason; it is recorded as closed by the side that broke the protocol.
fn protocol_error(from_client: bool, e: ProtocolError, outs: &mut [Out; 2]) -> Closed {
    let payload = Bytes::from(close_payload(e.code, &e.reason));
    outs[0].frame(true, OP_CLOSE, &payload, false);
    outs[1].frame(true, OP_CLOSE, &payload, true);
    Closed {
        by_client: Some(from_client),
        code: e.code,
        reason: Some(e.reason),
    }
}

async fn handle(
    ctx: &ProxyCtx,
    cfg: &ProxyConfig,
    flow: &mut HttpFlow,
    side: &mut Side,
    item: Item,
    other: &mut Out,
    own: &mut Out,
) -> Result<Option<Closed>, ProtocolError> {
    let to_server = side.from_client;
    match item {
        Item::Header(h) => {
            side.frame = Some(h);
            side.frame_read = 0;
            if h.is_control() {
                side.control.clear();
                return Ok(None);
            }
            match (h.opcode, side.message) {
                (OP_CONTINUATION, None) => {
                    return Err(ProtocolError::new(
                        CLOSE_PROTOCOL_ERROR,
                        "unexpected CONTINUATION",
                    ))
                }
                (OP_TEXT | OP_BINARY, Some(_)) => {
                    let name = if h.opcode == OP_TEXT {
                        "TEXT: 1"
                    } else {
                        "BINARY: 2"
                    };
                    return Err(ProtocolError::new(
                        CLOSE_PROTOCOL_ERROR,
                        format!("expected CONTINUATION, got <Opcode.{name}>"),
                    ));
                }
                (OP_TEXT | OP_BINARY, None) => side.message = Some(h.opcode),
                _ => {}
            }
            if cfg.stream_websockets {
                // Passed on as it comes: the header now, the payload piece by piece.
                let mask = to_server.then(fastrand_key);
                let mut head = Vec::with_capacity(14);
                encode_header(&FrameHeader { mask, ..h }, &mut head);
                other.bufs.push_back(Bytes::from(head));
                side.out_mask = mask.map(|k| (k, 0));
            } else if side.message_len + h.len > cfg.websocket_max_message_size {
                return Err(ProtocolError::new(
                    CLOSE_TOO_BIG,
                    format!(
                        "message larger than websocket_max_message_size ({} bytes); raise it, or set \
                         stream_websockets to pass large messages on unjoined",
                        cfg.websocket_max_message_size
                    ),
                ));
            }
            Ok(None)
        }
        Item::Payload { data, end } => {
            let Some(h) = side.frame else {
                return Ok(None);
            };
            side.frame_read += data.len() as u64;
            if h.is_control() {
                side.control.extend_from_slice(&data);
                if !end {
                    return Ok(None);
                }
                return control(flow, side, h.opcode, other, own);
            }
            side.message_len += data.len() as u64;
            if cfg.stream_websockets {
                match &mut side.out_mask {
                    Some((k, pos)) => {
                        let mut p = BytesMut::from(&data[..]);
                        apply_mask(&mut p, *k, *pos);
                        *pos = (*pos + p.len()) % 4;
                        other.bufs.push_back(p.freeze());
                    }
                    None => other.bufs.push_back(data),
                }
            } else if !data.is_empty() {
                side.pieces.push(data);
            }
            if !end {
                return Ok(None);
            }
            side.frame_lens.push(side.frame_read);
            if !h.fin {
                return Ok(None);
            }
            message(ctx, cfg, flow, side, other).await?;
            Ok(None)
        }
    }
}

/// A whole message has arrived on `side`: record it, run the hook, send it on.
async fn message(
    ctx: &ProxyCtx,
    cfg: &ProxyConfig,
    flow: &mut HttpFlow,
    side: &mut Side,
    other: &mut Out,
) -> Result<(), ProtocolError> {
    let opcode = side.message.take().unwrap_or(OP_BINARY);
    let kind = if opcode == OP_TEXT {
        MessageType::Text
    } else {
        MessageType::Binary
    };
    let frame_lens = std::mem::take(&mut side.frame_lens);
    side.message_len = 0;
    let content = match side.pieces.len() {
        0 => Bytes::new(),
        1 => side.pieces.pop().unwrap_or_default(),
        _ => {
            let mut all = BytesMut::with_capacity(side.pieces.iter().map(Bytes::len).sum());
            for p in side.pieces.drain(..) {
                all.extend_from_slice(&p);
            }
            all.freeze()
        }
    };
    if kind == MessageType::Text && !cfg.stream_websockets {
        if let Err(e) = std::str::from_utf8(&content) {
            return Err(ProtocolError::new(
                CLOSE_INVALID_DATA,
                format!(
                    "invalid UTF-8 in a text message at byte {}",
                    e.valid_up_to()
                ),
            ));
        }
    }
    let msg = WebSocketMessage::new(kind, side.from_client, content.clone());
    flow.websocket
        .get_or_insert_with(Default::default)
        .push(msg, cfg.websocket_history);
    ctx.chain.websocket_message(flow).await;
    if cfg.stream_websockets {
        return Ok(());
    }
    let (content, dropped) = match flow.websocket.as_mut().and_then(|w| {
        w.last_changed(content.len());
        w.messages.back()
    }) {
        Some(m) => (m.content.clone(), m.dropped),
        None => (content, false),
    };
    if dropped {
        return Ok(());
    }
    let to_server = side.from_client;
    if frame_lens.len() > 1 && frame_lens.iter().sum::<u64>() == content.len() as u64 {
        // Unchanged in length: the original fragmentation.
        let mut at = 0usize;
        for (n, len) in frame_lens.iter().enumerate() {
            let len = *len as usize;
            let op = if n == 0 { opcode } else { OP_CONTINUATION };
            other.frame(
                n + 1 == frame_lens.len(),
                op,
                &content.slice(at..at + len),
                to_server,
            );
            at += len;
        }
    } else {
        other.frame(true, opcode, &content, to_server);
    }
    Ok(())
}

/// An injected message, as if the other peer had sent it: recorded (marked
/// injected), given to `websocket_message`, and sent on unless dropped.
async fn inject(
    ctx: &ProxyCtx,
    cfg: &ProxyConfig,
    flow: &mut HttpFlow,
    m: mitmrs_core::inject::Injected,
    outs: &mut [Out; 2],
) {
    let mut msg = WebSocketMessage::new(m.kind, !m.to_client, m.content.clone());
    msg.injected = true;
    flow.websocket
        .get_or_insert_with(Default::default)
        .push(msg, cfg.websocket_history);
    ctx.chain.websocket_message(flow).await;
    let (content, dropped) = match flow.websocket.as_mut().and_then(|w| {
        w.last_changed(m.content.len());
        w.messages.back()
    }) {
        Some(last) => (last.content.clone(), last.dropped),
        None => (m.content, false),
    };
    if !dropped {
        let opcode = if m.kind == MessageType::Text {
            OP_TEXT
        } else {
            OP_BINARY
        };
        let to = if m.to_client { 0 } else { 1 };
        outs[to].frame(true, opcode, &content, to == 1);
    }
}

/// A whole control frame: pings and pongs pass; a close ends the relay.
fn control(
    flow: &HttpFlow,
    side: &mut Side,
    opcode: u8,
    other: &mut Out,
    own: &mut Out,
) -> Result<Option<Closed>, ProtocolError> {
    let payload = Bytes::from(std::mem::take(&mut side.control));
    let to_server = side.from_client;
    match opcode {
        OP_PING | mitmrs_http1::websocket::OP_PONG => {
            let what = if opcode == OP_PING { "ping" } else { "pong" };
            info!(
                client = %flow.client_conn.peername,
                "Received WebSocket {what} from {} (payload: {})",
                side.name(),
                mitmrs_core::pyrepr::py_bytes_repr(&payload)
            );
            other.frame(true, opcode, &payload, to_server);
            Ok(None)
        }
        _ => {
            let (code, reason) = parse_close(&payload)?;
            // Passed on, and echoed to the side that closed (as mitmproxy).
            let out = Bytes::from(close_payload(code, &reason));
            let out = if payload.is_empty() {
                Bytes::new()
            } else {
                out
            };
            other.frame(true, OP_CLOSE, &out, to_server);
            own.frame(true, OP_CLOSE, &out, !to_server);
            Ok(Some(Closed {
                by_client: Some(side.from_client),
                code,
                reason: Some(reason),
            }))
        }
    }
}
