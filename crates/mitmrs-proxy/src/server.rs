//! [`Proxy`]: binds the listening socket and runs one task per client connection,
//! at most `max_connections` at a time (a semaphore: further clients wait in the
//! kernel's accept queue, which is the backpressure). Shutdown is a watch signal:
//! the accept loop stops and running connections are dropped.
//!
//! Connections are spread over [`Workers`]: threads with a single-threaded
//! runtime each, as nginx spreads them over worker processes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, error};

use crate::ctx::ProxyCtx;
use crate::http1::session;

pub struct Proxy {
    ctx: Arc<ProxyCtx>,
    listener: TcpListener,
    workers: Workers,
}

impl Proxy {
    /// Binds the listening address from the current configuration.
    pub async fn bind(ctx: Arc<ProxyCtx>) -> std::io::Result<Proxy> {
        let addr = ctx.runtime().cfg.listen;
        let listener = TcpListener::bind(addr).await?;
        Ok(Proxy {
            ctx,
            listener,
            workers: Workers::default(),
        })
    }

    /// Runs connections on `workers` instead of the accepting runtime alone.
    pub fn with_workers(mut self, workers: Workers) -> Proxy {
        self.workers = workers;
        self
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
                    self.workers.dispatch(stream, move |stream| async move {
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

/// The threads connections run on: the accepting runtime's own thread plus
/// any number of others, each with a single-threaded tokio runtime and so its
/// own epoll instance. A connection stays on the thread it is given, the one
/// with the fewest open connections when it was accepted.
///
/// Why not tokio's multi-threaded runtime: its threads share one epoll
/// instance and an idle thread sleeps in it, so every readiness event of a busy
/// connection wakes the idle thread for nothing: ~3,000 wake-ups (context
/// switches on the other CPU) while one 1 GiB body was spliced, 15% of the
/// proxy's CPU for it (bench/NOTES.md, session 3). Here a connection's sockets
/// are only in its own thread's epoll, which nobody waits on while that thread
/// is busy. The cost: no work stealing, so a connection busy with CPU work
/// (a large body being decoded, say) delays the others on its thread.
#[derive(Clone)]
pub struct Workers {
    /// The accepting runtime (`handle: None`) first, then the others.
    list: Arc<Vec<Worker>>,
}

struct Worker {
    /// Where to spawn; `None` for the runtime running the accept loop.
    handle: Option<Handle>,
    /// Connections open on this worker.
    open: Arc<AtomicUsize>,
}

impl Default for Workers {
    /// The accepting runtime alone.
    fn default() -> Self {
        Workers::with(Vec::new())
    }
}

impl Workers {
    fn with(others: Vec<Handle>) -> Self {
        let local = std::iter::once(None);
        let list = local.chain(others.into_iter().map(Some));
        Workers {
            list: Arc::new(
                list.map(|handle| Worker {
                    handle,
                    open: Arc::default(),
                })
                .collect(),
            ),
        }
    }
}

impl Workers {
    /// The accepting runtime plus `extra` threads, each running a
    /// single-threaded runtime for as long as the process lives.
    pub fn start(extra: usize) -> std::io::Result<Workers> {
        let mut others = Vec::with_capacity(extra);
        for i in 1..=extra {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = rt.handle().clone();
            std::thread::Builder::new()
                .name(format!("mitmrs-worker-{i}"))
                .spawn(move || rt.block_on(std::future::pending::<()>()))?;
            others.push(handle);
        }
        Ok(Workers::with(others))
    }

    /// How many threads run connections.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Always false: the accepting runtime is a worker.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Connections open on each worker, the accepting runtime first.
    pub fn open_counts(&self) -> Vec<usize> {
        self.list
            .iter()
            .map(|w| w.open.load(Ordering::Relaxed))
            .collect()
    }

    /// Runs `serve(stream)` on the worker with the fewest open connections.
    fn dispatch<F, Fut>(&self, stream: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(worker) = self
            .list
            .iter()
            .min_by_key(|w| w.open.load(Ordering::Relaxed))
        else {
            return;
        };
        worker.open.fetch_add(1, Ordering::Relaxed);
        let open = OpenGuard(worker.open.clone());
        let Some(handle) = &worker.handle else {
            tokio::spawn(async move {
                serve(stream).await;
                drop(open);
            });
            return;
        };
        // Move the socket from this runtime's epoll to the worker's.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                error!("cannot hand a connection to a worker thread: {e}");
                return;
            }
        };
        handle.spawn(async move {
            match TcpStream::from_std(stream) {
                Ok(stream) => serve(stream).await,
                Err(e) => error!("cannot register a connection on its worker thread: {e}"),
            }
            drop(open);
        });
    }
}

/// Counts a connection as open on its worker until dropped.
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
