//! Differential test: the same addon scripts (modelled on mitmproxy's example
//! addons) under the real mitmdump 11.0.2 and under mitmrs, against the same local
//! origin. What the origin received (method, path, selected headers, body) and what
//! the client got (status, headers minus Date/Server/Content-Length-if-chunked,
//! body) must be the same. Loopback only.
#![cfg(feature = "python")]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use support::{workspace_root, Origin, Response};

fn mitmdump() -> PathBuf {
    let mut cands: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("MITMDUMP") {
        cands.push(p.into());
    }
    cands.push(workspace_root().join(".venv/bin/mitmdump"));
    cands.push("/tmp/m/bin/mitmdump".into());
    cands.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("mitmdump 11.0.2 not found ($MITMDUMP, .venv/bin/mitmdump, /tmp/m/bin/mitmdump): run ./scripts/test-all, which installs it (CI does)")
    })
}

fn script(name: &str) -> String {
    workspace_root()
        .join("crates/mitmrs-python/tests/scripts/diff")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

/// A running proxy (either implementation) and its output.
struct Running {
    child: Child,
    port: u16,
    out: Arc<(Mutex<String>, Condvar)>,
    _dir: tempfile::TempDir,
}

impl Running {
    fn start(bin: &std::path::Path, extra: &[String]) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(bin)
            .args([
                "--listen-host",
                "127.0.0.1",
                "-p",
                "0",
                "--set",
                &format!("confdir={}", dir.path().display()),
            ])
            .args(extra)
            .env_remove("MITMRS_LOG")
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Arc::new((Mutex::new(String::new()), Condvar::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let o = out.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let (m, c) = &*o;
                    m.lock().unwrap().push_str(&(line + "\n"));
                    c.notify_all();
                }
            });
        }
        let mut r = Running {
            child,
            port: 0,
            out,
            _dir: dir,
        };
        const MARK: &str = "proxy listening at 127.0.0.1:";
        let text = r.wait_for(MARK);
        let i = text.find(MARK).unwrap() + MARK.len();
        r.port = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
            .parse()
            .unwrap();
        r
    }

    fn wait_for(&self, needle: &str) -> String {
        let (m, c) = &*self.out;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut s = m.lock().unwrap();
        while !s.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {needle:?}; output:\n{s}"
            );
            s = c.wait_timeout(s, left).unwrap().0;
        }
        s.clone()
    }

    fn output(&self) -> String {
        self.out.0.lock().unwrap().clone()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the client got.
#[derive(Debug, PartialEq)]
struct ClientSaw {
    ok: bool,
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

fn curl(port: u16, args: &[String]) -> ClientSaw {
    let dir = tempfile::tempdir().unwrap();
    let hfile = dir.path().join("h");
    let out = Command::new("/usr/bin/curl")
        .args([
            "-sS",
            "--noproxy",
            "",
            "--max-time",
            "20",
            "-x",
            &format!("http://127.0.0.1:{port}"),
        ])
        .arg("-D")
        .arg(&hfile)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let head = std::fs::read_to_string(&hfile).unwrap_or_default();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    headers.retain(|(k, _)| k != "date" && k != "server" && !(chunked && k == "content-length"));
    headers.sort();
    ClientSaw {
        ok: out.status.success(),
        status,
        headers,
        body: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// What the origin received, reduced to what the scripts may change.
fn origin_saw(reqs: &[support::Request]) -> Vec<String> {
    reqs.iter()
        .map(|r| {
            let mut hs: Vec<String> = r
                .headers
                .iter()
                .filter(|(k, _)| {
                    let k = k.to_ascii_lowercase();
                    k == "host"
                        || k == "content-type"
                        || k == "cookie"
                        || k.ends_with("authorization")
                        || k.starts_with("x-")
                })
                .map(|(k, v)| format!("{}: {v}", k.to_ascii_lowercase()))
                .collect();
            hs.sort();
            format!(
                "{} {}\n{}\n{}",
                r.method,
                r.target,
                hs.join("\n"),
                String::from_utf8_lossy(&r.body)
            )
        })
        .collect()
}

/// An origin that answers with a chunked body and a trailer.
fn trailer_origin() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().take(50) {
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
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nTrailer: x-origin-trailer\r\nConnection: close\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\nx-origin-trailer: yes\r\n\r\n",
                );
                let _ = s.shutdown(std::net::Shutdown::Write);
                let mut rest = Vec::new();
                let _ = r.read_to_end(&mut rest);
            });
        }
    });
    port
}

