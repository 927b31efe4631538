//! Reverse mode against https targets: the SNI the proxy sends, the hook order for
//! plain and TLS clients, requests an addon sends elsewhere; and the regular-mode
//! path that reverse mode shares (raw relaying of decrypted bytes).

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use mitmrs_core::addon::{Hook, HookSet, LayerKind, NextLayer};
use mitmrs_core::{Addon, HookResult};
use support::client::RawClient;
use support::origin::{closed_port, HttpOrigin};
use support::{FnAddon, Recorder, TestProxy};

const GET_SMALL: &[u8] = b"GET /small HTTP/1.1\r\nHost: client.example\r\n\r\n";

/// Relays the bytes inside intercepted TLS unparsed (mitmproxy's
/// `nextlayer.layer = TCPLayer(...)` once the client's TLS is established).
struct TcpInsideTls;

#[async_trait]
impl Addon for TcpInsideTls {
    fn name(&self) -> &str {
        "tcp-inside-tls"
    }
    fn hooks(&self) -> HookSet {
        HookSet::of(&[Hook::NextLayer])
    }
    async fn next_layer(&self, d: &mut NextLayer) -> HookResult {
        if d.client.tls.tls {
            d.layer = Some(LayerKind::Tcp);
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regular_mode_relays_decrypted_bytes_over_server_tls() {
    let origin = HttpOrigin::tls().await;
    let proxy = TestProxy::builder()
        .trust(origin.ca_pem.as_ref().unwrap())
        .addon(Arc::new(TcpInsideTls))
        .start()
        .await;
    let mut c = RawClient::tunnel(proxy.addr, "localhost", origin.port(), &proxy.ca_der()).await;
    c.send(GET_SMALL).await;
    let r = c.read_response().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello from origin\n");
}

async fn reverse_proxy(origin: &HttpOrigin, rec: &Arc<Recorder>, extra: &[&str]) -> TestProxy {
    let mut b = TestProxy::builder()
        .set(format!("mode=reverse:https://localhost:{}", origin.port()))
        .trust(origin.ca_pem.as_ref().unwrap())
        .addon(rec.clone());
    for s in extra {
        b = b.set(*s);
    }
    b.start().await
}

/// The SNI the proxy sent to the server, as `tls_established_server` saw it.
fn server_sni(rec: &Recorder) -> Option<String> {
    let ev = rec
        .events()
        .into_iter()
        .find(|e| e.hook == "tls_established_server")
        .expect("tls_established_server fired");
    ev.server_tls.expect("server TLS facts").sni
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_client_to_https_target_hook_order_and_sni() {
    let origin = HttpOrigin::tls().await;
    let rec = Recorder::new();
    let proxy = reverse_proxy(&origin, &rec, &[]).await;
    let mut c = RawClient::connect(proxy.addr).await;
    for _ in 0..2 {
        c.send(GET_SMALL).await;
        let r = c.read_response().await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "hello from origin\n");
    }
    rec.wait_count("response", 2).await;
    assert_eq!(
        rec.hooks()[..9],
        [
            "client_connected",
            "server_connect",
            "server_connected",
            "next_layer",
            "tls_established_server",
            "requestheaders",
            "request",
            "responseheaders",
            "response",
        ]
    );
    assert_eq!(server_sni(&rec).as_deref(), Some("localhost"));
    assert_eq!(origin.connections(), 1, "one server connection for both");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_to_https_target_hook_order_and_sni() {
    for (keep_host_header, want_sni) in [(false, "localhost"), (true, "client.example")] {
        let origin = HttpOrigin::tls().await;
        let rec = Recorder::new();
        let mut extra = vec![];
        if keep_host_header {
            // The origin's certificate does not name client.example.
            extra = vec!["keep_host_header=true", "ssl_insecure=true"];
        }
        let proxy = reverse_proxy(&origin, &rec, &extra).await;
        let mut c = RawClient::tls(proxy.addr, "client.example", &proxy.ca_der()).await;
        c.send(GET_SMALL).await;
        let r = c.read_response().await;
        assert_eq!(r.status, 200, "keep_host_header={keep_host_header}");
        rec.wait_count("response", 1).await;
        assert_eq!(
            rec.hooks()[..10],
            [
                "client_connected",
                "server_connect",
                "server_connected",
                "next_layer",
                "tls_clienthello",
                "tls_established_server",
                "tls_established_client",
                "requestheaders",
                "request",
                "responseheaders",
            ],
            "keep_host_header={keep_host_header}"
        );
        assert_eq!(server_sni(&rec).as_deref(), Some(want_sni));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_sent_elsewhere_use_their_own_host() {
    // The target is down; an addon sends the request to a live origin by IP.
    let live = HttpOrigin::tls().await;
    let port = live.port();
    let rec = Recorder::new();
    let proxy = TestProxy::builder()
        .set(format!(
            "mode=reverse:https://localhost:{}",
            closed_port().await
        ))
        .trust(live.ca_pem.as_ref().unwrap())
        .addon(
            FnAddon::new("reroute")
                .on(Hook::Request, move |f| {
                    f.request.host = "127.0.0.1".into();
                    f.request.port = port;
                })
                .arc(),
        )
        .addon(rec.clone())
        .start()
        .await;
    let mut c = RawClient::tls(proxy.addr, "localhost", &proxy.ca_der()).await;
    c.send(GET_SMALL).await;
    let r = c.read_response().await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "hello from origin\n");
    // No SNI for an IP address (the tunnel's SNI is for the tunnel's target).
    let flows = rec.flows("response");
    assert_eq!(flows[0].server_tls.sni, None);
    assert_eq!(flows[0].server_addr, Some(("127.0.0.1".into(), port)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lazy_strategy_connects_at_the_first_request() {
    let origin = HttpOrigin::tls().await;
    let rec = Recorder::new();
    let proxy = reverse_proxy(&origin, &rec, &["connection_strategy=lazy"]).await;
    let mut c = RawClient::connect(proxy.addr).await;
    c.send(GET_SMALL).await;
    let r = c.read_response().await;
    assert_eq!(r.status, 200);
    rec.wait_count("response", 1).await;
    assert_eq!(
        rec.hooks()[..7],
        [
            "client_connected",
            "next_layer",
            "requestheaders",
            "request",
            "server_connect",
            "server_connected",
            "tls_established_server",
        ]
    );
    assert_eq!(server_sni(&rec).as_deref(), Some("localhost"));
}
