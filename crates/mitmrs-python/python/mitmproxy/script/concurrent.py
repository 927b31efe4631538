"""@concurrent: run a hook in a worker thread, so it does not hold up other hooks."""
import asyncio
import functools
import inspect

from mitmproxy import hooks


def concurrent(fn):
    if fn.__name__ not in set(hooks.all_hooks) - {"load", "configure"}:
        raise NotImplementedError(f"Concurrent decorator not supported for '{fn.__name__}' method.")

    def work(args):
        if inspect.iscoroutinefunction(fn):
            asyncio.run(fn(*args))
        else:
            fn(*args)

    @functools.wraps(fn)
    async def in_thread(*args):
        await asyncio.get_running_loop().run_in_executor(None, work, args)

    in_thread._mitmrs_concurrent = True
    return in_thread
