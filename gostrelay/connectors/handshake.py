"""
Connectors that open a tunnel with one handshake and then pass bytes
through unchanged (HTTP CONNECT, SOCKS5, SOCKS4): one Twisted shape over
the sans-IO client handshakes of L{gostrelay.wire.socksclient} and
L{gostrelay.wire.httpconnect}.

L{HandshakeEndpoint} wraps an endpoint reaching a proxy; its connections
run the handshake on the carrier and hand the application its connection
once the proxy has said yes (as GOST's connectors do: the reply is read
before anything else is written).  A refusal fails the connect with
L{ProxyHopRefused}, naming the proxy and its answer; the chain counts it
against that node.  L{HandshakeClientProtocol} is then the application's
transport.

For GOST's UDP tunnel (SOCKS5 command 0xF3, HTTP C{X-Gost-Protocol: udp})
the protocol also turns the application's C{LEN PAYLOAD} frames (what
L{gostrelay.router.Router.datagram} speaks to any UDP-capable hop) into
tunnel datagrams addressed to the target, and back.  For a standard SOCKS5
UDP ASSOCIATE (C{relay=udp}) the frames go instead as RFC 1928 datagrams
over a UDP socket of ours to the relay address the proxy named; the TCP
connection only holds the association open.
"""

from __future__ import annotations

import enum
import ipaddress
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
    ITransport,
)
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer, providedBy

from gostrelay.config.model import NodeConfig
from gostrelay.connectors.carrier import CarrierDelegate, carrierDeclaration
from gostrelay.errors import ProxyHopRefused, describeFailure
from gostrelay.layering import connectLayered
from gostrelay.logs import Logger
from gostrelay.statemachine import TransitionTable
from gostrelay.wire.address import splitHostPort
from gostrelay.wire.socks import SocksError, encodeSocks5Datagram, parseSocks5Datagram
from gostrelay.wire.socksclient import ProxyProtocolError, ProxyRefused
from gostrelay.wire.udpframe import FrameError, UDPConnectReframer

_log = Logger(namespace="gostrelay.connector")


class _AssociationSocket(DatagramProtocol):
    """
    Our end of a SOCKS5 UDP association: RFC 1928 datagrams to and from
    the proxy's relay address, as C{LEN PAYLOAD} frames to the application.
    """

    def __init__(self, owner: HandshakeClientProtocol, relay: tuple[str, int]) -> None:
        self.owner = owner
        self.relay = relay
        self.dropped = 0

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if (addr[0], addr[1]) != self.relay:
            self.dropped += 1  # only the proxy's relay speaks for the target
            return
        try:
            datagram = parseSocks5Datagram(data)
        except SocksError:
            self.dropped += 1
            return
        if datagram.frag or self.owner.app is None:
            self.dropped += 1
            return
        self.owner.app.dataReceived(UDPConnectReframer.toApp(datagram.data))

    def send(self, host: str, port: int, payload: bytes) -> None:
        if self.transport is None:
            return
        try:
            self.transport.write(encodeSocks5Datagram(host, port, payload), self.relay)
        except (OSError, ValueError):
            self.dropped += 1


class HandshakeState(enum.Enum):
    """
    Where a proxy-hop connection is (L{HandshakeClientProtocol.state})::

        IDLE --start--> NEGOTIATING --done--> OPEN
                        NEGOTIATING --refused/timedOut/failed--> REFUSED
        any --lost--> CLOSED
    """

    #: The carrier is not up yet.
    IDLE = "idle"
    #: Our handshake went; the proxy's answers are read.
    NEGOTIATING = "negotiating"
    #: The proxy said yes: the application has the connection.
    OPEN = "open"
    #: The proxy said no, did not answer in time or the application refused
    #: the connection; the carrier is closing, nothing more is carried.
    REFUSED = "refused"
    #: The carrier is gone.
    CLOSED = "closed"


_IDLE, _NEGOTIATING, _OPEN, _REFUSED, _CLOSED = HandshakeState

#: The machine, in the relay client's shape (L{gostrelay.statemachine}).
_MACHINE: TransitionTable[HandshakeState] = TransitionTable("proxy hop")
_upon = _MACHINE.upon


@_upon(_IDLE, event="start", to=_NEGOTIATING)
def _start(s: HandshakeClientProtocol) -> None:
    ep = s.endpoint
    if ep.timeout > 0:
        s._timer = ep.reactor.callLater(ep.timeout, s._fire, "timedOut")
    s.transport.write(s.handshake.start())  # type: ignore[union-attr]


@_upon(_NEGOTIATING, event="done", to=_OPEN)
def _done(s: HandshakeClientProtocol, rest: bytes) -> None:
    s._cancelTimer()
    if s._connectApp():
        s._open(rest)


@_upon(_NEGOTIATING, _OPEN, event="refused", to=_REFUSED)
def _refusedBy(s: HandshakeClientProtocol, answer: str, abort: bool) -> None:
    s._cancelTimer()
    s._deliver = _drop
    s._refused(answer)
    if abort:
        s.transport.abortConnection()  # type: ignore[union-attr]
    else:
        s.transport.loseConnection()  # type: ignore[union-attr]


