//! HTTP/2 towards clients, through the real binary with curl (`--http2`): the
//! client negotiates h2 by ALPN, every stream is a flow (console, hooks, scripts,
//! flow files), bodies buffer or stream both ways, and the server is spoken to
//! in HTTP/1.1 as mitmproxy converts (authority → Host).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use support::{curl_plain, test_bytes, venv_python, Origin, Proxy, Response, TestPki};

/// An origin that answers with what it saw: method, target, Host, body length,
/// and the body's bytes summed (a cheap content check).
fn echo_origin() -> Origin {
    Origin::http(|req| {
        if let Some(n) = req.target.strip_prefix("/bytes/") {
            let n: usize = n.parse().unwrap_or(0);
            return Response::ok(test_bytes(n));
        }
        let sum: u64 = req.body.iter().map(|&b| u64::from(b)).sum();
        Response::ok(format!(
            "{} {} host={} len={} sum={sum}\n",
            req.method,
            req.target,
            req.header("host").unwrap_or("-"),
            req.body.len(),
        ))
    })
}

/// curl with HTTP/2 straight at the proxy (reverse mode): stdout ends with a line
/// "<http_version> <status>" per URL.
fn curl_h2(proxy: &Proxy, args: &[&str]) -> (bool, String, String) {
    let mut all = vec![
        "--http2",
        "--noproxy",
        "*",
        "-w",
        "%{http_version} %{http_code}\n",
    ];
    all.extend_from_slice(args);
    curl_plain(proxy, &all)
}

