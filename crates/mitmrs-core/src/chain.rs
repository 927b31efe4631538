//! [`AddonChain`]: runs addons in registration order, skipping those that do not
//! implement a hook, and isolating failures: a hook that returns an error or panics
//! is logged with the addon's name, and the chain and the flow go on.

use std::any::Any;
use std::collections::BTreeSet;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::addon::*;
use crate::connection::Client;
use crate::flow::HttpFlow;
use crate::options::{Options, OptionsError};

/// Polls a future, turning a panic into an `Err` with the panic message.
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(panic_message(&*payload))),
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".into()
    }
}

fn report(addon: &str, hook: Hook, outcome: Result<HookResult, String>) {
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(target: "mitmrs::addon", "Addon error: {addon}: {}: {e}", hook.name())
        }
        Err(p) => {
            tracing::error!(target: "mitmrs::addon", "Addon error: {addon}: {} panicked: {p}", hook.name())
        }
    }
}

/// The addons of a proxy, in registration order.
#[derive(Clone, Default)]
pub struct AddonChain {
    addons: Vec<Arc<dyn Addon>>,
    /// Per addon, its hook set as of the last `configure` for the addons whose
    /// set changes only there ([`Addon::hooks_change_only_in_configure`]), else
    /// [`LIVE`]: the dispatch loops ask every addon for every hook of every
    /// flow, and a load is cheaper than the virtual call.
    cached: Arc<[AtomicU64]>,
}

/// In [`AddonChain::cached`]: ask the addon. (No hook uses bit 63.)
const LIVE: u64 = 1 << 63;

fn cached_bits(a: &Arc<dyn Addon>) -> u64 {
    if a.hooks_change_only_in_configure() {
        a.hooks().bits() & !LIVE
    } else {
        LIVE
    }
}