@_upon(_NEGOTIATING, event="timedOut", to=_REFUSED)
def _timedOut(s: HandshakeClientProtocol) -> None:
    s._timer = None
    _refusedBy(s, f"no answer within {s.endpoint.timeout:g}s", True)


@_upon(_OPEN, event="failed", to=_REFUSED)
def _appRefused(s: HandshakeClientProtocol, failure: Failure) -> None:
    # The application refused the connection (its factory closed the
    # carrier): the connect fails with its reason.
    s._deliver = _drop
    s.ready.errback(failure)


@_upon(_OPEN, event="readLost")
def _readLost(s: HandshakeClientProtocol) -> None:
    if IHalfCloseableProtocol.providedBy(s.app):
        s.app.readConnectionLost()
    else:
        s.transport.loseConnection()  # type: ignore[union-attr]


@_upon(_NEGOTIATING, _REFUSED, event="readLost")
def _closeUnanswered(s: HandshakeClientProtocol) -> None:
    s.transport.loseConnection()  # type: ignore[union-attr]


@_upon(_IDLE, _NEGOTIATING, _OPEN, _REFUSED, event="lost", to=_CLOSED)
def _lost(s: HandshakeClientProtocol, reason: Failure | None) -> None:
    s._cancelTimer()
    s._deliver = _drop
    if s._associationPort is not None:
        port, s._associationPort = s._associationPort, None
        port.stopListening()
    if s.app is not None:
        app, s.app = s.app, None
        app.connectionLost(reason)
        return
    if not s.ready.called:
        why = "closed the connection" if reason is None or reason.check(ConnectionDone) else describeFailure(reason)
        s._refused(f"no answer: {why}")


def _drop(data: bytes) -> None:
    """
    Where the proxy's bytes go once the tunnel can carry none.
    """


@implementer(IHalfCloseableProtocol, ITransport)
class HandshakeClientProtocol(CarrierDelegate, Protocol):
    """
    Runs one client handshake on a carrier, then is the application's
    transport.

    Its life is an explicit machine (L{HandshakeState} and the table above),
    in the relay client's shape: the proxy's bytes go to C{_deliver}, the
    handshake until it is done, then the application (or the UDP tunnel's
    reframing).
    """

    machine = _MACHINE

    disconnecting = False

    def __init__(self, endpoint: HandshakeEndpoint, appFactory: IProtocolFactory, ready: defer.Deferred[Any]) -> None:
        self.endpoint = endpoint
        self.appFactory = appFactory
        self.ready = ready
        self.handshake = endpoint.makeHandshake()
        self.state = _IDLE
        self._timer: Any = None
        self._udp: UDPConnectReframer | None = None
        self._association: _AssociationSocket | None = None
        self._associationPort: Any = None
        self._deliver: Callable[[bytes], None] = self._negotiate

    # -- carrier side

    def connectionMade(self) -> None:
        # The carrier's interfaces but TLS, from a declaration made once per
        # carrier type (directlyProvides per connection normalises them).
        self.__provides__ = carrierDeclaration(type(self), providedBy(self.transport))
        self._fire("start")

    def spliceCarrier(self) -> Any:
        """
        The carrier, once the tunnel is open and bytes pass unchanged (so
        L{gostrelay.splice} may move them directly); C{None} otherwise.
        """
        if self.state is _OPEN and self._udp is None and not self.disconnecting:
            return self.carrierForSplice()
        return None

    # -- what the machine's transitions use

    def _negotiate(self, data: bytes) -> None:
        """
        The proxy's bytes while negotiating: the sans-IO handshake answers
        them and says when it is done.
        """
        if self.ready.called:
            return  # the connect was cancelled: nothing more to negotiate
        try:
            reply = self.handshake.feed(data)
        except (ProxyRefused, ProxyProtocolError) as e:
            self._fire("refused", str(e), False)
            return
        if reply:
            self.transport.write(reply)  # type: ignore[union-attr]
        if self.handshake.done:
            self._fire("done", self.handshake.remainder)

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _refused(self, answer: str) -> None:
        ep = self.endpoint
        _log.info("{label} refused {target}: {answer}", label=ep.label, target=ep.target, answer=answer)
        if not self.ready.called:
            self.ready.errback(Failure(ProxyHopRefused(ep.proxy, ep.label, ep.target, answer)))

    def _fromTunnel(self, data: bytes) -> None:
        """
        The proxy's bytes on GOST's UDP tunnel: datagrams, to the
        application as C{LEN PAYLOAD} frames.
        """
        assert self._udp is not None
        try:
            data = self._udp.tunnelToApp(data)
        except FrameError as e:
            _log.info("{label}: bad UDP tunnel datagram: {e}", label=self.endpoint.label, e=e)
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        if data:
            self.app.dataReceived(data)

    def _open(self, rest: bytes) -> None:
        self._deliver = self._fromTunnel if self._udp is not None else self.app.dataReceived
        if rest:
            self._deliver(rest)

    def _connectApp(self) -> bool:
        if self.endpoint.udpTarget is not None:
            self._udp = UDPConnectReframer(*self.endpoint.udpTarget)
            if self.endpoint.associate and not self._openAssociation():
                return False
        failure = self.buildApp(self.appFactory)
        if failure is not None:
            self._fire("failed", failure)
            return False
        self.ready.callback(self.app)
        return True

    def _openAssociation(self) -> bool:
        """
        Open our UDP socket for a SOCKS5 UDP association; the relay address
        is the proxy's answer (an unspecified host means the proxy's own
        address, as clients read RFC 1928).
        """
        host, port = getattr(self.handshake, "bound", None) or ("", 0)
        try:
            unspecified = ipaddress.ip_address(host).is_unspecified
        except ValueError:
            unspecified = False
        if not host or unspecified:
            host = str(getattr(self.transport.getPeer(), "host", ""))  # type: ignore[union-attr]
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            self._fire("refused", f"UDP relay address {host!r} is not an IP address", False)
            return False
        self._association = _AssociationSocket(self, (str(ip), port))
        try:
            self._associationPort = self.endpoint.reactor.listenUDP(
                0, self._association, interface="::" if ip.version == 6 else "", maxPacketSize=65535
            )
        except Exception as e:  # noqa: BLE001 - no UDP socket: the association fails
            self._fire("refused", f"cannot open a UDP socket: {e}", False)
            return False
        return True

    # -- the application's transport

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._udp is not None:
            if self._association is not None:
                for payload in self._udp.datagramsFromApp(data):
                    self._association.send(self._udp.host, self._udp.port, payload)
                return
            # An empty datagram has no tunnel framing: dropped.
            data = self._udp.tunnelFromApp(data)
            if not data:
                return
        self.transport.write(data)  # type: ignore[union-attr]

    def loseConnection(self) -> None:
        self.disconnecting = True
        self.transport.loseConnection()  # type: ignore[union-attr]

    def abortConnection(self) -> None:
        self.disconnecting = True
        self.transport.abortConnection()  # type: ignore[union-attr]

    def loseWriteConnection(self) -> None:
        self.transport.loseWriteConnection()  # type: ignore[union-attr]


