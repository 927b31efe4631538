//! The module structure mitmproxy's example addons rely on: every module mitmrs
//! provides imports (stubs for later features included), hooks for every event
//! load with mitmproxy's type annotations, flowfilter expressions match, stubs of
//! later features raise NotImplementedError naming the feature, and
//! `mitmproxy.addons.asgiapp.WSGIApp` answers requests for its host from the app.
//! Own scripts (not mitmproxy's examples), run through the real binary.
#![cfg(feature = "python")]

mod support;

use support::*;

fn script(name: &str) -> String {
    workspace_root()
        .join("crates/mitmrs-python/tests/scripts")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Runs curl through the proxy; status, headers, body.
fn fetch(p: &Proxy, args: &[&str]) -> (u16, Vec<(String, String)>, String) {
    let dir = tempfile::tempdir().unwrap();
    let hfile = dir.path().join("h");
    let out = curl_cmd(p, &p.ca_cert())
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
    (
        status,
        headers,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn python_later_feature_modules_import_and_typed_hooks_load() {
    let origin = Origin::http(|r| Response::ok(format!("origin got {}", r.target)));
    let s = script("later_features_typed.py");
    let p = Proxy::start(&["-s", &s]);
    p.expect_stdout("TYPED RUNNING");
    let base = format!("http://127.0.0.1:{}", origin.port);

    let (status, h, body) = fetch(
        &p,
        &[&format!("{base}/typed"), "-H", "x-probe: 1", "-d", "hello"],
    );
    assert_eq!(status, 200, "{}", p.output());
    assert_eq!(body, "origin got /typed");
    assert_eq!(header(&h, "x-typed"), Some("ok"), "{}", p.output());
    assert_eq!(header(&h, "x-filter-option"), Some("True"));
    // ~u /typed, ~d & ~s, !~q, ~m get|post, ~c 200 & !~c 404, ~h, ~bq, ~bs, ~t, (..) & bare, ~e, other kinds, ~marked, "quoted"
    assert_eq!(
        header(&h, "x-filters"),
        Some("11111111110001"),
        "{}",
        p.output()
    );

    let (status, h, _) = fetch(&p, &[&format!("{base}/other")]);
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-filter-option"), Some("False"));
    assert_eq!(
        header(&h, "x-filters"),
        Some("01111001100000"),
        "{}",
        p.output()
    );

    let out = p.output();
    assert!(
        !out.contains("CHECK FAIL") && !out.contains("Addon error") && !out.contains("Traceback"),
        "{out}"
    );
    assert_eq!(
        origin.requests().len(),
        2,
        "a replay.client call must not send anything"
    );
}

#[test]
fn python_wsgi_app_answers_for_its_host() {
    let origin = Origin::http(|r| Response::ok(format!("origin got {}", r.target)));
    let s = script("wsgi_app.py");
    let p = Proxy::start(&["-s", &s]);

    let (status, h, body) = fetch(
        &p,
        &[
            "http://wsgi.test/some%20path?a=1",
            "-H",
            "x-probe: yes",
            "-d",
            "payload",
        ],
    );
    assert_eq!(status, 201, "{}", p.output());
    assert_eq!(header(&h, "x-app"), Some("yes"));
    assert_eq!(
        body,
        "wsgi POST /some path q=a=1 host=wsgi.test:80 probe=yes body=payload"
    );

    // an exception in the app: 500, logged, the proxy goes on
    let (status, _, _) = fetch(&p, &["http://broken.test/"]);
    assert_eq!(status, 500);
    p.expect_stdout("app failure");

    // other hosts go to the server
    let (status, _, body) = fetch(&p, &[&format!("http://127.0.0.1:{}/x", origin.port)]);
    assert_eq!(status, 200);
    assert_eq!(body, "origin got /x");
    assert_eq!(origin.requests().len(), 1);
}
