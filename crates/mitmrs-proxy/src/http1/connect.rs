//! CONNECT tunnels and TLS interception.
//!
//! Order of events (mitmproxy's, with the eager connection strategy):
//! `http_connect`, `server_connect`, `server_connected`, `http_connected`,
//! `next_layer`, `tls_clienthello`, `tls_established_server`,
//! `tls_established_client`, `next_layer` (for the layer inside TLS); then the
//! requests inside the tunnel.
//!
//! The ClientHello is read with rustls's sans-IO `Acceptor`, fed from our own read
//! buffer, so the raw bytes stay available: an addon can still decide to pass the
//! connection through untouched after seeing the SNI.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use mitmrs_core::addon::{ClientHelloData, LayerKind, NextLayer, TlsData, TlsSide};
use mitmrs_core::{now, FlowError, HttpFlow, Request, Response, Server};
use mitmrs_tls::rustls;
use mitmrs_tls::LeafSpec;
use tracing::info;

use super::exchange::sni_for_host;
use super::session::{After, BoxFut, Session, Tunnel};
use crate::config::ConnectionStrategy;
use crate::io::{Conn, Rewind, Stream};
use crate::socks5;
use crate::tlsinfo::apply_tls_info;
use crate::upstream;
use crate::wire::{self, BodyPlan};
use mitmrs_core::mode::ReverseTarget;

/// The most ClientHello bytes we read before giving up.
const MAX_CLIENT_HELLO: usize = 64 * 1024;

impl Session {
    /// The current server connection's record, or an empty one.
    fn server_record(&mut self) -> Arc<Server> {
        match self.server.as_mut() {
            Some(sc) => sc.shared(),
            None => Arc::new(Server::new(None)),
        }
    }

    pub async fn handle_connect(&mut self, req: Request) -> After {
        let (host, port) = (req.host.clone(), req.port);
        let mut flow = Box::new(HttpFlow::new(
            self.client.clone(),
            Arc::new(Server::new(Some((host.clone(), port)))),
            req,
        ));
        self.ctx.chain.http_connect(&mut flow).await;
        if flow.killed() {
            return self
                .fail(flow, None, FlowError::KILLED_MESSAGE.into())
                .await;
        }
        if let Some(resp) = flow.response.as_ref() {
            let ok = (200..300).contains(&resp.status_code);
            let content = resp.content.clone().unwrap_or_default();
            let mut out = BytesMut::new();
            let plan = if ok {
                BodyPlan::None
            } else {
                BodyPlan::Full(content.len() as u64)
            };
            wire::response_head(resp, plan, true, false, false, &mut out);
            if !ok {
                out.extend_from_slice(&content);
            }
            if self.conn.write_all(&out).await.is_err() {
                return After::Close;
            }
            if !ok {
                // Refused by an addon; the client may try again on this connection.
                return After::KeepAlive;
            }
        } else {
            if let Some(old) = self
                .server
                .take_if(|_| self.rt.cfg.connection_strategy == ConnectionStrategy::Lazy)
            {
                // A connection kept from an earlier absolute-form request is not
                // this tunnel's (the eager strategy replaces it below).
                upstream::disconnect(&self.ctx, &self.client, old).await;
            }
            if self.rt.cfg.connection_strategy == ConnectionStrategy::Eager {
                match upstream::connect(&self.ctx, &self.rt, &self.client, &host, port).await {
                    Ok(mut sc) => {
                        flow.server_conn = sc.shared();
                        if let Some(old) = self.server.replace(sc) {
                            upstream::disconnect(&self.ctx, &self.client, old).await;
                        }
                    }
                    Err(msg) => {
                        flow.error = Some(FlowError::new(msg.clone()));
                        self.ctx.chain.http_connect_error(&mut flow).await;
                        self.send_error_page(502, &msg).await;
                        return After::Close;
                    }
                }
            }
            if self
                .conn
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
                .is_err()
            {
                return After::Close;
            }
            let mut r = Response::make(200, Bytes::new(), Default::default());
            r.reason = "Connection established".into();
            r.headers = Default::default();
            flow.response = Some(r);
        }
        self.ctx.chain.http_connected(&mut flow).await;
        flow.live = false;
        self.tunnel = Some(Tunnel::new(host, port, None));
        self.enter_tunnel().await
    }

