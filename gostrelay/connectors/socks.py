"""
The C{socks5} (alias C{socks}) and C{socks4} (alias C{socks4a}) connectors:
a chain hop through a SOCKS proxy (GOST's connector/socks/v5 and v4), over
any dialer.

SOCKS5 options (GOST's names): C{timeout}; C{notls} is accepted (we never
offer GOST's TLS methods, so it changes nothing); C{udpBufferSize} is
accepted.  Credentials (URL userinfo or C{auth}) go by RFC 1929.  UDP goes
by GOST's UDP tunnel command (0xF3), which GOST's SOCKS5 server serves
with C{udp=true}; with C{relay=udp}, by a standard UDP ASSOCIATE (any
SOCKS5 server), which a first hop only can do (our UDP socket must reach
the proxy's relay address directly).

SOCKS4 options: C{timeout}, C{disable4a} (resolve names here and send
plain SOCKS4).  The URL's user name is the SOCKS4 user id.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet import defer
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from zope.interface import implementer

from gostrelay.config.model import ConfigError, NodeConfig
from gostrelay.connectors.carrier import nodeCredentials
from gostrelay.connectors.handshake import HandshakeEndpoint, hopIndex, nodeLabel
from gostrelay.errors import UnsupportedNetwork
from gostrelay.interfaces import IConnector
from gostrelay.wire.address import AddressError, splitHostPort
from gostrelay.wire.socks import CMD_CONNECT, CMD_UDP_ASSOCIATE
from gostrelay.wire.socksclient import CMD_UDP_TUN, Socks4ClientHandshake, Socks5ClientHandshake


def _target(kind: str, address: str) -> tuple[str, int]:
    try:
        return splitHostPort(address)
    except AddressError as e:
        raise UnsupportedNetwork(f"{kind} connector: bad target {address!r}: {e}") from None


@implementer(IConnector)
class SOCKS5Connector:
    def __init__(self, reactor: Any, node: NodeConfig, context: Any) -> None:
        assert node.connector is not None
        where = node.source or node.name
        md = node.connector.md
        relay = md.getString("relay")
        if relay not in ("", "udp"):
            raise ConfigError(f"{where}: socks5 connector option relay={relay}: only relay=udp (UDP ASSOCIATE) exists")
        self.associate = relay == "udp"
        if self.associate and hopIndex(node, context) > 0:
            raise ConfigError(
                f"{where}: socks5 connector option relay=udp (UDP ASSOCIATE) works on a first hop only"
                " (the UDP socket must reach the proxy directly); without it UDP goes through GOST's UDP tunnel"
            )
        self.reactor = reactor
        self.proxy = node.addr
        self.label = nodeLabel(node, context, "socks5")
        self.timeout = md.getDuration("timeout")
        self.username, self.password = nodeCredentials(node, where)
        try:
            Socks5ClientHandshake("check", 1, self.username, self.password)
        except AddressError as e:
            raise ConfigError(f"{where}: {e}") from None

    def endpoint(self, through: IStreamClientEndpoint, network: str, address: str) -> HandshakeEndpoint:
        udp = network in ("udp", "udp4", "udp6")
        if not udp and network not in ("tcp", "tcp4", "tcp6"):
            raise UnsupportedNetwork(f"socks5 connector: network {network!r} is not supported")
        host, port = _target("socks5", address)
        command = (CMD_UDP_ASSOCIATE if self.associate else CMD_UDP_TUN) if udp else CMD_CONNECT
        try:
            Socks5ClientHandshake(host, port, self.username, self.password, command)
        except AddressError as e:
            raise UnsupportedNetwork(f"socks5 connector: bad target {address!r}: {e}") from None
        return HandshakeEndpoint(
            self.reactor, through,
            lambda: Socks5ClientHandshake(host, port, self.username, self.password, command),
            self.proxy, self.label, address, self.timeout, udp=udp, associate=self.associate,
        )


@implementer(IStreamClientEndpoint)
class _Resolving4Endpoint:
    """
    SOCKS4 without 4a: the target's name is resolved here (IPv4) before
    the request is built.
    """

    def __init__(self, connector: SOCKS4Connector, through: IStreamClientEndpoint, host: str, port: int, address: str) -> None:
        self.connector = connector
        self.through = through
        self.host = host
        self.port = port
        self.address = address

    @defer.inlineCallbacks
    def connect(self, protocolFactory: IProtocolFactory):  # type: ignore[no-untyped-def]
        try:
            ip = yield self.connector.reactor.resolve(self.host)
        except Exception:  # noqa: BLE001 - any resolver failure
            raise DNSLookupError(f"socks4: cannot resolve {self.host}") from None
        result = yield self.connector.plainEndpoint(self.through, ip, self.port, self.address).connect(protocolFactory)
        return result


@implementer(IConnector)
class SOCKS4Connector:
    def __init__(self, reactor: Any, node: NodeConfig, context: Any) -> None:
        assert node.connector is not None
        where = node.source or node.name
        md = node.connector.md
        self.reactor = reactor
        self.proxy = node.addr
        self.label = nodeLabel(node, context, "socks4")
        self.timeout = md.getDuration("timeout")
        self.disable4a = md.getBool("disable4a")
        user, _password = nodeCredentials(node, where)
        self.userid = user or ""
        try:
            Socks4ClientHandshake("127.0.0.1", 1, self.userid)
        except AddressError as e:
            raise ConfigError(f"{where}: {e}") from None

    def plainEndpoint(self, through: IStreamClientEndpoint, host: str, port: int, address: str) -> HandshakeEndpoint:
        try:
            Socks4ClientHandshake(host, port, self.userid, self.disable4a)
        except AddressError as e:
            raise UnsupportedNetwork(f"socks4 connector: bad target {address!r}: {e}") from None
        return HandshakeEndpoint(
            self.reactor, through,
            lambda: Socks4ClientHandshake(host, port, self.userid, self.disable4a),
            self.proxy, self.label, address, self.timeout,
        )

    def endpoint(self, through: IStreamClientEndpoint, network: str, address: str) -> IStreamClientEndpoint:
        if network not in ("tcp", "tcp4", "tcp6"):
            raise UnsupportedNetwork(f"socks4 connector: network {network!r} is not supported")
        host, port = _target("socks4", address)
        if self.disable4a and not _isIP(host):
            return _Resolving4Endpoint(self, through, host, port, address)
        return self.plainEndpoint(through, host, port, address)


def _isIP(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
