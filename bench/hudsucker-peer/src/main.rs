//! hudsucker-peer: a noop forward proxy built on the published `hudsucker`
//! crate, used by `mitmrs-bench` as a comparison peer.
//!
//! It does plain HTTP forwarding (absolute-form requests) and CONNECT + TLS
//! interception. At startup it generates a CA with rcgen (re-exported by
//! hudsucker) and writes it to `<ca-dir>/ca.pem` so load clients can trust it.
//! Upstream TLS is verified against `--upstream-ca PEM` (the bench origin's CA)
//! when given, otherwise against the webpki roots.
//!
//! The only deviation from hudsucker's stock `RcgenAuthority` is that leaf
//! certificates carry an IP-address SAN when the CONNECT host is an IP literal
//! (the stock authority always emits a DNS SAN, which rustls clients reject for
//! `127.0.0.1`). Leaf certs are cached per host like the stock authority does.
//!
//! Usage: `hudsucker-peer --port PORT --ca-dir DIR [--upstream-ca PEM] [--threads N]`
//! Prints `listening 127.0.0.1:PORT` once bound.

use hudsucker::{
    certificate_authority::CertificateAuthority,
    hyper::http::uri::Authority,
    rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair},
    rustls::{
        crypto::aws_lc_rs, pki_types::CertificateDer, pki_types::PrivateKeyDer, ClientConfig,
        RootCertStore, ServerConfig,
    },
    Proxy,
};
use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
};

struct IpAwareAuthority {
    issuer: Issuer<'static, KeyPair>,
    leaf_key: KeyPair,
    cache: Mutex<HashMap<String, Arc<ServerConfig>>>,
}

impl IpAwareAuthority {
    fn new() -> Result<(Self, String), String> {
        let ca_key = KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "hudsucker-peer bench CA");
        let cert = params.self_signed(&ca_key).map_err(|e| e.to_string())?;
        let leaf_key = KeyPair::generate().map_err(|e| e.to_string())?;
        let issuer = Issuer::new(params, ca_key);
        Ok((
            Self {
                issuer,
                leaf_key,
                cache: Mutex::new(HashMap::new()),
            },
            cert.pem(),
        ))
    }

    fn make_config(&self, host: &str) -> Arc<ServerConfig> {
        let mut params = CertificateParams::new(vec![host.to_string()])
            .unwrap_or_else(|_| CertificateParams::default());
        params.distinguished_name.push(DnType::CommonName, host);
        let cert = params
            .signed_by(&self.leaf_key, &self.issuer)
            .expect("sign leaf certificate");
        let key = PrivateKeyDer::try_from(self.leaf_key.serialize_der()).expect("leaf key der");
        let mut cfg = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(cert.der().to_vec())], key)
            .expect("server config");
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }
}

impl CertificateAuthority for IpAwareAuthority {
    async fn gen_server_config(&self, authority: &Authority) -> Arc<ServerConfig> {
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if let Some(cfg) = self.cache.lock().expect("cache lock").get(host) {
            return Arc::clone(cfg);
        }
        let cfg = self.make_config(host);
        self.cache
            .lock()
            .expect("cache lock")
            .insert(host.to_string(), Arc::clone(&cfg));
        cfg
    }
}

struct Args {
    port: u16,
    ca_dir: PathBuf,
    upstream_ca: Option<PathBuf>,
    threads: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 0,
        ca_dir: std::env::temp_dir(),
        upstream_ca: None,
        threads: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--port" | "-p" => args.port = val()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--ca-dir" => args.ca_dir = PathBuf::from(val()?),
            "--upstream-ca" => args.upstream_ca = Some(PathBuf::from(val()?)),
            "--threads" => args.threads = val()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "-h" | "--help" => {
                println!(
                    "hudsucker-peer --port PORT --ca-dir DIR [--upstream-ca PEM] [--threads N]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn client_config(upstream_ca: Option<&PathBuf>) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    match upstream_ca {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots.add(cert).map_err(|e| e.to_string())?;
            }
        }
        None => {
            return Err("--upstream-ca is required (no system roots are loaded)".into());
        }
    }
    Ok(
        ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

async fn run(args: Args) -> Result<(), String> {
    let (ca, ca_pem) = IpAwareAuthority::new()?;
    std::fs::create_dir_all(&args.ca_dir).map_err(|e| e.to_string())?;
    let ca_path = args.ca_dir.join("ca.pem");
    std::fs::write(&ca_path, ca_pem).map_err(|e| format!("{}: {e}", ca_path.display()))?;

    let tls = client_config(args.upstream_ca.as_ref())?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();

    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port)))
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;

    let proxy = Proxy::builder()
        .with_listener(listener)
        .with_ca(ca)
        .with_http_connector(connector)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .build()
        .map_err(|e| e.to_string())?;
    println!("listening {local}");
    proxy.start().await.map_err(|e| e.to_string())
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hudsucker-peer: {e}");
            std::process::exit(2);
        }
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        rt.worker_threads(args.threads);
    }
    let rt = rt.enable_all().build().expect("tokio runtime");
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("hudsucker-peer: {e}");
        std::process::exit(1);
    }
}
