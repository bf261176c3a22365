"""
The udp listener: one UDP socket, datagrams demultiplexed into sessions by
client address (spec-relay.md 6.2).

A session lives while datagrams flow either way and ends after C{ttl} of
silence.  Our defaults differ from GOST's on purpose (docs/differences.md):
C{ttl} 60 s (GOST 5 s), C{keepAlive} on (GOST off: one reply per session),
C{readBufferSize} 65535 (GOST 4096, which truncates larger datagrams).
C{keepAlive=false} keeps GOST's one-reply semantics for those who ask.
Sessions are capped (C{maxSessions}, ours): a new client evicts the least
recently used session; and per source address (C{maxSessionsPerIP}, ours,
64): a new port of an address with that many sessions evicts that
address's least recently used one, so that one host (or one spoofed
address: UDP sources are not verified) cannot take every session, each
of which holds an upstream socket or relay connection.
"""

from __future__ import annotations

import socket
from collections import OrderedDict
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol
from zope.interface import implementer

from gostrelay import metrics, workers
from gostrelay.config.model import ConfigError, ServiceConfig
from gostrelay.datagram import _ipText
from gostrelay.interfaces import IListener
from gostrelay.logs import Logger
from gostrelay.wire.address import AddressError, joinHostPort, splitHostPort

DEFAULT_TTL = 60.0
DEFAULT_READ_BUFFER = 65535
DEFAULT_READ_QUEUE = 128
DEFAULT_MAX_SESSIONS = 4096
DEFAULT_MAX_SESSIONS_PER_IP = 64


class UDPSessionTable(DatagramProtocol):
    """
    The listening socket's protocol: finds or opens the session of each
    client and sends replies back from the listening socket.
    """

    noisy = False

    def __init__(self, listener: UDPListener, handler: Any) -> None:
        self.listener = listener
        self.handler = handler
        self.log = listener.log
        self.reactor = listener.reactor
        self.sessions: OrderedDict[str, _Session] = OrderedDict()
        #: The sessions of each source address, least recently used first.
        self.byIP: dict[str, OrderedDict[str, None]] = {}
        self.evicted = 0
        self.expired = 0

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        ip = _ipText(addr[0])
        client = joinHostPort(ip, addr[1])
        session = self.sessions.get(client)
        if session is None:
            same = self.byIP.get(ip)
            if same is not None and len(same) >= self.listener.maxSessionsPerIP:
                oldest = next(iter(same))
                self.evicted += 1
                self.log.debug("udp session {client} evicted (maxSessionsPerIP reached)", client=oldest)
                self.closeSession(oldest)
            if len(self.sessions) >= self.listener.maxSessions:
                oldest = next(iter(self.sessions))
                self.evicted += 1
                self.log.debug("udp session {client} evicted (maxSessions reached)", client=oldest)
                self.closeSession(oldest)
            session = _Session(self, client, addr, ip)
            self.sessions[client] = session
            self.byIP.setdefault(ip, OrderedDict())[client] = None
            metrics.gauge("udpSessions", self.listener.serviceName, 1)
            session.upstream = self.handler.openSession(self, client)
            if self.sessions.get(client) is not session:
                return  # the session failed as it opened
        else:
            self.sessions.move_to_end(client)
            self.byIP[session.ip].move_to_end(client)
        session.touch()
        session.upstream.clientDatagram(data)

    def reply(self, client: str, data: bytes) -> None:
        """
        Send C{data} to C{client} from the listening socket.
        """
        session = self.sessions.get(client)
        if session is None or self.transport is None:
            return
        session.touch()
        try:
            self.transport.write(data, session.addr)
        except OSError as e:
            self.log.debug("reply to {client} dropped: {e}", client=client, e=e)
        if not self.listener.keepAlive:
            # GOST's keepAlive=false: the session ends with its first reply.
            self.closeSession(client)

    def closeSession(self, client: str) -> None:
        session = self.sessions.pop(client, None)
        if session is not None:
            same = self.byIP.get(session.ip)
            if same is not None:
                same.pop(client, None)
                if not same:
                    del self.byIP[session.ip]
            metrics.gauge("udpSessions", self.listener.serviceName, -1)
            session.cancel()
            if session.upstream is not None:
                session.upstream.close()

    def closeAll(self) -> None:
        for client in list(self.sessions):
            self.closeSession(client)


