"""
Tests for L{gostrelay.handlers.relay}: the relay server handler
(spec-relay.md 1.5, 1.6, 2.1-2.7, 2.10, 8).

Everything runs on a L{MemoryReactorClock}: the client is a
L{StringTransport}, outgoing dials are recorded in C{reactor.tcpClients} and
completed (or refused) by hand.  Expected status bytes come from the golden
vectors recorded from GOST (C{server_resp_*}).  One deliberate difference
from GOST (design.md, "Compatibility stance"): our OK is written as soon as
the target is connected, before any target byte.
"""

from __future__ import annotations

import zlib
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from gostrelay.build import BuildContext
from gostrelay.config.model import Config
from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.handlers.relay import (
    _MACHINE,
    DEFAULT_READ_TIMEOUT,
    RelayHandler,
    RelayPhase,
    RelayServerProtocol,
)
from gostrelay.statemachine import UnexpectedEvent
from gostrelay.wire.relay import (
    FLAG_UDP,
    AddrFeature,
    Command,
    Network,
    NetworkFeature,
    OpaqueFeature,
    Request,
    TunnelFeature,
    UserAuthFeature,
    connectRequest,
)
from tests import vectors
from tests.support.fakes import HalfCloseableTransport, TCPLikeTransport
from tests.support.udp import UDPMemoryReactor

OK = bytes.fromhex("01000000")
BAD_REQUEST = vectors.caseBytes("server_resp_connect_no_addr")
UNKNOWN_COMMAND = vectors.caseBytes("server_resp_unknown_cmd_associate")
UNAUTHORIZED = vectors.caseBytes("server_resp_unauthorized")
UNAUTHORIZED_MISSING = vectors.caseBytes("server_resp_unauthorized_missing_auth")
FORBIDDEN = vectors.caseBytes("server_resp_bind_forbidden")
NETWORK_UNREACHABLE = vectors.caseBytes("server_resp_connect_refused")
SERVICE_UNAVAILABLE = bytes.fromhex("01050000")
HOST_UNREACHABLE = bytes.fromhex("01060000")

CLIENT = IPv4Address("TCP", "127.0.0.1", 5555)


# -- building blocks


def makeHandler(
    *urls: str, reactor: MemoryReactorClock | None = None
) -> tuple[MemoryReactorClock, RelayHandler]:
    """
    A relay handler for the first service of GOST command line C{-L urls}.
    """
    reactor = reactor if reactor is not None else MemoryReactorClock()
    cfg = buildConfigFromCommandLine(list(urls), [])
    return reactor, handlerFromConfig(cfg, reactor)


def handlerFromConfig(cfg: Config, reactor: MemoryReactorClock) -> RelayHandler:
    svc = cfg.services[0]
    return RelayHandler(reactor, svc, BuildContext(reactor, cfg))


def connectClient(
    handler: RelayHandler, transport: StringTransport | None = None
) -> tuple[RelayServerProtocol, StringTransport]:
    """
    A client connection to C{handler}, from 127.0.0.1:5555.
    """
    proto = handler.buildProtocol(CLIENT)
    tr = transport if transport is not None else StringTransport(peerAddress=CLIENT)
    if tr.peerAddr is None:
        tr.peerAddr = CLIENT
    proto.makeConnection(tr)
    return proto, tr


def acceptTarget(reactor: MemoryReactorClock, index: int = -1, transport: StringTransport | None = None):  # type: ignore[no-untyped-def]
    """
    Complete dial C{index}; return the (wrapping) target protocol and its
    transport.
    """
    factory = reactor.tcpClients[index][2]
    proto = factory.buildProtocol(None)
    tr = transport if transport is not None else StringTransport()
    proto.makeConnection(tr)
    return proto, tr


def refuseTarget(reactor: MemoryReactorClock, index: int = -1) -> None:
    factory = reactor.tcpClients[index][2]
    factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))


def dialed(reactor: MemoryReactorClock) -> list[tuple[str, int]]:
    return [(host, port) for host, port, *_ in reactor.tcpClients]


def request(cmd: int, *features: Any) -> bytes:
    return Request(cmd, tuple(features)).encode()


def auth(user: str = "user", password: str = "pass") -> UserAuthFeature:
    return UserAuthFeature(user, password)


TARGET = AddrFeature.fromAddress("127.0.0.1:8080")


class HandlerTestCase(SynchronousTestCase):
    def assertClosedWith(self, tr: StringTransport, expected: bytes) -> None:
        """
        The client got exactly C{expected} and was closed.
        """
        self.assertEqual(tr.value(), expected)
        self.assertTrue(tr.disconnecting, "client connection not closed")

    def assertSilentlyClosed(self, tr: StringTransport) -> None:
        self.assertEqual(tr.value(), b"", "a silent close must write nothing")
        self.assertTrue(tr.disconnecting, "client connection not closed")

    def assertNoDelayedCalls(self, reactor: MemoryReactorClock) -> None:
        self.assertEqual(reactor.getDelayedCalls(), [])


