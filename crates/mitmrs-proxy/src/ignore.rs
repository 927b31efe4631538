//! mitmproxy's `ignore_hosts` and `allow_hosts` (`--ignore-hosts`,
//! `--allow-hosts`): tunnels to matching hosts are relayed as they are, TLS
//! not intercepted (for apps that pin their certificates), as mitmproxy's
//! `next_layer` addon decides.
//!
//! The regexes (Python's spelling, case-insensitive) are searched in
//! `host:port` for the server's address, its IP once connected, and, for a
//! tunnel with a known destination, the ClientHello's SNI or a plain HTTP
//! request's Host header. `allow_hosts`: a tunnel none of whose names matches
//! is relayed; `ignore_hosts`: one with a matching name is. Plain HTTP
//! requests to the proxy itself (regular mode) have no destination before
//! they are read, so they are never ignored, as in mitmproxy.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use mitmrs_core::addon::{Hook, HookSet, LayerKind, Loader, NextLayer};
use mitmrs_core::flowfilter::python_text_regex;
use mitmrs_core::options::{OptionSpec, OptionType, OptionValue, Options, OptionsError};
use mitmrs_core::{Addon, HookResult};

#[derive(Default)]
struct Rules {
    ignore: Vec<regex::Regex>,
    allow: Vec<regex::Regex>,
}

/// The `ignore_hosts`/`allow_hosts` decision.
#[derive(Default)]
pub struct IgnoreHosts {
    rules: RwLock<Arc<Rules>>,
    /// Some rule is set (what `hooks()` reads).
    active: AtomicBool,
}

impl IgnoreHosts {
    fn rules(&self) -> Arc<Rules> {
        self.rules.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn compile(options: &Options, name: &str) -> Result<Vec<regex::Regex>, OptionsError> {
    options
        .get_seq(name)
        .iter()
        .map(|p| {
            python_text_regex(p, b'i', true).map_err(|e| OptionsError::Rejected {
                name: name.into(),
                message: format!("invalid regular expression {p:?}: {e}"),
            })
        })
        .collect()
}

/// The names a tunnel goes by, as `host:port`.
fn hostnames(nl: &NextLayer) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(p) = nl.server.peername {
        names.push(format!("{}:{}", p.ip(), p.port()));
    }
    if let Some((host, port)) = &nl.server.address {
        names.push(format!("{host}:{port}"));
        match nl.layer {
            Some(LayerKind::Tls) => {
                if let Some(sni) = client_hello_sni(&nl.data_client) {
                    names.push(format!("{sni}:{port}"));
                }
            }
            _ => {
                if let Some(h) = host_header(&nl.data_client) {
                    let has_port = h.rsplit_once(':').is_some_and(|(_, p)| {
                        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())
                    });
                    names.push(if has_port { h } else { format!("{h}:{port}") });
                }
            }
        }
        if let Some(sni) = &nl.client.tls.sni {
            names.push(format!("{sni}:{port}"));
        }
    }
    names
}

/// The SNI of a ClientHello at the start of `data`, if it is all there.
fn client_hello_sni(data: &[u8]) -> Option<String> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rd: &[u8] = data;
    acceptor.read_tls(&mut rd).ok()?;
    let accepted = acceptor.accept().ok()??;
    accepted.client_hello().server_name().map(str::to_string)
}

/// The Host header of an HTTP/1 request head at the start of `data`.
fn host_header(data: &[u8]) -> Option<String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(data).ok()?;
    req.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[async_trait]
impl Addon for IgnoreHosts {
    fn name(&self) -> &str {
        "ignorehosts"
    }

    fn hooks(&self) -> HookSet {
        const ACTIVE: HookSet = HookSet::of(&[Hook::Load, Hook::Configure, Hook::NextLayer]);
        ACTIVE.while_on(self.active.load(Ordering::Relaxed))
    }

    fn hooks_change_only_in_configure(&self) -> bool {
        true
    }

    fn load(&self, loader: &mut Loader<'_>) -> HookResult {
        loader.add_option(OptionSpec::new(
            "ignore_hosts",
            OptionType::StrSeq,
            OptionValue::StrSeq(Vec::new()),
            "Ignore host and forward all traffic without processing it. In transparent mode, it is recommended \
             to use an IP address (range), not the hostname. In regular mode, only SSL traffic is ignored and \
             the hostname should be used. The supplied value is interpreted as a regular expression and matched \
             on the ip or the hostname.",
        ))?;
        loader.add_option(OptionSpec::new(
            "allow_hosts",
            OptionType::StrSeq,
            OptionValue::StrSeq(Vec::new()),
            "Opposite of --ignore-hosts.",
        ))?;
        Ok(())
    }

    fn configure(&self, options: &Options, updated: &BTreeSet<String>) -> Result<(), OptionsError> {
        if !updated.contains("ignore_hosts") && !updated.contains("allow_hosts") {
            return Ok(());
        }
        let rules = Rules {
            ignore: compile(options, "ignore_hosts")?,
            allow: compile(options, "allow_hosts")?,
        };
        self.active.store(
            !rules.ignore.is_empty() || !rules.allow.is_empty(),
            Ordering::Relaxed,
        );
        *self.rules.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rules);
        Ok(())
    }

    async fn next_layer(&self, nl: &mut NextLayer) -> HookResult {
        if !matches!(nl.layer, Some(LayerKind::Tls | LayerKind::Http)) {
            return Ok(());
        }
        let rules = self.rules();
        let names = hostnames(nl);
        if names.is_empty() {
            return Ok(());
        }
        let hit = |set: &[regex::Regex]| names.iter().any(|n| set.iter().any(|r| r.is_match(n)));
        let not_allowed = !rules.allow.is_empty() && !hit(&rules.allow);
        if not_allowed || hit(&rules.ignore) {
            tracing::debug!("ignoring {} (ignore_hosts/allow_hosts)", names.join(", "));
            nl.layer = Some(LayerKind::Tcp);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_first_bytes() {
        assert_eq!(
            host_header(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n").as_deref(),
            Some("example.com")
        );
        assert_eq!(host_header(b"\x16\x03\x01"), None);
        assert_eq!(client_hello_sni(b"GET / HTTP/1.1\r\n"), None);
    }
}
