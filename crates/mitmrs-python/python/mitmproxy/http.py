"""HTTP flows, requests, responses and headers, with mitmproxy's API.

mitmrs's own implementation: these objects mirror the Rust flow; mitmrs copies the
Rust state in before each hook and reads the changes back after it.
"""
import json as _json
import re
import time
import urllib.parse
from http.cookies import SimpleCookie

from mitmproxy import _rs
from mitmproxy import flow as _flow
from mitmproxy.coretypes.multidict import MultiDict, MultiDictView, _MultiDict
from mitmproxy.utils.strutils import always_bytes, always_str


def _kstr(k):
    return always_bytes(k, "utf-8", "surrogateescape")


class Headers(_MultiDict):
    """Case-insensitive HTTP headers; keys and values are str, stored as bytes."""

    def __init__(self, fields=(), **headers):
        if isinstance(fields, dict):
            fields = list(fields.items())
        self.fields = tuple(
            (_kstr(k), _kstr(v)) for k, v in fields
        )
        for k, v in headers.items():
            self.fields += ((_kstr(k.replace("_", "-")), _kstr(v)),)

    @classmethod
    def _from_fields(cls, fields):
        """Headers over a tuple of (bytes, bytes) tuples, as is (mitmrs's flow sync)."""
        h = cls.__new__(cls)
        h.fields = fields
        return h

    @staticmethod
    def _kconv(key):
        return always_str(key, "utf-8", "surrogateescape").lower()

    @staticmethod
    def _reduce_values(values):
        return ", ".join(values)

    @staticmethod
    def _matcher(name):
        """A test on field names: does it equal `name` as _kconv sees it? Without
        decoding each name when both are ASCII bytes (the usual case)."""
        kb = _kstr(name)
        if kb.isascii():
            kl = kb.lower()
            ks = kl.decode()
            kconv = Headers._kconv
            return lambda n: (n.lower() == kl) if (n.__class__ is bytes and n.isascii()) else (kconv(n) == ks)
        ks = Headers._kconv(kb)
        return lambda n: Headers._kconv(n) == ks

    def get_all(self, name):
        m = self._matcher(name)
        return [always_str(v, "utf-8", "surrogateescape") for kk, v in self.fields if m(kk)]

    def __getitem__(self, name):
        values = self.get_all(name)
        if not values:
            raise KeyError(name)
        return ", ".join(values)

    def __contains__(self, name):
        m = self._matcher(name)
        return any(m(f[0]) for f in self.fields)

    def __delitem__(self, name):
        m = self._matcher(name)
        fields = tuple(f for f in self.fields if not m(f[0]))
        if len(fields) == len(self.fields):
            raise KeyError(name)
        self.fields = fields

    def __setitem__(self, name, value):
        key = name if name.__class__ is bytes else _kstr(name)
        if not key.isascii():
            return self.set_all(key, [value])
        value = value if value.__class__ is bytes else _kstr(value)
        kl = key.lower()
        new = []
        done = False
        for f in self.fields:
            n = f[0]
            if (n.lower() == kl) if (n.__class__ is bytes and n.isascii()) else (self._kconv(n) == kl.decode()):
                if not done:
                    new.append((n, value))
                    done = True
            else:
                new.append(f)
        if not done:
            new.append((key, value))
        self.fields = tuple(new)

    def set_all(self, name, values):
        key = _kstr(name)
        values = [_kstr(v) for v in values]
        m = self._matcher(key)
        new = []
        for f in self.fields:
            if m(f[0]):
                if values:
                    new.append((f[0], values.pop(0)))
            else:
                new.append(f)
        for v in values:
            new.append((key, v))
        self.fields = tuple(new)

    def insert(self, index, key, value):
        super().insert(index, _kstr(key), _kstr(value))

    def __iter__(self):
        for k in super().__iter__():
            yield always_str(k, "utf-8", "surrogateescape")

    def items(self, multi=False):
        if multi:
            return ((always_str(k, "utf-8", "surrogateescape"), always_str(v, "utf-8", "surrogateescape")) for k, v in self.fields)
        return super().items()

    def __bytes__(self):
        return b"".join(k + b": " + v + b"\r\n" for k, v in self.fields)

    def copy(self):
        return Headers(self.fields)

    def get_state(self):
        return self.fields


def _as_headers(headers):
    if isinstance(headers, Headers):
        return headers
    if isinstance(headers, dict):
        return Headers([(_kstr(k), _kstr(v)) for k, v in headers.items()])
    return Headers(list(headers))


