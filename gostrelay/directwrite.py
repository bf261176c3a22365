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

L{loseConnectionNow} does the same for a close: Twisted's
C{loseConnection} stops reading and asks for writability (two
C{epoll_ctl}s) so that a later C{doWrite} flushes what is buffered, sends
an empty C{send} and closes (another C{epoll_ctl} and a reactor turn);
with nothing buffered the socket is closed there and then, as that
C{doWrite} would have closed it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from gostrelay.splice import spliceCarrierOf

#: The reason of a clean close (one shared instance, as Twisted's reactor
#: has for the closes it finds).
_DONE = Failure(ConnectionDone())


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
        # A slice, also from 0: C{data} may be a buffer its caller reuses
        # (TLS records), and Twisted keeps what it is given; a slice of
        # C{bytes} from 0 is the bytes itself, not a copy.
        connection.write(data[sent:])
    return True


def loseConnectionNow(transport: Any) -> None:
    """
    C{transport.loseConnection()}, done at once for a plain Twisted TCP
    socket that has nothing left to send and no producer to wait for: its
    C{connectionLost} runs now (with Twisted's clean-close reason) instead
    of on a later reactor turn.  A wrapper with a C{loseConnectionNow} of
    its own (the accept layer, the relay client) passes the call down.
    Anything else (TLS, bytes still buffered, a half-close under way)
    closes the usual way.

    Only for callers that expect the protocol's C{connectionLost} before
    this returns (the pipe); a protocol written for Twisted's transports,
    e.g. Twisted's TLS, may not.
    """
    # The class's own method: wrappers forward unknown attributes to their
    # transport, and a TLS layer must not be skipped.
    now = getattr(type(transport), "loseConnectionNow", None)
    if now is not None:
        now(transport)
        return
    if (
        type(transport) is tcp.Server or type(transport) is tcp.Client
    ) and (
        transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnecting
        and not transport._writeDisconnected
        and not transport.TLS
        and transport.producer is None
        and not transport._tempDataLen
        and transport.offset == len(transport.dataBuffer)
    ):
        transport.disconnecting = 1
        transport.connectionLost(_DONE)
        return
    transport.loseConnection()
