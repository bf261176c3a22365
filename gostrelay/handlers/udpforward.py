"""
Local UDP port forwarding: the C{udp} handler of C{-L udp://:1053/:53}
(spec-relay.md 6.2).

Each client session of the udp listener gets its own upstream datagram
channel to the selected target: a relay UDP CONNECT stream through the
chain, or a connected UDP socket without one.  A service without targets
dials the empty target C{":0"}, which a relay server in forward mode
replaces by its own (spec-relay.md 6.5).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.python.failure import Failure
from zope.interface import implementer

from gostrelay import metrics
from gostrelay.config.model import ServiceConfig
from gostrelay.handlers.base import EMPTY_TARGET, Handler, dialFailureText
from gostrelay.interfaces import IDatagramReceiver, IHandler
from gostrelay.selector import Node
from gostrelay.wire.address import splitHostPort


@implementer(IDatagramReceiver)
class UDPForwardSession:
    """
    One client's datagrams to and from its target.  Datagrams that arrive
    while the upstream is being dialed wait in a queue of at most
    C{readQueueSize}; beyond that they are dropped.
    """

    def __init__(self, handler: UDPForwardHandler, table: Any, client: str) -> None:
        self.handler = handler
        self.options = options = handler.options
        self.table = table
        self.client = client
        self.log = handler.log
        self.channel: Any = None
        self.queue: deque[bytes] = deque()
        self.queueSize = table.listener.readQueueSize
        self.dropped = 0
        self.counts = [0, 0, 0, 0]
        self.closed = False
        self.node: Node | None = None
        self.target = EMPTY_TARGET
        self.started = handler.reactor.seconds()
        if options.forwarder is not None:
            self.node = options.forwarder.select(splitHostPort(client)[0])
            if self.node is not None:
                self.target = self.node.addr
        if options.bypasses(self.target):
            self.log.info("udp {client} -> {target}: refused: target matches the service bypass", client=client, target=self.target)
            self.closed = True
            self._dial: Any = None
            handler.reactor.callLater(0, table.closeSession, client)
            return
        self._dial = options.router.datagram(self.target, self)
        self._dial.addCallbacks(self._ready, self._failed)

    def _ready(self, channel: Any) -> None:
        self._dial = None
        self.options.markNode(self.node, True)
        if self.closed:
            channel.close()
            return
        self.channel = channel
        self.log.info("udp {client} -> {target}: session open", client=self.client, target=self.target)
        while self.queue:
            self._send(self.queue.popleft())

    def _failed(self, reason: Failure) -> None:
        self._dial = None
        if self.closed:
            return
        self.options.markNode(self.node, False)
        why = dialFailureText(reason)
        self.log.info("udp {client} -> {target}: failed: {why}", client=self.client, target=self.target, why=why)
        self.table.closeSession(self.client)

    def clientDatagram(self, data: bytes) -> None:
        if self.channel is None:
            if len(self.queue) >= self.queueSize:
                self.dropped += 1
                return
            self.queue.append(data)
            return
        self._send(data)

    def _send(self, data: bytes) -> None:
        self.counts[0] += 1
        self.counts[1] += len(data)
        self.channel.sendDatagram(data, self.target)

    def datagramReceived(self, data: bytes, addr: str) -> None:
        self.counts[2] += 1
        self.counts[3] += len(data)
        self.table.reply(self.client, data)

    def channelClosed(self, reason: Failure | None) -> None:
        if not self.closed:
            self.table.closeSession(self.client)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._dial is not None:
            self._dial.cancel()
        if self.channel is not None:
            channel, self.channel = self.channel, None
            channel.close()
            c = self.counts
            metrics.transferred(self.handler.service.name, c[1], c[3])
            self.log.info(
                "udp {client} -> {target}: session closed, {du} datagrams ({bu} bytes) up, "
                "{dd} datagrams ({bd} bytes) down, {dropped} dropped, {duration:.3f}s",
                client=self.client, target=self.target, du=c[0], bu=c[1], dd=c[2], bd=c[3],
                dropped=self.dropped + getattr(channel, "dropped", 0),
                duration=self.handler.reactor.seconds() - self.started,
            )


@implementer(IHandler)
class UDPForwardHandler(Handler):
    """
    Options: C{dialTimeout} (service metadata, 15 s), C{retries} (handler);
    session options belong to the udp listener.
    """

    def __init__(self, reactor: Any, service: ServiceConfig, context: Any) -> None:
        super().__init__(reactor, service, context, "udp")

    def openSession(self, table: Any, client: str) -> UDPForwardSession:
        return UDPForwardSession(self, table, client)

    def buildProtocol(self, addr: Any) -> None:
        # The udp handler serves datagram listeners only.
        return None
