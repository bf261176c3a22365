"""
smux sessions over any carrier; streams are Twisted transports.

GOST multiplexes the connections of a TCP BIND over the BIND's relay stream
with xtaci/smux (spec-relay.md section 4): the relay server is the smux
client (it opens a stream per peer that connects to the bound port), the
relay client the smux server.  A L{MuxSession} is fed the carrier's events
by its owner (L{MuxSession.dataReceived}, L{MuxSession.connectionLost});
each L{MuxStream} is the transport of one protocol.

Liveness as smux does it: a NOP every C{keepaliveInterval} (10 s) and the
session closed when nothing arrived during a whole C{keepaliveTimeout}
(30 s).  Back-pressure: a stream whose protocol pauses it pauses the
carrier in v1 (smux's head-of-line blocking: v1 has no per-stream flow
control); in v2 it pauses only itself, holding what arrives and withholding
its window updates (at most C{maxReceiveBuffer} bytes, or the session is
broken).  As a v2 sender a stream pauses its producer while the peer's
window is used up.  A carrier that cannot take more pauses the producers
registered on every stream.  smux v1 has no half-close: a FIN ends the
stream both ways.

Each stream's life is one L{StreamState} and each session's one
L{SessionState}, small C{IntEnum} machines rather than automat: every
frame in and every write out asks "is this stream (session) still
there?", and on this bulk data path that must cost what a boolean
did (one attribute load and one C-level compare), not a method dispatch
through an automat transition table.  The states only move forward, so
"ended" is C{state >= CLOSED}.  Flow control stays beside the lifecycle
as two producer states (C{paused}: the protocol paused our reading;
C{windowShut}: the peer's v2 window is used up): they come and go
independently of it and of each other.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IAddress, IConsumer, IHalfCloseableProtocol, IPushProducer, ITransport
from twisted.python.failure import Failure
from zope.interface import implementer

from gostrelay import logs
from gostrelay.config.metadata import Metadata
from gostrelay.config.model import ConfigError
from gostrelay.logs import Logger
from gostrelay.wire import smux

_log = Logger(namespace="gostrelay.mux")

#: smux v2's initial per-stream send window, before the peer's first UPD.
INITIAL_PEER_WINDOW = 262144


@dataclass
class MuxConfig:
    """
    smux settings; GOST's option names are C{mux.*} in handler and
    connector metadata (spec-relay.md 4.1).
    """

    version: int = 1
    keepaliveDisabled: bool = False
    keepaliveInterval: float = 10.0
    keepaliveTimeout: float = 30.0
    maxFrameSize: int = 32768
    maxReceiveBuffer: int = 4194304
    maxStreamBuffer: int = 65536

    @classmethod
    def fromMetadata(cls, md: Metadata, where: str = "") -> MuxConfig:
        config = cls(
            version=md.getInt("mux.version") or 1,
            keepaliveDisabled=md.getBool("mux.keepaliveDisabled"),
            keepaliveInterval=md.getDuration("mux.keepaliveInterval") or 10.0,
            keepaliveTimeout=md.getDuration("mux.keepaliveTimeout") or 30.0,
            maxFrameSize=md.getInt("mux.maxFrameSize") or 32768,
            maxReceiveBuffer=md.getInt("mux.maxReceiveBuffer") or 4194304,
            maxStreamBuffer=md.getInt("mux.maxStreamBuffer") or 65536,
        )
        if md.getString("mux.type", default="smux") not in ("smux", ""):
            raise ConfigError(f"{where}: mux.type {md.getString('mux.type')!r} is not implemented (smux only)")
        if config.version not in (1, 2):
            raise ConfigError(f"{where}: mux.version must be 1 or 2")
        if config.keepaliveTimeout < config.keepaliveInterval:
            raise ConfigError(f"{where}: mux.keepaliveTimeout must not be shorter than mux.keepaliveInterval")
        if not 0 < config.maxFrameSize <= 65535:
            raise ConfigError(f"{where}: mux.maxFrameSize must be between 1 and 65535")
        return config


class StreamState(enum.IntEnum):
    """
    The life of one smux stream, in the order it is lived::

        OPEN --peer's FIN--> FIN_HELD --held bytes delivered--> READ_DONE

    and from any of those, CLOSED (we closed it) or LOST (its session
    ended); both are final.
    """

    #: Bytes go both ways.
    OPEN = 0
    #: The peer's FIN arrived; its end reaches the protocol after the bytes
    #: held before it (a paused v2 stream, or no protocol attached yet).
    FIN_HELD = 1
    #: The protocol was told the peer's end (C{readConnectionLost}); smux
    #: has no half-close, so the stream waits for our side to close.
    READ_DONE = 2
    #: We closed: our FIN went, the protocol learns it on the next turn.
    CLOSED = 3
    #: The session ended under the stream.
    LOST = 4


class SessionState(enum.IntEnum):
    """
    The life of an smux session: C{OPEN}, then C{CLOSING} when we closed it
    (its carrier is being closed; nothing more is read or sent), then
    C{DONE} once the carrier is gone.  The carrier may go first (C{OPEN}
    straight to C{DONE}).
    """

    OPEN = 0
    CLOSING = 1
    DONE = 2


# Module-level names for the hot paths (a global load, not an enum lookup).
_OPEN = StreamState.OPEN
_FIN_HELD = StreamState.FIN_HELD
_READ_DONE = StreamState.READ_DONE
_CLOSED = StreamState.CLOSED
_LOST = StreamState.LOST
_SESSION_OPEN = SessionState.OPEN
_SESSION_CLOSING = SessionState.CLOSING
_SESSION_DONE = SessionState.DONE


@implementer(IAddress)
class _StreamAddress:
    def __init__(self, host: str, port: int) -> None:
        self.type = "TCP"
        self.host = host
        self.port = port

    def __repr__(self) -> str:
        return f"MuxStreamAddress({self.host!r}, {self.port})"


@implementer(ITransport, IPushProducer, IConsumer)
class MuxStream:
    """
    One smux stream, the transport of one protocol.

    @ivar state: where the stream is in its life (L{StreamState}).
    @ivar paused: the protocol paused our reading (L{pauseProducing}).
    @ivar windowShut: as a v2 sender, the peer's window is used up (our
        writer's producer is paused).
    """

    def __init__(self, session: MuxSession, sid: int) -> None:
        self.session = session
        self.sid = sid
        self.state = _OPEN
        self.protocol: Any = None
        self.producer: Any = None
        self.paused = False
        self.consumed = 0
        self._lastUpdate = 0
        self._pending: list[bytes] = []
        self._pendingBytes = 0
        # v2 sender state: what we sent, what the peer says it consumed,
        # and the window it offers (smux's initial window is 256 KiB).
        self.written = 0
        self.peerConsumed = 0
        self.peerWindow = INITIAL_PEER_WINDOW
        self.windowShut = False
        self.peerAddress: Any = None
        self.hostAddress: Any = None

    @property
    def closed(self) -> bool:
        """
        The stream has ended (we closed it, or its session is gone).
        """
        return self.state >= _CLOSED

    @property
    def disconnecting(self) -> bool:
        """
        L{ITransport}'s flag: we closed the stream.
        """
        return self.state is _CLOSED

    def attach(self, protocol: Any) -> None:
        self.protocol = protocol
        protocol.makeConnection(self)
        self._flushPending()

    # -- from the session

    def _deliver(self, data: bytes) -> None:
        if self.state >= _CLOSED:
            return
        if self.protocol is None or (self.paused and self.session.config.version >= 2):
            # v2: a paused stream holds its bytes and withholds its window
            # updates, so the peer stops sending on this stream only.
            self._pending.append(data)
            self._pendingBytes += len(data)
            if self._pendingBytes > self.session.config.maxReceiveBuffer:
                _log.info(
                    "{label}: stream {sid} exceeded its receive buffer; closing the session",
                    label=self.session.label, sid=self.sid,
                )
                self.session.close()
            return
        self.protocol.dataReceived(data)
        if self.session.config.version >= 2:
            self._consumed(len(data))

    def _consumed(self, n: int) -> None:
        self.consumed += n
        half = self.session.config.maxStreamBuffer // 2
        if self._lastUpdate == 0 or self.consumed - self._lastUpdate >= half:
            self._lastUpdate = self.consumed
            self.session._send(smux.encodeUpdate(2, self.sid, self.consumed, self.session.config.maxStreamBuffer))

    def _flushPending(self) -> None:
        while self._pending and not self.paused and self.protocol is not None and self.state < _CLOSED:
            data = self._pending.pop(0)
            self._pendingBytes -= len(data)
            self.protocol.dataReceived(data)
            if self.session.config.version >= 2:
                self._consumed(len(data))
        if self.state is _FIN_HELD and not self._pending:
            self._deliverEOF()

    def _windowUpdate(self, consumed: int, window: int) -> None:
        self.peerConsumed = consumed
        self.peerWindow = window
        self._checkWindow()

    def _checkWindow(self) -> None:
        inflight = (self.written - self.peerConsumed) & 0xFFFFFFFF
        shut = inflight >= self.peerWindow
        if shut != self.windowShut:
            self.windowShut = shut
            if self.producer is not None and not self.session.carrierPaused:
                if shut:
                    self.producer.pauseProducing()
                else:
                    self.producer.resumeProducing()

    def _remoteFin(self) -> None:
        """
        The peer sends no more: what is held is delivered first, then the
        end of the stream (a read EOF for protocols that take one; smux
        has no half-close, so the peer will not read what we write after
        it closed, and the stream ends when our side closes too).
        """
        if self.state is _OPEN:
            self.state = _FIN_HELD
        if not self._pending:
            self._deliverEOF()

    def _deliverEOF(self) -> None:
        if self.state is not _FIN_HELD or self.protocol is None:
            return
        self.state = _READ_DONE
        if IHalfCloseableProtocol.providedBy(self.protocol):
            self.protocol.readConnectionLost()
        else:
            self.loseConnection()

    def _sessionLost(self, reason: Failure) -> None:
        if self.state >= _CLOSED:
            return
        self.state = _LOST
        if self.protocol is not None:
            protocol, self.protocol = self.protocol, None
            protocol.connectionLost(reason)

    # -- ITransport

    def write(self, data: bytes) -> None:
        if self.state >= _CLOSED or not data:
            return
        self.session._writeData(self.sid, data)
        if self.session.config.version >= 2:
            self.written = (self.written + len(data)) & 0xFFFFFFFF
            self._checkWindow()

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        if self.state >= _CLOSED:
            return
        self.state = _CLOSED
        self.session._send(smux.encodeFrame(self.session.config.version, smux.FIN, self.sid))
        if self.paused:
            self.paused = False
            if self.session.config.version < 2:
                self.session._streamResumed()
        self.session._forget(self.sid)
        if self.protocol is not None:
            protocol, self.protocol = self.protocol, None
            self.session.reactor.callLater(0, protocol.connectionLost, Failure(ConnectionDone()))

    abortConnection = loseConnection

    def getPeer(self) -> Any:
        return self.peerAddress or self.session.transport.getPeer()

    def getHost(self) -> Any:
        return self.hostAddress or self.session.transport.getHost()

    # -- IPushProducer (the protocol reading from us)

    def pauseProducing(self) -> None:
        if not self.paused and self.state < _CLOSED:
            self.paused = True
            if self.session.config.version < 2:
                self.session._streamPaused()

    def resumeProducing(self) -> None:
        if self.paused:
            self.paused = False
            if self.session.config.version < 2:
                self.session._streamResumed()
            self._flushPending()

    def stopProducing(self) -> None:
        self.loseConnection()

    # -- IConsumer (the protocol writing to us)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer
        if self.session.carrierPaused or self.windowShut:
            producer.pauseProducing()

    def unregisterProducer(self) -> None:
        self.producer = None


@implementer(IPushProducer)
class MuxSession:
    """
    An smux session over C{transport}.

    @param client: C{True} for the smux client role (opens odd stream ids
        from 3), C{False} for the server role (even ids from 2).
    @param acceptStream: called with each stream the peer opens; C{None}
        refuses them (a FIN at once), as GOST's relay server does.
    @param onClose: called once with the reason when the session ends.
    """

    def __init__(
        self,
        reactor: Any,
        transport: Any,
        client: bool,
        config: MuxConfig | None = None,
        acceptStream: Callable[[MuxStream], None] | None = None,
        onClose: Callable[[Failure], None] | None = None,
        label: str = "",
    ) -> None:
        self.reactor = reactor
        self.transport = transport
        self.config = config or MuxConfig()
        self.acceptStream = acceptStream
        self.onClose = onClose
        self.label = label
        self.parser = smux.FrameParser(self.config.version)
        self.streams: dict[int, MuxStream] = {}
        self._nextId = 1 if client else 0
        self._pausedStreams = 0
        #: Where the session is in its life (L{SessionState}).
        self.state = _SESSION_OPEN
        #: The carrier cannot take more: our streams' writers are paused.
        self.carrierPaused = False
        #: Called when the last stream of the session is gone (a dialer that
        #: closes idle sessions sets it).
        self.onIdle: Callable[[], None] | None = None
        # As smux: a session that hears nothing during its first
        # keepaliveTimeout is dead.
        self._heard = False
        self._keepalive: Any = None
        self._deadline: Any = None
        transport.registerProducer(self, True)
        if not self.config.keepaliveDisabled:
            self._keepalive = reactor.callLater(self.config.keepaliveInterval, self._sendKeepalive)
            self._deadline = reactor.callLater(self.config.keepaliveTimeout, self._checkHeard)

    @property
    def closed(self) -> bool:
        """
        The session has ended or is ending: nothing more is read or sent.
        """
        return self.state is not _SESSION_OPEN

    # -- carrier events

    def dataReceived(self, data: bytes) -> None:
        if self.state is not _SESSION_OPEN:
            return
        try:
            frames = self.parser.feed(data)
        except smux.SmuxError as e:
            _log.info("{label}: smux protocol error: {e}; closing the session", label=self.label, e=e)
            self.close()
            return
        if frames:
            self._heard = True
        for frame in frames:
            if logs.TRACE:
                _log.debug(
                    "{label}: smux {cmd} sid {sid} {n} bytes",
                    label=self.label, cmd=smux.COMMAND_NAMES[frame.cmd], sid=frame.sid, n=len(frame.data),
                )
            self._frame(frame)
            if self.state is not _SESSION_OPEN:
                return

    def _frame(self, frame: smux.Frame) -> None:
        cmd, sid = frame.cmd, frame.sid
        if cmd == smux.PSH:
            stream = self.streams.get(sid)
            if stream is not None and frame.data:
                stream._deliver(frame.data)
        elif cmd == smux.SYN:
            if sid in self.streams:
                return
            if self.acceptStream is None:
                self._send(smux.encodeFrame(self.config.version, smux.FIN, sid))
                return
            stream = MuxStream(self, sid)
            self.streams[sid] = stream
            self.acceptStream(stream)
        elif cmd == smux.FIN:
            stream = self.streams.get(sid)
            if stream is not None:
                stream._remoteFin()
        elif cmd == smux.UPD:
            consumed, window = smux.decodeUpdate(frame.data)
            stream = self.streams.get(sid)
            if stream is not None:
                stream._windowUpdate(consumed, window)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.state = _SESSION_DONE
        if self.streams:
            why = reason or Failure(ConnectionLost("smux session closed"))
            for stream in list(self.streams.values()):
                stream._sessionLost(why)
            self.streams.clear()
        self._finish(reason)

    def _finish(self, reason: Failure | None) -> None:
        for call in (self._keepalive, self._deadline):
            if call is not None and call.active():
                call.cancel()
        self._keepalive = self._deadline = None
        if self.onClose is not None:
            onClose, self.onClose = self.onClose, None
            onClose(reason or Failure(ConnectionDone()))

    # -- streams

    def openStream(self) -> MuxStream:
        self._nextId += 2
        sid = self._nextId
        stream = MuxStream(self, sid)
        self.streams[sid] = stream
        self._send(smux.encodeFrame(self.config.version, smux.SYN, sid))
        return stream

    def _forget(self, sid: int) -> None:
        self.streams.pop(sid, None)
        if not self.streams and self.state is _SESSION_OPEN and self.onIdle is not None:
            self.onIdle()

    def _writeData(self, sid: int, data: bytes) -> None:
        size = self.config.maxFrameSize
        version = self.config.version
        if len(data) <= size:
            self._send(smux.encodeFrame(version, smux.PSH, sid, data))
            return
        view = memoryview(data)
        self.transport.writeSequence(
            [smux.encodeFrame(version, smux.PSH, sid, bytes(view[i : i + size])) for i in range(0, len(data), size)]
        )

    def _send(self, frame: bytes) -> None:
        if self.state is _SESSION_OPEN:
            self.transport.write(frame)

    def _streamPaused(self) -> None:
        self._pausedStreams += 1
        if self._pausedStreams == 1:
            self.transport.pauseProducing()

    def _streamResumed(self) -> None:
        self._pausedStreams -= 1
        if self._pausedStreams == 0 and self.state is _SESSION_OPEN:
            self.transport.resumeProducing()

    # -- the carrier's back-pressure on our writers

    def pauseProducing(self) -> None:
        self.carrierPaused = True
        for stream in list(self.streams.values()):
            if stream.producer is not None:
                stream.producer.pauseProducing()

    def resumeProducing(self) -> None:
        self.carrierPaused = False
        for stream in list(self.streams.values()):
            if stream.producer is not None and not stream.windowShut:
                stream.producer.resumeProducing()

    def stopProducing(self) -> None:
        self.close()

    # -- liveness

    def _sendKeepalive(self) -> None:
        self._keepalive = None
        if self.state is not _SESSION_OPEN:
            return
        self._send(smux.encodeFrame(self.config.version, smux.NOP, 0))
        self._keepalive = self.reactor.callLater(self.config.keepaliveInterval, self._sendKeepalive)

    def _checkHeard(self) -> None:
        self._deadline = None
        if self.state is not _SESSION_OPEN:
            return
        if not self._heard and self._pausedStreams == 0:
            _log.info(
                "{label}: nothing heard for {t:g}s; closing the smux session",
                label=self.label, t=self.config.keepaliveTimeout,
            )
            self.close()
            return
        self._heard = False
        self._deadline = self.reactor.callLater(self.config.keepaliveTimeout, self._checkHeard)

    def close(self) -> None:
        """
        End the session: its carrier is closed, its streams end.
        """
        if self.state is not _SESSION_OPEN:
            return
        self.state = _SESSION_CLOSING
        for stream in list(self.streams.values()):
            stream._sessionLost(Failure(ConnectionLost("smux session closed")))
        self.streams.clear()
        self.transport.unregisterProducer()
        self.transport.loseConnection()
