//! mitmproxy's small built-in addons, on the same hook API as user addons:
//!
//! * [`Block`]: `block_global` (on by default) refuses clients from public IP
//!   addresses, `block_private` those from private ones; loopback is always let in.
//!   With the default `listen_host` (127.0.0.1) only loopback can connect anyway;
//!   this is the safety net for `--listen-host 0.0.0.0`, which would otherwise be
//!   an open proxy for the internet.
//! * [`AntiCache`] (`anticache`): removes `If-Modified-Since` and `If-None-Match`
//!   from requests, so servers answer in full instead of with 304.
//! * [`AntiComp`] (`anticomp`): sets `Accept-Encoding: identity`.
//!
//! AntiCache and AntiComp hook nothing per flow while their option is off.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use mitmrs_core::addon::{Hook, HookSet, Loader};
use mitmrs_core::options::{OptionSpec, OptionType, OptionValue, Options, OptionsError};
use mitmrs_core::{Addon, Client, HookResult, HttpFlow};

/// Refuses client connections by address (mitmproxy's `block` addon).
#[derive(Default)]
pub struct Block {
    global: AtomicBool,
    private: AtomicBool,
}

impl Block {
    pub fn new() -> Self {
        Self {
            global: AtomicBool::new(true),
            private: AtomicBool::new(false),
        }
    }
}

#[async_trait]
impl Addon for Block {
    fn name(&self) -> &str {
        "block"
    }

    fn hooks(&self) -> HookSet {
        const HOOKS: HookSet = HookSet::of(&[Hook::Load, Hook::Configure, Hook::ClientConnected]);
        HOOKS
    }

    fn hooks_change_only_in_configure(&self) -> bool {
        true
    }

    fn load(&self, loader: &mut Loader<'_>) -> HookResult {
        loader.add_option(OptionSpec::new(
            "block_global",
            OptionType::Bool,
            OptionValue::Bool(true),
            "Block connections from public IP addresses.",
        ))?;
        loader.add_option(OptionSpec::new(
            "block_private",
            OptionType::Bool,
            OptionValue::Bool(false),
            "Block connections from local (private) IP addresses. This option does not affect loopback \
             addresses (connections from the local machine), which are always permitted.",
        ))?;
        Ok(())
    }

    fn configure(
        &self,
        options: &Options,
        _updated: &BTreeSet<String>,
    ) -> Result<(), OptionsError> {
        self.global
            .store(options.get_bool("block_global"), Ordering::Relaxed);
        self.private
            .store(options.get_bool("block_private"), Ordering::Relaxed);
        Ok(())
    }

    async fn client_connected(&self, client: &mut Client) -> HookResult {
        let ip = unmap(client.peername.ip());
        if ip.is_loopback() {
            return Ok(());
        }
        let peer = ip.to_string();
        if self.private.load(Ordering::Relaxed) && is_private(ip) {
            tracing::warn!("Client connection from {peer} killed by block_private option.");
            client.error = Some("Connection killed by block_private.".into());
        }
        if self.global.load(Ordering::Relaxed) && is_global(ip) {
            tracing::warn!("Client connection from {peer} killed by block_global option.");
            client.error = Some("Connection killed by block_global.".into());
        }
        Ok(())
    }
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Python's `ipaddress` `is_private` (3.11), which mitmproxy's block addon uses.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let n = u32::from(a);
            V4_PRIVATE
                .iter()
                .any(|&(net, len)| in_v4(n, u32::from(net), len))
        }
        IpAddr::V6(a) => {
            let n = u128::from(a);
            V6_PRIVATE
                .iter()
                .any(|&(net, len)| in_v6(n, u128::from(net), len))
        }
    }
}

/// Python's `is_global`: not private, and for IPv4 not in 100.64.0.0/10 (shared
/// address space).
pub fn is_global(ip: IpAddr) -> bool {
    let shared = match ip {
        IpAddr::V4(a) => in_v4(u32::from(a), u32::from(Ipv4Addr::new(100, 64, 0, 0)), 10),
        IpAddr::V6(_) => false,
    };
    !is_private(ip) && !shared
}

fn in_v4(n: u32, net: u32, len: u32) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    n & mask == net & mask
}

fn in_v6(n: u128, net: u128, len: u32) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    n & mask == net & mask
}

const V4_PRIVATE: &[(Ipv4Addr, u32)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 0, 0, 0), 29),
    (Ipv4Addr::new(192, 0, 0, 170), 31),
    (Ipv4Addr::new(192, 0, 2, 0), 24),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(198, 18, 0, 0), 15),
    (Ipv4Addr::new(198, 51, 100, 0), 24),
    (Ipv4Addr::new(203, 0, 113, 0), 24),
    (Ipv4Addr::new(240, 0, 0, 0), 4),
    (Ipv4Addr::new(255, 255, 255, 255), 32),
];

