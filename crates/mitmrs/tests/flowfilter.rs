//! Filter expressions against mitmproxy 11.0.2's own (`.venv`, installed by
//! `scripts/test-all`): the same trees for ~2,600 expressions (a fixed list and
//! a seeded token soup, quirks and errors included), the same flows matched in
//! mitmproxy-written files (the test data and flows made here with
//! `mitmproxy.test.tflow`: marks, comments, metadata, replays, IPv6, WebSocket
//! messages, gzip bodies), and the binary's filter argument and options doing
//! what mitmdump's do.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use mitmrs_core::flowfilter::Filter;
use support::{run_bin, venv_python, workspace_root};

/// Asks mitmproxy: the dump of each expression (null if refused), and for each
/// (file, filter) the ids of the matching flows. `make`: first write the extra
/// flows to that path.
const ORACLE: &str = r#"
import sys, json, io, gzip
from mitmproxy import flowfilter as ff, io as mio, http
from mitmproxy.test import tflow
req = json.load(sys.stdin)
out = {"trees": [], "matches": {}}
for s in req["exprs"]:
    try:
        f = ff.parse(s); b = io.StringIO(); f.dump(fp=b); out["trees"].append(b.getvalue())
    except ValueError:
        out["trees"].append(None)
    except RecursionError:
        out["trees"].append("RECURSION")
flows = []
f = tflow.tflow(resp=True)
f.marked = ":star:"; f.comment = "needs\nreview"; f.is_replay = "request"
f.metadata = {"k": [1, "two"], "n": None, "b": b"x", "f": 0.5, "t": "it's"}
flows.append(f)
f = tflow.tflow(err=True)
f.client_conn.peername = ("::1", 5555, 0, 0)
f.server_conn.address = ("example.org", 8443)
flows.append(f)
flows.append(tflow.twebsocketflow())
f = tflow.tflow(resp=True)
f.request.headers["Content-Type"] = "application/json"
f.request.content = b'{"user": "ann", "password": "s3cret"}'
f.response.headers["content-type"] = "image/png"
f.response.headers["content-encoding"] = "gzip"
f.response.content = b"hidden treasure"
flows.append(f)
f = tflow.tflow(resp=True)
f.is_replay = "response"; f.request.method = "PUT"
f.request.host = "api.example.com"; f.request.headers["Host"] = "API.example.com:8080"
f.response.status_code = 404
flows.append(f)
f = tflow.tflow()
f.request.path = "/search?q=t%C3%A9st&page=2"
f.request.content = b"first\nlast line\n"
flows.append(f)
with open(req["make"], "wb") as fo:
    w = mio.FlowWriter(fo)
    for f in flows:
        w.add(f)
for path in req["files"]:
    try:
        with open(path, "rb") as fo:
            flows = [f for f in mio.FlowReader(fo).stream() if isinstance(f, http.HTTPFlow)]
    except Exception:
        continue
    for s in req["filters"]:
        flt = ff.parse(s)
        out["matches"][path + "\t" + s] = sorted(f.id for f in flows if ff.match(flt, f))
json.dump(out, sys.stdout)
"#;

