"""Flow filter expressions (mitmproxy.flowfilter): `parse(expr)` compiles an
expression such as `~d example.com & !~m POST | ~c 404` into a callable, `match`
applies one to a flow.

The expression is read by mitmrs's parser (`mitmproxy._rs.filter_syntax`), the one
the command line's filter argument and the `*_filter` options use: it reads what
mitmproxy 11's grammar reads, the same way (`a b | c` is `a & (b | c)`, `~q&~s` is
an error). The regexes are compiled here with Python's `re` and mitmproxy's flags,
so a filter in a script matches what it matches in mitmproxy.
"""
import re
import sys
import typing

from mitmproxy import _rs

__all__ = ["parse", "match", "TFilter", "match_all", "help"]


class TFilter(typing.Protocol):
    pattern: str

    def __call__(self, f) -> bool: ...  # pragma: no cover


class _Filter:
    """A compiled filter; `name` is mitmproxy's class name (for `dump`)."""

    pattern = ""
    expr = ""

    def __init__(self, name, fn, expr="", children=()):
        self.name = name
        self.fn = fn
        self.expr = expr
        self.children = children

    def __call__(self, f):
        return bool(self.fn(f))

    def dump(self, indent=0, fp=sys.stdout):
        print("\t" * indent + self.name + self.expr, file=fp)
        for c in self.children:
            c.dump(indent + 1, fp)

    def __repr__(self):
        return f"<flowfilter {self.name}{' ' + self.expr if self.expr else ''}>"


def _type(f):
    return getattr(f, "type", None)


def _content(msg):
    """mitmproxy's get_content(strict=False): decoded, raw if it will not decode."""
    if msg is None:
        return None
    try:
        return msg.get_content(strict=False)
    except Exception:
        return getattr(msg, "raw_content", None)


def _content_type(rex, msg):
    return any(name.lower() == b"content-type" and rex.search(value) for name, value in msg.headers.fields)


def _ws_or_stream(f, direction):
    """WebSocket, TCP or UDP messages (direction: None any, True from the client)."""
    if _type(f) == "http":
        msgs = f.websocket.messages if f.websocket else []
    elif _type(f) in ("tcp", "udp"):
        msgs = f.messages
    else:
        return []
    return [m.content for m in msgs if m.content is not None and (direction is None or m.from_client == direction)]


_ASSETS = [re.compile(x) for x in (
    b"text/javascript", b"application/x-javascript", b"application/javascript", b"text/css",
    b"image/.*", b"font/.*", b"application/font.*",
)]


def _asset(f):
    return _type(f) == "http" and bool(f.response) and any(_content_type(r, f.response) for r in _ASSETS)


_UNARY = {
    "a": ("FAsset", _asset, "Match asset in response: CSS, JavaScript, images, fonts."),
    "all": ("FAll", lambda f: True, "Match all flows"),
    "dns": ("FDNS", lambda f: _type(f) == "dns", "Match DNS flows"),
    "e": ("FErr", lambda f: bool(f.error), "Match error"),
    "http": ("FHTTP", lambda f: _type(f) == "http", "Match HTTP flows"),
    "marked": ("FMarked", lambda f: bool(f.marked), "Match marked flows"),
    "q": ("FReq", lambda f: _type(f) in ("http", "dns") and not f.response, "Match request with no response"),
    "replay": ("FReplay", lambda f: f.is_replay is not None, "Match replayed flows"),
    "replayq": ("FReplayClient", lambda f: f.is_replay == "request", "Match replayed client request"),
    "replays": ("FReplayServer", lambda f: f.is_replay == "response", "Match replayed server response"),
    "s": ("FResp", lambda f: _type(f) in ("http", "dns") and bool(f.response), "Match response"),
    "tcp": ("FTCP", lambda f: _type(f) == "tcp", "Match TCP flows"),
    "udp": ("FUDP", lambda f: _type(f) == "udp", "Match UDP flows"),
    "websocket": ("FWebSocket", lambda f: _type(f) == "http" and f.websocket is not None, "Match WebSocket flows"),
}


def _bodies(rex, f, req, resp, direction):
    if _type(f) == "http":
        msgs = ([f.request] if req else []) + ([f.response] if resp and f.response else [])
        for m in msgs:
            c = _content(m)
            if c is not None and rex.search(c):
                return True
    elif _type(f) == "dns":
        msgs = ([f.request] if req else []) + ([f.response] if resp and f.response else [])
        return any(m is not None and rex.search(m.content) for m in msgs)
    return any(rex.search(c) for c in _ws_or_stream(f, direction))


def _http(fn):
    return lambda rex: lambda f: _type(f) == "http" and fn(rex, f)


def _addr(a):
    return f"{a[0]}:{a[1]}"