class Message:
    """What requests and responses share (mitmproxy's http.Message)."""

    def __init__(self):
        self.http_version = "HTTP/1.1"
        self.headers = Headers()
        self.raw_content = b""
        self.trailers = None
        self.timestamp_start = time.time()
        self.timestamp_end = None
        self.stream = False

    def __eq__(self, other):
        return type(self) is type(other) and self.__dict__ == other.__dict__

    @property
    def data(self):
        return self

    def _get_headers(self):
        return self._headers

    def _set_headers(self, h):
        self._headers = _as_headers(h)

    headers = property(_get_headers, _set_headers)

    @property
    def is_http10(self):
        return self.http_version == "HTTP/1.0"

    @property
    def is_http11(self):
        return self.http_version == "HTTP/1.1"

    @property
    def is_http2(self):
        return self.http_version == "HTTP/2.0"

    @property
    def is_http3(self):
        return self.http_version == "HTTP/3"

    def get_content(self, strict=True):
        if self.raw_content is None:
            return None
        ce = self.headers.get("content-encoding")
        if ce:
            try:
                return _rs.decode(ce, self.raw_content)
            except ValueError:
                if strict:
                    raise
                return self.raw_content
        return self.raw_content

    def set_content(self, value):
        if value is None:
            self.raw_content = None
            return
        if not isinstance(value, bytes):
            raise TypeError(
                f"Message content must be bytes, not {type(value).__name__}. "
                "Please use .text if you want to assign a str."
            )
        ce = self.headers.get("content-encoding")
        if ce:
            try:
                self.raw_content = _rs.encode(ce, value)
            except ValueError:
                del self.headers["content-encoding"]
                self.raw_content = value
        else:
            self.raw_content = value
        if "transfer-encoding" not in self.headers:
            self.headers["content-length"] = str(len(self.raw_content))

    content = property(get_content, set_content)

    def _charset(self):
        ct = self.headers.get("content-type", "")
        m = re.search(r"charset=([\w-]+)", ct, re.I)
        if m:
            return m.group(1)
        if "json" in ct:
            return "utf-8"
        return None

    def get_text(self, strict=True):
        content = self.get_content(strict)
        if content is None:
            return None
        enc = self._charset() or "utf-8"
        try:
            return content.decode(enc, "surrogateescape" if enc.lower().replace("_", "-") == "utf-8" else "replace")
        except LookupError:
            return content.decode("utf-8", "surrogateescape")

    def set_text(self, text):
        if text is None:
            self.content = None
            return
        enc = self._charset() or "utf-8"
        try:
            self.content = text.encode(enc, "surrogateescape")
        except (UnicodeEncodeError, LookupError):
            self.content = text.encode("utf-8", "surrogateescape")

    text = property(get_text, set_text)

    def json(self, **kwargs):
        content = self.get_content(strict=False)
        if content is None:
            raise TypeError("Message content is not available.")
        return _json.loads(content, **kwargs)

    def decode(self, strict=True):
        decoded = self.get_content(strict)
        if "content-encoding" in self.headers:
            del self.headers["content-encoding"]
        self.content = decoded

    def encode(self, encoding):
        self.headers["content-encoding"] = encoding
        self.content = self.raw_content
        if "content-encoding" not in self.headers:
            raise ValueError(f"Invalid content encoding {encoding!r}")

    def copy(self):
        import copy
        c = copy.copy(self)
        c.headers = self.headers.copy()
        return c


