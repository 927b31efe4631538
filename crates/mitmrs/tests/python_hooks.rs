//! Python connection, TLS and next_layer hooks (and their pre-7 names, and the old
//! `log` hook) through the real binary, with curl and local origins. Loopback only.
#![cfg(feature = "python")]

mod support;

use std::path::PathBuf;

use support::*;

fn script(name: &str) -> String {
    let p: PathBuf = workspace_root()
        .join("crates/mitmrs-python/tests/scripts")
        .join(name);
    p.to_str().unwrap().to_string()
}

fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    resp.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// curl -i through the proxy; returns (success, head+body as text).
fn curl_i(p: &Proxy, cacert: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = curl_cmd(p, cacert).arg("-i").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n"),
    )
}

#[test]
fn python_connection_hooks_plain_http() {
    let origin = Origin::http(|r| Response::ok(format!("origin got {}", r.target)));
    let closed = closed_port();
    let blocked = closed_port();
    let s = script("conn_hooks.py");
    let p = Proxy::start(&[
        "-s",
        &s,
        "--set",
        &format!("redirect_from={closed}"),
        "--set",
        &format!("redirect_to={}", origin.port),
        "--set",
        &format!("block_port={blocked}"),
        "--set",
        "reject_client=3",
    ]);
    let ca = p.ca_cert();
    // server_connect changes data.server.address: the request reaches the origin.
    let (ok, r) = curl_i(&p, &ca, &[&format!("http://127.0.0.1:{closed}/redirected")]);
    assert!(
        ok && r.contains("origin got /redirected"),
        "{r}\n{}",
        p.output()
    );
    assert_eq!(
        header(&r, "x-server-address"),
        Some(&*format!("127.0.0.1:{}", origin.port)),
        "{r}"
    );
    assert_eq!(
        header(&r, "x-server-peer-port"),
        Some(&*origin.port.to_string()),
        "{r}"
    );
    assert_eq!(header(&r, "x-client-peer"), Some("127.0.0.1"), "{r}");
    assert_eq!(
        header(&r, "x-client-number"),
        Some("1"),
        "client attributes set in client_connected stay: {r}"
    );
    assert_eq!(header(&r, "x-client-sni"), Some("None"), "{r}");
    assert_eq!(header(&r, "x-server-sockname"), Some("True"), "{r}");
    p.expect_stdout(&format!(
        "HOOK server_connect 127.0.0.1:{closed} client=127.0.0.1"
    ));
    p.expect_stdout(&format!(
        "HOOK server_connected {} peer={}",
        origin.port, origin.port
    ));
    p.expect_stdout("HOOK client_connected 127.0.0.1 n=1 sockname_port=True");
    p.expect_stdout("HOOK client_disconnected n=1");
    p.expect_stdout("HOOK next_layer HttpLayer starts_tls=False");
    // data.server.error refuses the connection: server_connect_error, a 502 naming it.
    let (_, r) = curl_i(&p, &ca, &[&format!("http://127.0.0.1:{blocked}/")]);
    assert!(
        r.starts_with("HTTP/1.1 502") && r.contains("blocked by script"),
        "{r}"
    );
    p.expect_stdout("HOOK server_connect_error blocked by script");
    // client.error in client_connected closes the third connection.
    let (ok, r) = curl_i(
        &p,
        &ca,
        &[&format!("http://127.0.0.1:{}/third", origin.port)],
    );
    assert!(!ok && r.is_empty(), "{r}");
    assert!(!origin
        .requests()
        .iter()
        .any(|q| q.target.ends_with("/third")));
    p.expect_stdout("HOOK client_connected 127.0.0.1 n=3");
    let (ok, r) = curl_i(
        &p,
        &ca,
        &[&format!("http://127.0.0.1:{}/fourth", origin.port)],
    );
    assert!(
        ok && r.contains("origin got /fourth"),
        "the proxy goes on: {r}"
    );
    p.expect_stdout(&format!("HOOK server_disconnected {}", origin.port));
}

