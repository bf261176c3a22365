"""
The snappy framing format between KCP and smux (spec-transports.md 4.7), sans-IO.

Unless C{kcp.nocomp} is set, GOST wraps each direction of the KCP byte
stream in golang/snappy's buffered Writer/Reader -- the I{framing} format,
not bare snappy blocks::

    ff 06 00 00 "sNaPpY"                      stream identifier, first
    type u8 | length u24 LE | masked CRC-32C u32 LE | body
        0x00 compressed (body = raw snappy block), 0x01 uncompressed
        0x80..0xfe skippable, 0x02..0x7f fatal

GOST flushes after every write, so each smux frame becomes one chunk (a
write larger than 64 KiB several).  Chunk boundaries have nothing to do with
KCP segment boundaries, hence the incremental L{SnappyFrameDecoder}.  Go's
reader insists on the identifier first, verifies every CRC and kills the
smux session on any error; L{SnappyFrameDecoder} fails the same way and
stays failed.

The block format and the CRCs of the hot path come from cramjam (Rust): a
chunk is decoded by handing "identifier + chunk" to cramjam's own framing
decoder, which checks the CRC, and encoding uses cramjam's framing encoder,
which applies golang/snappy's rule (compressed only when it saves at least
1/8).  L{crc32c} is there for diagnostics and tests.
"""

from __future__ import annotations

import struct

import cramjam

STREAM_IDENTIFIER = b"\xff\x06\x00\x00sNaPpY"
IDENTIFIER_BODY = b"sNaPpY"

CHUNK_COMPRESSED = 0x00
CHUNK_UNCOMPRESSED = 0x01
CHUNK_PADDING = 0xFE
CHUNK_STREAM_IDENTIFIER = 0xFF

CHUNK_HEADER_SIZE = 4
CHECKSUM_SIZE = 4
#: Most uncompressed bytes one chunk may carry.
MAX_BLOCK_SIZE = 65536
#: golang/snappy's largest acceptable chunk body: C{MaxEncodedLen(65536)} plus
#: the checksum.  Longer chunks (of any type) are refused.
MAX_CHUNK_LENGTH = 32 + MAX_BLOCK_SIZE + MAX_BLOCK_SIZE // 6 + CHECKSUM_SIZE

_CRC_MASK_DELTA = 0xA282EAD8
_U32 = struct.Struct("<I")


class SnappyFrameError(ValueError):
    """
    The stream is not valid snappy framing (golang/snappy C{ErrCorrupt} /
    C{ErrUnsupported}); the smux session on top of it is lost.
    """


class SnappyChecksumError(SnappyFrameError):
    """
    A chunk's data does not match its CRC-32C.
    """


def _crc32cTable() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _crc32cTable()


def _crc32cPython(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


try:
    import google_crc32c  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    google_crc32c = None


def crc32c(data: bytes) -> int:
    """
    CRC-32C (Castagnoli) of C{data}: google-crc32c when installed, else a
    table-driven implementation (slow; off the hot path).
    """
    if google_crc32c is not None:
        return int(google_crc32c.value(bytes(data)))
    return _crc32cPython(data)


def maskChecksum(crc: int) -> int:
    """
    The snappy framing mask: C{((c >> 15) | (c << 17)) + 0xa282ead8}.
    """
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _CRC_MASK_DELTA) & 0xFFFFFFFF


def maskedCRC32C(data: bytes) -> int:
    return maskChecksum(crc32c(data))


def _uvarint(data: bytes) -> int | None:
    value = shift = 0
    for i, b in enumerate(data[:5]):
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value if i < 4 or b < 16 else None
        shift += 7
    return None


class SnappyFrameEncoder:
    """
    Encodes writes as golang/snappy's buffered Writer with a Flush after
    each (what GOST's compressing stream does): the first output starts
    with the stream identifier, each write of up to 64 KiB is one chunk,
    an empty write produces nothing.
    """

    def __init__(self) -> None:
        self.wroteIdentifier = False

    def encode(self, data: bytes) -> bytes:
        if not data:
            return b""
        framed = bytes(cramjam.snappy.compress(bytes(data)))
        if not framed.startswith(STREAM_IDENTIFIER):  # pragma: no cover - cramjam contract
            raise SnappyFrameError("cramjam produced no stream identifier")
        if self.wroteIdentifier:
            return framed[len(STREAM_IDENTIFIER) :]
        self.wroteIdentifier = True
        return framed