class Request(Message):
    """An HTTP request."""

    def __init__(self, host, port, method, scheme, authority, path, http_version,
                 headers, content, trailers, timestamp_start, timestamp_end):
        super().__init__()
        self._host = always_str(host, "idna")
        self._port = port
        self.method = always_str(method)
        self.scheme = always_str(scheme)
        self.authority = always_str(authority)
        self.path = always_str(path)
        self.http_version = always_str(http_version)
        self.headers = headers
        self.raw_content = content
        self.trailers = trailers
        self.timestamp_start = timestamp_start
        self.timestamp_end = timestamp_end

    @classmethod
    def _make(cls, host, port, method, scheme, authority, path, http_version, headers, content,
              trailers, timestamp_start, timestamp_end):
        """What __init__ builds from str arguments and Headers (mitmrs's flow sync: no
        conversions, no property setters). Keep in step with __init__."""
        r = cls.__new__(cls)
        r.__dict__.update(
            http_version=http_version, _headers=headers, raw_content=content, trailers=trailers,
            timestamp_start=timestamp_start, timestamp_end=timestamp_end, stream=False,
            _host=host, _port=port, method=method, scheme=scheme, authority=authority, path=path,
        )
        return r

    def __repr__(self):
        if self.host and self.port:
            hostport = f"{self.host}:{self.port}"
        else:
            hostport = ""
        path = self.path or ""
        return f"Request({self.method} {hostport}{path})"

    @classmethod
    def make(cls, method, url, content=b"", headers=()):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Invalid URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        req = cls(parts.hostname, port, method.upper(), parts.scheme, "", path, "HTTP/1.1",
                  _as_headers(headers), b"", None, time.time(), time.time())
        if isinstance(content, str):
            req.text = content
        elif content:
            req.content = content
        elif method.upper() != "GET":
            req.content = b""
        return req

    @property
    def host_header(self):
        if self.is_http2 or self.is_http3:
            return self.authority or self.headers.get("Host")
        return self.headers.get("Host")

    @host_header.setter
    def host_header(self, val):
        if val is None:
            if "Host" in self.headers:
                del self.headers["Host"]
            self.authority = ""
        else:
            if self.is_http2 or self.is_http3:
                self.authority = val
            if not (self.is_http2 or self.is_http3) or "Host" in self.headers:
                self.headers["Host"] = val

    def _default_port(self):
        return 443 if self.scheme == "https" else 80

    @property
    def host(self):
        """The target host. Setting it also updates the Host header and the
        authority, if present."""
        return self._host

    @host.setter
    def host(self, val):
        self._host = always_str(val, "idna")
        self._update_host_and_authority()

    @property
    def port(self):
        return self._port

    @port.setter
    def port(self, port):
        if not isinstance(port, int) or isinstance(port, bool):
            raise ValueError(f"Port must be an integer, not {port!r}.")
        self._port = port
        self._update_host_and_authority()

    def _update_host_and_authority(self):
        val = self._fmt(self._host, self._port, self._default_port())
        h = self.__dict__.get("_headers")
        if h is not None and "Host" in h:
            h["Host"] = val
        if self.__dict__.get("authority"):
            self.authority = val

    @staticmethod
    def _fmt(host, port, default):
        h = f"[{host}]" if ":" in host else host
        return h if port == default else f"{h}:{port}"

    @property
    def url(self):
        if self.method == "CONNECT" or self.authority and self.path == "":
            return self._fmt(self.host, self.port, None)
        return f"{self.scheme}://{self._fmt(self.host, self.port, self._default_port())}{self.path}"

    @url.setter
    def url(self, val):
        parts = urllib.parse.urlsplit(val)
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        self.port = parts.port or self._default_port()
        self.path = (parts.path or "/") + ("?" + parts.query if parts.query else "")

    @property
    def pretty_host(self):
        hh = self.host_header
        if hh:
            m = re.match(r"^(\[[^\]]+\]|[^:]+)(?::(\d+))?$", hh)
            if m:
                return m.group(1).strip("[]")
            return hh
        return self.host

    @property
    def pretty_url(self):
        if self.method == "CONNECT":
            return self.authority
        hh = self.host_header
        if hh:
            m = re.match(r"^(\[[^\]]+\]|[^:]+)(?::(\d+))?$", hh)
            if m:
                host = m.group(1).strip("[]")
                port = int(m.group(2)) if m.group(2) else self._default_port()
                return f"{self.scheme}://{self._fmt(host, port, self._default_port())}{self.path}"
        return self.url

    @property
    def path_components(self):
        path = urllib.parse.urlsplit(self.path).path
        return tuple(urllib.parse.unquote(i) for i in path.split("/") if i)

    @path_components.setter
    def path_components(self, components):
        components = map(lambda x: urllib.parse.quote(x, safe=""), components)
        path = "/" + "/".join(components)
        _, _, _, query, fragment = urllib.parse.urlsplit(self.path)
        self.path = urllib.parse.urlunsplit(["", "", path, query, fragment])

    def _get_query(self):
        query = urllib.parse.urlsplit(self.path).query
        return tuple(urllib.parse.parse_qsl(query, keep_blank_values=True))

    def _set_query(self, query_data):
        query = urllib.parse.urlencode(query_data)
        _, _, path, _, fragment = urllib.parse.urlsplit(self.path)
        self.path = urllib.parse.urlunsplit(["", "", path, query, fragment])

    @property
    def query(self):
        return MultiDictView(self._get_query, self._set_query)

    @query.setter
    def query(self, value):
        self._set_query(value.fields if isinstance(value, _MultiDict) else list(value.items() if isinstance(value, dict) else value))

    def _get_cookies(self):
        out = []
        for h in self.headers.get_all("Cookie"):
            for part in h.split(";"):
                part = part.strip()
                if not part:
                    continue
                k, _, v = part.partition("=")
                out.append((k.strip(), v.strip()))
        return tuple(out)

    def _set_cookies(self, value):
        self.headers["cookie"] = "; ".join(f"{k}={v}" for k, v in value)

    @property
    def cookies(self):
        return MultiDictView(self._get_cookies, self._set_cookies)

    @cookies.setter
    def cookies(self, value):
        self._set_cookies(value.fields if isinstance(value, _MultiDict) else list(value.items() if isinstance(value, dict) else value))

    def _get_urlencoded_form(self):
        is_valid = "application/x-www-form-urlencoded" in self.headers.get("content-type", "").lower()
        if is_valid:
            return tuple(urllib.parse.parse_qsl(self.get_text(strict=False) or "", keep_blank_values=True))
        return ()

    def _set_urlencoded_form(self, form_data):
        self.headers["content-type"] = "application/x-www-form-urlencoded"
        self.content = urllib.parse.urlencode(form_data).encode()

    @property
    def urlencoded_form(self):
        return MultiDictView(self._get_urlencoded_form, self._set_urlencoded_form)

    @urlencoded_form.setter
    def urlencoded_form(self, value):
        self._set_urlencoded_form(value.fields if isinstance(value, _MultiDict) else list(value.items() if isinstance(value, dict) else value))

    def _get_multipart_form(self):
        ct = self.headers.get("content-type", "")
        if not ct.lower().startswith("multipart/form-data"):
            return ()
        m = re.search(r'boundary="?([^";]+)"?', ct, re.I)
        content = self.get_content(strict=False)
        if not m or not content:
            return ()
        return tuple(_multipart_decode(content, m.group(1).encode("latin-1")))

    def _set_multipart_form(self, value):
        ct = self.headers.get("content-type", "")
        m = re.search(r'boundary="?([^";]+)"?', ct, re.I)
        if ct.lower().startswith("multipart/form-data") and m:
            boundary = m.group(1)
        else:
            import os
            boundary = os.urandom(16).hex()
            self.headers["content-type"] = f"multipart/form-data; boundary={boundary}"
        self.content = _multipart_encode(value, boundary.encode("latin-1"))

    @property
    def multipart_form(self):
        """The multipart/form-data body as a multi-dict of bytes to bytes."""
        return MultiDictView(self._get_multipart_form, self._set_multipart_form)

    @multipart_form.setter
    def multipart_form(self, value):
        self._set_multipart_form(value.fields if isinstance(value, _MultiDict) else list(value.items() if isinstance(value, dict) else value))

    def anticache(self):
        for h in ("if-modified-since", "if-none-match"):
            if h in self.headers:
                del self.headers[h]

    def anticomp(self):
        self.headers["accept-encoding"] = "identity"

    def constrain_encoding(self):
        ae = self.headers.get("accept-encoding")
        if ae:
            keep = [e for e in re.split(r"\s*,\s*", ae) if e.split(";")[0] in ("identity", "gzip", "deflate", "br", "zstd")]
            self.headers["accept-encoding"] = ", ".join(keep)


