"""
Tests for L{gostrelay.wire.kcp.fec}: kcp-go's FEC layer and the
klauspost/reedsolomon code under it (spec-transports.md 4.4).

  - L{FieldTests} / L{MatrixTests}: GF(2^8) with 0x11D, the systematic
    Vandermonde matrix (the spec's parity rows, klauspost's RS(5,5) vector).
  - L{EncoderTests}: headers, seqids, parity after each group, padding, the
    spec's plaintext ACK vector, the C{paws} wrap.
  - L{DecoderTests}: pass-through, reconstruction, de-duplication, bounded
    memory, autotune to another shard count.
  - L{PropertyTests} (hypothesis): encode, lose up to C{parityShards}
    packets per group, shuffle -- every payload still comes out.

The parity of the GOST captures is checked in C{test_kcp_vectors}.
"""

from __future__ import annotations

import struct
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from gostrelay.wire.kcp.fec import (
    FLAG_DATA,
    FLAG_PARITY,
    FECDecoder,
    FECEncoder,
    FECError,
    FECOutput,
    ReedSolomon,
    buildMatrix,
    encodeDataPacket,
    encodeParityPacket,
    gfExp,
    gfInverse,
    gfMul,
    invertMatrix,
    isFEC,
    parseFECPacket,
    paws,
)
from tests.vectors import hexBytes

PROPERTY_SETTINGS = settings(max_examples=80, deadline=None)


def _ack(i: int) -> bytes:
    """
    The KCP part of the spec's FEC test vector: an ACK with conv 0x12345678,
    wnd 32, ts 1000+i, sn i, una i+1.
    """
    return struct.pack("<IBBHIIII", 0x12345678, 82, 0, 32, 1000 + i, i, i + 1, 0)


def _delivered(outputs: list[FECOutput]) -> list[bytes]:
    return [o.data for o in outputs]


class FieldTests(SynchronousTestCase):
    def test_multiplication(self) -> None:
        self.assertEqual(gfMul(2, 0x80), 0x1D)  # reduction by 0x11D
        self.assertEqual(gfMul(0, 7), 0)
        self.assertEqual(gfMul(1, 0xAB), 0xAB)
        self.assertEqual(gfMul(3, 7), 9)

    def test_inverse(self) -> None:
        for a in range(1, 256):
            self.assertEqual(gfMul(a, gfInverse(a)), 1)
        self.assertRaises(ZeroDivisionError, gfInverse, 0)

    def test_exp(self) -> None:
        self.assertEqual(gfExp(0, 0), 1)
        self.assertEqual(gfExp(0, 3), 0)
        self.assertEqual(gfExp(2, 8), 0x1D)
        self.assertEqual(gfExp(5, 1), 5)


