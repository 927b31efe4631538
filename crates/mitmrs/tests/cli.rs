//! The command line of the real binary: version, option listing, and the errors
//! for unknown options and bad values (exit status 2, messages naming the option).

mod support;

use support::{run_bin, Proxy};

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn version_prints_name_and_version() {
    let out = run_bin(&["--version"]);
    assert!(
        out.status.success(),
        "--version failed: {}",
        stderr_of(&out)
    );
    assert_eq!(
        stdout_of(&out).trim(),
        format!("mitmrs {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn options_lists_core_options_with_type_and_default() {
    let out = run_bin(&["--options"]);
    assert!(
        out.status.success(),
        "--options failed: {}",
        stderr_of(&out)
    );
    let text = stdout_of(&out);
    let lines: Vec<&str> = text.lines().collect();
    // Each option is `name: default`, preceded by its help comment ending in its type.
    let expected = [
        ("listen_port", "", "optional int"),
        ("listen_host", "127.0.0.1", "str"),
        ("stream_large_bodies", "", "optional str"),
        ("body_size_limit", "", "optional str"),
        ("ssl_insecure", "false", "bool"),
        ("flow_detail", "1", "int"),
        ("connection_strategy", "eager", "str"),
        ("http2", "true", "bool"),
        ("tcp_timeout", "600", "int"),
        ("upstream_cert", "true", "bool"),
        ("store_streamed_bodies", "false", "bool"),
        ("ssl_verify_upstream_trusted_ca", "", "optional str"),
        ("confdir", "~/.mitmproxy", "str"),
    ];
    for (name, default, ty) in expected {
        let prefix = format!("{name}:");
        let idx = lines
            .iter()
            .position(|l| *l == prefix || l.starts_with(&format!("{prefix} ")))
            .unwrap_or_else(|| panic!("--options does not list {name}:\n{text}"));
        let value = lines[idx][prefix.len()..].trim();
        assert_eq!(value, default, "default of {name} in --options");
        // The comment block just above names the type.
        let comment: Vec<&str> = lines[..idx]
            .iter()
            .rev()
            .take_while(|l| l.starts_with('#'))
            .copied()
            .collect();
        let comment = comment
            .into_iter()
            .rev()
            .map(|l| l.trim_start_matches('#').trim())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            comment.contains(&format!("Type {ty}.")),
            "--options: the help of {name} should say \"Type {ty}.\", got: {comment:?}"
        );
    }
}

#[test]
fn unknown_option_suggests_the_near_name() {
    let out = run_bin(&["-p", "0", "--set", "strem_large_bodies=3m"]);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("strem_large_bodies"),
        "message should name the unknown option: {err}"
    );
    assert!(
        err.contains("stream_large_bodies"),
        "message should suggest stream_large_bodies: {err}"
    );
}

#[test]
fn bad_size_value_names_option_value_and_accepted_forms() {
    let out = run_bin(&["-p", "0", "--set", "stream_large_bodies=3x"]);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("stream_large_bodies"),
        "message should name the option: {err}"
    );
    assert!(
        err.contains("\"3x\""),
        "message should quote the value: {err}"
    );
    // What is accepted: a number with a k/m/g suffix.
    assert!(
        err.contains("expected"),
        "message should say what is expected: {err}"
    );
    assert!(
        err.contains('k') && err.contains('m') && err.contains('g'),
        "message should list the suffixes: {err}"
    );
}

#[test]
fn port_out_of_range_exits_2() {
    let out = run_bin(&["-p", "99999"]);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("listen_port") && err.contains("99999"),
        "{err}"
    );
}

#[test]
fn flow_detail_out_of_range_exits_2() {
    let out = run_bin(&["-p", "0", "--set", "flow_detail=9"]);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("flow_detail") && err.contains('9'), "{err}");
}

#[test]
fn valid_size_with_uppercase_suffix_starts() {
    let proxy = Proxy::start(&["--set", "stream_large_bodies=3M"]);
    assert_ne!(proxy.port, 0);
    // Still running: the start line came and nothing was printed on stderr.
    assert!(proxy.stderr.snapshot().is_empty(), "{}", proxy.output());
}
