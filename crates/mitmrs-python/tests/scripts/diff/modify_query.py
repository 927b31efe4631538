"""Modify the query string (like http-modify-query-string.py)."""
from mitmproxy import http


def request(flow: http.HTTPFlow) -> None:
    flow.request.query["mitmproxy"] = "rocks"
    if "drop" in flow.request.query:
        del flow.request.query["drop"]
