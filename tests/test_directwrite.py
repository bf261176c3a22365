"""
Tests for L{gostrelay.directwrite}: bytes written to a plain TCP socket go
out at once (no reactor turn), in order, with what the socket does not take
left to Twisted's buffer and back-pressure; anything that is not a plain
TCP socket (or a wrapper passing bytes through unchanged) is left alone.

Real loopback sockets: the point is what reaches the kernel when.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from gostrelay.directwrite import loseConnectionNow, tcpCarrier, writeNow
from gostrelay.layering import AcceptFactory
from gostrelay.limiter import LimitedProtocol
from gostrelay.pipe import A, B, Pipe
from gostrelay.tracking import ConnectionTable
from tests.support.reactor import waitUntil


class _Sink(Protocol):
    """
    Collects what it receives; reads only while C{reading}.
    """

    def __init__(self) -> None:
        self.received = bytearray()
        self.connected_ = defer.Deferred()

    def connectionMade(self) -> None:
        self.connected_.callback(self)

    def dataReceived(self, data: bytes) -> None:
        self.received += data


class _Quiet(Protocol):
    lost: Any = None

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = reason


class DirectWriteTests(unittest.TestCase):
    @defer.inlineCallbacks
    def connectedPair(self, serverFactory: Any = None):  # type: ignore[no-untyped-def]
        """
        A loopback connection: (client protocol, server-side protocol).
        """
        sinks: list[_Sink] = []

        def build(addr: Any) -> _Sink:
            sink = _Sink()
            sinks.append(sink)
            return sink

        factory = serverFactory or Factory.forProtocol(_Sink)
        if serverFactory is None:
            factory.buildProtocol = build  # type: ignore[method-assign]
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        client = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), _Quiet())
        self.addCleanup(client.transport.abortConnection)
        yield waitUntil(lambda: sinks or serverFactory is not None, 5, "the server side")
        return client, (sinks[0] if sinks else None)

    @defer.inlineCallbacks
    def test_sentAtOnce(self) -> None:
        """
        With nothing buffered, the bytes are in the kernel when C{writeNow}
        returns: Twisted's buffer stays empty and no writability is asked.
        """
        client, sink = yield self.connectedPair()
        transport = client.transport
        self.assertTrue(writeNow(transport, b"hello"))
        self.assertEqual((transport.dataBuffer, transport._tempDataLen), (b"", 0))
        self.assertNotIn(transport, reactor.getWriters())
        yield waitUntil(lambda: bytes(sink.received) == b"hello", 5, "the bytes")

    @defer.inlineCallbacks
    def test_orderKeptBehindBufferedBytes(self) -> None:
        """
        Bytes Twisted still holds go first: C{writeNow} declines and the
        caller's ordinary write queues behind them.
        """
        client, sink = yield self.connectedPair()
        transport = client.transport
        transport.write(b"first ")
        self.assertFalse(writeNow(transport, b"second"))
        transport.write(b"second")
        yield waitUntil(lambda: bytes(sink.received) == b"first second", 5, "the bytes")

    @defer.inlineCallbacks
    def test_remainderBuffered(self) -> None:
        """
        What the socket does not take is left in Twisted's buffer (so a
        registered producer is paused as usual) and arrives after the
        rest, complete and in order.
        """
        client, sink = yield self.connectedPair()
        transport = client.transport
        sink.transport.pauseProducing()  # the peer stops reading: the kernel buffers fill
        data = bytes(range(256)) * (64 * 1024)  # 16 MiB, more than loopback buffers hold
        self.assertTrue(writeNow(transport, data))
        self.assertGreater(transport._tempDataLen, 0)
        self.assertLess(transport._tempDataLen, len(data))
        sink.transport.resumeProducing()
        yield waitUntil(lambda: len(sink.received) >= len(data), 30, "all the bytes")
        self.assertEqual(bytes(sink.received), data)

    @defer.inlineCallbacks
    def test_throughTheAcceptLayer(self) -> None:
        """
        The accept layer passes bytes through unchanged and names its
        socket: writes through it go straight to that socket.
        """
        accepted: list[Protocol] = []

        class Handler(Protocol):
            def connectionMade(self) -> None:
                accepted.append(self)

        table = ConnectionTable("service", reactor)
        client, _ = yield self.connectedPair(AcceptFactory(Factory.forProtocol(Handler), table, reactor))
        yield waitUntil(lambda: accepted, 5, "the accepted connection")
        received = bytearray()
        client.dataReceived = received.extend  # type: ignore[method-assign]
        wrapper = accepted[0].transport
        self.assertIs(tcpCarrier(wrapper), wrapper.transport)
        self.assertTrue(writeNow(wrapper, b"through"))
        yield waitUntil(lambda: bytes(received) == b"through", 5, "the bytes")

    def test_notTCP(self) -> None:
        """
        A transport that is not a TCP socket, or a wrapper that changes or
        counts bytes (a traffic limiter), is written the usual way.
        """
        self.assertFalse(writeNow(StringTransport(), b"x"))
        limited = LimitedProtocol.__new__(LimitedProtocol)
        self.assertIsNone(tcpCarrier(limited))

    @defer.inlineCallbacks
    def test_pipeWritesDirectly(self) -> None:
        """
        A pipe between two sockets writes each side's bytes to the other
        at once.
        """
        client, sink = yield self.connectedPair()
        pipe = Pipe(reactor)
        other = StringTransport()
        pipe.attach(A, other)  # type: ignore[arg-type]
        pipe.attach(B, client.transport)
        pipe.dataReceived(A, b"piped")
        self.assertEqual((client.transport.dataBuffer, client.transport._tempDataLen), (b"", 0))
        yield waitUntil(lambda: bytes(sink.received) == b"piped", 5, "the bytes")
        client.transport.unregisterProducer()


class LoseConnectionNowTests(unittest.TestCase):
    """
    L{loseConnectionNow}: a plain TCP socket with nothing to flush closes
    before the call returns (no writability asked, no empty send, no
    reactor turn); anything else closes the usual way.
    """

    connectedPair = DirectWriteTests.connectedPair

    @defer.inlineCallbacks
    def test_closedAtOnce(self) -> None:
        from twisted.internet.error import ConnectionDone

        client, sink = yield self.connectedPair()
        transport = client.transport
        loseConnectionNow(transport)
        self.assertIsInstance(client.lost.value, ConnectionDone)
        self.assertNotIn(transport, reactor.getWriters())
        self.assertNotIn(transport, reactor.getReaders())
        self.assertFalse(transport.connected)

    @defer.inlineCallbacks
    def test_bufferedBytesFlushedFirst(self) -> None:
        """
        Bytes Twisted still holds are sent before the close: the usual way.
        """
        client, sink = yield self.connectedPair()
        transport = client.transport
        transport.write(b"last words")
        loseConnectionNow(transport)
        self.assertIsNone(client.lost)
        self.assertTrue(transport.disconnecting)
        yield waitUntil(lambda: client.lost is not None, 5, "the close")
        yield waitUntil(lambda: bytes(sink.received) == b"last words", 5, "the bytes")

    @defer.inlineCallbacks
    def test_acceptLayerPassesItDown(self) -> None:
        """
        The accept layer passes the close down (its own loseConnectionNow);
        its handler learns of it before the call returns.
        """
        accepted: list[Any] = []

        class Handler(Protocol):
            lost: Any = None

            def connectionMade(self) -> None:
                accepted.append(self)

            def connectionLost(self, reason: Any = None) -> None:
                self.lost = reason

        table = ConnectionTable("service", reactor)
        yield self.connectedPair(AcceptFactory(Factory.forProtocol(Handler), table, reactor))
        yield waitUntil(lambda: accepted, 5, "the accepted connection")
        loseConnectionNow(accepted[0].transport)
        self.assertIsNotNone(accepted[0].lost)

    def test_otherTransports(self) -> None:
        """
        A transport that is not a plain TCP socket closes the usual way.
        """
        transport = StringTransport()
        loseConnectionNow(transport)
        self.assertTrue(transport.disconnecting)

    @defer.inlineCallbacks
    def test_pipeClosesAtOnce(self) -> None:
        """
        A pipe whose sides both ended closes its sockets before returning.
        """
        client, sink = yield self.connectedPair()
        done: list[Any] = []
        pipe = Pipe(reactor, onDone=lambda p, reason: done.append(reason))
        other = StringTransport()
        pipe.attach(A, other)  # type: ignore[arg-type]
        pipe.attach(B, client.transport)
        pipe.close()
        self.assertFalse(client.transport.connected)
        self.assertTrue(other.disconnecting)
