//! `mitmrs-bench wsload`: the WebSocket load client for M11.
//!
//! Each connection upgrades `--url` (absolute-form through `--proxy`), then
//! sends `--size`-byte binary messages (masked, one frame) and waits for each
//! echo before the next, until `--duration` or `--messages` is reached. With
//! `--big N` one connection sends a single N-byte message instead and reads
//! its echo, streaming both ways in 64 KiB pieces. The last stdout line is
//! `RESULT requests=… secs=… rps=…` (requests = messages echoed).

use anyhow::{bail, Context, Result};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(clap::Args, Debug, Clone)]
pub struct WsArgs {
    /// The origin's WebSocket URL, e.g. http://127.0.0.1:8080/ws.
    #[arg(long)]
    pub url: String,
    /// Forward proxy HOST:PORT.
    #[arg(long)]
    pub proxy: Option<String>,
    #[arg(long, short = 'c', default_value_t = 32)]
    pub connections: usize,
    #[arg(long, short = 'd', default_value_t = 5.0)]
    pub duration: f64,
    /// Message size in bytes.
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Total message bound.
    #[arg(long)]
    pub messages: Option<u64>,
    /// Send one message of this many bytes instead.
    #[arg(long)]
    pub big: Option<u64>,
}

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const PIECE: usize = 64 * 1024;

async fn open(args: &WsArgs) -> Result<BufReader<TcpStream>> {
    let uri: hyper::Uri = args.url.parse().context("--url")?;
    let authority = uri.authority().context("--url needs a host")?.to_string();
    let (addr, target) = match &args.proxy {
        Some(p) => (p.clone(), args.url.clone()),
        None => (authority.clone(), uri.path().to_string()),
    };
    let s = TcpStream::connect(&addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    s.set_nodelay(true)?;
    let mut s = BufReader::with_capacity(PIECE, s);
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.get_mut().write_all(req.as_bytes()).await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let b = s.read_u8().await.context("reading the 101")?;
        head.push(b);
        if head.len() > 16 * 1024 {
            bail!("response head too long");
        }
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        bail!("no 101: {}", String::from_utf8_lossy(&head));
    }
    Ok(s)
}

fn header(len: u64) -> Vec<u8> {
    let mut h = vec![0x82];
    match len {
        0..=125 => h.push(0x80 | len as u8),
        126..=0xFFFF => {
            h.push(0x80 | 126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            h.push(0x80 | 127);
            h.extend_from_slice(&len.to_be_bytes());
        }
    }
    h.extend_from_slice(&MASK);
    h
}

fn masked(data: &mut [u8], offset: u64) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= MASK[((offset + i as u64) % 4) as usize];
    }
}

/// Reads one (unmasked, single-frame) message header; returns its length.
async fn read_header(s: &mut BufReader<TcpStream>) -> Result<u64> {
    let b0 = s.read_u8().await?;
    let b1 = s.read_u8().await?;
    if b0 & 0x0F == 0x8 {
        bail!("the proxy closed the WebSocket");
    }
    Ok(match b1 & 0x7F {
        126 => u64::from(s.read_u16().await?),
        127 => s.read_u64().await?,
        n => u64::from(n),
    })
}

async fn echo_loop(args: Arc<WsArgs>, count: Arc<AtomicU64>, stop: Arc<AtomicBool>) -> Result<()> {
    let mut s = open(&args).await?;
    let mut msg = header(args.size as u64);
    let mut payload = vec![b'x'; args.size];
    masked(&mut payload, 0);
    msg.extend_from_slice(&payload);
    let mut back = vec![0u8; args.size];
    while !stop.load(Ordering::Relaxed) {
        s.get_mut().write_all(&msg).await?;
        let n = read_header(&mut s).await?;
        if n != args.size as u64 {
            bail!("echo of {n} bytes, sent {}", args.size);
        }
        s.read_exact(&mut back).await?;
        let c = count.fetch_add(1, Ordering::Relaxed) + 1;
        if args.messages.is_some_and(|m| c >= m) {
            stop.store(true, Ordering::Relaxed);
        }
    }
    Ok(())
}

async fn big(args: &WsArgs, n: u64) -> Result<()> {
    let s = open(args).await?;
    let (mut r, mut w) = tokio::io::split(s);
    let t0 = Instant::now();
    let writer = async move {
        w.write_all(&header(n)).await?;
        let mut buf = vec![0u8; PIECE];
        let mut sent = 0u64;
        while sent < n {
            let k = (n - sent).min(PIECE as u64) as usize;
            for (i, b) in buf[..k].iter_mut().enumerate() {
                *b = ((sent + i as u64) % 251) as u8;
            }
            masked(&mut buf[..k], sent);
            w.write_all(&buf[..k]).await?;
            sent += k as u64;
        }
        anyhow::Ok(w)
    };
    let reader = async move {
        // The echo may come in several frames; one reader for all of them.
        let mut br = BufReader::with_capacity(PIECE, &mut r);
        let mut got = 0u64;
        let mut buf = vec![0u8; PIECE];
        while got < n {
            let b0 = br.read_u8().await?;
            let b1 = br.read_u8().await?;
            if b0 & 0x0F == 0x8 {
                bail!("the proxy closed the WebSocket after {got} bytes");
            }
            let mut left = match b1 & 0x7F {
                126 => u64::from(br.read_u16().await?),
                127 => br.read_u64().await?,
                k => u64::from(k),
            };
            while left > 0 {
                let k = left.min(PIECE as u64) as usize;
                br.read_exact(&mut buf[..k]).await?;
                if buf[0] != ((got % 251) as u8) {
                    bail!("echo corrupted at byte {got}");
                }
                got += k as u64;
                left -= k as u64;
            }
        }
        anyhow::Ok(())
    };
    let (w, r) = tokio::join!(writer, reader);
    w?;
    r?;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "RESULT requests=1 errors=0 secs={secs:.4} rps={:.3} bytes={n} bytes_per_sec={:.0}",
        1.0 / secs,
        n as f64 / secs
    );
    Ok(())
}

pub fn run(args: WsArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        if let Some(n) = args.big {
            return big(&args, n).await;
        }
        let args = Arc::new(args);
        let count = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let t0 = Instant::now();
        let tasks: Vec<_> = (0..args.connections)
            .map(|_| tokio::spawn(echo_loop(args.clone(), count.clone(), stop.clone())))
            .collect();
        tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
        stop.store(true, Ordering::Relaxed);
        let secs = t0.elapsed().as_secs_f64();
        let mut errors = 0;
        for t in tasks {
            match tokio::time::timeout(Duration::from_secs(30), t).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => {
                    errors += 1;
                    println!("ERROR {e:#}");
                }
                _ => errors += 1,
            }
        }
        let n = count.load(Ordering::Relaxed);
        println!(
            "RESULT requests={n} errors={errors} secs={secs:.4} rps={:.1}",
            n as f64 / secs
        );
        Ok(())
    })
}
