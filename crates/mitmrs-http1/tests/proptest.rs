//! The parsers never panic, whatever the bytes and however they arrive.

use bytes::BytesMut;
use mitmrs_http1::{
    encode_chunk, encode_last_chunk, parse_request_head, parse_response_head, request_framing,
    response_framing, strip_hop_by_hop, BodyDecoder, BodyEvent, Framing, Version,
};
use proptest::prelude::*;

/// Splits `input` at the given (arbitrary) points.
fn pieces(input: &[u8], splits: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = splits.iter().map(|s| s % (input.len() + 1)).collect();
    cuts.push(0);
    cuts.push(input.len());
    cuts.sort_unstable();
    cuts.windows(2)
        .map(|w| input[w[0]..w[1]].to_vec())
        .collect()
}

/// Bytes that look like HTTP often enough to get past the first line.
fn http_ish() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(&b"GET "[..]),
        Just(&b"CONNECT "[..]),
        Just(&b"HTTP/1.1 "[..]),
        Just(&b"HTTP/1.0"[..]),
        Just(&b"200 OK"[..]),
        Just(&b"/"[..]),
        Just(&b"http://"[..]),
        Just(&b"[::1]:443"[..]),
        Just(&b"\r\n"[..]),
        Just(&b"\n"[..]),
        Just(&b"\r"[..]),
        Just(&b": "[..]),
        Just(&b" "[..]),
        Just(&b"Host"[..]),
        Just(&b"Content-Length: 5"[..]),
        Just(&b"Transfer-Encoding: chunked"[..]),
        Just(&b"0"[..]),
        Just(&b"a;x=y"[..]),
        Just(&b"\xff"[..]),
    ];
    prop::collection::vec(
        prop_oneof![
            token.prop_map(|t| t.to_vec()),
            prop::collection::vec(any::<u8>(), 0..4)
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

/// Valid messages with a few bytes changed, inserted or removed: these get deep
/// into the parsers, where random bytes rarely do.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    const SEEDS: [&[u8]; 5] = [
        b"GET http://[::1]:8080/x?y HTTP/1.1\r\nHost: a\r\nX: \xff\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: 1\r\n\r\n",
        b"CONNECT example.com:443 HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n",
        b"HTTP/1.0 101 Switching\r\nConnection: upgrade, x\r\nUpgrade: ws\r\nx: 1\r\n\r\n",
    ];
    let edit = (any::<prop::sample::Index>(), 0u8..3, any::<u8>());
    (
        prop::sample::select(&SEEDS[..]),
        prop::collection::vec(edit, 0..4),
    )
        .prop_map(|(seed, edits)| {
            let mut v = seed.to_vec();
            for (at, kind, byte) in edits {
                let i = at.index(v.len() + 1);
                match kind {
                    0 if i < v.len() => v[i] = byte,
                    1 => v.insert(i, byte),
                    _ if i < v.len() => {
                        v.remove(i);
                    }
                    _ => {}
                }
            }
            v
        })
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        http_ish(),
        mutated()
    ]
}

fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        Just(Framing::None),
        Just(Framing::Chunked),
        Just(Framing::UntilClose),
        (0u64..1024).prop_map(Framing::Length),
        any::<u64>().prop_map(Framing::Length),
    ]
}

/// Feeds the pieces to a head parser, then the rest to the framing and a body decoder.
fn run_request(chunks: &[Vec<u8>], max_head: usize) {
    let mut buf = BytesMut::new();
    for c in chunks {
        buf.extend_from_slice(c);
        let before = buf.clone();
        match parse_request_head(&mut buf, max_head) {
            Ok(None) => assert_eq!(buf, before, "Ok(None) must leave the buffer alone"),
            Ok(Some(mut head)) => {
                if let Ok(f) = request_framing(&head.headers, head.version) {
                    let mut dec = BodyDecoder::new(f, 7);
                    let _ = drain(&mut dec, &mut buf);
                }
                strip_hop_by_hop(&mut head.headers, true);
                return;
            }
            Err(_) => return,
        }
    }
}

