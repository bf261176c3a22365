"""
Tests for relay BIND: the server side (L{gostrelay.handlers.relaybind}
through L{RelayHandler}, spec-relay.md 2.8, 2.9, 4.6, 5.2) and the client
side (L{RelayConnector.bindEndpoint}, L{Chain.bindEndpoint}, the rtcp and
rudp listeners of L{gostrelay.transports.remote}, spec 3.5, 6.3, 6.4).

Everything runs on a L{BindReactor}, a L{MemoryReactorClock} whose fake
TCP and UDP ports know their address and record C{stopListening}; clients,
peers and targets are L{StringTransport}s.  Whole sessions recorded between
a real GOST client and server (transcripts rtcp_bind, rudp_bind) are
replayed against our server and against our client.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import (
    CannotListenError,
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
)
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from gostrelay.build import BuildContext
from gostrelay.chain import Chain
from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.connectors.relay import RelayConnector
from gostrelay.errors import RelayRefused
from gostrelay.handlers.forward import TCPForwardHandler
from gostrelay.handlers.relay import RelayHandler, RelayPhase, RelayServerProtocol
from gostrelay.handlers.relaybind import bindAddress, parsePortRanges, portAllowed
from gostrelay.handlers.udpforward import UDPForwardHandler
from gostrelay.transports.remote import RTCPListener, RUDPListener
from gostrelay.wire.relay import (
    FLAG_UDP,
    AddrFeature,
    Command,
    Network,
    NetworkFeature,
    Request,
    UserAuthFeature,
    decodeRequest,
    decodeResponse,
)
from gostrelay.wire.smux import FIN, NOP, PSH, SYN, FrameParser, encodeFrame
from gostrelay.wire.udpframe import TunnelDatagramParser, encodeTunnelDatagram
from tests import vectors
from tests.support.fakes import TCPLikeTransport
from tests.support.udp import FakeUDPPort, UDPMemoryReactor

OK = bytes.fromhex("01000000")
FORBIDDEN = vectors.caseBytes("server_resp_bind_forbidden")
SERVICE_UNAVAILABLE = bytes.fromhex("01050000")
CLIENT = IPv4Address("TCP", "127.0.0.1", 5555)
RELAY_SERVER = IPv4Address("TCP", "127.0.0.1", 8420)


# -- fakes


class FakeTCPPort:
    def __init__(self, address: Any, factory: Any) -> None:
        self.address = address
        self.factory = factory
        self.listening = True
        self.stopCount = 0

    def startListening(self) -> None:
        pass

    def stopListening(self) -> defer.Deferred[None]:
        self.listening = False
        self.stopCount += 1
        return defer.succeed(None)

    def getHost(self) -> Any:
        return self.address


class BindReactor(UDPMemoryReactor):
    """
    A L{UDPMemoryReactor} whose TCP listening ports also report the
    interface and port asked for (an ephemeral one for port 0), record
    stopListening, and can refuse (C{tcpError}).
    """

    def __init__(self) -> None:
        super().__init__()
        self.tcpPorts: list[FakeTCPPort] = []
        self.tcpError: Exception | None = None

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> FakeTCPPort:  # type: ignore[override]
        if self.tcpError is not None:
            raise self.tcpError
        self.tcpServers.append((port, factory, backlog, interface))
        fake = FakeTCPPort(self.address("TCP", interface, port), factory)
        self.tcpPorts.append(fake)
        return fake


class StalledTransport(TCPLikeTransport):
    """
    A stream whose reader has stopped: it keeps all that is written and,
    as Twisted's C{FileDescriptor} does, pauses its streaming producer once
    more than C{bufferSize} bytes wait.
    """

    bufferSize = 65536
    producerPaused = False

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.producer is not None and self.streaming and not self.producerPaused and len(self.value()) > self.bufferSize:
            self.producerPaused = True
            self.producer.pauseProducing()

    def drain(self) -> None:
        """
        The reader read everything: the producer may go on.
        """
        self.clear()
        if self.producerPaused:
            self.producerPaused = False
            self.producer.resumeProducing()


def makeHandler(url: str, reactor: BindReactor | None = None) -> tuple[BindReactor, RelayHandler]:
    reactor = reactor if reactor is not None else BindReactor()
    cfg = buildConfigFromCommandLine([url], [])
    return reactor, RelayHandler(reactor, cfg.services[0], BuildContext(reactor, cfg))


def connectClient(handler: RelayHandler) -> tuple[RelayServerProtocol, TCPLikeTransport]:
    proto = handler.buildProtocol(CLIENT)
    tr = TCPLikeTransport(peerAddress=CLIENT)
    proto.makeConnection(tr)
    return proto, tr


def bindRequest(address: str, network: str = "tcp", auth: tuple[str, str] | None = None) -> bytes:
    features: list[Any] = []
    if auth is not None:
        features.append(UserAuthFeature(*auth))
    features.append(NetworkFeature(Network.UDP if network == "udp" else Network.TCP))
    if address:
        features.append(AddrFeature.fromAddress(address))
    cmd = int(Command.BIND) | (FLAG_UDP if network == "udp" else 0)
    return Request(cmd, tuple(features)).encode()


def connectPeer(reactor: BindReactor, peer: Any, index: int = -1) -> tuple[Protocol, TCPLikeTransport]:
    """
    A peer connects to the bound port, as Twisted's TCP port would do it.
    """
    factory = reactor.tcpServers[index][1]
    proto = factory.buildProtocol(peer)
    tr = TCPLikeTransport(peerAddress=peer)
    proto.makeConnection(tr)
    return proto, tr


def smuxFrames(data: bytes) -> list[tuple[int, int, bytes]]:
    return [(f.cmd, f.sid, f.data) for f in FrameParser(1).feed(data)]


class BindTestCase(SynchronousTestCase):
    def bound(self, url: str, request: bytes) -> tuple[BindReactor, RelayServerProtocol, TCPLikeTransport]:
        reactor, handler = makeHandler(url)
        proto, tr = connectClient(handler)
        proto.dataReceived(request)
        self.addCleanup(self.release, proto)
        return reactor, proto, tr

    def release(self, proto: RelayServerProtocol) -> None:
        if proto.state != RelayPhase.CLOSED:
            proto.connectionLost(Failure(ConnectionDone()))

    def assertClosedWith(self, tr: StringTransport, expected: bytes) -> None:
        self.assertEqual(tr.value(), expected)
        self.assertTrue(tr.disconnecting, "client connection not closed")


# -- server, TCP


class TCPBindServerTests(BindTestCase):
    URL = "relay://127.0.0.1:0?bind=true"

    def test_transcriptReplay(self) -> None:
        """
        The rtcp session a real GOST client had with a real GOST server,
        replayed against our server: the same bytes come back, chunk for
        chunk (BIND reply; SYN 3 + per-peer OK; the peer's 'hello'; FIN 3
        when the peer leaves), and the client's bytes reach the peer.
        """
        t = vectors.transcript("rtcp_bind-conn1.json")
        chunks = [(d, bytes.fromhex(h)) for d, h in t["chunks"]]
        reactor, handler = makeHandler("relay://user:pass@127.0.0.1:0?bind=true")
        proto, tr = connectClient(handler)
        self.addCleanup(self.release, proto)
        proto.dataReceived(chunks[0][1])
        self.assertEqual(tr.value(), chunks[1][1])
        self.assertEqual(reactor.tcpServers[-1][0], 28113)
        self.assertEqual(reactor.tcpServers[-1][3], "127.0.0.1")
        tr.clear()
        peer = IPv4Address("TCP", "127.0.0.1", 0xDB2E)
        peerProto, peerTr = connectPeer(reactor, peer)
        self.assertEqual(tr.value(), chunks[2][1])
        tr.clear()
        peerProto.dataReceived(b"hello")
        self.assertEqual(tr.value(), chunks[3][1])
        tr.clear()
        proto.dataReceived(chunks[4][1])
        self.assertEqual(peerTr.value(), b"hello")
        peerProto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(tr.value(), chunks[5][1])
        tr.clear()
        proto.dataReceived(chunks[6][1])
        reactor.advance(0)
        self.assertEqual(tr.value(), b"")
        self.assertFalse(tr.disconnecting, "the BIND outlives its peers")
        self.assertTrue(reactor.tcpPorts[-1].listening)

    def test_okCarriesBoundAddress(self) -> None:
        """
        BIND tcp 127.0.0.1:37859 listens there and answers exactly GOST's
        server_resp_bind_tcp_ok: OK + Addr 127.0.0.1:37859.
        """
        reactor, proto, tr = self.bound(self.URL, bindRequest("127.0.0.1:37859"))
        self.assertEqual(tr.value(), vectors.caseBytes("server_resp_bind_tcp_ok"))
        self.assertEqual([(p, i) for p, _, _, i in reactor.tcpServers], [(37859, "127.0.0.1")])
        self.assertFalse(tr.disconnecting)

    def test_wildcardReplyAsGOST(self) -> None:
        """
        BIND tcp 0.0.0.0:2222 (what an rtcp://:2222 client sends) gets the
        reply of spec 4.6, byte for byte: OK + Addr IPv4 0.0.0.0:2222
        (14 bytes, the server_resp_bind_tcp_ok shape).

        Regression: TCPBind listens dual-stack on "::" for 0.0.0.0 and
        used to report the socket's address, [::]:2222 (26 bytes), which no
        GOST server sends for this request.
        """
        reactor, proto, tr = self.bound(self.URL, bindRequest("0.0.0.0:2222"))
        self.assertEqual([p for p, *_ in reactor.tcpServers], [2222])
        self.assertEqual(tr.value(), vectors.hexBytes("01 00 00 0a 02 00 07 01 00 00 00 00 08 ae"))

    def test_wildcardReplyIsOKWithPort(self) -> None:
        """
        Whatever the host, the reply to BIND tcp 0.0.0.0:2222 is OK with
        the bound port 2222.
        """
        reactor, proto, tr = self.bound(self.URL, bindRequest("0.0.0.0:2222"))
        response = decodeResponse(tr.value())
        self.assertEqual(response.status, 0)
        self.assertEqual(response.addr.port, 2222)  # type: ignore[union-attr]

    def test_noAddressEphemeral(self) -> None:
        """
        A BIND without an Addr listens on an ephemeral port and reports it.
        """
        reactor, proto, tr = self.bound(self.URL, bindRequest(""))
        self.assertEqual([p for p, *_ in reactor.tcpServers], [0])
        response = decodeResponse(tr.value())
        self.assertEqual(response.status, 0)
        self.assertEqual(response.addr.port, reactor.tcpPorts[0].address.port)  # type: ignore[union-attr]

    def test_perPeerStream(self) -> None:
        """
        A peer on the bound port opens stream 3: SYN 3, one PSH with the
        per-peer OK naming it (vector smux_v1_psh_peer_response), then its
        bytes as PSH (smux_v1_psh_data_hello); a second peer gets stream 5.
        """
        reactor, proto, tr = self.bound(self.URL, bindRequest("127.0.0.1:2222"))
        tr.clear()
        peerProto, peerTr = connectPeer(reactor, IPv4Address("TCP", "127.0.0.1", 54321))
        self.assertEqual(
            tr.value(),
            vectors.caseBytes("smux_v1_syn_open_stream") + vectors.caseBytes("smux_v1_psh_peer_response"),
        )
        tr.clear()
        peerProto.dataReceived(b"hello")
        self.assertEqual(tr.value(), vectors.caseBytes("smux_v1_psh_data_hello"))
        tr.clear()
        connectPeer(reactor, IPv4Address("TCP", "127.0.0.1", 54322))
        got = smuxFrames(tr.value())
        self.assertEqual([(cmd, sid) for cmd, sid, _ in got], [(SYN, 5), (PSH, 5)])
        self.assertEqual(decodeResponse(got[1][2]).addr, AddrFeature("127.0.0.1", 54322, 1))

    def test_mappedPeerAsIPv4(self) -> None:
        """
        An IPv4 peer on a dual-stack socket is named as plain IPv4: the
        per-peer PSH of spec 4.5 for 203.0.113.5:51000, byte for byte.
        """
        reactor, proto, tr = self.bound(self.URL, bindRequest("0.0.0.0:2222"))
        tr.clear()
        connectPeer(reactor, IPv6Address("TCP", "::ffff:203.0.113.5", 51000))
        self.assertEqual(
            tr.value(),
            vectors.hexBytes("01 00 00 00 03 00 00 00")
            + vectors.hexBytes("01 02 0e 00 03 00 00 00 | 01 00 00 0a 02 00 07 01 cb 00 71 05 c7 38"),
        )

    def test_ipv6Peer(self) -> None:
        reactor, proto, tr = self.bound(self.URL, bindRequest("[::1]:2222"))
        tr.clear()
        connectPeer(reactor, IPv6Address("TCP", "::1", 5353))
        (_, (_, _, payload)) = smuxFrames(tr.value())
        self.assertEqual(decodeResponse(payload).addr, AddrFeature("::1", 5353, 4))

    def test_clientDataReachesPeer(self) -> None:
        """
        PSH sid 3 from the client (vector smux_v1_psh_data_world_reply)
        reaches the peer; a large one split in frames arrives whole.
        """
        reactor, proto, tr = self.bound(self.URL, bindRequest("127.0.0.1:2222"))
        peerProto, peerTr = connectPeer(reactor, IPv4Address("TCP", "127.0.0.1", 54321))
        proto.dataReceived(vectors.caseBytes("smux_v1_psh_data_world_reply"))
        self.assertEqual(peerTr.value(), b"world")
        big = bytes(range(256)) * 300
        proto.dataReceived(b"".join(encodeFrame(1, PSH, 3, big[i : i + 32768]) for i in range(0, len(big), 32768)))
        self.assertEqual(peerTr.value(), b"world" + big)

    def test_peerBytesSplitIntoFrames(self) -> None:
        reactor, proto, tr = self.bound(self.URL, bindRequest("127.0.0.1:2222"))
        peerProto, peerTr = connectPeer(reactor, IPv4Address("TCP", "127.0.0.1", 54321))
        tr.clear()
        peerProto.dataReceived(b"p" * 70000)
        self.assertEqual([len(d) for _, _, d in smuxFrames(tr.value())], [32768, 32768, 70000 - 65536])

    def test_clientFinClosesPeer(self) -> None:
        """
        FIN sid 3 from the client (vector smux_v1_fin_close_stream_peer)
        closes the peer's connection; the server answers FIN 3; the BIND
        stays up.
        """
        reactor, proto, tr = self.bound(self.URL, bindRequest("127.0.0.1:2222"))
        peerProto, peerTr = connectPeer(reactor, IPv4Address("TCP", "127.0.0.1", 54321))
        tr.clear()
        proto.dataReceived(vectors.caseBytes("smux_v1_fin_close_stream_peer"))
        reactor.advance(0)
        self.assertTrue(peerTr.disconnecting, "the client's FIN must close the peer")
        self.assertEqual(tr.value(), vectors.caseBytes("smux_v1_fin_close_stream"))
        self.assertFalse(tr.disconnecting)

    def test_peerLeavesFinToClient(self) -> None:
        reactor, proto, tr = self.bound(self.URL, bindRequest("127.0.0.1:2222"))
        peerProto, peerTr = connectPeer(reactor, IPv4Address("TCP", "127.0.0.1", 54321))
        tr.clear()
        peerProto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(tr.value(), vectors.caseBytes("smux_v1_fin_close_stream"))

    def test_clientOpenedStreamRefused(self) -> None:
        """
        A stream the client opens is closed at once (the relay server is
        the only one to open streams).
        """
        reactor, proto, tr = self.bound(self.URL, bindRequest("127.0.0.1:2222"))
        tr.clear()
        proto.dataReceived(encodeFrame(1, SYN, 2) + encodeFrame(1, PSH, 2, b"ignored"))
        self.assertEqual(smuxFrames(tr.value()), [(FIN, 2, b"")])

    def test_smuxInSameSegmentAsRequest(self) -> None:
        """
        Frames in the same segment as the BIND request go to the session.
        """
        reactor, proto, tr = self.bound(self.URL, bindRequest("127.0.0.1:2222") + encodeFrame(1, SYN, 2))
        response = vectors.caseBytes("server_resp_bind_tcp_ok")[:-2] + (2222).to_bytes(2, "big")
        self.assertEqual(tr.value(), response + encodeFrame(1, FIN, 2))

    def test_keepalive(self) -> None:
        """
        The server sends a NOP every 10 s on the BIND stream; a client that
        says nothing is dropped within 60 s, and the port goes with it.
        """
        reactor, proto, tr = self.bound(self.URL, bindRequest("127.0.0.1:2222"))
        tr.clear()
        reactor.advance(10)
        self.assertEqual(tr.value(), encodeFrame(1, NOP, 0))
        for _ in range(5):
            reactor.advance(10)
        self.assertTrue(tr.disconnecting)
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertFalse(reactor.tcpPorts[0].listening)

    def test_clientNOPsKeepBindUp(self) -> None:
        reactor, proto, tr = self.bound(self.URL, bindRequest("127.0.0.1:2222"))
        for _ in range(30):
            reactor.advance(10)
            proto.dataReceived(encodeFrame(1, NOP, 0))
        self.assertFalse(tr.disconnecting)
        self.assertTrue(reactor.tcpPorts[0].listening)

    def test_relayLostReleasesPort(self) -> None:
        """
        When the relay stream is lost the bound port stops listening, the
        peers are closed, and no timer is left.
        """
        reactor, proto, tr = self.bound(self.URL, bindRequest("127.0.0.1:2222"))
        peers = [connectPeer(reactor, IPv4Address("TCP", "127.0.0.1", 50000 + i)) for i in range(2)]
        proto.connectionLost(Failure(ConnectionLost()))
        reactor.advance(0)
        port = reactor.tcpPorts[0]
        self.assertFalse(port.listening)
        self.assertEqual(port.stopCount, 1)
        for _, peerTr in peers:
            self.assertTrue(peerTr.disconnecting)
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_clientEOFReleasesPort(self) -> None:
        reactor, proto, tr = self.bound(self.URL, bindRequest("127.0.0.1:2222"))
        proto.readConnectionLost()
        self.assertTrue(tr.disconnecting)
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertFalse(reactor.tcpPorts[0].listening)

    def test_peerAfterSessionEndRefused(self) -> None:
        reactor, proto, tr = self.bound(self.URL, bindRequest("127.0.0.1:2222"))
        factory = reactor.tcpServers[0][1]
        proto.connectionLost(Failure(ConnectionLost()))
        self.assertIsNone(factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1)))

    def test_bindDisabled(self) -> None:
        """
        Without bind=true: 01030000 (vector server_resp_bind_forbidden), no
        listening.
        """
        reactor, proto, tr = self.bound("relay://127.0.0.1:0", bindRequest("0.0.0.0:2222"))
        self.assertClosedWith(tr, FORBIDDEN)
        self.assertEqual(reactor.tcpServers, [])
        reactor2, proto2, tr2 = self.bound("relay://127.0.0.1:0", bindRequest(":1053", "udp"))
        self.assertClosedWith(tr2, FORBIDDEN)
        self.assertEqual(reactor2.udpPorts, [])

    def test_bindPorts(self) -> None:
        """
        bindPorts=2000-2999: port 3000 (and the server's choice, port 0) is
        refused with 01030000, 2500 is bound.
        """
        url = "relay://127.0.0.1:0?bind=true&bindPorts=2000-2999"
        for request in (bindRequest("0.0.0.0:3000"), bindRequest("0.0.0.0:1999"), bindRequest(""),
                        bindRequest("0.0.0.0:3000", "udp")):
            reactor, proto, tr = self.bound(url, request)
            self.assertClosedWith(tr, FORBIDDEN)
            self.assertEqual((reactor.tcpServers, reactor.udpPorts), ([], []))
        for request in (bindRequest("127.0.0.1:2500"), bindRequest("127.0.0.1:2000"), bindRequest("127.0.0.1:2999")):
            reactor, proto, tr = self.bound(url, request)
            self.assertEqual(decodeResponse(tr.value()).status, 0)
            self.assertFalse(tr.disconnecting)

    def test_bindPortsList(self) -> None:
        url = "relay://127.0.0.1:0?bind=true&bindPorts=2222,8000-8001"
        for port, allowed in ((2222, True), (2223, False), (8001, True), (8002, False)):
            reactor, proto, tr = self.bound(url, bindRequest(f"127.0.0.1:{port}"))
            self.assertEqual(decodeResponse(tr.value()).status, 0 if allowed else 3, port)

    def test_gostEmptyHostForm(self) -> None:
        """
        GOST's buggy empty-host request (the domain '0.0.0.0::2222', port
        0) binds port 2222 and is answered OK.
        """
        reactor, proto, tr = self.bound(
            self.URL, Request(Command.BIND, (NetworkFeature(Network.TCP), AddrFeature("0.0.0.0::2222", 0, 3))).encode()
        )
        self.assertEqual([p for p, *_ in reactor.tcpServers], [2222])
        self.assertEqual(decodeResponse(tr.value()).status, 0)

    def test_gostEmptyHostTranscript(self) -> None:
        """
        The request of transcript rtcp_bind_empty_host_BUG, which a GOST
        server refuses (01050000), binds 28115 on ours; vector
        client_bind_tcp_auth_port_only binds 2223.
        """
        t = vectors.transcript("rtcp_bind_empty_host_BUG-conn1.json")
        self.assertEqual(t["s2c"], "01050000")
        for request, port in (
            (bytes.fromhex(t["c2s"]), 28115),
            (vectors.caseBytes("client_bind_tcp_auth_port_only"), 2223),
        ):
            reactor, proto, tr = self.bound("relay://user:pass@127.0.0.1:0?bind=true", request)
            self.assertEqual([p for p, *_ in reactor.tcpServers], [port])
            self.assertEqual(decodeResponse(tr.value()).status, 0)

    def test_cannotListen(self) -> None:
        reactor, handler = makeHandler(self.URL)
        reactor.tcpError = CannotListenError("", 2222, OSError(98, "Address already in use"))
        proto, tr = connectClient(handler)
        proto.dataReceived(bindRequest("127.0.0.1:2222"))
        self.assertClosedWith(tr, SERVICE_UNAVAILABLE)

    def test_unauthorized(self) -> None:
        reactor, proto, tr = self.bound("relay://user:pass@127.0.0.1:0?bind=true", bindRequest("127.0.0.1:2222"))
        self.assertClosedWith(tr, vectors.caseBytes("server_resp_unauthorized_missing_auth"))
        self.assertEqual(reactor.tcpServers, [])

    def test_muxVersionOption(self) -> None:
        """
        The handler's mux.version=2 makes the BIND session speak v2.
        """
        reactor, proto, tr = self.bound(self.URL + "&mux.version=2", bindRequest("127.0.0.1:2222"))
        tr.clear()
        connectPeer(reactor, IPv4Address("TCP", "127.0.0.1", 54321))
        self.assertEqual(
            tr.value(),
            vectors.caseBytes("smux_v2_syn_open_stream") + vectors.caseBytes("smux_v2_psh_peer_response"),
        )


class BindAddressTests(SynchronousTestCase):
    def test_gostBuggyForm(self) -> None:
        self.assertEqual(bindAddress(AddrFeature("0.0.0.0::2222", 0, 3)), ("0.0.0.0", 2222))
        self.assertEqual(bindAddress(AddrFeature("127.0.0.1::2222", 0, 3)), ("127.0.0.1", 2222))

    def test_vectors(self) -> None:
        for name, expected in (
            ("client_bind_tcp_auth_port_only", ("0.0.0.0", 2223)),
            ("client_bind_udp_auth_port_only", ("0.0.0.0", 1053)),
            ("client_bind_tcp_noauth_loopback", ("127.0.0.1", 2223)),
        ):
            self.assertEqual(bindAddress(decodeRequest(vectors.caseBytes(name)).addr), expected, name)

    def test_plain(self) -> None:
        self.assertEqual(bindAddress(None), ("0.0.0.0", 0))
        self.assertEqual(bindAddress(AddrFeature("127.0.0.1", 2222, 1)), ("127.0.0.1", 2222))
        self.assertEqual(bindAddress(AddrFeature("example.org", 80, 3)), ("example.org", 80))
        # A domain that only looks like the bug is left alone.
        self.assertEqual(bindAddress(AddrFeature("example.org::80", 0, 3)), ("example.org::80", 0))

    def test_portRanges(self) -> None:
        self.assertEqual(parsePortRanges("2000-2999, 8080,"), [(2000, 2999), (8080, 8080)])
        for bad in ("3000-2000", "70000", "x", "1-2-3"):
            self.assertRaises(ValueError, parsePortRanges, bad)
        ranges = parsePortRanges("2000-2999")
        self.assertEqual(
            [portAllowed(p, ranges) for p in (1999, 2000, 2500, 2999, 3000, 0)],
            [False, True, True, True, False, False],
        )
        self.assertTrue(portAllowed(0, None))
        self.assertTrue(portAllowed(0, parsePortRanges("0,2000")))


# -- server, UDP


class UDPBindServerTests(BindTestCase):
    URL = "relay://127.0.0.1:0?bind=true"

    def udpBound(self, address: str = "127.0.0.1:45573") -> tuple[BindReactor, RelayServerProtocol, TCPLikeTransport, FakeUDPPort]:
        reactor, proto, tr = self.bound(self.URL, bindRequest(address, "udp"))
        self.assertEqual(len(reactor.udpPorts), 1)
        return reactor, proto, tr, reactor.udpPorts[0]

    def test_transcriptReplay(self) -> None:
        """
        The rudp session between a real GOST client and server, replayed:
        the reply and the tunnel datagram from the peer are GOST's bytes;
        the client's reply datagram is sent to the peer from the bound
        socket.
        """
        t = vectors.transcript("rudp_bind-conn1.json")
        chunks = [(d, bytes.fromhex(h)) for d, h in t["chunks"]]
        (entry,) = vectors.transcripts("rudp_bind")
        decoded = entry["decoded"]
        reactor, handler = makeHandler("relay://user:pass@127.0.0.1:0?bind=true")
        proto, tr = connectClient(handler)
        self.addCleanup(self.release, proto)
        proto.dataReceived(bytes.fromhex(decoded["request"]["hex"]))
        self.assertEqual(tr.value(), bytes.fromhex(decoded["response"]["hex"]))
        (port,) = reactor.udpPorts
        self.assertEqual((port.address.host, port.address.port), ("127.0.0.1", 28114))
        tr.clear()
        (s2c,) = decoded["s2c_udptun"]
        port.protocol.datagramReceived(s2c["data"].encode(), (s2c["addr"]["host"], s2c["addr"]["port"]))
        self.assertEqual(tr.value(), bytes.fromhex(s2c["frame_hex"]))
        (c2s,) = decoded["c2s_udptun"]
        proto.dataReceived(bytes.fromhex(c2s["frame_hex"]))
        self.assertEqual(port.sent, [(c2s["data"].encode(), (c2s["addr"]["host"], c2s["addr"]["port"]))])
        # GOST wrote the datagram in two writes (header, then address and
        # data); the bytes are the same.
        self.assertEqual(
            b"".join(data for d, data in chunks if d == "s2c")[len(bytes.fromhex(decoded["response"]["hex"])) :],
            bytes.fromhex(s2c["frame_hex"]),
        )

    def test_okCarriesBoundAddress(self) -> None:
        reactor, proto, tr, port = self.udpBound()
        self.assertEqual(tr.value(), vectors.caseBytes("server_resp_bind_udp_ok"))

    def test_toDestination(self) -> None:
        """
        A tunnel datagram from the client (vector
        udptun_client_to_server_ipv4, in its recorded writes) is sent from
        the bound socket to the destination it names.
        """
        reactor, proto, tr, port = self.udpBound()
        for write in vectors.caseWrites("udptun_client_to_server_ipv4"):
            proto.dataReceived(write)
        self.assertEqual(port.sent, [(b"hello", ("127.0.0.1", 53))])

    def test_domainDestination(self) -> None:
        reactor, proto, tr, port = self.udpBound()
        reactor.names["example.com"] = "192.0.2.7"
        proto.dataReceived(vectors.caseBytes("udptun_client_to_server_domain"))
        self.assertEqual(port.sent, [(b"hello", ("192.0.2.7", 53))])

    def test_unresolvableDropped(self) -> None:
        """
        A name that does not resolve drops that datagram only (ours; GOST
        ends the BIND).
        """
        reactor, proto, tr, port = self.udpBound()
        proto.dataReceived(encodeTunnelDatagram("nowhere.invalid", 53, b"lost"))
        proto.dataReceived(encodeTunnelDatagram("127.0.0.1", 53, b"kept"))
        self.assertEqual(port.sent, [(b"kept", ("127.0.0.1", 53))])
        self.assertFalse(tr.disconnecting)

    def test_byteByByte(self) -> None:
        reactor, proto, tr, port = self.udpBound()
        data = vectors.caseBytes("udptun_client_to_server_ipv4") + encodeTunnelDatagram("::1", 5353, b"six")
        for i in range(len(data)):
            proto.dataReceived(data[i : i + 1])
        self.assertEqual(port.sent, [(b"hello", ("127.0.0.1", 53)), (b"six", ("::1", 5353))])

    def test_fromSource(self) -> None:
        """
        Datagrams arriving at the bound socket are written as tunnel
        datagrams naming their source (vectors udptun_server_to_client_*);
        an IPv4-mapped source is named as plain IPv4.
        """
        reactor, proto, tr, port = self.udpBound()
        tr.clear()
        port.protocol.datagramReceived(b"hello", ("127.0.0.1", 53))
        self.assertEqual(tr.value(), vectors.caseBytes("udptun_server_to_client_ipv4"))
        tr.clear()
        port.protocol.datagramReceived(b"hello", ("::1", 5353))
        self.assertEqual(tr.value(), vectors.caseBytes("udptun_server_to_client_ipv6"))
        tr.clear()
        port.protocol.datagramReceived(b"hello", ("::ffff:127.0.0.1", 53))
        self.assertEqual(tr.value(), vectors.caseBytes("udptun_server_to_client_ipv4"))

    def test_largeDatagram(self) -> None:
        reactor, proto, tr, port = self.udpBound()
        tr.clear()
        payload = b"L" * 60000
        port.protocol.datagramReceived(payload, ("127.0.0.1", 53))
        self.assertEqual(TunnelDatagramParser().feed(tr.value()), [("127.0.0.1", 53, payload)])
        proto.dataReceived(encodeTunnelDatagram("127.0.0.1", 53, payload))
        self.assertEqual(port.sent, [(payload, ("127.0.0.1", 53))])

    def test_zeroLengthNeverWritten(self) -> None:
        """
        An empty datagram cannot be framed safely (a Go reader
        desynchronises): it is not written; the next one is.
        """
        reactor, proto, tr, port = self.udpBound()
        tr.clear()
        port.protocol.datagramReceived(b"", ("127.0.0.1", 53))
        self.assertEqual(tr.value(), b"")
        port.protocol.datagramReceived(b"hello", ("127.0.0.1", 53))
        self.assertEqual(tr.value(), vectors.caseBytes("udptun_server_to_client_ipv4"))

    def test_cannotBind(self) -> None:
        """
        A UDP port that cannot be bound: 01050000 (ours; GOST closes
        silently).
        """
        reactor, handler = makeHandler(self.URL)
        reactor.udpError = CannotListenError("", 1053, OSError(98, "Address already in use"))
        proto, tr = connectClient(handler)
        proto.dataReceived(bindRequest("0.0.0.0:1053", "udp"))
        self.assertClosedWith(tr, SERVICE_UNAVAILABLE)

    def test_gostEmptyHostForm(self) -> None:
        reactor, proto, tr = self.bound(
            "relay://user:pass@127.0.0.1:0?bind=true", vectors.caseBytes("client_bind_udp_auth_port_only")
        )
        (port,) = reactor.udpPorts
        self.assertEqual(port.address.port, 1053)
        self.assertEqual(decodeResponse(tr.value()).status, 0)

    def test_relayLostClosesSocket(self) -> None:
        reactor, proto, tr, port = self.udpBound()
        proto.connectionLost(Failure(ConnectionLost()))
        self.assertFalse(port.listening)
        port.protocol.datagramReceived(b"late", ("127.0.0.1", 53))
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_clientEOFClosesSocket(self) -> None:
        reactor, proto, tr, port = self.udpBound()
        proto.readConnectionLost()
        self.assertTrue(tr.disconnecting)
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertFalse(port.listening)

    def test_fullStreamDrops(self) -> None:
        """
        While the relay stream cannot take more, datagrams from peers are
        dropped, not buffered.
        """
        reactor, proto, tr, port = self.udpBound()
        tr.clear()
        tr.producer.pauseProducing()
        port.protocol.datagramReceived(b"dropped", ("127.0.0.1", 53))
        self.assertEqual(tr.value(), b"")
        tr.producer.resumeProducing()
        port.protocol.datagramReceived(b"hello", ("127.0.0.1", 53))
        self.assertEqual(tr.value(), vectors.caseBytes("udptun_server_to_client_ipv4"))


# -- client: the BIND request


@implementer(IStreamClientEndpoint)
class FakeCarrierEndpoint:
    """
    Reaches "the relay server": each connect completes at once over a
    fresh L{TCPLikeTransport}.
    """

    def __init__(self) -> None:
        self.connections: list[tuple[Any, TCPLikeTransport]] = []

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        proto = factory.buildProtocol(RELAY_SERVER)
        tr = TCPLikeTransport(peerAddress=RELAY_SERVER)
        proto.makeConnection(tr)
        self.connections.append((proto, tr))
        return defer.succeed(proto)


class Collector(Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.lost: list[Failure] = []

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost.append(reason)


def connectorFor(url: str, clock: Any) -> RelayConnector:
    cfg = buildConfigFromCommandLine([], [url])
    return RelayConnector(clock, cfg.chains[0].hops[0].nodes[0], None)


class BindRequestTests(SynchronousTestCase):
    def send(self, url: str, network: str, address: str) -> tuple[defer.Deferred[Any], Any, TCPLikeTransport]:
        clock = Clock()
        connector = connectorFor(url, clock)
        carrier = FakeCarrierEndpoint()
        d = connector.bindEndpoint(carrier, network, address).connect(Factory.forProtocol(Collector))
        proto, tr = carrier.connections[0]
        return d, proto, tr

    def test_portOnlyIsIPv4Wildcard(self) -> None:
        """
        ':2223' with user:pass goes at once as UserAuth, Network(tcp), Addr
        IPv4 0.0.0.0:2223 -- not the domain '0.0.0.0::2223' port 0 of
        GOST's bug (vector client_bind_tcp_auth_port_only), which decodes
        fine and means the same to our server.
        """
        d, proto, tr = self.send("relay://user:pass@127.0.0.1:8420", "tcp", ":2223")
        expected = Request(
            int(Command.BIND),
            (UserAuthFeature("user", "pass"), NetworkFeature(Network.TCP), AddrFeature("0.0.0.0", 2223, 1)),
        ).encode()
        self.assertEqual(tr.value(), expected)
        self.assertEqual(expected.hex(), "0102001c01000a047573657204706173730400020000020007010000000008af")
        buggy = vectors.caseBytes("client_bind_tcp_auth_port_only")
        self.assertNotEqual(tr.value(), buggy)
        decoded = decodeRequest(buggy)
        self.assertEqual(decoded.addr, AddrFeature("0.0.0.0::2223", 0, 3))
        self.assertEqual(decoded.userAuth, UserAuthFeature("user", "pass"))
        self.assertEqual(decoded.network, "tcp")
        self.assertEqual(bindAddress(decoded.addr), bindAddress(decodeRequest(tr.value()).addr))

    def test_loopbackNoAuthIsGOSTs(self) -> None:
        """
        '127.0.0.1:2223' without auth: exactly client_bind_tcp_noauth_loopback.
        """
        d, proto, tr = self.send("relay://127.0.0.1:8420", "tcp", "127.0.0.1:2223")
        self.assertEqual(tr.value(), vectors.caseBytes("client_bind_tcp_noauth_loopback"))

    def test_transcriptRequests(self) -> None:
        """
        The requests of the rtcp and rudp transcripts (explicit loopback
        addresses) are what our client sends.
        """
        for scenario, network, address in (
            ("rtcp_bind", "tcp", "127.0.0.1:28113"),
            ("rudp_bind", "udp", "127.0.0.1:28114"),
        ):
            (entry,) = vectors.transcripts(scenario)
            d, proto, tr = self.send("relay://user:pass@127.0.0.1:8420", network, address)
            self.assertEqual(tr.value().hex(), entry["decoded"]["request"]["hex"], scenario)

    def test_udpPortOnly(self) -> None:
        """
        UDP: CMD 0x82, Network(udp), Addr IPv4 0.0.0.0:1053 (not GOST's
        buggy client_bind_udp_auth_port_only).
        """
        d, proto, tr = self.send("relay://user:pass@127.0.0.1:8420", "udp", ":1053")
        request = decodeRequest(tr.value())
        self.assertEqual(request.cmd, 0x82)
        self.assertEqual(
            request.features,
            (UserAuthFeature("user", "pass"), NetworkFeature(Network.UDP), AddrFeature("0.0.0.0", 1053, 1)),
        )
        buggy = decodeRequest(vectors.caseBytes("client_bind_udp_auth_port_only"))
        self.assertEqual((buggy.cmd, buggy.features[:2]), (request.cmd, request.features[:2]))
        self.assertNotEqual(tr.value(), vectors.caseBytes("client_bind_udp_auth_port_only"))

    def test_emptyAddress(self) -> None:
        d, proto, tr = self.send("relay://127.0.0.1:8420", "tcp", "")
        self.assertEqual(decodeRequest(tr.value()).addr, AddrFeature("0.0.0.0", 0, 1))

    def test_okHandsOverWithBoundAddress(self) -> None:
        """
        The OK reply completes the connection; its Addr is the bound
        address; bytes after it in the same segment are the application's.
        """
        d, proto, tr = self.send("relay://127.0.0.1:8420", "tcp", "127.0.0.1:37859")
        results: list[Any] = []
        d.addCallback(results.append)
        self.assertEqual(results, [])
        proto.dataReceived(vectors.caseBytes("server_resp_bind_tcp_ok") + b"smux...")
        (app,) = results
        self.assertEqual(app.transport.response.addr, AddrFeature("127.0.0.1", 37859, 1))
        self.assertEqual(app.received, b"smux...")

    def test_refused(self) -> None:
        for reply, status in ((FORBIDDEN, 3), (SERVICE_UNAVAILABLE, 5)):
            d, proto, tr = self.send("relay://127.0.0.1:8420", "tcp", ":2222")
            proto.dataReceived(reply)
            f = self.failureResultOf(d, RelayRefused)
            self.assertEqual(f.value.status, status)
            self.assertTrue(tr.disconnecting)

    def test_chainBindEndpoint(self) -> None:
        """
        Through a chain, the BIND goes to the last node's server: a TCP
        connection to 127.0.0.1:8420, then the request.
        """
        reactor = MemoryReactorClock()
        cfg = buildConfigFromCommandLine([], ["relay://user:pass@127.0.0.1:8420"])
        chain = Chain.fromConfig(reactor, cfg.chains[0], BuildContext(reactor, cfg), "test")
        d = chain.bindEndpoint("tcp", ":2223", 5).connect(Factory.forProtocol(Collector))
        host, port, factory, *_ = reactor.tcpClients[0]
        self.assertEqual((host, port), ("127.0.0.1", 8420))
        proto = factory.buildProtocol(None)
        tr = TCPLikeTransport(peerAddress=RELAY_SERVER)
        proto.makeConnection(tr)
        self.assertEqual(tr.value().hex(), "0102001c01000a047573657204706173730400020000020007010000000008af")
        proto.dataReceived(bytes.fromhex("0100000a020007010000000008af"))
        self.assertIsInstance(self.successResultOf(d), Collector)


class ChainBindTests(SynchronousTestCase):
    def test_twoHops(self) -> None:
        """
        Through two relay hops, the first carries a CONNECT to the second,
        then the BIND goes to the second inside it: one write with both
        headers (GOST's default, no nodelay), and the BIND completes with
        the second server's OK.
        """
        reactor = MemoryReactorClock()
        cfg = buildConfigFromCommandLine(
            [], ["relay://u1:p1@127.0.0.1:8420", "relay://user:pass@127.0.0.1:8421"]
        )
        chain = Chain.fromConfig(reactor, cfg.chains[0], BuildContext(reactor, cfg), "test")
        d = chain.bindEndpoint("tcp", "127.0.0.1:2223", 5).connect(Factory.forProtocol(Collector))
        host, port, factory, *_ = reactor.tcpClients[0]
        self.assertEqual((host, port), ("127.0.0.1", 8420))
        proto = factory.buildProtocol(None)
        tr = TCPLikeTransport(peerAddress=RELAY_SERVER)
        proto.makeConnection(tr)
        from gostrelay.wire.relay import connectRequest

        expected = connectRequest("127.0.0.1:8421", "tcp", "u1", "p1").encode() + bindRequest(
            "127.0.0.1:2223", auth=("user", "pass")
        )
        self.assertEqual(tr.value(), expected)
        proto.dataReceived(OK + bytes.fromhex("0100000a020007017f00000108af"))
        app = self.successResultOf(d)
        self.assertIsInstance(app, Collector)
        self.assertEqual(app.transport.response.addr, AddrFeature("127.0.0.1", 2223, 1))


# -- client: the rtcp and rudp listeners


def bindProtocol(relay: Any) -> Any:
    """
    The rtcp listener's protocol on a BIND connection, from the protocol
    the reactor connected (endpoint wrapper, relay client, ClientService
    proxy).
    """
    client = getattr(relay, "_wrappedProtocol", relay)
    app = client.app
    return getattr(app, "_protocol", app)


class RemoteListenerTests(SynchronousTestCase):
    """
    The client side of remote forwarding with the services' own classes,
    on a L{BindReactor}.
    """

    def service(self, listenURL: str, listenerClass: Any, handlerClass: Any, node: str = "relay://user:pass@127.0.0.1:8420"):  # type: ignore[no-untyped-def]
        reactor = BindReactor()
        cfg = buildConfigFromCommandLine([listenURL], [node])
        svc = cfg.services[0]
        context = BuildContext(reactor, cfg)
        listener = listenerClass(reactor, svc, context)
        handler = handlerClass(reactor, svc, context)
        port = self.successResultOf(listener.listen(handler))
        self.addCleanup(port.stopListening)
        return reactor, listener, port

    def relayConnection(
        self, reactor: BindReactor, index: int = -1, transportClass: type[TCPLikeTransport] = TCPLikeTransport
    ) -> tuple[Any, Any]:
        host, p, factory, *_ = reactor.tcpClients[index]
        self.assertEqual((host, p), ("127.0.0.1", 8420))
        proto = factory.buildProtocol(None)
        tr = transportClass(peerAddress=RELAY_SERVER)
        proto.makeConnection(tr)
        return proto, tr

    def test_rtcpTranscriptReplay(self) -> None:
        """
        Our rtcp client against the server side of transcript rtcp_bind:
        it sends GOST's request, reads the reply and the smux stream, dials
        the target, and puts GOST's client bytes on the wire (PSH 'hello'
        back, FIN after the server's FIN).
        """
        t = vectors.transcript("rtcp_bind-conn1.json")
        chunks = [(d, bytes.fromhex(h)) for d, h in t["chunks"]]
        reactor, listener, port = self.service(
            "rtcp://127.0.0.1:28113/127.0.0.1:28101", RTCPListener, TCPForwardHandler
        )
        relay, tr = self.relayConnection(reactor)
        self.assertEqual(tr.value(), chunks[0][1])
        tr.clear()
        for direction, data in chunks[1:4]:
            self.assertEqual(direction, "s2c")
            relay.dataReceived(data)
        self.assertEqual(listener.boundAddress, "127.0.0.1:28113")
        host, p, targetFactory, *_ = reactor.tcpClients[-1]
        self.assertEqual((host, p), ("127.0.0.1", 28101))
        target = targetFactory.buildProtocol(None)
        targetTr = TCPLikeTransport()
        target.makeConnection(targetTr)
        self.assertEqual(targetTr.value(), b"hello")
        target.dataReceived(b"hello")
        self.assertEqual(tr.value(), chunks[4][1])
        tr.clear()
        relay.dataReceived(chunks[5][1])
        reactor.advance(0)
        self.assertEqual(tr.value(), chunks[6][1])
        self.assertTrue(targetTr.disconnecting)
        self.assertFalse(tr.disconnecting, "the BIND outlives its streams")

    def test_rtcpPeerAddress(self) -> None:
        """
        The accepted stream's peer is the remote peer the server named.
        """
        reactor, listener, port = self.service("rtcp://:2222/127.0.0.1:22", RTCPListener, TCPForwardHandler)
        relay, tr = self.relayConnection(reactor)
        relay.dataReceived(bytes.fromhex("0100000a020007010000000008ae"))
        relay.dataReceived(
            vectors.hexBytes("01 00 00 00 03 00 00 00")
            + vectors.hexBytes("01 02 0e 00 03 00 00 00 | 01 00 00 0a 02 00 07 01 cb 00 71 05 c7 38")
        )
        stream = bindProtocol(relay).session.streams[3]
        self.assertEqual((stream.getPeer().host, stream.getPeer().port), ("203.0.113.5", 51000))

    def test_perPeerReplySplit(self) -> None:
        """
        The per-peer reply may come in pieces (several PSH frames); the
        bytes after it in the last piece are the peer's.
        """
        reactor, listener, port = self.service("rtcp://:2222/127.0.0.1:22", RTCPListener, TCPForwardHandler)
        relay, tr = self.relayConnection(reactor)
        relay.dataReceived(bytes.fromhex("0100000a020007010000000008ae"))
        reply = vectors.hexBytes("01 00 00 0a 02 00 07 01 cb 00 71 05 c7 38")
        relay.dataReceived(encodeFrame(1, SYN, 3) + encodeFrame(1, PSH, 3, reply[:5]))
        self.assertEqual(len(reactor.tcpClients), 1, "no dial before the whole per-peer reply")
        relay.dataReceived(encodeFrame(1, PSH, 3, reply[5:] + b"GET /"))
        host, p, targetFactory, *_ = reactor.tcpClients[-1]
        self.assertEqual((host, p), ("127.0.0.1", 22))
        target = targetFactory.buildProtocol(None)
        targetTr = TCPLikeTransport()
        target.makeConnection(targetTr)
        self.assertEqual(targetTr.value(), b"GET /")

    def test_peerDataThenFinBeforeTargetConnects(self) -> None:
        """
        A peer that sends its bytes and leaves at once (the server's FIN
        follows its data, often in the same segment) still has its bytes
        delivered to the target: smux's FIN is the end of the data, not an
        abort (spec 4.2; GOST's client reads the buffered bytes and pipes
        them once the target is dialed).

        BUG (fails today): the FIN ends the stream at once; the rtcp
        handler, still dialing the target, cancels the dial, and the bytes
        are lost.  Repro: rtcp listener bound; feed SYN 3, PSH 3 per-peer
        OK, PSH 3 b"hello", FIN 3 in one chunk; reactor.advance(0) -> the
        target connector has stoppedConnecting == True.
        """
        reactor, listener, port = self.service("rtcp://:2222/127.0.0.1:22", RTCPListener, TCPForwardHandler)
        relay, tr = self.relayConnection(reactor)
        relay.dataReceived(bytes.fromhex("0100000a020007010000000008ae"))
        relay.dataReceived(
            encodeFrame(1, SYN, 3)
            + encodeFrame(1, PSH, 3, bytes.fromhex("0100000a020007017f000001d431"))
            + encodeFrame(1, PSH, 3, b"hello")
            + encodeFrame(1, FIN, 3)
        )
        reactor.advance(0)
        self.assertFalse(reactor.connectors[-1].stoppedConnecting, "the dial to the target was abandoned")
        target = reactor.tcpClients[-1][2].buildProtocol(None)
        targetTr = TCPLikeTransport()
        target.makeConnection(targetTr)
        reactor.advance(0)
        self.assertEqual(targetTr.value(), b"hello")

    def test_targetRefusedClosesStream(self) -> None:
        """
        A target that cannot be dialed: the stream is closed (FIN), which
        makes the server close the peer; the BIND stays.
        """
        reactor, listener, port = self.service("rtcp://:2222/127.0.0.1:22", RTCPListener, TCPForwardHandler)
        relay, tr = self.relayConnection(reactor)
        relay.dataReceived(bytes.fromhex("0100000a020007010000000008ae"))
        relay.dataReceived(encodeFrame(1, SYN, 3) + encodeFrame(1, PSH, 3, bytes.fromhex("0100000a020007017f000001d431")))
        tr.clear()
        reactor.tcpClients[-1][2].clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        reactor.advance(0)
        self.assertEqual(smuxFrames(tr.value()), [(FIN, 3, b"")])
        self.assertFalse(tr.disconnecting)

    def test_bindLostClosesTargets(self) -> None:
        """
        When the BIND connection is lost, every forwarded connection ends.
        """
        reactor, listener, port = self.service("rtcp://:2222/127.0.0.1:22", RTCPListener, TCPForwardHandler)
        relay, tr = self.relayConnection(reactor)
        relay.dataReceived(bytes.fromhex("0100000a020007010000000008ae"))
        targets = []
        for sid in (3, 5):
            relay.dataReceived(
                encodeFrame(1, SYN, sid) + encodeFrame(1, PSH, sid, bytes.fromhex("0100000a020007017f000001d431"))
            )
            target = reactor.tcpClients[-1][2].buildProtocol(None)
            targetTr = TCPLikeTransport()
            target.makeConnection(targetTr)
            targets.append(targetTr)
        relay.connectionLost(Failure(ConnectionLost()))
        reactor.advance(0)
        self.assertEqual([t.disconnecting for t in targets], [True, True])

    def test_badPerPeerReplyClosesStream(self) -> None:
        reactor, listener, port = self.service("rtcp://:2222/127.0.0.1:22", RTCPListener, TCPForwardHandler)
        relay, tr = self.relayConnection(reactor)
        relay.dataReceived(bytes.fromhex("0100000a020007010000000008ae"))
        tr.clear()
        relay.dataReceived(encodeFrame(1, SYN, 3) + encodeFrame(1, PSH, 3, b"\x05\x00\x00\x00"))
        self.assertEqual(smuxFrames(tr.value()), [(FIN, 3, b"")])
        tr.clear()
        relay.dataReceived(encodeFrame(1, SYN, 5) + encodeFrame(1, PSH, 5, bytes.fromhex("01030000")))
        self.assertEqual(smuxFrames(tr.value()), [(FIN, 5, b"")])

    def test_clientNOPs(self) -> None:
        """
        The rtcp client sends a NOP every 10 s on its bound session.
        """
        reactor, listener, port = self.service("rtcp://:2222/127.0.0.1:22", RTCPListener, TCPForwardHandler)
        relay, tr = self.relayConnection(reactor)
        relay.dataReceived(bytes.fromhex("0100000a020007010000000008ae"))
        tr.clear()
        reactor.advance(10)
        self.assertEqual(tr.value(), encodeFrame(1, NOP, 0))

    def test_rebindAfterLoss(self) -> None:
        """
        When the BIND connection is lost, the listener binds again (bind #2)
        after the back-off.
        """
        self.patch(random, "random", lambda: 0.0)
        reactor, listener, port = self.service("rtcp://:2222/127.0.0.1:22", RTCPListener, TCPForwardHandler)
        relay, tr = self.relayConnection(reactor)
        relay.dataReceived(bytes.fromhex("0100000a020007010000000008ae"))
        self.assertEqual(listener.binds, 1)
        relay.connectionLost(Failure(ConnectionLost()))
        for _ in range(60):
            reactor.advance(0.1)
        self.assertEqual(len(reactor.tcpClients), 2)
        relay2, tr2 = self.relayConnection(reactor)
        self.assertEqual(tr2.value(), tr.value()[: len(tr2.value())])
        relay2.dataReceived(bytes.fromhex("0100000a020007010000000008ae"))
        self.assertEqual(listener.binds, 2)

    def retryDelays(self, jitter: float, failures: int) -> list[float]:
        """
        Fail C{failures} BIND connections in a row; the delays before each
        next attempt, as scheduled on the reactor.
        """
        self.patch(random, "random", lambda: jitter)
        reactor, listener, port = self.service("rtcp://:2222/127.0.0.1:22", RTCPListener, TCPForwardHandler)
        delays = []
        for attempt in range(failures):
            self.assertEqual(len(reactor.tcpClients), attempt + 1)
            reactor.tcpClients[-1][2].clientConnectionFailed(None, Failure(ConnectionRefusedError()))
            (retry,) = reactor.getDelayedCalls()
            delay = retry.getTime() - reactor.seconds()
            delays.append(round(delay, 3))
            reactor.advance(delay)
        return delays

    def test_retryBackoff(self) -> None:
        """
        A BIND that cannot be made is retried after 1 s, then 2 s, 4 s,
        and every 5 s (maxRetryDelay), plus jitter below 1 s (spec 6.3,
        GOST's service loop; the module's docstring says the same).

        Regression: Twisted's backoffPolicy counts attempts from 1, so
        initialDelay=1.0 with factor 2 gave 2 s, 4 s, 5 s...: the first
        retry (and every re-bind after a server restart) waited 2-3 s.
        """
        self.assertEqual(self.retryDelays(0.0, 5), [1.0, 2.0, 4.0, 5.0, 5.0])

    def test_rebindAfterLossWaitsOneSecond(self) -> None:
        """
        After a working BIND dies (server restart), GOST's service loop
        resets its back-off and re-binds after 1 s (spec 6.3).

        Regression (same cause as L{test_retryBackoff}): the re-bind used
        to be scheduled 2 s (+ jitter) after the loss.
        """
        self.patch(random, "random", lambda: 0.0)
        reactor, listener, port = self.service("rtcp://:2222/127.0.0.1:22", RTCPListener, TCPForwardHandler)
        relay, tr = self.relayConnection(reactor)
        relay.dataReceived(bytes.fromhex("0100000a020007010000000008ae"))
        relay.connectionLost(Failure(ConnectionLost()))
        retries = [c for c in reactor.getDelayedCalls() if c.getTime() - reactor.seconds() < 30]
        self.assertEqual([c.getTime() - reactor.seconds() for c in retries], [1.0])

    def test_retryBackoffCapped(self) -> None:
        """
        Whatever happens to the first delays, they never exceed
        maxRetryDelay (5 s) plus jitter.
        """
        delays = self.retryDelays(0.99, 8)
        self.assertTrue(all(d < 6.0 for d in delays), delays)
        self.assertEqual(delays[-3:], [5.99, 5.99, 5.99])

    def test_refusedBindRetried(self) -> None:
        """
        A server answering 01030000 (bind not enabled) is asked again.
        """
        self.patch(random, "random", lambda: 0.0)
        reactor, listener, port = self.service("rtcp://:2222/127.0.0.1:22", RTCPListener, TCPForwardHandler)
        relay, tr = self.relayConnection(reactor)
        relay.dataReceived(FORBIDDEN)
        self.assertTrue(tr.disconnecting)
        relay.connectionLost(Failure(ConnectionDone()))
        reactor.advance(5)
        self.assertEqual(len(reactor.tcpClients), 2)
        self.assertEqual(listener.binds, 0)

    def test_stopListeningEndsBind(self) -> None:
        reactor, listener, port = self.service("rtcp://:2222/127.0.0.1:22", RTCPListener, TCPForwardHandler)
        relay, tr = self.relayConnection(reactor)
        relay.dataReceived(bytes.fromhex("0100000a020007010000000008ae"))
        d = port.stopListening()
        self.assertTrue(tr.disconnecting)
        relay.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(d)
        reactor.advance(60)
        self.assertEqual(len(reactor.tcpClients), 1)
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_rudpTranscriptReplay(self) -> None:
        """
        Our rudp client against the server side of transcript rudp_bind:
        GOST's request, the peer's datagram forwarded to the target over
        UDP, the target's reply framed exactly as GOST's client framed it.
        """
        (entry,) = vectors.transcripts("rudp_bind")
        decoded = entry["decoded"]
        reactor, listener, port = self.service(
            "rudp://127.0.0.1:28114/127.0.0.1:28102", RUDPListener, UDPForwardHandler
        )
        relay, tr = self.relayConnection(reactor)
        self.assertEqual(tr.value().hex(), decoded["request"]["hex"])
        tr.clear()
        (s2c,) = decoded["s2c_udptun"]
        relay.dataReceived(bytes.fromhex(decoded["response"]["hex"]) + bytes.fromhex(s2c["frame_hex"]))
        (udp,) = reactor.udpPorts
        self.assertEqual(udp.sent, [(b"hello", ("127.0.0.1", 28102))])
        udp.protocol.datagramReceived(b"hello", ("127.0.0.1", 28102))
        (c2s,) = decoded["c2s_udptun"]
        self.assertEqual(tr.value().hex(), c2s["frame_hex"])

    def test_rudpPeersSeparate(self) -> None:
        """
        Each remote peer gets its own upstream socket; replies go back
        named by their peer; empty replies are not framed.
        """
        reactor, listener, port = self.service("rudp://:1053/127.0.0.1:53", RUDPListener, UDPForwardHandler)
        relay, tr = self.relayConnection(reactor)
        relay.dataReceived(bytes.fromhex("0100000a0200070100000000041d"))
        tr.clear()
        relay.dataReceived(
            encodeTunnelDatagram("198.51.100.1", 1000, b"a") + encodeTunnelDatagram("198.51.100.2", 2000, b"b")
        )
        self.assertEqual(len(reactor.udpPorts), 2)
        first, second = reactor.udpPorts
        second.protocol.datagramReceived(b"to-b", ("127.0.0.1", 53))
        second.protocol.datagramReceived(b"", ("127.0.0.1", 53))
        first.protocol.datagramReceived(b"to-a", ("127.0.0.1", 53))
        self.assertEqual(
            TunnelDatagramParser().feed(tr.value()),
            [("198.51.100.2", 2000, b"to-b"), ("198.51.100.1", 1000, b"to-a")],
        )
        relay.connectionLost(Failure(ConnectionLost()))
        self.assertEqual([p.listening for p in reactor.udpPorts], [False, False])

    def test_rudpStalledStreamDrops(self) -> None:
        """
        Replies written onto a BIND stream the relay server no longer reads
        are dropped (counted) once the stream's buffer is full, not
        buffered without bound; once it drains, replies flow again.
        """
        reactor, listener, port = self.service("rudp://:1053/127.0.0.1:53", RUDPListener, UDPForwardHandler)
        relay, tr = self.relayConnection(reactor, transportClass=StalledTransport)
        relay.dataReceived(bytes.fromhex("0100000a0200070100000000041d"))
        relay.dataReceived(encodeTunnelDatagram("198.51.100.1", 1000, b"query"))
        (upstream,) = reactor.udpPorts
        tr.clear()
        reply = b"r" * 1000
        frame = len(encodeTunnelDatagram("198.51.100.1", 1000, reply))
        for _ in range(1000):  # 1 MB of replies, 16 times the buffer
            upstream.protocol.datagramReceived(reply, ("127.0.0.1", 53))
        self.assertLessEqual(len(tr.value()), tr.bufferSize + frame, "replies buffered beyond the stream's buffer")
        written = len(TunnelDatagramParser().feed(tr.value()))
        gate = tr.producer  # the BIND stream's producer counts what it dropped
        self.assertEqual((written, gate.dropped), (tr.bufferSize // frame + 1, 1000 - written))
        tr.drain()
        upstream.protocol.datagramReceived(b"after", ("127.0.0.1", 53))
        self.assertEqual(TunnelDatagramParser().feed(tr.value()), [("198.51.100.1", 1000, b"after")])
        relay.connectionLost(Failure(ConnectionLost()))
