use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use mitmrs_core::options::{
    core_option_specs, parse_size, register_core_options, size_option, validate_core, OptionSpec,
    OptionType, OptionValue, Options, OptionsError,
};

fn core() -> Options {
    let o = Options::new();
    register_core_options(&o).unwrap();
    o
}

fn s(v: &str) -> OptionValue {
    OptionValue::Str(v.to_string())
}

fn seq(v: &[&str]) -> OptionValue {
    OptionValue::StrSeq(v.iter().map(|x| x.to_string()).collect())
}

fn invalid(name: &str, value: &str, expected: &str) -> OptionsError {
    OptionsError::InvalidValue {
        name: name.into(),
        value: value.into(),
        expected: expected.into(),
    }
}

const SIZE_EXPECTED: &str = "a number of bytes with an optional suffix b, k, m, g or t, e.g. 3m";

#[test]
fn parse_size_cases() {
    const K: u64 = 1024;
    let ok = |v: u64| -> Result<u64, String> { Ok(v) };
    let err = || -> Result<u64, String> { Err(SIZE_EXPECTED.to_string()) };
    let too_big = || -> Result<u64, String> { Err(format!("{SIZE_EXPECTED} (at most 16777215t)")) };
    for (input, want) in [
        ("3m", ok(3 * K * K)),
        ("3M", ok(3 * K * K)),
        ("10", ok(10)),
        ("0", ok(0)),
        ("10b", ok(10)),
        ("10B", ok(10)),
        ("1g", ok(K * K * K)),
        ("1T", ok(K * K * K * K)),
        ("1t", ok(K * K * K * K)),
        (" 5k ", ok(5 * K)),
        ("5 k", ok(5 * K)),
        ("64k", ok(64 * K)),
        ("16777215t", ok(16777215 * K * K * K * K)),
        ("", err()),
        ("   ", err()),
        ("k", err()),
        ("-1", err()),
        ("+1", err()),
        ("1.5m", err()),
        ("3x", err()),
        ("3kb", err()),
        ("m3", err()),
        ("99999999999999999999t", too_big()),
        ("99999999999999999999", too_big()),
        ("16777216t", too_big()),
    ] {
        assert_eq!(parse_size(input), want, "parse_size({input:?})");
    }
}

