"""Flow filter expressions (mitmproxy.flowfilter): `parse(expr)` compiles an
expression such as `~d example.com & !~m POST | ~c 404` into a callable, `match`
applies one to a flow. mitmrs's own implementation of mitmproxy's filter language:
`!` binds tighter than `&` (or juxtaposition), which binds tighter than `|`; a bare
string is `~u string`. Regexes on bodies and headers are bytes regexes."""
import re
import typing

__all__ = ["parse", "match", "TFilter", "match_all", "help"]


class TFilter(typing.Protocol):
    pattern: str

    def __call__(self, f) -> bool: ...  # pragma: no cover


def _is(f, kind):
    return getattr(f, "type", None) == kind


def _content(msg):
    if msg is None:
        return None
    for attr in ("get_content",):
        fn = getattr(msg, attr, None)
        if fn is not None:
            try:
                return fn(strict=False)
            except Exception:
                pass
    return getattr(msg, "raw_content", None)


def _headers_bytes(msg):
    if msg is None:
        return b""
    out = []
    for k, v in msg.headers.fields:
        out.append(k + b": " + v + b"\r\n")
    return b"".join(out)


def _ctype(msg):
    return msg.headers.get("content-type", "") if msg is not None else ""


def _asset(f):
    if not _is(f, "http") or not f.response:
        return False
    ct = _ctype(f.response)
    return bool(re.search(r"javascript|css|image|font|flash", ct, re.IGNORECASE))


def _addr(a):
    return f"{a[0]}:{a[1]}" if a else ""


class _Node:
    pattern = ""

    def __init__(self, fn, desc):
        self.fn = fn
        self.desc = desc

    def __call__(self, f):
        return bool(self.fn(f))

    def __repr__(self):
        return self.desc


def _rex(expr, flags=0, binary=True):
    if binary:
        return re.compile(expr.encode("utf-8", "surrogateescape"), flags)
    return re.compile(expr, flags)


def _msgs(f, which):
    if not _is(f, "http"):
        return []
    if which == "q":
        return [f.request]
    if which == "s":
        return [f.response] if f.response else []
    return [f.request] + ([f.response] if f.response else [])


def _messages_of_stream(f, which):
    """TCP/UDP/WebSocket message contents, for ~b, ~bq, ~bs."""
    msgs = getattr(f, "messages", None)
    ws = getattr(f, "websocket", None)
    if ws is not None:
        msgs = ws.messages
    out = []
    for m in msgs or []:
        if which == "q" and not m.from_client or which == "s" and m.from_client:
            continue
        out.append(m.content)
    return out


def _body(which):
    def make(expr):
        rx = _rex(expr, re.DOTALL)

        def fn(f):
            for m in _msgs(f, which):
                c = _content(m)
                if c and rx.search(c):
                    return True
            return any(rx.search(c) for c in _messages_of_stream(f, which))
        return fn
    return make


def _head(which):
    def make(expr):
        rx = _rex(expr, re.MULTILINE)
        return lambda f: any(rx.search(_headers_bytes(m)) for m in _msgs(f, which))
    return make


def _ctype_f(which):
    def make(expr):
        rx = _rex(expr, 0, binary=False)
        return lambda f: any(rx.search(_ctype(m)) for m in _msgs(f, which))
    return make


def _url(expr):
    rx = _rex(expr, re.IGNORECASE, binary=False)

    def fn(f):
        if _is(f, "http"):
            return rx.search(f.request.pretty_url)
        if _is(f, "dns") and f.request is not None:
            q = f.request.question
            return q is not None and rx.search(q.name)
        return False
    return fn


def _domain(expr):
    rx = _rex(expr, re.IGNORECASE, binary=False)
    return lambda f: _is(f, "http") and (rx.search(f.request.host) or rx.search(f.request.pretty_host))


def _method(expr):
    rx = _rex(expr, re.IGNORECASE, binary=False)
    return lambda f: _is(f, "http") and rx.search(f.request.method)


def _code(expr):
    try:
        n = int(expr)
    except ValueError:
        raise ValueError(f"~c takes a number, not {expr!r}") from None
    return lambda f: _is(f, "http") and f.response is not None and f.response.status_code == n


def _src(expr):
    rx = _rex(expr, 0, binary=False)
    return lambda f: bool(f.client_conn and f.client_conn.peername and rx.search(_addr(f.client_conn.peername)))


def _dst(expr):
    rx = _rex(expr, 0, binary=False)
    return lambda f: bool(f.server_conn and f.server_conn.address and rx.search(_addr(f.server_conn.address)))


def _meta(expr):
    rx = _rex(expr, re.MULTILINE, binary=False)
    return lambda f: rx.search("\n".join(f"{k}: {v}" for k, v in (f.metadata or {}).items()))


def _marker(expr):
    rx = _rex(expr, 0, binary=False)
    return lambda f: rx.search(f.marked or "")


def _comment(expr):
    rx = _rex(expr, re.MULTILINE, binary=False)
    return lambda f: rx.search(f.comment or "")


