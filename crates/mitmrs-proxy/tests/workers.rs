//! Connections spread over worker threads (`Workers`): each connection runs on
//! the thread it was handed to, with the fewest open connections chosen, and
//! everything the proxy does (keep-alive, spliced streaming, TLS interception)
//! works the same there.
//!
//! The tests run on a current-thread runtime, as the binary's accept loop does;
//! with worker threads, that runtime only accepts.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use mitmrs_core::addon::Hook;
use mitmrs_core::message::ChunkTransform;
use mitmrs_core::{HttpFlow, StreamMode};
use support::client::RawClient;
use support::origin::{pattern_sha, HttpOrigin};
use support::{sha256_hex, within, FnAddon, TestProxy};

/// An absolute-form GET of `path` on the origin at `port`.
fn get(port: u16, path: &str) -> Vec<u8> {
    format!("GET http://127.0.0.1:{port}{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
        .into_bytes()
}

fn get_small(port: u16) -> Vec<u8> {
    get(port, "/small")
}

/// A new connection through the proxy that has had one small request answered
/// (so it has been handed to its thread).
async fn served(proxy: &TestProxy, port: u16) -> RawClient {
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&get_small(port)).await;
    assert_eq!(c.read_response().await.status, 200);
    c
}

/// Waits (bounded) until at most `n` connections are counted open: the count
/// drops just after the proxy closes the socket, so the client cannot see the
/// moment itself.
async fn open_at_most(proxy: &TestProxy, n: usize) {
    within("connections released", async {
        while proxy.workers.open_counts().iter().sum::<usize>() > n {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
}

/// An addon that records the name of the thread each request's hooks ran on.
fn thread_recorder() -> (Arc<FnAddon>, Arc<Mutex<Vec<String>>>) {
    let names = Arc::new(Mutex::new(Vec::new()));
    let seen = names.clone();
    let addon = FnAddon::new("threads").on(Hook::RequestHeaders, move |_f: &mut HttpFlow| {
        let name = std::thread::current().name().unwrap_or("?").to_string();
        seen.lock().unwrap().push(name);
    });
    (addon.arc(), names)
}

#[tokio::test(flavor = "current_thread")]
async fn connections_go_to_the_least_busy_worker_and_are_released() {
    let origin = HttpOrigin::plain().await;
    let (threads, names) = thread_recorder();
    let proxy = TestProxy::builder().workers(3).addon(threads).start().await;
    assert_eq!(proxy.workers.len(), 3);
    let port = origin.port();

    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(served(&proxy, port).await);
    }
    // A response means the connection was dispatched; fewest-open-first
    // round-robins them when they all stay open.
    assert_eq!(proxy.workers.open_counts(), vec![2, 2, 2]);
    // The sessions really ran there, never on the accepting (test) thread.
    let mut ran: Vec<String> = names.lock().unwrap().clone();
    ran.sort();
    assert_eq!(
        ran,
        [1, 1, 2, 2, 3, 3].map(|i| format!("mitmrs-worker-{i}"))
    );

    // Keep-alive on every worker thread.
    for c in &mut clients {
        c.send(&get_small(port)).await;
        assert_eq!(c.read_response().await.status, 200);
    }
    for c in clients.iter_mut().take(5) {
        c.shutdown().await;
        c.expect_closed().await;
    }
    open_at_most(&proxy, 1).await;

    // The freed threads are used again: the next two go to the two empty ones.
    let mut more = vec![served(&proxy, port).await, served(&proxy, port).await];
    assert_eq!(proxy.workers.open_counts(), vec![1, 1, 1]);

    // Stopping the proxy drops the connections still open on its threads.
    let mut last = clients.pop().unwrap();
    drop(proxy);
    within("the proxy's connections to close", async {
        last.expect_closed().await;
        for c in &mut more {
            c.expect_closed().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn streaming_and_tls_interception_run_on_a_worker_thread() {
    let plain = HttpOrigin::plain().await;
    let secure = HttpOrigin::tls().await;
    let proxy = TestProxy::builder()
        .workers(2)
        .set("stream_large_bodies=1m")
        .trust(secure.ca_pem.as_ref().unwrap())
        .start()
        .await;
    let port = plain.port();

    // The first connection goes to the first thread...
    let _hold = served(&proxy, port).await;
    assert_eq!(proxy.workers.open_counts(), vec![1, 0]);

    // ...the second to the other: a streamed body nobody looks at (the kind
    // that moves by splice(2) between plain sockets).
    let big: u64 = 16 << 20;
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&get(port, &format!("/bytes/{big}"))).await;
    let r = c.read_head().await;
    assert_eq!(r.status, 200);
    assert_eq!(c.read_body_sha(big).await, (big, pattern_sha(big)));
    assert_eq!(proxy.workers.open_counts(), vec![1, 1]);

    // One more on the first thread, then a TLS-intercepted tunnel lands on
    // the second.
    let _hold2 = served(&proxy, port).await;
    let tls_port = secure.port();
    let mut t = RawClient::tunnel(proxy.addr, "localhost", tls_port, &proxy.ca_der()).await;
    assert_eq!(proxy.workers.open_counts(), vec![2, 2]);
    t.send(format!("GET /small HTTP/1.1\r\nHost: localhost:{tls_port}\r\n\r\n").as_bytes())
        .await;
    let r = t.read_response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello from origin\n");
}

/// Passes chunks through, but its first call waits until the test says so: a
/// stand-in for a slow Python `.stream` callable.
struct Gate {
    reached: tokio::sync::mpsc::UnboundedSender<()>,
    open: Mutex<std::sync::mpsc::Receiver<()>>,
    waited: bool,
}

impl ChunkTransform for Gate {
    fn may_block(&self) -> bool {
        true
    }

    fn transform(&mut self, chunk: Bytes, _end: bool) -> Result<Vec<Bytes>, String> {
        if !self.waited {
            self.waited = true;
            let _ = self.reached.send(());
            let _ = self.open.lock().unwrap().recv();
        }
        Ok(vec![chunk])
    }
}

/// A transformer that blocks (as a slow Python callable does) runs off its
/// connection's thread: another connection on the same thread is served
/// meanwhile, and the blocked body still arrives whole afterwards.
#[tokio::test(flavor = "current_thread")]
async fn a_blocking_stream_transformer_does_not_hold_up_its_thread() {
    let origin = HttpOrigin::plain().await;
    let (reached_tx, mut reached) = tokio::sync::mpsc::unbounded_channel();
    let (open_tx, open_rx) = std::sync::mpsc::channel();
    let gate = Mutex::new(Some(Gate {
        reached: reached_tx,
        open: Mutex::new(open_rx),
        waited: false,
    }));
    let addon = FnAddon::new("gate").on(Hook::ResponseHeaders, move |f: &mut HttpFlow| {
        if f.request.path.starts_with("/bytes/") {
            if let Some(g) = gate.lock().unwrap().take() {
                f.response.as_mut().unwrap().stream = StreamMode::Transform(Box::new(g));
            }
        }
    });
    // One thread: both connections share it.
    let proxy = TestProxy::builder()
        .workers(1)
        .addon(addon.arc())
        .start()
        .await;
    // Dropped before the proxy, so that a failing test unblocks the gate and
    // does not hang stopping the worker thread.
    let open_tx = open_tx;
    let port = origin.port();

    let big: u64 = 2 << 20;
    let mut slow = RawClient::connect(proxy.addr).await;
    slow.send(&get(port, &format!("/bytes/{big}"))).await;
    within("the transformer to be called", reached.recv()).await;

    let mut other = RawClient::connect(proxy.addr).await;
    other.send(&get_small(port)).await;
    assert_eq!(
        within(
            "a response while the transformer blocks",
            other.read_response()
        )
        .await
        .status,
        200
    );
    assert_eq!(proxy.workers.open_counts(), vec![2]);

    open_tx.send(()).unwrap();
    let r = slow.read_response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len() as u64, big);
    assert_eq!(sha256_hex(&r.body), pattern_sha(big));
}
