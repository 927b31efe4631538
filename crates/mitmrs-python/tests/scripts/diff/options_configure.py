"""Options and configure (like options-simple.py and options-configure.py)."""
import logging
from typing import Optional

from mitmproxy import ctx, exceptions


class AddHeader:
    def load(self, loader):
        loader.add_option("addheader", Optional[int], None, "add a header with this value")
        loader.add_option("tagname", str, "tag", "name of the header", choices=["tag", "label"])
        loader.add_option("shout", bool, False, "upper-case the header value")

    def configure(self, updated):
        if "addheader" in updated and ctx.options.addheader is not None and ctx.options.addheader > 1000:
            raise exceptions.OptionsError("addheader must be <= 1000")
        logging.info(f"configured: {sorted(u for u in updated if u in ('addheader', 'tagname', 'shout'))}")

    def response(self, flow):
        if ctx.options.addheader is not None:
            value = f"value-{ctx.options.addheader}"
            flow.response.headers[ctx.options.tagname] = value.upper() if ctx.options.shout else value


addons = [AddHeader()]
