//! Feeds arbitrary bytes to both head parsers and the body decoders, all at once
//! and in slices whose size comes from the first input byte.
//!
//! Run: `cd crates/mitmrs-http1/fuzz && cargo +nightly fuzz run parse`

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mitmrs_http1::{
    parse_request_head, parse_response_head, request_framing, response_framing, BodyDecoder,
    BodyEvent, Framing,
};

const MAX_HEAD: usize = 8 * 1024;

/// Decodes until more input is needed, the end, or an error; false when done.
fn drain(dec: &mut BodyDecoder, buf: &mut BytesMut) -> bool {
    loop {
        let before = buf.len();
        match dec.decode(buf) {
            Ok(Some(BodyEvent::Data(d))) => {
                assert!(!d.is_empty() && buf.len() < before);
            }
            Ok(Some(BodyEvent::End { .. })) | Err(_) => return false,
            Ok(None) => return true,
        }
    }
}

fn body(framing: Framing, data: &[u8], step: usize) {
    let mut dec = BodyDecoder::new(framing, 13);
    let mut buf = BytesMut::new();
    for piece in data.chunks(step) {
        buf.extend_from_slice(piece);
        if !drain(&mut dec, &mut buf) {
            return;
        }
    }
    let _ = dec.eof();
}

/// What is left after a head: the rest of the buffer and the input not fed yet.
fn rest(buf: &[u8], data: &[u8], fed: usize) -> Vec<u8> {
    [buf, data.get(fed..).unwrap_or(&[])].concat()
}

fn heads(data: &[u8], step: usize) {
    let mut buf = BytesMut::new();
    for (i, piece) in data.chunks(step).enumerate() {
        buf.extend_from_slice(piece);
        let before = buf.clone();
        match parse_request_head(&mut buf, MAX_HEAD) {
            Ok(None) => assert_eq!(buf, before),
            Ok(Some(head)) => {
                if let Ok(f) = request_framing(&head.headers, head.version) {
                    body(f, &rest(&buf, data, (i + 1) * step), step);
                }
                break;
            }
            Err(_) => break,
        }
    }
    let mut buf = BytesMut::new();
    for (i, piece) in data.chunks(step).enumerate() {
        buf.extend_from_slice(piece);
        let before = buf.clone();
        match parse_response_head(&mut buf, MAX_HEAD) {
            Ok(None) => assert_eq!(buf, before),
            Ok(Some(head)) => {
                if let Ok(f) = response_framing("GET", head.status, &head.headers) {
                    body(f, &rest(&buf, data, (i + 1) * step), step);
                }
                break;
            }
            Err(_) => break,
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&first, data)) = input.split_first() else {
        return;
    };
    let step = usize::from(first).max(1);
    heads(data, data.len().max(1));
    heads(data, step);
    body(Framing::Chunked, data, data.len().max(1));
    body(Framing::Chunked, data, step);
    body(Framing::Length(u64::from(first) * 3), data, step);
    body(Framing::UntilClose, data, step);
});
