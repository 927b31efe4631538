"""A mitmproxy addon using the WebSocket hooks, for tests/websocket.rs: it drops
"drop-me", rewrites "hello" and binary messages from the client, and logs what
the flow holds at each hook."""
import logging

from mitmproxy import http
from mitmproxy.websocket import Opcode


def websocket_start(flow: http.HTTPFlow):
    logging.info(f"ws start {flow.request.path} {flow.websocket!r}")


def websocket_message(flow: http.HTTPFlow):
    m = flow.websocket.messages[-1]
    if not m.from_client:
        return
    if m.is_text and m.text == "drop-me":
        m.drop()
    elif m.is_text and m.text == "hello":
        m.text = f"HELLO #{len(flow.websocket.messages)}"
    elif m.type == Opcode.BINARY:
        m.content = m.content + b"!"


def websocket_end(flow: http.HTTPFlow):
    ws = flow.websocket
    logging.info(
        f"ws end {ws.close_code} {ws.close_reason} by_client={ws.closed_by_client} "
        f"{[(m.from_client, m.content, m.dropped) for m in ws.messages]}"
    )
