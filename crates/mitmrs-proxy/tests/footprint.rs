//! The memory an idle client connection costs is mostly its task's future, whose
//! size is fixed at spawn by the largest state any await point needs. Rare, large
//! steps (CONNECT and TLS set-up, reverse and SOCKS5 start, an exchange) are boxed
//! so that size stays small; this keeps it so (M8 doubled when one was not).

mod support;

use support::TestProxy;
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn an_idle_connection_task_stays_small() {
    let proxy = TestProxy::builder().start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _client = TcpStream::connect(addr).await.unwrap();
    let (stream, peer) = listener.accept().await.unwrap();
    let fut = mitmrs_proxy::http1::session::serve(proxy.ctx.clone(), stream, peer, addr);
    let size = std::mem::size_of_val(&fut);
    eprintln!("serve future: {size} bytes");
    assert!(
        size <= 4096,
        "the per-connection future grew to {size} bytes"
    );
}
