"""TLS hook data (mitmrs's implementation of mitmproxy.tls)."""
import dataclasses

from mitmproxy import connection
from mitmproxy.proxy import context as _context


class ClientHello:
    """The parts of a TLS ClientHello that mitmrs parses."""

    def __init__(self, sni=None, alpn_protocols=(), cipher_suites=(), extensions=()):
        self._sni = sni
        self._alpn = list(alpn_protocols)
        self.cipher_suites = list(cipher_suites)
        self.extensions = list(extensions)

    @property
    def sni(self):
        """The Server Name Indication, or None."""
        return self._sni

    @property
    def alpn_protocols(self):
        """The ALPN protocols the client offered, as bytes."""
        return list(self._alpn)

    def __repr__(self):
        return f"ClientHello(sni: {self.sni}, alpn_protocols: {self.alpn_protocols})"


@dataclasses.dataclass
class ClientHelloData:
    """Event data for `tls_clienthello` event hooks."""

    context: _context.Context
    client_hello: ClientHello
    ignore_connection: bool = False
    establish_server_tls_first: bool = False


@dataclasses.dataclass
class TlsData:
    """Event data for the `tls_established_*` and `tls_failed_*` hooks."""

    conn: connection.Connection
    context: _context.Context
    ssl_conn: object = None
    is_dtls: bool = False
