//! One request/response exchange on an HTTP/1 client connection.
//!
//! Order of events (mitmproxy's): `requestheaders`, [request body], `request`,
//! [server connection], `responseheaders`, [response body], `response`; or `error`
//! instead of whatever did not happen. A streamed body passes before the hook that
//! follows it (`request`/`response`), which then sees the content as missing.

use bytes::{Bytes, BytesMut};
use mitmrs_core::{now, FlowError, HttpFlow, Request, Response, StreamMode};
use mitmrs_http1::{parse_response_head, response_framing, BodyDecoder, Framing};
use tracing::debug;

use super::session::{After, BoxFut, Session};
use crate::body::{self, BodyError, BodyWriter, Buffered, OutFraming};
use crate::io::READ_CHUNK;
use crate::upstream::{self, ServerConn};
use crate::wire::{self, BodyPlan};

fn wants_close(flow: &HttpFlow) -> bool {
    let h = &flow.request.headers;
    h.has_token("connection", "close")
        || h.has_token("proxy-connection", "close")
        || (flow.request.is_http10()
            && !h.has_token("connection", "keep-alive")
            && !h.has_token("proxy-connection", "keep-alive"))
}

fn stream_at_headers(limit: Option<u64>, framing: Framing) -> bool {
    matches!((limit, body::known_length(framing)), (Some(l), Some(n)) if n > l)
}

fn is_100_continue(flow: &HttpFlow) -> bool {
    flow.request
        .headers
        .get("expect")
        .map(|v| v.trim().eq_ignore_ascii_case("100-continue"))
        .unwrap_or(false)
}

/// How a received response head turned out.
enum Head {
    Final(mitmrs_http1::ResponseHead),
    /// The server closed before sending anything (a stale keep-alive connection).
    ClosedEarly,
}

