"""Content views (mitmproxy.contentviews). mitmrs does not render message bodies
with content views yet: views can be defined, added and removed (both the
mitmproxy 11 `View` API and the mitmproxy 12 `Contentview` API), but nothing
calls them. Rendering comes in a later version."""
import dataclasses
import typing

from mitmproxy._later import not_yet

TTextType = typing.Union[str, bytes]
TViewLine = typing.List[typing.Tuple[str, TTextType]]
TViewResult = typing.Tuple[str, typing.Iterator[TViewLine]]

KEY_MAX = 30


def format_text(text):
    """A generator of display lines for plain text."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for line in text.splitlines():
        yield [("text", line)]


def format_dict(d):
    for k, v in d.items():
        yield [("header", f"{k}: "), ("text", str(v))]


def format_pairs(items):
    for k, v in items:
        yield [("header", f"{k}: "), ("text", str(v))]


class View:
    """mitmproxy 11 content view base class."""

    name: str = ""

    def __call__(self, data, *, content_type=None, flow=None, http_message=None, **unknown_metadata):
        raise NotImplementedError()

    def render_priority(self, data, *, content_type=None, flow=None, http_message=None, **unknown_metadata):
        return 0

    def __lt__(self, other):
        return self.name.__lt__(other.name)


@dataclasses.dataclass
class Metadata:
    """What a mitmproxy 12 Contentview gets besides the data."""

    content_type: typing.Optional[str] = None
    flow: object = None
    http_message: object = None
    tcp_message: object = None
    udp_message: object = None
    websocket_message: object = None
    dns_message: object = None
    protobuf_definitions: object = None
    original_data: typing.Optional[bytes] = None


class SyntaxHighlight:
    CSS = "css"
    JAVASCRIPT = "javascript"
    XML = "xml"
    YAML = "yaml"
    NONE = "none"


class Contentview:
    """mitmproxy 12 content view base class."""

    @property
    def name(self):
        n = type(self).__name__
        return n[:-len("Contentview")] if n.endswith("Contentview") and n != "Contentview" else n

    @property
    def syntax_highlight(self):
        return "none"

    def prettify(self, data, metadata):
        raise NotImplementedError()

    def render_priority(self, data, metadata):
        return 0

    def __lt__(self, other):
        return self.name.__lt__(other.name)


class InteractiveContentview(Contentview):
    """A Contentview whose prettified output can be edited and re-encoded."""

    def reencode(self, prettified, metadata):
        raise NotImplementedError()


views = []


def add(view):
    """Register a content view (an instance, or a Contentview class)."""
    if isinstance(view, type):
        view = view()
    for v in views:
        if v.name == view.name:
            raise ValueError(f"Duplicate view: {view.name}")
    views.append(view)


def remove(view):
    if isinstance(view, type):
        for v in list(views):
            if type(v) is view:
                views.remove(v)
        return
    if view in views:
        views.remove(view)


def get(name):
    for v in views:
        if v.name.lower() == name.lower():
            return v
    return None


def get_content_view(viewmode, data, **metadata):
    raise not_yet("contentviews.get_content_view", "content view rendering")


def get_message_content_view(viewname, message, flow):
    raise not_yet("contentviews.get_message_content_view", "content view rendering")


def prettify_message(message, flow, view_name="auto"):
    raise not_yet("contentviews.prettify_message", "content view rendering")


__all__ = ["View", "Contentview", "InteractiveContentview", "Metadata", "SyntaxHighlight",
           "TViewResult", "TViewLine", "format_text", "format_dict", "format_pairs", "add",
           "remove", "get", "views"]
