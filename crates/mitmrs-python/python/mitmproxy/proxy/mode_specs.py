"""Proxy mode specs (mitmrs's implementation of mitmproxy.proxy.mode_specs).

`client_conn.proxy_mode` is one of these, parsed from the `mode` option's text:
`MODE[:DATA][@[LISTEN_HOST:]LISTEN_PORT]`, e.g. `regular` or
`reverse:https://example.com@8081`. mitmrs itself runs regular and reverse
(http/https) modes; the other classes exist so that scripts checking
`isinstance(mode, Socks5Mode)` and the like import and run.
"""
from __future__ import annotations

import functools


def _parse_server_spec(spec, default_scheme):
    """`[scheme://]host[:port][/]`, as mitmproxy.net.server_spec.parse."""
    scheme, sep, rest = spec.partition("://")
    if not sep:
        scheme, rest = default_scheme, spec
    if scheme not in ("http", "https", "http3", "tls", "dtls", "tcp", "udp", "dns", "quic"):
        raise ValueError(f"Invalid server scheme: {scheme}")
    if rest.endswith("/"):
        rest = rest[:-1]
    if "/" in rest or not rest:
        raise ValueError(f"Invalid server specification: {spec}")
    if rest.startswith("["):
        host, _, port = rest[1:].partition("]")
        port = port[1:] if port.startswith(":") else None
    else:
        host, _, port = rest.partition(":")
        port = port or None
    if port is None:
        defaults = {"http": 80, "https": 443, "quic": 443, "http3": 443, "dns": 53}
        if scheme not in defaults:
            raise ValueError("Port specification missing.")
        port = defaults[scheme]
    else:
        port = int(port)
    if not 0 <= port <= 65535:
        raise ValueError(f"Invalid port: {port}")
    return scheme, (host, port)


class ProxyMode:
    """The base class of all proxy modes."""

    type_name = ""
    description = ""
    transport_protocol = "tcp"
    default_port = 8080
    _types = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.type_name:
            ProxyMode._types[cls.type_name] = cls

    def __init__(self, full_spec, data="", custom_listen_host=None, custom_listen_port=None):
        self.full_spec = full_spec
        self.data = data
        self.custom_listen_host = custom_listen_host
        self.custom_listen_port = custom_listen_port
        self.__post_init__()

    def __post_init__(self):
        if self.data:
            raise ValueError("mode takes no arguments")

    @classmethod
    @functools.cache
    def parse(cls, spec):
        head, _, listen_at = spec.rpartition("@")
        if not head:
            head, listen_at = listen_at, ""
        mode, _, data = head.partition(":")
        host = port = None
        if listen_at:
            if ":" in listen_at:
                host, _, port_str = listen_at.rpartition(":")
            else:
                port_str = listen_at
            try:
                port = int(port_str)
                if not 0 <= port <= 65535:
                    raise ValueError
            except ValueError:
                raise ValueError(f"invalid port: {port_str}") from None
        try:
            mode_cls = ProxyMode._types[mode.lower()]
        except KeyError:
            raise ValueError("unknown mode") from None
        if not issubclass(mode_cls, cls):
            raise ValueError(f"{mode!r} is not a spec for a {cls.type_name} mode")
        return mode_cls(full_spec=spec, data=data, custom_listen_host=host, custom_listen_port=port)

    def listen_host(self, default=None):
        if self.custom_listen_host is not None:
            return self.custom_listen_host
        return default if default is not None else ""

    def listen_port(self, default=None):
        if self.custom_listen_port is not None:
            return self.custom_listen_port
        return default if default is not None else self.default_port

    def __eq__(self, other):
        return type(self) is type(other) and self.full_spec == other.full_spec

    def __hash__(self):
        return hash((type(self), self.full_spec))

    def __repr__(self):
        return f"{type(self).__name__}(full_spec={self.full_spec!r})"

    @classmethod
    def from_state(cls, state):
        return ProxyMode.parse(state)

    def get_state(self):
        return self.full_spec


class RegularMode(ProxyMode):
    """A regular HTTP(S) proxy that is interfaced with `HTTP CONNECT` calls (or absolute-form HTTP requests)."""

    type_name = "regular"
    description = "HTTP(S) proxy"


class TransparentMode(ProxyMode):
    type_name = "transparent"
    description = "transparent proxy"


class UpstreamMode(ProxyMode):
    type_name = "upstream"
    description = "HTTP(S) proxy (upstream mode)"

    def __post_init__(self):
        scheme, self.address = _parse_server_spec(self.data, default_scheme="http")
        if scheme not in ("http", "https"):
            raise ValueError("invalid upstream proxy scheme")
        self.scheme = scheme


class ReverseMode(ProxyMode):
    """A reverse proxy. This acts like a normal server, but redirects all requests to a fixed target."""

    type_name = "reverse"
    description = "reverse proxy"

    def __post_init__(self):
        self.scheme, self.address = _parse_server_spec(self.data, default_scheme="https")
        if self.scheme in ("http3", "dtls", "udp", "quic"):
            self.transport_protocol = "udp"
        elif self.scheme in ("dns", "https"):
            self.transport_protocol = "both"
        self.description = f"{type(self).description} to {self.data}"

    @property
    def default_port(self):
        return 53 if self.scheme == "dns" else 8080


class Socks5Mode(ProxyMode):
    type_name = "socks5"
    description = "SOCKS v5 proxy"
    default_port = 1080


class DnsMode(ProxyMode):
    type_name = "dns"
    description = "DNS server"
    default_port = 53
    transport_protocol = "both"


class WireGuardMode(ProxyMode):
    type_name = "wireguard"
    description = "WireGuard server"
    default_port = 51820
    transport_protocol = "udp"

    def __post_init__(self):
        pass


class LocalMode(ProxyMode):
    type_name = "local"
    description = "Local redirector"

    def __post_init__(self):
        pass


class TunMode(ProxyMode):
    type_name = "tun"
    description = "TUN interface"

    def __post_init__(self):
        pass
