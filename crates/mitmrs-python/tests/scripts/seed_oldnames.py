"""0.x-era script: old event names, hooks taking (context, flow)."""
ticks = [0]


def start(context):
    context.log("seed start ran")


def clientconnect(context, root_layer):
    context.log("seed clientconnect ran")


def clientdisconnect(context, root_layer):
    context.log("seed clientdisconnect ran")


def serverconnect(context, server_conn):
    context.log(f"seed serverconnect ran {server_conn.address[0]}")


def serverdisconnect(context, server_conn):
    context.log("seed serverdisconnect ran")


def websockets_handshake(context, flow):
    context.log("never: no websocket flows here")


def tick(context):
    ticks[0] += 1


def log(context, entry):
    pass


def request(context, flow):
    context.log.info(f"seed request {flow.request.path}")
    flow.request.headers["x-seed"] = "1"


def response(context, flow):
    flow.response.headers["x-seed-ticks"] = str(ticks[0] > 0)
