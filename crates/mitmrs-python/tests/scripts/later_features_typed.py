"""Imports every module mitmrs provides (stubs for later features included) and
defines a hook for every event with mitmproxy's type annotations. Checks made in
hooks log CHECK FAIL on a mismatch; results go into response headers."""
import collections.abc
import logging
import sys
import typing

import mitmproxy.addonmanager
import mitmproxy.connection
import mitmproxy.contentviews.grpc
import mitmproxy.dns
import mitmproxy.flow
import mitmproxy.flowfilter
import mitmproxy.http
import mitmproxy.io
import mitmproxy.log
import mitmproxy.proxy.context
import mitmproxy.proxy.layer
import mitmproxy.proxy.layers.http._http1
import mitmproxy.proxy.layers.modes
import mitmproxy.proxy.layers.quic
import mitmproxy.proxy.server_hooks
import mitmproxy.tcp
import mitmproxy.tls
import mitmproxy.types
import mitmproxy.udp
import mitmproxy.websocket
from mitmproxy import command, contentviews, ctx, flowfilter, io
from mitmproxy.addonmanager import Loader
from mitmproxy.addons import asgiapp
from mitmproxy.proxy import layers, server_hooks
from mitmproxy.proxy.layers import tls as tls_layers
from mitmproxy.script import concurrent

seen = set()


def check(cond, what):
    if not cond:
        logging.error(f"CHECK FAIL {what}")


class Swap(contentviews.View):
    name = "typedswap"

    def __call__(self, data, **metadata) -> contentviews.TViewResult:
        return "swapped", contentviews.format_text(data.swapcase())


class Pretty(contentviews.Contentview):
    def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
        return data.decode()


