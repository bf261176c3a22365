"""
The server name of a TLS ClientHello (RFC 8446 4.1.2, RFC 6066 3), sans-IO:
what the local entry needs to forward a TLS connection to the host the
client asked for without terminating TLS (GOST's C{sni} handler).

Like GOST's dissector, only the first record is read, and it must hold the
whole ClientHello (every current client sends it in one record).
L{serverName} takes every byte received so far and returns C{None} while
the record is incomplete, the name once it is there (C{""} when the
client sent none); anything that is not a ClientHello raises
L{TLSHelloError}.  At most one record (5 + 16384 bytes) is ever needed.
"""

from __future__ import annotations

import struct

RECORD_HANDSHAKE = 0x16
HANDSHAKE_CLIENT_HELLO = 0x01
EXT_SERVER_NAME = 0x0000
NAME_TYPE_HOST = 0x00

#: A TLS record's largest plaintext fragment.
MAX_RECORD = 16384

#: The most bytes L{serverName} can need.
MAX_HELLO_BYTES = 5 + MAX_RECORD


class TLSHelloError(ValueError):
    """
    The bytes are not a TLS ClientHello we can read.
    """


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, n: int) -> bytes:
        if self.offset + n > len(self.data):
            raise TLSHelloError("truncated ClientHello")
        out = self.data[self.offset : self.offset + n]
        self.offset += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def vector(self, lengthBytes: int) -> bytes:
        n = self.u8() if lengthBytes == 1 else self.u16()
        return self.take(n)


def serverName(buffer: bytes) -> str | None:
    """
    The host name the ClientHello at the start of C{buffer} asks for.

    @return: C{None} if more bytes are needed, C{""} if it names none.
    @raise TLSHelloError: if C{buffer} is not a ClientHello in one record,
        or the name is not a plain ASCII host name.
    """
    if len(buffer) < 5:
        return None
    if buffer[0] != RECORD_HANDSHAKE:
        raise TLSHelloError(f"not a TLS handshake record (0x{buffer[0]:02x})")
    if buffer[1] != 3:
        raise TLSHelloError(f"not a TLS record version (0x{buffer[1]:02x}{buffer[2]:02x})")
    (length,) = struct.unpack_from(">H", buffer, 3)
    if length > MAX_RECORD or length < 4:
        raise TLSHelloError(f"bad TLS record length {length}")
    if len(buffer) < 5 + length:
        return None
    record = _Reader(bytes(buffer[5 : 5 + length]))
    if record.u8() != HANDSHAKE_CLIENT_HELLO:
        raise TLSHelloError("the first handshake message is not a ClientHello")
    helloLength = int.from_bytes(record.take(3), "big")
    if helloLength > length - 4:
        raise TLSHelloError("ClientHello spans several records")
    body = _Reader(record.take(helloLength))
    body.take(2 + 32)  # legacy_version, random
    body.vector(1)  # legacy_session_id
    body.vector(2)  # cipher_suites
    body.vector(1)  # legacy_compression_methods
    if body.offset == len(body.data):
        return ""  # no extensions at all (SSL 3 style)
    extensions = _Reader(body.vector(2))
    while extensions.offset < len(extensions.data):
        kind = extensions.u16()
        data = extensions.vector(2)
        if kind != EXT_SERVER_NAME:
            continue
        names = _Reader(_Reader(data).vector(2))
        while names.offset < len(names.data):
            nameType = names.u8()
            name = names.vector(2)
            if nameType == NAME_TYPE_HOST:
                return _hostName(name)
        return ""
    return ""


def _hostName(raw: bytes) -> str:
    try:
        name = raw.decode("ascii")
    except UnicodeDecodeError:
        raise TLSHelloError("server name is not ASCII") from None
    if not name or any(c in name for c in "\x00/\\@ ") or not name.isprintable() or len(name) > 255:
        raise TLSHelloError(f"bad server name {name!r}")
    return name.rstrip(".")
