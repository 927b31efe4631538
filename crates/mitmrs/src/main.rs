//! The `mitmrs` binary: parses the command line, loads the CA and the addons, and
//! runs the proxy until Ctrl-C. anyhow is used only here, at the edge.

/// mimalloc instead of glibc malloc: M1 (small keep-alive requests) makes ~34
/// allocations per request, and glibc's malloc/free were 28% of the proxy's
/// user-space instructions; with mimalloc the total drops 19% (callgrind, 22,000
/// requests: 711 M → 575 M instructions). Idle memory per connection (M8) is unchanged.
/// Built with `no_thp`: mimalloc's own MADV_HUGEPAGE on large regions made the
/// 100 MiB buffered body (M5) stall in THP compaction (0.23 GB/s, 0.44 s CPU) and
/// doubled the idle RSS (9.7 → 18.8 MiB).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
mod logging;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use mitmrs_core::options::{register_core_options, Options};
use mitmrs_core::AddonChain;
use mitmrs_proxy::core_addons::RequestToggle;
use mitmrs_proxy::{Dumper, Proxy, ProxyCtx, Runtime};

fn main() -> ExitCode {
    let args = cli::Args::parse();
    if args.version {
        println!("mitmrs {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let options = Options::new();
    if let Err(e) = register_core_options(&options) {
        eprintln!("mitmrs: internal error registering options: {e}");
        return ExitCode::from(1);
    }
    let mut chain = AddonChain::new();
    // mitmproxy's built-in addons, in its order, then the console output.
    let _ = chain.add(Arc::new(mitmrs_proxy::core_addons::Block::new()), &options);
    let _ = chain.add(
        Arc::new(mitmrs_proxy::modify::BlockList::default()),
        &options,
    );
    let _ = chain.add(Arc::new(RequestToggle::anticache()), &options);
    let _ = chain.add(Arc::new(RequestToggle::anticomp()), &options);
    let _ = chain.add(
        Arc::new(mitmrs_proxy::proxyauth::ProxyAuth::default()),
        &options,
    );
    // mitmproxy's next_layer decisions (before scripts, so a script's choice wins).
    let _ = chain.add(
        Arc::new(mitmrs_proxy::ignore::IgnoreHosts::default()),
        &options,
    );
    let _ = chain.add(Arc::new(mitmrs_flows::ReadFile), &options);
    // Scripts go here, as in mitmproxy: before its rewrite addons, and before the
    // ones that save and print flows (so `-w` and the console show a script's changes).
    let scripts_at = chain.len();
    let _ = chain.add(
        Arc::new(mitmrs_proxy::modify::MapRemote::default()),
        &options,
    );
    let _ = chain.add(
        Arc::new(mitmrs_proxy::modify::ModifyBody::default()),
        &options,
    );
    let _ = chain.add(
        Arc::new(mitmrs_proxy::modify::ModifyHeaders::default()),
        &options,
    );
    let _ = chain.add(Arc::new(mitmrs_flows::Save::new()), &options);
    let _ = chain.add(Arc::new(Dumper::stdout()), &options);
    if args.options {
        print!("{}", options.help_text());
        return ExitCode::SUCCESS;
    }
    if !args.filter.is_empty() {
        if let Err(e) = mitmrs_core::flowfilter::Filter::parse(&args.filter.join(" ")) {
            eprintln!("mitmrs: {e}");
            return ExitCode::from(2);
        }
    }
    if let Err(e) = cli::apply(&args, &options) {
        eprintln!("mitmrs: {e}");
        return ExitCode::from(2);
    }
    // --- Python addon support (issue 3): load `-s` scripts before the deferred
    // `--set` check, since scripts may define the options those set.
    if let Err(code) = load_scripts(&options, &mut chain, scripts_at) {
        return code;
    }
    // --- end Python addon support
    if let Err(e) = options.check_deferred() {
        eprintln!("mitmrs: {e}");
        return ExitCode::from(2);
    }
    logging::init(
        &options
            .get_str("termlog_verbosity")
            .unwrap_or_else(|| "info".into()),
    );
    if !args.filter.is_empty() {
        tracing::info!(
            "Only processing flows that match \"{}\"",
            args.filter.join(" & ")
        );
    }
    match run(options, chain) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mitmrs: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(options: Options, chain: AddonChain) -> anyhow::Result<()> {
    mitmrs_tls::install_crypto_provider();
    let all: std::collections::BTreeSet<String> = options.names().into_iter().collect();
    if let Err(e) = chain.configure(&options, &all) {
        eprintln!("mitmrs: {e}");
        std::process::exit(2);
    }
    let rt = match Runtime::build(&options) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mitmrs: {e}");
            std::process::exit(2);
        }
    };
    let ca = mitmrs_tls::CertAuthority::load_or_create(&rt.cfg.confdir).map_err(|e| {
        anyhow::anyhow!(
            "cannot load or create the CA in {}: {e}",
            rt.cfg.confdir.display()
        )
    })?;
    // The accept loop, options and addons run here; connections run on one
    // thread per CPU (see `Workers`).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = mitmrs_proxy::Workers::start(cpus)
        .map_err(|e| anyhow::anyhow!("cannot start the worker threads: {e}"))?;
    runtime.block_on(async move {
        let ctx = Arc::new(ProxyCtx::new(chain, options.clone(), Arc::new(ca), rt));
        {
            let weak = Arc::downgrade(&ctx);
            options.subscribe(Box::new(move |opts, updated| {
                let Some(ctx) = weak.upgrade() else { return };
                if let Err(e) = ctx.chain.configure(opts, updated) {
                    tracing::error!("{e}");
                }
                match Runtime::build(opts) {
                    Ok(rt) => ctx.set_runtime(rt),
                    Err(e) => tracing::error!("{e}"),
                }
            }));
        }
        // `-n` (server=false): no listener, for reading (`-r`) and saving (`-w`) files.
        let proxy = if options.get_bool("server") {
            let proxy = Proxy::bind(ctx.clone())
                .await
                .map_err(|e| {
                    let addr = ctx.runtime().cfg.listen;
                    anyhow::anyhow!(
                        "cannot listen on {addr}: {e} (choose another port with -p, or --listen-host)"
                    )
                })?
                .with_workers(workers.clone());
            let addr = proxy.local_addr()?;
            let hint = if addr.ip().is_loopback() {
                " Only this machine can connect; use --listen-host 0.0.0.0 to accept other devices."
            } else {
                ""
            };
            // mitmdump's wording: "HTTP(S) proxy listening at …", "reverse proxy to … listening at …".
            let what = ctx.runtime().cfg.mode.description();
            tracing::info!("{what} listening at {addr}.{hint}");
            Some(proxy)
        } else {
            None
        };
        let (tx, rx) = tokio::sync::watch::channel(false);
        ctx.chain.running().await;
        // As mitmdump (its errorcheck addon): an error logged while starting up
        // (a script's load/configure/running, say) stops the proxy.
        let errors = logging::ERRORS_LOGGED.load(std::sync::atomic::Ordering::Relaxed);
        if errors > 0 {
            let plural = if errors > 1 { "s" } else { "" };
            eprintln!("Error{plural} logged during startup, exiting...");
            ctx.chain.done().await;
            std::process::exit(1);
        }
        let server = proxy.map(|p| tokio::spawn(p.run(rx)));
        let mut status = 0;
        match options.get_str("rfile").filter(|p| !p.is_empty()) {
            // As mitmdump: after reading the file, stop unless `keepserving`.
            // A signal during the read stops it between flows, so `-w` ends
            // on a whole record.
            Some(path) => tokio::select! {
                ok = read_file(&path, &options, &ctx) => {
                    if !ok {
                        status = 1;
                    }
                    if options.get_bool("keepserving") {
                        wait_for_shutdown().await;
                    }
                }
                _ = wait_for_shutdown() => {}
            },
            None => wait_for_shutdown().await, // Python addon support: also ctx.master.shutdown()
        }
        let _ = tx.send(true);
        if let Some(server) = server {
            let _ = server.await;
        }
        workers.stop();
        ctx.chain.done().await;
        if status != 0 {
            std::process::exit(status);
        }
        anyhow::Ok(())
    })
}

/// `-r`: runs the file's flows through the addons. False if the read failed.
async fn read_file(path: &str, options: &Options, ctx: &ProxyCtx) -> bool {
    let max = match mitmrs_flows::readfile::max_flow_size(options) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!("{e}");
            return false;
        }
    };
    let reverse = match &ctx.runtime().cfg.mode.kind {
        mitmrs_core::mode::ModeKind::Reverse(t) => Some(t.clone()),
        _ => None,
    };
    let filter = match mitmrs_core::flowfilter::option_filter(options, "readfile_filter") {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("{e}");
            return false;
        }
    };
    match mitmrs_flows::load_flows(path, &ctx.chain, max, reverse.as_ref(), filter.as_ref()).await {
        // Skipped flows make the exit status 1 (mitmdump stops at the first
        // bad flow, with status 1); the summary shows even with -q.
        Ok(summary) if summary.skipped > 0 => {
            tracing::error!(
                "{path}: read {} flows, skipped {} (see the warnings above)",
                summary.loaded,
                summary.skipped
            );
            false
        }
        Ok(_) => true,
        Err(e) => {
            tracing::error!("{e}");
            false
        }
    }
}

