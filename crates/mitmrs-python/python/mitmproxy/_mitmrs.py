"""mitmrs's script host: loads addon scripts, runs their hooks, keeps the Python
flow objects in step with the Rust ones. Private to mitmrs."""
import asyncio
import inspect
import logging
import os
import sys
import threading
import time
import traceback
import types
import warnings
import weakref

from mitmproxy import _rs, _later, ctx, exceptions, http, websocket
from mitmproxy import connection as _conn
from mitmproxy import flow as _flow
from mitmproxy import log as _log
from mitmproxy.addonmanager import Loader

# Old (0.x-4.x) hook names: new name -> old names that still work, with a warning.
OLD_NAMES = {
    "running": ["start"],
    "client_connected": ["clientconnect"],
    "client_disconnected": ["clientdisconnect"],
    "server_connect": ["serverconnect"],
    "server_disconnected": ["serverdisconnect"],
    "websocket_start": ["websockets_handshake"],
    "add_log": ["log"],
}
# Old names whose hook is still called under its own name, with what to use instead.
DEPRECATED = {
    "tick": "running (start an asyncio task there)",
    "add_log": "Python's builtin logging module",
}
HOOKS = (
    "load", "configure", "running", "done", "tick",
    "requestheaders", "request", "responseheaders", "response", "error",
    "http_connect", "http_connect_upstream", "http_connected", "http_connect_error",
    "client_connected", "client_disconnected", "server_connect", "server_connected",
    "server_disconnected", "server_connect_error", "next_layer", "socks5_auth",
    "tls_clienthello", "tls_established_client", "tls_established_server",
    "tls_failed_client", "tls_failed_server",
    "websocket_start", "websocket_message", "websocket_end",
)
_warned = set()
_HOST = None
_log_hook_state = threading.local()


def _old_args(used, args):
    """What a pre-7 hook got instead of the new hook's data object."""
    if used in ("serverconnect", "serverdisconnect") and args:
        return (args[0].server,)
    return args


# ---------------------------------------------------------------- logging

class _RustHandler(logging.Handler):
    def emit(self, record):
        try:
            msg = self.format(record)
            client = getattr(record, "client", None)
            if isinstance(client, tuple) and len(client) >= 2:
                h = client[0]
                client = f"[{h}]:{client[1]}" if ":" in str(h) else f"{h}:{client[1]}"
            elif client is not None:
                client = str(client)
            _rs.log(record.levelno, msg, client)
        except Exception:
            self.handleError(record)
        host = _HOST
        if host is not None and host.log_hooks and not getattr(_log_hook_state, "active", False):
            level = _log.LOGGING_LEVELS_TO_LOGENTRY.get(record.levelno, "error")
            entry = _log.LogEntry(record.getMessage(), level)
            try:
                host.loop.call_soon_threadsafe(host.dispatch_log, entry)
            except RuntimeError:
                pass


def _install_logging():
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(_RustHandler())
    root.setLevel(logging.DEBUG)
    logging.captureWarnings(True)


# ---------------------------------------------------------------- ctx

class _Options:
    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return _rs.option_get(name)
        except KeyError:
            raise AttributeError(f"No such option: {name}") from None

    def __setattr__(self, name, value):
        try:
            _rs.option_set(name, value)
        except KeyError:
            raise AttributeError(f"No such option: {name}") from None
        except ValueError as e:
            raise exceptions.OptionsError(str(e)) from None

    def __contains__(self, name):
        return name in _rs.option_names()

    def keys(self):
        return _rs.option_names()

    def update(self, **kwargs):
        for k, v in kwargs.items():
            setattr(self, k, v)

    def set(self, *specs):
        for spec in specs:
            _rs.option_parse_set(spec)


def _inject_websocket(flow, to_client, message, is_text=True):
    """mitmproxy's `inject.websocket` command: the message goes into the live
    WebSocket as if the other peer had sent it (websocket_message runs for it)."""
    if not isinstance(flow, http.HTTPFlow) or flow.websocket is None:
        logging.warning("Cannot inject WebSocket messages into non-WebSocket flows.")
    if isinstance(message, str):
        message = message.encode()
    err = _rs.inject_websocket(flow.id, bool(to_client), bytes(message), bool(is_text))
    if err:
        logging.warning(err)


# mitmproxy's built-in commands that mitmrs implements
_BUILTIN_COMMANDS = {
    "inject.websocket": _inject_websocket,
}