fn reverse_proxy(origin: &Origin, extra: &[&str]) -> Proxy {
    let mut args = vec![
        "--mode".to_string(),
        format!("reverse:http://127.0.0.1:{}", origin.port),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proxy::start(&args)
}

#[test]
fn a_tls_client_offering_h2_gets_h2_and_the_server_http11_with_host() {
    let origin = echo_origin();
    let proxy = reverse_proxy(&origin, &[]);
    let base = format!("https://127.0.0.1:{}", proxy.port);
    let (ok, out, err) = curl_h2(&proxy, &[&format!("{base}/a?x=1"), &format!("{base}/b")]);
    assert!(ok, "curl failed: {err}\n{}", proxy.output());
    let target = format!("127.0.0.1:{}", origin.port);
    assert_eq!(
        out,
        format!(
            "GET /a?x=1 host={target} len=0 sum=0\n2 200\nGET /b host={target} len=0 sum=0\n2 200\n"
        )
    );
    // Both streams came on one client connection; the server connection was
    // kept for the second.
    assert_eq!(origin.connections(), 1, "{}", proxy.output());
    // mitmdump's lines for a translated flow.
    proxy.expect_stdout(&format!("GET http://{target}/a?x=1 HTTP/2.0"));
    proxy.expect_stdout("<< HTTP/1.1 200 OK");
}

#[test]
fn streams_in_parallel_each_get_their_own_answer() {
    let origin = echo_origin();
    let proxy = reverse_proxy(&origin, &[]);
    let base = format!("https://127.0.0.1:{}", proxy.port);
    let urls: Vec<String> = (0..20).map(|i| format!("{base}/p{i}")).collect();
    let mut args = vec!["--parallel", "--parallel-max", "20"];
    args.extend(urls.iter().map(String::as_str));
    let (ok, out, err) = curl_h2(&proxy, &args);
    assert!(ok, "curl failed: {err}\n{}", proxy.output());
    let target = format!("127.0.0.1:{}", origin.port);
    for i in 0..20 {
        assert!(
            out.contains(&format!("GET /p{i} host={target} len=0 sum=0\n")),
            "stream {i} missing in {out}"
        );
    }
    assert_eq!(out.matches("2 200\n").count(), 20, "{out}");
}

#[test]
fn bodies_go_both_ways_buffered_and_streamed() {
    let origin = echo_origin();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let upload = dir.join("up.bin");
    let data = test_bytes(3 << 20);
    std::fs::write(&upload, &data).unwrap();
    let sum: u64 = data.iter().map(|&b| u64::from(b)).sum();
    for extra in [&[][..], &["--set", "stream_large_bodies=1m"][..]] {
        let proxy = reverse_proxy(&origin, extra);
        let base = format!("https://127.0.0.1:{}", proxy.port);
        let body_arg = format!("@{}", upload.display());
        let (ok, out, err) = curl_h2(&proxy, &["--data-binary", &body_arg, &format!("{base}/up")]);
        assert!(ok, "{extra:?}: curl failed: {err}\n{}", proxy.output());
        assert_eq!(
            out,
            format!(
                "POST /up host=127.0.0.1:{} len={} sum={sum}\n2 200\n",
                origin.port,
                data.len()
            ),
            "{extra:?}"
        );
        // 5 MiB down.
        let file = dir.join("down.bin");
        let (ok, out, err) = curl_h2(
            &proxy,
            &[
                "-o",
                file.to_str().unwrap(),
                &format!("{base}/bytes/5242880"),
            ],
        );
        assert!(ok, "{extra:?}: curl failed: {err}\n{}", proxy.output());
        assert_eq!(out, "2 200\n");
        assert!(
            std::fs::read(&file).unwrap() == test_bytes(5 << 20),
            "{extra:?}: downloaded body differs"
        );
    }
}

#[test]
fn expect_100_continue_is_answered_by_the_proxy() {
    let origin = Origin::http(|req| {
        Response::ok(format!(
            "expect={} len={}\n",
            req.header("expect").unwrap_or("-"),
            req.body.len()
        ))
    });
    let proxy = reverse_proxy(&origin, &[]);
    let body = "x".repeat(1000);
    // curl waits up to --expect100-timeout for the 100 before it sends the body.
    let (ok, out, err) = curl_h2(
        &proxy,
        &[
            "-H",
            "Expect: 100-continue",
            "--expect100-timeout",
            "25",
            "-d",
            &body,
            &format!("https://127.0.0.1:{}/e", proxy.port),
        ],
    );
    assert!(ok, "curl failed: {err}\n{}", proxy.output());
    assert_eq!(out, "expect=- len=1000\n2 200\n");
}

#[test]
fn a_request_body_over_body_size_limit_gets_413() {
    let origin = echo_origin();
    let proxy = reverse_proxy(&origin, &["--set", "body_size_limit=1k"]);
    let body = "x".repeat(4096);
    let (ok, out, err) = curl_h2(
        &proxy,
        &[
            "-d",
            &body,
            &format!("https://127.0.0.1:{}/big", proxy.port),
        ],
    );
    assert!(ok, "curl failed: {err}");
    assert!(out.ends_with("2 413\n"), "{out}");
    assert!(out.contains("body_size_limit"), "{out}");
    assert!(
        origin.requests().is_empty(),
        "the request must not reach the server"
    );
}

#[test]
fn http2_off_answers_http11() {
    let origin = echo_origin();
    let proxy = reverse_proxy(&origin, &["--set", "http2=false"]);
    let (ok, out, err) = curl_h2(&proxy, &[&format!("https://127.0.0.1:{}/o", proxy.port)]);
    assert!(ok, "curl failed: {err}");
    assert!(out.ends_with("1.1 200\n"), "{out}");
}

#[test]
fn in_a_connect_tunnel_h2_is_offered_unless_the_server_chose_http11() {
    let pki = TestPki::new();
    let origin = Origin::https(&pki, |req| Response::ok(format!("tls {}\n", req.target)));
    let ca = format!("ssl_verify_upstream_trusted_ca={}", pki.ca_path.display());
    let url = format!("https://127.0.0.1:{}/t", origin.port);
    // The eager strategy (the default) has TLS with the server first: it chose
    // http/1.1, so the client gets it too (mitmproxy mirrors the server's choice).
    // Lazily, the client's h2 is taken and converted.
    let lazy = [
        "--set",
        "connection_strategy=lazy",
        "--set",
        "upstream_cert=false",
    ];
    for (extra, version) in [(&[][..], "1.1"), (&lazy[..], "2")] {
        let mut args = vec!["--set", ca.as_str()];
        args.extend_from_slice(extra);
        let proxy = Proxy::start(&args);
        let (ok, out, err) = curl_plain(
            &proxy,
            &[
                "--http2",
                "-x",
                &proxy.url(),
                "-w",
                "%{http_version} %{http_code}\n",
                &url,
            ],
        );
        assert!(ok, "{extra:?}: curl failed: {err}\n{}", proxy.output());
        assert_eq!(out, format!("tls /t\n{version} 200\n"), "{extra:?}");
    }
}

#[test]
fn scripts_see_and_change_http2_flows_and_flow_files_keep_them() {
    let origin = echo_origin();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let script = dir.join("h2.py");
    std::fs::write(
        &script,
        r#"
from mitmproxy import http

def request(flow: http.HTTPFlow):
    if flow.request.path == "/answer":
        flow.response = http.Response.make(201, b"from the script\n", {"x-version": flow.request.http_version})

def response(flow: http.HTTPFlow):
    flow.response.headers["x-seen"] = flow.request.http_version + " " + flow.request.authority
"#,
    )
    .unwrap();
    let flows = dir.join("flows.mitm");
    let proxy = reverse_proxy(
        &origin,
        &[
            "-s",
            script.to_str().unwrap(),
            "-w",
            flows.to_str().unwrap(),
        ],
    );
    let base = format!("https://127.0.0.1:{}", proxy.port);
    let (ok, out, err) = curl_h2(
        &proxy,
        &["-i", &format!("{base}/answer"), &format!("{base}/pass")],
    );
    assert!(ok, "curl failed: {err}\n{}", proxy.output());
    let target = format!("127.0.0.1:{}", origin.port);
    assert!(out.contains("HTTP/2 201"), "{out}");
    assert!(out.contains("x-version: HTTP/2.0"), "{out}");
    assert!(out.contains("from the script\n"), "{out}");
    assert!(out.contains(&format!("x-seen: HTTP/2.0 {target}")), "{out}");
    assert!(out.contains(&format!("GET /pass host={target}")), "{out}");
    assert_eq!(
        origin.requests().len(),
        1,
        "/answer never reaches the server"
    );
    assert!(proxy.interrupt().success());

    // mitmproxy reads the flows as HTTP/2 flows.
    let read = Command::new(venv_python())
        .args([
            "-c",
            "import sys\nfrom mitmproxy import io\n\
             for f in io.FlowReader(open(sys.argv[1], 'rb')).stream():\n    \
             print(f.request.http_version, f.request.authority, f.request.path, f.response.http_version, f.response.status_code)",
        ])
        .arg(&flows)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&read.stdout),
        format!("HTTP/2.0 {target} /answer HTTP/1.1 201\nHTTP/2.0 {target} /pass HTTP/1.1 200\n"),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
}

