"""Connection, TLS and next_layer hooks with mitmproxy's data objects; changes flow back."""
import logging
import typing

from mitmproxy import ctx
from mitmproxy.proxy import layers


def note(msg):
    logging.info("HOOK " + msg)


class ConnHooks:
    def __init__(self):
        self.clients = 0

    def load(self, loader):
        loader.add_option("redirect_from", int, 0, "server_connect: connect to redirect_to instead of this port")
        loader.add_option("redirect_to", int, 0, "see redirect_from")
        loader.add_option("block_port", int, 0, "server_connect: refuse this port")
        loader.add_option("reject_client", int, 0, "client_connected: reject the n-th client")
        loader.add_option("tcp_port", int, 0, "next_layer: relay tunnels to this port as TCP")

    def client_connected(self, client):
        self.clients += 1
        client.number = self.clients
        note(f"client_connected {client.peername[0]} n={self.clients} sockname_port={client.sockname[1] > 0}")
        if self.clients == ctx.options.reject_client:
            client.error = "rejected by script"

    def client_disconnected(self, client):
        note(f"client_disconnected n={getattr(client, 'number', None)}")

    def server_connect(self, data):
        host, port = data.server.address
        note(f"server_connect {host}:{port} client={data.client.peername[0]}")
        if port == ctx.options.redirect_from:
            data.server.address = (host, ctx.options.redirect_to)
        if port == ctx.options.block_port:
            data.server.error = "blocked by script"

    def server_connected(self, data):
        note(f"server_connected {data.server.address[1]} peer={data.server.peername[1]}")

    def server_disconnected(self, data):
        note(f"server_disconnected {data.server.address[1]}")

    def server_connect_error(self, data):
        note(f"server_connect_error {data.server.error}")

    def next_layer(self, nextlayer):
        kind = type(nextlayer.layer).__name__
        server = nextlayer.context.server.address
        starts_tls = nextlayer.data_client()[:1] == b"\x16"
        note(f"next_layer {kind} starts_tls={starts_tls}")
        if server and server[1] == ctx.options.tcp_port:
            nextlayer.layer = layers.TCPLayer(nextlayer.context)

    def tls_clienthello(self, data):
        ch = data.client_hello
        note(f"tls_clienthello sni={ch.sni} alpn={ch.alpn_protocols}")
        if b"h2" not in ch.alpn_protocols:
            data.ignore_connection = True

    def tls_established_client(self, data):
        note(f"tls_established_client sni={data.conn.sni} version={data.conn.tls_version}")

    def tls_established_server(self, data):
        note(f"tls_established_server sni={data.conn.sni} alpn={data.conn.alpn} version={data.conn.tls_version}")

    def tls_failed_client(self, data):
        note(f"tls_failed_client error={data.conn.error}")

    def tls_failed_server(self, data):
        note(f"tls_failed_server error={data.conn.error}")

    def http_connect(self, flow):
        note(f"http_connect {flow.request.host}:{flow.request.port} method={flow.request.method}")

    def http_connected(self, flow):
        note(f"http_connected {flow.request.port} status={flow.response.status_code}")

    def http_connect_error(self, flow):
        note(f"http_connect_error {flow.error}")

    def request(self, flow):
        c, s = flow.client_conn, flow.server_conn
        note(f"request {flow.request.pretty_url} client_number={getattr(c, 'number', None)}")
        flow.request.headers["x-client-sni"] = str(c.sni)

    def response(self, flow):
        c, s = flow.client_conn, flow.server_conn
        h = flow.response.headers
        h["x-client-sni"] = str(c.sni)
        h["x-client-alpn"] = repr(c.alpn)
        h["x-client-tls"] = str(c.tls_version)
        h["x-client-peer"] = c.peername[0]
        h["x-client-number"] = str(getattr(c, "number", None))
        h["x-server-sni"] = str(s.sni)
        h["x-server-tls"] = str(s.tls_version)
        h["x-server-address"] = f"{s.address[0]}:{s.address[1]}"
        h["x-server-peer-port"] = str(s.peername[1])
        h["x-server-sockname"] = str(s.sockname is not None)
addons = [ConnHooks()]
