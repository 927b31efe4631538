"""TCP flows (mitmproxy.tcp). mitmrs relays TCP but does not yet run tcp_* hooks:
these classes are here so scripts can import and annotate with them."""
import time

from mitmproxy import flow


class TCPMessage:
    """An individual TCP "message" (what one read from the socket returned)."""

    def __init__(self, from_client, content, timestamp=None):
        self.from_client = from_client
        self.content = content
        self.timestamp = timestamp or time.time()

    def __repr__(self):
        direction = "->" if self.from_client else "<-"
        return f"{direction} {self.content!r}"


class TCPFlow(flow.Flow):
    """A simplified representation of a TCP session."""

    type = "tcp"

    def __init__(self, client_conn, server_conn, live=False):
        super().__init__(client_conn, server_conn, live)
        self.messages = []

    def __repr__(self):
        return f"<TCPFlow ({len(self.messages)} messages)>"


__all__ = ["TCPFlow", "TCPMessage"]
