//! Filter expressions: any text either compiles or is refused with a message
//! (no panic, bounded time), and a compiled filter matches a flow without
//! panicking; the syntax tree the Python bridge gets agrees with `parse`.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use mitmrs_core::flowfilter::{parse_syntax, Filter};
use mitmrs_core::{Client, Headers, HttpFlow, Request, Response, Server};

fuzz_target!(|data: &[u8]| {
    let Ok(expr) = std::str::from_utf8(data) else {
        return;
    };
    let syntax = parse_syntax(expr);
    let filter = Filter::parse(expr);
    // The grammar alone never accepts less than the compiled filter.
    assert!(filter.is_err() || syntax.is_ok());
    if let Ok(f) = filter {
        let client = Client::new(
            "127.0.0.1:5000".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
        );
        let server = Server::new(Some(("example.com".into(), 443)));
        let req = Request::make(
            "POST",
            "https://example.com/a?b=c",
            &b"{\"k\": \"v\"}"[..],
            Headers::from_pairs([("Content-Type", "application/json"), ("Host", "example.com")]),
        )
        .unwrap();
        let mut flow = HttpFlow::new(Arc::new(client), Arc::new(server), req);
        let _ = f.matches(&flow);
        flow.response = Some(Response::make(200, &b"\xff\xfe body"[..], Headers::new()));
        let _ = f.matches(&flow);
        let _ = f.dump();
    }
});