// --- Python addon support (issue 3) ---

/// Loads the `scripts` option's Python scripts as one addon. Exit status 2 if a
/// script fails to load, or if this build has no Python support.
fn load_scripts(options: &Options, chain: &mut AddonChain, at: usize) -> Result<(), ExitCode> {
    let scripts = options.get_seq("scripts");
    if scripts.is_empty() {
        return Ok(());
    }
    #[cfg(feature = "python")]
    {
        // Scripts log while loading: set up the console log first.
        logging::init(
            &options
                .get_str("termlog_verbosity")
                .unwrap_or_else(|| "info".into()),
        );
        match mitmrs_python::PythonAddon::new(options, &scripts) {
            Ok(addon) => {
                let _ = chain.insert(at, addon, options);
                Ok(())
            }
            Err(e) => {
                eprintln!("mitmrs: {e}");
                Err(ExitCode::from(2))
            }
        }
    }
    #[cfg(not(feature = "python"))]
    {
        let _ = (chain, at);
        eprintln!("mitmrs: -s/--scripts needs Python addon support; this build was made without the `python` feature");
        Err(ExitCode::from(2))
    }
}

/// Ctrl-C, SIGTERM, or (with Python support) a script's `ctx.master.shutdown()`.
async fn wait_for_shutdown() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(feature = "python")]
    let script = mitmrs_python::shutdown_requested();
    #[cfg(not(feature = "python"))]
    let script = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
        _ = script => {}
    }
}
