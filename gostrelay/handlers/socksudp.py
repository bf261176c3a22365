"""
SOCKS5 UDP ASSOCIATE on the local proxy entry (handler option C{udp=true},
as GOST requires; spec-relay.md 11).

The entry opens a local UDP socket for the client and an upstream channel
to any destination: through the chain a relay UDP association (the relay
server needs C{bind=true}), directly an unconnected UDP socket.  SOCKS5 UDP
datagrams from the client become upstream datagrams to their destination;
upstream datagrams come back wrapped in the SOCKS5 UDP header naming their
source.  The association lives as long as the client's TCP connection
(RFC 1928), and is also bounded by C{ttl} of silence (ours, 60 s).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure
from zope.interface import implementer

from gostrelay import logs
from gostrelay.datagram import DatagramCallbacks, UDPSocketChannel, _ipText, listenUDP
from gostrelay.interfaces import IDatagramReceiver
from gostrelay.logs import Logger
from gostrelay.wire import socks
from gostrelay.wire.address import joinHostPort, splitHostPort


@implementer(IDatagramReceiver)
class UDPAssociation:
    """
    One SOCKS5 UDP association.
    """

    def __init__(
        self, reactor: Any, router: Any, log: Logger, peer: str, clientHost: str, ttl: float,
        bypass: Any = None, guard: Any = None,
    ) -> None:
        self.reactor = reactor
        self.router = router
        #: The service bypass and target guard (denyPrivate): a datagram to
        #: or from what they refuse is dropped, as on a relay UDP BIND.
        self.bypass = bypass
        self.guard = guard
        self.log = log
        self.peer = peer
        self.clientHost = _ipText(clientHost)
        self.ttl = ttl
        # The client's socket; the association itself receives from upstream.
        self.local = UDPSocketChannel(DatagramCallbacks(self.fromClient))
        self.upstream: Any = None
        self.clientAddr: str | None = None
        self.counts = [0, 0, 0, 0]
        self.dropped = 0
        self.closed = False
        self.onClose: Any = None
        self._last = reactor.seconds()
        self._timer: Any = None
        self._opening: Any = None

    def start(self, interface: str) -> defer.Deferred[tuple[str, int]]:
        """
        Bind the local socket on C{interface} and open the upstream; fires
        with the address to tell the client.
        """
        try:
            port = listenUDP(self.reactor, self.local, interface, 0)
        except Exception as e:  # noqa: BLE001
            return defer.fail(e)
        d = self.router.association(self)
        self._opening = d

        def ready(channel: Any) -> tuple[str, int]:
            self._opening = None
            if self.closed:
                channel.close()
                raise defer.CancelledError()
            self.upstream = channel
            self._timer = self.reactor.callLater(self.ttl, self._check)
            host = port.getHost()
            return _ipText(host.host), host.port

        def failed(f: Failure) -> Failure:
            self._opening = None
            self.local.close()
            return f

        return d.addCallbacks(ready, failed)

    def _check(self) -> None:
        self._timer = None
        due = self._last + self.ttl
        if self.reactor.seconds() < due:
            self._timer = self.reactor.callLater(due - self.reactor.seconds(), self._check)
            return
        self.log.debug("{peer} UDP association idle for {ttl:g}s; closing", peer=self.peer, ttl=self.ttl)
        self.close()
        if self.onClose is not None:
            self.onClose()

    def fromClient(self, data: bytes, addr: str) -> None:
        host, _ = splitHostPort(addr)
        if self.clientAddr is None:
            # Only the client that asked may use the association.
            if host != self.clientHost and self.clientHost not in ("", "0.0.0.0", "::"):
                self.dropped += 1
                return
            self.clientAddr = addr
        elif addr != self.clientAddr:
            self.dropped += 1
            return
        try:
            datagram = socks.parseSocks5Datagram(data)
        except socks.SocksError:
            self.dropped += 1
            return
        if datagram.frag != 0 or self.upstream is None:
            # Fragmentation is optional in RFC 1928; GOST drops fragments too.
            self.dropped += 1
            return
        if self.bypass and self.bypass.contains(datagram.host, datagram.port):
            self.dropped += 1
            return
        self._last = self.reactor.seconds()
        self.counts[0] += 1
        self.counts[1] += len(datagram.data)
        address = joinHostPort(datagram.host, datagram.port)
        if self.guard is None:
            self.upstream.sendDatagram(datagram.data, address)
            return
        # Through a chain the relay server resolves (and its own
        # denyPrivate judges); directly, only a checked address is sent to.
        d = self.guard.resolve(address, chained=self.router.route is not None)
        d.addCallbacks(lambda checked: self._send(datagram.data, checked), self._refused, errbackArgs=(address,))

    def _send(self, data: bytes, address: str) -> None:
        if self.upstream is not None:
            self.upstream.sendDatagram(data, address)

    def _refused(self, reason: Failure, address: str) -> None:
        self.dropped += 1
        self.log.debug(
            "{peer} socks5 UDP datagram to {target} dropped: {why}",
            peer=self.peer, target=logs.escape(address), why=reason.getErrorMessage(),
        )

    def datagramReceived(self, data: bytes, addr: str) -> None:
        if self.clientAddr is None:
            self.dropped += 1
            return
        host, port = splitHostPort(addr)
        if (self.bypass and self.bypass.contains(host, port)) or (
            self.guard is not None and self.guard.refusesSource(host, port)
        ):
            self.dropped += 1
            return
        self._last = self.reactor.seconds()
        self.counts[2] += 1
        self.counts[3] += len(data)
        self.local.sendDatagram(socks.encodeSocks5Datagram(host, port, data), self.clientAddr)

    def channelClosed(self, reason: Failure | None) -> None:
        if not self.closed:
            self.close()
            if self.onClose is not None:
                self.onClose()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._opening is not None:
            opening, self._opening = self._opening, None
            opening.cancel()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.upstream is not None:
            upstream, self.upstream = self.upstream, None
            upstream.close()
        self.local.close()
        c = self.counts
        self.log.info(
            "{peer} socks5 UDP association closed, {du} datagrams ({bu} bytes) out, "
            "{dd} datagrams ({bd} bytes) in, {dropped} dropped",
            peer=self.peer, du=c[0], bu=c[1], dd=c[2], bd=c[3], dropped=self.dropped,
        )
