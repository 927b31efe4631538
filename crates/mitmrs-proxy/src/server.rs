//! [`Proxy`]: binds the listening socket and runs one task per client connection,
//! at most `max_connections` at a time (a semaphore: further clients wait in the
//! kernel's accept queue, which is the backpressure). Shutdown is a watch signal:
//! the accept loop stops and running connections are dropped.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, error};

use crate::ctx::ProxyCtx;
use crate::http1::session;

pub struct Proxy {
    ctx: Arc<ProxyCtx>,
    listener: TcpListener,
}

impl Proxy {
    /// Binds the listening address from the current configuration.
    pub async fn bind(ctx: Arc<ProxyCtx>) -> std::io::Result<Proxy> {
        let addr = ctx.runtime().cfg.listen;
        let listener = TcpListener::bind(addr).await?;
        Ok(Proxy { ctx, listener })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn ctx(&self) -> &Arc<ProxyCtx> {
        &self.ctx
    }

    /// Accepts connections until `shutdown` becomes true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let limit = Arc::new(Semaphore::new(self.ctx.runtime().cfg.max_connections));
        loop {
            let permit = tokio::select! {
                p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let local = stream.local_addr().unwrap_or(peer);
                    let ctx = self.ctx.clone();
                    tokio::spawn(async move {
                        session::serve(ctx, stream, peer, local).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    // EMFILE and friends: log and keep accepting.
                    error!("accept failed: {e}");
                    debug!("accept error kind {:?}", e.kind());
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}
