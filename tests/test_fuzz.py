"""
Fuzzing the byte-facing state machines with hypothesis: the relay server
(L{RelayHandler} over a L{StringTransport}, every dial in our hands), the
local proxy entry (C{auto}: HTTP, SOCKS4, SOCKS5), an smux session and the
WebSocket adapter (autobahn's server protocol, our stream adapter and a
relay handler behind it).

Each machine is fed valid messages, junk and everything in between, split
at arbitrary points, interleaved with time passing and the other side's
events (dials completing or failing, targets talking, closing, half
closing).  After every step: no exception escaped, no failure was logged,
and buffers are within their caps.  At the end the connection is closed
from outside (if it has not ended by itself) and time runs on: then no
DelayedCall may be left, and every transport we handed out is closed.

Sizes: the CI profile runs C{GOSTRELAY_FUZZ_EXAMPLES} examples per machine
(default 150); the fuzz profile (docs/reliability.md) sets it to 100000::

    GOSTRELAY_FUZZ_EXAMPLES=100000 python -m twisted.trial tests.test_fuzz
"""

from __future__ import annotations

import base64
import os
import struct
from typing import Any

import txaio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest

from gostrelay.build import BuildContext
from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.handlers.proxy import MAX_REQUEST_BUFFER
from gostrelay.handlers.relay import RelayHandler, RelayPhase
from gostrelay.mux import MuxConfig, MuxSession
from gostrelay.router import Router
from gostrelay.transports.ws import serverFactory
from gostrelay.wire import smux, socks
from gostrelay.wire.httpproxy import MAX_HEAD_SIZE
from gostrelay.wire.relay import (
    FLAG_UDP,
    AddrFeature,
    Command,
    Network,
    NetworkFeature,
    OpaqueFeature,
    Request,
    UserAuthFeature,
    connectRequest,
)
from tests.support.fakes import HalfCloseableTransport, TCPLikeTransport
from tests.support.handlers import pendingCalls
from tests.support.routes import FakeRoute, Target
from tests.support.udp import UDPMemoryReactor

#: Examples per machine.  CI: a few hundred steps' worth; the fuzz
#: profile: GOSTRELAY_FUZZ_EXAMPLES=100000.
EXAMPLES = int(os.environ.get("GOSTRELAY_FUZZ_EXAMPLES", "") or 150)

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=25,
    deadline=None,
    derandomize=EXAMPLES <= 150,  # CI: the same examples every run
    suppress_health_check=list(HealthCheck),
    database=None,
)

CLIENT = IPv4Address("TCP", "203.0.113.5", 40000)

#: The largest relay request (its feature length is 16 bits).
MAX_RELAY_REQUEST = 4 + 0xFFFF


class LoggedFailures:
    """
    Log events carrying a failure (an unhandled error somewhere) while
    installed.
    """

    def __init__(self) -> None:
        self.failures: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self._observe)

    def _observe(self, event: dict[str, Any]) -> None:
        if event.get("log_failure") is not None or event.get("isError"):
            self.failures.append(event)

    def stop(self) -> None:
        globalLogPublisher.removeObserver(self._observe)

    def check(self) -> None:
        if self.failures:
            failure = self.failures[0].get("log_failure")
            raise AssertionError(
                f"{len(self.failures)} failure(s) logged: "
                + (failure.getTraceback() if failure is not None else repr(self.failures[0]))
            )


# -- the world around the handlers


# -- strategies

ADDRESSES = st.sampled_from(
    ["192.0.2.1:80", "example.com:443", "[2001:db8::1]:22", "10.1.2.3:25", "127.0.0.1:8080", ":0", "0.0.0.0:0", "a" * 255 + ":1"]
)
USERS = st.sampled_from([None, ("user", "pass"), ("user", "pass"), ("user", "wrong"), ("", ""), ("nobody", "x")])


@st.composite
def relayRequests(draw: Any) -> bytes:
    """
    Valid relay requests (CONNECT, UDP CONNECT, BIND, unknown commands),
    with and without users and addresses, unknown features thrown in.
    """
    kind = draw(st.sampled_from(["connect", "connect", "connect", "udp", "bind", "udpbind", "other"]))
    address = draw(ADDRESSES)
    user = draw(USERS)
    if kind in ("connect", "udp"):
        request = connectRequest(address if address != ":0" else "", "udp" if kind == "udp" else "tcp", *(user or (None, "")))
        features = list(request.features)
        cmd = request.cmd
    else:
        features = []
        if user is not None:
            features.append(UserAuthFeature(*user))
        if kind == "udpbind":
            features.append(NetworkFeature(Network.UDP))
        host, _, port = address.rpartition(":")
        features.append(AddrFeature.fromHostPort(host.strip("[]") or "0.0.0.0", int(port)))
        cmd = int(Command.BIND) | (FLAG_UDP if kind == "udpbind" else 0)
        if kind == "other":
            cmd = draw(st.integers(3, 0x7F))
    if draw(st.booleans()):
        features.append(OpaqueFeature(draw(st.integers(0x05, 0xFF)), draw(st.binary(max_size=20))))
    return Request(cmd, tuple(features)).encode()