class _Loop(asyncio.SelectorEventLoop):
    """The asyncio loop of the scripts. Plain hooks run on other threads, where
    this loop is the running loop too (as in mitmproxy, whose hooks all run on
    its loop), so `asyncio.create_task` in a plain hook works: call_soon from
    another thread goes through call_soon_threadsafe, which wakes the loop."""

    def call_soon(self, callback, *args, context=None):
        tid = self._thread_id
        if tid is not None and tid != threading.get_ident():
            return self.call_soon_threadsafe(callback, *args, context=context)
        return super().call_soon(callback, *args, context=context)


_get_running_loop = asyncio.events._get_running_loop
_set_running_loop = asyncio.events._set_running_loop


class _Commands:
    def __init__(self, host):
        self._host = host
        self._extra = {}

    def add(self, path, func):
        self._extra[path] = func

    def _find(self, name):
        if name in self._extra:
            return self._extra[name]
        for _, addon in self._host.all_addons():
            for attr in dir(addon):
                try:
                    f = getattr(addon, attr)
                except Exception:
                    continue
                if getattr(f, "command_name", None) == name:
                    return f
        if name in _BUILTIN_COMMANDS:
            return _BUILTIN_COMMANDS[name]
        if name in _LATER_COMMANDS:
            raise _later.not_yet(f"command {name!r}", _LATER_COMMANDS[name])
        raise exceptions.CommandError(f"Unknown command: {name}")

    def call(self, name, *args):
        return self._find(name)(*args)

    def call_strings(self, name, args):
        return self._find(name)(*args)

    def execute(self, cmdstr):
        import shlex
        parts = shlex.split(cmdstr)
        return self.call(parts[0], *parts[1:])


# built-in commands of mitmproxy that need features mitmrs does not have yet
_LATER_COMMANDS = {
    "replay.client": "client replay",
    "replay.client.file": "client replay",
    "replay.server": "server replay",
    "replay.server.file": "server replay",
    "save.file": "writing flow files",
    "inject.tcp": "TCP flows",
    "inject.udp": "UDP flows",
}


class _Addons:
    def __init__(self, host):
        self._host = host

    def __contains__(self, name):
        return self.get(name) is not None

    def get(self, name):
        for _, a in self._host.all_addons():
            n = getattr(a, "name", None) or type(a).__name__.lower()
            if n == name.lower():
                return a
        return None


class _Master:
    def __init__(self, host):
        self.options = ctx.options
        self.commands = _Commands(host)
        self.addons = _Addons(host)
        self.event_loop = host.loop

    def shutdown(self):
        _rs.shutdown()


class _OldContext:
    """What 0.x hooks got as their first argument."""

    def __init__(self):
        self.log = _log.Log()

    def kill_flow(self, f):
        f.kill()


# ---------------------------------------------------------------- scripts

class Script:
    def __init__(self, path):
        self.path = os.path.abspath(os.path.expanduser(path))
        self.ns = None
        self.mtime = None
        self.loaded = False

    def execute(self):
        """Reads and runs the script; exceptions propagate."""
        self.mtime = os.stat(self.path).st_mtime
        with open(self.path, "rb") as f:
            src = f.read()
        name = os.path.splitext(os.path.basename(self.path))[0]
        mod = types.ModuleType(name)
        mod.__file__ = self.path
        sys.modules.pop(name, None)
        d = os.path.dirname(self.path)
        sys.path.insert(0, d)
        try:
            code = compile(src, self.path, "exec")
            sys.modules[name] = mod
            exec(code, mod.__dict__)
        finally:
            if sys.path and sys.path[0] == d:
                sys.path.pop(0)
        self.ns = mod

    def addons(self):
        ns = self.ns
        if ns is None:
            return []
        # (a module's __dict__ first: getattr of a missing module attribute is slow)
        if "__getattr__" not in ns.__dict__ and not ns.__dict__.get("addons"):
            return [ns]
        out = []

        def walk(a):
            out.append(a)
            for c in getattr(a, "addons", None) or []:
                walk(c)

        walk(ns)
        return out


