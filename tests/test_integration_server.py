"""
Integration tests: the relay server as users run it, C{twistd -n relay} and
the C{gostrelay} console script, spawned from the source tree and spoken to
over real sockets on 127.0.0.1.

Every child runs in its own temporary directory and is stopped (TERM, then
KILL) at cleanup; every port and connection the tests open is closed.
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.trial import unittest

import gostrelay
from gostrelay.wire.relay import connectRequest
from tests.processes import (
    CONSOLE,
    TWISTD_RELAY,
    LineProcessProtocol,
    childEnvironment,
    runToCompletion,
)
from tests.support.cases import ProcessTestCase
from tests.support.lab import RelayProbe
from tests.support.targets import EchoFactory

OK = b"\x01\x00\x00\x00"
UNAUTHORIZED = b"\x01\x02\x00\x00"
MIB = 1024 * 1024


# -- the client: speaks the relay protocol, then bytes


class IntegrationTestCase(ProcessTestCase):
    """
    Helpers shared by the test cases: children started by either launcher
    (twistd or the console script), an echo target, relay clients.
    """

    timeout = 30

    def env(self) -> dict[str, str]:
        """
        Our environment, the source tree on PYTHONPATH and an empty HOME
        (so no ~/.gost configuration can leak in).
        """
        return childEnvironment(home=self.childDir())

    def startServer(self, launcher: list[str], *args: str) -> LineProcessProtocol:
        return self.start(*args, launcher=launcher)

    def startListeningServer(self, launcher: list[str], *args: str) -> defer.Deferred[Any]:
        """
        Start a server; fire with C{(process, port)} once it logs that it is
        listening.
        """
        return self.startListening(*args, launcher=launcher)

    def runChild(self, launcher: list[str], *args: str, env: dict[str, str] | None = None, path: str | None = None):  # type: ignore[no-untyped-def]
        """
        Run a child expected to exit by itself.
        """
        return runToCompletion(
            reactor,
            launcher + list(args),
            path or self.childDir(),
            env or self.env(),
            timeout=15,
            addCleanup=self.addCleanup,  # type: ignore[attr-defined]
        )

    @defer.inlineCallbacks
    def connectClient(self, port: int, first: bytes, halfCloseAfterFirst: bool = False):  # type: ignore[no-untyped-def]
        client = RelayProbe(first, halfClose=halfCloseAfterFirst)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
        yield connectProtocol(endpoint, client)

        def cleanup() -> None:
            if not client.lost:
                client.transport.abortConnection()  # type: ignore[union-attr]

        self.addCleanup(cleanup)
        return client

    def assertCleanEOF(self, client: RelayProbe, reason: Failure) -> None:
        """
        The relay half-closed the client (a FIN, not a reset) and the
        connection ended cleanly.
        """
        self.assertTrue(client.eof, "the client never saw EOF (FIN) from the relay")
        self.assertTrue(reason.check(ConnectionDone), f"connection lost uncleanly: {reason.value!r}")

    @defer.inlineCallbacks
    def assertConnectEchoes(self, relayPort: int, request: bytes, payload: bytes, echo: EchoFactory):  # type: ignore[no-untyped-def]
        """
        C{request} gets OK; C{payload} sent after it, then a half-close,
        comes back whole, then EOF.  Fires with the client.
        """
        before = len(echo.accepted)
        client = yield self.connectClient(relayPort, request)
        response = yield client.response
        self.assertEqual(response.status, 0)
        self.assertEqual(bytes(client.raw[:4]), OK)
        client.send(payload, halfClose=True)
        yield client.done
        reason = client.reason
        self.assertEqual(len(client.data), len(payload))
        self.assertTrue(bytes(client.data) == payload, "echoed bytes differ from the payload")
        self.assertCleanEOF(client, reason)
        self.assertEqual(len(echo.accepted), before + 1)
        target = echo.accepted[-1]
        self.assertEqual(target.received, len(payload))
        self.assertTrue(target.halfClosed, "the client's half-close did not reach the target as a FIN")
        return client

    def assertRefusedAtStart(self, proc: LineProcessProtocol, *names: str) -> None:
        self.assertTrue(proc.ended)
        self.assertNotEqual(proc.exitCode, 0, proc.describe())
        self.assertIsNotNone(proc.exitCode, f"killed by a signal:\n{proc.describe()}")
        for name in names:
            self.assertIn(name, proc.err, proc.describe())
        self.assertNotIn("listening on", proc.out + proc.err, proc.describe())


def _re(text: str) -> str:
    return re.escape(text)


class TwistdPluginTests(IntegrationTestCase):
    """
    C{twistd -n --pidfile= relay -L relay://username:password@127.0.0.1:0}.
    """

    ARGS = ("-L", "relay://username:password@127.0.0.1:0")

    @defer.inlineCallbacks
    def test_connectOneMebibyteWithHalfClose(self):  # type: ignore[no-untyped-def]
        """
        A CONNECT with the right credentials gets 01000000, then relays
        1 MiB to the echo target and back; the client's half-close reaches
        the target, and the target's close reaches the client after every
        byte.  The process logs a 'connected' and a 'closed' line naming
        the peer and target, the latter with exact byte counts.
        """
        echo, echoPort = self.startEcho()
        proc, port = yield self.startListeningServer(TWISTD_RELAY, *self.ARGS)
        payload = os.urandom(MIB)
        target = f"127.0.0.1:{echoPort}"
        request = connectRequest(target, "tcp", "username", "password").encode()
        client = yield self.assertConnectEchoes(port, request, payload, echo)

        peer = f"127.0.0.1:{client.localPort}"
        connected = yield proc.waitForLine(
            rf"{_re(peer)} CONNECT {_re(target)}/tcp user='username': connected"
        )
        self.assertTrue(connected)
        closed = yield proc.waitForLine(rf"{_re(peer)} CONNECT {_re(target)}/tcp user='username': closed, .*")
        self.assertIn(f"{MIB} bytes up, {MIB} bytes down", closed.group(0), proc.describe())

    @defer.inlineCallbacks
    def test_wrongCredentials(self):  # type: ignore[no-untyped-def]
        """
        A wrong password, and no credentials at all, get exactly 01020000
        and then a close; the target is never dialed.
        """
        echo, echoPort = self.startEcho()
        proc, port = yield self.startListeningServer(TWISTD_RELAY, *self.ARGS)
        target = f"127.0.0.1:{echoPort}"
        for request in (
            connectRequest(target, "tcp", "username", "wrong").encode(),
            connectRequest(target, "tcp", "nobody", "password").encode(),
            connectRequest(target).encode(),
        ):
            client = yield self.connectClient(port, request)
            yield client.done
            reason = client.reason
            self.assertEqual(bytes(client.raw), UNAUTHORIZED, f"for request {request.hex()}")
            self.assertCleanEOF(client, reason)
        self.assertEqual(echo.accepted, [])
        yield proc.waitForLine(r"refused with Unauthorized")


class ConsoleScriptTests(IntegrationTestCase):
    """
    C{python -m gostrelay -L relay://127.0.0.1:0}: no authentication.
    """

    @defer.inlineCallbacks
    def test_connectWithoutAuth(self):  # type: ignore[no-untyped-def]
        """
        Without users configured, a CONNECT without credentials is relayed.
        """
        echo, echoPort = self.startEcho()
        proc, port = yield self.startListeningServer(CONSOLE, "-L", "relay://127.0.0.1:0")
        payload = b"hello through the relay\n" * 100
        yield self.assertConnectEchoes(port, connectRequest(f"127.0.0.1:{echoPort}").encode(), payload, echo)

    @defer.inlineCallbacks
    def test_badVersionClosedSilently(self):  # type: ignore[no-untyped-def]
        """
        A request with version 2 is closed with no reply at all, and the
        server then serves a good client.
        """
        echo, echoPort = self.startEcho()
        proc, port = yield self.startListeningServer(CONSOLE, "-L", "relay://127.0.0.1:0")
        bad = yield self.connectClient(port, b"\x02\x01\x00\x00")
        yield bad.done
        reason = bad.reason
        self.assertEqual(bytes(bad.raw), b"", "a bad version must get no reply")
        self.assertTrue(bad.eof or reason.check(ConnectionDone), repr(reason.value))
        self.assertEqual(echo.accepted, [])
        yield proc.waitForLine(rf"127\.0\.0\.1:{bad.localPort}: closed without reply: bad request: bad version 0x02")
        yield self.assertConnectEchoes(
            port, connectRequest(f"127.0.0.1:{echoPort}").encode(), b"after the bad one", echo
        )


class ForwardModeTests(IntegrationTestCase):
    """
    C{-L relay://127.0.0.1:0/127.0.0.1:ECHO}: every request goes to the
    forward target.
    """

    @defer.inlineCallbacks
    def test_forwardToTarget(self):  # type: ignore[no-untyped-def]
        """
        A CONNECT with address ':0' (what GOST's client sends when it has no
        target) reaches the forward target; request, payload and half-close
        sent at once, before the reply, all arrive.
        """
        echo, echoPort = self.startEcho()
        proc, port = yield self.startListeningServer(
            CONSOLE, "-L", f"relay://127.0.0.1:0/127.0.0.1:{echoPort}"
        )
        payload = os.urandom(64 * 1024)
        client = yield self.connectClient(port, connectRequest(":0").encode() + payload, halfCloseAfterFirst=True)
        yield client.done
        reason = client.reason
        self.assertEqual(bytes(client.raw[:4]), OK, proc.describe())
        self.assertEqual(len(client.data), len(payload))
        self.assertTrue(bytes(client.data) == payload, "echoed bytes differ from the payload")
        self.assertCleanEOF(client, reason)
        self.assertEqual(len(echo.accepted), 1)
        self.assertTrue(echo.accepted[0].halfClosed)
        yield proc.waitForLine(rf"FORWARD 127\.0\.0\.1:{echoPort}/tcp user='': connected")


class RefusedAtStartTests(IntegrationTestCase):
    """
    Configurations naming things not implemented stop the process before
    it listens, non-zero, naming the thing.
    """

    @defer.inlineCallbacks
    def test_quicListener(self):  # type: ignore[no-untyped-def]
        procs = yield defer.gatherResults(
            [self.runChild(launcher, "-L", "relay+quic://:0") for launcher in (TWISTD_RELAY, CONSOLE)]
        )
        for proc in procs:
            self.assertRefusedAtStart(proc, "quic")

    @defer.inlineCallbacks
    def test_parallelStrategy(self):  # type: ignore[no-untyped-def]
        procs = yield defer.gatherResults(
            [
                self.runChild(launcher, "-L", "relay://127.0.0.1:0/127.0.0.1:1?strategy=parallel")
                for launcher in (TWISTD_RELAY, CONSOLE)
            ]
        )
        for proc in procs:
            self.assertRefusedAtStart(proc, "strategy", "parallel")


class OptionsTests(IntegrationTestCase):
    """
    -O, -V, no services, GOST's single-dash long flags.
    """

    @defer.inlineCallbacks
    def test_outputYAML(self):  # type: ignore[no-untyped-def]
        """
        C{-O yaml} prints the configuration GOST's documentation shows for
        C{-L relay://:8420} and exits 0 without listening.
        """
        procs = yield defer.gatherResults(
            [self.runChild(launcher, "-O", "yaml", "-L", "relay://:8420") for launcher in (CONSOLE, TWISTD_RELAY)]
        )
        for proc in procs:
            self.assertEqual(proc.exitCode, 0, proc.describe())
            data = yaml.safe_load(proc.out)
            self.assertEqual(
                data,
                {
                    "services": [
                        {
                            "name": "service-0",
                            "addr": ":8420",
                            "handler": {"type": "relay"},
                            "listener": {"type": "tcp"},
                        }
                    ]
                },
                proc.describe(),
            )

    @defer.inlineCallbacks
    def test_versionExits0(self):  # type: ignore[no-untyped-def]
        """
        C{-V} prints one version line and exits 0.
        """
        proc = yield self.runChild(CONSOLE, "-V")
        self.assertEqual(proc.exitCode, 0, proc.describe())
        lines = [line for line in proc.lines["out"] if line.strip()]
        self.assertEqual(len(lines), 1, proc.describe())
        self.assertRegex(lines[0], r"\d+\.\d+", proc.describe())

    @defer.inlineCallbacks
    def test_versionNamesGostrelay(self):  # type: ignore[no-untyped-def]
        """
        C{-V} prints gostrelay's version (L{gostrelay.tap.versionText}), not
        only Twisted's, from the console script and from C{twistd relay}.
        """
        procs = yield defer.gatherResults([self.runChild(launcher, "-V") for launcher in (CONSOLE, TWISTD_RELAY)])
        for proc in procs:
            self.assertEqual(proc.exitCode, 0, proc.describe())
            self.assertIn(f"gostrelay {gostrelay.__version__}", proc.out, proc.describe())

    @defer.inlineCallbacks
    def test_noServices(self):  # type: ignore[no-untyped-def]
        """
        Without -L or -C, in an empty directory with an empty HOME, the
        process exits 2 with a usage message naming -L.
        """
        for d in ("/etc/gost",):
            for name in ("gost.yaml", "gost.yml", "gost.json"):
                if os.path.exists(os.path.join(d, name)):
                    raise unittest.SkipTest(f"{d}/{name} exists on this machine")
        procs = yield defer.gatherResults([self.runChild(launcher) for launcher in (CONSOLE, TWISTD_RELAY)])
        for proc in procs:
            self.assertEqual(proc.exitCode, 2, proc.describe())
            self.assertIn("-L", proc.err, proc.describe())
            self.assertNotIn("listening on", proc.out + proc.err)

    @defer.inlineCallbacks
    def test_singleDashMetrics(self):  # type: ignore[no-untyped-def]
        """
        GOST's C{-metrics ADDR} (and C{-metrics=ADDR}) is understood as
        C{--metrics} under twistd and the console script: the Prometheus
        endpoint answers with GOST's metric names.
        """
        from twisted.web.client import Agent, readBody

        for launcher in (CONSOLE, TWISTD_RELAY):
            for form in ("split", "joined"):
                probe = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")  # type: ignore[attr-defined]
                port = probe.getHost().port
                yield probe.stopListening()
                address = f"127.0.0.1:{port}"
                flag = ("-metrics", address) if form == "split" else (f"-metrics={address}",)
                proc, _ = yield self.startListeningServer(launcher, *flag, "-L", "relay://127.0.0.1:0")
                for unknown in ("no such option", "not recognized"):
                    self.assertNotIn(unknown, proc.err, proc.describe())
                response = yield Agent(reactor).request(b"GET", f"http://{address}/metrics".encode())
                body = yield readBody(response)
                self.assertEqual(response.code, 200, proc.describe())
                self.assertIn(b"gost_services", body)
                yield proc.stop()

    @defer.inlineCallbacks
    def test_unknownSingleDashOption(self):  # type: ignore[no-untyped-def]
        """
        The control for L{test_singleDashMetrics}: a flag GOST does not have
        is reported as unknown, exit 2.
        """
        proc = yield self.runChild(CONSOLE, "-bogus", "1", "-L", "relay://127.0.0.1:0")
        self.assertEqual(proc.exitCode, 2, proc.describe())
        self.assertIn("not recognized", proc.err, proc.describe())


class PortInUseTests(IntegrationTestCase):
    @defer.inlineCallbacks
    def test_portInUse(self):  # type: ignore[no-untyped-def]
        """
        A port that cannot be bound stops the process non-zero, under
        twistd and from the console script.
        """
        busy = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(busy.stopListening)
        port = busy.getHost().port
        procs = yield defer.gatherResults(
            [self.runChild(launcher, "-L", f"relay://127.0.0.1:{port}") for launcher in (CONSOLE, TWISTD_RELAY)]
        )
        for proc in procs:
            self.assertRefusedAtStart(proc)
            # twistd logs the error (its stderr is redirected to the log, on
            # stdout); the console script prints it on stderr.
            said = proc.out + proc.err
            self.assertIn(f"127.0.0.1:{port}", said, proc.describe())
            self.assertIn("in use", said, proc.describe())
        self.assertIn("in use", procs[0].err, procs[0].describe())
