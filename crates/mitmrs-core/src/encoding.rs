//! Content-Encoding: decoding and encoding of message bodies (identity, gzip,
//! deflate, br, zstd), as mitmproxy's `.content` does.
//!
//! Decoding is bounded by a caller-given limit so a compression bomb cannot exhaust
//! memory.

use std::io::{Read, Write};

use bytes::Bytes;

/// Why a body could not be decoded or encoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodingError {
    #[error("unsupported content-encoding {0:?}")]
    Unsupported(String),
    #[error("invalid {encoding} data: {reason}")]
    Invalid { encoding: String, reason: String },
    #[error("decoded {encoding} body exceeds {limit} bytes")]
    TooLarge { encoding: String, limit: usize },
}

fn invalid(encoding: &str, e: impl std::fmt::Display) -> EncodingError {
    EncodingError::Invalid {
        encoding: encoding.into(),
        reason: e.to_string(),
    }
}

fn read_limited(mut r: impl Read, encoding: &str, limit: usize) -> Result<Bytes, EncodingError> {
    let mut out = Vec::new();
    let mut take = (&mut r).take(limit as u64 + 1);
    take.read_to_end(&mut out)
        .map_err(|e| invalid(encoding, e))?;
    if out.len() > limit {
        return Err(EncodingError::TooLarge {
            encoding: encoding.into(),
            limit,
        });
    }
    Ok(out.into())
}

/// Decodes `data` according to a Content-Encoding value (possibly a comma-separated
/// list, applied in order, so decoded in reverse).
pub fn decode(encoding: &str, data: &Bytes, limit: usize) -> Result<Bytes, EncodingError> {
    let mut cur = data.clone();
    for enc in encoding.split(',').rev() {
        let enc = enc.trim().to_ascii_lowercase();
        cur = match enc.as_str() {
            "" | "identity" | "none" => cur,
            "gzip" | "x-gzip" => read_limited(flate2::read::GzDecoder::new(&cur[..]), &enc, limit)?,
            "deflate" => {
                // Like browsers, accept zlib-wrapped and raw deflate.
                match read_limited(flate2::read::ZlibDecoder::new(&cur[..]), &enc, limit) {
                    Ok(b) => b,
                    Err(EncodingError::TooLarge { .. }) => {
                        return Err(EncodingError::TooLarge {
                            encoding: enc,
                            limit,
                        })
                    }
                    Err(_) => {
                        read_limited(flate2::read::DeflateDecoder::new(&cur[..]), &enc, limit)?
                    }
                }
            }
            "br" => read_limited(brotli::Decompressor::new(&cur[..], 4096), &enc, limit)?,
            "zstd" => {
                let d = zstd::stream::read::Decoder::new(&cur[..]).map_err(|e| invalid(&enc, e))?;
                read_limited(d, &enc, limit)?
            }
            other => return Err(EncodingError::Unsupported(other.to_string())),
        };
    }
    Ok(cur)
}

/// Encodes `data` with a Content-Encoding value.
pub fn encode(encoding: &str, data: &[u8]) -> Result<Bytes, EncodingError> {
    let mut cur = Bytes::copy_from_slice(data);
    for enc in encoding.split(',') {
        let enc = enc.trim().to_ascii_lowercase();
        cur = match enc.as_str() {
            "" | "identity" | "none" => cur,
            "gzip" | "x-gzip" => {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(&cur).map_err(|e| invalid(&enc, e))?;
                e.finish().map_err(|e| invalid(&enc, e))?.into()
            }
            "deflate" => {
                let mut e =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(&cur).map_err(|e| invalid(&enc, e))?;
                e.finish().map_err(|e| invalid(&enc, e))?.into()
            }
            "br" => {
                let mut out = Vec::new();
                {
                    let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                    w.write_all(&cur).map_err(|e| invalid(&enc, e))?;
                }
                out.into()
            }
            "zstd" => zstd::stream::encode_all(&cur[..], 0)
                .map_err(|e| invalid(&enc, e))?
                .into(),
            other => return Err(EncodingError::Unsupported(other.to_string())),
        };
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let data = b"hello hello hello hello world".repeat(10);
        for enc in ["gzip", "deflate", "br", "zstd", "identity", "gzip, br"] {
            let e = encode(enc, &data).unwrap();
            assert_eq!(
                decode(enc, &e, 1 << 20).unwrap(),
                Bytes::from(data.clone()),
                "{enc}"
            );
        }
    }

    #[test]
    fn bounded_and_errors() {
        let e = encode("gzip", &vec![0u8; 100_000]).unwrap();
        assert!(matches!(
            decode("gzip", &e, 1000),
            Err(EncodingError::TooLarge { .. })
        ));
        assert!(matches!(
            decode("gzip", &Bytes::from_static(b"nope"), 1000),
            Err(EncodingError::Invalid { .. })
        ));
        assert!(matches!(
            decode("snappy", &Bytes::new(), 10),
            Err(EncodingError::Unsupported(_))
        ));
    }
}
