"""
Real proxy servers for the connector tests, started by the test as users
run them: Debian's C{tinyproxy} (HTTP CONNECT with Basic auth),
C{microsocks} (SOCKS5 with username/password) and C{pproxy} from PyPI
(SOCKS4/4a).  Each listens on a free loopback port and is stopped (by its
own pid) at the test's cleanup.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from tests.processes import spawn
from tests.support.reactor import freePort


@defer.inlineCallbacks
def waitForPort(reactor: Any, port: int, timeout: float = 10.0, child: Any = None):  # type: ignore[no-untyped-def]
    """
    Poll until something accepts on 127.0.0.1:C{port} (bounded).
    """
    deadline = reactor.seconds() + timeout
    while True:
        try:
            p = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=1), Protocol())
        except Exception:  # noqa: BLE001 - not yet
            if reactor.seconds() > deadline or (child is not None and child.ended):
                raise AssertionError(f"nothing listening on {port}" + (f":\n{child.describe()}" if child else ""))
            yield task.deferLater(reactor, 0.05, lambda: None)
        else:
            p.transport.abortConnection()
            return


@defer.inlineCallbacks
def startTinyproxy(reactor: Any, workdir: str, addCleanup: Callable[..., Any], user: str = "", password: str = ""):  # type: ignore[no-untyped-def]
    """
    C{tinyproxy -d} on a free port; Basic auth when C{user} is given.
    @return: its port.
    """
    port = freePort()
    os.makedirs(workdir, exist_ok=True)
    conf = os.path.join(workdir, "tinyproxy.conf")
    lines = [f"Port {port}", "Listen 127.0.0.1", "Timeout 30", "MaxClients 20", "LogLevel Info"]
    if os.getuid() == 0:
        lines += ["User nobody", "Group nogroup"]
    if user:
        lines.append(f"BasicAuth {user} {password}")
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    child = spawn(reactor, ["/usr/bin/tinyproxy", "-d", "-c", conf], workdir, name="tinyproxy", addCleanup=addCleanup)
    yield waitForPort(reactor, port, child=child)
    return port


@defer.inlineCallbacks
def startMicrosocks(reactor: Any, workdir: str, addCleanup: Callable[..., Any], user: str = "", password: str = ""):  # type: ignore[no-untyped-def]
    """
    C{microsocks} (SOCKS5) on a free port, with username/password when
    C{user} is given.
    """
    port = freePort()
    args = ["/usr/bin/microsocks", "-i", "127.0.0.1", "-p", str(port)]
    if user:
        args += ["-u", user, "-P", password]
    child = spawn(reactor, args, workdir, name="microsocks", addCleanup=addCleanup)
    yield waitForPort(reactor, port, child=child)
    return port


@defer.inlineCallbacks
def startPproxy(reactor: Any, workdir: str, addCleanup: Callable[..., Any], scheme: str = "socks4"):  # type: ignore[no-untyped-def]
    """
    C{pproxy -l SCHEME://127.0.0.1:PORT} (SOCKS4/4a by default).
    """
    port = freePort()
    args = [sys.executable, "-m", "pproxy", "-l", f"{scheme}://127.0.0.1:{port}"]
    child = spawn(reactor, args, workdir, name="pproxy", addCleanup=addCleanup)
    yield waitForPort(reactor, port, child=child)
    return port

