"""UDP flows (mitmproxy.udp): type stubs, mitmrs does not run udp_* hooks yet."""
import time

from mitmproxy import flow


class UDPMessage:
    """An individual UDP datagram."""

    def __init__(self, from_client, content, timestamp=None):
        self.from_client = from_client
        self.content = content
        self.timestamp = timestamp or time.time()

    def __repr__(self):
        direction = "->" if self.from_client else "<-"
        return f"{direction} {self.content!r}"


class UDPFlow(flow.Flow):
    """A simplified representation of a UDP session."""

    type = "udp"

    def __init__(self, client_conn, server_conn, live=False):
        super().__init__(client_conn, server_conn, live)
        self.messages = []

    def __repr__(self):
        return f"<UDPFlow ({len(self.messages)} messages)>"


__all__ = ["UDPFlow", "UDPMessage"]
