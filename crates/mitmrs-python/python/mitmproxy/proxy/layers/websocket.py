"""WebSocket layer (mitmproxy.proxy.layers.websocket): type stubs for now."""
import dataclasses

from mitmproxy.proxy.layer import Layer


class WebsocketLayer(Layer):
    pass


@dataclasses.dataclass
class WebSocketMessageInjected:
    flow: object
    message: object
