"""
The integration test cases on the real reactor, settled at cleanup: the
shared base (targets and listeners on 127.0.0.1), the in-process transport
test case (services built from GOST command lines in this process) and the
process test case (C{gostrelay} children).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.python.failure import Failure
from twisted.trial import unittest

from gostrelay.build import buildServices
from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.errors import describeFailure
from tests.processes import CONSOLE, LineProcessProtocol, childEnvironment, spawn
from tests.support.reactor import ReactorSettler, withTimeout
from tests.support.targets import BannerProtocol, Collector, EchoFactory, HalfCloseCollector

MIB = 1024 * 1024


class ReactorTestCase(unittest.TestCase):
    """
    Targets and clients over real sockets on 127.0.0.1: every listener
    stopped, every connection it accepted aborted, and then every socket
    and timer checked gone (L{ReactorSettler}) at cleanup.
    """

    timeout = 30

    def setUp(self) -> None:
        settler = ReactorSettler()
        self.addCleanup(settler.settle)

    def _stopAtCleanup(self, port: Any, factory: Any, abortOpen: bool = True) -> None:
        def cleanup() -> Any:
            for proto in list(getattr(factory, "open", ())) if abortOpen else ():
                if proto.transport is not None:
                    proto.transport.abortConnection()
            return port.stopListening()

        self.addCleanup(cleanup)

    def listenTCP(self, factory: Any) -> int:
        """
        Listen with C{factory} on 127.0.0.1 (an ephemeral port, returned);
        the connections in C{factory.open} are aborted at cleanup.
        """
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self._stopAtCleanup(port, factory)
        return int(port.getHost().port)

    @defer.inlineCallbacks
    def listen(self, endpoint: Any, factory: Any, abortOpen: bool = True):  # type: ignore[no-untyped-def]
        """
        Listen on C{endpoint}; fire with the port, stopped at cleanup (and
        the connections in C{factory.open} aborted, unless C{abortOpen} is
        false: then one left open fails the test).
        """
        port = yield endpoint.listen(factory)
        self._stopAtCleanup(port, factory, abortOpen)
        return port

    def startEcho(self) -> tuple[EchoFactory, int]:
        factory = EchoFactory()
        return factory, self.listenTCP(factory)

    def listenUDP(self, protocol: DatagramProtocol) -> int:
        port = reactor.listenUDP(0, protocol, interface="127.0.0.1", maxPacketSize=65535)
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)


class ProcessTestCase(ReactorTestCase):
    """
    Real C{gostrelay} children (C{python -m gostrelay} unless told
    otherwise), each in a fresh directory with a fresh C{HOME} and stopped
    at cleanup, with their peers in this process.
    """

    timeout = 60

    def childDir(self) -> str:
        path = os.path.abspath(self.mktemp())
        os.makedirs(path)
        return path

    def start(self, *args: str, name: str = "", launcher: list[str] = CONSOLE, path: str | None = None) -> LineProcessProtocol:
        """
        Start C{launcher ARGS} in C{path} (a fresh directory by default),
        which is also its C{HOME}; stopped at cleanup.
        """
        path = path if path is not None else self.childDir()
        return spawn(
            reactor, launcher + list(args), path, childEnvironment(home=path),
            name=name or " ".join(args), addCleanup=self.addCleanup,
        )

    @defer.inlineCallbacks
    def startListening(self, *args: str, name: str = "", launcher: list[str] = CONSOLE):  # type: ignore[no-untyped-def]
        """
        Start a child with one C{-L}; fire with C{(process, port)} once it
        says where it listens (on 127.0.0.1).
        """
        proc = self.start(*args, name=name, launcher=launcher)
        host, port = yield proc.waitForListening(timeout=15)
        self.assertEqual(host, "127.0.0.1", proc.describe())
        return proc, port


class TransportTestCase(ReactorTestCase):
    """
    Services in process on the real reactor (relay servers, forwarders,
    proxy entries built from GOST command lines), targets and clients over
    real sockets on 127.0.0.1; every socket and timer settled at cleanup.
    """

    @defer.inlineCallbacks
    def startServices(self, listen: list[str], forward: list[str] = ()):  # type: ignore[no-untyped-def]
        """
        Run the services of C{-L listen... -F forward...} in this process;
        fire with their L{GostService}s once all listen.
        """
        top = buildServices(reactor, buildConfigFromCommandLine(list(listen), list(forward)))
        top.startService()
        self.addCleanup(top.stopService)
        services = list(top)
        for svc in services:
            yield svc.listening
        return services

    @defer.inlineCallbacks
    def startService(self, url: str):  # type: ignore[no-untyped-def]
        """
        One service; fire with C{(service, port)}.
        """
        (svc,) = yield self.startServices([url])
        return svc, svc.port.getHost().port

    @defer.inlineCallbacks
    def exchange(self, endpoint: Any, payload: bytes, timeout: float = 10.0, expect: int | None = None):  # type: ignore[no-untyped-def]
        """
        Connect C{endpoint} with a L{Collector} sending C{payload}; fire
        with the collector once the connection has ended (whether or not
        the connect succeeded: C{collector.connectError} holds a connect
        failure).
        """
        client = Collector(payload, expect)
        client.connectError = None  # type: ignore[attr-defined]
        try:
            yield withTimeout(connectProtocol(endpoint, client), timeout, "connect")
        except Exception:
            client.connectError = Failure()  # type: ignore[attr-defined]
            return client

        def abort() -> Any:
            if not client.lost and client.transport is not None:
                client.transport.abortConnection()
                return withTimeout(client.done, 5, "client end after abort")
            return None

        self.addCleanup(abort)
        yield withTimeout(client.done, timeout, f"exchange of {len(payload)} bytes")
        return client

    @defer.inlineCallbacks
    def startRelay(self, url: str = "relay://127.0.0.1:0"):  # type: ignore[no-untyped-def]
        """
        One relay server; fire with its port and a list counting the
        connections it accepted.
        """
        (svc,) = yield self.startServices([url])
        accepted: list[Any] = []
        original = svc.handler.buildProtocol

        def counting(addr: Any) -> Any:
            accepted.append(addr)
            return original(addr)

        svc.handler.buildProtocol = counting
        return svc.port.getHost().port, accepted

    @defer.inlineCallbacks
    def startClient(self, listen: str, *forward: str):  # type: ignore[no-untyped-def]
        (svc,) = yield self.startServices([listen], list(forward))
        return svc.port.getHost().port

    def startBanner(self) -> int:
        factory = Factory.forProtocol(BannerProtocol)
        factory.noisy = False
        factory.open = set()  # type: ignore[attr-defined]
        return self.listenTCP(factory)

    @defer.inlineCallbacks
    def connect(self, port: int, protocol: Protocol):  # type: ignore[no-untyped-def]
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5), protocol)
        self.addCleanup(self._closeClient, protocol)
        return protocol

    def _closeClient(self, protocol: Any) -> Any:
        if getattr(protocol, "lost", False) or protocol.transport is None:
            return None
        protocol.transport.abortConnection()
        return getattr(protocol, "done", None)

    @defer.inlineCallbacks
    def assertEchoesThrough(self, port: int, size: int):  # type: ignore[no-untyped-def]
        """
        C{size} bytes sent to C{port} then a half-close come back whole,
        then EOF.
        """
        payload = os.urandom(1024) * (size // 1024) + os.urandom(size % 1024)
        client = yield self.connect(port, HalfCloseCollector(payload))
        yield withTimeout(client.done, 20, f"echo of {size} bytes")
        self.assertEqual(len(client.data), len(payload))
        self.assertEqual(hashlib.sha256(client.data).hexdigest(), hashlib.sha256(payload).hexdigest())

    def failureText(self, client: Collector) -> str:
        """
        describeFailure of why C{client} failed: the connect failure, or
        the reason its connection was lost.
        """
        reason = getattr(client, "connectError", None) or client.reason
        return describeFailure(reason)

    def assertEchoed(self, client: Collector, payload: bytes) -> None:
        self.assertIsNone(getattr(client, "connectError", None), "connect failed")
        self.assertEqual(len(client.data), len(payload), f"echo incomplete; lost because: {self.failureText(client)}")
        self.assertTrue(bytes(client.data) == payload, "echoed bytes differ")

    def assertFailedWithout(self, client: Collector, echo: EchoFactory | None = None) -> str:
        """
        C{client} got nothing back and its connection did not end cleanly;
        returns describeFailure of the reason.
        """
        self.assertEqual(bytes(client.data), b"", "data came back through a connection that should fail")
        connectError = getattr(client, "connectError", None)
        reason = connectError or client.reason
        self.assertIsNotNone(reason)
        self.assertFalse(
            connectError is None and reason.check(ConnectionDone),  # type: ignore[union-attr]
            "the connection ended cleanly; expected a TLS failure",
        )
        if echo is not None:
            self.assertEqual([e.received for e in echo.accepted if e.received], [], "bytes reached the target")
        return describeFailure(reason)
