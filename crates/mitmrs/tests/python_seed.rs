//! Seed-era (0.x) scripts run unmodified: generator streaming over the chunks
//! (bytes or (prefix, content, suffix) tuples), old event names with one
//! deprecation warning each, hooks taking (context, flow). Loopback only.
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

#[test]
fn python_seed_generator_streaming() {
    let body = "foo ".repeat(50_000);
    let b2 = body.clone();
    let o = Origin::http(move |_| Response::ok(b2.clone()));
    let p = Proxy::start(&["-s", &script("seed_stream.py")]);
    let r = curl(&p, &[&format!("http://127.0.0.1:{}/gen", o.port)]);
    assert_eq!(r.status, 200, "{}", p.output());
    assert_eq!(r.text(), "bar ".repeat(50_000));
    let r = curl(&p, &[&format!("http://127.0.0.1:{}/tuples", o.port)]);
    assert_eq!(r.text(), "baz ".repeat(50_000), "{}", p.output());
    let r = curl(&p, &[&format!("http://127.0.0.1:{}/plain", o.port)]);
    assert_eq!(r.text(), body);
    assert!(!p.output().contains("Addon error"), "{}", p.output());
}

#[test]
fn python_seed_old_names_and_context_hooks() {
    let o = Origin::http(|r| Response::ok(format!("seed origin {}", r.target)));
    let s = script("seed_oldnames.py");
    let p = Proxy::start(&["-s", &s]);
    p.expect_stdout("seed start ran");
    for (old, new) in [
        ("start", "running"),
        ("clientconnect", "client_connected"),
        ("clientdisconnect", "client_disconnected"),
        ("serverconnect", "server_connect"),
        ("serverdisconnect", "server_disconnected"),
        ("websockets_handshake", "websocket_start"),
        ("log", "add_log"),
        ("tick", "running"),
    ] {
        p.expect_stdout(
            &format!("the '{old}' hook is deprecated, use '{new}'").replace(
                "use 'running'",
                if old == "tick" {
                    "use running"
                } else {
                    "use 'running'"
                },
            ),
        );
    }
    for i in 0..2 {
        let g = std::process::Command::new("/usr/bin/curl")
            .args([
                "-s",
                "-i",
                "--noproxy",
                "",
                "--max-time",
                "20",
                "-x",
                &p.url(),
                &format!("http://127.0.0.1:{}/s{i}", o.port),
            ])
            .output()
            .unwrap();
        let t = String::from_utf8_lossy(&g.stdout).to_string();
        assert!(t.contains(&format!("seed origin /s{i}")), "{t}");
    }
    assert_eq!(o.requests()[0].header("x-seed"), Some("1"));
    p.expect_stdout("seed request /s1");
    p.expect_stdout("seed clientconnect ran");
    p.expect_stdout("seed serverconnect ran 127.0.0.1");
    p.expect_stdout("seed serverdisconnect ran");
    p.expect_stdout("seed clientdisconnect ran");
    let out = p.stop().join("\n");
    for old in ["start", "clientconnect", "serverconnect", "tick", "log"] {
        assert_eq!(
            out.matches(&format!("the '{old}' hook is deprecated"))
                .count(),
            1,
            "{old}: {out}"
        );
    }
    assert!(!out.contains("Addon error"), "{out}");
}
