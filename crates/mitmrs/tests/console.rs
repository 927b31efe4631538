//! The console output of the real binary, as mitmdump prints it: flow lines at each
//! detail level, `-q`, streamed bodies, errors, and the connection log.

mod support;

use support::{closed_port, curl, Origin, Proxy, Response};

fn hello_origin() -> Origin {
    Origin::http(|req| {
        if req.target == "/big" {
            Response::ok(vec![b'x'; 100 * 1024])
        } else {
            Response::ok("hello world\n")
        }
    })
}

/// The client address in a log line `[12:00:00.000][127.0.0.1:5555] client connect`.
fn client_of(line: &str) -> String {
    let start = line
        .find("][")
        .map(|i| i + 2)
        .unwrap_or_else(|| panic!("no client in log line {line:?}"));
    let end = start + line[start..].find(']').unwrap();
    line[start..end].to_string()
}

#[test]
fn default_detail_shows_request_and_response_lines_and_connection_log() {
    let origin = hello_origin();
    let proxy = Proxy::start(&[]);
    let r = curl(
        &proxy,
        &[&format!("http://127.0.0.1:{}/path?a=b", origin.port)],
    );
    assert!(r.ok && r.status == 200, "curl: {r:?}\n{}", proxy.output());

    let connect = proxy.expect_stdout("client connect");
    let client = client_of(&connect);
    assert!(
        client.starts_with("127.0.0.1:"),
        "client address {client:?}"
    );
    proxy.expect_stdout(&format!("server connect 127.0.0.1:{}", origin.port));

    let request_line = format!("{client}: GET http://127.0.0.1:{}/path?a=b", origin.port);
    proxy.expect_stdout(&request_line);
    // mitmdump pads the arrows to line up under the client address.
    let response_line = format!("{} << 200 OK 12b", " ".repeat(client.len() - 2));
    proxy.expect_stdout(" << 200 OK 12b");

    let lines = proxy.stop();
    let i = lines
        .iter()
        .position(|l| *l == request_line)
        .unwrap_or_else(|| panic!("no exact line {request_line:?} in {lines:#?}"));
    assert_eq!(
        lines.get(i + 1),
        Some(&response_line),
        "the response line follows the request line: {lines:#?}"
    );
    // At level 1 no headers are shown.
    assert!(
        !lines.iter().any(|l| l.trim_start().starts_with("Host:")),
        "headers at flow_detail 1: {lines:#?}"
    );
}

#[test]
fn quiet_prints_no_flow_lines() {
    let origin = hello_origin();
    // -q silences the info log too, the listening line included; MITMRS_LOG (which
    // replaces the log filter) brings the log back, not the flow lines.
    let proxy = Proxy::start_env(&["-q"], &[("MITMRS_LOG", "mitmrs=info")]);
    let r = curl(
        &proxy,
        &[&format!("http://127.0.0.1:{}/quiet", origin.port)],
    );
    assert!(r.ok && r.status == 200, "curl: {r:?}\n{}", proxy.output());
    assert_eq!(origin.requests().len(), 1);
    // The flow is over (a flow line would have been printed by now).
    proxy.expect_stdout("client disconnect");
    let lines = proxy.stop();
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("/quiet") || l.contains("<<")),
        "-q should print no flow lines: {lines:#?}"
    );
}

#[test]
fn detail_2_shows_headers() {
    let origin = hello_origin();
    let proxy = Proxy::start(&["--flow-detail", "2"]);
    let r = curl(
        &proxy,
        &[
            "-H",
            "X-E2e-Test: yes please",
            &format!("http://127.0.0.1:{}/headers", origin.port),
        ],
    );
    assert!(r.ok && r.status == 200, "curl: {r:?}\n{}", proxy.output());
    proxy.expect_stdout("<< 200 OK 12b");
    let lines = proxy.stop();
    let req = lines
        .iter()
        .position(|l| l.ends_with(&format!(": GET http://127.0.0.1:{}/headers", origin.port)));
    let req = req.unwrap_or_else(|| panic!("no request line: {lines:#?}"));
    let resp = lines
        .iter()
        .position(|l| l.contains("<< 200 OK 12b"))
        .unwrap();
    let request_headers = &lines[req + 1..resp];
    for want in [
        "    X-E2e-Test: yes please".to_string(),
        format!("    Host: 127.0.0.1:{}", origin.port),
    ] {
        assert!(
            request_headers.contains(&want),
            "request headers at flow_detail 2 should include {want:?}: {lines:#?}"
        );
    }
    let response_headers = &lines[resp + 1..];
    for want in ["    Content-Type: text/plain", "    Content-Length: 12"] {
        assert!(
            response_headers.iter().any(|l| l == want),
            "response headers should include {want:?}: {lines:#?}"
        );
    }
}

