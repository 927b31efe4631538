//! The addon (hook) API: one trait, one method per mitmproxy hook, each with a
//! default no-op body. See docs/HOOKS.md for when each hook fires and what it may
//! change.
//!
//! Hooks are `async`: a hook that waits (for a timer, a Python worker, an
//! interception) pauses only the flow or connection it was given, never the proxy.
//! An addon says which hooks it implements with [`Addon::hooks`], so the chain skips
//! it, without a call or an allocation, for the others.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::connection::{Client, Server};
use crate::flow::HttpFlow;
use crate::options::{Options, OptionsError};

/// What a hook returns. An `Err` is logged with the addon's name; the flow goes on.
pub type HookResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

macro_rules! hooks {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// Every hook, by mitmproxy's name.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Hook { $($variant),* }

        impl Hook {
            pub const ALL: &'static [Hook] = &[$(Hook::$variant),*];
            /// mitmproxy's name for the hook, e.g. "requestheaders".
            pub fn name(self) -> &'static str {
                match self { $(Hook::$variant => $name),* }
            }
            pub fn from_name(name: &str) -> Option<Hook> {
                match name { $($name => Some(Hook::$variant),)* _ => None }
            }
        }
    };
}

hooks! {
    Load => "load",
    Configure => "configure",
    Running => "running",
    Done => "done",
    ClientConnected => "client_connected",
    ClientDisconnected => "client_disconnected",
    ServerConnect => "server_connect",
    ServerConnected => "server_connected",
    ServerDisconnected => "server_disconnected",
    ServerConnectError => "server_connect_error",
    NextLayer => "next_layer",
    Socks5Auth => "socks5_auth",
    HttpConnect => "http_connect",
    HttpConnectUpstream => "http_connect_upstream",
    HttpConnected => "http_connected",
    HttpConnectError => "http_connect_error",
    RequestHeaders => "requestheaders",
    Request => "request",
    ResponseHeaders => "responseheaders",
    Response => "response",
    Error => "error",
    TlsClientHello => "tls_clienthello",
    TlsEstablishedClient => "tls_established_client",
    TlsEstablishedServer => "tls_established_server",
    TlsFailedClient => "tls_failed_client",
    TlsFailedServer => "tls_failed_server",
    WebsocketStart => "websocket_start",
    WebsocketMessage => "websocket_message",
    WebsocketEnd => "websocket_end",
    // TCP hooks (tcp_start, tcp_message, ...) are added here by the issue that
    // builds those flows.
}

/// A set of hooks, as a bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookSet(u64);

impl HookSet {
    pub const EMPTY: HookSet = HookSet(0);
    pub const ALL: HookSet = HookSet(u64::MAX);

    pub const fn with(self, h: Hook) -> HookSet {
        HookSet(self.0 | (1 << h as u64))
    }
    /// The set of `hooks`; usable in a `const` (an addon's `hooks()` is called
    /// for every hook of every flow, so a constant set costs nothing there).
    pub const fn of(hooks: &[Hook]) -> HookSet {
        let mut set = HookSet::EMPTY;
        let mut i = 0;
        while i < hooks.len() {
            set = set.with(hooks[i]);
            i += 1;
        }
        set
    }
    /// `self` while an addon is `on` (its option set), else only `load` and
    /// `configure`: the usual `hooks()` of a built-in addon with an option.
    pub const fn while_on(self, on: bool) -> HookSet {
        if on {
            self
        } else {
            HookSet::of(&[Hook::Load, Hook::Configure])
        }
    }
    pub const fn contains(self, h: Hook) -> bool {
        self.0 & (1 << h as u64) != 0
    }
    pub const fn bits(self) -> u64 {
        self.0
    }
    pub const fn from_bits(b: u64) -> HookSet {
        HookSet(b)
    }
}

/// The kind of layer to run next on a connection (mitmproxy's `next_layer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayerKind {
    /// HTTP/1 (plain, or inside TLS once TLS has been handled).
    Http,
    /// Intercept TLS: terminate it with a generated certificate.
    Tls,
    /// Relay bytes unchanged in both directions (TLS passthrough, non-HTTP protocols).
    Tcp,
}

/// Data for `next_layer`. The proxy fills in `layer` with its own choice; an addon
/// may replace it (for example `Some(LayerKind::Tcp)` to pass a TLS tunnel through
/// uninspected).
#[derive(Debug)]
pub struct NextLayer {
    pub client: Arc<Client>,
    pub server: Arc<Server>,
    /// The first bytes the client sent on this layer, if any were read yet.
    pub data_client: Bytes,
    pub layer: Option<LayerKind>,
}

/// Data for `socks5_auth` (mitmproxy's `Socks5AuthData`): the credentials a
/// SOCKS5 client sent (asked for when `proxyauth` is set); an addon that
/// accepts them sets `valid`.
#[derive(Debug)]
pub struct Socks5AuthData {
    pub client: Arc<Client>,
    pub username: String,
    pub password: String,
    pub valid: bool,
}

/// Data for the server connection hooks (mitmproxy's `ServerConnectionHookData`).
/// In `server_connect` an addon may change `server.address`, or set `server.error`
/// to refuse the connection with that message.
#[derive(Debug)]
pub struct ServerConnectionHookData {
    pub server: Server,
    pub client: Arc<Client>,
}

