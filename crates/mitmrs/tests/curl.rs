//! Real clients (curl, Python's urllib) through the real binary to real local
//! origins: plain HTTP, request bodies, keep-alive, HTTPS through CONNECT, and the
//! error answers (502) for unreachable servers and failed upstream TLS.

mod support;

use std::process::{Command, Stdio};

use support::{closed_port, curl, curl_cmd, test_bytes, Origin, Proxy, Response, TestPki};

/// An origin that echoes the request body and describes the request in headers.
fn echo_origin() -> Origin {
    Origin::http(|req| {
        let body = if req.method == "GET" {
            format!("hello from {}\n", req.target).into_bytes()
        } else {
            req.body.clone()
        };
        let mut r = Response::ok(body);
        r.headers.push(("X-Method".into(), req.method.clone()));
        r
    })
}

#[test]
fn http_get() {
    let origin = echo_origin();
    let proxy = Proxy::start(&[]);
    let r = curl(
        &proxy,
        &[&format!("http://127.0.0.1:{}/get?x=1", origin.port)],
    );
    assert!(r.ok, "curl failed: {}\n{}", r.stderr, proxy.output());
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello from /get?x=1\n");
    let reqs = origin.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "GET");
    // The origin gets origin-form, not the absolute-form the proxy received.
    assert_eq!(reqs[0].target, "/get?x=1");
    assert_eq!(
        reqs[0].header("host"),
        Some(format!("127.0.0.1:{}", origin.port).as_str())
    );
    assert!(
        reqs[0].header("proxy-connection").is_none(),
        "hop-by-hop Proxy-Connection must not reach the origin"
    );
}

#[test]
fn post_with_content_length() {
    let origin = echo_origin();
    let proxy = Proxy::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let data = test_bytes(300 * 1024);
    let file = dir.path().join("body.bin");
    std::fs::write(&file, &data).unwrap();
    let r = curl(
        &proxy,
        &[
            "--data-binary",
            &format!("@{}", file.display()),
            "-H",
            "Content-Type: application/octet-stream",
            &format!("http://127.0.0.1:{}/upload", origin.port),
        ],
    );
    assert!(r.ok, "curl failed: {}\n{}", r.stderr, proxy.output());
    assert_eq!(r.status, 200);
    assert!(
        r.body == data,
        "echoed body differs ({} bytes, sent {})",
        r.body.len(),
        data.len()
    );
    let reqs = origin.requests();
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(
        reqs[0].header("content-length"),
        Some(data.len().to_string().as_str())
    );
    assert!(reqs[0].body == data, "the origin got a different body");
}

#[test]
fn post_chunked() {
    let origin = echo_origin();
    let proxy = Proxy::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let data = test_bytes(200 * 1024 + 17);
    let file = dir.path().join("body.bin");
    std::fs::write(&file, &data).unwrap();
    let r = curl(
        &proxy,
        &[
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &format!("@{}", file.display()),
            &format!("http://127.0.0.1:{}/chunked", origin.port),
        ],
    );
    assert!(r.ok, "curl failed: {}\n{}", r.stderr, proxy.output());
    assert_eq!(r.status, 200);
    assert!(
        r.body == data,
        "echoed body differs ({} bytes, sent {})",
        r.body.len(),
        data.len()
    );
    let reqs = origin.requests();
    assert_eq!(reqs[0].method, "POST");
    assert!(
        reqs[0].body == data,
        "the origin got a different body ({} bytes)",
        reqs[0].body.len()
    );
}

#[test]
fn keep_alive_reuses_client_and_server_connections() {
    let origin = echo_origin();
    let proxy = Proxy::start(&[]);
    let out = curl_cmd(&proxy, &proxy.ca_cert())
        .arg(format!("http://127.0.0.1:{}/one", origin.port))
        .arg(format!("http://127.0.0.1:{}/two", origin.port))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.output()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from /one\nhello from /two\n"
    );
    assert_eq!(origin.requests().len(), 2);
    assert_eq!(
        origin.connections(),
        1,
        "the proxy should reuse its server connection"
    );
    // The flow line of the second request shows both went through.
    proxy.expect_stdout(&format!("GET http://127.0.0.1:{}/two", origin.port));
    let connects = proxy
        .stdout
        .snapshot()
        .iter()
        .filter(|l| l.contains("client connect"))
        .count();
    assert_eq!(
        connects,
        1,
        "curl should reuse its proxy connection:\n{}",
        proxy.output()
    );
}

#[test]
fn https_through_connect() {
    let pki = TestPki::new();
    let origin = Origin::https(&pki, |req| {
        Response::ok(format!("secure {} {}\n", req.method, req.target))
    });
    let ca_opt = format!("ssl_verify_upstream_trusted_ca={}", pki.ca_path.display());
    let proxy = Proxy::start(&["--set", &ca_opt]);
    let r = curl(
        &proxy,
        &[&format!("https://localhost:{}/secret?q=1", origin.port)],
    );
    assert!(r.ok, "curl failed: {}\n{}", r.stderr, proxy.output());
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "secure GET /secret?q=1\n");
    assert_eq!(origin.connections(), 1);
    proxy.expect_stdout(&format!("GET https://localhost:{}/secret?q=1", origin.port));
}

#[test]
fn unreachable_server_gives_502_naming_it() {
    let port = closed_port();
    let proxy = Proxy::start(&[]);
    let r = curl(&proxy, &[&format!("http://127.0.0.1:{port}/nothing")]);
    assert_eq!(r.status, 502, "stderr: {}\nbody: {}", r.stderr, r.text());
    assert!(
        r.text().contains(&format!("127.0.0.1:{port}")),
        "the 502 body should name the server: {}",
        r.text()
    );
}

