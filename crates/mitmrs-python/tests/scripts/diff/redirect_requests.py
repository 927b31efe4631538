"""Redirect requests for one host to the local origin (like http-redirect-requests.py)."""
from mitmproxy import ctx, http


def load(loader):
    loader.add_option("origin_port", int, 0, "where the local origin listens")


def request(flow: http.HTTPFlow) -> None:
    if flow.request.pretty_host == "example.invalid":
        flow.request.host = "127.0.0.1"
        flow.request.port = ctx.options.origin_port
