"""
What an operator sees when a relay chain fails (issue 14, items 2 to 4).

The integration test runs it as a user would: a relay server process (C{relay+tls} with a user), one
entry process with four proxy services on four chains, a web server, and
real curl.

  - an unreachable relay server is named, with the hop and how it failed,
    never blamed on the target;
  - with the default C{nodelay=false}, a relay server's refusal reaches
    the close line, and an absolute-URI HTTP request gets a matching status
    (407 for wrong relay credentials, 502 for an unreachable target)
    instead of an empty reply; with C{nodelay=true} so does CONNECT;
  - a normal relay+tls connection ends as a clean close on both ends, and
    no Twisted internals appear at info.

Unit tests below cover the log filter, the TLS half-close rule and the
rtcp listening line.
"""

from __future__ import annotations

import io
import os
import re
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.interfaces import IHalfCloseableDescriptor
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import resource, server
from zope.interface import directlyProvides, implementer

from tests.processes import CONSOLE, LineProcessProtocol, childEnvironment, runToCompletion, spawn
from tests.support.cases import TransportTestCase
from tests.support.reactor import freePort

ENTRY_YAML = """\
services:
{services}
chains:
{chains}
"""

SERVICE = """\
- name: {name}
  addr: 127.0.0.1:0
  handler:
    type: auto
    chain: chain-{name}
  listener:
    type: tcp
"""

CHAIN = """\
- name: chain-{name}
  hops:
  - name: hop-0
    nodes:
    - name: node-0
      addr: 127.0.0.1:{port}
      connector:
        type: relay
        auth:
          username: alice
          password: {password}
        metadata:
          nodelay: '{nodelay}'
      dialer:
        type: {dialer}
"""


class _Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"hello"