class MatrixTests(SynchronousTestCase):
    def test_parityRows(self) -> None:
        """
        The (10,3) parity rows of spec 4.4, under an identity.
        """
        matrix = buildMatrix(10, 3)
        for r in range(10):
            self.assertEqual(matrix[r], [1 if c == r else 0 for c in range(10)])
        self.assertEqual(bytes(matrix[10]), hexBytes("81 96 af b8 d2 c4 fe e8 03 02"))
        self.assertEqual(bytes(matrix[11]), hexBytes("96 81 b8 af c4 d2 e8 fe 02 03"))
        self.assertEqual(bytes(matrix[12]), hexBytes("bf d6 62 0a 06 6f df b7 05 04"))

    def test_klauspostVector(self) -> None:
        """
        klauspost/reedsolomon's own RS(5,5) test vector.
        """
        data = [bytes([0, 1]), bytes([4, 5]), bytes([2, 3]), bytes([6, 7]), bytes([8, 9])]
        parity = ReedSolomon(5, 5).encode(data)
        self.assertEqual(
            parity, [bytes([12, 13]), bytes([10, 11]), bytes([14, 15]), bytes([90, 91]), bytes([94, 95])]
        )

    def test_invert(self) -> None:
        m = [[1, 2], [3, 4]]
        inv = invertMatrix(m)
        product = [
            [gfMul(m[i][0], inv[0][j]) ^ gfMul(m[i][1], inv[1][j]) for j in range(2)] for i in range(2)
        ]
        self.assertEqual(product, [[1, 0], [0, 1]])
        self.assertRaises(FECError, invertMatrix, [[1, 1], [1, 1]])

    def test_badParameters(self) -> None:
        self.assertRaises(FECError, ReedSolomon, 0, 3)
        self.assertRaises(FECError, ReedSolomon, 10, 0)
        self.assertRaises(FECError, ReedSolomon, 200, 57)

    def test_reconstructEveryLossPattern(self) -> None:
        """
        Any 3 of 13 shards lost (286 patterns): the data comes back.
        """
        from itertools import combinations

        rs = ReedSolomon(10, 3)
        data = [bytes([i, i * 7 & 0xFF, 255 - i, 42]) for i in range(10)]
        shards = data + rs.encode(data)
        for lost in combinations(range(13), 3):
            slots = [None if i in lost else s for i, s in enumerate(shards)]
            self.assertEqual(rs.reconstructData(slots), data, lost)

    def test_reconstructErrors(self) -> None:
        rs = ReedSolomon(2, 1)
        self.assertRaises(FECError, rs.reconstructData, [b"a", None, None])
        self.assertRaises(FECError, rs.reconstructData, [b"a", b"bb", None])
        self.assertRaises(FECError, rs.reconstructData, [b"a", b"b"])
        self.assertRaises(FECError, rs.encode, [b"a"])
        self.assertRaises(FECError, rs.encode, [b"a", b"bb"])


class PacketTests(SynchronousTestCase):
    def test_dataPacket(self) -> None:
        packet = encodeDataPacket(7, b"kcp!")
        self.assertEqual(packet, hexBytes("07000000 f100 0600") + b"kcp!")
        parsed = parseFECPacket(packet)
        self.assertEqual((parsed.seqid, parsed.flag, parsed.size), (7, FLAG_DATA, 6))
        self.assertTrue(parsed.isData)
        self.assertEqual(parsed.kcp, b"kcp!")
        self.assertEqual(parsed.encode(), packet)

    def test_parityPacket(self) -> None:
        packet = encodeParityPacket(0x0A0B0C0D, b"\1\2\3")
        self.assertEqual(packet, hexBytes("0d0c0b0a f200 010203"))
        parsed = parseFECPacket(packet)
        self.assertEqual((parsed.seqid, parsed.flag, parsed.size), (0x0A0B0C0D, FLAG_PARITY, None))
        self.assertFalse(parsed.isData)

    def test_isFEC(self) -> None:
        self.assertTrue(isFEC(encodeDataPacket(0, b"")))
        self.assertTrue(isFEC(encodeParityPacket(0, b"xx")))
        # raw KCP: conv, then cmd 81..84 and frg
        self.assertFalse(isFEC(_ack(0)))
        self.assertFalse(isFEC(b"\0\0\0\0\xf1"))
        self.assertRaises(FECError, parseFECPacket, _ack(0))
        self.assertRaises(FECError, parseFECPacket, b"\0\0\0\0\xf1\0\1")

    def test_tooLarge(self) -> None:
        self.assertRaises(FECError, encodeDataPacket, 0, b"\0" * 65534)

    def test_paws(self) -> None:
        self.assertEqual(paws(10, 3), 4294967287)
        self.assertEqual(paws(1, 1), 0xFFFFFFFE)


