//! mitmrs-proxy: the proxy server. It accepts client connections, speaks HTTP/1.x
//! on both sides, intercepts TLS inside CONNECT tunnels with certificates from
//! `mitmrs-tls`, and passes every flow through the addon chain from `mitmrs-core`.
//!
//! Data path (see docs/ARCHITECTURE.md): `server::Proxy` accepts → one
//! `http1::session::Session` task per client connection → per request an
//! `HttpFlow`, hooks, and the body moved by `body` (buffered, or streamed with
//! backpressure) → `upstream::ServerConn` kept per client connection for reuse.
//!
//! What it refuses to do: expose wire-library types to addons; hold a whole body
//! when it streams; await a hook while holding a lock.

pub mod body;
pub mod config;
pub mod contentview;
pub mod core_addons;
pub mod ctx;
pub mod dumper;
pub mod http1;
pub mod http2;
pub mod ignore;
pub mod io;
pub mod jsonview;
mod mem;
pub mod modify;
pub mod proxyauth;
pub mod server;
pub mod socks5;
#[cfg(target_os = "linux")]
pub mod splice;
pub mod tlsinfo;
pub mod upstream;
pub mod websocket;
pub mod wire;

pub use config::ProxyConfig;
pub use ctx::{ProxyCtx, Runtime};
pub use dumper::Dumper;
pub use server::{Proxy, Workers};
