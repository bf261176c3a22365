"""
Tests for L{gostrelay.pipe}: the byte pipe between two transports
(spec-relay.md 2.10).
"""

from __future__ import annotations

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from gostrelay.pipe import A, B, Pipe, PipeProtocol
from tests.support.fakes import HalfCloseableTransport, TCPLikeTransport


class PipeTests(SynchronousTestCase):
    """
    L{Pipe} with two in-memory transports.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.done: list[tuple[Pipe, Failure | None]] = []

    def makePipe(self, a=None, b=None, idleTimeout: float = 0):  # type: ignore[no-untyped-def]
        pipe = Pipe(self.clock, idleTimeout, lambda p, r: self.done.append((p, r)), label="test")
        a = a if a is not None else TCPLikeTransport()
        b = b if b is not None else TCPLikeTransport()
        pipe.attach(A, a)
        pipe.attach(B, b)
        return pipe, a, b

    # -- bytes

    def test_bytesBothWays(self) -> None:
        """
        Bytes read on one side are written, unchanged and in order, to the
        other, in both directions.
        """
        pipe, a, b = self.makePipe(StringTransport(), StringTransport())
        pipe.dataReceived(A, b"hello ")
        pipe.dataReceived(A, b"world")
        pipe.dataReceived(B, b"\x00\xffreply")
        self.assertEqual(b.value(), b"hello world")
        self.assertEqual(a.value(), b"\x00\xffreply")

    def test_transferredCounts(self) -> None:
        """
        C{transferred} is exact: C{[A to B, B to A]}.
        """
        pipe, a, b = self.makePipe()
        pipe.dataReceived(A, b"12345")
        pipe.dataReceived(A, b"678")
        pipe.dataReceived(B, b"ab")
        pipe.dataReceived(B, b"")
        self.assertEqual(pipe.transferred, [8, 2])

    def test_producersRegisteredBothWays(self) -> None:
        """
        Each transport is the streaming producer of the other, so a slow
        reader on one side pauses reads on the other.
        """
        a, b = StringTransport(), StringTransport()
        pipe = Pipe(self.clock)
        pipe.attach(A, a)
        self.assertIsNone(a.producer)
        pipe.attach(B, b)
        self.assertIs(a.producer, b)
        self.assertIs(b.producer, a)
        self.assertTrue(a.streaming)
        self.assertTrue(b.streaming)
        self.assertTrue(pipe.connected)

    def test_pendingDeliveredOnAttach(self) -> None:
        """
        Bytes that arrive before the other side is attached are kept and
        written, in order, when it is; they are counted then.
        """
        pipe = Pipe(self.clock)
        a, b = TCPLikeTransport(), TCPLikeTransport()
        pipe.attach(A, a)
        pipe.dataReceived(A, b"early ")
        pipe.dataReceived(A, b"bytes")
        self.assertFalse(pipe.connected)
        self.assertEqual(pipe.transferred, [0, 0])
        pipe.attach(B, b)
        self.assertEqual(b.value(), b"early bytes")
        self.assertEqual(pipe.transferred, [11, 0])
        pipe.dataReceived(A, b"!")
        self.assertEqual(b.value(), b"early bytes!")

    def test_pendingFromLaterSide(self) -> None:
        """
        Bytes fed for a side before any transport is attached (the target
        spoke first) are delivered too.
        """
        pipe = Pipe(self.clock)
        pipe.dataReceived(B, b"banner")
        a, b = TCPLikeTransport(), TCPLikeTransport()
        pipe.attach(B, b)
        pipe.attach(A, a)
        self.assertEqual(a.value(), b"banner")
        self.assertEqual(pipe.transferred, [0, 6])

    def test_pendingEOFOnAttach(self) -> None:
        """
        An EOF seen before both sides are attached is passed on at attach,
        after the pending bytes.
        """
        pipe = Pipe(self.clock)
        a, b = TCPLikeTransport(), HalfCloseableTransport()
        pipe.attach(A, a)
        pipe.dataReceived(A, b"last")
        pipe.readEOF(A)
        self.assertFalse(b.writeClosed)
        pipe.attach(B, b)
        self.assertEqual(b.value(), b"last")
        self.assertTrue(b.writeClosed)
        self.assertFalse(b.disconnecting)

    # -- EOF

    def test_eofHalfClosesHalfCloseable(self) -> None:
        """
        EOF on A with a half-closeable B shuts B's write side only; the
        other direction keeps flowing.
        """
        pipe, a, b = self.makePipe(TCPLikeTransport(), HalfCloseableTransport())
        pipe.readEOF(A)
        self.assertTrue(b.writeClosed)
        self.assertFalse(b.disconnecting)
        self.assertFalse(a.disconnecting)
        pipe.dataReceived(B, b"still here")
        self.assertEqual(a.value(), b"still here")

    def test_eofClosesOtherwise(self) -> None:
        """
        EOF on a side whose peer cannot half-close closes the pipe (both
        sides).
        """
        pipe, a, b = self.makePipe(HalfCloseableTransport(), TCPLikeTransport())
        pipe.readEOF(A)
        self.assertTrue(b.disconnecting)
        self.assertTrue(a.disconnecting)
        self.assertFalse(a.writeClosed)

    def test_eofOnBSide(self) -> None:
        """
        The rule applies in the other direction too: EOF on B half-closes
        a half-closeable A.
        """
        pipe, a, b = self.makePipe(HalfCloseableTransport(), TCPLikeTransport())
        pipe.readEOF(B)
        self.assertTrue(a.writeClosed)
        self.assertFalse(a.disconnecting)
        self.assertFalse(b.disconnecting)

    def test_bothEOFClosesBoth(self) -> None:
        """
        Once both directions have finished, both transports are closed.
        """
        pipe, a, b = self.makePipe(HalfCloseableTransport(), HalfCloseableTransport())
        pipe.readEOF(A)
        self.assertFalse(a.disconnecting or b.disconnecting)
        pipe.readEOF(B)
        self.assertTrue(a.disconnecting)
        self.assertTrue(b.disconnecting)
        self.assertIsNone(a.producer)
        self.assertIsNone(b.producer)

    # -- connection loss

    def test_lossClosesOther(self) -> None:
        """
        Losing one side closes the other at once (buffered bytes still
        written: loseConnection, not abort).
        """
        pipe, a, b = self.makePipe()
        pipe.connectionLost(A, Failure(ConnectionLost()))
        self.assertTrue(b.disconnecting)
        self.assertFalse(b.disconnected)
        self.assertIsNone(b.producer)
        self.assertEqual(self.done, [])

    def test_onDoneOnceAfterBothLost(self) -> None:
        """
        onDone fires once, when both sides are lost, with the first loss's
        reason.
        """
        pipe, a, b = self.makePipe()
        first = Failure(ConnectionLost("reset by peer"))
        pipe.connectionLost(B, first)
        self.assertEqual(self.done, [])
        pipe.connectionLost(A, Failure(ConnectionDone()))
        self.assertEqual(len(self.done), 1)
        self.assertIs(self.done[0][0], pipe)
        self.assertIs(self.done[0][1], first)
        pipe.connectionLost(A, Failure(ConnectionDone()))
        pipe.connectionLost(B, Failure(ConnectionDone()))
        self.assertEqual(len(self.done), 1)

    def test_lossBeforeOtherAttached(self) -> None:
        """
        A side lost before the other is attached gets the other closed as
        soon as it is attached.
        """
        pipe = Pipe(self.clock, 0, lambda p, r: self.done.append((p, r)))
        a, b = TCPLikeTransport(), TCPLikeTransport()
        pipe.attach(B, b)
        pipe.connectionLost(B, Failure(ConnectionLost()))
        pipe.attach(A, a)
        self.assertTrue(a.disconnecting)
        pipe.connectionLost(A, Failure(ConnectionDone()))
        self.assertEqual(len(self.done), 1)

    def test_closeAndAbort(self) -> None:
        """
        close() loses both connections; abort() aborts both.
        """
        pipe, a, b = self.makePipe()
        pipe.close()
        self.assertTrue(a.disconnecting and b.disconnecting)
        self.assertFalse(a.disconnected or b.disconnected)
        pipe, a, b = self.makePipe()
        pipe.abort()
        self.assertTrue(a.disconnected and b.disconnected)

    # -- idle timeout

    def test_idleTimeoutClosesBoth(self) -> None:
        """
        Without a byte either way for C{idleTimeout}, both sides are closed
        and C{idleTimedOut} is set.
        """
        pipe, a, b = self.makePipe(idleTimeout=10)
        self.clock.advance(9.9)
        self.assertFalse(a.disconnecting or b.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(a.disconnecting)
        self.assertTrue(b.disconnecting)
        self.assertTrue(pipe.idleTimedOut)
        pipe.connectionLost(A, Failure(ConnectionDone()))
        pipe.connectionLost(B, Failure(ConnectionDone()))
        self.assertEqual(len(self.done), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_activityPostpones(self) -> None:
        """
        Bytes in either direction restart the idle period.
        """
        pipe, a, b = self.makePipe(idleTimeout=10)
        self.clock.advance(6)
        pipe.dataReceived(A, b"x")
        self.clock.advance(6)
        self.assertFalse(a.disconnecting)
        pipe.dataReceived(B, b"y")
        self.clock.advance(9)
        self.assertFalse(a.disconnecting)
        self.assertFalse(pipe.idleTimedOut)
        self.clock.advance(1)
        self.assertTrue(a.disconnecting and b.disconnecting)
        self.assertTrue(pipe.idleTimedOut)

    def test_noIdleTimeoutByDefault(self) -> None:
        """
        idleTimeout 0 means none: no delayed call at all.
        """
        pipe, a, b = self.makePipe()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10**6)
        self.assertFalse(pipe.idleTimedOut)
        self.assertFalse(a.disconnecting)

    def test_idleCallCancelledWhenDone(self) -> None:
        """
        A pipe that ends normally leaves no delayed call behind and is not
        marked idle.
        """
        pipe, a, b = self.makePipe(idleTimeout=10)
        pipe.connectionLost(A, Failure(ConnectionDone()))
        pipe.connectionLost(B, Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(pipe.idleTimedOut)
        self.assertEqual(len(self.done), 1)


class PipeProtocolTests(SynchronousTestCase):
    """
    L{PipeProtocol} feeds its transport's events to its side of the pipe.
    """

    def test_events(self) -> None:
        """
        connectionMade attaches, dataReceived relays, readConnectionLost is
        an EOF and connectionLost a loss, all for the protocol's side.
        """
        done = []
        pipe = Pipe(Clock(), 0, lambda p, r: done.append(r))
        a, b = TCPLikeTransport(), HalfCloseableTransport()
        pa, pb = PipeProtocol(pipe, A), PipeProtocol(pipe, B)
        pa.makeConnection(a)
        pb.makeConnection(b)
        self.assertIs(pipe.transports[A], a)
        self.assertIs(pipe.transports[B], b)
        pa.dataReceived(b"ping")
        pb.dataReceived(b"pong")
        self.assertEqual((a.value(), b.value()), (b"pong", b"ping"))
        pa.readConnectionLost()
        self.assertTrue(b.writeClosed)
        reason = Failure(ConnectionDone())
        pb.connectionLost(reason)
        self.assertTrue(a.disconnecting)
        pa.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(done, [reason])
