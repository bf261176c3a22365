"""
Assembly: a configuration model becomes a tree of Twisted services.

Types are looked up by name in the plugin registry; a configuration naming
any type that no installed plugin implements is refused as a whole, with
one line per offending type and where it came from, before anything
listens.
"""

from __future__ import annotations

import errno
import ipaddress
import os
from typing import Any

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer
from twisted.internet.endpoints import StandardIOEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IStreamServerEndpoint

from gostrelay import logs, metrics, registry, workers
from gostrelay.admission import AcceptChecks, admissionFor
from gostrelay.auth import Authenticator
from gostrelay.chain import Chain
from gostrelay.config.model import Config, ConfigError, ListenerConfig, ServiceConfig
from gostrelay.config.options import NODE_OPTIONS, SERVICE_OPTIONS, badValues, typeOptions
from gostrelay.layering import AcceptFactory, AcceptStack, acceptStack
from gostrelay.limiter import limitsFor, wrapHandler
from gostrelay.logs import Logger
from gostrelay.router import DEFAULT_DIAL_TIMEOUT, Router
from gostrelay.selector import strategyName
from gostrelay.tracking import ConnectionTable, ServiceFactory, peerKey
from gostrelay.transports.tcp import serverEndpoint


class RefusedConfiguration(ConfigError):
    """
    A configuration names things we cannot run; C{problems} has one line
    for each.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class CannotStart(Exception):
    """
    A service cannot listen (a port in use, a socket path not writable):
    the message is one line naming the service, the address and why;
    C{short} says it in few words (a daemonizing twistd passes at most
    100 bytes to the waiting parent).
    """

    def __init__(self, message: str, short: str = "") -> None:
        super().__init__(message)
        self.short = short or message


class BuildContext:
    """
    What factories may need beyond their own section: the whole
    configuration (for named authers, chains, ...) and routers.
    """

    def __init__(self, reactor: Any, config: Config) -> None:
        self.reactor = reactor
        self.config = config
        self._said: set[Any] = set()

    def once(self, key: Any) -> bool:
        """
        Whether C{key} is new to this build: a warning about a chain's node
        is given once, not once per service that uses the chain.
        """
        if key in self._said:
            return False
        self._said.add(key)
        return True

    def router(self, svc: ServiceConfig, chainName: str, where: str) -> Router:
        """
        The router for a handler (or listener) of C{svc} using chain
        C{chainName} (empty: direct).
        """
        md = svc.md
        dialTimeout = md.getDuration("dialTimeout") or DEFAULT_DIAL_TIMEOUT
        retries = svc.handler.retries if svc.handler is not None else 0
        route = None
        if chainName and not md.getBool("ignoreChain"):
            chain = self.config.chain(chainName)
            if chain is None:
                raise ConfigError(f"{where}: chain {chainName!r} is not defined")

            route = Chain.fromConfig(self.reactor, chain, self, where)
        return Router(self.reactor, route, dialTimeout, retries)


def _where(svc: ServiceConfig, index: int) -> str:
    return svc.source or f"services[{index}] ({svc.name})"


def checkConfig(config: Config) -> list[str]:
    """
    Every reason C{config} cannot run, one line each.
    """
    problems: list[str] = []
    names = set()
    for i, svc in enumerate(config.services):
        where = _where(svc, i)
        if svc.name in names:
            problems.append(f"{where}: duplicate service name {svc.name!r}")
        names.add(svc.name)
        if svc.handler is None or not svc.handler.type:
            problems.append(f"{where}: handler type missing")
        elif registry.lookup("handler", svc.handler.type) is None:
            problems.append(f"{where}: handler {svc.handler.type!r} is not implemented")
        listenerType = svc.listener.type if svc.listener is not None and svc.listener.type else "tcp"
        if registry.lookup("listener", listenerType) is None:
            problems.append(f"{where}: listener {listenerType!r} is not implemented")
        elif listenerType == "endpoint" and svc.handler is not None and svc.handler.type in ("udp", "rudp"):
            problems.append(
                f"{where}: handler {svc.handler.type!r} forwards datagrams; an endpoint description listens "
                "for streams: use -L udp://:PORT/HOST:PORT"
            )
        if svc.forwarder is not None and svc.forwarder.selector is not None:
            try:
                strategyName(svc.forwarder.selector.strategy, f"{where}: forwarder")
            except ConfigError as e:
                problems.append(str(e))
        for chainName in (
            svc.handler.chain if svc.handler else "",
            svc.listener.chain if svc.listener else "",
        ):
            if chainName and config.chain(chainName) is None:
                problems.append(f"{where}: chain {chainName!r} is not defined")
        problems.extend(_unsupportedFeatures(svc, where))
        problems.extend(_badOptionValues(svc, where))
    for c, chain in enumerate(config.chains):
        for h, hop in enumerate(chain.hops):
            hopWhere = f"chains[{c}].hops[{h}] ({chain.name}/{hop.name})"
            if hop.selector is not None:
                try:
                    strategyName(hop.selector.strategy, hopWhere)
                except ConfigError as e:
                    problems.append(str(e))
            for key in ("resolver", "hosts", "interface"):
                if getattr(hop, key):
                    problems.append(f"{hopWhere}: hop {key} is not implemented")
            for n, node in enumerate(hop.nodes):
                nodeWhere = node.source or f"{hopWhere}.nodes[{n}] ({node.name})"
                for key in ("bypass", "bypasses", "resolver", "hosts", "interface", "netns"):
                    if getattr(node, key):
                        problems.append(f"{nodeWhere}: node {key} is not implemented")
                connector = node.connector.type if node.connector and node.connector.type else "http"
                dialer = node.dialer.type if node.dialer and node.dialer.type else "tcp"
                if registry.lookup("connector", connector) is None:
                    problems.append(f"{nodeWhere}: connector {connector!r} is not implemented")
                if registry.lookup("dialer", dialer) is None:
                    problems.append(f"{nodeWhere}: dialer {dialer!r} is not implemented")
                problems.extend(badValues(nodeWhere, node.metadata, NODE_OPTIONS))
                if node.connector is not None:
                    problems.extend(badValues(nodeWhere, node.connector.metadata, typeOptions("connector", connector)))
                if node.dialer is not None:
                    problems.extend(badValues(nodeWhere, node.dialer.metadata, typeOptions("dialer", dialer)))
    # One line per offending type and place: a port range or a node group
    # repeats the same URL.
    return list(dict.fromkeys(problems))


#: GOST features we recognise and do not implement: refused by name rather
#: than silently ignored (the access-control ones above all).
_SERVICE_FIELDS = ("resolver", "hosts", "interface", "observer", "logger", "loggers")
_SERVICE_METADATA = ("interface", "so_mark", "netns", "netns.out", "sniffing", "mitm.certFile", "mitm.keyFile")
_HANDLER_METADATA = ("skipauth", "sniffing", "mitm.certFile", "mitm.keyFile", "probeResist", "knock")
#: Handlers that send a PROXY header to their targets (handler option
#: C{proxyProtocol}).
_PROXY_SENDING_HANDLERS = ("tcp", "forward", "rtcp")


def _badOptionValues(svc: ServiceConfig, where: str) -> list[str]:
    """
    Options of a known kind whose value is not of it (C{bind=yes}): GOST
    reads them as false or zero; we refuse them (docs/differences.md).
    """
    problems = badValues(where, svc.metadata, SERVICE_OPTIONS)
    if svc.handler is not None and svc.handler.type:
        problems.extend(badValues(where, svc.handler.metadata, typeOptions("handler", svc.handler.type)))
    if svc.listener is not None:
        problems.extend(badValues(where, svc.listener.metadata, typeOptions("listener", svc.listener.type or "tcp")))
    return problems


def _unsupportedFeatures(svc: ServiceConfig, where: str) -> list[str]:
    problems = []
    for key in _SERVICE_FIELDS:
        if getattr(svc, key):
            problems.append(f"{where}: service {key} is not implemented")
    for key in ("sockopts", "recorders"):
        if svc.extra.get(key):
            problems.append(f"{where}: service {key} is not implemented")
    md = svc.md
    for key in _SERVICE_METADATA:
        if key in md and md.getString(key) not in ("", "0", "false"):
            problems.append(f"{where}: service option {key} is not implemented")
    if svc.handler is not None:
        for key in ("chainGroup", "limiter", "observer"):
            if getattr(svc.handler, key):
                problems.append(f"{where}: handler {key} is not implemented")
        hmd = svc.handler.md
        for key in _HANDLER_METADATA:
            if key in hmd and hmd.getString(key) not in ("", "0", "false"):
                problems.append(f"{where}: handler option {key} is not implemented")
        sending = hmd.getInt("proxyProtocol")
        if sending not in (0, 1, 2):
            problems.append(f"{where}: handler option proxyProtocol={sending}: 1 or 2 (PROXY protocol version)")
        elif sending and svc.handler.type not in _PROXY_SENDING_HANDLERS:
            problems.append(
                f"{where}: handler option proxyProtocol (sending a PROXY header to the target) "
                f"is implemented for the tcp and rtcp forwarders, not for {svc.handler.type}"
            )
    receiving = md.getInt("proxyProtocol")
    if receiving not in (0, 1, 2):
        problems.append(f"{where}: service option proxyProtocol={receiving}: 1 or 2 (PROXY protocol version)")
    return problems


class GostService(service.Service):
    """
    One GOST service: a listener feeding a handler.
    """

    log = Logger()

    def __init__(
        self,
        svc: ServiceConfig,
        listener: Any,
        handler: Any,
        clock: Any = None,
        limits: tuple[int, int] = (0, 0),
        proxyHeader: bool = False,
        admission: Any = None,
    ) -> None:
        self.name = svc.name
        #: GOST's admission (gostrelay.admission), the accept layers' hook.
        self.admission = admission
        self.gracePeriod = svc.md.getDuration("gracePeriod")
        self.stack: Any = None
        if not getattr(listener, "datagram", False):
            # One accept-layer order for every stream listener
            # (gostrelay.layering): PROXY -> admission -> limits -> TLS/ws ->
            # handler.
            endpoint = getattr(listener, "endpoint", None)
            stack = acceptStack(endpoint) if _isServerEndpoint(endpoint) else AcceptStack(None)
            self.stack = stack

            if isinstance(stack.socket, StandardIOEndpoint):
                logs.keepOffStandardOutput()
            handler = AcceptFactory(
                stack.wrap(ServiceFactory(handler, svc.name, clock)),
                ConnectionTable(svc.name, clock, *limits),
                clock,
                proxyHeader=proxyHeader or stack.proxyHeader,
                admission=admission,
                outermost=stack.outermost,
            )
        self.config = svc
        self.listener = listener
        self.handler = handler
        self.port: Any = None
        self.listening: defer.Deferred[Any] = defer.Deferred()
        #: The listener's pending listen() (an endpoint may take a while:
        #: rtcp: waits for the relay server's answer).
        self._listen: defer.Deferred[Any] | None = None

    def _listenAccepting(self) -> Any:
        """
        Listen with the accept layers at the socket (the listener's own
        endpoint taken apart), else through the listener.
        """
        if self.stack is not None and self.stack.socket is not None:
            return self.stack.socket.listen(self.handler)
        return self.listener.listen(self.handler)

    def privilegedStartService(self) -> None:
        """
        Listen now, so that a port that cannot be bound stops the process at
        start (twistd and the console script exit non-zero), as
        L{twisted.application.internet.StreamServerEndpointService} does.
        """
        service.Service.privilegedStartService(self)
        if self._listen is not None:
            return  # listening, or on its way (startService after privilegedStartService)
        d = self._listen = defer.maybeDeferred(self._listenAccepting)
        failures: list[Any] = []
        started = [False]

        def listened(port: Any) -> Any:
            self.port = port
            host = port.getHost()
            # A remote listener (rtcp, rudp) listens on a relay server, not
            # here: it says where.
            describe = getattr(self.listener, "describeListening", None)
            handlerType = self.config.handler.type if self.config.handler else "?"
            listenerType = self.config.listener.type if self.config.listener else "tcp"
            if listenerType == "endpoint" and self.config.source:
                # A --listen description names itself, as the open-relay
                # warning below does: "relay on tcp:8420".
                kind = f"{handlerType} on {self.config.source}"
            else:
                kind = f"{handlerType}+{listenerType}"
            self.log.info(
                "{name} ({kind}) {where}",
                name=self.name,
                kind=kind,
                where=describe() if describe is not None else f"listening on {_hostText(host)}",
            )
            if isOpenProxy(self.config, host):
                self.log.warn(
                    "{name} ({source}) is an open {kind}: no users, listening on {addr}; anyone who reaches it "
                    "can use it (add users, e.g. --user NAME:PASS or relay://user:pass@...)",
                    name=self.name,
                    source=self.config.source or self.config.addr,
                    kind="relay" if self.config.handler and self.config.handler.type == "relay" else "proxy",
                    addr=_hostText(host),
                )
            self.listening.callback(port)
            return port

        def failed(f: Any) -> None:
            failures.append(f)
            if started[0] and not f.check(defer.CancelledError):
                # Too late to stop the start: one line, the other services go on.
                self.log.critical("{line}", line=_cannotListen(self.config, f.value)[0])
            self.listening.errback(f)
            self.listening.addErrback(lambda _: None)

        d.addCallbacks(listened, failed)
        started[0] = True
        if failures:
            raise CannotStart(*_cannotListen(self.config, failures[0].value)) from None

    def startService(self) -> None:
        if self._listen is None:
            self.privilegedStartService()
        if self.admission is not None:
            self.admission.start()
        service.Service.startService(self)

    def stopService(self) -> Any:
        """
        Stop listening at once; let established connections finish for
        C{gracePeriod} (service metadata, 0 = close them now), then close
        them.
        """
        service.Service.stopService(self)
        if self.admission is not None:
            self.admission.stop()
        waits = []
        if self._listen is not None and not self._listen.called:
            self._listen.cancel()
        if self.port is not None:
            port, self.port = self.port, None
            # Standard I/O (--listen stdio:) is its one connection, not a
            # port: the drain below closes it.
            stopListening = getattr(port, "stopListening", None)
            if stopListening is not None:
                waits.append(defer.maybeDeferred(stopListening))
        drain = getattr(self.handler, "drain", None)
        if drain is not None:
            waits.append(drain(self.gracePeriod))
        return defer.gatherResults(waits) if waits else None


#: Handlers that take their destination from the client: without users on
#: a public address, anyone may use them.
_PROXY_HANDLERS = frozenset({"relay", "auto", "http", "socks", "socks4", "socks4a", "socks5"})


def isOpenProxy(svc: ServiceConfig, host: Any) -> bool:
    """
    Whether C{svc}, listening on C{host}, lets anyone who reaches it choose
    where to connect: a proxy handler without users or forward targets on a
    non-loopback IP address.
    """
    handler = svc.handler
    if handler is None or handler.type not in _PROXY_HANDLERS:
        return False
    if handler.auth is not None and (handler.auth.username or handler.auth.file):
        return False
    if handler.auther or handler.authers:
        return False
    if svc.forwarder is not None and svc.forwarder.nodes:
        return False
    address = getattr(host, "host", None)
    if not isinstance(address, str):
        return False  # unix sockets, stdio: reached only by local users
    try:
        return not ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def _cannotListen(svc: ServiceConfig, error: BaseException) -> tuple[str, str]:
    """
    One line for a listening failure (which service, which address, why),
    and a short form.
    """
    where = svc.source or svc.name
    if isinstance(error, CannotListenError):
        interface = error.interface or ""
        if isinstance(error.port, (str, bytes)) and not str(error.port).isdigit():
            address = error.port.decode("utf-8", "replace") if isinstance(error.port, bytes) else error.port
        elif ":" in interface:
            address = f"[{interface}]:{error.port}"
        else:
            address = f"{interface}:{error.port}"
        socketError = error.socketError
        code = getattr(socketError, "errno", None)
        if code == errno.EADDRINUSE:
            reason, short = "the address is in use (another process listens there)", "address in use"
        elif socketError == "Cannot acquire lock":
            # A unix socket whose lock file (PATH.lock, Twisted's default
            # lockfile=1) another live process holds.
            reason = f"the address is in use (another process holds its lock file {address}.lock)"
            short = "address in use"
        elif code is not None:
            reason = short = (getattr(socketError, "strerror", None) or os.strerror(code)).lower()
        else:
            reason = short = str(socketError)
        return f"{where}: cannot listen on {address}: {reason}", f"cannot listen on {address}: {short}"
    lock = getattr(error, "filename2", None)
    if isinstance(error, OSError) and isinstance(lock, (str, bytes)):
        # A unix socket's lock file (Twisted's default lockfile=1) could not
        # be made: the error names the pid and the lock, not the socket.
        lock = lock.decode("utf-8", "replace") if isinstance(lock, bytes) else lock
        if lock.endswith(".lock"):
            address = lock[: -len(".lock")]
            reason = (error.strerror or str(error)).lower()
            return (
                f"{where}: cannot listen on {address}: cannot create its lock file {lock}: {reason}",
                f"cannot listen on {address}: {reason}",
            )
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"{where}: cannot listen: {text}", f"cannot listen: {text}"


def _isServerEndpoint(endpoint: Any) -> bool:
    return endpoint is not None and IStreamServerEndpoint.providedBy(endpoint)


def _hostText(host: Any) -> str:
    name = getattr(host, "name", None)
    if getattr(host, "host", None) is None and isinstance(name, (str, bytes)):
        return "unix:" + (name.decode("utf-8", "replace") if isinstance(name, bytes) else name)
    h = getattr(host, "host", None)
    p = getattr(host, "port", None)
    if h is None:
        return peerKey(host)  # standard I/O: "stdio"
    if ":" in h:
        return f"[{h}]:{p}"
    return f"{h}:{p}"


def buildServices(reactor: Any, config: Config) -> service.MultiService:
    """
    The services of C{config}, under one L{MultiService}.

    @raise RefusedConfiguration: when any part cannot run.
    """
    for svc in config.services:
        if svc.listener is None:
            svc.listener = ListenerConfig(type="tcp")  # GOST's default
    problems = checkConfig(config)
    if problems:
        raise RefusedConfiguration(problems)
    context = BuildContext(reactor, config)
    top = service.MultiService()

    if config.metrics and workers.INDEX == 0:
        metricsService(reactor, config.metrics, config).setServiceParent(top)
    built: list[GostService] = []

    for i, svc in enumerate(config.services):
        where = _where(svc, i)
        assert svc.handler is not None
        if workers.INDEX > 0 and svc.listener is not None and svc.listener.type in ("rtcp", "rudp", "runix"):
            continue  # a remote port is bound once: by the first worker
        listenerType = svc.listener.type if svc.listener is not None and svc.listener.type else "tcp"
        handlerPlugin = registry.lookup("handler", svc.handler.type)
        listenerPlugin = registry.lookup("listener", listenerType)
        assert handlerPlugin is not None and listenerPlugin is not None
        try:
            handler = handlerPlugin.load()(reactor, svc, context)
            listener = listenerPlugin.load()(reactor, svc, context)
            # GOST's admission and rlimiter: checks at accept; its limiter:
            # back-pressure on the handler's client connections.
            handler, admission = _limited(reactor, handler, listener, svc, config, where)
        except ConfigError as e:
            problems.append(str(e) if str(e).startswith(where) else f"{where}: {e}")
            continue
        try:
            limits = connectionLimits(svc, config, where)
        except ConfigError as e:
            problems.append(str(e))
            continue
        proxyHeader = svc.md.getInt("proxyProtocol") > 0
        if proxyHeader and not _isServerEndpoint(getattr(listener, "endpoint", None)):
            problems.append(
                f"{where}: service option proxyProtocol (a PROXY header required from every client) "
                f"applies to tcp, tls, ws and wss listeners, not {listenerType}; to send a header to "
                "the targets, give the handler the option (handler.proxyProtocol=1 or 2)"
            )
            continue
        built.append(GostService(svc, listener, handler, reactor, limits, proxyHeader, admission))
    if problems:
        raise RefusedConfiguration(problems)
    for gs in built:
        gs.setServiceParent(top)
    if metrics.current is not None:
        metrics.current.services.labels(metrics.current.host).set(len(built))
    return top


def _limited(reactor: Any, handler: Any, listener: Any, svc: ServiceConfig, config: Config, where: str) -> tuple[Any, Any]:
    """
    C{handler} under the service's traffic limiter, and the accept check
    (admission, rlimiter) for the accept layers, or C{None}.
    """
    named = [k for k in ("admission", "limiter", "rlimiter") if getattr(svc, k)] + (["admission"] if svc.admissions else [])
    if not named:
        return handler, None
    if getattr(listener, "datagram", False):
        raise ConfigError(f"{where}: service {', '.join(dict.fromkeys(named))}: implemented for stream listeners, not UDP")

    traffic, requests = limitsFor(reactor, svc, config, where)
    checks = [c for c in (admissionFor(reactor, svc, config, where), requests) if c is not None]
    return wrapHandler(reactor, handler, traffic, svc.name), AcceptChecks(checks) if checks else None


def connectionLimits(svc: ServiceConfig, config: Config, where: str) -> tuple[int, int]:
    """
    C{(per service, per client IP)} connection limits: ours C{maxConns},
    C{maxConnsPerIP} (service metadata), and GOST's C{climiter} with
    C{"$ N"} and C{"$$ N"} limits; the smallest of each wins.
    """
    md = svc.md
    total, perIP = md.getInt("maxConns"), md.getInt("maxConnsPerIP")
    if svc.climiter:
        for limiter in config.climiters:
            if limiter.name == svc.climiter:
                break
        else:
            raise ConfigError(f"{where}: climiter {svc.climiter!r} is not defined")
        for line in limiter.extra.get("limits") or []:
            fields = str(line).split()
            if len(fields) != 2 or not fields[1].isdigit():
                raise ConfigError(f"{where}: climiter limit {line!r} is not understood")
            if fields[0] == "$":
                total = min(total, int(fields[1])) if total else int(fields[1])
            elif fields[0] == "$$":
                perIP = min(perIP, int(fields[1])) if perIP else int(fields[1])
            else:
                raise ConfigError(f"{where}: climiter limit {line!r}: per-address limits are not implemented")
    return total, perIP


def metricsService(reactor: Any, section: Any, config: Config) -> service.IService:
    """
    The Prometheus endpoint of a C{metrics:} section (C{addr}, C{path},
    C{auth} or C{auther}).
    """
    if not isinstance(section, dict) or not section.get("addr"):
        raise ConfigError("metrics: needs an addr, e.g. metrics: {addr: \":9000\"}")
    m = metrics.enable()
    users = None
    auth = section.get("auth")
    if isinstance(auth, dict) and auth.get("username"):
        users = Authenticator({str(auth["username"]): str(auth.get("password", ""))})
    elif section.get("auther"):
        auther = config.auther(str(section["auther"]))
        if auther is None:
            raise ConfigError(f"metrics: auther {section['auther']!r} is not defined")
        users = Authenticator({a.username: a.password for a in auther.auths})
    site = metrics.metricsSite(m, str(section.get("path") or metrics.DEFAULT_PATH), users)
    endpoint = serverEndpoint(reactor, str(section["addr"]), where="metrics")
    svc = StreamServerEndpointService(endpoint, site)
    svc._raiseSynchronously = True
    svc.setName("metrics")
    return svc
