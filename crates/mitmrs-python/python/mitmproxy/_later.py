"""Support for stub classes of features mitmrs does not have yet."""


def not_yet(what, feature):
    """The error raised when a script uses a feature that comes later."""
    return NotImplementedError(f"{what}: {feature} is not supported by mitmrs yet")
