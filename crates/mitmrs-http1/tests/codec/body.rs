use bytes::{Bytes, BytesMut};
use mitmrs_http1::{BodyDecoder, BodyEvent, Error, Framing, Headers};

use crate::{buf, hdrs};

/// What decoding a whole body gave.
#[derive(Debug, PartialEq)]
struct Decoded {
    pieces: Vec<Bytes>,
    /// `Some(trailers)` once End was seen.
    end: Option<Option<Headers>>,
    /// Bytes left in the buffer after End (or after running out of input).
    rest: Vec<u8>,
}

impl Decoded {
    fn body(&self) -> Vec<u8> {
        self.pieces.concat()
    }
}

/// Feeds `input` in `step`-byte slices, decoding as far as possible after each.
fn decode_stepwise(
    framing: Framing,
    input: &[u8],
    step: usize,
    max_piece: usize,
) -> Result<Decoded, Error> {
    let mut dec = BodyDecoder::new(framing, max_piece);
    let mut buffer = BytesMut::new();
    let mut pieces = Vec::new();
    let mut fed = 0;
    loop {
        match dec.decode(&mut buffer)? {
            Some(BodyEvent::Data(d)) => {
                assert!(
                    !d.is_empty() && d.len() <= max_piece,
                    "piece of {} bytes",
                    d.len()
                );
                pieces.push(d);
            }
            Some(BodyEvent::End { trailers }) => {
                assert!(dec.is_done());
                let rest = [&buffer[..], &input[fed..]].concat();
                return Ok(Decoded {
                    pieces,
                    end: Some(trailers),
                    rest,
                });
            }
            None if fed < input.len() => {
                let n = step.min(input.len() - fed);
                buffer.extend_from_slice(&input[fed..fed + n]);
                fed += n;
            }
            None => {
                return Ok(Decoded {
                    pieces,
                    end: None,
                    rest: buffer.to_vec(),
                })
            }
        }
    }
}

/// Decodes with every step size from 1 to `input.len()` and checks that all agree.
fn decode_every_way(framing: Framing, input: &[u8], max_piece: usize) -> Result<Decoded, Error> {
    let whole = decode_stepwise(framing, input, input.len().max(1), max_piece);
    for step in 1..input.len() {
        let other = decode_stepwise(framing, input, step, max_piece);
        match (&whole, &other) {
            (Ok(a), Ok(b)) => {
                assert_eq!(
                    (a.body(), &a.end, &a.rest),
                    (b.body(), &b.end, &b.rest),
                    "step {step}"
                )
            }
            (a, b) => assert_eq!(a.as_ref().err(), b.as_ref().err(), "step {step}"),
        }
    }
    whole
}

fn chunked(input: &str) -> Result<(String, Option<Headers>, String), Error> {
    let d = decode_every_way(Framing::Chunked, input.as_bytes(), 64 * 1024)?;
    let end = d.end.clone().ok_or(Error::UnexpectedEof {
        expected: Framing::Chunked,
        received: 0,
    })?;
    Ok((
        String::from_utf8_lossy(&d.body()).into_owned(),
        end,
        String::from_utf8_lossy(&d.rest).into_owned(),
    ))
}

fn bad_size(line: &str) -> Error {
    Error::InvalidChunkSize { line: line.into() }
}

