//! End-to-end tests of error paths and HTTP/1 details, seen from the client:
//! unreachable servers, upstream TLS failures, malformed or oversized requests,
//! servers and clients that vanish mid-body, trailers, keep-alive, bodiless
//! responses, `Expect: 100-continue`, and header fidelity.

mod support;

use support::client::RawClient;
use support::origin::{closed_port, find, pattern, read_head, read_until, HttpOrigin, RawOrigin};
use support::{sha256_hex, within, Recorder, TestProxy};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

fn req(method: &str, port: u16, path: &str, extra: &str) -> Vec<u8> {
    format!(
        "{method} http://127.0.0.1:{port}{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// A raw origin that sends what it received (head and body bytes, up to `done`)
/// to the test, then answers `answer`.
async fn capturing_origin(
    done: fn(&[u8]) -> bool,
    answer: &'static [u8],
) -> (RawOrigin, mpsc::UnboundedReceiver<Vec<u8>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let origin = RawOrigin::start(move |mut s: TcpStream| {
        let tx = tx.clone();
        async move {
            let mut buf = Vec::new();
            if read_until(&mut s, &mut buf, done).await {
                let _ = tx.send(buf);
                let _ = s.write_all(answer).await;
            }
        }
    })
    .await;
    (origin, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_gets_502_naming_host_and_reason() {
    let rec = Recorder::new();
    let proxy = TestProxy::builder().addon(rec.clone()).start().await;
    let port = closed_port().await;

    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&req("GET", port, "/", "")).await;
    let r = c.read_response().await;
    assert_eq!(r.status, 502);
    let body = r.text();
    assert!(body.contains(&format!("127.0.0.1:{port}")), "{body}");
    assert!(body.contains("connection refused"), "{body}");
    c.expect_closed().await;
    rec.wait_count("error", 1).await;
    assert_eq!(rec.count("server_connect_error"), 1);
    assert!(rec.flows("error")[0]
        .error
        .as_deref()
        .unwrap()
        .contains(&format!("127.0.0.1:{port}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_upstream_certificate_gets_502_inside_the_tunnel() {
    let origin = HttpOrigin::tls().await;
    let rec = Recorder::new();
    // The origin's CA is deliberately not trusted.
    let proxy = TestProxy::builder().addon(rec.clone()).start().await;

    let mut c = RawClient::tunnel(proxy.addr, "localhost", origin.port(), &proxy.ca_der()).await;
    c.send(
        format!(
            "GET /small HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
            origin.port()
        )
        .as_bytes(),
    )
    .await;
    let r = c.read_response().await;
    assert_eq!(r.status, 502);
    let body = r.text();
    assert!(
        body.contains(&format!("localhost:{}", origin.port())),
        "{body}"
    );
    assert!(
        body.contains("certificate") || body.contains("UnknownIssuer"),
        "{body}"
    );
    rec.wait_count("error", 1).await;
    assert_eq!(rec.count("tls_failed_server"), 1);
    assert_eq!(rec.count("response"), 0);
    assert!(rec.flows("error")[0]
        .error
        .as_deref()
        .unwrap()
        .contains("localhost"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_line_gets_400_and_the_connection_closes() {
    let proxy = TestProxy::builder().start().await;
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(b"GET\x01 http://127.0.0.1:1/ HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n")
        .await;
    let r = c.read_response().await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("malformed"), "{}", r.text());
    c.expect_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_head_over_64k_gets_431() {
    let proxy = TestProxy::builder().start().await;
    let mut c = RawClient::connect(proxy.addr).await;
    // A 70 KiB head, of which exactly the first 64 KiB are sent: that is all the
    // proxy reads before refusing, so it never closes on unread bytes (a reset).
    let mut head = b"GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: 127.0.0.1:1\r\nX-Big: ".to_vec();
    head.resize(70 * 1024, b'a');
    c.send(&head[..64 * 1024]).await;
    let r = c.read_response().await;
    assert_eq!(r.status, 431);
    assert!(r.text().contains("max_header_size"), "{}", r.text());
    c.expect_closed().await;
}

/// An origin that sends a head and part of the body, then resets the connection.
async fn resetting_origin() -> RawOrigin {
    RawOrigin::start(|mut s: TcpStream| async move {
        let mut buf = Vec::new();
        if read_head(&mut s, &mut buf).await.is_some() {
            let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
            out.extend_from_slice(&pattern(0, 1000));
            let _ = s.write_all(&out).await;
            let _ = s.flush().await;
            // Linger 0: dropping the socket sends a reset, not a FIN.
            #[allow(deprecated)]
            let _ = s.set_linger(Some(std::time::Duration::ZERO));
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_reset_mid_response_gets_502_and_closes_when_buffering() {
    let origin = resetting_origin().await;
    let rec = Recorder::new();
    let proxy = TestProxy::builder().addon(rec.clone()).start().await;
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&req("GET", origin.port(), "/", "")).await;
    let r = c.read_response().await;
    assert_eq!(r.status, 502);
    c.expect_closed().await;
    rec.wait_count("error", 1).await;
    assert_eq!(rec.count("response"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_reset_mid_response_closes_the_client_when_streaming() {
    let origin = resetting_origin().await;
    let rec = Recorder::new();
    let proxy = TestProxy::builder()
        .set("stream_large_bodies=10k")
        .addon(rec.clone())
        .start()
        .await;
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&req("GET", origin.port(), "/", "")).await;
    let r = c.read_head().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("100000"));
    // Part of the body, then the connection ends short of Content-Length.
    let rest = c.read_to_end().await;
    assert!(rest.len() <= 1000, "got {} body bytes", rest.len());
    assert_eq!(rest[..], pattern(0, rest.len())[..]);
    rec.wait_count("error", 1).await;
    let err = rec.flows("error")[0].error.clone().unwrap();
    assert!(err.contains("mid-response"), "{err}");
    assert_eq!(rec.count("response"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnecting_mid_upload_runs_the_error_hook() {
    for streaming in [false, true] {
        let origin = HttpOrigin::plain().await;
        let rec = Recorder::new();
        let mut b = TestProxy::builder().addon(rec.clone());
        if streaming {
            b = b.set("stream_large_bodies=10k");
        }
        let proxy = b.start().await;
        let mut c = RawClient::connect(proxy.addr).await;
        c.send(&req(
            "POST",
            origin.port(),
            "/upload",
            "Content-Length: 100000\r\n",
        ))
        .await;
        c.send(&pattern(0, 1000)).await;
        c.shutdown().await;
        drop(c);
        rec.wait_count("error", 1).await;
        let err = rec.flows("error")[0].error.clone().unwrap();
        assert!(err.contains("request body"), "streaming={streaming}: {err}");
        assert_eq!(rec.count("response"), 0, "streaming={streaming}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_request_trailers_reach_the_origin() {
    let (origin, mut seen) = capturing_origin(
        |b| find(b, b"\r\n0\r\n").is_some_and(|i| b[i..].ends_with(b"\r\n\r\n")),
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let proxy = TestProxy::builder().start().await;
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&req(
        "POST",
        origin.port(),
        "/t",
        "Transfer-Encoding: chunked\r\nTrailer: X-Trailer\r\n",
    ))
    .await;
    c.send(b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n")
        .await;
    let r = c.read_response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    let got = String::from_utf8(within("the origin", seen.recv()).await.unwrap()).unwrap();
    let (head, body) = got.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    assert!(
        body.ends_with("\r\n0\r\nX-Trailer: yes\r\n\r\n"),
        "trailers lost: {body:?}"
    );
    let data: String = body
        .split("\r\n")
        .skip(1)
        .step_by(2)
        .take_while(|s| !s.is_empty())
        .collect();
    assert!(data.starts_with("hello world"), "{body:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_trailers_reach_the_client() {
    for streaming in [false, true] {
        let origin = RawOrigin::start(|mut s: TcpStream| async move {
            let mut buf = Vec::new();
            if read_head(&mut s, &mut buf).await.is_some() {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n")
                    .await;
            }
        })
        .await;
        let mut b = TestProxy::builder();
        if streaming {
            b = b.set("stream_large_bodies=4");
        }
        let proxy = b.start().await;
        let mut c = RawClient::connect(proxy.addr).await;
        c.send(&req("GET", origin.port(), "/t", "TE: trailers\r\n"))
            .await;
        let r = c.read_response().await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "hello world", "streaming={streaming}");
        assert_eq!(
            r.trailers,
            [("X-Checksum".to_string(), "abc".to_string())],
            "streaming={streaming}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_reuses_one_server_connection() {
    let origin = HttpOrigin::plain().await;
    let proxy = TestProxy::builder().start().await;
    let mut c = RawClient::connect(proxy.addr).await;
    for _ in 0..2 {
        c.send(&req("GET", origin.port(), "/small", "")).await;
        let r = c.read_response().await;
        assert_eq!((r.status, r.text().as_str()), (200, "hello from origin\n"));
    }
    assert_eq!(origin.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_204_and_304_responses_have_no_body() {
    let origin = RawOrigin::start(|mut s: TcpStream| async move {
        let mut buf = Vec::new();
        while let Some(head) = read_head(&mut s, &mut buf).await {
            let out: &[u8] = if head.starts_with("HEAD ") {
                b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/plain\r\n\r\n"
            } else if head.contains(" /204 ") {
                b"HTTP/1.1 204 No Content\r\nX-Was: 204\r\n\r\n"
            } else if head.contains(" /304 ") {
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\nETag: \"x\"\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone"
            };
            if s.write_all(out).await.is_err() {
                return;
            }
        }
    })
    .await;
    let proxy = TestProxy::builder().start().await;
    let port = origin.port();
    let mut c = RawClient::connect(proxy.addr).await;

    c.send(&req("HEAD", port, "/head", "")).await;
    let r = c.read_response_to("HEAD").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1234"));
    c.send(&req("GET", port, "/204", "")).await;
    let r = c.read_response().await;
    assert_eq!((r.status, r.header("x-was")), (204, Some("204")));
    c.send(&req("GET", port, "/304", "")).await;
    let r = c.read_response().await;
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some("\"x\""));
    // Had any of them carried body bytes, this response would not parse.
    c.send(&req("GET", port, "/last", "")).await;
    let r = c.read_response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "done"));
    c.shutdown().await;
    c.expect_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_gets_interim_then_final_response() {
    let origin = HttpOrigin::plain().await;
    let proxy = TestProxy::builder().start().await;
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&req(
        "POST",
        origin.port(),
        "/upload",
        "Content-Length: 11\r\nExpect: 100-continue\r\n",
    ))
    .await;
    let interim = c.read_exact(25).await;
    assert_eq!(
        String::from_utf8_lossy(&interim),
        "HTTP/1.1 100 Continue\r\n\r\n"
    );
    c.send(b"hello world").await;
    let r = c.read_response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), sha256_hex(b"hello world"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_case_order_and_duplicates_are_preserved_both_ways() {
    let (origin, mut seen) = capturing_origin(
        |b| find(b, b"\r\n\r\n").is_some(),
        b"HTTP/1.1 200 OK\r\nX-Resp-Case: B\r\nset-cookie: a=1\r\nContent-Length: 2\r\nSet-Cookie: b=2\r\n\r\nok",
    )
    .await;
    let proxy = TestProxy::builder().start().await;
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&req(
        "GET",
        origin.port(),
        "/h",
        "X-CamelCase: a\r\nx-dup: 1\r\nX-Dup: 2\r\n",
    ))
    .await;
    let r = c.read_response().await;
    assert_eq!(r.text(), "ok");
    let got = String::from_utf8(within("the origin", seen.recv()).await.unwrap()).unwrap();
    assert!(
        got.contains("\r\nX-CamelCase: a\r\nx-dup: 1\r\nX-Dup: 2\r\n"),
        "request head changed: {got:?}"
    );
    assert!(
        r.head.contains(
            "\r\nX-Resp-Case: B\r\nset-cookie: a=1\r\nContent-Length: 2\r\nSet-Cookie: b=2\r\n"
        ),
        "response head changed: {:?}",
        r.head
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_closing_a_kept_connection_is_retried_on_a_new_one() {
    // Each origin connection answers one request, then closes its side without
    // having said `Connection: close` (and reads on, so it never resets).
    let origin = RawOrigin::start(|mut s: TcpStream| async move {
        let mut buf = Vec::new();
        if read_head(&mut s, &mut buf).await.is_some() {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await;
            let _ = s.shutdown().await;
            read_until(&mut s, &mut buf, |_| false).await;
        }
    })
    .await;
    let proxy = TestProxy::builder().start().await;
    let mut c = RawClient::connect(proxy.addr).await;
    for _ in 0..3 {
        c.send(&req("GET", origin.port(), "/", "")).await;
        let r = c.read_response().await;
        assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    }
    assert_eq!(origin.connections(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_response_gets_502_and_the_error_hook() {
    let origin = RawOrigin::start(|mut s: TcpStream| async move {
        let mut buf = Vec::new();
        if read_head(&mut s, &mut buf).await.is_some() {
            let _ = s.write_all(b"HTTP/1.1 2x0 OK\r\n\r\n").await;
        }
    })
    .await;
    let rec = Recorder::new();
    let proxy = TestProxy::builder().addon(rec.clone()).start().await;
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&req("GET", origin.port(), "/", "")).await;
    let r = c.read_response().await;
    assert_eq!(r.status, 502);
    assert!(
        r.text().contains("malformed response from server"),
        "{}",
        r.text()
    );
    c.expect_closed().await;
    rec.wait_count("error", 1).await;
    assert_eq!(rec.count("response"), 0);
    assert_eq!(rec.count("responseheaders"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_read_until_close_is_reframed_for_the_client() {
    for streaming in [false, true] {
        let origin = RawOrigin::start(|mut s: TcpStream| async move {
            let mut buf = Vec::new();
            if read_head(&mut s, &mut buf).await.is_some() {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nuntil the end")
                    .await;
            }
        })
        .await;
        let mut b = TestProxy::builder();
        if streaming {
            b = b.set("stream_large_bodies=4");
        }
        let proxy = b.start().await;
        let mut c = RawClient::connect(proxy.addr).await;
        // The client connection stays usable: the proxy frames the body itself.
        for _ in 0..2 {
            c.send(&req("GET", origin.port(), "/", "")).await;
            let r = c.read_response().await;
            assert_eq!(
                (r.status, r.text().as_str()),
                (200, "until the end"),
                "streaming={streaming}"
            );
            let framing = if streaming {
                r.header("transfer-encoding")
            } else {
                r.header("content-length")
            };
            assert_eq!(
                framing,
                Some(if streaming { "chunked" } else { "13" }),
                "{}",
                r.head
            );
        }
        assert_eq!(origin.connections(), 2);
        c.shutdown().await;
        c.expect_closed().await;
    }
}

/// tcp_timeout closes a client connection that stays silent (here mid-head);
/// another connection is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_connection_is_closed_after_tcp_timeout() {
    let origin = HttpOrigin::plain().await;
    let proxy = TestProxy::builder().set("tcp_timeout=1").start().await;
    let mut silent = RawClient::connect(proxy.addr).await;
    silent.send(b"GET http://127.0.0.1:1/ HTTP/1.1\r\n").await;
    // A busy connection on the same proxy works throughout.
    let mut busy = RawClient::connect(proxy.addr).await;
    busy.send(&req("GET", origin.port(), "/small", "")).await;
    assert_eq!(busy.read_response().await.status, 200);
    // The silent one is closed with nothing sent (no request was complete).
    within("the idle connection to be closed", silent.expect_closed()).await;
}