#[test]
fn parse_set_each_type() {
    let o = Options::new();
    for spec in [
        OptionSpec::new("b", OptionType::Bool, OptionValue::Bool(false), "a bool"),
        OptionSpec::new("s", OptionType::Str, s("x"), "a str"),
        OptionSpec::new(
            "os",
            OptionType::OptStr,
            OptionValue::None,
            "an optional str",
        ),
        OptionSpec::new("i", OptionType::Int, OptionValue::Int(1), "an int"),
        OptionSpec::new(
            "oi",
            OptionType::OptInt,
            OptionValue::None,
            "an optional int",
        ),
        OptionSpec::new("f", OptionType::Float, OptionValue::Float(0.5), "a float"),
        OptionSpec::new("l", OptionType::StrSeq, seq(&[]), "a list"),
        OptionSpec::new("c", OptionType::Str, s("a"), "a choice").with_choices(["a", "b"]),
    ] {
        o.add_option(spec).unwrap();
    }
    let bool_exp = "true or false";
    // (arg, name, expected result: Ok(value after) or Err)
    let cases: Vec<(&str, &str, Result<OptionValue, OptionsError>)> = vec![
        ("b=true", "b", Ok(OptionValue::Bool(true))),
        ("b=false", "b", Ok(OptionValue::Bool(false))),
        ("b=YES", "b", Ok(OptionValue::Bool(true))),
        ("b=no", "b", Ok(OptionValue::Bool(false))),
        ("b=On", "b", Ok(OptionValue::Bool(true))),
        ("b=off", "b", Ok(OptionValue::Bool(false))),
        ("b=1", "b", Ok(OptionValue::Bool(true))),
        ("b=0", "b", Ok(OptionValue::Bool(false))),
        ("b", "b", Ok(OptionValue::Bool(true))),
        ("b=maybe", "b", Err(invalid("b", "maybe", bool_exp))),
        ("b=", "b", Err(invalid("b", "", bool_exp))),
        ("s=hello", "s", Ok(s("hello"))),
        ("s=a=b", "s", Ok(s("a=b"))),
        ("s=", "s", Ok(s(""))),
        (
            "s",
            "s",
            Err(invalid("s", "", "a value, as in --set s=VALUE (str)")),
        ),
        ("os=/tmp/ca.pem", "os", Ok(s("/tmp/ca.pem"))),
        ("os=", "os", Ok(OptionValue::None)),
        ("os=none", "os", Ok(s("none"))),
        ("i=42", "i", Ok(OptionValue::Int(42))),
        ("i=-7", "i", Ok(OptionValue::Int(-7))),
        ("i=abc", "i", Err(invalid("i", "abc", "an integer (int)"))),
        ("i=1.5", "i", Err(invalid("i", "1.5", "an integer (int)"))),
        ("i=", "i", Err(invalid("i", "", "an integer (int)"))),
        (
            "i=99999999999999999999",
            "i",
            Err(invalid("i", "99999999999999999999", "an integer (int)")),
        ),
        ("oi=5", "oi", Ok(OptionValue::Int(5))),
        ("oi=", "oi", Ok(OptionValue::None)),
        ("oi=7", "oi", Ok(OptionValue::Int(7))),
        ("oi=None", "oi", Ok(OptionValue::None)),
        (
            "oi=x",
            "oi",
            Err(invalid(
                "oi",
                "x",
                "an integer, or empty for none (optional int)",
            )),
        ),
        ("f=2.5", "f", Ok(OptionValue::Float(2.5))),
        ("f=3", "f", Ok(OptionValue::Float(3.0))),
        ("f=inf", "f", Err(invalid("f", "inf", "a number (float)"))),
        ("c=b", "c", Ok(s("b"))),
        ("c=z", "c", Err(invalid("c", "z", "one of: a, b"))),
    ];
    for (arg, name, want) in cases {
        let got = o.parse_set(arg, false).map(|()| o.get(name).unwrap());
        assert_eq!(got, want, "parse_set({arg:?})");
    }
}

#[test]
fn parse_value_does_not_apply() {
    let o = core();
    assert_eq!(
        o.parse_value("listen_port", "9090"),
        Ok(OptionValue::Int(9090))
    );
    assert_eq!(o.get_int("listen_port"), None);
    assert_eq!(o.parse_value("mode", "regular"), Ok(seq(&["regular"])));
    assert_eq!(o.parse_value("scripts", ""), Ok(seq(&[])));
    assert_eq!(
        o.parse_value("listen_port", "abc").unwrap_err().to_string(),
        r#"invalid value "abc" for option "listen_port": expected an integer, or empty for none (optional int)"#
    );
}

#[test]
fn unknown_names_and_suggestions() {
    let o = core();
    for (name, suggestion) in [
        ("strem_large_bodies", Some("stream_large_bodies")),
        ("lissten_port", Some("listen_port")),
        ("listen-port", Some("listen_port")),
        ("listne_port", Some("listen_port")),
        ("http3", Some("http2")),
        ("zzz", None),
        ("completely_unrelated_name", None),
    ] {
        let want = OptionsError::Unknown {
            name: name.into(),
            suggestion: suggestion.map(String::from),
        };
        assert_eq!(
            o.parse_set(&format!("{name}=1"), false),
            Err(want.clone()),
            "{name}"
        );
        assert_eq!(
            o.set(name, OptionValue::Bool(true)),
            Err(want.clone()),
            "{name}"
        );
        assert_eq!(o.closest(name), suggestion.map(String::from), "{name}");
    }
    assert_eq!(
        o.parse_set("strem_large_bodies=1m", false)
            .unwrap_err()
            .to_string(),
        r#"unknown option "strem_large_bodies"; did you mean "stream_large_bodies"?"#
    );
    assert_eq!(
        o.parse_set("zzz", false).unwrap_err().to_string(),
        r#"unknown option "zzz""#
    );
    // An empty name is never deferred.
    assert!(matches!(
        o.parse_set("=1", true),
        Err(OptionsError::Unknown { .. })
    ));
}

