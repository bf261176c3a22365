"""
Carrier endpoint strings: C{gosttls:} (TLS with GOST's verification rules,
client), C{ws:} and C{wss:} (client and server), over any inner
description; e.g. relay over wss, each level of nesting escaping the inner
description once more (C{\\}, C{:} and C{=} get a backslash)::

    clientFromString(reactor,
        r"relay:wss\\:tcp\\\\\\:relay.example\\\\\\:443\\:path\\=/ws:host=example.com:port=80")
"""

from __future__ import annotations

from typing import Any

from twisted.internet.endpoints import _parse, clientFromString, serverFromString, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint

from gostrelay.config.metadata import Metadata
from gostrelay.config.model import TLSConfig
from gostrelay.transports.tls import _nodeHost, clientCreator, serverContextFactory
from gostrelay.transports.ws import (
    DEFAULT_PATH,
    DEFAULT_PING_INTERVAL,
    WebSocketClientEndpoint,
    WebSocketServerEndpoint,
    _TLSServerEndpoint,
)
from gostrelay.wire.address import joinHostPort


def _innerHost(description: str) -> str:
    """
    The C{host:port} an inner client description dials, when it says
    (C{tcp:HOST:PORT} or C{tcp:host=H:port=P}); else C{""}.
    """
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
    creator = clientCreator(_tlsConfig(kwargs), _nodeHost(_innerHost(inner)), "gosttls endpoint")
    return wrapClientTLS(creator, clientFromString(reactor, inner))


def parseWebSocketClient(reactor: Any, inner: str, overTLS: bool = False, **kwargs: str) -> IStreamClientEndpoint:
    """
    C{ws:} and C{wss:} client endpoints: C{path} (C{/ws}), C{host} (the Host
    header; default the inner endpoint's host:port), C{keepalive}/C{ttl};
    wss takes C{gosttls:}'s options too.
    """
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
    endpoint: Any = serverFromString(reactor, inner)
    if overTLS:
        endpoint = _TLSServerEndpoint(endpoint, serverContextFactory(_tlsConfig(kwargs), "wss endpoint"))
    return WebSocketServerEndpoint(endpoint, Metadata(kwargs).getString("path") or DEFAULT_PATH)
