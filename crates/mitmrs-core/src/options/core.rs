//! Sizes and the core options: mitmproxy's option names, types, defaults and help
//! texts for what the proxy core does, and the checks types cannot express.

use super::*;

/// Parses a size as mitmproxy's `stream_large_bodies` and `body_size_limit`: a
/// number of bytes, optionally followed by a suffix `b`, `k`, `m`, `g` or `t` (either
/// case) for binary multiples: `3m` and `3M` are 3 * 1024 * 1024, `10b` is 10.
/// Surrounding whitespace is ignored. On error, returns what is accepted.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, multiplier) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_lowercase() {
                'b' => 1,
                'k' => 1 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                't' => 1 << 40,
                _ => return Err(SIZE_EXPECTED.to_string()),
            };
            (s[..i].trim_end(), m)
        }
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SIZE_EXPECTED.to_string());
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("{SIZE_EXPECTED} (at most {}t)", u64::MAX >> 40))
}

/// Reads an `optional str` option holding a size (see [`parse_size`]): `Ok(None)`
/// when it is unset, empty or not registered; [`OptionsError::InvalidValue`] when it
/// does not parse.
pub fn size_option(opts: &Options, name: &str) -> Result<Option<u64>, OptionsError> {
    match opts.get_str(name) {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => parse_size(&s)
            .map(Some)
            .map_err(|expected| OptionsError::InvalidValue {
                name: name.to_string(),
                value: s,
                expected,
            }),
    }
}

/// The specs registered by [`register_core_options`].
pub fn core_option_specs() -> Vec<OptionSpec> {
    use OptionType as T;
    use OptionValue as V;
    fn s(v: &str) -> OptionValue {
        OptionValue::Str(v.to_string())
    }
    vec![
        OptionSpec::new(
            "confdir",
            T::Str,
            s("~/.mitmproxy"),
            "Location of the default mitmproxy configuration files, where the CA certificate and key are kept.",
        ),
        OptionSpec::new("server", T::Bool, V::Bool(true), "Start a proxy server. Enabled by default."),
        OptionSpec::new(
            "listen_host",
            T::Str,
            s("127.0.0.1"),
            "Address to bind the proxy server to. Unlike mitmproxy, whose default is all interfaces, the default \
             accepts only local clients: use 0.0.0.0 to accept other devices.",
        ),
        OptionSpec::new(
            "listen_port",
            T::OptInt,
            V::None,
            "Port to bind proxy server(s) to (may be overridden for individual modes, see `mode`). By default, \
             the port is mode-specific. The default regular HTTP proxy spawns on port 8080.",
        ),
        OptionSpec::new("ssl_insecure", T::Bool, V::Bool(false), "Do not verify upstream server SSL/TLS certificates."),
        OptionSpec::new(
            "ssl_verify_upstream_trusted_ca",
            T::OptStr,
            V::None,
            "Path to a PEM formatted trusted CA certificate.",
        ),
        OptionSpec::new(
            "ssl_verify_upstream_trusted_confdir",
            T::OptStr,
            V::None,
            "Path to a directory of trusted CA certificates for upstream server verification prepared using the \
             c_rehash tool.",
        ),
        OptionSpec::new(
            "upstream_cert",
            T::Bool,
            V::Bool(true),
            "Connect to upstream server to look up certificate details.",
        ),
        OptionSpec::new(
            "stream_large_bodies",
            T::OptStr,
            V::None,
            "Stream data to the client if response body exceeds the given threshold. If streamed, the body will not \
             be stored in any way, and such responses cannot be modified. Understands k/m/g suffixes, i.e. 3m for 3 \
             megabytes.",
        ),
        OptionSpec::new(
            "body_size_limit",
            T::OptStr,
            V::None,
            "Byte size limit of HTTP request and response bodies. Understands k/m/g suffixes, i.e. 3m for 3 \
             megabytes.",
        ),
        OptionSpec::new(
            "store_streamed_bodies",
            T::Bool,
            V::Bool(false),
            "Store HTTP request and response bodies when streamed (see `stream_large_bodies`). This increases memory \
             consumption, but makes it possible to inspect streamed bodies.",
        ),
        OptionSpec::new(
            "flow_detail",
            T::Int,
            V::Int(1),
            "The display detail level for flows in mitmdump: 0 (quiet) to 4 (very verbose). 0: no output; 1: \
             shortened request URL with response status code; 2: full request URL with response status code and \
             HTTP headers; 3: 2 + truncated response content, content of WebSocket and TCP messages \
             (content_view_lines_cutoff); 4: 3 + nothing is truncated.",
        ),
        OptionSpec::new(
            "connection_strategy",
            T::Str,
            s("eager"),
            "Determine when server connections should be established. When set to lazy, the proxy tries to defer \
             establishing an upstream connection as long as possible. This makes it possible to use server replay \
             while being offline. When set to eager, the proxy can detect protocols with server-side greetings, as \
             well as accurately mirror TLS ALPN negotiation.",
        )
        .with_choices(["eager", "lazy"]),
        OptionSpec::new(
            "http2",
            T::Bool,
            V::Bool(true),
            "Enable/disable HTTP/2 support. HTTP/2 is enabled by default.",
        ),
        OptionSpec::new(
            "tcp_timeout",
            T::Int,
            V::Int(600),
            "Timeout in seconds for inactive TCP connections. Connections are closed after this many seconds of \
             inactivity.",
        ),
        OptionSpec::new("showhost", T::Bool, V::Bool(false), "Use the Host header to construct URLs for display."),
        OptionSpec::new(
            "content_view_lines_cutoff",
            T::Int,
            V::Int(512),
            "Flow content view lines limit. Limit is enabled by default to speed up flows browsing.",
        ),
        OptionSpec::new("termlog_verbosity", T::Str, s("info"), "Log verbosity.")
            .with_choices(["error", "warn", "info", "alert", "debug"]),
        OptionSpec::new(
            "max_header_size",
            T::OptStr,
            s("64k"),
            "mitmrs-specific (not in mitmproxy): maximum size of a request or response head (start line and \
             headers). A larger request head is answered with 431 Request Header Fields Too Large, a larger \
             response head with 502 Bad Gateway. Understands k/m/g suffixes, i.e. 64k for 64 kilobytes.",
        ),
        OptionSpec::new(
            "max_connections",
            T::Int,
            V::Int(10000),
            "mitmrs-specific (not in mitmproxy): maximum number of concurrent client connections.",
        ),
        OptionSpec::new(
            "mode",
            T::StrSeq,
            V::StrSeq(vec!["regular".to_string()]),
            "The proxy server type to spawn: \"regular\" (an HTTP proxy), \"reverse:http(s)://HOST[:PORT]\" or \"socks5\", \
             each optionally followed by @[LISTEN_HOST:]LISTEN_PORT. mitmrs runs one mode at a time for now; \
             mitmproxy's other modes (transparent, upstream:SPEC, wireguard) come later.",
        ),
        OptionSpec::new(
            "rawtcp",
            T::Bool,
            V::Bool(true),
            "Enable/disable raw TCP connections. TCP connections are enabled by default.",
        ),
        OptionSpec::new(
            "websocket",
            T::Bool,
            V::Bool(true),
            "Enable/disable WebSocket support. WebSocket support is enabled by default.",
        ),
        OptionSpec::new(
            "stream_websockets",
            T::Bool,
            V::Bool(false),
            "mitmrs (mitmproxy 6 had it; 7 to 11 accept and ignore it): pass WebSocket frames on as they arrive \
             instead of joining each message first, so a message of any size goes through in bounded memory. \
             websocket_message still runs once per message, after it has passed, with its content empty; \
             changing or dropping it has no effect.",
        ),
        OptionSpec::new(
            "websocket_history",
            T::Str,
            V::Str("16m".into()),
            "mitmrs-specific (not in mitmproxy): how much message content a WebSocket flow keeps in \
             flow.websocket.messages (and saves with -w). Older messages are dropped first; the current message \
             is always kept. mitmproxy keeps every message, so a long-lived connection grows without end. \
             Understands k/m/g suffixes.",
        ),
        OptionSpec::new(
            "websocket_max_message_size",
            T::Str,
            V::Str("256m".into()),
            "mitmrs-specific (not in mitmproxy): the largest WebSocket message joined in memory. A larger one \
             closes the connection with 1009 (message too big) and a log line naming this option; set \
             stream_websockets to pass such messages on unjoined. Understands k/m/g suffixes.",
        ),
        OptionSpec::new(
            "keep_host_header",
            T::Bool,
            V::Bool(false),
            "Reverse Proxy: Keep the original host header instead of rewriting it to the reverse proxy target.",
        ),
        OptionSpec::new("scripts", T::StrSeq, V::StrSeq(Vec::new()), "Execute a script."),
    ]
}

