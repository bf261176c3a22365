"""
Chains: hops of nodes, each node a dialer under a connector (spec-relay.md
section 7).  A route through a chain is nested endpoints: hop 1's dialer
reaches node 1; node 1's connector CONNECTs to node 2's address; node 2's
dialer adds its layer over that; and so on, until the last node's connector
reaches the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet import defer, error
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import ClientFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from gostrelay import metrics, registry
from gostrelay.bypass import bypassesFor
from gostrelay.config.model import ChainConfig, ConfigError, HopConfig, NodeConfig
from gostrelay.connectors.relay import RelayClientEndpoint, RelayClientProtocol, RelayConnector
from gostrelay.errors import (
    DialError,
    HopFailed,
    ProxyHopRefused,
    RelayRefused,
    describeConnectError,
    describeFailure,
)
from gostrelay.layering import HeaderFirstEndpoint
from gostrelay.logs import Logger
from gostrelay.router import directEndpoint, parseTarget
from gostrelay.selector import Node, Selector
from gostrelay.wire.address import splitHostPort
from gostrelay.wire.proxyheader import encodeHeader

_log = Logger(namespace="gostrelay.chain")


class Hop:
    """
    One hop: its nodes (each with a connector and a dialer) and the
    selector choosing among them.
    """

    def __init__(self, name: str, selector: Selector, bypass: Any = None, proxyHeaders: dict[str, int] | None = None) -> None:
        self.name = name
        self.selector = selector
        self.bypass = bypass
        #: PROXY protocol version sent first to a node, by node name
        #: (GOST's node or hop option C{proxyProtocol}).
        self.proxyHeaders = proxyHeaders or {}

    @classmethod
    def fromConfig(cls, reactor: Any, hop: HopConfig, context: Any, where: str) -> Hop:
        nodes = []
        proxyHeaders = {}
        for i, nodeConfig in enumerate(hop.nodes):
            nodeWhere = nodeConfig.source or f"{where}.nodes[{i}] ({nodeConfig.name})"
            connector, dialer = _build(reactor, nodeConfig, context, nodeWhere)
            nodes.append(Node(nodeConfig.name, nodeConfig.addr, nodeConfig.md, value=(connector, dialer)))
            version = nodeConfig.md.getInt("proxyProtocol") or hop.md.getInt("proxyProtocol")
            if version:
                dialerType = nodeConfig.dialer.type if nodeConfig.dialer is not None and nodeConfig.dialer.type else "tcp"
                if version not in (1, 2):
                    raise ConfigError(f"{nodeWhere}: proxyProtocol={version}: 1 or 2 (PROXY protocol version)")
                if dialerType not in ("tcp", "tls", "ws", "wss"):
                    raise ConfigError(f"{nodeWhere}: proxyProtocol needs a stream dialer (tcp, tls, ws, wss), not {dialerType}")
                proxyHeaders[nodeConfig.name] = version
        if not nodes:
            raise ConfigError(f"{where}: hop {hop.name!r} has no nodes")

        bypass = bypassesFor([hop.bypass, *hop.bypasses], context.config, where)
        return cls(hop.name, Selector.fromConfig(nodes, hop.selector, reactor, where), bypass, proxyHeaders)


def _build(reactor: Any, node: NodeConfig, context: Any, where: str) -> tuple[Any, Any]:
    connectorType = node.connector.type if node.connector is not None and node.connector.type else "http"
    dialerType = node.dialer.type if node.dialer is not None and node.dialer.type else "tcp"
    connectorPlugin = registry.lookup("connector", connectorType)
    dialerPlugin = registry.lookup("dialer", dialerType)
    if connectorPlugin is None:
        raise ConfigError(f"{where}: connector {connectorType!r} is not implemented")
    if dialerPlugin is None:
        raise ConfigError(f"{where}: dialer {dialerType!r} is not implemented")
    return connectorPlugin.load()(reactor, node, context), dialerPlugin.load()(reactor, node, context)


class Chain:
    """
    A chain of hops; L{endpoint} gives the route to a target.
    """

    def __init__(self, name: str, hops: Sequence[Hop], clock: Any = None) -> None:
        self.name = name
        self.hops = list(hops)
        self.clock = clock
        # Every log line and error names a node by its address and hop, and
        # its relay connector's own lines say the same (the proxy
        # connectors name their node themselves).
        self.labels: dict[int, str] = {}
        #: First-hop nodes dialed in one step (L{_MarkingEndpoint}): a
        #: relay connector over a plain TCP dialer, no PROXY header, an
        #: IPv4 literal address; by node id, the address to connect to.
        self.direct: dict[int, tuple[str, int]] = {}
        for number, hop in enumerate(self.hops, 1):
            nodes = getattr(hop.selector, "nodes", [])
            for node in nodes:
                label = f"{node.addr} (hop {number}, {node.name})" if len(nodes) > 1 else f"{node.addr} (hop {number})"
                self.labels[id(node)] = label
                connector = node.value[0] if isinstance(node.value, tuple) else None
                if isinstance(connector, RelayConnector):
                    connector.label = label
                    dialer = node.value[1]
                    if (
                        number == 1 and clock is not None and getattr(dialer, "plainTCP", False)
                        and not hop.proxyHeaders.get(node.name)
                    ):
                        try:
                            version, host, port = parseTarget(node.addr)
                        except DialError:
                            continue
                        if version == 4:
                            self.direct[id(node)] = (host, port)
        #: Whether some hop has a bypass (else every target takes every hop).
        self.bypassing = any(hop.bypass for hop in self.hops)

    def label(self, node: Node) -> str:
        """
        How log lines and errors name C{node}: its address and hop.
        """
        return self.labels.get(id(node), node.addr)

    @classmethod
    def fromConfig(cls, reactor: Any, chain: ChainConfig, context: Any, where: str) -> Chain:
        hops = []
        for i, hop in enumerate(chain.hops):
            if not hop.nodes and hop.name:
                named = context.config.hop(hop.name)
                if named is None:
                    raise ConfigError(f"{where}: chain {chain.name!r}: hop {hop.name!r} is not defined")
                hop = named
            hops.append(Hop.fromConfig(reactor, hop, context, f"chains ({chain.name}).hops[{i}]"))
        return cls(chain.name, hops, reactor)

    def hopsFor(self, address: str) -> int:
        """
        How many hops a connection to C{address} goes through: a hop whose
        bypass matches the target is skipped with all the hops after it
        (spec-relay.md 7.3); 0 means a direct connection.
        """
        if not self.bypassing:
            return len(self.hops)
        try:
            host, port = splitHostPort(address)
        except ValueError:
            return len(self.hops)
        for i, hop in enumerate(self.hops):
            if hop.bypass and hop.bypass.contains(host, port):
                return i
        return len(self.hops)

    def route(self, hashKey: str | None = None, hops: int | None = None) -> list[tuple[Hop, Node]]:
        chosen = self.hops if hops is None or hops == len(self.hops) else self.hops[:hops]
        return [(hop, hop.selector.select(hashKey)) for hop in chosen]  # type: ignore[misc]

    @property
    def sendsProxyHeaders(self) -> bool:
        """
        Whether some node gets a PROXY header (then callers pass the
        client's addresses as C{origin}); worked out once, as the hops are
        fixed (it is asked on every connection).
        """
        sends = self.__dict__.get("_sendsProxyHeaders")
        if sends is None:
            sends = self.__dict__["_sendsProxyHeaders"] = any(hop.proxyHeaders for hop in self.hops)
        return sends

    def _toLastNode(
        self, route: list[tuple[Hop, Node]], timeout: float, progress: Any, origin: Any = None, timedByCaller: bool = False
    ) -> IStreamClientEndpoint:
        """
        An endpoint reaching the last node of C{route}: the first node's
        dialer, then for each further node the previous connector's CONNECT
        to it under that node's dialer.  A node with C{proxyProtocol} gets
        a PROXY header first, naming C{origin} (the client's address and
        the address it connected to; unknown: v1 C{UNKNOWN}, v2 C{LOCAL}).
        A failure to reach a node fails with L{HopFailed} naming it.
        """
        through: IStreamClientEndpoint | None = None
        for i, (hop, node) in enumerate(route):
            if i:
                previousConnector = route[i - 1][1].value[0]
                through = previousConnector.endpoint(through, "tcp", node.addr)
            version = hop.proxyHeaders.get(node.name)
            if version:
                source, destination = origin if origin is not None else (None, None)
                if through is None:
                    through = directEndpoint(self.clock, node.addr, timeout)
                through = HeaderFirstEndpoint(through, encodeHeader(version, source, destination))
            dialer = node.value[1]
            # Under a router (timedByCaller) only its dial timeout runs.
            dialTimeout = None if timedByCaller and through is None and getattr(dialer, "timeoutOptional", False) else timeout
            through = _HopEndpoint(dialer.endpoint(node.addr, through, dialTimeout), i, self.label(node), progress)
        assert through is not None
        return through

    def bindEndpoint(self, network: str, address: str, timeout: float, origin: Any = None) -> IStreamClientEndpoint:
        """
        An endpoint whose connections are relay BINDs of C{address} on the
        last hop's server (reached through the earlier hops).
        """
        route = self.route()
        connector = route[-1][1].value[0]
        if not hasattr(connector, "bindEndpoint"):
            raise ConfigError(f"connector of {route[-1][1].name} cannot BIND")
        dial = _MarkingEndpoint(self, route, network, f"BIND {address}", timeout, origin)
        dial.wrapped = connector.bindEndpoint(self._toLastNode(route, timeout, dial, origin), network, address)
        return dial

    #: L{endpoint} takes C{timedByCaller} (the router's dial timeout bounds
    #: every attempt, so Twisted's connector needs no timer of its own).
    takesTimedByCaller = True

    def endpoint(
        self,
        network: str,
        address: str,
        timeout: float,
        hashKey: str | None = None,
        origin: Any = None,
        timedByCaller: bool = False,
    ) -> IStreamClientEndpoint:
        """
        An endpoint reaching C{address} over C{network} through one node of
        every hop (fewer when a hop's bypass matches the target).  Dial
        failures mark the node at fault as failed.

        @param timedByCaller: the caller bounds each connection attempt
            with C{timeout} itself (L{gostrelay.router.Router}), so the
            TCP connection to the first node gets no timer of its own.
        """
        route = self.route(hashKey, self.hopsFor(address))
        if not route:
            return directEndpoint(self.clock, address, None if timedByCaller else timeout)
        dial = _MarkingEndpoint(self, route, network, address, timeout, origin, timedByCaller)
        node = route[0][1]
        connector = route[-1][1].value[0]
        first = self.direct.get(id(node)) if len(route) == 1 else None
        if first is not None:
            # One step: a TCP connection to the node, whose protocol is the
            # relay client (L{_MarkingEndpoint.buildProtocol}).
            dial.relay = connector.streamEndpoint(network, address)
            dial.first = first
        else:
            dial.wrapped = connector.endpoint(self._toLastNode(route, timeout, dial, origin, timedByCaller), network, address)
        return dial


def describeDialFailure(f: Failure) -> str:
    """
    How a dial failed, in a few words: C{connection refused}, C{timed out},
    C{name not resolved}, C{TLS: ...}.
    """
    if isinstance(f.value, error.ConnectError) and not isinstance(f.value, error.ConnectingCancelledError):
        return describeConnectError(f.value)
    if isinstance(f.value, DialError):
        return str(f.value)
    return describeFailure(f)


@implementer(IStreamClientEndpoint)
class _HopEndpoint:
    """
    One node's dialer endpoint: a failure that is not already a relay's
    answer or a named hop failure becomes L{HopFailed} naming this node.
    """

    def __init__(self, wrapped: IStreamClientEndpoint, index: int, label: str, progress: Any) -> None:
        self.wrapped = wrapped
        self.index = index
        self.label = label
        self.progress = progress

    def connect(self, factory: IProtocolFactory) -> defer.Deferred[Any]:
        def ok(protocol: Any) -> Any:
            self.progress.reached = max(self.progress.reached, self.index + 1)
            return protocol

        def failed(f: Failure) -> Failure:
            if f.check(defer.CancelledError, error.ConnectingCancelledError, HopFailed, RelayRefused, ProxyHopRefused):
                return f  # a proxy hop's refusal (http, socks) names its node itself
            return Failure(HopFailed(self.label, describeDialFailure(f), culprit=self.index))

        return self.wrapped.connect(factory).addCallbacks(ok, failed)


class _RouteText:
    """
    A route's description (C{"a:1 (hop 1) -> b:2 (hop 2)"}) for a debug
    event, formatted only if an observer formats the event (debug is
    usually off; the dial logs one per connection).
    """

    __slots__ = ("dial",)

    def __init__(self, dial: _MarkingEndpoint) -> None:
        self.dial = dial

    def __format__(self, spec: str) -> str:
        return format(self.dial.describeRoute(), spec)

    def __str__(self) -> str:
        return self.dial.describeRoute()

    __repr__ = __str__


@implementer(IStreamClientEndpoint)
class _MarkingEndpoint(ClientFactory):
    """
    One dial through a chain: reports the outcome of a connection attempt
    to the selectors of the nodes it went through (spec-relay.md 8: fail
    counters), and at debug level (C{-D}) logs the route chosen and how
    long it took.

    A route of one relay node over plain TCP (the common C{-F relay://})
    is dialed in one step: this object is the factory of the TCP
    connection to the node, whose protocol is the relay client itself
    (L{RelayClientProtocol}, with the application over it); the outcome
    is one L{Deferred} (the relay client's C{ready}).  Any other route
    goes through nested endpoints (L{wrapped}: the node dialers under
    L{_HopEndpoint}s, each connector's endpoint over the previous node).

    @ivar reached: how far the attempt got (the number of nodes whose
        dialer connected), so that a timeout names the node it was
        waiting for.
    """

    noisy = False
    #: The route's nested endpoints (not set for a one-step dial until read).
    _wrapped: IStreamClientEndpoint | None = None
    #: One-step dials: the relay client's parameters, and the node's address.
    relay: RelayClientEndpoint | None = None
    first: tuple[str, int] | None = None

    def __init__(
        self,
        owner: Chain,
        route: list[tuple[Hop, Node]],
        network: str = "tcp",
        target: str = "",
        timeout: float = 0.0,
        origin: Any = None,
        timedByCaller: bool = False,
    ) -> None:
        self.owner = owner
        self.route = route
        self.network = network
        self.target = target
        self.timeout = timeout
        self.origin = origin
        self.timedByCaller = timedByCaller
        self.chain = owner.name
        self.clock = owner.clock
        self.reached = 0
        self.started = 0.0
        # One-step dial, per attempt: the application's factory, the
        # outcome, Twisted's connector, the relay client once built (the
        # carrier's protocol).
        self.appFactory: IProtocolFactory | None = None
        self.ready: defer.Deferred[Any] | None = None
        self.connector: Any = None
        self.client: RelayClientProtocol | None = None

    @property
    def wrapped(self) -> IStreamClientEndpoint:
        if self._wrapped is None:
            route = self.route
            self._wrapped = route[-1][1].value[0].endpoint(
                self.owner._toLastNode(route, self.timeout, self, self.origin, self.timedByCaller), self.network, self.target,
            )
        return self._wrapped

    @wrapped.setter
    def wrapped(self, endpoint: IStreamClientEndpoint) -> None:
        self._wrapped = endpoint

    def _label(self, node: Node) -> str:
        return self.owner.label(node)

    def describeRoute(self) -> str:
        return " -> ".join(self._label(node) for _hop, node in self.route)

    def stalled(self) -> str | None:
        """
        The node an attempt that timed out was waiting for: the one being
        dialed, or the last one when every dialer connected (its answer is
        late).
        """
        if not self.route:
            return None
        index = min(self.reached, len(self.route) - 1)
        return self._label(self.route[index][1])

    def connect(self, factory: IProtocolFactory) -> defer.Deferred[Any]:
        clock = self.clock
        if self.relay is None:
            self.started = clock.seconds() if clock is not None else 0.0
            return self.wrapped.connect(factory).addCallbacks(self._succeeded, self._failed)
        # Each connect is one attempt: a second one gets its own object.
        dial = self if self.appFactory is None else self._again()
        dial.appFactory = factory
        dial.started = clock.seconds() if clock is not None else 0.0
        ready: defer.Deferred[Any] = defer.Deferred(dial._cancel)
        dial.ready = ready
        host, port = dial.first  # type: ignore[misc]
        dial.connector = clock.connectTCP(host, port, dial, timeout=None if dial.timedByCaller else dial.timeout)
        return ready.addCallbacks(dial._succeeded, dial._failed)

    def _again(self) -> _MarkingEndpoint:
        dial = _MarkingEndpoint(
            self.owner, self.route, self.network, self.target, self.timeout, self.origin, self.timedByCaller,
        )
        dial.relay, dial.first = self.relay, self.first
        return dial

    # -- the one-step dial: the factory of the TCP connection to the node

    def buildProtocol(self, addr: Any) -> RelayClientProtocol:
        self.reached = 1
        assert self.relay is not None and self.appFactory is not None and self.ready is not None
        self.client = client = RelayClientProtocol(self.relay, self.appFactory, self.ready)
        return client

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        ready = self.ready
        if ready is None or ready.called:
            return  # cancelled (the canceller stopped the connector)
        ready.errback(Failure(HopFailed(self._label(self.route[0][1]), describeDialFailure(reason), culprit=0)))

    def _cancel(self, ready: defer.Deferred[Any]) -> None:
        client = self.client
        if client is None:
            # Still connecting: stop; the Deferred fails with CancelledError.
            self.ready = None
            self.connector.stopConnecting()
        elif client.transport is not None:
            client.transport.abortConnection()

    # -- the outcome

    def _succeeded(self, protocol: Any) -> Any:
        route = self.route
        for hop, node in route:
            hop.selector.markSucceeded(node)
        clock = self.clock
        if metrics.current is not None and clock is not None and route:
            metrics.chainConnected(self.chain, route[-1][1].name, clock.seconds() - self.started)
        _log.debug(
            "chain {chain}: {target} via {route}: connected in {t:.3f}s",
            chain=self.chain, target=self.target, route=_RouteText(self),
            t=clock.seconds() - self.started if clock is not None else 0.0,
        )
        return protocol

    def _failed(self, f: Failure) -> Failure:
        if f.check(defer.CancelledError):
            return f
        culprit = self._culprit(f)
        if culprit is not None:
            hop, node = culprit
            hop.selector.markFailed(node)
            metrics.chainFailed(self.chain, node.name)
        _log.debug(
            "chain {chain}: {target} via {route}: failed after {t:.3f}s: {why}",
            chain=self.chain, target=self.target, route=_RouteText(self),
            t=self.clock.seconds() - self.started if self.clock is not None else 0.0,
            why=f.getErrorMessage(),
        )
        return f

    def _culprit(self, f: Failure) -> tuple[Hop, Node] | None:
        """
        The node a failure is the fault of: a relay refusal to reach node
        i+1 is node i+1's; a refusal to reach the target is nobody's (the
        chain worked); a named hop failure is that node's; anything else
        happened reaching the first node.
        """
        if not self.route:
            return None
        e = f.value
        if isinstance(e, ProxyHopRefused):
            # A proxy hop's refusal (http, socks): the refusing node's.
            for hop, node in self.route:
                if node.addr == e.proxy:
                    return hop, node
        if isinstance(e, RelayRefused):
            for hop, node in self.route[1:]:
                if node.addr == e.target:
                    return hop, node
            return None
        if isinstance(e, HopFailed):
            if e.culprit is not None and 0 <= e.culprit < len(self.route):
                return self.route[e.culprit]
            for hop, node in self.route:
                if self._label(node) == e.server:
                    return hop, node
        return self.route[0]
