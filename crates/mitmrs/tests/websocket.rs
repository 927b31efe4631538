//! WebSocket flows through the real binary: a Python `websockets` client and
//! server talk through mitmrs; the console shows mitmdump's lines, `-w` saves
//! flows that mitmproxy 11.0.2 reads with every message, and bad peers and
//! limits end the connection with the close code that names them.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use support::{venv_python, Proxy};

fn peer_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/ws_peer.py")
}

/// The echo server; it stops when dropped (its stdin closes).
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// tests/data/ws_peer.py's echo server.
    fn start() -> Server {
        Server::of(peer_script())
    }

    /// The `server` mode of a peer script, once it has printed its port.
    fn of(script: impl AsRef<std::ffi::OsStr>) -> Server {
        let mut child = Command::new(venv_python())
            .arg(script)
            .arg("server")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot start the WebSocket server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the server prints its port");
        Server { child, port }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(server: &Server, proxy: &Proxy, big: usize) -> Output {
    Command::new(venv_python())
        .arg(peer_script())
        .arg("client")
        .arg(server.port.to_string())
        .arg(format!("http://127.0.0.1:{}", proxy.port))
        .arg(big.to_string())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The flows of a file as mitmproxy reads them, one JSON line each.
fn read_with_mitmproxy(path: &Path) -> Vec<serde_json::Value> {
    const SCRIPT: &str = r#"
import json, sys
from mitmproxy import io
for f in io.FlowReader(open(sys.argv[1], "rb")).stream():
    ws = f.websocket
    print(json.dumps({
        "status": f.response.status_code,
        "messages": [[m.type.name, m.from_client, m.content.decode("latin-1"), m.dropped] for m in ws.messages],
        "close_code": int(ws.close_code), "close_reason": ws.close_reason,
        "closed_by_client": ws.closed_by_client,
    }))
"#;
    let out = Command::new(venv_python())
        .args(["-c", SCRIPT])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn messages_pass_show_and_save_as_in_mitmproxy() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ws.mitm");
    let proxy = Proxy::start(&["-w", file.to_str().unwrap()]);
    let o = client(&server, &proxy, 3 << 20);
    assert!(o.status.success(), "{}\n{}", text(&o), proxy.output());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "text hello\nbinary b'\\x00\\x01bin'\nfragmented frag1-frag2-frag3\npong\nbig 3145728 True\n\
         closed 1001 going away\n"
    );
    let status = proxy.interrupt();
    assert!(status.success());

    let flows = read_with_mitmproxy(&file);
    assert_eq!(flows.len(), 1, "{flows:?}");
    let f = &flows[0];
    assert_eq!(f["status"], 101);
    let msgs = f["messages"].as_array().unwrap();
    let summary: Vec<String> = msgs
        .iter()
        .map(|m| {
            let content = m[2].as_str().unwrap();
            let n = content.chars().count();
            let shown = if n > 20 {
                format!("{n} bytes")
            } else {
                content.into()
            };
            format!("{} {} {shown}", m[0].as_str().unwrap(), m[1])
        })
        .collect();
    assert_eq!(
        summary,
        [
            "TEXT true hello",
            "TEXT false hello",
            "BINARY true \u{0}\u{1}bin",
            "BINARY false \u{0}\u{1}bin",
            "TEXT true frag1-frag2-frag3",
            "TEXT false frag1-frag2-frag3",
            "BINARY true 3145728 bytes",
            "BINARY false 3145728 bytes",
            "TEXT true close-me",
        ]
    );
    assert_eq!(
        (&f["close_code"], &f["close_reason"], &f["closed_by_client"]),
        (
            &serde_json::json!(1001),
            &serde_json::json!("going away"),
            &serde_json::json!(false)
        )
    );
}

fn test_data(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    p.to_str().unwrap().to_string()
}

/// Runs tests/data/ws_peer.py's client `mode` against `server` through
/// `proxy`; it must succeed.
fn peer_client(mode: &str, server: &Server, proxy: &Proxy) -> Output {
    let o = Command::new(venv_python())
        .arg(peer_script())
        .arg(mode)
        .arg(server.port.to_string())
        .arg(format!("http://127.0.0.1:{}", proxy.port))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}\n{}", text(&o), proxy.output());
    o
}

