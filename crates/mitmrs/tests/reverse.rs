//! Reverse mode (`--mode reverse:http(s)://HOST[:PORT]`) through the real binary:
//! curl talks to mitmrs as if it were the server, plain or TLS, and every request
//! goes to the one target, with the Host header rewritten (unless
//! `keep_host_header`), as mitmproxy does.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use support::{closed_port, curl_plain, run_bin, Origin, Proxy, Response, TestPki, WAIT};

/// An origin that answers with the request line and the Host it saw.
fn echo_origin() -> Origin {
    Origin::http(|req| {
        Response::ok(format!(
            "{} {} host={}\n",
            req.method,
            req.target,
            req.header("host").unwrap_or("-")
        ))
    })
}

/// curl straight at the proxy (it is the server); `urls` share one curl run (and
/// so its keep-alive connection).
fn curl_direct(proxy: &Proxy, urls: &[String]) -> (bool, String, String) {
    let mut args = vec!["--noproxy", "*"];
    args.extend(urls.iter().map(String::as_str));
    curl_plain(proxy, &args)
}

/// One plain-HTTP GET straight at the proxy: the body, then a line with the status.
fn plain_get(proxy: &Proxy, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--max-time", "30"])
        .args(["-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{}{path}", proxy.port))
        .output()
        .expect("cannot run curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn plain_http_target_gets_every_request_with_its_own_host_header() {
    let origin = echo_origin();
    let target = format!("127.0.0.1:{}", origin.port);
    let proxy = Proxy::start(&["--mode", &format!("reverse:http://{target}")]);
    let base = format!("http://127.0.0.1:{}", proxy.port);
    let (ok, body, err) = curl_direct(&proxy, &[format!("{base}/a?x=1"), format!("{base}/b")]);
    assert!(ok, "curl failed: {err}\n{}", proxy.output());
    assert_eq!(
        body,
        format!("GET /a?x=1 host={target}\nGET /b host={target}\n")
    );
    assert_eq!(
        origin.connections(),
        1,
        "both requests on one server connection"
    );
    // The flow's URL is the target's, as mitmdump shows it.
    proxy.expect_stdout(&format!("GET http://{target}/a?x=1"));
    proxy.expect_stdout(&format!("GET http://{target}/b"));
}

#[test]
fn keep_host_header_passes_the_clients_host_on() {
    let origin = echo_origin();
    let proxy = Proxy::start(&[
        "--mode",
        &format!("reverse:http://127.0.0.1:{}", origin.port),
        "--set",
        "keep_host_header",
    ]);
    let url = format!("http://localhost:{}/k", proxy.port);
    let (ok, body, err) = curl_direct(&proxy, &[url]);
    assert!(ok, "curl failed: {err}\n{}", proxy.output());
    assert_eq!(body, format!("GET /k host=localhost:{}\n", proxy.port));
}

#[test]
fn https_target_serves_tls_and_plain_clients() {
    let pki = TestPki::new();
    let origin = Origin::https(&pki, |req| {
        Response::ok(format!(
            "secure {} host={}\n",
            req.target,
            req.header("host").unwrap_or("-")
        ))
    });
    let ca_opt = format!("ssl_verify_upstream_trusted_ca={}", pki.ca_path.display());
    let proxy = Proxy::start(&[
        "--mode",
        &format!("reverse:https://localhost:{}", origin.port),
        "--set",
        &ca_opt,
    ]);
    let host = format!("localhost:{}", origin.port);
    // The client speaks TLS to the proxy: intercepted with a certificate from the
    // proxy's CA, then re-encrypted to the target.
    let (ok, body, err) = curl_direct(&proxy, &[format!("https://localhost:{}/t", proxy.port)]);
    assert!(ok, "TLS client: {err}\n{}", proxy.output());
    assert_eq!(body, format!("secure /t host={host}\n"));
    // A plain client: the proxy still speaks TLS to the target.
    let (ok, body, err) = curl_direct(&proxy, &[format!("http://127.0.0.1:{}/p", proxy.port)]);
    assert!(ok, "plain client: {err}\n{}", proxy.output());
    assert_eq!(body, format!("secure /p host={host}\n"));
    proxy.expect_stdout(&format!("GET https://{host}/t"));
}

#[test]
fn untrusted_https_target_gives_502_with_the_reason() {
    let pki = TestPki::new();
    let origin = Origin::https(&pki, |_| Response::ok("must not be seen\n"));
    // The proxy does not trust the origin's CA.
    let proxy = Proxy::start(&[
        "--mode",
        &format!("reverse:https://localhost:{}", origin.port),
    ]);
    let text = plain_get(&proxy, "/v");
    assert!(text.ends_with("\n502"), "{text}\n{}", proxy.output());
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    assert!(origin.requests().is_empty());
}

#[test]
fn unreachable_target_gives_502_naming_it() {
    let port = closed_port();
    let proxy = Proxy::start(&["--mode", &format!("reverse:http://127.0.0.1:{port}")]);
    let text = plain_get(&proxy, "/nothing");
    assert!(text.ends_with("\n502"), "{text}\n{}", proxy.output());
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
}

#[test]
fn connect_is_refused_with_a_reason() {
    let origin = echo_origin();
    let proxy = Proxy::start(&[
        "--mode",
        &format!("reverse:http://127.0.0.1:{}", origin.port),
    ]);
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("reverse mode"), "{answer}");
    assert!(origin.requests().is_empty());
}

