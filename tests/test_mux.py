"""
Tests for L{gostrelay.mux}: smux sessions and streams (spec-relay.md
section 4).

Two L{MuxSession}s, one in the smux client role (as the relay server of a
TCP BIND: it opens streams and refuses the peer's) and one in the server
role (as the relay client: it accepts streams), run over two
L{StringTransport}s pumped by hand, on a L{task.Clock}.  What goes on the
wire is compared with the smux frames recorded from GOST (C{smux_v*}
vectors) where they exist.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from gostrelay.config.metadata import Metadata
from gostrelay.config.model import ConfigError
from gostrelay.mux import INITIAL_PEER_WINDOW, MuxConfig, MuxSession, MuxStream, SessionState, StreamState
from gostrelay.wire.smux import FIN, NOP, PSH, SYN, UPD, FrameParser, decodeUpdate, encodeFrame, encodeUpdate
from tests import vectors

PEER_RESPONSE = bytes.fromhex("0100000a020007017f000001d431")


class Carrier(StringTransport):
    """
    The stream an smux session runs over: like a TCP transport it accepts
    C{unregisterProducer} without a producer.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lostCount = 0

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = None

    def loseConnection(self) -> None:
        self.lostCount += 1
        super().loseConnection()


class Recorder(Protocol):
    """
    The protocol of one stream: records what it gets.
    """

    def __init__(self) -> None:
        self.received = b""
        self.chunks: list[bytes] = []
        self.lost: list[Failure] = []
        self.made = False

    def connectionMade(self) -> None:
        self.made = True

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost.append(reason)


@implementer(IPushProducer)
class FakeProducer:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.paused = False

    def pauseProducing(self) -> None:
        self.events.append("pause")
        self.paused = True

    def resumeProducing(self) -> None:
        self.events.append("resume")
        self.paused = False

    def stopProducing(self) -> None:
        self.events.append("stop")


class Pair:
    """
    Two sessions back to back: C{client} (smux client role, refuses
    streams, like the relay server of a BIND) and C{server} (smux server
    role, accepts every stream and attaches a L{Recorder}).
    """

    def __init__(
        self,
        version: int = 1,
        clock: Clock | None = None,
        accept: bool = True,
        attach: bool = True,
        **options: Any,
    ) -> None:
        self.clock = clock or Clock()
        self.config = MuxConfig(version=version, **options)
        self.ct = Carrier()
        self.st = Carrier()
        self.accepted: list[MuxStream] = []
        self.closed: dict[str, list[Failure]] = {"client": [], "server": []}
        self.attach = attach
        self.client = MuxSession(
            self.clock, self.ct, client=True, config=self.config, acceptStream=None,
            onClose=self.closed["client"].append, label="client",
        )
        self.server = MuxSession(
            self.clock, self.st, client=False, config=self.config,
            acceptStream=self._accept if accept else None,
            onClose=self.closed["server"].append, label="server",
        )

    def _accept(self, stream: MuxStream) -> None:
        self.accepted.append(stream)
        if self.attach:
            stream.attach(Recorder())

    def pump(self) -> tuple[bytes, bytes]:
        """
        Deliver everything written, both ways, until quiet; return what
        went client→server and server→client.
        """
        c2s = s2c = b""
        for _ in range(1000):
            a, b = self.ct.value(), self.st.value()
            if not a and not b:
                return c2s, s2c
            self.ct.clear()
            self.st.clear()
            c2s += a
            s2c += b
            if a:
                self.server.dataReceived(a)
            if b:
                self.client.dataReceived(b)
        raise AssertionError("the sessions never went quiet")

    def open(self) -> tuple[MuxStream, Recorder, MuxStream, Recorder]:
        """
        A stream opened by the client, accepted by the server: both ends
        and their protocols.
        """
        stream = self.client.openStream()
        proto = Recorder()
        stream.attach(proto)
        self.pump()
        remote = self.accepted[-1]
        return stream, proto, remote, remote.protocol


def frames(version: int, data: bytes) -> list[tuple[int, int, bytes]]:
    return [(f.cmd, f.sid, f.data) for f in FrameParser(version).feed(data)]


class MuxTestCase(SynchronousTestCase):
    def assertNoDelayedCalls(self, clock: Clock) -> None:
        self.assertEqual(clock.getDelayedCalls(), [])


