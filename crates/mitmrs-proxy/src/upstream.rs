//! Server connections: connecting (with the `server_connect*` hooks), TLS towards the
//! server (with the `tls_*_server` hooks) and disconnecting.

use std::sync::Arc;

use bytes::Bytes;
use mitmrs_core::addon::{ServerConnectionHookData, TlsData, TlsSide};
use mitmrs_core::connection::{format_host_port, ConnectionState, Server};
use mitmrs_core::{now, Client};
use mitmrs_tls::rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tracing::info;

use crate::ctx::{ProxyCtx, Runtime};
use crate::io::{Conn, Stream};
use crate::tlsinfo::apply_tls_info;

/// An open connection to a server. Boxed, so that moving it between the steps of
/// an exchange (and the futures holding it) copies a pointer.
pub struct ServerConn(Box<ServerConnState>);

impl std::ops::Deref for ServerConn {
    type Target = ServerConnState;
    fn deref(&self) -> &ServerConnState {
        &self.0
    }
}

impl std::ops::DerefMut for ServerConn {
    fn deref_mut(&mut self) -> &mut ServerConnState {
        &mut self.0
    }
}

impl ServerConn {
    /// The connection and its record, taken apart.
    pub fn into_parts(self) -> (Conn, Server) {
        let state = *self.0;
        (state.conn, state.info)
    }
}

/// What a [`ServerConn`] holds.
pub struct ServerConnState {
    pub conn: Conn,
    pub info: Server,
    /// Can carry another request after this one.
    pub reusable: bool,
    log_addr: String,
    /// `info` as shared with flows, made once and reused for every request on this
    /// connection; reset whenever `info` changes.
    snapshot: Option<Arc<Server>>,
}

impl ServerConnState {
    /// The connection record for flows (cheap after the first call).
    pub fn shared(&mut self) -> Arc<Server> {
        self.snapshot
            .get_or_insert_with(|| Arc::new(self.info.clone()))
            .clone()
    }

    pub fn target(&self) -> Option<(&str, u16, bool)> {
        self.info
            .address
            .as_ref()
            .map(|(h, p)| (h.as_str(), *p, self.info.tls.tls))
    }
}

fn connect_error_message(host: &str, port: u16, e: &std::io::Error) -> String {
    let what = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        std::io::ErrorKind::TimedOut => "connection timed out".to_string(),
        _ if e.to_string().contains("failed to lookup address")
            || e.to_string().contains("Name or service not known") =>
        {
            format!("name resolution failed ({e})")
        }
        _ => e.to_string(),
    };
    format!(
        "Error connecting to {}: {what}",
        format_host_port(host, port)
    )
}

/// Connects to `host:port` over TCP, running `server_connect`, then
/// `server_connected` or `server_connect_error`. Errors are the message for the client.
pub async fn connect(
    ctx: &ProxyCtx,
    rt: &Runtime,
    client: &Arc<Client>,
    host: &str,
    port: u16,
) -> Result<ServerConn, String> {
    let mut data = ServerConnectionHookData {
        server: Server::new(Some((host.to_string(), port))),
        client: client.clone(),
    };
    ctx.chain.server_connect(&mut data).await;
    if let Some(err) = data.server.error.clone() {
        ctx.chain.server_connect_error(&data).await;
        return Err(err);
    }
    let (h, p) = data
        .server
        .address
        .clone()
        .unwrap_or((host.to_string(), port));
    data.server.timestamp_start = Some(now());
    let stream =
        match tokio::time::timeout(rt.cfg.tcp_timeout, TcpStream::connect((h.as_str(), p))).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let msg = connect_error_message(&h, p, &e);
                data.server.error = Some(msg.clone());
                info!(client = %client.peername, "error establishing server connection: {msg}");
                ctx.chain.server_connect_error(&data).await;
                return Err(msg);
            }
            Err(_) => {
                let msg = format!(
                    "Error connecting to {}: connection timed out",
                    format_host_port(&h, p)
                );
                data.server.error = Some(msg.clone());
                info!(client = %client.peername, "error establishing server connection: {msg}");
                ctx.chain.server_connect_error(&data).await;
                return Err(msg);
            }
        };
    let _ = stream.set_nodelay(true);
    data.server.peername = stream.peer_addr().ok();
    data.server.sockname = stream.local_addr().ok();
    data.server.timestamp_tcp_setup = Some(now());
    data.server.state = ConnectionState::Open;
    let addr = format_host_port(&h, p);
    let log_addr = match data.server.peername {
        Some(peer) if peer.ip().to_string() != h.trim_matches(|c| c == '[' || c == ']') => {
            format!("{addr} ({peer})")
        }
        _ => addr,
    };
    info!(client = %client.peername, "server connect {log_addr}");
    ctx.chain.server_connected(&data).await;
    Ok(ServerConn(Box::new(ServerConnState {
        conn: Conn::new(stream, rt.cfg.tcp_timeout),
        info: data.server,
        reusable: true,
        log_addr,
        snapshot: None,
    })))
}

