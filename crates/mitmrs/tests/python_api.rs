//! mitmproxy's Python API, area by area, through the real binary with curl and
//! local origins: each script checks values inside its hooks (a mismatch is logged
//! as `CHECK FAIL`), and the tests check what the client and the origin saw.
#![cfg(feature = "python")]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use support::*;

pub fn script(name: &str) -> String {
    let p: PathBuf = workspace_root()
        .join("crates/mitmrs-python/tests/scripts")
        .join(name);
    p.to_str().unwrap().to_string()
}

/// One transfer: status, response headers (trailers included, as curl prints
/// them), raw body.
pub struct Got {
    pub ok: bool,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn fetch(p: &Proxy, cacert: &Path, args: &[&str]) -> Got {
    let dir = tempfile::tempdir().unwrap();
    let hfile = dir.path().join("h");
    let out = curl_cmd(p, cacert)
        .arg("-D")
        .arg(&hfile)
        .args(args)
        .output()
        .unwrap();
    let head = std::fs::read_to_string(&hfile).unwrap_or_default();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    Got {
        ok: out.status.success(),
        status,
        headers,
        body: out.stdout,
    }
}

pub fn no_check_failed(p: &Proxy) {
    let out = p.output();
    assert!(
        !out.contains("CHECK FAIL") && !out.contains("Addon error"),
        "{out}"
    );
}

fn enc_origin() -> Origin {
    Origin::http(|r| {
        let t = r.target.as_str();
        if let Some(enc) = t.strip_prefix("/enc/") {
            let plain = format!("hello {enc} ").repeat(20);
            let body = mitmrs_core::encoding::encode(enc, plain.as_bytes()).unwrap();
            let mut resp = Response::ok(body.to_vec());
            resp.headers.push(("Content-Encoding".into(), enc.into()));
            return resp;
        }
        if t.starts_with("/json") {
            let mut resp = Response::ok(&br#"{"a": 1}"#[..]);
            resp.headers = vec![("Content-Type".into(), "application/json".into())];
            return resp;
        }
        if t.starts_with("/cookies") {
            let mut resp = Response::ok("cookies");
            resp.headers
                .push(("Set-Cookie".into(), "a=1; Path=/".into()));
            resp.headers
                .push(("Set-Cookie".into(), "b=2; Path=/x; HttpOnly".into()));
            return resp;
        }
        let mut body = format!("{} {}\n", r.method, r.target).into_bytes();
        for (k, v) in &r.headers {
            if k.to_ascii_lowercase().starts_with("x-")
                || k.eq_ignore_ascii_case("cookie")
                || k.eq_ignore_ascii_case("content-type")
            {
                body.extend_from_slice(format!("{}: {v}\n", k.to_ascii_lowercase()).as_bytes());
            }
        }
        body.extend_from_slice(b"\n");
        body.extend_from_slice(&r.body);
        Response::ok(body)
    })
}

/// An origin answering every request with a chunked body and a trailer.
fn trailer_origin() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().take(20) {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                for _ in 0..100 {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-origin-trailer\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\nx-origin-trailer: yes\r\n\r\n",
                );
                let mut rest = Vec::new();
                let _ = s.shutdown(std::net::Shutdown::Write);
                let _ = r.read_to_end(&mut rest);
            });
        }
    });
    port
}

