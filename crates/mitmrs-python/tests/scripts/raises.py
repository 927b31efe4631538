# A hook that raises: reported with a traceback, the flow goes on.


def request(flow):
    1 / 0
