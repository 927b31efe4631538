"""Headers, bodies with content encodings, trailers, query/forms/cookies, URL
fields and Request.make/Response.make, checked in the hooks; failures are logged
as 'CHECK FAIL' lines, and visible outcomes go back to the client."""
import json
import logging

from mitmproxy import http

fails = []


def check(name, got, want):
    if got != want:
        logging.error(f"CHECK FAIL {name}: got {got!r}, want {want!r}")


def headers_semantics():
    h = http.Headers([(b"Host", b"example.com"), (b"Accept", b"a"), (b"accept", b"b")], x_extra="1")
    check("get case-insensitive", h.get("ACCEPT"), "a, b")
    check("getitem folds", h["accept"], "a, b")
    check("get_all", h.get_all("Accept"), ["a", "b"])
    check("kwargs underscore", h["X-Extra"], "1")
    h.set_all("accept", ["c", "d", "e"])
    check("set_all", h.get_all("ACCEPT"), ["c", "d", "e"])
    h.add("X-Multi", "1")
    h.add("x-multi", "2")
    check("add", h.get_all("x-multi"), ["1", "2"])
    h.insert(0, "X-First", "0")
    check("insert", h.fields[0], (b"X-First", b"0"))
    del h["X-MULTI"]
    check("del", "x-multi" in h, False)
    check("items multi", list(h.items(multi=True))[:2], [("X-First", "0"), ("Host", "example.com")])
    check("keys unique", list(h.keys()), ["X-First", "Host", "Accept", "x-extra"])
    h["host"] = "other"
    check("set keeps position/case", h.fields[1], (b"Host", b"other"))
    check("len", len(h), 4)
    check("bytes", bytes(http.Headers(a="b")), b"a: b\r\n")
    check("get default", h.get("nope", "dflt"), "dflt")


headers_semantics()


def request(flow):
    r = flow.request
    p = r.path
    if p.startswith("/fields"):
        check("method", r.method, "GET")
        check("scheme", r.scheme, "http")
        check("host", r.host, "127.0.0.1")
        check("pretty_host", r.pretty_host, "127.0.0.1")
        check("url", r.url, f"http://127.0.0.1:{r.port}/fields?a=1&b=2&a=3")
        check("pretty_url", r.pretty_url, r.url)
        check("http_version", r.http_version, "HTTP/1.1")
        check("is_http11", (r.is_http10, r.is_http11, r.is_http2), (False, True, False))
        check("query get", r.query["a"], "1")
        check("query get_all", r.query.get_all("a"), ["1", "3"])
        check("query keys", list(r.query.keys()), ["a", "b"])
        r.query["b"] = "two"
        r.query.add("c", "x y")
        check("path after query", r.path, "/fields?a=1&b=two&a=3&c=x+y")
        check("request cookies", (r.cookies["sid"], r.cookies.get_all("k")), ("abc", ["1", "2"]))
        r.cookies["sid"] = "changed"
        check("path_components", r.path_components, ("fields",))
        r.headers["x-seen-port"] = str(r.port)
    elif p.startswith("/form"):
        check("method POST", r.method, "POST")
        form = r.urlencoded_form
        check("form get", form["name"], "alice")
        form["name"] = "bob"
        form.add("extra", "1")
        r.urlencoded_form = form
        check("form text", r.get_text(), "name=bob&x=1&extra=1")
    elif p.startswith("/multipart"):
        mf = r.multipart_form
        check("multipart get", mf.get(b"field"), b"value")
        check("multipart file", mf.get(b"file"), b"file content")
        r.multipart_form = [(b"field", b"changed"), (b"other", b"2")]
        check("multipart ctype", r.headers["content-type"].startswith("multipart/form-data; boundary="), True)
    elif p.startswith("/reqjson"):
        check("request json", r.json(), {"k": [1, 2]})
        r.text = json.dumps({"k": "replaced"})
    elif p.startswith("/redirect-url"):
        r.url = f"http://127.0.0.1:{r.headers['x-other-port']}/via-url"
    elif p.startswith("/redirect-host"):
        r.host = "localhost"
        r.port = int(r.headers["x-other-port"])
        r.path = "/via-host"
        check("host header follows host/port", (r.headers["host"], r.pretty_host), (f"localhost:{r.port}", "localhost"))
    elif p.startswith("/make-response"):
        flow.response = http.Response.make(
            203, b"made by script", {"Content-Type": "text/x-made", "X-Made": "1"})
    elif p.startswith("/make-request"):
        new = http.Request.make("PUT", f"http://127.0.0.1:{r.port}/made-request?q=1", b"put body",
                                {"X-Made": "req"})
        check("make method", (new.method, new.host, new.path, new.content), ("PUT", "127.0.0.1", "/made-request?q=1", b"put body"))
        flow.request = new
    elif p.startswith("/http10"):
        check("is_http10", r.is_http10, True)


def response(flow):
    r, resp = flow.request, flow.response
    p = r.path
    resp.headers["x-status-reason"] = f"{resp.status_code} {resp.reason}"
    if p.startswith("/enc/"):
        enc = p.split("/")[2]
        check(f"{enc} content-encoding", resp.headers.get("content-encoding"), enc)
        check(f"{enc} raw differs", resp.raw_content != resp.content, True)
        check(f"{enc} text", resp.text, f"hello {enc} " * 20)
        check(f"{enc} get_text", resp.get_text(strict=False), resp.text)
        check(f"{enc} content", resp.content, (f"hello {enc} " * 20).encode())
        resp.set_text(resp.get_text().upper())
        check(f"{enc} re-encoded", resp.headers.get("content-encoding"), enc)
        check(f"{enc} content-length", resp.headers["content-length"], str(len(resp.raw_content)))
    elif p.startswith("/json"):
        data = resp.json()
        data["added"] = True
        resp.text = json.dumps(data, sort_keys=True)
    elif p.startswith("/cookies"):
        c = resp.cookies
        check("response cookie value", c["a"][0], "1")
        check("response cookie attrs", c["a"][1].get("Path"), "/")
        check("response cookies all", list(c.keys()), ["a", "b"])
        resp.cookies["b"] = ("changed", c["b"][1])
    elif p.startswith("/trailers"):
        check("trailers in", resp.trailers["x-origin-trailer"] if resp.trailers else None, "yes")
        resp.trailers["x-script-trailer"] = "added"
    elif p.startswith("/status"):
        resp.status_code = 299
        resp.reason = "Script Reason"
    if p.startswith("/fields"):
        resp.headers["x-pretty-url"] = r.pretty_url