_UNARY = {
    "all": (lambda f: True, "Match all flows"),
    "a": (_asset, "Match asset in response: CSS, JavaScript, images, fonts."),
    "dns": (lambda f: _is(f, "dns"), "Match DNS flows"),
    "e": (lambda f: bool(f.error), "Match error"),
    "http": (lambda f: _is(f, "http"), "Match HTTP flows"),
    "marked": (lambda f: bool(f.marked), "Match marked flows"),
    "q": (lambda f: _is(f, "http") and not f.response, "Match request with no response"),
    "replay": (lambda f: f.is_replay is not None, "Match replayed flows"),
    "replayq": (lambda f: f.is_replay == "request", "Match replayed client request"),
    "replays": (lambda f: f.is_replay == "response", "Match replayed server response"),
    "s": (lambda f: _is(f, "http") and bool(f.response), "Match response"),
    "tcp": (lambda f: _is(f, "tcp"), "Match TCP flows"),
    "udp": (lambda f: _is(f, "udp"), "Match UDP flows"),
    "websocket": (lambda f: _is(f, "http") and f.websocket is not None, "Match WebSocket flows"),
}

_WITH_ARG = {
    "b": (_body("b"), "Body"),
    "bq": (_body("q"), "Request body"),
    "bs": (_body("s"), "Response body"),
    "c": (_code, "HTTP response code"),
    "comment": (_comment, "Flow comment"),
    "d": (_domain, "Domain"),
    "dst": (_dst, "Match destination address"),
    "h": (_head("b"), "Header"),
    "hq": (_head("q"), "Request header"),
    "hs": (_head("s"), "Response header"),
    "m": (_method, "Method"),
    "marker": (_marker, "Match marked flows with specified marker"),
    "meta": (_meta, "Flow metadata"),
    "src": (_src, "Match source address"),
    "t": (_ctype_f("b"), "Content-type header"),
    "tq": (_ctype_f("q"), "Request Content-Type header"),
    "ts": (_ctype_f("s"), "Response Content-Type header"),
    "u": (_url, "URL"),
}

_TOKEN = re.compile(r"""\s*(?:(?P<op>[()!&|])|"(?P<dq>(?:\\.|[^"\\])*)"|'(?P<sq>(?:\\.|[^'\\])*)'|(?P<word>[^\s()!&|"']+))""")


def _tokenize(s):
    toks = []
    pos = 0
    s = s.rstrip()
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m or m.end() == pos:
            raise ValueError(f"Invalid filter expression: {s!r}")
        pos = m.end()
        if m.group("op"):
            toks.append(("op", m.group("op")))
        elif m.group("dq") is not None:
            toks.append(("str", m.group("dq").encode().decode("unicode_escape")))
        elif m.group("sq") is not None:
            toks.append(("str", m.group("sq").encode().decode("unicode_escape")))
        else:
            toks.append(("word", m.group("word")))
    return toks


class _Parser:
    def __init__(self, toks, src):
        self.toks = toks
        self.i = 0
        self.src = src

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self):
        t = self.peek()
        if t is None:
            raise ValueError(f"Invalid filter expression: {self.src!r}")
        self.i += 1
        return t

    def parse_or(self):
        items = [self.parse_and()]
        while self.peek() == ("op", "|"):
            self.take()
            items.append(self.parse_and())
        if len(items) == 1:
            return items[0]
        return _Node(lambda f: any(i(f) for i in items), "|".join(map(repr, items)))

    def parse_and(self):
        items = [self.parse_not()]
        while True:
            t = self.peek()
            if t == ("op", "&"):
                self.take()
                items.append(self.parse_not())
            elif t is not None and t not in (("op", "|"), ("op", ")")):
                items.append(self.parse_not())
            else:
                break
        if len(items) == 1:
            return items[0]
        return _Node(lambda f: all(i(f) for i in items), "&".join(map(repr, items)))

    def parse_not(self):
        if self.peek() == ("op", "!"):
            self.take()
            inner = self.parse_not()
            return _Node(lambda f: not inner(f), f"!{inner!r}")
        return self.parse_atom()

    def parse_atom(self):
        kind, val = self.take()
        if kind == "op":
            if val == "(":
                inner = self.parse_or()
                if self.take() != ("op", ")"):
                    raise ValueError(f"Invalid filter expression: {self.src!r}")
                return inner
            raise ValueError(f"Invalid filter expression: {self.src!r}")
        if kind == "word" and val.startswith("~"):
            code = val[1:]
            if code in _UNARY:
                return _Node(_UNARY[code][0], val)
            if code in _WITH_ARG:
                akind, arg = self.take()
                if akind == "op":
                    raise ValueError(f"Invalid filter expression: {self.src!r}")
                return _Node(_WITH_ARG[code][0](arg), f"{val} {arg}")
            raise ValueError(f"Invalid filter expression: {self.src!r}")
        return _Node(_url(val), f"~u {val}")


def parse(s):
    """Compile a filter expression; ValueError if it is empty or invalid."""
    if not s:
        raise ValueError("Empty filter expression")
    try:
        p = _Parser(_tokenize(s), s)
        flt = p.parse_or()
        if p.peek() is not None:
            raise ValueError(f"Invalid filter expression: {s!r}")
    except re.error as e:
        raise ValueError(f"Invalid filter expression: {s!r}") from e
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

help = [(f"~{k}", v[1]) for k, v in sorted(_UNARY.items())]
help += [(f"~{k} regex", v[1]) for k, v in sorted(_WITH_ARG.items())]
help += [("!", "unary not"), ("&", "and"), ("|", "or"), ("(...)", "grouping")]
