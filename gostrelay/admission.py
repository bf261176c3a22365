"""
GOST's admission: which clients a service accepts at all, by their
address, checked when the connection is accepted (after the PROXY header,
if the service requires one) and before any other byte is read.  A refused
client is closed without a reply; the target is never dialed.

Configuration, as GOST's:

  - command line: C{?admission=10.0.0.0/8,192.0.2.7} (a deny list) or
    C{?admission=~10.0.0.0/8} (a leading C{~}: an allow list);
  - YAML: C{admissions: [{name, whitelist, matchers, file: {path},
    reload}]} referenced by a service's C{admission:} or C{admissions:}.

Matchers are IP addresses and CIDR blocks, as GOST's, and (ours) host
names, resolved when the list is loaded and at every reload (GOST ignores
names).  A file holds one matcher a line, C{#} starts a comment; with
C{reload} (a duration, at least 1 s) the file is read and the names
resolved again that often.  Several admissions on one service must all
admit a client (GOST's admission group).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any

from twisted.internet import defer, task
from twisted.internet.interfaces import IResolutionReceiver
from zope.interface import implementer

from gostrelay.config.metadata import Metadata
from gostrelay.config.model import Config, ConfigError, ServiceConfig
from gostrelay.logs import Logger

_log = Logger(namespace="gostrelay.admission")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: GOST's shortest reload period.
MIN_RELOAD = 1.0


def _normalise(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


#: A host name: dot-separated labels of letters, digits, C{-} and C{_}.
_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$")


def parseMatchers(patterns: Sequence[str]) -> tuple[set[IPAddress], list[IPNetwork], list[str], list[str]]:
    """
    Split matcher patterns into IPs, networks, host names and the rest
    (neither: C{10.0.0.0/33}, C{*.example.com}, which GOST skips in
    silence); comments (C{#}) and blank entries dropped.
    """
    ips: set[IPAddress] = set()
    nets: list[IPNetwork] = []
    names: list[str] = []
    bad: list[str] = []
    for raw in patterns:
        pattern = str(raw).split("#", 1)[0].strip()
        if not pattern:
            continue
        try:
            ips.add(_normalise(ipaddress.ip_address(pattern.strip("[]"))))
            continue
        except ValueError:
            pass
        try:
            nets.append(ipaddress.ip_network(pattern, strict=False))
            continue
        except ValueError:
            pass
        name = pattern.rstrip(".").lower()
        if _HOST_NAME.match(name) and "/" not in pattern:
            names.append(name)
        else:
            bad.append(pattern)
    return ips, nets, names, bad


@implementer(IResolutionReceiver)
class _Collect:
    def __init__(self) -> None:
        self.addresses: list[str] = []
        self.done: defer.Deferred[list[str]] = defer.Deferred()

    def resolutionBegan(self, resolution: Any) -> None:
        pass

    def addressResolved(self, address: Any) -> None:
        self.addresses.append(address.host)

    def resolutionComplete(self) -> None:
        self.done.callback(self.addresses)


class AdmissionList:
    """
    One admission: an allow list (C{whitelist}) or a deny list.
    """

    def __init__(
        self,
        reactor: Any,
        name: str,
        matchers: Sequence[str] = (),
        whitelist: bool = False,
        path: str = "",
        reloadPeriod: float = 0.0,
    ) -> None:
        self.reactor = reactor
        self.name = name
        self.whitelist = whitelist
        self.matchers = list(matchers)
        self.path = path
        self.reloadPeriod = max(reloadPeriod, MIN_RELOAD) if reloadPeriod > 0 else 0.0
        self.ips: set[IPAddress] = set()
        self.nets: list[IPNetwork] = []
        self.names: list[str] = []
        self.resolved: set[IPAddress] = set()
        self._loop: task.LoopingCall | None = None
        self.reload(first=True)

    def reload(self, first: bool = False) -> defer.Deferred[None]:
        """
        Read the file (if any) and resolve the names again; the lists in
        force change only once the names are resolved.
        """
        patterns = list(self.matchers)
        if self.path:
            try:
                with open(self.path, encoding="utf-8") as f:
                    patterns.extend(f.read().splitlines())
            except OSError as e:
                if first:
                    raise ConfigError(f"admission {self.name}: cannot read {self.path}: {e.strerror}") from None
                _log.warn("admission {name}: cannot read {path}: {e}; keeping the previous list",
                          name=self.name, path=self.path, e=e.strerror)
                return defer.succeed(None)
        ips, nets, names, bad = parseMatchers(patterns)
        if bad:
            # A typo in a deny list would admit whom it meant to refuse:
            # refused at start; a reloaded file's bad lines are skipped.
            what = ", ".join(repr(b) for b in bad)
            if first:
                raise ConfigError(f"admission {self.name}: {what}: not an IP address, a CIDR block or a host name")
            _log.warn("admission {name}: {what}: not an IP address, a CIDR block or a host name; skipped",
                      name=self.name, what=what)
        self.ips, self.nets = ips, nets
        if names != self.names:
            self.resolved = set()
        self.names = names
        if not names:
            self.resolved = set()
            return defer.succeed(None)
        return self._resolve(names)

    def _resolve(self, names: list[str]) -> defer.Deferred[None]:
        results: list[defer.Deferred[list[str]]] = []
        for name in names:
            receiver = _Collect()
            try:
                self.reactor.nameResolver.resolveHostName(receiver, name)
            except Exception:  # noqa: BLE001 - a resolver that cannot start: no addresses
                receiver.resolutionComplete()
            results.append(receiver.done)

        def resolved(lists: list[list[str]]) -> None:
            found: set[IPAddress] = set()
            for name, addresses in zip(names, lists):
                if not addresses:
                    _log.info("admission {name}: {host} resolves to no address", name=self.name, host=name)
                for a in addresses:
                    try:
                        found.add(_normalise(ipaddress.ip_address(a)))
                    except ValueError:
                        continue
            self.resolved = found

        return defer.gatherResults(results).addCallback(resolved)

    def start(self) -> None:
        if self.reloadPeriod and self._loop is None:
            self._loop = task.LoopingCall(self.reload)
            self._loop.clock = self.reactor
            self._loop.start(self.reloadPeriod, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def matches(self, ip: IPAddress) -> bool:
        ip = _normalise(ip)
        if ip in self.ips or ip in self.resolved:
            return True
        return any(ip.version == net.version and ip in net for net in self.nets)

    def admits(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
        except ValueError:
            # Not an IP client (a unix socket, standard I/O): GOST admits
            # what it cannot check.
            return True
        return self.matches(ip) == self.whitelist


class Admission:
    """
    A service's admissions, as the accept layer's C{admission} hook: called
    with the client's address, returns why it is refused or C{None}.
    """

    def __init__(self, lists: Sequence[AdmissionList]) -> None:
        self.lists = list(lists)

    def __call__(self, peer: Any) -> str | None:
        host = str(getattr(peer, "host", peer) or "")
        for admission in self.lists:
            if not admission.admits(host):
                kind = "not in the allow list" if admission.whitelist else "in the deny list"
                return f"{kind} of admission {admission.name}"
        return None

    def start(self) -> None:
        for admission in self.lists:
            admission.start()

    def stop(self) -> None:
        for admission in self.lists:
            admission.stop()


def admissionFor(reactor: Any, svc: ServiceConfig, config: Config, where: str) -> Admission | None:
    """
    The L{Admission} of C{svc} (its C{admission} and C{admissions}), or
    C{None} when it has none.

    @raise ConfigError: for an undefined name, a loader we do not have
        (redis, http) or an unreadable file.
    """
    names = [n for n in [svc.admission, *svc.admissions] if n]
    if not names:
        return None
    lists = []
    for name in names:
        section = next((a for a in config.admissions if a.name == name), None)
        if section is None:
            raise ConfigError(f"{where}: admission {name!r} is not defined")
        body = section.extra
        for loader in ("redis", "http", "plugin"):
            if body.get(loader):
                raise ConfigError(f"{where}: admission {name}: {loader} is not implemented")
        fileSection = body.get("file") or {}
        path = str(fileSection.get("path", "")) if isinstance(fileSection, dict) else str(fileSection)
        matchers = body.get("matchers") or []
        if not isinstance(matchers, list):
            raise ConfigError(f"{where}: admission {name}: matchers must be a list")
        reload = Metadata({"reload": body.get("reload") or 0}).getDuration("reload")
        lists.append(
            AdmissionList(reactor, name, [str(m) for m in matchers], bool(body.get("whitelist")), path, reload)
        )
    return Admission(lists)


class AcceptChecks:
    """
    Several accept checks (admission, the request-rate limit) as one hook:
    the first refusal wins.
    """

    def __init__(self, checks: Sequence[Any]) -> None:
        self.checks = list(checks)

    def __call__(self, peer: Any) -> str | None:
        for check in self.checks:
            why = check(peer)
            if why:
                return str(why)
        return None

    def start(self) -> None:
        for check in self.checks:
            getattr(check, "start", lambda: None)()

    def stop(self) -> None:
        for check in self.checks:
            getattr(check, "stop", lambda: None)()
