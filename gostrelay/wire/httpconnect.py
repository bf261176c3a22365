"""
The client side of HTTP CONNECT, sans-IO: what a chain hop speaks to an
HTTP proxy to reach the next hop or the target (GOST's C{http} connector).

Driven like the SOCKS client handshakes (L{gostrelay.wire.socksclient}):
C{start()}, C{feed(data)}, C{done}, C{remainder}; a status other than 2xx
raises L{ProxyRefused} with the status line.  The request carries GOST's
headers: C{Host}, C{Proxy-Connection: keep-alive}, C{Proxy-Authorization:
Basic ...} when there are credentials, C{X-Gost-Protocol: udp} for GOST's
UDP tunnel, and any extra headers of the connector's C{header} option.
Framing is h11's: the response head is parsed the way a strict HTTP/1.1
client would, and bounded (L{MAX_RESPONSE_HEAD}).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

import h11

from gostrelay.wire.socksclient import ProxyProtocolError, ProxyRefused

#: Longest proxy response head accepted, in bytes.
MAX_RESPONSE_HEAD = 16384


def basicCredentials(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


class HTTPConnectHandshake:
    """
    One CONNECT request and its response.

    @param authority: the C{host:port} to CONNECT to (IPv6 bracketed).
    @param headers: extra request headers (GOST's C{header} option).
    @param udp: ask for GOST's UDP tunnel (C{X-Gost-Protocol: udp}).
    @raise ValueError: (at construction) for a header h11 would not send.
    """

    def __init__(
        self,
        authority: str,
        username: str | None = None,
        password: str = "",
        headers: Iterable[tuple[str, str]] = (),
        udp: bool = False,
    ) -> None:
        fields: list[tuple[str, str]] = [("Host", authority)]
        names = {"host"}
        for name, value in headers:
            if name.lower() not in ("host", "proxy-connection", "proxy-authorization", "x-gost-protocol"):
                fields.append((name, value))
                names.add(name.lower())
        if username is not None:
            fields.append(("Proxy-Authorization", basicCredentials(username, password)))
        fields.append(("Proxy-Connection", "keep-alive"))
        if udp:
            fields.append(("X-Gost-Protocol", "udp"))
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEAD)
        try:
            self._request = self._conn.send(h11.Request(method="CONNECT", target=authority, headers=fields)) or b""
            self._request += self._conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError as e:
            raise ValueError(f"cannot send this CONNECT request: {e}") from None
        self.done = False
        self.remainder = b""
        #: The proxy's status line after the version (C{"200 Connection established"}).
        self.status = ""

    def start(self) -> bytes:
        return self._request

    def feed(self, data: bytes) -> bytes:
        if self.done:
            self.remainder += data
            return b""
        if not data:
            return b""  # h11 takes an empty chunk for the end of the stream
        self._conn.receive_data(data)
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as e:
                raise ProxyProtocolError(f"bad HTTP proxy response: {e}") from None
            if event is h11.NEED_DATA:
                return b""
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                reason = event.reason.decode("latin-1")
                self.status = f"{event.status_code} {reason}".strip()
                if not 200 <= event.status_code < 300:
                    raise ProxyRefused(self.status)
                continue
            if event is h11.PAUSED:
                rest, _closed = self._conn.trailing_data
                self.remainder = bytes(rest)
                self.done = True
                return b""
            if isinstance(event, h11.ConnectionClosed):
                raise ProxyProtocolError("the HTTP proxy closed the connection without a response")
            raise ProxyProtocolError(f"unexpected HTTP proxy event {type(event).__name__}")
