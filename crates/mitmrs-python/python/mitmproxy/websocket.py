"""WebSocket data (mitmproxy.websocket): `flow.websocket` of an HTTP flow after
its WebSocket handshake, with the messages so far (the newest last).

mitmrs keeps the history within `websocket_history` bytes; the Python list is
trimmed from the front to the same messages before each hook. In
`websocket_message` the new message is `flow.websocket.messages[-1]`: changing
its `content` (or `text`) changes what is sent on, `drop()` stops it."""
import enum
import time
import warnings
from dataclasses import dataclass, field



class Opcode(enum.IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class WebSocketMessage:
    """A single WebSocket message: text or binary, joined from its frames."""

    def __init__(self, type, from_client, content, timestamp=None, dropped=False, injected=False):
        self.from_client = from_client
        self.type = Opcode(type)
        self.content = content
        self.timestamp = timestamp or time.time()
        self.dropped = dropped
        self.injected = injected

    @classmethod
    def _make(cls, type, from_client, content, timestamp, dropped, injected):
        """What __init__ builds, from mitmrs's flow sync (type already 1 or 2)."""
        m = cls.__new__(cls)
        m.__dict__.update(
            from_client=from_client, type=_OPCODES[type], content=content,
            timestamp=timestamp, dropped=dropped, injected=injected,
        )
        return m

    def get_state(self):
        return (int(self.type), self.from_client, self.content, self.timestamp, self.dropped, self.injected)

    @classmethod
    def from_state(cls, state):
        return cls(*state)

    def set_state(self, state):
        typ, self.from_client, self.content, self.timestamp, self.dropped, self.injected = state
        self.type = Opcode(typ)

    def _format_ws_message(self):
        if self.from_client:
            return b"[OUTGOING] " + self.content
        return b"[INCOMING] " + self.content

    def __repr__(self):
        if self.type == Opcode.TEXT:
            return repr(self.content.decode(errors="replace"))
        return repr(self.content)

    @property
    def is_text(self):
        """True for a message of TEXT frames, False for BINARY ones."""
        return self.type == Opcode.TEXT

    def drop(self):
        """Drop this message, i.e. don't forward it to the other peer."""
        self.dropped = True

    def kill(self):  # pragma: no cover
        """A deprecated alias for `.drop()`."""
        warnings.warn(
            "WebSocketMessage.kill() is deprecated, use .drop() instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        self.drop()

    @property
    def text(self):
        """The message content as text (text messages only)."""
        if self.type != Opcode.TEXT:
            raise AttributeError(
                f"{self.type.name.title()} WebSocket frames do not have a 'text' attribute."
            )
        return self.content.decode()

    @text.setter
    def text(self, value):
        if self.type != Opcode.TEXT:
            raise AttributeError(
                f"{self.type.name.title()} WebSocket frames do not have a 'text' attribute."
            )
        self.content = value.encode()


_OPCODES = {1: Opcode.TEXT, 2: Opcode.BINARY}


@dataclass
class WebSocketData:
    """Everything about one WebSocket connection (`HTTPFlow.websocket`)."""

    messages: list = field(default_factory=list)
    """The WebSocketMessages so far (within `websocket_history`)."""
    closed_by_client: bool = None
    """True if the client closed the connection, False if the server did, None while open."""
    close_code: int = None
    close_reason: str = None
    timestamp_end: float = None

    def __repr__(self):
        return f"<WebSocketData ({len(self.messages)} messages)>"

    def _get_formatted_messages(self):
        return b"\n".join(m._format_ws_message() for m in self.messages)


__all__ = ["WebSocketMessage", "WebSocketData", "Opcode"]
