"""
Child processes for the integration tests, driven by the reactor.

L{LineProcessProtocol} collects a child's standard output and error line by
line, fires Deferreds when a line matches a pattern, and stops the child
(TERM, then KILL) with a Deferred that fires when the process has ended.
L{spawn} starts one with the repository root on C{PYTHONPATH};
L{runToCompletion} runs one that should exit on its own.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Callable, Sequence

from twisted.internet import defer, error
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

#: The repository root, from this file's location.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: C{twistd -n --pidfile= relay} from the source tree.
TWISTD_RELAY = [
    sys.executable,
    "-c",
    "from twisted.scripts.twistd import run; run()",
    "-n",
    "--pidfile=",
    "relay",
]

#: The C{gostrelay} console script from the source tree.
CONSOLE = [sys.executable, "-m", "gostrelay"]

LISTENING = re.compile(r"listening on (\S+):(\d+)")

#: How long a child has to exit after TERM before it gets KILL.
DEFAULT_GRACE = 3.0


class ProcessTimeout(Exception):
    """
    A child did not print the expected line, or did not exit, in time.
    """


class ProcessEndedEarly(Exception):
    """
    A child exited before printing the expected line.
    """


def childEnvironment(home: str | None = None, **extra: str) -> dict[str, str]:
    """
    The environment of a child: ours, with C{PYTHONPATH} set to the
    repository root, unbuffered output and (optionally) another C{HOME}.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT
    env["PYTHONUNBUFFERED"] = "1"
    if home is not None:
        env["HOME"] = home
    env.update(extra)
    return env


class _Waiter:
    def __init__(self, pattern: re.Pattern[str], streams: tuple[str, ...], d: defer.Deferred[Any]) -> None:
        self.pattern = pattern
        self.streams = streams
        self.deferred = d
        self.call: Any = None


