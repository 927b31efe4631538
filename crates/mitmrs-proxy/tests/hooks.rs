//! End-to-end tests of the hook API: the order hooks fire in, what addons can do
//! to a flow (answer it, refuse a tunnel, kill it), and the isolation of hooks
//! from each other (a slow hook, a panicking or failing addon).

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mitmrs_core::addon::{Hook, HookSet};
use mitmrs_core::{Addon, FlowError, Headers, HookResult, HttpFlow, Response};
use support::client::{get, RawClient};
use support::origin::{closed_port, HttpOrigin};
use support::{within, FnAddon, Recorder, TestProxy};
use tokio::sync::mpsc;

fn get_req(port: u16, path: &str) -> Vec<u8> {
    format!("GET http://127.0.0.1:{port}{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
        .into_bytes()
}

/// Asserts `sub` appears in `all` in order (not necessarily contiguous).
fn assert_subsequence(all: &[&str], sub: &[&str]) {
    let mut it = all.iter();
    for want in sub {
        assert!(
            it.any(|h| h == want),
            "{want} missing or out of order in {all:?} (expected order {sub:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_hooks_fire_in_mitmproxy_order() {
    let origin = HttpOrigin::plain().await;
    let rec = Recorder::new();
    let proxy = TestProxy::builder().addon(rec.clone()).start().await;

    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&get_req(origin.port(), "/small")).await;
    let r = c.read_response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello from origin\n");
    rec.wait_count("response", 1).await;
    assert_eq!(
        rec.hooks(),
        [
            "client_connected",
            "next_layer",
            "requestheaders",
            "request",
            "server_connect",
            "server_connected",
            "responseheaders",
            "response"
        ]
    );
    // All flow hooks saw the same flow.
    let ids: Vec<String> = rec
        .events()
        .iter()
        .filter_map(|e| e.flow.as_ref().map(|f| f.id.clone()))
        .collect();
    assert_eq!(ids.len(), 4);
    assert!(ids.iter().all(|i| *i == ids[0]));

    // The server connection is kept for reuse until the client goes away.
    c.shutdown().await;
    c.expect_closed().await;
    rec.wait_count("server_disconnected", 1).await;
    assert_eq!(
        rec.hooks()[8..],
        ["client_disconnected", "server_disconnected"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_mode_hooks_fire_in_mitmproxy_order() {
    let origin = HttpOrigin::plain().await;
    let rec = Recorder::new();
    let proxy = TestProxy::builder()
        .set(format!("mode=reverse:http://127.0.0.1:{}", origin.port()))
        .addon(rec.clone())
        .start()
        .await;

    let mut c = RawClient::connect(proxy.addr).await;
    c.send(b"GET /small HTTP/1.1\r\nHost: mitmrs.test\r\n\r\n")
        .await;
    let r = c.read_response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello from origin\n");
    rec.wait_count("response", 1).await;
    // Eager connection strategy: the server connection opens before the client
    // has said anything (mitmproxy's DestinationKnown layer), no http_connect.
    assert_eq!(
        rec.hooks(),
        [
            "client_connected",
            "server_connect",
            "server_connected",
            "next_layer",
            "requestheaders",
            "request",
            "responseheaders",
            "response"
        ]
    );
    let flow = &rec.flows("request")[0];
    assert_eq!(
        flow.url,
        format!("http://127.0.0.1:{}/small", origin.port())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_connect_hooks_fire_in_order_and_record_tls_facts() {
    let origin = HttpOrigin::tls().await;
    let rec = Recorder::new();
    let proxy = TestProxy::builder()
        .trust(origin.ca_pem.as_ref().unwrap())
        .addon(rec.clone())
        .start()
        .await;

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
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello from origin\n");
    rec.wait_count("response", 1).await;

    let hooks = rec.hooks();
    // The order for a CONNECT tunnel with TLS interception...
    assert_subsequence(
        &hooks,
        &[
            "http_connect",
            "server_connect",
            "server_connected",
            "http_connected",
            "next_layer",
            "tls_clienthello",
            "tls_established_server",
            "tls_established_client",
            "requestheaders",
            "request",
            "responseheaders",
            "response",
        ],
    );
    // ...and exactly what the proxy produces, which is what mitmdump 11.0.2 fires
    // (next_layer also runs at client connect and again inside TLS).
    assert_eq!(
        hooks,
        [
            "client_connected",
            "next_layer",
            "http_connect",
            "server_connect",
            "server_connected",
            "http_connected",
            "next_layer",
            "tls_clienthello",
            "tls_established_server",
            "tls_established_client",
            "next_layer",
            "requestheaders",
            "request",
            "responseheaders",
            "response"
        ]
    );

    let hello = rec
        .events()
        .into_iter()
        .find(|e| e.hook == "tls_clienthello")
        .unwrap();
    assert_eq!(hello.sni.as_deref(), Some("localhost"));
    let est = rec
        .events()
        .into_iter()
        .find(|e| e.hook == "tls_established_server")
        .unwrap();
    assert!(est
        .server_tls
        .as_ref()
        .is_some_and(|t| t.tls && !t.certificate_list.is_empty()));

    let f = &rec.flows("response")[0];
    assert_eq!(f.path, "/small");
    assert_eq!(f.url, format!("https://localhost:{}/small", origin.port()));
    let ct = &f.client_tls;
    assert!(ct.tls, "client side TLS not recorded: {ct:?}");
    assert_eq!(ct.sni.as_deref(), Some("localhost"));
    assert_eq!(ct.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert!(
        ct.tls_version
            .as_deref()
            .is_some_and(|v| v.starts_with("TLSv1.")),
        "{ct:?}"
    );
    assert!(
        ct.cipher.as_deref().is_some_and(|c| !c.is_empty()),
        "{ct:?}"
    );
    let st = &f.server_tls;
    assert!(st.tls, "server side TLS not recorded: {st:?}");
    assert_eq!(st.sni.as_deref(), Some("localhost"));
    assert_eq!(st.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert!(
        st.tls_version
            .as_deref()
            .is_some_and(|v| v.starts_with("TLSv1.")),
        "{st:?}"
    );
    assert!(
        st.cipher.as_deref().is_some_and(|c| !c.is_empty()),
        "{st:?}"
    );
    assert!(
        !st.certificate_list.is_empty(),
        "no server certificates recorded"
    );
}

async fn short_circuit_in(hook: Hook) {
    let origin = HttpOrigin::plain().await;
    let rec = Recorder::new();
    let answer = FnAddon::new("answer").on(hook, |f: &mut HttpFlow| {
        f.response = Some(Response::make(
            201,
            "answered by an addon",
            Headers::from_pairs([("X-Addon", "yes")]),
        ));
    });
    let proxy = TestProxy::builder()
        .addon(answer.arc())
        .addon(rec.clone())
        .start()
        .await;

    let mut c = RawClient::connect(proxy.addr).await;
    for _ in 0..2 {
        c.send(&get_req(origin.port(), "/small")).await;
        let r = c.read_response().await;
        assert_eq!(r.status, 201, "{hook:?}");
        assert_eq!(r.header("x-addon"), Some("yes"));
        assert_eq!(r.text(), "answered by an addon");
    }
    rec.wait_count("response", 2).await;
    assert_eq!(
        origin.connections(),
        0,
        "the origin was contacted despite the answer in {hook:?}"
    );
    assert_eq!(rec.count("server_connect"), 0);
    assert_eq!(rec.count("error"), 0);
    assert_eq!(rec.flows("response")[0].status, Some(201));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_set_in_request_short_circuits_the_origin() {
    short_circuit_in(Hook::Request).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_set_in_requestheaders_short_circuits_the_origin() {
    short_circuit_in(Hook::RequestHeaders).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_set_in_http_connect_refuses_the_tunnel() {
    let origin = HttpOrigin::tls().await;
    let rec = Recorder::new();
    let refuse = FnAddon::new("refuse").on(Hook::HttpConnect, |f: &mut HttpFlow| {
        f.response = Some(Response::make(403, "no tunnels here", Headers::new()));
    });
    let proxy = TestProxy::builder()
        .addon(refuse.arc())
        .addon(rec.clone())
        .start()
        .await;

    let mut c = RawClient::connect(proxy.addr).await;
    let port = origin.port();
    c.send(
        format!("CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n").as_bytes(),
    )
    .await;
    let r = c.read_response_to("CONNECT").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "no tunnels here");
    assert_eq!(rec.count("http_connect"), 1);
    assert_eq!(rec.count("server_connect"), 0);
    assert_eq!(rec.count("http_connected"), 0);
    assert_eq!(origin.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_in_request_closes_the_client_without_a_response() {
    let origin = HttpOrigin::plain().await;
    let rec = Recorder::new();
    let kill = FnAddon::new("kill").on(Hook::Request, |f: &mut HttpFlow| f.kill());
    let proxy = TestProxy::builder()
        .addon(kill.arc())
        .addon(rec.clone())
        .start()
        .await;

    let mut c = RawClient::connect(proxy.addr).await;
    c.send(&get_req(origin.port(), "/small")).await;
    c.expect_closed().await;
    rec.wait_count("error", 1).await;
    let errs = rec.flows("error");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].error.as_deref(), Some(FlowError::KILLED_MESSAGE));
    assert_eq!(errs[0].error.as_deref(), Some("Connection killed."));
    assert_eq!(rec.count("response"), 0);
    assert_eq!(origin.connections(), 0);
}

/// Sleeps 2 s in `request` for paths containing "slow", after telling the test.
struct SlowHook {
    entered: mpsc::UnboundedSender<()>,
}

#[async_trait]
impl Addon for SlowHook {
    fn name(&self) -> &str {
        "slow"
    }
    fn hooks(&self) -> HookSet {
        HookSet::of(&[Hook::Request])
    }
    async fn request(&self, f: &mut HttpFlow) -> HookResult {
        if f.request.path.contains("slow") {
            let _ = self.entered.send(());
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_hook_does_not_delay_other_connections() {
    let origin = HttpOrigin::plain().await;
    let (tx, mut entered) = mpsc::unbounded_channel();
    let proxy = TestProxy::builder()
        .addon(Arc::new(SlowHook { entered: tx }))
        .start()
        .await;
    let port = origin.port();

    let slow = tokio::spawn({
        let addr = proxy.addr;
        async move { get(addr, &format!("http://127.0.0.1:{port}/small?slow")).await }
    });
    within("the slow hook to start", entered.recv())
        .await
        .expect("slow hook entered");

    let start = Instant::now();
    let fast = get(proxy.addr, &format!("http://127.0.0.1:{port}/small")).await;
    let took = start.elapsed();
    assert_eq!(fast.status, 200);
    assert!(
        took < Duration::from_millis(1500),
        "the fast request took {took:?} while another flow's hook slept"
    );
    assert!(
        !slow.is_finished(),
        "the slow request finished before its hook's 2 s were up"
    );

    let slow = within("the slow request", slow).await.unwrap();
    assert_eq!(slow.status, 200);
    assert_eq!(slow.text(), "hello from origin\n");
}

/// Panics in every flow hook.
struct Panicker;

#[async_trait]
impl Addon for Panicker {
    fn name(&self) -> &str {
        "panicker"
    }
    fn hooks(&self) -> HookSet {
        HookSet::of(&[
            Hook::RequestHeaders,
            Hook::Request,
            Hook::ResponseHeaders,
            Hook::Response,
        ])
    }
    async fn requestheaders(&self, _f: &mut HttpFlow) -> HookResult {
        panic!("test panic in requestheaders")
    }
    async fn request(&self, _f: &mut HttpFlow) -> HookResult {
        panic!("test panic in request")
    }
    async fn responseheaders(&self, _f: &mut HttpFlow) -> HookResult {
        panic!("test panic in responseheaders")
    }
    async fn response(&self, _f: &mut HttpFlow) -> HookResult {
        panic!("test panic in response")
    }
}

/// Returns an error from every flow hook.
struct Failer;

#[async_trait]
impl Addon for Failer {
    fn name(&self) -> &str {
        "failer"
    }
    fn hooks(&self) -> HookSet {
        HookSet::of(&[
            Hook::RequestHeaders,
            Hook::Request,
            Hook::ResponseHeaders,
            Hook::Response,
        ])
    }
    async fn requestheaders(&self, _f: &mut HttpFlow) -> HookResult {
        Err("test error in requestheaders".into())
    }
    async fn request(&self, _f: &mut HttpFlow) -> HookResult {
        Err("test error in request".into())
    }
    async fn responseheaders(&self, _f: &mut HttpFlow) -> HookResult {
        Err("test error in responseheaders".into())
    }
    async fn response(&self, _f: &mut HttpFlow) -> HookResult {
        Err("test error in response".into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_and_failing_addons_do_not_stop_the_flow_or_later_addons() {
    let origin = HttpOrigin::plain().await;
    let rec = Recorder::new();
    let later = FnAddon::new("later")
        .on(Hook::Request, |f: &mut HttpFlow| {
            f.request.headers.add("X-Later", "ran")
        })
        .on(Hook::Response, |f: &mut HttpFlow| {
            if let Some(r) = f.response.as_mut() {
                r.headers.add("X-Later-Response", "ran");
            }
        });
    let proxy = TestProxy::builder()
        .addon(Arc::new(Panicker))
        .addon(Arc::new(Failer))
        .addon(later.arc())
        .addon(rec.clone())
        .start()
        .await;

    let mut c = RawClient::connect(proxy.addr).await;
    for _ in 0..2 {
        c.send(&get_req(origin.port(), "/echo")).await;
        let r = c.read_response().await;
        assert_eq!(r.status, 200);
        assert!(
            r.text().contains("x-later: ran"),
            "the later addon's request hook did not run: {}",
            r.text()
        );
        assert_eq!(r.header("x-later-response"), Some("ran"));
    }
    rec.wait_count("response", 2).await;
    assert_eq!(rec.count("requestheaders"), 2);
    assert_eq!(rec.count("responseheaders"), 2);
    assert_eq!(rec.count("error"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flow_ends_in_exactly_one_of_response_or_error() {
    let origin = HttpOrigin::plain().await;
    let rec = Recorder::new();
    let kill_if = |marker: &'static str| {
        move |f: &mut HttpFlow| {
            if f.request.path.ends_with(marker) {
                f.kill();
            }
        }
    };
    let killer = FnAddon::new("killer")
        .on(Hook::RequestHeaders, kill_if("/kill-requestheaders"))
        .on(Hook::Request, kill_if("/kill-request"))
        .on(Hook::ResponseHeaders, kill_if("/kill-responseheaders"))
        .on(Hook::Response, kill_if("/kill-response"));
    let proxy = TestProxy::builder()
        .addon(killer.arc())
        .addon(rec.clone())
        .start()
        .await;
    let up = origin.port();
    let down = closed_port().await;

    // (port, path, expected status or None for a closed connection)
    let cases: &[(u16, &str, Option<u16>)] = &[
        (up, "/small", Some(200)),
        (up, "/kill-requestheaders", None),
        (up, "/kill-request", None),
        (down, "/small", Some(502)),
        (up, "/kill-responseheaders", None),
        (up, "/kill-response", None),
        (up, "/nothing-here", Some(404)),
        (down, "/again", Some(502)),
        (up, "/small", Some(200)),
    ];
    for (port, path, want) in cases {
        let mut c = RawClient::connect(proxy.addr).await;
        c.send(&get_req(*port, path)).await;
        match want {
            Some(s) => assert_eq!(c.read_response().await.status, *s, "{path} on {port}"),
            None => c.expect_closed().await,
        }
    }
    let n = cases.len();
    rec.wait_for("every flow to end", |evs| {
        evs.iter()
            .filter(|e| e.hook == "response" || e.hook == "error")
            .count()
            >= n
    })
    .await;

    let started: Vec<String> = rec
        .flows("requestheaders")
        .into_iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(started.len(), n);
    let mut ends: HashMap<String, Vec<&'static str>> = HashMap::new();
    for e in rec.events() {
        if e.hook == "response" || e.hook == "error" {
            ends.entry(e.flow.unwrap().id).or_default().push(e.hook);
        }
    }
    for id in &started {
        let got = ends.get(id).cloned().unwrap_or_default();
        assert_eq!(got.len(), 1, "flow {id} ended with {got:?}");
    }
    assert_eq!(
        ends.len(),
        n,
        "an end hook ran for a flow that never started"
    );
    assert_eq!(
        rec.count("response"),
        4,
        "200, 404, 200 and the flow killed in response"
    );
    assert_eq!(
        rec.count("error"),
        5,
        "three kills before the response and two unreachable servers"
    );
    for f in rec.flows("error") {
        let msg = f.error.unwrap();
        assert!(
            msg == FlowError::KILLED_MESSAGE || msg.contains(&format!("127.0.0.1:{down}")),
            "{msg}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercepted_flow_waits_for_resume_before_later_addons_and_the_origin() {
    let origin = HttpOrigin::plain().await;
    let rec = Recorder::new();
    let (tx, mut handles) = mpsc::unbounded_channel();
    let interceptor = FnAddon::new("interceptor").on(Hook::Request, move |f: &mut HttpFlow| {
        f.intercept();
        let _ = tx.send(f.intercept_handle());
    });
    let proxy = TestProxy::builder()
        .addon(interceptor.arc())
        .addon(rec.clone())
        .start()
        .await;

    let port = origin.port();
    let pending = tokio::spawn({
        let addr = proxy.addr;
        async move { get(addr, &format!("http://127.0.0.1:{port}/small")).await }
    });
    let handle = within("the interception", handles.recv()).await.unwrap();
    assert!(handle.is_intercepted());
    assert_eq!(
        rec.count("request"),
        0,
        "a later addon ran while the flow was intercepted"
    );
    assert_eq!(
        origin.connections(),
        0,
        "the origin was contacted while the flow was intercepted"
    );
    assert!(!pending.is_finished());

    handle.resume();
    let r = within("the resumed request", pending).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "hello from origin\n"));
    assert_eq!(rec.count("request"), 1);
    assert_eq!(origin.connections(), 1);
}