#[test]
fn verbose_shows_headers_like_mitmdump() {
    // mitmdump's -v sets termlog_verbosity=debug and flow_detail=2.
    let origin = hello_origin();
    let proxy = Proxy::start(&["-v"]);
    let r = curl(
        &proxy,
        &[
            "-H",
            "X-E2e-Test: verbose",
            &format!("http://127.0.0.1:{}/v", origin.port),
        ],
    );
    assert!(r.ok && r.status == 200, "curl: {r:?}\n{}", proxy.output());
    proxy.expect_stdout(&format!("GET http://127.0.0.1:{}/v", origin.port));
    proxy.expect_stdout("    X-E2e-Test: verbose");
    proxy.expect_stdout("<< 200 OK 12b");
    proxy.expect_stdout("    Content-Type: text/plain");
}

#[test]
fn streamed_response_shows_content_missing() {
    let origin = hello_origin();
    let proxy = Proxy::start(&["--set", "stream_large_bodies=1k"]);
    let r = curl(&proxy, &[&format!("http://127.0.0.1:{}/big", origin.port)]);
    assert!(
        r.ok && r.status == 200,
        "curl: {:?}\n{}",
        r.stderr,
        proxy.output()
    );
    assert_eq!(
        r.body.len(),
        100 * 1024,
        "the streamed body must arrive whole"
    );
    assert!(r.body.iter().all(|&b| b == b'x'));
    proxy.expect_stdout(&format!("GET http://127.0.0.1:{}/big", origin.port));
    let line = proxy.expect_stdout("<< 200 OK");
    assert!(
        line.ends_with("<< 200 OK (content missing)"),
        "a streamed body is not kept: {line:?}"
    );
}

#[test]
fn unstreamed_large_response_shows_its_size() {
    let origin = hello_origin();
    let proxy = Proxy::start(&[]);
    let r = curl(&proxy, &[&format!("http://127.0.0.1:{}/big", origin.port)]);
    assert!(
        r.ok && r.status == 200,
        "curl: {:?}\n{}",
        r.stderr,
        proxy.output()
    );
    assert_eq!(r.body.len(), 100 * 1024);
    let line = proxy.expect_stdout("<< 200 OK");
    assert!(line.ends_with("<< 200 OK 100k"), "{line:?}");
}

#[test]
fn server_down_prints_error_naming_the_address() {
    let port = closed_port();
    let proxy = Proxy::start(&[]);
    let r = curl(&proxy, &[&format!("http://127.0.0.1:{port}/down")]);
    assert_eq!(r.status, 502, "curl: {r:?}");
    proxy.expect_stdout(&format!("GET http://127.0.0.1:{port}/down"));
    let line = proxy.expect_stdout(" << ");
    assert!(line.starts_with(" << "), "error line {line:?}");
    assert!(
        line.contains(&format!("127.0.0.1:{port}")),
        "the error should name the server address: {line:?}"
    );
    assert!(!line.contains("<< 200"), "{line:?}");
}

#[test]
fn detail_3_shows_bodies_like_mitmdump() {
    let origin = Origin::http(|_| Response::ok("line1\r\nline2\n"));
    let proxy = Proxy::start(&["--flow-detail", "3"]);
    let r = curl(
        &proxy,
        &[
            "--data-binary",
            "a=1&long+key=x%20y",
            "-H",
            "Content-Type: application/x-www-form-urlencoded",
            &format!("http://127.0.0.1:{}/form", origin.port),
        ],
    );
    assert!(r.ok && r.status == 200, "curl: {r:?}\n{}", proxy.output());
    proxy.expect_stdout("<< 200 OK");
    proxy.expect_stdout("    line2");
    let lines = proxy.stop();
    // The form as aligned pairs, after a blank line, and a blank line after it.
    let a = lines
        .iter()
        .position(|l| l == "    a:        1")
        .unwrap_or_else(|| panic!("no form line: {lines:#?}"));
    assert_eq!(lines[a - 1], "");
    assert_eq!(lines[a + 1], "    long key: x y");
    assert_eq!(lines[a + 2], "");
    // The text body line by line, without escaped newlines.
    let l1 = lines
        .iter()
        .position(|l| l == "    line1")
        .unwrap_or_else(|| panic!("no body line: {lines:#?}"));
    assert_eq!(lines[l1 + 1], "    line2");
    assert!(
        !lines.iter().any(|l| l.contains("\\x0a")),
        "newlines escaped: {lines:#?}"
    );
}

