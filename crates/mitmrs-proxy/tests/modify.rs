//! End-to-end tests of what addons change in a flow: answers that must carry no
//! body, rewritten requests and responses (re-framed to match), and requests
//! redirected to another server.

mod support;

use mitmrs_core::addon::Hook;
use mitmrs_core::{Headers, HttpFlow, Response};
use support::client::RawClient;
use support::origin::{read_head, HttpOrigin, RawOrigin};
use support::{FnAddon, Recorder, TestProxy};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn req(method: &str, port: u16, path: &str, extra: &str) -> Vec<u8> {
    format!(
        "{method} http://127.0.0.1:{port}{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addon_answers_to_head_and_204_carry_no_body() {
    let origin = HttpOrigin::plain().await;
    let answer = FnAddon::new("answer").on(Hook::Request, |f: &mut HttpFlow| {
        let status = if f.request.path == "/204" { 204 } else { 200 };
        if f.request.path != "/small" {
            f.response = Some(Response::make(
                status,
                "a body that must not be sent",
                Headers::new(),
            ));
        }
    });
    let proxy = TestProxy::builder().addon(answer.arc()).start().await;
    let port = origin.port();
    let mut c = RawClient::connect(proxy.addr).await;

    c.send(&req("HEAD", port, "/answer", "")).await;
    let r = c.read_response_to("HEAD").await;
    assert_eq!(r.status, 200);
    // HEAD keeps the length the body would have had.
    assert_eq!(r.header("content-length"), Some("28"));
    c.send(&req("GET", port, "/204", "")).await;
    let r = c.read_response().await;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("content-length"),
        None,
        "a 204 must not carry Content-Length"
    );
    // Had either answer carried its body, this response would not parse.
    c.send(&req("GET", port, "/small", "")).await;
    let r = c.read_response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "hello from origin\n"));
    c.shutdown().await;
    c.expect_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_rewritten_in_request_hook_reaches_the_origin_reframed() {
    let origin = HttpOrigin::plain().await;
    let rewrite = FnAddon::new("rewrite").on(Hook::Request, |f: &mut HttpFlow| {
        f.request.headers.set("X-Added", "1");
        f.request.headers.remove("X-Remove-Me");
        f.request.set_text("a longer body than the client sent");
    });
    let proxy = TestProxy::builder().addon(rewrite.arc()).start().await;
    let port = origin.port();
    let mut c = RawClient::connect(proxy.addr).await;
    for framing in ["Content-Length: 5\r\n", "Transfer-Encoding: chunked\r\n"] {
        c.send(&req(
            "POST",
            port,
            "/echo",
            &format!("X-Remove-Me: yes\r\n{framing}"),
        ))
        .await;
        c.send(if framing.starts_with("Content") {
            &b"short"[..]
        } else {
            &b"5\r\nshort\r\n0\r\n\r\n"[..]
        })
        .await;
        let r = c.read_response().await;
        assert_eq!(r.status, 200);
        let text = r.text();
        assert!(
            text.ends_with("\n\na longer body than the client sent"),
            "{framing}: {text}"
        );
        assert!(text.contains("x-added: 1\n"), "{text}");
        assert!(!text.contains("x-remove-me"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_rewritten_in_response_hook_reaches_the_client_reframed() {
    // One origin connection per request; chunked and Content-Length bodies alike.
    let origin = RawOrigin::start(|mut s: TcpStream| async move {
        let mut buf = Vec::new();
        while let Some(head) = read_head(&mut s, &mut buf).await {
            let out: &[u8] = if head.contains(" /chunked ") {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Origin: 1\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Origin: 1\r\n\r\nabc"
            };
            if s.write_all(out).await.is_err() {
                return;
            }
        }
    })
    .await;
    let rewrite = FnAddon::new("rewrite").on(Hook::Response, |f: &mut HttpFlow| {
        let r = f.response.as_mut().unwrap();
        r.status_code = 203;
        r.reason = "Rewritten".into();
        r.headers.set("X-Rewritten", "yes");
        r.set_text("a body longer than the origin's");
    });
    let proxy = TestProxy::builder().addon(rewrite.arc()).start().await;
    let mut c = RawClient::connect(proxy.addr).await;
    for path in ["/length", "/chunked", "/length"] {
        c.send(&req("GET", origin.port(), path, "")).await;
        let r = c.read_response().await;
        assert_eq!((r.status, r.reason.as_str()), (203, "Rewritten"), "{path}");
        assert_eq!(r.text(), "a body longer than the origin's", "{path}");
        assert_eq!(r.header("x-rewritten"), Some("yes"));
        assert_eq!(r.header("x-origin"), Some("1"));
    }
    assert_eq!(origin.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_redirected_in_request_hook_goes_to_the_new_server() {
    let first = HttpOrigin::plain().await;
    let second = RawOrigin::start(|mut s: TcpStream| async move {
        let mut buf = Vec::new();
        if read_head(&mut s, &mut buf).await.is_some() {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond")
                .await;
        }
    })
    .await;
    let to = second.port();
    let redirect = FnAddon::new("redirect").on(Hook::Request, move |f: &mut HttpFlow| {
        if f.request.path == "/elsewhere" {
            f.request.port = to;
        }
    });
    let rec = Recorder::new();
    let proxy = TestProxy::builder()
        .addon(redirect.arc())
        .addon(rec.clone())
        .start()
        .await;
    let r = support::client::get(
        proxy.addr,
        &format!("http://127.0.0.1:{}/elsewhere", first.port()),
    )
    .await;
    assert_eq!((r.status, r.text().as_str()), (200, "second"));
    assert_eq!(first.connections(), 0);
    assert_eq!(second.connections(), 1);
    rec.wait_count("response", 1).await;
    assert_eq!(
        rec.flows("response")[0].server_addr,
        Some(("127.0.0.1".to_string(), to))
    );
}