/// Runs the TLS handshake with the server over an open connection, offering `sni`
/// and `alpn`, verified per the options. Runs `tls_established_server` or
/// `tls_failed_server`. The error is the message for the client.
pub async fn start_tls(
    ctx: &ProxyCtx,
    rt: &Runtime,
    client: &Arc<Client>,
    sc: &mut ServerConn,
    sni: Option<&str>,
    alpn: &[Vec<u8>],
) -> Result<(), String> {
    sc.snapshot = None;
    let host = sc
        .info
        .address
        .as_ref()
        .map(|(h, _)| h.clone())
        .unwrap_or_default();
    let name_str = sni.map(str::to_string).unwrap_or_else(|| host.clone());
    let server_name = ServerName::try_from(name_str.clone()).map_err(|_| {
        format!("TLS handshake with {host} failed: invalid server name {name_str:?}")
    })?;
    let connector = tokio_rustls::TlsConnector::from(rt.upstream_tls.config(alpn));
    let io = std::mem::replace(&mut sc.conn.io, Stream::empty());
    let io = crate::io::Rewind::new(std::mem::take(&mut sc.conn.rbuf).freeze(), io);
    sc.info.tls.alpn_offers = alpn.iter().map(|a| Bytes::copy_from_slice(a)).collect();
    sc.info.tls.sni = sni.map(str::to_string);
    match connector.connect(server_name, io).await {
        Ok(tls) => {
            let (_, session) = tls.get_ref();
            let info = mitmrs_tls::tls_info_server_side(session, sni.map(str::to_string));
            apply_tls_info(&mut sc.info.tls, info);
            sc.conn.io = Stream::other(tls);
            let data = TlsData {
                side: TlsSide::Server,
                client: client.clone(),
                server: sc.shared(),
                error: None,
            };
            ctx.chain.tls_established_server(&data).await;
            Ok(())
        }
        Err(e) => {
            let msg = format!(
                "TLS handshake with {} failed: {e}",
                format_host_port(&host, sc.info.address.as_ref().map(|a| a.1).unwrap_or(443))
            );
            sc.info.error = Some(msg.clone());
            sc.reusable = false;
            info!(client = %client.peername, "{msg}");
            let data = TlsData {
                side: TlsSide::Server,
                client: client.clone(),
                server: sc.shared(),
                error: Some(msg.clone()),
            };
            ctx.chain.tls_failed_server(&data).await;
            Err(msg)
        }
    }
}

/// Closes the connection and runs `server_disconnected`. Boxed: it runs once per
/// server connection, and its state must not grow every request's future.
pub fn disconnect<'a>(
    ctx: &'a ProxyCtx,
    client: &'a Arc<Client>,
    sc: ServerConn,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
    Box::pin(disconnect_inner(ctx, client, sc))
}

async fn disconnect_inner(ctx: &ProxyCtx, client: &Arc<Client>, mut sc: ServerConn) {
    sc.conn.shutdown().await;
    sc.info.timestamp_end = Some(now());
    sc.info.state = ConnectionState::Closed;
    info!(client = %client.peername, "server disconnect {}", sc.log_addr);
    let (_, server) = sc.into_parts();
    let data = ServerConnectionHookData {
        server,
        client: client.clone(),
    };
    ctx.chain.server_disconnected(&data).await;
}