class StreamTests(MuxTestCase):
    def test_clientStreamIds(self) -> None:
        """
        The smux client opens streams 3, 5, 7 with a SYN each (vector
        smux_v1_syn_open_stream for the first); the server role accepts
        them with the same ids.
        """
        pair = Pair()
        streams = [pair.client.openStream() for _ in range(3)]
        self.assertEqual([s.sid for s in streams], [3, 5, 7])
        wire = pair.ct.value()
        self.assertEqual(wire[:8], vectors.caseBytes("smux_v1_syn_open_stream"))
        self.assertEqual(frames(1, wire), [(SYN, 3, b""), (SYN, 5, b""), (SYN, 7, b"")])
        pair.pump()
        self.assertEqual([s.sid for s in pair.accepted], [3, 5, 7])
        self.assertEqual(sorted(pair.server.streams), [3, 5, 7])
        for s in pair.accepted:
            self.assertTrue(s.protocol.made)

    def test_serverStreamIdsEven(self) -> None:
        """
        The smux server role would open even ids from 2.
        """
        pair = Pair()
        self.assertEqual([pair.server.openStream().sid for _ in range(2)], [2, 4])

    def test_dataBothWays(self) -> None:
        """
        Bytes written on one end arrive at the other, as PSH frames
        (vectors smux_v1_psh_peer_response, smux_v1_psh_data_hello,
        smux_v1_psh_data_world_reply).
        """
        pair = Pair()
        stream, proto, remote, rproto = pair.open()
        stream.write(PEER_RESPONSE)
        stream.write(b"hello")
        c2s, _ = pair.pump()
        self.assertEqual(
            c2s, vectors.caseBytes("smux_v1_psh_peer_response") + vectors.caseBytes("smux_v1_psh_data_hello")
        )
        self.assertEqual(rproto.received, PEER_RESPONSE + b"hello")
        remote.write(b"world")
        _, s2c = pair.pump()
        self.assertEqual(s2c, vectors.caseBytes("smux_v1_psh_data_world_reply"))
        self.assertEqual(proto.received, b"world")

    def test_emptyWriteSendsNothing(self) -> None:
        pair = Pair()
        stream, proto, remote, rproto = pair.open()
        stream.write(b"")
        self.assertEqual(pair.ct.value(), b"")

    def test_writeSequence(self) -> None:
        pair = Pair()
        stream, proto, remote, rproto = pair.open()
        stream.writeSequence([b"a", b"bc", b"def"])
        pair.pump()
        self.assertEqual(rproto.received, b"abcdef")

    def test_streamsIndependent(self) -> None:
        """
        Data on one stream reaches only that stream.
        """
        pair = Pair()
        s1, p1, r1, rp1 = pair.open()
        s2, p2, r2, rp2 = pair.open()
        s1.write(b"one")
        s2.write(b"two")
        r2.write(b"deux")
        pair.pump()
        self.assertEqual((rp1.received, rp2.received, p1.received, p2.received), (b"one", b"two", b"", b"deux"))

    def test_finClosesBothSides(self) -> None:
        """
        A local close sends FIN (vector smux_v1_fin_close_stream); the other
        end's protocol gets connectionLost and answers FIN; both ends
        forget the stream.  connectionLost comes from the reactor, not from
        inside loseConnection.
        """
        pair = Pair()
        stream, proto, remote, rproto = pair.open()
        stream.loseConnection()
        self.assertEqual(pair.ct.value(), vectors.caseBytes("smux_v1_fin_close_stream"))
        self.assertEqual(proto.lost, [])
        c2s, s2c = pair.pump()
        self.assertEqual(frames(1, s2c), [(FIN, 3, b"")])
        pair.clock.advance(0)
        self.assertEqual(len(proto.lost), 1)
        self.assertEqual(len(rproto.lost), 1)
        self.assertTrue(proto.lost[0].check(ConnectionDone))
        self.assertTrue(rproto.lost[0].check(ConnectionDone))
        self.assertEqual(pair.client.streams, {})
        self.assertEqual(pair.server.streams, {})
        self.assertFalse(pair.ct.disconnecting or pair.st.disconnecting, "a stream FIN must not end the session")

    def test_finFromAcceptingSide(self) -> None:
        """
        The accepting side may close first too (vector
        smux_v1_fin_close_stream_peer).
        """
        pair = Pair()
        stream, proto, remote, rproto = pair.open()
        remote.loseConnection()
        self.assertEqual(pair.st.value(), vectors.caseBytes("smux_v1_fin_close_stream_peer"))
        pair.pump()
        pair.clock.advance(0)
        self.assertEqual((len(proto.lost), len(rproto.lost)), (1, 1))

    def test_noWritesAfterFin(self) -> None:
        """
        After the peer's FIN the stream is closed: writes send nothing (no
        half-close in smux v1).
        """
        pair = Pair()
        stream, proto, remote, rproto = pair.open()
        stream.loseConnection()
        pair.pump()
        pair.ct.clear()
        pair.st.clear()
        remote.write(b"late")
        stream.write(b"late")
        self.assertEqual((pair.ct.value(), pair.st.value()), (b"", b""))

    def test_loseConnectionTwice(self) -> None:
        pair = Pair()
        stream, proto, remote, rproto = pair.open()
        stream.loseConnection()
        stream.loseConnection()
        self.assertEqual(frames(1, pair.ct.value()), [(FIN, 3, b"")])
        pair.clock.advance(0)
        self.assertEqual(len(proto.lost), 1)

    def test_refusedWithoutAcceptStream(self) -> None:
        """
        A session without C{acceptStream} (the relay server of a BIND)
        answers a SYN with FIN at once; the opener's stream ends (and says
        FIN in turn, which the refusing side ignores).
        """
        pair = Pair()
        stream = pair.server.openStream()
        proto = Recorder()
        stream.attach(proto)
        c2s, s2c = pair.pump()
        self.assertEqual(frames(1, s2c), [(SYN, 2, b""), (FIN, 2, b"")])
        self.assertEqual(frames(1, c2s), [(FIN, 2, b"")])
        self.assertEqual(pair.client.streams, {})
        pair.clock.advance(0)
        self.assertEqual(len(proto.lost), 1)
        self.assertEqual(pair.server.streams, {})

    def test_duplicateSynIgnored(self) -> None:
        pair = Pair()
        pair.server.dataReceived(encodeFrame(1, SYN, 3) + encodeFrame(1, SYN, 3))
        self.assertEqual(len(pair.accepted), 1)

    def test_dataForUnknownStreamDiscarded(self) -> None:
        pair = Pair()
        pair.server.dataReceived(encodeFrame(1, PSH, 9, b"nobody") + encodeFrame(1, FIN, 11))
        self.assertEqual(pair.accepted, [])
        self.assertFalse(pair.st.disconnecting)

    def test_emptyPSHIgnored(self) -> None:
        pair = Pair()
        stream, proto, remote, rproto = pair.open()
        pair.server.dataReceived(encodeFrame(1, PSH, 3, b""))
        self.assertEqual(rproto.chunks, [])

    def test_dataBeforeAttachKept(self) -> None:
        """
        Bytes for an accepted stream whose protocol is not attached yet wait
        for it.
        """
        pair = Pair(attach=False)
        stream = pair.client.openStream()
        stream.write(b"early")
        pair.pump()
        (remote,) = pair.accepted
        proto = Recorder()
        remote.attach(proto)
        self.assertEqual(proto.received, b"early")

    def test_finBeforeAttach(self) -> None:
        """
        A stream that got its data and its FIN before its protocol was
        attached still delivers the data, then connectionLost.

        BUG (fails today): the FIN closes the unattached stream; attach()
        then calls makeConnection but neither delivers the held bytes nor
        ever calls connectionLost.  Repro: Pair(attach=False); client
        stream write(b"early"), loseConnection(); pump; attach a protocol
        to the accepted stream -> it gets nothing, and is never told the
        stream ended.
        """
        pair = Pair(attach=False)
        stream = pair.client.openStream()
        stream.write(b"early")
        stream.loseConnection()
        pair.pump()
        (remote,) = pair.accepted
        proto = Recorder()
        remote.attach(proto)
        pair.clock.advance(0)
        self.assertEqual(len(proto.lost), 1, "the protocol was never told that the stream ended")
        self.assertEqual(proto.received, b"early")

    def test_largeWritesSplit(self) -> None:
        """
        A write larger than maxFrameSize (32768) goes as several PSH
        frames of at most 32768 bytes; the bytes arrive whole, in order.
        """
        pair = Pair()
        stream, proto, remote, rproto = pair.open()
        payload = bytes(range(256)) * 400  # 102400 bytes
        stream.write(payload)
        c2s, _ = pair.pump()
        got = frames(1, c2s)
        self.assertEqual([len(d) for _, _, d in got], [32768, 32768, 32768, 102400 - 3 * 32768])
        self.assertEqual({(cmd, sid) for cmd, sid, _ in got}, {(PSH, 3)})
        self.assertEqual(rproto.received, payload)

    def test_exactFrameSizeNotSplit(self) -> None:
        pair = Pair()
        stream, proto, remote, rproto = pair.open()
        stream.write(b"x" * 32768)
        self.assertEqual([len(d) for _, _, d in frames(1, pair.ct.value())], [32768])

    def test_maxFrameSizeOption(self) -> None:
        pair = Pair(maxFrameSize=1000)
        stream, proto, remote, rproto = pair.open()
        stream.write(b"y" * 2500)
        self.assertEqual([len(d) for _, _, d in frames(1, pair.ct.value())], [1000, 1000, 500])

    def test_streamAddresses(self) -> None:
        """
        A stream's addresses default to its carrier's; an owner may set
        the peer (the rtcp listener sets the remote peer).
        """
        pair = Pair()
        stream, proto, remote, rproto = pair.open()
        self.assertEqual(stream.getPeer(), pair.ct.getPeer())
        self.assertEqual(stream.getHost(), pair.ct.getHost())
        remote.peerAddress = "somewhere"
        self.assertEqual(remote.getPeer(), "somewhere")


