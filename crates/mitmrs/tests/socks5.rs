//! SOCKS5 mode (`--mode socks5`) through the real binary: curl as the SOCKS client
//! for plain HTTP and for HTTPS (intercepted as in a CONNECT tunnel), and raw
//! sockets for the refusals.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;

use support::{closed_port, curl_plain, Origin, Proxy, Response, TestPki, WAIT};

/// curl through the proxy as its SOCKS5 server (`flag`: `--socks5` or
/// `--socks5-hostname`), trusting the proxy's CA.
fn socks_curl(proxy: &Proxy, flag: &str, url: &str) -> (bool, String, String) {
    let server = format!("127.0.0.1:{}", proxy.port);
    curl_plain(proxy, &[flag, &server, url])
}

#[test]
fn plain_http_through_socks5_with_a_hostname_or_an_address() {
    let origin = Origin::http(|req| Response::ok(format!("{} {}\n", req.method, req.target)));
    let proxy = Proxy::start(&["--mode", "socks5"]);
    proxy.expect_stdout("SOCKS v5 proxy listening at 127.0.0.1:");
    for flag in ["--socks5-hostname", "--socks5"] {
        let url = format!("http://127.0.0.1:{}/x?{flag}", origin.port);
        let (ok, body, err) = socks_curl(&proxy, flag, &url);
        assert!(ok, "{flag}: {err}\n{}", proxy.output());
        assert_eq!(body, format!("GET /x?{flag}\n"));
        proxy.expect_stdout(&format!("GET http://127.0.0.1:{}/x?{flag}", origin.port));
    }
}

#[test]
fn https_through_socks5_is_intercepted() {
    let pki = TestPki::new();
    let origin = Origin::https(&pki, |req| Response::ok(format!("secure {}\n", req.target)));
    let ca_opt = format!("ssl_verify_upstream_trusted_ca={}", pki.ca_path.display());
    let proxy = Proxy::start(&["--mode", "socks5", "--set", &ca_opt]);
    let url = format!("https://localhost:{}/s", origin.port);
    let (ok, body, err) = socks_curl(&proxy, "--socks5-hostname", &url);
    assert!(ok, "{err}\n{}", proxy.output());
    assert_eq!(body, "secure /s\n");
    proxy.expect_stdout(&format!("GET https://localhost:{}/s", origin.port));
}

#[test]
fn unreachable_target_is_answered_host_unreachable() {
    let port = closed_port();
    let proxy = Proxy::start(&["--mode", "socks5"]);
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut hello = vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1];
    hello.extend_from_slice(&port.to_be_bytes());
    s.write_all(&hello).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, [5, 0, 5, 4, 0, 1, 0, 0, 0, 0, 0, 0]);
    proxy.expect_stdout(&format!("SOCKS5 CONNECT to 127.0.0.1:{port} failed"));
}

#[test]
fn refusals_answer_as_rfc_1928_and_say_why() {
    let proxy = Proxy::start(&["--mode", "socks5"]);
    for (send, answer, log) in [
        (
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            &[][..],
            "Probably not a SOCKS request",
        ),
        (&[5, 1, 2][..], &[5, 0xff][..], "no authentication"),
        (
            &[5, 1, 0, 5, 2, 0, 1, 1, 2, 3, 4, 0, 80][..],
            &[5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0][..],
            "only CONNECT",
        ),
        (
            &[5, 1, 0, 5, 1, 0, 9, 0][..],
            &[5, 0, 5, 8, 0, 1, 0, 0, 0, 0, 0, 0][..],
            "address type",
        ),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(send).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got, answer, "{send:?}");
        proxy.expect_stdout(log);
    }
}

/// SOCKS5 greeting + CONNECT request for 127.0.0.1:port, as one byte string.
fn handshake(port: u16) -> Vec<u8> {
    let mut v = vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1];
    v.extend_from_slice(&port.to_be_bytes());
    v
}

const SUCCESS: [u8; 12] = [5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0];

fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).unwrap();
    buf
}

/// A TCP origin that greets first, then echoes one line back in upper case.
fn banner_origin() -> (std::thread::JoinHandle<()>, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.write_all(b"220 banner.test ESMTP\r\n").unwrap();
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while s.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
            line.push(b[0]);
        }
        s.write_all(&line.to_ascii_uppercase()).unwrap();
    });
    (h, port)
}

#[test]
fn a_server_that_speaks_first_is_relayed() {
    let (origin, port) = banner_origin();
    let proxy = Proxy::start(&["--mode", "socks5"]);
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(&handshake(port)).unwrap();
    assert_eq!(read_n(&mut s, SUCCESS.len()), SUCCESS);
    let greeting = b"220 banner.test ESMTP\r\n";
    assert_eq!(read_n(&mut s, greeting.len()), greeting);
    s.write_all(b"ehlo me\n").unwrap();
    assert_eq!(read_n(&mut s, 7), b"EHLO ME");
    origin.join().unwrap();
}

