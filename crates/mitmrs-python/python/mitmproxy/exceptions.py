"""mitmproxy's exception classes (mitmrs's implementation)."""


class MitmproxyException(Exception):
    pass


class FlowReadException(MitmproxyException):
    pass


class ControlException(MitmproxyException):
    pass


class CommandError(Exception):
    pass


class OptionsError(MitmproxyException):
    pass


class AddonManagerError(MitmproxyException):
    pass


class AddonHalt(MitmproxyException):
    pass


class TypesError(Exception):
    pass