class SnappyFrameDecoder:
    """
    Incremental decoder: L{feed} any split of the stream, get the
    uncompressed bytes of every chunk completed so far.

    @raise SnappyFrameError: from L{feed}, on the first error and on every
        call after it.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._seenIdentifier = False
        self._error: SnappyFrameError | None = None

    def _fail(self, error: SnappyFrameError) -> SnappyFrameError:
        self._error = error
        self._buffer.clear()
        return error

    @property
    def buffered(self) -> int:
        """
        Bytes held waiting for the rest of their chunk.
        """
        return len(self._buffer)

    def feed(self, data: bytes) -> bytes:
        if self._error is not None:
            raise self._error
        buf = self._buffer
        buf += data
        out: list[bytes] = []
        offset = 0
        while len(buf) - offset >= CHUNK_HEADER_SIZE:
            chunkType = buf[offset]
            length = buf[offset + 1] | (buf[offset + 2] << 8) | (buf[offset + 3] << 16)
            self._checkHeader(chunkType, length)
            end = offset + CHUNK_HEADER_SIZE + length
            if len(buf) < end:
                break
            if chunkType == CHUNK_STREAM_IDENTIFIER:
                if buf[offset + CHUNK_HEADER_SIZE : end] != IDENTIFIER_BODY:
                    raise self._fail(SnappyFrameError("bad stream identifier"))
                self._seenIdentifier = True
            elif chunkType in (CHUNK_COMPRESSED, CHUNK_UNCOMPRESSED):
                chunk = bytes(buf[offset:end])
                try:
                    out.append(self._decodeChunk(chunkType, chunk))
                except SnappyFrameError as e:
                    raise self._fail(e) from None
            # else: skippable (0x80..0xfe), ignored
            offset = end
        del buf[:offset]
        return b"".join(out)

    def _checkHeader(self, chunkType: int, length: int) -> None:
        # The checks golang/snappy's Reader makes before reading the body.
        if not self._seenIdentifier and chunkType != CHUNK_STREAM_IDENTIFIER:
            raise self._fail(SnappyFrameError("snappy stream does not start with the stream identifier"))
        if length > MAX_CHUNK_LENGTH:
            raise self._fail(
                SnappyFrameError(f"chunk of {length} bytes exceeds the {MAX_CHUNK_LENGTH}-byte limit")
            )
        if chunkType == CHUNK_STREAM_IDENTIFIER:
            if length != len(IDENTIFIER_BODY):
                raise self._fail(SnappyFrameError(f"stream identifier chunk of {length} bytes"))
        elif chunkType in (CHUNK_COMPRESSED, CHUNK_UNCOMPRESSED):
            if length < CHECKSUM_SIZE:
                raise self._fail(SnappyFrameError(f"{length}-byte chunk has no room for its checksum"))
            if chunkType == CHUNK_UNCOMPRESSED and length - CHECKSUM_SIZE > MAX_BLOCK_SIZE:
                raise self._fail(
                    SnappyFrameError(f"uncompressed chunk of {length - CHECKSUM_SIZE} bytes exceeds 65536")
                )
        elif chunkType < 0x80:
            raise self._fail(SnappyFrameError(f"reserved unskippable chunk type 0x{chunkType:02x}"))

    def _decodeChunk(self, chunkType: int, chunk: bytes) -> bytes:
        body = chunk[CHUNK_HEADER_SIZE + CHECKSUM_SIZE :]
        if chunkType == CHUNK_COMPRESSED:
            decodedLength = _uvarint(body)
            if decodedLength is None:
                raise SnappyFrameError("compressed chunk has a corrupt length")
            if decodedLength > MAX_BLOCK_SIZE:
                raise SnappyFrameError(f"compressed chunk decodes to {decodedLength} bytes (over 65536)")
        try:
            # cramjam's framing decoder checks the CRC for us.
            return bytes(cramjam.snappy.decompress(STREAM_IDENTIFIER + chunk))
        except cramjam.DecompressionError:
            pass
        # Say what was wrong (slow path, errors only).
        if chunkType == CHUNK_COMPRESSED:
            try:
                data = bytes(cramjam.snappy.decompress_raw(body))
            except cramjam.DecompressionError as e:
                raise SnappyFrameError(f"corrupt compressed chunk: {e}") from None
        else:
            data = body
        (expected,) = _U32.unpack_from(chunk, CHUNK_HEADER_SIZE)
        actual = maskedCRC32C(data)
        if actual != expected:
            raise SnappyChecksumError(
                f"chunk checksum mismatch: chunk says {expected:08x}, data has {actual:08x}"
            )
        raise SnappyFrameError("chunk rejected by the snappy decoder")


__all__ = [
    "CHUNK_COMPRESSED",
    "CHUNK_PADDING",
    "CHUNK_STREAM_IDENTIFIER",
    "CHUNK_UNCOMPRESSED",
    "MAX_BLOCK_SIZE",
    "MAX_CHUNK_LENGTH",
    "STREAM_IDENTIFIER",
    "SnappyChecksumError",
    "SnappyFrameDecoder",
    "SnappyFrameEncoder",
    "SnappyFrameError",
    "crc32c",
    "maskChecksum",
    "maskedCRC32C",
]