def smuxFrames(version: int | None = None) -> st.SearchStrategy[bytes]:
    versions = st.just(version) if version else st.sampled_from([1, 2])
    return st.builds(
        lambda v, cmd, sid, data: (
            smux.encodeUpdate(v, sid, *struct.unpack("<II", data[:8].ljust(8, b"\0"))) if cmd == smux.UPD
            else smux.encodeFrame(v, cmd, sid, b"" if cmd == smux.NOP else data)
        ),
        versions,
        st.sampled_from([smux.SYN, smux.FIN, smux.PSH, smux.NOP, smux.UPD]),
        st.sampled_from([0, 1, 2, 3, 4, 5, 0xFFFFFFFF]),
        st.binary(max_size=200),
    )


def chunks(blob: bytes, cuts: list[int]) -> list[bytes]:
    """
    C{blob} cut at the (relative) points C{cuts}.
    """
    out, i = [], 0
    for cut in cuts:
        if i >= len(blob):
            break
        out.append(blob[i : i + cut])
        i += cut
    if i < len(blob):
        out.append(blob[i:])
    return [c for c in out if c]


CUTS = st.lists(st.integers(1, 97), max_size=12)
JUNK = st.binary(max_size=200)


# =====================================================================
# The relay server


class RelayServerMachine(RuleBasedStateMachine):
    """
    One client connection to a relay server.
    """

    URLS = [
        "relay://127.0.0.1:8420",
        "relay://user:pass@127.0.0.1:8420?bind=true",
        "relay://127.0.0.1:8420?bind=true&bindPorts=1000-2000&denyPrivate=true&bypass=10.0.0.0/8,*.example.com",
        "relay://127.0.0.1:8420/192.0.2.53:53?idleTimeout=5s",
        "relay://127.0.0.1:8420?readTimeout=2s&dialTimeout=1s&mux.version=2",
    ]

    def __init__(self) -> None:
        super().__init__()
        self.failures = LoggedFailures()
        self.protocol: Any = None
        self.targets: list[Target] = []
        self.lost = False

    @initialize(index=st.integers(0, len(URLS) - 1), opening=st.one_of(relayRequests(), relayRequests(), JUNK), cuts=CUTS, connect=st.booleans())
    def start(self, index: int, opening: bytes, cuts: list[int], connect: bool) -> None:
        self.reactor = UDPMemoryReactor()
        config = buildConfigFromCommandLine([self.URLS[index]], [])
        self.handler = RelayHandler(self.reactor, config.services[0], BuildContext(self.reactor, config))
        self.route = FakeRoute()
        self.handler.options.router = Router(self.reactor, self.route, self.handler.options.router.dialTimeout)
        self.transport = HalfCloseableTransport(peerAddress=CLIENT)
        self.protocol = self.handler.buildProtocol(CLIENT)
        self.protocol.makeConnection(self.transport)
        for chunk in chunks(opening, cuts):
            self.deliver(chunk)
        if connect:
            self.completeDial()

    def live(self) -> bool:
        return self.protocol is not None and not self.lost

    def readable(self) -> bool:
        return self.live() and not self.transport.disconnecting and self.transport.producerState != "paused"

    def deliver(self, data: bytes) -> None:
        if self.readable():
            self.protocol.dataReceived(data)

    @rule(request=relayRequests(), payload=JUNK, cuts=CUTS)
    def request(self, request: bytes, payload: bytes, cuts: list[int]) -> None:
        for chunk in chunks(request + payload, cuts):
            self.deliver(chunk)

    @rule(data=JUNK, cuts=CUTS)
    def junk(self, data: bytes, cuts: list[int]) -> None:
        for chunk in chunks(data, cuts):
            self.deliver(chunk)

    @rule(frames=st.lists(smuxFrames(), max_size=6), cuts=CUTS)
    def smuxBytes(self, frames: list[bytes], cuts: list[int]) -> None:
        for chunk in chunks(b"".join(frames), cuts):
            self.deliver(chunk)

    @rule(header=st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF)), body=JUNK)
    def header(self, header: tuple[int, int, int], body: bytes) -> None:
        self.deliver(struct.pack(">BBH", *header) + body)

    @rule(seconds=st.sampled_from([0, 0.001, 0.5, 1, 2, 5, 15, 30, 61]))
    def advance(self, seconds: float) -> None:
        if self.protocol is not None:
            self.reactor.advance(seconds)

    @rule()
    def completeDial(self) -> None:
        if self.protocol is not None and self.route.pending():
            self.targets.append(Target(self.route.pending()[0]))

    @rule()
    def failDial(self) -> None:
        if self.protocol is not None and self.route.pending():
            self.route.pending()[0].deferred.errback(Failure(ConnectionRefusedError()))

    @rule(data=st.binary(min_size=1, max_size=100))
    def targetSays(self, data: bytes) -> None:
        for target in self.targets:
            if not target.lost and not target.transport.disconnecting:
                target.protocol.dataReceived(data)

    @rule()
    def targetEOF(self) -> None:
        for target in self.targets:
            if not target.lost and not target.transport.disconnecting and IHalfCloseableProtocol.providedBy(target.protocol):
                target.protocol.readConnectionLost()

    @rule()
    def targetLost(self) -> None:
        for target in self.targets:
            target.lose(Failure(ConnectionLost()))

    @rule()
    def clientEOF(self) -> None:
        if self.readable():
            self.protocol.readConnectionLost()

    @rule()
    def clientLost(self) -> None:
        if self.live():
            self.lost = True
            self.transport.disconnecting = True
            self.protocol.connectionLost(Failure(ConnectionLost()))

    @invariant()
    def bounded(self) -> None:
        self.failures.check()
        if self.protocol is not None:
            assert self.protocol.parser.buffered <= MAX_RELAY_REQUEST, "relay parser over 4+65535 bytes"
            if self.lost:
                assert not self.route.pending(), "the client left, its dial goes on"
            bound = getattr(self.protocol, "bound", None)
            session = getattr(bound, "session", None)
            if session is not None:
                for stream in session.streams.values():
                    assert stream._pendingBytes <= session.config.maxReceiveBuffer, "smux stream over its cap"

    def teardown(self) -> None:
        try:
            if self.protocol is not None:
                # Whatever it is waiting for, time ends it or it is piping.
                self.reactor.advance(100)
                state = self.protocol.state
                if state in (RelayPhase.REQUEST, RelayPhase.DIALING) and not self.lost:
                    assert self.transport.disconnecting, f"stuck in {state!r} after 100 s"
                if not self.lost:
                    self.lost = True
                    self.transport.disconnecting = True
                    self.protocol.connectionLost(Failure(ConnectionDone()))
                for target in self.targets:
                    target.lose()
                for _ in range(5):
                    self.reactor.advance(100)
                assert pendingCalls(self.reactor) == [], f"left over: {pendingCalls(self.reactor)}"
                for dial in self.route.dials:
                    assert dial.deferred.called, "a dial left pending"
                for port in self.reactor.udpPorts:
                    assert not port.listening, "a UDP port left bound"
                for target in self.targets:
                    assert target.lost
            self.failures.check()
        finally:
            self.failures.stop()