/// Filters for the matching comparison (each must parse in both).
const FILTERS: &[&str] = &[
    "~all",
    "~http",
    "~q",
    "~s",
    "~e",
    "~a",
    "~marked",
    "~websocket",
    "~tcp | ~udp | ~dns",
    "~replay",
    "~replayq",
    "~replays",
    "~c 200",
    "~c 404",
    "!~c 200",
    "~c 101",
    "~m get",
    "~m PUT",
    "~m ^P",
    "~d example",
    "~d EXAMPLE.COM",
    "~d ^api",
    "~d 127.0.0.1",
    "~u https",
    "~u /path",
    "~u 'page=2$'",
    "~u t%C3%A9st",
    "example.com",
    "~u :8080",
    "~src ::1",
    "~src 127.0.0.1",
    "~src :5555$",
    "~dst 8443",
    "~dst example.org:8443",
    "~dst :443$",
    "~h content-type",
    "~h '^Content-Type'",
    "~hq header",
    "~hs header",
    "~hq 'Host: API'",
    "~t json",
    "~tq json",
    "~ts image",
    "~ts html",
    "~b treasure",
    "~bs treasure",
    "~bq treasure",
    "~bq password",
    "~b hello",
    "~bq hello",
    "~bs me",
    "~b message",
    "~bs 'it.s'",
    "~bq '\\\\x22user'",
    "~meta 'k: \\\\[1, .two.\\\\]'",
    "~meta '^n: None$'",
    "~meta \"b: b'x'\"",
    "~meta '^f: 0.5$'",
    "~meta \"t: it's\"",
    "~marker star",
    "~marker default",
    "~comment ^review",
    "~comment needs",
    "~bq 'last line$'",
    "~bq '^last'",
    "~bq '(?m)^last'",
    "~s & ~c 200 & !~a",
    "~q | ~e",
    "!( ~s | ~e )",
    "~d example ~m get",
    "~websocket & ~bs 'it.s'",
];

/// Building blocks of the token soup: codes, operators, parentheses, quotes,
/// white space, escapes and regex syntax where the two readings of a filter
/// could part (look-around, which only Python's `re` has, is left out).
const PIECES: &[&str] = &[
    "~q", "~s", "~c", "~d", "~u", "~h", "~hq", "~b", "~bs", "~m", "~meta", "~marked", "~marker",
    "~replay", "~replayq", "~a", "~src", "~t", "~all", "~x", "!", "&", "|", "(", ")", " ", " ",
    " ", " ", " ", " ", " & ", " | ", " ( ", " ) ", "  ", "\t", "\"", "'", "\\", "\\\\", "\\d",
    "\\x42", "\\x41", "\\u00e9", "\\0", "\\13", "\\t", "a", "x.y", "200", "04", "{", "}", "{2}",
    "{,3}", "[", "]", "é", "~", "*", "+", "?", ".", "^", "$", "\\Z", "foo", "[{]", "(?i)", "a|b",
];

fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

fn soup(n: usize) -> Vec<String> {
    let mut st = 0x5eed_u64;
    (0..n)
        .map(|_| {
            let len = 1 + (lcg(&mut st) % 9) as usize;
            (0..len)
                .map(|_| PIECES[(lcg(&mut st) % PIECES.len() as u64) as usize])
                .collect()
        })
        .collect()
}

fn data_files() -> Vec<PathBuf> {
    let dir = workspace_root().join("crates/mitmrs/tests/data/mitmproxy-flows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mitm"))
        .collect();
    files.sort();
    files
}

