"""For tests/websocket.rs: a script that turns WebSocket interception off for
one connection by setting flow.websocket to None in `response` (as in
mitmproxy: the connection is then relayed as raw bytes)."""
import logging


def response(flow):
    if flow.websocket is not None:
        flow.websocket = None
        logging.info("websocket off")


def websocket_message(flow):
    logging.info("message hook ran")
