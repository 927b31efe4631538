"""DNS flows (mitmproxy.dns). mitmrs has no DNS mode yet (dns_* hooks do not run);
these classes are here so scripts can import and annotate with them."""
import dataclasses
import time

from mitmproxy import flow
from mitmproxy._later import not_yet


class _Codes:
    """A namespace of numeric codes, like mitmproxy.net.dns.types."""

    def __init__(self, name, **codes):
        self.__name__ = name
        self._names = {}
        for k, v in codes.items():
            setattr(self, k, v)
            self._names[v] = k

    def to_str(self, code):
        return self._names.get(code, f"{self.__name__.upper()}({code})")

    def from_str(self, s):
        return getattr(self, s)


types = _Codes("types", A=1, NS=2, MD=3, MF=4, CNAME=5, SOA=6, MB=7, MG=8, MR=9, NULL=10,
               WKS=11, PTR=12, HINFO=13, MINFO=14, MX=15, TXT=16, RP=17, AAAA=28, SRV=33,
               NAPTR=35, OPT=41, DS=43, RRSIG=46, NSEC=47, DNSKEY=48, SVCB=64, HTTPS=65,
               AXFR=252, ANY=255)
classes = _Codes("classes", IN=1, CH=3, HS=4, NONE=254, ANY=255)
op_codes = _Codes("op_codes", QUERY=0, IQUERY=1, STATUS=2, NOTIFY=4, UPDATE=5, DSO=6)
response_codes = _Codes("response_codes", NOERROR=0, FORMERR=1, SERVFAIL=2, NXDOMAIN=3,
                        NOTIMP=4, REFUSED=5, YXDOMAIN=6, YXRRSET=7, NXRRSET=8, NOTAUTH=9,
                        NOTZONE=10)


@dataclasses.dataclass
class Question:
    name: str
    type: int
    class_: int


@dataclasses.dataclass
class ResourceRecord:
    DEFAULT_TTL = 60

    name: str
    type: int
    class_: int
    ttl: int
    data: bytes

    @classmethod
    def A(cls, name, ip, *, ttl=DEFAULT_TTL):
        return cls(name, types.A, classes.IN, ttl, ip.packed)

    @classmethod
    def AAAA(cls, name, ip, *, ttl=DEFAULT_TTL):
        return cls(name, types.AAAA, classes.IN, ttl, ip.packed)


@dataclasses.dataclass
class Message:
    timestamp: float
    id: int
    query: bool
    op_code: int
    authoritative_answer: bool
    truncation: bool
    recursion_desired: bool
    recursion_available: bool
    reserved: int
    response_code: int
    questions: list
    answers: list
    authorities: list
    additionals: list

    @property
    def question(self):
        return self.questions[0] if len(self.questions) == 1 else None

    def fail(self, response_code):
        raise not_yet("dns.Message.fail", "DNS mode")

    def succeed(self, answers):
        raise not_yet("dns.Message.succeed", "DNS mode")

    @classmethod
    def from_json(cls, data):
        raise not_yet("dns.Message.from_json", "DNS mode")

    @classmethod
    def unpack(cls, buf, timestamp=None):
        raise not_yet("dns.Message.unpack", "DNS mode")

    def packed(self):
        raise not_yet("dns.Message.packed", "DNS mode")


DNSMessage = Message


class DNSFlow(flow.Flow):
    """A DNS query and its response (never created by mitmrs yet)."""

    type = "dns"

    def __init__(self, client_conn, server_conn, live=False):
        super().__init__(client_conn, server_conn, live)
        self.request = None
        self.response = None

    def __repr__(self):
        return f"<DNSFlow\n  request={self.request!r}\n  response={self.response!r}\n>"


__all__ = ["DNSFlow", "Message", "Question", "ResourceRecord", "types", "classes",
           "op_codes", "response_codes"]
