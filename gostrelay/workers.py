"""
Several worker processes sharing each listening socket (C{--workers N}, or
the top-level YAML key C{workers}), so that one machine's cores all serve.

Every worker binds its listeners with C{SO_REUSEPORT} and the kernel spreads
new connections (and UDP flows, by their addresses) across them.  The first
process starts the others with the same arguments and stops them when it
stops.  What must exist once per machine runs in the first worker only: the
metrics endpoint and the rtcp/rudp listeners (a remote port can be bound
once).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from typing import Any

from twisted.internet import protocol

from gostrelay.logs import Logger

ENVIRONMENT_KEY = "GOSTRELAY_WORKER"

#: This process's worker number (0 for the first, or the only, one).
INDEX = int(os.environ.get(ENVIRONMENT_KEY, "0") or 0)

#: Whether listeners share their ports with other workers.
REUSE_PORT = False

_log = Logger(namespace="gostrelay.workers")


def reusePortSocket(family: int, kind: int, host: str, port: int) -> socket.socket:
    """
    A bound socket with C{SO_REUSEPORT} (and dual-stack for C{::}).
    """
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _Worker(protocol.ProcessProtocol):
    def __init__(self, index: int) -> None:
        self.index = index

    def processEnded(self, reason: Any) -> None:
        _log.info("worker {n} ended: {why}", n=self.index, why=reason.getErrorMessage())


def spawnWorkers(reactor: Any, count: int, args: list[str]) -> list[Any]:
    """
    Start workers 1..count-1 running C{gostrelay args}; they write to our
    standard output and error.
    """
    processes = []
    for index in range(1, count):
        env = dict(os.environ)
        env[ENVIRONMENT_KEY] = str(index)
        argv = [sys.executable, "-m", "gostrelay", *args]
        processes.append(
            reactor.spawnProcess(_Worker(index), sys.executable, argv, env=env, childFDs={0: "w", 1: 1, 2: 2})
        )
        _log.info("worker {n} started (pid {pid})", n=index, pid=processes[-1].pid)
    return processes


def stopWorkers(processes: list[Any]) -> None:
    for process in processes:
        try:
            process.signalProcess(signal.SIGTERM)
        except Exception:  # noqa: BLE001 - already gone
            pass
