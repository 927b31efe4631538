import logging
from mitmproxy import http


def request(flow: http.HTTPFlow) -> None:
    flow.request.headers["x-added-by-script"] = "yes"
    if flow.request.path == "/short":
        flow.response = http.Response.make(418, b"short-circuited", {"Content-Type": "text/plain"})
    elif flow.request.path == "/kill":
        flow.kill()


def response(flow: http.HTTPFlow) -> None:
    flow.response.headers["x-response-script"] = flow.request.headers.get("x-added-by-script", "missing")
    if flow.request.path == "/modify":
        flow.response.status_code = 201
        flow.response.text = flow.response.text.upper() + "|" + flow.request.method
    logging.info("script saw %s %s", flow.request.method, flow.request.pretty_url)