const V6_PRIVATE: &[(Ipv6Addr, u32)] = &[
    (Ipv6Addr::LOCALHOST, 128),
    (Ipv6Addr::UNSPECIFIED, 128),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96),
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64),
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32),
    (Ipv6Addr::new(0x2001, 0x10, 0, 0, 0, 0, 0, 0), 28),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
];

/// A request-rewriting addon that runs only while its boolean option is on.
pub struct RequestToggle {
    option: &'static str,
    help: &'static str,
    on: AtomicBool,
    apply: fn(&mut HttpFlow),
}

impl RequestToggle {
    /// mitmproxy's `anticache`: `Request.anticache()`.
    pub fn anticache() -> Self {
        Self {
            option: "anticache",
            help:
                "Strip out request headers that might cause the server to return 304-not-modified.",
            on: AtomicBool::new(false),
            apply: |f| {
                f.request.headers.remove("if-modified-since");
                f.request.headers.remove("if-none-match");
            },
        }
    }

    /// mitmproxy's `anticomp`: `Request.anticomp()`.
    pub fn anticomp() -> Self {
        Self {
            option: "anticomp",
            help: "Try to convince servers to send us un-compressed data.",
            on: AtomicBool::new(false),
            apply: |f| f.request.headers.set("accept-encoding", "identity"),
        }
    }
}

#[async_trait]
impl Addon for RequestToggle {
    fn name(&self) -> &str {
        self.option
    }

    fn hooks(&self) -> HookSet {
        const BASE: HookSet = HookSet::of(&[Hook::Load, Hook::Configure]);
        let base = BASE;
        if self.on.load(Ordering::Relaxed) {
            base.with(Hook::Request)
        } else {
            base
        }
    }

    fn hooks_change_only_in_configure(&self) -> bool {
        true
    }

    fn load(&self, loader: &mut Loader<'_>) -> HookResult {
        loader.add_option(OptionSpec::new(
            self.option,
            OptionType::Bool,
            OptionValue::Bool(false),
            self.help,
        ))?;
        Ok(())
    }

    fn configure(
        &self,
        options: &Options,
        _updated: &BTreeSet<String>,
    ) -> Result<(), OptionsError> {
        self.on
            .store(options.get_bool(self.option), Ordering::Relaxed);
        Ok(())
    }

    async fn request(&self, flow: &mut HttpFlow) -> HookResult {
        (self.apply)(flow);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn address_classes_as_pythons_ipaddress() {
        for (a, private, global) in [
            ("8.8.8.8", false, true),
            ("10.1.2.3", true, false),
            ("172.20.0.1", true, false),
            ("172.32.0.1", false, true),
            ("192.168.1.1", true, false),
            ("169.254.1.1", true, false),
            ("100.64.0.1", false, false),
            ("127.0.0.1", true, false),
            ("2001:4860::8888", false, true),
            ("fd00::1", true, false),
            ("fe80::1", true, false),
            ("::1", true, false),
            ("2001:db8::1", true, false),
        ] {
            assert_eq!(is_private(ip(a)), private, "{a} private");
            assert_eq!(is_global(ip(a)), global, "{a} global");
        }
        assert_eq!(unmap(ip("::ffff:8.8.8.8")), ip("8.8.8.8"));
    }

    /// What `client_connected` leaves in `client.error` for a peer, through a
    /// chain holding the addon, with `--set`s applied.
    fn verdict(peer: &str, sets: &[&str]) -> Option<String> {
        let options = Options::new();
        mitmrs_core::options::register_core_options(&options).unwrap();
        let mut chain = mitmrs_core::AddonChain::new();
        chain
            .add(std::sync::Arc::new(Block::new()), &options)
            .unwrap();
        for s in sets {
            options.parse_set(s, false).unwrap();
        }
        let all: BTreeSet<String> = options.names().into_iter().collect();
        chain.configure(&options, &all).unwrap();
        let mut client = Client::new(peer.parse().unwrap(), "127.0.0.1:8080".parse().unwrap());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(chain.client_connected(&mut client));
        client.error
    }

    #[test]
    fn block_refuses_public_clients_by_default_and_private_ones_when_asked() {
        let global = Some("Connection killed by block_global.".to_string());
        let private = Some("Connection killed by block_private.".to_string());
        assert_eq!(verdict("8.8.8.8:5000", &[]), global);
        assert_eq!(verdict("[::ffff:8.8.8.8]:5000", &[]), global);
        assert_eq!(verdict("[2001:4860::8888]:5000", &[]), global);
        assert_eq!(verdict("8.8.8.8:5000", &["block_global=false"]), None);
        assert_eq!(verdict("192.168.1.5:5000", &[]), None);
        assert_eq!(
            verdict("192.168.1.5:5000", &["block_private=true"]),
            private
        );
        for local in ["127.0.0.1:5000", "[::1]:5000"] {
            assert_eq!(verdict(local, &["block_private=true"]), None, "{local}");
        }
    }
}