impl Session {
    /// The flow is boxed so that moving it between the steps of the exchange (and
    /// the futures that hold it) copies a pointer, not the whole flow.
    pub async fn exchange(&mut self, mut flow: Box<HttpFlow>, req_framing: Framing) -> After {
        let rt = self.rt.clone();
        let cfg = &rt.cfg;
        if stream_at_headers(cfg.stream_large_bodies, req_framing) {
            flow.request.stream = StreamMode::On;
        }
        self.ctx.chain.requestheaders(&mut flow).await;
        if flow.killed() {
            return self
                .fail(flow, None, FlowError::KILLED_MESSAGE.into())
                .await;
        }
        let body_follows = !matches!(req_framing, Framing::None | Framing::Length(0));
        if flow.response.is_some() {
            // Answered by an addon before the body: the body (if any) is never read.
            flow.request.timestamp_end = Some(now());
            let keep = !body_follows && !wants_close(&flow);
            return self.reply_from_hook(flow, keep).await;
        }
        if is_100_continue(&flow) {
            flow.request.headers.remove("expect");
            if self
                .conn
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
            {
                return self.fail(flow, None, "client disconnected".into()).await;
            }
        }

        let mut dec = BodyDecoder::new(req_framing, READ_CHUNK);
        let mut prefix = Vec::new();
        if !body_follows {
            flow.request.content = Some(Bytes::new());
            flow.request.timestamp_end = Some(now());
        } else if !flow.request.stream.is_streaming() {
            match body::buffer(
                &mut self.conn,
                &mut dec,
                cfg.body_size_limit,
                cfg.stream_large_bodies,
            )
            .await
            {
                Ok(Buffered::Complete(b, trailers)) => {
                    flow.request.content = Some(b);
                    flow.request.trailers = trailers;
                    flow.request.timestamp_end = Some(now());
                }
                Ok(Buffered::Overflow(pieces)) => {
                    flow.request.stream = StreamMode::On;
                    prefix = pieces;
                }
                Err(e) => return self.request_body_failed(flow, e).await,
            }
        }
        let streaming = body_follows && flow.request.stream.is_streaming();
        if !streaming {
            self.ctx.chain.request(&mut flow).await;
            if flow.killed() {
                return self
                    .fail(flow, None, FlowError::KILLED_MESSAGE.into())
                    .await;
            }
            if flow.response.is_some() {
                let keep = !wants_close(&flow);
                return self.reply_from_hook(flow, keep).await;
            }
        }

        let mut sc = match self.server_for(&flow).await {
            Ok(sc) => sc,
            Err(msg) => return self.fail(flow, Some(502), msg).await,
        };
        flow.server_conn = sc.shared();
        let reused = sc
            .info
            .timestamp_tcp_setup
            .map(|t| t < flow.request.timestamp_start)
            .unwrap_or(false);

        // Send the request.
        if streaming {
            let plan = match (&flow.request.stream, body::known_length(req_framing)) {
                (StreamMode::Transform(_), _) | (_, None) => BodyPlan::StreamUnknown,
                (_, Some(n)) => BodyPlan::StreamLength(n),
            };
            let upgrade = flow.request.headers.contains("upgrade");
            let mut out = BytesMut::with_capacity(1024);
            let framing = wire::request_head(&flow.request, plan, upgrade, &mut out);
            if let Err(e) = sc.conn.write_all(&out).await {
                return self
                    .server_failed(flow, sc, format!("error sending request to server: {e}"))
                    .await;
            }
            let store = cfg.store_streamed_bodies;
            let mut stream_mode = std::mem::take(&mut flow.request.stream);
            let res = {
                let mut w = BodyWriter::new(&mut sc.conn, framing, &mut stream_mode, store);
                let r = Box::pin(body::stream(
                    &mut self.conn,
                    &mut dec,
                    prefix,
                    &mut w,
                    cfg.body_size_limit,
                ))
                .await;
                (r, w.store.take())
            };
            flow.request.stream = stream_mode;
            match res {
                (Ok(trailers), stored) => {
                    flow.request.trailers = trailers;
                    flow.request.content = stored.map(BytesMut::freeze);
                    flow.request.timestamp_end = Some(now());
                }
                (Err(e), _) => {
                    sc.reusable = false;
                    upstream::disconnect(&self.ctx, &self.client, sc).await;
                    return self.request_body_failed(flow, e).await;
                }
            }
            self.ctx.chain.request(&mut flow).await;
            if flow.killed() {
                upstream::disconnect(&self.ctx, &self.client, sc).await;
                return self
                    .fail(flow, None, FlowError::KILLED_MESSAGE.into())
                    .await;
            }
        } else {
            if let Err(msg) = send_buffered_request(&mut sc, &flow.request, body_follows).await {
                return self.server_failed(flow, sc, msg).await;
            }
        }

        // Receive the response head.
        let head = match self.read_response_head(&mut sc).await {
            Ok(Head::Final(h)) => h,
            Ok(Head::ClosedEarly) if reused && !streaming => {
                // A stale keep-alive connection: try once more on a fresh one.
                debug!(client = %self.client.peername, "server closed a reused connection; reconnecting");
                upstream::disconnect(&self.ctx, &self.client, sc).await;
                return Box::pin(self.retry_exchange(flow)).await;
            }
            Ok(Head::ClosedEarly) => {
                return self
                    .server_failed(
                        flow,
                        sc,
                        "server closed the connection without sending a response".into(),
                    )
                    .await
            }
            Err(msg) => return self.server_failed(flow, sc, msg).await,
        };
        let close = wants_close(&flow);
        self.handle_response(flow, sc, head, close).await
    }

    /// Re-sends a buffered request on a new server connection.
    async fn retry_exchange(&mut self, mut flow: Box<HttpFlow>) -> After {
        let mut sc = match self.server_for(&flow).await {
            Ok(sc) => sc,
            Err(msg) => return self.fail(flow, Some(502), msg).await,
        };
        flow.server_conn = sc.shared();
        if let Err(msg) = send_buffered_request(&mut sc, &flow.request, false).await {
            return self.server_failed(flow, sc, msg).await;
        }
        match self.read_response_head(&mut sc).await {
            Ok(Head::Final(h)) => {
                let close = wants_close(&flow);
                self.handle_response(flow, sc, h, close).await
            }
            Ok(Head::ClosedEarly) => {
                self.server_failed(
                    flow,
                    sc,
                    "server closed the connection without sending a response".into(),
                )
                .await
            }
            Err(msg) => self.server_failed(flow, sc, msg).await,
        }
    }

