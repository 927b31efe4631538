import logging

ticks = 0


def start():
    logging.info("old start hook ran")


def tick():
    global ticks
    ticks += 1


def response(flow):
    flow.response.headers["x-ticks"] = str(ticks)
