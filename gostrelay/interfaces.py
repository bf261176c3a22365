"""
The interfaces of GOST's service model, as Twisted sees it.

A I{service} is a listener feeding a handler; a I{chain} is hops of nodes,
each node a dialer under a connector.  Each of the four roles is an
interface here, and each concrete type is found by name through
L{twisted.plugin} (L{ITypePlugin}), so a third party adds a type by shipping
a plugin file, without touching the assembly.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IListener(Interface):
    """
    Accepts peers for one service.

    A stream listener (tcp, tls, ws, ...) delivers byte streams to a
    protocol factory; it is usually a thin shell over an
    L{twisted.internet.interfaces.IStreamServerEndpoint}.
    """

    def listen(factory):  # type: ignore[no-untyped-def]
        """
        Start accepting peers and hand each one to C{factory}.

        @param factory: an L{IHandler} (an L{IProtocolFactory}).
        @return: a L{Deferred} firing with an object that has
            C{stopListening()} and C{getHost()} (an C{IListeningPort}).
        """


class IHandler(Interface):
    """
    Serves the peers of one service: a relay server, a port forwarder, a
    local proxy entry.  Stream handlers are protocol factories: the listener
    calls C{buildProtocol(addr)} for every accepted peer.
    """

    def buildProtocol(addr):  # type: ignore[no-untyped-def]
        """
        A protocol for the peer at C{addr}, or C{None} to refuse it.
        """


class IDialer(Interface):
    """
    Reaches a chain node's address: the bottom of a node (tcp, tls, ws, kcp).
    """

    def endpoint(address, through=None, timeout=15.0):  # type: ignore[no-untyped-def]
        """
        An L{IStreamClientEndpoint} whose connections reach the node.

        @param address: the node's C{"host:port"}.
        @param through: when the node is not the first hop, an endpoint whose
            connections are already tunnelled to C{address} by the previous
            hop's connector; a dialer then only adds its own layer (a TLS
            handshake, a WebSocket upgrade) on top of it.
        @param timeout: the dial timeout, in seconds, for the first hop's
            connection.
        """


class IConnector(Interface):
    """
    Speaks a proxy protocol to a node (relay, http, socks) to reach a target
    behind it: the top of a node.
    """

    def endpoint(through, network, address):  # type: ignore[no-untyped-def]
        """
        Wrap C{through} (an endpoint reaching this node) into an endpoint
        whose connections reach C{address} over C{network} (C{"tcp"} or
        C{"udp"}) behind the node.
        """


class IDatagramReceiver(Interface):
    """
    The receiving side of an L{IDatagramChannel}.
    """

    def datagramReceived(data, addr):  # type: ignore[no-untyped-def]
        """
        One datagram C{data} arrived from C{addr} (a C{"host:port"} string).
        """

    def channelClosed(reason):  # type: ignore[no-untyped-def]
        """
        The channel is gone; no more datagrams will arrive.
        """


class IDatagramChannel(Interface):
    """
    Datagrams with boundaries, over a real UDP socket or over a framed relay
    stream (length-prefixed for UDP CONNECT, the tunnel header for UDP BIND).
    Twisted has no UDP endpoint; this is the one abstraction all UDP paths
    share.
    """

    def sendDatagram(data, addr):  # type: ignore[no-untyped-def]
        """
        Send C{data} to C{addr} (ignored by channels with a fixed peer).
        """

    def close():  # type: ignore[no-untyped-def]
        """
        Close the channel; the receiver's C{channelClosed} is called.
        """


class ITypePlugin(Interface):
    """
    A named implementation of one of the four roles, found through
    L{twisted.plugin.getPlugins}.  Plugin files only bind instances of this
    (L{gostrelay.registry.TypePlugin}) so that discovering plugins imports
    nothing heavy.
    """

    kind = Attribute('"handler", "listener", "connector" or "dialer"')
    name = Attribute("The GOST type name, e.g. \"relay\".")
    aliases = Attribute("Other names of the same type.")
    options = Attribute(
        "Optional: a mapping of the metadata keys the type reads to the kind of "
        "value (string, bool, int, float, duration, any); None if undeclared. "
        "Unknown command-line options are warned about, bad values refused."
    )

    def load():  # type: ignore[no-untyped-def]
        """
        Import and return the type's factory.

        Factories are called as C{factory(reactor, config, context)} where
        C{config} is the section of the configuration model (a
        L{ServiceConfig} for handlers and listeners, a L{NodeConfig} for
        connectors and dialers) and C{context} the
        L{gostrelay.build.BuildContext}; they return an L{IHandler},
        L{IListener}, L{IConnector} or L{IDialer}.
        """