#[test]
fn python_connection_hooks_tls() {
    let pki = TestPki::new();
    let origin = Origin::https(&pki, |r| {
        Response::ok(format!("tls origin got {}", r.target))
    });
    let tcp_origin = Origin::https(&pki, |r| {
        Response::ok(format!("tcp origin got {}", r.target))
    });
    let s = script("conn_hooks.py");
    let trust = format!("ssl_verify_upstream_trusted_ca={}", pki.ca_path.display());
    let p = Proxy::start(&[
        "-s",
        &s,
        "--set",
        &trust,
        "--set",
        &format!("tcp_port={}", tcp_origin.port),
    ]);
    let ca = p.ca_cert();
    // Intercepted (curl offers h2 and http/1.1).
    let (ok, r) = curl_i(
        &p,
        &ca,
        &[&format!("https://localhost:{}/secure", origin.port)],
    );
    assert!(
        ok && r.contains("tls origin got /secure"),
        "{r}\n{}",
        p.output()
    );
    assert_eq!(header(&r, "x-client-sni"), Some("localhost"), "{r}");
    assert_eq!(header(&r, "x-client-alpn"), Some("b'http/1.1'"), "{r}");
    assert!(
        header(&r, "x-client-tls").is_some_and(|v| v.starts_with("TLSv1.")),
        "{r}"
    );
    assert_eq!(header(&r, "x-server-sni"), Some("localhost"), "{r}");
    assert!(
        header(&r, "x-server-tls").is_some_and(|v| v.starts_with("TLSv1.")),
        "{r}"
    );
    assert_eq!(
        header(&r, "x-server-address"),
        Some(&*format!("localhost:{}", origin.port)),
        "{r}"
    );
    let got = origin.requests();
    assert_eq!(
        got.last().unwrap().header("x-client-sni"),
        Some("localhost")
    );
    p.expect_stdout(&format!(
        "HOOK http_connect localhost:{} method=CONNECT",
        origin.port
    ));
    p.expect_stdout(&format!("HOOK http_connected {} status=200", origin.port));
    p.expect_stdout("HOOK next_layer ClientTLSLayer starts_tls=True");
    p.expect_stdout("HOOK tls_clienthello sni=localhost alpn=[b'h2', b'http/1.1']");
    p.expect_stdout("HOOK tls_established_server sni=localhost alpn=b'http/1.1' version=TLSv1.");
    p.expect_stdout("HOOK tls_established_client sni=localhost version=TLSv1.");
    p.expect_stdout(&format!(
        "HOOK request https://localhost:{}/secure client_number=",
        origin.port
    ));

    // data.ignore_connection: relayed unchanged, the client sees the origin's own
    // certificate (trusting only the origin CA works) and no script headers.
    let (ok, r) = curl_i(
        &p,
        &pki.ca_path,
        &[
            "--http1.1",
            &format!("https://localhost:{}/ignored", origin.port),
        ],
    );
    assert!(ok && r.contains("tls origin got /ignored"), "{r}");
    assert_eq!(header(&r, "x-client-sni"), None, "{r}");
    p.expect_stdout("HOOK tls_clienthello sni=localhost alpn=[b'http/1.1']");

    // next_layer sets a TCPLayer: relayed unchanged too.
    let (ok, r) = curl_i(
        &p,
        &pki.ca_path,
        &[&format!("https://localhost:{}/tcp", tcp_origin.port)],
    );
    assert!(ok && r.contains("tcp origin got /tcp"), "{r}");
    assert_eq!(header(&r, "x-client-sni"), None, "{r}");

    // A client that rejects our certificate: tls_failed_client with the error.
    let (ok, _) = curl_i(
        &p,
        &pki.ca_path,
        &[&format!("https://localhost:{}/fail", origin.port)],
    );
    assert!(!ok);
    p.expect_stdout("HOOK tls_failed_client error=");

    // An upstream we cannot verify: tls_failed_server.
    let p2 = Proxy::start(&["-s", &s]);
    let (_, r) = curl_i(
        &p2,
        &p2.ca_cert(),
        &[&format!("https://localhost:{}/unverified", origin.port)],
    );
    assert!(!r.contains("tls origin got"), "{r}");
    p2.expect_stdout("HOOK tls_failed_server error=");
}

#[test]
fn python_old_connection_hook_names_and_log_hook() {
    let origin = Origin::http(|r| Response::ok(format!("origin got {}", r.target)));
    let s = script("oldconn.py");
    let p = Proxy::start(&["-s", &s]);
    for w in [
        "'clientconnect' hook is deprecated, use 'client_connected'",
        "'clientdisconnect' hook is deprecated, use 'client_disconnected'",
        "'serverconnect' hook is deprecated, use 'server_connect'",
        "'serverdisconnect' hook is deprecated, use 'server_disconnected'",
        "'log' hook is deprecated, use 'add_log'",
    ] {
        p.expect_stdout(w);
    }
    for i in 0..2 {
        let (ok, r) = curl_i(
            &p,
            &p.ca_cert(),
            &[&format!("http://127.0.0.1:{}/{i}", origin.port)],
        );
        assert!(ok && r.contains(&format!("origin got /{i}")), "{r}");
    }
    p.expect_stdout("OLD clientconnect 127.0.0.1");
    p.expect_stdout("OLD serverconnect 127.0.0.1");
    p.expect_stdout("OLD clientdisconnect");
    p.expect_stdout("OLD serverdisconnect 127.0.0.1");
    p.expect_stdout("OLD log hook got 'PING from request' level=info");
    p.expect_stdout("OLD log hook got 'PING error level' level=error");
    let out = p.stop().join("\n");
    // One warning per old name, however often the hook runs.
    assert_eq!(
        out.matches("'clientconnect' hook is deprecated").count(),
        1,
        "{out}"
    );
    // Records logged by the log hook are not fed back to it.
    assert!(!out.contains("OLD log hook got 'OLD log hook"), "{out}");
}