# =====================================================================
# The local proxy entry (auto: HTTP, SOCKS4, SOCKS5)


@st.composite
def proxyRequests(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["connect", "get", "socks4", "socks4a", "socks5", "socks5auth", "socks5udp", "tls"]))
    host = draw(st.sampled_from(["example.com", "192.0.2.1", "10.0.0.1", "[2001:db8::1]", "x" * 300]))
    port = draw(st.sampled_from([80, 443, 0, 65535]))
    creds = draw(st.sampled_from([b"", b"user:pass", b"user:wrong"]))
    auth = b"Proxy-Authorization: Basic " + base64.b64encode(creds) + b"\r\n" if creds else b""
    if kind == "connect":
        return b"CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n" % (host.encode(), port, host.encode(), port, auth)
    if kind == "get":
        return b"GET http://%s:%d/x HTTP/1.1\r\nHost: %s\r\n%sContent-Length: 3\r\n\r\nabc" % (host.encode(), port, host.encode(), auth)
    if kind in ("socks4", "socks4a"):
        ip = b"\x00\x00\x00\x01" if kind == "socks4a" else bytes([192, 0, 2, 1])
        tail = host.encode()[:255] + b"\x00" if kind == "socks4a" else b""
        return b"\x04\x01" + struct.pack(">H", port) + ip + draw(st.sampled_from([b"", b"user"])) + b"\x00" + tail
    if kind == "tls":
        return b"\x16\x03\x01\x00\x05hello"
    methods = b"\x02\x00\x02" if kind == "socks5auth" else b"\x01\x00"
    out = b"\x05" + methods
    if kind == "socks5auth":
        user, _, pw = creds.partition(b":")
        out += b"\x01" + bytes([len(user)]) + user + bytes([len(pw)]) + pw
    cmd = 3 if kind == "socks5udp" else draw(st.sampled_from([1, 1, 2]))
    name = host.strip("[]").encode()[:255]
    out += bytes([5, cmd, 0, 3, len(name)]) + name + struct.pack(">H", port)
    return out


