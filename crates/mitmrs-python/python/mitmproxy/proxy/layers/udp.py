"""UDP layer (mitmproxy.proxy.layers.udp): mitmrs has no UDP yet; relays like TCP."""
from mitmproxy.proxy.layer import Layer


class UDPLayer(Layer):
    _kind = "tcp"

    def __init__(self, context, ignore=False):
        super().__init__(context)
        self.ignore = ignore
