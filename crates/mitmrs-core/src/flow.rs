//! [`HttpFlow`]: one HTTP request/response exchange and everything known about it.
//!
//! A flow is owned by the task serving it and lent (`&mut`) to each addon in turn,
//! so hooks never need a lock. Flow-level state that other tasks may touch
//! (resuming an intercepted flow) goes through [`InterceptHandle`].

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

use crate::connection::{Client, Server};
use crate::message::{Request, Response};
use crate::now;

/// mitmproxy's `flow.Error`.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowError {
    pub msg: String,
    pub timestamp: f64,
}

impl FlowError {
    /// mitmproxy's `Error.KILLED_MESSAGE`.
    pub const KILLED_MESSAGE: &'static str = "Connection killed.";

    pub fn new(msg: impl Into<String>) -> Self {
        Self {
            msg: msg.into(),
            timestamp: now(),
        }
    }
}

/// A value in [`HttpFlow::metadata`]: the types a flow file can hold.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer beyond 64 bits (Python's have no limit), as decimal digits.
    BigInt(String),
    Float(f64),
    Str(String),
    Bytes(Bytes),
    List(Vec<MetaValue>),
    Dict(MetaDict),
}

/// A Python dict as a flow file holds it: pairs in insertion order, keys
/// usually text but not necessarily (a script may use ints or tuples).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetaDict(pub Vec<(MetaValue, MetaValue)>);