class ProxyEntryMachine(RuleBasedStateMachine):
    URLS = [
        "auto://127.0.0.1:8080",
        "auto://user:pass@127.0.0.1:8080?readTimeout=2s",
        "auto://127.0.0.1:8080?udp=true&ttl=5s&bypass=10.0.0.0/8,example.com",
        "http://127.0.0.1:8080?idleTimeout=3s",
        "socks5://user:pass@127.0.0.1:1080",
    ]

    def __init__(self) -> None:
        super().__init__()
        self.failures = LoggedFailures()
        self.protocol: Any = None
        self.targets: list[Target] = []
        self.lost = False

    @initialize(index=st.integers(0, len(URLS) - 1), opening=st.one_of(proxyRequests(), proxyRequests(), JUNK), cuts=CUTS, connect=st.booleans())
    def start(self, index: int, opening: bytes, cuts: list[int], connect: bool) -> None:
        from gostrelay import registry

        self.reactor = UDPMemoryReactor()
        config = buildConfigFromCommandLine([self.URLS[index]], [])
        service = config.services[0]
        assert service.handler is not None
        plugin = registry.lookup("handler", service.handler.type)
        assert plugin is not None
        self.handler = plugin.load()(self.reactor, service, BuildContext(self.reactor, config))
        self.route = FakeRoute()
        self.handler.options.router = Router(self.reactor, self.route, self.handler.options.router.dialTimeout)
        self.transport = HalfCloseableTransport(peerAddress=CLIENT)
        self.protocol = self.handler.buildProtocol(CLIENT)
        self.protocol.makeConnection(self.transport)
        for chunk in chunks(opening, cuts):
            self.deliver(chunk)
        if connect:
            self.completeDial()

    def readable(self) -> bool:
        return self.protocol is not None and not self.lost and not self.transport.disconnecting and self.transport.producerState != "paused"

    def deliver(self, data: bytes) -> None:
        if self.readable():
            self.protocol.dataReceived(data)

    @rule(request=proxyRequests(), payload=JUNK, cuts=CUTS)
    def request(self, request: bytes, payload: bytes, cuts: list[int]) -> None:
        for chunk in chunks(request + payload, cuts):
            self.deliver(chunk)

    @rule(data=JUNK, cuts=CUTS)
    def junk(self, data: bytes, cuts: list[int]) -> None:
        for chunk in chunks(data, cuts):
            self.deliver(chunk)

    @rule(first=st.sampled_from([b"G", b"\x04", b"\x05", b"C"]), size=st.sampled_from([1000, 70000, 140000]))
    def big(self, first: bytes, size: int) -> None:
        self.deliver(first + b"A" * size)

    @rule(seconds=st.sampled_from([0, 0.5, 2, 5, 15, 61]))
    def advance(self, seconds: float) -> None:
        if self.protocol is not None:
            self.reactor.advance(seconds)

    @rule()
    def completeDial(self) -> None:
        if self.protocol is not None and self.route.pending():
            self.targets.append(Target(self.route.pending()[0]))

    @rule()
    def failDial(self) -> None:
        if self.protocol is not None and self.route.pending():
            self.route.pending()[0].deferred.errback(Failure(ConnectionRefusedError()))

    @rule(data=st.binary(min_size=1, max_size=100))
    def targetSays(self, data: bytes) -> None:
        for target in self.targets:
            if not target.lost and not target.transport.disconnecting:
                target.protocol.dataReceived(data)

    @rule()
    def targetLost(self) -> None:
        for target in self.targets:
            target.lose(Failure(ConnectionLost()))

    @rule()
    def clientEOF(self) -> None:
        if self.readable():
            self.protocol.readConnectionLost()

    @rule()
    def clientLost(self) -> None:
        if self.protocol is not None and not self.lost:
            self.lost = True
            self.transport.disconnecting = True
            self.protocol.connectionLost(Failure(ConnectionLost()))

    @invariant()
    def bounded(self) -> None:
        self.failures.check()
        if self.lost:
            assert not self.route.pending(), "the client left, its dial goes on"
        if self.protocol is not None and self.protocol.state not in ("piping", "dialing"):
            assert len(self.protocol.buffer) <= MAX_REQUEST_BUFFER + 140001, len(self.protocol.buffer)
            parser = self.protocol._httpParser
            if parser is not None and not parser.done:
                assert len(parser._buffer) <= MAX_HEAD_SIZE + 140001

    def teardown(self) -> None:
        try:
            if self.protocol is not None:
                self.reactor.advance(100)
                if self.protocol.state in ("start", "userpass", "request", "dialing") and not self.lost:
                    assert self.transport.disconnecting, f"stuck in {self.protocol.state!r} after 100 s"
                if not self.lost:
                    self.lost = True
                    self.transport.disconnecting = True
                    self.protocol.connectionLost(Failure(ConnectionDone()))
                for target in self.targets:
                    target.lose()
                for _ in range(5):
                    self.reactor.advance(100)
                assert pendingCalls(self.reactor) == [], f"left over: {pendingCalls(self.reactor)}"
                for dial in self.route.dials:
                    assert dial.deferred.called, "a dial left pending"
                for port in self.reactor.udpPorts:
                    assert not port.listening, "a UDP port left bound"
            self.failures.check()
        finally:
            self.failures.stop()


