import asyncio
import logging
import time

from mitmproxy.script import concurrent


@concurrent
def request(flow):
    if flow.request.path == "/slow":
        logging.info("slow request started")
        time.sleep(2)


async def response(flow):
    await asyncio.sleep(0.01)
    flow.response.headers["x-async"] = "done"
