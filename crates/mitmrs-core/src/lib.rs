//! mitmrs-core: the flow model, the option registry and the addon (hook) API.
//!
//! This crate is what addons see. It holds mitmrs's own types (`HttpFlow`,
//! `Request`, `Response`, `Headers`, connection records) and never exposes a wire
//! library's types, so addons do not depend on hyper, h2 or rustls versions.
//! It does no I/O.

pub mod headers;

pub use headers::Headers;
