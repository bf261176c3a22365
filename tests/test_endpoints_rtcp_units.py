"""
Units for the C{rtcp:} server endpoint (L{gostrelay.endpoints.rtcp}) on a
L{MemoryReactorClock}: every BIND attempt goes to a L{FakeRelay} that the
test answers (OK with a bound address, a refusal, a dead server), and the
BIND session's bytes are smux frames on a L{StringTransport}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError, ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from gostrelay.endpoints.rtcp import RemoteTCPServerEndpoint
from gostrelay.errors import RelayRefused
from gostrelay.wire import smux
from gostrelay.wire.relay import AddrFeature, Response, Status, encodeResponse


class ClosesAfterProducer(StringTransport):
    """
    A carrier that, like Twisted's TLS transport, closes only once no
    producer is registered: C{loseConnection} with one registered waits for
    C{unregisterProducer}.
    """

    wantsClose = False

    def loseConnection(self) -> None:
        if self.producer is not None:
            self.wantsClose = True
            return
        super().loseConnection()

    def unregisterProducer(self) -> None:
        super().unregisterProducer()
        if self.wantsClose:
            super().loseConnection()


class Attempt:
    """
    One BIND attempt, waiting for the test's answer.
    """

    def __init__(self, address: str, factory: Any, transportClass: type[StringTransport] = StringTransport) -> None:
        self.address = address
        self.factory = factory
        self.transportClass = transportClass
        self.deferred: defer.Deferred[Any] = defer.Deferred()
        self.protocol: Any = None
        self.transport: Any = None

    def accept(self, host: str, port: int) -> None:
        """
        The server answers OK, bound on C{host:port}.
        """
        self.protocol = self.factory.buildProtocol(None)
        self.transport = self.transportClass()
        self.transport.response = Response(Status.OK, (AddrFeature.fromHostPort(host, port),))
        self.protocol.makeConnection(self.transport)
        self.deferred.callback(self.protocol)

    def refuse(self, status: int) -> None:
        self.deferred.errback(RelayRefused(status, self.address))

    def drop(self) -> None:
        """
        The BIND connection is lost (the server went away).
        """
        self.protocol.connectionLost(Failure(ConnectionLost("gone")))


class FakeRelay:
    def __init__(self, transportClass: type[StringTransport] = StringTransport) -> None:
        self.attempts: list[Attempt] = []
        self.transportClass = transportClass

    def bindVia(self, address: str) -> Any:
        relay = self

        class _Endpoint:
            def connect(self, factory: Any) -> defer.Deferred[Any]:
                attempt = Attempt(address, factory, relay.transportClass)
                relay.attempts.append(attempt)
                return attempt.deferred

        return _Endpoint()


class Recorder(Protocol):
    def __init__(self, addr: Any) -> None:
        self.addr = addr
        self.received = b""
        self.lost: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = reason


class RecordingFactory(Factory):
    def __init__(self) -> None:
        self.built: list[Recorder] = []
        self.started = 0
        self.stopped = 0

    def startFactory(self) -> None:
        self.started += 1

    def stopFactory(self) -> None:
        self.stopped += 1

    def buildProtocol(self, addr: Any) -> Recorder:
        protocol = Recorder(addr)
        self.built.append(protocol)
        return protocol


class RemoteEndpointTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.relay = FakeRelay()
        self.factory = RecordingFactory()

    def endpoint(self, port: int = 2222, interface: str = "") -> RemoteTCPServerEndpoint:
        return RemoteTCPServerEndpoint(
            self.clock, self.relay.bindVia, port, interface, maxRetryDelay=5.0, server="tcp:relay.example:8420"
        )

    def listening(self, port: int = 2222, interface: str = "", bound: tuple[str, int] = ("0.0.0.0", 2222)) -> Any:
        d = self.endpoint(port, interface).listen(self.factory)
        self.assertNoResult(d)
        self.relay.attempts[-1].accept(*bound)
        return self.successResultOf(d)

    def assertNothingScheduled(self) -> None:
        self.assertEqual([c for c in self.clock.getDelayedCalls() if c.active()], [])

    def stop(self, port: Any) -> None:
        """
        stopListening, with the BIND connection closing as a real one would.
        """
        d = port.stopListening()
        attempt = self.relay.attempts[-1]
        if attempt.transport is not None and attempt.transport.disconnecting:
            attempt.protocol.connectionLost(Failure(ConnectionLost("closed")))
        self.successResultOf(d)

    def test_listenFiresOnBindOK(self) -> None:
        """
        listen() waits for the server's OK, then fires with an
        IListeningPort whose getHost() is the address the server reported;
        the factory is started once.
        """
        d = self.endpoint(2222, "127.0.0.1").listen(self.factory)
        self.assertEqual([a.address for a in self.relay.attempts], ["127.0.0.1:2222"])
        self.assertNoResult(d)
        self.relay.attempts[0].accept("127.0.0.1", 2222)
        port = self.successResultOf(d)
        self.assertTrue(verifyObject(IListeningPort, port))
        self.assertEqual(port.getHost(), IPv4Address("TCP", "127.0.0.1", 2222))
        self.assertEqual(self.factory.started, 1)
        self.stop(port)

    def test_refusalFailsListen(self) -> None:
        """
        A refusal on the first try fails listen() with CannotListenError
        naming the server's answer and what it means; nothing is retried and
        nothing stays scheduled.
        """
        d = self.endpoint().listen(self.factory)
        self.relay.attempts[0].refuse(Status.FORBIDDEN)
        self.clock.advance(0)
        failure = self.failureResultOf(d, CannotListenError)
        message = str(failure.value)
        self.assertIn("Forbidden", message)
        self.assertIn("bind=true", message)
        self.assertIn("tcp:relay.example:8420", message)
        self.assertIn("2222", message)
        self.clock.advance(60)
        self.assertEqual(len(self.relay.attempts), 1)
        self.assertEqual(self.factory.started, 0)
        self.assertNothingScheduled()

    def test_portTakenFailsListen(self) -> None:
        """
        Service Unavailable (the server cannot bind the port) names the
        port.
        """
        d = self.endpoint().listen(self.factory)
        self.relay.attempts[0].refuse(Status.SERVICE_UNAVAILABLE)
        self.clock.advance(0)
        message = str(self.failureResultOf(d, CannotListenError).value)
        self.assertIn("Service Unavailable", message)
        self.assertIn("cannot bind :2222", message)

    def test_unreachableFailsListen(self) -> None:
        d = self.endpoint().listen(self.factory)
        self.relay.attempts[0].deferred.errback(ConnectionRefusedError("nobody there"))
        self.clock.advance(0)
        self.assertIn("nobody there", str(self.failureResultOf(d, CannotListenError).value))
        self.assertNothingScheduled()

    def test_cancelListen(self) -> None:
        """
        Cancelling listen() while the server has not answered gives up the
        attempt; nothing stays scheduled.
        """
        d = self.endpoint().listen(self.factory)
        d.cancel()
        self.clock.advance(0)
        self.failureResultOf(d, defer.CancelledError)
        self.clock.advance(60)
        self.assertEqual(len(self.relay.attempts), 1)
        self.assertNothingScheduled()

    def test_rebindAfterDrop(self) -> None:
        """
        When the BIND drops, the port binds again after GOST's back-off
        (1 s plus up to 1 s of jitter): same port object, same address.
        """
        port = self.listening()
        self.relay.attempts[0].drop()
        self.assertEqual(len(self.relay.attempts), 1)
        self.clock.advance(2.01)
        self.assertEqual(len(self.relay.attempts), 2)
        self.assertEqual(self.relay.attempts[1].address, ":2222")
        self.relay.attempts[1].accept("0.0.0.0", 2222)
        self.assertEqual(port.binds, 2)
        self.assertEqual(port.getHost(), IPv4Address("TCP", "0.0.0.0", 2222))
        self.stop(port)
        self.assertNothingScheduled()

    def test_rebindKeepsChosenPort(self) -> None:
        """
        rtcp:0: the server chooses the port; re-binds ask for that port.
        """
        port = self.listening(0, "127.0.0.1", ("127.0.0.1", 40123))
        self.assertEqual(self.relay.attempts[0].address, "127.0.0.1:0")
        self.assertEqual(port.getHost().port, 40123)
        self.relay.attempts[0].drop()
        self.clock.advance(2.01)
        self.assertEqual(self.relay.attempts[1].address, "127.0.0.1:40123")
        self.stop(port)

    def test_rebindRetriesWithBackoff(self) -> None:
        """
        Re-bind refusals are retried (not a listen failure) at growing
        intervals capped by maxRetryDelay (plus jitter), until one succeeds.
        """
        port = self.listening()
        self.relay.attempts[0].drop()
        for n in range(2, 7):
            self.clock.advance(6.01)
            self.assertEqual(len(self.relay.attempts), n)
            self.relay.attempts[-1].refuse(Status.SERVICE_UNAVAILABLE)
        self.clock.advance(6.01)
        self.relay.attempts[-1].accept("0.0.0.0", 2222)
        self.assertEqual(port.binds, 2)
        self.assertTrue(port.listening)
        self.stop(port)
        self.assertNothingScheduled()

    def test_stopListeningReleases(self) -> None:
        """
        stopListening closes the BIND connection (the server releases the
        port), fires once it is closed, stops the factory and binds no more.
        """
        port = self.listening()
        attempt = self.relay.attempts[0]
        d = port.stopListening()
        self.assertTrue(attempt.transport.disconnecting)
        self.assertNoResult(d)
        attempt.protocol.connectionLost(Failure(ConnectionLost("closed")))
        self.successResultOf(d)
        self.assertEqual(self.factory.stopped, 1)
        self.clock.advance(60)
        self.assertEqual(len(self.relay.attempts), 1)
        self.assertNothingScheduled()
        self.successResultOf(port.stopListening())

    def test_stopListeningOverTLS(self) -> None:
        """
        Over a carrier that closes only once its producer is gone (TLS,
        wss), stopListening still closes the BIND: the smux session
        unregisters itself from the carrier.
        """
        self.relay = FakeRelay(ClosesAfterProducer)
        port = self.listening()
        attempt = self.relay.attempts[0]
        self.assertIsNotNone(attempt.transport.producer)
        d = port.stopListening()
        self.assertIsNone(attempt.transport.producer)
        self.assertTrue(attempt.transport.disconnecting)
        attempt.protocol.connectionLost(Failure(ConnectionLost("closed")))
        self.successResultOf(d)
        self.assertEqual(self.factory.stopped, 1)
        self.assertNothingScheduled()

    def test_stopListeningWhileRebinding(self) -> None:
        """
        stopListening during the back-off after a drop fires at once and
        cancels the re-bind.
        """
        port = self.listening()
        self.relay.attempts[0].drop()
        self.successResultOf(port.stopListening())
        self.clock.advance(60)
        self.assertEqual(len(self.relay.attempts), 1)
        self.assertNothingScheduled()

    def test_visitorStream(self) -> None:
        """
        A visitor is an smux stream whose first bytes are the relay
        response naming it: the factory builds its protocol for that
        address, gets the bytes after it, and its writes go back on the
        stream.
        """
        self.listening()
        attempt = self.relay.attempts[0]
        preamble = encodeResponse(Status.OK, AddrFeature.fromHostPort("203.0.113.5", 5555))
        attempt.protocol.dataReceived(
            smux.encodeFrame(1, smux.SYN, 2) + smux.encodeFrame(1, smux.PSH, 2, preamble + b"hello")
        )
        [visitor] = self.factory.built
        self.assertEqual(visitor.addr, IPv4Address("TCP", "203.0.113.5", 5555))
        self.assertEqual(visitor.transport.getPeer(), IPv4Address("TCP", "203.0.113.5", 5555))
        self.assertEqual(visitor.received, b"hello")
        attempt.transport.clear()
        visitor.transport.write(b"bye")
        self.assertEqual(attempt.transport.value(), smux.encodeFrame(1, smux.PSH, 2, b"bye"))

    def test_visitorsEndWithTheBind(self) -> None:
        """
        Visitors' connections end when the BIND does (they came through it).
        """
        port = self.listening()
        attempt = self.relay.attempts[0]
        preamble = encodeResponse(Status.OK, AddrFeature.fromHostPort("203.0.113.5", 5555))
        attempt.protocol.dataReceived(smux.encodeFrame(1, smux.SYN, 2) + smux.encodeFrame(1, smux.PSH, 2, preamble))
        [visitor] = self.factory.built
        self.stop(port)
        self.assertIsNotNone(visitor.lost)


class RemoteEndpointStringTests(SynchronousTestCase):
    def test_parse(self) -> None:
        endpoint = serverFromString(
            MemoryReactorClock(),
            r"rtcp:2222:interface=127.0.0.1:via=tcp\:relay.example\:8420:username=u:password=p:mux.version=2",
        )
        self.assertIsInstance(endpoint, RemoteTCPServerEndpoint)
        self.assertEqual((endpoint.port, endpoint.interface), (2222, "127.0.0.1"))
        self.assertEqual(endpoint.muxConfig.version, 2)
        self.assertEqual(endpoint.server, "tcp:relay.example:8420")

    def test_portKeyword(self) -> None:
        endpoint = serverFromString(MemoryReactorClock(), r"rtcp:port=2222:via=tcp\:relay.example\:8420")
        self.assertEqual(endpoint.port, 2222)

    def test_errors(self) -> None:
        reactor = MemoryReactorClock()
        for description, expected in (
            ("rtcp:2222", "needs via="),
            (r"rtcp:via=tcp\:r\:1", "needs a port"),
            (r"rtcp:2222:via=tcp\:r\:1:usrename=u", "unknown option 'usrename'"),
            (r"rtcp:2222:via=tcp\:r\:1:mux.version=3", "mux.version must be 1 or 2"),
        ):
            e = self.assertRaises(ValueError, serverFromString, reactor, description)
            self.assertIn(expected, str(e), description)

    def test_passwordNotInErrors(self) -> None:
        """
        The relay server named in a CannotListenError carries no password.
        """
        endpoint = serverFromString(
            MemoryReactorClock(), r"rtcp:2222:via=relay\:tcp\\\:a\\\:1\:host=b\:port=2\:password=secret"
        )
        self.assertNotIn("secret", endpoint.server)