# =====================================================================
# The SOCKS5 negotiation on its own (sans-IO)


@st.composite
def socks5Messages(draw: Any) -> bytes:
    """
    One SOCKS5 client message, well formed or nearly so.
    """
    kind = draw(st.sampled_from(["greeting", "userpass", "request", "junk"]))
    if kind == "greeting":
        methods = draw(st.lists(st.sampled_from([0, 1, 2, 3, 0x80, 0xFF]), max_size=5))
        return bytes([draw(st.sampled_from([5, 5, 5, 4])), len(methods)]) + bytes(methods)
    if kind == "userpass":
        user = draw(st.sampled_from([b"", b"user", b"u" * 255]))
        password = draw(st.sampled_from([b"", b"pass", b"wrong"]))
        return bytes([draw(st.sampled_from([1, 1, 1, 2])), len(user)]) + user + bytes([len(password)]) + password
    if kind == "request":
        command = draw(st.sampled_from([1, 1, 2, 3, 0x7E]))
        address = draw(
            st.sampled_from([b"\x01" + bytes(4), b"\x04" + bytes(15) + b"\x01", b"\x03\x0bexample.com", b"\x03\x00", b"\x09"])
        )
        return bytes([draw(st.sampled_from([5, 5, 5, 4])), command, 0]) + address + b"\x00\x50"
    return draw(JUNK)


class Socks5NegotiationMachine(RuleBasedStateMachine):
    """
    L{Socks5ServerNegotiation} driven as the proxy entry drives it: one
    buffer, C{consumed} bytes dropped after every step.

    After every step: no exception, C{consumed} within the buffer, a
    machine that waits for more holds less than one message's worth (so
    the entry's buffer cap is never what stops a SOCKS5 client), a
    finished machine answers nothing more, and a refusal's last answer is
    one the protocol defines.  At the end the same bytes fed at once give
    the same answers, request and refusal as fed in pieces.
    """

    #: The longest SOCKS5 client message (an RFC 1929 request).
    LONGEST = 1 + 1 + 255 + 1 + 255

    @initialize(users=st.booleans(), udp=st.booleans())
    def start(self, users: bool, udp: bool) -> None:
        self.users = users
        self.commands = frozenset({socks.CMD_CONNECT} | ({socks.CMD_UDP_ASSOCIATE} if udp else set()))
        self.negotiation = self.make()
        self.buffer = b""
        self.stream = b""
        self.sent = b""
        self.refused: str | None = None
        self.request: Any = None

    def make(self) -> socks.Socks5ServerNegotiation:
        check = (lambda user, password: (user, password) == ("user", "pass")) if self.users else None
        return socks.Socks5ServerNegotiation(check, self.commands)

    @rule(message=socks5Messages(), cuts=CUTS)
    def receive(self, message: bytes, cuts: list[int]) -> None:
        for chunk in chunks(message, cuts):
            self.stream += chunk
            self.buffer += chunk
            before = self.negotiation.phase
            step = self.negotiation.receive(self.buffer)
            assert 0 <= step.consumed <= len(self.buffer), step
            self.buffer = self.buffer[step.consumed :]
            self.sent += step.send
            if before in (socks.Socks5Phase.FAILED, socks.Socks5Phase.REPLY):
                assert step == socks.Socks5Step(), f"{before}: {step}"
            if step.request is not None:
                assert self.request is None, "two requests"
                assert step.request.command in self.commands
                self.request = step.request
            if step.refused is not None:
                assert self.refused is None, "refused twice"
                self.refused = step.refused
                assert self.negotiation.phase is socks.Socks5Phase.FAILED
                assert self.sent.endswith(self.answerTo(step.refused)), (step.refused, self.sent)

    @staticmethod
    def answerTo(why: str) -> bytes:
        """
        What a client must read last when refused for C{why}: the answer
        the protocol defines for it.
        """
        if "offers no" in why:
            return socks.encodeMethodSelection(socks.METHOD_NO_ACCEPTABLE)
        if "authentication failed" in why or "username/password version" in why:
            return socks.encodeUserPassStatus(False)
        if "is not supported" in why:
            return socks.encodeSocks5Reply(socks.REP_COMMAND_NOT_SUPPORTED)
        if "unknown address type" in why:
            return socks.encodeSocks5Reply(socks.REP_ADDRESS_TYPE_NOT_SUPPORTED)
        assert "not SOCKS5: version" in why, why
        return b""

    @invariant()
    def bounded(self) -> None:
        if self.negotiation.phase in (socks.Socks5Phase.GREETING, socks.Socks5Phase.USERPASS, socks.Socks5Phase.REQUEST):
            assert len(self.buffer) < self.LONGEST, len(self.buffer)

    def teardown(self) -> None:
        if not hasattr(self, "negotiation"):
            return
        once = self.make()
        step = once.receive(self.stream)
        assert step.send == self.sent, (step.send, self.sent)
        assert step.request == self.request
        assert step.refused == self.refused
        assert once.phase is self.negotiation.phase
        assert len(self.stream) - step.consumed == len(self.buffer)