class _Session:
    def __init__(self, table: UDPSessionTable, client: str, addr: Any, ip: str = "") -> None:
        self.table = table
        self.client = client
        self.ip = ip
        self.addr = addr
        self.upstream: Any = None
        self.lastActivity = 0.0
        self._timer: Any = None

    def touch(self) -> None:
        reactor = self.table.reactor
        self.lastActivity = reactor.seconds()
        if self._timer is None:
            self._timer = reactor.callLater(self.table.listener.ttl, self._check)

    def _check(self) -> None:
        self._timer = None
        reactor = self.table.reactor
        due = self.lastActivity + self.table.listener.ttl
        if reactor.seconds() < due:
            self._timer = reactor.callLater(due - reactor.seconds(), self._check)
            return
        self.table.expired += 1
        self.table.log.debug(
            "udp session {client} expired after {ttl:g}s of silence", client=self.client, ttl=self.table.listener.ttl
        )
        self.table.closeSession(self.client)

    def cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


class _UDPPort:
    """
    What L{UDPListener.listen} returns: the listening socket, and its
    sessions closed with it.
    """

    def __init__(self, port: Any, table: UDPSessionTable) -> None:
        self.port = port
        self.table = table

    def getHost(self) -> Any:
        return self.port.getHost()

    def stopListening(self) -> Any:
        self.table.closeAll()
        return self.port.stopListening()


@implementer(IListener)
class UDPListener:
    """
    Options (listener metadata, GOST names): C{ttl} (60 s), C{keepAlive}
    (true), C{readBufferSize} (65535), C{readQueueSize} (128); ours:
    C{maxSessions} (4096), C{maxSessionsPerIP} (64).
    """

    datagram = True

    def __init__(self, reactor: Any, service: ServiceConfig, context: Any) -> None:
        assert service.listener is not None
        md = service.listener.md
        where = service.source or service.name
        self.reactor = reactor
        self.serviceName = service.name
        self.log = Logger(namespace=f"gostrelay.udp.{service.name}")
        if ":" not in service.addr:
            raise ConfigError(f"{where}: missing port in address {service.addr!r}")
        try:
            self.host, self.port = splitHostPort(service.addr)
        except AddressError as e:
            raise ConfigError(f"{where}: bad listen address {service.addr!r}: {e}") from None
        self.ttl = md.getDuration("ttl", "keepalive.ttl") or DEFAULT_TTL
        self.keepAlive = md.getBool("keepAlive", "keepalive", default=True)
        self.readBufferSize = md.getInt("readBufferSize", "udp.bufferSize") or DEFAULT_READ_BUFFER
        self.readQueueSize = md.getInt("readQueueSize", "recvQueueSize") or DEFAULT_READ_QUEUE
        self.maxSessions = md.getInt("maxSessions") or DEFAULT_MAX_SESSIONS
        self.maxSessionsPerIP = md.getInt("maxSessionsPerIP") or DEFAULT_MAX_SESSIONS_PER_IP

    def listen(self, handler: Any) -> defer.Deferred[Any]:
        if not hasattr(handler, "openSession"):
            return defer.fail(ConfigError(f"handler {type(handler).__name__} cannot serve a udp listener"))
        table = UDPSessionTable(self, handler)
        host = self.host

        if workers.REUSE_PORT:
            family = socket.AF_INET6 if host in ("", "::") or ":" in host else socket.AF_INET
            sock = workers.reusePortSocket(family, socket.SOCK_DGRAM, host or "::", self.port)
            try:
                port = self.reactor.adoptDatagramPort(sock.fileno(), family, table, maxPacketSize=self.readBufferSize)
            finally:
                sock.close()
            return defer.succeed(_UDPPort(port, table))
        if host in ("", "::"):
            try:
                port = self.reactor.listenUDP(self.port, table, interface="::", maxPacketSize=self.readBufferSize)
            except Exception:
                port = self.reactor.listenUDP(self.port, table, interface="0.0.0.0", maxPacketSize=self.readBufferSize)
        else:
            port = self.reactor.listenUDP(self.port, table, interface=host, maxPacketSize=self.readBufferSize)
        return defer.succeed(_UDPPort(port, table))
