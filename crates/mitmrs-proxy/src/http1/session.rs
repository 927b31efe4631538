//! The client connection loop.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use mitmrs_core::addon::{LayerKind, NextLayer};
use mitmrs_core::mode::ModeKind;
use mitmrs_core::{now, Client, FlowError, HttpFlow, Request, Response, Server, StreamMode};
use mitmrs_http1::{
    parse_request_head, request_framing, Error as ParseError, RequestHead, RequestTarget,
};
use tokio::net::TcpStream;
use tracing::{debug, info};

use crate::ctx::{ProxyCtx, Runtime};
use crate::io::Conn;
use crate::upstream::{self, ServerConn};
use crate::wire;

/// Removes an `Upgrade: h2c` offer (with its `Connection` and `HTTP2-Settings`
/// fields), as mitmproxy's `disable_h2c` addon does, so a server cannot switch
/// the connection to cleartext HTTP/2 behind the proxy's back (it would then only
/// relay bytes). HTTP/2 with prior knowledge is served instead (`http2.rs`). Done
/// here, before any hook, rather than as an addon: an addon would cost every
/// request a hook call (~470 instructions, measured with callgrind).
fn strip_h2c_offer(h: &mut mitmrs_core::Headers) {
    if h.get("upgrade")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("h2c"))
    {
        tracing::warn!(
            "HTTP/2 cleartext upgrade requests (Upgrade: h2c) are not supported; the offer was \
             removed (HTTP/2 with prior knowledge, or over TLS, is)."
        );
        h.remove("upgrade");
        h.remove("connection");
        h.remove("http2-settings");
    }
}

/// HTTP/2's connection preface, which a client with prior knowledge (h2c) sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a client connection sends next.
enum Incoming {
    Request(RequestHead),
    /// HTTP/2's connection preface.
    H2Preface,
}

/// What happens to the client connection after an exchange.
pub enum After {
    KeepAlive,
    Close,
}

/// The target of a CONNECT tunnel we are inside.
#[derive(Clone)]
pub struct Tunnel {
    pub host: String,
    pub port: u16,
    /// TLS to the client was intercepted, so requests are https.
    pub tls: bool,
    pub sni: Option<String>,
    /// Set when the server side of the tunnel failed (e.g. TLS verification); each
    /// request then gets a 502 with this message.
    pub server_error: Option<String>,
    /// Reverse mode: whether requests go to the server over TLS (the target's
    /// scheme), whatever the client speaks. `None` in CONNECT tunnels, where the
    /// server side follows the client's TLS.
    pub server_tls: Option<bool>,
}

impl Tunnel {
    /// A tunnel to `host:port` before any TLS; `server_tls` as the field says.
    pub fn new(host: String, port: u16, server_tls: Option<bool>) -> Self {
        Self {
            host,
            port,
            tls: false,
            sni: None,
            server_error: None,
            server_tls,
        }
    }

    /// Reverse mode's tunnel (its server side does not follow the client's TLS).
    pub fn is_reverse(&self) -> bool {
        self.server_tls.is_some()
    }

    /// Requests in this tunnel go to the server over TLS (are `https`).
    pub fn https(&self) -> bool {
        self.server_tls.unwrap_or(self.tls)
    }
}

/// A boxed future borrowing the session.
pub type BoxFut<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

pub struct Session {
    pub ctx: Arc<ProxyCtx>,
    pub rt: Arc<Runtime>,
    pub client: Arc<Client>,
    pub conn: Conn,
    pub server: Option<ServerConn>,
    pub tunnel: Option<Tunnel>,
}

/// Serves one client connection to the end.
pub async fn serve(ctx: Arc<ProxyCtx>, stream: TcpStream, peer: SocketAddr, local: SocketAddr) {
    let rt = ctx.runtime();
    let _ = stream.set_nodelay(true);
    let mut client = Client::new(peer, local);
    let mode = rt.cfg.mode.kind.clone();
    if rt.cfg.mode.spec != "regular" {
        // mitmproxy's `client.proxy_mode` is the full spec, `@` part included.
        client.proxy_mode = rt.cfg.mode.spec.clone();
    }
    info!(client = %peer, "client connect");
    ctx.chain.client_connected(&mut client).await;
    if client.error.is_some() {
        info!(client = %peer, "client kill connection");
        return;
    }
    let client = Arc::new(client);
    if mode == ModeKind::Regular {
        let mut nl = NextLayer {
            client: client.clone(),
            server: Arc::new(Server::new(None)),
            data_client: Default::default(),
            layer: Some(LayerKind::Http),
        };
        ctx.chain.next_layer(&mut nl).await;
    }
    let conn = Conn::new(stream, rt.cfg.tcp_timeout);
    let mut s = Session {
        ctx: ctx.clone(),
        rt,
        client,
        conn,
        server: None,
        tunnel: None,
    };
    // Boxed: the tunnel set-up (TLS interception included) is large, and every
    // connection's task would otherwise carry room for it while idle (M8 measured
    // 8.4 → 17 KiB per idle connection before these were boxed).
    let go_on = match mode {
        ModeKind::Regular => true,
        ModeKind::Reverse(target) => {
            matches!(Box::pin(s.start_reverse(target)).await, After::KeepAlive)
        }
        ModeKind::Socks5 => matches!(Box::pin(s.start_socks5()).await, After::KeepAlive),
    };
    if go_on {
        s.run().await;
    }
    s.conn.shutdown().await;
    info!(client = %peer, "client disconnect");
    let mut c = (*s.client).clone();
    c.timestamp_end = Some(now());
    c.state = mitmrs_core::connection::ConnectionState::Closed;
    ctx.chain.client_disconnected(&c).await;
    if let Some(sc) = s.server.take() {
        upstream::disconnect(&ctx, &s.client, sc).await;
    }
}

