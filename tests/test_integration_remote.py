"""
Integration tests for remote port forwarding (spec-relay.md 6.3, 6.4):
a relay server (C{python -m gostrelay -L relay://127.0.0.1:PORT?bind=true})
and a client (C{-L rtcp://... -L rudp://... -F relay://...}) as separate
processes, spoken to over real sockets on 127.0.0.1 only.

Peers connect to the port the server binds for the client; the client
forwards to echo targets run by the test.  Every child is stopped at
cleanup (TERM, then KILL), every socket opened here is closed, and every
wait is bounded.
"""

from __future__ import annotations

import os
import re
import socket
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import CannotListenError, ConnectError
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.python.failure import Failure

from tests.processes import LineProcessProtocol, ProcessTimeout
from tests.support.cases import ProcessTestCase
from tests.support.reactor import freePort
from tests.support.targets import Collector, UDPEcho

MIB = 1024 * 1024


def _re(text: str) -> str:
    return re.escape(text)


# -- targets


class Sink(Protocol):
    """
    A target that records what each connection sent.
    """

    def connectionMade(self) -> None:
        self.data = b""
        self.factory.open.add(self)  # type: ignore[attr-defined]
        self.factory.connections.append(self)  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.factory.open.discard(self)  # type: ignore[attr-defined]


class SinkFactory(Factory):
    protocol = Sink
    noisy = False

    def __init__(self) -> None:
        self.open: set[Sink] = set()
        self.connections: list[Sink] = []


class SendAndLeave(Protocol):
    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def connectionMade(self) -> None:
        self.transport.write(self.payload)  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


# -- peers


class UDPPeer(DatagramProtocol):
    noisy = False

    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int]]] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.received.append((data, tuple(addr)))  # type: ignore[arg-type]


class RemoteForwardingTestCase(ProcessTestCase):
    """
    A relay server and a client with rtcp/rudp services, both children;
    targets and visitors in this process.
    """

    @defer.inlineCallbacks
    def startServer(self, port: int = 0, bind: bool = True):  # type: ignore[no-untyped-def]
        """
        A relay server on 127.0.0.1; fires with (process, port).
        """
        url = f"relay://127.0.0.1:{port}" + ("?bind=true" if bind else "")
        proc = self.start("-L", url, name="server")
        host, actual = yield proc.waitForListening(timeout=15)
        return proc, actual

    def startClient(self, serverPort: int, *services: str) -> LineProcessProtocol:
        args: list[str] = []
        for url in services:
            args += ["-L", url]
        return self.start(*args, "-F", f"relay://127.0.0.1:{serverPort}", name="client")

    def waitBound(self, proc: LineProcessProtocol, address: str, n: int = 1, timeout: float = 15):  # type: ignore[no-untyped-def]
        return proc.waitForLine(
            rf"bound {_re(address)} on the relay server as \S+ \(bind #{n}\)", timeout=timeout
        )

    @defer.inlineCallbacks
    def waitForCount(self, proc: LineProcessProtocol, pattern: str, count: int, timeout: float):  # type: ignore[no-untyped-def]
        """
        Wait until C{count} lines of the child match C{pattern}; fire with
        them.
        """
        regex = re.compile(pattern)
        waited = 0.0
        while True:
            lines = [line for line in proc.lines["out"] + proc.lines["err"] if regex.search(line)]
            if len(lines) >= count:
                return lines
            if waited >= timeout or proc.ended:
                raise ProcessTimeout(
                    f"{len(lines)} of {count} lines matching {pattern!r} within {timeout:g}s:\n{proc.describe()}"
                )
            yield task.deferLater(reactor, 0.1, lambda: None)
            waited += 0.1

    # -- targets

    def startSink(self) -> tuple[SinkFactory, int]:
        factory = SinkFactory()
        return factory, self.listenTCP(factory)

    def startUDPEcho(self) -> tuple[UDPEcho, int]:
        echo = UDPEcho()
        return echo, self.listenUDP(echo)

    # -- peers

    @defer.inlineCallbacks
    def echoThrough(self, port: int, payload: bytes, timeout: float = 30):  # type: ignore[no-untyped-def]
        """
        Connect to 127.0.0.1:port, send C{payload}; fire with what came
        back once the connection is closed.
        """
        client = Collector(payload)
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5), client)

        def cleanup() -> None:
            if not client.lost:
                client.transport.abortConnection()  # type: ignore[union-attr]

        self.addCleanup(cleanup)
        timer = reactor.callLater(timeout, client.transport.abortConnection)  # type: ignore[attr-defined]
        yield client.done
        if timer.active():
            timer.cancel()
        return bytes(client.data)

    @defer.inlineCallbacks
    def assertEchoes(self, port: int, size: int = 1000):  # type: ignore[no-untyped-def]
        payload = os.urandom(size)
        received = yield self.echoThrough(port, payload)
        self.assertEqual(len(received), len(payload))
        self.assertTrue(received == payload, "echoed bytes differ")


