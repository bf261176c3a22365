"""
The Twisted face as users run it (issue 16; issue 14 items 5 and 6):
C{twistd -n --pidfile= relay --listen DESCRIPTION} and the console script
with Twisted endpoint descriptions (tcp, tcp6, ssl with a key and
certificate generated here, unix, a nested ws), with and without
per-service flags, spoken to by a relay client written here from the wire
codec; C{-O yaml} → C{-C}; a third party's handler by name; one-line errors;
help; an editable install; a clean SIGTERM exits 0.

Children run from the source tree on 127.0.0.1 / ::1 only, each in its own
directory, and are stopped at cleanup.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import zipfile
from typing import Any

import yaml
from twisted.internet import defer, reactor
from twisted.internet.endpoints import (
    SSL4ClientEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
    clientFromString,
    connectProtocol,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.python.failure import Failure

from gostrelay.wire.relay import Status, connectRequest
from tests.processes import (
    CONSOLE,
    ISOLATED,
    ROOT,
    TWISTD_RELAY,
    LineProcessProtocol,
    childEnvironment,
    sitePackagesWithout,
    spawn,
)
from tests.support.cases import ReactorTestCase
from tests.support.lab import RelayProbe
from tests.support.reactor import withTimeout

LAUNCHERS = (TWISTD_RELAY, CONSOLE)
LISTENING_TCP = r"listening on \[?([0-9a-f.:]+?)\]?:(\d+)$"
LISTENING_UNIX = r"listening on unix:(\S+)$"
SYNOPSIS_FIRST = "Usage: gostrelay [options]"


class FaceTestCase(ReactorTestCase):
    """
    An echo target, children, and the relay conversation; every socket and
    timer gone at cleanup.
    """

    timeout = 120

    def setUp(self) -> None:
        super().setUp()
        _, echoPort = self.startEcho()
        self.echoAddress = f"127.0.0.1:{echoPort}"

    def child(
        self, launcher: list[str], *args: str, env: dict[str, str] | None = None, path: str | None = None
    ) -> LineProcessProtocol:
        return spawn(
            reactor, [*launcher, *args], path or os.path.abspath(self.mktemp()),  # type: ignore[attr-defined]
            env=env, addCleanup=self.addCleanup,  # type: ignore[attr-defined]
        )

    @defer.inlineCallbacks
    def started(self, launcher: list[str], *args: str, pattern: str = LISTENING_TCP, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        proc = self.child(launcher, *args, env=env)
        match = yield proc.waitForLine(pattern, timeout=30)
        return proc, match

    @defer.inlineCallbacks
    def converse(self, endpoint: Any, user: str | None = None, password: str = "", target: str | None = None):  # type: ignore[no-untyped-def]
        """
        One relay CONNECT to the echo target through C{endpoint}; returns
        the probe (status and echoed bytes).
        """
        payload = os.urandom(4096)
        request = connectRequest(self.echoAddress if target is None else target, "tcp", user, password).encode()
        probe = RelayProbe(request + payload, closeAfter=len(payload))
        yield withTimeout(connectProtocol(endpoint, probe), 15, "connect")
        yield withTimeout(probe.done, 15, "relay conversation")
        return probe, payload

    @defer.inlineCallbacks
    def assertRelays(self, endpoint: Any, proc: LineProcessProtocol, user: str | None = None, password: str = "", target: str | None = None):  # type: ignore[no-untyped-def]
        probe, payload = yield self.converse(endpoint, user, password, target)
        self.assertEqual(probe.status, Status.OK, proc.describe())
        self.assertTrue(bytes(probe.data) == payload, f"echo differs\n{proc.describe()}")

    @defer.inlineCallbacks
    def assertStopsCleanly(self, proc: LineProcessProtocol):  # type: ignore[no-untyped-def]
        """
        SIGTERM: exit 0 under twistd as under the console script.
        """
        yield proc.stop(grace=10)
        self.assertEqual((proc.exitCode, proc.signal), (0, None), proc.describe())


class ServeTests(FaceTestCase):
    @defer.inlineCallbacks
    def test_tcpWithUser(self):  # type: ignore[no-untyped-def]
        """
        C{--listen tcp:... --user u:p}: relay with that user, refuse
        others; no open-relay warning on loopback; a clean stop exits 0.
        """
        for launcher in LAUNCHERS:
            proc, m = yield self.started(launcher, "--listen", "tcp:0:interface=127.0.0.1", "--user", "u:p")
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", int(m.group(2)))
            yield self.assertRelays(endpoint, proc, "u", "p")
            probe, _ = yield self.converse(endpoint, "u", "wrong")
            self.assertEqual(probe.status, Status.UNAUTHORIZED, proc.describe())
            self.assertNotIn("open relay", proc.out + proc.err)
            yield self.assertStopsCleanly(proc)

    @defer.inlineCallbacks
    def test_tcpWithoutFlags(self):  # type: ignore[no-untyped-def]
        """
        The first try of a Twisted user: C{twistd relay --listen tcp:PORT}
        serves relay.
        """
        proc, m = yield self.started(TWISTD_RELAY, "--listen", "tcp:0:interface=127.0.0.1")
        yield self.assertRelays(TCP4ClientEndpoint(reactor, "127.0.0.1", int(m.group(2))), proc)
        yield self.assertStopsCleanly(proc)

    @defer.inlineCallbacks
    def test_tcp6(self):  # type: ignore[no-untyped-def]
        for launcher in LAUNCHERS:
            proc, m = yield self.started(launcher, "--listen", "tcp6:0:interface=\\:\\:1", "--user", "u:p")
            self.assertEqual(m.group(1), "::1")
            yield self.assertRelays(TCP6ClientEndpoint(reactor, "::1", int(m.group(2))), proc, "u", "p")

    @defer.inlineCallbacks
    def test_ssl(self):  # type: ignore[no-untyped-def]
        """
        Twisted's own C{ssl:} with C{privateKey}/C{certKey} (a certificate
        made here), in relay forward mode (C{--target}).
        """
        from gostrelay.transports.tls import generateCertificate

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        certificate, key = generateCertificate("localhost")
        for name, data in (("cert.pem", certificate), ("key.pem", key)):
            with open(os.path.join(directory, name), "wb") as f:
                f.write(data)
        description = f"ssl:0:interface=127.0.0.1:privateKey={directory}/key.pem:certKey={directory}/cert.pem"
        for launcher in LAUNCHERS:
            proc, m = yield self.started(launcher, "--listen", description, "--target", self.echoAddress)
            endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", int(m.group(2)), CertificateOptions())
            yield self.assertRelays(endpoint, proc, target=":0")

    @defer.inlineCallbacks
    def test_tlsDirectory(self):  # type: ignore[no-untyped-def]
        """
        Twisted's C{tls:} endpoint: a directory of PEM files, one per
        server name (SNI), and C{port=}.
        """
        from twisted.internet.ssl import Certificate, optionsForClientTLS

        from gostrelay.transports.tls import generateCertificate

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        certificate, key = generateCertificate("localhost")
        with open(os.path.join(directory, "localhost.pem"), "wb") as f:
            f.write(certificate + key)
        proc, m = yield self.started(CONSOLE, "--listen", f"tls:{directory}:port=0:interface=127.0.0.1", "--user", "u:p")
        options = optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(certificate))
        endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", int(m.group(2)), options)
        yield self.assertRelays(endpoint, proc, "u", "p")

    @defer.inlineCallbacks
    def test_unix(self):  # type: ignore[no-untyped-def]
        directory = tempfile.mkdtemp(prefix="gostrelay-", dir="/tmp")
        self.addCleanup(shutil.rmtree, directory, True)
        for launcher in LAUNCHERS:
            path = os.path.join(directory, f"relay-{len(launcher)}.sock")
            proc, m = yield self.started(launcher, "--listen", f"unix:{path}", pattern=LISTENING_UNIX)
            self.assertEqual(m.group(1), path)
            self.assertNotIn("open relay", proc.out + proc.err)
            yield self.assertRelays(UNIXClientEndpoint(reactor, path), proc)
            yield self.assertStopsCleanly(proc)

    @defer.inlineCallbacks
    def test_systemd(self):  # type: ignore[no-untyped-def]
        """
        C{systemd:domain=INET:index=0}: the socket comes from the parent
        (socket activation), as systemd passes it.
        """
        import socket

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        port = sock.getsockname()[1]
        proto = LineProcessProtocol(reactor, "systemd")
        args = ["/bin/sh", "-c", 'export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=relay; exec "$@"', "sh", *TWISTD_RELAY,
                "--listen", "systemd:domain=INET:index=0", "--user", "u:p"]
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        reactor.spawnProcess(  # type: ignore[attr-defined]
            proto, args[0], args, env=childEnvironment(), path=directory,
            childFDs={0: "w", 1: "r", 2: "r", 3: sock.fileno()},
        )
        self.addCleanup(proto.stop)
        sock.close()
        match = yield proto.waitForLine(LISTENING_TCP, timeout=30)
        self.assertEqual(int(match.group(2)), port, proto.describe())
        yield self.assertRelays(TCP4ClientEndpoint(reactor, "127.0.0.1", port), proto, "u", "p")

    @defer.inlineCallbacks
    def test_haproxy(self):  # type: ignore[no-untyped-def]
        """
        Twisted's C{haproxy:} wrapper: a PROXY header, then relay.
        """
        proc, m = yield self.started(CONSOLE, "--listen", "haproxy:tcp:0:interface=127.0.0.1", "--user", "u:p")
        header = b"PROXY TCP4 192.0.2.1 127.0.0.1 40000 8420\r\n"
        payload = os.urandom(1024)
        probe = RelayProbe(header + connectRequest(self.echoAddress, "tcp", "u", "p").encode() + payload, closeAfter=len(payload))
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", int(m.group(2)))
        yield withTimeout(connectProtocol(endpoint, probe), 15, "connect")
        yield withTimeout(probe.done, 15, "relay conversation")
        self.assertEqual(probe.status, Status.OK, proc.describe())
        self.assertTrue(bytes(probe.data) == payload, proc.describe())

    @defer.inlineCallbacks
    def test_nestedWebSocket(self):  # type: ignore[no-untyped-def]
        """
        A nested description: relay over our C{ws:} over C{tcp:}, with
        per-service flags.
        """
        for launcher in LAUNCHERS:
            proc, m = yield self.started(
                launcher, "--listen", "ws:tcp\\:0\\:interface\\=127.0.0.1:path=/relay", "--user", "u:p",
                "--option", "readTimeout=5s",
            )
            endpoint = clientFromString(reactor, f"ws:tcp\\:127.0.0.1\\:{m.group(2)}:path=/relay")
            yield self.assertRelays(endpoint, proc, "u", "p")

    @defer.inlineCallbacks
    def test_outputThenConfig(self):  # type: ignore[no-untyped-def]
        """
        C{-O yaml} of a description service, read back with C{-C}, runs it.
        """
        printed = self.child(
            CONSOLE, "-O", "yaml", "--listen", "tcp:0:interface=127.0.0.1", "--user", "a:1", "--user", "b:2",
        )
        yield printed.waitForExit(30)
        self.assertEqual(printed.exitCode, 0, printed.describe())
        data = yaml.safe_load(printed.out)
        self.assertEqual(data["services"][0]["addr"], "tcp:0:interface=127.0.0.1")
        self.assertEqual(data["services"][0]["listener"], {"type": "endpoint"})
        path = os.path.abspath(self.mktemp() + ".yaml")
        with open(path, "w") as f:
            f.write(printed.out)
        for launcher in LAUNCHERS:
            proc, m = yield self.started(launcher, "-C", path)
            yield self.assertRelays(TCP4ClientEndpoint(reactor, "127.0.0.1", int(m.group(2))), proc, "b", "2")


ECHO_PACKAGE = '''
from twisted.internet.protocol import Factory, Protocol


class Echo(Protocol):
    def dataReceived(self, data):
        self.transport.write(b"echo:" + data)


def EchoHandler(reactor, service, context):
    return Factory.forProtocol(Echo)
'''

ECHO_PLUGIN = '''
from gostrelay.registry import TypePlugin

echoHandler = TypePlugin("handler", "echo", "echoplugin.EchoHandler", options={"greeting": "string"})
'''


#: A third party's server endpoint prefix, found through twisted.plugin:
#: C{myep:PORT} listens on loopback TCP.
ENDPOINT_PLUGIN = '''
from twisted.internet.interfaces import IStreamServerEndpointStringParser
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IPlugin, IStreamServerEndpointStringParser)
class _MyEndpoint:
    prefix = "myep"

    def parseStreamServer(self, reactor, port, interface="127.0.0.1"):
        from twisted.internet.endpoints import TCP4ServerEndpoint

        return TCP4ServerEndpoint(reactor, int(port), interface=interface)


myep = _MyEndpoint()
'''


class Probe(Protocol):
    def __init__(self, payload: bytes, expected: int) -> None:
        self.payload = payload
        self.expected = expected
        self.data = bytearray()
        self.done: defer.Deferred[bytes] = defer.Deferred()
        self.lost: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.payload)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if len(self.data) >= self.expected and not self.done.called:
            self.done.callback(bytes(self.data))

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if not self.done.called:
            self.done.callback(bytes(self.data))
        self.lost.callback(None)


class ThirdPartyTests(FaceTestCase):
    """
    A handler C{echo} registered by a plugin in its own package, reached by
    name from C{-L} and C{--handler}, printed by C{-O}.
    """

    def pluginEnvironment(self) -> dict[str, str]:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(directory, "echoplugin"))
        os.makedirs(os.path.join(directory, "twisted", "plugins"))
        with open(os.path.join(directory, "echoplugin", "__init__.py"), "w") as f:
            f.write(ECHO_PACKAGE)
        with open(os.path.join(directory, "twisted", "plugins", "echoplugin_types.py"), "w") as f:
            f.write(ECHO_PLUGIN)
        with open(os.path.join(directory, "twisted", "plugins", "myep_endpoint.py"), "w") as f:
            f.write(ENDPOINT_PLUGIN)
        env = childEnvironment()
        env["PYTHONPATH"] = os.pathsep.join([ROOT, directory])
        return env

    @defer.inlineCallbacks
    def test_echoByName(self):  # type: ignore[no-untyped-def]
        env = self.pluginEnvironment()
        printed = spawn(reactor, [*CONSOLE, "-O", "yaml", "-L", "echo://:9999?greeting=hi"], os.path.abspath(self.mktemp()), env=env)
        yield printed.waitForExit(30)
        self.assertEqual(printed.exitCode, 0, printed.describe())
        self.assertEqual(yaml.safe_load(printed.out)["services"][0]["handler"]["type"], "echo", printed.describe())
        self.assertNotIn("warning", printed.err, printed.describe())
        for launcher, args in (
            (CONSOLE, ["-L", "echo://127.0.0.1:0"]),
            (TWISTD_RELAY, ["--listen", "tcp:0:interface=127.0.0.1", "--handler", "echo"]),
        ):
            proc, m = yield self.started(launcher, *args, env=env)
            probe = Probe(b"hello", len(b"echo:hello"))
            yield withTimeout(connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", int(m.group(2))), probe), 15, "connect")
            data = yield withTimeout(probe.done, 15, "echo")
            self.assertEqual(data, b"echo:hello", proc.describe())
            probe.transport.loseConnection()  # type: ignore[union-attr]
            yield probe.lost


    @defer.inlineCallbacks
    def test_endpointPrefixByName(self):  # type: ignore[no-untyped-def]
        """
        A server endpoint prefix a third party registers through
        twisted.plugin is a description (case 2 of the parse rule), served
        with relay and the per-service flags under both entry points; a
        typo of it is refused naming it.
        """
        env = self.pluginEnvironment()
        for launcher in LAUNCHERS:
            proc, m = yield self.started(launcher, "--listen", "myep:0", "--user", "u:p", env=env)
            yield self.assertRelays(TCP4ClientEndpoint(reactor, "127.0.0.1", int(m.group(2))), proc, "u", "p")
        typo = spawn(reactor, [*CONSOLE, "--listen", "myeq:0"], os.path.abspath(self.mktemp()), env=env)
        yield typo.waitForExit(30)
        self.assertEqual(typo.exitCode, 1, typo.describe())
        self.assertIn("did you mean myep:0?", typo.err, typo.describe())


class ErrorTests(FaceTestCase):
    """
    One line on standard error, no traceback, the documented exit code,
    under both entry points.
    """

    @defer.inlineCallbacks
    def assertOneLine(self, args: list[str], code: int, *words: str):  # type: ignore[no-untyped-def]
        procs = [self.child(launcher, *args) for launcher in LAUNCHERS]
        for proc in procs:
            yield proc.waitForExit(30)
            self.assertEqual(proc.exitCode, code, proc.describe())
            lines = [line for line in proc.lines["err"] if line.strip()]
            if code == 2:
                self.assertEqual(len(lines), 2, proc.describe())
                self.assertIn("--help", lines[1])
            else:
                self.assertEqual(len(lines), 1, proc.describe())
            self.assertNotIn("Traceback", proc.out + proc.err)
            for word in words:
                self.assertIn(word, lines[0], proc.describe())

    def test_typeNameAsPrefix(self):  # type: ignore[no-untyped-def]
        return self.assertOneLine(["-L", "relay:8420"], 1, "did you mean relay://:8420?")

    def test_unknownPrefix(self):  # type: ignore[no-untyped-def]
        return self.assertOneLine(["--listen", "tpc:8420"], 1, "tcp:8420")

    def test_schemeTypo(self):  # type: ignore[no-untyped-def]
        return self.assertOneLine(["-L", "relai://127.0.0.1:0"], 1, "'relai'", "relay://")

    def test_forwardTypo(self):  # type: ignore[no-untyped-def]
        return self.assertOneLine(["-L", "127.0.0.1:0", "-F", "relya://127.0.0.1:1"], 1, "'relya'", "relay://")

    def test_badBoolean(self):  # type: ignore[no-untyped-def]
        return self.assertOneLine(["-L", "relay://127.0.0.1:0?bind=yes"], 1, "bind", "'yes'")

    def test_unreadableKey(self):  # type: ignore[no-untyped-def]
        return self.assertOneLine(["--listen", "ssl:0:privateKey=/nonexistent/key.pem"], 1, "cannot read", "/nonexistent/key.pem")

    def test_badDescription(self):  # type: ignore[no-untyped-def]
        return self.assertOneLine(["--listen", "tcp:0:bogus=1"], 1, "unknown argument 'bogus'")

    def test_workersWithDescription(self):  # type: ignore[no-untyped-def]
        return self.assertOneLine(["--listen", "tcp:0:interface=127.0.0.1", "--workers", "2"], 1, "--workers")

    def test_flagWithoutDescription(self):  # type: ignore[no-untyped-def]
        return self.assertOneLine(["-L", "relay://127.0.0.1:0", "--user", "u:p"], 2, "--user", "relay://user:pass@")

    @defer.inlineCallbacks
    def test_portInUse(self):  # type: ignore[no-untyped-def]
        """
        A port in use: one line naming the address and saying it is in use.
        """
        busy = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(busy.stopListening)
        port = busy.getHost().port
        yield self.assertOneLine(["--listen", f"tcp:{port}:interface=127.0.0.1"], 1, f"127.0.0.1:{port}", "in use")

    @defer.inlineCallbacks
    def test_unixSocketInUse(self):  # type: ignore[no-untyped-def]
        """
        A unix socket another instance serves (its lock file held): one
        line naming the path and saying it is in use; and no Twisted line
        about the port starting in the running one's output.
        """
        directory = tempfile.mkdtemp(prefix="gostrelay-", dir="/tmp")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "relay.sock")
        running, _ = yield self.started(CONSOLE, "--listen", f"unix:{path}", pattern=LISTENING_UNIX)
        self.assertNotIn("starting on", running.out, running.describe())
        yield self.assertOneLine(["--listen", f"unix:{path}"], 1, f"cannot listen on {path}", "in use", f"{path}.lock")

    def test_unixDirectoryMissing(self):  # type: ignore[no-untyped-def]
        """
        A unix socket in a directory that does not exist: the line names
        the socket's path, not Twisted's lock file internals (a pid).
        """
        return self.assertOneLine(
            ["--listen", "unix:/nonexistent/gostrelay/relay.sock"], 1,
            "cannot listen on /nonexistent/gostrelay/relay.sock: ", "no such file or directory",
        )

    @defer.inlineCallbacks
    def test_portInUseDaemon(self):  # type: ignore[no-untyped-def]
        """
        Daemonized (no C{-n}), twistd's parent prints the short form in its
        one error line; the log has the whole line, no traceback needed.
        """
        busy = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(busy.stopListening)
        port = busy.getHost().port
        launcher = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "relay"]
        proc = self.child(launcher, "--listen", f"tcp:{port}:interface=127.0.0.1")
        yield proc.waitForExit(30)
        self.assertEqual(proc.exitCode, 1, proc.describe())
        self.assertIn(f"cannot listen on 127.0.0.1:{port}: address in use", proc.err, proc.describe())

    @defer.inlineCallbacks
    def test_unknownOptionWarned(self):  # type: ignore[no-untyped-def]
        """
        An unknown option is one warning line; the service still runs.
        """
        proc, _ = yield self.started(CONSOLE, "-L", "relay://127.0.0.1:0?bnid=true")
        warnings = [line for line in proc.lines["err"] if "warning" in line]
        self.assertEqual(len(warnings), 1, proc.describe())
        self.assertIn("did you mean bind?", warnings[0])

    @defer.inlineCallbacks
    def test_help(self):  # type: ignore[no-untyped-def]
        """
        C{--help} and C{-h}: one synopsis showing both commands, exit 0.
        """
        for flag in ("--help", "-h"):
            for launcher in LAUNCHERS:
                proc = self.child(launcher, flag)
                yield proc.waitForExit(30)
                self.assertEqual(proc.exitCode, 0, proc.describe())
                self.assertTrue(proc.out.startswith(SYNOPSIS_FIRST), proc.describe())
                self.assertEqual(proc.out.count("Usage:"), 1, proc.describe())
                self.assertIn("twistd -n --pidfile= relay [options]", proc.out)
                self.assertIn("--listen tcp:8420 --user", proc.out)


#: A statement for L{ISOLATED}: map the package C{gostrelay} to the tree
#: named by C{{root}} with an import hook, as a vendored copy or
#: setuptools' editable finder would, and run the console script.
PACKAGE_ONLY = """
import importlib.util
import sys


