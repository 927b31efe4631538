"""The @command.command decorator (mitmrs's implementation)."""
import functools


def command(name=None):
    def decorator(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            return function(*args, **kwargs)

        wrapper.command_name = name or function.__name__
        return wrapper

    return decorator


def argument(name, type):
    def decorator(f):
        return f

    return decorator
