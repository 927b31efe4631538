"""Flow base class and flow errors (mitmrs's implementation of mitmproxy.flow)."""
import copy as _copy
import time
import uuid


class Error:
    """An error that happened on a flow (connection killed, server unreachable...)."""

    KILLED_MESSAGE = "Connection killed."

    def __init__(self, msg, timestamp=None):
        self.msg = msg
        self.timestamp = timestamp if timestamp is not None else time.time()

    def __str__(self):
        return self.msg

    def __repr__(self):
        return self.msg


class Flow:
    """A flow: a client connection, a server connection and messages."""

    type = "flow"

    def __init__(self, client_conn, server_conn, live=False):
        self.id = str(uuid.uuid4())
        self.client_conn = client_conn
        self.server_conn = server_conn
        self.live = live
        self.timestamp_created = time.time()
        self.error = None
        self.intercepted = False
        self._backup = None
        self.marked = ""
        self.is_replay = None
        self.metadata = {}
        self.comment = ""
        self._resume_handle = None

    @property
    def killable(self):
        return self.live and not (self.error and self.error.msg == Error.KILLED_MESSAGE)

    def kill(self):
        """Kill this flow: the connection is closed."""
        self.error = Error(Error.KILLED_MESSAGE)
        self.intercepted = False
        self.live = False

    def intercept(self):
        """Pause the flow after the current hook, until resume() is called."""
        if self.intercepted:
            return
        self.intercepted = True

    def resume(self):
        """Continue an intercepted flow."""
        if not self.intercepted:
            return
        self.intercepted = False
        if self._resume_handle is not None:
            self._resume_handle.resume()

    async def wait_for_resume(self):
        import asyncio
        while self.intercepted:
            await asyncio.sleep(0.05)

    def copy(self):
        f = _copy.copy(self)
        f.id = str(uuid.uuid4())
        f.live = False
        f._resume_handle = None
        f.metadata = _copy.deepcopy(self.metadata)
        for attr in ("request", "response"):
            v = getattr(self, attr, None)
            if v is not None:
                setattr(f, attr, v.copy())
        return f

    def modified(self):
        return False

    def backup(self, force=False):
        pass

    def revert(self):
        pass

    @property
    def timestamp_start(self):
        return self.timestamp_created
