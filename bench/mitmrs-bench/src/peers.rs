//! The peers a metric runs against, and how to start each of them.
//!
//! * `direct`: the client talks straight to the origin (no child process).
//! * `nginx reverse`: nginx as a reverse proxy with upstream keep-alive, from
//!   a config generated into a temp prefix, `daemon off`, `worker_processes
//!   auto` (both cores, like the multi-threaded Rust proxies).
//! * `mitmdump` / `mitmdump reverse`: mitmdump 11.0.2 `-q`, regular mode or
//!   `--mode reverse:http://ORIGIN`, confdir in a temp dir, upstream TLS
//!   verified against the origin CA.
//! * `hudsucker`: the bench/hudsucker-peer noop proxy (regular mode).
//! * `mitmrs` / `mitmrs reverse`: target/release/mitmrs `-q`, same flags as
//!   mitmdump.
//!
//! A peer is ready when its port accepts a TCP connection (bounded poll).

use crate::procs::{self, ChildGuard};
use crate::runner::Ctx;
use anyhow::{anyhow, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Direct,
    Nginx,
    Mitmdump,
    Hudsucker,
    Mitmrs,
}

/// Per-metric peer options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Opts {
    pub reverse: bool,
    pub stream_large: bool,
    pub script: bool,
    /// Save every flow with `-w <peer dir>/flows.mitm` (M12).
    pub save: bool,
    /// mitmrs only: `--set stream_websockets=true` (M11; mitmdump 11 has no
    /// such option and always joins messages).
    pub stream_ws: bool,
    /// nginx only: listen with TLS and HTTP/2 (M10; the mitm proxies in reverse
    /// mode take TLS and h2 on their one port anyway).
    pub h2: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerSpec {
    pub kind: Kind,
    pub opts: Opts,
}

impl PeerSpec {
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            opts: Opts::default(),
        }
    }
    pub fn reverse(kind: Kind) -> Self {
        Self {
            kind,
            opts: Opts {
                reverse: true,
                ..Opts::default()
            },
        }
    }
    pub fn with(mut self, f: impl FnOnce(&mut Opts)) -> Self {
        f(&mut self.opts);
        self
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Direct => "direct",
            Kind::Nginx => "nginx",
            Kind::Mitmdump => "mitmdump",
            Kind::Hudsucker => "hudsucker",
            Kind::Mitmrs => "mitmrs",
        }
    }

    /// Row label, e.g. `mitmdump reverse` or `mitmrs -s`.
    pub fn name(&self) -> String {
        let mut s = self.kind_name().to_string();
        if self.opts.reverse || self.kind == Kind::Nginx {
            s.push_str(" reverse");
        }
        if self.opts.script {
            s.push_str(" -s");
        }
        if self.opts.save {
            s.push_str(" -w");
        }
        s
    }

    /// Requests go in origin form to the peer's address (direct, reverse proxies).
    pub fn origin_form(&self) -> bool {
        self.opts.reverse || matches!(self.kind, Kind::Direct | Kind::Nginx)
    }
}

/// The file a peer started with `save` writes its flows to, in its directory.
pub const FLOWS_FILE: &str = "flows.mitm";

/// A started peer.
pub struct Peer {
    pub spec: PeerSpec,
    pub guard: Option<ChildGuard>,
    /// Where clients connect.
    pub addr: SocketAddr,
    /// CA that clients trust for intercepted TLS (None for non-intercepting peers).
    pub ca: Option<PathBuf>,
    /// The peer's confdir / working directory (None for direct).
    pub dir: Option<PathBuf>,
}

impl Peer {
    pub fn pid(&self) -> Option<i32> {
        self.guard.as_ref().map(|g| g.pid())
    }
    pub fn name(&self) -> String {
        self.spec.name()
    }
    /// Still running (or has no process)?
    pub fn alive(&mut self) -> bool {
        self.guard.as_mut().is_none_or(|g| g.exited().is_none())
    }
}