struct Case {
    /// The script (`-` for none: the case is about `extra`).
    script: &'static str,
    sets: Vec<String>,
    /// More arguments for both (`{o}` is the origin port).
    extra: Vec<&'static str>,
    /// curl arguments per request; `{o}` is the origin port, `{t}` the trailer origin's.
    requests: Vec<Vec<&'static str>>,
    /// A line the proxy logs (checked under both).
    expect_log: Option<&'static str>,
}

fn cases(o: u16) -> Vec<Case> {
    vec![
        Case {
            script: "add_header.py",
            sets: vec![],
            extra: vec![],
            requests: vec![
                vec!["http://127.0.0.1:{o}/a"],
                vec!["http://127.0.0.1:{o}/b"],
            ],
            expect_log: None,
        },
        Case {
            script: "modify_form.py",
            sets: vec![],
            extra: vec![],
            requests: vec![
                vec!["-d", "a=1&b=two", "http://127.0.0.1:{o}/form"],
                vec!["http://127.0.0.1:{o}/noform"],
            ],
            expect_log: None,
        },
        Case {
            script: "modify_query.py",
            sets: vec![],
            extra: vec![],
            requests: vec![
                vec!["http://127.0.0.1:{o}/q?a=1&drop=x&a=2"],
                vec!["http://127.0.0.1:{o}/noquery"],
            ],
            expect_log: None,
        },
        Case {
            script: "redirect_requests.py",
            sets: vec![format!("origin_port={o}")],
            extra: vec![],
            requests: vec![
                vec!["http://example.invalid/redirected?x=1"],
                vec!["-H", "Host: 127.0.0.1:{o}", "http://127.0.0.1:{o}/direct"],
            ],
            expect_log: None,
        },
        Case {
            script: "reply_from_proxy.py",
            sets: vec![],
            extra: vec![],
            requests: vec![
                vec!["http://127.0.0.1:{o}/reply"],
                vec!["http://127.0.0.1:{o}/passthrough"],
            ],
            expect_log: None,
        },
        Case {
            script: "stream_modify.py",
            sets: vec![],
            extra: vec![],
            requests: vec![vec!["http://127.0.0.1:{o}/stream"]],
            expect_log: None,
        },
        Case {
            script: "trailers.py",
            sets: vec![],
            extra: vec![],
            requests: vec![vec!["http://127.0.0.1:{o}/trailers"]],
            expect_log: Some("HTTP trailers:"),
        },
        Case {
            script: "options_configure.py",
            sets: vec![
                "addheader=42".into(),
                "tagname=label".into(),
                "shout=true".into(),
            ],
            extra: vec![],
            requests: vec![vec!["http://127.0.0.1:{o}/opts"]],
            expect_log: Some("configured: ['addheader', 'shout', 'tagname']"),
        },
        Case {
            script: "anatomy.py",
            sets: vec![],
            extra: vec![],
            requests: vec![
                vec!["http://127.0.0.1:{o}/1"],
                vec!["http://127.0.0.1:{o}/2"],
            ],
            expect_log: Some("We've seen 2 flows"),
        },
        Case {
            script: "filter_kill.py",
            sets: vec![],
            extra: vec![],
            requests: vec![
                vec!["http://127.0.0.1:{o}/kill/me"],
                vec!["http://127.0.0.1:{o}/keep"],
            ],
            expect_log: None,
        },
        // mitmproxy's rewrite addons (no script): the same options, the same result.
        Case {
            script: "-",
            sets: vec![],
            extra: vec![
                "-H",
                "/~q/X-Added/yes",
                "-H",
                "|~s & ~u /h|X-Resp|from\\x20proxy",
                "-H",
                ":~hq x-drop:x-drop:",
                "-H",
                "|~u /h2|Content-Type|text\\x2fmine",
            ],
            requests: vec![
                vec![
                    "-H",
                    "x-drop: 1",
                    "-H",
                    "x-keep: 2",
                    "http://127.0.0.1:{o}/h1",
                ],
                vec!["http://127.0.0.1:{o}/h2"],
                vec!["http://127.0.0.1:{o}/other"],
            ],
            expect_log: None,
        },
        Case {
            script: "-",
            sets: vec![],
            extra: vec![
                "-B",
                "/~bq hello/hello (\\w+)/bye \\\\1!",
                "-B",
                "|~s|origin: (?P<m>[A-Z]+)|\\g<m> answered",
                "-B",
                "/~u nothing-matches/./X",
            ],
            requests: vec![
                vec!["-d", "hello world", "http://127.0.0.1:{o}/b1"],
                vec!["http://127.0.0.1:{o}/b2"],
            ],
            expect_log: None,
        },
        Case {
            script: "-",
            sets: vec![],
            extra: vec![
                "-M",
                "|127.0.0.1:{o}/old|127.0.0.1:{o}/new",
                "-M",
                "/~m POST/\\?.*$/",
            ],
            requests: vec![
                vec!["http://127.0.0.1:{o}/old/x?y=1"],
                vec!["-d", "z", "http://127.0.0.1:{o}/post?drop=1"],
                vec!["http://127.0.0.1:{o}/kept?q=1"],
            ],
            expect_log: None,
        },
        Case {
            script: "-",
            sets: vec![
                "block_list=/~u BLOCKED/403".into(),
                "block_list=|~u dropped & ~m GET|444".into(),
            ],
            extra: vec![],
            requests: vec![
                vec!["http://127.0.0.1:{o}/blocked"],
                vec!["http://127.0.0.1:{o}/dropped"],
                vec!["-d", "x", "http://127.0.0.1:{o}/dropped"],
                vec!["http://127.0.0.1:{o}/fine"],
            ],
            expect_log: None,
        },
        Case {
            script: "-",
            sets: vec!["proxyauth=user:pass".into()],
            extra: vec![],
            requests: vec![
                vec!["http://127.0.0.1:{o}/none"],
                vec!["--proxy-user", "user:pass", "http://127.0.0.1:{o}/good"],
                vec!["--proxy-user", "user:bad", "http://127.0.0.1:{o}/bad"],
                vec![
                    "-H",
                    "Authorization: Basic dXNlcjpwYXNz",
                    "http://127.0.0.1:{o}/wrong-header",
                ],
                vec![
                    "--proxy-user",
                    "user:pass",
                    "-p",
                    "http://127.0.0.1:{o}/tunnel",
                ],
                vec!["-p", "http://127.0.0.1:{o}/tunnel-refused"],
            ],
            expect_log: None,
        },
    ]
}

