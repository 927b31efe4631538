"""mitmproxy.utils (mitmrs)."""
