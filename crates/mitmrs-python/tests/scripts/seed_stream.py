"""Seed-era streaming: a generator function over the chunks, assigned to .stream."""


def modify(chunks):
    for chunk in chunks:
        yield chunk.replace(b"foo", b"bar")


def modify_tuples(chunks):
    for prefix, content, suffix in chunks:
        yield prefix, content.replace(b"foo", b"baz"), suffix


def responseheaders(flow):
    if flow.request.path.startswith("/gen"):
        flow.response.stream = modify
    elif flow.request.path.startswith("/tuples"):
        flow.response.stream = modify_tuples
