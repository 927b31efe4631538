"""mitmproxy's Python HTTP/1 connection classes (mitmproxy.proxy.layers.http._http1).
mitmrs's HTTP/1 is written in Rust: these names exist so that scripts which patch
them load, but the patched methods are never called."""
import dataclasses

from mitmproxy.proxy import commands, events  # noqa: F401


@dataclasses.dataclass
class _StreamEvent:
    stream_id: int


@dataclasses.dataclass
class RequestHeaders(_StreamEvent):
    request: object = None
    end_stream: bool = False


@dataclasses.dataclass
class ResponseHeaders(_StreamEvent):
    response: object = None
    end_stream: bool = False


@dataclasses.dataclass
class RequestData(_StreamEvent):
    data: bytes = b""


@dataclasses.dataclass
class ResponseData(_StreamEvent):
    data: bytes = b""


@dataclasses.dataclass
class RequestTrailers(_StreamEvent):
    trailers: object = None


@dataclasses.dataclass
class ResponseTrailers(_StreamEvent):
    trailers: object = None


@dataclasses.dataclass
class RequestEndOfMessage(_StreamEvent):
    pass


@dataclasses.dataclass
class ResponseEndOfMessage(_StreamEvent):
    pass


class Http1Connection:
    stream_id = None
    request = None
    response = None

    def __init__(self, context, conn):
        self.context = context
        self.conn = conn

    def send(self, event):
        """Not called by mitmrs (its HTTP/1 is in Rust)."""
        return
        yield  # pragma: no cover

    def mark_done(self, *, request=False, response=False):
        return
        yield  # pragma: no cover


class Http1Server(Http1Connection):
    """The client-facing side."""


class Http1Client(Http1Connection):
    """The server-facing side."""