#[test]
fn deferred_then_add_option_applies() {
    let o = core();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    o.subscribe(Box::new(move |_, changed| {
        seen2.lock().unwrap().push(changed.clone())
    }));

    o.parse_set("myopt=7", true).unwrap();
    o.parse_set("myflag", true).unwrap();
    o.parse_set("mylist=a", true).unwrap();
    o.parse_set("mylist=b", true).unwrap();
    assert_eq!(o.deferred(), vec!["myflag", "mylist", "myopt"]);
    assert!(o.get("myopt").is_none());

    o.add_option(OptionSpec::new(
        "myopt",
        OptionType::Int,
        OptionValue::Int(1),
        "mine",
    ))
    .unwrap();
    assert_eq!(o.get_int("myopt"), Some(7));
    o.add_option(OptionSpec::new(
        "myflag",
        OptionType::Bool,
        OptionValue::Bool(false),
        "mine",
    ))
    .unwrap();
    assert!(o.get_bool("myflag"));
    o.add_option(OptionSpec::new(
        "mylist",
        OptionType::StrSeq,
        seq(&["default"]),
        "mine",
    ))
    .unwrap();
    assert_eq!(o.get_seq("mylist"), vec!["a", "b"]);
    // Later --set of the list append to the deferred values.
    o.parse_set("mylist=c", false).unwrap();
    assert_eq!(o.get_seq("mylist"), vec!["a", "b", "c"]);

    assert_eq!(o.check_deferred(), Ok(()));
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            names(&["myopt"]),
            names(&["myflag"]),
            names(&["mylist"]),
            names(&["mylist"])
        ]
    );
}

#[test]
fn deferred_bad_value() {
    let o = Options::new();
    o.parse_set("port=abc", true).unwrap();
    let err = o
        .add_option(OptionSpec::new(
            "port",
            OptionType::Int,
            OptionValue::Int(1),
            "p",
        ))
        .unwrap_err();
    assert_eq!(err, invalid("port", "abc", "an integer (int)"));
    assert_eq!(o.get_int("port"), Some(1));
    assert_eq!(o.check_deferred(), Ok(()));
}

#[test]
fn deferred_leftover_is_unknown() {
    let o = core();
    o.parse_set("strem_large_bodies=1m", true).unwrap();
    o.parse_set("zzz_never_defined=1", true).unwrap();
    assert_eq!(
        o.check_deferred(),
        Err(OptionsError::Unknown {
            name: "strem_large_bodies".into(),
            suggestion: Some("stream_large_bodies".into())
        })
    );
}

#[test]
fn strseq_append_semantics() {
    let o = core();
    assert_eq!(o.get_seq("mode"), vec!["regular"]);
    for (arg, want) in [
        ("mode=upstream:http://x", vec!["upstream:http://x"]),
        ("mode=regular", vec!["upstream:http://x", "regular"]),
        ("scripts=a.py", vec!["a.py"]),
        ("scripts=b.py", vec!["a.py", "b.py"]),
    ] {
        o.parse_set(arg, false).unwrap();
        let name = arg.split('=').next().unwrap();
        assert_eq!(o.get_seq(name), want, "after {arg}");
    }
    // An empty value clears on the first --set and adds nothing later.
    let o = core();
    o.parse_set("mode=", false).unwrap();
    assert_eq!(o.get_seq("mode"), Vec::<String>::new());
    o.parse_set("mode=regular", false).unwrap();
    assert_eq!(o.get_seq("mode"), vec!["regular"]);
    // A bare name of a list needs a value.
    assert!(matches!(
        o.parse_set("mode", false),
        Err(OptionsError::InvalidValue { .. })
    ));
}

