"""
xtaci/smux frames, versions 1 and 2 (spec-relay.md section 4), sans-IO.

C{VER(1) CMD(1) LEN(2, little-endian) SID(4, little-endian) DATA(LEN)}.
GOST runs smux over the relay stream of a TCP BIND (and under kcp).  There
is no RST and no GOAWAY: a session ends when its carrier closes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SYN = 0
FIN = 1
PSH = 2
NOP = 3
UPD = 4

HEADER_SIZE = 8
MAX_FRAME_DATA = 0xFFFF

_HEADER = struct.Struct("<BBHI")
_UPDATE = struct.Struct("<II")

COMMAND_NAMES = {SYN: "SYN", FIN: "FIN", PSH: "PSH", NOP: "NOP", UPD: "UPD"}


class SmuxError(ValueError):
    """
    The bytes are not valid smux frames for this session: the session is
    dead (smux has no way to report the error to the peer).
    """


@dataclass(frozen=True)
class Frame:
    version: int
    cmd: int
    sid: int
    data: bytes = b""

    def encode(self) -> bytes:
        return encodeFrame(self.version, self.cmd, self.sid, self.data)


def encodeFrame(version: int, cmd: int, sid: int, data: bytes = b"") -> bytes:
    if len(data) > MAX_FRAME_DATA:
        raise SmuxError(f"frame data of {len(data)} bytes is larger than 65535")
    return _HEADER.pack(version, cmd, len(data), sid) + data


def encodeUpdate(version: int, sid: int, consumed: int, window: int) -> bytes:
    """
    A version 2 window update: the receiver has consumed C{consumed} bytes
    of the stream in all and offers C{window} more.
    """
    return encodeFrame(version, UPD, sid, _UPDATE.pack(consumed & 0xFFFFFFFF, window & 0xFFFFFFFF))


def decodeUpdate(data: bytes) -> tuple[int, int]:
    if len(data) != _UPDATE.size:
        raise SmuxError("UPD frame without its 8 bytes")
    consumed, window = _UPDATE.unpack(data)
    return consumed, window


class FrameParser:
    """
    Incremental frame parser for one session.

    @param version: the session's version; a frame of another version is
        an error (smux kills the session).
    """

    def __init__(self, version: int) -> None:
        self.version = version
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        buf = self._buffer
        frames: list[Frame] = []
        offset = 0
        while len(buf) - offset >= HEADER_SIZE:
            version, cmd, length, sid = _HEADER.unpack_from(buf, offset)
            if version != self.version:
                raise SmuxError(f"frame version {version}, session version {self.version}")
            if cmd not in COMMAND_NAMES or (cmd == UPD and self.version < 2):
                raise SmuxError(f"unknown command {cmd}")
            if cmd == NOP and length:
                raise SmuxError("NOP frame with data")
            if cmd == UPD and length != _UPDATE.size:
                raise SmuxError("UPD frame without its 8 bytes")
            end = offset + HEADER_SIZE + length
            if len(buf) < end:
                break
            frames.append(Frame(version, cmd, sid, bytes(buf[offset + HEADER_SIZE : end])))
            offset = end
        if offset:
            del buf[:offset]
        return frames

    @property
    def buffered(self) -> int:
        return len(self._buffer)
