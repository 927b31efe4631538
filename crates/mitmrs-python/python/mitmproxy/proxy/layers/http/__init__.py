"""HTTP layer (mitmproxy.proxy.layers.http). mitmrs speaks HTTP in Rust."""
import enum

from mitmproxy.proxy.layer import Layer


class HTTPMode(enum.Enum):
    regular = 1
    transparent = 2
    upstream = 3


class HttpLayer(Layer):
    """HTTP/1."""
    _kind = "http"

    def __init__(self, context, mode=None):
        super().__init__(context)
        self.mode = mode


__all__ = ["HTTPMode", "HttpLayer"]