#[test]
fn choices_rejected_with_the_list() {
    let o = core();
    for (name, value, expected) in [
        ("connection_strategy", "sometimes", "one of: eager, lazy"),
        (
            "termlog_verbosity",
            "loud",
            "one of: error, warn, info, alert, debug",
        ),
    ] {
        let want = invalid(name, value, expected);
        assert_eq!(
            o.parse_set(&format!("{name}={value}"), false),
            Err(want.clone())
        );
        assert_eq!(o.set(name, s(value)), Err(want));
    }
    assert_eq!(
        o.set("connection_strategy", s("sometimes"))
            .unwrap_err()
            .to_string(),
        r#"invalid value "sometimes" for option "connection_strategy": expected one of: eager, lazy"#
    );
    assert_eq!(o.set("connection_strategy", s("lazy")), Ok(true));
}

#[test]
fn typed_set_type_checks() {
    let o = core();
    for (name, value, ok) in [
        ("listen_port", OptionValue::Int(9000), true),
        ("listen_port", s("9000"), false),
        ("listen_port", OptionValue::None, true),
        ("ssl_insecure", OptionValue::Bool(true), true),
        ("ssl_insecure", OptionValue::Int(1), false),
        ("body_size_limit", s("1m"), true),
        ("body_size_limit", OptionValue::None, true),
        ("body_size_limit", OptionValue::Int(1), false),
        ("confdir", OptionValue::None, false),
        ("mode", seq(&["regular"]), true),
        ("mode", s("regular"), false),
    ] {
        assert_eq!(
            o.set(name, value.clone()).is_ok(),
            ok,
            "set({name}, {value:?})"
        );
    }
    assert_eq!(
        o.set("ssl_insecure", OptionValue::Int(1)),
        Err(invalid("ssl_insecure", "1", "true or false"))
    );
}

#[test]
fn update_is_atomic() {
    let o = core();
    let err = o
        .update(vec![
            ("listen_port".into(), OptionValue::Int(9999)),
            ("ssl_insecure".into(), OptionValue::Bool(true)),
            ("connection_strategy".into(), s("bogus")),
        ])
        .unwrap_err();
    assert_eq!(
        err,
        invalid("connection_strategy", "bogus", "one of: eager, lazy")
    );
    assert_eq!(o.get_int("listen_port"), None);
    assert!(!o.get_bool("ssl_insecure"));

    let err = o
        .update(vec![
            ("listen_port".into(), OptionValue::Int(9999)),
            ("nope".into(), OptionValue::Int(1)),
        ])
        .unwrap_err();
    assert!(matches!(err, OptionsError::Unknown { .. }));
    assert_eq!(o.get_int("listen_port"), None);

    let changed = o
        .update(vec![
            ("listen_port".into(), OptionValue::Int(9999)),
            ("ssl_insecure".into(), OptionValue::Bool(false)), // unchanged
            ("flow_detail".into(), OptionValue::Int(3)),
        ])
        .unwrap();
    assert_eq!(
        changed,
        ["flow_detail", "listen_port"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert_eq!(o.get_int("listen_port"), Some(9999));
}

#[test]
fn subscribe_gets_changed_names_only() {
    let o = core();
    let seen: Arc<Mutex<Vec<BTreeSet<String>>>> = Arc::default();
    let seen2 = seen.clone();
    o.subscribe(Box::new(move |opts, changed| {
        // Reading (and even setting) from a callback must not deadlock.
        let _ = opts.get_int("listen_port");
        seen2.lock().unwrap().push(changed.clone());
    }));
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();

    assert_eq!(o.set("listen_port", OptionValue::None), Ok(false)); // no-op
    assert_eq!(o.set("listen_port", OptionValue::Int(8081)), Ok(true));
    o.parse_set("ssl_insecure", false).unwrap();
    o.parse_set("ssl_insecure=true", false).unwrap(); // no-op
    assert!(o.set("listen_port", s("x")).is_err());
    o.update(vec![
        ("showhost".into(), OptionValue::Bool(true)),
        ("http2".into(), OptionValue::Bool(false)),
    ])
    .unwrap();
    o.update(vec![]).unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            set(&["listen_port"]),
            set(&["ssl_insecure"]),
            set(&["http2", "showhost"])
        ]
    );

    // A callback that sets another option.
    let o2 = o.clone();
    o.subscribe(Box::new(move |_, changed| {
        if changed.contains("flow_detail") {
            o2.set("showhost", OptionValue::Bool(false)).unwrap();
        }
    }));
    o.set("flow_detail", OptionValue::Int(2)).unwrap();
    assert!(!o.get_bool("showhost"));
}