class Typed:
    def __init__(self):
        self.flt = None

    def load(self, loader: mitmproxy.addonmanager.Loader):
        seen.add("load")
        loader.add_option("typed_filter", str, "~m POST", "A filter")
        contentviews.add(Swap())
        contentviews.add(Pretty)
        check(contentviews.get("typedswap") is not None, "contentviews.get")
        check(len(sys.argv) > 1 and "-s" in sys.argv, f"sys.argv {sys.argv!r}")
        cfg = mitmproxy.contentviews.grpc.ViewConfig()
        cfg.parser_rules = [mitmproxy.contentviews.grpc.ProtoParser.ParserRuleRequest(
            name="r", filter="~u x", field_definitions=[
                mitmproxy.contentviews.grpc.ProtoParser.ParserFieldDefinition(
                    tag="1", intended_decoding=mitmproxy.contentviews.grpc.ProtoParser.DecodedTypes.double)])]
        check(mitmproxy.contentviews.grpc.ViewGrpcProtobuf(config=cfg).render_priority(b"") == 0, "grpc priority")

    def running(self):
        seen.add("running")
        logging.info("TYPED RUNNING")

    def configure(self, updated: set[str]):
        if "typed_filter" in updated:
            self.flt = flowfilter.parse(ctx.options.typed_filter)

    def done(self):
        contentviews.remove(Pretty)

    def client_connected(self, client: mitmproxy.connection.Client): ...
    def client_disconnected(self, client: mitmproxy.connection.Client): ...
    def server_connect(self, data: mitmproxy.proxy.server_hooks.ServerConnectionHookData): ...
    def server_connected(self, data: server_hooks.ServerConnectionHookData): ...
    def server_disconnected(self, data: server_hooks.ServerConnectionHookData): ...
    def server_connect_error(self, data: server_hooks.ServerConnectionHookData): ...
    def requestheaders(self, flow: mitmproxy.http.HTTPFlow): ...
    def http_connect(self, flow: mitmproxy.http.HTTPFlow): ...
    def http_connect_upstream(self, flow: mitmproxy.http.HTTPFlow): ...
    def http_connect_error(self, flow: mitmproxy.http.HTTPFlow): ...
    def error(self, flow: mitmproxy.http.HTTPFlow): ...
    def dns_request(self, flow: mitmproxy.dns.DNSFlow): ...
    def dns_response(self, flow: mitmproxy.dns.DNSFlow): ...
    def dns_error(self, flow: mitmproxy.dns.DNSFlow): ...
    def tcp_start(self, flow: mitmproxy.tcp.TCPFlow): ...
    def tcp_message(self, flow: mitmproxy.tcp.TCPFlow): ...
    def tcp_end(self, flow: mitmproxy.tcp.TCPFlow): ...
    def tcp_error(self, flow: mitmproxy.tcp.TCPFlow): ...
    def udp_start(self, flow: mitmproxy.udp.UDPFlow): ...
    def udp_message(self, flow: mitmproxy.udp.UDPFlow): ...
    def udp_end(self, flow: mitmproxy.udp.UDPFlow): ...
    def udp_error(self, flow: mitmproxy.udp.UDPFlow): ...
    def quic_start_client(self, data: mitmproxy.proxy.layers.quic.QuicTlsData): ...
    def quic_start_server(self, data: mitmproxy.proxy.layers.quic.QuicTlsData): ...
    def tls_clienthello(self, data: mitmproxy.tls.ClientHelloData): ...
    def tls_start_client(self, data: mitmproxy.tls.TlsData): ...
    def tls_start_server(self, data: mitmproxy.tls.TlsData): ...
    def tls_established_client(self, data: mitmproxy.tls.TlsData): ...
    def tls_established_server(self, data: mitmproxy.tls.TlsData): ...
    def tls_failed_client(self, data: mitmproxy.tls.TlsData): ...
    def tls_failed_server(self, data: mitmproxy.tls.TlsData): ...
    def websocket_start(self, flow: mitmproxy.http.HTTPFlow): ...
    def websocket_message(self, flow: mitmproxy.http.HTTPFlow): ...
    def websocket_end(self, flow: mitmproxy.http.HTTPFlow): ...
    def socks5_auth(self, data: mitmproxy.proxy.layers.modes.Socks5AuthData): ...
    def next_layer(self, data: mitmproxy.proxy.layer.NextLayer): ...
    def update(self, flows: collections.abc.Sequence[mitmproxy.flow.Flow]): ...
    def add_log(self, entry: mitmproxy.log.LogEntry): ...

    @concurrent
    def request(self, flow: mitmproxy.http.HTTPFlow):
        check(flow.websocket is None, "websocket None")

    @command.command("typed.paths")
    def paths(self, flows: typing.Sequence[mitmproxy.flow.Flow], path: mitmproxy.types.Path) -> None:
        pass

    def response(self, flow: mitmproxy.http.HTTPFlow):
        r = flow.response
        r.headers["x-filter-option"] = str(bool(flowfilter.match(self.flt, flow)))
        exprs = ["~u /typed", "~d 127.0.0.1 & ~s", "!~q", "~m get | ~m post", "~c 200 & !~c 404",
                 "~h x-probe", "~bq hello", "~bs origin", "~t text/plain", "(~m POST) & /typed",
                 "~e", "~tcp | ~dns | ~udp | ~websocket", "~marked", "\"typed\""]
        r.headers["x-filters"] = "".join("1" if flowfilter.match(e, flow) else "0" for e in exprs)
        for bad in ["", "~nope", "(~s", "~c abc"]:
            try:
                flowfilter.parse(bad)
                check(False, f"parse({bad!r}) should fail")
            except ValueError:
                pass
        try:
            io.FlowWriter(None).add(flow)
            check(False, "FlowWriter.add")
        except NotImplementedError as e:
            check("flow files" in str(e), f"FlowWriter message {e}")
        try:
            ctx.master.commands.call("replay.client", [flow.copy()])
            check(False, "replay.client")
        except NotImplementedError as e:
            check("replay" in str(e), f"replay message {e}")
        check("typed" in ctx.master.addons and "nothing" not in ctx.master.addons, "addons contains")
        check(mitmproxy.tcp.TCPMessage(True, b"x").from_client, "TCPMessage")
        m = mitmproxy.websocket.WebSocketMessage(mitmproxy.websocket.Opcode.TEXT, True, b"hi")
        m.drop()
        check(m.dropped and m.is_text and m.text == "hi", "WebSocketMessage")
        check(mitmproxy.dns.types.AAAA == 28 and mitmproxy.dns.response_codes.NXDOMAIN == 3, "dns codes")
        check(isinstance(layers.TCPLayer(None), mitmproxy.proxy.layer.Layer), "TCPLayer")
        check(tls_layers.ClientTLSLayer is layers.ClientTLSLayer, "tls layers")
        check(isinstance(asgiapp.WSGIApp(None, "h", 1), asgiapp.WSGIApp), "WSGIApp")
        check(issubclass(mitmproxy.proxy.layers.http._http1.Http1Server, mitmproxy.proxy.layers.http._http1.Http1Connection), "_http1")
        check(seen == {"load", "running"}, f"seen {seen}")
        r.headers["x-typed"] = "ok"


addons = [Typed()]