/// Streamed bodies: mitmdump forwards the origin's Content-Length, mitmrs sends a
/// `.stream` callable's output chunked. If either side is chunked, framing headers
/// are not compared.
fn unframe(a: &mut ClientSaw, b: &mut ClientSaw) {
    let chunked = |c: &ClientSaw| {
        c.headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    };
    if chunked(a) || chunked(b) {
        for c in [a, b] {
            c.headers
                .retain(|(k, _)| k != "transfer-encoding" && k != "content-length");
        }
    }
}

#[derive(Debug, PartialEq)]
struct Run {
    origin: Vec<String>,
    client: Vec<ClientSaw>,
}

fn run_case(bin: &std::path::Path, c: &Case, origin: &Origin, t: u16) -> (Run, String) {
    let o = origin.port.to_string();
    let mut args: Vec<String> = c.extra.iter().map(|x| x.replace("{o}", &o)).collect();
    if c.script != "-" {
        args.extend(["-s".to_string(), script(c.script)]);
    }
    for s in &c.sets {
        args.push("--set".into());
        args.push(s.clone());
    }
    let p = Running::start(bin, &args);
    let before = origin.requests().len();
    let mut client = Vec::new();
    for r in &c.requests {
        let a: Vec<String> = r
            .iter()
            .map(|x| {
                x.replace("{o}", &origin.port.to_string())
                    .replace("{t}", &t.to_string())
            })
            .collect();
        client.push(curl(p.port, &a));
    }
    if let Some(l) = c.expect_log {
        p.wait_for(l);
    }
    let origin_run = origin_saw(&origin.requests()[before..]);
    (
        Run {
            origin: origin_run,
            client,
        },
        p.output(),
    )
}

#[test]
fn python_differential_against_mitmdump() {
    let md = mitmdump();
    let origin = Origin::http(|r| {
        if r.target.starts_with("/stream") {
            return Response::ok("foo and foo ".repeat(1000));
        }
        Response::ok(format!("origin: {} {}", r.method, r.target))
    });
    let t = trailer_origin();
    let mitmrs = PathBuf::from(env!("CARGO_BIN_EXE_mitmrs"));
    let mut failures = Vec::new();
    for c in cases(origin.port) {
        let (want, want_out) = run_case(&md, &c, &origin, t);
        let (mut got, got_out) = run_case(&mitmrs, &c, &origin, t);
        let mut want = want;
        for (w, g) in want.client.iter_mut().zip(got.client.iter_mut()) {
            unframe(w, g);
        }
        if want != got {
            failures.push(format!(
                "== {}\n-- mitmdump:\n{want:#?}\n-- mitmrs:\n{got:#?}\n-- mitmdump output:\n{want_out}\n-- mitmrs output:\n{got_out}",
                c.script
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} script(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
