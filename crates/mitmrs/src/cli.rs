//! The command line, in two stages (as ripgrep does): [`Args`] is the raw flags,
//! parsed by clap with no I/O; [`apply`] turns them into option values in the
//! registry, where every value is checked and every error names the option.

use clap::{ArgAction, Parser};
use mitmrs_core::options::{OptionValue, Options, OptionsError};

/// mitmrs: an intercepting HTTP(S) proxy in the line of mitmdump.
#[derive(Parser, Debug)]
#[command(name = "mitmrs", version, about, disable_version_flag = true)]
pub struct Args {
    /// Filter expression (mitmproxy's language, e.g. `~d example.com & !~c 200`):
    /// only matching flows are shown, saved (`-w`) and read (`-r`). Words are
    /// joined with spaces, as in mitmdump.
    #[arg(value_name = "filter")]
    pub filter: Vec<String>,

    /// Show version number and exit.
    #[arg(long)]
    pub version: bool,

    /// Show all options and their default values, then exit.
    #[arg(long)]
    pub options: bool,

    /// Set an option: `--set name=value`. A bare name sets a boolean to true;
    /// repeating it for a list option appends.
    #[arg(long = "set", value_name = "option[=value]", action = ArgAction::Append)]
    pub set: Vec<String>,

    /// Quiet: no flow output, only errors.
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Increase log verbosity.
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    pub verbose: u8,

    /// The display detail level for flows: 0 (quiet) to 4 (very verbose).
    #[arg(long = "flow-detail", value_name = "LEVEL")]
    pub flow_detail: Option<String>,

    /// Address to bind the proxy to (default 127.0.0.1; use 0.0.0.0 to accept other devices).
    #[arg(long = "listen-host", value_name = "HOST")]
    pub listen_host: Option<String>,

    /// Port to bind the proxy to (default 8080; 1080 in socks5 mode).
    #[arg(short = 'p', long = "listen-port", value_name = "PORT")]
    pub listen_port: Option<String>,

    /// Do not verify upstream server TLS certificates.
    #[arg(short = 'k', long = "ssl-insecure")]
    pub ssl_insecure: bool,

    /// Use the Host header to construct URLs for display.
    #[arg(long)]
    pub showhost: bool,

    /// Strip out request headers that might cause the server to return 304-not-modified.
    #[arg(long)]
    pub anticache: bool,

    /// Try to convince servers to send us un-compressed data.
    #[arg(long)]
    pub anticomp: bool,

    /// Proxy mode: "regular" (the default), "reverse:http(s)://HOST[:PORT]" or "socks5", each
    /// optionally followed by @[LISTEN_HOST:]LISTEN_PORT.
    #[arg(short = 'm', long = "mode", value_name = "MODE", action = ArgAction::Append)]
    pub mode: Vec<String>,

    /// Read flows from file.
    #[arg(short = 'r', long = "rfile", value_name = "PATH")]
    pub rfile: Option<String>,

    /// Stream flows to file as they arrive. Prefix path with + to append. The path
    /// may use strftime codes; a new file is opened when the formatted name changes.
    #[arg(short = 'w', long = "save-stream-file", value_name = "PATH")]
    pub save_stream_file: Option<String>,

    /// Do not start a proxy server (with -r: read, print and save flows, then exit).
    #[arg(short = 'n', long = "no-server")]
    pub no_server: bool,

    /// Execute a Python addon script. May be passed multiple times.
    #[arg(short = 's', long = "scripts", value_name = "SCRIPT", action = ArgAction::Append)]
    pub scripts: Vec<String>,

    /// Map remote resources to another remote URL: "[/flow-filter]/url-regex/replacement",
    /// where the separator can be any character. May be passed multiple times.
    #[arg(short = 'M', long = "map-remote", value_name = "PATTERN", action = ArgAction::Append)]
    pub map_remote: Vec<String>,

