//! End-to-end tests of body handling: streaming large bodies (and what the hooks
//! see of them), chunk transformers, and body_size_limit.

mod support;

use bytes::Bytes;
use mitmrs_core::addon::Hook;
use mitmrs_core::{HttpFlow, StreamMode};
use support::client::RawClient;
use support::origin::{find, pattern, pattern_sha, read_head, HttpOrigin, RawOrigin, FRAME};
use support::{sha256_hex, FnAddon, Recorder, TestProxy};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const BIG: u64 = 64 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_response_is_streamed_intact_and_not_stored() {
    let origin = HttpOrigin::plain().await;
    let rec = Recorder::new();
    let proxy = TestProxy::builder()
        .set("stream_large_bodies=1m")
        .addon(rec.clone())
        .start()
        .await;

    let mut c = RawClient::connect(proxy.addr).await;
    let port = origin.port();
    c.send(
        format!(
            "GET http://127.0.0.1:{port}/bytes/{BIG} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let r = c.read_head().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(BIG.to_string().as_str()));
    let (n, sha) = c.read_body_sha(BIG).await;
    assert_eq!(n, BIG);
    assert_eq!(
        sha,
        pattern_sha(BIG),
        "the streamed response body differs from the origin's"
    );

    rec.wait_count("response", 1).await;
    let rh = &rec.flows("responseheaders")[0];
    assert_eq!(
        rh.resp_stream.as_deref(),
        Some("On"),
        "responseheaders should already see streaming on"
    );
    let resp = &rec.flows("response")[0];
    assert!(
        resp.resp_content.is_none(),
        "a streamed body must not be stored"
    );
    assert_eq!(resp.status, Some(200));
    assert_eq!(rec.count("error"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_is_streamed_intact_and_not_stored() {
    let origin = HttpOrigin::plain().await;
    let rec = Recorder::new();
    let proxy = TestProxy::builder()
        .set("stream_large_bodies=1m")
        .addon(rec.clone())
        .start()
        .await;

    let mut c = RawClient::connect(proxy.addr).await;
    let port = origin.port();
    c.send(format!("POST http://127.0.0.1:{port}/upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {BIG}\r\n\r\n").as_bytes())
        .await;
    c.send_pattern(BIG).await;
    let r = c.read_response().await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-received-len"), Some(BIG.to_string().as_str()));
    assert_eq!(
        r.text(),
        pattern_sha(BIG),
        "the origin received a different body"
    );

    rec.wait_count("response", 1).await;
    let rh = &rec.flows("requestheaders")[0];
    assert_eq!(
        rh.req_stream, "On",
        "requestheaders should already see streaming on"
    );
    assert!(
        rec.flows("request")[0].req_content.is_none(),
        "a streamed request body must not be stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_streamed_bodies_keeps_the_streamed_content_for_the_hooks() {
    const SIZE: u64 = 4 * 1024 * 1024;
    let origin = HttpOrigin::plain().await;
    let rec = Recorder::new();
    let proxy = TestProxy::builder()
        .set("stream_large_bodies=1m")
        .set("store_streamed_bodies=true")
        .addon(rec.clone())
        .start()
        .await;
    let port = origin.port();
    let want = pattern_sha(SIZE);

    let mut c = RawClient::connect(proxy.addr).await;
    c.send(
        format!(
            "GET http://127.0.0.1:{port}/bytes/{SIZE} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let r = c.read_response().await;
    assert_eq!(sha256_hex(&r.body), want);

    c.send(format!("POST http://127.0.0.1:{port}/upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {SIZE}\r\n\r\n").as_bytes())
        .await;
    c.send_pattern(SIZE).await;
    let r = c.read_response().await;
    assert_eq!(r.text(), want);

    rec.wait_count("response", 2).await;
    assert_eq!(
        rec.flows("responseheaders")[0].resp_stream.as_deref(),
        Some("On")
    );
    assert_eq!(rec.flows("requestheaders")[1].req_stream, "On");
    let down = &rec.flows("response")[0];
    let stored = down.resp_content.as_ref().expect("stored response body");
    assert_eq!(stored.len() as u64, SIZE);
    assert_eq!(sha256_hex(stored), want);
    let up = &rec.flows("request")[1];
    let stored = up.req_content.as_ref().expect("stored request body");
    assert_eq!(stored.len() as u64, SIZE);
    assert_eq!(sha256_hex(stored), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_response_switches_to_streaming_past_the_threshold() {
    const SIZE: u64 = 8 * 1024 * 1024;
    let origin = HttpOrigin::plain().await;
    let rec = Recorder::new();
    let proxy = TestProxy::builder()
        .set("stream_large_bodies=1m")
        .addon(rec.clone())
        .start()
        .await;
    let port = origin.port();

    let mut c = RawClient::connect(proxy.addr).await;
    c.send(
        format!(
            "GET http://127.0.0.1:{port}/chunked/{SIZE} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let r = c.read_response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.body.len() as u64, SIZE);
    assert_eq!(sha256_hex(&r.body), pattern_sha(SIZE));
    rec.wait_count("response", 1).await;
    // The length was unknown at the head, so streaming started mid-body.
    assert_eq!(
        rec.flows("responseheaders")[0].resp_stream.as_deref(),
        Some("Off")
    );
    assert!(rec.flows("response")[0].resp_content.is_none());
}

/// An origin answering each request on a connection with `body_chunks` as a
/// chunked body (each chunk written in one piece), or "after" for path /after.
async fn chunk_origin(chunks: &'static [&'static str]) -> RawOrigin {
    RawOrigin::start(move |mut s: TcpStream| async move {
        let mut buf = Vec::new();
        while let Some(head) = read_head(&mut s, &mut buf).await {
            let mut out = Vec::new();
            if head.contains(" /after ") {
                out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nafter");
            } else {
                out.extend_from_slice(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                for c in chunks {
                    out.extend_from_slice(format!("{:x}\r\n{c}\r\n", c.len()).as_bytes());
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
            if s.write_all(&out).await.is_err() {
                return;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_transformer_set_in_responseheaders_rewrites_each_chunk() {
    let origin = chunk_origin(&["foo 1 foo\n", "2 foo\n", "foo-3\n"]).await;
    let rec = Recorder::new();
    let transform = FnAddon::new("foo2bar").on(Hook::ResponseHeaders, |f: &mut HttpFlow| {
        let r = f.response.as_mut().unwrap();
        r.stream = StreamMode::Transform(Box::new(|b: Bytes| {
            vec![Bytes::from(
                String::from_utf8_lossy(&b).replace("foo", "bar"),
            )]
        }));
    });
    let proxy = TestProxy::builder()
        .addon(transform.arc())
        .addon(rec.clone())
        .start()
        .await;

    let mut c = RawClient::connect(proxy.addr).await;
    let port = origin.port();
    c.send(
        format!("GET http://127.0.0.1:{port}/t HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    let r = c.read_response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "bar 1 bar\n2 bar\nbar-3\n");
    rec.wait_count("response", 1).await;
    assert!(rec.flows("response")[0].resp_content.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transformer_returning_nothing_mid_stream_does_not_end_the_body() {
    let origin = chunk_origin(&["keep-1\n", "drop-2\n", "drop-3\n", "keep-4\n", "keep-5\n"]).await;
    let drop_some = FnAddon::new("drop").on(Hook::ResponseHeaders, |f: &mut HttpFlow| {
        let r = f.response.as_mut().unwrap();
        r.stream = StreamMode::Transform(Box::new(|b: Bytes| {
            if b.starts_with(b"drop") {
                Vec::new()
            } else {
                vec![b]
            }
        }));
    });
    let proxy = TestProxy::builder().addon(drop_some.arc()).start().await;

    let mut c = RawClient::connect(proxy.addr).await;
    let port = origin.port();
    c.send(
        format!("GET http://127.0.0.1:{port}/t HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    let r = c.read_response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.text(), "keep-1\nkeep-4\nkeep-5\n");
    // The body ended properly: the connection carries the next exchange.
    c.send(
        format!("GET http://127.0.0.1:{port}/after HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    let r = c.read_response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_transformer_set_in_requestheaders_rewrites_the_upload() {
    let origin = HttpOrigin::plain().await;
    let upper = FnAddon::new("upper").on(Hook::RequestHeaders, |f: &mut HttpFlow| {
        f.request.stream = StreamMode::Transform(Box::new(|b: Bytes| {
            vec![Bytes::from(b.to_ascii_uppercase())]
        }));
    });
    let proxy = TestProxy::builder().addon(upper.arc()).start().await;
    let port = origin.port();
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(format!("POST http://127.0.0.1:{port}/echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 11\r\n\r\nhello world").as_bytes())
        .await;
    let r = c.read_response().await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.ends_with("\n\nHELLO WORLD"), "{text}");
    // The length may change, so the body goes out chunked.
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_over_body_size_limit_gets_413_and_the_error_hook() {
    let origin = HttpOrigin::plain().await;
    let rec = Recorder::new();
    let proxy = TestProxy::builder()
        .set("body_size_limit=1k")
        .addon(rec.clone())
        .start()
        .await;
    let port = origin.port();

    let mut c = RawClient::connect(proxy.addr).await;
    c.send(format!("POST http://127.0.0.1:{port}/upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 4096\r\n\r\n").as_bytes())
        .await;
    c.send(&pattern(0, 4096)).await;
    let r = c.read_response().await;
    assert_eq!(r.status, 413);
    assert!(r.text().contains("body_size_limit"), "{}", r.text());
    rec.wait_count("error", 1).await;
    assert!(rec.flows("error")[0]
        .error
        .as_deref()
        .unwrap()
        .contains("body_size_limit"));
    assert_eq!(rec.count("response"), 0);
    assert_eq!(origin.connections(), 0);

    // Within the limit, the same request goes through.
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(format!("POST http://127.0.0.1:{port}/upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 1000\r\n\r\n").as_bytes())
        .await;
    c.send(&pattern(0, 1000)).await;
    let r = c.read_response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), pattern_sha(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_over_body_size_limit_gets_502_and_the_error_hook() {
    let origin = HttpOrigin::plain().await;
    let rec = Recorder::new();
    let proxy = TestProxy::builder()
        .set("body_size_limit=1k")
        .addon(rec.clone())
        .start()
        .await;
    let port = origin.port();

    let mut c = RawClient::connect(proxy.addr).await;
    c.send(
        format!(
            "GET http://127.0.0.1:{port}/bytes/4096 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let r = c.read_response().await;
    assert_eq!(r.status, 502);
    assert!(r.text().contains("body_size_limit"), "{}", r.text());
    c.expect_closed().await;
    rec.wait_count("error", 1).await;
    assert!(rec.flows("error")[0]
        .error
        .as_deref()
        .unwrap()
        .contains("body_size_limit"));
    assert_eq!(rec.count("response"), 0);
    assert!(
        find(r.head.as_bytes(), b"Connection: close").is_some(),
        "{}",
        r.head
    );
}

/// An origin that answers with `total` pattern bytes and no length: the body ends
/// when it closes the connection.
async fn close_delimited_origin(total: u64) -> RawOrigin {
    RawOrigin::start(move |mut s: TcpStream| async move {
        let mut buf = Vec::new();
        if read_head(&mut s, &mut buf).await.is_some() {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n").await;
            let mut off = 0;
            while off < total {
                let n = (total - off).min(FRAME as u64) as usize;
                if s.write_all(&pattern(off, n)).await.is_err() {
                    return;
                }
                off += n as u64;
            }
        }
    })
    .await
}

/// What an HTTP/1.0 client got for a `size`-byte close-delimited response
/// through a proxy streaming from 1 KiB, with `sets` options on top. The proxy
/// and origin are returned so that hooks can still be waited for.
struct Http10Run {
    head: support::client::Resp,
    body: Vec<u8>,
    rec: std::sync::Arc<Recorder>,
    _proxy: TestProxy,
    _origin: RawOrigin,
}

async fn http10_close_delimited(size: u64, sets: &[&str]) -> Http10Run {
    let origin = close_delimited_origin(size).await;
    let rec = Recorder::new();
    let mut b = TestProxy::builder()
        .set("stream_large_bodies=1k")
        .addon(rec.clone());
    for s in sets {
        b = b.set(*s);
    }
    let proxy = b.start().await;
    let port = origin.port();
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(
        format!("GET http://127.0.0.1:{port}/ HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    let head = c.read_head().await;
    assert_eq!(head.status, 200, "{}", head.head);
    let body = c.read_to_end().await;
    Http10Run {
        head,
        body,
        rec,
        _proxy: proxy,
        _origin: origin,
    }
}

/// Read-until-close in, read-until-close out (an HTTP/1.0 client): the bytes pass
/// unchanged (on Linux via splice) and the end of the body is the origin closing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_delimited_response_streams_intact_to_an_http10_client() {
    const SIZE: u64 = 16 * 1024 * 1024;
    let run = http10_close_delimited(SIZE, &[]).await;
    let r = &run.head;
    assert_eq!(r.header("content-length"), None, "{}", r.head);
    assert_eq!(r.header("transfer-encoding"), None, "{}", r.head);
    assert_eq!(run.body.len() as u64, SIZE);
    assert_eq!(sha256_hex(&run.body), pattern_sha(SIZE));
    run.rec.wait_count("response", 1).await;
    assert_eq!(run.rec.count("error"), 0);
    assert!(run.rec.flows("response")[0].resp_content.is_none());
}

/// A streamed body without a length still stops at body_size_limit: the client
/// gets at most the limit and the error hook fires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_close_delimited_response_stops_at_body_size_limit() {
    const SIZE: u64 = 8 * 1024 * 1024;
    let run = http10_close_delimited(SIZE, &["body_size_limit=1m"]).await;
    let body = &run.body;
    assert!(
        body.len() as u64 <= 1024 * 1024,
        "got {} body bytes, more than the 1 MiB limit",
        body.len()
    );
    assert_eq!(sha256_hex(body), pattern_sha(body.len() as u64));
    run.rec.wait_count("error", 1).await;
    let err = run.rec.flows("error")[0].error.clone().unwrap();
    assert!(err.contains("body_size_limit"), "{err}");
    assert_eq!(run.rec.count("response"), 0);
}