def _multipart_decode(content, boundary):
    out = []
    for part in content.split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):
            break
        part = part[2:] if part.startswith(b"\r\n") else part
        head, sep, body = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        if body.endswith(b"\r\n"):
            body = body[:-2]
        name = None
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-disposition"):
                m = re.search(rb'\bname="([^"]*)"', line)
                if m:
                    name = m.group(1)
        if name is not None:
            out.append((name, body))
    return out


def _multipart_encode(fields, boundary):
    out = b""
    for k, v in fields:
        k = always_bytes(k, "utf-8")
        v = always_bytes(v, "utf-8")
        out += b"--" + boundary + b"\r\n"
        out += b'Content-Disposition: form-data; name="' + k + b'"\r\n\r\n'
        out += v + b"\r\n"
    if fields:
        out += b"--" + boundary + b"--\r\n"
    return out


class Response(Message):
    """An HTTP response."""

    def __init__(self, http_version, status_code, reason, headers, content, trailers,
                 timestamp_start, timestamp_end):
        super().__init__()
        self.http_version = always_str(http_version)
        self.status_code = status_code
        self.reason = always_str(reason)
        self.headers = headers
        self.raw_content = content
        self.trailers = trailers
        self.timestamp_start = timestamp_start
        self.timestamp_end = timestamp_end

    @classmethod
    def _make(cls, http_version, status_code, reason, headers, content, trailers,
              timestamp_start, timestamp_end):
        """What __init__ builds from str arguments and Headers (mitmrs's flow sync).
        Keep in step with __init__."""
        r = cls.__new__(cls)
        r.__dict__.update(
            http_version=http_version, _headers=headers, raw_content=content, trailers=trailers,
            timestamp_start=timestamp_start, timestamp_end=timestamp_end, stream=False,
            status_code=status_code, reason=reason,
        )
        return r

    def __repr__(self):
        if self.raw_content:
            ct = self.headers.get("content-type", "unknown content type")
            details = f"{ct}, {len(self.raw_content)}b"
        else:
            details = "no content"
        return f"Response({self.status_code}, {details})"

    @classmethod
    def make(cls, status_code=200, content=b"", headers=()):
        resp = cls("HTTP/1.1", status_code, _rs.reason(status_code), _as_headers(headers), b"", None, time.time(), time.time())
        if isinstance(content, str):
            resp.text = content
        elif isinstance(content, bytes):
            resp.content = content
        else:
            raise TypeError(f"Expected content to be str or bytes, but is {type(content).__name__}.")
        return resp

    def _get_cookies(self):
        out = []
        for h in self.headers.get_all("set-cookie"):
            first, _, rest = h.partition(";")
            k, _, v = first.partition("=")
            attrs = MultiDict(
                [(a.split("=", 1)[0].strip(), a.split("=", 1)[1].strip() if "=" in a else None)
                 for a in rest.split(";") if a.strip()]
            )
            out.append((k.strip(), (v.strip(), attrs)))
        return tuple(out)

    def _set_cookies(self, value):
        vals = []
        for k, (v, attrs) in value:
            parts = [f"{k}={v}"]
            for ak, av in (attrs.fields if isinstance(attrs, _MultiDict) else attrs):
                parts.append(ak if av is None else f"{ak}={av}")
            vals.append("; ".join(parts))
        self.headers.set_all("set-cookie", vals)

    @property
    def cookies(self):
        return MultiDictView(self._get_cookies, self._set_cookies)

    @cookies.setter
    def cookies(self, value):
        self._set_cookies(value.fields if isinstance(value, _MultiDict) else list(value.items() if isinstance(value, dict) else value))

    def refresh(self, now=None):
        pass


