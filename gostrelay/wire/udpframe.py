"""
The two ways GOST carries UDP datagrams over a byte stream (spec-relay.md
section 5), sans-IO.

  - C{LEN(2) PAYLOAD}: UDP CONNECT and UDP forward mode, where the stream's
    request fixed the peer (L{encodeLengthFrame}, L{LengthFrameParser});
  - the UDP tunnel datagram C{LEN(2) FRAG(1) ATYP ADDR PORT DATA}, the SOCKS5
    UDP header with its reserved field turned into the data length: UDP BIND
    and UDP association, where each datagram names its peer
    (L{encodeTunnelDatagram}, L{TunnelDatagramParser}).

Parsers are incremental (feed any split of the stream, get whole datagrams)
and bounded: they hold at most one frame (65535 bytes of data plus its
header) at a time.
"""

from __future__ import annotations

import struct

from gostrelay.wire.address import AddressError, atypeForHost, decodeSocksAddress, encodeSocksAddress

MAX_DATAGRAM = 0xFFFF

#: The FRAG byte GOST writes in tunnel datagrams; readers ignore it.
TUNNEL_FRAG = 0xFF


class FrameError(ValueError):
    """
    The stream does not carry valid frames.
    """


def encodeLengthFrame(payload: bytes) -> bytes:
    if len(payload) > MAX_DATAGRAM:
        raise FrameError(f"datagram of {len(payload)} bytes is larger than 65535")
    return struct.pack(">H", len(payload)) + payload


class LengthFrameParser:
    """
    Splits a stream of C{LEN PAYLOAD} frames into datagrams.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        self._buffer += data
        buf = self._buffer
        offset = 0
        while len(buf) - offset >= 2:
            (length,) = struct.unpack_from(">H", buf, offset)
            end = offset + 2 + length
            if len(buf) < end:
                break
            out.append(bytes(buf[offset + 2 : end]))
            offset = end
        if offset:
            del buf[:offset]
        return out

    @property
    def buffered(self) -> int:
        return len(self._buffer)


def encodeTunnelDatagram(host: str, port: int, data: bytes) -> bytes:
    """
    One tunnel datagram.  Empty datagrams cannot be sent this way (a Go
    reader takes LEN 0 for a classic SOCKS5 datagram and desynchronises):
    L{FrameError}.
    """
    if not data:
        raise FrameError("empty datagrams cannot be carried in the tunnel framing")
    if len(data) > MAX_DATAGRAM:
        raise FrameError(f"datagram of {len(data)} bytes is larger than 65535")
    try:
        address = encodeSocksAddress(atypeForHost(host), host, port)
    except AddressError as e:
        raise FrameError(str(e)) from None
    return struct.pack(">HB", len(data), TUNNEL_FRAG) + address + data


class TunnelDatagramParser:
    """
    Splits a stream of tunnel datagrams into C{(host, port, data)}.

    A LEN of 0 (which GOST never sends) is delivered as an empty datagram
    and framing continues.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[str, int, bytes]]:
        out: list[tuple[str, int, bytes]] = []
        self._buffer += data
        buf = self._buffer
        offset = 0
        while len(buf) - offset >= 4:
            (length,) = struct.unpack_from(">H", buf, offset)
            try:
                _, host, port, addrEnd = decodeSocksAddress(buf, offset + 3)
            except AddressError as e:
                if "unknown address type" in str(e):
                    raise FrameError(str(e)) from None
                break
            end = addrEnd + length
            if len(buf) < end:
                break
            out.append((host, port, bytes(buf[addrEnd:end])))
            offset = end
        if offset:
            del buf[:offset]
        return out

    @property
    def buffered(self) -> int:
        return len(self._buffer)
