"""Flow files (mitmproxy.io). Reading and writing mitmproxy's flow file format
comes in a later version of mitmrs: the classes exist, using them raises
NotImplementedError."""
from mitmproxy._later import not_yet


class FlowWriter:
    def __init__(self, fo):
        self.fo = fo

    def add(self, f):
        raise not_yet("mitmproxy.io.FlowWriter.add", "writing flow files")


class FlowReader:
    def __init__(self, fo):
        self.fo = fo

    def stream(self):
        raise not_yet("mitmproxy.io.FlowReader.stream", "reading flow files")
        yield  # pragma: no cover


class FilteredFlowWriter:
    def __init__(self, fo, flt):
        self.fo = fo
        self.flt = flt

    def add(self, f):
        raise not_yet("mitmproxy.io.FilteredFlowWriter.add", "writing flow files")


def read_flows_from_paths(paths):
    raise not_yet("mitmproxy.io.read_flows_from_paths", "reading flow files")


__all__ = ["FlowWriter", "FlowReader", "FilteredFlowWriter", "read_flows_from_paths"]