class MachineTests(HandlerTestCase):
    """
    A relay connection's phases are one explicit machine
    (L{gostrelay.handlers.relay.RelayPhase} and its L{TransitionTable}).
    """

    def test_connectPhases(self) -> None:
        """
        CONNECT goes request, dialing, piping, closed; a second loss (a
        wrapper that reports it twice) changes nothing.
        """
        reactor, handler = makeHandler("relay://:0")
        proto, tr = connectClient(handler)
        self.assertEqual(proto.state, RelayPhase.REQUEST)
        proto.dataReceived(request(Command.CONNECT, TARGET))
        self.assertEqual(proto.state, RelayPhase.DIALING)
        target, ttr = acceptTarget(reactor)
        self.assertEqual(proto.state, RelayPhase.PIPING)
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(proto.state, RelayPhase.CLOSED)
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(proto.state, RelayPhase.CLOSED)
        self.assertNoDelayedCalls(reactor)

    def test_refusedIsClosed(self) -> None:
        """
        A refused request ends in closed at once, and what the client sends
        after it is neither parsed nor answered.
        """
        reactor, handler = makeHandler("relay://:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(request(0x7F, TARGET))
        self.assertEqual(proto.state, RelayPhase.CLOSED)
        written = tr.value()
        proto.dataReceived(request(Command.CONNECT, TARGET))
        self.assertEqual(tr.value(), written)
        self.assertEqual(reactor.tcpClients, [])

    def test_everyPhaseTakesTheClientsEvents(self) -> None:
        """
        The client can finish writing or leave in every phase, and a dial
        or BIND under way when it left ends in the closed phase, which
        releases what it brings.
        """
        self.assertEqual(_MACHINE.undeclared(RelayPhase, ["readConnectionLost", "connectionLost"]), [])
        late = ["targetConnected", "channelReady", "dialFailed", "bound", "bindFailed", "channelClosed"]
        self.assertEqual(_MACHINE.undeclared([RelayPhase.CLOSED], late), [])

    def test_impossibleEventIsLoud(self) -> None:
        """
        An event the state cannot take raises instead of being dropped by
        an if-chain: a BIND listener cannot come up while the request is
        still being read.
        """
        reactor, handler = makeHandler("relay://:0")
        proto, tr = connectClient(handler)
        self.assertRaises(UnexpectedEvent, proto._fire, "bound")
        self.assertEqual(proto.state, RelayPhase.REQUEST)


class ConnectTests(HandlerTestCase):
    """
    CONNECT, TCP, the success path (spec 2.3, 2.6, 1.6).
    """

    def test_okPathWithLeftoverPayload(self) -> None:
        """
        A GOST client with nodelay=false sends header and first payload in
        one segment (vector client_connect_tcp_auth_delayed_first_write_hello):
        the target is dialed, the OK is written once it is connected, and
        only then does the leftover payload reach the target, whole.
        """
        reactor, handler = makeHandler("relay://user:pass@:0")
        log: list[tuple[str, bytes]] = []
        proto, tr = connectClient(handler, TCPLikeTransport(log, "client", peerAddress=CLIENT))
        proto.dataReceived(vectors.caseBytes("client_connect_tcp_auth_delayed_first_write_hello"))
        self.assertEqual(dialed(reactor), [("127.0.0.1", 8080)])
        self.assertEqual(tr.value(), b"", "no reply before the target is connected")

        target, ttr = acceptTarget(reactor, transport=TCPLikeTransport(log, "target"))
        self.assertEqual(tr.value(), OK)
        self.assertEqual(ttr.value(), b"hello")
        self.assertEqual(log, [("client", OK), ("target", b"hello")])
        self.assertFalse(tr.disconnecting)
        self.assertNoDelayedCalls(reactor)

    def test_targetBytesAfterOK(self) -> None:
        """
        What the target sends reaches the client after 01000000, verbatim;
        later client bytes reach the target (vector
        server_connect_tcp_nodelay_true_ok_then_echo).
        """
        reactor, handler = makeHandler("relay://user:pass@:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(vectors.caseBytes("client_connect_tcp_ipv4_auth_nodelay"))
        target, ttr = acceptTarget(reactor)
        proto.dataReceived(b"hello")
        self.assertEqual(ttr.value(), b"hello")
        target.dataReceived(b"hello")
        self.assertEqual(tr.value(), vectors.caseBytes("server_connect_tcp_nodelay_true_ok_then_echo"))
        self.assertEqual(proto.pipe.transferred, [5, 5])

    def test_okEvenIfTargetSilent(self) -> None:
        """
        Our OK does not wait for target bytes (unlike GOST's nodelay=false
        default, vector server_connect_tcp_nodelay_false_merged).
        """
        reactor, handler = makeHandler("relay://:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, TARGET))
        acceptTarget(reactor)
        self.assertEqual(tr.value(), OK)

    def test_commandZeroIsConnect(self) -> None:
        """
        Command nibble 0 is served like CONNECT (spec 2.1).
        """
        reactor, handler = makeHandler("relay://:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(request(0x00, TARGET))
        self.assertEqual(dialed(reactor), [("127.0.0.1", 8080)])
        acceptTarget(reactor)
        self.assertEqual(tr.value(), OK)

    def test_ignoredFeatures(self) -> None:
        """
        Tunnel and unknown features are accepted and ignored; the last
        Addr wins.
        """
        reactor, handler = makeHandler("relay://:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(
            request(
                Command.CONNECT,
                AddrFeature.fromAddress("10.9.9.9:1"),
                TunnelFeature(bytes(20)),
                OpaqueFeature(0x7F, b"whatever"),
                TARGET,
            )
        )
        self.assertEqual(dialed(reactor), [("127.0.0.1", 8080)])

    def test_emptyHostIsLocal(self) -> None:
        """
        An Addr with an empty host (C{":7000"}) dials this machine.
        """
        reactor, handler = makeHandler("relay://:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, AddrFeature("", 7000)))
        self.assertEqual(dialed(reactor), [("127.0.0.1", 7000)])

    def test_byteByByte(self) -> None:
        """
        A request split into single bytes is parsed as a whole; payload
        bytes that follow are kept for the target.
        """
        reactor, handler = makeHandler("relay://user:pass@:0")
        proto, tr = connectClient(handler)
        data = vectors.caseBytes("client_connect_tcp_auth_delayed_first_write_hello")
        headerLength = len(data) - len(b"hello")
        for i in range(headerLength):
            self.assertEqual(dialed(reactor), [], f"dialed after only {i} bytes")
            proto.dataReceived(data[i : i + 1])
        self.assertEqual(dialed(reactor), [("127.0.0.1", 8080)])
        for i in range(headerLength, len(data)):
            proto.dataReceived(data[i : i + 1])
        target, ttr = acceptTarget(reactor)
        self.assertEqual(tr.value(), OK)
        self.assertEqual(ttr.value(), b"hello")

    def test_clientPausedWhileDialing(self) -> None:
        """
        The server reads no client byte while dialing (spec 2.1): the
        client transport is paused once the request is complete and resumed
        when the pipe starts; the two transports are then each other's
        producer.
        """
        reactor, handler = makeHandler("relay://:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, TARGET))
        self.assertEqual(tr.producerState, "paused")
        target, ttr = acceptTarget(reactor)
        self.assertEqual(tr.producerState, "producing")
        self.assertIs(tr.producer, ttr)
        self.assertIs(ttr.producer, tr)

    def test_bytesWhileDialingKept(self) -> None:
        """
        Bytes that arrive while dialing (already read before the pause) go
        to the target after the OK, in order.
        """
        reactor, handler = makeHandler("relay://:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, TARGET) + b"one,")
        proto.dataReceived(b"two")
        target, ttr = acceptTarget(reactor)
        self.assertEqual(ttr.value(), b"one,two")
        self.assertEqual(tr.value(), OK)

    def test_readTimeoutCancelledAfterRequest(self) -> None:
        """
        The read deadline covers the request only: once it is parsed,
        waiting longer than readTimeout (here for a slow dial) does not
        close the connection.
        """
        reactor, handler = makeHandler("relay://:0?dialTimeout=60s")
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, TARGET))
        self.assertEqual(len(reactor.getDelayedCalls()), 1, "only the dial timer should be left")
        reactor.advance(DEFAULT_READ_TIMEOUT + 30)
        self.assertFalse(tr.disconnecting)
        acceptTarget(reactor)
        self.assertEqual(tr.value(), OK)
        self.assertNoDelayedCalls(reactor)


class AuthTests(HandlerTestCase):
    """
    Authentication (spec 2.2).
    """

    def test_goodCredentials(self) -> None:
        """
        The configured user and password are accepted.
        """
        reactor, handler = makeHandler("relay://user:pass@:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, auth("user", "pass"), TARGET))
        self.assertEqual(dialed(reactor), [("127.0.0.1", 8080)])
        acceptTarget(reactor)
        self.assertEqual(tr.value(), OK)

    def test_wrongPassword(self) -> None:
        """
        A wrong password gets 01020000 and a close, and nothing is dialed
        (vector server_resp_unauthorized).
        """
        reactor, handler = makeHandler("relay://user:pass@:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, auth("user", "wrong"), TARGET))
        self.assertClosedWith(tr, UNAUTHORIZED)
        self.assertEqual(dialed(reactor), [])
        self.assertNoDelayedCalls(reactor)

    def test_wrongUser(self) -> None:
        """
        User names are compared exactly (case-sensitive).
        """
        reactor, handler = makeHandler("relay://user:pass@:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, auth("User", "pass"), TARGET))
        self.assertClosedWith(tr, UNAUTHORIZED)

    def test_missingUserAuth(self) -> None:
        """
        No UserAuth feature at all is checked as ""/"" and rejected
        (vector server_resp_unauthorized_missing_auth).
        """
        reactor, handler = makeHandler("relay://user:pass@:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(vectors.caseBytes("client_connect_tcp_ipv4_noauth_nodelay"))
        self.assertClosedWith(tr, UNAUTHORIZED_MISSING)
        self.assertEqual(dialed(reactor), [])

    def test_lastUserAuthWins(self) -> None:
        """
        With several UserAuth features the last one is checked.
        """
        reactor, handler = makeHandler("relay://user:pass@:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, auth("user", "pass"), auth("user", "nope"), TARGET))
        self.assertClosedWith(tr, UNAUTHORIZED)

    def test_authParameter(self) -> None:
        """
        C{?auth=base64(user:pass)} configures the same check.
        """
        reactor, handler = makeHandler("relay://:0?auth=dXNlcjpwYXNz")
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, auth("user", "nope"), TARGET))
        self.assertClosedWith(tr, UNAUTHORIZED)
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, auth("user", "pass"), TARGET))
        self.assertEqual(dialed(reactor), [("127.0.0.1", 8080)])

    def autherConfig(self, **handler: Any) -> Config:
        return Config.fromDict(
            {
                "services": [
                    {
                        "name": "relay-0",
                        "addr": ":0",
                        "handler": {"type": "relay", **handler},
                        "listener": {"type": "tcp"},
                    }
                ],
                "authers": [
                    {
                        "name": "users",
                        "auths": [
                            {"username": "alice", "password": ""},
                            {"username": "bob", "password": "secret"},
                        ],
                    },
                    {"name": "more", "auths": [{"username": "carol", "password": "c"}]},
                ],
            }
        )

    def test_emptyStoredPasswordAcceptsAny(self) -> None:
        """
        A user whose stored password is empty is accepted with any
        password (GOST's built-in authenticator).
        """
        reactor = MemoryReactorClock()
        handler = handlerFromConfig(self.autherConfig(auther="users"), reactor)
        for password in ("", "anything", "x" * 255):
            proto, tr = connectClient(handler)
            proto.dataReceived(request(Command.CONNECT, auth("alice", password), TARGET))
            self.assertFalse(tr.disconnecting, f"alice rejected with password {password!r}")
        self.assertEqual(len(reactor.tcpClients), 3)

    def test_autherChecksOthers(self) -> None:
        """
        Other users of the same auther still need their password; unknown
        users are rejected.
        """
        reactor = MemoryReactorClock()
        handler = handlerFromConfig(self.autherConfig(auther="users"), reactor)
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, auth("bob", "wrong"), TARGET))
        self.assertClosedWith(tr, UNAUTHORIZED)
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, auth("mallory", ""), TARGET))
        self.assertClosedWith(tr, UNAUTHORIZED)
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, TARGET))
        self.assertClosedWith(tr, UNAUTHORIZED)
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, auth("bob", "secret"), TARGET))
        self.assertFalse(tr.disconnecting)
        self.assertEqual(len(reactor.tcpClients), 1)

    def test_severalAuthers(self) -> None:
        """
        With C{authers: [a, b]} any one accepting is enough.
        """
        reactor = MemoryReactorClock()
        handler = handlerFromConfig(self.autherConfig(authers=["users", "more"]), reactor)
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, auth("carol", "c"), TARGET))
        self.assertFalse(tr.disconnecting)
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, auth("bob", "secret"), TARGET))
        self.assertFalse(tr.disconnecting)
        self.assertEqual(len(reactor.tcpClients), 2)

    def test_noAuthenticatorAcceptsCredentials(self) -> None:
        """
        Credentials sent to a server without authentication are accepted.
        """
        reactor, handler = makeHandler("relay://:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(vectors.caseBytes("client_connect_tcp_ipv4_auth_nodelay"))
        self.assertEqual(dialed(reactor), [("127.0.0.1", 8080)])
        acceptTarget(reactor)
        self.assertEqual(tr.value(), OK)

    def test_emptyUsernameMeansNoAuth(self) -> None:
        """
        A single auth with an empty user name configures no authenticator.
        """
        reactor, handler = makeHandler("relay://:secret@:0")
        self.assertIsNone(handler.options.authenticator)
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, TARGET))
        self.assertEqual(dialed(reactor), [("127.0.0.1", 8080)])