/// The proxy with tests/data/ws_addon.py, and the `scripted` client's
/// output through it.
fn scripted(server: &Server, extra: &[&str]) -> (Proxy, Output) {
    let addon = test_data("ws_addon.py");
    let mut args = vec!["-s", addon.as_str()];
    args.extend_from_slice(extra);
    let proxy = Proxy::start(&args);
    let o = peer_client("scripted", server, &proxy);
    // "drop-me" never reached the server (else its echo would come first), and
    // the script saw it as the first of the messages.
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "text HELLO #2\nbinary b'\\x00\\x01bin!'\nclosed 1001 going away\n"
    );
    (proxy, o)
}

#[test]
fn addon_scripts_see_change_and_drop_messages() {
    let server = Server::start();
    let (proxy, _) = scripted(&server, &[]);
    let start = proxy.expect_stdout("ws start");
    assert!(
        start.contains("ws start /scripted <WebSocketData (0 messages)>"),
        "{start}"
    );
    let end = proxy.expect_stdout("ws end");
    assert!(
        end.contains(
            "ws end 1001 going away by_client=False [(True, b'drop-me', True), \
             (True, b'HELLO #2', False), (False, b'HELLO #2', False), \
             (True, b'\\x00\\x01bin!', False), (False, b'\\x00\\x01bin!', False), \
             (True, b'close-me', False)]"
        ),
        "{end}"
    );
    assert!(proxy.interrupt().success());
}

#[test]
fn a_scripts_message_list_is_trimmed_with_the_history() {
    // 200 bytes of history at 64 bytes per message besides its content: the
    // last two messages stay, in Python as in Rust.
    let server = Server::start();
    let (proxy, _) = scripted(&server, &["--set", "websocket_history=200"]);
    let end = proxy.expect_stdout("ws end");
    assert!(
        end.contains(
            "ws end 1001 going away by_client=False \
             [(False, b'\\x00\\x01bin!', False), (True, b'close-me', False)]"
        ),
        "{end}"
    );
    assert!(proxy.interrupt().success());
}

#[test]
fn a_script_injects_messages_as_mitmproxys_example_does() {
    let server = Server::start();
    let proxy = Proxy::start(&["-s", &test_data("ws_inject.py")]);
    let o = peer_client("inject", &server, &proxy);
    // The secret never reached the server (its echo would have come back).
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "got ssssssh\nclosed 1001 going away\n"
    );
    let end = proxy.expect_stdout("ws end");
    assert!(
        end.contains(
            "ws end [(True, b'a secret', True, False), (False, b'ssssssh', False, True), \
             (True, b'close-me', False, False)]"
        ),
        "{end}"
    );
    // The console shows the injected message like any other.
    proxy.expect_stdout("<- WebSocket text message <- 127.0.0.1");

    // A task started with asyncio.create_task in a plain hook (as mitmproxy's
    // example does) injects until its flow's WebSocket ends.
    let o = peer_client("ticks", &server, &proxy);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "tick 1\ntick 2\ntick 3\n"
    );
    proxy.expect_stdout("ticks stopped: closed by client=True");
    assert!(!proxy.output().contains("not from a live connection"));
    assert!(proxy.interrupt().success());
}

#[test]
fn a_script_setting_flow_websocket_to_none_gets_a_raw_relay() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("raw.mitm");
    let proxy = Proxy::start(&["-s", &test_data("ws_raw.py"), "-w", file.to_str().unwrap()]);
    let o = client(&server, &proxy, 0);
    assert!(o.status.success(), "{}\n{}", text(&o), proxy.output());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("text hello\n"));
    proxy.expect_stdout("websocket off");
    let status = proxy.interrupt();
    assert!(status.success());
    // Saved (in `response`) as a plain HTTP flow: no WebSocket, no messages.
    let out = Command::new(venv_python())
        .args([
            "-c",
            "import sys\nfrom mitmproxy import io\n\
             for f in io.FlowReader(open(sys.argv[1], 'rb')).stream():\n    \
             print(f.response.status_code, f.websocket)",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "101 None\n",
        "{}",
        text(&out)
    );
}