#[test]
fn detail_3_shows_a_bodiless_requests_query_like_mitmdump() {
    // mitmproxy's "Query" view: a request without a body shows its query.
    let origin = Origin::http(|_| Response::ok("ok"));
    let proxy = Proxy::start(&["--flow-detail", "3"]);
    let r = curl(
        &proxy,
        &[&format!(
            "http://127.0.0.1:{}/q?a=1&long+key=x%20y&c",
            origin.port
        )],
    );
    assert!(r.ok && r.status == 200, "curl: {r:?}\n{}", proxy.output());
    proxy.expect_stdout("<< 200 OK");
    let lines = proxy.stop();
    let a = lines
        .iter()
        .position(|l| l == "    a:        1")
        .unwrap_or_else(|| panic!("no query line: {lines:#?}"));
    assert_eq!(lines[a - 1], "");
    assert_eq!(lines[a + 1], "    long key: x y");
    assert_eq!(lines[a + 2], "    c:        ");
    assert_eq!(lines[a + 3], "");
}

#[test]
fn detail_3_shows_json_as_mitmdumps_json_view() {
    // Each body as Python prints `json.dumps(json.loads(body), indent=4,
    // ensure_ascii=False)`, which is what mitmproxy's JSON view shows.
    const DOCS: &[&str] = &[
        r#"{"name": "mitm", "list": [1, 2.5, {"a": null, "b": true}], "empty": {}, "s": "x\u00e9\ny", "n": [], "big": 12345678901234567890}"#,
        r#"[1E5, 2.50, -0, 1e-7, 0.1, 1e400, -1e400, 3.0, 123456789012345678901234567890.5e-3]"#,
        r#"{"a": 1, "b": 2, "a": 3}"#,
        r#""\ud83d\ude00 \u0001 \t \/ \\ \"""#,
        r#"[[[]], {"k": {"k": [{}]}}]"#,
        r#"  {"ws" :  [ 1 , 2 ] }  "#,
        r#"[NaN, Infinity, -Infinity]"#,
    ];
    let script = "import json, sys\n\
                  docs = json.loads(sys.stdin.read())\n\
                  print(json.dumps([json.dumps(json.loads(d), indent=4, ensure_ascii=False) for d in docs]))";
    let mut py = std::process::Command::new(support::venv_python())
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let docs_json = serde_json::to_string(DOCS).unwrap();
    std::io::Write::write_all(py.stdin.as_mut().unwrap(), docs_json.as_bytes()).unwrap();
    drop(py.stdin.take());
    let out = py.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let expected: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();

    let origin = Origin::http(|req| {
        let mut r = Response::ok(req.body.clone());
        r.headers = vec![("Content-Type".into(), "application/json".into())];
        r
    });
    let proxy = Proxy::start(&["--flow-detail", "3"]);
    for d in DOCS {
        let r = curl(
            &proxy,
            &[
                "--data-binary",
                d,
                "-H",
                "Content-Type: text/plain",
                &format!("http://127.0.0.1:{}/json", origin.port),
            ],
        );
        assert!(r.ok && r.status == 200, "curl: {r:?}\n{}", proxy.output());
    }
    let last = expected.last().unwrap().lines().last().unwrap().to_string();
    proxy.expect_stdout(&format!("    {last}"));
    let all = proxy.stop().join("\n");
    for (d, e) in DOCS.iter().zip(&expected) {
        let block: Vec<String> = e.lines().map(|l| format!("    {l}")).collect();
        assert!(
            all.contains(&block.join("\n")),
            "{d}\nwant:\n{e}\ngot:\n{all}"
        );
    }
}
