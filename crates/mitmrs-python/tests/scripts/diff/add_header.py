"""Add a response header (like mitmproxy's examples/addons/http-add-header.py)."""


class AddHeader:
    def __init__(self):
        self.num = 0

    def response(self, flow):
        self.num += 1
        flow.response.headers["count"] = str(self.num)
        flow.response.headers["newheader"] = "foo"


addons = [AddHeader()]