#[test]
fn listen_address_from_the_mode_spec() {
    let origin = echo_origin();
    let port = closed_port();
    let proxy = Proxy::start(&[
        "--mode",
        &format!("reverse:http://127.0.0.1:{}@127.0.0.1:{port}", origin.port),
    ]);
    assert_eq!(proxy.port, port, "the @ address overrides -p 0");
}

#[test]
fn bad_mode_specs_are_refused_at_start() {
    for (args, says) in [
        (
            vec!["--mode", "reverse:ftp://example.com"],
            "unknown scheme",
        ),
        (vec!["--mode", "reverse:http://example.com/path"], "no path"),
        (vec!["--mode", "transparent"], "not built yet"),
        (
            vec!["--mode", "regular", "--mode", "reverse:http://a:1"],
            "one mode at a time",
        ),
        (vec!["--set", "mode=reverse:"], "no server given"),
    ] {
        let out = run_bin(&args);
        assert!(!out.status.success(), "{args:?} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("\"mode\"") && err.contains(says),
            "{args:?}: {err}"
        );
    }
}

#[cfg(feature = "python")]
#[test]
fn scripts_see_a_reverse_mode_object() {
    let origin = echo_origin();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("mode.py");
    std::fs::write(
        &script,
        "from mitmproxy.proxy.mode_specs import ProxyMode, ReverseMode\n\
         def response(flow):\n\
         \x20   m = flow.client_conn.proxy_mode\n\
         \x20   flow.response.text = (f'{type(m).__name__} {isinstance(m, ReverseMode)} {m.scheme} '\n\
         \x20       f'{m.address[0]}:{m.address[1]} {m.full_spec} {m.description}\\n')\n",
    )
    .unwrap();
    let spec = format!("reverse:http://127.0.0.1:{}", origin.port);
    let proxy = Proxy::start(&["--mode", &spec, "-s", script.to_str().unwrap()]);
    let (ok, body, err) = curl_direct(&proxy, &[format!("http://127.0.0.1:{}/m", proxy.port)]);
    assert!(ok, "curl failed: {err}\n{}", proxy.output());
    assert_eq!(
        body,
        format!(
            "ReverseMode True http 127.0.0.1:{p} {spec} reverse proxy to http://127.0.0.1:{p}\n",
            p = origin.port
        )
    );
}