class KeepaliveTests(MuxTestCase):
    NOP1 = encodeFrame(1, NOP, 0)

    def lone(self, version: int = 1, **options: Any) -> tuple[Clock, Carrier, MuxSession, list[Failure]]:
        clock = Clock()
        tr = Carrier()
        closed: list[Failure] = []
        session = MuxSession(
            clock, tr, client=False, config=MuxConfig(version=version, **options),
            acceptStream=lambda s: s.attach(Recorder()), onClose=closed.append,
        )
        return clock, tr, session, closed

    def test_nopEvery10s(self) -> None:
        """
        A NOP (spec 4.5: 01 03 00 00 00 00 00 00) every 10 s, not before.
        """
        clock, tr, session, _ = self.lone()
        clock.advance(9.9)
        self.assertEqual(tr.value(), b"")
        clock.advance(0.1)
        self.assertEqual(tr.value(), vectors.hexBytes("01 03 00 00 00 00 00 00"))
        tr.clear()
        session.dataReceived(self.NOP1)
        clock.advance(10)
        self.assertEqual(tr.value(), self.NOP1)

    def test_nopVersion2(self) -> None:
        clock, tr, session, _ = self.lone(version=2)
        clock.advance(10)
        self.assertEqual(tr.value(), encodeFrame(2, NOP, 0))

    def test_closedAfter30sWithNothingHeard(self) -> None:
        """
        A peer that never says anything is dropped at the first check,
        30 s after the session started, as smux does (its C{dataReady}
        flag starts cleared, spec 4.4).

        Regression: MuxSession used to start with C{_heard = True}, so a
        silent peer was only dropped at 60 s.
        """
        clock, tr, session, closed = self.lone()
        clock.advance(30)
        self.assertTrue(tr.disconnecting, "a peer silent for 30 s must be dropped")

    def test_deadPeerDetectedWithin60s(self) -> None:
        """
        After the last frame, the session ends at the second check at the
        latest (30-60 s), not at the first one if something arrived since
        the start.
        """
        clock, tr, session, closed = self.lone()
        clock.advance(5)
        session.dataReceived(self.NOP1)
        clock.advance(25)  # t=30: heard since start
        self.assertFalse(tr.disconnecting)
        clock.advance(30)  # t=60: nothing since t=30
        self.assertTrue(tr.disconnecting)
        session.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(closed), 1)
        self.assertNoDelayedCalls(clock)

    def test_notClosedWhileNOPsArrive(self) -> None:
        """
        Two sessions sending each other only NOPs stay up for ten minutes.
        """
        pair = Pair()
        for _ in range(60):
            pair.clock.advance(10)
            c2s, s2c = pair.pump()
            self.assertEqual(c2s, self.NOP1)
            self.assertEqual(s2c, self.NOP1)
        self.assertFalse(pair.ct.disconnecting or pair.st.disconnecting)
        self.assertEqual(pair.closed, {"client": [], "server": []})

    def test_anyFrameCounts(self) -> None:
        """
        Data frames keep the session up as well as NOPs.
        """
        pair = Pair(keepaliveDisabled=False)
        stream, proto, remote, rproto = pair.open()
        for _ in range(10):
            pair.clock.advance(15)
            stream.write(b"tick")
            remote.write(b"tock")
            pair.pump()
        self.assertFalse(pair.ct.disconnecting or pair.st.disconnecting)

    def test_timeoutEndsStreams(self) -> None:
        """
        When the keepalive gives up, the session's streams end and its
        carrier is closed.
        """
        clock, tr, session, closed = self.lone()
        session.dataReceived(encodeFrame(1, SYN, 3))
        (stream,) = session.streams.values()
        proto = stream.protocol
        for _ in range(6):
            clock.advance(10)
        self.assertTrue(tr.disconnecting)
        self.assertEqual(len(proto.lost), 1)
        self.assertTrue(stream.closed)
        session.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(closed), 1)
        self.assertNoDelayedCalls(clock)

    def test_notClosedWhileV1StreamPaused(self) -> None:
        """
        A v1 stream paused by its reader pauses the carrier; silence then
        is ours, not the peer's: no timeout (smux skips the close while its
        receive budget is used up).
        """
        pair = Pair(keepaliveInterval=10, keepaliveTimeout=30)
        stream, proto, remote, rproto = pair.open()
        remote.pauseProducing()
        pair.clock.advance(120)
        self.assertFalse(pair.st.disconnecting)

    def test_options(self) -> None:
        clock, tr, session, _ = self.lone(keepaliveInterval=2, keepaliveTimeout=5)
        clock.advance(2)
        self.assertEqual(tr.value(), self.NOP1)

    def test_disabled(self) -> None:
        clock, tr, session, _ = self.lone(keepaliveDisabled=True)
        self.assertNoDelayedCalls(clock)
        clock.advance(300)
        self.assertEqual(tr.value(), b"")
        self.assertFalse(tr.disconnecting)

    def test_connectionLostCancelsTimers(self) -> None:
        clock, tr, session, closed = self.lone()
        session.connectionLost(Failure(ConnectionLost()))
        self.assertNoDelayedCalls(clock)
        self.assertEqual(len(closed), 1)


