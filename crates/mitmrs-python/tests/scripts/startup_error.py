# Logs an error while starting up: like mitmdump (its errorcheck addon), mitmrs
# then stops with exit status 1.
import logging


def running():
    logging.error("database unreachable")