/// Data for `tls_clienthello` (mitmproxy's `ClientHelloData`).
#[derive(Debug)]
pub struct ClientHelloData {
    pub client: Arc<Client>,
    pub server: Arc<Server>,
    /// The SNI the client sent.
    pub sni: Option<String>,
    /// The ALPN protocols the client offered.
    pub alpn_protocols: Vec<Bytes>,
    /// Set to pass the TLS connection through without interception.
    pub ignore_connection: bool,
    /// Set to connect to the server and finish its TLS handshake before the client's.
    pub establish_server_tls_first: bool,
}

/// Which side a [`TlsData`] describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsSide {
    Client,
    Server,
}

/// Data for the `tls_established_*` and `tls_failed_*` hooks.
#[derive(Debug)]
pub struct TlsData {
    pub side: TlsSide,
    pub client: Arc<Client>,
    pub server: Arc<Server>,
    /// Why the handshake failed, for `tls_failed_*`.
    pub error: Option<String>,
}

/// Lets an addon register options in `load`.
pub struct Loader<'a> {
    pub options: &'a Options,
}

impl Loader<'_> {
    pub fn add_option(&mut self, spec: crate::options::OptionSpec) -> Result<(), OptionsError> {
        self.options.add_option(spec)
    }
}

/// An addon. Every hook has a no-op default; implement the ones you need and list
/// them in [`Addon::hooks`] (the default, [`HookSet::ALL`], calls every hook).
#[async_trait]
#[allow(unused_variables)]
pub trait Addon: Send + Sync + 'static {
    /// The addon's name, used in log lines and error messages.
    fn name(&self) -> &str;

    /// The hooks this addon implements. The chain does not call the others.
    fn hooks(&self) -> HookSet {
        HookSet::ALL
    }

    /// True if [`Addon::hooks`] changes only in `configure` (and so the chain
    /// may keep the set it returned after the last `configure` instead of
    /// asking at every dispatch). The default, false, asks every time.
    fn hooks_change_only_in_configure(&self) -> bool {
        false
    }

    /// Called once when the addon is added; register options here.
    fn load(&self, loader: &mut Loader<'_>) -> HookResult {
        Ok(())
    }

    /// Called with the names of options that changed (all of them at start-up).
    /// Returning an error rejects the update.
    fn configure(&self, options: &Options, updated: &BTreeSet<String>) -> Result<(), OptionsError> {
        Ok(())
    }

    /// The proxy is listening.
    async fn running(&self) -> HookResult {
        Ok(())
    }
    /// The proxy is shutting down.
    async fn done(&self) -> HookResult {
        Ok(())
    }

    async fn client_connected(&self, client: &mut Client) -> HookResult {
        Ok(())
    }
    async fn client_disconnected(&self, client: &Client) -> HookResult {
        Ok(())
    }
    async fn server_connect(&self, data: &mut ServerConnectionHookData) -> HookResult {
        Ok(())
    }
    async fn server_connected(&self, data: &ServerConnectionHookData) -> HookResult {
        Ok(())
    }
    async fn server_disconnected(&self, data: &ServerConnectionHookData) -> HookResult {
        Ok(())
    }
    async fn server_connect_error(&self, data: &ServerConnectionHookData) -> HookResult {
        Ok(())
    }
    async fn next_layer(&self, data: &mut NextLayer) -> HookResult {
        Ok(())
    }
    async fn socks5_auth(&self, data: &mut Socks5AuthData) -> HookResult {
        Ok(())
    }

    async fn http_connect(&self, flow: &mut HttpFlow) -> HookResult {
        Ok(())
    }
    async fn http_connect_upstream(&self, flow: &mut HttpFlow) -> HookResult {
        Ok(())
    }
    async fn http_connected(&self, flow: &mut HttpFlow) -> HookResult {
        Ok(())
    }
    async fn http_connect_error(&self, flow: &mut HttpFlow) -> HookResult {
        Ok(())
    }
    async fn requestheaders(&self, flow: &mut HttpFlow) -> HookResult {
        Ok(())
    }
    async fn request(&self, flow: &mut HttpFlow) -> HookResult {
        Ok(())
    }
    async fn responseheaders(&self, flow: &mut HttpFlow) -> HookResult {
        Ok(())
    }
    async fn response(&self, flow: &mut HttpFlow) -> HookResult {
        Ok(())
    }
    async fn error(&self, flow: &mut HttpFlow) -> HookResult {
        Ok(())
    }

    /// The 101 has been sent to the client; messages follow.
    async fn websocket_start(&self, flow: &mut HttpFlow) -> HookResult {
        Ok(())
    }
    /// A whole message arrived: it is the last of `flow.websocket.messages`,
    /// and may be changed or dropped before it is sent on.
    async fn websocket_message(&self, flow: &mut HttpFlow) -> HookResult {
        Ok(())
    }
    /// The WebSocket connection ended (`close_code` says how).
    async fn websocket_end(&self, flow: &mut HttpFlow) -> HookResult {
        Ok(())
    }

    async fn tls_clienthello(&self, data: &mut ClientHelloData) -> HookResult {
        Ok(())
    }
    async fn tls_established_client(&self, data: &TlsData) -> HookResult {
        Ok(())
    }
    async fn tls_established_server(&self, data: &TlsData) -> HookResult {
        Ok(())
    }
    async fn tls_failed_client(&self, data: &TlsData) -> HookResult {
        Ok(())
    }
    async fn tls_failed_server(&self, data: &TlsData) -> HookResult {
        Ok(())
    }
}