    /// Reads response heads, passing informational (1xx, except 100 and 101)
    /// responses through to the client, until a final or 101 head.
    async fn read_response_head(&mut self, sc: &mut ServerConn) -> Result<Head, String> {
        let max = self.rt.cfg.max_header_size;
        let mut got_any = false;
        loop {
            match parse_response_head(&mut sc.conn.rbuf, max) {
                Ok(Some(h)) => {
                    got_any = true;
                    if (100..200).contains(&h.status) && h.status != 101 {
                        if h.status != 100 {
                            let mut out = BytesMut::new();
                            mitmrs_http1::encode_response_head(
                                h.version, h.status, &h.reason, &h.headers, &mut out,
                            );
                            self.conn
                                .write_all(&out)
                                .await
                                .map_err(|e| format!("client disconnected: {e}"))?;
                        }
                        continue;
                    }
                    return Ok(Head::Final(h));
                }
                Ok(None) => {}
                Err(e) => return Err(format!("malformed response from server: {e}")),
            }
            match sc.conn.fill().await {
                Ok(0) if !got_any && sc.conn.rbuf.is_empty() => return Ok(Head::ClosedEarly),
                Ok(0) => {
                    return Err(
                        "server closed the connection in the middle of the response head".into(),
                    )
                }
                Ok(_) => {}
                Err(e) => return Err(format!("error reading response from server: {e}")),
            }
        }
    }

    async fn handle_response(
        &mut self,
        mut flow: Box<HttpFlow>,
        mut sc: ServerConn,
        head: mitmrs_http1::ResponseHead,
        client_close: bool,
    ) -> After {
        let rt = self.rt.clone();
        let cfg = &rt.cfg;
        let framing = match response_framing(&flow.request.method, head.status, &head.headers) {
            Ok(f) => f,
            Err(e) => {
                return self
                    .server_failed(flow, sc, format!("malformed response from server: {e}"))
                    .await
            }
        };
        let (mut resp, server_keep) = response_from_head(head, framing);
        if stream_at_headers(cfg.stream_large_bodies, framing) {
            resp.stream = StreamMode::On;
        }
        flow.response = Some(resp);
        self.ctx.chain.responseheaders(&mut flow).await;
        if flow.killed() {
            upstream::disconnect(&self.ctx, &self.client, sc).await;
            return self
                .fail(flow, None, FlowError::KILLED_MESSAGE.into())
                .await;
        }
        let upgrade = flow
            .response
            .as_ref()
            .map(|r| r.status_code == 101)
            .unwrap_or(false);
        if upgrade {
            return Box::pin(self.relay_upgrade(flow, sc)).await;
        }
        let client_http11 = flow.request.is_http11();
        let mut dec = BodyDecoder::new(framing, READ_CHUNK);
        let mut prefix = Vec::new();
        let Some(resp) = flow.response.as_mut() else {
            return self
                .fail(flow, Some(502), "response removed by an addon".into())
                .await;
        };
        let body_follows = framing != Framing::None;
        if !body_follows {
            resp.content = Some(Bytes::new());
            resp.timestamp_end = Some(now());
        } else if !resp.stream.is_streaming() {
            match body::buffer(
                &mut sc.conn,
                &mut dec,
                cfg.body_size_limit,
                cfg.stream_large_bodies,
            )
            .await
            {
                Ok(Buffered::Complete(b, trailers)) => {
                    resp.content = Some(b);
                    resp.trailers = trailers;
                    resp.timestamp_end = Some(now());
                }
                Ok(Buffered::Overflow(pieces)) => {
                    resp.stream = StreamMode::On;
                    prefix = pieces;
                }
                Err(BodyError::TooLarge(l)) => {
                    flow.response = None;
                    sc.reusable = false;
                    let msg = format!("response body larger than body_size_limit ({l} bytes)");
                    upstream::disconnect(&self.ctx, &self.client, sc).await;
                    return self.fail(flow, Some(502), msg).await;
                }
                Err(e) => {
                    flow.response = None;
                    sc.reusable = false;
                    return self
                        .server_failed(
                            flow,
                            sc,
                            format!("error reading response body: {}", body_error_text(&e)),
                        )
                        .await;
                }
            }
        }
        let streaming = body_follows && resp.stream.is_streaming();
        if !streaming {
            self.ctx.chain.response(&mut flow).await;
            flow.live = false;
            if flow.killed() {
                upstream::disconnect(&self.ctx, &self.client, sc).await;
                return After::Close;
            }
            let Some(resp) = flow.response.as_ref() else {
                return After::Close;
            };
            let plan = match &resp.content {
                _ if wire::bodyless_response(&flow.request.method, resp.status_code) => {
                    BodyPlan::HeadOnly
                }
                Some(c) if body_follows || !c.is_empty() => BodyPlan::Full(c.len() as u64),
                _ => BodyPlan::None,
            };
            let mut out = BytesMut::with_capacity(512);
            let out_framing =
                wire::response_head(resp, plan, client_http11, false, client_close, &mut out);
            let body = match plan {
                BodyPlan::Full(_) => resp.content.as_ref(),
                _ => None,
            };
            let ok = body::write_message(
                &mut self.conn,
                out,
                out_framing,
                body,
                resp.trailers.as_ref(),
            )
            .await
            .is_ok();
            self.finish_server(sc, server_keep).await;
            return if ok && !client_close && out_framing != OutFraming::Close {
                After::KeepAlive
            } else {
                After::Close
            };
        }

        // Streamed response: head now, body as it arrives, then the `response` hook.
        let plan = match (&resp.stream, body::known_length(framing)) {
            (StreamMode::Transform(_), _) | (_, None) => BodyPlan::StreamUnknown,
            (_, Some(n)) => BodyPlan::StreamLength(n),
        };
        let mut out = BytesMut::with_capacity(512);
        let out_framing =
            wire::response_head(resp, plan, client_http11, false, client_close, &mut out);
        if let Err(e) = self.conn.write_all(&out).await {
            upstream::disconnect(&self.ctx, &self.client, sc).await;
            return self
                .fail(flow, None, format!("client disconnected: {e}"))
                .await;
        }
        let mut stream_mode = std::mem::take(&mut resp.stream);
        let (res, stored) = {
            let mut w = BodyWriter::new(
                &mut self.conn,
                out_framing,
                &mut stream_mode,
                cfg.store_streamed_bodies,
            );
            let r = Box::pin(body::stream(
                &mut sc.conn,
                &mut dec,
                prefix,
                &mut w,
                cfg.body_size_limit,
            ))
            .await;
            (r, w.store.take())
        };
        if let Some(resp) = flow.response.as_mut() {
            resp.stream = stream_mode;
        }
        match res {
            Ok(trailers) => {
                if let Some(resp) = flow.response.as_mut() {
                    resp.trailers = trailers;
                    resp.content = stored.map(BytesMut::freeze);
                    resp.timestamp_end = Some(now());
                }
            }
            Err(e) => {
                // The head is already out: the client connection is closed to signal it.
                sc.reusable = false;
                upstream::disconnect(&self.ctx, &self.client, sc).await;
                let msg = match &e {
                    BodyError::Read(m) => format!("server connection failed mid-response: {m}"),
                    BodyError::Write(m) => format!("client disconnected mid-response: {m}"),
                    BodyError::TooLarge(l) => {
                        format!("response body larger than body_size_limit ({l} bytes)")
                    }
                    BodyError::Transform(m) => format!("stream transformer failed: {m}"),
                };
                return self.fail(flow, None, msg).await;
            }
        }
        self.ctx.chain.response(&mut flow).await;
        flow.live = false;
        self.finish_server(sc, server_keep && !flow.killed()).await;
        if flow.killed() || client_close || out_framing == OutFraming::Close {
            After::Close
        } else {
            After::KeepAlive
        }
    }

