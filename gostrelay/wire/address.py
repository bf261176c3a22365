"""
Host/port addresses as the relay Addr feature, SOCKS5 and the UDP tunnel
framing all encode them: C{ATYP ADDR PORT} (spec-relay.md 1.4.2), and as the
C{"host:port"} strings GOST passes around (Go's C{net.SplitHostPort} and
C{net.JoinHostPort}).
"""

from __future__ import annotations

import ipaddress
import struct

ATYP_IPV4 = 0x01
ATYP_DOMAIN = 0x03
ATYP_IPV6 = 0x04


class AddressError(ValueError):
    """
    An address cannot be parsed or encoded.
    """


def atypeForHost(host: str) -> int:
    """
    The address type GOST's encoder picks for C{host}: an IP literal with a
    4-byte form (IPv4, or IPv4-mapped IPv6) is IPv4, another IP literal IPv6,
    anything else (including the empty host) a domain.
    """
    try:
        ip = ipaddress.ip_address(host.strip("[]") if host.startswith("[") else host)
    except ValueError:
        return ATYP_DOMAIN
    if ip.version == 4 or getattr(ip, "ipv4_mapped", None) is not None:
        return ATYP_IPV4
    return ATYP_IPV6


def encodeSocksAddress(atype: int, host: str, port: int) -> bytes:
    try:
        return _encodeSocksAddress(atype, host, port)
    except (ValueError, UnicodeEncodeError) as e:
        if isinstance(e, AddressError):
            raise
        raise AddressError(f"cannot encode {host!r} as address type {atype}: {e}") from None


def _encodeSocksAddress(atype: int, host: str, port: int) -> bytes:
    if not 0 <= port <= 0xFFFF:
        raise AddressError(f"port out of range: {port}")
    if atype == ATYP_IPV4:
        ip = ipaddress.ip_address(host)
        if ip.version == 6:
            mapped = ip.ipv4_mapped  # type: ignore[union-attr]
            if mapped is None:
                raise AddressError(f"not an IPv4 address: {host}")
            ip = mapped
        return bytes([ATYP_IPV4]) + ip.packed + struct.pack(">H", port)
    if atype == ATYP_IPV6:
        return bytes([ATYP_IPV6]) + ipaddress.IPv6Address(host).packed + struct.pack(">H", port)
    if atype == ATYP_DOMAIN:
        name = host.encode("utf-8", "surrogateescape")
        if len(name) > 0xFF:
            raise AddressError("domain name longer than 255 bytes")
        return bytes([ATYP_DOMAIN, len(name)]) + name + struct.pack(">H", port)
    raise AddressError(f"unknown address type {atype}")


def decodeSocksAddress(data: bytes | bytearray, offset: int = 0) -> tuple[int, str, int, int]:
    """
    Decode C{ATYP ADDR PORT} at C{offset}.

    @return: C{(atype, host, port, end)} where C{end} is the offset just
        after the port.
    @raise AddressError: on an unknown type or when the bytes run short.
    """
    if len(data) - offset < 1:
        raise AddressError("missing address type")
    atype = data[offset]
    if atype == ATYP_IPV4:
        end = offset + 1 + 4 + 2
        if len(data) < end:
            raise AddressError("short IPv4 address")
        host = str(ipaddress.IPv4Address(bytes(data[offset + 1 : offset + 5])))
    elif atype == ATYP_IPV6:
        end = offset + 1 + 16 + 2
        if len(data) < end:
            raise AddressError("short IPv6 address")
        host = str(ipaddress.IPv6Address(bytes(data[offset + 1 : offset + 17])))
    elif atype == ATYP_DOMAIN:
        if len(data) - offset < 2:
            raise AddressError("short domain address")
        nlen = data[offset + 1]
        end = offset + 2 + nlen + 2
        if len(data) < end:
            raise AddressError("short domain address")
        host = bytes(data[offset + 2 : offset + 2 + nlen]).decode("utf-8", "surrogateescape")
    else:
        raise AddressError(f"unknown address type {atype}")
    (port,) = struct.unpack_from(">H", data, end - 2)
    return atype, host, port, end


def splitHostPort(address: str) -> tuple[str, int]:
    """
    Split C{"host:port"} (IPv6 hosts bracketed).  A missing port is 0; an
    empty host stays empty (it means "this machine" to the side that dials).

    @raise AddressError: for a non-numeric or out-of-range port, or an
        empty address.
    """
    if address == "":
        raise AddressError("empty address")
    if address.startswith("["):
        close = address.find("]")
        if close < 0:
            raise AddressError(f"missing ']' in address {address!r}")
        host = address[1:close]
        rest = address[close + 1 :]
        if rest == "":
            return host, 0
        if not rest.startswith(":"):
            raise AddressError(f"bad address {address!r}")
        portText = rest[1:]
    elif address.count(":") == 0:
        return address, 0
    elif address.count(":") > 1:
        # A bare IPv6 literal has no port; anything else splits at the last colon.
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            raise AddressError(f"too many colons in address {address!r}") from None
        return address, 0
    else:
        host, _, portText = address.partition(":")
    return host, _parsePort(portText, address)


def _parsePort(text: str, address: str) -> int:
    if text == "":
        return 0
    if not (text.isascii() and text.isdigit()):
        raise AddressError(f"bad port in address {address!r}")
    port = int(text)
    if port > 0xFFFF:
        raise AddressError(f"port out of range in address {address!r}")
    return port


def joinHostPort(host: str, port: int) -> str:
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"
