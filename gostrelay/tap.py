"""
The command line, shared by C{twistd relay} and the C{gostrelay} console
script: GOST's flags (C{-L -F -C -O -D -V}) and the service they build.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Sequence
from urllib.parse import parse_qsl, unquote

from twisted.application import service
from twisted.python import usage

import gostrelay
import twisted
from gostrelay import logs, workers
from gostrelay.build import CannotStart, RefusedConfiguration, buildServices
from gostrelay.config.files import dumpConfig, findDefault, loadSource
from gostrelay.config.listen import DESCRIPTION as _DESCRIPTION
from gostrelay.config.listen import ListenSpec, classify
from gostrelay.config.model import Config, ConfigError
from gostrelay.config.url import buildConfigFromCommandLine
from gostrelay.logs import Logger
from gostrelay.operations import ReloadService, raiseFileLimit
from gostrelay.registry import PluginsMissing

SYNOPSIS = """\
Usage: gostrelay [options]
       twistd -n --pidfile= relay [options]"""

DESCRIPTION = """\
Run GOST services (relay servers, forwarding, proxy entries) on Twisted.
A -L/--listen value is a GOST URL (relay://user:pass@:8420) or a Twisted
server endpoint description (tcp:8420, ssl:8443:privateKey=key.pem,
unix:/run/relay.sock); the flags after a description (--handler, --user,
--users, --target, --option) apply to that service only. See docs/cli.md.
"""

USAGE_EXAMPLE = """\
Examples, GOST's face:
  relay server with a user:      gostrelay -L relay://user:pass@:8420
  proxy entry through it:        gostrelay -L :8080 -F relay://user:pass@server:8420
  relay forward mode:            gostrelay -L relay://:8420/:53
Examples, Twisted's face:
  relay server with a user:      twistd -n --pidfile= relay --listen tcp:8420 --user user:pass
  over Twisted's TLS:            twistd -n --pidfile= relay --listen ssl:8443:privateKey=key.pem:certKey=cert.pem
  on a unix socket:              twistd -n --pidfile= relay --listen unix:/run/relay.sock
  relay forward mode with BIND:  twistd -n --pidfile= relay --listen tcp:8420 --target :53 --option bind=true
"""

#: GOST's long flags, which GOST users type with one dash.
_LONG_FLAGS = ("metrics", "api", "workers", "output", "listen", "forward", "config", "debug", "version", "help")
_SINGLE_DASH_LONG = re.compile(r"^-(?P<name>[A-Za-z][A-Za-z0-9-]+)(?P<rest>=.*)?$")


def rewriteGostFlags(args: Sequence[str]) -> list[str]:
    """
    Turn GOST's single-dash long flags (C{-metrics :9000}) into the
    C{--metrics} form L{usage.Options} understands.  Short flags and their
    bundles (C{-DD}, C{-L}) are left alone; so is everything after C{--}.
    """
    out: list[str] = []
    args = list(args)
    for i, arg in enumerate(args):
        if arg == "--":
            out.extend(args[i:])
            break
        m = _SINGLE_DASH_LONG.match(arg)
        if m and m.group("name") in _LONG_FLAGS:
            out.append("--" + m.group("name") + (m.group("rest") or ""))
        else:
            out.append(arg)
    return out


def versionText() -> str:
    return (
        f"gostrelay {gostrelay.__version__} (Twisted {twisted.__version__}, "
        f"Python {sys.version.split()[0]})"
    )


#: Per-service flags, with how to say the same in a GOST URL.
_PER_SERVICE_IN_URL = {
    "handler": "the scheme, relay://",
    "user": "user info, relay://user:pass@:8420",
    "users": "a configuration file's auther",
    "target": "the path, relay://:8420/host:port",
    "option": "the query, relay://:8420?key=value",
}


class Options(usage.Options):
    synopsis = SYNOPSIS
    longdesc = ""

    optFlags: list[list[str]] = []
    optParameters = [
        ["output", "O", None, "Print the configuration (yaml or json) and exit."],
        ["metrics", None, None, "Prometheus metrics address (GOST's -metrics)."],
        ["api", None, None, "Web API address (GOST's -api)."],
        ["workers", None, None, "Worker processes sharing each listening socket."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["forward"] = []
        self["config"] = []
        self["debug"] = 0

    def getSynopsis(self) -> str:
        # One synopsis for both faces, also under twistd (which would
        # otherwise prepend its own).
        return SYNOPSIS

    def getUsage(self, width: int | None = None) -> str:
        return DESCRIPTION + "\n" + super().getUsage(width).rstrip("\n") + "\n\n" + USAGE_EXAMPLE

    def opt_help(self) -> None:
        """Display this help and exit."""
        print(SYNOPSIS + "\n\n" + self.getUsage())
        raise SystemExit(0)

    opt_h = opt_help

    def opt_listen(self, value: str) -> None:
        """A service: a GOST URL (GOST's -L) or an endpoint description (repeatable)."""
        try:
            kind = classify(value)
        except (ConfigError, PluginsMissing) as e:
            # Reported when the configuration is built: one line, exit 1.
            self["listen"].append(ListenSpec(value, error=str(e)))
            return
        self["listen"].append(ListenSpec(value) if kind == _DESCRIPTION else value)

    opt_L = opt_listen

    def _described(self, flag: str) -> Any:
        if not self["listen"]:
            raise usage.UsageError(f"--{flag} applies to the --listen DESCRIPTION before it; there is none")
        last = self["listen"][-1]
        if not isinstance(last, ListenSpec):
            raise usage.UsageError(
                f"--{flag} applies to an endpoint description (--listen tcp:8420 --{flag} ...); "
                f"{last} is a GOST URL: use {_PER_SERVICE_IN_URL[flag]}"
            )
        return last

    def opt_handler(self, name: str) -> None:
        """After --listen DESCRIPTION: its handler type (default relay)."""
        spec = self._described("handler")
        if spec.handler:
            raise usage.UsageError(f"--handler given twice for {spec.description}")
        spec.handler = name

    def opt_user(self, value: str) -> None:
        """After --listen DESCRIPTION: a user NAME:PASS (repeatable)."""
        spec = self._described("user")
        if ":" not in value:
            raise usage.UsageError(f"--user takes NAME:PASS, got {value!r}")
        spec.users.append(value)

    def opt_users(self, path: str) -> None:
        """After --listen DESCRIPTION: a users file (one 'name password' a line)."""
        spec = self._described("users")
        if spec.usersFile:
            raise usage.UsageError(f"--users given twice for {spec.description}")
        spec.usersFile = path

    def opt_target(self, value: str) -> None:
        """After --listen DESCRIPTION: a forward target HOST:PORT (repeatable)."""
        spec = self._described("target")
        if not value or "," in value:
            raise usage.UsageError(f"--target takes one HOST:PORT, got {value!r}: repeat --target for more")
        spec.targets.append(value)

    def opt_option(self, value: str) -> None:
        """After --listen DESCRIPTION: KEY=VALUE, as in a URL query (repeatable)."""
        spec = self._described("option")
        key, eq, item = value.partition("=")
        if not eq or not key:
            raise usage.UsageError(f"--option takes KEY=VALUE, got {value!r}")
        spec.options.append((key, item))

    def opt_forward(self, url: str) -> None:
        """A chain node URL, GOST's -F: one hop each (repeatable)."""
        self["forward"].append(url)

    opt_F = opt_forward

    def opt_config(self, source: str) -> None:
        """A configuration file, - for stdin, or inline JSON (repeatable)."""
        self["config"].append(source)

    opt_C = opt_config

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(versionText())
        raise SystemExit(0)

    opt_V = opt_version

    def opt_debug(self) -> None:
        """Debug logging; twice (-DD) adds per-frame protocol logging."""
        self["debug"] += 1

    opt_D = opt_debug

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        if options is None:
            options = sys.argv[1:]
        self.arguments = list(options)
        try:
            super().parseOptions(rewriteGostFlags(options))
        except usage.UsageError as e:
            if getattr(self, "parent", None) is None:
                raise
            # Under twistd, which would print its whole usage text: one
            # line, as from the console script.
            print(f"twistd relay: {e}", file=sys.stderr)
            print("Try 'twistd relay --help'.", file=sys.stderr)
            raise SystemExit(2) from None

    def postOptions(self) -> None:
        if self["output"] not in (None, "yaml", "json"):
            raise usage.UsageError("-O takes yaml or json")
        logs.configure(self["debug"])
        parent = getattr(self, "parent", None)
        if parent is not None and not parent.get("logger"):
            # Under twistd: our observer honours -D / -DD, and twistd's
            # --logfile (twistd.log when daemonized without one).
            logfile = parent.get("logfile")
            if not logfile and not parent.get("nodaemon"):
                logfile = "twistd.log"
            logs.configure(self["debug"], path=logfile if logfile and logfile != "-" else None)
            parent["logger"] = "gostrelay.logs.observer"

    def loadConfig(self) -> Config:
        """
        The configuration the options describe: files first, then the
        command line's services and chain, as GOST merges them.
        """
        sources = list(self["config"])
        if not sources and not self["listen"]:
            found = findDefault()
            if found is None:
                raise usage.UsageError("no services: give -L or -C\n\n" + USAGE_EXAMPLE.rstrip("\n"))
            sources.append(found)
        config = Config()
        for source in sources:
            config.merge(loadSource(source))
        if not self["config"] and not self["listen"]:
            # A file nobody named on the command line is running: say which,
            # or `gostrelay` after `gostrelay -O yaml > gost.yaml` starts
            # services the user did not ask for, with no hint where from.
            config.warnings.append(f"no -L or -C given: running {sources[0]} (found as GOST finds its default file)")
        if self["listen"] or self["forward"]:
            commandLine = buildConfigFromCommandLine(self["listen"], self["forward"])
            config.warnings.extend(commandLine.warnings)
            config.merge(commandLine)
        if self["workers"]:
            try:
                config.workers = int(self["workers"])
            except ValueError:
                raise usage.UsageError("--workers takes a number") from None
        return config


def parseMetricsFlag(value: str) -> dict[str, Any]:
    """
    GOST's C{-metrics [user:pass@]addr[?path=/metrics]} as the YAML
    C{metrics:} section.
    """
    rest, _, query = value.partition("?")
    userinfo, at, addr = rest.rpartition("@")
    section: dict[str, Any] = {"addr": addr}
    path = dict(parse_qsl(query)).get("path")
    if path:
        section["path"] = path
    if at:
        user, _, password = userinfo.partition(":")
        section["auth"] = {"username": unquote(user), "password": unquote(password)}
    return section


def _fail(lines: Sequence[str], code: int = 1) -> None:
    for line in lines:
        print(f"gostrelay: {line}", file=sys.stderr)
    raise SystemExit(code)


def _refuseWorkers(config: Config) -> None:
    """
    C{--workers} shares a listening socket between processes by
    C{SO_REUSEPORT}, which only our own address listeners can do.
    """
    if not config.workers or config.workers <= 1:
        return
    described = [svc for svc in config.services if svc.listener is not None and svc.listener.type == "endpoint"]
    if described:
        svc = described[0]
        _fail([
            f"{svc.source or svc.name}: --workers cannot share an endpoint description's socket: "
            f"give the service as a GOST URL (-L relay://:PORT) or run without --workers"
        ])


def makeService(options: Options, reactor: Any = None) -> service.IService:
    """
    Build the services, or print why not and exit: C{-O} prints the
    configuration and exits 0; a configuration that cannot run exits 1 with
    one line per problem; a command line without services exits 2.
    """
    if reactor is None:
        # Imported here: twistd installs its reactor before this runs.
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    try:
        config = options.loadConfig()
    except usage.UsageError as e:
        _fail([str(e)], 2)
    except ConfigError as e:
        _fail([str(e)])
    except PluginsMissing as e:
        _fail([str(e)])
    for warning in config.warnings:
        print(f"gostrelay: warning: {warning}", file=sys.stderr)
    if options["metrics"]:
        config.metrics = parseMetricsFlag(options["metrics"])
    if options["output"]:
        sys.stdout.write(dumpConfig(config, options["output"]))
        sys.stdout.flush()
        raise SystemExit(0)
    unsupported = []
    if options["api"] or config.api:
        unsupported.append("-api: the web API is not implemented")
    if unsupported:
        _fail(unsupported)
    if not config.services:
        _fail(["the configuration has no services"], 2)
    _refuseWorkers(config)

    if (config.workers and config.workers > 1) or workers.INDEX > 0:
        workers.REUSE_PORT = True
    parent = getattr(options, "parent", None)
    top = TopService(reactor, underTwistd=parent is not None, daemon=parent is not None and not parent.get("nodaemon"))
    try:
        services = buildServices(reactor, config)
    except RefusedConfiguration as e:
        _fail(e.problems)
    except ConfigError as e:
        _fail([str(e)])
    except PluginsMissing as e:
        _fail([str(e)])
    for child in list(services):
        child.disownServiceParent()
        child.setServiceParent(top)

    raiseFileLimit()
    reloader = ReloadService(reactor, top)
    reloader.setServiceParent(top)
    if config.workers and config.workers > 1 and workers.INDEX == 0:
        spawner = _WorkerService(reactor, config.workers, _childArguments(getattr(options, "arguments", [])))
        spawner.setServiceParent(top)
        reloader.workers = spawner.processes
    return top


class TopService(service.MultiService):
    """
    All of a run's services: a port that cannot be bound is one line (also
    under twistd, which would print a traceback), and, under twistd, a stop
    by SIGTERM or SIGINT after a clean shutdown exits 0 as the console
    script does (twistd would kill itself with the signal: exit 143).
    """

    def __init__(self, reactor: Any, underTwistd: bool = False, daemon: bool = False) -> None:
        super().__init__()
        self.reactor = reactor
        self.underTwistd = underTwistd
        self.daemon = daemon
        self.stoppedCleanly = False
        if underTwistd:
            reactor.addSystemEventTrigger("after", "shutdown", self._exitCleanly)

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotStart as e:
            if not self.underTwistd:
                raise  # the console script prints it
            if self.daemon:
                # A daemonizing twistd hands the first 100 bytes of the
                # exception to the waiting parent, which prints them: the
                # short form there, the whole line in the log.
                Logger(namespace="gostrelay").error("gostrelay: {line}", line=str(e))
                raise RuntimeError(e.short) from None
            print(f"gostrelay: {e}", file=sys.__stderr__)
            raise SystemExit(1) from None

    def stopService(self) -> Any:
        d = super().stopService()

        def stopped(results: Any) -> Any:
            self.stoppedCleanly = all(ok for ok, _ in results or [])
            return results

        if d is not None:
            d.addCallback(stopped)
        else:
            self.stoppedCleanly = True
        return d

    def _exitCleanly(self) -> None:
        if self.stoppedCleanly and getattr(self.reactor, "_exitSignal", None) is not None:
            self.reactor._exitSignal = None


def _childArguments(arguments: list[str]) -> list[str]:
    """
    The first worker's arguments for the others, without C{--workers}
    (they know from the environment that they are workers).
    """
    out: list[str] = []
    skip = False
    for arg in rewriteGostFlags(arguments):
        if skip:
            skip = False
            continue
        if arg == "--workers":
            skip = True
            continue
        if arg.startswith("--workers="):
            continue
        out.append(arg)
    return out


class _WorkerService(service.Service):
    """
    Starts the other workers with the first and stops them with it.
    """

    def __init__(self, reactor: Any, count: int, arguments: list[str]) -> None:
        self.reactor = reactor
        self.count = count
        self.arguments = arguments
        self.processes: list[Any] = []

    def startService(self) -> None:
        service.Service.startService(self)
        # Filled in place: the reload service holds the same list.
        self.processes.extend(workers.spawnWorkers(self.reactor, self.count, self.arguments))

    def stopService(self) -> Any:
        service.Service.stopService(self)
        workers.stopWorkers(self.processes)
        return None
