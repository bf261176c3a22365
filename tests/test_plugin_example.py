"""
The example plugin package of docs/plugins.md (examples/gostrelay-echo),
installed as a user would install a third-party type — C{pip install
--no-deps --no-build-isolation --target DIR}, no network — then:

  - its own tests pass (C{python -m twisted.trial gostrelay_echo});
  - its C{echo} handler runs from YAML (C{-C}), from C{-L echo://} and on a
    Twisted description (C{--listen tcp:0 --handler echo}), with its
    declared options checked;
  - its C{srctcp} dialer runs in a chain, from YAML and from C{-F
    relay+srctcp://} (the relay server sees the chosen source address).

The package is installed once for the module (pip takes a few seconds).
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory
from twisted.trial import unittest

from gostrelay.build import BuildContext
from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.handlers.relay import RelayHandler
from tests.processes import CONSOLE, ROOT, LineProcessProtocol, childEnvironment, runToCompletion, spawn
from tests.support.reactor import ReactorSettler, withTimeout
from tests.support.targets import Collector, EchoFactory

EXAMPLE = os.path.join(ROOT, "examples", "gostrelay-echo")

_installed: dict[str, str] = {}


@defer.inlineCallbacks
def installExample(workdir: str):  # type: ignore[no-untyped-def]
    """
    Install the example into a fresh directory once; fire with it.
    """
    if "dir" in _installed:
        return _installed["dir"]
    # Under trial's working directory (_trial_temp), removed by the next run.
    target = os.path.abspath(tempfile.mkdtemp(prefix="gostrelay-echo-", dir="."))
    proto = yield runToCompletion(
        reactor,
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", target, EXAMPLE],
        workdir,
        childEnvironment(PIP_DISABLE_PIP_VERSION_CHECK="1"),
        timeout=120,
    )
    if proto.exitCode != 0:
        raise AssertionError(f"pip install failed:\n{proto.describe()}")
    _installed["dir"] = target
    return target


class PluginExampleTests(unittest.TestCase):
    timeout = 180

    def setUp(self) -> None:
        self.addCleanup(ReactorSettler().settle)

    def childDir(self) -> str:
        path = os.path.abspath(self.mktemp())
        os.makedirs(path)
        return path

    @defer.inlineCallbacks
    def env(self):  # type: ignore[no-untyped-def]
        installed = yield installExample(self.childDir())
        env = childEnvironment(home=self.childDir())
        env["PYTHONPATH"] = os.pathsep.join([installed, ROOT])
        return env

    @defer.inlineCallbacks
    def gostrelay(self, config: str, name: str, *args: str):  # type: ignore[no-untyped-def]
        """
        C{gostrelay -C FILE} (or C{gostrelay ARGS} when C{config} is empty)
        with the example on the path; fires with the child once it listens.
        """
        env = yield self.env()
        path = self.childDir()
        if config:
            with open(os.path.join(path, "config.yaml"), "w") as f:
                f.write(config)
            args = ("-C", "config.yaml")
        proc: LineProcessProtocol = spawn(reactor, CONSOLE + list(args), path, env, name=name, addCleanup=self.addCleanup)
        host, port = yield proc.waitForListening(timeout=20)
        return proc, port

    @defer.inlineCallbacks
    def echoes(self, port: int, payload: bytes, proc: LineProcessProtocol):  # type: ignore[no-untyped-def]
        client = Collector(payload)
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5), client)
        yield withTimeout(client.done, 30, "the echo")
        self.assertEqual(bytes(client.data), payload, proc.describe())

    @defer.inlineCallbacks
    def test_ownTests(self):  # type: ignore[no-untyped-def]
        env = yield self.env()
        proto = yield runToCompletion(
            reactor, [sys.executable, "-m", "twisted.trial", "gostrelay_echo"], self.childDir(), env, timeout=60
        )
        self.assertEqual(proto.exitCode, 0, proto.describe())
        self.assertIn("PASSED", proto.out + proto.err)

    @defer.inlineCallbacks
    def test_echoHandlerFromYAML(self):  # type: ignore[no-untyped-def]
        proc, port = yield self.gostrelay(
            "services:\n- name: echo\n  addr: 127.0.0.1:0\n  handler:\n    type: echo\n"
            "    metadata:\n      idleTimeout: 30s\n",
            "gostrelay -C (echo)",
        )
        yield self.echoes(port, os.urandom(300_000), proc)
        self.assertIn("echo (echo+tcp) listening on", proc.out + proc.err)

    @defer.inlineCallbacks
    def test_echoHandlerFromTheCommandLine(self):  # type: ignore[no-untyped-def]
        """
        C{-L echo://} names the plugin's handler; its declared options are
        checked (a misspelt one is a warning naming the right one).
        """
        proc, port = yield self.gostrelay(
            "", "gostrelay -L echo://", "-L", "echo://127.0.0.1:0?idleTimeout=30s&idelTimeout=1"
        )
        yield self.echoes(port, os.urandom(100_000), proc)
        self.assertIn("(echo+tcp) listening on", proc.out + proc.err)
        self.assertIn("unknown option 'idelTimeout', ignored (did you mean idleTimeout?)", proc.out + proc.err)

    @defer.inlineCallbacks
    def test_echoHandlerOnADescription(self):  # type: ignore[no-untyped-def]
        """
        The Twisted face: C{--listen DESCRIPTION --handler echo}.
        """
        proc, port = yield self.gostrelay(
            "", "gostrelay --listen ... --handler echo",
            "--listen", "tcp:0:interface=127.0.0.1", "--handler", "echo", "--option", "idleTimeout=30s",
        )
        yield self.echoes(port, b"hello", proc)
        self.assertIn("(echo on tcp:0:interface=127.0.0.1) listening on", proc.out + proc.err)

    @defer.inlineCallbacks
    def test_badOptionValueRefused(self):  # type: ignore[no-untyped-def]
        env = yield self.env()
        proto = yield runToCompletion(
            reactor, CONSOLE + ["-L", "echo://127.0.0.1:0?idleTimeout=soon"], self.childDir(), env, timeout=30
        )
        self.assertEqual(proto.exitCode, 1, proto.describe())
        self.assertIn("option idleTimeout='soon' is not a duration", proto.err)

    def relayAndEcho(self) -> tuple[list[Any], int, int, EchoFactory]:
        """
        An echo target and a relay server in this process that records the
        address of each client; returns (addresses, relay port, echo port,
        echo factory).
        """
        echo = EchoFactory()
        echoPort = reactor.listenTCP(0, echo, interface="127.0.0.1")
        self.addCleanup(echoPort.stopListening)

        def abortEchoes() -> None:
            for protocol in list(echo.open):
                protocol.transport.abortConnection()

        self.addCleanup(abortEchoes)
        config = buildConfigFromCommandLine(["relay://127.0.0.1:0"], [])
        relay = RelayHandler(reactor, config.services[0], BuildContext(reactor, config))
        peers: list[Any] = []

        class Recording(Factory):
            def buildProtocol(self, addr: Any) -> Any:
                peers.append(addr)
                return relay.buildProtocol(addr)

        relayPort = reactor.listenTCP(0, Recording(), interface="127.0.0.1")
        self.addCleanup(relayPort.stopListening)
        return peers, relayPort.getHost().port, echoPort.getHost().port, echo

    @defer.inlineCallbacks
    def test_sourceDialerInAChain(self):  # type: ignore[no-untyped-def]
        """
        A forwarder whose chain (YAML) reaches a relay server with the
        srctcp dialer: the relay server sees the connection come from
        127.0.0.2.
        """
        peers, relayPort, echoPort, echo = self.relayAndEcho()
        proc, port = yield self.gostrelay(
            f"services:\n- name: fwd\n  addr: 127.0.0.1:0\n  handler:\n    type: tcp\n    chain: out\n"
            f"  forwarder:\n    nodes:\n    - name: t\n      addr: 127.0.0.1:{echoPort}\n"
            f"chains:\n- name: out\n  hops:\n  - name: h\n    nodes:\n    - name: n\n"
            f"      addr: 127.0.0.1:{relayPort}\n"
            f"      connector:\n        type: relay\n      dialer:\n        type: srctcp\n"
            f"        metadata:\n          source: 127.0.0.2\n",
            "gostrelay -C (srctcp chain)",
        )
        yield self.echoes(port, b"through srctcp", proc)
        self.assertEqual([p.host for p in peers], ["127.0.0.2"])

    @defer.inlineCallbacks
    def test_sourceDialerFromTheCommandLine(self):  # type: ignore[no-untyped-def]
        """
        C{-F relay+srctcp://...?source=} names the plugin's dialer.
        """
        peers, relayPort, echoPort, echo = self.relayAndEcho()
        proc, port = yield self.gostrelay(
            "", "gostrelay -F relay+srctcp://",
            "-L", f"tcp://127.0.0.1:0/127.0.0.1:{echoPort}", "-F", f"relay+srctcp://127.0.0.1:{relayPort}?source=127.0.0.2",
        )
        yield self.echoes(port, b"through srctcp", proc)
        self.assertEqual([p.host for p in peers], ["127.0.0.2"])
