"""The layers a next_layer hook may choose (mitmproxy.proxy.layers), by kind.
mitmrs implements the protocols in Rust: a layer object only names the choice."""
from mitmproxy.proxy.layer import Layer
from mitmproxy.proxy.layers import modes
from mitmproxy.proxy.layers.dns import DNSLayer
from mitmproxy.proxy.layers.http import HttpLayer
from mitmproxy.proxy.layers.quic import ClientQuicLayer, QuicStreamLayer, RawQuicLayer, ServerQuicLayer
from mitmproxy.proxy.layers.tcp import TCPLayer
from mitmproxy.proxy.layers.tls import ClientTLSLayer, ServerTLSLayer
from mitmproxy.proxy.layers.udp import UDPLayer
from mitmproxy.proxy.layers.websocket import WebsocketLayer


def _layer_for(kind, context):
    if kind == "tcp":
        return TCPLayer(context)
    if kind == "tls":
        return ClientTLSLayer(context)
    if kind == "http":
        return HttpLayer(context)
    return None


__all__ = ["modes", "DNSLayer", "HttpLayer", "QuicStreamLayer", "RawQuicLayer", "TCPLayer",
           "UDPLayer", "ClientQuicLayer", "ClientTLSLayer", "ServerQuicLayer", "ServerTLSLayer",
           "WebsocketLayer"]
