//! WebSocket frames (RFC 6455 section 5), sans-IO.
//!
//! [`FrameReader`] turns bytes into frame headers and payload chunks as they
//! arrive: a payload is handed out in pieces, unmasked, without waiting for the
//! whole frame, so a proxy can pass on a 64 MiB frame holding only what one
//! read brought. [`encode_header`] writes a header.
//!
//! Written by hand: tungstenite's codec (the maintained crate) reads whole
//! frames into memory before handing them out, which is what streaming must
//! not do, and the frame format is 60 lines. The checks and their messages are
//! those of wsproto, which mitmproxy uses, so a peer's protocol error closes the
//! connection with the same code and reason as there.

use bytes::{Bytes, BytesMut};

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Close codes used by the proxy itself.
pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub const CLOSE_NO_STATUS: u16 = 1005;
pub const CLOSE_ABNORMAL: u16 = 1006;
pub const CLOSE_INVALID_DATA: u16 = 1007;
pub const CLOSE_TOO_BIG: u16 = 1009;

/// A frame's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub len: u64,
}

impl FrameHeader {
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// A peer broke the protocol: the connection is closed with `code` and
/// `reason` (wsproto's wording).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ProtocolError {
    pub code: u16,
    pub reason: String,
}

impl ProtocolError {
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// What [`FrameReader::next`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    Header(FrameHeader),
    /// Unmasked payload bytes of the current frame; `end` on its last piece
    /// (an empty frame gives one empty piece).
    Payload {
        data: Bytes,
        end: bool,
    },
}

/// Reads the frames one side sends.
#[derive(Debug)]
pub struct FrameReader {
    /// The peer is a client: its frames must be masked (and a server's not).
    from_client: bool,
    remaining: u64,
    in_frame: bool,
    mask: Option<[u8; 4]>,
    mask_pos: usize,
}

impl FrameReader {
    pub fn new(from_client: bool) -> Self {
        Self {
            from_client,
            remaining: 0,
            in_frame: false,
            mask: None,
            mask_pos: 0,
        }
    }

    /// The next header or payload piece from the front of `buf` (which it
    /// consumes), or `None` if `buf` does not hold enough yet.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, ProtocolError> {
        if self.in_frame {
            if self.remaining > 0 && buf.is_empty() {
                return Ok(None);
            }
            let n = usize::try_from(self.remaining)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let mut data = buf.split_to(n);
            if let Some(key) = self.mask {
                apply_mask(&mut data, key, self.mask_pos);
                self.mask_pos = (self.mask_pos + n) % 4;
            }
            self.remaining -= n as u64;
            let end = self.remaining == 0;
            self.in_frame = !end;
            return Ok(Some(Item::Payload {
                data: data.freeze(),
                end,
            }));
        }
        let Some((header, used)) = parse_header(buf)? else {
            return Ok(None);
        };
        match (self.from_client, header.mask.is_some()) {
            (true, false) => {
                return Err(ProtocolError::new(
                    CLOSE_PROTOCOL_ERROR,
                    "server received unexpected unmasked frame",
                ))
            }
            (false, true) => {
                return Err(ProtocolError::new(
                    CLOSE_PROTOCOL_ERROR,
                    "client received unexpected masked frame",
                ))
            }
            _ => {}
        }
        let _ = buf.split_to(used);
        self.in_frame = true;
        self.remaining = header.len;
        self.mask = header.mask;
        self.mask_pos = 0;
        Ok(Some(Item::Header(header)))
    }
}