class RemoteTCPTests(RemoteForwardingTestCase):
    @defer.inlineCallbacks
    def test_concurrentMebibytes(self):  # type: ignore[no-untyped-def]
        """
        20 connections at once to the port the server bound, each echoing
        1 MiB through the smux session and the client to the target; every
        byte comes back, in order.  The server logs the BIND and its peers.
        """
        echo, echoPort = self.startEcho()
        server, serverPort = yield self.startServer()
        remotePort = freePort()
        client = self.startClient(serverPort, f"rtcp://127.0.0.1:{remotePort}/127.0.0.1:{echoPort}")
        yield self.waitBound(client, f"127.0.0.1:{remotePort}")
        yield server.waitForLine(rf"BIND 127\.0\.0\.1:{remotePort}/tcp user='': bound on 127\.0\.0\.1:{remotePort}")
        payloads = [os.urandom(MIB) for _ in range(20)]
        results = yield defer.gatherResults([self.echoThrough(remotePort, p, timeout=40) for p in payloads])
        for i, (payload, received) in enumerate(zip(payloads, results)):
            self.assertEqual(len(received), MIB, f"connection {i}:\n{client.describe()}\n{server.describe()}")
            self.assertTrue(received == payload, f"connection {i}: echoed bytes differ")
        self.assertEqual(sum(p.received for p in echo.accepted), 20 * MIB)

    @defer.inlineCallbacks
    def test_emptyHost(self):  # type: ignore[no-untyped-def]
        """
        C{rtcp://:PORT/...} (empty host; GOST's own client sends a broken
        request for it) binds PORT on every address of the server:
        127.0.0.1:PORT works.
        """
        echo, echoPort = self.startEcho()
        server, serverPort = yield self.startServer()
        remotePort = freePort()
        client = self.startClient(serverPort, f"rtcp://:{remotePort}/127.0.0.1:{echoPort}")
        yield self.waitBound(client, f":{remotePort}")
        yield self.assertEchoes(remotePort, 100_000)
        yield self.assertEchoes(remotePort, 1)

    @defer.inlineCallbacks
    def test_shortLivedPeers(self):  # type: ignore[no-untyped-def]
        """
        Peers that send a few bytes and close at once (a log line, a
        health check) still have their bytes delivered to the target: the
        smux FIN that follows them is the end of the data (spec 4.2).

        Guards the case where the data and the FIN reach the client
        before its dial to the target completes: the FIN must not cancel
        the dial and lose the bytes (unit form:
        test_bind.RemoteListenerTests.test_peerDataThenFinBeforeTargetConnects).
        """
        sink, sinkPort = self.startSink()
        server, serverPort = yield self.startServer()
        remotePort = freePort()
        # The target by name ("localhost" is 127.0.0.1 here): resolving it
        # takes a little while, as dialing any real target does, so the
        # peer's FIN usually arrives before the target is connected.
        client = self.startClient(serverPort, f"rtcp://127.0.0.1:{remotePort}/localhost:{sinkPort}")
        yield self.waitBound(client, f"127.0.0.1:{remotePort}")
        payloads = sorted(b"line %d\n" % i for i in range(20))
        for payload in payloads:
            yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", remotePort, timeout=5), SendAndLeave(payload))
        for _ in range(50):
            if sorted(c.data for c in sink.connections if c.data) == payloads and not sink.open:
                break
            yield task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(
            sorted(c.data for c in sink.connections if c.data), payloads, f"{client.describe()}\n{server.describe()}"
        )

    @defer.inlineCallbacks
    def test_serverRestart(self):  # type: ignore[no-untyped-def]
        """
        When the server restarts, the client binds again (bind #2, after
        its back-off) and the remote port works again.
        """
        echo, echoPort = self.startEcho()
        serverPort = freePort()
        server, _ = yield self.startServer(serverPort)
        remotePort = freePort()
        client = self.startClient(serverPort, f"rtcp://127.0.0.1:{remotePort}/127.0.0.1:{echoPort}")
        yield self.waitBound(client, f"127.0.0.1:{remotePort}")
        yield self.assertEchoes(remotePort)
        yield server.stop()
        yield client.waitForLine(r"BIND \S+ ended", timeout=10)
        server2, _ = yield self.startServer(serverPort)
        yield self.waitBound(client, f"127.0.0.1:{remotePort}", n=2, timeout=15)
        yield self.assertEchoes(remotePort, 200_000)

    @defer.inlineCallbacks
    def test_clientKilledFreesPort(self):  # type: ignore[no-untyped-def]
        """
        When the client dies (KILL), the server releases the ports it bound
        for it, TCP and UDP: they can be bound again, by anyone.
        """
        echo, echoPort = self.startEcho()
        server, serverPort = yield self.startServer()
        remotePort = freePort()
        remoteUDPPort = freePort(socket.SOCK_DGRAM)
        client = self.startClient(
            serverPort,
            f"rtcp://127.0.0.1:{remotePort}/127.0.0.1:{echoPort}",
            f"rudp://127.0.0.1:{remoteUDPPort}/127.0.0.1:9",
        )
        yield self.waitBound(client, f"127.0.0.1:{remotePort}")
        yield self.waitBound(client, f"127.0.0.1:{remoteUDPPort}")
        yield self.assertEchoes(remotePort)

        def listenTCP() -> Any:
            return reactor.listenTCP(remotePort, Factory.forProtocol(Protocol), interface="127.0.0.1")

        def listenUDP() -> Any:
            return reactor.listenUDP(remoteUDPPort, DatagramProtocol(), interface="127.0.0.1")

        self.assertRaises(CannotListenError, listenTCP)
        self.assertRaises(CannotListenError, listenUDP)
        client.transport.signalProcess("KILL")  # type: ignore[union-attr]
        yield client.whenEnded()
        yield server.waitForLine(rf"BIND 127\.0\.0\.1:{remotePort}/tcp user='': released", timeout=10)
        yield server.waitForLine(rf"BIND 127\.0\.0\.1:{remoteUDPPort}/udp user='': released", timeout=10)
        for listen, what in ((listenTCP, "TCP"), (listenUDP, "UDP")):
            port = None
            for _ in range(50):
                try:
                    port = listen()
                    break
                except CannotListenError:
                    yield task.deferLater(reactor, 0.1, lambda: None)
            self.assertIsNotNone(port, f"{what} port still bound:\n{server.describe()}")
            yield port.stopListening()

    @defer.inlineCallbacks
    def test_stopsOverTLS(self):  # type: ignore[no-untyped-def]
        """
        A client whose BINDs go through a relay+tls server stops on TERM
        (TLS closes a carrier only once the smux session or the UDP
        tunnel has unregistered from it): both BINDs are released, the
        client exits by itself.
        """
        echo, echoPort = self.startEcho()
        server = self.start("-L", "relay+tls://127.0.0.1:0?bind=true", name="server")
        _, serverPort = yield server.waitForListening(timeout=15)
        remotePort = freePort()
        remoteUDPPort = freePort(socket.SOCK_DGRAM)
        client = self.start(
            "-L", f"rtcp://127.0.0.1:{remotePort}/127.0.0.1:{echoPort}",
            "-L", f"rudp://127.0.0.1:{remoteUDPPort}/127.0.0.1:9",
            "-F", f"relay+tls://127.0.0.1:{serverPort}",
            name="client",
        )
        yield self.waitBound(client, f"127.0.0.1:{remotePort}")
        yield self.waitBound(client, f"127.0.0.1:{remoteUDPPort}")
        yield self.assertEchoes(remotePort)
        client.transport.signalProcess("TERM")  # type: ignore[union-attr]
        yield client.waitForExit(timeout=15)
        yield server.waitForLine(rf"BIND 127\.0\.0\.1:{remotePort}/tcp user='': released", timeout=10)
        yield server.waitForLine(rf"BIND 127\.0\.0\.1:{remoteUDPPort}/udp user='': released", timeout=10)

    @defer.inlineCallbacks
    def test_bindRefusedKeepsRetrying(self):  # type: ignore[no-untyped-def]
        """
        A server without bind=true refuses; the client says so and keeps
        asking (at least twice); the server logs the refusal.
        """
        server, serverPort = yield self.startServer(bind=False)
        remotePort = freePort()
        client = self.startClient(serverPort, f"rtcp://127.0.0.1:{remotePort}/127.0.0.1:9")
        lines = yield self.waitForCount(client, r"refuses BIND", 2, timeout=12)
        self.assertIn(f"127.0.0.1:{remotePort}", lines[0])
        yield server.waitForLine(r"refused with Forbidden")
        self.assertNotIn("bind #1", client.out + client.err)
        connecting = connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", remotePort, timeout=5), Protocol())
        yield self.assertFailure(connecting, ConnectError)


