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

from twisted.internet import defer
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer

from gostrelay import metrics, registry
from gostrelay.config.model import ChainConfig, ConfigError, HopConfig, NodeConfig
from gostrelay.selector import Node, Selector


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
        from gostrelay.bypass import bypassesFor

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
        from gostrelay.wire.address import splitHostPort

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

    def _toLastNode(self, route: list[tuple[Hop, Node]], timeout: float, origin: Any = None) -> IStreamClientEndpoint:
        """
        An endpoint reaching the last node of C{route}: the first node's
        dialer, then for each further node the previous connector's CONNECT
        to it under that node's dialer.  A node with C{proxyProtocol} gets
        a PROXY header first, naming C{origin} (the client's address and
        the address it connected to; unknown: v1 C{UNKNOWN}, v2 C{LOCAL}).
        """
        through: IStreamClientEndpoint | None = None
        for i, (hop, node) in enumerate(route):
            if i:
                previousConnector = route[i - 1][1].value[0]
                through = previousConnector.endpoint(through, "tcp", node.addr)
            version = hop.proxyHeaders.get(node.name)
            if version:
                from gostrelay.layering import HeaderFirstEndpoint
                from gostrelay.router import directEndpoint
                from gostrelay.wire.proxyheader import encodeHeader

                source, destination = origin if origin is not None else (None, None)
                if through is None:
                    through = directEndpoint(self.clock, node.addr, timeout)
                through = HeaderFirstEndpoint(through, encodeHeader(version, source, destination))
            through = node.value[1].endpoint(node.addr, through, timeout)
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
        through = connector.bindEndpoint(self._toLastNode(route, timeout, origin), network, address)
        return _MarkingEndpoint(through, route, self.name, self.clock)

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
            from gostrelay.router import directEndpoint

            return directEndpoint(self.clock, address, timeout)
        connector = route[-1][1].value[0]
        through = connector.endpoint(self._toLastNode(route, timeout, origin), network, address)
        return _MarkingEndpoint(through, route, self.name, self.clock)


@implementer(IStreamClientEndpoint)
class _MarkingEndpoint:
    """
    Reports the outcome of a connection attempt to the selectors of the
    nodes it went through (spec-relay.md 8: fail counters).
    """

    def __init__(
        self, wrapped: IStreamClientEndpoint, route: list[tuple[Hop, Node]], chain: str = "", clock: Any = None
    ) -> None:
        self.wrapped = wrapped
        self.route = route
        self.chain = chain
        self.clock = clock

    def connect(self, factory: IProtocolFactory) -> defer.Deferred[Any]:
        started = self.clock.seconds() if self.clock is not None else 0.0
        d = self.wrapped.connect(factory)

        def ok(protocol: Any) -> Any:
            for hop, node in self.route:
                hop.selector.markSucceeded(node)
            if self.clock is not None and self.route:
                metrics.chainConnected(self.chain, self.route[-1][1].name, self.clock.seconds() - started)
            return protocol

        def failed(f: Failure) -> Failure:
            if f.check(defer.CancelledError):
                return f
            culprit = self._culprit(f)
            if culprit is not None:
                hop, node = culprit
                hop.selector.markFailed(node)
                metrics.chainFailed(self.chain, node.name)
            return f

        return d.addCallbacks(ok, failed)

    def _culprit(self, f: Failure) -> tuple[Hop, Node] | None:
        """
        The node a failure is the fault of: a relay refusal to reach node
        i+1 is node i+1's; a refusal to reach the target is nobody's (the
        chain worked); anything else happened reaching the first node.
        """
        from gostrelay.connectors.relay import RelayRefused

        if not self.route:
            return None
        proxy = getattr(f.value, "proxy", None)
        if isinstance(proxy, str):
            # A proxy hop's refusal (http, socks): the refusing node's.
            for hop, node in self.route:
                if node.addr == proxy:
                    return hop, node
        if f.check(RelayRefused):
            target = getattr(f.value, "target", "")
            for hop, node in self.route[1:]:
                if node.addr == target:
                    return hop, node
            return None
        return self.route[0]
