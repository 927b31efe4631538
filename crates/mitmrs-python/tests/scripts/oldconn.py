"""Pre-7 connection hook names and the old log hook."""
import logging

seen = []


def clientconnect(client):
    logging.info(f"OLD clientconnect {client.peername[0]}")


def clientdisconnect(client):
    logging.info("OLD clientdisconnect")


def serverconnect(server):
    logging.info(f"OLD serverconnect {server.address[0]}")


def serverdisconnect(server):
    logging.info(f"OLD serverdisconnect {server.address[0]}")


def log(entry):
    if entry.msg.startswith("PING"):
        # Logging from the log hook is not fed back to it.
        logging.warning(f"OLD log hook got {entry.msg!r} level={entry.level}")


def request(flow):
    logging.info("PING from request")
    logging.error("PING error level")
