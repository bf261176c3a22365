"""
The KCP ARQ of xtaci/kcp-go v5.6.x (C{kcp.go}), sans-IO, as GOST's C{kcp}
transport uses it (spec-transports.md sections 4.2 and 4.5).

One L{KCP} object is one conversation.  It never reads a clock and never
touches a socket: every call that depends on time takes C{now}, an C{int} of
milliseconds from any monotonic clock the caller likes, e.g.
C{int(reactor.seconds() * 1000)}, wrapped to 32 bits or not (only its low
32 bits are used, and compared as kcp-go does, by signed 32-bit
differences), and finished datagrams go to the C{output} callable given at
construction.  That keeps the protocol logic testable with a fake clock and
lets a Twisted adapter drive it from a single C{callLater}.

What is reproduced, and why it matters for interoperation with GOST:

  - segment format: 24-byte little-endian header C{conv cmd frg wnd ts sn una
    len}, several segments per datagram, datagram length at most
    C{mtu - reserved} (the reserved prefix is for the crypt and FEC headers
    the lower layers add; see L{reservedBytes});
  - flush order ACKs, then WASK/WINS, then PUSH (new and retransmitted), a
    datagram being cut whenever the next segment would not fit, exactly as
    kcp-go's C{makeSpace};
  - the kcp-go (not ikcp.c) variants of everything: RFC 6298 RTT smoothing
    with the 1/32 weight for low samples, RTO never less than C{interval}
    above srtt, timestamps and ACKs echoing them, ACKs for segments below
    C{rcv_nxt} filtered except the last one, fast retransmit after C{resend}
    skipping ACKs whose echoed ts is not older than the segment, early
    retransmit when nothing new was sent, an immediate flush whenever C{una}
    slides the send window, congestion window starting at 0 (the first flush
    sends nothing and opens it to 1), window probing after 7 s of a zero
    peer window, dead link after 20 transmissions of one segment;
  - the scheduling of kcp-go's C{UDPSession}: it does not use
    C{Update}/C{Check}, it flushes and re-arms a timer for the delay the flush
    returns (the interval, or sooner when a retransmission timer expires
    sooner).  L{KCP.update} and L{KCP.check} implement exactly that, so a
    caller that only calls C{update} when C{check} says so puts the same
    segments on the wire at the same times as GOST would.

Where kcp-go walks plain slices, this module uses structures with the same
observable behaviour but without quadratic rescans: the send buffer is a list
indexed by C{sn - snd_una} (it is always contiguous), the out-of-order
receive buffer a dict keyed by C{sn}, and the fast-ACK counting of one
datagram is done in one pass per distinct echoed timestamp instead of one
pass per ACK.

GOST's effective configuration (section 4.2) when no C{kcp.*} option is given:
C{setNoDelay(0, 10, 0, 0)}, windows 32/32, mtu 1400, C{reserved=28},
C{ackNoDelay=False}, stream mode, and the adapter flushes after every write
(C{SetWriteDelay(false)}).  L{KCP.applyMode} applies the C{kcp.mode} presets.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import Callable, Union

# -- constants (kcp-go kcp.go) ------------------------------------------------

#: Size of a segment header.
OVERHEAD = 24

CMD_PUSH = 81
CMD_ACK = 82
CMD_WASK = 83
CMD_WINS = 84
_COMMANDS = frozenset((CMD_PUSH, CMD_ACK, CMD_WASK, CMD_WINS))

#: C{probe} flags: send a WASK / send a WINS on the next flush.
ASK_SEND = 1
ASK_TELL = 2

RTO_NDL = 30  # minimum RTO with nodelay
RTO_MIN = 100  # minimum RTO without nodelay
RTO_DEF = 200  # RTO before the first RTT sample
RTO_MAX = 60000

WND_SND = 32
WND_RCV = 32
MTU_DEF = 1400
#: kcp-go's C{UDPSession.SetMtu} refuses anything larger (its read buffer).
MTU_LIMIT = 1500
#: C{NewKCP}'s interval; GOST always ends up with 10 (C{NoDelay} clamps 0 up).
INTERVAL_DEF = 100
INTERVAL_MIN = 10
INTERVAL_MAX = 5000
#: A segment transmitted this many times marks the link dead.
DEADLINK = 20
THRESH_INIT = 2
THRESH_MIN = 2
PROBE_INIT = 7000
PROBE_LIMIT = 120000
#: Offset of C{sn} in a segment header (the listener reads it, section 4.6).
SN_OFFSET = 12

#: Bytes kcp-go reserves in front of each KCP datagram for the crypt header
#: (16-byte nonce + CRC32) and for the FEC data-shard header (seqid, flag and
#: the size field): C{cryptHeaderSize} and C{fecHeaderSizePlus2} in sess.go.
CRYPT_HEADER_SIZE = 20
FEC_HEADER_SIZE_PLUS2 = 8
#: GOST's stack: crypt always present (even C{crypt=none}), FEC 10/3 by default.
GOST_RESERVED = CRYPT_HEADER_SIZE + FEC_HEADER_SIZE_PLUS2

#: GOST's C{kcp.mode} presets as C{(nodelay, interval, resend, nc)}.
MODES: dict[str, tuple[int, int, int, int]] = {
    "normal": (0, 40, 2, 1),
    "fast": (0, 30, 2, 1),
    "fast2": (1, 20, 2, 1),
    "fast3": (1, 10, 2, 1),
}

#: What GOST ends up with when C{kcp.mode} is absent (section 4.2):
#: C{NoDelay(0, 0, 0, 0)}, the interval being clamped to 10 ms.
GOST_DEFAULT_NODELAY = (0, 10, 0, 0)

_M = 0xFFFFFFFF
_H = 0x80000000
_HEADER = struct.Struct("<IBBHIIII")
_pack = _HEADER.pack
_unpackFrom = _HEADER.unpack_from


def reservedBytes(crypt: bool = True, fec: bool = True) -> int:
    """
    The C{reserved} value kcp-go computes for a session: 20 bytes when a
    block cipher is configured (GOST always has one), plus 8 when FEC is on
    (data and parity shards both > 0).  GOST's defaults give 28, hence an
    mss of C{1400 - 24 - 28 = 1348}.
    """
    return (CRYPT_HEADER_SIZE if crypt else 0) + (FEC_HEADER_SIZE_PLUS2 if fec else 0)


def _signed(x: int) -> int:
    """
    kcp-go's C{_itimediff}: a uint32 difference read as int32.
    """
    x &= _M
    return x - 0x100000000 if x >= _H else x


# -- errors -------------------------------------------------------------------


class KCPInputError(ValueError):
    """
    A datagram kcp-go's C{Input} rejects.  C{code} is kcp-go's return value.
    Segments before the offending one have been processed (as in kcp-go);
    the end-of-datagram work (RTT sample, cwnd growth, flushes) has not.
    """

    code = -1


class ShortDatagram(KCPInputError):
    """Fewer than 24 bytes: not even one header."""

    code = -1


class ConvMismatch(KCPInputError):
    """A segment of another conversation."""

    code = -1


class TruncatedSegment(KCPInputError):
    """A C{len} running past the end of the datagram."""

    code = -2


class UnknownCommand(KCPInputError):
    """A C{cmd} other than 81..84."""

    code = -3


# -- wire format --------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """
    One decoded segment, for tests, captures and the listener's peeking.
    The L{KCP} machine itself works on raw buffers.
    """

    conv: int
    cmd: int
    frg: int
    wnd: int
    ts: int
    sn: int
    una: int
    data: bytes = b""

    def encode(self) -> bytes:
        return _pack(
            self.conv, self.cmd, self.frg, self.wnd, self.ts, self.sn, self.una, len(self.data)
        ) + bytes(self.data)


def encodeSegments(segments: list[Segment]) -> bytes:
    return b"".join(s.encode() for s in segments)


def decodeSegments(datagram: bytes, conv: int | None = None) -> list[Segment]:
    """
    Split a KCP datagram into segments with kcp-go's checks: less than 24
    bytes is an error, every segment must have conversation C{conv} (when
    given), a known command and a C{len} within the datagram; a trailing
    remainder shorter than a header is ignored, as kcp-go does.

    @raise KCPInputError: as L{KCP.input} would.
    """
    data = bytes(datagram)
    n = len(data)
    if n < OVERHEAD:
        raise ShortDatagram(f"{n} bytes is shorter than a KCP header")
    out = []
    off = 0
    while n - off >= OVERHEAD:
        c, cmd, frg, wnd, ts, sn, una, length = _unpackFrom(data, off)
        if conv is not None and c != conv:
            raise ConvMismatch(f"conv {c:#010x} is not {conv:#010x}")
        off += OVERHEAD
        if n - off < length:
            raise TruncatedSegment(f"segment length {length} exceeds the {n - off} bytes left")
        if cmd not in _COMMANDS:
            raise UnknownCommand(f"unknown KCP command {cmd}")
        out.append(Segment(c, cmd, frg, wnd, ts, sn, una, data[off : off + length]))
        off += length
    return out


def peekConvSn(datagram: bytes) -> tuple[int, int] | None:
    """
    C{(conv, sn)} of the first segment, or C{None} if there is no full
    header: what kcp-go's listener looks at to create or replace a session.
    """
    if len(datagram) < OVERHEAD:
        return None
    conv, sn = struct.unpack_from("<I8xI", datagram, 0)
    return conv, sn


# -- the state machine --------------------------------------------------------


class _SendSegment:
    """
    A segment in C{snd_queue} / C{snd_buf}.  C{data} is a bytearray so that
    stream mode can append to the last queued segment in place.
    """

    __slots__ = ("sn", "frg", "ts", "resendts", "rto", "fastack", "xmit", "acked", "data")

    def __init__(self, data: bytearray, frg: int = 0) -> None:
        self.data = data
        self.frg = frg
        self.sn = 0
        self.ts = 0
        self.resendts = 0
        self.rto = 0
        self.fastack = 0
        self.xmit = 0
        self.acked = False


@dataclass
class KCPStats:
    """
    Per-conversation counterparts of kcp-go's SNMP counters.
    """

    inSegs: int = 0
    outSegs: int = 0
    repeatSegs: int = 0
    retransSegs: int = 0
    lostSegs: int = 0
    fastRetransSegs: int = 0
    earlyRetransSegs: int = 0


Buffer = Union[bytes, bytearray, memoryview]


class KCP:
    """
    One KCP conversation with kcp-go semantics.

    How kcp-go's C{UDPSession} drives it, hence what an adapter does:

      - timer: C{update(now)}, then re-arm for C{check(now)} ms;
      - datagram in: strip crypt and FEC, C{input(kcpBytes, now, regular)}
        (drop the datagram on L{KCPInputError}), hand C{recv()} upwards
        unless the consumer is paused (not reading is the flow control),
        resume the producer when L{writable};
      - data out: C{send(data)} then C{flush(now)} (GOST turns write delay
        off), pause the producer while not L{writable}.

    @ivar output: called with each finished datagram: the KCP bytes only
        (at most C{mtu - reserved} of them); the caller prepends the
        C{reserved} bytes of FEC and crypt headers.
    @ivar ackNoDelay: flush ACKs right away on every input (GOST:
        C{acknodelay}, false by default).
    @ivar streamMode: GOST always uses stream mode: C{frg} is 0 and writes
        are coalesced into the last segment that has not left the queue yet.

    The numeric state carries kcp-go's names in camelCase (C{sndUna},
    C{rcvNxt}, C{cwnd}, C{rxRto}, ...) and may be read freely; change it only
    through the setters.
    """

    def __init__(
        self,
        conv: int,
        output: Callable[[bytes], None],
        mtu: int = MTU_DEF,
        reserved: int = 0,
    ) -> None:
        self.conv = conv & _M
        self.output = output
        self.ackNoDelay = False
        self.streamMode = True
        self.stats = KCPStats()

        self.mtu = MTU_DEF
        self.reserved = 0
        self.mss = MTU_DEF - OVERHEAD
        if not self.setMtu(mtu):
            raise ValueError(f"invalid KCP mtu {mtu}")
        if not self.reserveBytes(reserved):
            raise ValueError(f"cannot reserve {reserved} bytes of a {mtu}-byte mtu")

        self.state = 0
        self.sndUna = 0
        self.sndNxt = 0
        self.rcvNxt = 0
        self.ssthresh = THRESH_INIT
        self.rxRttvar = 0
        self.rxSrtt = 0
        self.rxRto = RTO_DEF
        self.rxMinrto = RTO_MIN
        self.sndWnd = WND_SND
        self.rcvWnd = WND_RCV
        self.rmtWnd = WND_RCV
        self.cwnd = 0
        self.incr = 0
        self.probe = 0
        self.interval = INTERVAL_DEF
        self.nodelay = 0
        self.tsProbe = 0
        self.probeWait = 0
        self.deadLink = DEADLINK
        self.fastresend = 0
        self.nocwnd = 0

        self._sndQueue: deque[_SendSegment] = deque()
        # Always holds sn sndUna .. sndNxt-1 in order (acked ones are only
        # marked until una passes them), so sn -> index is a subtraction.
        self._sndBuf: list[_SendSegment] = []
        self._rcvQueue: deque[tuple[int, bytes]] = deque()
        self._rcvBuf: dict[int, tuple[int, bytes]] = {}
        self._ackList: list[tuple[int, int]] = []
        # When kcp-go's session timer would fire next (None: right away).
        self._nextFlush: int | None = None
        self._flushed = False

    # -- configuration ----------------------------------------------------

    def setMtu(self, mtu: int) -> bool:
        """
        kcp-go C{SetMtu} behind C{UDPSession.SetMtu}: values below 50 (so
        C{kcp.mtu=0}) or above 1500 are ignored, returning C{False}.  Also
        refused: an mtu leaving no payload room after C{reserved}.
        """
        if mtu < 50 or mtu < OVERHEAD or mtu > MTU_LIMIT or mtu - OVERHEAD - self.reserved < 1:
            return False
        self.mtu = mtu
        self.mss = mtu - OVERHEAD - self.reserved
        return True

    def reserveBytes(self, n: int) -> bool:
        """
        kcp-go C{ReserveBytes}: keep C{n} bytes of every datagram for the
        layers below (see L{reservedBytes}); shrinks the mss accordingly.
        """
        if n < 0 or n >= self.mtu - OVERHEAD:
            return False
        self.reserved = n
        self.mss = self.mtu - OVERHEAD - n
        return True

    def setNoDelay(self, nodelay: int, interval: int, resend: int, nc: int) -> None:
        """
        kcp-go C{NoDelay}: a negative argument leaves that setting alone;
        the interval is clamped to [10, 5000] ms; nodelay selects the
        minimum RTO (30 ms with it, 100 ms without) and the gentler RTO
        backoff; C{resend} is the fast-retransmit threshold (0 = off);
        C{nc=1} switches congestion control off.
        """
        if nodelay >= 0:
            self.nodelay = nodelay
            self.rxMinrto = RTO_NDL if nodelay != 0 else RTO_MIN
        if interval >= 0:
            self.interval = min(max(interval, INTERVAL_MIN), INTERVAL_MAX)
        if resend >= 0:
            self.fastresend = resend
        if nc >= 0:
            self.nocwnd = nc

    def applyMode(self, name: str) -> bool:
        """
        GOST's C{kcp.mode} preset (C{normal}, C{fast}, C{fast2}, C{fast3});
        any other name, including C{""}, leaves the current values and
        returns C{False}, as GOST's C{Init} does.
        """
        preset = MODES.get(name)
        if preset is None:
            return False
        self.setNoDelay(*preset)
        return True

    def setWindowSize(self, sndwnd: int, rcvwnd: int) -> None:
        """
        kcp-go C{WndSize}: windows in segments; zero or negative values are
        ignored (which is how GOST's C{kcp.sndwnd=0} keeps 32).
        """
        if sndwnd > 0:
            self.sndWnd = sndwnd
        if rcvwnd > 0:
            self.rcvWnd = rcvwnd

    # -- state queries ----------------------------------------------------

    @property
    def waitSnd(self) -> int:
        """
        Segments queued or in flight.  kcp-go's C{Write} blocks while this
        is at least C{min(sndWnd, rmtWnd)}: the adapter should pause its
        producer on the same condition (see L{writable}).
        """
        return len(self._sndBuf) + len(self._sndQueue)

    @property
    def writable(self) -> bool:
        """
        Whether kcp-go's C{UDPSession.Write} would accept more data now.
        """
        w = len(self._sndBuf) + len(self._sndQueue)
        return w < self.sndWnd and w < self.rmtWnd

    @property
    def dead(self) -> bool:
        """
        kcp-go's C{state == 0xFFFFFFFF}: some segment has been transmitted
        C{deadLink} (20) times.  kcp-go and GOST never act on it; liveness is
        smux's business.  Exposed so an adapter may.
        """
        return self.state == _M

    @property
    def idle(self) -> bool:
        """
        Nothing to acknowledge, send, retransmit or probe: a flush now would
        emit nothing and change nothing.  An adapter may stop its timer
        while this holds and re-arm it after the next L{send} or L{input}
        (kcp-go keeps ticking, with the same effect on the wire).
        """
        return (
            self._flushed
            and not self._ackList
            and not self._sndQueue
            and not self._sndBuf
            and self.probe == 0
            and self.rmtWnd != 0
        )

    def peekSize(self) -> int:
        """
        kcp-go C{PeekSize}: size of the next message in the receive queue,
        -1 when none is complete.  In stream mode: the next segment's size.
        """
        q = self._rcvQueue
        if not q:
            return -1
        frg, data = q[0]
        if frg == 0:
            return len(data)
        if len(q) < frg + 1:
            return -1
        length = 0
        for f, d in q:
            length += len(d)
            if f == 0:
                break
        return length

    # -- user side --------------------------------------------------------

    def send(self, data: Buffer) -> None:
        """
        Queue bytes for sending, split into segments of at most C{mss}.  In
        stream mode the last queued segment (one not yet handed to the send
        window) is filled up first.  Nothing is transmitted until the next
        flush: kcp-go's C{Write} with write delay off calls L{flush} right
        after, and so should the adapter.

        Unlike kcp-go's bare C{Send}, stream mode takes any size (as
        C{UDPSession.Write}, which feeds C{Send} mss-sized pieces); message
        mode keeps the limit of 255 fragments.
        """
        mv = memoryview(data).cast("B")
        n = len(mv)
        if n == 0:
            return
        mss = self.mss
        queue = self._sndQueue
        off = 0
        if self.streamMode:
            if queue:
                last = queue[-1].data
                room = mss - len(last)
                if room > 0:
                    off = min(room, n)
                    last += mv[:off]
            while off < n:
                queue.append(_SendSegment(bytearray(mv[off : off + mss])))
                off += mss
            return
        count = (n + mss - 1) // mss
        if count > 255:
            raise ValueError(f"a {n}-byte message needs {count} fragments; KCP allows 255")
        for i in range(count):
            queue.append(_SendSegment(bytearray(mv[off : off + mss]), count - i - 1))
            off += mss

    def recv(self) -> bytes:
        """
        All complete data in order (b"" if none).  This is kcp-go's
        C{Recv} repeated while C{PeekSize} finds a message: each call frees
        receive-queue room, pulls in-order segments from the out-of-order
        buffer, and when the queue had been full asks the next flush to tell
        the peer the reopened window (WINS).

        Not calling it is flow control: the queue fills to C{rcvWnd}, the
        advertised window drops to 0 and the peer starts probing.
        """
        queue = self._rcvQueue
        if not queue:
            return b""
        parts = []
        rcvWnd = self.rcvWnd
        rcvBuf = self._rcvBuf
        while queue:
            first = queue[0][0]
            if first != 0 and len(queue) < first + 1:
                break
            fastRecover = len(queue) >= rcvWnd
            while queue:
                frg, data = queue.popleft()
                parts.append(data)
                if frg == 0:
                    break
            if rcvBuf:
                self._moveReady()
            if fastRecover and len(queue) < rcvWnd:
                self.probe |= ASK_TELL
        return b"".join(parts)

    # -- network side -----------------------------------------------------

    def input(self, data: Buffer, now: int, regular: bool = True) -> None:
        """
        Feed one datagram's KCP bytes (after crypt and FEC are stripped).

        @param regular: C{False} for packets the FEC decoder reconstructed:
            kcp-go then takes neither the peer's window nor an RTT sample
            from them.
        @raise KCPInputError: on a short datagram, a foreign conv, a
            truncated segment or an unknown command (kcp-go's -1/-2/-3);
            segments before the bad one are kept, as in kcp-go.
        """
        if not isinstance(data, bytes):
            data = bytes(data)
        n = len(data)
        if n < OVERHEAD:
            raise ShortDatagram(f"{n} bytes is shorter than a KCP header")
        current = now & _M
        prevUna = self.sndUna
        sndBuf = self._sndBuf
        ackList = self._ackList
        myConv = self.conv
        rcvWnd = self.rcvWnd
        latest = 0
        gotAck = False
        windowSlides = False
        fastAcks: list[tuple[int, int]] = []
        error: KCPInputError | None = None
        inSegs = 0
        repeats = 0
        off = 0
        while n - off >= OVERHEAD:
            conv, cmd, frg, wnd, ts, sn, una, length = _unpackFrom(data, off)
            if conv != myConv:
                error = ConvMismatch(f"conv {conv:#010x} is not {myConv:#010x}")
                break
            off += OVERHEAD
            if n - off < length:
                error = TruncatedSegment(f"segment length {length} exceeds the {n - off} bytes left")
                break
            if cmd not in _COMMANDS:
                error = UnknownCommand(f"unknown KCP command {cmd}")
                break
            if regular:
                self.rmtWnd = wnd
            # parse_una + shrink_buf
            if sndBuf:
                d = (una - sndBuf[0].sn) & _M
                if 0 < d < _H:
                    del sndBuf[:d]
                    windowSlides = True
                self.sndUna = sndBuf[0].sn if sndBuf else self.sndNxt
            if cmd == CMD_PUSH:
                rcvNxt = self.rcvNxt
                repeat = True
                if ((sn - rcvNxt - rcvWnd) & _M) >= _H:  # sn < rcv_nxt + rcv_wnd
                    ackList.append((sn, ts))
                    if ((sn - rcvNxt) & _M) < _H:  # sn >= rcv_nxt
                        rcvBuf = self._rcvBuf
                        if sn not in rcvBuf:
                            repeat = False
                            rcvBuf[sn] = (frg, data[off : off + length])
                        if rcvNxt in rcvBuf:
                            self._moveReady()
                if regular and repeat:
                    repeats += 1
            elif cmd == CMD_ACK:
                if sndBuf:
                    idx = (sn - sndBuf[0].sn) & _M
                    if idx < len(sndBuf):  # snd_una <= sn < snd_nxt
                        sndBuf[idx].acked = True
                        if idx:
                            fastAcks.append((sn, ts))
                gotAck = True
                latest = ts
            elif cmd == CMD_WASK:
                self.probe |= ASK_TELL
            inSegs += 1
            off += length
        self.stats.inSegs += inSegs
        self.stats.repeatSegs += repeats
        if fastAcks and sndBuf:
            self._countFastAcks(fastAcks)
        if error is not None:
            raise error

        if gotAck and regular:
            rtt = _signed(current - latest)
            if rtt >= 0:
                self._updateAck(rtt)

        if self.nocwnd == 0 and _signed(self.sndUna - prevUna) > 0 and self.cwnd < self.rmtWnd:
            mss = self.mss
            if self.cwnd < self.ssthresh:
                self.cwnd += 1
                self.incr += mss
            else:
                if self.incr < mss:
                    self.incr = mss
                self.incr += (mss * mss) // self.incr + mss // 16
                if (self.cwnd + 1) * mss <= self.incr:
                    self.cwnd = (self.incr + mss - 1) // mss
            if self.cwnd > self.rmtWnd:
                self.cwnd = self.rmtWnd
                self.incr = self.rmtWnd * mss

        if windowSlides:
            self.flush(now)
        elif self.ackNoDelay and ackList:
            self.flush(now, ackOnly=True)

    def _moveReady(self) -> None:
        """
        Move in-order segments from the out-of-order buffer to the receive
        queue while the queue has room.
        """
        rcvBuf = self._rcvBuf
        queue = self._rcvQueue
        rcvWnd = self.rcvWnd
        rcvNxt = self.rcvNxt
        while len(queue) < rcvWnd:
            item = rcvBuf.pop(rcvNxt, None)
            if item is None:
                break
            queue.append(item)
            rcvNxt = (rcvNxt + 1) & _M
        self.rcvNxt = rcvNxt

    def _countFastAcks(self, acks: list[tuple[int, int]]) -> None:
        """
        kcp-go's C{parse_fastack} for all ACKs of one datagram at once: a
        segment's C{fastack} grows by the number of ACKs for a higher sn
        whose echoed ts is not older than the segment's last transmission.
        Done after the segment loop, which is equivalent because nothing in
        that loop reads C{fastack} or changes C{ts}; the ACKs were checked
        against the window when they arrived, and segments C{una} removed
        since then are simply no longer there.
        """
        sndBuf = self._sndBuf
        base = sndBuf[0].sn
        groups: dict[int, list[int]] = {}
        for sn, ts in acks:
            rel = (sn - base) & _M
            if 0 < rel <= len(sndBuf):
                groups.setdefault(ts, []).append(rel)
        for ts, rels in groups.items():
            rels.sort()
            count = len(rels)
            top = rels[-1]
            j = 0
            for i in range(top):
                while rels[j] <= i:
                    j += 1
                seg = sndBuf[i]
                if ((ts - seg.ts) & _M) < _H:  # seg.ts <= ts
                    seg.fastack += count - j

    def _updateAck(self, rtt: int) -> None:
        """
        RFC 6298 smoothing as kcp-go does it, a low sample getting 1/32
        instead of 1/4 weight in the variance, and the RTO at least one
        interval above srtt.
        """
        if self.rxSrtt == 0:
            self.rxSrtt = rtt
            self.rxRttvar = rtt >> 1
        else:
            delta = rtt - self.rxSrtt
            self.rxSrtt += delta >> 3
            if delta < 0:
                delta = -delta
            if rtt < self.rxSrtt - self.rxRttvar:
                self.rxRttvar += (delta - self.rxRttvar) >> 5
            else:
                self.rxRttvar += (delta - self.rxRttvar) >> 2
        rto = (self.rxSrtt & _M) + max(self.interval, ((self.rxRttvar & _M) << 2) & _M)
        self.rxRto = min(max(self.rxMinrto, rto & _M), RTO_MAX)

    def _wndUnused(self) -> int:
        free = self.rcvWnd - len(self._rcvQueue)
        return free & 0xFFFF if free > 0 else 0

    # -- output -----------------------------------------------------------

    def flush(self, now: int, ackOnly: bool = False) -> int:
        """
        kcp-go C{flush}: emit pending ACKs, then (unless C{ackOnly}) window
        probes, new segments the window allows and due retransmissions.

        @return: milliseconds until the next flush is useful: the interval,
            or less when a retransmission timer expires sooner.
        """
        current = now & _M
        conv = self.conv
        wnd = self._wndUnused()
        una = self.rcvNxt
        output = self.output
        limit = self.mtu - self.reserved
        buf = bytearray()
        outSegs = 0

        ackList = self._ackList
        lastSn = lastTs = 0
        if ackList:
            final = len(ackList) - 1
            for i, (sn, ts) in enumerate(ackList):
                if len(buf) + OVERHEAD > limit:
                    output(bytes(buf))
                    del buf[:]
                # kcp-go drops ACKs below rcv_nxt ("jitters caused by
                # bufferbloat") except the last: una covers them.
                if ((sn - una) & _M) < _H or i == final:
                    buf += _pack(conv, CMD_ACK, 0, wnd, ts, sn, una, 0)
                    lastSn, lastTs = sn, ts
                    outSegs += 1
            self._ackList = []

        if ackOnly:
            if buf:
                output(bytes(buf))
            self.stats.outSegs += outSegs
            return self.interval

        self._flushed = True
        if self.rmtWnd == 0:
            if self.probeWait == 0:
                self.probeWait = PROBE_INIT
                self.tsProbe = (current + PROBE_INIT) & _M
            elif ((current - self.tsProbe) & _M) < _H:
                if self.probeWait < PROBE_INIT:
                    self.probeWait = PROBE_INIT
                self.probeWait += self.probeWait // 2
                if self.probeWait > PROBE_LIMIT:
                    self.probeWait = PROBE_LIMIT
                self.tsProbe = (current + self.probeWait) & _M
                self.probe |= ASK_SEND
        else:
            self.tsProbe = 0
            self.probeWait = 0

        # kcp-go reuses the ACK segment struct here, so WASK/WINS carry the
        # sn/ts of the last ACK written (0 if none).
        if self.probe & ASK_SEND:
            if len(buf) + OVERHEAD > limit:
                output(bytes(buf))
                del buf[:]
            buf += _pack(conv, CMD_WASK, 0, wnd, lastTs, lastSn, una, 0)
            outSegs += 1
        if self.probe & ASK_TELL:
            if len(buf) + OVERHEAD > limit:
                output(bytes(buf))
                del buf[:]
            buf += _pack(conv, CMD_WINS, 0, wnd, lastTs, lastSn, una, 0)
            outSegs += 1
        self.probe = 0

        cwnd = min(self.sndWnd, self.rmtWnd)
        if self.nocwnd == 0:
            cwnd = min(self.cwnd, cwnd)

        sndBuf = self._sndBuf
        queue = self._sndQueue
        newSegs = 0
        if queue:
            sndNxt = self.sndNxt
            room = _signed(self.sndUna + cwnd - sndNxt)
            while queue and newSegs < room:
                seg = queue.popleft()
                seg.sn = sndNxt
                sndBuf.append(seg)
                sndNxt = (sndNxt + 1) & _M
                newSegs += 1
            self.sndNxt = sndNxt

        resent = self.fastresend if self.fastresend > 0 else _M
        rxRto = self.rxRto
        nodelay = self.nodelay
        deadLink = self.deadLink
        minrto = self.interval
        change = lost = fast = early = 0
        for seg in sndBuf:
            if seg.acked:
                continue
            if seg.xmit == 0:
                seg.rto = rxRto
                seg.resendts = (current + rxRto) & _M
            else:
                fa = seg.fastack
                if fa >= resent:
                    seg.fastack = 0
                    seg.rto = rxRto
                    seg.resendts = (current + rxRto) & _M
                    change += 1
                    fast += 1
                elif fa > 0 and newSegs == 0:
                    seg.fastack = 0
                    seg.rto = rxRto
                    seg.resendts = (current + rxRto) & _M
                    change += 1
                    early += 1
                else:
                    d = (seg.resendts - current) & _M
                    if d != 0 and d < _H:
                        # not due; only the nearest timer matters
                        if d < minrto:
                            minrto = d
                        continue
                    seg.rto += rxRto if nodelay == 0 else rxRto // 2
                    seg.fastack = 0
                    seg.resendts = (current + seg.rto) & _M
                    lost += 1
            seg.xmit += 1
            seg.ts = current
            data = seg.data
            if len(buf) + OVERHEAD + len(data) > limit:
                output(bytes(buf))
                del buf[:]
            buf += _pack(conv, CMD_PUSH, seg.frg, wnd, current, seg.sn, una, len(data))
            buf += data
            outSegs += 1
            if seg.xmit >= deadLink:
                self.state = _M
            d = (seg.resendts - current) & _M
            if 0 < d < minrto:
                minrto = d

        if buf:
            output(bytes(buf))

        stats = self.stats
        stats.outSegs += outSegs
        if lost or fast or early:
            stats.lostSegs += lost
            stats.fastRetransSegs += fast
            stats.earlyRetransSegs += early
            stats.retransSegs += lost + fast + early

        if self.nocwnd == 0:
            if change:
                inflight = (self.sndNxt - self.sndUna) & _M
                self.ssthresh = max(inflight // 2, THRESH_MIN)
                self.cwnd = (self.ssthresh + resent) & _M
                self.incr = (self.cwnd * self.mss) & _M
            if lost:
                self.ssthresh = max(cwnd // 2, THRESH_MIN)
                self.cwnd = 1
                self.incr = self.mss
            if self.cwnd < 1:
                self.cwnd = 1
                self.incr = self.mss
        return minrto

    # -- timing -----------------------------------------------------------

    def update(self, now: int) -> None:
        """
        Run the periodic flush if it is due, the way kcp-go's session timer
        does: flush, then wait for the delay the flush returned.  Calling it
        early does nothing, so one timer armed with L{check} is enough.
        """
        if self.check(now) == 0:
            self._nextFlush = (now + self.flush(now)) & _M

    def check(self, now: int) -> int:
        """
        Milliseconds until L{update} has work to do (0: now).  At most the
        interval; L{input} and L{send}/L{flush} never make it shorter, so the
        timer need not be re-armed after them.
        """
        due = self._nextFlush
        if due is None:
            return 0
        left = _signed(due - now)
        # More than an interval ahead cannot happen with a monotonic clock
        # (a flush never asks for more): the clock jumped, or a stopped
        # timer let 2**31 ms pass.  Flush rather than wait for nonsense.
        return left if 0 < left <= self.interval else 0


__all__ = [
    "ASK_SEND",
    "ASK_TELL",
    "CMD_ACK",
    "CMD_PUSH",
    "CMD_WASK",
    "CMD_WINS",
    "CRYPT_HEADER_SIZE",
    "DEADLINK",
    "FEC_HEADER_SIZE_PLUS2",
    "GOST_DEFAULT_NODELAY",
    "GOST_RESERVED",
    "KCP",
    "KCPInputError",
    "KCPStats",
    "MODES",
    "MTU_DEF",
    "MTU_LIMIT",
    "OVERHEAD",
    "ConvMismatch",
    "Segment",
    "ShortDatagram",
    "TruncatedSegment",
    "UnknownCommand",
    "decodeSegments",
    "encodeSegments",
    "peekConvSn",
    "reservedBytes",
]
