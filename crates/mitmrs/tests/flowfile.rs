//! Flow files through the real binary, checked against the real mitmproxy 11.0.2:
//! flows that mitmrs saves with `-w` open in mitmproxy with every field as it was
//! on the wire; files written by mitmproxy releases read (`-r`) and print as
//! mitmdump prints them, and saved again byte for byte as mitmdump saves them;
//! broken files fail with a message that names the flow and the problem.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{
    closed_port, curl, curl_trusting, run_bin, venv_python, Origin, Proxy, Response, TestPki,
};

/// Flow files written by mitmproxy releases (copied, unchanged, from mitmproxy's
/// test data; see tests/data/mitmproxy-flows/README.md).
fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/mitmproxy-flows")
        .join(name)
}

fn mitmdump(args: &[&str]) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    Command::new(support::workspace_root().join(".venv/bin/mitmdump"))
        .args(args)
        .arg("--set")
        .arg(format!("confdir={}", tmp.path().display()))
        .output()
        .expect("cannot run mitmdump (run ./scripts/test-all to install it)")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The console output without the log line of mitmrs creating its CA in the
/// fresh confdir (mitmdump creates its own silently).
fn console(o: &Output) -> String {
    stdout(o)
        .lines()
        .filter(|l| !l.contains("created a new CA"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Every flow of `file` as mitmproxy's own reader sees it, one JSON object per line.
fn read_with_mitmproxy(file: &Path) -> Vec<serde_json::Value> {
    const SCRIPT: &str = r#"
import json, sys
from mitmproxy import io
for f in io.FlowReader(open(sys.argv[1], "rb")).stream():
    r, s = f.response, f.server_conn
    print(json.dumps({
        "id": f.id, "live": f.live,
        "method": f.request.method, "url": f.request.url, "authority": f.request.authority,
        "request_content": f.request.content.decode("latin-1"),
        "request_headers": [[k, v] for k, v in f.request.headers.items(multi=True)],
        "status": r.status_code if r else None,
        "reason": r.reason if r else None,
        "response_content": r.content.decode("latin-1") if r else None,
        "error": f.error.msg if f.error else None,
        "client_ip": f.client_conn.peername[0],
        "client_tls": f.client_conn.tls_established,
        "client_sni": f.client_conn.sni,
        "server_address": list(s.address) if s.address else None,
        "server_tls": s.tls_established,
        "server_certs": len(s.certificate_list),
        "ordered": f.request.timestamp_start <= (r.timestamp_end if r else f.request.timestamp_start),
    }))
"#;
    let out = Command::new(venv_python())
        .args(["-c", SCRIPT])
        .arg(file)
        .output()
        .expect("cannot run python");
    assert!(
        out.status.success(),
        "mitmproxy cannot read {}:\n{}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn flows_saved_with_w_open_in_mitmproxy_with_every_field() {
    let origin = Origin::http(|req| {
        Response::ok(format!(
            "{} {} {}",
            req.method,
            req.target,
            String::from_utf8_lossy(&req.body)
        ))
    });
    let pki = TestPki::new();
    let secure = Origin::https(&pki, |req| Response::ok(format!("secure {}", req.target)));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sub/dir/flows.mitm");
    let file_arg = file.display().to_string();
    let ca_opt = format!("ssl_verify_upstream_trusted_ca={}", pki.ca_path.display());
    let proxy = Proxy::start(&["-w", &file_arg, "--set", &ca_opt]);

    let base = format!("http://127.0.0.1:{}", origin.port);
    let r = curl(&proxy, &[&format!("{base}/get?x=1")]);
    assert!(r.ok, "{}", r.stderr);
    let r = curl(&proxy, &["-d", "a=1", &format!("{base}/post")]);
    assert!(r.ok, "{}", r.stderr);
    let r = curl_trusting(
        &proxy,
        &proxy.ca_cert(),
        &[&format!("https://localhost:{}/tls", secure.port)],
    );
    assert!(r.ok, "{}", r.stderr);
    let dead = closed_port();
    let r = curl(&proxy, &[&format!("http://127.0.0.1:{dead}/down")]);
    assert_eq!(r.status, 502);
    let status = proxy.interrupt();
    assert!(status.success(), "mitmrs exited with {status}");

    let flows = read_with_mitmproxy(&file);
    assert_eq!(flows.len(), 4, "{flows:#?}");
    let get = &flows[0];
    assert_eq!(get["method"], "GET");
    assert_eq!(get["url"], format!("{base}/get?x=1"));
    // As mitmproxy in regular mode: an absolute-form request's authority is
    // cleared (it goes on in origin form).
    assert_eq!(get["authority"], "");
    assert_eq!(get["status"], 200);
    assert_eq!(get["reason"], "OK");
    assert_eq!(get["response_content"], "GET /get?x=1 ");
    assert_eq!(get["client_ip"], "127.0.0.1");
    assert_eq!(get["client_tls"], false);
    assert_eq!(
        get["server_address"],
        serde_json::json!(["127.0.0.1", origin.port])
    );
    assert_eq!(get["live"], false);
    assert_eq!(get["ordered"], true);
    assert!(get["request_headers"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!([
            "Host",
            format!("127.0.0.1:{}", origin.port)
        ])));

    let post = &flows[1];
    assert_eq!(
        (post["method"].as_str(), post["request_content"].as_str()),
        (Some("POST"), Some("a=1"))
    );
    assert_eq!(post["response_content"], "POST /post a=1");

    let tls = &flows[2];
    assert_eq!(tls["url"], format!("https://localhost:{}/tls", secure.port));
    assert_eq!(tls["response_content"], "secure /tls");
    assert_eq!(
        (tls["client_tls"].as_bool(), tls["server_tls"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(tls["client_sni"], "localhost");
    assert_eq!(
        tls["server_certs"], 2,
        "the chain the origin sent (leaf, CA), as PEM"
    );

    let down = &flows[3];
    assert_eq!(down["url"], format!("http://127.0.0.1:{dead}/down"));
    assert!(
        down["error"].as_str().unwrap_or("").contains("refused"),
        "{down}"
    );

    // mitmrs reads its own file back, and prints it as mitmdump prints it.
    let ours = run_bin(&["-nr", &file_arg]);
    assert!(ours.status.success(), "{ours:?}");
    let theirs = mitmdump(&["-nr", &file_arg]);
    assert_eq!(console(&ours), console(&theirs));
    assert!(
        stdout(&ours).contains("POST http://127.0.0.1:"),
        "{}",
        stdout(&ours)
    );
}

/// Flow files written by mitmproxy releases (formats 11 to 20): mitmrs prints
/// them as mitmdump does, and saves them again as mitmdump does.
#[test]
fn mitmproxy_files_read_and_save_as_in_mitmdump() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "dumpfile-7.mitm",
        "dumpfile-10.mitm",
        "dumpfile-19.mitm",
        "successful_log.mitm",
        "error_log.mitm",
        "websocket.mitm",
    ] {
        let input = fixture(name);
        let input = input.to_str().unwrap();
        let ours_file = dir.path().join(format!("ours-{name}"));
        let theirs_file = dir.path().join(format!("theirs-{name}"));
        let ours = run_bin(&["-nr", input, "-w", ours_file.to_str().unwrap()]);
        let theirs = mitmdump(&["-nr", input, "-w", theirs_file.to_str().unwrap()]);
        assert!(ours.status.success(), "{name}: {ours:?}");
        assert_eq!(console(&ours), console(&theirs), "{name}: console output");
        let (a, b) = (
            std::fs::read(&ours_file).unwrap(),
            std::fs::read(&theirs_file).unwrap(),
        );
        match name {
            // Known, listed differences: format 10's unknown addresses ("", 0) are
            // written as 0.0.0.0:0 / None; an IPv6 address read as [host, port] is
            // written as Python's socket gives it, [host, port, flowinfo, scope_id].
            "dumpfile-10.mitm" | "dumpfile-19.mitm" => {
                let flows = read_with_mitmproxy(&ours_file);
                assert_eq!(flows.len(), 1, "{name}");
                let theirs = read_with_mitmproxy(&theirs_file);
                assert_eq!(flows[0]["url"], theirs[0]["url"], "{name}");
                assert_eq!(
                    flows[0]["response_content"], theirs[0]["response_content"],
                    "{name}"
                );
            }
            _ => assert!(
                a == b,
                "{name}: the saved file differs from mitmdump's ({} vs {} bytes)",
                a.len(),
                b.len()
            ),
        }
    }
    // In reverse mode every loaded request is pointed at the target first
    // (mitmdump prints the same lines).
    let reverse = stdout(&run_bin(&[
        "-nr",
        fixture("successful_log.mitm").to_str().unwrap(),
        "--mode",
        "reverse:http://127.0.0.1:9999",
    ]));
    assert!(
        reverse.contains("127.0.0.1:51407: GET http://127.0.0.1:9999/ HTTP/2.0\n")
            && reverse.contains("127.0.0.1:51727: POST http://127.0.0.1:9999/post HTTP/2.0\n"),
        "{reverse}"
    );
    let quic = stdout(&run_bin(&[
        "-nr",
        fixture("dumpfile-19.mitm").to_str().unwrap(),
    ]));
    assert!(
        quic.contains("GET https://cloudflare-quic.com/ HTTP/3"),
        "{quic}"
    );
}

#[test]
fn a_file_on_standard_input_reads_as_the_file() {
    // `cat flows | mitmrs -nr -`, as mitmdump does it.
    let input = fixture("successful_log.mitm");
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(support::BIN)
        .args(["-nr", "-", "--set"])
        .arg(format!("confdir={}", dir.path().display()))
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let from_file = run_bin(&["-nr", input.to_str().unwrap()]);
    assert_eq!(console(&o), console(&from_file));
    assert!(console(&o).contains("GET https://example.com/"), "{o:?}");
}

#[test]
fn broken_and_unsupported_files_say_what_and_where() {
    let dir = tempfile::tempdir().unwrap();
    // Missing file.
    let missing = dir.path().join("missing.mitm");
    let o = run_bin(&["-nr", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains(&format!(
            "cannot read flows from {}: No such file",
            missing.display()
        )),
        "{o:?}"
    );
    // Cut off inside the second flow: the first is shown, then the error.
    let whole = std::fs::read(fixture("successful_log.mitm")).unwrap();
    let cut = dir.path().join("cut.mitm");
    std::fs::write(&cut, &whole[..9000]).unwrap();
    let o = run_bin(&["-nr", cut.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("GET https://example.com/ HTTP/2.0"), "{out}");
    assert!(
        out.contains("flow 2 (at byte 7873) is cut off: the file ends inside it (the flow before it was loaded)"),
        "{out}"
    );
    // Garbage.
    let junk = dir.path().join("junk.mitm");
    std::fs::write(&junk, b"12:hello").unwrap();
    let o = run_bin(&["-nr", junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("flow 1 (at byte 0) is cut off"),
        "{o:?}"
    );
    std::fs::write(&junk, b"GET / HTTP/1.1\r\n").unwrap();
    let o = run_bin(&["-nr", junk.to_str().unwrap()]);
    assert!(
        stdout(&o).contains("flow 1 (at byte 0) is not a tnetstring record: byte 0: expected a length digit, found 'G'"),
        "{o:?}"
    );
    // A HAR file.
    let o = run_bin(&["-nr", fixture("successful_log.har").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("this looks like a HAR file"), "{o:?}");
    // Records mitmrs cannot use are skipped with a warning each; the read goes
    // on, and the exit status says something was skipped. With -q the warnings
    // are quiet but the summary is not.
    let mut data = std::fs::read(fixture("error_log.mitm")).unwrap();
    data.extend_from_slice(b"20:4:type;3:tcp;1:x;0:~}");
    data.extend_from_slice(&std::fs::read(fixture("error_log.mitm")).unwrap());
    let mixed = dir.path().join("mixed.mitm");
    std::fs::write(&mixed, &data).unwrap();
    let o = run_bin(&["-nr", mixed.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let out = stdout(&o);
    assert_eq!(
        out.matches("tcp flows are not supported yet").count(),
        1,
        "{out}"
    );
    let o = run_bin(&["-nqr", mixed.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stdout(&o).contains("read 4 flows, skipped 1"), "{o:?}");
    let o = run_bin(&["-nr", fixture("dumpfile-010.mitm").to_str().unwrap()]);
    assert!(
        stdout(&o).contains("flow format 0.10 is not readable yet")
            && stdout(&o).contains("mitmdump -nr OLD -w NEW"),
        "{o:?}"
    );
    // Options: a record over the size limit; a save path that cannot be created.
    let o = run_bin(&[
        "-nr",
        fixture("dumpfile-19.mitm").to_str().unwrap(),
        "--set",
        "rfile_max_flow_size=10k",
    ]);
    assert!(stdout(&o).contains("more than the limit of 10240"), "{o:?}");
    let blocked = dir.path().join("file");
    std::fs::write(&blocked, b"").unwrap();
    let target = blocked.join("x.mitm");
    let o = run_bin(&["-n", "-w", target.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("save_stream_file") && err.contains("cannot open"),
        "{err}"
    );
    let o = run_bin(&["-n", "--set", "save_stream_filter=~u x ("]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("save_stream_filter") && err.contains("Invalid filter expression"),
        "{err}"
    );
}

#[test]
fn sigterm_stops_cleanly_with_the_file_complete() {
    let origin = Origin::http(|_| Response::ok("x"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flows.mitm");
    let proxy = Proxy::start(&["-w", file.to_str().unwrap()]);
    let r = curl(&proxy, &[&format!("http://127.0.0.1:{}/t", origin.port)]);
    assert!(r.ok, "{}", r.stderr);
    let status = proxy.terminate();
    assert!(status.success(), "mitmrs exited with {status}");
    assert_eq!(read_with_mitmproxy(&file).len(), 1);
}

#[test]
fn plus_appends_and_scripts_changes_are_saved() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.mitm");
    let plus = format!("+{}", out.display());
    let input = fixture("successful_log.mitm");
    let input = input.to_str().unwrap();
    for _ in 0..2 {
        let o = run_bin(&["-nqr", input, "-w", &plus]);
        assert!(o.status.success(), "{o:?}");
    }
    assert_eq!(read_with_mitmproxy(&out).len(), 4, "appended twice");
    // Without +, the file is replaced; a script's change is what gets saved.
    let script = dir.path().join("tag.py");
    std::fs::write(
        &script,
        "def response(flow):\n    flow.response.headers['x-tagged'] = 'yes'\n    flow.comment = 'seen'\n    \
         flow.metadata.update({'big': -2**70, 3: ('t', 1), 'obj': object()})\n",
    )
    .unwrap();
    let o = run_bin(&[
        "-nr",
        input,
        "-s",
        script.to_str().unwrap(),
        "-w",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{o:?}");
    // What a flow file cannot hold is named once, and left out.
    let err = stdout(&o) + &String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("a flow file cannot hold").count(), 1, "{err}");
    const CHECK: &str = r#"
import sys
from mitmproxy import io
fs = list(io.FlowReader(open(sys.argv[1], "rb")).stream())
print(len(fs), [f.response.headers.get("x-tagged") for f in fs], [f.comment for f in fs])
print(fs[0].metadata)
"#;
    let check = Command::new(venv_python())
        .args(["-c", CHECK])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        stdout(&check).trim(),
        "2 ['yes', 'yes'] ['seen', 'seen']\n{'big': -1180591620717411303424, 3: ['t', 1]}",
        "{check:?}"
    );
}

#[test]
fn a_file_mitmproxy_11_wrote_is_re_saved_byte_for_byte() {
    // Five live flows (plain and HTTPS) written by `mitmdump -w` 11.0.2:
    // read and written again, nothing changes.
    let input = fixture("mitmproxy-11-live.mitm");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.mitm");
    let o = run_bin(&[
        "-nqr",
        input.to_str().unwrap(),
        "-w",
        copy.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(&input).unwrap()
    );
}
