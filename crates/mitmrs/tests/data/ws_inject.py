"""Injection as in mitmproxy's examples/addons/websocket-inject-message.py, for
tests/websocket.rs: a message containing "secret" is dropped and "ssssssh" is
injected back to its sender; on /ticks, a task started from the (plain)
websocket_start hook injects "tick N" to the client until the connection ends."""
import asyncio

from mitmproxy import ctx, http


async def ticks(flow: http.HTTPFlow):
    n = 0
    while flow.websocket.timestamp_end is None:
        n += 1
        ctx.master.commands.call("inject.websocket", flow, True, f"tick {n}")
        await asyncio.sleep(0.05)  # the addon's pace, not a test's wait
    ctx.log.info(f"ticks stopped: closed by client={flow.websocket.closed_by_client}")


def websocket_start(flow: http.HTTPFlow):
    if flow.request.path == "/ticks":
        asyncio.create_task(ticks(flow))


def websocket_message(flow: http.HTTPFlow):
    assert flow.websocket is not None  # make type checker happy
    last_message = flow.websocket.messages[-1]
    if b"secret" in last_message.content:
        last_message.drop()
        ctx.master.commands.call("inject.websocket", flow, last_message.from_client, "ssssssh")


def websocket_end(flow: http.HTTPFlow):
    ws = flow.websocket
    ctx.log.info(f"ws end {[(m.from_client, m.content, m.dropped, m.injected) for m in ws.messages]}")
