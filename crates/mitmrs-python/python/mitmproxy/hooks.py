"""The names of mitmproxy's event hooks that mitmrs knows."""

all_hooks = {
    name: None
    for name in (
        "load", "configure", "running", "done", "update", "add_log",
        "client_connected", "client_disconnected", "server_connect",
        "server_connected", "server_disconnected", "server_connect_error",
        "next_layer", "http_connect", "http_connect_upstream", "http_connected",
        "http_connect_error", "requestheaders", "request", "responseheaders",
        "response", "error", "tls_clienthello", "tls_start_client",
        "tls_start_server", "tls_established_client", "tls_established_server",
        "tls_failed_client", "tls_failed_server", "websocket_start",
        "websocket_message", "websocket_end", "tcp_start", "tcp_message",
        "tcp_end", "tcp_error", "udp_start", "udp_message", "udp_end",
        "udp_error", "dns_request", "dns_response", "dns_error", "tick",
    )
}
