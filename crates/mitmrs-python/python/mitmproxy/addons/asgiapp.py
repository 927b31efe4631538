"""Host a WSGI app inside the proxy (mitmproxy.addons.asgiapp.WSGIApp): requests for
`host`:`port` are answered by the app and never go to a server. ASGI apps
(ASGIApp) come in a later version of mitmrs."""
import io
import sys
import urllib.parse

from mitmproxy import http
from mitmproxy._later import not_yet


class ASGIApp:
    def __init__(self, asgi_app, host, port=None):
        raise not_yet("mitmproxy.addons.asgiapp.ASGIApp", "hosting ASGI apps")


class WSGIApp:
    """Serve requests for host:port (port None: any port) with a WSGI app."""

    def __init__(self, wsgi_app, host, port=None):
        self.wsgi_app = wsgi_app
        self.host = host
        self.port = port

    @property
    def name(self):
        return f"wsgiapp:{self.host}:{self.port}"

    def should_serve(self, flow):
        return bool(
            flow.request.pretty_host == self.host
            and (self.port is None or flow.request.port == self.port)
            and flow.live
            and not flow.error
            and not flow.response
        )

    def request(self, flow):
        if self.should_serve(flow):
            flow.response = self._serve(flow)

    def _environ(self, flow):
        req = flow.request
        path, _, query = req.path.partition("?")
        env = {
            "REQUEST_METHOD": req.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": urllib.parse.unquote(path, encoding="latin-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": req.pretty_host,
            "SERVER_PORT": str(req.port),
            "SERVER_PROTOCOL": req.http_version,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": req.scheme,
            "wsgi.input": io.BytesIO(req.content or b""),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        if flow.client_conn and flow.client_conn.peername:
            env["REMOTE_ADDR"] = str(flow.client_conn.peername[0])
        for k, v in req.headers.items():
            key = k.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                env["CONTENT_TYPE"] = v
            elif key == "CONTENT_LENGTH":
                env["CONTENT_LENGTH"] = v
            else:
                name = "HTTP_" + key
                env[name] = env[name] + "," + v if name in env else v
        return env

    def _serve(self, flow):
        state = {}
        body = []

        def start_response(status, headers, exc_info=None):
            if exc_info and state:
                raise exc_info[1].with_traceback(exc_info[2])
            state["status"] = int(status.split(" ", 1)[0])
            state["headers"] = headers
            return body.append

        try:
            it = self.wsgi_app(self._environ(flow), start_response)
            try:
                for chunk in it:
                    body.append(chunk)
            finally:
                if hasattr(it, "close"):
                    it.close()
        except Exception:
            import logging
            import traceback
            logging.error(f"Error in WSGI app:\n{traceback.format_exc()}")
            return http.Response.make(500, b"Error in WSGI app.", {"content-type": "text/plain"})
        headers = http.Headers([(k.encode("latin-1"), v.encode("latin-1")) for k, v in state["headers"]])
        return http.Response.make(state["status"], b"".join(body), headers)


__all__ = ["WSGIApp", "ASGIApp"]