class _HandshakeFactory(Factory):
    noisy = False

    def __init__(self, endpoint: HandshakeEndpoint, appFactory: IProtocolFactory, ready: defer.Deferred[Any]) -> None:
        self.endpoint = endpoint
        self.appFactory = appFactory
        self.ready = ready

    def buildProtocol(self, addr: Any) -> HandshakeClientProtocol:
        return HandshakeClientProtocol(self.endpoint, self.appFactory, self.ready)


def hopIndex(node: NodeConfig, context: Any) -> int:
    """
    The position of C{node}'s hop in its chain (0: the first hop; 0 too
    when it cannot be told, e.g. a named hop used by several chains).
    """
    config = getattr(context, "config", None)
    for chain in getattr(config, "chains", []):
        for i, hop in enumerate(chain.hops):
            if any(n is node for n in hop.nodes):
                return i
    return 0


def nodeLabel(node: NodeConfig, context: Any, kind: str) -> str:
    """
    How log lines name a proxy node: its hop, its name and its address
    (never its credentials), e.g. C{"hop-0 node-0 (http proxy 127.0.0.1:3128)"}.
    """
    config = getattr(context, "config", None)
    hops = [h for c in getattr(config, "chains", []) for h in c.hops] + list(getattr(config, "hops", []))
    hop = next((h.name for h in hops if any(n is node for n in h.nodes)), "")
    return " ".join(x for x in (hop, node.name, f"({kind} proxy {node.addr})") if x)


@implementer(IStreamClientEndpoint)
class HandshakeEndpoint:
    """
    Connections through one proxy to one target.

    @param through: an endpoint reaching the proxy.
    @param makeHandshake: a fresh sans-IO client handshake per connection.
    @param proxy: the proxy's C{host:port} (the chain node's address).
    @param label: how log lines name the proxy (C{"http proxy
        127.0.0.1:3128"}); never with credentials.
    @param target: the C{host:port} asked for.
    @param timeout: GOST's connector C{timeout}: how long the handshake may
        take (0: no limit of its own; the dial timeout still applies).
    @param udp: the target is reached by GOST's UDP tunnel: the application
        speaks C{LEN PAYLOAD} frames.
    @param associate: with C{udp}, by a SOCKS5 UDP association instead.
    """

    def __init__(
        self,
        reactor: Any,
        through: IStreamClientEndpoint,
        makeHandshake: Callable[[], Any],
        proxy: str,
        label: str,
        target: str,
        timeout: float = 0.0,
        udp: bool = False,
        associate: bool = False,
    ) -> None:
        self.reactor = reactor
        self.through = through
        self.makeHandshake = makeHandshake
        self.proxy = proxy
        self.label = label
        self.target = target
        self.timeout = timeout
        self.udpTarget = splitHostPort(target) if udp else None
        #: UDP by a standard SOCKS5 UDP ASSOCIATE (C{relay=udp}).
        self.associate = udp and associate

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[Any]:
        return connectLayered(self.through, lambda ready: _HandshakeFactory(self, protocolFactory, ready))
