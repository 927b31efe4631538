"""An HTTP/2-over-TLS test origin (the `h2` package mitmproxy itself uses).

Usage: h2_origin.py CERT KEY. Prints its port, then serves until stdin closes.
Every request is answered with what the origin saw:
    h2 <method> <path> authority=<:authority> len=<body length> sum=<sum of body bytes>[ te=<te>]
except /bytes/N, which answers N bytes (i % 251), sent as the client's flow-control
windows allow, with a trailer `x-trailer: done`.
"""

import socket
import ssl
import sys
import threading

import h2.config
import h2.connection
import h2.events


def serve(sock):
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    requests = {}  # stream id -> (headers, body bytearray)
    pending = {}  # stream id -> [remaining bytes, trailers]
    while True:
        # Send whatever the windows allow.
        for sid in list(pending):
            data, trailers = pending[sid]
            while data:
                n = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size, len(data))
                if n <= 0:
                    break
                conn.send_data(sid, data[:n])
                data = data[n:]
            pending[sid][0] = data
            if not data:
                if trailers:
                    conn.send_headers(sid, trailers, end_stream=True)
                else:
                    conn.end_stream(sid)
                del pending[sid]
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
        try:
            chunk = sock.recv(65536)
        except (OSError, ssl.SSLError):
            return
        if not chunk:
            return
        for ev in conn.receive_data(chunk):
            if isinstance(ev, h2.events.RequestReceived):
                requests[ev.stream_id] = (dict(ev.headers), bytearray())
            elif isinstance(ev, h2.events.DataReceived):
                requests[ev.stream_id][1].extend(ev.data)
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                headers, body = requests.pop(ev.stream_id)
                path = headers[b":path"].decode()
                if path.startswith("/bytes/"):
                    n = int(path[len("/bytes/"):])
                    data = bytes(i % 251 for i in range(n))
                    conn.send_headers(ev.stream_id, [(":status", "200"), ("content-length", str(n))])
                    pending[ev.stream_id] = [data, [("x-trailer", "done")]]
                else:
                    text = "h2 %s %s authority=%s len=%d sum=%d%s\n" % (
                        headers[b":method"].decode(),
                        path,
                        headers.get(b":authority", b"-").decode(),
                        len(body),
                        sum(body),
                        " te=" + headers[b"te"].decode() if b"te" in headers else "",
                    )
                    conn.send_headers(
                        ev.stream_id,
                        [(":status", "200"), ("content-type", "text/plain"), ("content-length", str(len(text)))],
                    )
                    pending[ev.stream_id] = [text.encode(), None]
            elif isinstance(ev, h2.events.ConnectionTerminated):
                return


def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    ctx.set_alpn_protocols(["h2"])
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)

    def accept():
        while True:
            s, _ = listener.accept()
            try:
                t = ctx.wrap_socket(s, server_side=True)
            except (OSError, ssl.SSLError):
                continue
            threading.Thread(target=serve, args=(t,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    sys.stdin.read()


main()
