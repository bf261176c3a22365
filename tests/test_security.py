"""
Security properties: passwords compared in constant time and never
logged; bypass lists (CIDR, IP, domain, .suffix, *.glob, port ranges,
whitelist) enforced on relay CONNECT targets (0x03), on the proxy entry
(HTTP 403, SOCKS5 0x02, SOCKS4 rejected) and on UDP BIND datagrams
(dropped); C{denyPrivate} refusing loopback and private targets, also by
name; BIND only for authenticated users when users are configured, and
only on C{bindPorts}.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from gostrelay import auth, logs
from gostrelay.build import BuildContext, buildServices
from gostrelay.config.model import Config
from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.handlers.relay import RelayHandler, isPrivate
from gostrelay.router import Router
from gostrelay.wire import socks
from gostrelay.wire.relay import (
    FLAG_UDP,
    AddrFeature,
    Command,
    Network,
    NetworkFeature,
    Request,
    Status,
    UserAuthFeature,
    connectRequest,
    encodeResponse,
)
from gostrelay.wire.udpframe import encodeTunnelDatagram
from tests.test_fuzz import FakeRoute, FuzzReactor, Target
from tests.test_reliability import (
    EchoFactory,
    Lab,
    RelayProbe,
    TCPLikeTransport,
    accept,
    autoHandler,
    captureLogs,
    waitUntil,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SECRET = "Pa55-w0rd-SECRET-7e1f"
GUESS = "Gue55-WRONG-91ac"

OK = encodeResponse(Status.OK)
UNAUTHORIZED = encodeResponse(Status.UNAUTHORIZED)
FORBIDDEN = encodeResponse(Status.FORBIDDEN)


def relay(url: str, config: Config | None = None) -> tuple[RelayHandler, FuzzReactor, FakeRoute]:
    """
    The relay handler of C{url} (or of C{config}'s first service) on a
    memory reactor that binds fake UDP ports, its dials held by a
    L{FakeRoute}.
    """
    reactor = FuzzReactor()
    config = config if config is not None else buildConfigFromCommandLine([url], [])
    handler = RelayHandler(reactor, config.services[0], BuildContext(reactor, config))
    route = FakeRoute()
    handler.router = Router(reactor, route, handler.router.dialTimeout)
    return handler, reactor, route


def isOK(response: bytes) -> bool:
    """
    Whether a relay response (maybe with features: a BIND's bound
    address) is OK.
    """
    return response[:2] == b"\x01\x00"


def ask(handler: RelayHandler, request: bytes) -> tuple[Any, TCPLikeTransport]:
    protocol, transport = accept(handler)
    protocol.dataReceived(request)
    return protocol, transport


def bindRequest(host: str, port: int, user: tuple[str, str] | None = None, udp: bool = False) -> bytes:
    features: list[Any] = []
    if user is not None:
        features.append(UserAuthFeature(*user))
    if udp:
        features.append(NetworkFeature(Network.UDP))
    features.append(AddrFeature.fromHostPort(host, port))
    return Request(int(Command.BIND) | (FLAG_UDP if udp else 0), tuple(features)).encode()


# =====================================================================
# Passwords


class ConstantTimeTests(unittest.SynchronousTestCase):
    """
    Passwords are compared with C{hmac.compare_digest}, on every path that
    checks one.
    """

    def setUp(self) -> None:
        self.calls: list[tuple[bytes, bytes]] = []
        real = hmac.compare_digest

        def recording(a: Any, b: Any) -> bool:
            self.calls.append((a, b))
            return real(a, b)

        self.patch(auth.hmac, "compare_digest", recording)

    def test_authenticator(self) -> None:
        users = auth.Authenticator({"alice": SECRET})
        self.assertFalse(users.authenticate("alice", GUESS))
        self.assertFalse(users.authenticate("alice", SECRET[:-1]))
        self.assertTrue(users.authenticate("alice", SECRET))
        self.assertEqual(
            self.calls,
            [(SECRET.encode(), GUESS.encode()), (SECRET.encode(), SECRET[:-1].encode()), (SECRET.encode(), SECRET.encode())],
        )

    def test_relayHandler(self) -> None:
        handler, _, _ = relay(f"relay://alice:{SECRET}@:8420")
        _, transport = ask(handler, connectRequest("192.0.2.1:80", username="alice", password=GUESS).encode())
        self.assertEqual(transport.value(), UNAUTHORIZED)
        self.assertEqual(self.calls, [(SECRET.encode(), GUESS.encode())])

    def test_proxyEntry(self) -> None:
        handler = autoHandler(f"auto://alice:{SECRET}@:8080")
        protocol, transport = accept(handler)
        user, password = b"alice", GUESS.encode()
        protocol.dataReceived(b"\x05\x01\x02\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password)
        self.assertEqual(self.calls, [(SECRET.encode(), GUESS.encode())])
        import base64

        protocol, transport = accept(handler)
        token = base64.b64encode(b"alice:" + GUESS.encode())
        protocol.dataReceived(b"CONNECT example.com:443 HTTP/1.1\r\nProxy-Authorization: Basic " + token + b"\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 407"))
        self.assertEqual(len(self.calls), 2)

    def test_noOtherComparison(self) -> None:
        """
        No code under gostrelay/ compares a password with C{==} or C{!=}
        (the one empty-password test in gostrelay.auth aside).
        """
        pattern = re.compile(r"password\w*\s*[!=]=|[!=]=\s*\w*password", re.IGNORECASE)
        offenders = []
        for directory, _, files in os.walk(os.path.join(ROOT, "gostrelay")):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(directory, name)
                    with open(path, encoding="utf-8") as f:
                        for number, line in enumerate(f, 1):
                            if pattern.search(line):
                                offenders.append(f"{os.path.relpath(path, ROOT)}:{number}: {line.strip()}")
        self.assertEqual(offenders, [])


class PasswordNotLoggedTests(unittest.SynchronousTestCase):
    """
    A failing (or succeeding) authentication never puts the password, the
    stored one or the one tried, in the log.
    """

    def attempts(self) -> None:
        handler, _, _ = relay(f"relay://alice:{SECRET}@:8420")
        for password in (GUESS, SECRET):
            ask(handler, connectRequest("192.0.2.1:80", username="alice", password=password).encode())
        ask(handler, bindRequest("0.0.0.0", 2000, ("alice", GUESS)))
        proxy = autoHandler(f"auto://alice:{SECRET}@:8080")
        import base64

        for password in (GUESS, SECRET):
            protocol, _ = accept(proxy)
            p = password.encode()
            protocol.dataReceived(b"\x05\x01\x02\x01\x05alice" + bytes([len(p)]) + p)
            protocol, _ = accept(proxy)
            token = base64.b64encode(b"alice:" + p)
            protocol.dataReceived(b"CONNECT example.com:443 HTTP/1.1\r\nProxy-Authorization: Basic " + token + b"\r\n\r\n")

    def assertClean(self, text: str) -> None:
        for secret in (SECRET, GUESS):
            self.assertNotIn(secret, text)
            self.assertNotIn(secret.encode().hex(), text)

    def test_default(self) -> None:
        captured = captureLogs(self)
        self.attempts()
        self.assertIn("authentication failed for user 'alice'", captured.text)
        self.assertClean(captured.text)

    def test_perFrameTracing(self) -> None:
        """
        Not with per-frame tracing (C{-DD}, gostrelay.logs.TRACE) either.

        Regression (found by this test, fixed in 7e20636): at -DD the relay
        handler logged the first 64 bytes of every request ("{peer}
        request bytes: {data!r}"), and a request's UserAuth feature carries
        the password in clear, so the password tried, right or wrong, was
        in the log.  It now logs sizes only.
        """
        captured = captureLogs(self)
        self.patch(logs, "TRACE", True)
        self.attempts()
        self.assertClean(captured.text)


class PasswordNotLoggedProcessTests(unittest.TestCase):
    """
    The same, as users run it: C{python -m gostrelay -D} (debug level) with
    a user on the command line; a wrong and a right password are tried.
    """

    timeout = 30

    @defer.inlineCallbacks
    def test_debugLevel(self):  # type: ignore[no-untyped-def]
        from twisted.internet import reactor

        lab = Lab(reactor, os.path.abspath(self.mktemp()), self.addCleanup)
        echo = EchoFactory()
        echoPort = lab.listen(echo)
        server, port = yield lab.start("-D", "-L", f"relay://alice:{SECRET}@127.0.0.1:0", name="relay")
        for password, status in ((GUESS, Status.UNAUTHORIZED), (SECRET, Status.OK)):
            probe = RelayProbe(connectRequest(f"127.0.0.1:{echoPort}", username="alice", password=password).encode() + b"x", closeAfter=1)
            yield lab.connect(port, probe)
            yield probe.done
            self.assertEqual(probe.status, status, server.describe())
        yield server.waitForLine(r"user='alice': closed", timeout=5)
        server.transport.signalProcess("TERM")  # type: ignore[union-attr]
        yield server.waitForExit(timeout=10)
        output = server.out + server.err
        self.assertIn("authentication failed for user 'alice'", output)
        self.assertNotIn(SECRET, output)
        self.assertNotIn(GUESS, output)


# =====================================================================
# Bypass


class RelayBypassTests(unittest.SynchronousTestCase):
    """
    A service bypass refuses relay CONNECT targets with 0x03 (Forbidden)
    before anything is dialed; other targets are dialed.
    """

    MATCHERS = "10.0.0.0/8,192.0.2.7,example.com,.example.org,*.glob.test,192.0.2.8:8000-8100,[2001:db8::1]"

    def outcome(self, url: str, target: str, network: str = "tcp") -> str:
        handler, _, route = relay(url)
        _, transport = ask(handler, connectRequest(target, network).encode())
        if transport.value() == FORBIDDEN:
            self.assertTrue(transport.disconnecting)
            self.assertEqual(route.dials, [], "a bypassed target is not dialed")
            return "forbidden"
        self.assertEqual(transport.value(), b"")
        self.assertEqual([d.address for d in route.dials], [target])
        return "dialed"

    def test_blacklist(self) -> None:
        url = f"relay://:8420?bypass={self.MATCHERS}"
        cases = {
            "10.1.2.3:80": "forbidden",  # CIDR
            "11.1.2.3:80": "dialed",
            "192.0.2.7:443": "forbidden",  # IP
            "192.0.2.70:443": "dialed",
            "example.com:80": "forbidden",  # exact name
            "EXAMPLE.COM.:80": "forbidden",  # case, trailing dot
            "www.example.com:80": "dialed",  # exact only
            "example.org:80": "forbidden",  # .suffix: the name itself
            "a.b.example.org:80": "forbidden",  # .suffix: subdomains
            "notexample.org:80": "dialed",
            "x.glob.test:80": "forbidden",  # *.glob
            "glob.test:80": "dialed",
            "192.0.2.8:8000": "forbidden",  # port range, both ends
            "192.0.2.8:8100": "forbidden",
            "192.0.2.8:8101": "dialed",
            "192.0.2.8:7999": "dialed",
            "[2001:db8::1]:22": "forbidden",  # IPv6
            "[::ffff:10.0.0.1]:80": "forbidden",  # IPv4-mapped IPv6
        }
        for target, expected in cases.items():
            self.assertEqual(self.outcome(url, target), expected, target)

    def test_udpConnect(self) -> None:
        self.assertEqual(self.outcome(f"relay://:8420?bypass={self.MATCHERS}", "10.0.0.53:53", "udp"), "forbidden")

    def test_whitelist(self) -> None:
        """
        C{~}: only what matches is allowed.
        """
        url = "relay://:8420?bypass=~.example.com,192.0.2.0/24:443"
        self.assertEqual(self.outcome(url, "www.example.com:80"), "dialed")
        self.assertEqual(self.outcome(url, "192.0.2.9:443"), "dialed")
        self.assertEqual(self.outcome(url, "192.0.2.9:80"), "forbidden")
        self.assertEqual(self.outcome(url, "evil.test:80"), "forbidden")

    def test_yamlBypasses(self) -> None:
        """
        The YAML form: named bypasses, C{whitelist: true}; whitelists must
        all pass, any blacklist refuses.
        """
        config = Config.fromDict(
            {
                "services": [{"name": "r", "addr": ":8420", "handler": {"type": "relay"}, "bypasses": ["allow", "deny"]}],
                "bypasses": [
                    {"name": "allow", "whitelist": True, "matchers": [".example.com"]},
                    {"name": "deny", "matchers": ["secret.example.com"]},
                ],
            }
        )
        for target, expected in (("www.example.com:80", b""), ("secret.example.com:80", FORBIDDEN), ("other.test:80", FORBIDDEN)):
            handler, _, _ = relay("", config)
            _, transport = ask(handler, connectRequest(target).encode())
            self.assertEqual(transport.value(), expected, target)

    def test_logLine(self) -> None:
        captured = captureLogs(self)
        self.outcome("relay://:8420?bypass=10.0.0.0/8", "10.0.0.1:22")
        self.assertTrue(captured.matching(r"CONNECT 10\.0\.0\.1:22/tcp .*refused with Forbidden: target matches the service bypass"), captured.text)


class ProxyBypassTests(unittest.SynchronousTestCase):
    """
    On the proxy entry: HTTP 403, SOCKS5 0x02 (not allowed by ruleset),
    SOCKS4 rejected.
    """

    URL = "auto://:8080?bypass=10.0.0.0/8,.internal.test"

    def entry(self) -> tuple[Any, TCPLikeTransport, FakeRoute]:
        handler = autoHandler(self.URL)
        route = FakeRoute()
        handler.router = Router(handler.reactor, route, 15)
        protocol, transport = accept(handler)
        return protocol, transport, route

    def test_http(self) -> None:
        for head in (b"CONNECT 10.1.1.1:443 HTTP/1.1\r\n\r\n", b"GET http://db.internal.test/ HTTP/1.1\r\nHost: db.internal.test\r\n\r\n"):
            protocol, transport, route = self.entry()
            protocol.dataReceived(head)
            self.assertTrue(transport.value().startswith(b"HTTP/1.1 403 "), transport.value())
            self.assertTrue(transport.disconnecting)
            self.assertEqual(route.dials, [])
        protocol, transport, route = self.entry()
        protocol.dataReceived(b"CONNECT 192.0.2.1:443 HTTP/1.1\r\n\r\n")
        self.assertEqual([d.address for d in route.dials], ["192.0.2.1:443"])

    def test_socks5(self) -> None:
        protocol, transport, route = self.entry()
        name = b"db.internal.test"
        protocol.dataReceived(b"\x05\x01\x00" + b"\x05\x01\x00\x03" + bytes([len(name)]) + name + b"\x00\x50")
        self.assertEqual(transport.value(), b"\x05\x00" + socks.encodeSocks5Reply(socks.REP_NOT_ALLOWED))
        self.assertEqual(socks.REP_NOT_ALLOWED, 0x02)
        self.assertEqual(route.dials, [])

    def test_socks4(self) -> None:
        protocol, transport, route = self.entry()
        protocol.dataReceived(b"\x04\x01\x00\x50" + bytes([10, 0, 0, 1]) + b"\x00")
        self.assertEqual(transport.value(), socks.encodeSocks4Reply(socks.SOCKS4_REJECTED))
        self.assertEqual(route.dials, [])


class UDPBindBypassTests(unittest.SynchronousTestCase):
    """
    On a UDP BIND (or UDP association) datagrams to or from a bypassed
    address are dropped, others pass.
    """

    def test_dropped(self) -> None:
        handler, reactor, _ = relay("relay://:8420?bind=true&bypass=10.0.0.0/8,*.internal.test")
        protocol, transport = ask(handler, bindRequest("0.0.0.0", 0, udp=True))
        self.assertTrue(isOK(transport.value()), transport.value())
        (port,) = reactor.udpPorts
        protocol.dataReceived(
            encodeTunnelDatagram("10.0.0.53", 53, b"blocked")
            + encodeTunnelDatagram("db.internal.test", 53, b"blocked by name")
            + encodeTunnelDatagram("192.0.2.53", 53, b"allowed")
        )
        self.assertEqual([data for data, _ in port.sent], [b"allowed"])
        before = len(transport.value())
        port.protocol.datagramReceived(b"from blocked", ("10.0.0.53", 53))
        self.assertEqual(len(transport.value()), before, "nothing from a bypassed source reaches the client")
        port.protocol.datagramReceived(b"from allowed", ("192.0.2.53", 53))
        self.assertEqual(transport.value()[before:], encodeTunnelDatagram("192.0.2.53", 53, b"from allowed"))
        self.assertEqual(protocol.bound.dropped, 3)


# =====================================================================
# denyPrivate


class DenyPrivateUnitTests(unittest.SynchronousTestCase):
    def test_isPrivate(self) -> None:
        for host in ("127.0.0.1", "127.9.9.9", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                     "0.0.0.0", "::1", "::", "fc00::1", "fe80::1", "::ffff:127.0.0.1"):
            self.assertTrue(isPrivate(host), host)
        for host in ("8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "example.com"):
            self.assertFalse(isPrivate(host), host)

    def test_sharedAddressSpace(self) -> None:
        """
        The RFC 6598 shared address space is private to denyPrivate:
        carrier-grade NAT, Tailscale nodes, Alibaba Cloud's instance
        metadata at 100.100.100.200.

        Regression (found by this test, fixed in 7e20636): Python's
        C{is_private} is false for 100.64.0.0/10, and the "private" matcher
        used to add only loopback, link-local, unspecified and reserved
        addresses, so relay://:8420?denyPrivate=true dialed
        100.100.100.200:80.
        """
        for host in ("100.64.0.1", "100.100.100.200", "198.18.0.1"):
            self.assertTrue(isPrivate(host), host)

    def test_checkedOnConnectedAddress(self) -> None:
        """
        The check is on the address actually connected (so a name that
        resolves to a private address is refused): the OK is not sent.
        """
        captured = captureLogs(self)
        handler, reactor, route = relay("relay://:8420?denyPrivate=true")
        self.assertTrue(handler.denyPrivate)
        _, transport = ask(handler, connectRequest("intranet.example:80").encode())
        (dial,) = route.dials
        dial.address = "intranet.example:80"
        target = Target(dial)  # Target's peer is 192.0.2.80: TEST-NET, private to Python
        self.assertEqual(transport.value(), FORBIDDEN)
        self.assertTrue(target.transport.aborted)
        self.assertTrue(captured.matching(r"refused with Forbidden: target is a private address \(denyPrivate\)"), captured.text)
        self.assertTrue(ipaddress.ip_address("192.0.2.80").is_private)


class DenyPrivateTests(unittest.TestCase):
    """
    A relay service with C{denyPrivate=true}, in this process on real
    sockets: 127.0.0.1 and localhost are refused with 0x03.
    """

    timeout = 20

    @defer.inlineCallbacks
    def setUp(self):  # type: ignore[no-untyped-def]
        from twisted.internet import reactor

        self.reactor = reactor
        self.lab = Lab(reactor, os.path.abspath(self.mktemp()), self.addCleanup)
        self.echo = EchoFactory()
        self.echoPort = self.lab.listen(self.echo)
        top = buildServices(reactor, buildConfigFromCommandLine(["relay://127.0.0.1:0?denyPrivate=true"], []))
        top.startService()
        self.addCleanup(top.stopService)
        (svc,) = list(top)
        port = yield svc.listening
        self.port = port.getHost().port

    @defer.inlineCallbacks
    def refused(self, target: str):  # type: ignore[no-untyped-def]
        probe = RelayProbe(connectRequest(target).encode() + b"data")
        yield self.lab.connect(self.port, probe)
        yield probe.done
        return probe

    @defer.inlineCallbacks
    def test_loopbackAddress(self):  # type: ignore[no-untyped-def]
        probe = yield self.refused(f"127.0.0.1:{self.echoPort}")
        self.assertEqual(probe.status, Status.FORBIDDEN)
        self.assertEqual(bytes(probe.data), b"")

    @defer.inlineCallbacks
    def test_localhostName(self):  # type: ignore[no-untyped-def]
        probe = yield self.refused(f"localhost:{self.echoPort}")
        self.assertEqual(probe.status, Status.FORBIDDEN)
        self.assertEqual(bytes(probe.data), b"")

    @defer.inlineCallbacks
    def test_noDataReachesTarget(self):  # type: ignore[no-untyped-def]
        yield self.refused(f"127.0.0.1:{self.echoPort}")
        yield waitUntil(self.reactor, lambda: not self.echo.open, timeout=2)
        self.assertEqual(sum(p.received for p, _ in self.echo.closed), 0, "the client's bytes never reach the target")

    @defer.inlineCallbacks
    def test_literalPrivateNotDialed(self):  # type: ignore[no-untyped-def]
        """
        A literal private IP is refused before dialing: the private service
        sees no connection, and open and closed ports answer alike.

        Regression (found by this test, fixed in 7e20636): the check used
        to run only on the connected socket's peer address, so a literal
        private IP was connected to and then aborted; the private service
        saw a connection, and the answer told an open port (0x03) from a
        closed one (0x07): a port scanner of the relay host's networks for
        any client.  (Names are still checked on the address they connect
        to: test_localhostName.)
        """
        probe = yield self.refused(f"127.0.0.1:{self.echoPort}")
        closed = yield self.refused("127.0.0.1:1")
        self.assertEqual(
            (probe.status, closed.status, self.echo.accepted), (Status.FORBIDDEN, Status.FORBIDDEN, 0),
            "(open port, closed port, connections the private target saw)",
        )


# =====================================================================
# BIND


class BindTests(unittest.SynchronousTestCase):
    """
    BIND needs C{bind=true}; with users configured only an authenticated
    user may BIND; C{bindPorts} limits the ports.
    """

    URL = f"relay://alice:{SECRET}@:8420?bind=true&bindPorts=2000-2999"

    def test_disabledByDefault(self) -> None:
        handler, _, _ = relay("relay://:8420")
        _, transport = ask(handler, bindRequest("0.0.0.0", 2000))
        self.assertEqual(transport.value(), FORBIDDEN)

    def test_needsAuthentication(self) -> None:
        handler, reactor, _ = relay(self.URL)
        for user in (None, ("alice", GUESS), ("mallory", SECRET), ("", "")):
            for udp in (False, True):
                _, transport = ask(handler, bindRequest("0.0.0.0", 2000, user, udp))
                self.assertEqual(transport.value(), UNAUTHORIZED, (user, udp))
        self.assertEqual(reactor.tcpServers, [])
        self.assertEqual(reactor.udpPorts, [])
        _, transport = ask(handler, bindRequest("0.0.0.0", 2000, ("alice", SECRET)))
        self.assertTrue(isOK(transport.value()), transport.value())
        self.assertEqual(len(reactor.tcpServers), 1)

    def test_bindPorts(self) -> None:
        handler, reactor, _ = relay(self.URL)
        for port, allowed in ((1999, False), (2000, True), (2999, True), (3000, False), (0, False), (22, False)):
            for udp in (False, True):
                _, transport = ask(handler, bindRequest("0.0.0.0", port, ("alice", SECRET), udp))
                self.assertEqual(isOK(transport.value()), allowed, (port, udp, transport.value()))
                if not allowed:
                    self.assertEqual(transport.value(), FORBIDDEN)

    def test_bindPortsZeroListed(self) -> None:
        handler, _, _ = relay("relay://:8420?bind=true&bindPorts=0,5000")
        for port, allowed in ((0, True), (5000, True), (5001, False)):
            _, transport = ask(handler, bindRequest("0.0.0.0", port, udp=True))
            self.assertEqual(isOK(transport.value()), allowed, port)



# =====================================================================
# The internet-facing example of docs/operations.md, as written


def operationsExample() -> dict[str, Any]:
    """
    The YAML configuration under "A relay server on the internet" in
    docs/operations.md.
    """
    import yaml

    with open(os.path.join(ROOT, "docs", "operations.md"), encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## A relay server on the internet") :]
    block = section[section.index("```yaml\n") + len("```yaml\n") :]
    return yaml.safe_load(block[: block.index("```")])  # type: ignore[no-any-return]


def freePortIn(low: int, high: int) -> int:
    import socket

    for port in range(low, high + 1):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        return port
    raise RuntimeError(f"no free port in {low}-{high}")


class OperationsExampleTests(unittest.TestCase):
    """
    The documented configuration runs (on 127.0.0.1, over tcp instead of
    tls, without its metrics port) and does what the page says.
    """

    timeout = 20

    @defer.inlineCallbacks
    def setUp(self):  # type: ignore[no-untyped-def]
        from twisted.internet import reactor

        self.reactor = reactor
        self.lab = Lab(reactor, os.path.abspath(self.mktemp()), self.addCleanup)
        self.echo = EchoFactory()
        self.echoPort = self.lab.listen(self.echo)
        data = operationsExample()
        users = os.path.join(self.lab.path("etc"), "users.txt")
        with open(users, "w") as f:
            f.write("alice s3cret\n")
        data["authers"][0]["file"]["path"] = users
        data["services"][0]["addr"] = "127.0.0.1:0"
        data["services"][0]["listener"]["type"] = "tcp"
        data.pop("metrics")
        self.config = Config.fromDict(data)
        top = buildServices(reactor, self.config)
        top.startService()
        self.addCleanup(top.stopService)
        (svc,) = list(top)
        port = yield svc.listening
        self.port = port.getHost().port

    @defer.inlineCallbacks
    def ask(self, request: bytes):  # type: ignore[no-untyped-def]
        probe = RelayProbe(request + b"x", closeAfter=1)
        yield self.lab.connect(self.port, probe)
        yield probe.done
        return probe.status

    def alice(self, target: str) -> bytes:
        return connectRequest(target, username="alice", password="s3cret").encode()

    def test_options(self) -> None:
        (svc,) = self.config.services
        assert svc.handler is not None
        self.assertEqual(svc.handler.md.getDuration("readTimeout"), 10.0)
        self.assertEqual(svc.md.getInt("maxConnsPerIP"), 64)
        self.assertEqual(svc.md.getDuration("gracePeriod"), 20.0)

    @defer.inlineCallbacks
    def test_usersRequired(self):  # type: ignore[no-untyped-def]
        status = yield self.ask(connectRequest(f"127.0.0.1:{self.echoPort}").encode())
        self.assertEqual(status, Status.UNAUTHORIZED)
        status = yield self.ask(connectRequest(f"127.0.0.1:{self.echoPort}", username="alice", password="guess").encode())
        self.assertEqual(status, Status.UNAUTHORIZED)

    @defer.inlineCallbacks
    def test_internalTargetsRefusedWithoutDialing(self):  # type: ignore[no-untyped-def]
        for target in (f"127.0.0.1:{self.echoPort}", f"[::1]:{self.echoPort}", "10.1.2.3:80", "169.254.169.254:80",
                       "100.100.100.200:80", "example.com:25", "db.corp.example.com:5432"):
            status = yield self.ask(self.alice(target))
            self.assertEqual(status, Status.FORBIDDEN, target)
        self.assertEqual(self.echo.accepted, 0, "nothing was dialed")

    @defer.inlineCallbacks
    def test_nameResolvingToLoopback(self):  # type: ignore[no-untyped-def]
        """
        The bypass matches names as written; denyPrivate catches the name
        once connected.
        """
        status = yield self.ask(self.alice(f"localhost:{self.echoPort}"))
        self.assertEqual(status, Status.FORBIDDEN)
        yield waitUntil(self.reactor, lambda: not self.echo.open, timeout=2)
        self.assertEqual(sum(p.received for p, _ in self.echo.closed), 0)

    @defer.inlineCallbacks
    def test_bindPorts(self):  # type: ignore[no-untyped-def]
        outside = yield self.ask(bindRequest("127.0.0.1", 2000, ("alice", "s3cret")))
        self.assertEqual(outside, Status.FORBIDDEN)
        anyPort = yield self.ask(bindRequest("127.0.0.1", 0, ("alice", "s3cret")))
        self.assertEqual(anyPort, Status.FORBIDDEN)
        anonymous = yield self.ask(bindRequest("127.0.0.1", 20000))
        self.assertEqual(anonymous, Status.UNAUTHORIZED)
        probe = RelayProbe(bindRequest("127.0.0.1", freePortIn(20000, 20999), ("alice", "s3cret")))
        yield self.lab.connect(self.port, probe)
        yield probe.response
        self.assertEqual(probe.status, Status.OK)
        probe.transport.loseConnection()  # type: ignore[union-attr]
        yield probe.done