    /// Reverse mode: the connection is a tunnel to the target from the start.
    /// mitmproxy's order: `server_connect` with the eager strategy, then
    /// `next_layer` on the client's first bytes, then TLS to an https target —
    /// for a TLS client after its ClientHello (so that its SNI can be passed on
    /// with `keep_host_header`), for a plain client right after `next_layer`.
    /// A failed server connection is reported to each request for the target as a
    /// 502 with the reason (mitmproxy closes the client connection without a word).
    pub async fn start_reverse(&mut self, target: ReverseTarget) -> After {
        let mut tunnel = Tunnel::new(target.host, target.port, Some(target.tls));
        if self.rt.cfg.connection_strategy == ConnectionStrategy::Eager {
            let (host, port) = (&tunnel.host, tunnel.port);
            match upstream::connect(&self.ctx, &self.rt, &self.client, host, port).await {
                Ok(sc) => self.server = Some(sc),
                Err(msg) => tunnel.server_error = Some(msg),
            }
        }
        self.tunnel = Some(tunnel);
        self.enter_tunnel().await
    }

    /// SOCKS5 mode: the handshake (no authentication, CONNECT), then a tunnel to
    /// the client's target as after CONNECT. mitmproxy's order: `server_connect`
    /// with the eager strategy before the success reply (a failure is answered
    /// "host unreachable"), then `next_layer` on the client's first bytes.
    pub async fn start_socks5(&mut self) -> After {
        let user_pass = self.rt.cfg.proxyauth;
        let greeting = loop {
            match socks5::parse_greeting(&self.conn.rbuf, user_pass) {
                Ok(Some(n)) => break n,
                Ok(None) => {}
                Err(r) => return self.socks_refuse(r).await,
            }
            if !self.socks_fill().await {
                return After::Close;
            }
        };
        self.conn.rbuf.advance(greeting);
        let chosen = match user_pass {
            true => socks5::USER_PASS_CHOSEN,
            false => socks5::METHOD_ACCEPTED,
        };
        if self.conn.write_all(&chosen).await.is_err() {
            return After::Close;
        }
        if user_pass {
            let (username, password) = loop {
                if let Some((u, p, n)) = socks5::parse_user_pass(&self.conn.rbuf) {
                    self.conn.rbuf.advance(n);
                    break (u, p);
                }
                if !self.socks_fill().await {
                    return After::Close;
                }
            };
            let mut data = mitmrs_core::addon::Socks5AuthData {
                client: self.client.clone(),
                username,
                password,
                valid: false,
            };
            self.ctx.chain.socks5_auth(&mut data).await;
            if !data.valid {
                let _ = self.conn.write_all(&socks5::AUTH_FAILED).await;
                info!(client = %self.client.peername, "authentication failed");
                return After::Close;
            }
            if self.conn.write_all(&socks5::AUTH_SUCCEEDED).await.is_err() {
                return After::Close;
            }
        }
        let (host, port) = loop {
            match socks5::parse_request(&self.conn.rbuf) {
                Ok(Some((host, port, n))) => {
                    self.conn.rbuf.advance(n);
                    break (host, port);
                }
                Ok(None) => {}
                Err(r) => return self.socks_refuse(r).await,
            }
            if !self.socks_fill().await {
                return After::Close;
            }
        };
        if self.rt.cfg.connection_strategy == ConnectionStrategy::Eager {
            match upstream::connect(&self.ctx, &self.rt, &self.client, &host, port).await {
                Ok(sc) => self.server = Some(sc),
                Err(msg) => {
                    info!(client = %self.client.peername, "SOCKS5 CONNECT to {host}:{port} failed: {msg}");
                    let _ = self
                        .conn
                        .write_all(&socks5::Reply::HostUnreachable.bytes())
                        .await;
                    return After::Close;
                }
            }
        }
        if self
            .conn
            .write_all(&socks5::Reply::Succeeded.bytes())
            .await
            .is_err()
        {
            return After::Close;
        }
        self.tunnel = Some(Tunnel::new(host, port, None));
        self.enter_tunnel().await
    }

