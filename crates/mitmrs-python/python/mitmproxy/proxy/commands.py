"""Commands of mitmproxy's sans-io proxy core (mitmproxy.proxy.commands), as names only."""
import dataclasses


class Command:
    blocking = False


@dataclasses.dataclass
class SendData(Command):
    connection: object
    data: bytes


@dataclasses.dataclass
class OpenConnection(Command):
    connection: object


@dataclasses.dataclass
class CloseConnection(Command):
    connection: object
    half_close: bool = False


@dataclasses.dataclass
class RequestWakeup(Command):
    delay: float


@dataclasses.dataclass
class Log(Command):
    message: str
    level: int = 20


class StartHook(Command):
    name = ""
