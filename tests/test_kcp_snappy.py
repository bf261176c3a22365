"""
Tests for L{gostrelay.wire.kcp.snappyframe}: the snappy framing format GOST
puts between KCP and smux (spec-transports.md 4.7).

  - L{ChecksumTests}: CRC-32C and its masking.
  - L{EncoderTests}: identifier once, a chunk per write, Go's 12.5 % rule,
    64 KiB chunks, the spec's SYN example.
  - L{DecoderTests}: what golang/snappy's Reader refuses, skippable chunks,
    sticky errors.
  - L{PropertyTests} (hypothesis): any writes, any split, same bytes out.

The chunks of the GOST captures are decoded in C{test_kcp_vectors}.
"""

from __future__ import annotations

import os
import struct

import cramjam
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gostrelay.wire.kcp import snappyframe
from gostrelay.wire.kcp.snappyframe import (
    MAX_BLOCK_SIZE,
    MAX_CHUNK_LENGTH,
    STREAM_IDENTIFIER,
    SnappyChecksumError,
    SnappyFrameDecoder,
    SnappyFrameEncoder,
    SnappyFrameError,
    crc32c,
    maskChecksum,
    maskedCRC32C,
)
from tests.vectors import hexBytes

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)

SYN = hexBytes("01 00 00 00 03 00 00 00")
#: Spec 4.9: the snappy stream of a lone SYN.
SYN_STREAM = hexBytes("ff 06 00 00 73 4e 61 50 70 59 | 01 0c 00 00 | 44 39 ac 2f | 01 00 00 00 03 00 00 00")


def _chunk(chunkType: int, body: bytes) -> bytes:
    return bytes([chunkType]) + len(body).to_bytes(3, "little") + body


def _uncompressed(data: bytes, crc: int | None = None) -> bytes:
    if crc is None:
        crc = maskedCRC32C(data)
    return _chunk(0x01, struct.pack("<I", crc) + data)


def _compressed(data: bytes) -> bytes:
    return _chunk(0x00, struct.pack("<I", maskedCRC32C(data)) + bytes(cramjam.snappy.compress_raw(data)))


def _chunks(stream: bytes) -> list[tuple[int, bytes]]:
    out, offset = [], 0
    while offset < len(stream):
        length = int.from_bytes(stream[offset + 1 : offset + 4], "little")
        out.append((stream[offset], stream[offset + 4 : offset + 4 + length]))
        offset += 4 + length
    return out


