"""
The client side of SOCKS5 (RFC 1928, RFC 1929) and SOCKS4/4a, sans-IO: what
a chain hop speaks to a SOCKS proxy to reach the next hop or the target
(GOST's C{socks5} and C{socks4} connectors).

A handshake object is driven the same way for every proxy protocol the
connectors speak (L{gostrelay.wire.httpconnect} too): C{start()} gives the
first bytes to send; C{feed(data)} takes what the proxy answered and gives
the next bytes to send (often C{b""}); once C{done} is true the tunnel is
open and C{remainder} holds any bytes the proxy sent after its reply (they
belong to the target).  A refusal raises L{ProxyRefused} whose C{answer}
is the proxy's reply in words, for the log line; malformed answers raise
L{ProxyProtocolError}.  Nothing is buffered beyond one reply (at most 262
bytes for SOCKS5).
"""

from __future__ import annotations

import ipaddress
import struct

from gostrelay.wire.address import (
    ATYP_DOMAIN,
    ATYP_IPV4,
    ATYP_IPV6,
    AddressError,
    atypeForHost,
    decodeSocksAddress,
    encodeSocksAddress,
)
from gostrelay.wire.socks import (
    CMD_CONNECT,
    METHOD_NO_ACCEPTABLE,
    METHOD_NO_AUTH,
    METHOD_USERPASS,
    REP_SUCCEEDED,
    SOCKS4_CONNECT,
    SOCKS4_GRANTED,
    SOCKS5_VERSION,
    USERPASS_VERSION,
)

#: GOST's extended SOCKS5 command: UDP datagrams tunnelled over the TCP
#: connection itself, in the UDP tunnel framing (spec-relay.md 5).
CMD_UDP_TUN = 0xF3

_REPLY_TEXT = {
    0x00: "succeeded",
    0x01: "general SOCKS server failure",
    0x02: "connection not allowed by ruleset",
    0x03: "network unreachable",
    0x04: "host unreachable",
    0x05: "connection refused",
    0x06: "TTL expired",
    0x07: "command not supported",
    0x08: "address type not supported",
}

_SOCKS4_TEXT = {
    0x5A: "request granted",
    0x5B: "request rejected or failed",
    0x5C: "rejected: the server cannot reach the client's identd",
    0x5D: "rejected: identd reports a different user id",
}


class ProxyProtocolError(ValueError):
    """
    The proxy answered something that is not its protocol.
    """


class ProxyRefused(ValueError):
    """
    The proxy answered, and the answer is no.

    @ivar answer: the proxy's answer in words (C{"0x05 connection
        refused"}, C{"407 Proxy Authentication Required"}).
    """

    def __init__(self, answer: str) -> None:
        super().__init__(answer)
        self.answer = answer


def socks5ReplyText(rep: int) -> str:
    return f"0x{rep:02x} {_REPLY_TEXT.get(rep, 'unassigned reply code')}"


def socks4ReplyText(code: int) -> str:
    return f"0x{code:02x} {_SOCKS4_TEXT.get(code, 'unknown reply code')}"


def _encodeTarget(host: str, port: int) -> bytes:
    atype = atypeForHost(host)
    if atype != ATYP_DOMAIN:
        host = host.strip("[]")
    return encodeSocksAddress(atype, host, port)