#[test]
fn python_api_headers_bodies_encodings_trailers() {
    let o = enc_origin();
    let p = Proxy::start(&["-s", &script("api_message.py")]);
    let ca = p.ca_cert();
    for enc in ["gzip", "deflate", "br", "zstd"] {
        let g = fetch(
            &p,
            &ca,
            &[&format!("http://127.0.0.1:{}/enc/{enc}", o.port)],
        );
        assert_eq!(g.status, 200);
        assert_eq!(
            g.header("content-encoding"),
            Some(enc),
            "re-encoded with the same encoding"
        );
        let plain = mitmrs_core::encoding::decode(enc, &g.body.clone().into(), 1 << 20).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&plain),
            format!("HELLO {} ", enc.to_uppercase()).repeat(20)
        );
        assert_eq!(g.header("content-length"), Some(&*g.body.len().to_string()));
    }
    let g = fetch(&p, &ca, &[&format!("http://127.0.0.1:{}/json", o.port)]);
    assert_eq!(g.text(), r#"{"a": 1, "added": true}"#);
    let g = fetch(&p, &ca, &[&format!("http://127.0.0.1:{}/status", o.port)]);
    assert_eq!(g.status, 299);
    assert_eq!(g.header("x-status-reason"), Some("200 OK"));
    // trailers: read from the origin, one added by the script
    let t = trailer_origin();
    let g = fetch(&p, &ca, &[&format!("http://127.0.0.1:{t}/trailers")]);
    assert_eq!(g.text(), "hello");
    assert_eq!(g.header("x-origin-trailer"), Some("yes"), "{:?}", g.headers);
    assert_eq!(
        g.header("x-script-trailer"),
        Some("added"),
        "{:?}",
        g.headers
    );
    no_check_failed(&p);
}

