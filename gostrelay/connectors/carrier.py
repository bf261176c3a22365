"""
The part of a client connector's transport that only passes through to
the carrier underneath: after a hop's handshake, the application talks to
the connector's protocol as its transport, and everything the connector
does not intercept (addresses, producers, carrier extras such as
C{setTcpNoDelay}) is the carrier's.
"""

from __future__ import annotations

from typing import Any


class CarrierDelegate:
    """
    Mixed into a connector protocol that acts as its application's
    transport; C{self.transport} is the carrier.
    """

    transport: Any

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

    def __getattr__(self, name: str) -> Any:
        # Anything else a carrier offers (setTcpNoDelay, ...).
        if name.startswith("__") or "transport" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["transport"], name)