class RefusalTests(HandlerTestCase):
    """
    Requests answered with an error status and closed (spec 1.5, 2.1, 2.3).
    """

    def refused(self, url: str, data: bytes) -> tuple[MemoryReactorClock, StringTransport]:
        reactor, handler = makeHandler(url)
        proto, tr = connectClient(handler)
        proto.dataReceived(data)
        return reactor, tr

    def test_connectWithoutAddr(self) -> None:
        """
        CONNECT without an Addr feature: 01010000 (vector
        server_resp_connect_no_addr).
        """
        reactor, tr = self.refused("relay://user:pass@:0", request(Command.CONNECT, auth()))
        self.assertClosedWith(tr, BAD_REQUEST)
        self.assertEqual(dialed(reactor), [])
        self.assertNoDelayedCalls(reactor)

    def test_unknownCommand(self) -> None:
        """
        Command 0x03 (ASSOCIATE) and other unknown nibbles: 01010000
        (vector server_resp_unknown_cmd_associate).
        """
        for cmd in (Command.ASSOCIATE, 0x04, 0x0F):
            reactor, tr = self.refused("relay://:0", request(cmd, TARGET))
            self.assertClosedWith(tr, UNKNOWN_COMMAND)
            self.assertEqual(dialed(reactor), [])

    def test_authBeforeCommand(self) -> None:
        """
        Authentication is checked before the command: an unauthenticated
        unknown command gets 0x02, not 0x01.
        """
        reactor, tr = self.refused("relay://user:pass@:0", request(Command.ASSOCIATE, TARGET))
        self.assertClosedWith(tr, UNAUTHORIZED)

    def test_bindForbidden(self) -> None:
        """
        BIND without bind=true: 01030000 (vector server_resp_bind_forbidden).
        """
        reactor, tr = self.refused(
            "relay://:0", request(Command.BIND, NetworkFeature(Network.TCP), AddrFeature.fromAddress(":0"))
        )
        self.assertClosedWith(tr, FORBIDDEN)
        self.assertNoDelayedCalls(reactor)

    def test_bindCannotListen(self) -> None:
        """
        A TCP BIND whose port cannot be bound: 01050000 (ServiceUnavailable,
        spec-relay.md 2.8).
        """
        from twisted.internet.error import CannotListenError

        reactor, handler = makeHandler("relay://:0?bind=true")

        def refuse(*args: Any, **kwargs: Any) -> None:
            raise CannotListenError("", 2222, OSError(98, "Address already in use"))

        reactor.listenTCP = refuse  # type: ignore[method-assign]
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.BIND, NetworkFeature(Network.TCP), AddrFeature.fromAddress("0.0.0.0:2222")))
        self.assertClosedWith(tr, SERVICE_UNAVAILABLE)
        self.assertNoDelayedCalls(reactor)

    def test_bindListens(self) -> None:
        """
        A TCP BIND with bind=true listens on the requested port and answers
        OK with the bound address; GOST's buggy empty-host form (the domain
        "0.0.0.0::2222", port 0) binds port 2222.
        """
        reactor, handler = makeHandler("relay://:0?bind=true")
        proto, tr = connectClient(handler)
        proto.dataReceived(
            request(Command.BIND, NetworkFeature(Network.TCP), AddrFeature("0.0.0.0::2222", 0, 3))
        )
        self.assertEqual([port for port, *_ in reactor.tcpServers], [2222])
        self.assertTrue(tr.value().startswith(b"\x01\x00"), tr.value())
        self.assertFalse(tr.disconnecting)

    def test_bindBadNetwork(self) -> None:
        """
        BIND on a network other than tcp/udp/unix (here C{ip}): 01010000.
        """
        reactor, tr = self.refused(
            "relay://:0?bind=true",
            request(Command.BIND, NetworkFeature(Network.IP), AddrFeature.fromAddress(":0")),
        )
        self.assertClosedWith(tr, BAD_REQUEST)

    def test_networkIP(self) -> None:
        """
        Network C{ip} (0x0002) cannot be dialed: 01070000.
        """
        reactor, tr = self.refused("relay://:0", request(Command.CONNECT, NetworkFeature(Network.IP), TARGET))
        self.assertClosedWith(tr, NETWORK_UNREACHABLE)
        self.assertEqual(dialed(reactor), [])

    def test_unknownNetworkIsTCP(self) -> None:
        """
        An unknown Network value is treated as TCP.
        """
        reactor, tr = self.refused("relay://:0", request(Command.CONNECT, NetworkFeature(0x1234), TARGET))
        self.assertEqual(dialed(reactor), [("127.0.0.1", 8080)])
        self.assertFalse(tr.disconnecting)