class RemoteUDPTests(RemoteForwardingTestCase):
    @defer.inlineCallbacks
    def test_peersAndSizes(self):  # type: ignore[no-untyped-def]
        """
        Three peers send datagrams of 1, 1000 and 60000 bytes to the UDP
        port the server bound; each gets its own datagrams back, whole,
        from that port.
        """
        echo, echoPort = self.startUDPEcho()
        server, serverPort = yield self.startServer()
        remotePort = freePort(socket.SOCK_DGRAM)
        client = self.startClient(serverPort, f"rudp://127.0.0.1:{remotePort}/127.0.0.1:{echoPort}")
        yield self.waitBound(client, f"127.0.0.1:{remotePort}")
        yield server.waitForLine(rf"BIND 127\.0\.0\.1:{remotePort}/udp user='': bound on 127\.0\.0\.1:{remotePort}")
        peers = []
        for _ in range(3):
            peer = UDPPeer()
            p = reactor.listenUDP(0, peer, interface="127.0.0.1", maxPacketSize=65535)
            self.addCleanup(p.stopListening)
            peers.append(peer)
        for size in (1, 1000, 60000):
            expected = [bytes([i]) + os.urandom(size - 1) for i in range(len(peers))]
            # Resent at most 3 times: UDP may drop, the tunnel may not
            # corrupt or mix.
            for _attempt in range(4):
                for peer, payload in zip(peers, expected):
                    if not any(data == payload for data, _ in peer.received):
                        peer.transport.write(payload, ("127.0.0.1", remotePort))  # type: ignore[union-attr]
                for _ in range(20):
                    if all(any(d == p for d, _ in peer.received) for peer, p in zip(peers, expected)):
                        break
                    yield task.deferLater(reactor, 0.05, lambda: None)
                else:
                    continue
                break
            for i, (peer, payload) in enumerate(zip(peers, expected)):
                self.assertTrue(
                    any(d == payload for d, _ in peer.received),
                    f"peer {i} never got its {size}-byte datagram back:\n{client.describe()}\n{server.describe()}",
                )
        for i, peer in enumerate(peers):
            for data, source in peer.received:
                self.assertEqual(source, ("127.0.0.1", remotePort))
                self.assertEqual(data[0], i, "a datagram reached the wrong peer")
                self.assertIn(len(data), (1, 1000, 60000))