#[test]
fn a_message_larger_than_the_socket_buffers_streams_both_ways_at_once() {
    // The echo comes back while the message is still being sent, so the relay
    // must read and write both sides at once (the first relay wrote to a side
    // without reading it and deadlocked here; M11 found it). 64 MiB is more
    // than all the socket buffers on the way hold.
    // A raw echo server that sends each frame back as its bytes arrive.
    let server = Server::of(test_data("ws_stream_peer.py"));
    let proxy = Proxy::start(&["--set", "stream_websockets=true"]);
    let o = Command::new(venv_python())
        .arg(test_data("ws_stream_peer.py"))
        .arg("client")
        .arg(server.port.to_string())
        .arg(format!("127.0.0.1:{}", proxy.port))
        .arg((64u64 << 20).to_string())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}\n{}", text(&o), proxy.output());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "echoed 67108864 ok\n");
    assert!(proxy.interrupt().success());
}

#[test]
fn console_lines_are_mitmdumps() {
    let server = Server::start();
    let proxy = Proxy::start(&[]);
    let o = client(&server, &proxy, 0);
    assert!(o.status.success(), "{}", text(&o));
    let path = format!("127.0.0.1:{}/chat?x=1", server.port);
    for line in [
        format!("-> WebSocket text message -> {path}"),
        format!("<- WebSocket text message <- {path}"),
        format!("-> WebSocket binary message -> {path}"),
        "<< 101 Switching Protocols 0b".to_string(),
        "Received WebSocket ping from client (payload: b'pingdata')".into(),
        "Received WebSocket pong from server (payload: b'pingdata')".into(),
        "WebSocket connection closed by server: 1001 going away".into(),
    ] {
        proxy.expect_stdout(&line);
    }
}

#[test]
fn streamed_messages_pass_whole_and_are_recorded_empty() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ws.mitm");
    let proxy = Proxy::start(&[
        "-w",
        file.to_str().unwrap(),
        "--set",
        "stream_websockets=true",
    ]);
    let o = client(&server, &proxy, 4 << 20);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("big 4194304 True"), "{}", text(&o));
    assert!(proxy.interrupt().success());
    let flows = read_with_mitmproxy(&file);
    let msgs = flows[0]["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 9);
    assert!(msgs.iter().all(|m| m[2] == ""), "{msgs:?}");
}

/// A raw client: the upgrade through the proxy, then whatever `frames` holds;
/// returns what came back after the 101's head.
fn raw_exchange(proxy: &Proxy, port: u16, frames: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET http://127.0.0.1:{port}/raw HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut b).unwrap(),
            1,
            "the proxy closed before the 101"
        );
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s.write_all(frames).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    rest
}

#[test]
fn bad_frames_and_limits_close_with_the_code_that_names_them() {
    let server = Server::start();
    let proxy = Proxy::start(&["--set", "websocket_max_message_size=1k"]);
    // An unmasked frame from a client: 1002, reason as wsproto words it.
    let back = raw_exchange(&proxy, server.port, b"\x81\x02hi");
    let mut want = vec![0x88, 43, 0x03, 0xEA];
    want.extend_from_slice(b"server received unexpected unmasked frame");
    assert_eq!(back, want, "{}", String::from_utf8_lossy(&back));
    // A message over websocket_max_message_size: 1009, naming the option.
    let mut big = vec![0x82, 0xFE, 0x08, 0x00, 0, 0, 0, 0];
    big.extend_from_slice(&[0u8; 2048]);
    let back = raw_exchange(&proxy, server.port, &big);
    assert_eq!(&back[2..4], &[0x03, 0xF1], "{back:?}");
    assert!(
        String::from_utf8_lossy(&back[4..]).contains("websocket_max_message_size"),
        "{}",
        String::from_utf8_lossy(&back)
    );
    proxy.expect_stdout(&format!(
        "Error in WebSocket connection to 127.0.0.1:{}: WebSocket Error: PROTOCOL_ERROR (reason: server received \
         unexpected unmasked frame)",
        server.port
    ));
    proxy.expect_stdout("WebSocket Error: MESSAGE_TOO_BIG");
}
