"""
WebSocket frames (RFC 6455 section 5) as a relay carrier uses them, sans-IO.

autobahn does a connection's opening handshake; after it, the data frames
of a relay carrier are ours.  autobahn's framing costs ~100 us of Python
per 32 KiB frame across a chain (it assembles whole messages, builds a
masker object per frame, and logs per frame), which was half of a wss
chain's CPU per GB.  Here a frame costs a header parse and one XOR: a
payload is delivered as it arrives (unmasked as it goes, no message
assembly), and what is not data is handed back whole:

  - L{FrameReader} parses what a peer sends: data payloads in order, each
    complete control frame (ping, pong, close) as a L{ControlFrame} with
    its raw bytes (for autobahn to answer as it always has), and
    L{FrameError} for anything RFC 6455 says fails the connection;
  - L{encodeData} writes one binary message per payload chunk, masked with
    a fresh key per frame when the writer is a client;
  - L{mask} is the XOR, in C when autobahn's NVX masker is installed.

Text messages (GOST never sends them) are collected and checked to be
UTF-8 before they are delivered, within the same message size cap.
"""

from __future__ import annotations

import os
import struct
from typing import Callable, NamedTuple

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

#: RFC 6455 close codes of the failures L{FrameReader} finds.
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_MESSAGE_TOO_BIG = 1009

_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")


