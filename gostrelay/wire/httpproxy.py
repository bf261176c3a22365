"""
HTTP/1.1 proxy request heads, sans-IO (spec-relay.md section 11).

The local proxy entry reads one request head from the client: C{CONNECT
host:port} opens a tunnel, an absolute-URI request (C{GET http://host/path})
or an origin-form request with a usable C{Host} is forwarded to the target.
Framing and syntax checks are h11's, so the head is parsed the way a strict
HTTP/1.1 server would; this module adds what a proxy needs on top: the
target host and port, the proxy credentials, the head to send upstream and
the few responses the proxy writes itself.

Header values are decoded as latin-1, so every byte survives a round trip
through L{forwardRequestHead}.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Iterable

import h11

from gostrelay.wire.address import joinHostPort

#: Largest request head accepted, in bytes (request line, headers and the
#: blank line).
MAX_HEAD_SIZE = 65536

#: GOST's exact reply to a successful CONNECT.
CONNECTION_ESTABLISHED = b"HTTP/1.1 200 Connection established\r\nProxy-Agent: gost/3.0\r\n\r\n"

PROXY_AGENT = "gost/3.0"

#: Request headers never forwarded upstream.
HOP_BY_HOP = frozenset(["proxy-authorization", "proxy-connection", "connection", "keep-alive"])

_DEFAULT_PORTS = {"http": 80, "https": 443}

_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")

# RFC 3986 reg-name characters, minus percent-encoding (no DNS name needs it).
_REG_NAME = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=-]+")


class HTTPProxyError(ValueError):
    """
    The request cannot be served; answer with C{status} and close.
    """

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message or f"HTTP {status}")
        self.status = status


@dataclass
class ProxyRequest:
    """
    One request head as the proxy sees it.

    C{httpVersion} is h11's form (C{"1.1"}, C{"1.0"}); C{headers} keep their
    received case and order; C{host} is never bracketed; C{path} is what to
    put in an origin-form request line (for CONNECT, the target itself).
    """

    method: str
    target: str
    httpVersion: str
    headers: list[tuple[str, str]]
    host: str
    port: int
    path: str

    @property
    def isConnect(self) -> bool:
        return self.method == "CONNECT"

    @property
    def address(self) -> str:
        return joinHostPort(self.host, self.port)

    def header(self, name: str) -> str | None:
        """
        The value of the first header called C{name} (any case), or C{None}.
        """
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def proxyCredentials(self) -> tuple[str, str] | None:
        """
        The C{(user, password)} of a C{Proxy-Authorization: Basic} header, or
        C{None} when there is none, it is another scheme, or it does not
        decode to C{user:password} (Go's C{parseBasicAuth} rules).
        """
        value = self.header("Proxy-Authorization")
        if value is None:
            return None
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        user, colon, password = decoded.partition(b":")
        if not colon:
            return None
        return user.decode("utf-8", "surrogateescape"), password.decode("utf-8", "surrogateescape")


def _usableHost(host: str) -> bool:
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return _REG_NAME.fullmatch(host) is not None


def _splitAuthority(authority: str) -> tuple[str, int | None]:
    """
    Split C{host[:port]} (an IPv6 host in brackets); the port is C{None}
    when absent or empty, as RFC 3986 allows.

    @raise HTTPProxyError: 400 if it does not split, the host is unusable
        or the port is not 1-65535.
    """
    bad = HTTPProxyError(400, f"bad authority {authority!r}")
    if not authority.isascii():
        raise bad
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise bad
        host, rest = authority[1:close], authority[close + 1 :]
        if ":" not in host or (rest and not rest.startswith(":")):
            raise bad
        portText = rest[1:]
    else:
        host, _, portText = authority.partition(":")
    if not _usableHost(host):
        raise bad
    if portText == "":
        return host, None
    if not portText.isdigit() or not 0 < int(portText) <= 0xFFFF:
        raise bad
    return host, int(portText)


def _splitTarget(target: str) -> tuple[str, str]:
    """
    The authority (without userinfo) and the origin-form path (query
    included, exactly as sent) of an absolute URI.
    """
    rest = target.partition("://")[2]
    cut = len(rest)
    for separator in "/?":
        index = rest.find(separator)
        if 0 <= index < cut:
            cut = index
    authority, path = rest[:cut], rest[cut:]
    if not path.startswith("/"):
        path = "/" + path
    return authority.rpartition("@")[2], path


def _locate(method: str, target: str, headers: list[tuple[str, str]]) -> tuple[str, int, str]:
    """
    The host, port and origin-form path a request is for.
    """
    if method == "CONNECT":
        host, port = _splitAuthority(target)
        if port is None:
            raise HTTPProxyError(400, f"CONNECT target needs a port: {target!r}")
        return host, port, target
    scheme = target.partition(":")[0].lower()
    if _ABSOLUTE.match(target) and scheme in _DEFAULT_PORTS:
        authority, path = _splitTarget(target)
        host, port = _splitAuthority(authority)
        return host, port or _DEFAULT_PORTS[scheme], path
    if target.startswith("/") or target == "*":
        hostHeader = None
        for name, value in headers:
            if name.lower() == "host":
                hostHeader = value
                break
        if not hostHeader:
            raise HTTPProxyError(400, "no Host for an origin-form request")
        host, port = _splitAuthority(hostHeader)
        return host, port or 80, target
    raise HTTPProxyError(400, f"cannot proxy request target {target!r}")


class ProxyRequestParser:
    """
    Feed it bytes until it returns a L{ProxyRequest}; L{remainder} then
    holds the bytes after the head (a request body, or the first tunnel
    bytes of an eager client).  One request per parser.

    h11 refuses an HTTP/1.1 request without C{Host} (RFC 9112 3.2); GOST
    (Go's C{http.ReadRequest}) does not, and for CONNECT and absolute-URI
    requests the target already names the host, so those are parsed again
    with a C{Host} taken from the target, which is then dropped from
    L{ProxyRequest.headers}.
    """

    def __init__(self, maxHeadSize: int = MAX_HEAD_SIZE) -> None:
        self.maxHeadSize = maxHeadSize
        self.remainder = b""
        self.done = False
        # Every byte fed so far, for the missing-Host retry; h11 bounds it.
        self._buffer = bytearray()
        self._error: HTTPProxyError | None = None
        self._conn = h11.Connection(our_role=h11.SERVER, max_incomplete_event_size=maxHeadSize)

    def feed(self, data: bytes) -> ProxyRequest | None:
        """
        @raise HTTPProxyError: 400 for a malformed head, 431 for one longer
            than C{maxHeadSize}, 501 for a transfer coding h11 does not know.
        @raise RuntimeError: if a request was already returned.
        """
        if self.done:
            raise RuntimeError("parser already finished; use remainder")
        if self._error is not None:
            raise self._error
        if not data:
            # h11 takes an empty chunk for end of stream.
            return None
        try:
            return self._feed(bytes(data))
        except HTTPProxyError as e:
            self._error = e
            raise

    def _feed(self, data: bytes) -> ProxyRequest | None:
        self._buffer += data
        injected = b""
        try:
            event = _nextRequest(self._conn, data)
        except HTTPProxyError as e:
            if str(e) != _MISSING_HOST:
                raise
            injected = _hostFromTarget(self._buffer)
            if not injected:
                raise
            lineEnd = self._buffer.index(b"\n") + 1
            self._conn = h11.Connection(
                our_role=h11.SERVER, max_incomplete_event_size=self.maxHeadSize + len(injected)
            )
            event = _nextRequest(
                self._conn, bytes(self._buffer[:lineEnd]) + injected + bytes(self._buffer[lineEnd:])
            )
        if event is None:
            return None
        remainder = self._conn.trailing_data[0]
        # h11 only limits incomplete heads; a big head arriving in one
        # chunk must fail the same way.
        if len(self._buffer) - len(remainder) > self.maxHeadSize:
            raise HTTPProxyError(431, "request head too large")
        method = event.method.decode("ascii")
        target = event.target.decode("ascii")
        headers = [
            (name.decode("ascii"), value.decode("latin-1")) for name, value in event.headers.raw_items()
        ]
        if injected:
            del headers[0]
        host, port, path = _locate(method, target, headers)
        self.remainder = remainder
        self.done = True
        self._buffer = bytearray()
        return ProxyRequest(
            method=method,
            target=target,
            httpVersion=event.http_version.decode("ascii"),
            headers=headers,
            host=host,
            port=port,
            path=path,
        )


#: h11's message for an HTTP/1.1 request without Host.  Should a new h11
#: word it differently the retry just stops happening (a strict 400).
_MISSING_HOST = "Missing mandatory Host: header"


def _nextRequest(conn: h11.Connection, data: bytes) -> h11.Request | None:
    try:
        conn.receive_data(data)
        event = conn.next_event()
    except h11.RemoteProtocolError as e:
        raise HTTPProxyError(e.error_status_hint, str(e))
    if event is h11.NEED_DATA:
        return None
    if not isinstance(event, h11.Request):
        raise HTTPProxyError(400, f"unexpected {event!r}")
    return event


def _hostFromTarget(head: bytes | bytearray) -> bytes:
    """
    A C{Host} header line naming the authority of a CONNECT or absolute-URI
    request line, or C{b""} for any other request.
    """
    parts = bytes(head[: head.find(b"\n")]).split(b" ")
    if len(parts) != 3:
        return b""
    method, target = parts[0], parts[1].decode("ascii", "replace")
    if method == b"CONNECT":
        authority = target
    elif _ABSOLUTE.match(target):
        authority = _splitTarget(target)[0]
    else:
        return b""
    if not authority:
        return b""
    return b"Host: " + authority.encode("ascii", "replace") + b"\r\n"


def _hostValue(host: str, port: int) -> str:
    if port == 80:
        return f"[{host}]" if ":" in host else host
    return joinHostPort(host, port)


def forwardRequestHead(request: ProxyRequest) -> bytes:
    """
    The head to send the target for a forwarded (non-CONNECT) request:
    origin-form request line, the client's headers minus the proxy and
    connection ones, a C{Host}, and C{Connection: close}.

    For an absolute-URI request the C{Host} is the URL's authority,
    replacing the client's (RFC 9112 3.2.2; Go's C{Request.Write}, which
    GOST uses, does the same); otherwise a missing C{Host} is added from
    the request's host and port.
    """
    headers = [(name, value) for name, value in request.headers if name.lower() not in HOP_BY_HOP]
    if _ABSOLUTE.match(request.target):
        authority = _splitTarget(request.target)[0]
        headers = [("Host", authority)] + [(n, v) for n, v in headers if n.lower() != "host"]
    elif not any(name.lower() == "host" for name, _ in headers):
        headers.insert(0, ("Host", _hostValue(request.host, request.port)))
    headers.append(("Connection", "close"))
    lines = [f"{request.method} {request.path} HTTP/1.1"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def encodeResponse(
    status: int,
    reason: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> bytes:
    """
    A whole HTTP/1.1 response.  C{Content-Length} is added unless the caller
    gave one, or the status forbids it (1xx, 204), or it is a bodiless 200
    (the CONNECT answer, after which the stream is the tunnel).
    """
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    headerList = list(headers)
    if not (
        any(name.lower() == "content-length" for name, _ in headerList)
        or 100 <= status < 200
        or status == 204
        or (status == 200 and body == b"")
    ):
        headerList.append(("Content-Length", str(len(body))))
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines.extend(f"{name}: {value}" for name, value in headerList)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def proxyAuthRequired(realm: str = "gost") -> bytes:
    """
    GOST's 407 answer to missing or wrong proxy credentials.
    """
    quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
    return encodeResponse(
        407,
        headers=[
            ("Proxy-Authenticate", f'Basic realm="{quoted}"'),
            ("Proxy-Agent", PROXY_AGENT),
            ("Content-Length", "0"),
        ],
    )


__all__ = [
    "CONNECTION_ESTABLISHED",
    "HOP_BY_HOP",
    "HTTPProxyError",
    "MAX_HEAD_SIZE",
    "PROXY_AGENT",
    "ProxyRequest",
    "ProxyRequestParser",
    "encodeResponse",
    "forwardRequestHead",
    "proxyAuthRequired",
]