    /// Reads more of the SOCKS5 handshake; false when the client went away.
    async fn socks_fill(&mut self) -> bool {
        match self.conn.fill().await {
            Ok(n) if n > 0 => true,
            _ => {
                if !self.conn.rbuf.is_empty() {
                    info!(client = %self.client.peername, "Client closed the connection (or went idle) before completing the SOCKS5 handshake: {:02x?}", &self.conn.rbuf[..]);
                }
                false
            }
        }
    }

    async fn socks_refuse(&mut self, r: socks5::Refusal) -> After {
        info!(client = %self.client.peername, "{}", r.message);
        if let Some(answer) = r.answer {
            let _ = self.conn.write_all(&answer).await;
        }
        After::Close
    }

    /// Reverse mode to an https target with a plain client: TLS on the eagerly
    /// opened server connection, before the first request.
    async fn reverse_server_tls(&mut self) {
        let Some(t) = self.tunnel.as_ref().filter(|t| t.server_tls == Some(true)) else {
            return;
        };
        let sni = sni_for_host(&t.host);
        let Some(sc) = self.server.take_if(|sc| !sc.info.tls.tls) else {
            return;
        };
        match self.http1_server_tls(sc, sni.as_deref()).await {
            Ok(sc) => self.server = Some(sc),
            Err(msg) => {
                if let Some(t) = self.tunnel.as_mut() {
                    t.server_error = Some(msg);
                }
            }
        }
    }

    /// Decides what runs inside the tunnel (TLS, HTTP or raw bytes) and starts it.
    async fn enter_tunnel(&mut self) -> After {
        // In CONNECT and SOCKS5 tunnels (not reverse mode, whose layers follow its
        // target's scheme) the server may speak first (SMTP, FTP, MySQL...): wait
        // for either side, as mitmproxy's next_layer does.
        let guess = self.tunnel.as_ref().is_some_and(|t| !t.is_reverse());
        let mut server_first = false;
        // Whether the client's bytes are HTTP, once known (only when guessing).
        let mut verdict = None;
        let max = self.rt.cfg.max_header_size;
        loop {
            if !self.conn.rbuf.is_empty() {
                let b = &self.conn.rbuf[..];
                if looks_tls(b) {
                    // The whole first record (the ClientHello, usually), so that
                    // next_layer's addons see its SNI (ignore_hosts does).
                    let complete = b.get(3..5).is_some_and(|l| {
                        let need = 5 + usize::from(u16::from_be_bytes([l[0], l[1]]));
                        b.len() >= need || need > MAX_CLIENT_HELLO
                    });
                    if complete {
                        break;
                    }
                } else if !guess {
                    break;
                }
                verdict = http_verdict(b, max);
                if verdict.is_some() {
                    break;
                }
            }
            let read = match self.server.as_mut().filter(|_| guess) {
                Some(sc) if self.conn.rbuf.is_empty() => tokio::select! {
                    r = self.conn.fill() => r,
                    _ = sc.conn.fill() => {
                        server_first = true;
                        break;
                    }
                },
                _ => self.conn.fill().await,
            };
            match read {
                Ok(0) | Err(_) => return After::Close,
                Ok(_) => {}
            }
        }
        let mut server = self.server_record();
        // Not connected yet (lazy strategy): the destination is still known.
        if let (None, Some(t)) = (&server.address, self.tunnel.as_ref()) {
            let mut s = (*server).clone();
            s.address = Some((t.host.clone(), t.port));
            server = Arc::new(s);
        }
        let b = &self.conn.rbuf[..];
        let looks_tls = looks_tls(b);
        // mitmproxy's `rawtcp` guess: what is not TLS and not an HTTP request (or
        // follows a server greeting) is relayed as raw TCP.
        let raw = guess && self.rt.cfg.rawtcp && (server_first || verdict == Some(false));
        let mut nl = NextLayer {
            client: self.client.clone(),
            server,
            // A whole TLS record at most (16 KiB and its header).
            data_client: Bytes::copy_from_slice(&b[..b.len().min(16 * 1024 + 5)]),
            layer: Some(if raw {
                LayerKind::Tcp
            } else if looks_tls {
                LayerKind::Tls
            } else {
                LayerKind::Http
            }),
        };
        self.ctx.chain.next_layer(&mut nl).await;
        match nl.layer {
            Some(LayerKind::Tcp) => self.passthrough().await,
            Some(LayerKind::Tls) => self.intercept_tls().await,
            _ => {
                self.reverse_server_tls().await;
                After::KeepAlive
            }
        }
    }

