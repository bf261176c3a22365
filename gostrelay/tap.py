"""
The command line, shared by C{twistd relay} and the C{gostrelay} console
script: GOST's flags (C{-L -F -C -O -D -V}) and the service they build.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Sequence

from twisted.application import service
from twisted.python import usage

import gostrelay
from gostrelay import logs
from gostrelay.config.files import dumpConfig, findDefault, loadSource
from gostrelay.config.model import Config, ConfigError
from gostrelay.config.url import buildConfigFromCommandLine

USAGE_EXAMPLE = """\
Examples (from GOST's relay page):
  relay server with a user:    -L relay://username:password@:12345
  proxy entry through it:      -L :8080 -F relay://username:password@server:12345?nodelay=false
  relay forward mode:          -L relay://:8420/:53
"""

#: GOST's long flags, which GOST users type with one dash.
_LONG_FLAGS = ("metrics", "api", "workers", "output", "listen", "forward", "config", "debug", "version")
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
    import twisted

    return (
        f"gostrelay {gostrelay.__version__} (Twisted {twisted.__version__}, "
        f"Python {sys.version.split()[0]})"
    )


class Options(usage.Options):
    synopsis = "Usage: gostrelay [options]  (or: twistd -n --pidfile= relay [options])"
    longdesc = "Run GOST services (relay, forwarding, proxy entries) on Twisted.\n\n" + USAGE_EXAMPLE

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

    def opt_listen(self, url: str) -> None:
        """A service URL, GOST's -L (repeatable)."""
        self["listen"].append(url)

    opt_L = opt_listen

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
        super().parseOptions(rewriteGostFlags(options))

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
                raise usage.UsageError("no services: give -L or -C\n\n" + USAGE_EXAMPLE)
            sources.append(found)
        config = Config()
        for source in sources:
            config.merge(loadSource(source))
        if self["listen"] or self["forward"]:
            config.merge(buildConfigFromCommandLine(self["listen"], self["forward"]))
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
    from urllib.parse import parse_qsl, unquote

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


def makeService(options: Options, reactor: Any = None) -> service.IService:
    """
    Build the services, or print why not and exit: C{-O} prints the
    configuration and exits 0; a configuration that cannot run exits 1 with
    one line per problem; a command line without services exits 2.
    """
    from gostrelay.build import RefusedConfiguration, buildServices

    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    try:
        config = options.loadConfig()
    except usage.UsageError as e:
        _fail([str(e)], 2)
    except ConfigError as e:
        _fail([str(e)])
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
    from gostrelay import workers

    if (config.workers and config.workers > 1) or workers.INDEX > 0:
        workers.REUSE_PORT = True
    try:
        top = buildServices(reactor, config)
    except RefusedConfiguration as e:
        _fail(e.problems)
    except ConfigError as e:
        _fail([str(e)])
    from gostrelay.operations import ReloadService, raiseFileLimit

    raiseFileLimit()
    reloader = ReloadService(reactor, top)
    reloader.setServiceParent(top)
    if config.workers and config.workers > 1 and workers.INDEX == 0:
        spawner = _WorkerService(reactor, config.workers, _childArguments(getattr(options, "arguments", [])))
        spawner.setServiceParent(top)
        reloader.workers = spawner.processes
    return top


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
        from gostrelay import workers

        service.Service.startService(self)
        # Filled in place: the reload service holds the same list.
        self.processes.extend(workers.spawnWorkers(self.reactor, self.count, self.arguments))

    def stopService(self) -> Any:
        from gostrelay import workers

        service.Service.stopService(self)
        workers.stopWorkers(self.processes)
        return None