#[test]
fn chunked_table() {
    let none: Option<Headers> = None;
    #[rustfmt::skip]
    let cases: Vec<(&str, Result<(&str, Option<Headers>, &str), Error>)> = vec![
        ("0\r\n\r\n", Ok(("", none.clone(), ""))),
        ("5\r\nhello\r\n0\r\n\r\n", Ok(("hello", none.clone(), ""))),
        ("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT", Ok(("hello world", none.clone(), "NEXT"))),
        ("A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", Ok(("0123456789abcdefghij", none.clone(), ""))),
        ("000005\r\nhello\r\n000\r\n\r\n", Ok(("hello", none.clone(), ""))),
        ("5;ext=1;other=\"q\"\r\nhello\r\n0;last\r\n\r\n", Ok(("hello", none.clone(), ""))),
        ("5 ;ext\r\nhello\r\n0\t\r\n\r\n", Ok(("hello", none.clone(), ""))),
        ("0\r\nX-Sum: abc\r\n\r\n", Ok(("", Some(hdrs(&[("X-Sum", "abc")])), ""))),
        ("3\r\nabc\r\n0\r\nA: 1\r\nb: 2\r\na: 3\r\n\r\nREST", Ok(("abc", Some(hdrs(&[("A", "1"), ("b", "2"), ("a", "3")])), "REST"))),
        ("0\r\n\n", Ok(("", none.clone(), ""))),
        ("ffffffffffffffff\r\n", Err(Error::UnexpectedEof { expected: Framing::Chunked, received: 0 })),
        ("10000000000000000\r\n", Err(bad_size("10000000000000000\r\n"))),
        ("x\r\n", Err(bad_size("x\r\n"))),
        ("\r\n", Err(bad_size("\r\n"))),
        (" 5\r\nhello\r\n0\r\n\r\n", Err(bad_size(" 5\r\n"))),
        ("-5\r\n", Err(bad_size("-5\r\n"))),
        ("0x5\r\nhello\r\n", Err(bad_size("0x5\r\n"))),
        ("5\nhello\r\n", Err(bad_size("5\n"))),
        ("5\r\r\nhello\r\n", Err(bad_size("5\r\r\n"))),
        ("5;a\rb\r\nhello\r\n", Err(bad_size("5;a\rb\r\n"))),
        ("5 5\r\nhello\r\n", Err(bad_size("5 5\r\n"))),
        ("5\r\nhelloXX0\r\n\r\n", Err(Error::MissingChunkTerminator)),
        ("5\r\nhello\n0\r\n\r\n", Err(Error::MissingChunkTerminator)),
        ("5\r\nhello\rX", Err(Error::MissingChunkTerminator)),
        ("0\r\nBad Name: x\r\n\r\n", Err(Error::InvalidHeader)),
        ("0\r\nX: a\r\n folded\r\n\r\n", Err(Error::InvalidHeader)),
    ];
    for (input, expected) in cases {
        let expected = expected.map(|(body, t, rest)| (body.to_owned(), t, rest.to_owned()));
        assert_eq!(chunked(input), expected, "{input:?}");
    }
}

#[test]
fn chunk_size_line_limit() {
    let ok = format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(1024 - 4));
    assert_eq!(chunked(&ok).map(|r| r.0), Ok("hello".to_owned()));
    let long = format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(1024 - 3));
    let err = Err(Error::ChunkLineTooLong { limit: 1024 });
    assert_eq!(chunked(&long).map(|r| r.0), err);
}

#[test]
fn trailer_section_limit() {
    let field = format!("X-Big: {}\r\n", "v".repeat(1000));
    let mut ok = "0\r\n".to_owned();
    while ok.len() + field.len() + 2 <= 3 + 64 * 1024 {
        ok.push_str(&field);
    }
    let n = (ok.len() - 3) / field.len();
    ok.push_str("\r\n");
    let mut dec = BodyDecoder::new(Framing::Chunked, 1024);
    let Ok(Some(BodyEvent::End { trailers: Some(t) })) = dec.decode(&mut buf(&ok)) else {
        panic!("trailers not parsed")
    };
    assert_eq!(t.len(), n);
    let mut too_big = ok.clone();
    too_big.insert_str(3, &field);
    let mut dec = BodyDecoder::new(Framing::Chunked, 1024);
    assert_eq!(
        dec.decode(&mut buf(&too_big)),
        Err(Error::TrailersTooLarge { limit: 64 * 1024 })
    );
}

#[test]
fn big_chunk_is_split_into_max_piece_pieces() {
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let input = [
        format!("{:x}\r\n", data.len()).as_bytes(),
        &data,
        b"\r\n3\r\nabc\r\n0\r\n\r\n",
    ]
    .concat();
    let d = decode_stepwise(Framing::Chunked, &input, input.len(), 4096).unwrap();
    let sizes: Vec<usize> = d.pieces.iter().map(Bytes::len).collect();
    assert_eq!(
        sizes,
        vec![4096, 4096, 1808, 3],
        "one event never spans two chunks"
    );
    assert_eq!(d.body(), [&data[..], b"abc"].concat());
    assert_eq!(d.end, Some(None));
    // Arriving in odd slices: still at most max_piece, still the same body.
    let d = decode_stepwise(Framing::Chunked, &input, 777, 1000).unwrap();
    assert!(d.pieces.iter().all(|p| p.len() <= 1000));
    assert_eq!(d.body(), [&data[..], b"abc"].concat());
}

#[test]
fn data_is_split_off_without_copying() {
    let mut input = buf("5\r\nhello\r\n0\r\n\r\n");
    let start = input.as_ptr() as usize;
    let mut dec = BodyDecoder::new(Framing::Chunked, 64);
    let Ok(Some(BodyEvent::Data(d))) = dec.decode(&mut input) else {
        panic!()
    };
    assert_eq!(d.as_ptr() as usize, start + 3);
}

