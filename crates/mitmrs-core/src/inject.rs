//! Messages injected into live WebSocket connections (mitmproxy's
//! `inject.websocket` command).
//!
//! Each WebSocket relay registers its flow here for as long as it runs; an
//! addon (a Python script's `inject.websocket`) sends a message to it by flow
//! id. The relay treats the message as if the peer had sent it: it is recorded
//! (`injected = true`), `websocket_message` runs, and unless dropped it goes to
//! the other peer. Each relay takes at most [`QUEUE`] messages ahead; more fail
//! with an error saying so (the caller may retry), so memory stays bounded.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::flow::MessageType;

/// Injected messages a relay takes ahead of sending them.
pub const QUEUE: usize = 64;

/// A message to inject.
#[derive(Debug)]
pub struct Injected {
    /// Towards the client (else towards the server).
    pub to_client: bool,
    pub kind: MessageType,
    pub content: Bytes,
}

fn registry() -> &'static Mutex<HashMap<String, mpsc::Sender<Injected>>> {
    static R: OnceLock<Mutex<HashMap<String, mpsc::Sender<Injected>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// A live WebSocket's registration; dropping it ends it.
pub struct Registration {
    flow_id: String,
    pub rx: mpsc::Receiver<Injected>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut r) = registry().lock() {
            r.remove(&self.flow_id);
        }
    }
}

/// Registers the live WebSocket flow `flow_id`.
pub fn register(flow_id: &str) -> Registration {
    let (tx, rx) = mpsc::channel(QUEUE);
    if let Ok(mut r) = registry().lock() {
        r.insert(flow_id.to_string(), tx);
    }
    Registration {
        flow_id: flow_id.to_string(),
        rx,
    }
}

/// Why a message could not be injected.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    /// mitmproxy's wording.
    #[error("Flow is not from a live connection.")]
    NotLive,
    #[error(
        "cannot inject into this WebSocket now: {QUEUE} injected messages are waiting to be sent; \
         try again later"
    )]
    Full,
}

/// Hands `message` to the relay of the live WebSocket flow `flow_id`.
pub fn websocket(flow_id: &str, message: Injected) -> Result<(), InjectError> {
    let tx = registry()
        .lock()
        .ok()
        .and_then(|r| r.get(flow_id).cloned())
        .ok_or(InjectError::NotLive)?;
    tx.try_send(message).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => InjectError::Full,
        mpsc::error::TrySendError::Closed(_) => InjectError::NotLive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> Injected {
        Injected {
            to_client: true,
            kind: MessageType::Text,
            content: Bytes::from_static(b"hi"),
        }
    }

    #[test]
    fn only_live_flows_take_messages_and_the_queue_is_bounded() {
        assert_eq!(websocket("nope", msg()), Err(InjectError::NotLive));
        let mut reg = register("f1");
        for _ in 0..QUEUE {
            websocket("f1", msg()).unwrap();
        }
        assert_eq!(websocket("f1", msg()), Err(InjectError::Full));
        assert_eq!(reg.rx.try_recv().unwrap().content, "hi");
        websocket("f1", msg()).unwrap();
        drop(reg);
        assert_eq!(websocket("f1", msg()), Err(InjectError::NotLive));
    }
}
