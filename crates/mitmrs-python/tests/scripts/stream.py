def responseheaders(flow):
    if flow.request.path == "/upper":
        flow.response.stream = lambda chunk: chunk.upper()
    elif flow.request.path == "/bad":
        flow.response.stream = lambda chunk: "not bytes"
