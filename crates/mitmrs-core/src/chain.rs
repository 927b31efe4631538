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
    /// What each addon implements, as of the last `configure`, so that a
    /// dispatch visits only the addons that may implement its hook (one per
    /// hook of every flow: asking all of them was ~10 instructions each).
    cached: Arc<HookCache>,
}

/// In [`HookCache::sets`]: ask the addon. (No hook uses bit 63.)
const LIVE: u64 = 1 << 63;

/// Per addon, its hook set for the addons whose set changes only in
/// `configure` ([`Addon::hooks_change_only_in_configure`]), else [`LIVE`]; per
/// hook, the addons that may implement it (bit `i`: addon `i`, which has it
/// in its set or is asked live). Chains of more than 64 addons visit all.
struct HookCache {
    sets: Box<[AtomicU64]>,
    candidates: [AtomicU64; 64],
}

impl Default for HookCache {
    fn default() -> Self {
        HookCache {
            sets: Box::new([]),
            candidates: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl HookCache {
    fn refresh(&self, addons: &[Arc<dyn Addon>]) {
        for (a, s) in addons.iter().zip(self.sets.iter()) {
            s.store(cached_bits(a), Ordering::Relaxed);
        }
        for (h, c) in self.candidates.iter().enumerate() {
            let mask = if addons.len() > 64 {
                u64::MAX
            } else {
                self.sets.iter().enumerate().fold(0u64, |m, (i, s)| {
                    let bits = s.load(Ordering::Relaxed);
                    if bits == LIVE || bits & (1 << h) != 0 {
                        m | (1 << i)
                    } else {
                        m
                    }
                })
            };
            c.store(mask, Ordering::Relaxed);
        }
    }
}

/// The addons a dispatch of one hook visits, in chain order.
struct Candidates<'a> {
    addons: &'a [Arc<dyn Addon>],
    /// Bits of the addons left to visit (chains of up to 64 addons).
    mask: u64,
    /// Longer chains: the next index.
    next: usize,
}

impl<'a> Iterator for Candidates<'a> {
    type Item = (usize, &'a Arc<dyn Addon>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.addons.len() > 64 {
            let i = self.next;
            self.next += 1;
            return self.addons.get(i).map(|a| (i, a));
        }
        if self.mask == 0 {
            return None;
        }
        let i = self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        self.addons.get(i).map(|a| (i, a))
    }
}

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
            for (i, a) in self.candidates(Hook::$hook) {
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
            for (i, a) in self.candidates(Hook::$hook) {
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
        let cache = HookCache {
            sets: self.addons.iter().map(|_| AtomicU64::new(LIVE)).collect(),
            ..HookCache::default()
        };
        cache.refresh(&self.addons);
        self.cached = Arc::new(cache);
        Ok(())
    }

    /// Addon `i`'s hooks: as cached at the last `configure`, or asked.
    #[inline]
    fn hooks_of(&self, i: usize, a: &Arc<dyn Addon>) -> HookSet {
        let cached = self.cached.sets.get(i);
        match cached.map_or(LIVE, |c| c.load(Ordering::Relaxed)) {
            LIVE => a.hooks(),
            bits => HookSet::from_bits(bits),
        }
    }

    /// The addons that may implement `hook`, in order.
    #[inline]
    fn candidates(&self, hook: Hook) -> Candidates<'_> {
        Candidates {
            addons: &self.addons,
            mask: self.cached.candidates[hook as usize].load(Ordering::Relaxed),
            next: 0,
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
        self.cached.refresh(&self.addons);
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
