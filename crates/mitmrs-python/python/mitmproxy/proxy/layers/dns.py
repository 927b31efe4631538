"""DNS layer (mitmproxy.proxy.layers.dns): type stub, mitmrs has no DNS mode yet."""
from mitmproxy.proxy.layer import Layer


class DNSLayer(Layer):
    pass
