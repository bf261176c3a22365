"""
Integration tests of the kcp data channel as users run it: C{python -m
gostrelay} children (each in its own empty directory and HOME) for the
relay server (C{-L relay+kcp://127.0.0.1:0}, the port it reports) and the
client, spoken to over real sockets on 127.0.0.1 by in-process echo
targets and peers.

  - 8 MiB echoed both ways through C{tcp forward -> relay+kcp -> echo};
  - UDP forwarding over kcp with 1, 1000 and 60000-byte datagrams;
  - remote TCP forwarding (rtcp) over kcp: the BIND's smux session rides
    inside the kcp session's smux stream;
  - the local proxy entry (SOCKS5 and HTTP CONNECT) in front of kcp;
  - YAML listener and dialer sections with kcp metadata;
  - a mismatched C{kcp.key}: the client's connection fails, and the
    server should say why (it does not: a bug, see the test);
  - session recovery: the server killed and started again on the same
    port; once the dialer's dead session is closed, a new connection gets
    a new socket and conv and works.

Every child is stopped (TERM, then KILL) at cleanup; every socket and timer
the test opened is checked closed; every wait is bounded.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from typing import Any

import yaml
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import DatagramProtocol, Protocol
from twisted.python.failure import Failure

from gostrelay.build import BuildContext
from gostrelay.chain import Chain
from gostrelay.config.model import ChainConfig, Config
from gostrelay.config.url import parseNodeURL
from gostrelay.mux import MuxConfig
from gostrelay.transports import kcp
from tests.processes import LineProcessProtocol, ProcessTimeout
from tests.support.cases import ProcessTestCase
from tests.support.reactor import freePort, sleep
from tests.support.targets import UDPEcho

MIB = 1024 * 1024
CHECKSUM_HINT = "datagrams fail the checksum: key or crypt differs from the peer's?"


# -- targets


class UDPPeer(DatagramProtocol):
    """
    Sends datagrams and hands back each answer.
    """

    def __init__(self) -> None:
        self.waiting: defer.Deferred[bytes] | None = None
        self.received: list[bytes] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.received.append(data)
        if self.waiting is not None:
            d, self.waiting = self.waiting, None
            d.callback(data)


# -- peers


class Collector(Protocol):
    """
    Optionally speaks a handshake first (C{handshake}: bytes to send and
    how many reply bytes, or which terminator, end the reply), then sends C{payload} and collects what
    comes back; C{done} fires with it when C{expect} bytes arrived or the
    connection is lost.
    """

    def __init__(self, payload: bytes, expect: int | None = None, handshake: list[tuple[bytes, int | bytes]] | None = None) -> None:
        self.payload = payload
        self.expect = len(payload) if expect is None else expect
        self.handshake = list(handshake or [])
        self.handshakeReplies: list[bytes] = []
        self.buffer = b""
        self.data = bytearray()
        self.done: defer.Deferred[bytes] = defer.Deferred()
        self.lost = False

    def connectionMade(self) -> None:
        self._next()

    def _next(self) -> None:
        if self.handshake:
            self.transport.write(self.handshake[0][0])  # type: ignore[union-attr]
        else:
            self.transport.write(self.payload)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if self.handshake:
            self.buffer += data
            need = self.handshake[0][1]
            if isinstance(need, bytes):  # a terminator (HTTP's blank line)
                if need not in self.buffer:
                    return
                need = self.buffer.index(need) + len(need)
            if len(self.buffer) < need:
                return
            reply, self.buffer = self.buffer[:need], self.buffer[need:]
            self.handshakeReplies.append(reply)
            self.handshake.pop(0)
            self._next()
            data, self.buffer = self.buffer, b""
            if not data:
                return
        self.data += data
        if len(self.data) >= self.expect and not self.done.called:
            self.transport.loseConnection()  # type: ignore[union-attr]
            self.done.callback(bytes(self.data))

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = True
        if not self.done.called:
            self.done.callback(bytes(self.data))


class KCPProcessTestCase(ProcessTestCase):
    @defer.inlineCallbacks
    def startServer(self, port: int = 0, query: str = ""):  # type: ignore[no-untyped-def]
        url = f"relay+kcp://127.0.0.1:{port}" + (f"?{query}" if query else "")
        return (yield self.startListening("-L", url, name="server"))

    @defer.inlineCallbacks
    def talk(self, port: int, payload: bytes, timeout: float = 30, **kwargs: Any):  # type: ignore[no-untyped-def]
        """
        Connect to 127.0.0.1:port with a L{Collector}; fire with it once
        done (all expected bytes back, or the connection lost), at most
        C{timeout} seconds.
        """
        client = Collector(payload, **kwargs)
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5), client)
        timer = reactor.callLater(timeout, client.transport.abortConnection)  # type: ignore[attr-defined]

        def cleanup() -> None:
            if timer.active():
                timer.cancel()
            if not client.lost:
                client.transport.abortConnection()  # type: ignore[union-attr]

        self.addCleanup(cleanup)
        yield client.done
        if timer.active():
            timer.cancel()
        return client

    @defer.inlineCallbacks
    def assertEchoes(self, port: int, size: int, *procs: LineProcessProtocol, timeout: float = 30, **kwargs: Any):  # type: ignore[no-untyped-def]
        payload = os.urandom(size)
        client = yield self.talk(port, payload, timeout, **kwargs)
        described = "\n".join(p.describe() for p in procs)
        self.assertEqual(len(client.data), size, described)
        self.assertEqual(hashlib.sha256(client.data).hexdigest(), hashlib.sha256(payload).hexdigest(), described)
        return client


class KCPTunnelTests(KCPProcessTestCase):
    @defer.inlineCallbacks
    def test_echo8MiB(self):  # type: ignore[no-untyped-def]
        """
        C{-L tcp://127.0.0.1:0/<echo> -F relay+kcp://127.0.0.1:P}: 8 MiB
        of random bytes echoed back intact, then a second connection over
        the same kcp session.
        """
        echo, echoPort = self.startEcho()
        server, port = yield self.startServer()
        # -D: Twisted's "... starting on" lines, counted below, show only
        # from -D on.
        client, fwd = yield self.startListening(
            "-D", "-L", f"tcp://127.0.0.1:0/127.0.0.1:{echoPort}", "-F", f"relay+kcp://127.0.0.1:{port}", name="client"
        )
        yield self.assertEchoes(fwd, 8 * MIB, server, client, timeout=40)
        yield self.assertEchoes(fwd, 1000, server, client)
        self.assertEqual(len(echo.accepted), 2)
        yield server.waitForLine(rf"CONNECT 127\.0\.0\.1:{echoPort}/tcp .*closed, 8388608 bytes up, 8388608 bytes down", timeout=5)
        # One kcp session (one UDP socket) for both connections.
        sockets = [line for line in client.lines["out"] + client.lines["err"] if "_KCPClientSocket starting" in line]
        self.assertEqual(len(sockets), 1, client.describe())

    @defer.inlineCallbacks
    def test_udpForwarding(self):  # type: ignore[no-untyped-def]
        """
        C{-L udp://127.0.0.1:0/<udp echo> -F relay+kcp://...}: datagrams of
        1, 1000 and 60000 bytes come back whole (the relay's UDP framing
        inside an smux stream inside KCP).
        """
        echo = UDPEcho()
        echoPort = self.listenUDP(echo)
        server, port = yield self.startServer()
        client, fwd = yield self.startListening(
            "-L", f"udp://127.0.0.1:0/127.0.0.1:{echoPort}", "-F", f"relay+kcp://127.0.0.1:{port}", name="client"
        )
        peer = UDPPeer()
        self.listenUDP(peer)
        for size in (1, 1000, 60000, 1000):
            payload = os.urandom(size)
            peer.waiting = defer.Deferred()
            peer.transport.write(payload, ("127.0.0.1", fwd))  # type: ignore[union-attr]
            waiting = peer.waiting
            timer = reactor.callLater(10, lambda d=waiting, n=size: d.called or d.errback(ProcessTimeout(
                f"no echo of the {n}-byte datagram:\n{server.describe()}\n{client.describe()}")))
            try:
                answer = yield waiting
            finally:
                if timer.active():
                    timer.cancel()
                peer.waiting = None
            self.assertEqual(len(answer), size)
            self.assertTrue(answer == payload, f"{size}-byte datagram changed")
        self.assertEqual([size for size, _ in echo.received], [1, 1000, 60000, 1000])

    @defer.inlineCallbacks
    def test_remoteTCP(self):  # type: ignore[no-untyped-def]
        """
        Server C{relay+kcp://...?bind=true}, client C{-L
        rtcp://127.0.0.1:R/<echo> -F relay+kcp://...}: a peer connecting to
        R on the server reaches the echo behind the client.
        """
        echo, echoPort = self.startEcho()
        server, port = yield self.startServer(query="bind=true")
        remotePort = freePort()
        client = self.start(
            "-L", f"rtcp://127.0.0.1:{remotePort}/127.0.0.1:{echoPort}", "-F", f"relay+kcp://127.0.0.1:{port}",
            name="client",
        )
        yield client.waitForLine(rf"bound 127\.0\.0\.1:{remotePort} on the relay server", timeout=15)
        yield self.assertEchoes(remotePort, MIB, server, client)
        yield self.assertEchoes(remotePort, 1000, server, client)
        self.assertEqual(len(echo.accepted), 2)

    @defer.inlineCallbacks
    def test_socks5Entry(self):  # type: ignore[no-untyped-def]
        """
        C{-L socks5://127.0.0.1:0 -F relay+kcp://...}: a SOCKS5 CONNECT
        (no auth) to the echo, then 1 MiB through it.
        """
        echo, echoPort = self.startEcho()
        server, port = yield self.startServer()
        client, entry = yield self.startListening(
            "-L", "socks5://127.0.0.1:0", "-F", f"relay+kcp://127.0.0.1:{port}", name="client"
        )
        request = b"\x05\x01\x00\x01" + bytes([127, 0, 0, 1]) + struct.pack("!H", echoPort)
        talked = yield self.assertEchoes(
            entry, MIB, server, client, handshake=[(b"\x05\x01\x00", 2), (request, 10)]
        )
        self.assertEqual(talked.handshakeReplies[0], b"\x05\x00")
        self.assertEqual(talked.handshakeReplies[1][:2], b"\x05\x00", "SOCKS5 success")
        self.assertEqual(len(echo.accepted), 1)

    @defer.inlineCallbacks
    def test_httpConnectEntry(self):  # type: ignore[no-untyped-def]
        """
        C{-L http://127.0.0.1:0 -F relay+kcp://...}: CONNECT to the echo,
        C{200}, then 1 MiB through it.
        """
        echo, echoPort = self.startEcho()
        server, port = yield self.startServer()
        client, entry = yield self.startListening(
            "-L", "http://127.0.0.1:0", "-F", f"relay+kcp://127.0.0.1:{port}", name="client"
        )
        connect = f"CONNECT 127.0.0.1:{echoPort} HTTP/1.1\r\nHost: 127.0.0.1:{echoPort}\r\n\r\n".encode()
        talked = yield self.assertEchoes(entry, MIB, server, client, handshake=[(connect, b"\r\n\r\n")])
        self.assertTrue(talked.handshakeReplies[0].startswith(b"HTTP/1.1 200 "), talked.handshakeReplies[0])
        self.assertEqual(len(echo.accepted), 1)


class KCPYAMLTests(KCPProcessTestCase):
    @defer.inlineCallbacks
    def test_yamlListenerAndDialer(self):  # type: ignore[no-untyped-def]
        """
        The YAML of docs/kcp.md: a kcp listener and a kcp dialer with
        C{metadata: {kcp.key: ...}} (and FEC switched off on one side
        through C{kcp.config}, which the receiver detects); 1 MiB echoes.
        """
        echo, echoPort = self.startEcho()
        serverYAML = self.writeYAML({"services": [{
            "name": "relay-kcp", "addr": "127.0.0.1:0",
            "handler": {"type": "relay"},
            "listener": {"type": "kcp", "metadata": {
                "kcp.key": "s3cret", "kcp.config": {"datashard": 0, "parityshard": 0},
            }},
        }]})
        server, port = yield self.startListening("-C", serverYAML, name="server")
        clientYAML = self.writeYAML({
            "services": [{
                "name": "forward", "addr": "127.0.0.1:0",
                "handler": {"type": "tcp", "chain": "kcp-chain"}, "listener": {"type": "tcp"},
                "forwarder": {"nodes": [{"name": "echo", "addr": f"127.0.0.1:{echoPort}"}]},
            }],
            "chains": [{"name": "kcp-chain", "hops": [{"name": "hop-0", "nodes": [{
                "name": "relay-kcp", "addr": f"127.0.0.1:{port}",
                "connector": {"type": "relay"},
                "dialer": {"type": "kcp", "metadata": {"kcp.key": "s3cret"}},
            }]}]}],
        })
        client, fwd = yield self.startListening("-C", clientYAML, name="client")
        yield self.assertEchoes(fwd, MIB, server, client)
        self.assertEqual(len(echo.accepted), 1)

    def writeYAML(self, data: Any) -> str:
        path = os.path.join(self.childDir(), "gost.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(data, f)
        return path


class KCPKeyMismatchTests(KCPProcessTestCase):
    @defer.inlineCallbacks
    def mismatch(self):  # type: ignore[no-untyped-def]
        """
        Server C{kcp.key=x}, client with the default (empty) key, asking
        for the relay answer (C{nodelay=true}) within 2 s: the forwarded
        connection is closed without a byte.
        """
        echo, echoPort = self.startEcho()
        server, port = yield self.startServer(query="kcp.key=x")
        client, fwd = yield self.startListening(
            "-L", f"tcp://127.0.0.1:0/127.0.0.1:{echoPort}",
            "-F", f"relay+kcp://127.0.0.1:{port}?nodelay=true&connectTimeout=2s", name="client",
        )
        talked = yield self.talk(fwd, b"hello", timeout=15)
        described = f"{server.describe()}\n{client.describe()}"
        self.assertTrue(talked.lost, described)
        self.assertEqual(bytes(talked.data), b"", described)
        self.assertEqual(len(echo.accepted), 0)
        return server, client

    @defer.inlineCallbacks
    def test_clientConnectionFails(self):  # type: ignore[no-untyped-def]
        yield self.mismatch()

    @defer.inlineCallbacks
    def test_serverLogsChecksumHint(self):  # type: ignore[no-untyped-def]
        """
        BUG (failing on purpose): the server should log "datagrams fail the
        checksum: key or crypt differs from the peer's?" when a client with
        another key talks to it; it logs nothing at all (the hint exists
        only for datagrams from an address that already has a session; see
        tests.test_kcp_transport.ReplayTests.test_wrongKeyLogsHint).

        Reproduction::

            python -m gostrelay -L 'relay+kcp://127.0.0.1:8443?kcp.key=x' &
            python -m gostrelay -L tcp://127.0.0.1:9000/127.0.0.1:22 -F relay+kcp://127.0.0.1:8443 &
            nc 127.0.0.1 9000      # the server's log stays silent
        """
        server, client = yield self.mismatch()
        try:
            yield server.waitForLine(re.escape(CHECKSUM_HINT), timeout=2)
        except ProcessTimeout as e:
            self.fail(f"no checksum hint in the server's log:\n{e}")


class KCPRecoveryTests(KCPProcessTestCase):
    """
    The server process dies and a new one starts on the same UDP port.

    The client's kcp session cannot tell: the new server makes a zombie
    session from the old conv (kcp-go does the same), and the dialer only
    notices when smux has heard nothing for a whole keepalive window
    (30 s windows: 30 to 60 s).  Waiting that long does not fit in CI, so
    this test runs the client side in-process (the real L{KCPDialer} under
    the real relay connector, through L{Chain}) with smux's keepalive
    scaled down to 0.5 s / 2 s; everything else is the production path:
    the server is a real process, restarted; the dead session is closed by
    smux's own check, the dialer drops it and the next connection opens a
    new socket and conversation.  (The 30-60 s timing itself is checked on
    a fake clock in
    tests.test_kcp_transport.DialerTests.test_deadSessionReplaced.)
    """

    @defer.inlineCallbacks
    def test_newConnectionAfterRestart(self):  # type: ignore[no-untyped-def]
        dialers: list[kcp.KCPDialer] = []
        original = kcp.KCPDialer.__init__

        def recordingInit(dialer: kcp.KCPDialer, *args: Any, **kwargs: Any) -> None:
            original(dialer, *args, **kwargs)
            dialers.append(dialer)

        self.patch(kcp.KCPDialer, "__init__", recordingInit)
        self.patch(
            kcp.KCPConfig, "muxConfig",
            lambda c: MuxConfig(version=c.smuxVersion, keepaliveInterval=0.5, keepaliveTimeout=2.0),
        )
        echo, echoPort = self.startEcho()
        server, port = yield self.startServer()
        config = Config()
        chainConfig = ChainConfig(name="chain-0", hops=[parseNodeURL(config, f"relay+kcp://127.0.0.1:{port}", 0)])
        config.chains.append(chainConfig)
        chain = Chain.fromConfig(reactor, chainConfig, BuildContext(reactor, config), "test")
        endpoint = chain.endpoint("tcp", f"127.0.0.1:{echoPort}", 5)
        address = f"127.0.0.1:{port}"

        yield self.echoThrough(endpoint, 100000)
        (dialer,) = dialers
        old = dialer.clients[address]
        self.assertTrue(old.alive)
        oldConv = old.connection.conv  # type: ignore[union-attr]
        oldPort = old.port.getHost().port

        # Kill the server; start another on the same port.
        yield server.stop()
        restarted, samePort = yield self.startServer(port)
        self.assertEqual(samePort, port)

        # smux notices the silence and closes the old session; the dialer
        # forgets it (its UDP socket is closed).
        waited = 0.0
        while old.alive and waited < 10:
            yield sleep(0.1)
            waited += 0.1
        self.assertFalse(old.alive, "the dead session was never closed")
        self.assertNotIn(address, dialer.clients)
        self.assertIsNone(old.port)

        # A new connection: new socket, new conv, and it works.
        yield self.echoThrough(endpoint, 100000)
        fresh = dialer.clients[address]
        self.assertIsNot(fresh, old)
        self.assertNotEqual(fresh.connection.conv, oldConv)  # type: ignore[union-attr]
        self.assertNotEqual(fresh.port.getHost().port, oldPort)
        yield restarted.waitForLine(rf"CONNECT 127\.0\.0\.1:{echoPort}/tcp .*connected", timeout=5)
        self.assertEqual(len(echo.accepted), 2)
        fresh.close()

    @defer.inlineCallbacks
    def echoThrough(self, endpoint: Any, size: int):  # type: ignore[no-untyped-def]
        payload = os.urandom(size)
        client = Collector(payload)
        yield connectProtocol(endpoint, client)
        timer = reactor.callLater(15, client.transport.abortConnection)  # type: ignore[attr-defined]
        received = yield client.done
        if timer.active():
            timer.cancel()
        self.assertEqual(len(received), size)
        self.assertTrue(received == payload, "echoed bytes differ")
