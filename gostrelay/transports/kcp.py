"""
The kcp listener and dialer (spec-transports.md section 4): GOST's
kcp-go stack over UDP, with the options GOST I{actually} applies.

Five layers, each a sans-IO module under L{gostrelay.wire.kcp} or
L{gostrelay.mux}, stacked here on one UDP socket::

    smux v1 (MuxSession)              streams = relay connections
    snappy framing (nocomp=false)     one chunk per smux frame
    KCP ARQ (stream mode)             reliable ordered bytes
    FEC Reed-Solomon 10+3             data shards + parity
    crypt (AES-256-CFB, key "")       nonce + CRC32 + payload

The listener keys sessions by the client's address, as kcp-go does; the
dialer keeps one session (one socket, one conversation) per node address
and opens an smux stream per connection; a session that dies (smux hears
nothing for 30 s) is replaced by a new socket and conversation on the next
connect.  A datagram that fails the checksum almost always means the key or
cipher differs from the peer's: logged once in a while, with that hint.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import socket
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import DatagramProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from gostrelay import workers
from gostrelay.config.metadata import Metadata
from gostrelay.config.model import ConfigError, NodeConfig, ServiceConfig
from gostrelay.datagram import _ipText
from gostrelay.interfaces import IDialer, IListener
from gostrelay.logs import Logger
from gostrelay.mux import MuxConfig, MuxSession, MuxStream, _StreamAddress
from gostrelay.router import DEFAULT_DIAL_TIMEOUT
from gostrelay.wire.address import joinHostPort, splitHostPort
from gostrelay.wire.kcp import arq, crypt, fec
from gostrelay.wire.kcp.snappyframe import SnappyFrameDecoder, SnappyFrameEncoder, SnappyFrameError

_log = Logger(namespace="gostrelay.kcp")

#: How often a session with checksum failures logs the hint (seconds).
CHECKSUM_LOG_PERIOD = 10.0
DEFAULT_MAX_SESSIONS = 1024

#: An unverified session (the peer never acknowledged anything we sent:
#: its source address may be spoofed, and the default key is public) may
#: send what the peer sent it, byte for byte, up to this much banked...
MAX_UNVERIFIED_CREDIT = 64 * 1024
#: ... and holds at most this many datagrams waiting for credit or for the
#: peer's first acknowledgement (more are dropped; KCP retransmits them).
MAX_UNVERIFIED_HELD = 16

#: New sessions per source address: a burst of this many, then this many
#: per second (a GOST client opens one per node, and a new one when it dies).
NEW_SESSION_BURST = 8
NEW_SESSION_RATE = 2.0
#: Source addresses whose rate we remember (least recently seen forgotten).
MAX_RATE_ENTRIES = 4096


@dataclass
class KCPConfig:
    """
    The effective KCP settings (spec-transports.md 4.2): GOST overwrites
    most config-file values with the C{kcp.*} keys' zero values, so two
    plain C{kcp://} ends run with an empty key, AES, MTU 1400, windows
    32/32, interval 10 ms, FEC 10+3, snappy and smux v1.
    """

    key: str = ""
    crypt: str = ""
    mode: str = ""
    mtu: int = 1400
    sndwnd: int = 32
    rcvwnd: int = 32
    dataShards: int = 10
    parityShards: int = 3
    noComp: bool = False
    ackNoDelay: bool = False
    nodelay: tuple[int, int, int, int] = arq.GOST_DEFAULT_NODELAY
    smuxVersion: int = 1
    keepalive: float = 10.0
    sockbuf: int = 4194304
    smuxBuffer: int = 4194304
    streamBuffer: int = 2097152

    @classmethod
    def fromMetadata(cls, md: Metadata, where: str) -> KCPConfig:
        fileValues: dict[str, Any] = {}
        path = md.getString("kcp.configFile", "configFile", "c")
        if path:
            try:
                with open(os.path.expanduser(path), encoding="utf-8") as f:
                    fileValues = json.load(f)
            except (OSError, ValueError) as e:
                raise ConfigError(f"{where}: kcp config file {path}: {e}") from None
        mapped = md.get("kcp.config") if "kcp.config" in md else md.get("config") if "config" in md else None
        if isinstance(mapped, dict):
            fileValues.update(mapped)
        file = Metadata(fileValues)
        config = cls()
        # What survives GOST's overwrite: the fields no kcp.* key resets.
        if "datashard" in file:
            config.dataShards = file.getInt("datashard")
        if "parityshard" in file:
            config.parityShards = file.getInt("parityshard")
        config.ackNoDelay = file.getBool("acknodelay")
        config.sockbuf = file.getInt("sockbuf") or config.sockbuf
        if any(k in file for k in ("nodelay", "resend", "nc")):
            # The interval is not among them: GOST resets it from kcp.interval.
            config.nodelay = (file.getInt("nodelay"), 10, file.getInt("resend"), file.getInt("nc"))
        # What GOST overwrites from kcp.* keys (zero when absent).
        config.key = md.getString("kcp.key")
        config.crypt = md.getString("kcp.crypt")
        config.mode = md.getString("kcp.mode")
        config.mtu = md.getInt("kcp.mtu") if md.getInt("kcp.mtu") >= 50 else 1400
        config.sndwnd = md.getInt("kcp.sndwnd") or 32
        config.rcvwnd = md.getInt("kcp.rcvwnd") or 32
        config.noComp = md.getBool("kcp.nocomp")
        config.smuxVersion = md.getInt("kcp.smuxver") or 1
        interval = md.getInt("kcp.interval")
        config.nodelay = (config.nodelay[0], interval if interval > 0 else 10, config.nodelay[2], config.nodelay[3])
        config.smuxBuffer = md.getInt("kcp.smuxbuf") or config.sockbuf
        config.streamBuffer = md.getInt("kcp.streambuf") or config.sockbuf // 2
        keepalive = md.getInt("kcp.keepalive")
        config.keepalive = float(keepalive) if keepalive > 0 else 10.0
        if md.getBool("kcp.tcp", "tcp"):
            raise ConfigError(f"{where}: kcp.tcp (fake TCP) is not implemented")
        if config.mtu > 1500:
            raise ConfigError(f"{where}: kcp.mtu must be at most 1500")
        try:
            crypt.newBlockCrypt(config.crypt, config.key)
        except crypt.UnsupportedCryptError as e:
            raise ConfigError(f"{where}: {e}") from None
        return config

    def muxConfig(self) -> MuxConfig:
        return MuxConfig(
            version=self.smuxVersion,
            keepaliveInterval=self.keepalive,
            keepaliveTimeout=max(30.0, self.keepalive),
            maxReceiveBuffer=self.smuxBuffer,
            maxStreamBuffer=min(self.streamBuffer, self.smuxBuffer),
        )


class KCPConnection:
    """
    One KCP conversation with one peer, carrying a byte stream; the
    transport of an smux session (L{MuxSession}).

    @param send: sends one datagram to the peer.
    """

    disconnecting = False

    def __init__(
        self, reactor: Any, config: KCPConfig, conv: int, send: Any, peer: Any, host: Any, label: str,
        verified: bool = True,
    ) -> None:
        self.reactor = reactor
        self.config = config
        self.conv = conv
        self.send = send
        self.peerAddress = peer
        self.hostAddress = host
        self.label = label
        self.cipher = crypt.newBlockCrypt(config.crypt, config.key)
        useFEC = config.dataShards > 0 and config.parityShards > 0
        self.encoder = fec.FECEncoder(config.dataShards, config.parityShards) if useFEC else None
        self.decoder = fec.FECDecoder(config.dataShards or 10, config.parityShards or 3)
        self.kcp = arq.KCP(conv, self._output, config.mtu, arq.reservedBytes(True, useFEC))
        self.kcp.setNoDelay(*config.nodelay)
        self.kcp.applyMode(config.mode)
        self.kcp.setWindowSize(config.sndwnd, config.rcvwnd)
        self.kcp.ackNoDelay = config.ackNoDelay
        self.compressor = None if config.noComp else SnappyFrameEncoder()
        self.decompressor = None if config.noComp else SnappyFrameDecoder()
        self.protocol: Any = None  # the MuxSession
        self.producer: Any = None
        self.producerPaused = False
        self.readPaused = False
        self.closed = False
        self.checksumFailures = 0
        self._lastChecksumLog = -CHECKSUM_LOG_PERIOD
        self._timer: Any = None
        self._onClose: Any = None
        #: The listener's sessions start unverified (see L{_send}).
        self.verified = verified
        self.credit = 0
        self.held: list[bytes] = []
        self.unverifiedDropped = 0

    def now(self) -> int:
        return int(self.reactor.seconds() * 1000) & 0xFFFFFFFF

    # -- datagrams in

    def datagramReceived(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            payload = crypt.decryptPacket(self.cipher, data)
        except crypt.ChecksumError:
            self.checksumFailures += 1
            now = self.reactor.seconds()
            if now - self._lastChecksumLog >= CHECKSUM_LOG_PERIOD:
                self._lastChecksumLog = now
                _log.info(
                    "{label}: datagrams fail the checksum: key or crypt differs from the peer's? ({n} so far)",
                    label=self.label, n=self.checksumFailures,
                )
            return
        except crypt.CryptError:
            return
        self.payloadReceived(payload)

    def payloadReceived(self, payload: bytes, size: int = 0) -> None:
        """
        One datagram, already decrypted (the listener decrypts once to
        find the conversation, then hands the payload over); C{size}: its
        size on the wire (what an unverified peer's credit grows by).
        """
        if self.closed:
            return
        if not self.verified:
            self.credit = min(self.credit + (size or len(payload)), MAX_UNVERIFIED_CREDIT)
        now = self.now()
        try:
            for out in self.decoder.decode(payload):
                self.kcp.input(out.data, now, regular=not out.recovered)
        except (arq.KCPInputError, fec.FECError) as e:
            _log.debug("{label}: bad KCP datagram: {e}", label=self.label, e=e)
        if not self.verified:
            if self.kcp.sndUna != 0:
                # The peer acknowledged our first segment: it receives at
                # the address it claims.
                self.verified = True
                _log.debug("{label}: peer verified", label=self.label)
            self._release()
        self._deliver()
        self._checkWritable()
        self._schedule()

    def _deliver(self) -> None:
        while not self.readPaused and not self.closed:
            data = self.kcp.recv()
            if not data:
                return
            if self.decompressor is not None:
                try:
                    data = self.decompressor.feed(data)
                except SnappyFrameError as e:
                    _log.info("{label}: bad snappy stream ({e}); closing", label=self.label, e=e)
                    self.loseConnection()
                    return
            if data and self.protocol is not None:
                self.protocol.dataReceived(data)

    # -- datagrams out

    def _output(self, segment: bytes) -> None:
        packets = self.encoder.encode(segment) if self.encoder is not None else [segment]
        answer = not self.verified and _onlyAcks(segment)
        for i, packet in enumerate(packets):
            self._send(crypt.encryptPacket(self.cipher, packet), answer=answer and i == 0)

    def _send(self, datagram: bytes, answer: bool = False) -> None:
        """
        Send C{datagram}; to an unverified peer (one that never
        acknowledged anything of ours: a spoofed source, maybe) only the
        1:1 answer goes freely, the acknowledgement of what it sent; any
        other datagram (data, keepalives, retransmissions, FEC parity) is
        paid byte for byte by what the peer sent, or held (at most
        L{MAX_UNVERIFIED_HELD}) until it pays or acknowledges.
        """
        if self.verified or answer:
            self.send(datagram)
            return
        if not self.held and len(datagram) <= self.credit:
            self.credit -= len(datagram)
            self.send(datagram)
            return
        if len(self.held) < MAX_UNVERIFIED_HELD:
            self.held.append(datagram)
        else:
            self.unverifiedDropped += 1

    def _release(self) -> None:
        while self.held and (self.verified or len(self.held[0]) <= self.credit):
            datagram = self.held.pop(0)
            if not self.verified:
                self.credit -= len(datagram)
            self.send(datagram)

    def _schedule(self) -> None:
        if self.closed:
            return
        delay = self.kcp.check(self.now()) / 1000.0
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= self.reactor.seconds() + delay:
                return
            self._timer.cancel()
        if self.kcp.idle and delay > 0:
            self._timer = None
            return
        self._timer = self.reactor.callLater(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self.closed:
            return
        self.kcp.update(self.now())
        self._checkWritable()
        self._schedule()

    # -- the stream transport (for MuxSession)

    def write(self, data: bytes) -> None:
        if self.closed or not data:
            return
        if self.compressor is not None:
            data = self.compressor.encode(data)
        self.kcp.send(data)
        self.kcp.flush(self.now())
        self._checkWritable()
        self._schedule()

    def writeSequence(self, data: Any) -> None:
        for chunk in data:
            self.write(chunk)

    def _checkWritable(self) -> None:
        if self.producer is None:
            return
        writable = self.kcp.writable
        if not writable and not self.producerPaused:
            self.producerPaused = True
            self.producer.pauseProducing()
        elif writable and self.producerPaused:
            self.producerPaused = False
            self.producer.resumeProducing()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def pauseProducing(self) -> None:
        self.readPaused = True

    def resumeProducing(self) -> None:
        if self.readPaused:
            self.readPaused = False
            self._deliver()
            self._schedule()

    def stopProducing(self) -> None:
        self.loseConnection()

    def getPeer(self) -> Any:
        return self.peerAddress

    def getHost(self) -> Any:
        return self.hostAddress

    def loseConnection(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.disconnecting = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        # Flush what is queued once (the peer's smux notices the rest).
        try:
            self.kcp.flush(self.now())
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        protocol, self.protocol = self.protocol, None
        if protocol is not None:
            protocol.connectionLost(Failure(ConnectionClosed()))
        if self._onClose is not None:
            onClose, self._onClose = self._onClose, None
            onClose(self)

    abortConnection = loseConnection


def _onlyAcks(buffer: bytes) -> bool:
    """
    Whether a flushed KCP buffer carries acknowledgements only.
    """
    try:
        return all(segment.cmd == arq.CMD_ACK for segment in arq.decodeSegments(buffer))
    except arq.KCPInputError:
        return False


class ConnectionClosed(Exception):
    def __str__(self) -> str:
        return "KCP session closed"


def _address(host: str, port: int) -> _StreamAddress:
    return _StreamAddress(_ipText(host), port)


# -- listener


class _KCPServerSocket(DatagramProtocol):
    """
    The listener's UDP socket: sessions by client address, each an smux
    server whose streams go to the handler.
    """

    noisy = False

    def __init__(self, listener: KCPListener, handler: IProtocolFactory) -> None:
        self.listener = listener
        self.handler = handler
        self.sessions: OrderedDict[tuple[str, int], KCPConnection] = OrderedDict()
        self.cipher = crypt.newBlockCrypt(listener.config.crypt, listener.config.key)
        self.checksumFailures = 0
        self._lastChecksumLog = -CHECKSUM_LOG_PERIOD
        #: Token buckets of new sessions per source address: (tokens, when).
        self.newSessions: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.rateLimited = 0
        self.evicted = 0
        self._lastRateLog = -CHECKSUM_LOG_PERIOD

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        key = (addr[0], addr[1])
        try:
            payload = crypt.decryptPacket(self.cipher, data)
        except crypt.ChecksumError:
            known = self.sessions.get(key)
            if known is not None:
                known.checksumFailures += 1
            self._checksumFailed(addr)
            return
        except crypt.CryptError:
            return
        connection = self.sessions.get(key)
        convSn = self._convSn(payload)
        if connection is not None and convSn is not None and convSn[0] != connection.conv and convSn[1] == 0:
            # A new conversation from the same address replaces the old.
            connection.loseConnection()
            connection = None
        if connection is None:
            if convSn is None or not self._mayOpen(addr[0]):
                return
            connection = self._open(key, addr, convSn[0])
            if connection is None:
                return
        else:
            self.sessions.move_to_end(key)
        connection.payloadReceived(payload, len(data))

    def _mayOpen(self, host: str) -> bool:
        """
        Whether C{host} may open a new session now: a token bucket per
        source address (L{NEW_SESSION_BURST}, L{NEW_SESSION_RATE}).
        """
        now = self.listener.reactor.seconds()
        tokens, when = self.newSessions.pop(host, (float(NEW_SESSION_BURST), now))
        tokens = min(float(NEW_SESSION_BURST), tokens + (now - when) * NEW_SESSION_RATE)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self.newSessions[host] = (tokens, now)
        if len(self.newSessions) > MAX_RATE_ENTRIES:
            self.newSessions.popitem(last=False)
        if not allowed:
            self.rateLimited += 1
            if now - self._lastRateLog >= CHECKSUM_LOG_PERIOD:
                self._lastRateLog = now
                _log.info(
                    "kcp {host}: new sessions over {rate:g}/s, dropped ({n} so far)",
                    host=_ipText(host), rate=NEW_SESSION_RATE, n=self.rateLimited,
                )
        return allowed

    def _checksumFailed(self, addr: Any) -> None:
        self.checksumFailures += 1
        now = self.listener.reactor.seconds()
        if now - self._lastChecksumLog >= CHECKSUM_LOG_PERIOD:
            self._lastChecksumLog = now
            _log.info(
                "kcp {peer}: datagrams fail the checksum: key or crypt differs from the peer's? ({n} so far)",
                peer=joinHostPort(_ipText(addr[0]), addr[1]), n=self.checksumFailures,
            )

    def _convSn(self, payload: bytes) -> tuple[int, int] | None:
        if fec.isFEC(payload):
            packet = fec.parseFECPacket(payload)
            if not packet.isData:
                return None  # parity never opens a session
            return arq.peekConvSn(packet.kcp)
        return arq.peekConvSn(payload)

    def _open(self, key: tuple[str, int], addr: Any, conv: int) -> KCPConnection | None:
        listener = self.listener
        if len(self.sessions) >= listener.maxSessions:
            # The least recently used unverified session goes first (a
            # spoofed one, likely), else the least recently used.
            victim = next((c for c in self.sessions.values() if not c.verified), None)
            if victim is None:
                victim = next(iter(self.sessions.values()))
            self.evicted += 1
            _log.debug("{label}: evicted (maxSessions reached)", label=victim.label)
            victim.loseConnection()
        host = self.transport.getHost()  # type: ignore[union-attr]
        peer = _address(addr[0], addr[1])
        label = f"kcp {joinHostPort(peer.host, peer.port)}"

        def send(datagram: bytes) -> None:
            try:
                self.transport.write(datagram, addr)  # type: ignore[union-attr]
            except OSError:
                pass

        connection = KCPConnection(
            listener.reactor, listener.config, conv, send, peer, _address(host.host, host.port), label,
            verified=False,
        )
        self.sessions[key] = connection

        def closed(c: KCPConnection) -> None:
            if self.sessions.get(key) is c:
                del self.sessions[key]

        connection._onClose = closed

        def accept(stream: MuxStream) -> None:
            stream.peerAddress = peer
            protocol = self.handler.buildProtocol(peer)
            if protocol is None:
                stream.loseConnection()
                return
            stream.attach(protocol)

        session = MuxSession(
            listener.reactor, connection, client=False, config=listener.config.muxConfig(),
            acceptStream=accept, onClose=lambda reason: connection.loseConnection(), label=label,
        )
        connection.protocol = session
        _log.debug("{label}: new KCP session, conv {conv:#010x}", label=label, conv=conv)
        return connection

    def closeAll(self) -> None:
        for connection in list(self.sessions.values()):
            connection.loseConnection()


class _KCPPort:
    def __init__(self, port: Any, sockets: _KCPServerSocket) -> None:
        self.port = port
        self.sockets = sockets

    def getHost(self) -> Any:
        return self.port.getHost()

    def stopListening(self) -> Any:
        self.sockets.closeAll()
        return self.port.stopListening()


def _setBuffers(port: Any, size: int) -> None:
    sock = port.socket if hasattr(port, "socket") else None
    if sock is None:
        return
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
        except OSError:
            pass


@implementer(IListener)
class KCPListener:
    """
    Options: GOST's C{kcp.*} keys (C{kcp.key}, C{kcp.crypt}, C{kcp.mode},
    C{kcp.mtu}, C{kcp.sndwnd}, C{kcp.rcvwnd}, C{kcp.nocomp}, C{kcp.smuxver},
    C{kcp.keepalive}, C{kcp.interval}, C{kcp.config}/C{kcp.configFile});
    ours: C{maxSessions} (1024).
    """

    datagram = False

    def __init__(self, reactor: Any, service: ServiceConfig, context: Any) -> None:
        assert service.listener is not None
        where = service.source or service.name
        md = service.listener.md
        self.reactor = reactor
        self.config = KCPConfig.fromMetadata(md, where)
        self.maxSessions = md.getInt("maxSessions") or DEFAULT_MAX_SESSIONS
        if ":" not in service.addr:
            raise ConfigError(f"{where}: missing port in address {service.addr!r}")
        self.host, self.port = splitHostPort(service.addr)

    def listen(self, factory: IProtocolFactory) -> defer.Deferred[Any]:
        sockets = _KCPServerSocket(self, factory)
        host = self.host

        if workers.REUSE_PORT:
            family = socket.AF_INET6 if host in ("", "::") or ":" in host else socket.AF_INET
            sock = workers.reusePortSocket(family, socket.SOCK_DGRAM, host or "::", self.port)
            try:
                port = self.reactor.adoptDatagramPort(sock.fileno(), family, sockets, maxPacketSize=65535)
            finally:
                sock.close()
            _setBuffers(port, self.config.sockbuf)
            return defer.succeed(_KCPPort(port, sockets))
        try:
            port = self.reactor.listenUDP(self.port, sockets, interface=host or "::", maxPacketSize=65535)
        except Exception:
            if host:
                return defer.fail()
            port = self.reactor.listenUDP(self.port, sockets, interface="0.0.0.0", maxPacketSize=65535)
        _setBuffers(port, self.config.sockbuf)
        return defer.succeed(_KCPPort(port, sockets))


# -- dialer


class _KCPClientSocket(DatagramProtocol):
    """
    The dialer's UDP socket for one node: one KCP conversation, an smux
    client on it.  Accepts datagrams from the server's address only.
    """

    noisy = False

    def __init__(self, dialer: KCPDialer, server: tuple[str, int], label: str) -> None:
        self.dialer = dialer
        self.server = server
        self.label = label
        self.connection: KCPConnection | None = None
        self.session: MuxSession | None = None
        self.port: Any = None
        self._idleTimer: Any = None

    def start(self) -> None:
        config = self.dialer.config
        conv = random.getrandbits(32)
        host = self.port.getHost()

        def send(datagram: bytes) -> None:
            try:
                self.transport.write(datagram, self.server)  # type: ignore[union-attr]
            except OSError:
                pass

        connection = KCPConnection(
            self.dialer.reactor, config, conv, send, _address(*self.server), _address(host.host, host.port), self.label
        )
        connection._onClose = lambda c: self.close()
        session = MuxSession(
            self.dialer.reactor, connection, client=True, config=config.muxConfig(),
            acceptStream=None, onClose=lambda reason: connection.loseConnection(), label=self.label,
        )
        connection.protocol = session
        self.connection, self.session = connection, session
        if self.dialer.idleTimeout > 0:
            session.onIdle = self._idle

    def _idle(self) -> None:
        """
        The last stream is gone: close the session (and its socket) unless
        a new stream opens within the dialer's C{idleTimeout}.
        """
        if self._idleTimer is not None and self._idleTimer.active():
            self._idleTimer.cancel()
        self._idleTimer = self.dialer.reactor.callLater(self.dialer.idleTimeout, self._closeIfIdle)

    def _closeIfIdle(self) -> None:
        self._idleTimer = None
        if self.session is not None and not self.session.streams:
            self.close()

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if self.connection is not None and (_ipText(addr[0]), addr[1]) == (_ipText(self.server[0]), self.server[1]):
            self.connection.datagramReceived(data)

    @property
    def alive(self) -> bool:
        return self.session is not None and not self.session.closed and self.connection is not None and not self.connection.closed

    def close(self) -> None:
        if self._idleTimer is not None and self._idleTimer.active():
            self._idleTimer.cancel()
        self._idleTimer = None
        if self.connection is not None and not self.connection.closed:
            self.connection.loseConnection()
        if self.port is not None:
            port, self.port = self.port, None
            port.stopListening()
        self.dialer._forget(self)


@implementer(IStreamClientEndpoint)
class _KCPStreamEndpoint:
    def __init__(self, dialer: KCPDialer, address: str) -> None:
        self.dialer = dialer
        self.address = address

    def connect(self, factory: IProtocolFactory) -> defer.Deferred[Any]:
        d = self.dialer._session(self.address)

        def opened(client: _KCPClientSocket) -> Any:
            assert client.session is not None
            stream = client.session.openStream()
            protocol = factory.buildProtocol(stream.getPeer())
            if protocol is None:
                stream.loseConnection()
                raise ConnectionRefused("the application refused the connection")
            stream.attach(protocol)
            return protocol

        return d.addCallback(opened)


class ConnectionRefused(Exception):
    pass


@implementer(IDialer)
class KCPDialer:
    """
    Options: GOST's C{kcp.*} keys, as the listener's.  KCP runs over UDP:
    it can only be a chain's first hop.

    @param idleTimeout: close a session (its socket and conversation) this
        many seconds after its last stream ended; 0 keeps it until it dies,
        as GOST's dialer does (the C{kcp:} endpoint string sets it).
    """

    def __init__(self, reactor: Any, node: NodeConfig, context: Any, idleTimeout: float = 0.0) -> None:
        self.idleTimeout = idleTimeout
        dialer = node.dialer
        where = node.source or node.name
        self.reactor = reactor
        self.config = KCPConfig.fromMetadata(dialer.md if dialer is not None else node.md, where)
        self.clients: dict[str, _KCPClientSocket] = {}
        self.pending: dict[str, list[defer.Deferred[Any]]] = {}

    def endpoint(
        self, address: str, through: IStreamClientEndpoint | None = None, timeout: float = DEFAULT_DIAL_TIMEOUT
    ) -> IStreamClientEndpoint:
        if through is not None:
            raise ConfigError("kcp runs over UDP: it can only be the first hop of a chain")
        return _KCPStreamEndpoint(self, address)

    def _session(self, address: str) -> defer.Deferred[Any]:
        """
        The live session for C{address}, created once even when several
        connections ask at the same time (they share the pending one).
        """
        pending = self.pending.get(address)
        if pending is not None:
            waiter: defer.Deferred[Any] = defer.Deferred()
            pending.append(waiter)
            return waiter
        client = self.clients.get(address)
        if client is not None and client.alive:
            return defer.succeed(client)
        waiters: list[defer.Deferred[Any]] = []
        self.pending[address] = waiters

        def settle(result: Any) -> Any:
            del self.pending[address]
            for waiter in waiters:
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback(result)
            return result

        return self._create(address).addBoth(settle)

    @defer.inlineCallbacks
    def _create(self, address: str):  # type: ignore[no-untyped-def]
        client = self.clients.get(address)
        if client is not None:
            client.close()
        host, port = splitHostPort(address)
        ip = host or "127.0.0.1"
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            ip = yield self.reactor.resolve(ip)
        client = _KCPClientSocket(self, (ip, port), f"kcp {address}")
        family6 = ":" in ip
        client.port = self.reactor.listenUDP(0, client, interface="::" if family6 else "0.0.0.0", maxPacketSize=65535)
        _setBuffers(client.port, self.config.sockbuf)
        client.start()
        self.clients[address] = client
        return client

    def _forget(self, client: _KCPClientSocket) -> None:
        for address, known in list(self.clients.items()):
            if known is client:
                del self.clients[address]
