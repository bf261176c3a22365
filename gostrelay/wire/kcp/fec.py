"""
kcp-go's forward error correction layer (spec-transports.md 4.4), sans-IO.

GOST always runs FEC with 10 data and 3 parity shards: every datagram it
sends starts (after the crypt header) with C{seqid u32 | flag u16}, data
shards add C{size u16} (2 + the KCP byte count) and carry KCP segments;
after each 10th data shard come 3 parity shards whose bytes are a
Reed-Solomon code over the group's C{[size|KCP]} parts, zero-padded to the
longest.  Parity has to be bit-exact with klauspost/reedsolomon (GF(2^8)
with polynomial 0x11D, the systematic Vandermonde matrix): GOST rebuilds a
lost data shard from what we send, and we rebuild from what GOST sends.

Receivers tell FEC from raw KCP by the flag (a raw KCP packet has C{cmd}
and C{frg} there, which never read as 0x00f1/0x00f2), so L{FECDecoder}
passes raw KCP through and a FEC-less peer interoperates.

The arithmetic is pure Python: multiplying a shard by a constant is one
C{bytes.translate} with that constant's multiplication table and XOR is done
on big integers -- measured faster than numpy for kcp-sized shards (about
50 us to encode a 10+3 group of 1400-byte shards).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

FLAG_DATA = 0x00F1
FLAG_PARITY = 0x00F2

#: C{seqid u32 | flag u16}
HEADER_SIZE = 6
#: Header plus the size field of a data shard: the bytes in front of KCP.
DATA_HEADER_SIZE = HEADER_SIZE + 2
SIZE_FIELD = 2

DEFAULT_DATA_SHARDS = 10
DEFAULT_PARITY_SHARDS = 3

#: klauspost/reedsolomon switches to another code above this many shards.
MAX_TOTAL_SHARDS = 256

#: kcp-go's autotune looks at this many of the latest seqids.
AUTOTUNE_SAMPLES = 258

_HEADER = struct.Struct("<IH")
_DATA_HEADER = struct.Struct("<IHH")
_SIZE = struct.Struct("<H")


class FECError(ValueError):
    """
    An FEC packet or parameter is invalid, or a group cannot be decoded.
    """


# -- GF(2^8), polynomial x^8+x^4+x^3+x^2+1, generator 2


def _tables() -> tuple[list[int], list[int]]:
    exp = [0] * 512
    log = [0] * 256
    x = 1
    for i in range(255):
        exp[i] = x
        log[x] = i
        x <<= 1
        if x & 0x100:
            x ^= 0x11D
    for i in range(255, 512):
        exp[i] = exp[i - 255]
    return exp, log


_EXP, _LOG = _tables()


def gfMul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return _EXP[_LOG[a] + _LOG[b]]


def gfInverse(a: int) -> int:
    if a == 0:
        raise ZeroDivisionError("0 has no inverse in GF(2^8)")
    return _EXP[255 - _LOG[a]]


def gfExp(a: int, n: int) -> int:
    """
    C{a**n} in the field, with C{0**0 == 1} as klauspost's C{galExp}.
    """
    if n == 0:
        return 1
    if a == 0:
        return 0
    return _EXP[(_LOG[a] * n) % 255]


@lru_cache(maxsize=256)
def _mulTable(c: int) -> bytes:
    # bytes.translate table: byte v -> c*v
    return bytes(gfMul(c, v) for v in range(256))


Matrix = list[list[int]]


def _matMul(a: Matrix, b: Matrix) -> Matrix:
    out = []
    for row in a:
        outRow = []
        for c in range(len(b[0])):
            acc = 0
            for k, v in enumerate(row):
                acc ^= gfMul(v, b[k][c])
            outRow.append(acc)
        out.append(outRow)
    return out


def invertMatrix(m: Matrix) -> Matrix:
    """
    Gauss-Jordan inversion over GF(2^8).

    @raise FECError: the matrix is singular.
    """
    n = len(m)
    work = [list(row) + [1 if i == j else 0 for j in range(n)] for i, row in enumerate(m)]
    for col in range(n):
        pivot = next((r for r in range(col, n) if work[r][col]), None)
        if pivot is None:
            raise FECError("singular matrix")
        work[col], work[pivot] = work[pivot], work[col]
        inv = gfInverse(work[col][col])
        work[col] = [gfMul(inv, v) for v in work[col]]
        for r in range(n):
            factor = work[r][col]
            if r != col and factor:
                pivotRow = work[col]
                work[r] = [v ^ gfMul(factor, p) for v, p in zip(work[r], pivotRow)]
    return [row[n:] for row in work]


def buildMatrix(dataShards: int, parityShards: int) -> Matrix:
    """
    klauspost/reedsolomon's default encoding matrix: the Vandermonde
    matrix C{V[r][c] = r**c} of size (data+parity) x data times the inverse
    of its top square, so that the top is the identity.
    """
    return [list(row) for row in _sharedMatrix(dataShards, parityShards)]


@lru_cache(maxsize=16)
def _sharedMatrix(dataShards: int, parityShards: int) -> tuple[tuple[int, ...], ...]:
    # Built once per shape and shared, read-only, by every codec: building
    # it costs about 2 ms of pure Python, which every new KCP session (two
    # codecs each) paid, so that spoofed first datagrams from many
    # addresses cost the listener milliseconds each (issue 19.6).
    total = dataShards + parityShards
    vandermonde = [[gfExp(r, c) for c in range(dataShards)] for r in range(total)]
    top = invertMatrix(vandermonde[:dataShards])
    return tuple(tuple(row) for row in _matMul(vandermonde, top))


@lru_cache(maxsize=256)
def _sharedDecodeMatrix(dataShards: int, parityShards: int, rows: tuple[int, ...]) -> Matrix:
    # The inverse for one set of surviving shards, shared by every codec
    # of that shape (read-only), so that no session pays for it twice.
    matrix = _sharedMatrix(dataShards, parityShards)
    return invertMatrix([list(matrix[r]) for r in rows])


def _combine(row: Sequence[int], shards: Sequence[bytes], length: int) -> bytes:
    # XOR over j of row[j] * shards[j], every shard `length` bytes long.
    acc = 0
    fromBytes = int.from_bytes
    for c, shard in zip(row, shards):
        if c == 0:
            continue
        acc ^= fromBytes(shard if c == 1 else shard.translate(_mulTable(c)), "little")
    return acc.to_bytes(length, "little")


class ReedSolomon:
    """
    A systematic RS erasure code compatible with klauspost/reedsolomon
    C{New(dataShards, parityShards)}.  Shards are C{bytes} of equal length.
    """

    def __init__(self, dataShards: int, parityShards: int) -> None:
        if dataShards <= 0 or parityShards <= 0:
            raise FECError("data and parity shard counts must be positive")
        if dataShards + parityShards > MAX_TOTAL_SHARDS:
            raise FECError(f"at most {MAX_TOTAL_SHARDS} shards in total")
        self.dataShards = dataShards
        self.parityShards = parityShards
        self.totalShards = dataShards + parityShards
        self.matrix = _sharedMatrix(dataShards, parityShards)
        self.parityRows = self.matrix[dataShards:]

    def encode(self, data: Sequence[bytes]) -> list[bytes]:
        """
        The parity shards for C{data} (C{dataShards} shards of one length).
        """
        if len(data) != self.dataShards:
            raise FECError(f"need {self.dataShards} data shards, got {len(data)}")
        length = len(data[0])
        if any(len(s) != length for s in data):
            raise FECError("data shards differ in length")
        shards = [bytes(s) for s in data]
        return [_combine(row, shards, length) for row in self.parityRows]

    def reconstructData(self, shards: Sequence[bytes | None]) -> list[bytes]:
        """
        The data shards, given C{totalShards} entries of which at least
        C{dataShards} are present (C{None} marks a missing one).  Like
        klauspost's C{ReconstructData}, the first C{dataShards} present
        shards in index order are used.

        @raise FECError: too few shards, or present shards differ in length.
        """
        if len(shards) != self.totalShards:
            raise FECError(f"need {self.totalShards} shard slots, got {len(shards)}")
        present = [i for i, s in enumerate(shards) if s is not None]
        if len(present) < self.dataShards:
            raise FECError(f"{len(present)} shards cannot rebuild {self.dataShards} data shards")
        length = len(shards[present[0]])  # type: ignore[arg-type]
        if any(len(shards[i]) != length for i in present):  # type: ignore[arg-type]
            raise FECError("shards differ in length")
        data: list[bytes | None] = [bytes(s) if s is not None else None for s in shards[: self.dataShards]]
        missing = [i for i in range(self.dataShards) if data[i] is None]
        if not missing:
            return data  # type: ignore[return-value]
        rows = tuple(present[: self.dataShards])
        decode = _sharedDecodeMatrix(self.dataShards, self.parityShards, rows)
        inputs = [bytes(shards[r]) for r in rows]  # type: ignore[arg-type]
        for i in missing:
            data[i] = _combine(decode[i], inputs, length)
        return data  # type: ignore[return-value]


# -- packets


@dataclass(frozen=True)
class FECPacket:
    """
    A decoded FEC packet.  C{payload} is everything after the 6-byte header:
    for a data shard C{[size u16][KCP bytes]}, for parity the parity bytes.
    """

    seqid: int
    flag: int
    payload: bytes

    @property
    def isData(self) -> bool:
        return self.flag == FLAG_DATA

    @property
    def size(self) -> int | None:
        """
        The size field of a data shard (2 + KCP bytes), C{None} for parity.
        """
        if self.flag != FLAG_DATA or len(self.payload) < SIZE_FIELD:
            return None
        return _SIZE.unpack_from(self.payload)[0]  # type: ignore[no-any-return]

    @property
    def kcp(self) -> bytes:
        """
        The KCP bytes of a data shard as kcp-go reads them: everything after
        the size field (kcp-go does not look at the size of a shard it
        received, only of one it rebuilt).
        """
        return self.payload[SIZE_FIELD:]

    def encode(self) -> bytes:
        return _HEADER.pack(self.seqid, self.flag) + self.payload


def isFEC(packet: bytes) -> bool:
    """
    Whether a decrypted packet is FEC (flag 0x00f1/0x00f2 at offset 4)
    rather than raw KCP.
    """
    if len(packet) < HEADER_SIZE:
        return False
    flag = packet[4] | (packet[5] << 8)
    return flag == FLAG_DATA or flag == FLAG_PARITY


def parseFECPacket(packet: bytes) -> FECPacket:
    """
    @raise FECError: not an FEC packet, or a data shard without its size.
    """
    if not isFEC(packet):
        raise FECError("not an FEC packet")
    if len(packet) < DATA_HEADER_SIZE:
        raise FECError(f"{len(packet)}-byte FEC packet is shorter than {DATA_HEADER_SIZE}")
    seqid, flag = _HEADER.unpack_from(packet)
    return FECPacket(seqid, flag, bytes(packet[HEADER_SIZE:]))


def encodeDataPacket(seqid: int, kcp: bytes) -> bytes:
    """
    C{seqid | 0x00f1 | 2+len(kcp) | kcp}.
    """
    if len(kcp) > 0xFFFF - SIZE_FIELD:
        raise FECError(f"{len(kcp)} KCP bytes do not fit a data shard")
    return _DATA_HEADER.pack(seqid, FLAG_DATA, SIZE_FIELD + len(kcp)) + bytes(kcp)


def encodeParityPacket(seqid: int, parity: bytes) -> bytes:
    return _HEADER.pack(seqid, FLAG_PARITY) + bytes(parity)


def paws(dataShards: int, parityShards: int) -> int:
    """
    Where a sender's seqid wraps to 0: the largest multiple of the group
    size not above 0xffffffff, so groups stay aligned across the wrap.
    """
    total = dataShards + parityShards
    return 0xFFFFFFFF // total * total


# -- encoder


class FECEncoder:
    """
    Turns outgoing KCP datagrams into FEC packets as kcp-go's C{fecEncoder}:
    each becomes the next data shard, and right after every
    C{dataShards}-th one the group's parity packets follow.  There is no
    timer; an unfinished group waits for more traffic.
    """

    def __init__(
        self, dataShards: int = DEFAULT_DATA_SHARDS, parityShards: int = DEFAULT_PARITY_SHARDS
    ) -> None:
        self.codec = ReedSolomon(dataShards, parityShards)
        self.dataShards = dataShards
        self.parityShards = parityShards
        self.paws = paws(dataShards, parityShards)
        #: The seqid the next packet gets.
        self.nextSeqid = 0
        self._group: list[bytes] = []

    def _take(self) -> int:
        seqid = self.nextSeqid
        self.nextSeqid = (seqid + 1) % self.paws
        return seqid

    def encode(self, kcp: bytes) -> list[bytes]:
        """
        The FEC packets to send for the KCP datagram C{kcp}: its data
        packet, followed by the parity packets when it completes a group.
        Each still needs the crypt layer.
        """
        packet = encodeDataPacket(self._take(), kcp)
        self._group.append(packet[HEADER_SIZE:])
        out = [packet]
        if len(self._group) == self.dataShards:
            length = max(len(s) for s in self._group)
            shards = [s.ljust(length, b"\0") for s in self._group]
            self._group = []
            for parity in self.codec.encode(shards):
                out.append(encodeParityPacket(self._take(), parity))
        return out


# -- decoder


@dataclass(frozen=True)
class FECOutput:
    """
    KCP bytes for the ARQ.  C{recovered} ones were rebuilt from parity and
    are fed to KCP as kcp-go's "non-regular" input (they do not update the
    peer's window or the RTT).
    """

    data: bytes
    recovered: bool = False


class AutoTune:
    """
    kcp-go's C{autoTune}: remembers the data/parity flag of the latest 258
    seqids and finds the sender's period from a run of consecutive seqids.
    """

    def __init__(self) -> None:
        self._samples: deque[tuple[int, bool]] = deque(maxlen=AUTOTUNE_SAMPLES)

    def sample(self, isData: bool, seqid: int) -> None:
        self._samples.append((seqid, isData))

    def findPeriod(self, bit: bool) -> int:
        """
        The length of the first complete run of C{bit} in the samples
        ordered by seqid, or -1 (too few samples, a gap in the seqids, or
        no complete run).
        """
        if len(self._samples) < 3:
            return -1
        ordered = sorted(self._samples, key=lambda s: _signed(s[0] - self._samples[0][0]))
        left = -1
        for i in range(1, len(ordered)):
            if (ordered[i - 1][0] + 1) & 0xFFFFFFFF != ordered[i][0]:
                return -1
            if ordered[i - 1][1] != bit and ordered[i][1] == bit:
                left = i
                break
        if left == -1:
            return -1
        for i in range(left + 1, len(ordered)):
            if (ordered[i - 1][0] + 1) & 0xFFFFFFFF != ordered[i][0]:
                return -1
            if ordered[i - 1][1] == bit and ordered[i][1] != bit:
                return i - left
        return -1


def _signed(diff: int) -> int:
    diff &= 0xFFFFFFFF
    return diff - 0x100000000 if diff & 0x80000000 else diff


class FECDecoder:
    """
    Takes received (decrypted) packets and returns the KCP bytes in them,
    as kcp-go's session input does: a data shard's KCP bytes at once, raw
    KCP unchanged, parity never -- and, when a group has C{dataShards} of
    its shards but lacks some data, the rebuilt data shards.

    Memory is bounded: at most C{maxGroups} unfinished groups are kept (the
    oldest is dropped), and shards of a group older than the newest
    finished one are not kept at all.  (kcp-go keeps at most 3 groups' worth
    of shards and also expires them after 60 s; without a clock here the
    cap alone bounds memory, and a stale group is pushed out by the next
    ones.)  When a packet's flag does not fit
    its position (the peer uses other shard counts), the decoder guesses
    the peer's counts from the flag pattern as kcp-go's autotune does.

    @ivar recoveredCount: data shards rebuilt so far.
    @ivar errorCount: groups or rebuilt shards that could not be used.
    """

    def __init__(
        self,
        dataShards: int = DEFAULT_DATA_SHARDS,
        parityShards: int = DEFAULT_PARITY_SHARDS,
        maxGroups: int = 3,
    ) -> None:
        if maxGroups < 1:
            raise FECError("maxGroups must be at least 1")
        self.maxGroups = maxGroups
        self.autoTune = AutoTune()
        self.recoveredCount = 0
        self.errorCount = 0
        self._configure(dataShards, parityShards)

    def _configure(self, dataShards: int, parityShards: int) -> None:
        self.codec = ReedSolomon(dataShards, parityShards)
        self.dataShards = dataShards
        self.parityShards = parityShards
        self.shardSize = dataShards + parityShards
        self._groupSpace = paws(dataShards, parityShards) // self.shardSize
        self._groups: dict[int, dict[int, bytes]] = {}
        self._lastDone: int | None = None

    def _groupDiff(self, a: int, b: int) -> int:
        # a - b in the circular space of group ids
        space = self._groupSpace
        d = (a - b) % space
        return d - space if d >= space // 2 else d

    def decode(self, packet: bytes) -> list[FECOutput]:
        """
        The KCP bytes in one received packet (after the crypt layer), data
        shard or raw KCP first, then any rebuilt shards.
        """
        packet = bytes(packet)
        if not isFEC(packet):
            return [FECOutput(packet)]
        if len(packet) < DATA_HEADER_SIZE:
            return []
        seqid, flag = _HEADER.unpack_from(packet)
        out = []
        if flag == FLAG_DATA:
            out.append(FECOutput(packet[DATA_HEADER_SIZE:]))
        for shard in self._absorb(seqid, flag == FLAG_DATA, packet[HEADER_SIZE:]):
            size = _SIZE.unpack_from(shard)[0] if len(shard) >= SIZE_FIELD else 0
            if SIZE_FIELD <= size <= len(shard):
                self.recoveredCount += 1
                out.append(FECOutput(shard[SIZE_FIELD:size], recovered=True))
            else:
                self.errorCount += 1
        return out

    def _absorb(self, seqid: int, isData: bool, payload: bytes) -> list[bytes]:
        self.autoTune.sample(isData, seqid)
        position = seqid % self.shardSize
        if (position < self.dataShards) != isData:
            self._tune()
            return []
        group = seqid // self.shardSize
        if self._lastDone is not None and self._groupDiff(group, self._lastDone) <= 0:
            return []
        shards = self._groups.setdefault(group, {})
        if position in shards:
            return []
        shards[position] = payload
        if len(shards) < self.dataShards:
            self._limitGroups(group)
            return []

        recovered: list[bytes] = []
        missing = [i for i in range(self.dataShards) if i not in shards]
        if missing:
            length = max(len(s) for s in shards.values())
            slots: list[bytes | None] = [
                shards[i].ljust(length, b"\0") if i in shards else None for i in range(self.shardSize)
            ]
            try:
                data = self.codec.reconstructData(slots)
            except FECError:
                self.errorCount += 1
            else:
                recovered = [data[i] for i in missing]
        self._finish(group)
        return recovered

    def _finish(self, group: int) -> None:
        if self._lastDone is None or self._groupDiff(group, self._lastDone) > 0:
            self._lastDone = group
        lastDone = self._lastDone
        for g in list(self._groups):
            if self._groupDiff(g, lastDone) <= 0:
                del self._groups[g]

    def _limitGroups(self, newest: int) -> None:
        while len(self._groups) > self.maxGroups:
            oldest = min(self._groups, key=lambda g: self._groupDiff(g, newest))
            del self._groups[oldest]

    def _tune(self) -> None:
        dataShards = self.autoTune.findPeriod(True)
        parityShards = self.autoTune.findPeriod(False)
        if 0 < dataShards < MAX_TOTAL_SHARDS and 0 < parityShards < MAX_TOTAL_SHARDS:
            if dataShards + parityShards > MAX_TOTAL_SHARDS:
                return
            if (dataShards, parityShards) != (self.dataShards, self.parityShards):
                self._configure(dataShards, parityShards)


__all__ = [
    "DATA_HEADER_SIZE",
    "DEFAULT_DATA_SHARDS",
    "DEFAULT_PARITY_SHARDS",
    "FLAG_DATA",
    "FLAG_PARITY",
    "HEADER_SIZE",
    "AutoTune",
    "FECDecoder",
    "FECEncoder",
    "FECError",
    "FECOutput",
    "FECPacket",
    "ReedSolomon",
    "buildMatrix",
    "encodeDataPacket",
    "encodeParityPacket",
    "gfExp",
    "gfInverse",
    "gfMul",
    "invertMatrix",
    "isFEC",
    "paws",
    "parseFECPacket",
]