impl Session {
    async fn run(&mut self) {
        loop {
            if self.client.tls.alpn.as_deref() == Some(crate::http2::ALPN_H2) {
                // Boxed: HTTP/2's state must not grow an HTTP/1 connection's task.
                return Box::pin(crate::http2::serve(self)).await;
            }
            self.conn.release_idle();
            let head = match self.read_head().await {
                Ok(Some(Incoming::Request(h))) => h,
                Ok(Some(Incoming::H2Preface)) => {
                    // HTTP/2 with prior knowledge (h2c; mitmproxy refuses it).
                    return Box::pin(crate::http2::serve(self)).await;
                }
                Ok(None) => return,
                Err((status, msg)) => {
                    info!(client = %self.client.peername, "HTTP protocol error in client request: {msg}");
                    self.send_error_page(status, &msg).await;
                    return;
                }
            };
            // Boxed so that an idle connection's task stays small: the exchange's
            // state lives on the heap only while a request is in flight. That state
            // is kept to ~2.5 KiB (flows and server connections are boxed; rare and
            // error paths box their own futures), because it is allocated and
            // copied once per request.
            match Box::pin(self.handle(head)).await {
                After::KeepAlive => continue,
                After::Close => return,
            }
        }
    }

    /// Reads the next request head. `Ok(None)`: the client closed or went idle.
    async fn read_head(&mut self) -> Result<Option<Incoming>, (u16, String)> {
        let max = self.rt.cfg.max_header_size;
        loop {
            if self.rt.cfg.http2 {
                let b = &self.conn.rbuf[..];
                let n = b.len().min(H2_PREFACE.len());
                if n > 0 && b[..n] == H2_PREFACE[..n] {
                    if n == H2_PREFACE.len() {
                        return Ok(Some(Incoming::H2Preface));
                    }
                    // The start of a preface (or of a method like POST): more first.
                    match self.conn.fill().await {
                        Ok(0) | Err(_) => return Ok(None),
                        Ok(_) => continue,
                    }
                }
            }
            match parse_request_head(&mut self.conn.rbuf, max) {
                Ok(Some(h)) => return Ok(Some(Incoming::Request(h))),
                Ok(None) => {}
                Err(ParseError::HeadTooLarge { limit }) => {
                    return Err((
                        431,
                        format!("request head larger than {limit} bytes (option max_header_size)"),
                    ))
                }
                Err(e) => return Err((400, format!("malformed request: {e}"))),
            }
            match self.conn.fill().await {
                Ok(0) => {
                    if !self.conn.rbuf.is_empty() {
                        debug!(client = %self.client.peername, "client closed the connection mid-request head");
                    }
                    return Ok(None);
                }
                Ok(_) => {}
                Err(e) => {
                    debug!(client = %self.client.peername, "client connection: {e}");
                    return Ok(None);
                }
            }
        }
    }

    /// Sends a proxy-generated error page and marks the connection for closing.
    pub async fn send_error_page(&mut self, status: u16, msg: &str) {
        let resp = Response::error_page(status, msg);
        let mut out = BytesMut::new();
        let len = resp.content.as_ref().map(|c| c.len() as u64).unwrap_or(0);
        let framing = wire::response_head(
            &resp,
            wire::BodyPlan::Full(len),
            true,
            false,
            true,
            &mut out,
        );
        let _ =
            crate::body::write_message(&mut self.conn, out, framing, resp.content.as_ref(), None)
                .await;
    }