    /// Keeps the server connection for the next request, or closes it.
    async fn finish_server(&mut self, mut sc: ServerConn, keep: bool) {
        sc.reusable = sc.reusable && keep;
        if sc.reusable {
            sc.conn.release_idle();
            if let Some(old) = self.server.replace(sc) {
                upstream::disconnect(&self.ctx, &self.client, old).await;
            }
        } else {
            upstream::disconnect(&self.ctx, &self.client, sc).await;
        }
    }

    /// A 101 response: relay it, then WebSocket frames (see [`crate::websocket`])
    /// or, for any other protocol, bytes both ways until either side closes.
    async fn relay_upgrade(&mut self, mut flow: Box<HttpFlow>, mut sc: ServerConn) -> After {
        if let Some(r) = flow.response.as_mut() {
            r.content = Some(Bytes::new());
            r.timestamp_end = Some(now());
        }
        // Set before `response`, so addons can tell (and may unset it to have
        // the connection relayed as raw bytes), as in mitmproxy.
        if crate::websocket::is_websocket(&flow, &self.rt.cfg) {
            flow.websocket = Some(Default::default());
        }
        self.ctx.chain.response(&mut flow).await;
        let Some(resp) = flow.response.as_ref() else {
            return After::Close;
        };
        let mut out = BytesMut::new();
        wire::response_head(resp, BodyPlan::None, true, true, false, &mut out);
        if self.conn.write_all(&out).await.is_err() {
            upstream::disconnect(&self.ctx, &self.client, sc).await;
            return After::Close;
        }
        if flow.websocket.is_some() && !flow.killed() {
            let rt = self.rt.clone();
            crate::websocket::relay(&self.ctx, &rt.cfg, &mut flow, &mut self.conn, &mut sc.conn)
                .await;
            upstream::disconnect(&self.ctx, &self.client, sc).await;
            return After::Close;
        }
        let client = std::mem::replace(
            &mut self.conn,
            crate::io::Conn::new(crate::io::Stream::empty(), self.rt.cfg.tcp_timeout),
        );
        let peer = self.client.peername;
        let (server_conn, mut rest) = sc.into_parts();
        if let Err(e) = crate::io::relay(client, server_conn).await {
            debug!(client = %peer, "upgraded connection ended: {e}");
        }
        rest.timestamp_end = Some(now());
        let data = mitmrs_core::addon::ServerConnectionHookData {
            server: rest,
            client: self.client.clone(),
        };
        self.ctx.chain.server_disconnected(&data).await;
        After::Close
    }

