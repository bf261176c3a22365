"""
GOST's admission (L{gostrelay.admission}): allow and deny lists of IPs,
CIDRs and names, from the command line and YAML, with files and reload on
a L{task.Clock}; and, on real sockets, clients bound to 127.0.0.2 and
127.0.0.3: a refused client is closed without a byte, with a log line, and
the target is never dialed.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.address import HostnameAddress, IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IHostnameResolver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from gostrelay.admission import Admission, AdmissionList, admissionFor
from gostrelay.build import RefusedConfiguration, buildServices
from gostrelay.config.model import Config, ConfigError
from gostrelay.config.url import buildConfigFromCommandLine
from tests.support.logs import captureLogs
from tests.support.reactor import withTimeout
from tests.support.targets import Collector, EchoFactory


@implementer(IHostnameResolver)
class FakeResolver:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def resolveHostName(self, receiver: Any, hostName: str, *args: Any, **kwargs: Any) -> Any:
        self.asked.append(hostName)
        receiver.resolutionBegan(None)
        for address in self.answers.get(hostName, []):
            receiver.addressResolved(IPv4Address("TCP", address, 0))
        receiver.resolutionComplete()
        return None


class FakeReactor(task.Clock):
    def __init__(self, answers: dict[str, list[str]] | None = None) -> None:
        super().__init__()
        self.nameResolver = FakeResolver(answers or {})


def peer(host: str) -> IPv4Address:
    return IPv4Address("TCP", host, 40000)


class ListTests(SynchronousTestCase):
    def test_denyList(self) -> None:
        admission = Admission([AdmissionList(FakeReactor(), "a", ["10.0.0.0/8", "192.0.2.7"])])
        self.assertIsNone(admission(peer("192.0.2.8")))
        self.assertIn("in the deny list of admission a", admission(peer("10.1.2.3")) or "")
        self.assertIsNotNone(admission(peer("192.0.2.7")))
        self.assertIsNotNone(admission(IPv4Address("TCP", "::ffff:10.0.0.1", 1)))

    def test_allowList(self) -> None:
        admission = Admission([AdmissionList(FakeReactor(), "a", ["127.0.0.2", "2001:db8::/32"], whitelist=True)])
        self.assertIsNone(admission(peer("127.0.0.2")))
        self.assertIsNone(admission(peer("2001:db8::1")))
        self.assertIn("not in the allow list", admission(peer("127.0.0.3")) or "")

    def test_namesResolved(self) -> None:
        """
        Names (ours; GOST ignores them) are resolved when the list is
        loaded, and again at every reload.
        """
        clock = FakeReactor({"office.example": ["198.51.100.4"]})
        lst = AdmissionList(clock, "a", ["office.example"], whitelist=True, reloadPeriod=10)
        admission = Admission([lst])
        self.assertIsNone(admission(peer("198.51.100.4")))
        self.assertIsNotNone(admission(peer("198.51.100.5")))
        clock.nameResolver.answers["office.example"] = ["198.51.100.5"]
        admission.start()
        clock.advance(10)
        self.assertIsNone(admission(peer("198.51.100.5")))
        self.assertIsNotNone(admission(peer("198.51.100.4")))
        admission.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_fileAndReload(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("# office\n10.0.0.0/8  # the LAN\n\n")
        clock = FakeReactor()
        lst = AdmissionList(clock, "a", [], whitelist=True, path=path, reloadPeriod=0.2)
        self.assertEqual(lst.reloadPeriod, 1.0)  # GOST's minimum
        admission = Admission([lst])
        admission.start()
        self.assertIsNone(admission(peer("10.9.9.9")))
        self.assertIsNotNone(admission(peer("172.16.0.1")))
        with open(path, "w") as f:
            f.write("172.16.0.0/12\n")
        clock.advance(1)
        self.assertIsNone(admission(peer("172.16.0.1")))
        self.assertIsNotNone(admission(peer("10.9.9.9")))
        os.remove(path)
        clock.advance(1)  # unreadable now: the previous list stays
        self.assertIsNone(admission(peer("172.16.0.1")))
        admission.stop()

    def test_badMatchersRefused(self) -> None:
        """
        A matcher that is neither an IP, a CIDR nor a host name (a typo
        GOST skips in silence: in a deny list it admits whom it was meant
        to refuse) is refused when the list loads; a reloaded file's bad
        line is skipped with a warning and the rest applies.
        """
        for pattern in ("10.0.0.0/33", "*.example.com", "192.0.2.1/", "bad host"):
            e = self.assertRaises(ConfigError, AdmissionList, FakeReactor(), "a", ["10.0.0.0/8", pattern])
            self.assertIn(f"admission a: {pattern!r}: not an IP address, a CIDR block or a host name", str(e))
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("10.0.0.0/8\n")
        clock = FakeReactor()
        lst = AdmissionList(clock, "a", [], path=path, reloadPeriod=1)
        logs = captureLogs(self)
        lst.start()
        with open(path, "w") as f:
            f.write("10.0.0.0/88\n192.0.2.7\n")
        clock.advance(1)
        admission = Admission([lst])
        self.assertIsNotNone(admission(peer("192.0.2.7")))
        self.assertIsNone(admission(peer("10.1.2.3")))
        self.assertTrue(logs.matching(r"admission a: '10.0.0.0/88': not an IP address.*; skipped"), logs.lines)
        lst.stop()

    def test_groupAllMustAdmit(self) -> None:
        clock = FakeReactor()
        admission = Admission(
            [AdmissionList(clock, "allow", ["10.0.0.0/8"], whitelist=True), AdmissionList(clock, "deny", ["10.0.0.5"])]
        )
        self.assertIsNone(admission(peer("10.0.0.4")))
        self.assertIn("admission deny", admission(peer("10.0.0.5")) or "")
        self.assertIn("admission allow", admission(peer("11.0.0.1")) or "")

    def test_nonIPClientsAdmitted(self) -> None:
        admission = Admission([AdmissionList(FakeReactor(), "a", ["10.0.0.0/8"], whitelist=True)])
        self.assertIsNone(admission(HostnameAddress(b"some-host", 0)))


class ConfigTests(SynchronousTestCase):
    def test_commandLine(self) -> None:
        """
        C{?admission=~A,B} is GOST's allow list; without C{~} a deny list.
        """
        config = buildConfigFromCommandLine(["relay://:0?admission=~127.0.0.2,10.0.0.0/8", "relay://:0?admission=127.0.0.3"], [])
        allow = admissionFor(FakeReactor(), config.services[0], config, "s0")
        deny = admissionFor(FakeReactor(), config.services[1], config, "s1")
        assert allow is not None and deny is not None
        self.assertIsNone(allow(peer("127.0.0.2")))
        self.assertIsNotNone(allow(peer("127.0.0.3")))
        self.assertIsNone(deny(peer("127.0.0.2")))
        self.assertIsNotNone(deny(peer("127.0.0.3")))

    def test_yaml(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("127.0.0.3\n")
        config = Config.fromDict(
            {
                "services": [{"name": "s", "addr": ":0", "handler": {"type": "relay"}, "admissions": ["a", "b"]}],
                "admissions": [
                    {"name": "a", "whitelist": True, "matchers": ["127.0.0.0/8"]},
                    {"name": "b", "file": {"path": path}, "reload": "10s"},
                ],
            }
        )
        admission = admissionFor(FakeReactor(), config.services[0], config, "s")
        assert admission is not None
        self.assertEqual([lst.reloadPeriod for lst in admission.lists], [0.0, 10.0])
        self.assertIsNone(admission(peer("127.0.0.2")))
        self.assertIsNotNone(admission(peer("127.0.0.3")))

    def test_badMatcherOnTheCommandLine(self) -> None:
        config = buildConfigFromCommandLine(["relay://127.0.0.1:0?admission=10.0.0.0/33"], [])
        e = self.assertRaises(RefusedConfiguration, buildServices, reactor, config)
        self.assertIn("admission admission-0: '10.0.0.0/33': not an IP address, a CIDR block or a host name", str(e))

    def test_refusals(self) -> None:
        def config(section: dict[str, Any]) -> Config:
            return Config.fromDict(
                {"services": [{"name": "s", "addr": ":0", "handler": {"type": "relay"}, "admission": "a"}], "admissions": [section]}
            )

        e = self.assertRaises(ConfigError, admissionFor, FakeReactor(), config({"name": "x"}).services[0], config({"name": "x"}), "s")
        self.assertIn("admission 'a' is not defined", str(e))
        cfg = config({"name": "a", "redis": {"addr": "127.0.0.1:6379"}})
        self.assertIn("redis is not implemented", str(self.assertRaises(ConfigError, admissionFor, FakeReactor(), cfg.services[0], cfg, "s")))
        cfg = config({"name": "a", "file": {"path": "/nonexistent/list"}})
        self.assertIn("cannot read", str(self.assertRaises(ConfigError, admissionFor, FakeReactor(), cfg.services[0], cfg, "s")))


class AcceptTests(unittest.TestCase):
    """
    On real sockets, as users run it: clients bound to 127.0.0.2 and
    127.0.0.3 connect to a forwarder on 127.0.0.1.
    """

    @defer.inlineCallbacks
    def startForwarder(self, query: str):  # type: ignore[no-untyped-def]
        self.echo = EchoFactory()
        port = reactor.listenTCP(0, self.echo, interface="127.0.0.1")

        def cleanup() -> Any:
            for proto in list(self.echo.open):
                proto.transport.abortConnection()
            return port.stopListening()

        self.addCleanup(cleanup)
        config = buildConfigFromCommandLine([f"tcp://127.0.0.1:0/127.0.0.1:{port.getHost().port}?{query}"], [])
        top = buildServices(reactor, config)
        top.startService()
        self.addCleanup(top.stopService)
        (svc,) = list(top)
        yield svc.listening
        self.lines: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            self.lines.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        return svc.port.getHost().port

    @defer.inlineCallbacks
    def fromAddress(self, source: str, port: int):  # type: ignore[no-untyped-def]
        """
        Connect from C{source}, send a line, and collect until closed.
        """
        client = Collector(b"hello\n")
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, bindAddress=(source, 0))
        yield connectProtocol(endpoint, client)
        yield withTimeout(client.done, 5, f"connection from {source}")
        return client

    @defer.inlineCallbacks
    def test_allowList(self):  # type: ignore[no-untyped-def]
        """
        C{?admission=~127.0.0.2}: 127.0.0.2 is served; 127.0.0.3 is closed
        without a byte, logged, and the target never sees it.
        """
        port = yield self.startForwarder("admission=~127.0.0.2")
        allowed = yield self.fromAddress("127.0.0.2", port)
        self.assertEqual(bytes(allowed.data), b"hello\n")
        self.assertEqual(len(self.echo.accepted), 1)
        refused = yield self.fromAddress("127.0.0.3", port)
        self.assertEqual(bytes(refused.data), b"")
        self.assertEqual(len(self.echo.accepted), 1)
        self.assertTrue([line for line in self.lines if "127.0.0.3" in line and "admission" in line], self.lines)

    @defer.inlineCallbacks
    def test_denyList(self):  # type: ignore[no-untyped-def]
        port = yield self.startForwarder("admission=127.0.0.3")
        refused = yield self.fromAddress("127.0.0.3", port)
        self.assertEqual(bytes(refused.data), b"")
        allowed = yield self.fromAddress("127.0.0.2", port)
        self.assertEqual(bytes(allowed.data), b"hello\n")
        self.assertEqual(len(self.echo.accepted), 1)

    @defer.inlineCallbacks
    def test_afterTheProxyHeader(self):  # type: ignore[no-untyped-def]
        """
        Behind a load balancer (C{proxyProtocol=1}), admission judges the
        client the PROXY header names, before any byte after it is read.
        """
        port = yield self.startForwarder("admission=~192.0.2.1&proxyProtocol=1")
        results = []
        for source in ("192.0.2.1", "192.0.2.9"):
            client = Collector(f"PROXY TCP4 {source} 127.0.0.1 40000 {port}\r\nhello\n".encode(), expect=6)
            yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
            yield withTimeout(client.done, 5, f"connection as {source}")
            results.append(bytes(client.data))
        self.assertEqual(results, [b"hello\n", b""])
        self.assertEqual(len(self.echo.accepted), 1)
        self.assertTrue([line for line in self.lines if "192.0.2.9" in line and "allow list" in line], self.lines)

    @defer.inlineCallbacks
    def test_rlimiterAtAccept(self):  # type: ignore[no-untyped-def]
        """
        C{rlimiter=0.1}: a burst of one connection, then one per 10 s; the
        second is closed at accept without a byte (beside admission).
        """
        port = yield self.startForwarder("rlimiter=0.1")
        first = yield self.fromAddress("127.0.0.2", port)
        second = yield self.fromAddress("127.0.0.2", port)
        self.assertEqual((bytes(first.data), bytes(second.data)), (b"hello\n", b""))
        self.assertEqual(len(self.echo.accepted), 1)
        self.assertTrue([line for line in self.lines if "request rate limit (rlimiter)" in line], self.lines)
