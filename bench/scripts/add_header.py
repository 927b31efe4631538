"""mitmproxy's http-add-header example: add a header to every response.

Used by bench metric M6 with both `mitmdump -s` and `mitmrs -s`.
"""


def response(flow):
    flow.response.headers["newheader"] = "foo"