/// Build the command line for a peer listening on `port`, using `dir` for
/// confdir / CA / nginx prefix.
pub fn command(ctx: &Ctx, spec: PeerSpec, port: u16, dir: &std::path::Path) -> Result<Command> {
    let origin = ctx.origin.http;
    let listen = port.to_string();
    let mitm_like = |bin: &PathBuf| {
        let mut c = Command::new(bin);
        c.args(["-q", "--listen-host", "127.0.0.1", "-p", &listen])
            .arg("--set")
            .arg(format!("confdir={}", dir.display()))
            .arg("--set")
            .arg(format!(
                "ssl_verify_upstream_trusted_ca={}",
                ctx.origin.ca.display()
            ));
        if spec.opts.reverse {
            c.arg("--mode").arg(format!("reverse:http://{origin}"));
        }
        if spec.opts.stream_large {
            c.args(["--set", "stream_large_bodies=1m"]);
        }
        if spec.opts.save {
            c.arg("-w").arg(dir.join(FLOWS_FILE));
        }
        if spec.opts.stream_ws && spec.kind == Kind::Mitmrs {
            c.args(["--set", "stream_websockets=true"]);
        }
        if spec.opts.script {
            c.arg("-s")
                .arg(ctx.root.join("bench/scripts/add_header.py"));
        }
        c
    };
    Ok(match spec.kind {
        Kind::Direct => return Err(anyhow!("direct has no process")),
        Kind::Mitmdump => {
            let bin = ctx
                .tools
                .mitmdump
                .as_ref()
                .ok_or_else(|| anyhow!("mitmdump not installed (run bench/setup)"))?;
            mitm_like(bin)
        }
        Kind::Mitmrs => {
            if !ctx.tools.mitmrs.exists() {
                return Err(anyhow!(
                    "{} not found (cargo build --release -p mitmrs)",
                    ctx.tools.mitmrs.display()
                ));
            }
            mitm_like(&ctx.tools.mitmrs)
        }
        Kind::Hudsucker => {
            let bin = &ctx.tools.hudsucker;
            if !bin.exists() {
                return Err(anyhow!("{} not found (run bench/setup)", bin.display()));
            }
            let mut c = Command::new(bin);
            c.args(["--port", &listen, "--ca-dir"])
                .arg(dir)
                .arg("--upstream-ca")
                .arg(&ctx.origin.ca);
            c
        }
        Kind::Nginx => {
            let bin = ctx
                .tools
                .nginx
                .as_ref()
                .ok_or_else(|| anyhow!("nginx not installed (run bench/setup)"))?;
            let conf = write_nginx_conf(dir, port, origin, ctx.nofile, spec.opts.h2)?;
            let mut c = Command::new(bin);
            c.arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(conf)
                .arg("-e")
                .arg(dir.join("error.log"));
            c
        }
    })
}

fn write_nginx_conf(
    dir: &std::path::Path,
    port: u16,
    origin: SocketAddr,
    nofile: u64,
    h2: bool,
) -> Result<PathBuf> {
    for sub in [
        "tmp/body",
        "tmp/proxy",
        "tmp/fastcgi",
        "tmp/uwsgi",
        "tmp/scgi",
        "logs",
    ] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    // SAFETY: geteuid has no preconditions.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;\n"
    } else {
        ""
    };
    let d = dir.display();
    let listen = if h2 {
        let (cert, key) = crate::tlsutil::write_self_signed(dir)?;
        format!(
            "listen 127.0.0.1:{port} ssl http2 backlog=4096;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    \
             http2_max_concurrent_streams 128;",
            cert.display(),
            key.display()
        )
    } else {
        format!("listen 127.0.0.1:{port} backlog=4096;")
    };
    let conf = format!(
        "{user}worker_processes auto;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
worker_rlimit_nofile {nofile};\nevents {{ worker_connections {nofile}; }}\n\
http {{\n  access_log off;\n  client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
  fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
  keepalive_requests 1000000;\n  upstream origin {{ server {origin}; keepalive 256; keepalive_requests 1000000; }}\n\
  server {{\n    {listen}\n    client_max_body_size 0;\n    location / {{\n\
      proxy_pass http://origin;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n\
      proxy_set_header Host $http_host;\n      proxy_buffering off;\n      proxy_request_buffering off;\n      proxy_buffer_size 64k;\n      proxy_buffers 8 64k;\n      proxy_busy_buffers_size 128k;\n      client_body_buffer_size 64k;\n    }}\n  }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    Ok(path)
}

/// Start a peer and wait (bounded) until it listens and its CA file exists.
pub fn start(ctx: &Ctx, spec: PeerSpec) -> Result<Peer> {
    if spec.kind == Kind::Direct {
        return Ok(Peer {
            spec,
            guard: None,
            addr: ctx.origin.http,
            ca: Some(ctx.origin.ca.clone()),
            dir: None,
        });
    }
    let port = procs::free_port()?;
    let dir = ctx.fresh_dir(&spec.name().replace([' ', '-'], "_"))?;
    let mut cmd = command(ctx, spec, port, &dir)?;
    cmd.stdin(std::process::Stdio::null());
    let mut guard = ChildGuard::spawn(&spec.name(), &mut cmd, Some(&dir.join("peer.log")))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    procs::wait_listening(&mut guard, addr, Duration::from_secs(60))?;
    let ca = match spec.kind {
        Kind::Mitmdump | Kind::Mitmrs => Some(dir.join("mitmproxy-ca-cert.pem")),
        Kind::Hudsucker => Some(dir.join("ca.pem")),
        _ => None,
    };
    if let Some(ca) = &ca {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ca.exists() {
            if Instant::now() > deadline {
                return Err(anyhow!("listening, but no CA at {}", ca.display()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(Peer {
        spec,
        guard: Some(guard),
        addr,
        ca,
        dir: Some(dir),
    })
}
