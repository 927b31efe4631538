//! The codec's error type.

use crate::Framing;

/// Everything that can be wrong with HTTP/1 input.
///
/// Values taken from the input are carried as (lossily decoded) strings so the
/// caller can log them or put them in an error response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No complete head was found within the first `limit` bytes (431 for requests).
    #[error("message head larger than {limit} bytes")]
    HeadTooLarge { limit: usize },
    /// More than `limit` header (or trailer) fields.
    #[error("more than {limit} header fields")]
    TooManyHeaders { limit: usize },
    /// The request line is not `method SP request-target SP HTTP-version`.
    #[error("invalid request line")]
    InvalidRequestLine,
    /// The status line is not `HTTP-version SP 3DIGIT [SP reason]`.
    #[error("invalid status line")]
    InvalidStatusLine,
    /// The request target is malformed, or its form does not fit the method
    /// (CONNECT needs `host:port`, other methods must not use it).
    #[error("invalid request target {target:?}")]
    InvalidTarget { target: String },
    /// An absolute request target with a scheme other than http or https.
    #[error("unsupported scheme {scheme:?} in request target")]
    UnsupportedScheme { scheme: String },
    /// A well-formed HTTP version other than 1.0 and 1.1.
    #[error("unsupported HTTP version")]
    UnsupportedVersion,
    /// A malformed header or trailer field: name not a token, whitespace before the
    /// colon, obsolete line folding, control characters in the value, bare CR.
    #[error("invalid header field")]
    InvalidHeader,
    /// A Content-Length value that is not a decimal number fitting in u64.
    #[error("invalid Content-Length {value:?}")]
    InvalidContentLength { value: String },
    /// Contradicting framing information: Content-Length fields with different
    /// values, or Transfer-Encoding in an HTTP/1.0 request.
    #[error("conflicting message framing")]
    ConflictingFraming,
    /// A Transfer-Encoding this codec cannot delimit: a request whose final coding
    /// is not chunked, or chunked applied more than once or not last.
    #[error("unsupported Transfer-Encoding {value:?}")]
    UnsupportedTransferEncoding { value: String },
    /// A chunk-size line that is not `1*HEXDIG [BWS] [; extensions] CRLF`, or whose
    /// size does not fit in u64.
    #[error("invalid chunk size line {line:?}")]
    InvalidChunkSize { line: String },
    /// A chunk-size line longer than `limit` bytes.
    #[error("chunk size line longer than {limit} bytes")]
    ChunkLineTooLong { limit: usize },
    /// Chunk data not followed by CRLF.
    #[error("chunk data not followed by CRLF")]
    MissingChunkTerminator,
    /// A trailer section larger than `limit` bytes.
    #[error("trailer section larger than {limit} bytes")]
    TrailersTooLarge { limit: usize },
    /// The connection closed before the body was complete: `expected` is how the body
    /// was framed, `received` how many body bytes had been decoded.
    #[error("connection closed after {received} body bytes, body framed as {expected:?}")]
    UnexpectedEof { expected: Framing, received: u64 },
}
