"""The layers a next_layer hook may choose (mitmproxy.proxy.layers), by kind."""
from mitmproxy.proxy.layer import Layer


class TCPLayer(Layer):
    """Relay bytes unchanged (TLS passthrough, other protocols)."""
    _kind = "tcp"

    def __init__(self, context, ignore=False):
        super().__init__(context)
        self.ignore = ignore


class UDPLayer(Layer):
    _kind = "tcp"


class ClientTLSLayer(Layer):
    """Intercept TLS from the client."""
    _kind = "tls"


class ServerTLSLayer(Layer):
    _kind = "tls"


class HttpLayer(Layer):
    """HTTP/1."""
    _kind = "http"

    def __init__(self, context, mode=None):
        super().__init__(context)
        self.mode = mode


class modes:
    class HttpProxy(Layer):
        _kind = "http"

    class HttpUpstreamProxy(Layer):
        _kind = "http"

    class ReverseProxy(Layer):
        _kind = "http"


def _layer_for(kind, context):
    if kind == "tcp":
        return TCPLayer(context)
    if kind == "tls":
        return ClientTLSLayer(context)
    if kind == "http":
        return HttpLayer(context)
    return None
