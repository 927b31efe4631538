"""A plain WSGI app (no framework) served by mitmproxy.addons.asgiapp.WSGIApp."""
from mitmproxy.addons import asgiapp


def app(environ, start_response):
    body = (f"wsgi {environ['REQUEST_METHOD']} {environ['PATH_INFO']} q={environ['QUERY_STRING']} "
            f"host={environ['SERVER_NAME']}:{environ['SERVER_PORT']} "
            f"probe={environ.get('HTTP_X_PROBE')} body={environ['wsgi.input'].read().decode()}").encode()
    start_response("201 Created", [("Content-Type", "text/plain"), ("X-App", "yes")])
    return [body]


def broken(environ, start_response):
    raise RuntimeError("app failure")


addons = [asgiapp.WSGIApp(app, "wsgi.test", 80), asgiapp.WSGIApp(broken, "broken.test", 80)]
