"""
Dialing through relay servers from any Twisted program.

Two ways in:

  - the C{relay:} endpoint string, one hop per level of nesting::

        clientFromString(reactor, r"relay:tcp\\:proxy.example\\:8420:host=example.com:port=80")

    The first positional argument is the endpoint description of the relay
    server (escaped, since it is itself an endpoint string); keywords
    C{host} and C{port} name the target, C{username}, C{password} and
    C{nodelay} are the relay connector's.  Since the inner description is
    any endpoint string, hops nest, at the price of doubling escapes at each
    level;

  - L{chainEndpoint}, which takes GOST C{-F} URLs, one per hop::

        chainEndpoint(reactor, ["relay://a:8420", "relay://u:p@b:8420"], "example.com", 80)

Carriers compose the same way: C{gosttls:} (TLS with GOST's verification
rules), C{ws:} and C{wss:} (client and server), e.g. relay over wss; each
level of nesting escapes the inner description once more (C{\\} and C{:},
C{=} get a backslash)::

    clientFromString(reactor,
        r"relay:wss\\:tcp\\\\\\:relay.example\\\\\\:443\\:path\\=/ws:host=example.com:port=80")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IStreamClientEndpoint

from gostrelay.config.metadata import Metadata
from gostrelay.config.model import ChainConfig, Config, ConfigError
from gostrelay.config.url import parseNodeURL
from gostrelay.connectors.relay import (
    DEFAULT_QUIET_DELAY,
    DEFAULT_RESPONSE_WAIT,
    RelayClientEndpoint,
)
from gostrelay.router import DEFAULT_DIAL_TIMEOUT
from gostrelay.wire.address import joinHostPort
from gostrelay.wire.relay import connectRequest


def relayEndpoint(
    reactor: Any,
    server: IStreamClientEndpoint,
    host: str,
    port: int,
    username: str | None = None,
    password: str = "",
    nodelay: bool = False,
    quietDelay: float = DEFAULT_QUIET_DELAY,
    responseWait: float = DEFAULT_RESPONSE_WAIT,
) -> RelayClientEndpoint:
    """
    An endpoint reaching C{host:port} through the relay server that
    C{server} reaches.
    """
    target = joinHostPort(host, int(port))
    request = connectRequest(target, "tcp", username, password).encode()
    return RelayClientEndpoint(
        reactor, server, request, target,
        nodelay=nodelay, quietDelay=quietDelay, responseWait=responseWait, label=repr(server),
    )


def parseRelayClient(reactor: Any, server: str, **kwargs: str) -> RelayClientEndpoint:
    """
    The C{relay:} endpoint string parser (see the module docstring).
    """
    if "host" not in kwargs or "port" not in kwargs:
        raise ValueError("relay: endpoint needs host= and port=")
    md = Metadata(kwargs)
    return relayEndpoint(
        reactor,
        clientFromString(reactor, server),
        kwargs["host"],
        int(kwargs["port"]),
        kwargs.get("username"),
        kwargs.get("password", ""),
        md.getBool("nodelay"),
        md.getDuration("quietDelay", default=DEFAULT_QUIET_DELAY),
        md.getDuration("responseWait", default=DEFAULT_RESPONSE_WAIT),
    )


def chainEndpoint(
    reactor: Any,
    nodes: Sequence[str],
    host: str,
    port: int,
    timeout: float = DEFAULT_DIAL_TIMEOUT,
) -> IStreamClientEndpoint:
    """
    An endpoint reaching C{host:port} through a chain given as GOST C{-F}
    URLs, one hop each, in order (C{"relay+tls://a:8443"}, ...).

    @raise ConfigError: when a URL names a type that is not implemented.
    """
    from gostrelay.build import BuildContext
    from gostrelay.chain import Chain

    if not nodes:
        raise ConfigError("chainEndpoint needs at least one node URL")
    config = Config()
    chain = ChainConfig(name="chain-0")
    for i, url in enumerate(nodes):
        chain.hops.append(parseNodeURL(config, url, i))
    config.chains.append(chain)
    built = Chain.fromConfig(reactor, chain, BuildContext(reactor, config), "chainEndpoint")
    return built.endpoint("tcp", joinHostPort(host, int(port)), timeout)


def _innerHost(description: str) -> str:
    """
    The C{host:port} an inner client description dials, when it says
    (C{tcp:HOST:PORT} or C{tcp:host=H:port=P}); else C{""}.
    """
    from twisted.internet.endpoints import _parse

    try:
        args, kwargs = _parse(description)
    except Exception:  # noqa: BLE001
        return ""
    if not args or args[0] not in ("tcp", "tls", "gosttls"):
        return ""
    host = kwargs.get("host", args[1] if len(args) > 1 else "")
    port = kwargs.get("port", args[2] if len(args) > 2 else "")
    return joinHostPort(host, int(port)) if host and str(port).isdigit() else ""


def _tlsConfig(kwargs: dict[str, str]) -> Any:
    from gostrelay.config.model import TLSConfig

    md = Metadata(kwargs)
    return TLSConfig(
        certFile=md.getString("certFile"),
        keyFile=md.getString("keyFile"),
        caFile=md.getString("caFile"),
        secure=md.getBool("secure"),
        serverName=md.getString("serverName"),
    )


def parseGostTLSClient(reactor: Any, inner: str, **kwargs: str) -> IStreamClientEndpoint:
    """
    C{gosttls:}: TLS with GOST's client rules (no verification unless
    C{secure=true} or C{caFile}; SNI from C{serverName} or the inner host).
    Twisted's own C{tls:} always verifies, hence a prefix of our own.
    """
    from twisted.internet.endpoints import wrapClientTLS

    from gostrelay.transports.tls import _nodeHost, clientCreator

    creator = clientCreator(_tlsConfig(kwargs), _nodeHost(_innerHost(inner)), "gosttls endpoint")
    return wrapClientTLS(creator, clientFromString(reactor, inner))


def parseWebSocketClient(reactor: Any, inner: str, overTLS: bool = False, **kwargs: str) -> IStreamClientEndpoint:
    """
    C{ws:} and C{wss:} client endpoints: C{path} (C{/ws}), C{host} (the Host
    header; default the inner endpoint's host:port), C{keepalive}/C{ttl};
    wss takes C{gosttls:}'s options too.
    """
    from gostrelay.transports.ws import DEFAULT_PATH, DEFAULT_PING_INTERVAL, WebSocketClientEndpoint

    md = Metadata(kwargs)
    through = parseGostTLSClient(reactor, inner, **kwargs) if overTLS else clientFromString(reactor, inner)
    ping = md.getDuration("ttl") or DEFAULT_PING_INTERVAL if md.getBool("keepalive") else 0.0
    return WebSocketClientEndpoint(
        reactor, through, md.getString("host") or _innerHost(inner) or "localhost",
        md.getString("path") or DEFAULT_PATH, None, ping, overTLS,
    )


def parseWebSocketServer(reactor: Any, inner: str, overTLS: bool = False, **kwargs: str) -> Any:
    """
    C{ws:} and C{wss:} server endpoints over any server description:
    C{path} (C{/ws}); wss: C{certFile}, C{keyFile}, C{caFile} (else GOST's
    default certificate).
    """
    from twisted.internet.endpoints import serverFromString

    from gostrelay.transports.tls import serverContextFactory
    from gostrelay.transports.ws import DEFAULT_PATH, WebSocketServerEndpoint, _TLSServerEndpoint

    endpoint: Any = serverFromString(reactor, inner)
    if overTLS:
        endpoint = _TLSServerEndpoint(endpoint, serverContextFactory(_tlsConfig(kwargs), "wss endpoint"))
    return WebSocketServerEndpoint(endpoint, Metadata(kwargs).getString("path") or DEFAULT_PATH)
