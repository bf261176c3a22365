"""
GOST's traffic limiter and request-rate limiter (L{gostrelay.limiter}):
the mechanism on a L{task.Clock} (the producer is paused while a bucket is
in debt, bytes per tick), the keys ($, $$, IP, CIDR), GOST's units, the
assembly from C{-L ...?limiter.in=...} and YAML, and a piped connection
through a real service.  Rates over wall-clock time are measured in
bench/limiter.py, not here.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from twisted.trial.unittest import SynchronousTestCase

from gostrelay.build import RefusedConfiguration, buildServices
from gostrelay.config.model import Config, ConfigError
from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.limiter import (
    LimitedFactory,
    LimitedProtocol,
    RequestLimits,
    ThrottleGate,
    TokenBucket,
    TrafficLimits,
    parseRate,
)
from tests.support.logs import captureLogs
from tests.support.reactor import withTimeout
from tests.support.targets import Collector, EchoFactory

KIB = 1024
MIB = 1024 * 1024


class UnitsTests(SynchronousTestCase):
    def test_base2(self) -> None:
        self.assertEqual(parseRate("1MB"), MIB)
        self.assertEqual(parseRate("1MiB"), MIB)
        self.assertEqual(parseRate("512KB"), 512 * KIB)
        self.assertEqual(parseRate("2GB"), 2 << 30)
        self.assertEqual(parseRate("100B"), 100)
        self.assertEqual(parseRate("1.5MB"), MIB * 3 // 2)
        self.assertEqual(parseRate("300"), 300)

    def test_noLimit(self) -> None:
        for text in ("", "0", " "):
            self.assertEqual(parseRate(text), 0)

    def test_unreadableRefused(self) -> None:
        """
        GOST reads a size it cannot parse as no limit; a typo must not
        silently lift a limit, so it is an error.
        """
        for text in ("fast", "1XB", "10MBps", "10mbit", "-1MB"):
            self.assertRaises(ValueError, parseRate, text)


class Recorder(Protocol):
    def __init__(self) -> None:
        self.received = 0

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)


class FakeProducer:
    def __init__(self) -> None:
        self.state = "producing"
        self.pauses = 0

    def pauseProducing(self) -> None:
        self.pauses += 1
        self.state = "paused"

    def resumeProducing(self) -> None:
        self.state = "producing"

    def stopProducing(self) -> None:
        self.state = "stopped"


def connect(limits: list[str], host: str = "10.0.0.1", clock: task.Clock | None = None, factory: Any = None):  # type: ignore[no-untyped-def]
    clock = clock or task.Clock()
    if factory is None:
        factory = LimitedFactory(Factory.forProtocol(Recorder), "svc", clock, TrafficLimits(clock, limits))
    protocol = factory.buildProtocol(IPv4Address("TCP", host, 40000))
    transport = StringTransport()
    protocol.makeConnection(transport)
    return clock, factory, protocol, transport


class TrafficInTests(SynchronousTestCase):
    def test_pausedWhileInDebt(self) -> None:
        """
        C{$$ 64KB}: the first second's worth passes at once (the burst);
        one more byte puts the bucket in debt and pauses reading from the
        client until the debt is repaid, and no longer.
        """
        clock, _f, protocol, transport = connect(["$$ 64KB"])
        protocol.dataReceived(b"x" * 64 * KIB)
        self.assertEqual(transport.producerState, "producing")
        protocol.dataReceived(b"x" * 16 * KIB)
        self.assertEqual(transport.producerState, "paused")
        self.assertEqual(protocol.wrappedProtocol.received, 80 * KIB)  # passed on, never held
        clock.advance(0.24)
        self.assertEqual(transport.producerState, "paused")
        clock.advance(0.02)
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_bytesPerTick(self) -> None:
        """
        A client that sends whenever it is not paused gets, over 10 s of
        the clock, the rate times 10 plus the burst, within one read.
        """
        clock, _f, protocol, transport = connect(["$$ 100KB"])
        chunk = b"x" * 8 * KIB
        for _tick in range(1000):
            if transport.producerState == "producing":
                protocol.dataReceived(chunk)
            clock.advance(0.01)
        got = protocol.wrappedProtocol.received
        expected = 100 * KIB * 10 + 100 * KIB
        self.assertTrue(expected - len(chunk) <= got <= expected + len(chunk), got)

    def test_flowControlAndRateTogether(self) -> None:
        """
        The pipe's flow control (the other side's buffer is full) and the
        rate limit both pause reading; it resumes only when neither holds.
        """
        clock, _f, protocol, transport = connect(["$$ 1KB"])
        protocol.dataReceived(b"x" * 2 * KIB)
        self.assertEqual(transport.producerState, "paused")
        protocol.pauseProducing()  # the consumer is full too
        clock.advance(2)
        self.assertEqual(transport.producerState, "paused")
        protocol.resumeProducing()
        self.assertEqual(transport.producerState, "producing")

    def test_neverSpliced(self) -> None:
        _c, _f, protocol, _t = connect(["$$ 1KB"])
        self.assertIsNone(protocol.spliceCarrier)


class TrafficOutTests(SynchronousTestCase):
    def test_producerPaused(self) -> None:
        """
        C{$$ 0 10KB}: bytes written to the client beyond the burst pause
        the registered producer (the target, in a pipe).
        """
        clock, _f, protocol, transport = connect(["$$ 0 10KB"])
        producer = FakeProducer()
        protocol.registerProducer(producer, True)
        protocol.write(b"y" * 10 * KIB)
        self.assertEqual(producer.state, "producing")
        protocol.write(b"y" * 5 * KIB)
        self.assertEqual(producer.state, "paused")
        self.assertEqual(len(transport.value()), 15 * KIB)
        clock.advance(0.51)
        self.assertEqual(producer.state, "producing")
        protocol.unregisterProducer()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_inUnlimited(self) -> None:
        _c, _f, protocol, transport = connect(["$$ 0 10KB"])
        protocol.dataReceived(b"x" * MIB)
        self.assertEqual(transport.producerState, "producing")


class KeyTests(SynchronousTestCase):
    def test_serviceShared(self) -> None:
        """
        C{$}: all connections of the service share one bucket.
        """
        clock = task.Clock()
        factory = LimitedFactory(Factory.forProtocol(Recorder), "svc", clock, TrafficLimits(clock, ["$ 10KB"]))
        _c, _f, p1, t1 = connect([], "10.0.0.1", clock, factory)
        _c, _f, p2, t2 = connect([], "10.0.0.2", clock, factory)
        p1.dataReceived(b"x" * 8 * KIB)
        p2.dataReceived(b"x" * 4 * KIB)
        self.assertEqual((t1.producerState, t2.producerState), ("producing", "paused"))

    def test_ipAndCidr(self) -> None:
        """
        An IP line is one bucket for that client; a CIDR line one bucket
        per client address in it; other clients are not limited.
        """
        clock = task.Clock()
        limits = TrafficLimits(clock, ["10.0.0.1 4KB", "192.168.0.0/16 4KB"])
        factory = LimitedFactory(Factory.forProtocol(Recorder), "svc", clock, limits)
        a1 = connect([], "10.0.0.1", clock, factory)
        a2 = connect([], "10.0.0.1", clock, factory)
        b1 = connect([], "192.168.1.1", clock, factory)
        b2 = connect([], "192.168.1.2", clock, factory)
        other = connect([], "172.16.0.1", clock, factory)
        self.assertIsInstance(a1[2], LimitedProtocol)
        for conn in (a1, a2, b1, b2):
            conn[2].dataReceived(b"x" * 3 * KIB)
        self.assertEqual(
            [c[3].producerState for c in (a1, a2, b1, b2)], ["producing", "paused", "producing", "producing"]
        )
        other[2].dataReceived(b"x" * MIB)
        self.assertEqual(other[3].producerState, "producing")
        # Buckets of clients are dropped with their last connection.
        for conn in (a1, a2, b1, b2, other):
            conn[2].connectionLost(None)
        self.assertEqual(limits._clients, {})
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_badLine(self) -> None:
        self.assertRaises(ConfigError, TrafficLimits, task.Clock(), ["example.com 1MB"])
        self.assertRaises(ConfigError, TrafficLimits, task.Clock(), ["$"])


class GateTests(SynchronousTestCase):
    def test_longerHoldExtends(self) -> None:
        clock = task.Clock()
        producer = FakeProducer()
        gate = ThrottleGate(clock, producer)
        gate.holdFor(1)
        gate.holdFor(3)
        gate.holdFor(2)
        self.assertEqual(producer.pauses, 1)
        clock.advance(2.5)
        self.assertEqual(producer.state, "paused")
        clock.advance(1)
        self.assertEqual(producer.state, "producing")

    def test_bucket(self) -> None:
        clock = task.Clock()
        bucket = TokenBucket(clock, 100)
        self.assertEqual(bucket.take(100), 0)
        self.assertAlmostEqual(bucket.take(50), 0.5)
        clock.advance(10)
        self.assertEqual(bucket.tokens, -50)  # not refilled until asked
        self.assertEqual(bucket.take(0), 0)
        self.assertEqual(bucket.tokens, 100)  # capped at the burst


class RequestRateTests(SynchronousTestCase):
    def test_serviceRate(self) -> None:
        """
        C{$ 2}: a burst of int(2)+1 = 3 connections, then 2 a second; the
        accept check refuses the one over, saying why.
        """
        clock = task.Clock()
        check = RequestLimits(clock, ["$ 2"])
        addr = IPv4Address("TCP", "10.0.0.1", 1)
        self.assertEqual([check(addr) for _ in range(4)], [None, None, None, "request rate limit (rlimiter)"])
        clock.advance(0.5)
        self.assertIsNone(check(addr))
        self.assertIsNotNone(check(addr))

    def test_perClient(self) -> None:
        """
        C{$$ 1}: each client IP its own bucket; an IP line overrides it.
        """
        clock = task.Clock()
        limits = RequestLimits(clock, ["$$ 1", "10.0.0.9 5"])
        self.assertEqual([limits.allow("10.0.0.1") for _ in range(3)], [True, True, False])
        self.assertEqual([limits.allow("10.0.0.2") for _ in range(3)], [True, True, False])
        self.assertEqual(sum(limits.allow("10.0.0.9") for _ in range(10)), 6)
        clock.advance(1)
        self.assertTrue(limits.allow("10.0.0.1"))

    def test_clientBucketsBounded(self) -> None:
        from gostrelay import limiter

        clock = task.Clock()
        limits = RequestLimits(clock, ["$$ 10"])
        for i in range(limiter.MAX_CLIENT_BUCKETS + 10):
            limits.allow(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
        clock.advance(1)
        limits.allow("192.0.2.1")
        self.assertLessEqual(len(limits._buckets), limiter.MAX_CLIENT_BUCKETS)


def limitedFactory(factory: Any) -> LimitedFactory:
    """
    The L{LimitedFactory} among a service's accept layers.
    """
    while not isinstance(factory, LimitedFactory):
        factory = factory.__dict__["wrappedFactory"]
    return factory


class AssemblyTests(unittest.TestCase):
    def test_commandLine(self) -> None:
        """
        The issue's line: C{relay://:8420?limiter.in=1MB&limiter.out=1MB}
        is no longer refused; it becomes GOST's C{"$ 1MB 1MB"}.
        """
        config = buildConfigFromCommandLine(["relay://127.0.0.1:0?limiter.in=1MB&limiter.out=1MB&rlimiter=10"], [])
        top = buildServices(reactor, config)
        (svc,) = list(top)
        wrapped = limitedFactory(svc.handler)
        self.assertIsInstance(wrapped, LimitedFactory)
        self.assertEqual(wrapped.traffic.service, (MIB, MIB))
        (requests,) = svc.admission.checks  # the accept layers' check
        self.assertIsInstance(requests, RequestLimits)

    def test_outAloneLimitsOut(self) -> None:
        """
        C{limiter.out} (or C{limiter.conn.out}) alone limits what clients
        are sent.  GOST's command line writes C{"$  1MB"} for it, which its
        parser reads as an C{in} limit; ours writes C{"$ 0 1MB"}.
        """
        config = buildConfigFromCommandLine(["relay://127.0.0.1:0?limiter.out=1MB&limiter.conn.out=256KB"], [])
        (section,) = config.limiters
        self.assertEqual(section.extra["limits"], ["$ 0 1MB", "$$ 0 256KB"])
        (svc,) = list(buildServices(reactor, config))
        traffic = limitedFactory(svc.handler).traffic
        self.assertEqual((traffic.service, traffic.connection), ((0, MIB), (0, 256 * KIB)))
        config = buildConfigFromCommandLine(["relay://127.0.0.1:0?limiter.in=1MB&limiter.conn.in=2KB"], [])
        self.assertEqual(config.limiters[0].extra["limits"], ["$ 1MB ", "$$ 2KB "])  # as GOST writes them

    def test_badValuesRefused(self) -> None:
        """
        A rate, C{rlimiter} or C{climiter} that is not one is refused at
        start, naming option and value (GOST: no limit).
        """
        for query, message in (
            ("limiter.in=fast", "option limiter.in='fast' is not a rate like 512KB"),
            ("limiter.conn.out=10mbit", "option limiter.conn.out='10mbit' is not a rate"),
            ("rlimiter=often", "option rlimiter='often' is not a number"),
            ("climiter=many", "option climiter='many' is not a whole number"),
        ):
            config = buildConfigFromCommandLine([f"relay://127.0.0.1:0?{query}"], [])
            e = self.assertRaises(RefusedConfiguration, buildServices, reactor, config)
            self.assertIn(message, str(e))
        config = Config.fromDict(
            {
                "services": [{"name": "s", "addr": "127.0.0.1:0", "handler": {"type": "relay"}, "limiter": "lim"}],
                "limiters": [{"name": "lim", "limits": ["$ 10MBps"]}],
            }
        )
        e = self.assertRaises(RefusedConfiguration, buildServices, reactor, config)
        self.assertIn("limit '$ 10MBps': '10MBps' is not a rate", str(e))

    def test_yamlSection(self) -> None:
        config = Config.fromDict(
            {
                "services": [{"name": "s", "addr": "127.0.0.1:0", "handler": {"type": "relay"}, "limiter": "lim"}],
                "limiters": [{"name": "lim", "limits": ["$ 10MB 20MB", "$$ 1MB", "10.0.0.0/8 512KB 512KB"]}],
            }
        )
        (svc,) = list(buildServices(reactor, config))
        traffic = limitedFactory(svc.handler).traffic
        self.assertEqual((traffic.service, traffic.connection), ((10 * MIB, 20 * MIB), (MIB, 0)))
        self.assertEqual(len(traffic.nets), 1)

    def test_undefinedAndUDP(self) -> None:
        config = Config.fromDict({"services": [{"name": "s", "addr": ":0", "handler": {"type": "relay"}, "limiter": "nope"}]})
        e = self.assertRaises(RefusedConfiguration, buildServices, reactor, config)
        self.assertIn("limiter 'nope' is not defined", str(e))
        config = buildConfigFromCommandLine(["udp://127.0.0.1:0/127.0.0.1:53?limiter.in=1MB"], [])
        e = self.assertRaises(RefusedConfiguration, buildServices, reactor, config)
        self.assertIn("not UDP", str(e))

    @defer.inlineCallbacks
    def test_pipedThroughService(self):  # type: ignore[no-untyped-def]
        """
        A forwarder with C{limiter.conn.out}: the bytes still all arrive
        through a real service (the userspace pipe), and the limited
        connection was never spliced.
        """
        echo = EchoFactory()
        port = reactor.listenTCP(0, echo, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        config = buildConfigFromCommandLine(
            [f"tcp://127.0.0.1:0/127.0.0.1:{port.getHost().port}?limiter.conn.out=256KB&limiter.conn.in=256KB"], []
        )
        top = buildServices(reactor, config)
        top.startService()
        self.addCleanup(top.stopService)
        (svc,) = list(top)
        yield svc.listening
        payload = b"z" * 200 * KIB
        client = Collector(payload)
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", svc.port.getHost().port), client)
        yield client.done
        self.assertEqual(bytes(client.data), payload)

    @defer.inlineCallbacks
    def test_halfCloseUnderALimit(self):  # type: ignore[no-untyped-def]
        """
        A client that sends its request and shuts down its sending side
        (C{nc -N}, C{printf ... | nc}) still gets the whole answer through
        a limited service, as through an unlimited one: the limiter hands
        the read EOF to the handler (issue 17: it used to recurse into the
        accept layer and close at once, losing the answer).
        """
        echo = EchoFactory()
        port = reactor.listenTCP(0, echo, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        logs = captureLogs(self)
        config = buildConfigFromCommandLine([f"tcp://127.0.0.1:0/127.0.0.1:{port.getHost().port}?limiter.in=1MB"], [])
        top = buildServices(reactor, config)
        top.startService()
        self.addCleanup(top.stopService)
        (svc,) = list(top)
        yield svc.listening
        client = Collector(b"ping", expect=0)
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", svc.port.getHost().port), client)
        client.transport.loseWriteConnection()
        yield withTimeout(client.done, 10, "the service closes after answering")
        self.assertEqual(bytes(client.data), b"ping")
        self.assertNotIn("Traceback", logs.text)