# =====================================================================
# smux sessions


class StreamApp(Protocol):
    def __init__(self) -> None:
        self.received = 0
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = True


class SmuxMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.failures = LoggedFailures()
        self.session: MuxSession | None = None
        self.streams: list[Any] = []
        self.closedReason: list[Failure] = []
        self.carrierLost = False

    @initialize(
        version=st.sampled_from([1, 2]),
        client=st.booleans(),
        role=st.sampled_from(["opener", "acceptor", "acceptor, attaching"]),
        keepalive=st.booleans(),
    )
    def start(self, version: int, client: bool, role: str, keepalive: bool) -> None:
        """
        A session either opens streams and refuses the peer's (the relay
        server's BIND, a kcp client) or accepts the peer's and opens none
        (an rtcp client, a kcp server), as every session in gostrelay does.
        (One that did both could have a peer's SYN take the id it opens
        next, and the peer's stream would be orphaned: xtaci/smux has the
        same hazard.)
        """
        self.clock = Clock()
        self.version = version
        self.opener = role == "opener"
        self.transport = TCPLikeTransport()
        config = MuxConfig(version=version, keepaliveDisabled=not keepalive, maxReceiveBuffer=64 * 1024, maxStreamBuffer=16384)

        def accepted(stream: Any) -> None:
            self.streams.append(stream)
            if role == "acceptor, attaching":
                stream.attach(StreamApp())

        self.session = MuxSession(
            self.clock, self.transport, client, config, None if self.opener else accepted, self.closedReason.append
        )

    def feedable(self) -> bool:
        return self.session is not None and not self.carrierLost and not self.transport.disconnecting

    def deliver(self, data: bytes) -> None:
        if self.feedable():
            assert self.session is not None
            self.session.dataReceived(data)

    @rule(frames=st.lists(smuxFrames(), max_size=8), cuts=CUTS)
    def frames(self, frames: list[bytes], cuts: list[int]) -> None:
        for chunk in chunks(b"".join(frames), cuts):
            self.deliver(chunk)

    @rule(sid=st.sampled_from([1, 2, 3, 4, 5]), size=st.sampled_from([1, 1000, 30000, 65535]), count=st.integers(1, 4))
    def flood(self, sid: int, size: int, count: int) -> None:
        version = getattr(self, "version", 1)
        for _ in range(count):
            self.deliver(smux.encodeFrame(version, smux.PSH, sid, b"f" * size))

    @rule(data=JUNK)
    def junk(self, data: bytes) -> None:
        self.deliver(data)

    @rule(i=st.integers(0, 7), action=st.sampled_from(["pause", "resume", "write", "close", "attach", "bigwrite"]))
    def streamAction(self, i: int, action: str) -> None:
        if not self.streams:
            return
        stream = self.streams[i % len(self.streams)]
        if action == "pause":
            stream.pauseProducing()
        elif action == "resume":
            stream.resumeProducing()
        elif action == "write":
            stream.write(b"w" * 100)
        elif action == "bigwrite":
            stream.write(b"W" * 200000)
        elif action == "close":
            stream.loseConnection()
        elif action == "attach" and stream.protocol is None and not stream.closed:
            stream.attach(StreamApp())

    @rule()
    def openStream(self) -> None:
        if self.session is not None and self.opener and not self.session.closed:
            stream = self.session.openStream()
            stream.attach(StreamApp())
            self.streams.append(stream)

    @rule(action=st.sampled_from(["pause", "resume"]))
    def carrierBackPressure(self, action: str) -> None:
        if self.session is not None:
            getattr(self.session, action + "Producing")()

    @rule(seconds=st.sampled_from([0, 1, 10, 31]))
    def advance(self, seconds: float) -> None:
        if self.session is not None:
            self.clock.advance(seconds)

    @rule()
    def carrierLostNow(self) -> None:
        if self.session is not None and not self.carrierLost:
            self.carrierLost = True
            self.session.connectionLost(Failure(ConnectionLost()))

    @invariant()
    def consistent(self) -> None:
        self.failures.check()
        session = self.session
        if session is None:
            return
        for stream in session.streams.values():
            assert stream._pendingBytes <= session.config.maxReceiveBuffer, "a stream over its cap"
        if session.closed:
            assert session.streams == {}, "a closed session with streams"
            assert self.transport.disconnecting or self.carrierLost

    def teardown(self) -> None:
        try:
            if self.session is not None:
                if not self.carrierLost:
                    self.carrierLost = True
                    self.session.connectionLost(Failure(ConnectionDone()))
                self.clock.advance(0)
                self.clock.advance(100)
                assert pendingCalls(self.clock) == [], pendingCalls(self.clock)
                assert len(self.closedReason) == 1, "onClose called once"
                for stream in self.streams:
                    assert stream.closed, "a stream outlived its session"
                    assert stream.protocol is None or stream.protocol.lost
            self.failures.check()
        finally:
            self.failures.stop()


