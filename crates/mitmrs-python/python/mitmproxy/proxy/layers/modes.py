"""Proxy mode layers (mitmproxy.proxy.layers.modes)."""
import dataclasses

from mitmproxy.proxy.layer import Layer


class HttpProxy(Layer):
    _kind = "http"


class HttpUpstreamProxy(Layer):
    _kind = "http"


class ReverseProxy(Layer):
    _kind = "http"


class TransparentProxy(Layer):
    _kind = "http"


class Socks5Proxy(Layer):
    pass


@dataclasses.dataclass
class Socks5AuthData:
    client_conn: object
    username: str
    password: str
    valid: bool = False
