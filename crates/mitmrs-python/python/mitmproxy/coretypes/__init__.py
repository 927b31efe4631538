"""mitmproxy.coretypes (mitmrs)."""
