"""The gRPC/protobuf content view's configuration classes (mitmproxy.contentviews.grpc).
Rules can be built; decoding comes with content view rendering, later."""
import dataclasses
import enum
import typing

from mitmproxy._later import not_yet
from mitmproxy.contentviews import View


class ProtoParser:
    @dataclasses.dataclass
    class ParserRule:
        """A rule to apply field definitions to messages of flows matching `filter`."""

        name: str
        filter: str
        field_definitions: typing.List["ProtoParser.ParserFieldDefinition"]

    class ParserRuleResponse(ParserRule):
        """A ParserRule for responses only."""

    class ParserRuleRequest(ParserRule):
        """A ParserRule for requests only."""

    @dataclasses.dataclass
    class ParserFieldDefinition:
        tag: str
        tag_prefixes: typing.List[str] = dataclasses.field(default_factory=list)
        intended_decoding: typing.Optional["ProtoParser.DecodedTypes"] = None
        name: typing.Optional[str] = None
        as_packed: typing.Optional[bool] = False

    @dataclasses.dataclass
    class ParserOptions:
        exhaustive_decoding: bool = True
        include_wiretype: bool = False

    class DecodedTypes(enum.Enum):
        double = 0
        float = 1
        int32 = 2
        int64 = 3
        uint32 = 4
        uint64 = 5
        sint32 = 6
        sint64 = 7
        fixed32 = 8
        fixed64 = 9
        sfixed32 = 10
        sfixed64 = 11
        bool = 12
        enum = 13
        string = 14
        bytes = 15
        message = 16
        packed_repeated_field = 17
        unknown = 18


@dataclasses.dataclass
class ViewConfig:
    parser_options: ProtoParser.ParserOptions = dataclasses.field(default_factory=ProtoParser.ParserOptions)
    parser_rules: typing.List[ProtoParser.ParserRule] = dataclasses.field(default_factory=list)


class ViewGrpcProtobuf(View):
    """Human friendly view of protocol buffers (rendering: later)."""

    name = "gRPC/Protocol Buffer"

    def __init__(self, config=None):
        self.config = config if config is not None else ViewConfig()

    def __call__(self, data, *, content_type=None, flow=None, http_message=None, **unknown_metadata):
        raise not_yet("gRPC/protobuf content view", "content view rendering")

    def render_priority(self, data, *, content_type=None, flow=None, http_message=None, **unknown_metadata):
        return 0
