"""String helpers with mitmproxy's names."""
import re


def always_bytes(s, *encode_args):
    if isinstance(s, bytes) or s is None:
        return s
    if isinstance(s, str):
        return s.encode(*(encode_args or ("utf-8", "surrogateescape")))
    raise TypeError(f"Expected str or bytes, but got {type(s).__name__}.")


def always_str(s, *decode_args):
    if isinstance(s, str) or s is None:
        return s
    if isinstance(s, bytes):
        return s.decode(*(decode_args or ("utf-8", "surrogateescape")))
    raise TypeError(f"Expected str or bytes, but got {type(s).__name__}.")


def bytes_to_escaped_str(data, keep_spacing=False, escape_single_quotes=False):
    if not isinstance(data, bytes):
        raise ValueError(f"data must be bytes, but is {data.__class__.__name__}")
    ret = repr(b'"' + data).lstrip("b")[2:-1]
    if not escape_single_quotes:
        ret = ret.replace("\\'", "'")
    if keep_spacing:
        ret = re.sub(r"(?<!\\)(\\\\)*\\([nrt])",
                     lambda m: (m.group(1) or "") + dict(n="\n", r="\r", t="\t")[m.group(2)], ret)
    return ret


def escaped_str_to_bytes(data):
    if not isinstance(data, str):
        raise ValueError(f"data must be str, but is {data.__class__.__name__}")
    import codecs
    return codecs.escape_decode(data)[0]