class EncoderTests(SynchronousTestCase):
    def test_specVector(self) -> None:
        """
        Spec 4.4: ten ACK data shards and their three parity packets.
        """
        encoder = FECEncoder(10, 3)
        packets: list[bytes] = []
        for i in range(10):
            packets += encoder.encode(_ack(i))
        self.assertEqual(len(packets), 13)
        self.assertEqual(packets[0][6:], hexBytes("1a007856341252002000e8030000000000000100000000000000"))
        self.assertEqual(packets[0][:6], hexBytes("00000000 f100"))
        expected = [
            "1a007856341252002000f20300000a0000004500000000000000",
            "1a007856341252002000f30300000b000000f200000000000000",
            "1a007856341252002000f40300000c0000001200000000000000",
        ]
        for k, parity in enumerate(expected):
            self.assertEqual(packets[10 + k], struct.pack("<IH", 10 + k, FLAG_PARITY) + hexBytes(parity))

    def test_seqidsAndGroups(self) -> None:
        encoder = FECEncoder(2, 1)
        self.assertEqual([parseFECPacket(p).seqid for p in encoder.encode(b"a")], [0])
        out = encoder.encode(b"bcd")
        self.assertEqual(
            [(parseFECPacket(p).seqid, parseFECPacket(p).flag) for p in out],
            [(1, FLAG_DATA), (2, FLAG_PARITY)],
        )
        # parity is as long as the longest [size|kcp] of the group
        self.assertEqual(len(out[1]), 6 + 2 + 3)
        self.assertEqual(encoder.nextSeqid, 3)
        self.assertEqual(parseFECPacket(encoder.encode(b"e")[0]).seqid, 3)

    def test_padding(self) -> None:
        """
        Shorter shards are zero-padded for the code, not on the wire.
        """
        encoder = FECEncoder(2, 1)
        first = encoder.encode(b"")
        second = encoder.encode(b"\x01\x02\x03\x04")
        self.assertEqual(first[0], hexBytes("00000000 f100 0200"))
        # parity of 1+1 rows: XOR of the padded shards
        a = hexBytes("0200") + b"\0" * 4
        b = hexBytes("0600 01020304")
        row = buildMatrix(2, 1)[2]
        expected = bytes(gfMul(row[0], x) ^ gfMul(row[1], y) for x, y in zip(a, b))
        self.assertEqual(second[1][6:], expected)

    def test_wrapAtPaws(self) -> None:
        """
        The counter wraps to 0 after the last parity shard below C{paws}.
        """
        encoder = FECEncoder(10, 3)
        encoder.nextSeqid = paws(10, 3) - 13
        seqids = []
        for i in range(11):
            seqids += [parseFECPacket(p).seqid for p in encoder.encode(_ack(i))]
        self.assertEqual(seqids[-2:], [0xFFFFFFF6, 0])
        self.assertEqual(seqids[12], 4294967286)