class PackageOnly:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name == "gostrelay":
            return importlib.util.spec_from_file_location(
                name, {root!r} + "/gostrelay/__init__.py", submodule_search_locations=[{root!r} + "/gostrelay"]
            )
        return None


sys.meta_path.append(PackageOnly)
from gostrelay.cli import main
main()
"""


class EditableInstallTests(FaceTestCase):
    """
    C{pip install -e .} as setuptools builds it (the PEP 660 editable wheel
    of a copy of the tree), in a child that sees every dependency but no
    installed copy of gostrelay: C{twistd relay} and the console script
    both run from the copy.  Without our plugin files at all (the package
    mapped alone), one line says what to do.
    """

    timeout = 180

    def setUp(self) -> None:
        super().setUp()
        self.work = os.path.abspath(self.mktemp())
        os.makedirs(self.work)
        self.sitePackages = sitePackagesWithout(self.work)
        self.env = childEnvironment()
        del self.env["PYTHONPATH"]

    def copyTree(self, withPlugins: bool = True) -> str:
        tree = os.path.join(self.work, "tree")
        shutil.copytree(
            os.path.join(ROOT, "gostrelay"), os.path.join(tree, "gostrelay"),
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        for name in ("setup.cfg", "pyproject.toml", "README.md"):
            shutil.copy(os.path.join(ROOT, name), tree)
        if withPlugins:
            os.makedirs(os.path.join(tree, "twisted", "plugins"))
            for name in os.listdir(os.path.join(ROOT, "twisted", "plugins")):
                if name.startswith("gostrelay") and name.endswith(".py"):
                    shutil.copy(os.path.join(ROOT, "twisted", "plugins", name), os.path.join(tree, "twisted", "plugins"))
        return tree

    def isolated(self, *sites: str) -> list[str]:
        return [sys.executable, "-S", "-c", ISOLATED, self.sitePackages, *sites, "--"]

    @defer.inlineCallbacks
    def editableInstall(self, tree: str):  # type: ignore[no-untyped-def]
        """
        Build the editable wheel with setuptools' PEP 660 hook (what pip
        runs), unpack it into a site directory; fire with that directory.
        """
        wheels = os.path.join(self.work, "wheels")
        os.makedirs(wheels)
        proc = self.child(
            [sys.executable, "-c", "import sys, setuptools.build_meta as b; print(b.build_editable(sys.argv[1]))", wheels],
            env=childEnvironment(), path=tree,
        )
        yield proc.waitForExit(120)
        self.assertEqual(proc.exitCode, 0, proc.describe())
        [wheel] = [name for name in os.listdir(wheels) if name.endswith(".whl")]
        site = os.path.join(self.work, "editable-site")
        with zipfile.ZipFile(os.path.join(wheels, wheel)) as archive:
            archive.extractall(site)
        return site

    @defer.inlineCallbacks
    def test_twistdAndConsoleScript(self):  # type: ignore[no-untyped-def]
        tree = self.copyTree()
        site = yield self.editableInstall(tree)
        where = self.child(self.isolated(site) + ["import gostrelay; print(gostrelay.__file__)"], env=self.env)
        yield where.waitForExit(30)
        self.assertEqual(where.out.strip(), os.path.join(tree, "gostrelay", "__init__.py"), where.describe())

        twistd = self.isolated(site) + ["from twisted.scripts.twistd import run; run()", "-n", "--pidfile=", "relay"]
        proc, m = yield self.started(twistd, "-L", "relay://127.0.0.1:0", env=self.env)
        yield self.assertRelays(TCP4ClientEndpoint(reactor, "127.0.0.1", int(m.group(2))), proc)

        console = self.isolated(site) + ["from gostrelay.cli import main; main()"]
        proc, m = yield self.started(console, "--listen", "ws:tcp\\:0\\:interface\\=127.0.0.1", env=self.env)
        endpoint = clientFromString(reactor, f"ws:tcp\\:127.0.0.1\\:{m.group(2)}")
        yield self.assertRelays(endpoint, proc)

    @defer.inlineCallbacks
    def test_packageMappedByImportHook(self):  # type: ignore[no-untyped-def]
        """
        The package mapped by an import hook (a vendored copy): the
        console script adds the plugin directory next
        to the package, so our types are found.
        """
        tree = self.copyTree()
        launcher = self.isolated() + [PACKAGE_ONLY.format(root=tree)]
        proc, m = yield self.started(launcher, "-L", "relay://127.0.0.1:0", env=self.env)
        yield self.assertRelays(TCP4ClientEndpoint(reactor, "127.0.0.1", int(m.group(2))), proc)

    @defer.inlineCallbacks
    def test_pluginsMissing(self):  # type: ignore[no-untyped-def]
        tree = self.copyTree(withPlugins=False)
        launcher = self.isolated() + [PACKAGE_ONLY.format(root=tree)]
        for args in (["-L", "relay://127.0.0.1:0"], ["--listen", "tcp:0:interface=127.0.0.1"]):
            proc = self.child(launcher, *args, env=self.env)
            yield proc.waitForExit(30)
            self.assertEqual(proc.exitCode, 1, proc.describe())
            lines = [line for line in proc.lines["err"] if line.strip()]
            self.assertEqual(len(lines), 1, proc.describe())
            self.assertIn("pip install", lines[0])