fn ask_mitmproxy(exprs: &[String], files: &[PathBuf], make: &Path) -> serde_json::Value {
    let req = serde_json::json!({
        "exprs": exprs,
        "files": files.iter().map(|p| p.to_str().unwrap()).collect::<Vec<_>>(),
        "filters": FILTERS,
        "make": make.to_str().unwrap(),
    });
    let mut child = Command::new(venv_python())
        .arg("-c")
        .arg(ORACLE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(req.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mitmproxy's side failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The ids of the flows in `path` that `filter` matches, read by mitmrs.
fn mitmrs_matches(path: &Path, filters: &[Filter]) -> Option<Vec<Vec<String>>> {
    let file = std::fs::File::open(path).unwrap();
    let mut flows = Vec::new();
    for item in mitmrs_flows::FlowReader::new(file, 1 << 30) {
        match item {
            Ok(f) => flows.push(f),
            Err(e) if e.is_skip() => {}
            Err(_) => return None,
        }
    }
    if flows.is_empty() {
        // dumpfile-010: a format neither reads (mitmrs skips it, mitmproxy raises).
        return None;
    }
    Some(
        filters
            .iter()
            .map(|flt| {
                let mut ids: Vec<String> = flows
                    .iter()
                    .filter(|f| flt.matches(f))
                    .map(|f| f.id.clone())
                    .collect();
                ids.sort();
                ids
            })
            .collect(),
    )
}

#[test]
fn the_same_trees_and_matches_as_mitmproxy() {
    let tmp = tempfile::tempdir().unwrap();
    let made = tmp.path().join("made.mitm");
    let mut exprs: Vec<String> = FILTERS.iter().map(|s| s.to_string()).collect();
    exprs.extend(soup(2500));
    let mut files = data_files();
    files.push(made.clone());
    let answer = ask_mitmproxy(&exprs, &files, &made);

    // Trees.
    let trees = answer["trees"].as_array().unwrap();
    let mut differ = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    for (expr, want) in exprs.iter().zip(trees) {
        if want.as_str() == Some("RECURSION") {
            continue;
        }
        let parsed = Filter::parse(expr);
        let want = want.as_str().map(str::to_string);
        // The one difference on purpose: Python 3.11's possessive repetitions
        // (`a++`) are refused, with a message saying so.
        if let (Err(e), Some(_)) = (&parsed, &want) {
            if e.to_string().contains("possessive repetition") {
                continue;
            }
        }
        let got = parsed.map(|f| f.dump()).ok();
        if got.is_some() {
            accepted += 1;
        } else {
            refused += 1;
        }
        if got != want {
            differ.push(format!("{expr:?}: mitmrs {got:?}, mitmproxy {want:?}"));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} expressions read differently:\n{}",
        differ.len(),
        exprs.len(),
        differ.join("\n")
    );
    // The soup is worth something only if it has both kinds.
    assert!(
        accepted > 300 && refused > 300,
        "{accepted} accepted, {refused} refused"
    );

    // Matches.
    let filters: Vec<Filter> = FILTERS.iter().map(|s| Filter::parse(s).unwrap()).collect();
    let matches = answer["matches"].as_object().unwrap();
    let mut compared = 0;
    let mut files_compared = 0;
    let mut differ = Vec::new();
    let mut some_match: BTreeMap<&str, usize> = BTreeMap::new();
    for path in &files {
        let p = path.to_str().unwrap();
        // Files both read (mitmrs refuses mitmproxy 0.x formats, as its README says).
        let Some(ours) = mitmrs_matches(path, &filters) else {
            continue;
        };
        if !matches.contains_key(&format!("{p}\t{}", FILTERS[0])) {
            continue;
        }
        files_compared += 1;
        for (s, got) in FILTERS.iter().zip(ours) {
            let want = &matches[&format!("{p}\t{s}")];
            let want: Vec<String> = want
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            *some_match.entry(s).or_default() += want.len();
            compared += 1;
            if got != want {
                differ.push(format!("{s:?} on {p}: mitmrs {got:?}, mitmproxy {want:?}"));
            }
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    assert!(files_compared >= 9, "{files_compared} files compared");
    assert_eq!(compared, files_compared * FILTERS.len());
    // Each filter (but the never-matching kinds) matched something somewhere.
    let never: Vec<_> = some_match
        .iter()
        .filter(|(s, n)| {
            **n == 0
                && ![
                    "~tcp | ~udp | ~dns",
                    "~ts html",
                    "~c 101",
                    "~bq treasure",
                    "~bq '^last'",
                ]
                .contains(*s)
        })
        .collect();
    assert!(never.is_empty(), "filters that matched nothing: {never:?}");
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_filter_argument_shows_saves_and_reads_what_matches() {
    let live =
        workspace_root().join("crates/mitmrs/tests/data/mitmproxy-flows/mitmproxy-11-live.mitm");
    let live = live.to_str().unwrap();
    // Shown: as mitmdump, the words joined ("~c 404"), the log line with " & ".
    let out = run_bin(&["-nr", live, "~c", "404"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("Only processing flows that match \"~c & 404\""),
        "{text}"
    );
    let shown: Vec<&str> = text.lines().filter(|l| l.contains("<< ")).collect();
    assert_eq!(shown.len(), 2, "{text}");
    assert!(shown.iter().all(|l| l.contains("404")), "{text}");

    // Saved and read: `save_stream_filter` and `readfile_filter` (set by the argument).
    let tmp = tempfile::tempdir().unwrap();
    let saved = tmp.path().join("https.mitm");
    let saved = saved.to_str().unwrap();
    let out = run_bin(&["-nqr", live, "-w", saved, "~u ^https"]);
    assert!(out.status.success(), "{out:?}");
    let out = run_bin(&["-nr", saved]);
    let text = stdout(&out);
    let firsts: Vec<&str> = text.lines().filter(|l| l.contains(": GET ")).collect();
    assert_eq!(firsts.len(), 2, "{text}");
    assert!(firsts.iter().all(|l| l.contains("https://")), "{text}");
    let out = run_bin(&[
        "-nr",
        live,
        "--set",
        "readfile_filter=~m POST",
        "-w",
        saved,
        "-q",
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&run_bin(&["-nr", saved]));
    assert_eq!(
        text.lines().filter(|l| l.contains("<< ")).count(),
        1,
        "{text}"
    );
    assert!(text.contains("POST "), "{text}");

    // `dumper_filter` alone: everything is saved, only matches shown.
    let out = run_bin(&["-nr", live, "--set", "dumper_filter=~m POST", "-w", saved]);
    assert_eq!(
        stdout(&out).lines().filter(|l| l.contains("<< ")).count(),
        1
    );
    let text = stdout(&run_bin(&["-nr", saved]));
    assert_eq!(
        text.lines().filter(|l| l.contains("<< ")).count(),
        5,
        "{text}"
    );

    // Bad expressions: the message names the expression and the fix, status 2.
    let out = run_bin(&["-nr", live, "~q&~s"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Invalid filter expression: '~q&~s'") && err.contains("`~q & ~s`"),
        "{err}"
    );
    let out = run_bin(&["-nr", live, "--set", "save_stream_filter=~u \"(?<=a)b\""]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("save_stream_filter") && err.contains("look-around"),
        "{err}"
    );
}

/// Records, from inside mitmrs, what its `mitmproxy.flowfilter` makes of the
/// expressions and which flows its filters match.
#[cfg(feature = "python")]
const SCRIPT: &str = r#"
import io, json, os
from mitmproxy import flowfilter as ff
req = json.load(open(os.environ["FF_REQ"]))
out = {"trees": [], "matches": {s: [] for s in req["filters"]}}
for s in req["exprs"]:
    try:
        f = ff.parse(s); b = io.StringIO(); f.dump(fp=b); out["trees"].append(b.getvalue())
    except ValueError:
        out["trees"].append(None)
filters = [(s, ff.parse(s)) for s in req["filters"]]
seen = set()

def _record(flow):
    if flow.id in seen:
        return
    seen.add(flow.id)
    for s, flt in filters:
        if ff.match(flt, flow):
            out["matches"][s].append(flow.id)

def request(flow):
    _record(flow)

def done():
    json.dump(out, open(os.environ["FF_OUT"], "w"))
"#;

#[cfg(feature = "python")]
#[test]
fn scripts_flowfilter_is_mitmproxys() {
    let tmp = tempfile::tempdir().unwrap();
    let made = tmp.path().join("made.mitm");
    let mut exprs: Vec<String> = FILTERS.iter().map(|s| s.to_string()).collect();
    exprs.extend(soup(800));
    let files = {
        let mut f = data_files();
        f.push(made.clone());
        f
    };
    let answer = ask_mitmproxy(&exprs, &files, &made);
    let script = tmp.path().join("ff.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let req = tmp.path().join("req.json");
    std::fs::write(
        &req,
        serde_json::json!({"exprs": exprs, "filters": FILTERS}).to_string(),
    )
    .unwrap();
    let mut compared = 0;
    for path in &files {
        let p = path.to_str().unwrap();
        if !answer["matches"]
            .as_object()
            .unwrap()
            .contains_key(&format!("{p}\t{}", FILTERS[0]))
            || mitmrs_matches(path, &[]).is_none()
        {
            continue;
        }
        let out_path = tmp.path().join("out.json");
        let _ = std::fs::remove_file(&out_path);
        let out = Command::new(support::BIN)
            .args(["-nqr", p, "-s", script.to_str().unwrap()])
            .arg("--set")
            .arg(format!("confdir={}", tmp.path().display()))
            .env("FF_REQ", &req)
            .env("FF_OUT", &out_path)
            .output()
            .unwrap();
        assert!(
            out.status.success() || out.status.code() == Some(1),
            "{out:?}"
        );
        let ours: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&out_path).unwrap()).unwrap();
        if compared == 0 {
            // The trees: mitmproxy's, every one (the regexes are Python's own).
            let want = answer["trees"].as_array().unwrap();
            let got = ours["trees"].as_array().unwrap();
            let differ: Vec<String> = exprs
                .iter()
                .zip(want.iter().zip(got))
                .filter(|(_, (w, g))| w.as_str() != Some("RECURSION") && w != g)
                .map(|(e, (w, g))| format!("{e:?}: mitmrs {g}, mitmproxy {w}"))
                .collect();
            assert!(differ.is_empty(), "{}", differ.join("\n"));
        }
        for s in FILTERS {
            let mut got: Vec<String> = ours["matches"][*s]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            got.sort();
            let want: Vec<String> = answer["matches"][&format!("{p}\t{s}")]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            assert_eq!(got, want, "{s:?} on {p}");
        }
        compared += 1;
    }
    assert!(compared >= 9, "{compared} files");
}

#[test]
fn live_flows_are_shown_and_saved_by_the_filter() {
    use support::{curl, Origin, Proxy, Response};
    let origin = Origin::http(|_| Response::ok("hello"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kept.mitm");
    let proxy = Proxy::start(&["-w", file.to_str().unwrap(), "~u /keep & ~c 200"]);
    for path in ["/keep/1", "/drop/2", "/keep/3"] {
        let r = curl(
            &proxy,
            &[&format!("http://127.0.0.1:{}{path}", origin.port)],
        );
        assert!(r.ok, "{}", r.stderr);
    }
    proxy.expect_stdout("/keep/3");
    let lines = proxy.stop();
    let shown: Vec<&String> = lines.iter().filter(|l| l.contains(": GET ")).collect();
    assert_eq!(shown.len(), 2, "{lines:?}");
    assert!(shown.iter().all(|l| l.contains("/keep/")), "{lines:?}");
    // Saved: only the matching flows, read back by mitmrs.
    let filters = [
        Filter::parse("~u /drop").unwrap(),
        Filter::parse("~all").unwrap(),
    ];
    let counts: Vec<usize> = mitmrs_matches(&file, &filters)
        .unwrap()
        .iter()
        .map(Vec::len)
        .collect();
    assert_eq!(counts, [0, 2]);
}

#[test]
fn a_pathological_regex_runs_in_linear_time() {
    // `(a+)+$` against a long run of "a" with a "b" at the end takes Python's
    // backtracking `re` exponential time; here it is one pass.
    let body = format!("{}b", "a".repeat(200_000));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.mitm");
    let origin = support::Origin::http(move |_| support::Response::ok(body.clone()));
    let proxy = support::Proxy::start(&["-w", file.to_str().unwrap(), "~bs \"(a+)+$\" | ~bs b$"]);
    let r = support::curl(&proxy, &[&format!("http://127.0.0.1:{}/x", origin.port)]);
    assert!(r.ok, "{}", r.stderr);
    let status = proxy.terminate();
    assert!(status.success());
    let all = [Filter::parse("~all").unwrap()];
    assert_eq!(mitmrs_matches(&file, &all).map(|v| v[0].len()), Some(1));
}
