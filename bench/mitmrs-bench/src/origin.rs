//! The benchmark origin: HTTP/1.1 and h2 (plain and TLS) on hyper.
//!
//! Routes:
//! * `GET /small` (and `/`): a fixed 166-byte HTML body (about the size of the
//!   page nginx benchmarks usually use).
//! * `GET /bytes/N`: N bytes streamed in 64 KiB frames generated on the fly
//!   (never held in memory), with a `Content-Length`.
//! * `POST /upload`: reads the request body, counting bytes, and replies with
//!   the count as text.
//! * `GET /ws`: WebSocket echo (see [`crate::ws`]).
//!
//! Nothing here unwraps data coming from a peer: malformed input gets a 4xx or
//! closes that connection only.

use crate::body::RepeatBody;
use crate::tlsutil;
use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// The fixed small body: exactly 166 bytes.
pub const SMALL_BODY: &[u8] = b"<!DOCTYPE html>\n<html><head><title>mitmrs-bench origin</title></head>\n<body><p>Small fixed body served by the mitmrs-bench origin for proxy tests!!</p></body></html>\n";

pub type OriginBody = Either<Full<Bytes>, RepeatBody>;

/// Command-line options of `mitmrs-bench origin`.
#[derive(clap::Args, Debug, Clone)]
pub struct OriginArgs {
    /// Plain HTTP port on 127.0.0.1 (0 = ephemeral).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// TLS port on 127.0.0.1 (0 = ephemeral).
    #[arg(long, default_value_t = 0)]
    pub tls_port: u16,
    /// Where to write the origin CA certificate (PEM).
    #[arg(long, default_value = "origin-ca.pem")]
    pub ca_out: PathBuf,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

pub fn run(args: OriginArgs) -> Result<()> {
    crate::procs::raise_nofile_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(serve(args))
}

async fn serve(args: OriginArgs) -> Result<()> {
    let tls = tlsutil::origin_tls()?;
    std::fs::write(&args.ca_out, &tls.ca_pem)
        .with_context(|| format!("writing {}", args.ca_out.display()))?;
    let plain = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port))).await?;
    let secure = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.tls_port))).await?;
    println!(
        "listening http={} tls={} ca={}",
        plain.local_addr()?,
        secure.local_addr()?,
        args.ca_out.display()
    );
    let acceptor = TlsAcceptor::from(tls.server_config);
    let plain_task = tokio::spawn(accept_loop(plain, None));
    let tls_task = tokio::spawn(accept_loop(secure, Some(acceptor)));
    let _ = tokio::try_join!(plain_task, tls_task)?;
    Ok(())
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(_) => {
                // EMFILE and friends: back off instead of spinning or exiting.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_conn(stream).await,
                Some(acc) => {
                    if let Ok(s) = acc.accept(stream).await {
                        serve_io(TokioIo::new(s)).await
                    }
                }
            }
        });
    }
}

async fn serve_conn(stream: TcpStream) {
    serve_io(TokioIo::new(stream)).await
}

async fn serve_io<I>(io: I)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let _ = builder
        .serve_connection_with_upgrades(io, service_fn(handle))
        .await;
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<OriginBody> {
    let mut resp = Response::new(Either::Left(Full::new(body.into())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    resp
}

async fn handle(req: Request<Incoming>) -> Result<Response<OriginBody>, Infallible> {
    let path = req.uri().path().to_string();
    let resp = match (req.method(), path.as_str()) {
        (&Method::GET | &Method::HEAD, "/" | "/small") => {
            let mut r = Response::new(Either::Left(Full::new(Bytes::from_static(SMALL_BODY))));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/html"),
            );
            r
        }
        (&Method::GET, p) if p.starts_with("/bytes/") => {
            match p["/bytes/".len()..].parse::<u64>() {
                Ok(n) => {
                    let mut r = Response::new(Either::Right(RepeatBody::new(n)));
                    r.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/octet-stream"),
                    );
                    r
                }
                Err(_) => text(StatusCode::BAD_REQUEST, "bad length\n"),
            }
        }
        (&Method::POST | &Method::PUT, "/upload") => {
            let mut body = req.into_body();
            let mut n: u64 = 0;
            let mut failed = false;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => {
                        if let Some(d) = f.data_ref() {
                            n += d.len() as u64;
                        }
                    }
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            if failed {
                text(StatusCode::BAD_REQUEST, "upload aborted\n")
            } else {
                text(StatusCode::OK, format!("{n}\n"))
            }
        }
        (&Method::GET, "/ws") => crate::ws::upgrade(req),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(resp)
}

#[cfg(test)]
mod tests {
    #[test]
    fn small_body_is_166_bytes() {
        assert_eq!(super::SMALL_BODY.len(), 166);
    }
}
