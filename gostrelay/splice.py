"""
Zero-copy relaying for plain TCP pipes on Linux: splice(2) through a kernel
pipe, driven by the reactor's readiness events.

A userspace Twisted pipe costs about a CPU second per gigabyte per hop; once
a relay (or forward) connection is established and both of its sides are
plain kernel TCP sockets, the bytes need not enter Python at all.  A
L{Pipe} hands itself over when both transports are plain TCP and their
Twisted write buffers are empty; from then on each direction moves
C{socket → pipe → socket} in the kernel.  Back-pressure is the kernel's (a
direction stops reading while its destination cannot take more), half-close
is passed on (C{shutdown(SHUT_WR)} once a direction's source hit EOF and its
pipe drained), byte counts and the idle timeout carry on as before.  TLS,
WebSocket, smux and relay-connector streams are not kernel sockets and stay
in userspace.  C{splice=false} (handler option) turns it off.

Each spliced connection holds two extra pipe file descriptors per
direction (four per connection); they count against RLIMIT_NOFILE.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

from twisted.internet import tcp
from twisted.logger import Logger
from twisted.python.failure import Failure

_log = Logger(namespace="gostrelay.splice")

AVAILABLE = hasattr(os, "splice") and hasattr(os, "SPLICE_F_NONBLOCK")
CHUNK = 1 << 20
_FLAGS = (getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)) if AVAILABLE else 0
_PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = 1031

#: Bytes moved by splice in this process (for metrics and benchmarks).
splicedBytes = 0


def spliceable(transport: Any) -> bool:
    """
    Whether C{transport} is a plain kernel TCP socket Twisted owns (not TLS,
    not a wrapper).
    """
    return (
        AVAILABLE
        and isinstance(transport, tcp.Connection)
        and getattr(transport, "TLS", False) is False
        and getattr(transport, "connected", False)
        and not getattr(transport, "disconnecting", False)
    )


def _outputPending(transport: Any) -> bool:
    return bool(getattr(transport, "dataBuffer", b"")) or bool(getattr(transport, "_tempDataBuffer", []))


class _Descriptor:
    """
    One socket's fd as the reactor sees it.  Twisted's reactors keep one
    selectable per fd, so a socket that one direction reads and the other
    direction writes to has a single descriptor dispatching to both.
    """

    def __init__(self, fd: int, splicer: Splicer) -> None:
        self.fd = fd
        self.splicer = splicer
        self.reader: _Direction | None = None  # the direction reading this socket
        self.writer: _Direction | None = None  # the direction writing to it

    def fileno(self) -> int:
        return self.fd

    def doRead(self) -> None:
        if self.reader is not None:
            self.reader.readable()

    def doWrite(self) -> None:
        if self.writer is not None:
            self.writer.writable()

    def connectionLost(self, reason: Failure) -> None:
        self.splicer.fail(reason)

    def logPrefix(self) -> str:
        return "splice"


class _Direction:
    """
    One direction: C{src} socket → kernel pipe → C{dst} socket.
    """

    def __init__(self, splicer: Splicer, side: int, src: Any, dst: Any, reader: _Descriptor, writer: _Descriptor) -> None:
        self.splicer = splicer
        self.side = side
        self.src = src
        self.dst = dst
        self.srcFd = src.fileno()
        self.dstFd = dst.fileno()
        self.pipeRead, self.pipeWrite = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            import fcntl

            fcntl.fcntl(self.pipeWrite, _F_SETPIPE_SZ, _PIPE_SIZE)
        except OSError:
            pass
        self.inPipe = 0
        self.eof = False
        self.done = False
        self.reader = reader
        self.writer = writer
        reader.reader = self
        writer.writer = self
        self.reading = False
        self.writing = False

    def start(self) -> None:
        self._startReading()

    def _startReading(self) -> None:
        if not self.reading and not self.eof:
            self.reading = True
            self.splicer.reactor.addReader(self.reader)

    def _stopReading(self) -> None:
        if self.reading:
            self.reading = False
            self.splicer.reactor.removeReader(self.reader)

    def _startWriting(self) -> None:
        if not self.writing:
            self.writing = True
            self.splicer.reactor.addWriter(self.writer)

    def _stopWriting(self) -> None:
        if self.writing:
            self.writing = False
            self.splicer.reactor.removeWriter(self.writer)

    def readable(self) -> None:
        global splicedBytes
        try:
            n = os.splice(self.srcFd, self.pipeWrite, CHUNK, flags=_FLAGS)
        except BlockingIOError:
            return
        except OSError as e:
            self.splicer.fail(Failure(e))
            return
        if n == 0:
            self.eof = True
            self._stopReading()
            self._drain()
            return
        self.inPipe += n
        self.splicer.pipe.transferred[self.side] += n
        splicedBytes += n
        self.splicer.activity()
        self._drain()

    def writable(self) -> None:
        self._drain()

    def _drain(self) -> None:
        while self.inPipe:
            try:
                n = os.splice(self.pipeRead, self.dstFd, self.inPipe, flags=_FLAGS)
            except BlockingIOError:
                # The destination is full: stop reading the source until it
                # takes more (back-pressure, in the kernel's buffers only).
                self._stopReading()
                self._startWriting()
                return
            except OSError as e:
                self.splicer.fail(Failure(e))
                return
            if n == 0:
                break
            self.inPipe -= n
        self._stopWriting()
        if self.eof:
            self._finish()
        else:
            self._startReading()

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            self.dst.socket.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.splicer.directionDone()

    def stop(self) -> None:
        self._stopReading()
        self._stopWriting()
        for fd in (self.pipeRead, self.pipeWrite):
            try:
                os.close(fd)
            except OSError:
                pass
        self.pipeRead = self.pipeWrite = -1


class Splicer:
    """
    Takes over a L{Pipe} whose two sides are plain TCP sockets.
    """

    def __init__(self, reactor: Any, pipe: Any, sockets: tuple[Any, Any] | None = None) -> None:
        self.reactor = reactor
        self.pipe = pipe
        a, b = sockets or pipe.transports
        self.transports = (a, b)
        self.directions: list[_Direction] = []
        self.finished = False
        self.aborted = False
        #: Why a direction failed (a reset, ...), for the pipe's log line.
        self.reason: Failure | None = None

    def start(self) -> None:
        a, b = self.transports
        for transport in (*self.pipe.transports, a, b):
            transport.unregisterProducer()
        for transport in (a, b):
            transport.stopReading()
            transport.stopWriting()
        fa, fb = _Descriptor(a.fileno(), self), _Descriptor(b.fileno(), self)
        self.directions = [_Direction(self, 0, a, b, fa, fb), _Direction(self, 1, b, a, fb, fa)]
        for direction in self.directions:
            direction.start()

    def activity(self) -> None:
        self.pipe.touch()

    def directionDone(self) -> None:
        if all(d.done for d in self.directions):
            self._close(abort=False)
        else:
            self.pipe.halfClosed()

    def fail(self, reason: Failure) -> None:
        if self.finished:
            return
        self.reason = reason
        if not isinstance(reason.value, OSError) or reason.value.errno not in (errno.ECONNRESET, errno.EPIPE):
            _log.debug("splice ended: {e}", e=reason.value)
        self._close(abort=True)

    def close(self) -> None:
        self._close(abort=False)

    def _close(self, abort: bool) -> None:
        if self.finished:
            return
        self.finished = True
        self.aborted = abort
        for direction in self.directions:
            direction.stop()
        for transport in self.transports:
            if abort:
                transport.abortConnection()
            else:
                transport.loseConnection()


def kernelSocket(transport: Any) -> tuple[Any, bool]:
    """
    The plain TCP transport under C{transport}, and whether it can be
    spliced now.  A relay client stream is its carrier's socket once its
    handshake is over (C{spliceCarrier}); until then it may become one.
    """
    if spliceable(transport):
        return transport, True
    carrier = getattr(transport, "spliceCarrier", None)
    if carrier is None:
        return None, False
    inner = carrier()
    if inner is None:
        return None, not getattr(transport, "disconnecting", False)
    return (inner, True) if spliceable(inner) else (None, False)


#: When to look again while a side is not ready (a relay handshake in
#: flight, Twisted still flushing): soon at first, then less often.
_RETRY_DELAYS = (0, 0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def trySplice(reactor: Any, pipe: Any) -> None:
    """
    Hand C{pipe} to a L{Splicer} as soon as both sides are plain TCP
    sockets with nothing left in Twisted's write buffers; a side that
    cannot become one (TLS, WebSocket, smux) leaves the pipe in userspace.
    """
    if not AVAILABLE:
        return

    def check(attempt: int) -> None:
        if pipe._done or pipe.spliced or not pipe.connected or any(pipe._eof):
            return
        sides = [kernelSocket(t) for t in pipe.transports]
        if any(s is None and not ready for s, ready in sides):
            return
        sockets = [s for s, _ in sides]
        if None in sockets or pipe.pendingBytes() or any(_outputPending(s) for s in sockets):
            if attempt < len(_RETRY_DELAYS):
                reactor.callLater(_RETRY_DELAYS[attempt], check, attempt + 1)
            return
        pipe.spliced = Splicer(reactor, pipe, tuple(sockets))
        pipe.spliced.start()

    check(0)
