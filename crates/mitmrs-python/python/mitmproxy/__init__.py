"""mitmproxy's addon API, as provided by mitmrs (built into the mitmrs binary)."""
