"""Logging helpers with mitmproxy's names; records go to mitmrs's console log."""
import logging
import warnings

ALERT = logging.INFO + 1
logging.addLevelName(ALERT, "ALERT")

LogLevels = ["error", "warn", "info", "alert", "debug"]


class LogEntry:
    def __init__(self, msg, level):
        self.msg = msg
        self.level = level

    def __eq__(self, other):
        return isinstance(other, LogEntry) and self.__dict__ == other.__dict__

    def __repr__(self):
        return f"LogEntry({self.msg}, {self.level})"


def _deprecated(name):
    warnings.warn(
        f"ctx.log.{name} is deprecated, use Python's builtin `logging` module instead.",
        DeprecationWarning, stacklevel=3,
    )


class Log:
    """The deprecated ctx.log: forwards to Python's logging."""

    def debug(self, txt):
        _deprecated("debug")
        logging.getLogger().debug(txt)

    def info(self, txt):
        _deprecated("info")
        logging.getLogger().info(txt)

    def alert(self, txt):
        _deprecated("alert")
        logging.getLogger().log(ALERT, txt)

    def warn(self, txt):
        _deprecated("warn")
        logging.getLogger().warning(txt)

    def error(self, txt):
        _deprecated("error")
        logging.getLogger().error(txt)

    def __call__(self, text, level="info"):
        _deprecated("__call__")
        lvl = {"error": logging.ERROR, "warn": logging.WARNING, "alert": ALERT, "debug": logging.DEBUG}.get(level, logging.INFO)
        logging.getLogger().log(lvl, text)


def log_tier(level):
    return dict(error=logging.ERROR, warn=logging.WARNING, info=logging.INFO, alert=ALERT, debug=logging.DEBUG).get(level)


LOGGING_LEVELS_TO_LOGENTRY = {
    logging.ERROR: "error",
    logging.WARNING: "warn",
    logging.INFO: "info",
    ALERT: "alert",
    logging.DEBUG: "debug",
}
