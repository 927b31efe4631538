//! `Upgrade` (101) to a protocol that is not a WebSocket: the proxy relays the 101 and
//! then the raw bytes both ways, for absolute-form requests and inside CONNECT tunnels.

mod support;

use support::client::RawClient;
use support::origin::{read_head, RawOrigin};
use support::{within, Recorder, TestProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An origin that answers an upgrade with 101, then echoes bytes uppercased.
async fn upgrade_origin() -> RawOrigin {
    RawOrigin::start(|mut s: TcpStream| async move {
        let mut buf = Vec::new();
        let Some(head) = read_head(&mut s, &mut buf).await else { return };
        let lower = head.to_ascii_lowercase();
        if !lower.contains("upgrade: websocket") || !lower.contains("connection: upgrade") {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
            return;
        }
        let _ = s
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            .await;
        let mut tmp = [0u8; 1024];
        loop {
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if s.write_all(&tmp[..n].to_ascii_uppercase()).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await
}

/// An upgrade request for `target` on the origin at `port` that is not a
/// WebSocket as mitmproxy defines it (no `Sec-WebSocket-Version: 13`), so the
/// proxy relays the upgraded connection as raw bytes.
fn upgrade_request(target: &str, port: u16) -> Vec<u8> {
    format!(
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .into_bytes()
}

/// A client that has upgraded an absolute-form request through the proxy and
/// exchanged bytes over the tunnel.
async fn upgraded(proxy: &TestProxy, port: u16) -> RawClient {
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&upgrade_request(
        &format!("http://127.0.0.1:{port}/ws"),
        port,
    ))
    .await;
    exchange_after_101(&mut c).await;
    c
}

async fn exchange_after_101(c: &mut RawClient) {
    let r = c.read_head().await;
    assert_eq!(r.status, 101, "{}", r.head);
    assert_eq!(r.header("upgrade"), Some("websocket"));
    c.send(b"hello through the tunnel").await;
    let echoed = within("the echo", c.read_exact(24)).await;
    assert_eq!(echoed, b"HELLO THROUGH THE TUNNEL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_101_is_relayed_as_a_raw_tunnel() {
    let origin = upgrade_origin().await;
    let rec = Recorder::new();
    let proxy = TestProxy::builder().addon(rec.clone()).start().await;
    let port = origin.port();
    let _c = upgraded(&proxy, port).await;
    // The flow ended with `response` (status 101), not `error`.
    rec.wait_count("response", 1).await;
    assert_eq!(rec.count("error"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_inside_a_plain_connect_tunnel() {
    let origin = upgrade_origin().await;
    let proxy = TestProxy::builder().start().await;
    let mut c = RawClient::connect(proxy.addr).await;
    let port = origin.port();
    c.send(
        format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes(),
    )
    .await;
    let r = c.read_head().await;
    assert_eq!(r.status, 200, "{}", r.head);
    c.send(&upgrade_request("/ws", port)).await;
    exchange_after_101(&mut c).await;
}

/// A tunnel where neither side sends anything for `tcp_timeout` is closed (as
/// mitmproxy closes idle connections), and the server connection is reported
/// gone; other connections are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_upgraded_tunnel_is_closed_after_tcp_timeout() {
    let origin = upgrade_origin().await;
    let rec = Recorder::new();
    let proxy = TestProxy::builder()
        .set("tcp_timeout=1")
        .addon(rec.clone())
        .start()
        .await;
    let port = origin.port();
    let mut c = upgraded(&proxy, port).await;
    let silent_since = std::time::Instant::now();
    // Now both sides stay silent; another client is served meanwhile (the
    // origin answers a non-upgrade request with 400).
    let mut other = RawClient::connect(proxy.addr).await;
    other
        .send(
            format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
                .as_bytes(),
        )
        .await;
    assert_eq!(other.read_response().await.status, 400);
    within("the idle tunnel to be closed", c.expect_closed()).await;
    // Not before the timeout (1 s) has passed in silence.
    assert!(silent_since.elapsed() >= std::time::Duration::from_secs(1));
    rec.wait_count("server_disconnected", 1).await;
}

/// After a 101 the relay carries megabytes both ways and passes a half-close on:
/// the client uploads and shuts down its sending side; only then does the origin
/// answer (with what it received) and send a large download, then close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgraded_tunnel_carries_large_data_and_half_close() {
    use support::origin::{pattern, pattern_sha, FRAME};
    const UP: u64 = 8 * 1024 * 1024;
    const DOWN: u64 = 12 * 1024 * 1024;
    let origin = RawOrigin::start(|mut s: TcpStream| async move {
        let mut buf = Vec::new();
        if read_head(&mut s, &mut buf).await.is_none() {
            return;
        }
        let _ = s
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n",
            )
            .await;
        // `buf` may already hold the first upload bytes.
        let mut got = buf;
        if s.read_to_end(&mut got).await.is_err() {
            return;
        }
        let summary = format!("{} {}\n", got.len(), support::sha256_hex(&got));
        let _ = s.write_all(summary.as_bytes()).await;
        let mut off = 0;
        while off < DOWN {
            let n = (DOWN - off).min(FRAME as u64) as usize;
            if s.write_all(&pattern(off, n)).await.is_err() {
                return;
            }
            off += n as u64;
        }
    })
    .await;
    let proxy = TestProxy::builder().start().await;
    let mut c = RawClient::connect(proxy.addr).await;
    let port = origin.port();
    c.send(
        format!("GET http://127.0.0.1:{port}/x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
            .as_bytes(),
    )
    .await;
    let r = c.read_head().await;
    assert_eq!(r.status, 101, "{}", r.head);
    c.send_pattern(UP).await;
    c.shutdown().await;
    let rest = within("the download", c.read_to_end()).await;
    let nl = rest
        .iter()
        .position(|&b| b == b'\n')
        .expect("a summary line");
    assert_eq!(
        std::str::from_utf8(&rest[..nl]).unwrap(),
        format!("{UP} {}", pattern_sha(UP)),
        "the origin received a different upload"
    );
    let body = &rest[nl + 1..];
    assert_eq!(body.len() as u64, DOWN);
    assert_eq!(support::sha256_hex(body), pattern_sha(DOWN));
}