class DialTests(HandlerTestCase):
    """
    Dialing the target (spec 2.3) and leaving while dialing.
    """

    def test_refused(self) -> None:
        """
        A refused dial gets 01070000 (vector server_resp_connect_refused)
        and a close; no timer is left.
        """
        reactor, handler = makeHandler("relay://:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, AddrFeature.fromAddress("127.0.0.1:1")))
        self.assertEqual(dialed(reactor), [("127.0.0.1", 1)])
        refuseTarget(reactor)
        self.assertClosedWith(tr, NETWORK_UNREACHABLE)
        self.assertNoDelayedCalls(reactor)

    def test_dialTimeout(self) -> None:
        """
        A dial that does not complete within dialTimeout (15 s) is given up:
        01070000, and the connection attempt is stopped.
        """
        reactor, handler = makeHandler("relay://:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, TARGET))
        reactor.advance(14)
        self.assertEqual(tr.value(), b"")
        reactor.advance(1)
        self.assertClosedWith(tr, NETWORK_UNREACHABLE)
        self.assertTrue(reactor.connectors[0].stoppedConnecting)
        self.assertNoDelayedCalls(reactor)

    def test_retries(self) -> None:
        """
        With retries=1 a refused dial is tried once more before 0x07.
        """
        reactor, handler = makeHandler("relay://:0?retries=1")
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, TARGET))
        refuseTarget(reactor)
        self.assertEqual(tr.value(), b"")
        self.assertEqual(len(reactor.tcpClients), 2)
        refuseTarget(reactor)
        self.assertClosedWith(tr, NETWORK_UNREACHABLE)
        self.assertNoDelayedCalls(reactor)

    def test_clientLeavesWhileDialing(self) -> None:
        """
        A client that disconnects while the target is being dialed cancels
        the dial: the attempt is stopped, nothing is written, no timer is
        left.
        """
        reactor, handler = makeHandler("relay://:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, TARGET))
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(reactor.connectors[0].stoppedConnecting)
        self.assertEqual(tr.value(), b"")
        self.assertEqual(len(reactor.tcpClients), 1)
        self.assertNoDelayedCalls(reactor)

    def test_clientLeavesWhileDialingWithRetries(self) -> None:
        """
        Leaving while dialing must cancel the dial also when the handler
        has retries: the cancellation is not a failed attempt to retry
        (L{Router.connect} once caught the L{CancelledError} like a dial
        timeout and started the next attempt, whose 15 s timer outlived the
        client).
        """
        reactor, handler = makeHandler("relay://:0?retries=1")
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, TARGET))
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(reactor.connectors[0].stoppedConnecting)
        self.assertEqual(len(reactor.tcpClients), 1, "a new dial was started after the client left")
        self.assertNoDelayedCalls(reactor)


