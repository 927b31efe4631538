"""WebSocket data (mitmproxy.websocket). mitmrs does not intercept WebSocket
messages yet (flow.websocket stays None and websocket_* hooks do not run); these
classes are here so scripts can import and annotate with them."""
import enum
import time

from mitmproxy._later import not_yet


class Opcode(enum.IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class WebSocketMessage:
    """A single WebSocket message."""

    def __init__(self, type, from_client, content, timestamp=None, dropped=False, injected=False):
        self.type = Opcode(type)
        self.from_client = from_client
        self.content = content
        self.timestamp = timestamp or time.time()
        self.dropped = dropped
        self.injected = injected

    @property
    def is_text(self):
        return self.type == Opcode.TEXT

    @property
    def text(self):
        return self.content.decode()

    @text.setter
    def text(self, value):
        self.content = value.encode()

    def drop(self):
        """Drop this message, i.e. don't forward it to the other peer."""
        self.dropped = True

    def kill(self):  # pragma: no cover
        self.drop()

    def __repr__(self):
        if self.type == Opcode.TEXT:
            return repr(self.content.decode(errors="replace"))
        return repr(self.content)


class WebSocketData:
    """The WebSocket part of an HTTPFlow (flow.websocket)."""

    def __init__(self):
        self.messages = []
        self.closed_by_client = None
        self.close_code = None
        self.close_reason = None
        self.timestamp_end = None

    def __repr__(self):
        return f"<WebSocketData ({len(self.messages)} messages)>"


def inject(*args, **kwargs):
    raise not_yet("inject.websocket", "WebSocket interception")


__all__ = ["WebSocketMessage", "WebSocketData", "Opcode"]