#[test]
fn a_client_that_is_not_http_is_relayed_even_pipelined_with_the_handshake() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let origin = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut got = [0u8; 21];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"SSH-2.0-OpenSSH_9.2\r\n");
        s.write_all(b"SSH-2.0-server\r\n").unwrap();
    });
    let proxy = Proxy::start(&["--mode", "socks5"]);
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut all = handshake(port);
    all.extend_from_slice(b"SSH-2.0-OpenSSH_9.2\r\n");
    s.write_all(&all).unwrap();
    assert_eq!(read_n(&mut s, SUCCESS.len()), SUCCESS);
    assert_eq!(read_n(&mut s, 16), b"SSH-2.0-server\r\n");
    origin.join().unwrap();
}

#[test]
fn a_handshake_sent_byte_by_byte_and_http_to_the_tunnels_target() {
    // Absolute-form inside the tunnel still goes to the tunnel's target
    // (mitmproxy's transparent HTTP mode).
    let origin = Origin::http(|req| Response::ok(format!("{} {}\n", req.method, req.target)));
    let proxy = Proxy::start(&["--mode", "socks5"]);
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    for b in handshake(origin.port) {
        s.write_all(&[b]).unwrap();
    }
    assert_eq!(read_n(&mut s, SUCCESS.len()), SUCCESS);
    s.write_all(
        b"GET http://127.0.0.1:1/abs HTTP/1.1\r\nHost: 127.0.0.1:1\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(
        resp.starts_with("HTTP/1.1 200"),
        "{resp}\n{}",
        proxy.output()
    );
    assert!(resp.ends_with("GET /abs\n"), "{resp}");
}

#[cfg(feature = "python")]
#[test]
fn scripts_see_a_socks5_mode_object() {
    let origin = Origin::http(|_| Response::ok("x"));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("mode.py");
    std::fs::write(
        &script,
        "from mitmproxy.proxy.mode_specs import Socks5Mode\n\
         def response(flow):\n\
         \x20   m = flow.client_conn.proxy_mode\n\
         \x20   flow.response.text = f'{isinstance(m, Socks5Mode)} {m.full_spec} {m.description}'\n",
    )
    .unwrap();
    let proxy = Proxy::start(&["--mode", "socks5", "-s", script.to_str().unwrap()]);
    let url = format!("http://127.0.0.1:{}/m", origin.port);
    let (ok, body, err) = socks_curl(&proxy, "--socks5", &url);
    assert!(ok, "{err}\n{}", proxy.output());
    assert_eq!(body, "True socks5 SOCKS v5 proxy");
}

#[test]
fn proxyauth_asks_socks5_clients_for_a_username_and_password() {
    let origin = Origin::http(|req| Response::ok(format!("{}\n", req.target)));
    let proxy = Proxy::start(&["--mode", "socks5", "--set", "proxyauth=ann:secret"]);
    let url = format!("http://127.0.0.1:{}/in", origin.port);
    let as_user = |creds: &str| {
        curl_plain(
            &proxy,
            &[
                "--socks5-hostname",
                &format!("127.0.0.1:{}", proxy.port),
                "--proxy-user",
                creds,
                &url,
            ],
        )
    };
    let (ok, body, err) = as_user("ann:secret");
    assert!(ok, "{err}\n{}", proxy.output());
    assert_eq!(body, "/in\n");
    let (ok, _, _) = as_user("ann:wrong");
    assert!(!ok, "a wrong password must be refused");
    proxy.expect_stdout("authentication failed");
    // A client that offers only "no authentication" gets "no acceptable methods".
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, [5, 0xff]);
    proxy.expect_stdout("Client does not support SOCKS5 with user/password authentication.");
    // The RFC 1929 exchange by hand: success, then the tunnel as usual.
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut hello = vec![5, 1, 2, 1, 3];
    hello.extend_from_slice(b"ann\x06secret");
    s.write_all(&hello).unwrap();
    let mut answer = [0u8; 4];
    s.read_exact(&mut answer).unwrap();
    assert_eq!(answer, [5, 2, 1, 0]);
}

/// A script's `socks5_auth` hook decides (it runs after proxyauth's, as in mitmproxy).
#[cfg(feature = "python")]
#[test]
fn a_script_decides_socks5_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("auth.py");
    std::fs::write(
        &script,
        "def socks5_auth(data):\n    data.valid = data.username == 'py' and data.password == 'ok'\n",
    )
    .unwrap();
    let origin = Origin::http(|_| Response::ok("in\n"));
    let proxy = Proxy::start(&[
        "--mode",
        "socks5",
        "--set",
        "proxyauth=any",
        "-s",
        script.to_str().unwrap(),
    ]);
    let url = format!("http://127.0.0.1:{}/", origin.port);
    let server = format!("127.0.0.1:{}", proxy.port);
    let (ok, body, err) = curl_plain(
        &proxy,
        &["--socks5-hostname", &server, "--proxy-user", "py:ok", &url],
    );
    assert!(ok && body == "in\n", "{err}\n{}", proxy.output());
    let (ok, _, _) = curl_plain(
        &proxy,
        &[
            "--socks5-hostname",
            &server,
            "--proxy-user",
            "any:thing",
            &url,
        ],
    );
    assert!(!ok, "the script refuses what proxyauth=any accepted");
}
