"""mitmrs's stand-in for mitmproxy.proxy: only the data objects that hooks receive."""