    /// Relays the tunnel's bytes unchanged.
    async fn passthrough(&mut self) -> After {
        let Some(t) = self.tunnel.as_ref() else {
            return After::Close;
        };
        let (host, port) = (t.host.clone(), t.port);
        let sc = match self.server.take() {
            Some(sc) => sc,
            None => match upstream::connect(&self.ctx, &self.rt, &self.client, &host, port).await {
                Ok(sc) => sc,
                Err(_) => return After::Close,
            },
        };
        let client = std::mem::replace(
            &mut self.conn,
            Conn::new(Stream::empty(), self.rt.cfg.tcp_timeout),
        );
        let (server_conn, mut info) = sc.into_parts();
        let _ = crate::io::relay(client, server_conn).await;
        info.timestamp_end = Some(now());
        let data = mitmrs_core::addon::ServerConnectionHookData {
            server: info,
            client: self.client.clone(),
        };
        self.ctx.chain.server_disconnected(&data).await;
        After::Close
    }

    /// Boxed: an error path; its state must not grow the common path's future.
    fn tls_failed_client<'a>(&'a mut self, msg: String) -> BoxFut<'a, After> {
        Box::pin(self.tls_failed_client_inner(msg))
    }

    async fn tls_failed_client_inner(&mut self, msg: String) -> After {
        info!(client = %self.client.peername, "{msg}");
        let data = TlsData {
            side: TlsSide::Client,
            client: self.client.clone(),
            server: self.server_record(),
            error: Some(msg),
        };
        self.ctx.chain.tls_failed_client(&data).await;
        After::Close
    }

    async fn intercept_tls(&mut self) -> After {
        // Read the ClientHello without consuming our buffer.
        let mut acceptor = rustls::server::Acceptor::default();
        let mut fed = 0usize;
        let accepted = loop {
            while fed < self.conn.rbuf.len() {
                let mut rest = &self.conn.rbuf[fed..];
                match acceptor.read_tls(&mut rest) {
                    Ok(0) => break,
                    Ok(n) => fed += n,
                    Err(e) => {
                        return self
                            .tls_failed_client(format!("Client TLS handshake failed: {e}"))
                            .await
                    }
                }
            }
            match acceptor.accept() {
                Ok(Some(a)) => break a,
                Ok(None) => {}
                Err((e, _alert)) => {
                    return self
                        .tls_failed_client(format!(
                            "Client TLS handshake failed: invalid ClientHello: {e}"
                        ))
                        .await
                }
            }
            if self.conn.rbuf.len() > MAX_CLIENT_HELLO {
                return self.tls_failed_client(format!("Client TLS handshake failed: ClientHello larger than {MAX_CLIENT_HELLO} bytes")).await;
            }
            match self.conn.fill().await {
                Ok(0) | Err(_) => return self.tls_failed_client("Client TLS handshake failed: client closed the connection during the handshake".into()).await,
                Ok(_) => {}
            }
        };
        let (sni, client_alpn): (Option<String>, Vec<Bytes>) = {
            let ch = accepted.client_hello();
            (
                ch.server_name().map(str::to_string),
                ch.alpn()
                    .map(|it| it.map(Bytes::copy_from_slice).collect())
                    .unwrap_or_default(),
            )
        };
        let server_info = self.server_record();
        let mut chd = ClientHelloData {
            client: self.client.clone(),
            server: server_info,
            sni: sni.clone(),
            alpn_protocols: client_alpn.clone(),
            ignore_connection: false,
            establish_server_tls_first: false,
        };
        self.ctx.chain.tls_clienthello(&mut chd).await;
        if chd.ignore_connection {
            return self.passthrough().await;
        }
        let Some(t) = self.tunnel.as_mut() else {
            return After::Close;
        };
        // The SNI towards the server: the client's, except in reverse mode, where it
        // is the target's name unless keep_host_header (as mitmproxy).
        if !t.is_reverse() || self.rt.cfg.keep_host_header {
            t.sni = sni.clone();
        }
        let upstream_tls = t.server_tls.unwrap_or(true);
        let sni_out = t.sni.clone().or_else(|| sni_for_host(&t.host));
        let host = t.host.clone();
        let port = t.port;
        let offers_h1 = client_alpn.iter().any(|p| &p[..] == b"http/1.1");
        let offers_h2 =
            self.rt.cfg.http2 && client_alpn.iter().any(|p| &p[..] == crate::http2::ALPN_H2);
        // What the server is offered: h2 (spoken through `http2.rs`) if the client
        // offered it, and http/1.1, which an HTTP/2 client's requests can be
        // converted to.
        let alpn_offer: Vec<Vec<u8>> = match (offers_h2, offers_h1) {
            (true, _) => vec![crate::http2::ALPN_H2.to_vec(), b"http/1.1".to_vec()],
            (false, true) => vec![b"http/1.1".to_vec()],
            (false, false) => Vec::new(),
        };

        let mut server_error = None;
        let need_server_first = self.rt.cfg.upstream_cert || chd.establish_server_tls_first;
        if need_server_first && self.server.is_none() {
            match upstream::connect(&self.ctx, &self.rt, &self.client, &host, port).await {
                Ok(sc) => self.server = Some(sc),
                Err(msg) => server_error = Some(msg),
            }
        }
        let mut upstream_der: Option<Bytes> = None;
        let mut server_alpn: Option<Bytes> = None;
        if let Some(mut sc) = self.server.take_if(|_| upstream_tls) {
            match upstream::start_tls(
                &self.ctx,
                &self.rt,
                &self.client,
                &mut sc,
                sni_out.as_deref(),
                &alpn_offer,
            )
            .await
            {
                Ok(()) => {
                    upstream_der = sc.info.tls.certificate_list.first().cloned();
                    server_alpn = sc.info.tls.alpn.clone();
                    self.server = Some(sc);
                }
                Err(msg) => {
                    server_error = Some(msg);
                    upstream::disconnect(&self.ctx, &self.client, sc).await;
                }
            }
        }
        let name = sni.clone().unwrap_or_else(|| host.clone());
        let spec = match (&upstream_der, self.rt.cfg.upstream_cert) {
            (Some(der), true) => LeafSpec::from_upstream_cert(&name, der)
                .unwrap_or_else(|_| LeafSpec::for_host(&name)),
            _ => LeafSpec::for_host(&name),
        };
        let leaf = match self.ctx.ca.leaf(&spec) {
            Ok(l) => l,
            Err(e) => {
                return self
                    .tls_failed_client(format!(
                        "Client TLS handshake failed: cannot make a certificate for {name:?}: {e}"
                    ))
                    .await
            }
        };
        let mitmcert = leaf
            .cert
            .first()
            .map(|c| Bytes::copy_from_slice(c.as_ref()));
        // As mitmproxy: the client gets what the server chose, if the server was
        // asked (eager TLS); otherwise HTTP/2 if the client offers it (and the
        // `http2` option allows), else HTTP/1.1.
        let answer_alpn: Vec<Vec<u8>> = match server_alpn {
            Some(a) if client_alpn.contains(&a) => vec![a.to_vec()],
            // In the client's order of preference (rustls picks the first of
            // these the client offered).
            _ if offers_h2 => client_alpn
                .iter()
                .filter(|p| &p[..] == crate::http2::ALPN_H2 || &p[..] == b"http/1.1")
                .map(|p| p.to_vec())
                .collect(),
            _ if offers_h1 => vec![b"http/1.1".to_vec()],
            _ => Vec::new(),
        };
        let config = mitmrs_tls::client_facing_config(leaf, &answer_alpn);
        let old = std::mem::replace(
            &mut self.conn,
            Conn::new(Stream::empty(), self.rt.cfg.tcp_timeout),
        );
        let (io, mut rbuf) = old.into_parts();
        let rest = rbuf.split_off(fed.min(rbuf.len())).freeze();
        let transport = Rewind::new(rest, io);
        let start = tokio_rustls::StartHandshake::from_parts(accepted, transport);
        match start.into_stream(config).await {
            Ok(tls) => {
                let mut c = (*self.client).clone();
                {
                    let (_, session) = tls.get_ref();
                    apply_tls_info(&mut c.tls, mitmrs_tls::tls_info_client_side(session));
                }
                c.tls.alpn_offers = client_alpn;
                c.mitmcert = mitmcert;
                self.client = Arc::new(c);
                self.conn = Conn::new(Stream::other(tls), self.rt.cfg.tcp_timeout);
                if let Some(t) = self.tunnel.as_mut() {
                    t.tls = true;
                    if server_error.is_some() {
                        t.server_error = server_error;
                    }
                }
                let data = TlsData {
                    side: TlsSide::Client,
                    client: self.client.clone(),
                    server: self.server_record(),
                    error: None,
                };
                self.ctx.chain.tls_established_client(&data).await;
                if self.tunnel.as_ref().is_some_and(Tunnel::is_reverse) {
                    // Reverse mode chose HTTP inside TLS already (mitmproxy's
                    // layer stack for a reverse target has no second next_layer).
                    return After::KeepAlive;
                }
                // As mitmproxy: the layer inside TLS is chosen again (HTTP by default;
                // an addon may pick raw TCP relaying of the decrypted bytes).
                let mut nl = NextLayer {
                    client: self.client.clone(),
                    server: data.server,
                    data_client: Bytes::new(),
                    layer: Some(LayerKind::Http),
                };
                self.ctx.chain.next_layer(&mut nl).await;
                if nl.layer == Some(LayerKind::Tcp) {
                    return self.passthrough().await;
                }
                After::KeepAlive
            }
            Err(e) => {
                let msg = if e.to_string().contains("CertificateUnknown")
                    || e.to_string().contains("UnknownCA")
                    || e.to_string().contains("BadCertificate")
                {
                    format!("Client TLS handshake failed. The client does not trust the proxy's certificate for {name} ({e})")
                } else {
                    format!("Client TLS handshake failed. The client may not trust the proxy's certificate for {name} ({e})")
                };
                self.tls_failed_client(msg).await
            }
        }
    }
}

