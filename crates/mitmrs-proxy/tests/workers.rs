//! Connections spread over worker threads (`Workers`): each connection runs on
//! the thread it was handed to, with the fewest open connections chosen, and
//! everything the proxy does (keep-alive, spliced streaming, TLS interception)
//! works the same there.
//!
//! The tests run on a current-thread runtime, as the binary's accept loop does.

mod support;

use std::time::Duration;

use support::client::RawClient;
use support::origin::{pattern_sha, HttpOrigin};
use support::{within, TestProxy};

fn get_small(port: u16) -> Vec<u8> {
    format!("GET http://127.0.0.1:{port}/small HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
        .into_bytes()
}

/// Waits (bounded) until no connection is counted open on any worker: the
/// count drops just after the proxy closes the socket, so the client cannot
/// see the moment itself.
async fn all_released(proxy: &TestProxy) {
    within("every connection released", async {
        while proxy.workers.open_counts().iter().any(|&n| n > 0) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "current_thread")]
async fn connections_go_to_the_least_busy_worker_and_are_released() {
    let origin = HttpOrigin::plain().await;
    let proxy = TestProxy::builder().workers(2).start().await;
    assert_eq!(proxy.workers.len(), 3);
    let port = origin.port();

    let mut clients = Vec::new();
    for _ in 0..6 {
        let mut c = RawClient::connect(proxy.addr).await;
        c.send(&get_small(port)).await;
        assert_eq!(c.read_response().await.status, 200);
        clients.push(c);
    }
    // A response means the connection was dispatched; fewest-open-first
    // round-robins them when they all stay open.
    assert_eq!(proxy.workers.open_counts(), vec![2, 2, 2]);

    // Keep-alive on every worker thread.
    for c in &mut clients {
        c.send(&get_small(port)).await;
        assert_eq!(c.read_response().await.status, 200);
    }
    for c in &mut clients {
        c.shutdown().await;
        c.expect_closed().await;
    }
    all_released(&proxy).await;

    // A freed worker is used again.
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&get_small(port)).await;
    assert_eq!(c.read_response().await.status, 200);
    assert_eq!(proxy.workers.open_counts().iter().sum::<usize>(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn streaming_and_tls_interception_run_on_a_worker_thread() {
    let plain = HttpOrigin::plain().await;
    let secure = HttpOrigin::tls().await;
    let proxy = TestProxy::builder()
        .workers(1)
        .set("stream_large_bodies=1m")
        .trust(secure.ca_pem.as_ref().unwrap())
        .start()
        .await;
    let port = plain.port();

    // The first connection stays on the accepting runtime...
    let mut hold = RawClient::connect(proxy.addr).await;
    hold.send(&get_small(port)).await;
    assert_eq!(hold.read_response().await.status, 200);
    assert_eq!(proxy.workers.open_counts(), vec![1, 0]);

    // ...the second goes to the worker thread: a streamed body nobody looks
    // at, which takes the zero-copy path there.
    let big: u64 = 16 << 20;
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(
        format!(
            "GET http://127.0.0.1:{port}/bytes/{big} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let r = c.read_head().await;
    assert_eq!(r.status, 200);
    assert_eq!(c.read_body_sha(big).await, (big, pattern_sha(big)));
    assert_eq!(proxy.workers.open_counts(), vec![1, 1]);

    // One more on the accepting runtime, then a TLS-intercepted tunnel lands
    // on the worker.
    let mut hold2 = RawClient::connect(proxy.addr).await;
    hold2.send(&get_small(port)).await;
    assert_eq!(hold2.read_response().await.status, 200);
    let tls_port = secure.port();
    let mut t = RawClient::tunnel(proxy.addr, "localhost", tls_port, &proxy.ca_der()).await;
    assert_eq!(proxy.workers.open_counts(), vec![2, 2]);
    t.send(format!("GET /small HTTP/1.1\r\nHost: localhost:{tls_port}\r\n\r\n").as_bytes())
        .await;
    let r = t.read_response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello from origin\n");
}
