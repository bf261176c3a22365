"""
The ws and wss listeners and dialers (spec-transports.md section 3):
WebSocket (over TLS for wss), then the relay bytes, by autobahn.

GOST's mapping, which we follow: path C{/ws} (option C{path}); the client's
Host header is the C{host} option, else the node address; every write is
one binary message and reads concatenate messages into a stream (message
boundaries mean nothing); no subprotocol, no compression; any Origin is
accepted; the client may send pings (C{keepalive}, every C{ttl}, 15 s).  A
connection ends by closing the carrier, with or without a Close frame
(GOST sends none); either is a normal end of stream here.  WebSocket has
no half-close in autobahn, so the pipe closes both ways (GOST half-closes
the TCP underneath).
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IConsumer,
    IProtocolFactory,
    IPushProducer,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
    ITransport,
)
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from gostrelay.config.model import NodeConfig, ServiceConfig
from gostrelay.interfaces import IDialer, IListener
from gostrelay.layering import connectLayered
from gostrelay.logs import Logger
from gostrelay.router import DEFAULT_DIAL_TIMEOUT, directEndpoint
from gostrelay.tracking import describePeer
from gostrelay.transports.tcp import DEFAULT_BACKLOG, serverEndpoint
from gostrelay.transports.tls import TLSServerEndpoint as _TLSServerEndpoint
from gostrelay.transports.tls import (
    _nodeHost,
    clientCreator,
    serverContextFactory,
    tlsClientEndpoint,
    warnUnverifiedCredentials,
)
from gostrelay.transports.wscost import trim as trimAutobahn
from gostrelay.wire.address import joinHostPort, splitHostPort
from gostrelay.wire.websocket import ControlFrame, FrameReader, encodeData

trimAutobahn()

DEFAULT_PATH = "/ws"
DEFAULT_PING_INTERVAL = 15.0

#: The most data we put in one message: GOST writes at most 32 KiB per
#: message (its copy buffer), and so do we.
WRITE_CHUNK = 32 * 1024

#: The largest message we assemble (autobahn buffers a whole message
#: before delivering it): GOST's 32 KiB with 2x headroom, which also
#: takes the 64 KiB messages of earlier gostrelay versions (one TCP read
#: each).  Past it, in one frame or in fragments, the connection is
#: dropped.
MAX_MESSAGE = 64 * 1024

#: The most bytes of an opening handshake (request or response head) we
#: hold before it is complete: autobahn rescans its whole buffer for the
#: blank line on every read, so an endless header would cost CPU and
#: memory until the handshake timeout.  Past it the connection is dropped
#: with a log line, before any parsing.
MAX_HANDSHAKE = 32 * 1024

_log = Logger(namespace="gostrelay.ws")


@implementer(ITransport, IPushProducer, IConsumer)
class WebSocketStream:
    """
    A WebSocket connection as a byte-stream transport for one protocol.
    """

    disconnecting = False

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.protocol: Any = None
        self._lost = False

    def attach(self, protocol: Any) -> None:
        self.protocol = protocol
        protocol.makeConnection(self)

    def deliver(self, data: bytes) -> None:
        if self.protocol is not None and data:
            self.protocol.dataReceived(data)

    def lost(self, reason: Failure) -> None:
        if self._lost:
            return
        self._lost = True
        if self.protocol is not None:
            protocol, self.protocol = self.protocol, None
            protocol.connectionLost(reason)

    def write(self, data: bytes) -> None:
        """
        C{data} as binary messages of at most L{WRITE_CHUNK} bytes, framed
        here (L{encodeData}) and written to the carrier in one write, so a
        TLS carrier encrypts them in one go.
        """
        if not data or self.disconnecting or self._lost:
            return
        ws = self.ws
        transport = ws.transport
        if ws.state != WebSocketProtocol.STATE_OPEN or transport is None:
            return  # closing: the carrier is going, and so is the stream
        frames = encodeData(data, WRITE_CHUNK, masked=not ws.factory.isServer)
        if type(frames) is not bytes and not isinstance(transport, TLSMemoryBIOProtocol):
            # Twisted's TCP transport takes bytes only; its TLS takes any
            # buffer, which saves a copy of every masked write.
            frames = bytes(frames)
        transport.write(frames)

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        if self.disconnecting:
            return
        self.disconnecting = True
        # As GOST: close the carrier; no Close frame is owed.
        if self.ws.transport is not None:
            self.ws.transport.loseConnection()

    def abortConnection(self) -> None:
        self.disconnecting = True
        if self.ws.transport is not None:
            self.ws.transport.abortConnection()

    def getPeer(self) -> Any:
        return self.ws.transport.getPeer()

    def getHost(self) -> Any:
        return self.ws.transport.getHost()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.ws.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        if self.ws.transport is not None:
            self.ws.transport.unregisterProducer()

    def pauseProducing(self) -> None:
        self.ws.transport.pauseProducing()

    def resumeProducing(self) -> None:
        if self.ws.transport is not None:
            self.ws.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.loseConnection()


def _closeReason(wasClean: bool, code: Any, reason: Any) -> Failure:
    # A carrier closed without a Close frame is GOST's normal ending.
    if wasClean or code in (None, 1000, 1005, 1006):
        return Failure(ConnectionDone())
    return Failure(ConnectionLost(f"WebSocket closed: {code} {reason or ''}".strip()))


class _ServerFactory(WebSocketServerFactory):
    noisy = False
    handler: Any = None
    path: str = DEFAULT_PATH
    extraHeaders: dict[str, str] = {}


class _ClientFactory(WebSocketClientFactory):
    noisy = False
    appFactory: Any = None
    ready: Any = None
    #: The Host header exactly as GOST sends it (the host option, a Host in
    #: the header option, else the node address), which autobahn would
    #: otherwise always write as host:port.
    hostHeader: str = ""
    pingInterval: float = 0.0
    clock: Any = None


def _rewriteHost(request: bytes, host: str) -> bytes:
    head, sep, rest = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    out = []
    for line in lines:
        if line[:5].lower() == b"host:":
            if host:
                out.append(b"Host: " + host.encode("idna" if host.isascii() is False else "ascii"))
                host = ""
            continue
        out.append(line)
    return b"\r\n".join(out) + sep + rest


def _handshakeTooLarge(ws: Any, data: bytes) -> bool:
    """
    Whether C{data} would take an unfinished opening handshake past
    L{MAX_HANDSHAKE}; if so the connection is dropped (with a log line)
    before autobahn parses (rescans) anything.
    """
    if ws.state not in (ws.STATE_CONNECTING, ws.STATE_PROXY_CONNECTING):
        return False
    if len(ws.data) + len(data) <= MAX_HANDSHAKE:
        return False
    transport = ws.transport
    _log.info(
        "WebSocket peer {peer}: opening handshake larger than {cap} bytes; dropping",
        peer=describePeer(transport.getPeer()) if transport is not None else "?", cap=MAX_HANDSHAKE,
    )
    ws.data = b""
    if transport is not None:
        transport.abortConnection()
    return True


def _framesReceived(ws: Any, data: bytes) -> bool:
    """
    Parse C{data} with the connection's own L{FrameReader} if it is open
    and autobahn holds nothing of a frame or message (its handshake may
    have left one): payloads go to the stream as one C{dataReceived} per
    run of data frames, each control frame to autobahn (which answers a
    ping, notes a pong, answers and ends on a Close), a broken protocol
    fails the connection with a log line.

    @return: whether C{data} was taken care of; if not, it is autobahn's.
    """
    reader = ws.reader
    if (
        reader is None
        or ws.state != WebSocketProtocol.STATE_OPEN
        or ws.data
        or ws.current_frame is not None
        or ws.inside_message
    ):
        return False
    items = reader.feed(data)
    stream = ws.stream
    if len(items) == 1 and type(items[0]) is bytes:
        if stream is not None:
            stream.deliver(items[0])
    elif items:
        payloads: list[bytes] = []
        for item in items:
            if type(item) is ControlFrame:
                if payloads and stream is not None:
                    stream.deliver(b"".join(payloads))
                payloads = []
                WebSocketProtocol._dataReceived(ws, item.raw)
                if ws.state != WebSocketProtocol.STATE_OPEN:
                    return True  # closed: nothing more is read
            else:
                payloads.append(item)  # type: ignore[arg-type]
        if payloads and stream is not None:
            stream.deliver(b"".join(payloads))
    error = reader.error
    if error is not None and ws.state == WebSocketProtocol.STATE_OPEN:
        transport = ws.transport
        _log.info(
            "WebSocket peer {peer}: {reason}; dropping",
            peer=describePeer(transport.getPeer()) if transport is not None else "?", reason=error.reason,
        )
        ws.reader = None
        ws._fail_connection(error.code, error.reason)
    return True


class _ServerProtocol(WebSocketServerProtocol):
    stream: WebSocketStream | None = None
    #: Our frame parser, once the connection is open (L{_framesReceived}).
    reader: FrameReader | None = None

    def dataReceived(self, data: bytes) -> None:
        if not _framesReceived(self, data):
            super().dataReceived(data)

    def _dataReceived(self, data: bytes) -> None:
        if not _handshakeTooLarge(self, data):
            super()._dataReceived(data)

    def onConnect(self, request: Any) -> Any:
        if request.path != self.factory.path:
            raise ConnectionDeny(404)
        return (None, dict(self.factory.extraHeaders))

    def onOpen(self) -> None:
        self.reader = FrameReader(masked=True, maxMessage=MAX_MESSAGE)
        self.stream = WebSocketStream(self)
        app = self.factory.handler.buildProtocol(self.transport.getPeer())  # type: ignore[union-attr]
        if app is None:
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        self.stream.attach(app)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.stream is not None:
            self.stream.deliver(payload)

    def onCloseFrame(self, code: Any, reasonRaw: Any) -> Any:
        result = super().onCloseFrame(code, reasonRaw)
        if self.stream is not None:
            self.stream.lost(Failure(ConnectionDone()))
        return result

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        if self.stream is not None:
            self.stream.lost(_closeReason(wasClean, code, reason))


def serverFactory(handler: IProtocolFactory, path: str = DEFAULT_PATH, headers: dict[str, str] | None = None) -> WebSocketServerFactory:
    """
    An autobahn server factory serving C{handler}'s protocols over
    WebSocket at C{path}.  No URL: autobahn would otherwise insist on a Host
    with a port, which GOST clients with a C{host} option do not send.
    """
    factory = _ServerFactory()
    factory.protocol = _ServerProtocol
    factory.handler = handler
    factory.path = path
    factory.extraHeaders = headers or {}
    factory.setProtocolOptions(
        autoFragmentSize=0,
        maxMessagePayloadSize=MAX_MESSAGE,
        maxFramePayloadSize=MAX_MESSAGE,
        perMessageCompressionAccept=lambda offers: None,
        requireMaskedClientFrames=True,
        openHandshakeTimeout=15,
        # GOST (gorilla) accepts any Origin, null included, and version 13 only.
        allowNullOrigin=True,
        versions=[13],
    )
    return factory


@implementer(IStreamServerEndpoint)
class WebSocketServerEndpoint:
    """
    WebSocket at C{path} over any stream server endpoint.
    """

    def __init__(self, inner: IStreamServerEndpoint, path: str = DEFAULT_PATH, headers: dict[str, str] | None = None) -> None:
        self.inner = inner
        self.path = path
        self.headers = headers

    def listen(self, factory: IProtocolFactory) -> defer.Deferred[Any]:
        return self.inner.listen(serverFactory(factory, self.path, self.headers))


def _headers(md: Any) -> dict[str, str]:
    value = md.get("header") if "header" in md else md.get("ws.header") if "ws.header" in md else None
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    return {}


@implementer(IListener)
class WSListener:
    """
    Options (listener metadata): C{path} (C{/ws}), C{header} (extra
    response headers, YAML), C{backlog} (128); wss: the tls listener's
    certificate options.
    """

    secure = False

    def __init__(self, reactor: Any, service: ServiceConfig, context: Any) -> None:
        listener = service.listener
        assert listener is not None
        md = listener.md
        where = service.source or service.name
        backlog = md.getInt("backlog") or DEFAULT_BACKLOG
        self.path = md.getString("path", "ws.path") or DEFAULT_PATH
        inner: Any = serverEndpoint(reactor, service.addr, backlog, where)
        if self.secure:
            inner = _TLSServerEndpoint(inner, serverContextFactory(listener.tls, where))
        self.endpoint = WebSocketServerEndpoint(inner, self.path, _headers(md))

    def listen(self, factory: IProtocolFactory) -> defer.Deferred[Any]:
        return self.endpoint.listen(factory)


class WSSListener(WSListener):
    secure = True


class _ClientProtocol(WebSocketClientProtocol):
    stream: WebSocketStream | None = None
    #: Our frame parser, once the connection is open (L{_framesReceived}).
    reader: FrameReader | None = None

    def dataReceived(self, data: bytes) -> None:
        if not _framesReceived(self, data):
            super().dataReceived(data)

    def _dataReceived(self, data: bytes) -> None:
        if not _handshakeTooLarge(self, data):
            super()._dataReceived(data)
    _hostRewritten = False

    def sendData(self, data: bytes, sync: bool = False, chopsize: Any = None) -> None:
        if not self._hostRewritten and data.startswith(b"GET "):
            self._hostRewritten = True
            data = _rewriteHost(data, self.factory.hostHeader)
        super().sendData(data, sync, chopsize)

    def onOpen(self) -> None:
        factory = self.factory
        self.reader = FrameReader(masked=False, maxMessage=MAX_MESSAGE)
        self.stream = WebSocketStream(self)
        try:
            app = factory.appFactory.buildProtocol(self.transport.getPeer())  # type: ignore[union-attr]
        except BaseException:
            self.transport.loseConnection()  # type: ignore[union-attr]
            if not factory.ready.called:
                factory.ready.errback(Failure())
            return
        if app is None:
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        self.stream.attach(app)
        self._startPings()
        if not factory.ready.called:
            factory.ready.callback(app)

    # GOST's client keepalive: a ping every ttl, and the connection dropped
    # when no pong came for 2 x ttl (data does not count).  Our own timers:
    # autobahn's round deadlines to whole seconds.
    _pingCall: Any = None
    _deadline: Any = None

    def _startPings(self) -> None:
        interval = self.factory.pingInterval
        if interval > 0 and self.factory.clock is not None:
            self._pingCall = self.factory.clock.callLater(interval, self._ping)
            self._deadline = self.factory.clock.callLater(2 * interval, self._noPong)

    def _ping(self) -> None:
        self._pingCall = None
        if self.stream is None or self.stream._lost:
            return
        self.sendPing()
        self._pingCall = self.factory.clock.callLater(self.factory.pingInterval, self._ping)

    def onPong(self, payload: bytes) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.reset(2 * self.factory.pingInterval)

    def _noPong(self) -> None:
        self._deadline = None
        _log.info("WebSocket peer {peer}: no pong for {t:g}s; dropping", peer=self.peer, t=2 * self.factory.pingInterval)
        self.dropConnection(abort=True)

    def _stopPings(self) -> None:
        for call in (self._pingCall, self._deadline):
            if call is not None and call.active():
                call.cancel()
        self._pingCall = self._deadline = None

    def onCloseFrame(self, code: Any, reasonRaw: Any) -> Any:
        # A Close frame ends the stream now (as gorilla's read returns).
        result = super().onCloseFrame(code, reasonRaw)
        if self.stream is not None:
            self.stream.lost(Failure(ConnectionDone()))
        return result

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.stream is not None:
            self.stream.deliver(payload)

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        self._stopPings()
        ready = self.factory.ready
        if self.stream is not None:
            self.stream.lost(_closeReason(wasClean, code, reason))
        elif not ready.called:
            ready.errback(Failure(ConnectionLost(f"WebSocket handshake failed: {reason or code}")))


@implementer(IStreamClientEndpoint)
class WebSocketClientEndpoint:
    """
    WebSocket connections over C{through}: the upgrade to C{path} with the
    Host header C{host}, then a byte stream.
    """

    def __init__(
        self,
        reactor: Any,
        through: IStreamClientEndpoint,
        host: str,
        path: str = DEFAULT_PATH,
        headers: dict[str, str] | None = None,
        pingInterval: float = 0.0,
        secure: bool = False,
    ) -> None:
        self.reactor = reactor
        self.through = through
        self.host = host
        self.path = path
        self.headers = headers or {}
        self.pingInterval = pingInterval
        self.secure = secure

    def _url(self) -> str:
        try:
            host, port = splitHostPort(self.host)
        except ValueError:
            host, port = self.host, 0
        host = host or "localhost"
        scheme = "wss" if self.secure else "ws"
        authority = joinHostPort(host, port) if port else (f"[{host}]" if ":" in host else host)
        return f"{scheme}://{authority}{self.path}"

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[Any]:
        def makeFactory(ready: defer.Deferred[Any]) -> _ClientFactory:
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            factory = _ClientFactory(self._url(), headers=headers or None)
            factory.hostHeader = next((v for k, v in self.headers.items() if k.lower() == "host"), self.host)
            factory.protocol = _ClientProtocol
            factory.appFactory = protocolFactory
            factory.ready = ready
            options: dict[str, Any] = {
                "autoFragmentSize": 0,
                "maxMessagePayloadSize": MAX_MESSAGE,
                "maxFramePayloadSize": MAX_MESSAGE,
            }
            factory.setProtocolOptions(**options)
            factory.pingInterval = self.pingInterval
            factory.clock = self.reactor
            return factory

        return connectLayered(self.through, makeFactory)


@implementer(IDialer)
class WSDialer:
    """
    Options (dialer metadata): C{path} (C{/ws}), C{host} (the Host header;
    default the node address), C{header} (extra request headers, YAML),
    C{keepalive} (false) and C{ttl} (15 s ping interval); wss: the tls
    dialer's options.
    """

    secure = False

    def __init__(self, reactor: Any, node: NodeConfig, context: Any) -> None:
        self.reactor = reactor
        dialer = node.dialer
        md = dialer.md if dialer is not None else node.md
        where = node.source or node.name
        self.path = md.getString("path", "ws.path") or DEFAULT_PATH
        self.host = md.getString("host", "ws.host")
        self.headers = _headers(md)
        self.pingInterval = 0.0
        if md.getBool("keepalive", "ws.keepalive"):
            self.pingInterval = md.getDuration("ttl", "keepalive.interval", "ws.ttl") or DEFAULT_PING_INTERVAL
        self.creator = None
        if self.secure:
            tls = dialer.tls if dialer is not None and dialer.tls is not None else node.tls
            self.creator = clientCreator(tls, _nodeHost(node.addr), where)
            warnUnverifiedCredentials(node, tls, context)

    #: C{endpoint} takes C{timeout=None}: the caller (a chain under a
    #: router) bounds the attempt, so the TCP connection gets no timer.
    timeoutOptional = True

    def endpoint(
        self, address: str, through: IStreamClientEndpoint | None = None, timeout: float | None = DEFAULT_DIAL_TIMEOUT
    ) -> IStreamClientEndpoint:
        if through is None:
            through = directEndpoint(self.reactor, address, timeout)
        if self.creator is not None:
            through = tlsClientEndpoint(self.creator, through)
        return WebSocketClientEndpoint(
            self.reactor, through, self.host or address, self.path, self.headers, self.pingInterval, self.secure
        )


class WSSDialer(WSDialer):
    secure = True