fn run_response(chunks: &[Vec<u8>], max_head: usize) {
    let mut buf = BytesMut::new();
    for c in chunks {
        buf.extend_from_slice(c);
        let before = buf.clone();
        match parse_response_head(&mut buf, max_head) {
            Ok(None) => assert_eq!(buf, before, "Ok(None) must leave the buffer alone"),
            Ok(Some(head)) => {
                if let Ok(f) = response_framing("GET", head.status, &head.headers) {
                    let mut dec = BodyDecoder::new(f, 7);
                    let _ = drain(&mut dec, &mut buf);
                }
                return;
            }
            Err(_) => return,
        }
    }
}

/// Decodes until more input is needed, the body ends or an error.
fn drain(dec: &mut BodyDecoder, buf: &mut BytesMut) -> Result<bool, mitmrs_http1::Error> {
    // Every Data event consumes at least one byte, so this terminates.
    loop {
        let len = buf.len();
        match dec.decode(buf)? {
            Some(BodyEvent::Data(d)) => {
                assert!(!d.is_empty());
                assert!(buf.len() < len);
            }
            Some(BodyEvent::End { .. }) => {
                assert!(dec.is_done());
                return Ok(true);
            }
            None => return Ok(false),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn request_head_never_panics(data in input(), splits in prop::collection::vec(any::<usize>(), 0..8), max_head in 0usize..600) {
        run_request(&pieces(&data, &splits), max_head);
        run_request(&[data], 1 << 16);
    }

    #[test]
    fn response_head_never_panics(data in input(), splits in prop::collection::vec(any::<usize>(), 0..8), max_head in 0usize..600) {
        run_response(&pieces(&data, &splits), max_head);
        run_response(&[data], 1 << 16);
    }

    #[test]
    fn body_decoder_never_panics(
        framing in framing(),
        data in input(),
        splits in prop::collection::vec(any::<usize>(), 0..8),
        max_piece in 0usize..100,
    ) {
        let mut dec = BodyDecoder::new(framing, max_piece);
        let mut buf = BytesMut::new();
        let mut total = 0u64;
        for c in pieces(&data, &splits) {
            buf.extend_from_slice(&c);
            match drain(&mut dec, &mut buf) {
                Ok(true) | Err(_) => break,
                Ok(false) => {}
            }
            total = dec.consumed();
        }
        prop_assert!(dec.consumed() >= total);
        let _ = dec.eof();
    }

    /// Whatever the split points, a chunked body decodes to the same bytes and trailers.
    #[test]
    fn chunked_is_split_independent(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..6),
        trailer in prop::option::of("[A-Za-z-]{1,8}"),
        splits in prop::collection::vec(any::<usize>(), 0..8),
        max_piece in 1usize..50,
    ) {
        let mut wire = BytesMut::new();
        for c in &chunks {
            encode_chunk(c, &mut wire);
        }
        let trailers = trailer.map(|n| mitmrs_http1::Headers::from_pairs([(n, "v")]));
        encode_last_chunk(trailers.as_ref(), &mut wire);
        wire.extend_from_slice(b"NEXT");

        let mut dec = BodyDecoder::new(Framing::Chunked, max_piece);
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut end = None;
        'feed: for piece in pieces(&wire, &splits) {
            buf.extend_from_slice(&piece);
            while let Some(ev) = dec.decode(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
                match ev {
                    BodyEvent::Data(d) => {
                        prop_assert!(d.len() <= max_piece);
                        body.extend_from_slice(&d);
                    }
                    BodyEvent::End { trailers } => {
                        end = Some(trailers);
                        break 'feed;
                    }
                }
            }
        }
        prop_assert_eq!(body, chunks.concat());
        prop_assert_eq!(end, Some(trailers));
        prop_assert_eq!(dec.consumed(), chunks.iter().map(|c| c.len() as u64).sum::<u64>());
    }

    /// A Length or read-until-close body reads the same whether its bytes come
    /// through `decode` or are taken past the decoder (`passthrough`, as the
    /// splice path does) at arbitrary points: same total, same end, and bytes
    /// after a Length body stay in the buffer.
    #[test]
    fn passthrough_matches_decoding(
        len in 0u64..200,
        until_close in any::<bool>(),
        splits in prop::collection::vec(any::<usize>(), 0..8),
        skip_at in prop::collection::vec(any::<bool>(), 0..10),
        max_piece in 1usize..50,
    ) {
        let framing = if until_close { Framing::UntilClose } else { Framing::Length(len) };
        let mut wire: Vec<u8> = (0..len).map(|i| i as u8).collect();
        wire.extend_from_slice(b"NEXT");
        let mut dec = BodyDecoder::new(framing, max_piece);
        let mut buf = BytesMut::new();
        let mut got = 0u64;
        let mut ended = false;
        for (i, piece) in pieces(&wire, &splits).into_iter().enumerate() {
            if ended {
                buf.extend_from_slice(&piece);
                continue;
            }
            // Move (part of) this piece past the decoder, as splice would; only
            // Length(0) has nothing to pass (it starts out ended).
            let allowed = dec.passthrough();
            prop_assert_eq!(allowed.is_none(), framing == Framing::Length(0));
            match allowed {
                Some(allowed) if skip_at.get(i).copied().unwrap_or(false) && buf.is_empty() => {
                    let n = (piece.len() as u64).min(allowed) as usize;
                    dec.passed_through(n as u64);
                    got += n as u64;
                    buf.extend_from_slice(&piece[n..]);
                }
                _ => buf.extend_from_slice(&piece),
            }
            while let Some(ev) = dec.decode(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
                match ev {
                    BodyEvent::Data(d) => got += d.len() as u64,
                    BodyEvent::End { .. } => {
                        ended = true;
                        break;
                    }
                }
            }
        }
        if until_close {
            prop_assert!(!ended);
            let at_eof = dec.eof();
            prop_assert_eq!(at_eof, Ok(BodyEvent::End { trailers: None }));
            prop_assert_eq!(got, len + 4);
        } else {
            prop_assert!(ended);
            prop_assert_eq!(got, len);
            prop_assert_eq!(&buf[..], b"NEXT");
            prop_assert_eq!(dec.passthrough(), None);
        }
        prop_assert_eq!(dec.consumed(), got);
    }

    /// Whatever bytes a hook puts into a head, the encoded head has exactly one
    /// CRLF per line (start line, each field, the blank line) and no NUL, so no
    /// field or message can be smuggled in.
    #[test]
    fn encoded_heads_cannot_be_split(
        method in prop::collection::vec(any::<u8>(), 0..12),
        target in prop::collection::vec(any::<u8>(), 0..24),
        fields in prop::collection::vec((prop::collection::vec(any::<u8>(), 0..10), prop::collection::vec(any::<u8>(), 0..20)), 0..6),
        status in any::<u16>(),
    ) {
        let h = mitmrs_http1::Headers::from_pairs(fields.clone());
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let mut req = BytesMut::new();
        mitmrs_http1::encode_request_head(&lossy(&method), &lossy(&target), Version::Http11, &h, &mut req);
        let mut resp = BytesMut::new();
        mitmrs_http1::encode_response_head(Version::Http10, status, &lossy(&target), &h, &mut resp);
        for out in [&req[..], &resp[..]] {
            let lines = fields.len() + 2;
            prop_assert!(!out.contains(&0));
            prop_assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), lines);
            prop_assert_eq!(out.iter().filter(|&&b| b == b'\r').count(), lines);
            prop_assert_eq!(out.windows(2).filter(|w| w == b"\r\n").count(), lines);
            prop_assert!(out.ends_with(b"\r\n\r\n"));
        }
    }

    #[test]
    fn framing_never_panics(fields in prop::collection::vec((input(), input()), 0..4), status in any::<u16>()) {
        let h = mitmrs_http1::Headers::from_pairs(fields);
        let _ = request_framing(&h, Version::Http11);
        let _ = request_framing(&h, Version::Http10);
        let _ = response_framing("GET", status, &h);
        let mut h2 = h.clone();
        strip_hop_by_hop(&mut h2, false);
    }
}
