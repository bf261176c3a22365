"""
The one pipe: every relayed byte stream goes through L{Pipe}.

Two transports, A and B.  Bytes read from one are written to the other;
each transport is registered as the streaming producer of the other, so a
slow reader on one side stops reads on the other (Twisted's
C{portforward} does the same).  A read EOF on one side is passed on as a
half-close when the other side can do one (a plain TCP socket), otherwise as
a close; the pipe ends when both directions have finished or either side is
gone.  An optional idle timeout closes both sides after that long without a
byte either way.  Byte counts are exact.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableDescriptor,
    IHalfCloseableProtocol,
    IReactorTime,
    ITCPTransport,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from gostrelay import logs
from gostrelay.directwrite import loseConnectionNow, writeNow
from gostrelay.logs import Logger
from gostrelay.splice import trySplice

A = 0
B = 1

#: How long one direction of a pipe may go on once the other finished.
DEFAULT_HALF_CLOSE_TIMEOUT = 60.0

#: Bytes a pipe moves in userspace before it splices (gostrelay.splice):
#: a connection carrying a web request never takes kernel pipes.
DEFAULT_SPLICE_THRESHOLD = 64 * 1024

_log = Logger(namespace="gostrelay.pipe")

_NEVER = float("inf")


def setNoDelay(transport: object) -> None:
    """
    Turn Nagle off on a TCP transport: relayed request/response traffic
    must not wait for the delayed-ACK timer.
    """
    if ITCPTransport.providedBy(transport):
        try:
            transport.setTcpNoDelay(True)  # type: ignore[attr-defined]
        except OSError:
            pass


def canHalfClose(transport: object) -> bool:
    """
    Whether C{transport} can pass on a half-close (C{loseWriteConnection}).

    Twisted's TLS wrapper claims the interfaces of the TCP transport under
    it, half-close included, but has no C{loseWriteConnection} of its own:
    the call reaches the socket and sends a bare TCP FIN inside the TLS
    stream, which the peer's TLS reads as a truncation ("Connection to the
    other side was lost in a non-clean fashion").  So a transport with TLS
    anywhere below it is closed, not half-closed.
    """
    if not IHalfCloseableDescriptor.providedBy(transport):
        return False

    layer: Any = transport
    for _depth in range(16):
        if isinstance(layer, TLSMemoryBIOProtocol):
            return False
        layer = getattr(layer, "__dict__", {}).get("transport")
        if layer is None:
            return True
    return True


class Pipe:
    """
    Relay bytes between two transports.

    Owners feed it events from their protocols with L{dataReceived},
    L{readEOF} and L{connectionLost}, naming the side (L{A} or L{B}); a
    plain L{PipeProtocol} does that for a transport with nothing else to do.

    @ivar transferred: bytes moved, C{[A to B, B to A]}.
    @ivar onDone: called once, with the reason of the first loss, when both
        sides are closed.
    """

    # One per relayed connection: slots keep it small (10,000 idle
    # connections per process, issue 20).
    __slots__ = (
        "reactor", "halfCloseTimeout", "_lingerCall", "splice", "spliced", "spliceThreshold", "_spliceAt",
        "idleTimeout", "onDone", "label", "transports", "transferred", "_eof", "_lost", "_pending", "_reason",
        "_done", "_idleCall", "_lastActivity", "idleTimedOut", "halfCloseTimedOut",
    )

    def __init__(
        self,
        reactor: IReactorTime,
        idleTimeout: float = 0,
        onDone: Callable[[Pipe, Failure | None], None] | None = None,
        label: str = "",
        splice: bool = False,
        halfCloseTimeout: float = 0.0,
        spliceThreshold: int = 0,
    ) -> None:
        self.reactor = reactor
        self.halfCloseTimeout = halfCloseTimeout
        self._lingerCall: IDelayedCall | None = None
        self.splice = splice
        self.spliced: Any = None
        #: Bytes moved in userspace before the pipe tries to splice.
        self.spliceThreshold = max(0, spliceThreshold)
        # The byte count (both directions) at which to try next.
        self._spliceAt = _NEVER
        self.idleTimeout = idleTimeout
        self.onDone = onDone
        self.label = label
        self.transports: list[ITransport | None] = [None, None]
        self.transferred = [0, 0]
        self._eof = [False, False]
        self._lost = [False, False]
        # Bytes from a side that arrived before both were attached (rare).
        self._pending: list[list[bytes]] | None = None
        self._reason: Failure | None = None
        self._done = False
        self._idleCall: IDelayedCall | None = None
        self._lastActivity = 0.0
        self.idleTimedOut = False
        self.halfCloseTimedOut = False

    def attach(self, side: int, transport: ITransport) -> None:
        """
        Connect side C{side} to C{transport}.  Once both sides are attached
        the producers are registered and bytes flow; bytes that arrived
        before that (from the side attached first) are written then.
        """
        self.transports[side] = transport
        setNoDelay(transport)
        if self.transports[A] is not None and self.transports[B] is not None:
            a, b = self.transports[A], self.transports[B]
            a.registerProducer(b, True)  # type: ignore[union-attr]
            b.registerProducer(a, True)  # type: ignore[union-attr]
            pendingBoth, self._pending = self._pending, None
            for s in (A, B):
                for data in pendingBoth[s] if pendingBoth is not None else ():
                    self.dataReceived(s, data)
                if self._eof[s]:
                    self._passEOF(s)
                if self._lost[s]:
                    self._closeOther(s)
            if self.idleTimeout > 0 and not self._done:
                self._lastActivity = self.reactor.seconds()
                self._idleCall = self.reactor.callLater(self.idleTimeout, self._checkIdle)
            if self.splice and not self._done:
                self._spliceAt = self.transferred[A] + self.transferred[B] + self.spliceThreshold
                if self.spliceThreshold == 0:
                    self._trySplice()

    def _trySplice(self) -> None:
        self._spliceAt = _NEVER
        trySplice(self.reactor, self)

    def unspliced(self) -> None:
        """
        The pipe is (back) in userspace after a splice ended early or gave
        its kernel pipes back: try again after another C{spliceThreshold}
        bytes.
        """
        if self.splice and not self._done:
            self._spliceAt = self.transferred[A] + self.transferred[B] + max(self.spliceThreshold, 1)

    def touch(self) -> None:
        """
        Note activity (for the idle timeout) when bytes move elsewhere
        (in the kernel, when spliced).
        """
        if self.idleTimeout > 0:
            self._lastActivity = self.reactor.seconds()

    def pendingBytes(self) -> int:
        return 0 if self._pending is None else sum(len(d) for side in self._pending for d in side)

    @property
    def connected(self) -> bool:
        return self.transports[A] is not None and self.transports[B] is not None

    def dataReceived(self, side: int, data: bytes) -> None:
        other = self.transports[1 - side]
        if other is None or not self.connected:
            if self._pending is None:
                self._pending = [[], []]
            self._pending[side].append(data)
            return
        self.transferred[side] += len(data)
        if self.idleTimeout > 0:
            self._lastActivity = self.reactor.seconds()
        if logs.TRACE:
            _log.debug(
                "{label} {direction} {size} bytes",
                label=self.label,
                direction="->" if side == A else "<-",
                size=len(data),
            )
        if not writeNow(other, data):
            other.write(data)
        if self.transferred[A] + self.transferred[B] >= self._spliceAt:
            # After the write: the splice waits for Twisted to flush it.
            self._trySplice()

    def readEOF(self, side: int) -> None:
        """
        Side C{side} will send no more bytes (a FIN, for TCP).
        """
        self._eof[side] = True
        if self.connected:
            self._passEOF(side)

    def _passEOF(self, side: int) -> None:
        other = self.transports[1 - side]
        if self._eof[1 - side]:
            # Both directions finished: the pipe is done.
            self._closeBoth()
            return
        if canHalfClose(other):
            other.loseWriteConnection()  # type: ignore[union-attr]
            self.halfClosed()
        else:
            self._closeBoth()

    def halfClosed(self) -> None:
        """
        One direction has finished; the other may go on for at most
        C{halfCloseTimeout} seconds (0: as long as it likes), then both
        sides are closed, so that a peer that never closes cannot hold the
        connection half-open for ever.
        """
        if self.halfCloseTimeout > 0 and self._lingerCall is None and not self._done:
            self._lingerCall = self.reactor.callLater(self.halfCloseTimeout, self._lingerOver)

    def _lingerOver(self) -> None:
        self._lingerCall = None
        if not self._done:
            self.halfCloseTimedOut = True
            self._closeBoth()

    def connectionLost(self, side: int, reason: Failure | None = None) -> None:
        if self._lost[side]:
            return
        self._lost[side] = True
        if self.spliced is not None:
            if self.spliced.finished and not self.spliced.aborted:
                # Both directions ended in the kernel and we closed the
                # sockets: a clean end, whatever Twisted calls it.
                reason = None
            elif self.spliced.reason is not None:
                # We aborted because a socket failed: say how it failed.
                reason = self.spliced.reason
            self.spliced.close()
        if self._reason is None:
            self._reason = reason
        if self.connected:
            self._closeOther(side)
        self._maybeDone()

    def _closeOther(self, side: int) -> None:
        other = self.transports[1 - side]
        mine = self.transports[side]
        if mine is not None:
            mine.unregisterProducer()  # type: ignore[attr-defined]
        if other is not None and not self._lost[1 - side]:
            other.unregisterProducer()  # type: ignore[attr-defined]
            loseConnectionNow(other)

    def _closeBoth(self) -> None:
        if self.spliced is not None:
            self.spliced.close()
            return
        # Both producers go first: a close may now complete at once
        # (loseConnectionNow), ending the other side's registration too.
        transports = [transport for transport in self.transports if transport is not None]
        for transport in transports:
            transport.unregisterProducer()  # type: ignore[attr-defined]
        for transport in transports:
            loseConnectionNow(transport)

    def close(self) -> None:
        """
        Close both sides (buffered bytes are still written first).
        """
        self._closeBoth()

    def abort(self) -> None:
        if self.spliced is not None:
            self.spliced._close(abort=True)
            return
        for transport in self.transports:
            if transport is not None:
                transport.abortConnection()  # type: ignore[attr-defined]

    def _checkIdle(self) -> None:
        self._idleCall = None
        if self._done:
            return
        due = self._lastActivity + self.idleTimeout
        now = self.reactor.seconds()
        if now < due:
            self._idleCall = self.reactor.callLater(due - now, self._checkIdle)
            return
        self.idleTimedOut = True
        self._closeBoth()

    def _maybeDone(self) -> None:
        if self._done or not all(self._lost):
            return
        self._done = True
        if self._idleCall is not None and self._idleCall.active():
            self._idleCall.cancel()
        self._idleCall = None
        if self._lingerCall is not None and self._lingerCall.active():
            self._lingerCall.cancel()
        self._lingerCall = None
        if self.onDone is not None:
            self.onDone(self, self._reason)


@implementer(IHalfCloseableProtocol)
class PipeProtocol(Protocol):
    """
    A protocol whose only job is to be one side of a L{Pipe}.
    """

    def __init__(self, pipe: Pipe, side: int) -> None:
        self.pipe = pipe
        self.side = side

    def connectionMade(self) -> None:
        self.pipe.attach(self.side, self.transport)  # type: ignore[arg-type]

    def dataReceived(self, data: bytes) -> None:
        self.pipe.dataReceived(self.side, data)

    def readConnectionLost(self) -> None:
        self.pipe.readEOF(self.side)

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.pipe.connectionLost(self.side, reason)


class PipeSideFactory(Factory):
    """
    Builds a L{PipeProtocol} for one side of C{pipe}: the factory to dial a
    target with.
    """

    noisy = False

    def __init__(self, pipe: Pipe, side: int = B) -> None:
        self.pipe = pipe
        self.side = side

    def buildProtocol(self, addr: object) -> PipeProtocol:
        return PipeProtocol(self.pipe, self.side)
