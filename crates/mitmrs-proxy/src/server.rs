//! [`Proxy`]: binds the listening socket and runs one task per client connection,
//! at most `max_connections` at a time (a semaphore: further clients wait in the
//! kernel's accept queue, which is the backpressure). Shutdown is a watch signal:
//! the accept loop stops; running connections are dropped with the runtimes
//! they run on ([`Workers::stop`] for worker threads).
//!
//! Connections are spread over [`Workers`]: threads with a single-threaded
//! runtime each, as nginx spreads them over worker processes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch, Semaphore};
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

/// The threads connections run on, each with a single-threaded tokio runtime
/// and so its own epoll instance. A connection stays on the thread it is given,
/// the one with the fewest open connections when it was accepted. The accepting
/// runtime serves connections itself only when there are no such threads (as in
/// tests), so a busy connection never holds up accepting or Ctrl-C.
///
/// Why not tokio's multi-threaded runtime: its threads share one epoll
/// instance and an idle thread sleeps in it, so every readiness event of a busy
/// connection wakes the idle thread for nothing: ~3,000 wake-ups (context
/// switches on the other CPU) while one 1 GiB body was spliced, 15% of the
/// proxy's CPU for it (bench/NOTES.md, session 3). Here a connection's sockets
/// are only in its own thread's epoll, which nobody waits on while that thread
/// is busy. The cost: no work stealing, so a connection busy with CPU work
/// (a large body being decoded, say) delays the others on its thread; work
/// that may block (Python stream callables) runs on the blocking pool.
#[derive(Clone, Default)]
pub struct Workers {
    inner: Arc<WorkersInner>,
}

#[derive(Default)]
struct WorkersInner {
    /// Connections open on the accepting runtime (when `threads` is empty).
    local: Arc<AtomicUsize>,
    threads: Vec<WorkerThread>,
}

struct WorkerThread {
    handle: Handle,
    /// Connections open on this thread.
    open: Arc<AtomicUsize>,
    /// Ends the thread's runtime (dropping its connections), and the thread.
    stop: Mutex<Option<(oneshot::Sender<()>, std::thread::JoinHandle<()>)>>,
}

impl Workers {
    /// `n` threads, each running a single-threaded runtime until [`Workers::stop`].
    /// With `n == 0`, connections run on the accepting runtime.
    pub fn start(n: usize) -> std::io::Result<Workers> {
        let mut threads = Vec::with_capacity(n);
        for i in 1..=n {
            let (handle_tx, handle_rx) = std::sync::mpsc::channel();
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            // The runtime is built on its own thread, so that it is also dropped
            // there (dropping one inside another runtime would panic).
            let thread = std::thread::Builder::new()
                .name(format!("mitmrs-worker-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = handle_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = handle_tx.send(Ok(rt.handle().clone()));
                    let _ = rt.block_on(stop_rx);
                    // Blocking-pool work (a Python stream callable) that does not
                    // end soon is abandoned rather than waited for.
                    rt.shutdown_timeout(std::time::Duration::from_millis(500));
                })?;
            let handle = handle_rx.recv().map_err(|_| {
                std::io::Error::other(format!("worker thread {i} ended while starting"))
            })??;
            threads.push(WorkerThread {
                handle,
                open: Arc::default(),
                stop: Mutex::new(Some((stop_tx, thread))),
            });
        }
        Ok(Workers {
            inner: Arc::new(WorkersInner {
                local: Arc::default(),
                threads,
            }),
        })
    }

    /// How many threads serve connections.
    pub fn len(&self) -> usize {
        self.inner.threads.len().max(1)
    }

    /// Always false: without threads, the accepting runtime serves.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Connections open on each thread that serves them.
    pub fn open_counts(&self) -> Vec<usize> {
        if self.inner.threads.is_empty() {
            return vec![self.inner.local.load(Ordering::Relaxed)];
        }
        self.inner
            .threads
            .iter()
            .map(|w| w.open.load(Ordering::Relaxed))
            .collect()
    }

    /// Stops every thread, dropping the connections still open on them, and
    /// waits for them to end (at most ~500 ms for work on their blocking
    /// pools). Connections accepted later run on the accepting runtime.
    pub fn stop(&self) {
        // All signalled first, so the threads wind down together.
        let mut joins = Vec::new();
        for w in &self.inner.threads {
            let stop = w.stop.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some((tx, thread)) = stop {
                let _ = tx.send(());
                joins.push(thread);
            }
        }
        for thread in joins {
            let _ = thread.join();
        }
    }

    /// Runs `serve(stream)` on the thread with the fewest open connections.
    fn dispatch<F, Fut>(&self, stream: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let worker = self
            .inner
            .threads
            .iter()
            .min_by_key(|w| w.open.load(Ordering::Relaxed));
        // Held until the task is spawned, so `stop` cannot end the thread in between.
        let running = worker.map(|w| (w, w.stop.lock().unwrap_or_else(|p| p.into_inner())));
        let Some((worker, _running)) = running.filter(|(_, stop)| stop.is_some()) else {
            let open = OpenGuard::new(&self.inner.local);
            tokio::spawn(async move {
                serve(stream).await;
                drop(open);
            });
            return;
        };
        let open = OpenGuard::new(&worker.open);
        // Move the socket from this runtime's epoll to the worker's.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                error!("cannot hand a connection to a worker thread: {e}");
                return;
            }
        };
        worker.handle.spawn(async move {
            match TcpStream::from_std(stream) {
                Ok(stream) => serve(stream).await,
                Err(e) => error!("cannot register a connection on its worker thread: {e}"),
            }
            drop(open);
        });
    }
}

/// Counts a connection as open on its thread until dropped.
struct OpenGuard(Arc<AtomicUsize>);

impl OpenGuard {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        OpenGuard(count.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