#[test]
fn upstream_tls_verify_failure_gives_502_and_k_allows_it() {
    let pki = TestPki::new();
    let origin = Origin::https(&pki, |_| Response::ok("should only be seen with -k\n"));
    let url = format!("https://localhost:{}/verify", origin.port);

    // The proxy does not trust the origin's CA.
    let proxy = Proxy::start(&[]);
    let r = curl(&proxy, &[&url]);
    assert_eq!(
        r.status,
        502,
        "stderr: {}\nbody: {}\n{}",
        r.stderr,
        r.text(),
        proxy.output()
    );
    let body = r.text();
    assert!(
        body.contains(&format!("localhost:{}", origin.port)),
        "the 502 body should name the host: {body}"
    );
    assert!(
        body.to_lowercase().contains("certificate"),
        "the 502 body should give the reason (certificate not trusted): {body}"
    );
    assert!(
        origin.requests().is_empty(),
        "no request may reach an unverified server"
    );
    drop(proxy);

    // -k: the same request succeeds.
    let proxy = Proxy::start(&["-k"]);
    let r = curl(&proxy, &[&url]);
    assert!(
        r.ok,
        "curl with proxy -k failed: {}\n{}",
        r.stderr,
        proxy.output()
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "should only be seen with -k\n");
}

#[test]
fn python_urllib_client() {
    let origin = echo_origin();
    let proxy = Proxy::start(&[]);
    let script = r#"
import sys, urllib.request
proxy, url = sys.argv[1], sys.argv[2]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
with opener.open(url, timeout=30) as r:
    sys.stdout.write("%d\n" % r.status)
    sys.stdout.write(r.headers.get("X-Method", "") + "\n")
    sys.stdout.write(r.read().decode())
"#;
    let out = Command::new("python3")
        .args([
            "-c",
            script,
            &proxy.url(),
            &format!("http://127.0.0.1:{}/py?lang=python", origin.port),
        ])
        .env_remove("no_proxy")
        .env_remove("NO_PROXY")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run python3");
    assert!(
        out.status.success(),
        "python3 failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.output()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200\nGET\nhello from /py?lang=python\n"
    );
    // It went through the proxy, not directly.
    proxy.expect_stdout(&format!(
        "GET http://127.0.0.1:{}/py?lang=python",
        origin.port
    ));
    assert_eq!(
        origin.requests()[0].header("host"),
        Some(format!("127.0.0.1:{}", origin.port).as_str())
    );
}

#[test]
fn anticache_and_anticomp_flags_rewrite_requests() {
    let origin = echo_origin();
    let url = format!("http://127.0.0.1:{}/cached", origin.port);
    let args = [
        url.as_str(),
        "-H",
        "If-None-Match: \"v1\"",
        "-H",
        "If-Modified-Since: Sat, 21 Nov 2026 10:00:00 GMT",
        "-H",
        "Accept-Encoding: gzip, br",
    ];
    for (flags, stripped) in [(&[][..], false), (&["--anticache", "--anticomp"][..], true)] {
        let proxy = Proxy::start(flags);
        let r = curl(&proxy, &args);
        assert!(r.ok, "curl failed: {}\n{}", r.stderr, proxy.output());
        let reqs = origin.requests();
        let seen = reqs.last().unwrap();
        assert_eq!(
            seen.header("if-none-match").is_none(),
            stripped,
            "{flags:?}"
        );
        assert_eq!(
            seen.header("if-modified-since").is_none(),
            stripped,
            "{flags:?}"
        );
        let want = if stripped { "identity" } else { "gzip, br" };
        assert_eq!(seen.header("accept-encoding"), Some(want), "{flags:?}");
    }
}

#[test]
fn ignore_hosts_relays_the_tunnel_untouched() {
    // The client trusts only the origin's CA: it gets through only if mitmrs does
    // not intercept (the origin's own certificate reaches it).
    let pki = TestPki::new();
    let origin = Origin::https(&pki, |req| Response::ok(format!("direct {}\n", req.target)));
    let url = format!("https://localhost:{}/pinned", origin.port);
    let trusting_origin = |proxy: &Proxy| support::curl_trusting(proxy, &pki.ca_path, &[&url]);

    let proxy = Proxy::start(&["--ignore-hosts", "^LOCALHOST:"]);
    let r = trusting_origin(&proxy);
    assert!(r.ok, "{}\n{}", r.stderr, proxy.output());
    assert_eq!(r.text(), "direct /pinned\n");
    assert!(
        !proxy.output().contains("GET https://"),
        "{}",
        proxy.output()
    );
    drop(proxy);

    // Lazy strategy: not connected yet when deciding, the destination is known.
    let proxy = Proxy::start(&[
        "--ignore-hosts",
        "^localhost:",
        "--set",
        "connection_strategy=lazy",
    ]);
    assert!(trusting_origin(&proxy).ok, "{}", proxy.output());
    drop(proxy);

    // Not listed in allow_hosts: relayed too.
    let proxy = Proxy::start(&["--allow-hosts", "example\\.com"]);
    assert!(trusting_origin(&proxy).ok);
    drop(proxy);

    // Otherwise intercepted: the origin's CA does not vouch for mitmrs's certificate.
    let proxy = Proxy::start(&["--ignore-hosts", "example\\.com"]);
    let r = trusting_origin(&proxy);
    assert!(
        !r.ok,
        "intercepted, so the client must refuse the certificate"
    );

    // A bad regex is refused at start.
    let out = support::run_bin(&["--ignore-hosts", "a("]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ignore_hosts"));
}
