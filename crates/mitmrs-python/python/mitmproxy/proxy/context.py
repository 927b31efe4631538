"""The connection context that connection-level hook data carries."""


class Context:
    """The client and server of one connection (mitmproxy.proxy.context.Context)."""

    def __init__(self, client, options=None, server=None):
        from mitmproxy import connection
        self.client = client
        self.server = server if server is not None else connection.Server(address=None)
        self.options = options
        self.layers = []

    def fork(self):
        c = Context(self.client, self.options, self.server)
        c.layers = list(self.layers)
        return c

    def __repr__(self):
        return f"Context(\n  {self.client!r},\n  {self.server!r},\n  layers=[{', '.join(map(repr, self.layers))}]\n)"