impl MetaDict {
    /// The value under the text key `key`.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.0
            .iter()
            .find(|(k, _)| matches!(k, MetaValue::Str(s) if s == key))
            .map(|(_, v)| v)
    }

    /// Sets the text key `key`, replacing its value in place if it exists (as
    /// a Python dict keeps the first insertion's position).
    pub fn insert(&mut self, key: impl Into<String>, value: MetaValue) {
        let key = key.into();
        match self
            .0
            .iter_mut()
            .find(|(k, _)| matches!(k, MetaValue::Str(s) if *s == key))
        {
            Some((_, v)) => *v = value,
            None => self.0.push((MetaValue::Str(key), value)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Typed per-flow storage for addons (for example the Python bridge keeps its
/// Python-side flow object here between hooks).
#[derive(Default)]
pub struct Extensions {
    map: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl Extensions {
    pub fn insert<T: Any + Send + Sync>(&mut self, v: T) -> Option<T> {
        self.map
            .insert(TypeId::of::<T>(), Box::new(v))
            .and_then(|b| b.downcast().ok().map(|b| *b))
    }
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.map
            .get(&TypeId::of::<T>())
            .and_then(|b| b.downcast_ref())
    }
    pub fn get_mut<T: Any + Send + Sync>(&mut self) -> Option<&mut T> {
        self.map
            .get_mut(&TypeId::of::<T>())
            .and_then(|b| b.downcast_mut())
    }
    pub fn remove<T: Any + Send + Sync>(&mut self) -> Option<T> {
        self.map
            .remove(&TypeId::of::<T>())
            .and_then(|b| b.downcast().ok().map(|b| *b))
    }
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Extensions({})", self.map.len())
    }
}

/// A cloneable handle that resumes an intercepted flow from anywhere.
#[derive(Clone, Debug)]
pub struct InterceptHandle {
    tx: Arc<watch::Sender<bool>>,
}

impl InterceptHandle {
    /// Resumes the flow (a no-op if it is not intercepted).
    pub fn resume(&self) {
        self.tx.send_replace(false);
    }
    /// Kill while intercepted is done through the flow; this only resumes.
    pub fn is_intercepted(&self) -> bool {
        *self.tx.borrow()
    }
}

/// A WebSocket message's type (mitmproxy's `Opcode.TEXT`/`BINARY`; the
/// numbers are the opcodes, as flow files store them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    Text = 1,
    Binary = 2,
}

/// One WebSocket message (mitmproxy's `websocket.WebSocketMessage`): all of
/// its frames joined.
#[derive(Clone, Debug, PartialEq)]
pub struct WebSocketMessage {
    pub kind: MessageType,
    pub from_client: bool,
    pub content: Bytes,
    pub timestamp: f64,
    /// An addon dropped it: recorded, not sent on.
    pub dropped: bool,
    /// An addon made it, not a peer.
    pub injected: bool,
}

impl WebSocketMessage {
    pub fn new(kind: MessageType, from_client: bool, content: Bytes) -> Self {
        Self {
            kind,
            from_client,
            content,
            timestamp: now(),
            dropped: false,
            injected: false,
        }
    }

    pub fn is_text(&self) -> bool {
        self.kind == MessageType::Text
    }
}

/// The WebSocket part of a flow whose request was upgraded (mitmproxy's
/// `websocket.WebSocketData`).
///
/// Unlike mitmproxy, the history is bounded: [`WebSocketData::push`] drops
/// the oldest messages once their content passes the flow's limit (the
/// `websocket_history` option), so a connection that runs for days does not
/// grow without end. `messages_trimmed` counts what was dropped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WebSocketData {
    pub messages: std::collections::VecDeque<WebSocketMessage>,
    pub closed_by_client: Option<bool>,
    pub close_code: Option<u16>,
    pub close_reason: Option<String>,
    pub timestamp_end: Option<f64>,
    /// Old messages dropped from `messages` to keep it within its limit.
    pub messages_trimmed: u64,
    history_bytes: usize,
}

/// What a message costs the history besides its content (its record), so
/// that a stream of empty messages (`stream_websockets`) is bounded too.
const MESSAGE_OVERHEAD: usize = 64;

impl WebSocketData {
    /// Appends a message, first dropping the oldest ones while the history
    /// would pass `limit` bytes (content plus a small per-message cost; the
    /// new message is always kept).
    pub fn push(&mut self, message: WebSocketMessage, limit: usize) {
        let cost = message.content.len() + MESSAGE_OVERHEAD;
        while !self.messages.is_empty() && self.history_bytes.saturating_add(cost) > limit {
            if let Some(old) = self.messages.pop_front() {
                let old_cost = old.content.len() + MESSAGE_OVERHEAD;
                self.history_bytes -= old_cost.min(self.history_bytes);
                self.messages_trimmed += 1;
            }
        }
        self.history_bytes += cost;
        self.messages.push_back(message);
    }

    /// The last message's content was `old_len` bytes when pushed and may
    /// have been changed since (by a hook): keeps the history's size right.
    pub fn last_changed(&mut self, old_len: usize) {
        if let Some(m) = self.messages.back() {
            self.history_bytes = (self.history_bytes + m.content.len()).saturating_sub(old_len);
        }
    }
}

/// One HTTP exchange (mitmproxy's `http.HTTPFlow`).
#[derive(Debug)]
pub struct HttpFlow {
    pub id: String,
    pub client_conn: Arc<Client>,
    pub server_conn: Arc<Server>,
    pub request: Request,
    pub response: Option<Response>,
    pub error: Option<FlowError>,
    /// Set when the request was upgraded to a WebSocket (before `response`).
    pub websocket: Option<WebSocketData>,
    pub metadata: MetaDict,
    /// mitmproxy's `marked`: "" when unmarked, else the marker (e.g. ":default:").
    pub marked: String,
    pub comment: String,
    /// "request" or "response" when this flow is a replay.
    pub is_replay: Option<String>,
    /// The flow is still being handled by the proxy.
    pub live: bool,
    pub timestamp_created: f64,
    /// Per-flow storage for addons.
    pub extensions: Extensions,
    /// Made when first needed (by `intercept` or a handle): a watch channel
    /// is two allocations, and dropping it wakes its waiters, for every flow
    /// of a proxy or a flow file that is never intercepted.
    intercept: std::sync::OnceLock<Arc<watch::Sender<bool>>>,
    killed: bool,
}

impl HttpFlow {
    pub fn new(client_conn: Arc<Client>, server_conn: Arc<Server>, request: Request) -> Self {
        Self::with_id(crate::new_id(), client_conn, server_conn, request)
    }

    /// [`HttpFlow::new`] with a given id (a flow read from a file keeps its
    /// own; generating one to overwrite costs more than the rest of `new`).
    pub fn with_id(
        id: String,
        client_conn: Arc<Client>,
        server_conn: Arc<Server>,
        request: Request,
    ) -> Self {
        Self {
            id,
            client_conn,
            server_conn,
            request,
            response: None,
            error: None,
            websocket: None,
            metadata: MetaDict::default(),
            marked: String::new(),
            comment: String::new(),
            is_replay: None,
            live: true,
            timestamp_created: now(),
            extensions: Extensions::default(),
            intercept: std::sync::OnceLock::new(),
            killed: false,
        }
    }

    /// Kills the flow: the proxy closes the client connection and runs `error`.
    pub fn kill(&mut self) {
        self.killed = true;
        self.error = Some(FlowError::new(FlowError::KILLED_MESSAGE));
        self.resume();
    }

    pub fn killed(&self) -> bool {
        self.killed
    }

    /// Pauses the flow after the current hook until [`HttpFlow::resume`] or an
    /// [`InterceptHandle`] resumes it.
    pub fn intercept(&mut self) {
        if !self.killed {
            self.intercept_sender().send_replace(true);
        }
    }

    pub fn resume(&mut self) {
        if let Some(tx) = self.intercept.get() {
            tx.send_replace(false);
        }
    }

    pub fn intercepted(&self) -> bool {
        self.intercept.get().is_some_and(|tx| *tx.borrow())
    }

    pub fn intercept_handle(&self) -> InterceptHandle {
        InterceptHandle {
            tx: self.intercept_sender().clone(),
        }
    }

    fn intercept_sender(&self) -> &Arc<watch::Sender<bool>> {
        self.intercept
            .get_or_init(|| Arc::new(watch::channel(false).0))
    }

    /// Waits until the flow is no longer intercepted. Called by the proxy after hooks.
    pub async fn wait_resumed(&self) {
        let Some(tx) = self.intercept.get() else {
            return;
        };
        let mut rx = tx.subscribe();
        // The sender lives in `self`, so `wait_for` cannot fail while we borrow it.
        let _ = rx.wait_for(|intercepted| !*intercepted).await;
    }

    /// A copy with a new id, not live, without extensions (mitmproxy's `flow.copy()`).
    /// Streaming transformers are not copied.
    pub fn copy(&self) -> HttpFlow {
        let mut f = HttpFlow::new(
            self.client_conn.clone(),
            self.server_conn.clone(),
            copy_request(&self.request),
        );
        f.response = self.response.as_ref().map(copy_response);
        f.error = self.error.clone();
        f.websocket = self.websocket.clone();
        f.metadata = self.metadata.clone();
        f.marked = self.marked.clone();
        f.comment = self.comment.clone();
        f.is_replay = self.is_replay.clone();
        f.live = false;
        f.timestamp_created = self.timestamp_created;
        f
    }
}

fn copy_request(r: &Request) -> Request {
    Request {
        method: r.method.clone(),
        scheme: r.scheme.clone(),
        authority: r.authority.clone(),
        host: r.host.clone(),
        port: r.port,
        path: r.path.clone(),
        http_version: r.http_version.clone(),
        headers: r.headers.clone(),
        content: r.content.clone(),
        trailers: r.trailers.clone(),
        timestamp_start: r.timestamp_start,
        timestamp_end: r.timestamp_end,
        stream: Default::default(),
    }
}

fn copy_response(r: &Response) -> Response {
    Response {
        http_version: r.http_version.clone(),
        status_code: r.status_code,
        reason: r.reason.clone(),
        headers: r.headers.clone(),
        content: r.content.clone(),
        trailers: r.trailers.clone(),
        timestamp_start: r.timestamp_start,
        timestamp_end: r.timestamp_end,
        stream: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: usize) -> WebSocketMessage {
        WebSocketMessage::new(MessageType::Binary, true, Bytes::from(vec![0u8; n]))
    }

    #[test]
    fn websocket_history_stays_within_its_limit() {
        let mut w = WebSocketData::default();
        // Empty (streamed) messages are bounded too.
        for _ in 0..1000 {
            w.push(msg(0), 10 * MESSAGE_OVERHEAD);
        }
        assert_eq!(w.messages.len(), 10);
        assert_eq!(w.messages_trimmed, 990);
        // A message bigger than the limit is still kept, alone.
        w.push(msg(5000), 1000);
        assert_eq!(w.messages.len(), 1);
        // A hook that shrinks the last message frees its room.
        w.messages.back_mut().unwrap().content = Bytes::new();
        w.last_changed(5000);
        w.push(msg(100), 1000);
        assert_eq!(w.messages.len(), 2);
    }
}
