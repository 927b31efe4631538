"""ctx.master, ctx.options and ctx.log, set up by mitmrs when scripts load."""
master = None
options = None
log = None
