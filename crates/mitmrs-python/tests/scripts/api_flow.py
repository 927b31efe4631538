"""Flow API: intercept/resume (from another hook and from a thread), kill, copy,
metadata, marked, comment, is_replay, error; commands; ctx.log; logging with ALERT
and the client address; strutils; shutdown."""
import logging
import threading

from mitmproxy import command, ctx, log
from mitmproxy.utils import strutils

held = {}


def check(name, got, want):
    if got != want:
        logging.error(f"CHECK FAIL {name}: got {got!r}, want {want!r}")


class FlowApi:
    @command.command("flowapi.greet")
    def greet(self, name: str) -> str:
        return f"hello {name}"

    def requestheaders(self, flow):
        flow.metadata["seen_requestheaders"] = 1

    def request(self, flow):
        p = flow.request.path
        check("metadata persists", flow.metadata.get("seen_requestheaders"), 1)
        check("is_replay", flow.is_replay, None)
        check("live", flow.live, True)
        if p == "/hold":
            flow.intercept()
            held["flow"] = flow
            logging.info("FLOW held")
        elif p == "/release":
            check("intercepted", held["flow"].intercepted, True)
            held["flow"].resume()
            logging.info("FLOW released from another hook")
        elif p == "/thread":
            flow.intercept()
            threading.Timer(0.2, flow.resume).start()
        elif p == "/kill":
            check("killable", flow.killable, True)
            flow.kill()
            check("killed error", flow.error.msg, "Connection killed.")
        elif p == "/copy":
            c = flow.copy()
            check("copy id differs", c.id != flow.id, True)
            c.request.headers["x-copy-only"] = "1"
            check("copy is separate", "x-copy-only" in flow.request.headers, False)
            flow.marked = ":star:"
            flow.comment = "a comment"
        elif p == "/cmd":
            flow.request.headers["x-cmd"] = ctx.master.commands.call("flowapi.greet", "proxy")
        elif p == "/log":
            ctx.log.info("CTXLOG info")
            ctx.log.warn("CTXLOG warn")
            ctx.log.error("CTXLOG error")
            logging.log(log.ALERT, "ALERTED", extra={"client": flow.client_conn.peername})
            flow.request.headers["x-escaped"] = strutils.bytes_to_escaped_str(b"a\x00\xff\n")
        elif p == "/shutdown":
            ctx.master.shutdown()

    def response(self, flow):
        flow.response.headers["x-marked"] = str(flow.marked)
        flow.response.headers["x-comment"] = flow.comment
        flow.response.headers["x-meta"] = str(flow.metadata.get("seen_requestheaders"))

    def error(self, flow):
        logging.info(f"ERROR HOOK {flow.error.msg[:40]}")

    def done(self):
        logging.info("DONE HOOK ran")


addons = [FlowApi()]
