"""
Listening on a relay server: the C{rtcp:} server endpoint string and
L{bindEndpoint}, GOST's remote TCP forwarding (C{-L rtcp://}) as an
ordinary L{IStreamServerEndpoint}, in the manner of txtorcon's onion
service endpoints::

    serverFromString(reactor, r"rtcp:2222:via=tcp\\:relay.example\\:8420:username=u:password=p")
    bindEndpoint(reactor, ["relay+tls://u:p@relay.example:8443"], 2222)

C{via} is any client description reaching the relay server (C{tcp:},
C{gosttls:}, C{wss:}, C{kcp:}, even C{relay:} for a server behind another),
escaped once since it is an argument.  The relay server must run with
C{bind=true}.

The contract:

  - C{listen(factory)} fires with an L{IListeningPort} once the server
    answered the BIND with OK; a refusal (or an unreachable server) on the
    first try fails it with L{CannotListenError} naming the server's answer;
  - the BIND is kept by a L{ClientService}: after a drop it binds again,
    with GOST's back-off (1, 2, 4, 5 s, plus jitter), and asks for the port
    the server reported the first time (so C{rtcp:0} keeps its port);
  - C{getHost()} is the address the server reported;
  - C{stopListening()} closes the BIND, which makes the server release the
    port, and ends the connections that came through it;
  - every visitor is an smux stream; C{factory.buildProtocol(addr)} gets the
    visitor's address from the relay response the server writes first on
    the stream.

The BIND request and the smux side are the rtcp listener's
(L{gostrelay.connectors.relay.relayBindEndpoint},
L{gostrelay.transports.remote.TCPBindProtocol}).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from twisted.application.internet import ClientService
from twisted.internet import defer
from twisted.internet.endpoints import clientFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from gostrelay.build import BuildContext
from gostrelay.chain import Chain
from gostrelay.config.metadata import Metadata
from gostrelay.config.model import ChainConfig, Config, ConfigError
from gostrelay.config.url import parseNodeURL
from gostrelay.connectors.relay import relayBindEndpoint
from gostrelay.logs import Logger
from gostrelay.mux import MuxConfig
from gostrelay.router import DEFAULT_DIAL_TIMEOUT
from gostrelay.transports.remote import (
    DEFAULT_MAX_RETRY_DELAY,
    BindFactory,
    TCPBindProtocol,
    bindFailureText,
    retryPolicy,
    stopBinding,
    tcpAddress,
)
from gostrelay.wire.address import joinHostPort, splitHostPort

_log = Logger(namespace="gostrelay.endpoints.rtcp")

#: An endpoint whose connections are BINDs of the given C{"host:port"}.
BindVia = Callable[[str], IStreamClientEndpoint]


@implementer(IStreamServerEndpoint)
class RemoteTCPServerEndpoint:
    """
    Listens on C{interface:port} of a relay server (see the module
    docstring).

    @param bindVia: makes, for a C{"host:port"}, an endpoint whose
        connections are relay BINDs of it (called for every (re)bind, so a
        chain may choose another node after a failure).
    @param muxConfig: the BIND session's smux settings (the server's).
    @param clock: schedules re-binds (the reactor by default).
    @param server: names the relay server in errors.
    """

    def __init__(
        self,
        reactor: Any,
        bindVia: BindVia,
        port: int,
        interface: str = "",
        muxConfig: MuxConfig | None = None,
        maxRetryDelay: float = DEFAULT_MAX_RETRY_DELAY,
        label: str = "",
        clock: Any = None,
        server: str = "",
    ) -> None:
        self.reactor = reactor
        self.bindVia = bindVia
        self.port = int(port)
        self.interface = interface
        self.muxConfig = muxConfig or MuxConfig()
        self.maxRetryDelay = maxRetryDelay
        self.label = label or f"rtcp {joinHostPort(interface, self.port)}"
        self.clock = clock if clock is not None else reactor
        self.server = server

    def listen(self, protocolFactory: IProtocolFactory) -> defer.Deferred[Any]:
        port = RemoteListeningPort(self, protocolFactory)
        return port.start()


class _BindEachTime:
    """
    The ClientService's endpoint: a BIND of the port's current address, made
    anew for every attempt; failures after the first bind are logged (the
    first one is the listen Deferred's).
    """

    def __init__(self, port: RemoteListeningPort) -> None:
        self.port = port

    def __repr__(self) -> str:
        return f"<BIND {self.port.address} ({self.port.name})>"

    def connect(self, factory: IProtocolFactory) -> defer.Deferred[Any]:
        port = self.port
        try:
            d = port.endpoint.bindVia(port.address).connect(factory)
        except Exception:
            d = defer.fail()

        def failed(reason: Failure) -> Failure:
            if port.binds and not reason.check(defer.CancelledError):
                port.log.info(
                    "{name}: bind {address} failed: {why}; retrying",
                    name=port.name, address=port.address, why=bindFailureText(reason, port.address),
                )
            return reason

        return d.addErrback(failed)


@implementer(IListeningPort)
class RemoteListeningPort:
    """
    A port on a relay server, kept bound by a L{ClientService}; the owner of
    its BIND sessions (L{TCPBindProtocol}).
    """

    def __init__(self, endpoint: RemoteTCPServerEndpoint, factory: IProtocolFactory) -> None:
        self.endpoint = endpoint
        self.handler = factory
        self.reactor = endpoint.reactor
        self.muxConfig = endpoint.muxConfig
        self.name = endpoint.label
        self.log = _log
        self.address = joinHostPort(endpoint.interface, endpoint.port)
        self.boundAddress = ""
        self.binds = 0
        self.listening = False
        self.service: ClientService | None = None
        self.bindFactory: BindFactory | None = None

    # -- the owner of the BIND (TCPBindProtocol)

    def bound(self, transport: Any) -> None:
        response = getattr(transport, "response", None)
        addr = response.addr if response is not None else None
        self.binds += 1
        if addr is not None:
            self.boundAddress = addr.address
            if self.binds == 1 and self.endpoint.port == 0:
                # Keep the port the server chose across re-binds.
                self.address = joinHostPort(self.endpoint.interface, addr.port)
        self.log.info(
            "{name}: bound {address} on the relay server as {bound} (bind #{n})",
            name=self.name, address=self.address, bound=self.boundAddress or "?", n=self.binds,
        )

    # -- IListeningPort

    def start(self) -> defer.Deferred[Any]:
        self.startListening()
        assert self.service is not None
        service = self.service
        waiting = service.whenConnected(failAfterFailures=1)
        result: defer.Deferred[Any] = defer.Deferred(lambda d: waiting.cancel())

        def connected(protocol: Any) -> None:
            getattr(self.handler, "doStart", lambda: None)()
            result.callback(self)

        def failed(reason: Failure) -> None:
            self.listening = False
            self.service = None
            why = bindFailureText(reason, self.address)
            if self.endpoint.server:
                why = f"relay server {self.endpoint.server}: {why}"
            error = CannotListenError(self.endpoint.interface or "any", self.endpoint.port, _Answer(why))

            def stop() -> None:
                # Not from inside the ClientService's own transition.
                stopped = service.stopService()
                if not reason.check(defer.CancelledError):
                    stopped.addBoth(lambda _: result.errback(Failure(error)))

            self.endpoint.clock.callLater(0, stop)

        waiting.addCallbacks(connected, failed)
        return result

    def startListening(self) -> None:
        if self.service is not None:
            return
        self.bindFactory = BindFactory(self, TCPBindProtocol)
        self.service = ClientService(
            _BindEachTime(self),  # type: ignore[arg-type]
            self.bindFactory,
            retryPolicy=retryPolicy(self.endpoint.maxRetryDelay),
            clock=self.endpoint.clock,
        )
        self.listening = True
        self.service.startService()

    def stopListening(self) -> defer.Deferred[None]:
        """
        Close the BIND (the server releases the port); fires once it is
        closed.
        """
        service, self.service = self.service, None
        if service is None:
            return defer.succeed(None)
        wasListening, self.listening = self.listening, False
        assert self.bindFactory is not None
        d = stopBinding(service, self.bindFactory)

        def stopped(result: Any) -> Any:
            if wasListening and self.binds:
                getattr(self.handler, "doStop", lambda: None)()
            self.log.info("{name}: released {address} on the relay server", name=self.name, address=self.address)
            return None

        return d.addCallback(stopped)

    loseConnection = stopListening

    def getHost(self) -> Any:
        """
        The address the relay server reported for the bound port (before the
        first bind: the address asked for).
        """
        host, port = splitHostPort(self.boundAddress or self.address)
        return tcpAddress(host or "0.0.0.0", port)

    def __repr__(self) -> str:
        return f"<RemoteListeningPort {self.name} on {self.boundAddress or self.address}>"


class _Answer(Exception):
    """
    The relay server's answer, as the C{socketError} of a
    L{CannotListenError}.
    """


def _withoutPasswords(description: str) -> str:
    """
    C{description} fit for a log line: every C{password=} value (at any
    level of nesting) replaced by C{***}.
    """
    return re.sub(r"(password\\*=)((?:\\.|[^:\\])*)", r"\1***", description)


def parseRemoteTCPServer(reactor: Any, *args: str, **kwargs: str) -> RemoteTCPServerEndpoint:
    """
    C{rtcp:PORT:via=DESCRIPTION[:interface=ADDR][:username=U:password=P]}
    and the options C{timeout} (for the server's answer, 15 s),
    C{maxRetryDelay} (5 s) and the server's C{mux.*} settings.
    """
    known = {"port", "via", "interface", "username", "password", "timeout", "maxRetryDelay"}
    for name in kwargs:
        if name not in known and not name.startswith("mux."):
            raise ValueError(f"rtcp: unknown option {name!r} (known: {', '.join(sorted(known))}, mux.*)")
    if len(args) > 1:
        raise ValueError(f"rtcp: too many positional arguments {args!r} (rtcp:PORT:via=...)")
    port = args[0] if args else kwargs.get("port")
    if port is None or not str(port).isdigit():
        raise ValueError("rtcp: needs a port (rtcp:PORT:via=...)")
    if not kwargs.get("via"):
        raise ValueError(r"rtcp: needs via=, the client description of the relay server (via=tcp\:relay.example\:8420)")
    md = Metadata(kwargs)
    try:
        muxConfig = MuxConfig.fromMetadata(md, "rtcp")
    except ConfigError as e:
        raise ValueError(str(e)) from None
    via = kwargs["via"]
    server = clientFromString(reactor, via)
    username = kwargs.get("username")
    password = kwargs.get("password", "")
    timeout = md.getDuration("timeout") or DEFAULT_DIAL_TIMEOUT

    def bindVia(address: str) -> IStreamClientEndpoint:
        return relayBindEndpoint(
            reactor, server, "tcp", address, username, password, connectTimeout=timeout, label=via
        )

    return RemoteTCPServerEndpoint(
        reactor, bindVia, int(port), kwargs.get("interface", ""), muxConfig,
        md.getDuration("maxRetryDelay") or DEFAULT_MAX_RETRY_DELAY, server=_withoutPasswords(via),
    )


def bindEndpoint(
    reactor: Any,
    nodes: Sequence[str],
    port: int,
    interface: str = "",
    timeout: float = DEFAULT_DIAL_TIMEOUT,
    maxRetryDelay: float = DEFAULT_MAX_RETRY_DELAY,
    clock: Any = None,
) -> RemoteTCPServerEndpoint:
    """
    A server endpoint listening on C{interface:port} of the last relay
    server of a chain given as GOST C{-F} URLs (as L{chainEndpoint}'s); the
    smux settings are the last node's C{mux.*}, as GOST's.

    @raise ConfigError: when a URL names a type that is not implemented, or
        the last node's connector cannot BIND (only relay can).
    """
    if not nodes:
        raise ConfigError("bindEndpoint needs at least one node URL")
    config = Config()
    chainConfig = ChainConfig(name="chain-0")
    for i, url in enumerate(nodes):
        chainConfig.hops.append(parseNodeURL(config, url, i))
    config.chains.append(chainConfig)
    chain = Chain.fromConfig(reactor, chainConfig, BuildContext(reactor, config), "bindEndpoint")
    lastConnector = chain.hops[-1].selector.nodes[0].value[0]
    if not hasattr(lastConnector, "bindEndpoint"):
        raise ConfigError(f"bindEndpoint: the last node ({nodes[-1]}) cannot BIND: its connector is not relay")

    def bindVia(address: str) -> IStreamClientEndpoint:
        return chain.bindEndpoint("tcp", address, timeout)

    return RemoteTCPServerEndpoint(
        reactor, bindVia, int(port), interface, getattr(lastConnector, "muxConfig", None),
        maxRetryDelay, label=f"rtcp {joinHostPort(interface, int(port))}", clock=clock, server=chainConfig.hops[-1].nodes[0].addr,
    )
