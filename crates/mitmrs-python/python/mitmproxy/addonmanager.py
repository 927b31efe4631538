"""The Loader that `load(loader)` hooks get (mitmrs's implementation)."""
import typing

from mitmproxy import _rs


def _typespec_name(typespec):
    if typespec is bool:
        return "bool"
    if typespec is str:
        return "str"
    if typespec is int:
        return "int"
    if typespec is float:
        return "float"
    origin = typing.get_origin(typespec)
    args = typing.get_args(typespec)
    if origin is typing.Union and len(args) == 2 and type(None) in args:
        inner = args[0] if args[1] is type(None) else args[1]
        if inner is str:
            return "optstr"
        if inner is int:
            return "optint"
    import collections.abc
    if origin in (collections.abc.Sequence, list, tuple) and args and args[0] is str:
        return "seq"
    raise TypeError(f"mitmrs does not support options of type {typespec!r} yet")


class Loader:
    def __init__(self, master=None):
        self.master = master

    def add_option(self, name, typespec, default, help, choices=None):
        kind = _typespec_name(typespec)
        if kind == "seq" and default is not None:
            default = list(default)
        _rs.option_add(name, kind, default, help, list(choices) if choices is not None else None)

    def add_command(self, path, func):
        from mitmproxy import ctx
        ctx.master.commands.add(path, func)