class VersionOnePauseTests(MuxTestCase):
    """
    v1 has no per-stream flow control: a paused stream pauses the carrier
    (head-of-line blocking, as smux does).
    """

    def test_pausePausesCarrier(self) -> None:
        pair = Pair()
        s1, p1, r1, rp1 = pair.open()
        s2, p2, r2, rp2 = pair.open()
        self.assertEqual(pair.st.producerState, "producing")
        r1.pauseProducing()
        self.assertEqual(pair.st.producerState, "paused")
        r2.pauseProducing()
        r1.resumeProducing()
        self.assertEqual(pair.st.producerState, "paused", "another stream is still paused")
        r2.resumeProducing()
        self.assertEqual(pair.st.producerState, "producing")

    def test_pauseTwiceCountsOnce(self) -> None:
        pair = Pair()
        s1, p1, r1, rp1 = pair.open()
        r1.pauseProducing()
        r1.pauseProducing()
        r1.resumeProducing()
        self.assertEqual(pair.st.producerState, "producing")

    def test_closingPausedStreamResumesCarrier(self) -> None:
        pair = Pair()
        s1, p1, r1, rp1 = pair.open()
        r1.pauseProducing()
        r1.loseConnection()
        self.assertEqual(pair.st.producerState, "producing")

    def test_remoteFinOnPausedStreamResumesCarrier(self) -> None:
        pair = Pair()
        s1, p1, r1, rp1 = pair.open()
        r1.pauseProducing()
        s1.loseConnection()
        pair.pump()
        self.assertEqual(pair.st.producerState, "producing")

    def test_noUpdatesInV1(self) -> None:
        pair = Pair()
        s1, p1, r1, rp1 = pair.open()
        s1.write(b"x" * 100000)
        c2s, s2c = pair.pump()
        self.assertEqual(s2c, b"")
        self.assertEqual(len(rp1.received), 100000)