    async fn handle(&mut self, head: RequestHead) -> After {
        let version = head.version;
        let (scheme, authority, host, port, path) = match (head.target, &self.tunnel) {
            (RequestTarget::Authority { .. }, Some(t)) => {
                let msg = if t.is_reverse() {
                    format!(
                        "CONNECT is not accepted in reverse mode: this proxy sends every request to {}",
                        self.rt.cfg.mode.spec.trim_start_matches("reverse:")
                    )
                } else {
                    format!(
                        "CONNECT is not accepted inside a tunnel (this connection already goes to {})",
                        mitmrs_core::connection::format_host_port(&t.host, t.port)
                    )
                };
                info!(client = %self.client.peername, "HTTP protocol error in client request: {msg}");
                self.send_error_page(400, &msg).await;
                return After::Close;
            }
            // Inside a tunnel (CONNECT, SOCKS5, reverse mode) every request goes to
            // the tunnel's target, whatever its URL says (mitmproxy's transparent
            // HTTP mode).
            (RequestTarget::Absolute { path, .. }, Some(t))
            | (RequestTarget::Origin { path }, Some(t)) => (
                if t.https() { "https" } else { "http" }.to_string(),
                String::new(),
                t.host.clone(),
                t.port,
                path,
            ),
            (
                RequestTarget::Authority {
                    authority,
                    host,
                    port,
                },
                _,
            ) => {
                let req = Request {
                    method: head.method,
                    scheme: "http".into(),
                    authority,
                    host,
                    port,
                    path: String::new(),
                    http_version: version.as_str().into(),
                    headers: head.headers,
                    content: Some(Default::default()),
                    trailers: None,
                    timestamp_start: now(),
                    timestamp_end: Some(now()),
                    stream: StreamMode::Off,
                };
                // Boxed: the CONNECT/TLS state is large and rare; it must not
                // grow every request's future.
                return Box::pin(self.handle_connect(req)).await;
            }
            // As mitmproxy in regular mode: the authority is cleared (the
            // request goes on in origin form), before any hook sees it.
            (
                RequestTarget::Absolute {
                    scheme,
                    host,
                    port,
                    path,
                    ..
                },
                _,
            ) => (scheme, String::new(), host, port, path),
            (RequestTarget::Origin { path }, None) => {
                let msg = format!(
                    "mitmrs is an HTTP proxy: requests must use an absolute URL (\"{} http://host{} ...\"), not \"{}\". Configure the client to use this address as its HTTP proxy.",
                    head.method, path, head.raw_target
                );
                info!(client = %self.client.peername, "HTTP protocol error in client request: {msg}");
                self.send_error_page(400, &msg).await;
                return After::Close;
            }
            #[allow(unreachable_patterns)]
            _ => {
                self.send_error_page(400, "unsupported request target")
                    .await;
                return After::Close;
            }
        };
        let framing = match request_framing(&head.headers, version) {
            Ok(f) => f,
            Err(e) => {
                let msg = format!("malformed request body framing: {e}");
                info!(client = %self.client.peername, "HTTP protocol error in client request: {msg}");
                self.send_error_page(400, &msg).await;
                return After::Close;
            }
        };
        let mut req = Request {
            method: head.method,
            scheme,
            authority,
            host,
            port,
            path,
            http_version: version.as_str().into(),
            headers: head.headers,
            content: None,
            trailers: None,
            timestamp_start: now(),
            timestamp_end: None,
            stream: StreamMode::Off,
        };
        if req.headers.contains("upgrade") {
            strip_h2c_offer(&mut req.headers);
        }
        if self.tunnel.as_ref().is_some_and(Tunnel::is_reverse) && !self.rt.cfg.keep_host_header {
            // As mitmproxy: the Host header names the reverse target.
            req.headers.set("Host", req.hostport());
        }
        let server_info = match &mut self.server {
            Some(sc) => sc.shared(),
            None => Arc::new(Server::new(Some((req.host.clone(), req.port)))),
        };
        let flow = Box::new(HttpFlow::new(self.client.clone(), server_info, req));
        self.exchange(flow, framing).await
    }

    /// Ends a flow with an error: sets `flow.error`, runs `error`, and sends
    /// `status` with `msg` to the client if `status` is given.
    /// Boxed: an error path; its state must not grow the common path's future.
    pub fn fail<'a>(
        &'a mut self,
        flow: Box<HttpFlow>,
        status: Option<u16>,
        msg: String,
    ) -> BoxFut<'a, After> {
        Box::pin(self.fail_inner(flow, status, msg))
    }

    async fn fail_inner(
        &mut self,
        mut flow: Box<HttpFlow>,
        status: Option<u16>,
        msg: String,
    ) -> After {
        if flow.error.is_none() {
            flow.error = Some(FlowError::new(msg.clone()));
        }
        flow.live = false;
        self.ctx.chain.error(&mut flow).await;
        if let Some(status) = status {
            if !flow.killed() {
                self.send_error_page(status, &msg).await;
            }
        }
        After::Close
    }
}