class Socks5ClientHandshake:
    """
    Greeting, method selection, username/password when the proxy asks for
    it, then one request (CONNECT, or GOST's UDP tunnel).

    Offers "no authentication" and "username/password" as GOST's connector
    does (not GOST's TLS methods); with no credentials an empty name and
    password are sent if the proxy insists, as GOST does.

    @raise AddressError: (at construction) for a target that cannot be
        encoded, or a name or password longer than 255 bytes.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str | None = None,
        password: str = "",
        command: int = CMD_CONNECT,
    ) -> None:
        self.command = command
        if command == CMD_CONNECT:
            self._request = bytes([SOCKS5_VERSION, command, 0]) + _encodeTarget(host, port)
        else:
            self._request = bytes([SOCKS5_VERSION, command, 0]) + encodeSocksAddress(ATYP_IPV4, "0.0.0.0", 0)
        user = (username or "").encode("utf-8")
        pw = password.encode("utf-8")
        if len(user) > 255 or len(pw) > 255:
            raise AddressError("SOCKS5 user names and passwords are at most 255 bytes")
        self._userpass = bytes([USERPASS_VERSION, len(user)]) + user + bytes([len(pw)]) + pw
        self._buffer = b""
        self._state = "method"
        self.done = False
        self.remainder = b""
        #: The address the proxy reported (BND.ADDR, BND.PORT).
        self.bound: tuple[str, int] | None = None

    def start(self) -> bytes:
        return bytes([SOCKS5_VERSION, 2, METHOD_NO_AUTH, METHOD_USERPASS])

    def feed(self, data: bytes) -> bytes:
        if self.done:
            self.remainder += data
            return b""
        self._buffer += data
        out = b""
        while not self.done:
            step = self._step()
            if step is None:
                break
            out += step
        return out

    def _step(self) -> bytes | None:
        buf = self._buffer
        if self._state == "method":
            if len(buf) < 2:
                return None
            if buf[0] != SOCKS5_VERSION:
                raise ProxyProtocolError(f"not a SOCKS5 answer: version 0x{buf[0]:02x}")
            method, self._buffer = buf[1], buf[2:]
            if method == METHOD_NO_AUTH:
                self._state = "reply"
                return self._request
            if method == METHOD_USERPASS:
                self._state = "auth"
                return self._userpass
            if method == METHOD_NO_ACCEPTABLE:
                raise ProxyRefused("no acceptable authentication method (0xff)")
            raise ProxyProtocolError(f"the proxy chose a method not offered: 0x{method:02x}")
        if self._state == "auth":
            if len(buf) < 2:
                return None
            status, self._buffer = buf[1], buf[2:]
            if status != 0:
                raise ProxyRefused(f"username/password rejected (status 0x{status:02x})")
            self._state = "reply"
            return self._request
        # reply: VER REP RSV ATYP ADDR PORT
        if len(buf) < 5:
            return None
        if buf[0] != SOCKS5_VERSION:
            raise ProxyProtocolError(f"not a SOCKS5 reply: version 0x{buf[0]:02x}")
        atype = buf[3]
        if atype == ATYP_IPV4:
            need = 4 + 4 + 2
        elif atype == ATYP_IPV6:
            need = 4 + 16 + 2
        elif atype == ATYP_DOMAIN:
            need = 4 + 1 + buf[4] + 2
        else:
            raise ProxyProtocolError(f"SOCKS5 reply with unknown address type 0x{atype:02x}")
        if len(buf) < need:
            return None
        if buf[1] != REP_SUCCEEDED:
            raise ProxyRefused(socks5ReplyText(buf[1]))
        try:
            _, host, port, end = decodeSocksAddress(buf, 3)
        except AddressError as e:
            raise ProxyProtocolError(f"bad SOCKS5 reply: {e}") from None
        self.bound = (host, port)
        self.remainder, self._buffer = buf[end:], b""
        self.done = True
        return b""


class Socks4ClientHandshake:
    """
    One SOCKS4 CONNECT.  An IPv4 literal goes as SOCKS4; a name goes as
    SOCKS4a (address 0.0.0.1 and the name after the user id) unless
    C{disable4a}, when the caller must have resolved it to IPv4 first.

    @raise AddressError: (at construction) for an IPv6 target, a name with
        C{disable4a}, or fields longer than 255 bytes.
    """

    def __init__(self, host: str, port: int, userid: str = "", disable4a: bool = False) -> None:
        if not 0 <= port <= 0xFFFF:
            raise AddressError(f"port out of range: {port}")
        uid = userid.encode("utf-8")
        if len(uid) > 255 or b"\x00" in uid:
            raise AddressError("SOCKS4 user ids are at most 255 bytes, without NUL")
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            ip = None
        if ip is not None:
            if ip.version != 4:
                raise AddressError(f"SOCKS4 carries only IPv4 addresses, not {host!r}")
            if ip.packed[:3] == b"\0\0\0":
                raise AddressError(f"{host} cannot be sent by SOCKS4 (0.0.0.x means SOCKS4a)")
            self._request = struct.pack(">BBH", 4, SOCKS4_CONNECT, port) + ip.packed + uid + b"\x00"
        else:
            if disable4a:
                raise AddressError(f"SOCKS4 without 4a needs an IPv4 address, not {host!r}")
            name = host.encode("idna") if host.isascii() else host.encode("utf-8")
            if not name or len(name) > 255 or b"\x00" in name:
                raise AddressError(f"bad SOCKS4a host name {host!r}")
            self._request = struct.pack(">BBH", 4, SOCKS4_CONNECT, port) + b"\x00\x00\x00\x01" + uid + b"\x00" + name + b"\x00"
        self._buffer = b""
        self.done = False
        self.remainder = b""

    def start(self) -> bytes:
        return self._request

    def feed(self, data: bytes) -> bytes:
        if self.done:
            self.remainder += data
            return b""
        self._buffer += data
        if len(self._buffer) < 8:
            return b""
        reply, rest = self._buffer[:8], self._buffer[8:]
        if reply[0] != 0:
            raise ProxyProtocolError(f"not a SOCKS4 reply: version 0x{reply[0]:02x}")
        if reply[1] != SOCKS4_GRANTED:
            raise ProxyRefused(socks4ReplyText(reply[1]))
        self.done = True
        self.remainder, self._buffer = rest, b""
        return b""
