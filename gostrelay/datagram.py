"""
Datagram channels (L{IDatagramChannel}): one interface for every UDP path,
over a real UDP socket or over a framed relay stream.

  - L{UDPSocketChannel}: a UDP socket, connected to one peer (UDP CONNECT's
    target, a direct C{udp://} forward) or not (a UDP BIND);
  - L{LengthFramedChannel}: a stream carrying C{LEN PAYLOAD} frames (UDP
    CONNECT through a relay server);
  - L{TunnelFramedChannel}: a stream carrying tunnel datagrams that name
    their peer (UDP BIND, UDP association).

Nothing here buffers without bound: a stream channel whose transport asks
it to pause drops datagrams until it resumes (UDP semantics: datagrams may
be lost, memory may not grow), and a socket that cannot take a datagram
drops it.  Drops are counted.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from gostrelay import logs
from gostrelay.guard import resolveFirst
from gostrelay.interfaces import IDatagramChannel, IDatagramReceiver
from gostrelay.logs import Logger
from gostrelay.wire.address import AddressError, joinHostPort, splitHostPort
from gostrelay.wire.udpframe import (
    MAX_DATAGRAM,
    FrameError,
    LengthFrameParser,
    TunnelDatagramParser,
    encodeLengthFrame,
    encodeTunnelDatagram,
)

_log = Logger(namespace="gostrelay.datagram")

#: What we read from UDP sockets: the largest UDP payload, so that no
#: datagram is truncated (GOST truncates at its 4 KiB buffer).
UDP_READ_SIZE = 65535


def _ipText(host: str) -> str:
    if host.startswith("::ffff:") and "." in host:
        return host[len("::ffff:") :]
    return host


@implementer(IDatagramChannel)
class UDPSocketChannel(DatagramProtocol):
    """
    A UDP socket as a datagram channel.

    @ivar peer: C{(ip, port)} when connected to one peer.
    """

    noisy = False

    def __init__(self, receiver: IDatagramReceiver, peer: tuple[str, int] | None = None) -> None:
        self.receiver = receiver
        self.peer = peer
        self.dropped = 0
        self.sent = 0
        self.received = 0
        self._closed = False
        self.port: Any = None

    def startProtocol(self) -> None:
        if self.peer is not None:
            self.transport.connect(*self.peer)  # type: ignore[union-attr]

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.received += 1
        self.receiver.datagramReceived(data, joinHostPort(_ipText(addr[0]), addr[1]))

    def connectionRefused(self) -> None:
        # An ICMP port unreachable from a connected peer: UDP carries on.
        pass

    def sendDatagram(self, data: bytes, addr: str | None = None) -> None:
        if self._closed or self.transport is None:
            return
        try:
            if self.peer is not None:
                self.transport.write(data)  # type: ignore[call-arg]
            else:
                if addr is None:
                    raise ValueError("an unconnected UDP channel needs an address")
                host, port = splitHostPort(addr)
                if getattr(self.transport, "addressFamily", None) == socket.AF_INET6 and "." in host:
                    # A dual-stack socket reaches IPv4 peers at their mapped address.
                    host = "::ffff:" + host
                self.transport.write(data, (host, port))
            self.sent += 1
        except (OSError, ValueError, AddressError) as e:
            self.dropped += 1
            _log.debug("UDP datagram to {addr} dropped: {e}", addr=logs.escape(addr or self.peer), e=logs.escape(e))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.port is not None:
            self.port.stopListening()
        self.receiver.channelClosed(None)

    def getHost(self) -> Any:
        return self.port.getHost() if self.port is not None else None


async def _resolve(reactor: Any, host: str) -> str:
    return await resolveFirst(reactor, host)


def listenUDP(reactor: Any, channel: UDPSocketChannel, host: str = "", port: int = 0) -> Any:
    """
    Bind C{channel} on C{host:port} (the empty host: every address) and
    make it read whole datagrams.
    """
    if host in ("", "::"):
        interface = "::" if socket.has_ipv6 else "0.0.0.0"
    else:
        interface = host
    try:
        p = reactor.listenUDP(port, channel, interface=interface, maxPacketSize=UDP_READ_SIZE)
    except Exception:
        if interface == "::":
            p = reactor.listenUDP(port, channel, interface="0.0.0.0", maxPacketSize=UDP_READ_SIZE)
        else:
            raise
    channel.port = p
    return p


def connectUDP(reactor: Any, receiver: IDatagramReceiver, address: str) -> defer.Deferred[UDPSocketChannel]:
    """
    A UDP socket connected to C{address} (C{"host:port"}; a name is resolved
    first), delivering to C{receiver}.
    """

    async def go() -> UDPSocketChannel:
        host, port = splitHostPort(address)
        ip = await _resolve(reactor, host)
        channel = UDPSocketChannel(receiver, (ip, port))
        family6 = ":" in ip
        channel.port = reactor.listenUDP(
            0, channel, interface="::" if family6 else "0.0.0.0", maxPacketSize=UDP_READ_SIZE
        )
        return channel

    return defer.Deferred.fromCoroutine(go())


@implementer(IDatagramChannel)
class ResolvingChannel:
    """
    An unconnected UDP channel that takes names as destinations: they are
    resolved (with the reactor's resolver) before sending; a name that does
    not resolve drops its datagram.
    """

    def __init__(self, reactor: Any, channel: UDPSocketChannel) -> None:
        self.reactor = reactor
        self.channel = channel

    @property
    def dropped(self) -> int:
        return self.channel.dropped

    def sendDatagram(self, data: bytes, addr: str | None = None) -> None:
        if addr is None:
            self.channel.dropped += 1
            return
        try:
            host, port = splitHostPort(addr)
        except AddressError:
            self.channel.dropped += 1
            return
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            self.channel.sendDatagram(data, addr)
            return

        def resolved(ip: str) -> None:
            self.channel.sendDatagram(data, joinHostPort(ip, port))

        def failed(f: Failure) -> None:
            self.channel.dropped += 1
            _log.debug("UDP datagram to {addr} dropped: {e}", addr=logs.escape(addr), e=logs.escape(f.value))

        defer.Deferred.fromCoroutine(_resolve(self.reactor, host)).addCallbacks(resolved, failed)

    def close(self) -> None:
        self.channel.close()


@implementer(IPushProducer)
class DropWhenPaused:
    """
    Registered as the producer of a stream that carries datagrams: when the
    stream's send buffer is full it says so, and datagrams are dropped
    (counted) instead of buffered.
    """

    def __init__(self) -> None:
        self.paused = False
        self.dropped = 0

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.paused = True


@implementer(IDatagramReceiver)
class DatagramCallbacks:
    """
    A receiver made of callables, for an owner that receives from two
    channels (the stream it serves and the socket beyond it) and so cannot
    be the receiver of both.
    """

    def __init__(
        self,
        received: Callable[[bytes, str], object],
        closed: Callable[[Failure | None], object] | None = None,
    ) -> None:
        self._received = received
        self._closed = closed

    def datagramReceived(self, data: bytes, addr: str) -> None:
        self._received(data, addr)

    def channelClosed(self, reason: Failure | None) -> None:
        if self._closed is not None:
            self._closed(reason)


class _StreamChannel(Protocol):
    """
    Shared by the framed stream channels: a L{DropWhenPaused} gate is the
    producer of the transport, so that a full send buffer drops datagrams
    instead of growing it.

    The client side connects the channel as the stream's protocol
    (L{ChannelFactory}); a server whose protocol already owns the stream
    (the relay server after its request) calls C{makeConnection} with its
    transport and passes on what it reads to C{dataReceived}.

    @ivar sent: datagrams written to the stream (C{sentBytes}: their data).
    @ivar received: datagrams read from it (C{receivedBytes}: their data).
    """

    def __init__(self, receiver: IDatagramReceiver | None = None) -> None:
        self.receiver = receiver
        self.gate = DropWhenPaused()
        self._closed = False
        self.sent = 0
        self.sentBytes = 0
        self.received = 0
        self.receivedBytes = 0

    @property
    def paused(self) -> bool:
        return self.gate.paused

    @property
    def dropped(self) -> int:
        return self.gate.dropped

    @dropped.setter
    def dropped(self, value: int) -> None:
        self.gate.dropped = value

    def connectionMade(self) -> None:
        self.transport.registerProducer(self.gate, True)  # type: ignore[union-attr]

    def _write(self, frame: bytes, size: int) -> bool:
        """
        Write one frame carrying C{size} bytes of data, unless the stream is
        closed or full (then it is dropped and counted).
        """
        if self._closed or self.transport is None:
            return False
        if self.gate.paused:
            self.gate.dropped += 1
            return False
        self.sent += 1
        self.sentBytes += size
        self.transport.write(frame)
        return True

    def _count(self, data: bytes) -> None:
        self.received += 1
        self.receivedBytes += len(data)

    def close(self) -> None:
        if not self._closed and self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._closed = True
        if self.receiver is not None:
            self.receiver.channelClosed(reason)


@implementer(IDatagramChannel)
class LengthFramedChannel(_StreamChannel):
    """
    A stream of C{LEN PAYLOAD} frames as a datagram channel with one peer:
    UDP CONNECT, on the relay client and on the relay server.
    """

    def __init__(self, receiver: IDatagramReceiver | None = None, peer: str = "") -> None:
        super().__init__(receiver)
        self.peer = peer
        self.parser = LengthFrameParser()

    def dataReceived(self, data: bytes) -> None:
        for datagram in self.parser.feed(data):
            self._count(datagram)
            if self.receiver is not None:
                self.receiver.datagramReceived(datagram, self.peer)

    def sendDatagram(self, data: bytes, addr: str | None = None) -> bool:
        """
        Frame C{data} onto the stream; C{False} if it was dropped (larger
        than a frame can say, or the stream full or closed).
        """
        if len(data) > MAX_DATAGRAM:
            self.dropped += 1
            return False
        return self._write(encodeLengthFrame(data), len(data))


@implementer(IDatagramChannel)
class TunnelFramedChannel(_StreamChannel):
    """
    A stream of tunnel datagrams (each naming its peer) as a datagram
    channel: UDP BIND and UDP association, on the relay client, the relay
    server and the rudp listener.

    A stream that does not carry tunnel datagrams is closed, with one line
    on C{log} naming C{label}.  Owners that work with the peer as host and
    port (the server checks it against its bypass, the rudp listener keys
    its sessions by it) override L{tunnelDatagramReceived} and call
    L{sendTunnelDatagram}.
    """

    def __init__(
        self, receiver: IDatagramReceiver | None = None, log: Logger | None = None, label: str = "relay server"
    ) -> None:
        super().__init__(receiver)
        self.parser = TunnelDatagramParser()
        self.log = log if log is not None else _log
        self.label = label

    def dataReceived(self, data: bytes) -> None:
        try:
            datagrams = self.parser.feed(data)
        except FrameError as e:
            self.log.info("{label}: bad tunnel datagram: {e}", label=self.label, e=e)
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        for host, port, datagram in datagrams:
            self._count(datagram)
            self.tunnelDatagramReceived(host, port, datagram)

    def tunnelDatagramReceived(self, host: str, port: int, data: bytes) -> None:
        """
        One datagram from C{host:port}; by default, to the receiver.
        """
        if self.receiver is not None:
            self.receiver.datagramReceived(data, joinHostPort(host, port))

    def sendDatagram(self, data: bytes, addr: str | None = None) -> bool:
        """
        Frame C{data} onto the stream naming C{addr} (C{"host:port"}); see
        L{sendTunnelDatagram}.
        """
        if addr is None:
            self.dropped += 1
            return False
        try:
            host, port = splitHostPort(addr)
        except AddressError:
            self.dropped += 1
            return False
        return self.sendTunnelDatagram(host, port, data)

    def sendTunnelDatagram(self, host: str, port: int, data: bytes) -> bool:
        """
        Frame C{data} onto the stream naming C{host:port}; C{False} if it was
        dropped: empty (the framing cannot carry it), too large, an address
        the framing cannot name, or the stream full or closed.
        """
        try:
            frame = encodeTunnelDatagram(host, port, data)
        except FrameError:
            self.dropped += 1
            return False
        return self._write(frame, len(data))


class ChannelFactory(Factory):
    """
    Connects one stream channel (an endpoint's C{connect} argument).
    """

    noisy = False

    def __init__(self, channel: _StreamChannel) -> None:
        self.channel = channel

    def buildProtocol(self, addr: Any) -> _StreamChannel:
        return self.channel
