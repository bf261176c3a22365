"""
The part of a client connector's transport that only passes through to
the carrier underneath: after a hop's handshake, the application talks to
the connector's protocol as its transport, and everything the connector
does not intercept (addresses, producers, carrier extras such as
C{setTcpNoDelay}) is the carrier's.

Both connector protocols (the relay client, L{gostrelay.connectors.relay},
and the proxy-hop handshakes, L{gostrelay.connectors.handshake}) are one
shape: a handshake on the carrier, then the application's connection.  What
that shape shares beyond pass-through lives here too: handing the
application its connection, half-close towards it, the carrier a finished
stream offers to L{gostrelay.splice}, and reading a node's credentials.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

from twisted.internet.error import ConnectError
from twisted.internet.interfaces import (
    IHalfCloseableDescriptor,
    IHalfCloseableProtocol,
    ISSLTransport,
    ITLSTransport,
)
from twisted.python.failure import Failure
from zope.interface import directlyProvides

from gostrelay.config.model import ConfigError, NodeConfig
from gostrelay.declarations import declarationFor
from gostrelay.splice import spliceCarrierOf
from gostrelay.statemachine import TransitionTable


def carrierDeclaration(cls: type, spec: Any, tls: bool = False) -> Any:
    """
    What a connector's stream of class C{cls} offers over a carrier
    declaring C{spec}: the carrier's interfaces but TLS (and half-close over
    TLS), as the stream's declaration, worked out once per kind
    (L{declarationFor}).
    """

    def declare(probe: Any) -> None:
        directlyProvides(probe, *(
            i for i in spec
            if not i.isOrExtends(ISSLTransport) and not i.isOrExtends(ITLSTransport)
            and not (tls and i.isOrExtends(IHalfCloseableDescriptor))
        ))

    return declarationFor(cls, (spec, tls), declare)


class CarrierDelegate:
    """
    Mixed into a connector protocol that acts as its application's
    transport; C{self.transport} is the carrier.

    @ivar app: the application's protocol, once it has the connection.
    """

    transport: Any
    app: Any = None
    #: The connector's state machine (set by each class once its table is
    #: built); the carrier's events are handed to it in one line each.
    machine: ClassVar[TransitionTable[Any]]
    #: Where the carrier's bytes go now: the handshake's reader, then the
    #: application (or a datagram re-framer), or nowhere once closed.
    _deliver: Callable[[bytes], None]

    def _fire(self, event: str, *args: Any) -> None:
        """
        Run the machine's transition for C{event} in the current state.
        """
        self.machine.fire(self, event, *args)

    # -- carrier side

    def dataReceived(self, data: bytes) -> None:
        self._deliver(data)

    def readConnectionLost(self) -> None:
        self._fire("readLost")

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._fire("lost", reason)

    def getPeer(self) -> Any:
        return self.transport.getPeer()

    def getHost(self) -> Any:
        return self.transport.getHost()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.transport.unregisterProducer()

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.transport.stopProducing()

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))  # type: ignore[attr-defined]

    def writeConnectionLost(self) -> None:
        if self.app is not None and IHalfCloseableProtocol.providedBy(self.app):
            self.app.writeConnectionLost()

    def buildApp(self, appFactory: Any) -> Failure | None:
        """
        Hand the application its connection: build its protocol and make
        this its transport.  A factory that raises or refuses closes the
        carrier.

        @return: C{None} once the application has it, else why not.
        """
        try:
            app = appFactory.buildProtocol(self.transport.getPeer())
        except BaseException:
            self.transport.loseConnection()
            return Failure()
        if app is None:
            self.transport.loseConnection()
            return Failure(ConnectError(None, "the application refused the connection"))
        self.app = app
        app.makeConnection(self)
        return None

    def carrierForSplice(self) -> Any:
        """
        What L{gostrelay.splice} may move bytes on once this stream passes
        every byte unchanged: the carrier, or the carrier's own carrier when
        it is a connector stream too.
        """
        carrier = self.transport
        inner = spliceCarrierOf(carrier)
        return inner() if inner is not None else carrier

    def __getattr__(self, name: str) -> Any:
        # Anything else a carrier offers (setTcpNoDelay, ...).
        if name.startswith("__") or "transport" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["transport"], name)


def nodeCredentials(node: NodeConfig, where: str) -> tuple[str | None, str]:
    """
    The connector's credentials: C{auth} (the URL's userinfo) or the first
    line of C{auth.file} (C{"user pass"}); C{(None, "")} without any.
    """
    connector = node.connector
    auth = connector.auth if connector is not None else None
    if auth is None:
        return None, ""
    if auth.file:
        try:
            with open(auth.file, encoding="utf-8") as f:
                first = f.readline().strip()
        except OSError as e:
            raise ConfigError(f"{where}: cannot read auth file {auth.file}: {e.strerror}") from None
        user, _, password = first.partition(" ")
        return user, password.strip()
    if not auth.username:
        return None, ""
    return auth.username, auth.password
