//! The CA in the confdir: created on the first run with mitmproxy's file names and
//! modes, reused on later runs, and a confdir made by the real mitmdump 11.0.2 works.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{curl_trusting, Origin, Proxy, Response, TestPki};

#[test]
fn first_run_creates_ca_files_and_second_run_reuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_in(dir.path(), &[]);
    drop(proxy);

    let key = dir.path().join("mitmproxy-ca.pem");
    let cert = dir.path().join("mitmproxy-ca-cert.pem");
    let cer = dir.path().join("mitmproxy-ca-cert.cer");
    for f in [&key, &cert, &cer] {
        assert!(f.is_file(), "{} missing after the first run", f.display());
    }
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o600,
        "mitmproxy-ca.pem holds the private key and must be 0600, is {mode:o}"
    );

    let key_text = std::fs::read_to_string(&key).unwrap();
    assert!(
        key_text.contains("PRIVATE KEY-----"),
        "mitmproxy-ca.pem should hold the key"
    );
    assert!(
        key_text.contains("-----BEGIN CERTIFICATE-----"),
        "mitmproxy-ca.pem should hold the certificate"
    );
    let cert_bytes = std::fs::read(&cert).unwrap();
    assert!(String::from_utf8_lossy(&cert_bytes).starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(
        !String::from_utf8_lossy(&cert_bytes).contains("PRIVATE KEY"),
        "the public cert must not hold the key"
    );

    let proxy = Proxy::start_in(dir.path(), &[]);
    drop(proxy);
    assert_eq!(
        std::fs::read(&cert).unwrap(),
        cert_bytes,
        "the second run must reuse the CA, not make a new one"
    );
    assert_eq!(
        std::fs::read_to_string(&key).unwrap(),
        key_text,
        "the second run must not rewrite the key"
    );
}

/// `$MITMDUMP`, `/tmp/m/bin/mitmdump` or `<workspace>/.venv/bin/mitmdump`.
fn find_mitmdump() -> PathBuf {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("MITMDUMP").filter(|p| !p.is_empty()) {
        candidates.push(p.into());
    }
    candidates.push("/tmp/m/bin/mitmdump".into());
    candidates.push(support::workspace_root().join(".venv/bin/mitmdump"));
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!(
            "mitmdump 11.0.2 not found (looked at {candidates:?}). This interop test needs the real mitmproxy: \
             run the README's test command, ./scripts/test-all, which installs it into .venv \
             (or set MITMDUMP=/path/to/mitmdump)."
        )
    })
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs mitmdump with `confdir` until it has written its CA files, then stops it.
fn make_mitmproxy_confdir(mitmdump: &Path, confdir: &Path) {
    let child = Command::new(mitmdump)
        .arg("--set")
        .arg(format!("confdir={}", confdir.display()))
        .args(["-p", "0", "--listen-host", "127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", mitmdump.display()));
    let mut guard = KillOnDrop(child);
    // mitmproxy writes mitmproxy-ca.pem, then -ca-cert.pem, then -ca-cert.cer: once
    // the last exists the first two are complete. An external process, so poll.
    let files = [
        "mitmproxy-ca.pem",
        "mitmproxy-ca-cert.pem",
        "mitmproxy-ca-cert.cer",
    ]
    .map(|f| confdir.join(f));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !files.iter().all(|f| f.is_file()) {
        if let Ok(Some(status)) = guard.0.try_wait() {
            panic!(
                "mitmdump exited ({status}) before writing its CA to {}",
                confdir.display()
            );
        }
        assert!(
            Instant::now() < deadline,
            "mitmdump did not write its CA to {} within 30 s",
            confdir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(guard);
}

#[test]
fn confdir_created_by_mitmdump_is_used() {
    let mitmdump = find_mitmdump();
    let dir = tempfile::tempdir().unwrap();
    make_mitmproxy_confdir(&mitmdump, dir.path());
    let theirs = std::fs::read(dir.path().join("mitmproxy-ca-cert.pem")).unwrap();
    // A separate copy of mitmproxy's CA certificate: the only thing curl trusts.
    let trust_dir = tempfile::tempdir().unwrap();
    let trust = trust_dir.path().join("mitmproxy-ca-cert.pem");
    std::fs::write(&trust, &theirs).unwrap();

    let pki = TestPki::new();
    let origin = Origin::https(&pki, |_| Response::ok("served over TLS\n"));
    let ca_opt = format!("ssl_verify_upstream_trusted_ca={}", pki.ca_path.display());
    let proxy = Proxy::start_in(dir.path(), &["--set", &ca_opt]);

    let r = curl_trusting(
        &proxy,
        &trust,
        &[&format!("https://localhost:{}/mitmdump-ca", origin.port)],
    );
    assert!(
        r.ok,
        "curl trusting mitmdump's CA failed: {}\n{}",
        r.stderr,
        proxy.output()
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "served over TLS\n");
    assert_eq!(origin.requests()[0].target, "/mitmdump-ca");
    drop(proxy);
    assert_eq!(
        std::fs::read(dir.path().join("mitmproxy-ca-cert.pem")).unwrap(),
        theirs,
        "mitmrs must use mitmproxy's CA as it is, not replace it"
    );
}