#[test]
fn python_api_request_fields_forms_cookies_redirects_make() {
    let o = enc_origin();
    let other =
        Origin::http(|r| Response::ok(format!("other origin got {} {}", r.method, r.target)));
    let p = Proxy::start(&["-s", &script("api_message.py")]);
    let ca = p.ca_cert();
    let base = format!("http://127.0.0.1:{}", o.port);
    let g = fetch(
        &p,
        &ca,
        &[
            "-H",
            "Cookie: sid=abc; k=1; k=2",
            &format!("{base}/fields?a=1&b=2&a=3"),
        ],
    );
    let t = g.text();
    assert!(t.starts_with("GET /fields?a=1&b=two&a=3&c=x+y\n"), "{t}");
    assert!(t.contains("cookie: sid=changed; k=1; k=2\n"), "{t}");
    assert!(t.contains(&format!("x-seen-port: {}\n", o.port)), "{t}");
    assert_eq!(
        g.header("x-pretty-url"),
        Some(&*format!("{base}/fields?a=1&b=two&a=3&c=x+y"))
    );
    // urlencoded form
    let g = fetch(&p, &ca, &["-d", "name=alice&x=1", &format!("{base}/form")]);
    assert!(g.text().ends_with("\nname=bob&x=1&extra=1"), "{}", g.text());
    // multipart form
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f.txt");
    std::fs::write(&f, "file content").unwrap();
    let file_arg = format!("file=@{}", f.display());
    let g = fetch(
        &p,
        &ca,
        &[
            "-F",
            "field=value",
            "-F",
            &file_arg,
            &format!("{base}/multipart"),
        ],
    );
    let t = g.text();
    assert!(
        t.contains("name=\"field\"\r\n\r\nchanged\r\n")
            && t.contains("name=\"other\"\r\n\r\n2\r\n"),
        "{t}"
    );
    // json request body
    let g = fetch(
        &p,
        &ca,
        &[
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"k": [1, 2]}"#,
            &format!("{base}/reqjson"),
        ],
    );
    assert!(g.text().ends_with(r#"{"k": "replaced"}"#), "{}", g.text());
    // response cookies
    let g = fetch(&p, &ca, &[&format!("{base}/cookies")]);
    let sc: Vec<&str> = g
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(sc.len(), 2, "{sc:?}");
    assert!(
        sc[0].starts_with("a=1") && sc[1].starts_with("b=changed") && sc[1].contains("Path=/x"),
        "{sc:?}"
    );
    // url / host+port+path redirect to another local origin
    let po = other.port.to_string();
    let g = fetch(
        &p,
        &ca,
        &[
            "-H",
            &format!("x-other-port: {po}"),
            &format!("{base}/redirect-url"),
        ],
    );
    assert_eq!(g.text(), "other origin got GET /via-url");
    let g = fetch(
        &p,
        &ca,
        &[
            "-H",
            &format!("x-other-port: {po}"),
            &format!("{base}/redirect-host"),
        ],
    );
    assert_eq!(g.text(), "other origin got GET /via-host");
    // Response.make in request: the origin is not asked
    let n = o.requests().len();
    let g = fetch(&p, &ca, &[&format!("{base}/make-response")]);
    assert_eq!((g.status, g.text()), (203, "made by script".to_string()));
    assert_eq!(g.header("x-made"), Some("1"));
    assert_eq!(g.header("content-type"), Some("text/x-made"));
    assert_eq!(o.requests().len(), n);
    // Request.make replaces the request
    let g = fetch(&p, &ca, &[&format!("{base}/make-request")]);
    assert!(
        g.text().starts_with("PUT /made-request?q=1\nx-made: req\n"),
        "{}",
        g.text()
    );
    assert!(g.text().ends_with("\nput body"), "{}", g.text());
    let g = fetch(&p, &ca, &["--http1.0", &format!("{base}/http10")]);
    assert_eq!(g.status, 200);
    no_check_failed(&p);
}

#[test]
fn python_api_flow_intercept_kill_copy_commands_logging_shutdown() {
    let o = enc_origin();
    let p = std::sync::Arc::new(Proxy::start(&["-s", &script("api_flow.py")]));
    let ca = p.ca_cert();
    let base = format!("http://127.0.0.1:{}", o.port);
    // intercept in one flow, resume from another flow's hook
    let (p2, ca2, b2) = (p.clone(), ca.clone(), base.clone());
    let held = std::thread::spawn(move || fetch(&p2, &ca2, &[&format!("{b2}/hold")]));
    p.expect_stdout("FLOW held");
    assert!(
        !o.requests().iter().any(|r| r.target == "/hold"),
        "held flow must wait"
    );
    let g = fetch(&p, &ca, &[&format!("{base}/release")]);
    assert_eq!(g.status, 200);
    let g = held.join().unwrap();
    assert_eq!((g.status, g.text().starts_with("GET /hold")), (200, true));
    // resume from a thread
    let g = fetch(&p, &ca, &[&format!("{base}/thread")]);
    assert!(g.text().starts_with("GET /thread"), "{}", g.text());
    // kill
    let g = fetch(&p, &ca, &[&format!("{base}/kill")]);
    assert!(!g.ok && g.status == 0);
    // copy / marked / comment / metadata
    let g = fetch(&p, &ca, &[&format!("{base}/copy")]);
    assert!(!g.text().contains("x-copy-only"), "{}", g.text());
    assert_eq!(
        (
            g.header("x-marked"),
            g.header("x-comment"),
            g.header("x-meta")
        ),
        (Some(":star:"), Some("a comment"), Some("1"))
    );
    // commands
    let g = fetch(&p, &ca, &[&format!("{base}/cmd")]);
    assert!(g.text().contains("x-cmd: hello proxy\n"), "{}", g.text());
    // ctx.log, logging with ALERT and the client prefix, strutils
    let g = fetch(&p, &ca, &[&format!("{base}/log")]);
    assert!(
        g.text().contains("x-escaped: a\\x00\\xff\\n\n"),
        "{}",
        g.text()
    );
    for l in ["CTXLOG info", "CTXLOG warn", "CTXLOG error"] {
        p.expect_stdout(l);
    }
    let alert = p.expect_stdout("ALERTED");
    assert!(
        alert.contains("127.0.0.1:"),
        "client address prefix: {alert}"
    );
    // error hook
    let closed = closed_port();
    let g = fetch(&p, &ca, &[&format!("http://127.0.0.1:{closed}/")]);
    assert_eq!(g.status, 502);
    p.expect_stdout("ERROR HOOK");
    no_check_failed(&p);
    // shutdown: the process exits 0 after done()
    let _ = fetch(&p, &ca, &[&format!("{base}/shutdown")]);
    p.expect_stdout("DONE HOOK ran");
}