/// The start of a TLS handshake record (as far as the bytes go).
fn looks_tls(b: &[u8]) -> bool {
    b.first() == Some(&0x16) && (b.len() < 2 || b[1] == 0x03)
}

/// Whether the first bytes of a tunnel are an HTTP request (mitmproxy's
/// "probably no HTTP" guess): `Some(false)` for a non-letter method, a method
/// shorter than 3 letters, no space before the end of the first line, or an SSH
/// banner; `Some(true)` once a first line with a space is complete; `None` while
/// a request line is still plausibly arriving (mitmproxy decides on the first
/// read and would take a request line split over two reads for raw TCP). Past
/// `max` bytes without a line end it is not HTTP.
pub fn http_verdict(b: &[u8], max: usize) -> Option<bool> {
    if b.starts_with(b"SSH") {
        return Some(false);
    }
    let method = b.iter().take_while(|c| c.is_ascii_alphabetic()).count();
    if method == b.len() {
        // Letters so far: a method still arriving, unless absurdly long.
        return if method > 32 { Some(false) } else { None };
    }
    if method < 3 || b[method] != b' ' {
        return Some(false);
    }
    match b.iter().position(|&c| c == b'\n') {
        Some(_) => Some(true),
        None if b.len() > max => Some(false),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::http_verdict;

    #[test]
    fn http_or_not() {
        for (b, v) in [
            (&b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..], Some(true)),
            (b"POST /x HTTP/1.1\n", Some(true)),
            (b"GE", None),
            (b"GET /path-without-end", None),
            (b"SSH-2.0-OpenSSH_9.2\r\n", Some(false)),
            (b"\x00\x01binary", Some(false)),
            (b"AB /x HTTP/1.1\r\n", Some(false)),
            (b"GET\r\n", Some(false)),
            (b"EHLO example.com\r\n", Some(true)),
            (b"HELLOTHEREHELLOTHEREHELLOTHEREHELLOTHERE", Some(false)),
        ] {
            assert_eq!(http_verdict(b, 1024), v, "{:?}", String::from_utf8_lossy(b));
        }
        assert_eq!(
            http_verdict(
                &[b'G'; 3]
                    .iter()
                    .chain(b" /".iter())
                    .copied()
                    .chain(std::iter::repeat_n(b'a', 2000))
                    .collect::<Vec<_>>(),
                1024
            ),
            Some(false)
        );
    }
}