class CarrierBackPressureTests(MuxTestCase):
    def test_carrierFullPausesStreamProducers(self) -> None:
        """
        The session is its carrier's producer; a full carrier pauses the
        producers writing to every stream, and resumes them.
        """
        pair = Pair()
        s1, p1, r1, rp1 = pair.open()
        s2, p2, r2, rp2 = pair.open()
        self.assertIs(pair.ct.producer, pair.client)
        producers = [FakeProducer(), FakeProducer()]
        s1.registerProducer(producers[0], True)
        s2.registerProducer(producers[1], True)
        pair.client.pauseProducing()
        self.assertEqual([p.paused for p in producers], [True, True])
        pair.client.resumeProducing()
        self.assertEqual([p.paused for p in producers], [False, False])

    def test_registerWhileCarrierFull(self) -> None:
        pair = Pair()
        s1, p1, r1, rp1 = pair.open()
        pair.client.pauseProducing()
        producer = FakeProducer()
        s1.registerProducer(producer, True)
        self.assertTrue(producer.paused)

    def test_stopProducingClosesSession(self) -> None:
        pair = Pair()
        s1, p1, r1, rp1 = pair.open()
        pair.client.stopProducing()
        self.assertTrue(pair.ct.disconnecting)
        self.assertEqual(len(p1.lost), 1)


