//! mitmproxy's `proxyauth` addon: HTTP Basic authentication of clients.
//!
//! `proxyauth=user:pass` accepts that one pair, `proxyauth=any` any pair. In
//! regular mode a request without valid `Proxy-Authorization` gets a 407 with
//! `Proxy-Authenticate: Basic realm="mitmproxy"` (in reverse mode: 401,
//! `Authorization`, `WWW-Authenticate`); valid credentials are removed from
//! the request before it is forwarded and kept in `flow.metadata["proxyauth"]`.
//! A CONNECT that authenticates makes its whole connection authenticated, so
//! the requests inside the tunnel need no header.
//!
//! In `socks5` mode clients authenticate in the SOCKS5 handshake (username and
//! password, RFC 1929; the `socks5_auth` hook) and their connection counts as
//! authenticated. Not built: htpasswd files (`@path`) and LDAP are refused with
//! a message.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use base64::Engine as _;
use mitmrs_core::addon::{Hook, HookSet, Loader, Socks5AuthData};
use mitmrs_core::flow::MetaValue;
use mitmrs_core::options::{OptionSpec, OptionType, OptionValue, Options, OptionsError};
use mitmrs_core::{Addon, Client, Headers, HookResult, HttpFlow, Response};

const REALM: &str = "mitmproxy";

/// Who may use the proxy.
#[derive(Debug, PartialEq, Eq)]
enum Validator {
    Any,
    Single { user: String, pass: String },
}

impl Validator {
    fn parse(spec: &str) -> Result<Validator, String> {
        if spec == "any" {
            return Ok(Validator::Any);
        }
        if spec.starts_with('@') {
            return Err("htpasswd files are not supported yet; give one user as user:pass".into());
        }
        if spec.starts_with("ldap") {
            return Err("LDAP authentication is not supported; give one user as user:pass".into());
        }
        if !spec.contains(':') {
            return Err("Invalid proxyauth specification.".into());
        }
        match spec.split(':').collect::<Vec<_>>()[..] {
            [user, pass] => Ok(Validator::Single {
                user: user.into(),
                pass: pass.into(),
            }),
            _ => Err("Invalid single-user auth specification.".into()),
        }
    }

    fn accepts(&self, user: &str, pass: &str) -> bool {
        match self {
            Validator::Any => true,
            Validator::Single { user: u, pass: p } => u == user && p == pass,
        }
    }
}

/// mitmproxy's `ProxyAuth`.
#[derive(Default)]
pub struct ProxyAuth {
    validator: RwLock<Option<Arc<Validator>>>,
    /// A validator is set (what `hooks()` reads).
    active: AtomicBool,
    /// Connections authenticated by their CONNECT: client id → (user, password).
    authenticated: Mutex<HashMap<String, (String, String)>>,
}