/// A raw HTTP/2 client in Python (TLS with ALPN h2, no certificate check): sends
/// the preface, SETTINGS, then the frames given as hex, and prints the type and
/// error code of a GOAWAY the proxy sends before it closes, or "closed".
const RAW_H2: &str = r#"
import socket, ssl, sys
port, frames = int(sys.argv[1]), bytes.fromhex(sys.argv[2])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["h2"])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname="localhost")
assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000") + frames)
buf = b""
while True:
    try:
        d = s.recv(65536)
    except (ConnectionResetError, ssl.SSLError):
        break
    if not d:
        break
    buf += d
i = 0
while i + 9 <= len(buf):
    n = int.from_bytes(buf[i:i+3], "big")
    if buf[i+3] == 7:
        print("goaway", int.from_bytes(buf[i+13:i+17], "big"))
        sys.exit(0)
    i += 9 + n
print("closed")
"#;

fn raw_h2(proxy: &Proxy, frames_hex: &str) -> String {
    let out = Command::new(venv_python())
        .args(["-c", RAW_H2])
        .arg(proxy.port.to_string())
        .arg(frames_hex)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_broken_frame_ends_only_its_connection_with_goaway() {
    let origin = echo_origin();
    let proxy = reverse_proxy(&origin, &[]);
    // A DATA frame on stream 0 is a connection error: PROTOCOL_ERROR (1).
    assert_eq!(raw_h2(&proxy, "000003000100000000616263"), "goaway 1");
    // A frame larger than the 16 KiB maximum: FRAME_SIZE_ERROR (6).
    assert_eq!(
        raw_h2(&proxy, &format!("004001000000000001{}", "00".repeat(16385))),
        "goaway 6"
    );
    // The proxy goes on serving others.
    let (ok, out, err) = curl_h2(
        &proxy,
        &[&format!("https://127.0.0.1:{}/after", proxy.port)],
    );
    assert!(ok, "curl failed: {err}\n{}", proxy.output());
    assert!(out.ends_with("2 200\n"), "{out}");
}

#[test]
fn an_idle_connection_is_closed_after_tcp_timeout() {
    let origin = echo_origin();
    let proxy = reverse_proxy(&origin, &["--set", "tcp_timeout=1"]);
    // Nothing after SETTINGS: the proxy says goodbye (NO_ERROR) and closes.
    assert_eq!(raw_h2(&proxy, ""), "goaway 0");
}

/// The Python HTTP/2 origin (tests/data/h2_origin.py), stopped on drop.
struct H2Origin {
    port: u16,
    child: Child,
}

impl H2Origin {
    fn start(pki: &TestPki) -> H2Origin {
        let script = support::workspace_root().join("crates/mitmrs/tests/data/h2_origin.py");
        let mut child = Command::new(venv_python())
            .arg(script)
            .arg(&pki.leaf_chain_path)
            .arg(&pki.leaf_key_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("h2 origin port");
        H2Origin { port, child }
    }
}

impl Drop for H2Origin {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_h2_server_is_spoken_to_in_h2() {
    let pki = TestPki::new();
    let origin = H2Origin::start(&pki);
    let ca = format!("ssl_verify_upstream_trusted_ca={}", pki.ca_path.display());
    let target = format!("127.0.0.1:{}", origin.port);
    let dir = tempfile::tempdir().unwrap();
    let upload = dir.path().join("up.bin");
    let data = test_bytes(1 << 20);
    std::fs::write(&upload, &data).unwrap();
    let sum: u64 = data.iter().map(|&b| u64::from(b)).sum();
    let body_arg = format!("@{}", upload.display());
    let down = dir.path().join("down.bin");
    let expected_down: Vec<u8> = (0..(3usize << 20)).map(|i| (i % 251) as u8).collect();
    for (how, extra) in [
        (
            "reverse",
            vec!["--mode".to_string(), format!("reverse:https://{target}")],
        ),
        ("regular", vec![]),
        (
            "regular, streamed",
            vec!["--set".to_string(), "stream_large_bodies=100k".to_string()],
        ),
    ] {
        let mut args = vec!["--set", ca.as_str()];
        args.extend(extra.iter().map(String::as_str));
        let proxy = Proxy::start(&args);
        let (base, via): (String, Vec<String>) = if how == "reverse" {
            (
                format!("https://127.0.0.1:{}", proxy.port),
                vec!["--noproxy".into(), "*".into()],
            )
        } else {
            (format!("https://{target}"), vec!["-x".into(), proxy.url()])
        };
        let mut common: Vec<&str> = vec!["--http2", "-w", "%{http_version} %{http_code}\n"];
        common.extend(via.iter().map(String::as_str));

        let mut a = common.clone();
        let urls = [format!("{base}/a?x=1"), format!("{base}/b")];
        a.extend(urls.iter().map(String::as_str));
        let (ok, out, err) = curl_plain(&proxy, &a);
        assert!(ok, "{how}: curl failed: {err}\n{}", proxy.output());
        let authority = &target;
        assert_eq!(
            out,
            format!(
                "h2 GET /a?x=1 authority={authority} len=0 sum=0\n2 200\n\
                 h2 GET /b authority={authority} len=0 sum=0\n2 200\n"
            ),
            "{how}"
        );

        // `te: trailers` (gRPC needs it) is the one TE value HTTP/2 carries on.
        let mut a = common.clone();
        let te_url = format!("{base}/te");
        a.extend(["-H", "te: trailers", &te_url]);
        let (ok, out, err) = curl_plain(&proxy, &a);
        assert!(ok, "{how}: curl failed: {err}\n{}", proxy.output());
        assert_eq!(
            out,
            format!("h2 GET /te authority={authority} len=0 sum=0 te=trailers\n2 200\n"),
            "{how}"
        );

        let mut a = common.clone();
        let up_url = format!("{base}/up");
        a.extend(["--data-binary", &body_arg, &up_url]);
        let (ok, out, err) = curl_plain(&proxy, &a);
        assert!(ok, "{how}: curl failed: {err}\n{}", proxy.output());
        assert_eq!(
            out,
            format!(
                "h2 POST /up authority={authority} len={} sum={sum}\n2 200\n",
                data.len()
            ),
            "{how}"
        );

        let mut a = common.clone();
        let down_url = format!("{base}/bytes/{}", expected_down.len());
        a.extend(["-o", down.to_str().unwrap(), &down_url]);
        let (ok, out, err) = curl_plain(&proxy, &a);
        assert!(ok, "{how}: curl failed: {err}\n{}", proxy.output());
        assert_eq!(out, "2 200\n", "{how}");
        assert!(
            std::fs::read(&down).unwrap() == expected_down,
            "{how}: downloaded body differs"
        );
        // mitmdump's lines: HTTP/2 both ways, the standard reason phrase shown.
        proxy.expect_stdout(&format!("GET https://{target}/a?x=1 HTTP/2.0"));
        proxy.expect_stdout("<< HTTP/2.0 200 OK");
    }
}

/// A client (the `h2` package) that sends `GET /hang`, waits for a line on stdin,
/// resets the stream, and keeps the connection open until stdin closes.
const RESETTING_CLIENT: &str = r#"
import socket, ssl, sys
import h2.connection, h2.config
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["h2"])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30), server_hostname="localhost")
c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
c.initiate_connection()
c.send_headers(1, [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", "/hang")], end_stream=True)
s.sendall(c.data_to_send())
sys.stdin.readline()
c.reset_stream(1)
s.sendall(c.data_to_send())
print("reset", flush=True)
sys.stdin.read()
"#;

#[test]
fn a_stream_the_client_resets_ends_its_flow_and_server_connection() {
    use std::io::{Read, Write};
    // A server that takes the request and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let proxy = Proxy::start(&[
        "--mode",
        &format!("reverse:http://127.0.0.1:{port}"),
        "--set",
        "connection_strategy=lazy",
    ]);
    let mut client = Command::new(venv_python())
        .args(["-c", RESETTING_CLIENT])
        .arg(proxy.port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut server, _) = listener.accept().unwrap();
    server
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = server.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("GET /hang HTTP/1.1\r\n"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let mut stdin = client.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    let mut line = String::new();
    BufReader::new(client.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "reset\n");
    // The proxy gives up on the server connection (EOF here), and the flow ends
    // with an error saying why, while the client connection stays open.
    let n = server
        .read(&mut buf)
        .expect("the proxy kept the server connection open");
    assert_eq!(n, 0);
    proxy.expect_stdout("stream reset by client");
    drop(stdin);
    let _ = client.wait();
}

#[test]
fn prior_knowledge_h2c_is_served_and_an_h2c_upgrade_offer_is_removed() {
    let origin = Origin::http(|req| {
        Response::ok(format!(
            "upgrade={} http2-settings={}\n",
            req.header("upgrade").unwrap_or("-"),
            req.header("http2-settings").unwrap_or("-")
        ))
    });
    let proxy = reverse_proxy(&origin, &[]);
    let url = format!("http://127.0.0.1:{}/c", proxy.port);
    // Prior knowledge: HTTP/2 without TLS from the first byte (mitmproxy kills these flows).
    let (ok, out, err) = curl_plain(
        &proxy,
        &[
            "--http2-prior-knowledge",
            "--noproxy",
            "*",
            "-w",
            "%{http_version} %{http_code}\n",
            &url,
        ],
    );
    assert!(ok, "curl failed: {err}\n{}", proxy.output());
    assert_eq!(out, "upgrade=- http2-settings=-\n2 200\n");
    // An upgrade offer (curl --http2 on http://) reaches the server without it, as
    // mitmproxy's disable_h2c does, and the exchange stays HTTP/1.1.
    let (ok, out, err) = curl_h2(&proxy, &[&url]);
    assert!(ok, "curl failed: {err}\n{}", proxy.output());
    assert_eq!(out, "upgrade=- http2-settings=-\n1.1 200\n");
}

#[test]
fn uploads_stalled_at_the_server_do_not_stop_the_other_streams() {
    use std::io::{Read, Write};
    // An origin that never reads the body of `POST /slow` and answers anything else.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match conn.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let text = String::from_utf8_lossy(&head).to_string();
            if text.starts_with("POST /slow") {
                held.push(conn);
                continue;
            }
            std::thread::spawn(move || {
                let len: usize = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                let _ = conn.read_exact(&mut body);
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nfast ok\n",
                );
            });
        }
    });
    let proxy = Proxy::start(&[
        "--mode",
        &format!("reverse:http://127.0.0.1:{port}"),
        "--set",
        "stream_large_bodies=1",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big.bin");
    // More than the loopback socket buffers towards the origin hold, so each
    // upload really stalls in its stream's window (with 4 MiB bodies the kernel took
    // them all and the test passed with the old 1 MiB connection window too; with 24
    // MiB it fails there and passes now).
    std::fs::write(&big, test_bytes(24 << 20)).unwrap();
    let base = format!("https://127.0.0.1:{}", proxy.port);
    // Six uploads that stall (each holds its stream's window), and one that must
    // get through on the same connection (curl multiplexes them). curl gives up on
    // the stalled ones at its time limit; the fast one answers long before.
    let body = format!("@{}", big.display());
    let mut args: Vec<String> = [
        "--http2",
        "--noproxy",
        "*",
        "--parallel",
        "--parallel-max",
        "10",
        "--max-time",
        "8",
        "--data-binary",
        &body,
        "-w",
        "%{url_effective} %{http_version} %{http_code}\n",
    ]
    .map(String::from)
    .to_vec();
    args.extend((0..6).map(|i| format!("{base}/slow{i}")));
    args.push(format!("{base}/fast"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, out, err) = curl_plain(&proxy, &args);
    assert!(
        out.contains(&format!("fast ok\n{base}/fast 2 200\n")),
        "the upload behind the stalled ones did not get through: {out:?} {err}\n{}",
        proxy.output()
    );
}
