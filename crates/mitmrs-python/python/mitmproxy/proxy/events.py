"""Events of mitmproxy's sans-io proxy core (mitmproxy.proxy.events), as names only."""
import dataclasses


class Event:
    pass


class Start(Event):
    pass


@dataclasses.dataclass
class ConnectionEvent(Event):
    connection: object


@dataclasses.dataclass
class DataReceived(ConnectionEvent):
    data: bytes


class ConnectionClosed(ConnectionEvent):
    pass


@dataclasses.dataclass
class Wakeup(Event):
    command: object
