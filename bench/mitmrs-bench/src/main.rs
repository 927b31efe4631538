//! mitmrs-bench: the benchmark harness for mitmrs.
//!
//! Subcommands:
//! * `origin`: the HTTP/1.1 + h2 + TLS + WebSocket origin server;
//! * `load`: the load client (CONNECT + TLS, keep-alive or not, fixed rate,
//!   hdrhistogram latencies, hold mode for idle connections);
//! * `all` (the default): run the metrics and print the markdown table.
//!
//! `mitmrs-bench --quick --only M1,M4` is the same as `mitmrs-bench all --quick --only M1,M4`.

mod body;
mod defs;
mod load;
mod machine;
mod metrics;
mod origin;
mod peers;
mod procs;
mod report;
mod runner;
mod tlsutil;
mod ws;
mod wsload;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "mitmrs-bench",
    about = "Benchmark harness for mitmrs (see bench/README.md)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the metrics and print the table (writes bench/RESULTS.md).
    All(runner::RunArgs),
    /// Run the origin server; prints `listening http=ADDR tls=ADDR ca=PATH`.
    Origin(origin::OriginArgs),
    /// Run the load client; prints `RESULT key=value ...`.
    Load(load::LoadArgs),
    /// The WebSocket load client (M11).
    Wsload(wsload::WsArgs),
}

fn main() {
    let mut argv: Vec<String> = std::env::args().collect();
    let sub = argv.get(1).map(String::as_str);
    if sub.is_none()
        || sub.is_some_and(|s| s.starts_with("--") && s != "--help" && s != "--version")
    {
        argv.insert(1, "all".into());
    }
    let cli = Cli::parse_from(argv);
    let res = match cli.cmd {
        Cmd::All(a) => runner::run_all(a),
        Cmd::Origin(a) => origin::run(a),
        Cmd::Load(a) => load::run(a),
        Cmd::Wsload(a) => wsload::run(a),
    };
    if let Err(e) = res {
        eprintln!("mitmrs-bench: {e:#}");
        std::process::exit(1);
    }
}
