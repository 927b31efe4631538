//! The HTTP/1 layer: one [`session::Session`] per client connection runs requests
//! one after another (keep-alive), each as an `HttpFlow` passed through the hooks.
//!
//! - `session.rs`: the connection loop, reading request heads, error replies.
//! - `exchange.rs`: one request/response exchange: hooks, buffering or streaming,
//!   the server side.
//! - `connect.rs`: CONNECT tunnels: `http_connect*` hooks, the eager server
//!   connection, `next_layer`, and TLS interception.

pub mod connect;
pub mod exchange;
pub mod session;