# =====================================================================
# The WebSocket adapter (autobahn's server protocol, our stream)


def wsFrame(payload: bytes, opcode: int = 2, fin: bool = True, mask: bytes = b"\x11\x22\x33\x44", masked: bool = True) -> bytes:
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([first, (0x80 if masked else 0) | n])
    elif n < 65536:
        head = bytes([first, (0x80 if masked else 0) | 126]) + struct.pack(">H", n)
    else:
        head = bytes([first, (0x80 if masked else 0) | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8443\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@st.composite
def wsFrames(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["binary", "text", "ping", "pong", "close", "cont", "unmasked", "bad opcode", "relay"]))
    payload = draw(st.binary(max_size=150))
    if kind == "relay":
        return wsFrame(draw(relayRequests()) + payload)
    if kind == "text":
        return wsFrame(payload, opcode=1)
    if kind == "ping":
        return wsFrame(payload[:125], opcode=9)
    if kind == "pong":
        return wsFrame(payload[:125], opcode=10)
    if kind == "close":
        return wsFrame(struct.pack(">H", draw(st.sampled_from([1000, 1001, 1002, 4000, 5]))) + payload[:100], opcode=8)
    if kind == "cont":
        return wsFrame(payload, opcode=0, fin=draw(st.booleans()))
    if kind == "unmasked":
        return wsFrame(payload, masked=False)
    if kind == "bad opcode":
        return wsFrame(payload, opcode=draw(st.sampled_from([3, 4, 11, 15])))
    return wsFrame(payload, fin=draw(st.booleans()))


class WebSocketMachine(RuleBasedStateMachine):
    """
    One WebSocket connection to a relay-over-ws server.
    """

    def __init__(self) -> None:
        super().__init__()
        self.failures = LoggedFailures()
        self.protocol: Any = None
        self.lost = False

    @initialize(
        path=st.sampled_from(["/ws", "/ws", "/other"]),
        opening=st.one_of(st.just(HANDSHAKE), st.just(HANDSHAKE), JUNK),
        first=st.one_of(st.builds(wsFrame, relayRequests()), wsFrames()),
        cuts=CUTS,
    )
    def start(self, path: str, opening: bytes, first: bytes, cuts: list[int]) -> None:
        self.clock = Clock()
        self.previousLoop = txaio.config.loop
        txaio.config.loop = self.clock
        self.reactor = UDPMemoryReactor()
        config = buildConfigFromCommandLine(["relay+ws://127.0.0.1:8443"], [])
        self.relay = RelayHandler(self.reactor, config.services[0], BuildContext(self.reactor, config))
        self.route = FakeRoute()
        self.relay.options.router = Router(self.reactor, self.route, 15)
        factory = serverFactory(self.relay, path)
        self.transport = TCPLikeTransport(peerAddress=CLIENT)
        self.protocol = factory.buildProtocol(CLIENT)
        self.protocol.makeConnection(self.transport)
        for chunk in chunks(opening + first, cuts):
            self.deliver(chunk)

    def deliver(self, data: bytes) -> None:
        if self.protocol is not None and not self.lost and not self.transport.disconnecting and self.transport.producerState != "paused":
            self.protocol.dataReceived(data)

    @rule(cuts=CUTS, extra=st.sampled_from([b"", b"junk\r\n", b"Origin: http://x\r\n"]))
    def handshake(self, cuts: list[int], extra: bytes) -> None:
        head = HANDSHAKE.replace(b"\r\n\r\n", b"\r\n" + extra + b"\r\n") if extra else HANDSHAKE
        for chunk in chunks(head, cuts):
            self.deliver(chunk)

    @rule(frames=st.lists(wsFrames(), max_size=5), cuts=CUTS)
    def frames(self, frames: list[bytes], cuts: list[int]) -> None:
        for chunk in chunks(b"".join(frames), cuts):
            self.deliver(chunk)

    @rule(data=JUNK)
    def junk(self, data: bytes) -> None:
        self.deliver(data)

    @rule(seconds=st.sampled_from([0, 0.2, 1, 5, 16]))
    def advance(self, seconds: float) -> None:
        if self.protocol is not None:
            self.clock.advance(seconds)
            self.reactor.advance(seconds)

    @rule()
    def completeDial(self) -> None:
        if self.protocol is not None and self.route.pending():
            Target(self.route.pending()[0])

    @rule()
    def lose(self) -> None:
        if self.protocol is not None and not self.lost:
            self.lost = True
            self.transport.disconnecting = True
            self.protocol.connectionLost(Failure(ConnectionLost()))

    @invariant()
    def noFailures(self) -> None:
        self.failures.check()
        if self.lost:
            assert not self.route.pending(), "the client left, its dial goes on"

    def teardown(self) -> None:
        try:
            if self.protocol is not None:
                if not self.lost:
                    self.lost = True
                    self.transport.disconnecting = True
                    self.protocol.connectionLost(Failure(ConnectionDone()))
                for _ in range(3):
                    self.clock.advance(100)
                    self.reactor.advance(100)
                assert pendingCalls(self.clock) == [], f"autobahn timers left: {pendingCalls(self.clock)}"
                assert pendingCalls(self.reactor) == [], f"relay timers left: {pendingCalls(self.reactor)}"
                for dial in self.route.dials:
                    assert dial.deferred.called, "a dial left pending"
            self.failures.check()
        finally:
            if self.protocol is not None:
                txaio.config.loop = self.previousLoop
            self.failures.stop()


# =====================================================================
# The machines as trial tests


def _run(machine: type[RuleBasedStateMachine]) -> None:
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(machine, settings=FUZZ_SETTINGS)


class FuzzTests(unittest.SynchronousTestCase):
    def test_relayServer(self) -> None:
        _run(RelayServerMachine)

    def test_proxyEntry(self) -> None:
        _run(ProxyEntryMachine)

    def test_smuxSession(self) -> None:
        _run(SmuxMachine)

    def test_socks5Negotiation(self) -> None:
        _run(Socks5NegotiationMachine)

    def test_webSocket(self) -> None:
        _run(WebSocketMachine)


class ParserBoundTests(unittest.SynchronousTestCase):
    """
    The sans-IO parsers under the handlers hold no more than their
    message caps, whatever the split.
    """

    def test_relayParserCap(self) -> None:
        from hypothesis import given

        from gostrelay.wire.relay import RelayDecodeError, RequestParser

        @FUZZ_SETTINGS
        @given(data=st.binary(max_size=300), cuts=CUTS, flen=st.integers(0, 0xFFFF))
        def check(data: bytes, cuts: list[int], flen: int) -> None:
            parser = RequestParser()
            blob = b"\x01\x01" + struct.pack(">H", flen) + data
            try:
                for chunk in chunks(blob, cuts):
                    if parser.feed(chunk) is not None:
                        break
                    assert parser.buffered <= MAX_RELAY_REQUEST
            except RelayDecodeError:
                pass

        check()


__all__ = ["FuzzTests", "ParserBoundTests", "RelayServerMachine", "ProxyEntryMachine", "SmuxMachine", "Socks5NegotiationMachine", "WebSocketMachine"]