#[test]
fn add_option_duplicates() {
    let o = core();
    // Identical re-registration is a no-op.
    register_core_options(&o).unwrap();
    let mut spec = o.spec("listen_port").unwrap();
    o.add_option(spec.clone()).unwrap();
    spec.default = OptionValue::Int(1);
    assert_eq!(
        o.add_option(spec),
        Err(OptionsError::Duplicate {
            name: "listen_port".into()
        })
    );
    // A default that does not fit the type or the choices.
    assert!(matches!(
        o.add_option(OptionSpec::new(
            "x",
            OptionType::Bool,
            OptionValue::Int(1),
            ""
        )),
        Err(OptionsError::InvalidValue { .. })
    ));
    assert!(matches!(
        o.add_option(OptionSpec::new("y", OptionType::Str, s("c"), "").with_choices(["a"])),
        Err(OptionsError::InvalidValue { .. })
    ));
    assert!(o.spec("x").is_none());
}

#[test]
fn core_options_defaults() {
    let o = core();
    for (name, typ, default) in [
        ("confdir", OptionType::Str, s("~/.mitmproxy")),
        ("listen_host", OptionType::Str, s("127.0.0.1")),
        ("listen_port", OptionType::OptInt, OptionValue::None),
        ("ssl_insecure", OptionType::Bool, OptionValue::Bool(false)),
        (
            "ssl_verify_upstream_trusted_ca",
            OptionType::OptStr,
            OptionValue::None,
        ),
        (
            "ssl_verify_upstream_trusted_confdir",
            OptionType::OptStr,
            OptionValue::None,
        ),
        ("upstream_cert", OptionType::Bool, OptionValue::Bool(true)),
        ("stream_large_bodies", OptionType::OptStr, OptionValue::None),
        ("body_size_limit", OptionType::OptStr, OptionValue::None),
        (
            "store_streamed_bodies",
            OptionType::Bool,
            OptionValue::Bool(false),
        ),
        ("flow_detail", OptionType::Int, OptionValue::Int(1)),
        ("connection_strategy", OptionType::Str, s("eager")),
        ("http2", OptionType::Bool, OptionValue::Bool(true)),
        ("tcp_timeout", OptionType::Int, OptionValue::Int(600)),
        ("showhost", OptionType::Bool, OptionValue::Bool(false)),
        (
            "content_view_lines_cutoff",
            OptionType::Int,
            OptionValue::Int(512),
        ),
        ("termlog_verbosity", OptionType::Str, s("info")),
        ("max_header_size", OptionType::OptStr, s("64k")),
        ("max_connections", OptionType::Int, OptionValue::Int(10000)),
        ("mode", OptionType::StrSeq, seq(&["regular"])),
        ("scripts", OptionType::StrSeq, seq(&[])),
    ] {
        let spec = o.spec(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!((spec.typ, spec.default), (typ, default.clone()), "{name}");
        assert_eq!(o.get(name), Some(default), "{name}");
    }
    assert_eq!(o.names().len(), core_option_specs().len());
    let mut sorted = o.names();
    sorted.sort();
    assert_eq!(o.names(), sorted);
    assert_eq!(o.get_str("max_header_size").as_deref(), Some("64k"));
    assert_eq!(o.get_str("body_size_limit"), None);
    assert!(o.get_bool("upstream_cert"));
    assert!(!o.get_bool("listen_port"));
    assert_eq!(o.get_int("nope"), None);
    assert!(o.get_seq("listen_port").is_empty());
    assert_eq!(validate_core(&o), Ok(()));
}

#[test]
fn validate_core_cases() {
    for (arg, want) in [
        ("listen_port=65535", Ok(())),
        ("listen_port=0", Ok(())),
        (
            "listen_port=65536",
            Err(invalid(
                "listen_port",
                "65536",
                "a port number from 0 to 65535",
            )),
        ),
        (
            "listen_port=-1",
            Err(invalid(
                "listen_port",
                "-1",
                "a port number from 0 to 65535",
            )),
        ),
        ("flow_detail=4", Ok(())),
        (
            "flow_detail=5",
            Err(invalid("flow_detail", "5", "a detail level from 0 to 4")),
        ),
        ("tcp_timeout=0", Ok(())),
        (
            "tcp_timeout=-5",
            Err(invalid(
                "tcp_timeout",
                "-5",
                "a number of seconds, 0 or more",
            )),
        ),
        ("stream_large_bodies=3m", Ok(())),
        (
            "stream_large_bodies=3x",
            Err(invalid("stream_large_bodies", "3x", SIZE_EXPECTED)),
        ),
        (
            "body_size_limit=1.5m",
            Err(invalid("body_size_limit", "1.5m", SIZE_EXPECTED)),
        ),
        (
            "max_header_size=lots",
            Err(invalid("max_header_size", "lots", SIZE_EXPECTED)),
        ),
        ("max_header_size=", Ok(())),
    ] {
        let o = core();
        o.parse_set(arg, false).unwrap();
        assert_eq!(validate_core(&o), want, "{arg}");
    }
    // Unregistered options are skipped.
    assert_eq!(validate_core(&Options::new()), Ok(()));
}

#[test]
fn size_option_cases() {
    let o = core();
    assert_eq!(size_option(&o, "body_size_limit"), Ok(None));
    assert_eq!(size_option(&o, "max_header_size"), Ok(Some(64 * 1024)));
    assert_eq!(size_option(&o, "not_registered"), Ok(None));
    o.parse_set("body_size_limit=2k", false).unwrap();
    assert_eq!(size_option(&o, "body_size_limit"), Ok(Some(2048)));
    o.set("body_size_limit", s("")).unwrap();
    assert_eq!(size_option(&o, "body_size_limit"), Ok(None));
    o.set("body_size_limit", s("nope")).unwrap();
    assert_eq!(
        size_option(&o, "body_size_limit").unwrap_err().to_string(),
        format!(r#"invalid value "nope" for option "body_size_limit": expected {SIZE_EXPECTED}"#)
    );
}

#[test]
fn help_text_lists_every_option() {
    let o = core();
    let text = o.help_text();
    for name in o.names() {
        let spec = o.spec(&name).unwrap();
        assert!(
            text.contains(&format!("\n{name}:")),
            "{name} missing:\n{text}"
        );
        assert!(
            text.contains(&format!("Type {}.", spec.typ.name()))
                || text.contains(&format!("Type\n# {}", spec.typ.name()))
        );
    }
    for line in [
        "listen_port:\n",
        "listen_host: 127.0.0.1\n",
        "confdir: ~/.mitmproxy\n",
        "body_size_limit:\n",
        "ssl_insecure: false\n",
        "max_header_size: 64k\n",
        "mode:\n- regular\n",
        "scripts: []\n",
        "connection_strategy: eager\n",
        "# Log verbosity. Valid values are 'error', 'warn', 'info', 'alert',\n",
        "# 'debug'. Type str.\ntermlog_verbosity: info\n",
        "\n# Do not verify upstream server SSL/TLS certificates. Type bool.\nssl_insecure: false\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(text.lines().all(|l| l.chars().count() <= 72), "{text}");
    // Sorted by name.
    let keys: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with(['#', '-']) && !l.is_empty())
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}

#[test]
fn clones_share_state_across_threads() {
    let o = core();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let o = o.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    o.parse_set(&format!("scripts=s{i}.py"), false).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // The first --set replaced the default; the other 399 appended.
    assert_eq!(o.get_seq("scripts").len(), 400);
}
