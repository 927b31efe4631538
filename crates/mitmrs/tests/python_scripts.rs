//! Python addon scripts (issue 3) run through the real binary: a local origin
//! (tokio, hand-written HTTP/1.1), curl through the proxy, scripts from
//! crates/mitmrs-python/tests/scripts/. Loopback only.
#![cfg(feature = "python")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../mitmrs-python/tests/scripts")
        .join(name)
}

/// A local origin: answers every request with 200 and a body echoing the request
/// head; `/gzip` answers with a gzip body header-less check is left to scripts.
fn origin() -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap().port()).unwrap();
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).to_string();
                    let body = format!("origin saw:\n{head}");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

struct Proxy {
    child: Child,
    port: u16,
    out: Arc<(Mutex<String>, Condvar)>,
    _dir: tempfile::TempDir,
}

impl Proxy {
    fn start(args: &[&str]) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_mitmrs"))
            .args([
                "-p",
                "0",
                "--set",
                &format!("confdir={}", dir.path().display()),
            ])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Arc::new((Mutex::new(String::new()), Condvar::new()));
        let stdout = child.stdout.take().unwrap();
        let o = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let (m, c) = &*o;
                let mut s = m.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
                c.notify_all();
            }
        });
        let mut p = Proxy {
            child,
            port: 0,
            out,
            _dir: dir,
        };
        let text = p.wait_for("proxy listening at 127.0.0.1:");
        let i = text.find("proxy listening at 127.0.0.1:").unwrap()
            + "proxy listening at 127.0.0.1:".len();
        p.port = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
            .parse()
            .unwrap();
        p
    }

    /// Waits (up to 20 s) until stdout contains `needle`; returns all of stdout.
    fn wait_for(&self, needle: &str) -> String {
        let (m, c) = &*self.out;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut s = m.lock().unwrap();
        while !s.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {needle:?}; stdout:\n{s}"
            );
            s = c.wait_timeout(s, left).unwrap().0;
        }
        s.clone()
    }

    fn curl(&self, url: &str) -> (bool, String) {
        let out = Command::new("/usr/bin/curl")
            .args([
                "-s",
                "-i",
                "--max-time",
                "20",
                "-x",
                &format!("http://127.0.0.1:{}", self.port),
                url,
            ])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_to_exit(args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mitmrs"))
        .args([
            "-p",
            "0",
            "--set",
            &format!("confdir={}", dir.path().display()),
        ])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn python_hooks_modify_headers_content_status() {
    let o = origin();
    let s = script("modify.py");
    let p = Proxy::start(&["-s", s.to_str().unwrap()]);
    let (ok, r) = p.curl(&format!("http://127.0.0.1:{o}/plain"));
    assert!(ok, "{r}");
    assert!(
        r.contains("x-added-by-script: yes"),
        "request header reaches the origin: {r}"
    );
    assert!(r.contains("x-response-script: yes"), "{r}");
    let (_, r) = p.curl(&format!("http://127.0.0.1:{o}/modify"));
    assert!(r.starts_with("HTTP/1.1 201"), "{r}");
    assert!(r.contains("ORIGIN SAW:") && r.ends_with("|GET"), "{r}");
    let (_, r) = p.curl(&format!("http://127.0.0.1:{o}/short"));
    assert!(r.starts_with("HTTP/1.1 418"), "{r}");
    assert!(r.ends_with("short-circuited"), "{r}");
    let (ok, r) = p.curl(&format!("http://127.0.0.1:{o}/kill"));
    assert!(!ok && r.is_empty(), "killed flow: {r}");
    p.wait_for("script saw GET http://127.0.0.1");
}

#[test]
fn python_syntax_error_exits_2_with_traceback() {
    let s = script("syntax_error.py");
    let (code, _out, err) = run_to_exit(&["-s", s.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("syntax_error.py") && err.contains("line 3") && err.contains("SyntaxError"),
        "{err}"
    );
}

#[test]
fn python_error_logged_during_startup_exits_1_like_mitmdump() {
    let s = script("startup_error.py");
    let (code, out, err) = run_to_exit(&["-s", s.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("database unreachable"), "{out}");
    assert!(
        err.contains("Error logged during startup, exiting..."),
        "{err}"
    );
}

#[test]
fn python_hook_exception_is_reported_and_flow_goes_on() {
    let o = origin();
    let s = script("raises.py");
    let p = Proxy::start(&["-s", s.to_str().unwrap()]);
    let (ok, r) = p.curl(&format!("http://127.0.0.1:{o}/x"));
    assert!(ok && r.starts_with("HTTP/1.1 200"), "{r}");
    let out = p.wait_for("ZeroDivisionError");
    assert!(
        out.contains("Addon error") && out.contains("raises.py\", line 5"),
        "{out}"
    );
}

#[test]
fn python_options_load_configure_running() {
    let o = origin();
    let s = script("options.py");
    // --set before and after -s: scripts define these options.
    let p = Proxy::start(&[
        "--set",
        "greeting=hi",
        "-s",
        s.to_str().unwrap(),
        "--set",
        "greet_count=2",
    ]);
    p.wait_for("greeter running with greeting=hi");
    let (_, r) = p.curl(&format!("http://127.0.0.1:{o}/a"));
    assert!(r.contains("x-greeting: hihi"), "{r}");
    let (_, _) = p.curl(&format!("http://127.0.0.1:{o}/setopt"));
    let (_, r) = p.curl(&format!("http://127.0.0.1:{o}/b"));
    assert!(
        r.contains("x-greeting: changedchanged"),
        "ctx.options write goes to the registry: {r}"
    );
    // A rejected value at start-up: exit 2 naming the option.
    let (code, _, err) = run_to_exit(&["-s", s.to_str().unwrap(), "--set", "greet_count=-1"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("greet_count") && err.contains("must not be negative"),
        "{err}"
    );
    // An option nobody defines is still an error.
    let (code, _, err) = run_to_exit(&["-s", s.to_str().unwrap(), "--set", "nosuch=1"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn python_stream_callable() {
    let o = origin();
    let s = script("stream.py");
    let p = Proxy::start(&["-s", s.to_str().unwrap()]);
    let (_, r) = p.curl(&format!("http://127.0.0.1:{o}/upper"));
    assert!(r.contains("ORIGIN SAW:\nGET /UPPER HTTP/1.1"), "{r}");
    let (_, r) = p.curl(&format!("http://127.0.0.1:{o}/bad"));
    assert!(!r.contains("origin saw"), "{r}");
    p.wait_for("stream callable returned str");
    let (ok, r) = p.curl(&format!("http://127.0.0.1:{o}/plain"));
    assert!(ok && r.contains("origin saw"), "the proxy goes on: {r}");
}

#[test]
fn python_concurrent_and_async_hooks_do_not_block_other_flows() {
    let o = origin();
    let s = script("concurrency.py");
    let p = Arc::new(Proxy::start(&["-s", s.to_str().unwrap()]));
    let p2 = p.clone();
    let slow = std::thread::spawn(move || {
        let t = Instant::now();
        let r = p2.curl(&format!("http://127.0.0.1:{o}/slow"));
        (t.elapsed(), r)
    });
    p.wait_for("slow request started");
    let t = Instant::now();
    let (_, r) = p.curl(&format!("http://127.0.0.1:{o}/fast"));
    let fast = t.elapsed();
    assert!(r.contains("x-async: done"), "{r}");
    let (slow_t, (_, sr)) = slow.join().unwrap();
    assert!(sr.contains("x-async: done"), "{sr}");
    assert!(slow_t >= Duration::from_millis(1900), "{slow_t:?}");
    assert!(
        fast < Duration::from_millis(1500),
        "fast flow took {fast:?} while a hook slept"
    );
}

#[test]
fn python_hot_reload_tick_and_old_names() {
    let o = origin();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reloaded.py");
    std::fs::write(
        &path,
        "def response(flow):\n    flow.response.headers['x-version'] = 'v1'\n",
    )
    .unwrap();
    let old = script("oldnames.py");
    let p = Proxy::start(&["-s", path.to_str().unwrap(), "-s", old.to_str().unwrap()]);
    p.wait_for("old start hook ran");
    p.wait_for("'start' hook is deprecated, use 'running'");
    let (_, r) = p.curl(&format!("http://127.0.0.1:{o}/1"));
    assert!(r.contains("x-version: v1"), "{r}");
    std::fs::write(
        &path,
        "def response(flow):\n    flow.response.headers['x-version'] = 'v2'\n",
    )
    .unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    drop(f);
    p.wait_for("Reloading script");
    let (_, r) = p.curl(&format!("http://127.0.0.1:{o}/2"));
    assert!(r.contains("x-version: v2"), "{r}");
    let ticks: u32 = r
        .split("x-ticks: ")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(ticks > 0, "{r}");
    // A broken reload keeps the proxy running without that script.
    std::fs::write(&path, "def response(flow:\n").unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(10))
        .unwrap();
    drop(f);
    p.wait_for("continuing without it");
    let (ok, r) = p.curl(&format!("http://127.0.0.1:{o}/3"));
    assert!(
        ok && !r.contains("x-version") && r.contains("x-ticks"),
        "{r}"
    );
}
