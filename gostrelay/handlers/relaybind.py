"""
The relay server's BIND (spec-relay.md 2.8, 2.9): remote port forwarding.

TCP BIND: the server listens on the requested address, answers OK with the
bound address, and runs an smux session over the relay stream as the smux
client; every peer that connects to the bound port gets a stream, whose
first frame is a per-peer OK naming the peer, and is then piped.  The bound
port lives exactly as long as the session.

UDP BIND (also GOST's UDP association): the server binds a UDP socket and
the relay stream carries tunnel datagrams both ways, each naming its
destination (towards the server) or source (from it).

Our differences (docs/differences.md): a UDP port that cannot be bound
answers 0x05 (GOST closes silently); a datagram whose destination cannot be
resolved or sent is dropped with a debug line (GOST ends the whole BIND);
the empty-host form GOST's own client sends ("0.0.0.0::PORT", port 0) is
read as 0.0.0.0:PORT.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure
from zope.interface import implementer

from gostrelay import logs, metrics
from gostrelay.datagram import TunnelFramedChannel, UDPSocketChannel, _ipText, listenUDP
from gostrelay.guard import resolveFirst
from gostrelay.interfaces import IDatagramReceiver
from gostrelay.logs import Logger
from gostrelay.mux import MuxSession, MuxStream
from gostrelay.pipe import A, B, Pipe, PipeProtocol
from gostrelay.transports.tcp import serverEndpoint
from gostrelay.wire.address import ATYP_DOMAIN, joinHostPort, splitHostPort
from gostrelay.wire.relay import AddrFeature, Status, encodeResponse

_GOST_EMPTY_HOST_BUG = re.compile(r"^(?P<host>.*):(?P<port>\d+)$")


def bindAddress(addr: AddrFeature | None) -> tuple[str, int]:
    """
    The host and port a BIND asks for.  No address is C{0.0.0.0:0}; GOST's
    buggy empty-host form, the domain C{"0.0.0.0::2222"} with port 0, is
    C{0.0.0.0:2222}.

    @raise ValueError: that form with a port beyond 65535.
    """
    if addr is None:
        return "0.0.0.0", 0
    host, port = addr.host, addr.port
    if addr.atype == ATYP_DOMAIN and port == 0:
        m = _GOST_EMPTY_HOST_BUG.match(host)
        if m is not None and m.group("host").endswith(":"):
            candidate = m.group("host")[:-1]
            try:
                if candidate:
                    ipaddress.ip_address(candidate)
            except ValueError:
                pass
            else:
                if int(m.group("port")) > 0xFFFF:
                    raise ValueError(f"port out of range in {host!r}")
                return candidate or "0.0.0.0", int(m.group("port"))
    return host, port


def parsePortRanges(text: str) -> list[tuple[int, int]]:
    """
    C{"2000-2999,8080"} → C{[(2000, 2999), (8080, 8080)]}.
    """
    ranges = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        lo, _, hi = item.partition("-")
        low, high = int(lo), int(hi or lo)
        if not 0 <= low <= high <= 65535:
            raise ValueError(f"bad port range {item!r}")
        ranges.append((low, high))
    return ranges


def portAllowed(port: int, ranges: list[tuple[int, int]] | None) -> bool:
    """
    Whether a BIND may ask for C{port}: any port without a policy; with
    one, port 0 (the server picks) only if 0 is listed.
    """
    if ranges is None:
        return True
    return any(lo <= port <= hi for lo, hi in ranges)


def _boundAddr(address: IAddress, requestedHost: str) -> AddrFeature:
    """
    The bound address to report: a request for the IPv4 wildcard is
    answered with 0.0.0.0 even though we listen dual-stack (spec-relay.md
    4.6: C{01 00 00 0a 02 00 07 01 00000000 PORT}).
    """
    host = _ipText(getattr(address, "host", "0.0.0.0"))
    if host == "::" and requestedHost in ("", "0.0.0.0"):
        host = "0.0.0.0"
    return AddrFeature.fromHostPort(host, getattr(address, "port", 0))


def _peerAddr(address: IAddress) -> AddrFeature:
    host = _ipText(getattr(address, "host", "0.0.0.0"))
    return AddrFeature.fromHostPort(host, getattr(address, "port", 0))


class _BoundPortFactory(Factory):
    """
    Accepts peers on a TCP BIND's port: each gets an smux stream.
    """

    noisy = False

    def __init__(self, bind: TCPBind) -> None:
        self.bind = bind

    def buildProtocol(self, addr: IAddress | None) -> PipeProtocol | None:
        return self.bind.peerConnected(addr)


class TCPBind:
    """
    The server side of one TCP BIND, after the request was accepted.
    """

    def __init__(self, protocol: Any, host: str, port: int) -> None:
        self.protocol = protocol
        self.handler = protocol.handler
        self.reactor = protocol.reactor
        self.log: Logger = protocol.log
        self.host = host
        self.requestedPort = port
        self.port: Any = None
        self.session: MuxSession | None = None
        self.peers = 0
        self.bound = ""

    def start(self) -> defer.Deferred[Any]:
        def listen() -> Any:
            address = joinHostPort(self.host if self.host not in ("0.0.0.0",) else "", self.requestedPort)
            return serverEndpoint(self.reactor, address, where="BIND").listen(_BoundPortFactory(self))

        return defer.maybeDeferred(listen).addCallback(self._listening)

    def _listening(self, port: Any) -> Any:
        self.port = port
        host = port.getHost()
        self.bound = joinHostPort(_ipText(host.host), host.port)
        metrics.gauge("bindSessions", self.handler.name, 1)
        transport = self.protocol.transport
        transport.write(encodeResponse(Status.OK, _boundAddr(host, self.host)))
        self.session = MuxSession(
            self.reactor,
            transport,
            client=True,
            config=self.handler.muxConfig,
            acceptStream=None,
            onClose=self._sessionClosed,
            label=f"{self.protocol.peer} BIND {self.bound}",
        )
        return port

    def peerConnected(self, addr: IAddress | None) -> PipeProtocol | None:
        session = self.session
        if session is None or session.closed:
            return None
        self.peers += 1
        service = self.handler.service.name
        pipe = Pipe(
            self.reactor, self.handler.options.idleTimeout, label=f"{self.bound} {addr}",
            onDone=lambda p, reason: metrics.transferred(service, p.transferred[B], p.transferred[A]),
        )
        stream: MuxStream = session.openStream()
        stream.write(encodeResponse(Status.OK, _peerAddr(addr)))  # type: ignore[arg-type]
        stream.attach(PipeProtocol(pipe, B))
        self.log.debug(
            "{peer} BIND {bound}: peer {remote} on stream {sid}",
            peer=self.protocol.peer, bound=self.bound, remote=addr, sid=stream.sid,
        )
        return PipeProtocol(pipe, A)

    def dataReceived(self, data: bytes) -> None:
        if self.session is not None:
            self.session.dataReceived(data)

    def connectionLost(self, reason: Failure | None) -> None:
        if self.session is not None:
            self.session.connectionLost(reason)
        else:
            self._release()

    def _sessionClosed(self, reason: Failure) -> None:
        self._release()
        self.log.info(
            "{peer} BIND {bound}/tcp user={user!r}: released after {n} peers",
            peer=self.protocol.peer, bound=self.bound, user=self.protocol.user, n=self.peers,
        )
        self.protocol.transport.loseConnection()

    def _release(self) -> None:
        if self.port is not None:
            port, self.port = self.port, None
            port.stopListening()
            metrics.gauge("bindSessions", self.handler.name, -1)


class _BindStream(TunnelFramedChannel):
    """
    The relay stream of a UDP BIND, from the server's side: tunnel
    datagrams from the client go to their destination through the bind.
    """

    def __init__(self, bind: UDPBind) -> None:
        super().__init__(None, bind.log, f"{bind.protocol.peer} BIND")
        self.bind = bind

    def tunnelDatagramReceived(self, host: str, port: int, data: bytes) -> None:
        self.bind.fromClient(host, port, data)


@implementer(IDatagramReceiver)
class UDPBind:
    """
    The server side of one UDP BIND (or UDP association): the bound socket
    on one side, the relay stream (a L{_BindStream}) on the other.
    """

    def __init__(self, protocol: Any, host: str, port: int) -> None:
        self.protocol = protocol
        self.reactor = protocol.reactor
        self.log: Logger = protocol.log
        self.host = host
        self.requestedPort = port
        self.channel = UDPSocketChannel(self)
        self.stream = _BindStream(self)
        self.bound = ""
        #: Datagrams out (to destinations) and their bytes.
        self.counts = [0, 0]
        #: Datagrams the bypass, the guard or a failed resolution stopped.
        self.dropped = 0

    def start(self) -> defer.Deferred[Any]:
        return defer.maybeDeferred(listenUDP, self.reactor, self.channel, self.host, self.requestedPort).addCallback(
            self._listening
        )

    def _listening(self, port: Any) -> Any:
        host = port.getHost()
        self.bound = joinHostPort(_ipText(host.host), host.port)
        self.counted = True
        metrics.gauge("bindSessions", self.protocol.handler.name, 1)
        transport = self.protocol.transport
        self.stream.label = f"{self.protocol.peer} BIND {self.bound}/udp"
        self.stream.makeConnection(transport)
        transport.write(encodeResponse(Status.OK, _boundAddr(host, self.host)))
        return port

    def dataReceived(self, data: bytes) -> None:
        self.stream.dataReceived(data)

    def fromClient(self, host: str, port: int, payload: bytes) -> None:
        bypass = self.protocol.handler.options.bypass
        if bypass and bypass.contains(host, port):
            self.dropped += 1
            return
        self.counts[0] += 1
        self.counts[1] += len(payload)
        self._sendTo(host, port, payload)

    def _sendTo(self, host: str, port: int, payload: bytes) -> None:
        """
        Send to C{host:port}: a name is resolved first; with the handler's
        guard (denyPrivate), every address is checked and only a checked
        one is sent to (gostrelay.guard).
        """
        guard = self.protocol.handler.options.guard
        address = joinHostPort(host, port)
        if guard is not None:
            d = guard.resolve(address)
        else:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                d = defer.Deferred.fromCoroutine(resolveFirst(self.reactor, host)).addCallback(joinHostPort, port)
            else:
                self.channel.sendDatagram(payload, address)
                return

        def failed(f: Failure) -> None:
            self.dropped += 1
            self.log.debug(
                "BIND {bound}/udp: datagram to {target} dropped: {e}",
                bound=self.bound, target=logs.escape(address), e=f.getErrorMessage(),
            )

        d.addCallbacks(lambda checked: self.channel.sendDatagram(payload, checked), failed)

    def datagramReceived(self, data: bytes, addr: str) -> None:
        """
        A datagram from a peer of the bound socket: to the client, named by
        its source, unless the bypass or the guard refuse that source.
        """
        host, port = splitHostPort(addr)
        bypass = self.protocol.handler.options.bypass
        guard = self.protocol.handler.options.guard
        if (bypass and bypass.contains(host, port)) or (guard is not None and guard.refusesSource(host, port)):
            self.dropped += 1
            return
        self.stream.sendTunnelDatagram(host, port, data)

    def channelClosed(self, reason: Failure | None) -> None:
        pass

    def connectionLost(self, reason: Failure | None) -> None:
        self.channel.close()
        stream = self.stream
        stream.connectionLost(reason)
        metrics.transferred(self.protocol.handler.service.name, self.counts[1], stream.sentBytes)
        if getattr(self, "counted", False):
            self.counted = False
            metrics.gauge("bindSessions", self.protocol.handler.name, -1)
        self.log.info(
            "{peer} BIND {bound}/udp user={user!r}: released, {du} datagrams ({bu} bytes) out, "
            "{dd} datagrams ({bd} bytes) in, {dropped} dropped",
            peer=self.protocol.peer, bound=self.bound, user=self.protocol.user,
            du=self.counts[0], bu=self.counts[1], dd=stream.sent, bd=stream.sentBytes,
            dropped=self.dropped + stream.dropped + self.channel.dropped,
        )