impl ProxyAuth {
    fn validator(&self) -> Option<Arc<Validator>> {
        self.validator
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Checks the request's credentials: valid ones are removed from the
    /// request and noted in the flow's metadata; otherwise the flow gets the
    /// 407 (401) response.
    fn authenticate(&self, v: &Validator, f: &mut HttpFlow) -> Option<(String, String)> {
        let is_proxy = is_http_proxy(&f.client_conn.proxy_mode);
        let header = if is_proxy {
            "Proxy-Authorization"
        } else {
            "Authorization"
        };
        let creds = f
            .request
            .headers
            .get(header)
            .and_then(|h| parse_basic(&h))
            .filter(|(u, p)| v.accepts(u, p));
        match &creds {
            Some((u, p)) => {
                f.metadata.insert(
                    "proxyauth",
                    MetaValue::List(vec![MetaValue::Str(u.clone()), MetaValue::Str(p.clone())]),
                );
                f.request.headers.remove(header);
            }
            None => f.response = Some(auth_required(is_proxy)),
        }
        creds
    }
}

/// Regular (and upstream) mode: the client talks to a proxy.
fn is_http_proxy(mode: &str) -> bool {
    mode.starts_with("regular") || mode.starts_with("upstream")
}

/// `Basic <base64 of user:password>`, as mitmproxy reads it: two words, the
/// password without a colon.
fn parse_basic(value: &str) -> Option<(String, String)> {
    let words: Vec<&str> = value.split_whitespace().collect();
    let [scheme, info] = words[..] else {
        return None;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    // binascii.a2b_base64 skips characters outside the alphabet.
    let clean: String = info
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
        .collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let raw = engine.decode(clean.trim_end_matches('=')).ok()?;
    let text = String::from_utf8_lossy(&raw);
    match text.split(':').collect::<Vec<_>>()[..] {
        [u, p] => Some((u.to_string(), p.to_string())),
        _ => None,
    }
}

fn auth_required(is_proxy: bool) -> Response {
    let (code, header) = if is_proxy {
        (407, "Proxy-Authenticate")
    } else {
        (401, "WWW-Authenticate")
    };
    let reason = mitmrs_core::status::reason(code);
    Response::make(
        code,
        format!(
            "<html><head><title>{code} {reason}</title></head><body><h1>{code} {reason}</h1></body></html>"
        ),
        Headers::from_pairs([(header, format!("Basic realm=\"{REALM}\""))]),
    )
}

#[async_trait]
impl Addon for ProxyAuth {
    fn name(&self) -> &str {
        "proxyauth"
    }

    fn hooks(&self) -> HookSet {
        const ACTIVE: HookSet = HookSet::of(&[
            Hook::Load,
            Hook::Configure,
            Hook::Socks5Auth,
            Hook::HttpConnect,
            Hook::RequestHeaders,
            Hook::ClientDisconnected,
        ]);
        ACTIVE.while_on(self.active.load(Ordering::Relaxed))
    }

    fn hooks_change_only_in_configure(&self) -> bool {
        true
    }

    fn load(&self, loader: &mut Loader<'_>) -> HookResult {
        loader.add_option(OptionSpec::new(
            "proxyauth",
            OptionType::OptStr,
            OptionValue::None,
            "Require proxy authentication. Format: \"username:pass\", \"any\" to accept any user/pass \
             combination. (mitmproxy's \"@path\" htpasswd files and LDAP are not supported yet.)",
        ))?;
        Ok(())
    }

    fn configure(&self, options: &Options, updated: &BTreeSet<String>) -> Result<(), OptionsError> {
        if !updated.contains("proxyauth") {
            return Ok(());
        }
        let v = match options.get_str("proxyauth").filter(|s| !s.is_empty()) {
            None => None,
            Some(spec) => Some(Arc::new(Validator::parse(&spec).map_err(|message| {
                OptionsError::Rejected {
                    name: "proxyauth".into(),
                    message,
                }
            })?)),
        };
        self.active.store(v.is_some(), Ordering::Relaxed);
        *self.validator.write().unwrap_or_else(|e| e.into_inner()) = v;
        Ok(())
    }

    async fn socks5_auth(&self, data: &mut Socks5AuthData) -> HookResult {
        if let Some(v) = self.validator() {
            if v.accepts(&data.username, &data.password) {
                data.valid = true;
                self.authenticated
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(
                        data.client.id.clone(),
                        (data.username.clone(), data.password.clone()),
                    );
            }
        }
        Ok(())
    }

    async fn http_connect(&self, flow: &mut HttpFlow) -> HookResult {
        if let Some(v) = self.validator() {
            if let Some(creds) = self.authenticate(&v, flow) {
                self.authenticated
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(flow.client_conn.id.clone(), creds);
            }
        }
        Ok(())
    }

    async fn requestheaders(&self, flow: &mut HttpFlow) -> HookResult {
        let Some(v) = self.validator() else {
            return Ok(());
        };
        let known = self
            .authenticated
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&flow.client_conn.id)
            .cloned();
        match known {
            Some((u, p)) => flow.metadata.insert(
                "proxyauth",
                MetaValue::List(vec![MetaValue::Str(u), MetaValue::Str(p)]),
            ),
            None if flow.is_replay.is_some() => {}
            None => {
                self.authenticate(&v, flow);
            }
        }
        Ok(())
    }

    async fn client_disconnected(&self, client: &Client) -> HookResult {
        self.authenticated
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&client.id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(Validator::parse("any"), Ok(Validator::Any));
        assert_eq!(
            Validator::parse("u:p"),
            Ok(Validator::Single {
                user: "u".into(),
                pass: "p".into()
            })
        );
        assert!(Validator::parse("u:p:x").is_err());
        assert!(Validator::parse("nocolon").is_err());
        assert!(Validator::parse("@/etc/htpasswd").is_err());
    }

    #[test]
    fn basic_credentials() {
        assert_eq!(
            parse_basic("Basic dXNlcjpwYXNz"),
            Some(("user".into(), "pass".into()))
        );
        assert_eq!(
            parse_basic("basic  dXNlcjpwYXNz "),
            Some(("user".into(), "pass".into()))
        );
        assert_eq!(parse_basic("Bearer dXNlcjpwYXNz"), None);
        // "a:b:c": mitmproxy refuses a password with a colon.
        assert_eq!(parse_basic("Basic YTpiOmM="), None);
        assert_eq!(parse_basic("Basic"), None);
    }
}
