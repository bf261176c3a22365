"""
HAProxy's PROXY protocol header (v1 text, v2 binary), sans-IO.

Reading frames the header and hands it to Twisted's own parsers
(L{twisted.protocols.haproxy}): we do not keep a third parser.  What this
module adds is what a server that I{requires} the header needs and
Twisted's wrapper does not do: a version check on the first bytes, a cap
on the header's size, validation of the addresses, and an error naming
what was wrong, for the log line.

Writing builds the header a forwarder sends in front of a target's stream
(GOST's C{proxyProtocol} on a forward handler or a chain node): v1
C{PROXY TCP4|TCP6 ...} or v2 C{PROXY} with an IPv4/IPv6 stream address
block; a peer without an IP address (a unix socket, stdio) gets v1
C{PROXY UNKNOWN} / v2 C{LOCAL}, which tells the receiver to use the
connection's own addresses.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.haproxy._info import ProxyInfo
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser

V1_PREFIX = b"PROXY "
V2_PREFIX = V2Parser.PREFIX

#: v1: "a 108-byte buffer is always enough" (the specification).
MAX_V1 = 107
#: v2: 16 bytes, 216 of addresses (unix), and room for a balancer's TLVs
#: (AWS and Azure send a few dozen bytes); beyond this, refused.
MAX_V2 = 16 + 1024


class ProxyHeaderError(Exception):
    """
    The bytes do not start with an acceptable PROXY header; C{str()} says
    why (for the log line).
    """


class HeaderReader:
    """
    Feed bytes until L{feed} returns the parsed header.

    @ivar remainder: the bytes that followed the header (the client's
        first application bytes), once the header is complete.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self.remainder = b""

    def feed(self, data: bytes) -> ProxyInfo | None:
        """
        @return: the header (its C{source} is C{None} for v2 C{LOCAL} and v1
            C{UNKNOWN}), or C{None} while more bytes are needed.
        @raise ProxyHeaderError: the bytes cannot start a header, or it is
            malformed, too long or names impossible addresses.
        """
        buffer = self._buffer + data
        self._buffer = buffer
        if _startsLike(buffer, V2_PREFIX):
            return self._v2(buffer)
        if _startsLike(buffer, V1_PREFIX):
            return self._v1(buffer)
        raise ProxyHeaderError(f"no PROXY header (the connection starts with {buffer[:16]!r})")

    def _v1(self, buffer: bytes) -> ProxyInfo | None:
        end = buffer.find(b"\r\n")
        if end < 0:
            if len(buffer) > MAX_V1:
                raise ProxyHeaderError(f"PROXY v1 header longer than {MAX_V1} bytes")
            return None
        if end + 2 > MAX_V1 + 1:
            raise ProxyHeaderError(f"PROXY v1 header longer than {MAX_V1} bytes")
        if buffer.startswith(b"PROXY UNKNOWN") and buffer[13:14] in (b" ", b"\r"):
            # "PROXY UNKNOWN\r\n" is the specification's own form, which
            # Twisted's V1Parser (wanting a space after UNKNOWN) refuses;
            # the rest of such a line is to be ignored anyway.
            self.remainder = buffer[end + 2 :]
            return ProxyInfo(buffer[:end], None, None)
        info, remainder = _parse(V1Parser(), buffer, "v1")
        self.remainder = remainder
        return info

    def _v2(self, buffer: bytes) -> ProxyInfo | None:
        if len(buffer) < 16:
            return None
        if buffer[12] & 0xF0 != 0x20:
            raise ProxyHeaderError(f"PROXY v2 header with version {buffer[12] >> 4}")
        size = 16 + struct.unpack("!H", buffer[14:16])[0]
        if size > MAX_V2:
            raise ProxyHeaderError(f"PROXY v2 header of {size} bytes (at most {MAX_V2})")
        if len(buffer) < size:
            return None
        info, remainder = _parse(V2Parser(), buffer, "v2")
        self.remainder = remainder
        return info


def _startsLike(buffer: bytes, prefix: bytes) -> bool:
    n = min(len(buffer), len(prefix))
    return buffer[:n] == prefix[:n]


def _parse(parser: Any, buffer: bytes, version: str) -> tuple[ProxyInfo, bytes]:
    try:
        info, remainder = parser.feed(buffer)
    except InvalidProxyHeader as e:
        raise ProxyHeaderError(f"bad PROXY {version} header ({e.__class__.__name__})") from None
    except (ValueError, KeyError, IndexError, struct.error, UnicodeError):
        raise ProxyHeaderError(f"bad PROXY {version} header") from None
    if info is None:  # pragma: no cover - the framing above saw a whole header
        raise ProxyHeaderError(f"incomplete PROXY {version} header")
    for what in ("source", "destination"):
        _check(getattr(info, what), what, version)
    return info, remainder or b""


def _check(address: Any, what: str, version: str) -> None:
    if address is None or isinstance(address, UNIXAddress):
        return
    try:
        ip = ipaddress.ip_address(address.host)
    except ValueError:
        raise ProxyHeaderError(f"PROXY {version} header: bad {what} address {address.host!r}") from None
    if not 0 <= address.port <= 65535:
        raise ProxyHeaderError(f"PROXY {version} header: bad {what} port {address.port}")
    if (ip.version == 4) != isinstance(address, IPv4Address):
        raise ProxyHeaderError(f"PROXY {version} header: {what} address {address.host!r} does not match its family")


# -- writing


def _ip(address: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """
    The IP of an address object (IPv4-mapped IPv6 as IPv4), or C{None}
    for a peer without one.
    """
    if not isinstance(address, (IPv4Address, IPv6Address)) and not hasattr(address, "port"):
        return None
    host = getattr(address, "host", None)
    if not isinstance(host, str):
        return None
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def encodeHeader(version: int, source: Any, destination: Any) -> bytes:
    """
    The PROXY header (C{version} 1 or 2) naming C{source} (the original
    client) and C{destination} (the address it connected to).  Mixed
    families are sent as IPv6 (IPv4-mapped); a side without an IP address
    gives v1 C{PROXY UNKNOWN} / v2 C{LOCAL}.
    """
    if version not in (1, 2):
        raise ValueError(f"PROXY protocol version {version} (1 or 2)")
    src, dst = _ip(source), _ip(destination)
    if src is None or dst is None:
        if version == 1:
            return b"PROXY UNKNOWN\r\n"
        return V2_PREFIX + b"\x20\x00\x00\x00"
    if src.version != dst.version and dst.is_unspecified:
        dst = ipaddress.ip_address("0.0.0.0" if src.version == 4 else "::")
    if src.version != dst.version:
        src, dst = (ipaddress.IPv6Address(f"::ffff:{a}") if a.version == 4 else a for a in (src, dst))
    sport, dport = int(source.port), int(destination.port)
    if version == 1:
        family = "TCP4" if src.version == 4 else "TCP6"
        return f"PROXY {family} {_text(src)} {_text(dst)} {sport} {dport}\r\n".encode("ascii")
    block = src.packed + dst.packed + struct.pack("!HH", sport, dport)
    familyProtocol = 0x11 if src.version == 4 else 0x21
    return V2_PREFIX + bytes([0x21, familyProtocol]) + struct.pack("!H", len(block)) + block


def _text(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"::ffff:{ip.ipv4_mapped}"
    return ip.compressed
