import logging
import typing

from mitmproxy import ctx, exceptions


class Greeter:
    def __init__(self):
        self.configured = 0

    def load(self, loader):
        loader.add_option("greeting", str, "hello", "Greeting to add to responses.")
        loader.add_option("greet_count", int, 1, "How many greetings.")
        loader.add_option("greet_extra", typing.Optional[str], None, "Extra.")

    def configure(self, updated):
        self.configured += 1
        if "greet_count" in updated and ctx.options.greet_count < 0:
            raise exceptions.OptionsError("greet_count must not be negative")

    def running(self):
        logging.info("greeter running with greeting=%s", ctx.options.greeting)

    def response(self, flow):
        flow.response.headers["x-greeting"] = ctx.options.greeting * ctx.options.greet_count
        flow.response.headers["x-configured"] = str(self.configured)
        if flow.request.path == "/setopt":
            ctx.options.greeting = "changed"


addons = [Greeter()]