def _url(rex, f):
    if _type(f) == "http":
        return rex.search(f.request.pretty_url)
    if _type(f) == "dns" and f.request is not None:
        return bool(f.request.questions) and rex.search(f.request.questions[0].name)
    return False


def _method(rex, f):
    m = f.request.method
    return rex.search(m.encode() if isinstance(m, str) else m)


# code: (class name, (binary, flags), matcher taking the compiled regex, help)
_REX = {
    "b": ("FBod", (True, re.DOTALL), lambda r: lambda f: _bodies(r, f, True, True, None), "Body"),
    "bq": ("FBodRequest", (True, re.DOTALL), lambda r: lambda f: _bodies(r, f, True, False, True), "Request body"),
    "bs": ("FBodResponse", (True, re.DOTALL), lambda r: lambda f: _bodies(r, f, False, True, False), "Response body"),
    "t": ("FContentType", (True, 0), _http(lambda r, f: _content_type(r, f.request) or bool(f.response) and _content_type(r, f.response)), "Content-type header"),
    "tq": ("FContentTypeRequest", (True, 0), _http(lambda r, f: _content_type(r, f.request)), "Request Content-Type header"),
    "ts": ("FContentTypeResponse", (True, 0), _http(lambda r, f: bool(f.response) and _content_type(r, f.response)), "Response Content-Type header"),
    "d": ("FDomain", (False, re.IGNORECASE), _http(lambda r, f: r.search(f.request.host) or r.search(f.request.pretty_host)), "Domain"),
    "dst": ("FDst", (False, 0), lambda r: lambda f: bool(f.server_conn and f.server_conn.address) and r.search(_addr(f.server_conn.address)), "Match destination address"),
    "h": ("FHead", (True, re.MULTILINE), _http(lambda r, f: r.search(bytes(f.request.headers)) or bool(f.response) and r.search(bytes(f.response.headers))), "Header"),
    "hq": ("FHeadRequest", (True, re.MULTILINE), _http(lambda r, f: r.search(bytes(f.request.headers))), "Request header"),
    "hs": ("FHeadResponse", (True, re.MULTILINE), _http(lambda r, f: bool(f.response) and r.search(bytes(f.response.headers))), "Response header"),
    "m": ("FMethod", (True, re.IGNORECASE), _http(_method), "Method"),
    "src": ("FSrc", (False, 0), lambda r: lambda f: bool(f.client_conn and f.client_conn.peername) and r.search(_addr(f.client_conn.peername)), "Match source address"),
    "u": ("FUrl", (False, re.IGNORECASE), lambda r: lambda f: _url(r, f), "URL"),
    "meta": ("FMeta", (False, re.MULTILINE), lambda r: lambda f: r.search("\n".join(f"{k}: {v}" for k, v in f.metadata.items())), "Flow metadata"),
    "marker": ("FMarker", (False, 0), lambda r: lambda f: r.search(f.marked), "Match marked flows with specified marker"),
    "comment": ("FComment", (False, re.MULTILINE), lambda r: lambda f: r.search(f.comment), "Flow comment"),
}


def _build(node, src):
    kind = node[0]
    if kind in ("and", "or"):
        items = [_build(n, src) for n in node[1]]
        fn = (lambda f: all(i(f) for i in items)) if kind == "and" else (lambda f: any(i(f) for i in items))
        return _Filter("FAnd" if kind == "and" else "FOr", fn, children=items)
    if kind == "not":
        inner = _build(node[1], src)
        return _Filter("FNot", lambda f: not inner(f), children=(inner,))
    if kind == "unary":
        name, fn, _ = _UNARY[node[1]]
        return _Filter(name, fn)
    if kind == "int":
        n = int(node[2])
        return _Filter("FCode", lambda f: _type(f) == "http" and bool(f.response) and f.response.status_code == n)
    name, (binary, flags), make, _ = _REX[node[1]]
    expr = node[2]
    try:
        rex = re.compile(expr.encode() if binary else expr, flags)
    except Exception as e:
        raise ValueError(f"Invalid filter expression: {src!r}") from e
    return _Filter(name, make(rex), expr=expr)


def parse(s):
    """Compile a filter expression; ValueError if it is empty or invalid."""
    flt = _build(_rs.filter_syntax(s), s)
    flt.pattern = s
    return flt


def match(flt, flow):
    """Whether `flow` matches `flt` (a compiled filter, an expression, or None: all)."""
    if isinstance(flt, str):
        flt = parse(flt)
    if flt:
        return flt(flow)
    return True


match_all = parse("~all")

help = sorted(
    [(f"~{k}", v[2]) for k, v in _UNARY.items()]
    + [(f"~{k} regex", v[3]) for k, v in _REX.items()]
    + [("~c int", "HTTP response code")]
)
help += [("!", "unary not"), ("&", "and"), ("|", "or"), ("(...)", "grouping")]
