"""
Tests of the UDP paths: the two stream framings (L{gostrelay.wire.udpframe},
spec-relay.md 2.5, 5), the datagram channels over streams
(L{gostrelay.datagram}), the udp listener's sessions
(L{gostrelay.transports.udp}, spec 6.2), the udp forward handler's session
queue (L{gostrelay.handlers.udpforward}), the whole client path on a memory
reactor against the GOST transcript, and the relay server's UDP CONNECT over
loopback.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from gostrelay.build import BuildContext
from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.datagram import ChannelFactory, LengthFramedChannel, TunnelFramedChannel
from gostrelay.errors import DialError
from gostrelay.handlers.udpforward import UDPForwardHandler
from gostrelay.interfaces import IDatagramReceiver
from gostrelay.transports.udp import DEFAULT_TTL, UDPListener
from gostrelay.wire.relay import connectRequest
from gostrelay.wire.udpframe import (
    FrameError,
    LengthFrameParser,
    TunnelDatagramParser,
    UDPConnectReframer,
    encodeLengthFrame,
    encodeTunnelDatagram,
)
from tests import vectors
from tests.support.cases import TransportTestCase
from tests.support.fakes import RecordingTransport
from tests.support.reactor import withTimeout
from tests.support.targets import HalfCloseCollector, UDPEcho
from tests.support.udp import FakeSessionHandler, UDPMemoryReactor

OK = bytes.fromhex("01000000")


# -- codecs


def splitAt(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return out


datagramsLists = st.lists(st.binary(max_size=300), max_size=8)
cutLists = st.lists(st.integers(min_value=0, max_value=10000), max_size=12)
tunnelPeers = st.sampled_from(
    [("127.0.0.1", 53), ("::1", 5353), ("example.com", 443), ("10.20.30.40", 0), ("2001:db8::1", 65535)]
)


class LengthFrameTests(SynchronousTestCase):
    def test_vectorFrames(self) -> None:
        """
        The server's UDP CONNECT bytes (OK, then a frame): the frame part
        is C{encodeLengthFrame(b"hello")}.
        """
        for name in ("server_connect_udp_nodelay_true_ok_then_echo", "server_connect_udp_nodelay_false_merged"):
            data = vectors.caseBytes(name)
            self.assertEqual(data, OK + encodeLengthFrame(b"hello"))
            self.assertEqual(LengthFrameParser().feed(data[4:]), [b"hello"])

    def test_limits(self) -> None:
        self.assertEqual(encodeLengthFrame(b""), b"\x00\x00")
        self.assertEqual(encodeLengthFrame(b"x" * 65535)[:2], b"\xff\xff")
        self.assertRaises(FrameError, encodeLengthFrame, b"x" * 65536)

    @given(datagramsLists, cutLists)
    @settings(max_examples=200, deadline=None)
    def test_anySplit(self, datagrams: list[bytes], cuts: list[int]) -> None:
        stream = b"".join(encodeLengthFrame(d) for d in datagrams)
        parser = LengthFrameParser()
        out: list[bytes] = []
        for piece in splitAt(stream, cuts):
            out.extend(parser.feed(piece))
        self.assertEqual(out, datagrams)
        self.assertEqual(parser.buffered, 0)

    def test_partialHeld(self) -> None:
        parser = LengthFrameParser()
        self.assertEqual(parser.feed(b"\x00\x05hel"), [])
        self.assertEqual(parser.buffered, 5)
        self.assertEqual(parser.feed(b"lo\x00"), [b"hello"])
        self.assertEqual(parser.buffered, 1)


class TunnelFrameTests(SynchronousTestCase):
    def test_encodeVectors(self) -> None:
        """
        C{udptun_*}: the encoding of (peer, "hello") equals GOST's bytes.
        """
        cases = vectors.casesWithPrefix("udptun_")
        self.assertGreaterEqual(len(cases), 4)
        for case in cases:
            from gostrelay.wire.address import splitHostPort

            host, port = splitHostPort(case["fields"]["addr"])
            data = case["fields"]["data"].encode()
            self.assertEqual(encodeTunnelDatagram(host, port, data), vectors.caseFileBytes(case["name"]), case["name"])

    def test_decodeVectorsByWrites(self) -> None:
        """
        GOST writes header, address and data separately; fed write by
        write, one datagram comes out, with the decoded address.
        """
        from gostrelay.wire.address import joinHostPort

        for case in vectors.casesWithPrefix("udptun_"):
            parser = TunnelDatagramParser()
            out = []
            for w in vectors.caseWrites(case["name"]):
                out.extend(parser.feed(w))
            self.assertEqual(len(out), 1, case["name"])
            host, port, data = out[0]
            self.assertEqual(joinHostPort(host, port), case["fields"]["decoded_addr"], case["name"])
            self.assertEqual(data, case["fields"]["data"].encode())

    def test_emptyRefused(self) -> None:
        self.assertRaises(FrameError, encodeTunnelDatagram, "127.0.0.1", 53, b"")

    def test_zeroLengthReceivedKeepsFraming(self) -> None:
        parser = TunnelDatagramParser()
        zero = b"\x00\x00\xff\x01\x7f\x00\x00\x01\x00\x35"
        self.assertEqual(
            parser.feed(zero + encodeTunnelDatagram("127.0.0.1", 53, b"x")),
            [("127.0.0.1", 53, b""), ("127.0.0.1", 53, b"x")],
        )

    def test_badAddressType(self) -> None:
        self.assertRaises(FrameError, TunnelDatagramParser().feed, b"\x00\x01\xff\x09abcdefgh")

    @given(st.lists(st.tuples(tunnelPeers, st.binary(min_size=1, max_size=200)), max_size=6), cutLists)
    @settings(max_examples=200, deadline=None)
    def test_anySplit(self, items: list[Any], cuts: list[int]) -> None:
        stream = b"".join(encodeTunnelDatagram(h, p, d) for (h, p), d in items)
        parser = TunnelDatagramParser()
        out = []
        for piece in splitAt(stream, cuts):
            out.extend(parser.feed(piece))
        self.assertEqual(out, [(h, p, d) for (h, p), d in items])


class UDPConnectReframerTests(SynchronousTestCase):
    """
    A UDP CONNECT's length frames carried on by a proxy hop as tunnel
    datagrams to the target, or as bare datagrams, and back.
    """

    @given(tunnelPeers, datagramsLists, cutLists)
    @settings(max_examples=200, deadline=None)
    def test_appToTunnel(self, peer: tuple[str, int], datagrams: list[bytes], cuts: list[int]) -> None:
        """
        Frames in any split become tunnel datagrams naming the target;
        empty ones, which the tunnel framing cannot carry, are dropped.
        """
        reframer = UDPConnectReframer(*peer)
        out = b"".join(reframer.tunnelFromApp(piece) for piece in splitAt(b"".join(map(encodeLengthFrame, datagrams)), cuts))
        self.assertEqual(TunnelDatagramParser().feed(out), [(*peer, d) for d in datagrams if d])
        self.assertEqual(reframer.dropped, datagrams.count(b""))

    @given(datagramsLists, cutLists)
    @settings(max_examples=100, deadline=None)
    def test_appToDatagrams(self, datagrams: list[bytes], cuts: list[int]) -> None:
        reframer = UDPConnectReframer("127.0.0.1", 53)
        stream = b"".join(map(encodeLengthFrame, datagrams))
        self.assertEqual([d for piece in splitAt(stream, cuts) for d in reframer.datagramsFromApp(piece)], datagrams)

    @given(st.lists(st.tuples(tunnelPeers, st.binary(min_size=1, max_size=200)), max_size=6), cutLists)
    @settings(max_examples=100, deadline=None)
    def test_tunnelToApp(self, items: list[Any], cuts: list[int]) -> None:
        """
        The peer's tunnel datagrams in any split become the application's
        frames (whoever the peer names: the target is fixed).
        """
        reframer = UDPConnectReframer("127.0.0.1", 53)
        stream = b"".join(encodeTunnelDatagram(h, p, d) for (h, p), d in items)
        out = b"".join(reframer.tunnelToApp(piece) for piece in splitAt(stream, cuts))
        self.assertEqual(out, b"".join(encodeLengthFrame(d) for _, d in items))
        self.assertEqual(UDPConnectReframer.toApp(b"one"), encodeLengthFrame(b"one"))

    def test_badTunnel(self) -> None:
        self.assertRaises(FrameError, UDPConnectReframer("127.0.0.1", 53).tunnelToApp, b"\x00\x01\xff\x09abcdefgh")


# -- channels over a stream


@implementer(IDatagramReceiver)
class Receiver:
    def __init__(self) -> None:
        self.datagrams: list[tuple[bytes, str]] = []
        self.closed: list[Any] = []

    def datagramReceived(self, data: bytes, addr: str) -> None:
        self.datagrams.append((data, addr))

    def channelClosed(self, reason: Any) -> None:
        self.closed.append(reason)


def connectChannel(channel: Any) -> StringTransport:
    tr = StringTransport()
    ChannelFactory(channel).buildProtocol(None).makeConnection(tr)
    return tr


class LengthFramedChannelTests(SynchronousTestCase):
    def test_sendAndReceive(self) -> None:
        receiver = Receiver()
        channel = LengthFramedChannel(receiver, "10.0.0.1:53")
        tr = connectChannel(channel)
        self.assertIs(tr.producer, channel.gate, "the channel's drop gate must be its transport's producer")
        channel.sendDatagram(b"hello", "ignored:1")
        channel.sendDatagram(b"", "")
        self.assertEqual(tr.value(), b"\x00\x05hello\x00\x00")
        channel.dataReceived(b"\x00\x03ab")
        channel.dataReceived(b"c\x00\x00\x00")
        self.assertEqual(receiver.datagrams, [(b"abc", "10.0.0.1:53"), (b"", "10.0.0.1:53")])

    def test_dropWhenPaused(self) -> None:
        """
        While the transport has asked its producer to pause, datagrams are
        dropped and counted, never buffered.
        """
        channel = LengthFramedChannel(Receiver(), "10.0.0.1:53")
        tr = connectChannel(channel)
        tr.producer.pauseProducing()
        channel.sendDatagram(b"lost", "")
        channel.sendDatagram(b"lost too", "")
        self.assertEqual(tr.value(), b"")
        self.assertEqual(channel.dropped, 2)
        tr.producer.resumeProducing()
        channel.sendDatagram(b"ok", "")
        self.assertEqual(tr.value(), b"\x00\x02ok")

    def test_oversizeDropped(self) -> None:
        channel = LengthFramedChannel(Receiver(), "")
        tr = connectChannel(channel)
        channel.sendDatagram(b"x" * 65536, "")
        self.assertEqual(tr.value(), b"")
        self.assertEqual(channel.dropped, 1)

    def test_close(self) -> None:
        receiver = Receiver()
        channel = LengthFramedChannel(receiver, "")
        tr = connectChannel(channel)
        channel.close()
        self.assertTrue(tr.disconnecting)
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(receiver.closed), 1)
        channel.sendDatagram(b"after", "")
        self.assertEqual(tr.value(), b"")


class TunnelFramedChannelTests(SynchronousTestCase):
    def test_sendVectors(self) -> None:
        channel = TunnelFramedChannel(Receiver())
        tr = connectChannel(channel)
        channel.sendDatagram(b"hello", "127.0.0.1:53")
        channel.sendDatagram(b"hello", "example.com:53")
        self.assertEqual(
            tr.value(),
            vectors.caseBytes("udptun_client_to_server_ipv4") + vectors.caseBytes("udptun_client_to_server_domain"),
        )

    def test_receiveVector(self) -> None:
        receiver = Receiver()
        channel = TunnelFramedChannel(receiver)
        connectChannel(channel)
        for w in vectors.caseWrites("udptun_server_to_client_ipv6"):
            channel.dataReceived(w)
        channel.dataReceived(vectors.caseBytes("udptun_server_to_client_ipv4"))
        self.assertEqual(receiver.datagrams, [(b"hello", "[::1]:5353"), (b"hello", "127.0.0.1:53")])

    def test_emptyAndBadAddressDropped(self) -> None:
        channel = TunnelFramedChannel(Receiver())
        tr = connectChannel(channel)
        channel.sendDatagram(b"", "127.0.0.1:53")
        channel.sendDatagram(b"x", "example.com:99999")
        channel.sendDatagram(b"x", "x" * 300 + ":53")
        channel.sendDatagram(b"x", None)
        self.assertEqual(tr.value(), b"")
        self.assertEqual(channel.dropped, 4)

    def test_dropWhenPaused(self) -> None:
        channel = TunnelFramedChannel(Receiver())
        tr = connectChannel(channel)
        tr.producer.pauseProducing()
        channel.sendDatagram(b"x", "127.0.0.1:53")
        self.assertEqual((tr.value(), channel.dropped), (b"", 1))

    def test_badStreamClosed(self) -> None:
        channel = TunnelFramedChannel(Receiver())
        tr = connectChannel(channel)
        channel.dataReceived(b"\x00\x01\xff\x09abcdefgh")
        self.assertTrue(tr.disconnecting)


# -- the udp listener's sessions, on a memory reactor


A = ("127.0.0.1", 5001)
B = ("127.0.0.1", 5002)
C = ("127.0.0.1", 5003)


def startListener(url: str, handler: Any = None, reactor: UDPMemoryReactor | None = None):  # type: ignore[no-untyped-def]
    reactor = reactor if reactor is not None else UDPMemoryReactor()
    cfg = buildConfigFromCommandLine([url], [])
    svc = cfg.services[0]
    listener = UDPListener(reactor, svc, BuildContext(reactor, cfg))
    handler = handler if handler is not None else FakeSessionHandler()
    results: list[Any] = []
    listener.listen(handler).addBoth(results.append)
    port = results[0]
    return reactor, listener, handler, port, reactor.udpPorts[-1]


class ListenerTests(SynchronousTestCase):
    def test_socketOptions(self) -> None:
        """
        Bound where asked, reading whole datagrams (65535, not GOST's 4096).
        """
        reactor, listener, handler, port, sock = startListener("udp://127.0.0.1:1053/10.0.0.1:53")
        self.assertEqual((sock.port, sock.interface, sock.maxPacketSize), (1053, "127.0.0.1", 65535))
        self.assertEqual(port.getHost().port, 1053)
        reactor, listener, handler, port, sock = startListener("udp://127.0.0.1:0/x:53?readBufferSize=1500")
        self.assertEqual(sock.maxPacketSize, 1500)

    def test_perClientSessions(self) -> None:
        reactor, listener, handler, port, sock = startListener("udp://127.0.0.1:0/10.0.0.1:53")
        table = sock.protocol
        table.datagramReceived(b"a1", A)
        table.datagramReceived(b"b1", B)
        table.datagramReceived(b"a2", A)
        self.assertEqual([s.client for s in handler.sessions], ["127.0.0.1:5001", "127.0.0.1:5002"])
        self.assertEqual(handler.sessions[0].datagrams, [b"a1", b"a2"])
        self.assertEqual(handler.sessions[1].datagrams, [b"b1"])
        table.reply("127.0.0.1:5002", b"to b")
        table.reply("127.0.0.1:5001", b"to a")
        self.assertEqual(sock.sent, [(b"to b", B), (b"to a", A)])

    def test_mappedIPv6ClientIsIPv4(self) -> None:
        reactor, listener, handler, port, sock = startListener("udp://:0/10.0.0.1:53")
        sock.protocol.datagramReceived(b"x", ("::ffff:192.0.2.7", 4444, 0, 0))
        self.assertEqual(handler.sessions[0].client, "192.0.2.7:4444")

    def test_ttlExpiry(self) -> None:
        """
        A session ends after C{ttl} without a datagram either way; any
        datagram (in or out) restarts the count; a later datagram from the
        same client opens a new session.
        """
        reactor, listener, handler, port, sock = startListener("udp://127.0.0.1:0/10.0.0.1:53?ttl=5s")
        table = sock.protocol
        table.datagramReceived(b"x", A)
        reactor.advance(4)
        table.datagramReceived(b"y", A)
        reactor.advance(4)
        table.reply("127.0.0.1:5001", b"r")
        reactor.advance(4.9)
        self.assertFalse(handler.sessions[0].closed)
        reactor.advance(0.2)
        self.assertTrue(handler.sessions[0].closed)
        self.assertEqual(table.sessions, {})
        self.assertEqual(reactor.getDelayedCalls(), [])
        table.datagramReceived(b"z", A)
        self.assertEqual(len(handler.sessions), 2)

    def test_defaultTTL(self) -> None:
        reactor, listener, handler, port, sock = startListener("udp://127.0.0.1:0/10.0.0.1:53")
        sock.protocol.datagramReceived(b"x", A)
        reactor.advance(DEFAULT_TTL - 1)
        self.assertFalse(handler.sessions[0].closed)
        reactor.advance(1)
        self.assertTrue(handler.sessions[0].closed)

    def test_keepAliveFalse(self) -> None:
        """
        GOST's keepAlive=false: the session ends with its first reply;
        further replies for it are dropped.
        """
        reactor, listener, handler, port, sock = startListener("udp://127.0.0.1:0/10.0.0.1:53?keepAlive=false")
        table = sock.protocol
        table.datagramReceived(b"q", A)
        table.reply("127.0.0.1:5001", b"r1")
        self.assertTrue(handler.sessions[0].closed)
        table.reply("127.0.0.1:5001", b"r2")
        self.assertEqual(sock.sent, [(b"r1", A)])
        table.datagramReceived(b"q2", A)
        self.assertEqual(len(handler.sessions), 2)
        self.assertEqual(reactor.getDelayedCalls()[0].getTime(), DEFAULT_TTL)

    def test_maxSessionsEvictsLRU(self) -> None:
        reactor, listener, handler, port, sock = startListener("udp://127.0.0.1:0/10.0.0.1:53?maxSessions=2")
        table = sock.protocol
        table.datagramReceived(b"a", A)
        table.datagramReceived(b"b", B)
        table.datagramReceived(b"a", A)
        table.datagramReceived(b"c", C)
        closed = [s.client for s in handler.sessions if s.closed]
        self.assertEqual(closed, ["127.0.0.1:5002"], "the least recently used session must go")
        self.assertEqual(sorted(table.sessions), ["127.0.0.1:5001", "127.0.0.1:5003"])
        self.assertEqual(table.evicted, 1)

    def test_stopClosesAll(self) -> None:
        reactor, listener, handler, port, sock = startListener("udp://127.0.0.1:0/10.0.0.1:53")
        sock.protocol.datagramReceived(b"a", A)
        sock.protocol.datagramReceived(b"b", B)
        port.stopListening()
        self.assertFalse(sock.listening)
        self.assertTrue(all(s.closed for s in handler.sessions))
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_refusesStreamHandler(self) -> None:
        reactor = UDPMemoryReactor()
        cfg = buildConfigFromCommandLine(["udp://127.0.0.1:0/10.0.0.1:53"], [])
        listener = UDPListener(reactor, cfg.services[0], BuildContext(reactor, cfg))
        results: list[Any] = []
        listener.listen(object()).addBoth(results.append)
        self.assertIsInstance(results[0], Failure)


# -- the udp forward handler's sessions


class FakeDatagramRouter:
    def __init__(self) -> None:
        self.dials: list[tuple[str, Any, defer.Deferred[Any]]] = []

    def datagram(self, address: str, receiver: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.dials.append((address, receiver, d))
        return d


class FakeChannel:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, str]] = []
        self.closed = False

    def sendDatagram(self, data: bytes, addr: str) -> None:
        self.sent.append((data, addr))

    def close(self) -> None:
        self.closed = True


def forwardSetup(url: str):  # type: ignore[no-untyped-def]
    reactor = UDPMemoryReactor()
    cfg = buildConfigFromCommandLine([url], [])
    handler = UDPForwardHandler(reactor, cfg.services[0], BuildContext(reactor, cfg))
    router = FakeDatagramRouter()
    handler.options.router = router
    reactor, listener, handler, port, sock = startListener(url, handler, reactor)
    return reactor, handler, router, sock


class UDPForwardSessionTests(SynchronousTestCase):
    def test_queueWhileDialing(self) -> None:
        """
        Datagrams arriving while the upstream is dialed wait, at most
        C{readQueueSize} of them (the rest are dropped), and go out in
        order once it is ready.
        """
        reactor, handler, router, sock = forwardSetup("udp://127.0.0.1:0/10.0.0.9:53?readQueueSize=3")
        table = sock.protocol
        for i in range(5):
            table.datagramReceived(b"d%d" % i, A)
        self.assertEqual(len(router.dials), 1)
        address, receiver, d = router.dials[0]
        self.assertEqual(address, "10.0.0.9:53")
        self.assertEqual(receiver.dropped, 2)
        channel = FakeChannel()
        d.callback(channel)
        table.datagramReceived(b"d5", A)
        self.assertEqual([x for x, _ in channel.sent], [b"d0", b"d1", b"d2", b"d5"])
        receiver.datagramReceived(b"reply", "10.0.0.9:53")
        self.assertEqual(sock.sent, [(b"reply", A)])

    def test_keepAliveFalseClosesUpstream(self) -> None:
        reactor, handler, router, sock = forwardSetup("udp://127.0.0.1:0/10.0.0.9:53?keepAlive=false")
        table = sock.protocol
        table.datagramReceived(b"q", A)
        address, receiver, d = router.dials[0]
        channel = FakeChannel()
        d.callback(channel)
        receiver.datagramReceived(b"r", address)
        self.assertTrue(channel.closed)
        self.assertEqual(table.sessions, {})

    def test_dialFailureEndsSession(self) -> None:
        reactor, handler, router, sock = forwardSetup("udp://127.0.0.1:0/10.0.0.9:53")
        table = sock.protocol
        table.datagramReceived(b"q", A)
        router.dials[0][2].errback(DialError("dial udp 10.0.0.9:53: refused"))
        self.assertEqual(table.sessions, {})
        self.assertEqual(reactor.getDelayedCalls(), [])
        table.datagramReceived(b"q", A)
        self.assertEqual(len(router.dials), 2)

    def test_roundRobinTargets(self) -> None:
        reactor, handler, router, sock = forwardSetup("udp://127.0.0.1:0/10.0.0.9:53,10.0.0.10:53")
        sock.protocol.datagramReceived(b"a", A)
        sock.protocol.datagramReceived(b"b", B)
        self.assertEqual([a for a, _, _ in router.dials], ["10.0.0.9:53", "10.0.0.10:53"])

    def test_sessionClosedWhileDialing(self) -> None:
        reactor, handler, router, sock = forwardSetup("udp://127.0.0.1:0/10.0.0.9:53?ttl=1s")
        sock.protocol.datagramReceived(b"a", A)
        reactor.advance(1)
        self.assertEqual(sock.protocol.sessions, {})
        self.assertTrue(router.dials[0][2].called, "the dial must be cancelled with the session")
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_noTargetIsEmpty(self) -> None:
        """
        C{-L udp://:1053} without targets dials the empty target C{:0}
        (relay forward mode on the server, spec 6.5).
        """
        reactor, handler, router, sock = forwardSetup("udp://127.0.0.1:0")
        sock.protocol.datagramReceived(b"a", A)
        self.assertEqual(router.dials[0][0], ":0")


class SynchronousDialFailureTests(SynchronousTestCase):
    """
    A dial that fails before C{Router.datagram} even returns (the UDP
    socket to the target cannot be made, e.g. an IPv6 target on a host
    without IPv6; a bad target address).
    """

    def test_udpSocketFailureDirect(self) -> None:
        """
        The session must end cleanly: no exception, no session left, no
        timer left, and the client's next datagram tries again.

        (Regression: the session used to be put in the table before
        C{openSession} returned; the synchronous failure then called
        C{session.upstream.close()} while C{upstream} was still C{None}
        (AttributeError, "Unhandled error in Deferred"), and the orphaned
        session armed a 60 s ttl timer that would later close whatever
        session then had the same client key.)
        """
        import gc

        from twisted.internet.error import CannotListenError

        reactor = UDPMemoryReactor()
        url = "udp://127.0.0.1:0/127.0.0.1:53"
        cfg = buildConfigFromCommandLine([url], [])
        handler = UDPForwardHandler(reactor, cfg.services[0], BuildContext(reactor, cfg))
        reactor, listener, handler, port, sock = startListener(url, handler, reactor)

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise CannotListenError("0.0.0.0", 0, OSError("no socket for you"))

        reactor.listenUDP = refuse  # type: ignore[method-assign]
        sock.protocol.datagramReceived(b"hello", A)
        gc.collect()
        errors = self.flushLoggedErrors(AttributeError)
        self.assertEqual(sock.protocol.sessions, {})
        self.assertEqual(reactor.getDelayedCalls(), [], "a ttl timer was left for a session that is gone")
        self.assertEqual(errors, [], "closing the failed session raised")


class UDPClientPathTests(SynchronousTestCase):
    """
    The whole client path on a memory reactor: udp listener, udp handler,
    router, relay connector; replayed against GOST's transcript.
    """

    def test_transcriptUDPForwardDefault(self) -> None:
        t = vectors.transcript("udp_forward_default-conn1.json")
        reactor = UDPMemoryReactor()
        url = "udp://127.0.0.1:0/127.0.0.1:28102"
        cfg = buildConfigFromCommandLine([url], ["relay://user:pass@127.0.0.1:8420"])
        handler = UDPForwardHandler(reactor, cfg.services[0], BuildContext(reactor, cfg))
        reactor, listener, handler, port, sock = startListener(url, handler, reactor)
        sock.protocol.datagramReceived(b"hello", A)
        host, p, factory = reactor.tcpClients[-1][:3]
        self.assertEqual((host, p), ("127.0.0.1", 8420))
        carrier = factory.buildProtocol(None)
        tr = RecordingTransport()
        carrier.makeConnection(tr)
        self.assertEqual(tr.writes, [bytes.fromhex(t["c2s"])], "header and first frame in one write, as GOST")
        carrier.dataReceived(bytes.fromhex(t["s2c"]))
        self.assertEqual(sock.sent, [(b"hello", A)])
        port.stopListening()
        self.assertTrue(tr.disconnecting)
        carrier.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_relayStreamLostEndsSession(self) -> None:
        """
        The relay stream going away ends the session; the client's next
        datagram opens a new one (a new relay stream).
        """
        reactor = UDPMemoryReactor()
        url = "udp://127.0.0.1:0/127.0.0.1:53"
        cfg = buildConfigFromCommandLine([url], ["relay://127.0.0.1:8420"])
        handler = UDPForwardHandler(reactor, cfg.services[0], BuildContext(reactor, cfg))
        reactor, listener, handler, port, sock = startListener(url, handler, reactor)
        sock.protocol.datagramReceived(b"one", A)
        carrier = reactor.tcpClients[-1][2].buildProtocol(None)
        tr = RecordingTransport()
        carrier.makeConnection(tr)
        carrier.dataReceived(OK + encodeLengthFrame(b"r1"))
        carrier.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(sock.protocol.sessions, {})
        self.assertEqual(reactor.getDelayedCalls(), [])
        sock.protocol.datagramReceived(b"two", A)
        self.assertEqual(len(reactor.tcpClients), 2)
        self.assertEqual(sock.sent, [(b"r1", A)])

    def test_relayUnreachable(self) -> None:
        reactor = UDPMemoryReactor()
        url = "udp://127.0.0.1:0/127.0.0.1:53"
        cfg = buildConfigFromCommandLine([url], ["relay://127.0.0.1:8420"])
        handler = UDPForwardHandler(reactor, cfg.services[0], BuildContext(reactor, cfg))
        reactor, listener, handler, port, sock = startListener(url, handler, reactor)
        sock.protocol.datagramReceived(b"hello", A)
        reactor.tcpClients[-1][2].clientConnectionFailed(reactor.connectors[-1], Failure(ConnectionRefusedError()))
        self.assertEqual(sock.protocol.sessions, {})
        self.assertEqual(reactor.getDelayedCalls(), [])


# -- the relay server's UDP CONNECT over loopback


class RelayServerUDPTests(TransportTestCase):
    @defer.inlineCallbacks
    def udpClient(self, relayPort: int, request: bytes):  # type: ignore[no-untyped-def]
        client = HalfCloseCollector()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", relayPort, timeout=5), client)
        self.addCleanup(self._closeClient, client)
        client.transport.write(request)
        return client

    @defer.inlineCallbacks
    def test_udpConnectEcho(self):  # type: ignore[no-untyped-def]
        """
        Frames in, a datagram at a UDP echo target, the frame back: the
        bytes equal vector server_connect_udp_nodelay_true_ok_then_echo.
        """
        echo = UDPEcho()
        echoPort = self.listenUDP(echo)
        s, accepted = yield self.startRelay("relay://user:pass@127.0.0.1:0")
        request = connectRequest(f"127.0.0.1:{echoPort}", "udp", "user", "pass").encode()
        client = yield self.udpClient(s, request + encodeLengthFrame(b"hello"))
        expected = vectors.caseBytes("server_connect_udp_nodelay_true_ok_then_echo")
        data = yield client.waitFor(len(expected), 5, "UDP CONNECT echo")
        self.assertEqual(data, expected)
        self.assertEqual([n for n, _ in echo.received], [5])

    @defer.inlineCallbacks
    def test_udpConnectLargeAndSplit(self):  # type: ignore[no-untyped-def]
        """
        A 60000-byte frame written in pieces and a small one: both echoed
        whole, each as one datagram.
        """
        echo = UDPEcho()
        echoPort = self.listenUDP(echo)
        s, accepted = yield self.startRelay()
        big = os.urandom(60000)
        client = yield self.udpClient(s, connectRequest(f"127.0.0.1:{echoPort}", "udp").encode())
        frame = encodeLengthFrame(big) + encodeLengthFrame(b"tail")
        client.transport.write(frame[:3])
        client.transport.write(frame[3:40000])
        client.transport.write(frame[40000:])
        expected = OK + encodeLengthFrame(big) + encodeLengthFrame(b"tail")
        data = yield client.waitFor(len(expected), 5, "large UDP CONNECT echo")
        self.assertEqual(data, expected)
        self.assertEqual([n for n, _ in echo.received], [60000, 4])

    @defer.inlineCallbacks
    def test_udpForwardModeEcho(self):  # type: ignore[no-untyped-def]
        """
        Forward mode: the client's empty target (C{:0}) is replaced by the
        server's own.
        """
        echo = UDPEcho()
        echoPort = self.listenUDP(echo)
        s, accepted = yield self.startRelay(f"relay://127.0.0.1:0/127.0.0.1:{echoPort}")
        request = connectRequest(":0", "udp").encode()
        self.assertEqual(request, bytes.fromhex("0181000c04000200010200040300" + "0000"))
        client = yield self.udpClient(s, request + encodeLengthFrame(b"hello"))
        data = yield client.waitFor(11, 5, "forward-mode UDP echo")
        self.assertEqual(data, vectors.caseBytes("server_connect_udp_nodelay_true_ok_then_echo"))

    @defer.inlineCallbacks
    def test_clientCloseReleasesSocket(self):  # type: ignore[no-untyped-def]
        """
        Closing the stream closes the server's UDP socket (checked by the
        settler at cleanup: no socket left).
        """
        echo = UDPEcho()
        echoPort = self.listenUDP(echo)
        s, accepted = yield self.startRelay()
        client = yield self.udpClient(s, connectRequest(f"127.0.0.1:{echoPort}", "udp").encode() + encodeLengthFrame(b"x"))
        yield client.waitFor(7, 5, "echo")
        client.transport.loseConnection()
        yield withTimeout(client.done, 5, "close")
