"""Kill flows by path, mark the others (like filter-flows.py + shutdown.py ideas)."""
from mitmproxy import http


def request(flow: http.HTTPFlow) -> None:
    if flow.request.path.startswith("/kill"):
        flow.kill()
    else:
        flow.request.headers["x-filtered"] = "passed"


def response(flow: http.HTTPFlow) -> None:
    flow.response.headers["x-killable"] = str(flow.killable)
