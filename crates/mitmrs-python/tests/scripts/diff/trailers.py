"""Read and add HTTP trailers (like http-trailers.py). mitmdump 11 cannot read
HTTP/1 trailers from an origin, so the differential test runs it against one that
sends none."""
import logging

from mitmproxy import http


def response(flow: http.HTTPFlow):
    logging.info(f"HTTP trailers: {flow.response.trailers!r}")
    flow.response.headers["x-had-trailers"] = str(flow.response.trailers is not None)
    if flow.response.trailers:
        flow.response.trailers["x-my-response-trailer"] = "23"