class DecoderTests(SynchronousTestCase):
    def _group(self, d: int = 10, p: int = 3, start: int = 0) -> tuple[list[bytes], list[bytes]]:
        encoder = FECEncoder(d, p)
        packets: list[bytes] = []
        payloads = [bytes([start + i]) * (5 + i) for i in range(d)]
        for payload in payloads:
            packets += encoder.encode(payload)
        return payloads, packets

    def test_rawKCPPassesThrough(self) -> None:
        decoder = FECDecoder()
        self.assertEqual(decoder.decode(_ack(3)), [FECOutput(_ack(3))])

    def test_dataAtOnceParityNever(self) -> None:
        payloads, packets = self._group()
        decoder = FECDecoder()
        self.assertEqual(decoder.decode(packets[0]), [FECOutput(payloads[0], recovered=False)])
        for packet in packets[1:10]:
            self.assertEqual(len(decoder.decode(packet)), 1)
        for packet in packets[10:]:
            self.assertEqual(decoder.decode(packet), [])

    def test_dataIsEverythingAfterTheHeader(self) -> None:
        """
        As kcp-go: a received data shard goes to KCP whole, whatever its
        size field says.
        """
        packet = struct.pack("<IHH", 0, FLAG_DATA, 3) + b"abcdef"
        self.assertEqual(_delivered(FECDecoder().decode(packet)), [b"abcdef"])

    def test_shortFECPacketDropped(self) -> None:
        self.assertEqual(FECDecoder().decode(b"\0\0\0\0\xf1\0\2"), [])

    def test_reconstruct(self) -> None:
        payloads, packets = self._group()
        decoder = FECDecoder()
        got = []
        for i, packet in enumerate(packets):
            if i in (1, 5, 9):
                continue
            got += decoder.decode(packet)
        direct = [o.data for o in got if not o.recovered]
        recovered = [o.data for o in got if o.recovered]
        self.assertEqual(direct, [payloads[i] for i in range(10) if i not in (1, 5, 9)])
        self.assertEqual(recovered, [payloads[1], payloads[5], payloads[9]])
        self.assertEqual(decoder.recoveredCount, 3)

    def test_recoveredAfterTheTriggeringShard(self) -> None:
        payloads, packets = self._group()
        decoder = FECDecoder()
        for packet in packets[1:10]:
            decoder.decode(packet)
        # the 10th shard of the group is a parity shard: it completes it
        self.assertEqual(decoder.decode(packets[10]), [FECOutput(payloads[0], recovered=True)])
        # the rest of the group is ignored, the lost data shard still delivered
        self.assertEqual(decoder.decode(packets[11]), [])
        self.assertEqual(decoder.decode(packets[0]), [FECOutput(payloads[0])])

    def test_tooFewShards(self) -> None:
        payloads, packets = self._group()
        decoder = FECDecoder()
        outputs = []
        for i, packet in enumerate(packets):
            if i not in (0, 1, 2, 3):
                outputs += decoder.decode(packet)
        self.assertFalse(any(o.recovered for o in outputs))

    def test_duplicates(self) -> None:
        payloads, packets = self._group()
        decoder = FECDecoder()
        for packet in packets[1:9]:
            decoder.decode(packet)
        # a duplicate does not count as the 10th shard
        self.assertEqual(len(decoder.decode(packets[8])), 1)
        self.assertEqual(decoder.decode(packets[11]), [])
        self.assertEqual(decoder.decode(packets[11]), [])
        self.assertEqual(_delivered(decoder.decode(packets[12])), [payloads[0], payloads[9]])

    def test_boundedGroups(self) -> None:
        """
        Unfinished groups beyond C{maxGroups} are dropped, oldest first.
        """
        encoder = FECEncoder(10, 3)
        packets = []
        for i in range(60):
            packets += encoder.encode(bytes([i]) * 3)
        decoder = FECDecoder(maxGroups=2)
        for g in range(4):
            for packet in packets[13 * g + 1 : 13 * g + 5]:
                decoder.decode(packet)
        self.assertEqual(sorted(decoder._groups), [2, 3])
        # group 0 can no longer be completed
        outputs = []
        for packet in packets[5:13]:
            outputs += decoder.decode(packet)
        self.assertFalse(any(o.recovered for o in outputs))
        self.assertTrue(len(decoder._groups) <= 2)

    def test_oldGroupsIgnored(self) -> None:
        encoder = FECEncoder(2, 1)
        packets = []
        for i in range(4):
            packets += encoder.encode(bytes([i]) * 4)
        decoder = FECDecoder(2, 1)
        # group 1 (seqids 3..5) completes first
        for packet in packets[3:6]:
            decoder.decode(packet)
        # group 0 is older: its parity is not kept and nothing is rebuilt
        self.assertEqual(decoder.decode(packets[2]), [])
        self.assertEqual(_delivered(decoder.decode(packets[0])), [b"\0" * 4])
        self.assertEqual(decoder._groups, {})

    def test_badRecoveredSize(self) -> None:
        """
        A rebuilt shard whose size field is impossible is not delivered.
        """
        rs = ReedSolomon(2, 1)
        shard0 = struct.pack("<H", 40) + b"xy"  # size larger than the shard
        shard1 = struct.pack("<H", 4) + b"ab"
        parity = rs.encode([shard0, shard1])[0]
        decoder = FECDecoder(2, 1)
        decoder.decode(struct.pack("<IH", 1, FLAG_DATA) + shard1)
        self.assertEqual(decoder.decode(encodeParityPacket(2, parity)), [])
        self.assertEqual(decoder.errorCount, 1)

    def test_wrapAround(self) -> None:
        encoder = FECEncoder(10, 3)
        encoder.nextSeqid = paws(10, 3) - 13
        packets = []
        for i in range(20):
            packets += encoder.encode(bytes([i]) * 9)
        decoder = FECDecoder()
        outputs = []
        for i, packet in enumerate(packets):
            if i in (2, 15):  # one loss before the wrap, one after
                continue
            outputs += decoder.decode(packet)
        self.assertEqual(sorted(o.data for o in outputs if o.recovered), [bytes([2]) * 9, bytes([12]) * 9])

    def test_autotune(self) -> None:
        """
        A decoder set for 10+3 fed by a 4+2 sender finds the sender's
        counts from the flag pattern and then rebuilds its losses.
        """
        encoder = FECEncoder(4, 2)
        packets = []
        for i in range(60):
            packets += encoder.encode(bytes([i]) * 10)
        decoder = FECDecoder(10, 3)
        for packet in packets[:60]:
            decoder.decode(packet)
        self.assertEqual((decoder.dataShards, decoder.parityShards), (4, 2))
        outputs = []
        for i, packet in enumerate(packets[60:]):
            if i % 6 == 1:
                continue
            outputs += decoder.decode(packet)
        recovered = [o.data for o in outputs if o.recovered]
        self.assertEqual(recovered, [bytes([40 + 4 * k + 1]) * 10 for k in range(5)])

    def test_dataOnlyPeerNeverTunes(self) -> None:
        """
        Consecutive data seqids without parity: everything is delivered, the
        codec stays as it is.
        """
        decoder = FECDecoder()
        for seqid in range(40):
            packet = struct.pack("<IHH", seqid, FLAG_DATA, 3) + b"k"
            self.assertEqual(_delivered(decoder.decode(packet)), [b"k"])
        self.assertEqual((decoder.dataShards, decoder.parityShards), (10, 3))

    def test_maxGroups(self) -> None:
        self.assertRaises(FECError, FECDecoder, maxGroups=0)


