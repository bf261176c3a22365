"""
The C{http}, C{socks5} and C{socks4} connectors against real proxy servers
started by the test (tinyproxy, microsocks, pproxy) and against our own
proxy entries over TLS, WebSocket and KCP: chains in every hop position,
credentials, refusals (a wrong password breaks the chain, with a log line
naming the hop and the proxy's answer, and marks the node failed), the
endpoint strings C{socks5:}, C{socks4:} and C{httpconnect:}, and the
command line as users run it.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import clientFromString, connectProtocol

from gostrelay.config.model import ConfigError
from gostrelay.endpoints import chainEndpoint
from gostrelay.errors import ProxyHopRefused
from tests.processes import CONSOLE, childEnvironment, spawn
from tests.support.cases import TransportTestCase
from tests.support.logs import captureLogs
from tests.support.proxies import startMicrosocks, startPproxy, startTinyproxy
from tests.support.targets import Collector, EchoFactory, UDPClient, UDPEcho


class ProxyHopTests(TransportTestCase):
    timeout = 60

    def setUp(self) -> None:
        super().setUp()
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)
        self.logs = captureLogs(self)

    def startLoopbackEcho(self) -> int:
        factory = EchoFactory()
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        ports = [port]
        # "localhost" may resolve to ::1 first at the proxy: the same port there.
        try:
            ports.append(reactor.listenTCP(port.getHost().port, factory, interface="::1"))
        except Exception:  # noqa: BLE001 - no IPv6 loopback here: names go to 127.0.0.1
            pass

        def cleanup() -> Any:
            for proto in list(factory.open):
                proto.transport.abortConnection()
            return defer.gatherResults([p.stopListening() for p in ports])

        self.addCleanup(cleanup)
        return int(port.getHost().port)

    @defer.inlineCallbacks
    def servicePorts(self, listen: list[str], forward: list[str] = ()):  # type: ignore[no-untyped-def]
        """
        Run the services of C{-L listen... -F forward...}; fire with their
        ports.
        """
        services = yield self.startServices(listen, forward)
        return [svc.port.getHost().port for svc in services]

    @defer.inlineCallbacks
    def echoThrough(self, endpoint: Any, payload: bytes = b"hello through the proxy"):  # type: ignore[no-untyped-def]
        proto = Collector(payload)
        yield connectProtocol(endpoint, proto)
        yield proto.done
        self.assertEqual(bytes(proto.data), payload)

    # -- real third-party proxies, first hop

    @defer.inlineCallbacks
    def test_httpTinyproxy(self):  # type: ignore[no-untyped-def]
        """
        C{-F http://user:pass@proxy}: CONNECT with Proxy-Authorization
        through tinyproxy.
        """
        echo = self.startLoopbackEcho()
        proxy = yield startTinyproxy(reactor, self.workdir, self.addCleanup, "user", "pass")
        yield self.echoThrough(chainEndpoint(reactor, [f"http://user:pass@127.0.0.1:{proxy}"], "127.0.0.1", echo))

    @defer.inlineCallbacks
    def test_httpWrongPassword(self):  # type: ignore[no-untyped-def]
        """
        A wrong password at tinyproxy breaks the chain: the connect fails
        with the proxy's status line, a log line names the hop and the
        answer, and the node is marked failed.
        """
        echo = self.startLoopbackEcho()
        proxy = yield startTinyproxy(reactor, self.workdir, self.addCleanup, "user", "pass")
        endpoint = chainEndpoint(reactor, [f"http://user:wrong@127.0.0.1:{proxy}"], "127.0.0.1", echo)
        f = yield self.assertFailure(connectProtocol(endpoint, Collector()), ProxyHopRefused)
        self.assertRegex(f.answer, "^40[17] ")  # tinyproxy answers 401
        lines = [line for line in self.logs.lines if "refused" in line and f.answer in line]
        self.assertTrue(lines, self.logs.lines)
        self.assertIn(f"hop-0 node-0 (http proxy 127.0.0.1:{proxy})", lines[0])
        self.assertNotIn("wrong", lines[0])
        (hop, node), = endpoint.route
        self.assertEqual(node.failures, 1)

    @defer.inlineCallbacks
    def test_socks5Microsocks(self):  # type: ignore[no-untyped-def]
        """
        C{-F socks5://user:pass@proxy} through microsocks, and C{socks}
        as its alias.
        """
        echo = self.startLoopbackEcho()
        proxy = yield startMicrosocks(reactor, self.workdir, self.addCleanup, "user", "pass")
        yield self.echoThrough(chainEndpoint(reactor, [f"socks5://user:pass@127.0.0.1:{proxy}"], "127.0.0.1", echo))
        yield self.echoThrough(chainEndpoint(reactor, [f"socks://user:pass@127.0.0.1:{proxy}"], "localhost", echo))

    @defer.inlineCallbacks
    def test_socks5WrongPassword(self):  # type: ignore[no-untyped-def]
        echo = self.startLoopbackEcho()
        proxy = yield startMicrosocks(reactor, self.workdir, self.addCleanup, "user", "pass")
        endpoint = chainEndpoint(reactor, [f"socks5://user:wrong@127.0.0.1:{proxy}"], "127.0.0.1", echo)
        f = yield self.assertFailure(connectProtocol(endpoint, Collector()), ProxyHopRefused)
        self.assertIn("username/password rejected", f.answer)
        self.assertTrue([line for line in self.logs.lines if "socks5 proxy" in line and "rejected" in line], self.logs.lines)
        (hop, node), = endpoint.route
        self.assertEqual(node.failures, 1)

    @defer.inlineCallbacks
    def test_socks5TargetRefused(self):  # type: ignore[no-untyped-def]
        """
        The proxy's reply code for an unreachable target is in the failure.
        """
        proxy = yield startMicrosocks(reactor, self.workdir, self.addCleanup)
        closed = self.startLoopbackEcho()
        yield self.startLoopbackEcho()  # keep ports busy and distinct
        endpoint = chainEndpoint(reactor, [f"socks5://127.0.0.1:{proxy}"], "127.0.0.1", 1)
        f = yield self.assertFailure(connectProtocol(endpoint, Collector()), ProxyHopRefused)
        self.assertIn("0x0", f.answer)
        del closed

    @defer.inlineCallbacks
    def test_socks4Pproxy(self):  # type: ignore[no-untyped-def]
        """
        C{socks4://} through pproxy (plain SOCKS4 only: an IPv4 target, and
        a name resolved here with C{disable4a}); C{socks4a://} with a name
        through our own SOCKS4 entry (pproxy has no 4a).
        """
        echo = self.startLoopbackEcho()
        proxy = yield startPproxy(reactor, self.workdir, self.addCleanup, "socks4")
        yield self.echoThrough(chainEndpoint(reactor, [f"socks4://127.0.0.1:{proxy}"], "127.0.0.1", echo))
        yield self.echoThrough(chainEndpoint(reactor, [f"socks4://127.0.0.1:{proxy}?disable4a=true"], "localhost", echo))
        (ours,) = yield self.servicePorts(["socks4://127.0.0.1:0"])
        yield self.echoThrough(chainEndpoint(reactor, [f"socks4a://127.0.0.1:{ours}"], "localhost", echo))

    # -- any hop position, with our relay server

    @defer.inlineCallbacks
    def test_proxyThenRelay(self):  # type: ignore[no-untyped-def]
        """
        The issue's line: C{-L tcp://:P/target -F http://user:pass@proxy
        -F relay://server}, run as a service.
        """
        echo = self.startLoopbackEcho()
        proxy = yield startTinyproxy(reactor, self.workdir, self.addCleanup, "user", "pass")
        (relay,) = yield self.servicePorts(["relay://127.0.0.1:0"])
        (entry,) = yield self.servicePorts(
            [f"tcp://127.0.0.1:0/127.0.0.1:{echo}"],
            [f"http://user:pass@127.0.0.1:{proxy}", f"relay://127.0.0.1:{relay}"],
        )
        yield self.echoThrough(clientFromString(reactor, f"tcp:127.0.0.1:{entry}"))

    @defer.inlineCallbacks
    def test_relayThenSocks5(self):  # type: ignore[no-untyped-def]
        """
        A SOCKS5 proxy as the second hop: our relay server CONNECTs to
        microsocks, which reaches the target.
        """
        echo = self.startLoopbackEcho()
        proxy = yield startMicrosocks(reactor, self.workdir, self.addCleanup, "u", "p")
        (relay,) = yield self.servicePorts(["relay://127.0.0.1:0"])
        yield self.echoThrough(
            chainEndpoint(reactor, [f"relay://127.0.0.1:{relay}", f"socks5://u:p@127.0.0.1:{proxy}"], "127.0.0.1", echo)
        )

    @defer.inlineCallbacks
    def test_secondHopWrongPasswordMarksThatNode(self):  # type: ignore[no-untyped-def]
        echo = self.startLoopbackEcho()
        proxy = yield startMicrosocks(reactor, self.workdir, self.addCleanup, "u", "p")
        (relay,) = yield self.servicePorts(["relay://127.0.0.1:0"])
        endpoint = chainEndpoint(
            reactor, [f"relay://127.0.0.1:{relay}", f"socks5://u:bad@127.0.0.1:{proxy}"], "127.0.0.1", echo
        )
        yield self.assertFailure(connectProtocol(endpoint, Collector()), ProxyHopRefused)
        (_h0, first), (_h1, second) = endpoint.route
        self.assertEqual((first.failures, second.failures), (0, 1))
        self.assertTrue([line for line in self.logs.lines if "hop-1 node-0 (socks5 proxy" in line], self.logs.lines)

    @defer.inlineCallbacks
    def test_socks4ThenSocks5ThenHttp(self):  # type: ignore[no-untyped-def]
        """
        Three proxies of three kinds in a row.
        """
        echo = self.startLoopbackEcho()
        p4 = yield startPproxy(reactor, self.workdir + "/p4", self.addCleanup, "socks4")
        p5 = yield startMicrosocks(reactor, self.workdir, self.addCleanup, "u", "p")
        ph = yield startTinyproxy(reactor, self.workdir + "/h", self.addCleanup, "a", "b")
        yield self.echoThrough(
            chainEndpoint(
                reactor,
                [f"socks4://127.0.0.1:{p4}", f"socks5://u:p@127.0.0.1:{p5}", f"http://a:b@127.0.0.1:{ph}"],
                "127.0.0.1", echo,
            )
        )

    # -- over our other dialers, against our own proxy entries

    @defer.inlineCallbacks
    def test_overTLSWebSocketKCP(self):  # type: ignore[no-untyped-def]
        """
        C{http+tls}, C{socks5+ws}, C{socks5+wss} against our own entries
        on those listeners.
        """
        echo = self.startLoopbackEcho()
        ports = yield self.servicePorts(
            [
                "http+tls://u:p@127.0.0.1:0",
                "socks5+ws://u:p@127.0.0.1:0",
                "socks5+wss://127.0.0.1:0",
            ]
        )
        urls = [
            f"http+tls://u:p@127.0.0.1:{ports[0]}",
            f"socks5+ws://u:p@127.0.0.1:{ports[1]}",
            f"socks5+wss://127.0.0.1:{ports[2]}",
        ]
        for url in urls:
            yield self.echoThrough(chainEndpoint(reactor, [url], "127.0.0.1", echo), url.encode())

    @defer.inlineCallbacks
    def test_overKCPCommandLine(self):  # type: ignore[no-untyped-def]
        """
        As users run it: C{gostrelay -L socks5+kcp://...} and C{gostrelay
        -L tcp://:P/target -F socks5+kcp://u:p@...}.
        """
        echo = self.startLoopbackEcho()
        server = spawn(reactor, [*CONSOLE, "-L", "socks5+kcp://u:p@127.0.0.1:0"], self.workdir + "/s", childEnvironment(),
                       name="server", addCleanup=self.addCleanup)
        _host, kcpPort = yield server.waitForListening()
        client = spawn(
            reactor,
            [*CONSOLE, "-L", f"tcp://127.0.0.1:0/127.0.0.1:{echo}", "-F", f"socks5+kcp://u:p@127.0.0.1:{kcpPort}"],
            self.workdir + "/c", childEnvironment(), name="client", addCleanup=self.addCleanup,
        )
        _host, entry = yield client.waitForListening()
        yield self.echoThrough(clientFromString(reactor, f"tcp:127.0.0.1:{entry}"))

    # -- endpoint strings

    @defer.inlineCallbacks
    def test_endpointStrings(self):  # type: ignore[no-untyped-def]
        echo = self.startLoopbackEcho()
        p5 = yield startMicrosocks(reactor, self.workdir, self.addCleanup, "u", "p")
        ph = yield startTinyproxy(reactor, self.workdir, self.addCleanup, "a", "b")
        p4 = yield startPproxy(reactor, self.workdir, self.addCleanup, "socks4")
        yield self.echoThrough(
            clientFromString(reactor, rf"socks5:tcp\:127.0.0.1\:{p5}:host=127.0.0.1:port={echo}:username=u:password=p")
        )
        yield self.echoThrough(
            clientFromString(reactor, rf"httpconnect:tcp\:127.0.0.1\:{ph}:host=127.0.0.1:port={echo}:username=a:password=b")
        )
        yield self.echoThrough(clientFromString(reactor, rf"socks4:tcp\:127.0.0.1\:{p4}:host=127.0.0.1:port={echo}"))
        # Nested: SOCKS5 through the HTTP proxy.
        yield self.echoThrough(
            clientFromString(
                reactor,
                rf"socks5:httpconnect\:tcp\\\:127.0.0.1\\\:{ph}\:host\=127.0.0.1\:port\={p5}\:username\=a\:password\=b"
                rf":host=127.0.0.1:port={echo}:username=u:password=p",
            )
        )
        bad = clientFromString(reactor, rf"httpconnect:tcp\:127.0.0.1\:{ph}:host=127.0.0.1:port={echo}:username=a:password=x")
        yield self.assertFailure(connectProtocol(bad, Collector()), ProxyHopRefused)

    # -- UDP through a SOCKS5 hop

    @defer.inlineCallbacks
    def udpService(self, socksURL: str):  # type: ignore[no-untyped-def]
        """
        A UDP echo target and C{-L udp://.../target -F socksURL}; fires with
        the entry's port.
        """
        echo = UDPEcho()
        port = reactor.listenUDP(0, echo, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        (entry,) = yield self.servicePorts([f"udp://127.0.0.1:0/127.0.0.1:{port.getHost().port}"], [socksURL])
        return entry

    def udpClient(self) -> UDPClient:
        client = UDPClient()
        port = reactor.listenUDP(0, client, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return client

    @defer.inlineCallbacks
    def test_udpAssociate(self):  # type: ignore[no-untyped-def]
        """
        C{relay=udp}: a standard SOCKS5 UDP ASSOCIATE on a first hop, here
        against our own SOCKS5 entry with C{udp=true}; datagrams go both
        ways.
        """
        (socksPort,) = yield self.servicePorts(["socks5://u:p@127.0.0.1:0?udp=true"])
        entry = yield self.udpService(f"socks5://u:p@127.0.0.1:{socksPort}?relay=udp")
        client = self.udpClient()
        for payload in (b"first datagram", b"second", b"x" * 4000):
            reply = yield client.exchange(payload, ("127.0.0.1", entry))
            self.assertEqual(reply, payload)

    @defer.inlineCallbacks
    def test_udpTunnelRefused(self):  # type: ignore[no-untyped-def]
        """
        Without C{relay=udp}, UDP goes by GOST's UDP tunnel command (0xF3);
        a server that does not know it (ours, like any standard one)
        answers "command not supported", which is logged with the hop.
        """
        (socksPort,) = yield self.servicePorts(["socks5://127.0.0.1:0?udp=true"])
        entry = yield self.udpService(f"socks5://127.0.0.1:{socksPort}")
        client = self.udpClient()
        d = client.exchange(b"dropped", ("127.0.0.1", entry), timeout=2)
        yield self.assertFailure(d, defer.TimeoutError)
        self.assertTrue(
            [line for line in self.logs.lines if "socks5 proxy" in line and "0x07 command not supported" in line], self.logs.lines
        )

    def test_relayUDPFirstHopOnly(self) -> None:
        """
        C{relay=udp} on a later hop is refused at start, naming it.
        """
        e = self.assertRaises(ConfigError, chainEndpoint, reactor, ["relay://a:1", "socks5://b:1?relay=udp"], "x", 80)
        self.assertIn("relay=udp (UDP ASSOCIATE) works on a first hop only", str(e))
        e = self.assertRaises(ConfigError, chainEndpoint, reactor, ["socks5://b:1?relay=tcp"], "x", 80)
        self.assertIn("relay=tcp", str(e))