class VersionTwoTests(MuxTestCase):
    """
    v2 per-stream windows (spec 4.3).
    """

    def test_bindExchangeMatchesGOST(self) -> None:
        """
        The v2 exchange GOST recorded: the relay client, having read the
        14-byte per-peer response, sends UPD(14, 65536) before its reply
        (vector smux_v2_psh_data_world_reply); the relay server, having
        read 'world', sends UPD(5, 65536) before its FIN (vector
        smux_v2_fin_close_stream).
        """
        pair = Pair(version=2)
        stream = pair.client.openStream()
        proto = Recorder()
        stream.attach(proto)
        stream.write(PEER_RESPONSE)
        stream.write(b"hello")
        self.assertEqual(
            pair.ct.value(),
            vectors.caseBytes("smux_v2_syn_open_stream")
            + vectors.caseBytes("smux_v2_psh_peer_response")
            + vectors.caseBytes("smux_v2_psh_data_hello"),
        )
        pair.ct.clear()
        pair.server.dataReceived(
            vectors.caseBytes("smux_v2_syn_open_stream") + vectors.caseBytes("smux_v2_psh_peer_response")
        )
        (remote,) = pair.accepted
        self.assertEqual(pair.st.value(), encodeUpdate(2, 3, 14, 65536))
        remote.write(b"world")
        self.assertEqual(pair.st.value(), vectors.caseBytes("smux_v2_psh_data_world_reply"))
        pair.st.clear()
        pair.client.dataReceived(vectors.caseBytes("smux_v2_psh_data_world_reply"))
        self.assertEqual(proto.received, b"world")
        stream.loseConnection()
        self.assertEqual(pair.ct.value(), vectors.caseBytes("smux_v2_fin_close_stream"))
        pair.server.dataReceived(pair.ct.value())
        self.assertEqual(pair.st.value(), vectors.caseBytes("smux_v2_fin_close_stream_peer"))

    def test_updateEveryHalfBuffer(self) -> None:
        """
        UPD(consumed, 65536) on the first read, then whenever 32768 more
        bytes were consumed.
        """
        pair = Pair(version=2)
        stream, proto, remote, rproto = pair.open()
        pair.st.clear()
        stream.write(b"z" * 100000)
        c2s, s2c = pair.pump()
        updates = [(sid, decodeUpdate(d)) for cmd, sid, d in frames(2, s2c) if cmd == UPD]
        self.assertEqual(updates, [(3, (32768, 65536)), (3, (65536, 65536)), (3, (98304, 65536))])
        self.assertEqual(len(rproto.received), 100000)

    def test_smallReadsUpdateOnlyFirstThenHalf(self) -> None:
        """
        smux counts from its last UPD: after the first read (1000 bytes),
        the next UPD comes once 32768 more were read, at 34000.
        """
        pair = Pair(version=2)
        stream, proto, remote, rproto = pair.open()
        updates = []
        for _ in range(40):
            stream.write(b"k" * 1000)
            c2s, s2c = pair.pump()
            updates += [decodeUpdate(d)[0] for cmd, _, d in frames(2, s2c) if cmd == UPD]
        self.assertEqual(updates, [1000, 34000])

    def test_pausedStreamHoldsDataAndUpdates(self) -> None:
        """
        A paused v2 stream leaves the carrier alone, keeps what arrives,
        sends no UPD; resumed, it delivers and sends UPD(consumed, 65536).
        Like smux's reader, which takes one buffered frame per read, the
        first delivery (the first PSH, 5 bytes) is the first read: UPD(5).
        """
        pair = Pair(version=2)
        stream, proto, remote, rproto = pair.open()
        remote.pauseProducing()
        stream.write(b"hello")
        c2s, s2c = pair.pump()
        self.assertEqual(rproto.received, b"")
        self.assertEqual(s2c, b"", "a paused stream must withhold its window update")
        self.assertEqual(pair.st.producerState, "producing", "v2 must not pause the carrier")
        stream.write(b" again")
        pair.pump()
        self.assertEqual(pair.st.value(), b"")
        remote.resumeProducing()
        self.assertEqual(rproto.received, b"hello again")
        self.assertEqual(pair.st.value(), encodeUpdate(2, 3, 5, 65536))

    def test_finAfterHeldDataDeliversIt(self) -> None:
        """
        A FIN is the end of the stream *after* its data (spec 4.2: "the
        receiver delivers buffered data then EOF"): bytes a paused v2
        stream holds when the FIN arrives are delivered when it resumes,
        then connectionLost.

        BUG (fails today): MuxStream._remoteFin calls loseConnection at
        once, which marks the stream closed and drops what it holds: the
        protocol never gets the tail.  Repro: v2 pair, remote stream
        pauseProducing(); peer writes b"tail" and loseConnection(); pump;
        resumeProducing() -> protocol received b"" and connectionLost.
        """
        pair = Pair(version=2)
        stream, proto, remote, rproto = pair.open()
        remote.pauseProducing()
        stream.write(b"tail")
        stream.loseConnection()
        pair.pump()
        remote.resumeProducing()
        pair.clock.advance(0)
        self.assertEqual(rproto.received, b"tail", "data before the FIN was lost")
        self.assertEqual(len(rproto.lost), 1)

    def test_otherStreamsFlowWhileOnePaused(self) -> None:
        pair = Pair(version=2)
        s1, p1, r1, rp1 = pair.open()
        s2, p2, r2, rp2 = pair.open()
        r1.pauseProducing()
        s1.write(b"held")
        s2.write(b"flows")
        pair.pump()
        self.assertEqual((rp1.received, rp2.received), (b"", b"flows"))

    def test_senderPausedWhenWindowUsedUp(self) -> None:
        """
        Without UPDs a v2 sender may have 262144 bytes in flight; when they
        are written its producer is paused; a UPD opening the window
        resumes it, a UPD that leaves it used up does not.
        """
        pair = Pair(version=2)
        stream, proto, remote, rproto = pair.open()
        producer = FakeProducer()
        stream.registerProducer(producer, True)
        stream.write(b"w" * (INITIAL_PEER_WINDOW - 1))
        self.assertEqual(producer.events, [])
        stream.write(b"w")
        self.assertEqual(producer.events, ["pause"])
        # Consumed half, window 65536: 131072 still in flight, >= 65536.
        pair.client.dataReceived(encodeUpdate(2, 3, 131072, 65536))
        self.assertEqual(producer.events, ["pause"])
        pair.client.dataReceived(encodeUpdate(2, 3, INITIAL_PEER_WINDOW, 65536))
        self.assertEqual(producer.events, ["pause", "resume"])
        self.assertFalse(pair.ct.disconnecting)

    def test_registerWhileWindowShut(self) -> None:
        pair = Pair(version=2)
        stream, proto, remote, rproto = pair.open()
        stream.write(b"w" * INITIAL_PEER_WINDOW)
        producer = FakeProducer()
        stream.registerProducer(producer, True)
        self.assertTrue(producer.paused)

    def test_realReceiverKeepsSenderGoing(self) -> None:
        """
        With a live receiver, its UPDs keep the sender's window open: 1 MiB
        goes through with the producer resumed at the end.
        """
        pair = Pair(version=2)
        stream, proto, remote, rproto = pair.open()
        producer = FakeProducer()
        stream.registerProducer(producer, True)
        for _ in range(32):
            stream.write(b"m" * 32768)
            pair.pump()
        self.assertEqual(len(rproto.received), 1024 * 1024)
        self.assertFalse(producer.paused)

    def test_pausedStreamOverflowBreaksSession(self) -> None:
        """
        A paused stream that is sent more than maxReceiveBuffer (4 MiB)
        breaks the session: carrier closed, streams ended.
        """
        pair = Pair(version=2)
        stream, proto, remote, rproto = pair.open()
        other, oproto, oremote, orproto = pair.open()
        remote.pauseProducing()
        chunk = b"o" * 32768
        for _ in range(4 * 1024 * 1024 // 32768):
            pair.server.dataReceived(encodeFrame(2, PSH, 3, chunk))
        self.assertFalse(pair.st.disconnecting, "exactly 4 MiB held is still allowed")
        pair.server.dataReceived(encodeFrame(2, PSH, 3, b"!"))
        self.assertTrue(pair.st.disconnecting)
        self.assertEqual(len(orproto.lost), 1)

    def test_versionMismatchBreaksSession(self) -> None:
        pair = Pair(version=2)
        stream, proto, remote, rproto = pair.open()
        pair.server.dataReceived(encodeFrame(1, PSH, 3, b"v1!"))
        self.assertTrue(pair.st.disconnecting)
        self.assertEqual(rproto.received, b"")
        self.assertEqual(len(rproto.lost), 1)


class SessionEndTests(MuxTestCase):
    def test_closeEndsAllStreams(self) -> None:
        """
        Closing the session ends every stream (connectionLost) and closes
        the carrier; when the carrier is gone, onClose fires once and no
        timer is left.
        """
        pair = Pair()
        opened = [pair.open() for _ in range(3)]
        pair.client.close()
        self.assertTrue(pair.ct.disconnecting)
        for stream, proto, _remote, _rproto in opened:
            self.assertEqual(len(proto.lost), 1)
            self.assertTrue(stream.closed)
        pair.client.close()
        self.assertEqual(pair.ct.lostCount, 1)
        self.assertEqual(pair.client.streams, {})
        pair.client.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(pair.closed["client"]), 1)
        pair.server.connectionLost(Failure(ConnectionDone()))
        for *_, rproto in opened:
            self.assertEqual(len(rproto.lost), 1)
        self.assertEqual(len(pair.closed["server"]), 1)
        pair.clock.advance(0)
        self.assertNoDelayedCalls(pair.clock)
        for _stream, proto, _remote, rproto in opened:
            self.assertEqual((len(proto.lost), len(rproto.lost)), (1, 1))

    def test_carrierLostEndsAllStreams(self) -> None:
        """
        The carrier's connectionLost ends every stream with its reason and
        fires onClose with it.
        """
        pair = Pair()
        opened = [pair.open() for _ in range(3)]
        reason = Failure(ConnectionLost("gone"))
        pair.server.connectionLost(reason)
        for _stream, _proto, _remote, rproto in opened:
            self.assertEqual(len(rproto.lost), 1)
            self.assertTrue(rproto.lost[0].check(ConnectionLost))
        self.assertEqual(pair.closed["server"], [reason])
        self.assertEqual(pair.server.streams, {})
        pair.server.dataReceived(encodeFrame(1, PSH, 3, b"after"))
        for _stream, _proto, _remote, rproto in opened:
            self.assertEqual(rproto.received, b"")
        pair.client.connectionLost(reason)
        pair.clock.advance(0)
        self.assertNoDelayedCalls(pair.clock)

    def test_writesAfterCloseDropped(self) -> None:
        pair = Pair()
        stream, proto, remote, rproto = pair.open()
        pair.client.close()
        pair.ct.clear()
        stream.write(b"late")
        self.assertEqual(pair.ct.value(), b"")

    def test_protocolErrorClosesSession(self) -> None:
        pair = Pair()
        stream, proto, remote, rproto = pair.open()
        pair.server.dataReceived(bytes.fromhex("0109000003000000"))
        self.assertTrue(pair.st.disconnecting)
        self.assertEqual(len(rproto.lost), 1)