macro_rules! dispatch {
    ($(#[$doc:meta])* $fn:ident, $hook:ident, $arg:ident : $ty:ty) => {
        $(#[$doc])*
        pub async fn $fn(&self, $arg: $ty) {
            for (i, a) in self.addons.iter().enumerate() {
                if self.hooks_of(i, a).contains(Hook::$hook) {
                    let out = CatchUnwind(a.$fn($arg)).await;
                    report(a.name(), Hook::$hook, out);
                }
            }
        }
    };
    ($(#[$doc:meta])* flow $fn:ident, $hook:ident) => {
        $(#[$doc])*
        pub async fn $fn(&self, flow: &mut HttpFlow) {
            for (i, a) in self.addons.iter().enumerate() {
                if self.hooks_of(i, a).contains(Hook::$hook) {
                    let out = CatchUnwind(a.$fn(flow)).await;
                    report(a.name(), Hook::$hook, out);
                    if flow.intercepted() {
                        flow.wait_resumed().await;
                    }
                }
            }
        }
    };
}

impl AddonChain {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an addon and runs its `load`.
    pub fn add(&mut self, addon: Arc<dyn Addon>, options: &Options) -> Result<(), OptionsError> {
        let at = self.addons.len();
        self.insert(at, addon, options)
    }

    /// Inserts an addon at `index` (clamped to the end) and runs its `load`. The
    /// binary uses it to put scripts where mitmproxy has them: after the built-in
    /// addons that change flows, before the ones that save and print them.
    pub fn insert(
        &mut self,
        index: usize,
        addon: Arc<dyn Addon>,
        options: &Options,
    ) -> Result<(), OptionsError> {
        let mut loader = Loader { options };
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| addon.load(&mut loader)))
            .map_err(|p| panic_message(&*p))
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            tracing::error!(target: "mitmrs::addon", "Addon error: {}: load: {e}", addon.name());
        }
        let index = index.min(self.addons.len());
        self.addons.insert(index, addon);
        self.cached = self
            .addons
            .iter()
            .map(|a| AtomicU64::new(cached_bits(a)))
            .collect();
        Ok(())
    }

    /// Addon `i`'s hooks: as cached at the last `configure`, or asked.
    #[inline]
    fn hooks_of(&self, i: usize, a: &Arc<dyn Addon>) -> HookSet {
        match self
            .cached
            .get(i)
            .map_or(LIVE, |c| c.load(Ordering::Relaxed))
        {
            LIVE => a.hooks(),
            bits => HookSet::from_bits(bits),
        }
    }

    pub fn len(&self) -> usize {
        self.addons.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addons.is_empty()
    }

    pub fn addons(&self) -> &[Arc<dyn Addon>] {
        &self.addons
    }

    /// True if any addon implements `hook`.
    pub fn wants(&self, hook: Hook) -> bool {
        self.addons.iter().any(|a| a.hooks().contains(hook))
    }

    /// Runs `configure` on every addon; the first rejection is returned.
    pub fn configure(
        &self,
        options: &Options,
        updated: &BTreeSet<String>,
    ) -> Result<(), OptionsError> {
        let mut result = Ok(());
        for a in &self.addons {
            if a.hooks().contains(Hook::Configure) {
                match catch_unwind(AssertUnwindSafe(|| a.configure(options, updated))) {
                    Ok(Err(e)) => {
                        result = Err(e);
                        break;
                    }
                    Ok(Ok(())) => {}
                    Err(p) => {
                        tracing::error!(target: "mitmrs::addon", "Addon error: {}: configure panicked: {}", a.name(), panic_message(&*p))
                    }
                }
            }
        }
        // Whatever configure changed (a rejection may have come after others
        // took their new values).
        for (a, c) in self.addons.iter().zip(self.cached.iter()) {
            c.store(cached_bits(a), Ordering::Relaxed);
        }
        result
    }

    pub async fn running(&self) {
        for a in &self.addons {
            if a.hooks().contains(Hook::Running) {
                let out = CatchUnwind(a.running()).await;
                report(a.name(), Hook::Running, out);
            }
        }
    }

    pub async fn done(&self) {
        for a in &self.addons {
            if a.hooks().contains(Hook::Done) {
                let out = CatchUnwind(a.done()).await;
                report(a.name(), Hook::Done, out);
            }
        }
    }

    dispatch!(client_connected, ClientConnected, client: &mut Client);
    dispatch!(client_disconnected, ClientDisconnected, client: &Client);
    dispatch!(server_connect, ServerConnect, data: &mut ServerConnectionHookData);
    dispatch!(server_connected, ServerConnected, data: &ServerConnectionHookData);
    dispatch!(server_disconnected, ServerDisconnected, data: &ServerConnectionHookData);
    dispatch!(server_connect_error, ServerConnectError, data: &ServerConnectionHookData);
    dispatch!(next_layer, NextLayer, data: &mut NextLayer);
    dispatch!(socks5_auth, Socks5Auth, data: &mut Socks5AuthData);
    dispatch!(tls_clienthello, TlsClientHello, data: &mut ClientHelloData);
    dispatch!(tls_established_client, TlsEstablishedClient, data: &TlsData);
    dispatch!(tls_established_server, TlsEstablishedServer, data: &TlsData);
    dispatch!(tls_failed_client, TlsFailedClient, data: &TlsData);
    dispatch!(tls_failed_server, TlsFailedServer, data: &TlsData);
    dispatch!(flow http_connect, HttpConnect);
    dispatch!(flow http_connect_upstream, HttpConnectUpstream);
    dispatch!(flow http_connected, HttpConnected);
    dispatch!(flow http_connect_error, HttpConnectError);
    dispatch!(flow requestheaders, RequestHeaders);
    dispatch!(flow request, Request);
    dispatch!(flow responseheaders, ResponseHeaders);
    dispatch!(flow response, Response);
    dispatch!(flow error, Error);
    dispatch!(flow websocket_start, WebsocketStart);
    dispatch!(flow websocket_message, WebsocketMessage);
    dispatch!(flow websocket_end, WebsocketEnd);
}
