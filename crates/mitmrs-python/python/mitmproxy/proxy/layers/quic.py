"""QUIC (mitmproxy.proxy.layers.quic): type stubs, mitmrs has no QUIC yet."""
import dataclasses

from mitmproxy.proxy.layer import Layer
from mitmproxy.tls import TlsData


@dataclasses.dataclass
class QuicTlsSettings:
    alpn_protocols: object = None
    ca_path: object = None
    ca_file: object = None
    cipher_suites: object = None
    certificate: object = None
    certificate_chain: object = dataclasses.field(default_factory=list)
    certificate_private_key: object = None
    verify_mode: object = None


@dataclasses.dataclass
class QuicTlsData(TlsData):
    settings: object = None


class QuicStreamLayer(Layer):
    pass


class RawQuicLayer(Layer):
    pass


class ClientQuicLayer(Layer):
    pass


class ServerQuicLayer(Layer):
    pass
