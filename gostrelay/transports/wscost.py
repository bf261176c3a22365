"""
Per-connection work autobahn does that a relay carrier does not need
(issue 20: a wss connection cost ~7 ms of CPU across the chain).

Profiled (py-spy, wrk through a relay+wss chain), a fifth of a wss
connection's CPU went to two things:

  - C{pprint.pformat} of the protocol's options and transport details,
    computed eagerly as arguments of debug log calls even when debug
    logging is off (C{WebSocketProtocol._connectionMade},
    C{WebSocketClientProtocol.startHandshake}): here the formatting is
    done only if a log line is actually written;
  - the peer certificate's details (subject, issuer, fingerprints),
    extracted twice per client connection for C{transport_details.peer_cert},
    which only WAMP authentication reads: not extracted.

L{trim} applies both, once, when the ws transport is imported.
"""

from __future__ import annotations

from pprint import pformat
from typing import Any

from autobahn.twisted import util as twistedUtil
from autobahn.twisted import websocket as twistedWebsocket
from autobahn.websocket import protocol

_done = False


class _LazyFormat:
    """
    C{pformat(obj)}, computed when (and if) a log line is written.
    """

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __str__(self) -> str:
        return pformat(self.obj)

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


class _LazyCall:
    """
    C{function(*args)} as text, computed when (and if) a log line is
    written.
    """

    __slots__ = ("function", "args")

    def __init__(self, function: Any, *args: Any) -> None:
        self.function = function
        self.args = args

    def __str__(self) -> str:
        return str(self.function(*self.args))

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _lazy(function: Any) -> Any:
    def deferred(*args: Any, **kwargs: Any) -> _LazyCall:
        if kwargs:
            return _LazyCall(lambda *a: function(*a, **kwargs), *args)
        return _LazyCall(function, *args)

    return deferred


def _noPeerCertificate(transport: Any) -> None:
    return None


def trim() -> None:
    global _done
    if _done:
        return
    _done = True

    protocol.pformat = _LazyFormat  # type: ignore[attr-defined, assignment]
    protocol.hltype = _lazy(protocol.hltype)  # type: ignore[attr-defined]
    protocol.hlval = _lazy(protocol.hlval)  # type: ignore[attr-defined]
    # Timings.__str__ must return a str: give it the real pformat.
    protocol.Timings.__str__ = lambda self: pformat(self._timings)  # type: ignore[method-assign]
    twistedUtil.extract_peer_certificate = _noPeerCertificate  # type: ignore[attr-defined]
    twistedWebsocket.extract_peer_certificate = _noPeerCertificate  # type: ignore[attr-defined]
