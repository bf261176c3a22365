"""
Keeping the real reactor clean between integration tests, bounded waits,
and free loopback ports: a test that leaves a socket or a timer behind
fails naming it.
"""

from __future__ import annotations

import socket
from typing import Any, Callable

from twisted.internet import defer, reactor, task
from twisted.python.failure import Failure


class ReactorSettler:
    """
    Remembers the reactor's sockets and timers when a test starts; at
    cleanup waits (bounded) until only those are left, else aborts the
    stragglers and fails the test naming them.
    """

    def __init__(self) -> None:
        self.selectables = self._selectables()
        self.calls = set(reactor.getDelayedCalls())

    @staticmethod
    def _selectables() -> set[Any]:
        return set(reactor.getReaders()) | set(reactor.getWriters())

    def _extra(self) -> tuple[set[Any], list[Any]]:
        internal = set(getattr(reactor, "_internalReaders", ()))
        sel = self._selectables() - self.selectables - internal
        calls = [
            c
            for c in reactor.getDelayedCalls()
            if c not in self.calls and c.active() and "TestCase._run" not in getattr(c.func, "__qualname__", "")
        ]
        return sel, calls

    @defer.inlineCallbacks
    def settle(self, timeout: float = 5.0):  # type: ignore[no-untyped-def]
        deadline = reactor.seconds() + timeout
        while True:
            sel, calls = self._extra()
            if not sel and not calls:
                return
            if reactor.seconds() > deadline:
                for s in sel:
                    if hasattr(s, "abortConnection"):
                        s.abortConnection()
                    elif hasattr(s, "stopListening"):
                        s.stopListening()
                for c in calls:
                    if c.active():
                        c.cancel()
                yield task.deferLater(reactor, 0.05, lambda: None)
                raise AssertionError(f"left behind after {timeout:g}s: sockets {sel!r}, timers {calls!r}")
            yield task.deferLater(reactor, 0.01, lambda: None)


def withTimeout(d: defer.Deferred[Any], seconds: float, what: str) -> defer.Deferred[Any]:
    """
    C{d}, failing with L{defer.TimeoutError} naming C{what} after
    C{seconds}.
    """

    def timedOut(result: Any, timeout: float) -> Any:
        if isinstance(result, Failure) and result.check(defer.CancelledError):
            raise defer.TimeoutError(f"{what}: nothing after {timeout:g}s")
        return result

    d.addTimeout(seconds, reactor, onTimeoutCancel=timedOut)
    return d


def sleep(seconds: float, clock: Any = reactor) -> defer.Deferred[None]:
    """
    Fires after C{seconds} on C{clock} (the real reactor by default).
    """
    return task.deferLater(clock, seconds, lambda: None)


@defer.inlineCallbacks
def waitUntil(predicate: Callable[[], Any], timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = reactor.seconds() + timeout
    while not predicate():
        if reactor.seconds() > deadline:
            raise defer.TimeoutError(f"{what}: not within {timeout:g}s")
        yield sleep(0.005)


def freePort(kind: int = socket.SOCK_STREAM) -> int:
    """
    A TCP (or, given C{SOCK_DGRAM}, UDP) port nothing used on 127.0.0.1 a
    moment ago (bound, then released), for programs that cannot report the
    port they bound.
    """
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