class OperatorErrorTests(TransportTestCase):
    timeout = 90

    @defer.inlineCallbacks
    def startProcesses(self):  # type: ignore[no-untyped-def]
        site = server.Site(_Hello())
        site.noisy = False
        self.httpd = self.listenTCP(site)
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        env = childEnvironment(home=self.dir)
        self.server = spawn(
            reactor, CONSOLE + ["-L", "relay+tls://alice:s3cret@127.0.0.1:0"], self.dir, env,
            name="relay server", addCleanup=self.addCleanup,
        )
        _, relayPort = yield self.server.waitForListening(timeout=30)
        self.deadPort = freePort()
        entries = {
            # name: (relay port, password, nodelay, dialer)
            "good": (relayPort, "s3cret", "false", "tls"),
            "badpass": (relayPort, "wrong", "false", "tls"),
            "badpassnodelay": (relayPort, "wrong", "true", "tls"),
            "deadrelay": (self.deadPort, "s3cret", "false", "tcp"),
        }
        config = ENTRY_YAML.format(
            services="".join(SERVICE.format(name=name) for name in entries),
            chains="".join(
                CHAIN.format(name=name, port=port, password=password, nodelay=nodelay, dialer=dialer)
                for name, (port, password, nodelay, dialer) in entries.items()
            ),
        )
        path = os.path.join(self.dir, "entry.yaml")
        with open(path, "w") as f:
            f.write(config)
        self.entry = spawn(reactor, CONSOLE + ["-C", path], self.dir, env, name="entry", addCleanup=self.addCleanup)
        self.ports = {}
        for name in entries:
            m = yield self.entry.waitForLine(rf"\b{name} \(auto\+tcp\) listening on 127\.0\.0\.1:(\d+)", timeout=30)
            self.ports[name] = int(m.group(1))

    @defer.inlineCallbacks
    def curl(self, *args: str):  # type: ignore[no-untyped-def]
        """
        Run curl; fire with C{(exit code, "STATUS/CONNECT-STATUS", stderr)}.
        """
        cmd = ["/usr/bin/curl", "-q", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}/%{http_connect}", *args]
        done: LineProcessProtocol = yield runToCompletion(
            reactor, cmd, self.dir, {"PATH": "/usr/bin:/bin", "HOME": self.dir}, timeout=20, addCleanup=self.addCleanup
        )
        return done.exitCode, done.out.strip(), done.err

    def proxy(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @defer.inlineCallbacks
    def test_failuresNamedAndAnswered(self):  # type: ignore[no-untyped-def]
        yield self.startProcesses()
        url = f"http://127.0.0.1:{self.httpd}/"
        unreachable = f"http://127.0.0.1:{freePort()}/"
        results = {}
        cases = {
            "ok": ("-x", self.proxy("good"), url),
            "okConnect": ("-p", "-x", self.proxy("good"), url),
            "targetUnreachable": ("-x", self.proxy("good"), unreachable),
            "badpass": ("-x", self.proxy("badpass"), url),
            "badpassConnect": ("-p", "-x", self.proxy("badpassnodelay"), url),
            "deadrelay": ("-x", self.proxy("deadrelay"), url),
        }
        for case, args in cases.items():
            results[case] = yield self.curl(*args)
        expected = {
            "ok": (0, "200/000"),
            "okConnect": (0, "200/200"),
            "targetUnreachable": (0, "502/000"),
            "badpass": (0, "407/000"),
            "badpassConnect": (56, "000/407"),
            "deadrelay": (0, "502/000"),
        }
        self.assertEqual(
            {case: result[:2] for case, result in results.items()}, expected,
            f"{results}\n{self.entry.describe()}\n{self.server.describe()}",
        )
        # Every close line is written when the connection ends; curl has
        # its answer by then, the logs may lag a little.
        yield self.entry.waitForLine(
            r"closed, \d+ bytes up, 0 bytes down, [0-9.]+s, relay server 127\.0\.0\.1:\d+ \(hop 1\) "
            r"refused 127\.0\.0\.1:\d+: Unauthorized; answered 407",
            timeout=15,
        )
        yield self.entry.waitForLine(
            r"closed: 127\.0\.0\.1:\d+: relay server 127\.0\.0\.1:\d+ \(hop 1\) refused 127\.0\.0\.1:\d+: Unauthorized; answered 407",
            timeout=15,
        )
        yield self.entry.waitForLine(
            r"refused 127\.0\.0\.1:\d+: Network Unreachable; answered 502", timeout=15
        )
        yield self.entry.waitForLine(
            rf"closed: 127\.0\.0\.1:{self.httpd}: relay server 127\.0\.0\.1:{self.deadPort} \(hop 1\): connection refused; answered 502",
            timeout=15,
        )
        # The two good requests end cleanly on both ends (relay+tls).
        for proc in (self.entry, self.server):
            for _ in range(2):
                yield proc.waitForLine(r"closed, \d+ bytes up, \d+ bytes down, [0-9.]+s, done", timeout=15)
            text = "\n".join(proc.lines["out"] + proc.lines["err"])
            self.assertEqual(len(re.findall(r"bytes down, [0-9.]+s, done$", text, re.M)), 2, text)
            self.assertNotIn("non-clean", text)
            # Nothing blames the target for the dead relay server.
            self.assertNotIn(f"dial 127.0.0.1:{self.httpd}", text)
            # No Twisted internals at info.
            self.assertNotIn(" starting on ", text)
            self.assertNotIn(" object at 0x", text)


class TwistedInternalsTests(SynchronousTestCase):
    """
    Twisted's lines about its own machinery are left out at info and shown
    from C{-D} on (issue 14.4).
    """

    def render(self, debug: int, events: list[dict[str, Any]]) -> str:
        from gostrelay import logs

        saved = (logs.TRACE, logs._level, logs._stream, logs._path)
        self.addCleanup(lambda: (setattr(logs, "TRACE", saved[0]), setattr(logs, "_level", saved[1]),
                                 setattr(logs, "_stream", saved[2]), setattr(logs, "_path", saved[3])))
        stream = io.StringIO()
        logs.configure(debug, stream)
        observer = logs.observer()
        for event in events:
            observer(dict(event, log_time=0.0))
        return stream.getvalue()

    def events(self) -> list[dict[str, Any]]:
        legacy = {"log_namespace": "log_legacy", "log_level": LogLevel.info, "log_format": "{log_text}", "log_system": "-"}
        return [
            dict(legacy, log_text="RelayHandler (ServiceFactory) (TLS) starting on 8420"),
            dict(legacy, log_text="UDPSocketChannel starting on 45862"),
            dict(legacy, log_text="(TCP Port 8420 Closed)"),
            # A unix port names its path (twistd relay --listen unix:...).
            dict(legacy, log_text="RelayHandler (ServiceFactory) (AcceptFactory) starting on '/run/relay.sock'"),
            dict(legacy, log_text="(UNIX Port /run/relay.sock Closed)"),
            {
                "log_namespace": "twisted.application._client_service.ClientService",
                "log_level": LogLevel.info,
                "log_format": "Scheduling retry {attempt} to connect {endpoint} in {delay} seconds.",
                "attempt": 1, "endpoint": "<_BindEachTime object at 0x7f>", "delay": 1.5,
            },
            {"log_namespace": "gostrelay.build.GostService", "log_level": LogLevel.info, "log_format": "service-0 listening"},
            {"log_namespace": "twisted.internet.base", "log_level": LogLevel.info, "log_format": "Received SIGTERM, shutting down."},
            dict(legacy, log_text="Unhandled error starting on the moon", log_level=LogLevel.critical, isError=1),
        ]

    def test_hiddenAtInfo(self) -> None:
        text = self.render(0, self.events())
        self.assertNotIn("starting on 8420", text)
        self.assertNotIn("45862", text)
        self.assertNotIn("Port 8420 Closed", text)
        self.assertNotIn("Scheduling retry", text)
        self.assertNotIn("relay.sock", text)
        self.assertIn("service-0 listening", text)
        self.assertIn("Received SIGTERM", text)
        self.assertIn("starting on the moon", text)

    def test_shownWithDebug(self) -> None:
        text = self.render(1, self.events())
        self.assertIn("starting on 8420", text)
        self.assertIn("starting on '/run/relay.sock'", text)
        self.assertIn("Scheduling retry 1", text)


class HalfCloseUnderTLSTests(SynchronousTestCase):
    """
    A half-close is never passed to a transport with TLS below it (the
    peer's TLS would read the bare FIN as a truncation, and both ends log a
    normal close as "lost in a non-clean fashion").
    """

    def test_tls(self) -> None:
        from twisted.protocols.tls import TLSMemoryBIOProtocol

        from gostrelay.pipe import canHalfClose

        tls = TLSMemoryBIOProtocol(None, Protocol())  # type: ignore[arg-type]
        # What ProtocolWrapper.makeConnection does: claim the TCP
        # transport's interfaces, half-close included.
        directlyProvides(tls, IHalfCloseableDescriptor)

        @implementer(IHalfCloseableDescriptor)
        class Wrapper:
            def __init__(self, transport: Any) -> None:
                self.transport = transport

        self.assertFalse(canHalfClose(tls))
        self.assertFalse(canHalfClose(Wrapper(tls)))
        self.assertTrue(canHalfClose(Wrapper(None)))
        self.assertFalse(canHalfClose(StringTransport()))


class RemoteListenerLineTests(SynchronousTestCase):
    def test_saysWhere(self) -> None:
        """
        An rtcp service says it will listen on the relay server, through
        which hops (issue 14.4), not C{listening on 0.0.0.0:2223}.
        """
        from gostrelay.build import buildServices
        from gostrelay.config.url import buildConfigFromCommandLine

        config = buildConfigFromCommandLine(["rtcp://:2223/127.0.0.1:22"], ["relay://10.0.0.1:1", "relay://10.0.0.2:2"])
        (service,) = list(buildServices(MemoryReactorClock(), config))
        self.assertEqual(
            service.listener.describeListening(),
            "will listen on :2223 at the relay server 10.0.0.2:2 (hop 2), via 10.0.0.1:1 (hop 1)",
        )