class OptionsOnHandlerTests(HandlerTestCase):
    """
    The handler's options read and assigned on the handler itself reach the
    L{HandlerOptions} its connections use (embedders assign
    C{handler.router}; that must not be a silent no-op).
    """

    def test_readThrough(self) -> None:
        _, handler = makeHandler("relay://:0?denyPrivate=true&idleTimeout=7s")
        self.assertIs(handler.router, handler.options.router)
        self.assertIs(handler.guard, handler.options.guard)
        self.assertTrue(handler.denyPrivate)
        self.assertEqual(handler.idleTimeout, 7.0)

    def test_assignedRouterIsUsed(self) -> None:
        """
        A router assigned as C{handler.router} carries the next CONNECT.
        """
        reactor, handler = makeHandler("relay://:0")
        calls: list[Any] = []

        class RecordingRouter:
            guard = None
            dialTimeout = 15.0

            def connect(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
                calls.append(args)
                return Deferred()

        handler.router = RecordingRouter()
        self.assertIs(handler.options.router, handler.router)
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, TARGET))
        self.assertEqual(len(calls), 1)
        self.assertEqual(reactor.tcpClients, [])
        proto.connectionLost(Failure(ConnectionDone()))


class SilentCloseTests(HandlerTestCase):
    """
    Requests GOST drops without any reply (spec 1.6).
    """

    def test_badVersion(self) -> None:
        """
        VER 0x02: nothing written, connection closed (vector
        server_bad_version_reply, whose reply is empty).
        """
        case = vectors.case("server_bad_version_reply")
        reactor, handler = makeHandler("relay://:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(bytes.fromhex(case["fields"]["request_sent"]))
        self.assertEqual(tr.value(), bytes.fromhex(case["hex"]))
        self.assertSilentlyClosed(tr)
        self.assertEqual(dialed(reactor), [])
        self.assertNoDelayedCalls(reactor)

    def test_httpJunk(self) -> None:
        """
        An HTTP request on the relay port is closed silently.
        """
        reactor, handler = makeHandler("relay://:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
        self.assertSilentlyClosed(tr)
        self.assertNoDelayedCalls(reactor)

    def test_featurePastEnd(self) -> None:
        """
        A feature whose length runs past FLEN: silent close.
        """
        reactor, handler = makeHandler("relay://:0")
        proto, tr = connectClient(handler)
        # FLEN 5 but the Addr feature claims 7 bytes of data.
        proto.dataReceived(bytes.fromhex("01010005020007017f"))
        self.assertSilentlyClosed(tr)
        self.assertEqual(dialed(reactor), [])
        self.assertNoDelayedCalls(reactor)

    def test_shortKnownFeature(self) -> None:
        """
        A known feature that fails its decoder (a 1-byte Network): silent
        close.
        """
        reactor, handler = makeHandler("relay://:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(bytes.fromhex("0101000404000100"))
        self.assertSilentlyClosed(tr)

    def test_truncatedHeaderTimeout(self) -> None:
        """
        A request that stops short is closed silently after readTimeout
        (15 s by default), not before.
        """
        reactor, handler = makeHandler("relay://:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(b"\x01\x01")
        reactor.advance(14)
        self.assertFalse(tr.disconnecting)
        reactor.advance(1)
        self.assertSilentlyClosed(tr)
        self.assertNoDelayedCalls(reactor)

    def test_truncatedBodyTimeout(self) -> None:
        """
        The deadline covers the features too, and runs from the connection,
        not from the last byte.
        """
        reactor, handler = makeHandler("relay://:0")
        proto, tr = connectClient(handler)
        reactor.advance(10)
        proto.dataReceived(bytes.fromhex("0101000a0200"))
        reactor.advance(5)
        self.assertSilentlyClosed(tr)

    def test_silentConnectionTimeout(self) -> None:
        """
        A client that sends nothing is closed after readTimeout too.
        """
        reactor, handler = makeHandler("relay://:0")
        proto, tr = connectClient(handler)
        reactor.advance(DEFAULT_READ_TIMEOUT)
        self.assertSilentlyClosed(tr)

    def test_readTimeoutOption(self) -> None:
        """
        C{readTimeout=5s} shortens the deadline.
        """
        reactor, handler = makeHandler("relay://:0?readTimeout=5s")
        self.assertEqual(handler.options.readTimeout, 5.0)
        proto, tr = connectClient(handler)
        proto.dataReceived(b"\x01")
        reactor.advance(4)
        self.assertFalse(tr.disconnecting)
        reactor.advance(1)
        self.assertSilentlyClosed(tr)
        self.assertNoDelayedCalls(reactor)

    def test_readTimeoutZeroIsDefault(self) -> None:
        """
        readTimeout values <= 0 mean the 15 s default.
        """
        reactor, handler = makeHandler("relay://:0?readTimeout=0s")
        self.assertEqual(handler.options.readTimeout, DEFAULT_READ_TIMEOUT)

    def test_eofBeforeRequest(self) -> None:
        """
        A client half-closing before a complete request is closed silently
        and its timer cancelled.
        """
        reactor, handler = makeHandler("relay://:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(b"\x01\x01\x00")
        proto.readConnectionLost()
        self.assertSilentlyClosed(tr)
        self.assertNoDelayedCalls(reactor)

    def test_lostBeforeRequest(self) -> None:
        """
        A client gone before a complete request leaves no timer behind.
        """
        reactor, handler = makeHandler("relay://:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(b"\x01")
        proto.connectionLost(Failure(ConnectionLost()))
        self.assertNoDelayedCalls(reactor)
        self.assertEqual(tr.value(), b"")


FORWARD = "relay://:0/127.0.0.1:7001,127.0.0.1:7002"


class ForwardTests(HandlerTestCase):
    """
    Forward mode: the service has forwarder nodes (spec 2.7, 8).
    """

    def forward(self, handler: RelayHandler, data: bytes | None = None):  # type: ignore[no-untyped-def]
        proto, tr = connectClient(handler)
        proto.dataReceived(data if data is not None else request(Command.CONNECT, TARGET))
        return proto, tr

    def test_ignoresClientAddress(self) -> None:
        """
        The request's Addr is ignored: the forwarder node is dialed, and a
        request without Addr is fine too.
        """
        reactor, handler = makeHandler(FORWARD)
        proto, tr = self.forward(handler, request(Command.CONNECT, AddrFeature.fromAddress("10.1.2.3:80")))
        self.assertEqual(dialed(reactor), [("127.0.0.1", 7001)])
        acceptTarget(reactor)
        self.assertEqual(tr.value(), OK)
        proto, tr = self.forward(handler, request(Command.CONNECT))
        self.assertEqual(dialed(reactor)[1], ("127.0.0.1", 7002))
        acceptTarget(reactor)
        self.assertEqual(tr.value(), OK)

    def test_roundRobin(self) -> None:
        """
        Successive requests go to the nodes in turn.
        """
        reactor, handler = makeHandler(FORWARD)
        for _ in range(4):
            self.forward(handler)
            acceptTarget(reactor)
        self.assertEqual(
            [port for _, port in dialed(reactor)],
            [7001, 7002, 7001, 7002],
        )

    def test_refusedNodeMarkedFailed(self) -> None:
        """
        A refused node gets 01060000 (not 0x07) and is marked failed, so the
        next requests go to the other node.
        """
        reactor, handler = makeHandler(FORWARD)
        proto, tr = self.forward(handler)
        refuseTarget(reactor)
        self.assertClosedWith(tr, HOST_UNREACHABLE)
        self.assertEqual(handler.options.forwarder.nodes[0].failures, 1)
        for _ in range(3):
            proto, tr = self.forward(handler)
            acceptTarget(reactor)
            self.assertEqual(tr.value(), OK)
        self.assertEqual([port for _, port in dialed(reactor)], [7001, 7002, 7002, 7002])
        self.assertNoDelayedCalls(reactor)

    def test_failTimeout(self) -> None:
        """
        With C{maxFails=1&failTimeout=30s} a failed node is left out for
        30 s, then used again; a success resets its counter.
        """
        reactor, handler = makeHandler(FORWARD + "?maxFails=1&failTimeout=30s")
        self.assertEqual(handler.options.forwarder.failTimeout, 30.0)
        self.forward(handler)
        refuseTarget(reactor)
        reactor.advance(29)
        self.forward(handler)
        acceptTarget(reactor)
        self.assertEqual(dialed(reactor)[-1], ("127.0.0.1", 7002))
        reactor.advance(1)
        for _ in range(2):
            self.forward(handler)
            acceptTarget(reactor)
        self.assertIn(("127.0.0.1", 7001), dialed(reactor)[2:])
        self.assertEqual(handler.options.forwarder.nodes[0].failures, 0)

    def test_defaultFailTimeout(self) -> None:
        """
        Without selector options the YAML default (maxFails 1, 10 s)
        applies.
        """
        reactor, handler = makeHandler(FORWARD)
        self.forward(handler)
        refuseTarget(reactor)
        reactor.advance(9)
        self.forward(handler)
        acceptTarget(reactor)
        reactor.advance(1)
        for _ in range(2):
            self.forward(handler)
            acceptTarget(reactor)
        self.assertEqual([port for _, port in dialed(reactor)], [7001, 7002, 7001, 7002])

    def test_bindIsForwarded(self) -> None:
        """
        In forward mode any command is a forward connect: BIND (even
        without bind=true) and unknown commands dial the node and get OK.
        """
        reactor, handler = makeHandler(FORWARD)
        for cmd in (Command.BIND, Command.ASSOCIATE):
            proto, tr = self.forward(
                handler, request(cmd, NetworkFeature(Network.TCP), AddrFeature.fromAddress(":0"))
            )
            target, ttr = acceptTarget(reactor)
            self.assertEqual(tr.value(), OK)
            self.assertFalse(tr.disconnecting)
            proto.dataReceived(b"data")
            self.assertEqual(ttr.value(), b"data")
        self.assertEqual([port for _, port in dialed(reactor)], [7001, 7002])

    def test_authStillRequired(self) -> None:
        """
        Forward mode still authenticates.
        """
        reactor, handler = makeHandler("relay://user:pass@:0/127.0.0.1:7001")
        proto, tr = self.forward(handler, request(Command.CONNECT, auth("user", "bad")))
        self.assertClosedWith(tr, UNAUTHORIZED)
        self.assertEqual(dialed(reactor), [])

    def test_emptyHostNode(self) -> None:
        """
        A node C{:7001} is this machine.
        """
        reactor, handler = makeHandler("relay://:0/:7001")
        self.forward(handler)
        self.assertEqual(dialed(reactor), [("127.0.0.1", 7001)])

    def test_hashByAuthenticatedUser(self) -> None:
        """
        strategy=hash uses the authenticated user as client ID:
        crc32("alice") % 2 == 1 picks the second node (the client IP,
        crc32("127.0.0.1") % 2 == 0, would pick the first).
        """
        self.assertEqual((zlib.crc32(b"alice") % 2, zlib.crc32(b"127.0.0.1") % 2), (1, 0))
        reactor, handler = makeHandler("relay://alice:pw@:0/127.0.0.1:7001,127.0.0.1:7002?strategy=hash")
        for _ in range(3):
            self.forward(handler, request(Command.CONNECT, auth("alice", "pw")))
        self.assertEqual([port for _, port in dialed(reactor)], [7002] * 3)

    def test_hashByClientIP(self) -> None:
        """
        Without credentials the client IP is the hash source.
        """
        reactor, handler = makeHandler("relay://:0/127.0.0.1:7001,127.0.0.1:7002?strategy=hash")
        for _ in range(3):
            self.forward(handler, request(Command.CONNECT))
        self.assertEqual([port for _, port in dialed(reactor)], [7001] * 3)

    def test_hashByIPv6ClientIP(self) -> None:
        """
        For an IPv6 client the hash source is the bare IP, as Go's
        C{net.SplitHostPort} gives it ("2001:db8::1", crc32 % 2 == 0), not
        the bracketed log form ("[2001:db8::1]", crc32 % 2 == 1).

        KNOWN BUG (left failing on purpose, minor): L{RelayServerProtocol._forward}
        hashes C{self.peer.rsplit(":", 1)[0]}, which keeps the brackets, so
        IPv6 clients are spread differently from GOST.
        """
        self.assertEqual((zlib.crc32(b"2001:db8::1") % 2, zlib.crc32(b"[2001:db8::1]") % 2), (0, 1))
        reactor, handler = makeHandler("relay://:0/127.0.0.1:7001,127.0.0.1:7002?strategy=hash")
        peer = IPv6Address("TCP", "2001:db8::1", 5555)
        proto = handler.buildProtocol(peer)
        proto.makeConnection(StringTransport(peerAddress=peer))
        proto.dataReceived(request(Command.CONNECT))
        self.assertEqual(dialed(reactor), [("127.0.0.1", 7001)])

    def test_hashIgnoresUnauthenticatedUser(self) -> None:
        """
        Credentials sent to a server without an authenticator do not become
        the client ID (spec 2.1 notes: "the username is only used in logs");
        the client IP stays the hash source.

        KNOWN BUG (left failing on purpose): L{RelayServerProtocol._forward}
        hashes on C{self.user} whenever a UserAuth feature is present, even
        with no authenticator configured, so "alice" picks 127.0.0.1:7002
        instead of the IP's 127.0.0.1:7001.
        """
        reactor, handler = makeHandler("relay://:0/127.0.0.1:7001,127.0.0.1:7002?strategy=hash")
        self.forward(handler, request(Command.CONNECT, auth("alice", "pw")))
        self.assertEqual(dialed(reactor), [("127.0.0.1", 7001)])


class UDPTests(HandlerTestCase):
    """
    UDP CONNECT (spec 2.4, 2.5) and UDP in forward mode (2.7): the client
    stream carries C{LEN(2) PAYLOAD} frames, the server a connected UDP
    socket.
    """

    def test_udpConnect(self) -> None:
        """
        CONNECT|FUDP with the first datagram in the same segment (vector
        client_connect_udp_auth_delayed_first_write_hello): a UDP socket
        connected to the target, OK, the datagram sent whole; a datagram
        from the target comes back framed after the OK (vector
        server_connect_udp_nodelay_true_ok_then_echo).
        """
        reactor = UDPMemoryReactor()
        reactor, handler = makeHandler("relay://user:pass@:0", reactor=reactor)
        proto, tr = connectClient(handler)
        proto.dataReceived(vectors.caseBytes("client_connect_udp_auth_delayed_first_write_hello"))
        self.assertEqual(dialed(reactor), [], "UDP CONNECT must not dial TCP")
        self.assertEqual(len(reactor.udpPorts), 1)
        sock = reactor.udpPorts[0]
        self.assertEqual(sock.connectedTo, ("127.0.0.1", 53))
        self.assertEqual(tr.value(), OK)
        self.assertEqual(sock.sent, [(b"hello", ("127.0.0.1", 53))])
        sock.protocol.datagramReceived(b"hello", ("127.0.0.1", 53))
        self.assertEqual(tr.value(), vectors.caseBytes("server_connect_udp_nodelay_true_ok_then_echo"))
        self.assertFalse(tr.disconnecting)

    def test_framesSplitAnyhow(self) -> None:
        """
        Frames split across reads, several in one read and an empty
        datagram are each one datagram.
        """
        reactor = UDPMemoryReactor()
        reactor, handler = makeHandler("relay://:0", reactor=reactor)
        proto, tr = connectClient(handler)
        proto.dataReceived(request(FLAG_UDP | Command.CONNECT, NetworkFeature(Network.UDP), TARGET))
        sock = reactor.udpPorts[0]
        proto.dataReceived(b"\x00")
        proto.dataReceived(b"\x03ab")
        proto.dataReceived(b"c\x00\x00\x00\x01z")
        self.assertEqual([d for d, _ in sock.sent], [b"abc", b"", b"z"])

    def test_networkFeatureAlone(self) -> None:
        """
        The Network feature (0x0001) without the FUDP flag also selects UDP.
        """
        reactor = UDPMemoryReactor()
        reactor, handler = makeHandler("relay://:0", reactor=reactor)
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, NetworkFeature(Network.UDP), TARGET))
        self.assertEqual(dialed(reactor), [])
        self.assertEqual(reactor.udpPorts[0].connectedTo, ("127.0.0.1", 8080))
        self.assertEqual(tr.value(), OK)

    def test_clientGoneClosesSocket(self) -> None:
        """
        The association lives until the stream closes; then the socket is
        closed and nothing is left scheduled.
        """
        reactor = UDPMemoryReactor()
        reactor, handler = makeHandler("relay://:0", reactor=reactor)
        proto, tr = connectClient(handler, TCPLikeTransport(peerAddress=CLIENT))
        proto.dataReceived(connectRequest("127.0.0.1:53", network="udp").encode())
        sock = reactor.udpPorts[0]
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertFalse(sock.listening)
        self.assertNoDelayedCalls(reactor)

    def test_udpSocketFailure(self) -> None:
        """
        A UDP socket that cannot be made is a failed dial: 01070000.
        """
        from twisted.internet.error import CannotListenError

        reactor = UDPMemoryReactor()
        reactor.udpError = CannotListenError("0.0.0.0", 0, OSError("no"))
        reactor, handler = makeHandler("relay://:0", reactor=reactor)
        proto, tr = connectClient(handler)
        proto.dataReceived(connectRequest("127.0.0.1:53", network="udp").encode())
        self.assertClosedWith(tr, NETWORK_UNREACHABLE)
        self.assertNoDelayedCalls(reactor)

    def test_udpForward(self) -> None:
        """
        A UDP request in forward mode goes to the node's UDP port, whatever
        its Addr says.
        """
        reactor = UDPMemoryReactor()
        reactor, handler = makeHandler(FORWARD, reactor=reactor)
        proto, tr = connectClient(handler)
        proto.dataReceived(request(FLAG_UDP | Command.CONNECT, AddrFeature.fromAddress("10.1.2.3:53")))
        self.assertEqual(dialed(reactor), [])
        self.assertEqual(reactor.udpPorts[0].connectedTo, ("127.0.0.1", 7001))
        self.assertEqual(tr.value(), OK)

    def test_udpForwardFailure(self) -> None:
        """
        A failed UDP forward answers 01060000 and marks the node failed.
        """
        from twisted.internet.error import CannotListenError

        reactor = UDPMemoryReactor()
        reactor.udpError = CannotListenError("0.0.0.0", 0, OSError("no"))
        reactor, handler = makeHandler(FORWARD, reactor=reactor)
        proto, tr = connectClient(handler)
        proto.dataReceived(request(FLAG_UDP | Command.CONNECT))
        self.assertClosedWith(tr, HOST_UNREACHABLE)
        self.assertEqual(handler.options.forwarder.nodes[0].failures, 1)


class HalfCloseTests(HandlerTestCase):
    """
    EOF and teardown once piping (spec 2.10).
    """

    def piping(self, targetTransport: StringTransport, clientTransport: StringTransport | None = None):  # type: ignore[no-untyped-def]
        reactor, handler = makeHandler("relay://:0")
        proto, tr = connectClient(handler, clientTransport)
        proto.dataReceived(request(Command.CONNECT, TARGET))
        target, ttr = acceptTarget(reactor, transport=targetTransport)
        self.assertEqual(tr.value(), OK)
        return reactor, proto, tr, target, ttr

    def test_clientEOFHalfClosesTarget(self) -> None:
        """
        Client EOF after piping half-closes a TCP target (shutdown write);
        the target can still answer, and its own EOF then ends the pipe.
        """
        reactor, proto, tr, target, ttr = self.piping(HalfCloseableTransport())
        proto.dataReceived(b"request")
        proto.readConnectionLost()
        self.assertTrue(ttr.writeClosed)
        self.assertFalse(ttr.disconnecting)
        self.assertFalse(tr.disconnecting)
        target.dataReceived(b"response")
        self.assertEqual(tr.value(), OK + b"response")
        self.assertEqual(ttr.value(), b"request")
        target.readConnectionLost()
        self.assertTrue(tr.disconnecting)
        self.assertTrue(ttr.disconnecting)

    def test_clientEOFClosesPlainTarget(self) -> None:
        """
        A target that cannot half-close is closed fully on client EOF, and
        so is the client.
        """
        reactor, proto, tr, target, ttr = self.piping(StringTransport())
        proto.readConnectionLost()
        self.assertTrue(ttr.disconnecting)
        self.assertTrue(tr.disconnecting)

    def test_targetEOFClosesPlainClient(self) -> None:
        """
        Target EOF is passed on to the client after the target's bytes;
        a client stream that cannot half-close is closed.
        """
        reactor, proto, tr, target, ttr = self.piping(HalfCloseableTransport())
        target.dataReceived(b"bye")
        target.readConnectionLost()
        self.assertEqual(tr.value(), OK + b"bye")
        self.assertTrue(tr.disconnecting)

    def test_clientEOFWhileDialing(self) -> None:
        """
        A client EOF that arrives while dialing is passed on once the
        target is connected, after the OK and the buffered payload.
        """
        reactor, handler = makeHandler("relay://:0")
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, TARGET) + b"last words")
        proto.readConnectionLost()
        self.assertFalse(tr.disconnecting)
        target, ttr = acceptTarget(reactor, transport=HalfCloseableTransport())
        self.assertEqual(tr.value(), OK)
        self.assertEqual(ttr.value(), b"last words")
        self.assertTrue(ttr.writeClosed)
        self.assertFalse(tr.disconnecting)

    def test_clientLostClosesTarget(self) -> None:
        """
        The client going away closes the target; once both are gone the
        pipe is done and nothing is left scheduled.
        """
        reactor, proto, tr, target, ttr = self.piping(
            TCPLikeTransport(), TCPLikeTransport(peerAddress=CLIENT)
        )
        proto.dataReceived(b"abc")
        target.dataReceived(b"de")
        proto.connectionLost(Failure(ConnectionLost()))
        self.assertTrue(ttr.disconnecting)
        target.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(proto.pipe._done)
        self.assertEqual(proto.pipe.transferred, [3, 2])
        self.assertNoDelayedCalls(reactor)

    def test_targetLostClosesClient(self) -> None:
        """
        The target going away closes the client.
        """
        reactor, proto, tr, target, ttr = self.piping(
            TCPLikeTransport(), TCPLikeTransport(peerAddress=CLIENT)
        )
        target.connectionLost(Failure(ConnectionLost()))
        self.assertTrue(tr.disconnecting)
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(proto.pipe._done)

    def test_idleTimeout(self) -> None:
        """
        C{idleTimeout=30s} closes both sides after 30 s without a byte.
        """
        reactor, handler = makeHandler("relay://:0?idleTimeout=30s")
        proto, tr = connectClient(handler)
        proto.dataReceived(request(Command.CONNECT, TARGET))
        target, ttr = acceptTarget(reactor)
        reactor.advance(20)
        proto.dataReceived(b"x")
        reactor.advance(20)
        self.assertFalse(tr.disconnecting)
        reactor.advance(10)
        self.assertTrue(tr.disconnecting)
        self.assertTrue(ttr.disconnecting)
        self.assertTrue(proto.pipe.idleTimedOut)
