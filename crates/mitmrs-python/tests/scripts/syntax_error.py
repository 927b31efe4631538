# A script with a syntax error on line 3.
def request(flow):
    return flow.request.path ==