def _user_tb(exc):
    """The traceback without mitmrs's own frames at the top."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith("<mitmrs>"):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


class Host:
    def __init__(self, paths):
        _install_logging()
        self.loop = _Loop()
        t = threading.Thread(target=self.loop.run_forever, name="mitmrs-asyncio", daemon=True)
        t.start()
        ctx.options = _Options()
        ctx.log = _log.Log()
        ctx.master = _Master(self)
        self.scripts = [Script(p) for p in paths]
        self.lock = threading.RLock()
        self.flows = {}
        self.log_hooks = False
        global _HOST
        _HOST = self
        for s in self.scripts:
            if not os.path.exists(s.path):
                raise FileNotFoundError(f"No such script: {s.path}")
            s.execute()
        self.publish_hooks()

    # -- hooks bookkeeping
    def all_addons(self):
        for s in self.scripts:
            for a in s.addons():
                yield s, a

    def _lookup(self, addon, name):
        f = getattr(addon, name, None)
        if f is not None and callable(f):
            return f, name
        for old in OLD_NAMES.get(name, ()):
            f = getattr(addon, old, None)
            if f is not None and callable(f):
                return f, old
        return None, None

    def defined_hooks(self):
        names = set()
        for _, a in self.all_addons():
            for h in HOOKS:
                if self._lookup(a, h)[0] is not None:
                    names.add(h)
        if "client_connected" in names:
            # to drop the client object kept since client_connected
            names.add("client_disconnected")
        if names & {"websocket_start", "websocket_message"}:
            # so the script's flow learns that its WebSocket ended
            # (flow.websocket.timestamp_end, close_code), as in mitmproxy
            names.add("websocket_end")
        return sorted(names)

    def publish_hooks(self):
        self.warn_old_names()
        self.log_hooks = any(self._lookup(a, "add_log")[0] is not None for _, a in self.all_addons())
        _rs.set_hooks(self.defined_hooks())

    def warn_old_names(self):
        """One warning per script and old hook name, when the script loads."""
        for s, a in self.all_addons():
            for new, olds in OLD_NAMES.items():
                for old in olds:
                    f = getattr(a, old, None)
                    if f is not None and callable(f) and getattr(a, new, None) is None:
                        self._warn_once(s, old, f"{s.path}: the '{old}' hook is deprecated, use '{new}' instead.")
            for old, new in DEPRECATED.items():
                f = getattr(a, old, None)
                if f is not None and callable(f):
                    self._warn_once(s, old, f"{s.path}: the '{old}' hook is deprecated, use {new} instead.")

    @staticmethod
    def _warn_once(script, name, msg):
        if (script.path, name) not in _warned:
            _warned.add((script.path, name))
            logging.warning(msg)

    def dispatch_log(self, entry):
        """Runs the add_log (old name: log) hooks, on the asyncio thread; records they
        log themselves are not fed back to them."""
        _log_hook_state.active = True
        try:
            self.invoke("add_log", entry)
        finally:
            _log_hook_state.active = False

    # -- calling
    def _await(self, aw):
        fut = asyncio.run_coroutine_threadsafe(_as_coro(aw), self.loop)
        return fut.result()

    def _call_one(self, script, addon, name, args, wait=True):
        """Calls one addon's hook. An awaitable it returns is awaited on the asyncio
        loop (wait=True: this thread blocks until it is done) or returned (wait=False)."""
        f, used = self._lookup(addon, name)
        if f is None:
            return None
        if _get_running_loop() is not self.loop:
            _set_running_loop(self.loop)
        call_args = args
        if used != name:
            self._warn_once(script, used, f"{script.path}: the '{used}' hook is deprecated, use '{name}' instead.")
            call_args = args = _old_args(used, args)
        if _n_positional(f) == len(args) + 1:
            # a 0.x hook that takes (context, ...)
            call_args = (_OldContext(),) + tuple(args)
        try:
            r = f(*call_args)
            if r is not None and inspect.isawaitable(r):
                if not wait:
                    return _guarded(r)
                self._await(r)
        except exceptions.OptionsError:
            raise
        except exceptions.AddonHalt:
            raise
        except Exception as e:
            logging.error(f"Addon error: {_user_tb(e)}".rstrip())
        return None

    def invoke(self, name, *args, scripts=None):
        for s in (scripts if scripts is not None else self.scripts):
            for a in s.addons():
                try:
                    self._call_one(s, a, name, args)
                except exceptions.AddonHalt:
                    return

    def _run(self, name, args, finish, reply):
        """Runs a hook of every script without blocking on async hooks: plain hooks run
        here; from the first hook that returns an awaitable (`async def`,
        `@concurrent`) on, the rest runs on the asyncio loop. Returns finish()'s result
        when everything ran here, else None, and then reply(finish()) (or
        reply.fail(traceback)) is called from the asyncio thread once all ran."""
        for s in self.scripts:
            addons = s.addons()
            for i, a in enumerate(addons):
                try:
                    aw = self._call_one(s, a, name, args, wait=False)
                except exceptions.AddonHalt:
                    return finish()
                if aw is not None:
                    rest = [(s, x) for x in addons[i + 1:]]
                    after = False
                    for s2 in self.scripts:
                        if after:
                            rest.extend((s2, x) for x in s2.addons())
                        elif s2 is s:
                            after = True
                    asyncio.run_coroutine_threadsafe(self._run_async(aw, rest, name, args, finish, reply), self.loop)
                    return None
        return finish()

    async def _run_async(self, aw, rest, name, args, finish, reply):
        try:
            halted = await aw
            for s, a in rest:
                if halted:
                    break
                try:
                    aw = self._call_one(s, a, name, args, wait=False)
                except exceptions.AddonHalt:
                    break
                if aw is not None:
                    halted = await aw
            out = finish()
        except BaseException:
            reply.fail(traceback.format_exc().rstrip())
            return
        reply(out)

    # -- lifecycle
    def load(self, scripts=None):
        for s in (scripts if scripts is not None else self.scripts):
            for a in s.addons():
                self._call_one(s, a, "load", (Loader(ctx.master),))
            s.loaded = True

    def configure(self, updated, scripts=None):
        try:
            self.invoke("configure", set(updated), scripts=scripts)
        except exceptions.OptionsError as e:
            return str(e)
        return None

    def running(self, scripts=None):
        self.invoke("running", scripts=scripts)

    def done(self, scripts=None):
        self.invoke("done", scripts=scripts)

    def tick(self):
        self.invoke("tick")

    # -- hot reload: called about every 0.5 s
    def check_reload(self):
        for s in self.scripts:
            try:
                m = os.stat(s.path).st_mtime
            except OSError:
                continue
            if m == s.mtime:
                continue
            logging.info(f"Reloading script {s.path}")
            if s.ns is not None:
                self.invoke("done", scripts=[s])
            s.ns = None
            try:
                s.execute()
            except Exception as e:
                s.ns = None
                s.mtime = m
                logging.error(f"Error loading script {s.path}, continuing without it:\n{_user_tb(e)}".rstrip())
                self.publish_hooks()
                continue
            self.load(scripts=[s])
            err = self.configure(_rs.option_names(), scripts=[s])
            if err:
                logging.error(f"{s.path}: {err}")
            self.running(scripts=[s])
            self.publish_hooks()

    # -- connections
    def conn_hook(self, name, d, reply):
        """Runs a connection-level hook with mitmproxy's data object; returns (or
        passes to reply, see _run) what the scripts changed, for the Rust side."""
        from mitmproxy.proxy import context as _context
        from mitmproxy.proxy import layer as _layer
        from mitmproxy.proxy import layers as _layers
        from mitmproxy.proxy import server_hooks
        from mitmproxy import tls as _tls
        client = _client(d["client"])
        if name == "client_connected":
            _live_clients[client.id] = client
            return self._run(name, (client,), lambda: {"client_error": client.error}, reply)
        if name == "client_disconnected":
            _live_clients.pop(client.id, None)
            return self._run(name, (client,), dict, reply)
        if name == "socks5_auth":
            from mitmproxy.proxy.layers import modes as _modes
            data = _modes.Socks5AuthData(client, d["username"], d["password"], d["valid"])
            return self._run(name, (data,), lambda: {"valid": bool(data.valid)}, reply)
        server = _server(d["server"])
        if name.startswith("server_"):
            if name == "server_connect":
                server.error = None
            data = server_hooks.ServerConnectionHookData(server=server, client=client)
            if name != "server_connect":
                return self._run(name, (data,), dict, reply)

            def finish():
                addr = server.address
                if addr is not None:
                    addr = (str(addr[0]), int(addr[1]))
                return {"server_address": addr, "server_error": server.error}
            return self._run(name, (data,), finish, reply)
        context = _context.Context(client, ctx.options, server)
        if name == "next_layer":
            before = _layers._layer_for(d["layer"], context)
            nl = _layer.NextLayer(context, d["data_client"], before)

            def finish():
                if nl.layer is before:
                    return {"layer": d["layer"]}
                return {"layer": getattr(nl.layer, "_kind", None)}
            return self._run(name, (nl,), finish, reply)
        if name == "tls_clienthello":
            ch = _tls.ClientHello(d["sni"], d["alpn_protocols"])
            data = _tls.ClientHelloData(context=context, client_hello=ch,
                                        ignore_connection=d["ignore_connection"],
                                        establish_server_tls_first=d["establish_server_tls_first"])
            return self._run(name, (data,), lambda: {
                "ignore_connection": bool(data.ignore_connection),
                "establish_server_tls_first": bool(data.establish_server_tls_first)}, reply)
        # tls_established_* / tls_failed_*
        conn = client if d["side"] == "client" else server
        if d["error"] is not None:
            conn.error = d["error"]
        return self._run(name, (_tls.TlsData(conn=conn, context=context),), dict, reply)

    # -- flows
    def flow_hook(self, name, pyflow, state, reply):
        """Runs a flow hook: returns (flow, changes) or None, see _run and flow_out."""
        f, orig = flow_in(pyflow, state)
        return self._run(name, (f,), lambda: (f, flow_out(f, orig)), reply)


async def _guarded(aw):
    """Awaits a hook's awaitable as _call_one runs a plain hook; True if it raised
    AddonHalt (no further addons get the hook)."""
    try:
        await aw
    except exceptions.AddonHalt:
        return True
    except Exception as e:
        logging.error(f"Addon error: {_user_tb(e)}".rstrip())
    return False


async def _as_coro(aw):
    return await aw


# function -> how many positional parameters it takes (cleared when it grows big;
# functions are module-level, so it holds the hooks of the loaded scripts)
_n_pos_cache = {}


def _n_positional(f):
    """How many positional parameters a plain function takes (-1 for other
    callables: bound methods, builtins), cached per function."""
    if not inspect.isfunction(f):
        return -1
    n = _n_pos_cache.get(f)
    if n is not None:
        return n
    try:
        ps = inspect.signature(f).parameters.values()
        n = sum(1 for p in ps if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    except (TypeError, ValueError):
        n = -1
    if len(_n_pos_cache) > 10000:
        _n_pos_cache.clear()
    _n_pos_cache[f] = n
    return n


# ---------------------------------------------------------------- flow sync
#
# The Rust side passes flat tuples (see crates/mitmrs-python/src/sync.rs, which
# builds them in this order) and gets back only what a hook changed: Ellipsis
# stands for "unchanged". Headers are tuples of (bytes, bytes) tuples, used as the
# Headers' fields as they are: a hook that changes headers makes a new tuple, so
# `fields is original` tells whether they changed.

# client: id peername sockname timestamp_start timestamp_end timestamp_tls_setup sni
#         alpn alpn_offers tls_version cipher tls error open proxy_mode
# server: id address peername sockname timestamp_start timestamp_tcp_setup
#         timestamp_tls_setup timestamp_end sni alpn alpn_offers tls_version cipher
#         via tls error open
# request: host port method scheme authority path http_version headers content
#          trailers timestamp_start timestamp_end
# response: http_version status_code reason headers content trailers timestamp_start
#           timestamp_end
# flow: id client server request response error marked comment is_replay live
#       intercepted timestamp_created metadata resume_handle websocket
#       (client, server, request and response are callables that build the tuple
#       on first call and return the same one after; the response None if none)
# websocket: None, or closed_by_client close_code close_reason timestamp_end
#            history_length new_messages (the messages after those the Python
#            flow has; each type from_client content timestamp dropped injected)

_Headers = http.Headers
_from_fields = http.Headers._from_fields
_OPEN = _conn.ConnectionState.OPEN
_CLOSED = _conn.ConnectionState.CLOSED
_KILLED = _flow.Error.KILLED_MESSAGE


def _headers(fields):
    return _from_fields(fields)


# The Python connection objects, by id, while anything refers to them: hooks about
# the same connection see the same object (attributes a script sets stay).
_clients = weakref.WeakValueDictionary()
_servers = weakref.WeakValueDictionary()
# Clients between client_connected and client_disconnected (asked for together).
_live_clients = {}


def _conn_update(c, ts_start, ts_end, ts_tls, sni, alpn, alpn_offers, tls_version, cipher, tls, error, open_):
    d = c.__dict__
    d["timestamp_start"] = ts_start
    d["timestamp_end"] = ts_end
    d["timestamp_tls_setup"] = ts_tls
    d["sni"] = sni
    d["alpn"] = alpn
    d["alpn_offers"] = list(alpn_offers)
    d["tls_version"] = tls_version
    d["cipher"] = cipher
    d["tls"] = tls
    if error is not None:
        d["error"] = error
    d["state"] = _OPEN if open_ else _CLOSED


def _client(t):
    c = _clients.get(t[0])
    if c is None:
        c = _conn.Client._make(t[0], t[1], t[2], t[3], t[14])
        _clients[c.id] = c
    elif c.__dict__.get("_mitmrs_state") == t:
        return c
    _conn_update(c, t[3], t[4], t[5], t[6], t[7], t[8], t[9], t[10], t[11], t[12], t[13])
    c.__dict__["_mitmrs_state"] = t
    return c


def _server(t):
    s = _servers.get(t[0])
    if s is None:
        s = _conn.Server._make(t[0], t[1], t[13])
        _servers[s.id] = s
    elif s.__dict__.get("_mitmrs_state") == t:
        return s
    elif t[1] is not None:
        s.address = t[1]
    d = s.__dict__
    d["peername"] = t[2]
    d["sockname"] = t[3]
    d["timestamp_tcp_setup"] = t[5]
    _conn_update(s, t[4], t[7], t[6], t[8], t[9], t[10], t[11], t[12], t[14], t[15], t[16])
    d["_mitmrs_state"] = t
    return s


def _req_in(r, d):
    tr = d[9]
    if r is None:
        return http.Request._make(d[0], d[1], d[2], d[3], d[4], d[5], d[6], _from_fields(d[7]), d[8],
                                  _from_fields(tr) if tr is not None else None, d[10], d[11])
    x = r.__dict__
    x["_host"] = d[0]
    x["_port"] = d[1]
    x["method"] = d[2]
    x["scheme"] = d[3]
    x["authority"] = d[4]
    x["path"] = d[5]
    x["http_version"] = d[6]
    x["timestamp_start"] = d[10]
    x["timestamp_end"] = d[11]
    r.headers = _from_fields(d[7])
    r.raw_content = d[8]
    r.trailers = _from_fields(tr) if tr is not None else None
    return r


def _resp_in(r, d):
    tr = d[5]
    if r is None:
        return http.Response._make(d[0], d[1], d[2], _from_fields(d[3]), d[4],
                                   _from_fields(tr) if tr is not None else None, d[6], d[7])
    x = r.__dict__
    x["http_version"] = d[0]
    x["status_code"] = d[1]
    x["reason"] = d[2]
    x["timestamp_start"] = d[6]
    x["timestamp_end"] = d[7]
    r.headers = _from_fields(d[3])
    r.raw_content = d[4]
    r.trailers = _from_fields(tr) if tr is not None else None
    return r


_UNSET = object()


def _build(f, name):
    """Builds a flow attribute from the Rust state on first use (http._Synced)."""
    d = f.__dict__
    st = d["_mitmrs_st"]
    if name == "request":
        v = _req_in(None, st[3]())
        d["_mitmrs_orig"][0] = v
    elif name == "response":
        v = _resp_in(None, st[4]()) if st[4] is not None else None
        d["_mitmrs_orig"][1] = v
    elif name == "client_conn":
        v = _client(st[1]())
    elif name == "server_conn":
        v = _server(st[2]())
    else:
        raise AttributeError(name)
    return v


def flow_in(f, st):
    """Brings the Python flow (None: makes one) in step with the Rust state; returns
    it and what flow_out compares with. Request, response and connections not built
    yet are built from this state when a hook first reads them."""
    orig = [_UNSET, _UNSET]
    if f is None:
        f = http.HTTPFlow._make(st[0], st[9], st[11], st[12], st[13], _build)
        d = f.__dict__
        d["_mitmrs_st"] = st
        d["_mitmrs_orig"] = orig
    else:
        d = f.__dict__
        d["_mitmrs_st"] = st
        d["_mitmrs_orig"] = orig
        r = d.get("request", _UNSET)
        if r is not _UNSET and r is not None:
            orig[0] = _req_in(r, st[3]())
        r = d.get("response", _UNSET)
        if r is not _UNSET:
            rs = st[4]
            orig[1] = d["response"] = None if rs is None else _resp_in(r, rs())
        if "client_conn" in d:
            d["client_conn"] = _client(st[1]())
        if "server_conn" in d:
            d["server_conn"] = _server(st[2]())
    err = st[5]
    e = d["error"]
    if err is None:
        if e is not None and e.msg != _KILLED:
            d["error"] = None
    elif e is None or e.msg != err:
        d["error"] = _flow.Error(err)
    d["marked"] = st[6]
    d["comment"] = st[7]
    d["is_replay"] = st[8]
    d["intercepted"] = st[10]
    d["live"] = st[9]
    return f, (st, orig, d["metadata"], _ws_in(d, st[14]))


_ws_message = websocket.WebSocketMessage._make


def _ws_in(d, w):
    """Brings flow.websocket in step: new messages appended, the list trimmed
    from the front to the history's length. Returns what flow_out compares the
    last message with (the message, its content and dropped flag), or None."""
    if w is None:
        return None
    ws = d.get("websocket")
    if ws is None:
        ws = d["websocket"] = websocket.WebSocketData()
    ws.closed_by_client, ws.close_code, ws.close_reason, ws.timestamp_end = w[0], w[1], w[2], w[3]
    msgs = ws.messages
    if w[5]:
        msgs.extend([_ws_message(*m) for m in w[5]])
    extra = len(msgs) - w[4]
    if extra > 0:
        del msgs[:extra]
    if not msgs:
        return None
    last = msgs[-1]
    return last, last.content, last.dropped


def _fields(h):
    if isinstance(h, _Headers):
        return h.fields
    return http._as_headers(h).fields


def _same_tr(tr, orig):
    if tr is None:
        return orig is None
    return orig is not None and isinstance(tr, _Headers) and tr.fields is orig


def _fields_out(h):
    return tuple(_fields(h))


def _req_out(r, d):
    """The request's changes: Ellipsis if none, else a tuple like the state's with
    Ellipsis for unchanged headers/content/trailers, and `stream` at the end. d is
    the state it was built from (None: a new request, all of it changed)."""
    h = _fields(r.headers)
    tr = r.trailers
    scal = (r.host, r.port, r.method, r.scheme, r.authority, r.path, r.http_version)
    if d is not None:
        same_h = h is d[7]
        same_c = r.raw_content is d[8]
        same_t = _same_tr(tr, d[9])
        if same_h and same_c and same_t and not r.stream and scal == d[:7]:
            return ...
    else:
        same_h = same_c = same_t = False
    return scal + (
        ... if same_h else tuple(h),
        ... if same_c else r.raw_content,
        ... if same_t else (_fields_out(tr) if tr is not None else None),
        r.stream,
    )


def _resp_out(r, d):
    h = _fields(r.headers)
    tr = r.trailers
    scal = (r.http_version, r.status_code, r.reason)
    if d is not None:
        same_h = h is d[3]
        same_c = r.raw_content is d[4]
        same_t = _same_tr(tr, d[5])
        if same_h and same_c and same_t and not r.stream and scal == d[:3]:
            return ...
    else:
        same_h = same_c = same_t = False
    return scal + (
        ... if same_h else tuple(h),
        ... if same_c else r.raw_content,
        ... if same_t else (_fields_out(tr) if tr is not None else None),
        r.stream,
    )


def flow_out(f, orig):
    """What the hooks changed: (request, response, killed, intercepted, marked,
    comment, metadata, websocket); request/response/metadata are Ellipsis when
    unchanged (or never read), the response None when there is none; websocket
    is Ellipsis, None if the hooks set flow.websocket to None, or (content or
    Ellipsis if unchanged, dropped) of the message that was last when the hooks
    began."""
    st, (req, resp), meta, ws = orig
    d = f.__dict__
    err = d["error"]
    killed = err is not None and err.msg == _KILLED
    r = d.get("request", _UNSET)
    if r is _UNSET:
        rq = ...
    else:
        rq = _req_out(r, st[3]() if r is req else None)
    r = d.get("response", _UNSET)
    if r is _UNSET:
        rs = ...
    elif r is None:
        rs = None if st[4] is not None else ...
    else:
        rs = _resp_out(r, st[4]() if r is resp else None)
    m = d["metadata"]
    if m is meta and not m and not st[12]:
        m = ...
    marked = d["marked"]
    wo = ...
    if ws is not None:
        last, content, dropped = ws
        c = last.content
        if c is not content or last.dropped != dropped:
            wo = (... if c is content else c, bool(last.dropped))
    if st[14] is not None and d.get("websocket") is None:
        wo = None  # removed: in `response`, the connection is relayed as raw bytes
    return (
        rq, rs, killed, bool(d["intercepted"]),
        marked if isinstance(marked, str) else (":default:" if marked else ""),
        d["comment"] or "",
        m,
        wo,
    )


def call_stream(fn, chunk):
    """Runs a stream callable on one chunk; returns a list of bytes."""
    out = fn(chunk)
    if isinstance(out, (bytes, bytearray, memoryview)):
        return [bytes(out)]
    if isinstance(out, str):
        raise TypeError(f"stream callable returned str, expected bytes or an iterable of bytes: {out[:40]!r}")
    res = []
    for piece in out:
        if not isinstance(piece, (bytes, bytearray, memoryview)):
            raise TypeError(f"stream callable yielded {type(piece).__name__}, expected bytes")
        res.append(bytes(piece))
    return res


def _takes_tuples(fn):
    """Whether a seed-era stream generator unpacks (prefix, content, suffix) from
    each chunk: its first loop unpacks three values."""
    import dis
    try:
        code = fn.__code__
    except AttributeError:
        code = getattr(getattr(fn, "__call__", None), "__code__", None)
    if code is None:
        return False
    ins = list(dis.get_instructions(code))
    for i, x in enumerate(ins[:-1]):
        if x.opname == "FOR_ITER":
            nxt = ins[i + 1]
            return nxt.opname == "UNPACK_SEQUENCE" and nxt.argval == 3
    return False


def _seed_style(fn):
    """Whether a generator function is the seed-era stream API, which loops over its
    argument (the chunks), rather than mitmproxy 7+'s per-chunk generator
    (`def modify(data): yield data.replace(...)`)."""
    import dis
    code = getattr(fn, "__code__", None) or getattr(getattr(fn, "__call__", None), "__code__", None)
    if code is None or code.co_argcount == 0:
        return False
    arg = code.co_varnames[1 if inspect.ismethod(fn) or not inspect.isfunction(fn) else 0]
    ins = [i for i in dis.get_instructions(code) if i.opname not in ("CACHE", "NOP", "RESUME")]
    for i, x in enumerate(ins):
        if x.opname == "GET_ITER" and i > 0:
            prev = ins[i - 1]
            return prev.opname in ("LOAD_FAST", "LOAD_FAST_CHECK") and prev.argval == arg
    return False


def _check_piece(piece):
    if isinstance(piece, tuple):
        piece = b"".join(bytes(p) for p in piece)
    if not isinstance(piece, (bytes, bytearray, memoryview)):
        raise TypeError(f"stream callable yielded {type(piece).__name__}, expected bytes")
    return bytes(piece)


class StreamAdapter:
    """Runs one flow's `.stream` callable. A generator function is the seed-era API
    `def modify(chunks): for chunk in chunks: yield ...`: it runs on its own thread,
    fed one chunk at a time; anything else is called per chunk (bytes -> bytes or an
    iterable of bytes) and once more with b"" at the end."""

    _END = object()

    def __init__(self, fn):
        self.fn = fn
        self.gen = (inspect.isgeneratorfunction(fn) or inspect.isgeneratorfunction(getattr(fn, "__call__", None))) and _seed_style(fn)
        self.done = False
        if self.gen:
            import queue
            self.tuples = _takes_tuples(fn)
            self.inq = queue.Queue()
            self.outq = queue.Queue()
            threading.Thread(target=self._run, name="mitmrs-stream", daemon=True).start()
            self.pending = self._until_need()

    def _chunks(self):
        while True:
            self.outq.put(("need", None))
            c = self.inq.get()
            if c is self._END:
                return
            yield (b"", c, b"") if self.tuples else c

    def _run(self):
        try:
            for piece in self.fn(self._chunks()):
                self.outq.put(("data", piece))
            self.outq.put(("done", None))
        except BaseException as e:
            self.outq.put(("error", e))

    def _until_need(self):
        out = []
        while True:
            kind, v = self.outq.get()
            if kind == "data":
                out.append(_check_piece(v))
            elif kind == "need":
                return out
            elif kind == "done":
                self.done = True
                return out
            else:
                self.done = True
                raise v

    def feed(self, chunk, end):
        if not self.gen:
            if end and not chunk:
                return call_stream(self.fn, b"")
            return call_stream(self.fn, chunk)
        out, self.pending = self.pending, []
        if self.done:
            return out
        if chunk:
            self.inq.put(chunk)
            out += self._until_need()
        if end and not self.done:
            self.inq.put(self._END)
            out += self._until_need()
        return out
