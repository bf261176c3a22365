"""
What an operator expects of a long-running service: enough file
descriptors for its connections, and C{SIGHUP} reloading users files
without dropping anyone.
"""

from __future__ import annotations

import signal
from typing import Any

from twisted.application import service

from gostrelay.logs import Logger

_log = Logger(namespace="gostrelay")

#: The most descriptors we ask for, even when the hard limit allows more.
MAX_FILES = 1 << 20


def raiseFileLimit() -> tuple[int, int]:
    """
    Raise the soft C{RLIMIT_NOFILE} to the hard limit (each relayed
    connection needs two descriptors, four more when spliced).

    @return: the soft limit before and after.
    """
    try:
        import resource  # here: POSIX only, the fallback below elsewhere
    except ImportError:  # pragma: no cover - not POSIX
        return (0, 0)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard if hard != resource.RLIM_INFINITY else MAX_FILES, MAX_FILES)
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            return (soft, soft)
        return (soft, wanted)
    return (soft, soft)


class ReloadService(service.Service):
    """
    On C{SIGHUP}, every handler that can (C{reload()}) re-reads its users
    files; established connections carry on.
    """

    def __init__(self, reactor: Any, top: service.MultiService) -> None:
        self.reactor = reactor
        self.top = top
        self._previous: Any = None
        #: Worker processes to pass the signal on to (--workers).
        self.workers: list[Any] = []

    def startService(self) -> None:
        service.Service.startService(self)
        if hasattr(signal, "SIGHUP"):
            self._previous = signal.signal(signal.SIGHUP, self._signalled)

    def stopService(self) -> Any:
        service.Service.stopService(self)
        if hasattr(signal, "SIGHUP") and self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
        return None

    def _signalled(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.reload)
        for process in self.workers:
            try:
                process.signalProcess("HUP")
            except Exception:  # noqa: BLE001 - a worker that is gone
                pass

    def reload(self) -> int:
        count = 0
        for child in self.top:
            handler = getattr(child, "handler", None)
            handler = getattr(handler, "wrappedFactory", handler)
            reload = getattr(handler, "reload", None)
            if reload is None:
                continue
            try:
                reload()
                count += 1
            except Exception as e:  # noqa: BLE001 - a bad file keeps the old users
                _log.info("{name}: reload failed, keeping the previous users: {e}", name=child.name, e=e)
        _log.info("SIGHUP: reloaded {n} services", n=count)
        return count