    /// Sends the response an addon set, running `responseheaders` and `response`.
    /// Boxed: an error path; its state must not grow the common path's future.
    fn reply_from_hook<'a>(&'a mut self, flow: Box<HttpFlow>, keep: bool) -> BoxFut<'a, After> {
        Box::pin(self.reply_from_hook_inner(flow, keep))
    }

    async fn reply_from_hook_inner(&mut self, mut flow: Box<HttpFlow>, keep: bool) -> After {
        self.ctx.chain.responseheaders(&mut flow).await;
        if flow.killed() {
            return self
                .fail(flow, None, FlowError::KILLED_MESSAGE.into())
                .await;
        }
        self.ctx.chain.response(&mut flow).await;
        flow.live = false;
        if flow.killed() {
            return After::Close;
        }
        let Some(resp) = flow.response.as_ref() else {
            return After::Close;
        };
        let content = resp.content.clone().unwrap_or_default();
        let close = !keep;
        // No body goes with a response to HEAD, or with a 204 or 304, even if the
        // addon gave it one (its Content-Length stays, as for HEAD it should).
        let head_only = wire::bodyless_response(&flow.request.method, resp.status_code);
        let plan = if head_only {
            BodyPlan::HeadOnly
        } else {
            BodyPlan::Full(content.len() as u64)
        };
        let mut out = BytesMut::new();
        let framing =
            wire::response_head(resp, plan, flow.request.is_http11(), false, close, &mut out);
        let body = if head_only { None } else { Some(&content) };
        if body::write_message(&mut self.conn, out, framing, body, resp.trailers.as_ref())
            .await
            .is_err()
            || close
        {
            return After::Close;
        }
        After::KeepAlive
    }

    /// Boxed: an error path; its state must not grow the common path's future.
    fn request_body_failed<'a>(
        &'a mut self,
        flow: Box<HttpFlow>,
        e: BodyError,
    ) -> BoxFut<'a, After> {
        Box::pin(self.request_body_failed_inner(flow, e))
    }

    async fn request_body_failed_inner(&mut self, flow: Box<HttpFlow>, e: BodyError) -> After {
        match e {
            BodyError::TooLarge(l) => {
                self.fail(
                    flow,
                    Some(413),
                    format!("request body larger than body_size_limit ({l} bytes)"),
                )
                .await
            }
            BodyError::Read(m) => {
                self.fail(
                    flow,
                    Some(400),
                    format!("error reading request body from client: {m}"),
                )
                .await
            }
            BodyError::Write(m) => {
                self.fail(
                    flow,
                    Some(502),
                    format!("error sending request body to server: {m}"),
                )
                .await
            }
            BodyError::Transform(m) => {
                self.fail(flow, Some(502), format!("stream transformer failed: {m}"))
                    .await
            }
        }
    }

    /// Boxed: an error path; its state must not grow the common path's future.
    fn server_failed<'a>(
        &'a mut self,
        flow: Box<HttpFlow>,
        sc: ServerConn,
        msg: String,
    ) -> BoxFut<'a, After> {
        Box::pin(self.server_failed_inner(flow, sc, msg))
    }

    async fn server_failed_inner(
        &mut self,
        flow: Box<HttpFlow>,
        mut sc: ServerConn,
        msg: String,
    ) -> After {
        sc.reusable = false;
        upstream::disconnect(&self.ctx, &self.client, sc).await;
        self.fail(flow, Some(502), msg).await
    }

    /// The server connection for this request: the kept one if it matches, else a new one.
    pub async fn server_for(&mut self, flow: &HttpFlow) -> Result<ServerConn, String> {
        let req = &flow.request;
        let tls = req.scheme == "https";
        // The tunnel's facts (its failed server, the client's SNI) hold for requests
        // to its own target, not for one an addon sent elsewhere.
        let tunnel = self
            .tunnel
            .as_ref()
            .filter(|t| t.host == req.host && t.port == req.port);
        if let Some(err) = tunnel.and_then(|t| t.server_error.as_ref()) {
            return Err(err.clone());
        }
        if let Some(sc) = self.server.take() {
            if sc.reusable && sc.target() == Some((req.host.as_str(), req.port, tls)) {
                return Ok(sc);
            }
            upstream::disconnect(&self.ctx, &self.client, sc).await;
        }
        // Boxed: connecting (and TLS) happens once per server connection, not per request.
        let mut sc = Box::pin(upstream::connect(
            &self.ctx,
            &self.rt,
            &self.client,
            &req.host,
            req.port,
        ))
        .await?;
        if tls {
            let sni = match tunnel {
                Some(t) => t.sni.clone().or_else(|| sni_for_host(&t.host)),
                None => sni_for_host(&req.host),
            };
            // Boxed: TLS happens once per server connection, not per request.
            sc = Box::pin(self.http1_server_tls(sc, sni.as_deref())).await?;
        }
        Ok(sc)
    }

    /// TLS on a server connection for HTTP/1 requests (ALPN offers http/1.1 only,
    /// until HTTP/2 lands); on failure the connection is closed (with its hooks)
    /// and the reason returned.
    pub async fn http1_server_tls(
        &mut self,
        mut sc: ServerConn,
        sni: Option<&str>,
    ) -> Result<ServerConn, String> {
        let alpn = [b"http/1.1".to_vec()];
        match upstream::start_tls(&self.ctx, &self.rt, &self.client, &mut sc, sni, &alpn).await {
            Ok(()) => Ok(sc),
            Err(msg) => {
                upstream::disconnect(&self.ctx, &self.client, sc).await;
                Err(msg)
            }
        }
    }
}