class StateTests(MuxTestCase):
    """
    The stream and session states (L{StreamState}, L{SessionState}) name
    where each is in its life, and only move forward.
    """

    def test_streamLife(self) -> None:
        """
        A paused v2 stream whose peer finished holds the FIN behind its
        bytes (C{FIN_HELD}); resumed, it delivers them, then the end
        (C{READ_DONE}); closing it is C{CLOSED}, C{disconnecting}.
        """
        pair = Pair(version=2)
        stream, proto, remote, rproto = pair.open()
        self.assertEqual((stream.state, remote.state), (StreamState.OPEN, StreamState.OPEN))
        remote.pauseProducing()
        stream.write(b"tail")
        stream.loseConnection()
        self.assertEqual(stream.state, StreamState.CLOSED)
        self.assertTrue(stream.closed and stream.disconnecting)
        pair.pump()
        self.assertEqual(remote.state, StreamState.FIN_HELD)
        self.assertFalse(remote.closed or remote.disconnecting)
        remote.resumeProducing()
        # Recorder takes no half-close: the end closes the stream.
        self.assertEqual(remote.state, StreamState.CLOSED)
        self.assertEqual(rproto.received, b"tail")

    def test_readDoneForHalfCloseable(self) -> None:
        """
        A protocol that takes a read EOF gets it, and the stream stays
        writable (C{READ_DONE}) until it closes.
        """

        @implementer(IHalfCloseableProtocol)
        class HalfCloser(Recorder):
            eof = 0

            def readConnectionLost(self) -> None:
                self.eof += 1

        pair = Pair(attach=False)
        stream = pair.client.openStream()
        stream.attach(Recorder())
        pair.pump()
        remote = pair.accepted[-1]
        protocol = HalfCloser()
        stream.loseConnection()
        pair.pump()
        self.assertEqual(remote.state, StreamState.FIN_HELD, "no protocol yet: the end waits")
        remote.attach(protocol)
        self.assertEqual((remote.state, protocol.eof), (StreamState.READ_DONE, 1))
        pair.server.dataReceived(encodeFrame(1, FIN, remote.sid))
        self.assertEqual(protocol.eof, 1, "one end only")
        pair.st.clear()
        remote.write(b"reply")
        self.assertEqual(frames(1, pair.st.value()), [(PSH, remote.sid, b"reply")])
        remote.loseConnection()
        self.assertEqual(remote.state, StreamState.CLOSED)

    def test_sessionLost(self) -> None:
        """
        Streams of a session whose carrier went are C{LOST}, not
        disconnecting (we did not close them); the session is C{DONE}.
        """
        pair = Pair()
        stream, proto, remote, rproto = pair.open()
        pair.server.connectionLost(Failure(ConnectionLost("gone")))
        self.assertEqual(remote.state, StreamState.LOST)
        self.assertTrue(remote.closed)
        self.assertFalse(remote.disconnecting)
        remote.loseConnection()
        self.assertEqual(remote.state, StreamState.LOST, "final")
        self.assertEqual(pair.server.state, SessionState.DONE)
        self.assertTrue(pair.server.closed)

    def test_sessionClosing(self) -> None:
        pair = Pair()
        self.assertEqual(pair.client.state, SessionState.OPEN)
        self.assertFalse(pair.client.closed)
        pair.client.close()
        self.assertEqual(pair.client.state, SessionState.CLOSING)
        self.assertTrue(pair.client.closed)
        pair.client.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(pair.client.state, SessionState.DONE)
        self.assertEqual(len(pair.closed["client"]), 1)
        pair.server.connectionLost(Failure(ConnectionDone()))


class ConfigTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        config = MuxConfig.fromMetadata(Metadata({}))
        self.assertEqual(
            (config.version, config.keepaliveInterval, config.keepaliveTimeout, config.maxFrameSize,
             config.maxReceiveBuffer, config.maxStreamBuffer, config.keepaliveDisabled),
            (1, 10.0, 30.0, 32768, 4194304, 65536, False),
        )

    def test_options(self) -> None:
        config = MuxConfig.fromMetadata(
            Metadata({"mux.version": "2", "mux.keepaliveInterval": "5s", "mux.keepaliveTimeout": "15s",
                      "mux.maxFrameSize": "1000"})
        )
        self.assertEqual((config.version, config.keepaliveInterval, config.keepaliveTimeout, config.maxFrameSize),
                         (2, 5.0, 15.0, 1000))

    def test_refused(self) -> None:
        for md in (
            {"mux.version": "3"},
            {"mux.keepaliveInterval": "20s", "mux.keepaliveTimeout": "10s"},
            {"mux.maxFrameSize": "65536"},
            {"mux.type": "yamux"},
        ):
            self.assertRaises(ConfigError, MuxConfig.fromMetadata, Metadata(md), "here")
