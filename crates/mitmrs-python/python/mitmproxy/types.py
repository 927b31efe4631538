"""Command argument types (mitmproxy.types), for annotating @command.command functions."""
import typing


class Choice:
    def __init__(self, options_command):
        self.options_command = options_command

    def __instancecheck__(self, instance):  # pragma: no cover
        return isinstance(instance, str)


class Path(str):
    pass


class Cmd(str):
    pass


class CmdArgs(str):
    pass


class Unknown(str):
    pass


class Space(str):
    pass


class Marker(str):
    pass


class Data(typing.Sequence[typing.Sequence[typing.Union[str, bytes]]]):
    pass


class _BaseType:
    typ: typing.Type = object
    display: str = ""


class TypeManager:
    def __init__(self, *types):
        self.typemap = {}

    def get(self, t, default=None):
        return self.typemap.get(t, default)


CommandTypes = TypeManager()