/// Registers the core options (mitmproxy's names, types, defaults and help, with
/// the differences noted in their help texts). Adding them twice is a no-op.
pub fn register_core_options(opts: &Options) -> Result<(), OptionsError> {
    for spec in core_option_specs() {
        opts.add_option(spec)?;
    }
    Ok(())
}

/// Checks the value constraints of the core options that types cannot express:
/// `listen_port` in 0..=65535, `flow_detail` in 0..=4, `tcp_timeout` >= 0, and
/// `stream_large_bodies`, `body_size_limit` and `max_header_size` parse as sizes.
/// Options that are not registered are skipped.
pub fn validate_core(opts: &Options) -> Result<(), OptionsError> {
    let range = |name: &str, lo: i64, hi: i64, expected: &str| match opts.get_int(name) {
        Some(v) if v < lo || v > hi => Err(OptionsError::InvalidValue {
            name: name.to_string(),
            value: v.to_string(),
            expected: expected.to_string(),
        }),
        _ => Ok(()),
    };
    range("listen_port", 0, 65535, "a port number from 0 to 65535")?;
    range("flow_detail", 0, 4, "a detail level from 0 to 4")?;
    range("tcp_timeout", 0, i64::MAX, "a number of seconds, 0 or more")?;
    for name in [
        "stream_large_bodies",
        "body_size_limit",
        "max_header_size",
        "websocket_history",
        "websocket_max_message_size",
    ] {
        size_option(opts, name)?;
    }
    proxy_mode(opts)?;
    Ok(())
}

/// The `mode` option, parsed: `regular` when unset or empty. mitmrs runs one mode
/// at a time, so a second one is refused.
pub fn proxy_mode(opts: &Options) -> Result<crate::mode::ProxyMode, OptionsError> {
    let modes = opts.get_seq("mode");
    let rejected = |message: String| OptionsError::Rejected {
        name: "mode".into(),
        message,
    };
    match modes.as_slice() {
        [] => Ok(crate::mode::ProxyMode::regular()),
        [one] => crate::mode::ProxyMode::parse(one).map_err(|e| rejected(format!("{one:?}: {e}"))),
        more => Err(rejected(format!(
            "{} modes given ({}): mitmrs runs one mode at a time for now; start one mitmrs per mode",
            more.len(),
            more.join(", ")
        ))),
    }
}