class PropertyTests(SynchronousTestCase):
    @PROPERTY_SETTINGS
    @given(
        st.integers(min_value=1, max_value=12),
        st.integers(min_value=1, max_value=4),
        st.lists(st.binary(max_size=120), min_size=1, max_size=40),
        st.data(),
    )
    def test_lossUpToParity(
        self, dataShards: int, parityShards: int, payloads: list[bytes], data: st.DataObject
    ) -> None:
        encoder = FECEncoder(dataShards, parityShards)
        groups: list[list[bytes]] = []
        for payload in payloads:
            packets = encoder.encode(payload)
            if not groups or len(groups[-1]) == dataShards + parityShards:
                groups.append([])
            groups[-1] += packets
        total = dataShards + parityShards
        received = []
        for group in groups:
            if len(group) < total:
                received += group  # an unfinished group: no parity yet, no loss
                continue
            lost = data.draw(st.sets(st.integers(0, total - 1), max_size=parityShards))
            kept = [p for i, p in enumerate(group) if i not in lost]
            received += data.draw(st.permutations(kept))
        decoder = FECDecoder(dataShards, parityShards)
        out = []
        for packet in received:
            out += decoder.decode(packet)
        # data shards come out as they are; a shard rebuilt before it arrives
        # (reordering) comes out twice, as in kcp-go, and KCP drops the copy
        direct = [o.data for o in out if not o.recovered]
        self.assertEqual(sorted(direct), sorted(p[8:] for p in received if p[4] == 0xF1))
        delivered = Counter(o.data for o in out)
        for payload, count in Counter(payloads).items():
            self.assertGreaterEqual(delivered[payload], count)
        self.assertLessEqual(set(delivered), set(payloads))
