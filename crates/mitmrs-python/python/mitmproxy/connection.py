"""Client and server connections (mitmrs's implementation of mitmproxy.connection)."""
import enum
import uuid

from mitmproxy.proxy import mode_specs


class ConnectionState(enum.Flag):
    CLOSED = 0
    CAN_READ = 1
    CAN_WRITE = 2
    OPEN = CAN_READ | CAN_WRITE


class Connection:
    def __init__(self):
        self.id = str(uuid.uuid4())
        self.state = ConnectionState.OPEN
        self.peername = None
        self.sockname = None
        self.error = None
        self.tls = False
        self.certificate_list = []
        self.alpn = None
        self.alpn_offers = []
        self.cipher = None
        self.cipher_list = []
        self.tls_version = None
        self.sni = None
        self.timestamp_start = None
        self.timestamp_end = None
        self.timestamp_tls_setup = None
        self.transport_protocol = "tcp"

    @property
    def connected(self):
        return self.state is ConnectionState.OPEN

    @property
    def tls_established(self):
        return self.timestamp_tls_setup is not None

    def __eq__(self, other):
        return isinstance(other, Connection) and self.id == other.id

    def __hash__(self):
        return hash(self.id)


# What Connection.__init__ sets, for the _make constructors (keep in step).
_CONN_DEFAULTS = dict(
    state=ConnectionState.OPEN, peername=None, sockname=None, error=None, tls=False, alpn=None,
    cipher=None, tls_version=None, sni=None, timestamp_start=None, timestamp_end=None,
    timestamp_tls_setup=None, transport_protocol="tcp",
)


class Client(Connection):
    def __init__(self, peername=None, sockname=None, timestamp_start=None, **kwargs):
        super().__init__()
        self.peername = peername
        self.sockname = sockname
        self.timestamp_start = timestamp_start
        self.mitmcert = None
        self.proxy_mode = mode_specs.ProxyMode.parse("regular")
        for k, v in kwargs.items():
            setattr(self, k, v)

    @property
    def address(self):
        return self.peername

    @classmethod
    def _make(cls, id, peername, sockname, timestamp_start, proxy_mode):
        """What __init__ builds, without a fresh uuid (mitmrs's flow sync)."""
        c = cls.__new__(cls)
        c.__dict__.update(_CONN_DEFAULTS)
        c.__dict__.update(id=id, peername=peername, sockname=sockname, timestamp_start=timestamp_start,
                          certificate_list=[], alpn_offers=[], cipher_list=[], mitmcert=None,
                          proxy_mode=mode_specs.ProxyMode.parse(proxy_mode))
        return c

    def __repr__(self):
        return f"Client({self.peername[0]}:{self.peername[1]}, state={self.state.name.lower()})" if self.peername else "Client()"


class Server(Connection):
    def __init__(self, address=None, **kwargs):
        super().__init__()
        self.address = address
        self.timestamp_tcp_setup = None
        self.via = None
        for k, v in kwargs.items():
            setattr(self, k, v)

    @classmethod
    def _make(cls, id, address, via):
        """What __init__ builds, without a fresh uuid (mitmrs's flow sync)."""
        s = cls.__new__(cls)
        s.__dict__.update(_CONN_DEFAULTS)
        s.__dict__.update(id=id, certificate_list=[], alpn_offers=[], cipher_list=[], address=address,
                          timestamp_tcp_setup=None, via=via)
        return s

    def __repr__(self):
        if not self.address:
            return f"Server(<no address>, state={self.state.name.lower()})"
        h, p = self.address[0], self.address[1]
        addr = f"[{h}]:{p}" if ":" in str(h) else f"{h}:{p}"
        tls = f", alpn={self.alpn.decode(errors='replace')}" if self.alpn else (", tls" if self.tls else "")
        sock = getattr(self, "sockname", None)
        src = f", src_port={sock[1]}" if sock else ""
        return f"Server({addr}, state={self.state.name.lower()}{tls}{src})"