class LineProcessProtocol(ProcessProtocol):
    """
    Collect a child's output as lines and let tests wait for lines.

    @ivar lines: C{{"out": [...], "err": [...]}}, complete lines so far
        (a last line without newline is added when the process ends).
    @ivar exitCode: the exit code once ended (C{None} if killed by a signal).
    @ivar signal: the signal that ended it, if any.
    """

    def __init__(self, reactor: Any, name: str = "child") -> None:
        self.reactor = reactor
        self.name = name
        self.lines: dict[str, list[str]] = {"out": [], "err": []}
        self._partial = {"out": b"", "err": b""}
        self._waiters: list[_Waiter] = []
        self._endWaiters: list[defer.Deferred[LineProcessProtocol]] = []
        self.ended = False
        self.exitCode: int | None = None
        self.signal: int | None = None
        self.pid: int | None = None

    # -- output

    def connectionMade(self) -> None:
        self.pid = self.transport.pid  # type: ignore[union-attr]
        self.transport.closeStdin()  # type: ignore[union-attr]

    def outReceived(self, data: bytes) -> None:
        self._received("out", data)

    def errReceived(self, data: bytes) -> None:
        self._received("err", data)

    def _received(self, stream: str, data: bytes) -> None:
        buf = self._partial[stream] + data
        *complete, self._partial[stream] = buf.split(b"\n")
        for raw in complete:
            self._line(stream, raw)

    def _line(self, stream: str, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        self.lines[stream].append(line)
        for waiter in list(self._waiters):
            if stream in waiter.streams:
                m = waiter.pattern.search(line)
                if m is not None:
                    self._finishWaiter(waiter, m)

    @property
    def out(self) -> str:
        return "\n".join(self.lines["out"])

    @property
    def err(self) -> str:
        return "\n".join(self.lines["err"])

    def describe(self) -> str:
        """
        Everything the child said, for failure messages.
        """
        status = "running"
        if self.ended:
            status = f"exit code {self.exitCode}, signal {self.signal}"
        return (
            f"{self.name} (pid {self.pid}, {status})\n"
            f"--- stdout ---\n{self.out}\n--- stderr ---\n{self.err}\n--------------"
        )

    # -- waiting for lines

    def waitForLine(
        self,
        pattern: str | re.Pattern[str],
        timeout: float = 10.0,
        streams: Sequence[str] = ("out", "err"),
    ) -> defer.Deferred[re.Match[str]]:
        """
        A Deferred firing with the first match of C{pattern} in a line of
        C{streams}, including lines already received.  It fails with
        L{ProcessTimeout} after C{timeout} seconds and with
        L{ProcessEndedEarly} if the child ends first.
        """
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        streams = tuple(streams)
        for stream in streams:
            for line in self.lines[stream]:
                m = regex.search(line)
                if m is not None:
                    return defer.succeed(m)
        if self.ended:
            return defer.fail(
                ProcessEndedEarly(f"no line matching {regex.pattern!r}:\n{self.describe()}")
            )
        waiter = _Waiter(regex, streams, defer.Deferred())
        waiter.call = self.reactor.callLater(timeout, self._timedOut, waiter, timeout)
        self._waiters.append(waiter)
        return waiter.deferred

    def waitForListening(self, timeout: float = 10.0) -> defer.Deferred[tuple[str, int]]:
        """
        A Deferred firing with C{(host, port)} from the first
        C{listening on HOST:PORT} line.
        """
        d = self.waitForLine(LISTENING, timeout)
        d.addCallback(lambda m: (m.group(1).strip("[]"), int(m.group(2))))
        return d

    def _finishWaiter(self, waiter: _Waiter, result: Any) -> None:
        self._waiters.remove(waiter)
        if waiter.call is not None and waiter.call.active():
            waiter.call.cancel()
        waiter.call = None
        if isinstance(result, Failure):
            waiter.deferred.errback(result)
        else:
            waiter.deferred.callback(result)

    def _timedOut(self, waiter: _Waiter, timeout: float) -> None:
        waiter.call = None
        self._finishWaiter(
            waiter,
            Failure(
                ProcessTimeout(
                    f"no line matching {waiter.pattern.pattern!r} within {timeout:g}s:\n{self.describe()}"
                )
            ),
        )

    # -- the end

    def processEnded(self, reason: Failure) -> None:
        for stream in ("out", "err"):
            if self._partial[stream]:
                rest, self._partial[stream] = self._partial[stream], b""
                self._line(stream, rest)
        self.ended = True
        if reason.check(error.ProcessDone):
            self.exitCode = 0
        else:
            self.exitCode = getattr(reason.value, "exitCode", None)
            self.signal = getattr(reason.value, "signal", None)
        for waiter in list(self._waiters):
            self._finishWaiter(
                waiter,
                Failure(
                    ProcessEndedEarly(
                        f"no line matching {waiter.pattern.pattern!r}:\n{self.describe()}"
                    )
                ),
            )
        waiters, self._endWaiters = self._endWaiters, []
        for d in waiters:
            d.callback(self)

    def whenEnded(self) -> defer.Deferred[LineProcessProtocol]:
        """
        A Deferred firing with this protocol once the child has ended (its
        pipes closed and its exit status known).
        """
        if self.ended:
            return defer.succeed(self)
        d: defer.Deferred[LineProcessProtocol] = defer.Deferred()
        self._endWaiters.append(d)
        return d

    def waitForExit(self, timeout: float = 10.0) -> defer.Deferred[LineProcessProtocol]:
        """
        Like L{whenEnded}, but if the child has not exited by itself within
        C{timeout} it is stopped and the Deferred fails with
        L{ProcessTimeout}.
        """
        if self.ended:
            return defer.succeed(self)
        result: defer.Deferred[LineProcessProtocol] = defer.Deferred()
        timedOut = []

        def expire() -> None:
            timedOut.append(True)
            self.stop()

        call = self.reactor.callLater(timeout, expire)

        def ended(proto: LineProcessProtocol) -> None:
            if call.active():
                call.cancel()
            if timedOut:
                result.errback(ProcessTimeout(f"did not exit within {timeout:g}s:\n{self.describe()}"))
            else:
                result.callback(proto)

        self.whenEnded().addCallback(ended)
        return result

    def stop(self, grace: float = DEFAULT_GRACE) -> defer.Deferred[LineProcessProtocol]:
        """
        Stop the child: TERM now, KILL after C{grace} seconds if it is
        still there.  The Deferred fires once the process has ended.
        Only this child is signalled, by its own transport.
        """
        if self.ended:
            return defer.succeed(self)
        d = self.whenEnded()
        try:
            self.transport.signalProcess("TERM")  # type: ignore[union-attr]
        except error.ProcessExitedAlready:
            return d

        def kill() -> None:
            try:
                self.transport.signalProcess("KILL")  # type: ignore[union-attr]
            except error.ProcessExitedAlready:
                pass

        call = self.reactor.callLater(grace, kill)

        def ended(proto: LineProcessProtocol) -> LineProcessProtocol:
            if call.active():
                call.cancel()
            return proto

        d.addCallback(ended)
        return d


def spawn(
    reactor: Any,
    args: Sequence[str],
    path: str,
    env: dict[str, str] | None = None,
    name: str | None = None,
    addCleanup: Callable[..., Any] | None = None,
) -> LineProcessProtocol:
    """
    Start C{args} in directory C{path} (created if missing).  When given
    C{addCleanup} (a test's), the child is stopped at cleanup.
    """
    os.makedirs(path, exist_ok=True)
    proto = LineProcessProtocol(reactor, name or " ".join(args[-4:]))
    reactor.spawnProcess(
        proto,
        args[0],
        list(args),
        env=env if env is not None else childEnvironment(),
        path=path,
    )
    if addCleanup is not None:
        addCleanup(proto.stop)
    return proto


def runToCompletion(
    reactor: Any,
    args: Sequence[str],
    path: str,
    env: dict[str, str] | None = None,
    timeout: float = 15.0,
    addCleanup: Callable[..., Any] | None = None,
) -> defer.Deferred[LineProcessProtocol]:
    """
    Run a child that should exit by itself; the Deferred fires with its
    L{LineProcessProtocol} once it has, or fails with L{ProcessTimeout}
    (after stopping it) if it has not within C{timeout}.
    """
    proto = spawn(reactor, args, path, env, addCleanup=addCleanup)
    return proto.waitForExit(timeout)


def sitePackagesWithout(directory: str, hidden: str = "gostrelay") -> str:
    """
    Build, under C{directory}, one site directory that holds everything
    this interpreter's site-packages hold except the distribution
    C{hidden}: its package, its metadata, its C{.pth} files and its plugin
    files in C{twisted/plugins}.  Entries are symlinks; C{twisted} and
    C{twisted/plugins} are real directories (so Twisted's plugin cache is
    written here, not into the real tree).

    Why: tox installs this project into the environment the tests run in,
    so a child that should see the project only as some other install
    (editable, or package without plugins) would find the installed copy
    first.  A child started with C{python -S} and this directory given to
    C{site.addsitedir} sees every dependency and no copy of C{hidden}.
    """
    import site

    mirror = os.path.join(directory, "site-packages")
    os.makedirs(mirror, exist_ok=True)

    def isHidden(name: str) -> bool:
        normal = name.lower().replace("-", "_")
        return normal.startswith((hidden, f"__editable__.{hidden}", f"__editable___{hidden}"))

    def link(source: str, target: str, skip: Callable[[str], bool]) -> None:
        for name in os.listdir(source):
            if skip(name) or os.path.lexists(os.path.join(target, name)):
                continue
            os.symlink(os.path.join(source, name), os.path.join(target, name))

    for base in site.getsitepackages() + [site.getusersitepackages()]:
        if not os.path.isdir(base):
            continue
        link(base, mirror, lambda name: isHidden(name) or name == "twisted")
        twisted = os.path.join(base, "twisted")
        if os.path.isdir(twisted):
            os.makedirs(os.path.join(mirror, "twisted", "plugins"), exist_ok=True)
            link(twisted, os.path.join(mirror, "twisted"), lambda name: name == "plugins")
            link(
                os.path.join(twisted, "plugins"),
                os.path.join(mirror, "twisted", "plugins"),
                lambda name: isHidden(name) or name == "dropin.cache",
            )
    return mirror


#: C{python -S -c ISOLATED SITE-DIRECTORY... -- MODULE-CALL}: a child with
#: only the given site directories (see L{sitePackagesWithout}); the
#: arguments after C{--} are the program's, the first of them a statement
#: run after the site directories are added.
ISOLATED = r"""
import site
import sys

split = sys.argv.index("--")
for directory in sys.argv[1:split]:
    site.addsitedir(directory)
statement = sys.argv[split + 1]
sys.argv = ["isolated"] + sys.argv[split + 2:]
exec(statement)
"""


# -- added for tests.test_reliability and bench/reliability.py: what a
# -- child costs, read from /proc (Linux).


def statusKiB(pid: int, field: str = "VmRSS") -> int:
    """
    A size field of C{/proc/<pid>/status} (C{VmRSS}, C{VmHWM}, ...) in KiB;
    0 when the process or the field is gone.
    """
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def openFiles(pid: int) -> int:
    """
    How many descriptors C{pid} has open (entries of C{/proc/<pid>/fd}).
    """
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def cpuSeconds(pid: int) -> float:
    """
    The user + system CPU time C{pid} has used so far (C{/proc/<pid>/stat}).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
