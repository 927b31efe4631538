//! SOCKS5 mode (`--mode socks5`) through the real binary: curl as the SOCKS client
//! for plain HTTP and for HTTPS (intercepted as in a CONNECT tunnel), and raw
//! sockets for the refusals.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use support::{closed_port, Origin, Proxy, Response, TestPki, WAIT};

fn socks_curl(
    proxy: &Proxy,
    flag: &str,
    cacert: &std::path::Path,
    url: &str,
) -> (bool, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", flag])
        .arg(format!("127.0.0.1:{}", proxy.port))
        .arg("--cacert")
        .arg(cacert)
        .arg(url)
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("CURL_CA_BUNDLE")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn plain_http_through_socks5_with_a_hostname_or_an_address() {
    let origin = Origin::http(|req| Response::ok(format!("{} {}\n", req.method, req.target)));
    let proxy = Proxy::start(&["--mode", "socks5"]);
    proxy.expect_stdout("SOCKS v5 proxy listening at 127.0.0.1:");
    for flag in ["--socks5-hostname", "--socks5"] {
        let url = format!("http://127.0.0.1:{}/x?{flag}", origin.port);
        let (ok, body, err) = socks_curl(&proxy, flag, &proxy.ca_cert(), &url);
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
    let (ok, body, err) = socks_curl(&proxy, "--socks5-hostname", &proxy.ca_cert(), &url);
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
