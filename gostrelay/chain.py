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
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gostrelay import metrics, registry
from gostrelay.bypass import bypassesFor
from gostrelay.config.model import ChainConfig, ConfigError, HopConfig, NodeConfig
from gostrelay.connectors.relay import RelayConnector
from gostrelay.errors import (
    DialError,
    HopFailed,
    ProxyHopRefused,
    RelayRefused,
    describeConnectError,
    describeFailure,
)
from gostrelay.layering import HeaderFirstEndpoint
from gostrelay.router import directEndpoint
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
        for number, hop in enumerate(self.hops, 1):
            nodes = getattr(hop.selector, "nodes", [])
            for node in nodes:
                label = f"{node.addr} (hop {number}, {node.name})" if len(nodes) > 1 else f"{node.addr} (hop {number})"
                self.labels[id(node)] = label
                connector = node.value[0] if isinstance(node.value, tuple) else None
                if isinstance(connector, RelayConnector):
                    connector.label = label

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
        try:
            host, port = splitHostPort(address)
        except ValueError:
            return len(self.hops)
        for i, hop in enumerate(self.hops):
            if hop.bypass and hop.bypass.contains(host, port):
                return i
        return len(self.hops)

    def route(self, hashKey: str | None = None, hops: int | None = None) -> list[tuple[Hop, Node]]:
        chosen = self.hops if hops is None else self.hops[:hops]
        return [(hop, hop.selector.select(hashKey)) for hop in chosen]  # type: ignore[misc]

    @property
    def sendsProxyHeaders(self) -> bool:
        """
        Whether some node gets a PROXY header (then callers pass the
        client's addresses as C{origin}).
        """
        return any(hop.proxyHeaders for hop in self.hops)

    def _toLastNode(
        self, route: list[tuple[Hop, Node]], timeout: float, progress: _Progress, origin: Any = None
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
            through = _HopEndpoint(node.value[1].endpoint(node.addr, through, timeout), i, self.label(node), progress)
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
        progress = _Progress()
        through = connector.bindEndpoint(self._toLastNode(route, timeout, progress, origin), network, address)
        return _MarkingEndpoint(through, route, self.name, self.clock, self, progress, f"BIND {address}")

    def endpoint(
        self, network: str, address: str, timeout: float, hashKey: str | None = None, origin: Any = None
    ) -> IStreamClientEndpoint:
        """
        An endpoint reaching C{address} over C{network} through one node of
        every hop (fewer when a hop's bypass matches the target).  Dial
        failures mark the node at fault as failed.
        """
        route = self.route(hashKey, self.hopsFor(address))
        if not route:
            return directEndpoint(self.clock, address, timeout)
        connector = route[-1][1].value[0]
        progress = _Progress()
        through = connector.endpoint(self._toLastNode(route, timeout, progress, origin), network, address)
        return _MarkingEndpoint(through, route, self.name, self.clock, self, progress, address)


class _Progress:
    """
    How far one connection attempt got: the number of nodes whose dialer
    connected, so that a timeout can name the node it was waiting for.
    """

    reached = 0


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

    def __init__(self, wrapped: IStreamClientEndpoint, index: int, label: str, progress: _Progress) -> None:
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


@implementer(IStreamClientEndpoint)
class _MarkingEndpoint:
    """
    Reports the outcome of a connection attempt to the selectors of the
    nodes it went through (spec-relay.md 8: fail counters), and at debug
    level (C{-D}) logs the route chosen and how long it took.
    """

    def __init__(
        self,
        wrapped: IStreamClientEndpoint,
        route: list[tuple[Hop, Node]],
        chain: str = "",
        clock: Any = None,
        owner: Chain | None = None,
        progress: _Progress | None = None,
        target: str = "",
    ) -> None:
        self.wrapped = wrapped
        self.route = route
        self.chain = chain
        self.clock = clock
        self.owner = owner
        self.progress = progress or _Progress()
        self.target = target

    def _label(self, node: Node) -> str:
        return self.owner.label(node) if self.owner is not None else node.addr

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
        index = min(self.progress.reached, len(self.route) - 1)
        return self._label(self.route[index][1])

    def connect(self, factory: IProtocolFactory) -> defer.Deferred[Any]:
        started = self.clock.seconds() if self.clock is not None else 0.0
        d = self.wrapped.connect(factory)

        def elapsed() -> float:
            return self.clock.seconds() - started if self.clock is not None else 0.0

        def ok(protocol: Any) -> Any:
            for hop, node in self.route:
                hop.selector.markSucceeded(node)
            if self.clock is not None and self.route:
                metrics.chainConnected(self.chain, self.route[-1][1].name, elapsed())
            _log.debug(
                "chain {chain}: {target} via {route}: connected in {t:.3f}s",
                chain=self.chain, target=self.target, route=self.describeRoute(), t=elapsed(),
            )
            return protocol

        def failed(f: Failure) -> Failure:
            if f.check(defer.CancelledError):
                return f
            culprit = self._culprit(f)
            if culprit is not None:
                hop, node = culprit
                hop.selector.markFailed(node)
                metrics.chainFailed(self.chain, node.name)
            _log.debug(
                "chain {chain}: {target} via {route}: failed after {t:.3f}s: {why}",
                chain=self.chain, target=self.target, route=self.describeRoute(), t=elapsed(),
                why=f.getErrorMessage(),
            )
            return f

        return d.addCallbacks(ok, failed)

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
