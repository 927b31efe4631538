from mitmproxy.script.concurrent import concurrent

__all__ = ["concurrent"]