#[test]
fn length_bodies() {
    #[rustfmt::skip]
    let cases: Vec<(u64, &str, usize, Result<(&str, Option<Option<Headers>>, &str), Error>)> = vec![
        (0, "", 8, Ok(("", Some(None), ""))),
        (0, "NEXT", 8, Ok(("", Some(None), "NEXT"))),
        (5, "hello", 8, Ok(("hello", Some(None), ""))),
        (5, "helloNEXT", 2, Ok(("hello", Some(None), "NEXT"))),
        (5, "hel", 8, Ok(("hel", None, ""))),
    ];
    for (len, input, max_piece, expected) in cases {
        let got = decode_every_way(Framing::Length(len), input.as_bytes(), max_piece).map(|d| {
            (
                String::from_utf8_lossy(&d.body()).into_owned(),
                d.end,
                String::from_utf8_lossy(&d.rest).into_owned(),
            )
        });
        let expected = expected.map(|(b, e, r)| (b.to_owned(), e, r.to_owned()));
        assert_eq!(got, expected, "{len} {input:?}");
    }
}

#[test]
fn none_framing_ends_at_once() {
    let mut dec = BodyDecoder::new(Framing::None, 8);
    let mut input = buf("NEXT");
    assert_eq!(
        dec.decode(&mut input),
        Ok(Some(BodyEvent::End { trailers: None }))
    );
    assert!(dec.is_done());
    assert_eq!(&input[..], b"NEXT");
    assert_eq!(
        dec.decode(&mut input),
        Ok(Some(BodyEvent::End { trailers: None }))
    );
    assert_eq!(dec.eof(), Ok(BodyEvent::End { trailers: None }));
}

#[test]
fn until_close_bodies() {
    let mut dec = BodyDecoder::new(Framing::UntilClose, 4);
    let mut input = buf("abcdefghij");
    let mut body = Vec::new();
    while let Some(BodyEvent::Data(d)) = dec.decode(&mut input).unwrap() {
        assert!(d.len() <= 4);
        body.extend_from_slice(&d);
    }
    assert_eq!(body, b"abcdefghij");
    assert!(!dec.is_done());
    assert_eq!(dec.consumed(), 10);
    assert_eq!(dec.eof(), Ok(BodyEvent::End { trailers: None }));
    assert!(dec.is_done());
    assert_eq!(
        dec.decode(&mut input),
        Ok(Some(BodyEvent::End { trailers: None }))
    );
}

#[test]
fn eof_handling() {
    #[rustfmt::skip]
    let cases: Vec<(Framing, &str, Result<BodyEvent, Error>)> = vec![
        (Framing::UntilClose, "", Ok(BodyEvent::End { trailers: None })),
        (Framing::UntilClose, "abc", Ok(BodyEvent::End { trailers: None })),
        (Framing::None, "", Ok(BodyEvent::End { trailers: None })),
        (Framing::Length(3), "abc", Ok(BodyEvent::End { trailers: None })),
        (Framing::Length(3), "ab", Err(Error::UnexpectedEof { expected: Framing::Length(3), received: 2 })),
        (Framing::Length(3), "", Err(Error::UnexpectedEof { expected: Framing::Length(3), received: 0 })),
        (Framing::Chunked, "", Err(Error::UnexpectedEof { expected: Framing::Chunked, received: 0 })),
        (Framing::Chunked, "3\r\nab", Err(Error::UnexpectedEof { expected: Framing::Chunked, received: 2 })),
        (Framing::Chunked, "3\r\nabc\r\n", Err(Error::UnexpectedEof { expected: Framing::Chunked, received: 3 })),
        (Framing::Chunked, "3\r\nabc\r\n0\r\n", Err(Error::UnexpectedEof { expected: Framing::Chunked, received: 3 })),
        (Framing::Chunked, "3\r\nabc\r\n0\r\n\r\n", Ok(BodyEvent::End { trailers: None })),
    ];
    for (framing, input, expected) in cases {
        let mut dec = BodyDecoder::new(framing, 64);
        let mut input = buf(input);
        while let Some(ev) = dec.decode(&mut input).unwrap() {
            if matches!(ev, BodyEvent::End { .. }) {
                break;
            }
        }
        assert_eq!(dec.eof(), expected, "{framing:?} {input:?}");
    }
}

#[test]
fn consumed_counts_body_bytes_only() {
    let mut dec = BodyDecoder::new(Framing::Chunked, 64);
    let mut input = buf("3\r\nabc\r\n2;x\r\nde\r\n0\r\nT: 1\r\n\r\n");
    while !matches!(dec.decode(&mut input).unwrap(), Some(BodyEvent::End { .. })) {}
    assert_eq!(dec.consumed(), 5);
    assert_eq!(dec.framing(), Framing::Chunked);
}

#[test]
fn zero_max_piece_still_makes_progress() {
    let d = decode_stepwise(Framing::Length(3), b"abc", 3, 1).unwrap();
    assert_eq!(d.pieces.len(), 3);
    let mut dec = BodyDecoder::new(Framing::Length(3), 0);
    assert_eq!(
        dec.decode(&mut buf("abc")),
        Ok(Some(BodyEvent::Data(Bytes::from_static(b"a"))))
    );
}
