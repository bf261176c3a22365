"""
Writing to a TCP socket at once, where Twisted would wait for a reactor turn.

Twisted's C{transport.write} only appends to a buffer and asks the reactor
for writability (an C{epoll_ctl}); the next reactor turn calls C{doWrite},
which sends and withdraws the request (another C{epoll_ctl}).  For a relay
that is every response, request and TLS record: per write two system calls
and a trip through the reactor's dispatch, for a socket that could almost
always have taken the bytes there and then.  GOST's (Go's) writes are
direct.

L{writeNow} sends directly when the transport is a plain Twisted TCP socket
(or a wrapper that passes every byte through unchanged and says so with
C{spliceCarrier}, as the accept layer and a finished relay handshake do)
and Twisted holds nothing unsent for it, so byte order is kept.  What the
socket does not take, and any error, goes to the transport's own C{write}:
Twisted buffers it, applies back-pressure (pausing the producer) and finds
the error on its next C{doWrite}, exactly as before.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp

from gostrelay.splice import spliceCarrierOf


def tcpCarrier(transport: Any) -> tcp.Connection | None:
    """
    The Twisted TCP socket C{transport} writes to unchanged: itself, or
    what its C{spliceCarrier} names now; C{None} for anything else (TLS,
    WebSocket, a traffic limiter, a relay stream still in its handshake).
    """
    if isinstance(transport, tcp.Connection):
        return transport
    carrier = spliceCarrierOf(transport)
    if carrier is None:
        return None
    inner = carrier()
    return inner if isinstance(inner, tcp.Connection) else None


def writeNow(transport: Any, data: bytes) -> bool:
    """
    Send C{data} on C{transport}'s TCP socket now, if that is safe: a
    plain TCP carrier (L{tcpCarrier}), connected, not closing, not using
    Twisted's own TLS, nothing of it buffered.  The part the socket does
    not take is handed to the socket's C{write} (buffered by Twisted).

    @return: whether C{data} was taken care of; if not, the caller writes
        it the usual way.
    """
    connection = tcpCarrier(transport)
    if (
        connection is None
        or not connection.connected
        or connection.disconnecting
        or connection._writeDisconnecting
        or connection._writeDisconnected
        or connection.TLS
        or connection._tempDataLen
        or connection.offset != len(connection.dataBuffer)
    ):
        return False
    sent = connection.writeSomeData(data)
    if isinstance(sent, Exception):
        # Twisted's next doWrite meets the same error and closes properly.
        return False
    if sent < len(data):
        connection.write(data[sent:] if sent else data)
    return True
