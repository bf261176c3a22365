"""
Zero-copy relaying for plain TCP pipes on Linux: splice(2) through a kernel
pipe, driven by the reactor's readiness events.

A userspace Twisted pipe costs about a CPU second per gigabyte per hop; once
a relay (or forward) connection carries bulk data and both of its sides are
plain kernel TCP sockets, the bytes need not enter Python at all.  A
L{Pipe} starts in userspace and hands itself over once it has moved
C{spliceThreshold} bytes (64 KiB by default), when both transports are
plain TCP and their Twisted write buffers are empty; from then on each
direction moves C{socket → pipe → socket} in the kernel.  Back-pressure is
the kernel's (a direction stops reading while its destination cannot take
more), half-close is passed on (C{shutdown(SHUT_WR)} once a direction's
source hit EOF and its pipe drained), byte counts and the idle timeout carry
on as before.  TLS, WebSocket, smux and relay-connector streams are not
kernel sockets and stay in userspace.  C{splice=false} (handler option)
turns it off.

Descriptors.  A kernel pipe is two descriptors, and a spliced connection
needs one per direction: four more than its two sockets.  So that short and
idle connections cost two descriptors, as GOST's do:

  - a connection that carries a few KiB (a web request) never splices;
  - kernel pipes come from one L{PipePool} per process, bounded to a
    quarter of C{RLIMIT_NOFILE}; with none to spare a connection stays in
    userspace (slower, same bytes);
  - a spliced connection that has been idle for L{IDLE_RETURN} seconds
    gives its (empty) pipes back and returns to userspace, and may splice
    again past the threshold;
  - any failure while setting up (C{EMFILE} from C{pipe2}, C{epoll_ctl}
    refusing) releases what was taken and leaves the connection in
    userspace, untouched.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from typing import Any

from twisted.internet import tcp
from twisted.python.failure import Failure

from gostrelay.logs import Logger

_log = Logger(namespace="gostrelay.splice")

AVAILABLE = hasattr(os, "splice") and hasattr(os, "SPLICE_F_NONBLOCK")
CHUNK = 1 << 20
_FLAGS = (getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)) if AVAILABLE else 0
_PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = 1031

#: Seconds without a byte after which a spliced connection gives its
#: kernel pipes back (checked every L{IDLE_RETURN} seconds, so it happens
#: after one to two periods).
IDLE_RETURN = 5.0

#: Bytes moved by splice in this process (for metrics and benchmarks).
splicedBytes = 0


def _fileLimit() -> int:
    try:
        import resource  # here: POSIX only, the fallback below elsewhere

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # pragma: no cover - not POSIX
        return 1024
    return soft if soft != getattr(resource, "RLIM_INFINITY", -1) else 1 << 20


class PipePool:
    """
    The kernel pipes of one process: at most C{limit} at a time (in use or
    kept for reuse), at most C{keep} empty ones kept open for the next
    connection (so a busy relay does not pay C{pipe2} and C{fcntl} per
    splice).

    @param limit: the most pipes open at once; by default a quarter of the
        descriptor limit (each pipe is two descriptors), read when first
        needed, so that sockets always keep three quarters.
    """

    def __init__(self, limit: int | None = None, keep: int = 64) -> None:
        self._limit = limit
        self.keep = keep
        self.free: list[tuple[int, int]] = []
        #: Pipes open now (in use and free).
        self.open = 0
        #: Times a pipe was wanted and none could be had (limit or error).
        self.refused = 0
        self._lastWarning = ""

    @property
    def limit(self) -> int:
        if self._limit is None:
            self._limit = max(0, _fileLimit() // 8)
        return self._limit

    @limit.setter
    def limit(self, value: int | None) -> None:
        self._limit = value

    def acquire(self) -> tuple[int, int] | None:
        """
        An empty pipe C{(read fd, write fd)}, or C{None} when the pool is at
        its limit or the system has no descriptor or memory to spare.
        """
        if self.free:
            return self.free.pop()
        if self.open >= self.limit:
            self.refused += 1
            return None
        try:
            fds = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            self.refused += 1
            self._warn(e)
            return None
        try:
            fcntl.fcntl(fds[1], _F_SETPIPE_SZ, _PIPE_SIZE)
        except OSError:
            pass  # over the per-user pipe buffer limit: the default size works
        self.open += 1
        return fds

    def release(self, fds: tuple[int, int], empty: bool = True) -> None:
        """
        Give back a pipe from L{acquire}: kept for reuse when it is
        C{empty}, closed otherwise or when enough are kept.
        """
        if empty and len(self.free) < self.keep and self.open <= self.limit:
            self.free.append(fds)
            return
        self.open -= 1
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def clear(self) -> None:
        """
        Close the pipes kept for reuse.
        """
        while self.free:
            fds = self.free.pop()
            self.open -= 1
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _warn(self, e: OSError) -> None:
        # One line per kind of failure, not one per connection.
        why = errno.errorcode.get(e.errno or 0, str(e.errno))
        if why != self._lastWarning:
            self._lastWarning = why
            _log.warn("splice: no kernel pipe ({e}); connections stay in userspace while this lasts", e=e)


#: The process's pool.
pool = PipePool()


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

    def __init__(
        self, splicer: Splicer, side: int, src: Any, dst: Any, reader: _Descriptor, writer: _Descriptor, fds: tuple[int, int]
    ) -> None:
        self.splicer = splicer
        self.side = side
        self.src = src
        self.dst = dst
        self.srcFd = src.fileno()
        self.dstFd = dst.fileno()
        self.fds = fds
        self.pipeRead, self.pipeWrite = fds
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
        """
        Leave the reactor and give the pipe back (reused only if empty).
        """
        self._stopReading()
        self._stopWriting()
        if self.pipeRead != -1:
            pool.release(self.fds, empty=self.inPipe == 0)
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
        #: Bytes moved when the idle sweep last looked.
        self._seen = -1

    def start(self) -> bool:
        """
        Take the sockets over.  Kernel pipes are taken first: without them
        (or if the reactor refuses the descriptors) nothing is changed and
        the pipe stays in userspace.

        @return: whether the pipe is spliced now.
        """
        first = pool.acquire()
        if first is None:
            return False
        second = pool.acquire()
        if second is None:
            pool.release(first)
            _sweep.discard(self)  # closes it if nothing else is spliced
            return False
        a, b = self.transports
        for transport in (*self.pipe.transports, a, b):
            transport.unregisterProducer()
        for transport in (a, b):
            transport.stopReading()
            transport.stopWriting()
        fa, fb = _Descriptor(a.fileno(), self), _Descriptor(b.fileno(), self)
        self.directions = [_Direction(self, 0, a, b, fa, fb, first), _Direction(self, 1, b, a, fb, fa, second)]
        try:
            for direction in self.directions:
                direction.start()
        except Exception as e:  # noqa: BLE001 - e.g. epoll_ctl out of memory: undo, stay in userspace
            _log.warn("splice: cannot watch the sockets ({e}); the connection stays in userspace", e=e)
            self._returnToUserspace()
            return False
        _watch(self)
        return True

    def activity(self) -> None:
        self.pipe.touch()

    def idle(self) -> bool:
        """
        Whether no byte moved since the last call (the idle sweep's view).
        """
        moved = self.pipe.transferred[0] + self.pipe.transferred[1]
        idle, self._seen = moved == self._seen, moved
        return idle

    def giveBack(self) -> bool:
        """
        Return an idle connection to userspace, its pipes to the pool.  Only
        when both pipes are empty and neither direction has ended.

        @return: whether it was done.
        """
        if self.finished or any(d.inPipe or d.eof or d.done for d in self.directions):
            return False
        if any(_outputPending(t) or not spliceable(t) for t in self.transports):
            return False
        self._returnToUserspace()
        return True

    def _returnToUserspace(self) -> None:
        self.finished = True
        for direction in self.directions:
            direction.stop()
        self.directions = []
        _sweep.discard(self)
        pipe = self.pipe
        if pipe.spliced is self:
            pipe.spliced = None
        a, b = pipe.transports
        a.registerProducer(b, True)
        b.registerProducer(a, True)
        for transport in self.transports:
            transport.startReading()
        pipe.unspliced()

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
        _sweep.discard(self)
        for transport in self.transports:
            if abort:
                transport.abortConnection()
            else:
                transport.loseConnection()


class _IdleSweep:
    """
    One timer per process (not one per connection): every L{IDLE_RETURN}
    seconds, spliced connections that moved nothing since the last look
    give their pipes back.
    """

    def __init__(self) -> None:
        self.splicers: set[Splicer] = set()
        self.call: Any = None
        self.reactor: Any = None

    def add(self, splicer: Splicer) -> None:
        self.splicers.add(splicer)
        splicer.idle()
        if self.call is None or not self.call.active():
            self.reactor = splicer.reactor
            self.call = self.reactor.callLater(IDLE_RETURN, self.sweep)

    def discard(self, splicer: Splicer) -> None:
        """
        C{splicer} has ended: when it was the last one, cancel the timer
        and close the pipes kept for reuse (an idle process holds none).
        """
        self.splicers.discard(splicer)
        if not self.splicers:
            if self.call is not None and self.call.active():
                self.call.cancel()
            self.call = None
            pool.clear()

    def sweep(self) -> None:
        self.call = None
        for splicer in list(self.splicers):
            if splicer.finished:
                self.splicers.discard(splicer)
            elif splicer.idle():
                splicer.giveBack()
        if self.splicers:
            self.call = self.reactor.callLater(IDLE_RETURN, self.sweep)

    def stop(self) -> None:
        """
        Forget every connection and cancel the timer (tests, shutdown).
        """
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = None
        self.splicers.clear()


_sweep = _IdleSweep()


def _watch(splicer: Splicer) -> None:
    _sweep.add(splicer)


def spliceCarrierOf(transport: Any) -> Any:
    """
    The C{spliceCarrier} method C{transport}'s own class defines, bound, or
    C{None}.  Looked up on the class on purpose: a TLS protocol (a
    L{ProtocolWrapper}) forwards unknown attributes to the transport under
    it, and would offer that transport's raw socket -- ciphertext -- as its
    own carrier.
    """
    method = getattr(type(transport), "spliceCarrier", None)
    return None if method is None else method.__get__(transport)


def kernelSocket(transport: Any) -> tuple[Any, bool]:
    """
    The plain TCP transport under C{transport}, and whether it can be
    spliced now.  A relay client stream is its carrier's socket once its
    handshake is over (C{spliceCarrier}); until then it may become one.
    """
    if spliceable(transport):
        return transport, True
    carrier = spliceCarrierOf(transport)
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
    cannot become one (TLS, WebSocket, smux), or no kernel pipe to spare,
    leaves the pipe in userspace.
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
        splicer = Splicer(reactor, pipe, (sockets[0], sockets[1]))
        pipe.spliced = splicer
        if not splicer.start():
            pipe.spliced = None
            pipe.unspliced()

    check(0)
