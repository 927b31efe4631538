"""mitmproxy's built-in addons (mitmproxy.addons): mitmrs implements its built-in
features in Rust; of the Python modules only `asgiapp` exists (WSGIApp)."""
