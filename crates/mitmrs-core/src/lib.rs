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
pub mod flowfilter;
pub mod headers;
pub mod inject;
pub mod message;
pub mod mode;
pub mod options;
pub mod pyrepr;
pub mod status;

pub use addon::{Addon, Hook, HookResult, HookSet};
pub use chain::AddonChain;
pub use connection::{Client, Server};
pub use flow::{FlowError, HttpFlow, MessageType, WebSocketData, WebSocketMessage};
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
    // encode_lower writes the 36 characters directly; `to_string` went through the
    // formatting machinery (a third of a flow's construction cost).
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::new_v4()
        .hyphenated()
        .encode_lower(&mut buf)
        .to_owned()
}

#[cfg(test)]
mod id_tests {
    #[test]
    fn ids_are_lowercase_hyphenated_v4_uuids() {
        let a = super::new_id();
        let b = super::new_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(parsed.hyphenated().to_string(), a, "lowercase, hyphenated");
    }
}
