//! mitmrs-core: the flow model, the option registry and the addon (hook) API.
//!
//! This crate is what addons see. It holds mitmrs's own types ([`HttpFlow`],
//! [`Request`], [`Response`], [`Headers`], the [`Client`]/[`Server`] connection
//! records) and never exposes a wire library's types, so addons do not depend on
//! hyper, h2 or rustls versions. It does no I/O.
//!
//! What it refuses to do: parse or serialise wire formats (see `mitmrs-http1`),
//! hold sockets, or know about TLS libraries.

pub mod addon;
pub mod chain;
pub mod connection;
pub mod encoding;
pub mod flow;
pub mod headers;
pub mod message;
pub mod options;
pub mod status;

pub use addon::{Addon, Hook, HookResult, HookSet};
pub use chain::AddonChain;
pub use connection::{Client, Server};
pub use flow::{FlowError, HttpFlow};
pub use headers::Headers;
pub use message::{Request, Response, StreamMode};
pub use options::Options;

/// Seconds since the Unix epoch, as mitmproxy's timestamps.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A fresh random UUID string, as mitmproxy's ids.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