/// Parses a header at the start of `buf`: the header and its length, or
/// `None` if `buf` ends inside it.
pub fn parse_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    let [b0, b1, ..] = *buf else { return Ok(None) };
    let fin = b0 & 0x80 != 0;
    if b0 & 0x70 != 0 {
        return Err(ProtocolError::new(
            CLOSE_PROTOCOL_ERROR,
            "Reserved bit set unexpectedly",
        ));
    }
    let opcode = b0 & 0x0F;
    if !matches!(
        opcode,
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
    ) {
        return Err(ProtocolError::new(
            CLOSE_PROTOCOL_ERROR,
            format!("Invalid opcode {opcode:#x}"),
        ));
    }
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                let len = u64::from_be_bytes(a);
                if len >> 63 != 0 {
                    return Err(ProtocolError::new(
                        CLOSE_PROTOCOL_ERROR,
                        "Payload length MSB set",
                    ));
                }
                (len, 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let header_is_control = opcode & 0x8 != 0;
    if header_is_control && !fin {
        return Err(ProtocolError::new(
            CLOSE_PROTOCOL_ERROR,
            "Invalid attempt to fragment control frame",
        ));
    }
    if header_is_control && len > 125 {
        return Err(ProtocolError::new(
            CLOSE_PROTOCOL_ERROR,
            "Control frame with payload len > 125",
        ));
    }
    let mask = if masked {
        let Some(k) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        at += 4;
        Some([k[0], k[1], k[2], k[3]])
    } else {
        None
    };
    Ok(Some((
        FrameHeader {
            fin,
            opcode,
            mask,
            len,
        },
        at,
    )))
}

/// Appends the header of a frame.
pub fn encode_header(h: &FrameHeader, out: &mut Vec<u8>) {
    out.push(if h.fin { 0x80 } else { 0 } | (h.opcode & 0x0F));
    let m = if h.mask.is_some() { 0x80 } else { 0 };
    match h.len {
        0..=125 => out.push(m | h.len as u8),
        126..=0xFFFF => {
            out.push(m | 126);
            out.extend_from_slice(&(h.len as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 127);
            out.extend_from_slice(&h.len.to_be_bytes());
        }
    }
    if let Some(k) = h.mask {
        out.extend_from_slice(&k);
    }
}

/// XORs `data` with the mask `key`, starting at byte `pos` of the payload.
pub fn apply_mask(data: &mut [u8], key: [u8; 4], pos: usize) {
    let mut k = [0u8; 4];
    for (i, b) in k.iter_mut().enumerate() {
        *b = key[(pos + i) % 4];
    }
    let word = u32::from_ne_bytes(k);
    let mut chunks = data.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i];
    }
}

/// A close frame's payload: the code (1005 if none) and the reason, checked
/// as wsproto checks them.
pub fn parse_close(payload: &[u8]) -> Result<(u16, String), ProtocolError> {
    match payload {
        [] => Ok((CLOSE_NO_STATUS, String::new())),
        [_] => Err(ProtocolError::new(
            CLOSE_PROTOCOL_ERROR,
            "CLOSE with 1 byte payload",
        )),
        [a, b, rest @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !valid {
                return Err(ProtocolError::new(
                    CLOSE_PROTOCOL_ERROR,
                    "CLOSE with invalid code",
                ));
            }
            let reason = std::str::from_utf8(rest).map_err(|e| {
                ProtocolError::new(
                    CLOSE_INVALID_DATA,
                    format!("invalid UTF-8 in close reason: {e}"),
                )
            })?;
            Ok((code, reason.to_string()))
        }
    }
}