    /// Replace in bodies: "[/flow-filter]/regex/[@]replacement", where the separator can be
    /// any character; @ reads the replacement from a file. May be passed multiple times.
    #[arg(short = 'B', long = "modify-body", value_name = "PATTERN", action = ArgAction::Append)]
    pub modify_body: Vec<String>,

    /// Set headers: "[/flow-filter]/header-name/[@]header-value", where the separator can be
    /// any character; @ reads the value from a file; an empty value removes the header. May be
    /// passed multiple times.
    #[arg(short = 'H', long = "modify-headers", value_name = "PATTERN", action = ArgAction::Append)]
    pub modify_headers: Vec<String>,

    /// Relay tunnels to matching hosts without intercepting them (a regex searched in
    /// "host:port": address, IP, SNI). May be passed multiple times.
    #[arg(long = "ignore-hosts", value_name = "HOST", action = ArgAction::Append)]
    pub ignore_hosts: Vec<String>,

    /// Intercept only tunnels to matching hosts; relay the others. May be passed multiple times.
    #[arg(long = "allow-hosts", value_name = "HOST", action = ArgAction::Append)]
    pub allow_hosts: Vec<String>,
}

/// Applies the flags to the registry. `--set` of options not defined yet is
/// deferred until addons have been loaded (a script may define it).
pub fn apply(args: &Args, opts: &Options) -> Result<(), OptionsError> {
    for s in &args.set {
        opts.parse_set(s, true)?;
    }
    let set_str = |name: &str, raw: &str| -> Result<(), OptionsError> {
        let v = opts.parse_value(name, raw)?;
        opts.set(name, v).map(|_| ())
    };
    if let Some(h) = &args.listen_host {
        set_str("listen_host", h)?;
    }
    if let Some(p) = &args.listen_port {
        set_str("listen_port", p)?;
    }
    if let Some(d) = &args.flow_detail {
        set_str("flow_detail", d)?;
    }
    if args.ssl_insecure {
        opts.set("ssl_insecure", OptionValue::Bool(true))?;
    }
    for (on, name) in [
        (args.showhost, "showhost"),
        (args.anticache, "anticache"),
        (args.anticomp, "anticomp"),
    ] {
        if on {
            opts.set(name, OptionValue::Bool(true))?;
        }
    }
    if args.quiet {
        opts.set("flow_detail", OptionValue::Int(0))?;
        opts.set("termlog_verbosity", OptionValue::Str("error".into()))?;
    }
    if args.verbose > 0 {
        // As mitmdump: -v also shows headers (flow_detail 2), overriding -q.
        opts.set("termlog_verbosity", OptionValue::Str("debug".into()))?;
        opts.set("flow_detail", OptionValue::Int(2))?;
    }
    if let Some(p) = &args.rfile {
        opts.set("rfile", OptionValue::Str(p.clone()))?;
    }
    if let Some(p) = &args.save_stream_file {
        opts.set("save_stream_file", OptionValue::Str(p.clone()))?;
    }
    if args.no_server {
        opts.set("server", OptionValue::Bool(false))?;
    }
    if !args.mode.is_empty() {
        opts.set("mode", OptionValue::StrSeq(args.mode.clone()))?;
    }
    for (name, given) in [
        ("scripts", &args.scripts),
        ("map_remote", &args.map_remote),
        ("modify_body", &args.modify_body),
        ("modify_headers", &args.modify_headers),
        ("ignore_hosts", &args.ignore_hosts),
        ("allow_hosts", &args.allow_hosts),
    ] {
        if !given.is_empty() {
            let mut all = opts.get_seq(name);
            all.extend(given.iter().cloned());
            opts.set(name, OptionValue::StrSeq(all))?;
        }
    }
    if !args.filter.is_empty() {
        // As mitmdump: the filter arguments set all three, over `--set`.
        let expr = OptionValue::Str(args.filter.join(" "));
        for name in ["save_stream_filter", "readfile_filter", "dumper_filter"] {
            opts.set(name, expr.clone())?;
        }
    }
    mitmrs_core::options::validate_core(opts)?;
    Ok(())
}
