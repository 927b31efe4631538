"""TCP layer (mitmproxy.proxy.layers.tcp)."""
import dataclasses

from mitmproxy.proxy.layer import Layer


class TCPLayer(Layer):
    """Relay bytes unchanged (TLS passthrough, other protocols)."""
    _kind = "tcp"

    def __init__(self, context, ignore=False):
        super().__init__(context)
        self.ignore = ignore


@dataclasses.dataclass
class TcpMessageInjected:
    flow: object
    message: object
