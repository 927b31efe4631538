"""Data for the server connection hooks."""
import dataclasses

from mitmproxy import connection


@dataclasses.dataclass
class ServerConnectionHookData:
    """Event data for server connection event hooks."""

    server: connection.Server
    """The server connection this hook is about."""
    client: connection.Client
    """The client on the other end."""
