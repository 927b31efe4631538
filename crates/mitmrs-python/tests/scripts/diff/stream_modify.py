"""Modify a streamed body chunk by chunk (like http-stream-modify.py), with a
generator as mitmproxy 7+ allows."""


def modify(data: bytes):
    yield data.replace(b"foo", b"bar")


def responseheaders(flow):
    flow.response.stream = modify