class _Synced:
    """A flow attribute (request, response, client_conn, server_conn) that mitmrs
    builds from the Rust state the first time a hook reads it. A non-data
    descriptor: once built (or set) it is an ordinary instance attribute."""

    def __init__(self, name):
        self.name = name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        build = obj.__dict__.get("_mitmrs_build")
        if build is None:
            raise AttributeError(self.name)
        v = build(obj, self.name)
        obj.__dict__[self.name] = v
        return v


class HTTPFlow(_flow.Flow):
    """An HTTP request/response exchange."""

    type = "http"
    request = _Synced("request")
    response = _Synced("response")
    client_conn = _Synced("client_conn")
    server_conn = _Synced("server_conn")

    def __init__(self, client_conn, server_conn, live=False):
        super().__init__(client_conn, server_conn, live)
        self.request = None
        self.response = None
        self.websocket = None

    @classmethod
    def _make(cls, id, live, timestamp_created, metadata, resume_handle, build):
        """What __init__ builds, without a fresh uuid and with request, response,
        client_conn and server_conn left to `build(flow, name)` on first use
        (mitmrs's flow sync). Keep in step with __init__ and Flow.__init__."""
        f = cls.__new__(cls)
        f.__dict__.update(
            id=id, live=live, timestamp_created=timestamp_created, error=None, intercepted=False,
            _backup=None, marked="", is_replay=None, metadata=metadata, comment="",
            _resume_handle=resume_handle, websocket=None, _mitmrs_build=build,
        )
        return f

    def __repr__(self):
        s = "<HTTPFlow"
        for a in ("request", "response", "websocket", "error", "client_conn", "server_conn"):
            if getattr(self, a, False):
                s += f"\r\n  {a} = {{flow.{a}}}"
        s += ">"
        return s.format(flow=self)

    @property
    def timestamp_start(self):
        return self.request.timestamp_start

    @property
    def mode(self):
        return "regular"
