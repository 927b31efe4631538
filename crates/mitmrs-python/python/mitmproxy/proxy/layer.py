"""Layers: mitmrs decides layers in Rust; these classes name the choice for next_layer."""


class Layer:
    """A protocol layer. In mitmrs only its kind matters (see NextLayer.layer)."""

    _kind = None

    def __init__(self, context, *args, **kwargs):
        self.context = context

    def __repr__(self):
        return type(self).__name__


class NextLayer(Layer):
    """Data for `next_layer`. Set `layer` to choose the next layer, for example
    `layers.TCPLayer(nextlayer.context)` to relay the connection unchanged."""

    def __init__(self, context, data_client=b"", layer=None):
        super().__init__(context)
        self._data_client = data_client
        self.layer = layer
        self.events = []

    def data_client(self):
        """The data the client sent so far on this layer."""
        return self._data_client

    def data_server(self):
        return b""

    def __repr__(self):
        return f"NextLayer:{self.layer!r}"
