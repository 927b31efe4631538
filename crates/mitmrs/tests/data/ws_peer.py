"""WebSocket peers for crates/mitmrs/tests/websocket.rs (Python `websockets`).

server: echoes every message; "close-me" makes it close with 1001. Prints its
        port on the first line, then serves until stdin closes.
client PORT PROXY [BIG]: talks to the server through the proxy and prints
        what came back, one line per exchange.
inject PORT PROXY: for tests/data/ws_inject.py: "a secret" (which the addon
        drops, injecting "ssssssh" back), then "close-me".
ticks PORT PROXY: for tests/data/ws_inject.py: prints the first three
        messages the addon injects, then closes.
scripted PORT PROXY: for tests/data/ws_addon.py: "drop-me" (which the addon
        drops, so nothing comes back), "hello" and a binary message (which it
        changes), then "close-me".
"""
import asyncio
import sys

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve


async def echo(ws):
    async for m in ws:
        if m == "close-me":
            await ws.close(1001, "going away")
            return
        await ws.send(m)


async def server():
    async with serve(echo, "127.0.0.1", 0, compression="deflate", max_size=None) as s:
        print(s.sockets[0].getsockname()[1], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def close_me(ws):
    """Asks the server to close (it answers 1001) and waits for the close."""
    await ws.send("close-me")
    try:
        await ws.recv()
    except Exception:
        pass


async def client(ws, big):
    await ws.send("hello")
    print("text", await ws.recv(), flush=True)
    await ws.send(b"\x00\x01bin")
    print("binary", await ws.recv(), flush=True)
    await ws.send(["frag1-", "frag2-", "frag3"])
    print("fragmented", await ws.recv(), flush=True)
    await (await ws.ping(b"pingdata"))
    print("pong", flush=True)
    if big:
        data = bytes(range(256)) * (big // 256)
        await ws.send(data)
        back = await ws.recv()
        print("big", len(back), back == data, flush=True)
    await close_me(ws)


async def scripted(ws):
    await ws.send("drop-me")
    await ws.send("hello")
    print("text", await ws.recv(), flush=True)
    await ws.send(b"\x00\x01bin")
    print("binary", await ws.recv(), flush=True)
    await close_me(ws)


async def inject(ws):
    await ws.send("a secret")
    print("got", await ws.recv(), flush=True)
    await close_me(ws)


async def ticks(ws):
    for _ in range(3):
        print(await ws.recv(), flush=True)


async def run(mode, port, proxy, big):
    path = {"client": "/chat?x=1"}.get(mode, "/" + mode)
    url = f"ws://127.0.0.1:{port}{path}"
    async with connect(url, proxy=proxy, max_size=None, open_timeout=20) as ws:
        if mode == "client":
            await client(ws, big)
        else:
            await {"scripted": scripted, "inject": inject, "ticks": ticks}[mode](ws)
    if mode != "ticks":
        print("closed", ws.close_code, ws.close_reason, flush=True)


if sys.argv[1] == "server":
    asyncio.run(server())
else:
    big = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    asyncio.run(run(sys.argv[1], sys.argv[2], sys.argv[3], big))
