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
from typing import Generic, TypeVar

from gostrelay.wire.address import AddressError, atypeForHost, decodeSocksAddress, encodeSocksAddress

MAX_DATAGRAM = 0xFFFF

T = TypeVar("T")

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


class _FrameParser(Generic[T]):
    """
    The incremental, bounded loop both parsers share: whole frames out,
    the incomplete tail kept.  A subclass says where the frame at an
    offset ends (L{_frameAt}).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def _frameAt(self, buf: bytearray, offset: int) -> tuple[T, int] | None:
        """
        The frame starting at C{offset} and the offset after it, or C{None}
        while it is incomplete.
        """
        raise NotImplementedError

    def feed(self, data: bytes) -> list[T]:
        out: list[T] = []
        self._buffer += data
        buf = self._buffer
        offset = 0
        while (frame := self._frameAt(buf, offset)) is not None:
            item, offset = frame
            out.append(item)
        if offset:
            del buf[:offset]
        return out

    @property
    def buffered(self) -> int:
        return len(self._buffer)


class LengthFrameParser(_FrameParser[bytes]):
    """
    Splits a stream of C{LEN PAYLOAD} frames into datagrams.
    """

    def _frameAt(self, buf: bytearray, offset: int) -> tuple[bytes, int] | None:
        if len(buf) - offset < 2:
            return None
        (length,) = struct.unpack_from(">H", buf, offset)
        end = offset + 2 + length
        if len(buf) < end:
            return None
        return bytes(buf[offset + 2 : end]), end


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


class TunnelDatagramParser(_FrameParser[tuple[str, int, bytes]]):
    """
    Splits a stream of tunnel datagrams into C{(host, port, data)}.

    A LEN of 0 (which GOST never sends) is delivered as an empty datagram
    and framing continues.
    """

    def _frameAt(self, buf: bytearray, offset: int) -> tuple[tuple[str, int, bytes], int] | None:
        if len(buf) - offset < 4:
            return None
        (length,) = struct.unpack_from(">H", buf, offset)
        try:
            _, host, port, addrEnd = decodeSocksAddress(buf, offset + 3)
        except AddressError as e:
            if "unknown address type" in str(e):
                raise FrameError(str(e)) from None
            return None
        end = addrEnd + length
        if len(buf) < end:
            return None
        return (host, port, bytes(buf[addrEnd:end])), end


class UDPConnectReframer:
    """
    One UDP CONNECT's C{LEN PAYLOAD} frames (what the relay's datagram
    channel writes to any UDP-capable hop) carried on by a proxy hop in
    another framing: GOST's tunnel datagrams addressed to the target
    (SOCKS5 command 0xF3, HTTP C{X-Gost-Protocol: udp}), or bare datagrams
    (a standard SOCKS5 UDP ASSOCIATE).  Both directions, incremental and
    bounded as the parsers are.

    @ivar dropped: datagrams from the application the tunnel framing
        cannot carry (empty ones).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.dropped = 0
        self._fromApp = LengthFrameParser()
        self._fromPeer = TunnelDatagramParser()

    def datagramsFromApp(self, data: bytes) -> list[bytes]:
        """
        The application's frames as datagrams.
        """
        return self._fromApp.feed(data)

    def tunnelFromApp(self, data: bytes) -> bytes:
        """
        The application's frames as tunnel datagrams to the target.
        """
        frames = []
        for payload in self._fromApp.feed(data):
            try:
                frames.append(encodeTunnelDatagram(self.host, self.port, payload))
            except FrameError:
                self.dropped += 1
        return b"".join(frames)

    def tunnelToApp(self, data: bytes) -> bytes:
        """
        The peer's tunnel datagrams as the application's frames.

        @raise FrameError: the peer's stream is not tunnel datagrams.
        """
        return b"".join(encodeLengthFrame(payload) for _host, _port, payload in self._fromPeer.feed(data))

    @staticmethod
    def toApp(payload: bytes) -> bytes:
        """
        One datagram from the peer as the application's frame.
        """
        return encodeLengthFrame(payload)