class ChecksumTests(SynchronousTestCase):
    def test_crc32c(self) -> None:
        self.assertEqual(crc32c(b"123456789"), 0xE3069283)
        self.assertEqual(crc32c(b""), 0)
        self.assertEqual(snappyframe._crc32cPython(b"123456789"), 0xE3069283)

    def test_masked(self) -> None:
        # the SYN chunk of spec 4.9 and the captures (2fac3944)
        self.assertEqual(maskedCRC32C(SYN), 0x2FAC3944)
        c = 0x12345678
        self.assertEqual(maskChecksum(c), (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


class EncoderTests(SynchronousTestCase):
    def test_synExample(self) -> None:
        self.assertEqual(SnappyFrameEncoder().encode(SYN), SYN_STREAM)

    def test_identifierOnce(self) -> None:
        encoder = SnappyFrameEncoder()
        self.assertTrue(encoder.encode(b"a").startswith(STREAM_IDENTIFIER))
        self.assertFalse(encoder.encode(b"a").startswith(STREAM_IDENTIFIER))
        self.assertEqual(encoder.encode(b"a"), _uncompressed(b"a"))

    def test_emptyWrite(self) -> None:
        """
        golang/snappy writes nothing, not even the identifier, for an empty
        flush.
        """
        encoder = SnappyFrameEncoder()
        self.assertEqual(encoder.encode(b""), b"")
        self.assertFalse(encoder.wroteIdentifier)
        self.assertTrue(encoder.encode(b"x").startswith(STREAM_IDENTIFIER))

    def test_compressible(self) -> None:
        out = SnappyFrameEncoder().encode(b"a" * 1000)
        chunks = _chunks(out[len(STREAM_IDENTIFIER) :])
        self.assertEqual([t for t, _ in chunks], [0x00])
        self.assertEqual(chunks[0][1][:4], struct.pack("<I", maskedCRC32C(b"a" * 1000)))

    def test_twelveAndAHalfPercent(self) -> None:
        """
        Compressed only when it saves at least 1/8 of the data (Go's rule).
        """
        for size in [1, 10, 100, 1000, 5000]:
            for zeros in range(0, size + 1, max(1, size // 37)):
                data = os.urandom(size - zeros) + bytes(zeros)
                raw = bytes(cramjam.snappy.compress_raw(data))
                expected = 0x00 if len(raw) < len(data) - len(data) // 8 else 0x01
                ((chunkType, _),) = _chunks(SnappyFrameEncoder().encode(data)[10:])
                self.assertEqual(chunkType, expected, (size, zeros))

    def test_largeWriteSplits(self) -> None:
        data = os.urandom(MAX_BLOCK_SIZE * 2 + 5)
        chunks = _chunks(SnappyFrameEncoder().encode(data)[10:])
        self.assertEqual(len(chunks), 3)
        self.assertEqual([len(body) - 4 for _, body in chunks], [MAX_BLOCK_SIZE, MAX_BLOCK_SIZE, 5])


class DecoderTests(SynchronousTestCase):
    def test_synExample(self) -> None:
        self.assertEqual(SnappyFrameDecoder().feed(SYN_STREAM), SYN)

    def test_incremental(self) -> None:
        decoder = SnappyFrameDecoder()
        self.assertEqual(decoder.feed(SYN_STREAM[:13]), b"")
        self.assertEqual(decoder.buffered, 3)
        # Go's Writer puts an uncompressed chunk's header and body in two writes
        self.assertEqual(decoder.feed(SYN_STREAM[13:18]), b"")
        self.assertEqual(decoder.feed(SYN_STREAM[18:]), SYN)
        self.assertEqual(decoder.buffered, 0)

    def test_compressedChunk(self) -> None:
        data = b"compress me " * 100
        self.assertEqual(SnappyFrameDecoder().feed(STREAM_IDENTIFIER + _compressed(data)), data)

    def test_identifierRequiredFirst(self) -> None:
        e = self.assertRaises(SnappyFrameError, SnappyFrameDecoder().feed, _uncompressed(b"x"))
        self.assertIn("identifier", str(e))
        # even a skippable chunk may not come first
        self.assertRaises(SnappyFrameError, SnappyFrameDecoder().feed, _chunk(0xFE, b""))

    def test_repeatedIdentifier(self) -> None:
        """
        Concatenated streams are fine.
        """
        stream = SYN_STREAM + SYN_STREAM
        self.assertEqual(SnappyFrameDecoder().feed(stream), SYN + SYN)

    def test_badIdentifier(self) -> None:
        self.assertRaises(SnappyFrameError, SnappyFrameDecoder().feed, b"\xff\x06\x00\x00sNaPpX")
        self.assertRaises(SnappyFrameError, SnappyFrameDecoder().feed, b"\xff\x07\x00\x00")

    def test_badChecksum(self) -> None:
        stream = STREAM_IDENTIFIER + _uncompressed(b"data", crc=1)
        self.assertRaises(SnappyChecksumError, SnappyFrameDecoder().feed, stream)
        good = bytearray(STREAM_IDENTIFIER + _compressed(b"z" * 300))
        good[14] ^= 0x40  # a CRC byte
        self.assertRaises(SnappyChecksumError, SnappyFrameDecoder().feed, bytes(good))

    def test_corruptCompressed(self) -> None:
        body = b"\x05\xff\xff\xff"  # says 5 bytes, then garbage
        stream = STREAM_IDENTIFIER + _chunk(0x00, struct.pack("<I", 0) + body)
        e = self.assertRaises(SnappyFrameError, SnappyFrameDecoder().feed, stream)
        self.assertNotIsInstance(e, SnappyChecksumError)

    def test_skippable(self) -> None:
        stream = STREAM_IDENTIFIER + _chunk(0xFE, b"\0" * 10) + _chunk(0x80, b"meta") + _uncompressed(b"ok")
        self.assertEqual(SnappyFrameDecoder().feed(stream), b"ok")

    def test_reservedUnskippable(self) -> None:
        for chunkType in (0x02, 0x40, 0x7F):
            e = self.assertRaises(
                SnappyFrameError, SnappyFrameDecoder().feed, STREAM_IDENTIFIER + _chunk(chunkType, b"x")
            )
            self.assertIn("unskippable", str(e))

    def test_errorsAtTheHeader(self) -> None:
        """
        Impossible lengths are refused as soon as the header is there,
        without waiting for the body.
        """
        for header in [
            b"\x01" + (MAX_BLOCK_SIZE + 5).to_bytes(3, "little"),  # uncompressed > 64 KiB
            b"\x00" + (MAX_CHUNK_LENGTH + 1).to_bytes(3, "little"),
            b"\xfe" + (MAX_CHUNK_LENGTH + 1).to_bytes(3, "little"),
            b"\x01\x03\x00\x00",  # no room for the CRC
        ]:
            self.assertRaises(SnappyFrameError, SnappyFrameDecoder().feed, STREAM_IDENTIFIER + header)

    def test_largestChunks(self) -> None:
        data = os.urandom(MAX_BLOCK_SIZE)
        stream = STREAM_IDENTIFIER + _uncompressed(data)
        self.assertEqual(SnappyFrameDecoder().feed(stream), data)
        self.assertEqual(SnappyFrameDecoder().feed(stream[:-1] + stream[-1:]), data)

    def test_compressedTooLarge(self) -> None:
        data = bytes(MAX_BLOCK_SIZE + 1)
        stream = STREAM_IDENTIFIER + _compressed(data)
        e = self.assertRaises(SnappyFrameError, SnappyFrameDecoder().feed, stream)
        self.assertIn("65536", str(e))

    def test_errorsAreSticky(self) -> None:
        decoder = SnappyFrameDecoder()
        self.assertRaises(SnappyFrameError, decoder.feed, _uncompressed(b"x"))
        self.assertRaises(SnappyFrameError, decoder.feed, SYN_STREAM)


class PropertyTests(SynchronousTestCase):
    @PROPERTY_SETTINGS
    @given(
        st.lists(
            st.one_of(
                st.binary(max_size=3000),
                st.builds(lambda n, b: b * n, st.integers(0, 2000), st.binary(min_size=1, max_size=3)),
            ),
            max_size=12,
        ),
        st.lists(st.integers(min_value=0, max_value=20_000), max_size=12),
    )
    def test_anySplit(self, writes: list[bytes], cuts: list[int]) -> None:
        encoder = SnappyFrameEncoder()
        stream = b"".join(encoder.encode(w) for w in writes)
        decoder = SnappyFrameDecoder()
        points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
        out = b"".join(decoder.feed(stream[a:b]) for a, b in zip(points, points[1:]))
        self.assertEqual(out, b"".join(writes))
        self.assertEqual(decoder.buffered, 0)
