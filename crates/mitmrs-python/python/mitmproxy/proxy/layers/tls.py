"""TLS layers (mitmproxy.proxy.layers.tls)."""
from mitmproxy.proxy.layer import Layer
from mitmproxy.tls import ClientHelloData, TlsData  # noqa: F401


class ClientTLSLayer(Layer):
    """Intercept TLS from the client."""
    _kind = "tls"


class ServerTLSLayer(Layer):
    _kind = "tls"