class FrameError(ValueError):
    """
    What a peer sent fails the WebSocket connection: C{code} is the close
    code RFC 6455 gives the failure, the message says why.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class ControlFrame(NamedTuple):
    """
    A complete control frame: its opcode, and its bytes as received.
    """

    opcode: int
    raw: bytes


def _maskByInteger(buffer: bytearray, start: int, length: int, key: bytes) -> None:
    # The XOR of two big integers: C speed for the arithmetic, no loop in
    # Python (~2 us per KiB; the fallback when NVX is not installed).
    if not length:
        return
    keys = key * ((length + 3) >> 2)
    view = memoryview(buffer)[start : start + length]
    view[:] = (int.from_bytes(view, "little") ^ int.from_bytes(keys[:length], "little")).to_bytes(length, "little")
    view.release()


def _nvxMasker() -> Callable[[bytearray, int, int, bytes], None] | None:
    """
    autobahn's NVX XOR masker (C, SSE2), called in place on our buffer,
    without its wrapper's per-frame objects and two copies: ~2 us per
    32 KiB where the wrapper takes ~9 and L{_maskByInteger} ~70.
    """
    try:
        from autobahn.websocket import USES_NVX

        if not USES_NVX:
            return None
        from _nvx_xormasker import ffi, lib  # type: ignore[import-not-found]
    except ImportError:
        return None
    new, free, process, fromBuffer, release = (
        lib.nvx_xormask_new,
        lib.nvx_xormask_free,
        lib.nvx_xormask_process,
        ffi.from_buffer,
        ffi.release,
    )

    def maskNVX(buffer: bytearray, start: int, length: int, key: bytes) -> None:
        if length < 64:
            _maskByInteger(buffer, start, length, key)
            return
        # nvx_xormask_new picks the fastest implementation (SSE2 here);
        # cffi passes the key's bytes without a copy.
        masker = new(key)
        pointer = fromBuffer("uint8_t[]", buffer)
        try:
            process(masker, pointer + start, length)
        finally:
            release(pointer)  # the bytearray may be resized again
            free(masker)

    return maskNVX


#: C{maskInto(buffer, start, length, key)}: XOR C{length} bytes of
#: C{buffer} from C{start} with the 4-byte C{key} repeated, in place
#: (masking and unmasking are the same operation).
maskInto: Callable[[bytearray, int, int, bytes], None] = _nvxMasker() or _maskByInteger


def mask(data: bytes | memoryview, key: bytes) -> bytes:
    """
    C{data} masked (or unmasked) with C{key}.
    """
    buffer = bytearray(data)
    maskInto(buffer, 0, len(buffer), key)
    return bytes(buffer)


def _header(opcode: int, size: int, key: bytes | None) -> bytes:
    first = 0x80 | opcode  # FIN: every frame we write is a whole message
    bit = 0x80 if key is not None else 0
    if size < 126:
        head = bytes((first, bit | size))
    elif size < 65536:
        head = bytes((first, bit | 126)) + _U16.pack(size)
    else:
        head = bytes((first, bit | 127)) + _U64.pack(size)
    return head + key if key is not None else head


class _RandomPool:
    """
    Bytes of C{os.urandom} drawn L{size} at a time: masking keys for a
    thousand frames per C{getrandom} call instead of one call (~1 us) per
    write.  The keys are as unpredictable as C{os.urandom}'s, which is what
    RFC 6455 section 5.3 asks of them.
    """

    size = 4096

    def __init__(self) -> None:
        self._buffer = b""
        self._offset = 0

    def take(self, count: int) -> bytes:
        offset = self._offset
        if offset + count > len(self._buffer):
            self._buffer = os.urandom(max(self.size, count))
            offset = 0
        self._offset = offset + count
        return self._buffer[offset : offset + count]


_keys = _RandomPool()


def encodeData(
    data: bytes, chunk: int, masked: bool, randomKeys: Callable[[int], bytes] = _keys.take
) -> bytes | bytearray:
    """
    C{data} as binary messages of at most C{chunk} bytes each, to be
    written as one.  A client (C{masked}) masks each frame with a fresh key
    from C{randomKeys}, as RFC 6455 requires: the headers and payloads are
    copied once into one C{bytearray} (returned as is, for a carrier that
    takes any buffer) and masked there.
    """
    size = len(data)
    count = max(1, (size + chunk - 1) // chunk)
    if count == 1:
        pieces: list[bytes | memoryview] = [data]
    else:
        view = memoryview(data)
        pieces = [view[offset : offset + chunk] for offset in range(0, size, chunk)]
    if not masked:
        if count == 1:
            return _header(OP_BINARY, size, None) + data
        parts: list[bytes | memoryview] = []
        for piece in pieces:
            parts.append(_header(OP_BINARY, len(piece), None))
            parts.append(piece)
        return b"".join(parts)
    keys = randomKeys(4 * count)
    parts = []
    spans = []
    position = 0
    for i, piece in enumerate(pieces):
        length = len(piece)
        head = _header(OP_BINARY, length, keys[4 * i : 4 * i + 4])
        parts.append(head)
        parts.append(piece)
        position += len(head)
        spans.append(position)
        position += length
    out = bytearray().join(parts)
    for i, piece in enumerate(pieces):
        maskInto(out, spans[i], len(piece), keys[4 * i : 4 * i + 4])
    return out


def _rotate(key: bytes, offset: int) -> bytes:
    shift = offset & 3
    return key[shift:] + key[:shift] if shift else key


class FrameReader:
    """
    Incremental parser of the frames a peer sends after the opening
    handshake.

    @param masked: whether the peer's frames must be masked (a server
        reads a client's, which must; a client reads a server's, which
        must not be).
    @param maxMessage: the largest message, in one frame or in fragments,
        in payload bytes; past it the connection fails (1009).  Data
        payloads are delivered as they arrive, so nothing of this size is
        held, except for a text message, checked whole.
    """

    def __init__(self, masked: bool, maxMessage: int) -> None:
        self._masked = masked
        self._maxMessage = maxMessage
        #: Bytes of a frame header (or of a whole control frame) not yet
        #: complete.
        self._pending = b""
        #: Payload bytes of the current data frame still to come.
        self._remaining = 0
        #: The current data frame's key, and how much of its payload was
        #: unmasked already (the key's phase).
        self._key: bytes | None = None
        self._done = 0
        self._fin = True
        self._inMessage = False
        self._messageSize = 0
        #: A text message's payload so far (checked as UTF-8 when whole).
        self._text: list[bytes] | None = None
        #: Where the data payloads of the current read are in it.
        self._spans: list[tuple[int, int]] = []

    #: The L{FrameError} that ended parsing, if any.
    error: FrameError | None = None

    def feed(self, data: bytes) -> list[bytes | ControlFrame]:
        """
        Parse C{data}: the data payload bytes and the control frames in it,
        in order, up to the first breach of the protocol, which is then
        L{error} (what came before it is still returned; nothing after it
        is parsed, now or later).
        """
        out: list[bytes | ControlFrame] = []
        if self.error is not None:
            return out
        try:
            self._feed(data, out)
        except FrameError as e:
            self.error = e
        self._flush(out)
        self._data = b""
        self._buffer = None
        return out

    def _feed(self, data: bytes, out: list[bytes | ControlFrame]) -> None:
        if self._pending:
            data = self._pending + data
            self._pending = b""
        self._data = data
        end = len(data)
        position = 0
        while position < end:
            remaining = self._remaining
            if remaining:
                take = remaining if remaining < end - position else end - position
                stop = position + take
                self._remaining = remaining - take
                key = self._key
                if key is not None:
                    # The whole read copied once into a buffer, each masked
                    # payload in it unmasked in place (the headers in
                    # between are skipped when it is delivered).
                    buffer = self._buffer
                    if buffer is None:
                        buffer = self._buffer = bytearray(data)
                    maskInto(buffer, position, take, _rotate(key, self._done) if self._done else key)
                    self._done += take
                if self._text is not None:
                    source = self._buffer if key is not None else data
                    self._text.append(bytes(memoryview(source)[position:stop]))  # type: ignore[arg-type]
                else:
                    self._spans.append((position, stop))
                position = stop
                if not self._remaining:
                    self._frameEnd(out)
                continue
            position = self._header(data, position, end, out)
            if position < 0:
                break

    #: The current read, and its copy unmasked in place (masked readers).
    _data = b""
    _buffer: bytearray | None = None

    def _flush(self, out: list[bytes | ControlFrame]) -> None:
        """
        Put the data payloads of the current read parsed so far in C{out},
        as one C{bytes}.
        """
        spans = self._spans
        if not spans:
            return
        self._spans = []
        source: bytes | bytearray = self._data if self._buffer is None else self._buffer
        if len(spans) == 1:
            start, stop = spans[0]
            if start == 0 and stop == len(source) and type(source) is bytes:
                out.append(source)
            else:
                out.append(bytes(memoryview(source)[start:stop]))
            return
        view = memoryview(source)
        out.append(b"".join([view[start:stop] for start, stop in spans]))

    def _header(self, data: bytes, position: int, end: int, out: list[bytes | ControlFrame]) -> int:
        """
        Parse the frame header at C{position}: the position after it (or
        after the whole control frame), or -1 when it is not complete (it
        is kept for the next L{feed}).
        """
        available = end - position
        if available < 2:
            self._pending = data[position:]
            return -1
        first, second = data[position], data[position + 1]
        opcode = first & 0x0F
        fin = bool(first & 0x80)
        if first & 0x70:
            raise FrameError(CLOSE_PROTOCOL_ERROR, f"reserved bits {(first & 0x70) >> 4} set, no extension negotiated")
        isMasked = bool(second & 0x80)
        if isMasked != self._masked:
            raise FrameError(
                CLOSE_PROTOCOL_ERROR, "unmasked client-to-server frame" if self._masked else "masked server-to-client frame"
            )
        length = second & 0x7F
        size = 2 + (4 if isMasked else 0) + (2 if length == 126 else 8 if length == 127 else 0)
        if opcode >= 8:
            if opcode > OP_PONG:
                raise FrameError(CLOSE_PROTOCOL_ERROR, f"control frame with reserved opcode {opcode}")
            if not fin:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "fragmented control frame")
            if length > 125:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "control frame with a payload over 125 bytes")
            total = size + length
            if available < total:
                self._pending = data[position:]
                return -1
            self._flush(out)
            out.append(ControlFrame(opcode, data[position : position + total]))
            return position + total
        if opcode > OP_BINARY:
            raise FrameError(CLOSE_PROTOCOL_ERROR, f"data frame with reserved opcode {opcode}")
        if opcode == OP_CONTINUATION and not self._inMessage:
            raise FrameError(CLOSE_PROTOCOL_ERROR, "continuation frame outside a fragmented message")
        if opcode != OP_CONTINUATION and self._inMessage:
            raise FrameError(CLOSE_PROTOCOL_ERROR, "new data frame inside a fragmented message")
        if available < size:
            self._pending = data[position:]
            return -1
        index = position + 2
        if length == 126:
            length = _U16.unpack_from(data, index)[0]
            index += 2
            if length < 126:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "frame length not in its shortest encoding")
        elif length == 127:
            length = _U64.unpack_from(data, index)[0]
            index += 8
            if length >> 63:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "frame length over 2^63")
            if length < 65536:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "frame length not in its shortest encoding")
        messageSize = (self._messageSize if opcode == OP_CONTINUATION else 0) + length
        if messageSize > self._maxMessage:
            raise FrameError(CLOSE_MESSAGE_TOO_BIG, f"message larger than {self._maxMessage} bytes")
        self._messageSize = messageSize
        if opcode == OP_TEXT:
            self._text = []
        self._key = data[index : index + 4] if isMasked else None
        self._done = 0
        self._fin = fin
        self._inMessage = True
        self._remaining = length
        if not length:
            self._frameEnd(out)
        return position + size

    def _frameEnd(self, out: list[bytes | ControlFrame]) -> None:
        if not self._fin:
            return
        self._inMessage = False
        self._messageSize = 0
        text, self._text = self._text, None
        if text is not None:
            self._flush(out)
            payload = b"".join(text)
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                raise FrameError(CLOSE_INVALID_PAYLOAD, "text message that is not UTF-8") from None
            out.append(payload)