/// The flow's response for a received head (its body still to come), and whether
/// the server connection can carry another request after it.
pub(crate) fn response_from_head(
    head: mitmrs_http1::ResponseHead,
    framing: Framing,
) -> (Response, bool) {
    let keep = head.version == mitmrs_http1::Version::Http11
        && !head.headers.has_token("connection", "close")
        && framing != Framing::UntilClose;
    let resp = Response::received(
        head.version.as_str(),
        head.status,
        head.reason,
        head.headers,
    );
    (resp, keep)
}

/// Sends a request whose body (if any) is buffered: head and body in one go.
/// `body_follows`: the client framed a body, so one is sent even if an addon
/// emptied it.
pub(crate) async fn send_buffered_request(
    sc: &mut ServerConn,
    req: &Request,
    body_follows: bool,
) -> Result<(), String> {
    let plan = match &req.content {
        Some(c) if !c.is_empty() || body_follows || req.headers.contains("content-length") => {
            BodyPlan::Full(c.len() as u64)
        }
        _ => BodyPlan::None,
    };
    let upgrade = req.headers.contains("upgrade");
    let mut out = BytesMut::with_capacity(1024);
    let framing = wire::request_head(req, plan, upgrade, &mut out);
    let body = match plan {
        BodyPlan::Full(_) => req.content.as_ref(),
        _ => None,
    };
    body::write_message(&mut sc.conn, out, framing, body, req.trailers.as_ref())
        .await
        .map_err(|e| format!("error sending request to server: {}", body_error_text(&e)))
}

fn body_error_text(e: &BodyError) -> String {
    match e {
        BodyError::Read(m) | BodyError::Write(m) | BodyError::Transform(m) => m.clone(),
        BodyError::TooLarge(l) => format!("larger than {l} bytes"),
    }
}

/// The SNI to send for a host: none for IP literals.
pub fn sni_for_host(host: &str) -> Option<String> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        None
    } else {
        Some(host.to_string())
    }
}