/// A close frame's payload for `code` and `reason` (the reason cut to fit
/// the 125 bytes of a control frame, at a character boundary). Codes that
/// must not be sent (1005, 1006, 1015) become 1000 with no reason, as wsproto
/// sends them.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    if matches!(code, 1005 | 1006 | 1015) {
        return CLOSE_NORMAL.to_be_bytes().to_vec();
    }
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = code.to_be_bytes().to_vec();
    out.extend_from_slice(&reason.as_bytes()[..end]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(fin: bool, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_header(
            &FrameHeader {
                fin,
                opcode,
                mask,
                len: payload.len() as u64,
            },
            &mut out,
        );
        let mut p = payload.to_vec();
        if let Some(k) = mask {
            apply_mask(&mut p, k, 0);
        }
        out.extend_from_slice(&p);
        out
    }

    /// Everything the reader yields for `data` fed `step` bytes at a time.
    fn read_all(from_client: bool, data: &[u8], step: usize) -> Result<Vec<Item>, ProtocolError> {
        let mut r = FrameReader::new(from_client);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in data.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            while let Some(item) = r.next(&mut buf)? {
                out.push(item);
            }
        }
        Ok(out)
    }

    /// Joins the pieces of each frame.
    fn frames(items: Vec<Item>) -> Vec<(FrameHeader, Vec<u8>)> {
        let mut out: Vec<(FrameHeader, Vec<u8>)> = Vec::new();
        for i in items {
            match i {
                Item::Header(h) => out.push((h, Vec::new())),
                Item::Payload { data, .. } => out.last_mut().unwrap().1.extend_from_slice(&data),
            }
        }
        out
    }

    #[test]
    fn reads_masked_frames_in_any_pieces() {
        let payload: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let data = [
            frame(false, OP_TEXT, Some([1, 2, 3, 4]), b"hel"),
            frame(true, OP_CONTINUATION, Some([9, 8, 7, 6]), b"lo"),
            frame(true, OP_BINARY, Some([5, 6, 7, 8]), &payload),
            frame(true, OP_PING, Some([1, 1, 1, 1]), b""),
        ]
        .concat();
        for step in [1, 3, 7, 1000, data.len()] {
            let f = frames(read_all(true, &data, step).unwrap());
            assert_eq!(f.len(), 4);
            assert_eq!(f[0].1, b"hel");
            assert!(!f[0].0.fin);
            assert_eq!(f[1].1, b"lo");
            assert_eq!(f[2].1, payload);
            assert_eq!(f[2].0.len, 70_000);
            assert_eq!((f[3].0.opcode, f[3].1.len()), (OP_PING, 0));
        }
    }

    #[test]
    fn protocol_errors_are_named_as_wsproto_names_them() {
        let e = |from_client, data: &[u8]| read_all(from_client, data, 100).unwrap_err();
        assert_eq!(e(false, &[0x83, 0]).reason, "Invalid opcode 0x3");
        assert_eq!(e(false, &[0xC1, 0]).reason, "Reserved bit set unexpectedly");
        assert_eq!(
            e(true, &frame(true, OP_TEXT, None, b"x")).reason,
            "server received unexpected unmasked frame"
        );
        assert_eq!(
            e(false, &frame(true, OP_TEXT, Some([1, 2, 3, 4]), b"x")).reason,
            "client received unexpected masked frame"
        );
        assert_eq!(
            e(false, &frame(false, OP_PING, None, b"")).reason,
            "Invalid attempt to fragment control frame"
        );
        assert_eq!(
            e(false, &frame(true, OP_PING, None, &[0; 126])).reason,
            "Control frame with payload len > 125"
        );
        assert_eq!(
            parse_close(&[3]).unwrap_err().reason,
            "CLOSE with 1 byte payload"
        );
        assert_eq!(
            parse_close(&[0x03, 0xED]).unwrap_err().reason,
            "CLOSE with invalid code"
        );
        assert_eq!(
            parse_close(&[0x03, 0xE8, b'b', b'y']).unwrap(),
            (1000, "by".into())
        );
        assert_eq!(parse_close(&[]).unwrap(), (1005, String::new()));
    }

    #[test]
    fn close_payloads_fit_a_control_frame() {
        assert_eq!(close_payload(1006, "x"), vec![0x03, 0xE8]);
        let long = "é".repeat(100);
        let p = close_payload(1002, &long);
        assert!(p.len() <= 125);
        assert!(std::str::from_utf8(&p[2..]).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_keeps_payloads(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            step in 1usize..40,
            from_client in proptest::prelude::any::<bool>(),
        ) {
            let _ = read_all(from_client, &data, step);
        }

        #[test]
        fn what_is_encoded_reads_back(
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..5000),
            key in proptest::prelude::any::<[u8; 4]>(),
            step in 1usize..600,
        ) {
            let data = frame(true, OP_BINARY, Some(key), &payload);
            let f = frames(read_all(true, &data, step).unwrap());
            proptest::prop_assert_eq!(f.len(), 1);
            proptest::prop_assert_eq!(&f[0].1, &payload);
        }
    }
}
