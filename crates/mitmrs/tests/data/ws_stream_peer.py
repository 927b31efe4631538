"""Raw WebSocket peers for one big message in both directions at once, for
crates/mitmrs/tests/websocket.rs (plain asyncio, no library: `websockets`
reads a whole frame before it hands any of it over).

server: echoes each frame as its bytes arrive (unmasked, same header), so a
        big message comes back while it is still being sent. Prints its port,
        serves until stdin closes.
client PORT PROXY SIZE: sends one SIZE-byte binary message (one frame) through
        the proxy while reading the echo, checks every byte, prints
        "echoed SIZE ok". Gives up after 120 s (exit status 1).
"""
import asyncio
import base64
import hashlib
import re
import sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def unmask(data, mask, pos):
    """data XOR the mask, the mask starting at payload offset pos."""
    if mask == b"\0\0\0\0":
        return data
    k = pos % 4
    m = (mask[k:] + mask[:k]) * (len(data) // 4 + 1)
    n = len(data)
    return (int.from_bytes(data, "big") ^ int.from_bytes(m[:n], "big")).to_bytes(n, "big")


def length_field(n):
    if n < 126:
        return bytes([n])
    if n < 1 << 16:
        return bytes([126]) + n.to_bytes(2, "big")
    return bytes([127]) + n.to_bytes(8, "big")


async def read_header(reader):
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    mask = await reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
    return b0, n, mask


async def echo(reader, writer):
    try:
        await echo_frames(reader, writer)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the client went away
    finally:
        writer.close()


async def echo_frames(reader, writer):
    head = await reader.readuntil(b"\r\n\r\n")
    key = re.search(rb"(?i)\r\nsec-websocket-key:\s*(\S+)", head).group(1)
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    while True:
        b0, n, mask = await read_header(reader)
        payload_start = bytes([b0]) + length_field(n)
        writer.write(payload_start)
        pos = 0
        while pos < n:
            chunk = await reader.read(min(1 << 16, n - pos))
            if not chunk:
                return
            writer.write(unmask(chunk, mask, pos))
            pos += len(chunk)
            await writer.drain()
        if b0 & 0x0F == 8:
            await writer.drain()
            return


async def server():
    s = await asyncio.start_server(echo, "127.0.0.1", 0)
    print(s.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def client(port, proxy, size):
    host, pport = proxy.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(pport))
    writer.write(f"GET http://127.0.0.1:{port}/big HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                 .encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    block = bytes(range(256)) * 4096  # 1 MiB

    async def send():
        # One binary frame, masked with a zero key (so the bytes are as sent).
        writer.write(bytes([0x82]) + bytes([0x80 | 127]) + size.to_bytes(8, "big") + b"\0\0\0\0")
        sent = 0
        while sent < size:
            piece = block[: min(len(block), size - sent)]
            writer.write(piece)
            sent += len(piece)
            await writer.drain()

    async def receive():
        b0, n, _ = await read_header(reader)
        assert (b0, n) == (0x82, size), (b0, n)
        pos = 0
        while pos < n:
            chunk = await reader.read(min(1 << 20, n - pos))
            assert chunk, f"the echo ended at byte {pos} of {n}"
            at = pos % len(block)
            expect = (block[at:] + block)[: len(chunk)]
            assert chunk == expect, f"byte {pos}: the echo differs"
            pos += len(chunk)

    await asyncio.gather(send(), receive())
    writer.write(bytes([0x88, 0x82, 0, 0, 0, 0]) + (1000).to_bytes(2, "big"))
    await writer.drain()
    print("echoed", size, "ok", flush=True)
    writer.close()


if sys.argv[1] == "server":
    asyncio.run(server())
else:
    try:
        asyncio.run(asyncio.wait_for(client(sys.argv[2], sys.argv[3], int(sys.argv[4])), 120))
    except asyncio.TimeoutError:
        print("timed out: the message did not come back within 120 s", flush=True)
        sys.exit(1)
